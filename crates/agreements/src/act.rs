//! A lifecycle act (propose, approve, reject, notice, suspension, access request...) as a
//! document its author signs. The state of an agreement is a function of its signed
//! versions and signed acts, so both parties compute the same state and neither can
//! claim an act the other did not sign.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::model::AuthorisedUser;
use crate::signing::SignError;

pub const ACT_DOMAIN: &[u8] = b"entente/act/v1\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActKind {
    /// Version 1 proposes the agreement; a later version proposes an amendment.
    Propose { version: u32 },
    /// Countersigns that version.
    Approve { version: u32 },
    Reject { version: u32 },
    Terminate,
    Suspend,
    Resume,
    FileAccess { request: String, user: AuthorisedUser },
    AnswerAccess { request: String, approve: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Act {
    pub agreement: String,
    pub by: MemberId,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: ActKind,
}

/// An act as stored and sent: its exact bytes and its author's signature over them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SignedAct {
    pub bytes: Vec<u8>,
    pub signature: String,
}

fn message(bytes: &[u8]) -> Vec<u8> {
    let mut m = ACT_DOMAIN.to_vec();
    m.extend_from_slice(bytes);
    m
}

impl SignedAct {
    pub fn sign(act: &Act, key: &SigningKey) -> Result<SignedAct, SignError> {
        let bytes = serde_json::to_vec(act).map_err(|e| SignError::Decode(e.to_string()))?;
        let signature = hex::encode(key.sign(&message(&bytes)).to_bytes());
        Ok(SignedAct { bytes, signature })
    }

    pub fn act(&self) -> Result<Act, SignError> {
        serde_json::from_slice(&self.bytes).map_err(|e| SignError::Decode(e.to_string()))
    }

    /// Decodes the act and checks its author's signature.
    pub fn verify(&self, keys: &dyn Fn(&MemberId) -> Option<VerifyingKey>) -> Result<Act, SignError> {
        let act = self.act()?;
        let bad = || SignError::BadSignature(act.by.clone());
        let key = keys(&act.by).ok_or_else(bad)?;
        let raw = hex::decode(&self.signature).map_err(|_| bad())?;
        let sig = Signature::from_slice(&raw).map_err(|_| bad())?;
        key.verify(&message(&self.bytes), &sig).map_err(|_| bad())?;
        Ok(act)
    }
}
