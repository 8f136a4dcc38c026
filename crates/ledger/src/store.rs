//! The ledger in RocksDB: this node's chains and its replicas of the counterparties'
//! chains, written synced. A record from a peer is kept only if it extends the issuer's
//! chain exactly, or adds valid signatures to a record held; nothing is ever rewritten.

use std::sync::{Arc, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::MemberId;
use entente_store::{Durability, Store, StoreError, Table};
use serde::Serialize;

use crate::chain::{Entry, Kind, hash_of};

pub struct Entries;
impl Table for Entries {
    const NAME: &'static str = "ledger";
    type Key = String;
    type Value = Entry;
}

pub const TABLES: &[&str] = &[Entries::NAME];

fn key(agreement: &str, issuer: &MemberId, seq: u64) -> String {
    format!("{agreement}\u{1}{issuer}\u{1}{seq:020}")
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the record: {0}")]
    Encode(String),
    #[error("no record {1} in {0}'s chain")]
    NotFound(String, u64),
    #[error("refused: {0}")]
    Refused(String),
}

pub type Keys = Arc<dyn Fn(&MemberId) -> Option<VerifyingKey> + Send + Sync>;

pub struct Ledger {
    me: MemberId,
    key: SigningKey,
    store: Arc<Store>,
    keys: Keys,
    write: Mutex<()>,
}

impl Ledger {
    pub fn new(me: MemberId, key: SigningKey, store: Arc<Store>, keys: Keys) -> Ledger {
        Ledger {
            me,
            key,
            store,
            keys,
            write: Mutex::new(()),
        }
    }

    pub fn me(&self) -> &MemberId {
        &self.me
    }

    fn last(&self, agreement: &str, issuer: &MemberId) -> Result<Option<Entry>, LedgerError> {
        let prefix = format!("{agreement}\u{1}{issuer}\u{1}");
        let mut last = None;
        for kv in self.store.range_from::<Entries>(&prefix)? {
            let (k, e) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            last = Some(e);
        }
        Ok(last)
    }

    pub fn get(&self, agreement: &str, issuer: &MemberId, seq: u64) -> Result<Entry, LedgerError> {
        self.store
            .get::<Entries>(&key(agreement, issuer, seq))?
            .ok_or_else(|| LedgerError::NotFound(issuer.to_string(), seq))
    }

    /// Appends a record to this member's chain for `agreement`, signed, synced.
    pub fn append<T: Serialize>(&self, agreement: &str, kind: Kind, body: &T) -> Result<Entry, LedgerError> {
        let bytes = serde_json::to_vec(body).map_err(|e| LedgerError::Encode(e.to_string()))?;
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let prev = self.last(agreement, &self.me)?;
        let mut e = Entry::next(prev.as_ref(), agreement, &self.me, kind, bytes);
        e.sign(&self.me, &self.key);
        self.store
            .put::<Entries>(&key(agreement, &self.me, e.seq), &e, Durability::Sync)?;
        Ok(e)
    }

    /// Adds this member's signature to a record of the counterparty's chain.
    pub fn countersign(&self, agreement: &str, issuer: &MemberId, seq: u64) -> Result<Entry, LedgerError> {
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = self.get(agreement, issuer, seq)?;
        e.sign(&self.me, &self.key);
        self.store
            .put::<Entries>(&key(agreement, issuer, seq), &e, Durability::Sync)?;
        Ok(e)
    }

    /// A record from a peer: kept if it extends its issuer's chain exactly (hash, link and
    /// the issuer's signature check), or adds valid signatures to a record held. Returns
    /// whether anything changed.
    pub fn merge(&self, e: Entry) -> Result<bool, LedgerError> {
        let refuse = |r: String| {
            Err(LedgerError::Refused(format!(
                "{} #{} of {}: {r}",
                e.agreement, e.seq, e.issuer
            )))
        };
        if hash_of(&e.agreement, &e.issuer, e.seq, e.kind, &e.prev, &e.body) != e.hash {
            return refuse("content does not match its hash".into());
        }
        for m in e.signatures.keys() {
            let ok = (self.keys)(m).is_some_and(|k| e.signed_by(m, &k));
            if !ok {
                return refuse(format!("{m}'s signature does not verify"));
            }
        }
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(&e.agreement, &e.issuer, e.seq);
        if let Some(mut held) = self.store.get::<Entries>(&k)? {
            if held.hash != e.hash {
                return refuse("a different record already holds this place in the chain".into());
            }
            let before = held.signatures.len();
            for (m, s) in e.signatures {
                held.signatures.entry(m).or_insert(s);
            }
            if held.signatures.len() == before {
                return Ok(false);
            }
            self.store.put::<Entries>(&k, &held, Durability::Sync)?;
            return Ok(true);
        }
        if e.issuer == self.me {
            return refuse("not a record this node wrote".into());
        }
        if !e.signatures.contains_key(&e.issuer) {
            return refuse("not signed by its issuer".into());
        }
        let last = self.last(&e.agreement, &e.issuer)?;
        let (want_seq, want_prev) = match &last {
            Some(l) => (l.seq + 1, l.hash.clone()),
            None => (0, crate::chain::GENESIS.to_string()),
        };
        if e.seq != want_seq || e.prev != want_prev {
            return refuse(format!("does not extend the chain held (next is #{want_seq})"));
        }
        self.store.put::<Entries>(&k, &e, Durability::Sync)?;
        Ok(true)
    }

    /// Every record held, chain by chain in order; only `agreement`'s when given.
    pub fn entries(&self, agreement: Option<&str>) -> Result<Vec<Entry>, LedgerError> {
        let mut v = Vec::new();
        for kv in self.store.iter::<Entries>()? {
            let (_, e) = kv?;
            if agreement.is_none_or(|a| a == e.agreement) {
                v.push(e);
            }
        }
        Ok(v)
    }
}
