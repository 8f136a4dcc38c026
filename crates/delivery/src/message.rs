//! The JSON every delivery mode carries for one uplink.

use base64::Engine;
use entente_lns::{Device, UplinkRecord};
use entente_region::DataRate;
use serde_json::{Value, json};

use crate::decoders;

pub fn uplink_json(r: &UplinkRecord, d: &Device) -> Value {
    let best = r.rx.first();
    let sf = best.and_then(|b| match b.data_rate {
        DataRate::Lora { sf, .. } => Some(sf.get()),
        DataRate::Fsk { .. } => None,
    });
    let mut v = json!({
        "seq": r.seq,
        "dev_eui": r.dev_eui,
        "dev_addr": r.dev_addr,
        "device_name": d.name,
        "group": d.group,
        "sub_group": d.sub_group,
        "fport": r.fport,
        "fcnt": r.fcnt,
        "confirmed": r.confirmed,
        "encrypted": r.encrypted,
        "payload_hex": hex::encode(&r.payload),
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&r.payload),
        "rssi": best.map(|b| b.rssi),
        "snr": best.map(|b| b.snr),
        "sf": sf,
        "data_rate": r.data_rate,
        "frequency_hz": r.frequency_hz,
        "gateway_count": r.rx.len(),
        "gateways": r.rx.iter().map(|g| json!({
            "eui": g.gateway, "rssi": g.rssi, "snr": g.snr, "time": g.time, "tmst": g.tmst,
        })).collect::<Vec<_>>(),
        "time": r.received_at,
    });
    // Encrypted payloads (the member keeps its AppSKey) cannot be decoded here.
    if let (Some(name), false) = (d.profile.decoder.as_deref(), r.encrypted) {
        match decoders::decode(name, r.fport, &r.payload) {
            Ok(obj) => v["decoded"] = obj,
            Err(e) => v["decoder_error"] = json!(e.to_string()),
        }
    }
    v
}
