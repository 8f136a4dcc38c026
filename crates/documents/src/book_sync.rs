//! The one message of channel `agreements`, both ways: the sender's heads (a digest per
//! dossier and per review it shares with the receiver) and a page of the documents the
//! receiver's last heads lacked. `entente-agreements` builds and merges them.

use serde::{Deserialize, Serialize};

use crate::dossier::Dossier;
use crate::review::SignedReview;
use entente_wire::sync::decode;

/// A page of documents on `/entente/sync/1` (see [`BookMsg`]): whole
/// dossiers and reviews the receiver's heads lack.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SyncMsg {
    pub dossiers: Vec<Dossier>,
    #[serde(default)]
    pub reviews: Vec<SignedReview>,
}

/// Documents named in one message's heads or page, at most (each kind).
pub const MAX_HEADS: usize = 262_144;

/// One document's head: its key (the agreement id, or the review's key) and the
/// SHA-256 of its CBOR bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHead {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heads {
    pub dossiers: Vec<DocHead>,
    pub reviews: Vec<DocHead>,
}

/// The one message of channel `agreements`, both ways: the sender's heads of what it
/// shares with the receiver, and a page of what the receiver's last heads lacked.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BookMsg {
    pub heads: Heads,
    pub page: SyncMsg,
    /// The sender had more for the receiver than this page.
    pub more: bool,
}

impl BookMsg {
    /// Decodes a peer's message and refuses one beyond the limits.
    pub fn from_peer(bytes: &[u8]) -> Result<BookMsg, String> {
        let m: BookMsg = decode(bytes)?;
        let h = &m.heads;
        if h.dossiers.len() > MAX_HEADS || h.reviews.len() > MAX_HEADS {
            return Err("too many heads".into());
        }
        if m.page.dossiers.len() > MAX_HEADS || m.page.reviews.len() > MAX_HEADS {
            return Err("too many documents".into());
        }
        if h.dossiers.iter().chain(&h.reviews).any(|d| d.digest.len() != 32) {
            return Err("a digest is not 32 bytes".into());
        }
        Ok(m)
    }
}
