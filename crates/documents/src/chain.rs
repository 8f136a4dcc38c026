//! The ledger: per agreement and issuing party, an append-only chain of records (usage statements,
//! disputes, billing records, device-count statements, committee reviews). Each party
//! appends to its own chain, so two parties never fork one; the other party countersigns
//! records (which does not change their hash) and holds a replica. A record's hash covers
//! the agreement, the issuer, its sequence number, its kind, the previous record's hash
//! and its exact body bytes; the parties sign that hash (the message is `LEDGER_DOMAIN`
//! then the hash's 64 lowercase hex characters as ASCII). Anyone holding an export and the
//! parties' public keys can check it offline: a modified, removed or reordered record, or
//! a forged signature, names the first bad record.

use std::collections::{BTreeMap, HashMap};

use crate::sig::{sign_hex, verify_hex};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::MemberId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const LEDGER_DOMAIN: &[u8] = b"entente/ledger/v1\n";
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    UsageStatement,
    Dispute,
    BillingRecord,
    DeviceCountStatement,
    CommitteeReview,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UsageStatement => "usage_statement",
            Kind::Dispute => "dispute",
            Kind::BillingRecord => "billing_record",
            Kind::DeviceCountStatement => "device_count_statement",
            Kind::CommitteeReview => "committee_review",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::UsageStatement,
            Kind::Dispute,
            Kind::BillingRecord,
            Kind::DeviceCountStatement,
            Kind::CommitteeReview,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub agreement: String,
    /// The party whose chain this is; its signature is required on every record.
    pub issuer: MemberId,
    pub seq: u64,
    pub kind: Kind,
    /// Hex SHA-256 of the previous record of this agreement (`GENESIS` for the first).
    pub prev: String,
    /// The record's exact JSON bytes, hex-encoded so exports keep them byte for byte.
    #[serde(with = "hex_bytes")]
    pub body: Vec<u8>,
    pub hash: String,
    /// Member -> ed25519 signature (hex) over `LEDGER_DOMAIN` followed by the record's
    /// `hash` as written: its 64 lowercase hex characters, as ASCII bytes (not the 32
    /// bytes they encode).
    pub signatures: BTreeMap<MemberId, String>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

pub fn hash_of(agreement: &str, issuer: &MemberId, seq: u64, kind: Kind, prev: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(LEDGER_DOMAIN);
    h.update(agreement.as_bytes());
    h.update([0]);
    h.update(issuer.as_str().as_bytes());
    h.update([0]);
    h.update(seq.to_be_bytes());
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(prev.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

impl Entry {
    /// The next record after `prev` (None: the agreement's first).
    pub fn next(
        prev: Option<&Entry>,
        agreement: &str,
        issuer: &MemberId,
        kind: Kind,
        body: Vec<u8>,
    ) -> Entry {
        let (seq, prev_hash) = match prev {
            Some(p) => (p.seq + 1, p.hash.clone()),
            None => (0, GENESIS.to_string()),
        };
        let hash = hash_of(agreement, issuer, seq, kind, &prev_hash, &body);
        Entry {
            agreement: agreement.into(),
            issuer: issuer.clone(),
            seq,
            kind,
            prev: prev_hash,
            body,
            hash,
            signatures: BTreeMap::new(),
        }
    }

    pub fn sign(&mut self, member: &MemberId, key: &SigningKey) {
        self.signatures
            .insert(member.clone(), sign_hex(key, LEDGER_DOMAIN, self.hash.as_bytes()));
    }

    pub fn body_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Whether `member`'s signature on this record verifies. Only in the one form it is
    /// written in (128 lowercase hex digits): the same signature in capitals would verify
    /// here and then be refused by `from_csv` once exported.
    pub fn signed_by(&self, member: &MemberId, key: &VerifyingKey) -> bool {
        self.signatures
            .get(member)
            .is_some_and(|s| lower_hex(s, 128) && verify_hex(key, LEDGER_DOMAIN, self.hash.as_bytes(), s))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("record {index} ({agreement}, {issuer}'s chain, #{seq}): {reason}")]
pub struct ChainError {
    /// Position in the export (0-based).
    pub index: usize,
    pub agreement: String,
    pub issuer: MemberId,
    pub seq: u64,
    pub reason: String,
}

/// Checks an export: per agreement and issuer, records numbered 0, 1, 2... in order, each naming the
/// previous record's hash, each hash recomputed from its content, at least one signature,
/// every signature by a known key over that hash, the issuer's among them. Returns the
/// records checked.
pub fn verify(
    entries: &[Entry],
    keys: &dyn Fn(&MemberId) -> Option<VerifyingKey>,
) -> Result<usize, ChainError> {
    let mut last: HashMap<(&str, &MemberId), (u64, &str)> = HashMap::new();
    for (index, e) in entries.iter().enumerate() {
        let bad = |reason: String| ChainError {
            index,
            agreement: e.agreement.clone(),
            issuer: e.issuer.clone(),
            seq: e.seq,
            reason,
        };
        let (want_seq, want_prev) = match last.get(&(e.agreement.as_str(), &e.issuer)) {
            Some((s, h)) => (s + 1, *h),
            None => (0, GENESIS),
        };
        if e.seq != want_seq {
            return Err(bad(format!(
                "sequence {} where {want_seq} was expected (a record removed or reordered)",
                e.seq
            )));
        }
        if e.prev != want_prev {
            return Err(bad(
                "does not follow the previous record's hash (removed, reordered or altered before it)".into(),
            ));
        }
        if hash_of(&e.agreement, &e.issuer, e.seq, e.kind, &e.prev, &e.body) != e.hash {
            return Err(bad("its content does not match its hash (modified)".into()));
        }
        if !e.signatures.contains_key(&e.issuer) {
            return Err(bad(format!("not signed by its issuer {}", e.issuer)));
        }
        for m in e.signatures.keys() {
            let key = keys(m).ok_or_else(|| bad(format!("{m} is not a known signer")))?;
            if !e.signed_by(m, &key) {
                return Err(bad(format!("{m}'s signature does not verify (forged)")));
            }
        }
        last.insert((e.agreement.as_str(), &e.issuer), (e.seq, e.hash.as_str()));
    }
    Ok(entries.len())
}

/// CSV export: one record per line, the body as hex, signatures as `member:sig|...`.
pub fn to_csv(entries: &[Entry]) -> String {
    let mut out = String::from("agreement,issuer,seq,kind,prev,hash,body_hex,signatures\n");
    for e in entries {
        let sigs: Vec<String> = e.signatures.iter().map(|(m, s)| format!("{m}:{s}")).collect();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.agreement,
            e.issuer,
            e.seq,
            e.kind.as_str(),
            e.prev,
            e.hash,
            hex::encode(&e.body),
            sigs.join("|")
        ));
    }
    out
}

/// Reads a CSV export back; a malformed line is an error naming it.
pub fn from_csv(text: &str) -> Result<Vec<Entry>, String> {
    let mut v = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 8 {
            return Err(bad("expected 8 fields"));
        }
        if !crate::Dossier::valid_id(f[0]) {
            return Err(bad("bad agreement id"));
        }
        if !lower_hex(f[4], 64) || !lower_hex(f[5], 64) {
            return Err(bad("prev and hash are 64 lowercase hex digits"));
        }
        let mut signatures = BTreeMap::new();
        for s in f[7].split('|').filter(|s| !s.is_empty()) {
            let (m, sig) = s.split_once(':').ok_or_else(|| bad("bad signature field"))?;
            if !lower_hex(sig, 128) {
                return Err(bad("a signature is 128 lowercase hex digits"));
            }
            signatures.insert(m.parse().map_err(|_| bad("bad member id"))?, sig.to_string());
        }
        v.push(Entry {
            agreement: f[0].to_string(),
            issuer: f[1].parse().map_err(|_| bad("bad issuer"))?,
            seq: f[2].parse().map_err(|_| bad("bad seq"))?,
            kind: Kind::parse(f[3]).ok_or_else(|| bad("unknown kind"))?,
            prev: f[4].to_string(),
            hash: f[5].to_string(),
            body: hex::decode(f[6]).map_err(|_| bad("body is not hex"))?,
            signatures,
        });
    }
    Ok(v)
}

/// `s` is `len` lowercase hex digits, as `to_csv` writes hashes and signatures.
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
