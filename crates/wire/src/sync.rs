//! `/entente/sync/1`: the envelope of the replication messages, opaque bytes per
//! channel (the agreements and the ledger each encode and check their own).

use serde::{Deserialize, Serialize};

pub const SYNC_PROTOCOL: &str = "/entente/sync/1";
/// What a replication page aims at: the documents or records of one sync message are
/// added while they fit in this many bytes (a single larger document travels alone).
pub const SYNC_PAGE_BYTES: usize = 256 * 1024;
/// The codec's cap on a sync request or response. Far above a page, so that a single
/// document larger than a page (an agreement declaring 100 000 devices, several
/// versions of it: about 3 MB each) still passes; a larger one is not sent (and logged).
pub const MAX_SYNC_BYTES: u64 = 32 * 1024 * 1024;
/// Room kept under [`MAX_SYNC_BYTES`] for the envelope (channel name, heads).
pub const MAX_SYNC_DOCUMENT_BYTES: usize = 24 * 1024 * 1024;

/// Opaque to the federation: the agreements and the ledger encode and check what travels
/// in it, each on its own channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    pub channel: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncResponse(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// A sync message in CBOR (byte fields stay bytes).
pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    crate::encode(v)
}

/// A sync message from a peer: refused above the codec's cap, decoded without panics.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() as u64 > MAX_SYNC_BYTES {
        return Err(format!("{} bytes, above the cap", bytes.len()));
    }
    crate::decode(bytes)
}
