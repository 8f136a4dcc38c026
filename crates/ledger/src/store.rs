//! The ledger in RocksDB: this node's chains and its replicas of the counterparties'
//! chains, written synced. A record from a peer is kept only if it extends the issuer's
//! chain exactly, or adds valid signatures to a record held; nothing is ever rewritten.

use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::MemberId;
use entente_store::{Batch, Durability, Store, StoreError, Table};
use serde::{Deserialize, Serialize};

use crate::chain::{Entry, GENESIS, Kind, hash_of};
use crate::statement::{Dispute, UsageStatement};

pub struct Entries;
impl Table for Entries {
    const NAME: &'static str = "ledger";
    type Key = String;
    type Value = Entry;
}

/// The head of each chain held (`agreement \u{1} issuer`): its length and last hash,
/// written in the same batch as the record that moves it.
pub struct Heads;
impl Table for Heads {
    const NAME: &'static str = "ledger_heads";
    type Key = String;
    type Value = Head;
}

/// The records held with a single signature (keyed like [`Entries`], valued by seq):
/// what a countersignature may still reach.
pub struct Pending;
impl Table for Pending {
    const NAME: &'static str = "ledger_pending";
    type Key = String;
    type Value = u64;
}

/// Lookups that would otherwise read a whole chain: `s\u{1}AGREEMENT\u{1}ISSUER\u{1}DAY`
/// -> the seq of that day's usage statement; `d\u{1}AGREEMENT\u{1}ISSUER\u{1}HASH` -> the
/// seq of the issuer's dispute of the statement with that hash.
pub struct Index;
impl Table for Index {
    const NAME: &'static str = "ledger_index";
    type Key = String;
    type Value = u64;
}

pub const TABLES: &[&str] = &[Entries::NAME, Heads::NAME, Pending::NAME, Index::NAME];

/// A chain's length (the next seq) and its last record's hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub next: u64,
    pub last: String,
}

fn key(agreement: &str, issuer: &MemberId, seq: u64) -> String {
    format!("{}{seq:020}", chain_prefix(agreement, issuer))
}

fn chain_prefix(agreement: &str, issuer: &MemberId) -> String {
    format!("{agreement}\u{1}{issuer}\u{1}")
}

fn head_key(agreement: &str, issuer: &MemberId) -> String {
    format!("{agreement}\u{1}{issuer}")
}

pub(crate) fn statement_key(agreement: &str, issuer: &MemberId, day: NaiveDate) -> String {
    format!("s\u{1}{agreement}\u{1}{issuer}\u{1}{day}")
}

pub(crate) fn dispute_key(agreement: &str, issuer: &MemberId, statement_hash: &str) -> String {
    format!("d\u{1}{agreement}\u{1}{issuer}\u{1}{statement_hash}")
}

/// The index rows a record adds.
fn index_rows(e: &Entry) -> Option<String> {
    match e.kind {
        Kind::UsageStatement => e
            .body_json::<UsageStatement>()
            .ok()
            .map(|s| statement_key(&e.agreement, &e.issuer, s.day)),
        Kind::Dispute => e
            .body_json::<Dispute>()
            .ok()
            .map(|d| dispute_key(&e.agreement, &e.issuer, &d.statement_hash)),
        _ => None,
    }
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
    /// The ledger over `store`; a database written before the chain heads and indexes
    /// existed has them built here, once.
    pub fn new(me: MemberId, key: SigningKey, store: Arc<Store>, keys: Keys) -> Result<Ledger, LedgerError> {
        let l = Ledger {
            me,
            key,
            store,
            keys,
            write: Mutex::new(()),
        };
        l.rebuild_if_needed()?;
        Ok(l)
    }

    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// The head of a chain: `next` 0 and no hash when none of it is held.
    pub fn head(&self, agreement: &str, issuer: &MemberId) -> Result<Head, LedgerError> {
        Ok(self
            .store
            .get::<Heads>(&head_key(agreement, issuer))?
            .unwrap_or_default())
    }

    fn last(&self, agreement: &str, issuer: &MemberId) -> Result<Option<Entry>, LedgerError> {
        match self.head(agreement, issuer)?.next.checked_sub(1) {
            Some(seq) => self.get(agreement, issuer, seq).map(Some),
            None => Ok(None),
        }
    }

    pub fn get(&self, agreement: &str, issuer: &MemberId, seq: u64) -> Result<Entry, LedgerError> {
        self.store
            .get::<Entries>(&key(agreement, issuer, seq))?
            .ok_or_else(|| LedgerError::NotFound(issuer.to_string(), seq))
    }

    /// One chain's records from `from` on, oldest first: a key-range read.
    pub fn chain_from(
        &self,
        agreement: &str,
        issuer: &MemberId,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<Entry, LedgerError>> + '_, LedgerError> {
        let prefix = chain_prefix(agreement, issuer);
        let it = self.store.range_from::<Entries>(&key(agreement, issuer, from))?;
        Ok(it.map_while(move |kv| match kv {
            Ok((k, e)) if k.starts_with(&prefix) => Some(Ok(e)),
            Ok(_) => None,
            Err(err) => Some(Err(err.into())),
        }))
    }

    /// The seqs of a chain's records held with a single signature, oldest first, at most
    /// `limit` of them.
    pub fn pending(&self, agreement: &str, issuer: &MemberId, limit: usize) -> Result<Vec<u64>, LedgerError> {
        let prefix = chain_prefix(agreement, issuer);
        let mut v = Vec::new();
        for kv in self.store.range_from::<Pending>(&prefix)? {
            let (k, seq) = kv?;
            if !k.starts_with(&prefix) || v.len() >= limit {
                break;
            }
            v.push(seq);
        }
        Ok(v)
    }

    /// The seq of `issuer`'s usage statement of `day`, when one is held.
    pub fn statement_seq(
        &self,
        agreement: &str,
        issuer: &MemberId,
        day: NaiveDate,
    ) -> Result<Option<u64>, LedgerError> {
        Ok(self.store.get::<Index>(&statement_key(agreement, issuer, day))?)
    }

    /// Whether `issuer` disputed the statement with this hash.
    pub fn disputed_by(
        &self,
        agreement: &str,
        issuer: &MemberId,
        statement_hash: &str,
    ) -> Result<bool, LedgerError> {
        Ok(self
            .store
            .get::<Index>(&dispute_key(agreement, issuer, statement_hash))?
            .is_some())
    }

    /// Stages a record with what follows from it: its pending mark, and when it is new
    /// its chain's head and its index row (the first record of a day keeps the row).
    fn stage(&self, b: &mut Batch<'_>, e: &Entry, new: bool) -> Result<(), LedgerError> {
        let k = key(&e.agreement, &e.issuer, e.seq);
        b.put::<Entries>(&k, e)?;
        if e.signatures.len() < 2 {
            b.put::<Pending>(&k, &e.seq)?;
        } else {
            b.delete::<Pending>(&k)?;
        }
        if new {
            let head = Head {
                next: e.seq + 1,
                last: e.hash.clone(),
            };
            b.put::<Heads>(&head_key(&e.agreement, &e.issuer), &head)?;
            if let Some(ik) = index_rows(e)
                && self.store.get::<Index>(&ik)?.is_none()
            {
                b.put::<Index>(&ik, &e.seq)?;
            }
        }
        Ok(())
    }

    fn write_entry(&self, e: &Entry, new: bool) -> Result<(), LedgerError> {
        let mut b = self.store.batch();
        self.stage(&mut b, e, new)?;
        self.store.write(b, Durability::Sync)?;
        Ok(())
    }

    /// Builds the heads, pending marks and indexes of a ledger written without them.
    fn rebuild_if_needed(&self) -> Result<(), LedgerError> {
        if self.store.iter::<Heads>()?.next().is_some() || self.store.iter::<Entries>()?.next().is_none() {
            return Ok(());
        }
        let mut b = self.store.batch();
        let mut indexed = std::collections::HashSet::new();
        for kv in self.store.iter::<Entries>()? {
            let (k, e) = kv?;
            if e.signatures.len() < 2 {
                b.put::<Pending>(&k, &e.seq)?;
            }
            let head = Head {
                next: e.seq + 1,
                last: e.hash.clone(),
            };
            b.put::<Heads>(&head_key(&e.agreement, &e.issuer), &head)?;
            if let Some(ik) = index_rows(&e)
                && indexed.insert(ik.clone())
            {
                b.put::<Index>(&ik, &e.seq)?;
            }
        }
        self.store.write(b, Durability::Sync)?;
        Ok(())
    }

    /// Appends a record to this member's chain for `agreement`, signed, synced.
    pub fn append<T: Serialize>(&self, agreement: &str, kind: Kind, body: &T) -> Result<Entry, LedgerError> {
        let bytes = serde_json::to_vec(body).map_err(|e| LedgerError::Encode(e.to_string()))?;
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let prev = self.last(agreement, &self.me)?;
        let mut e = Entry::next(prev.as_ref(), agreement, &self.me, kind, bytes);
        e.sign(&self.me, &self.key);
        self.write_entry(&e, true)?;
        Ok(e)
    }

    /// Adds this member's signature to a record of the counterparty's chain.
    pub fn countersign(&self, agreement: &str, issuer: &MemberId, seq: u64) -> Result<Entry, LedgerError> {
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = self.get(agreement, issuer, seq)?;
        e.sign(&self.me, &self.key);
        self.write_entry(&e, false)?;
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
            self.write_entry(&held, false)?;
            return Ok(true);
        }
        if e.issuer == self.me {
            return refuse("not a record this node wrote".into());
        }
        if !e.signatures.contains_key(&e.issuer) {
            return refuse("not signed by its issuer".into());
        }
        let head = self.head(&e.agreement, &e.issuer)?;
        let want_prev = if head.next == 0 {
            GENESIS
        } else {
            head.last.as_str()
        };
        if e.seq != head.next || e.prev != want_prev {
            return refuse(format!("does not extend the chain held (next is #{})", head.next));
        }
        self.write_entry(&e, true)?;
        Ok(true)
    }

    /// Every record held, chain by chain in order; only `agreement`'s when given. A full
    /// scan, for exports and the API: replication reads chains by key range.
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
