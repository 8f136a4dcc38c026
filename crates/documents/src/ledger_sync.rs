//! The one message of channel `ledger`, both ways: the heads of the chains the sender
//! holds (length, last hash, records still lacking a second signature) and a page of the
//! records the receiver's heads lacked. `entente-ledger` builds and merges them.

use std::collections::BTreeMap;

use entente_model::MemberId;
use entente_wire::sync::decode;
use serde::{Deserialize, Serialize};

use crate::chain::{Entry, Kind};

/// Chains in one message's heads, at most.
pub const MAX_HEADS: usize = 65_536;
/// Seqs listed as lacking a signature, per chain, at most.
pub const MAX_PENDING: usize = 4096;

/// A ledger record as it travels: the body as bytes (the stored form keeps it hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEntry {
    pub agreement: String,
    pub issuer: MemberId,
    pub seq: u64,
    pub kind: Kind,
    pub prev: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub hash: String,
    pub signatures: BTreeMap<MemberId, String>,
}

impl From<Entry> for WireEntry {
    fn from(e: Entry) -> Self {
        WireEntry {
            agreement: e.agreement,
            issuer: e.issuer,
            seq: e.seq,
            kind: e.kind,
            prev: e.prev,
            body: e.body,
            hash: e.hash,
            signatures: e.signatures,
        }
    }
}

impl From<WireEntry> for Entry {
    fn from(e: WireEntry) -> Self {
        Entry {
            agreement: e.agreement,
            issuer: e.issuer,
            seq: e.seq,
            kind: e.kind,
            prev: e.prev,
            body: e.body,
            hash: e.hash,
            signatures: e.signatures,
        }
    }
}

/// What one side holds of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub agreement: String,
    pub issuer: MemberId,
    /// The chain's length: the seq of the next record.
    pub next: u64,
    /// The hash of record `next - 1` (empty when `next` is 0).
    pub last: String,
    /// Records held with a single signature, oldest first (at most [`MAX_PENDING`]).
    pub pending: Vec<u64>,
}

/// The one message of channel `ledger`, both ways: the sender's heads of every chain
/// shared with the receiver, and a page of what the receiver's last heads lacked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerMsg {
    pub heads: Vec<ChainHead>,
    pub page: Vec<WireEntry>,
    /// The sender had more for the receiver than this page.
    pub more: bool,
}

impl LedgerMsg {
    /// Decodes a peer's message and refuses one beyond the limits.
    pub fn from_peer(bytes: &[u8]) -> Result<LedgerMsg, String> {
        let m: LedgerMsg = decode(bytes)?;
        if m.heads.len() > MAX_HEADS {
            return Err(format!("{} chain heads, above {MAX_HEADS}", m.heads.len()));
        }
        if m.heads.iter().any(|h| h.pending.len() > MAX_PENDING) {
            return Err(format!("a chain lists more than {MAX_PENDING} pending records"));
        }
        Ok(m)
    }
}
