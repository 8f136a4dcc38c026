use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui, MemberId};

/// Encoding of a table key. Integers are big-endian (signed ones with the sign bit
/// flipped) so that RocksDB's byte order is the numeric order and range scans follow
/// time and id order.
pub trait KeyCodec: Sized {
    fn encode_key(&self, out: &mut Vec<u8>);
    /// `None` when the bytes are not a valid key of this type.
    fn decode_key(bytes: &[u8]) -> Option<Self>;
}

/// A key of fixed width, which can therefore lead a composite key.
pub trait FixedKey: KeyCodec {
    const WIDTH: usize;
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl KeyCodec for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(b: &[u8]) -> Option<Self> {
                Some(<$t>::from_be_bytes(b.try_into().ok()?))
            }
        }
        impl FixedKey for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64, u128);

impl KeyCodec for i64 {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((*self as u64) ^ (1 << 63)).to_be_bytes());
    }
    fn decode_key(b: &[u8]) -> Option<Self> {
        Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
    }
}
impl FixedKey for i64 {
    const WIDTH: usize = 8;
}

impl<const N: usize> KeyCodec for [u8; N] {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode_key(b: &[u8]) -> Option<Self> {
        b.try_into().ok()
    }
}
impl<const N: usize> FixedKey for [u8; N] {
    const WIDTH: usize = N;
}

macro_rules! eui_key {
    ($($t:ty),*) => {$(
        impl KeyCodec for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.as_bytes());
            }
            fn decode_key(b: &[u8]) -> Option<Self> {
                Some(Self(b.try_into().ok()?))
            }
        }
        impl FixedKey for $t {
            const WIDTH: usize = 8;
        }
    )*};
}
eui_key!(GatewayEui, DevEui, JoinEui);

impl KeyCodec for DevAddr {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_be_bytes());
    }
    fn decode_key(b: &[u8]) -> Option<Self> {
        Some(Self(u32::from_be_bytes(b.try_into().ok()?)))
    }
}
impl FixedKey for DevAddr {
    const WIDTH: usize = 4;
}

/// Variable width: only valid as the last part of a key.
impl KeyCodec for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode_key(b: &[u8]) -> Option<Self> {
        String::from_utf8(b.to_vec()).ok()
    }
}

impl KeyCodec for MemberId {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
    fn decode_key(b: &[u8]) -> Option<Self> {
        std::str::from_utf8(b).ok()?.parse().ok()
    }
}

impl<A: FixedKey, B: KeyCodec> KeyCodec for (A, B) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_key(out);
        self.1.encode_key(out);
    }
    fn decode_key(b: &[u8]) -> Option<Self> {
        if b.len() < A::WIDTH {
            return None;
        }
        let (a, rest) = b.split_at(A::WIDTH);
        Some((A::decode_key(a)?, B::decode_key(rest)?))
    }
}

impl<A: FixedKey, B: FixedKey> FixedKey for (A, B) {
    const WIDTH: usize = A::WIDTH + B::WIDTH;
}

pub(crate) fn encode<K: KeyCodec>(k: &K) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    k.encode_key(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_numeric_order() {
        let mut xs: Vec<i64> = vec![-5, i64::MIN, 0, 7, i64::MAX, -1, 1];
        let mut enc: Vec<Vec<u8>> = xs.iter().map(encode).collect();
        xs.sort();
        enc.sort();
        let dec: Vec<i64> = enc.iter().map(|b| i64::decode_key(b).unwrap()).collect();
        assert_eq!(xs, dec);
        assert!(encode(&1u64) < encode(&256u64));
    }

    #[test]
    fn composite_keys_round_trip_and_reject_garbage() {
        let k = (GatewayEui::from_u64(42), 9u64);
        let b = encode(&k);
        assert_eq!(b.len(), 16);
        assert_eq!(<(GatewayEui, u64)>::decode_key(&b), Some(k));
        assert_eq!(<(GatewayEui, u64)>::decode_key(&b[..10]), None);
        assert_eq!(u32::decode_key(&[1, 2, 3]), None);
    }
}
