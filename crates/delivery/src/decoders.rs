//! The payload decoder catalogue, chosen per device profile.
//!
//! A decoder error never drops a message: it is delivered raw with the error beside it.

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown decoder {0:?} (known: raw, cayenne-lpp, water-meter-v1)")]
    Unknown(String),
    #[error("{decoder}: {reason}")]
    Bad { decoder: &'static str, reason: String },
}

pub const CATALOGUE: &[&str] = &["raw", "cayenne-lpp", "water-meter-v1"];

pub fn decode(decoder: &str, fport: Option<u8>, payload: &[u8]) -> Result<Value, DecodeError> {
    match decoder {
        "raw" => Ok(json!({ "hex": hex::encode(payload), "length": payload.len() })),
        "cayenne-lpp" => cayenne_lpp(payload),
        "water-meter-v1" => water_meter_v1(fport, payload),
        other => Err(DecodeError::Unknown(other.to_string())),
    }
}

fn bad(decoder: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Bad {
        decoder,
        reason: reason.into(),
    }
}

/// Cayenne Low Power Payload (myDevices): channel, type, big-endian value, repeated.
fn cayenne_lpp(mut b: &[u8]) -> Result<Value, DecodeError> {
    const D: &str = "cayenne-lpp";
    let mut out = Map::new();
    while !b.is_empty() {
        if b.len() < 2 {
            return Err(bad(D, "truncated channel/type"));
        }
        let (ch, ty) = (b[0], b[1]);
        b = &b[2..];
        let (name, size): (&str, usize) = match ty {
            0 => ("digital_input", 1),
            1 => ("digital_output", 1),
            2 => ("analog_input", 2),
            3 => ("analog_output", 2),
            101 => ("illuminance", 2),
            102 => ("presence", 1),
            103 => ("temperature", 2),
            104 => ("humidity", 1),
            113 => ("accelerometer", 6),
            115 => ("barometer", 2),
            134 => ("gyrometer", 6),
            136 => ("gps", 9),
            other => return Err(bad(D, format!("unknown type {other} on channel {ch}"))),
        };
        if b.len() < size {
            return Err(bad(D, format!("{name} on channel {ch} is truncated")));
        }
        let v = &b[..size];
        b = &b[size..];
        let i16be = |x: &[u8]| i16::from_be_bytes([x[0], x[1]]) as f64;
        let i24be = |x: &[u8]| {
            let raw = ((x[0] as i32) << 16) | ((x[1] as i32) << 8) | x[2] as i32;
            (if raw & 0x80_0000 != 0 {
                raw - 0x100_0000
            } else {
                raw
            }) as f64
        };
        let value = match ty {
            0 | 1 | 102 => json!(v[0]),
            2 | 3 => json!(i16be(v) / 100.0),
            101 => json!(u16::from_be_bytes([v[0], v[1]])),
            103 => json!(i16be(v) / 10.0),
            104 => json!(v[0] as f64 / 2.0),
            113 => {
                json!({"x": i16be(&v[0..2]) / 1000.0, "y": i16be(&v[2..4]) / 1000.0, "z": i16be(&v[4..6]) / 1000.0})
            }
            115 => json!(u16::from_be_bytes([v[0], v[1]]) as f64 / 10.0),
            134 => {
                json!({"x": i16be(&v[0..2]) / 100.0, "y": i16be(&v[2..4]) / 100.0, "z": i16be(&v[4..6]) / 100.0})
            }
            _ => {
                json!({"latitude": i24be(&v[0..3]) / 10_000.0, "longitude": i24be(&v[3..6]) / 10_000.0, "altitude": i24be(&v[6..9]) / 100.0})
            }
        };
        out.insert(format!("{name}_{ch}"), value);
    }
    Ok(Value::Object(out))
}

/// Example water-meter frame (FPort 1), the shape most volumetric meters share:
/// byte 0 flags (bit 0 leak, bit 1 backflow, bit 2 tamper, bit 3 low battery),
/// bytes 1-4 index in litres (u32 little-endian), bytes 5-6 optional flow in l/h (u16 LE).
/// It is an illustration of the catalogue, not a vendor's published format.
fn water_meter_v1(fport: Option<u8>, b: &[u8]) -> Result<Value, DecodeError> {
    const D: &str = "water-meter-v1";
    if fport != Some(1) {
        return Err(bad(D, format!("expects FPort 1, got {fport:?}")));
    }
    if b.len() != 5 && b.len() != 7 {
        return Err(bad(D, format!("expects 5 or 7 bytes, got {}", b.len())));
    }
    let flags = b[0];
    let litres = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let mut v = json!({
        "index_litres": litres,
        "index_m3": litres as f64 / 1000.0,
        "leak": flags & 1 != 0,
        "backflow": flags & 2 != 0,
        "tamper": flags & 4 != 0,
        "low_battery": flags & 8 != 0,
    });
    if b.len() == 7 {
        v["flow_l_per_h"] = json!(u16::from_le_bytes([b[5], b[6]]));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cayenne_reference_examples() {
        // From the Cayenne LPP documentation: two temperature sensors, then accelerometer.
        let v = decode("cayenne-lpp", Some(1), &hex::decode("03670110056700FF").unwrap()).unwrap();
        assert_eq!(v["temperature_3"], 27.2);
        assert_eq!(v["temperature_5"], 25.5);
        let v = decode("cayenne-lpp", Some(1), &hex::decode("067104D2FB2E0000").unwrap()).unwrap();
        assert_eq!(v["accelerometer_6"]["x"], 1.234);
        assert_eq!(v["accelerometer_6"]["y"], -1.234);
        assert!(decode("cayenne-lpp", Some(1), &[3, 0x67, 1]).is_err());
    }

    #[test]
    fn water_meter_and_errors() {
        let v = decode("water-meter-v1", Some(1), &[0x01, 0x40, 0xe2, 0x01, 0x00]).unwrap();
        assert_eq!(v["index_litres"], 123_456);
        assert_eq!(v["leak"], true);
        assert!(decode("water-meter-v1", Some(2), &[0; 5]).is_err());
        assert!(matches!(decode("nope", None, &[]), Err(DecodeError::Unknown(_))));
    }
}
