//! Signatures by both parties over the exact stored bytes of one agreement version,
//! behind a domain prefix; the bytes are kept, never re-serialised to verify.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::sig::{sign_hex, verify_hex};
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::model::Agreement;

pub const DOMAIN: &[u8] = b"entente/agreement/v1\n";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignError {
    #[error("the agreement bytes are not a valid agreement: {0}")]
    Decode(String),
    #[error("the agreement is out of bounds: {0}")]
    OutOfBounds(String),
    #[error("{0} is not a party to this agreement")]
    NotAParty(MemberId),
    #[error("the signature of {0} does not verify over these bytes")]
    BadSignature(MemberId),
    #[error("{0} has not signed")]
    Missing(MemberId),
}

/// One agreement version as it travels and is stored: its bytes and who signed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedAgreement {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Member -> ed25519 signature (hex) over DOMAIN || bytes.
    pub signatures: BTreeMap<MemberId, String>,
}

impl SignedAgreement {
    /// The proposer encodes and signs a new version.
    pub fn propose(a: &Agreement, proposer: &MemberId, key: &SigningKey) -> Result<Self, SignError> {
        if !a.parties().contains(&proposer) {
            return Err(SignError::NotAParty(proposer.clone()));
        }
        a.validate().map_err(SignError::OutOfBounds)?;
        let bytes = serde_json::to_vec(a).map_err(|e| SignError::Decode(e.to_string()))?;
        let mut s = SignedAgreement {
            bytes,
            signatures: BTreeMap::new(),
        };
        s.sign(proposer, key)?;
        Ok(s)
    }

    /// The agreement these bytes hold, within bounds: a peer's proposal is checked as
    /// our own.
    pub fn agreement(&self) -> Result<Agreement, SignError> {
        let a: Agreement =
            serde_json::from_slice(&self.bytes).map_err(|e| SignError::Decode(e.to_string()))?;
        a.validate().map_err(SignError::OutOfBounds)?;
        Ok(a)
    }

    /// Adds `member`'s signature; only a party may sign.
    pub fn sign(&mut self, member: &MemberId, key: &SigningKey) -> Result<(), SignError> {
        let a = self.agreement()?;
        if !a.parties().contains(&member) {
            return Err(SignError::NotAParty(member.clone()));
        }
        self.signatures
            .insert(member.clone(), sign_hex(key, DOMAIN, &self.bytes));
        Ok(())
    }

    /// Checks every signature present against the parties' keys: a signature of a
    /// non-party, or one that does not verify, is an error. Returns who signed.
    pub fn verify(
        &self,
        keys: &dyn Fn(&MemberId) -> Option<VerifyingKey>,
    ) -> Result<Vec<MemberId>, SignError> {
        let a = self.agreement()?;
        for (m, sig) in &self.signatures {
            if !a.parties().contains(&m) {
                return Err(SignError::NotAParty(m.clone()));
            }
            if !keys(m).is_some_and(|k| verify_hex(&k, DOMAIN, &self.bytes, sig)) {
                return Err(SignError::BadSignature(m.clone()));
            }
        }
        Ok(self.signatures.keys().cloned().collect())
    }

    /// Both parties signed and every signature verifies.
    pub fn verify_both(&self, keys: &dyn Fn(&MemberId) -> Option<VerifyingKey>) -> Result<(), SignError> {
        self.verify(keys)?;
        let a = self.agreement()?;
        for p in a.parties() {
            if !self.signatures.contains_key(p) {
                return Err(SignError::Missing(p.clone()));
            }
        }
        Ok(())
    }
}
