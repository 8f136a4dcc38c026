//! A datagram as a gateway (or anyone who can reach the UDP port) sends it, read the way
//! the gateway server reads it: the codec, then for PUSH_DATA the JSON body (`stat` and
//! each `rxpk`), each rxpk's base64 PHYPayload, and the uplink parse the pipeline reads.
//! The same bytes are also read as a server-to-gateway datagram (what the simulator's
//! emulated gateways parse).

#![no_main]

use entente_frame::{UplinkFrame, mac};
use entente_gwmp::json::{MAX_PHY_PAYLOAD, PullResp, PushData, TxAckBody};
use entente_gwmp::protocol::{self, Downstream, Upstream};
use entente_model::Position;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    upstream(data);
    downstream(data);
});

fn upstream(data: &[u8]) {
    let Ok(packet) = protocol::parse_upstream(data) else {
        return;
    };
    // What the codec read, it writes back (PULL_DATA has no body: trailing bytes go).
    let mut out = Vec::new();
    protocol::encode_upstream(&packet, &mut out);
    match packet {
        Upstream::PullData { .. } => assert!(data.starts_with(&out), "PULL_DATA re-encoded differs"),
        _ => assert_eq!(out, data, "datagram re-encoded differs"),
    }
    match packet {
        Upstream::PushData { json, .. } => push_data(json),
        Upstream::TxAck { json, .. } => {
            let _ = TxAckBody::parse(json);
        }
        Upstream::PullData { .. } => {}
    }
}

fn push_data(json: &[u8]) {
    let Ok(body) = PushData::parse(json) else {
        return;
    };
    if let Some(stat) = &body.stat
        && let (Some(latitude), Some(longitude)) = (stat.lati, stat.long)
    {
        // The registry keeps a reported position only if it is on the globe.
        let _ = Position {
            latitude,
            longitude,
            altitude: stat.alti,
        }
        .validate();
    }
    for pk in &body.rxpk {
        let Ok(phy) = pk.phy_payload() else {
            continue;
        };
        assert!(phy.len() <= MAX_PHY_PAYLOAD && phy.len() == usize::from(pk.size));
        // The one parse of a reception; the pipeline then reads FOpts from its view.
        if let Ok(frame) = UplinkFrame::parse(phy)
            && let Some(d) = frame.data()
        {
            let _ = mac::parse_up(d.fopts);
        }
    }
}

fn downstream(data: &[u8]) {
    let Ok(packet) = protocol::parse_downstream(data) else {
        return;
    };
    let mut out = Vec::new();
    protocol::encode_downstream(&packet, &mut out);
    match packet {
        Downstream::PullResp { json, .. } => {
            assert_eq!(out, data, "PULL_RESP re-encoded differs");
            let _ = PullResp::parse(json);
        }
        // Acks have no body: trailing bytes go.
        Downstream::PushAck { .. } | Downstream::PullAck { .. } => {
            assert!(data.starts_with(&out), "ack re-encoded differs")
        }
    }
}
