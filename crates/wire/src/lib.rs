//! What federation peers send each other, in CBOR: the roaming protocol's requests and
//! responses (`roaming`), the sync protocol's envelope (`sync`), and the gateway types
//! they carry (`gateway`: a reception's metadata, a downlink, a gateway's TX_ACK error).
//! Pure data and its checks, so the fuzz targets build it without RocksDB or libp2p.

pub mod gateway;
pub mod roaming;
pub mod sync;

pub use gateway::{Downlink, RxContext, RxInfo, Timing, TxAckError};

/// A message in CBOR (byte fields stay bytes), as the libp2p codec writes it.
pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    cbor4ii::serde::to_vec(Vec::new(), v).map_err(|e| e.to_string())
}

/// A message from a peer, decoded as the libp2p codec decodes it (after its size cap):
/// an error, never a panic, on any bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| e.to_string())
}
