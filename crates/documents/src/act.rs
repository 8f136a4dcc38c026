//! A lifecycle act (propose, approve, reject, notice, suspension, access request...) as a
//! document its author signs. The state of an agreement is a function of its signed
//! versions and signed acts, so both parties compute the same state and neither can
//! claim an act the other did not sign.

use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::model::AuthorisedUser;
use crate::sig::{sign_hex, verify_hex};
use crate::signing::SignError;

pub const ACT_DOMAIN: &[u8] = b"entente/act/v1\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActKind {
    /// Version 1 proposes the agreement; a later version proposes an amendment.
    Propose {
        version: u32,
    },
    /// Countersigns that version.
    Approve {
        version: u32,
    },
    Reject {
        version: u32,
    },
    Terminate,
    Suspend,
    Resume,
    FileAccess {
        request: String,
        user: AuthorisedUser,
    },
    AnswerAccess {
        request: String,
        approve: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Act {
    pub agreement: String,
    pub by: MemberId,
    pub at: DateTime<Utc>,
    /// The [`SignedAct::id`] of the last act of the dossier it was made on (none for the
    /// proposal): a causal chain per agreement, so an act cannot claim to come before
    /// what its author had seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    #[serde(flatten)]
    pub kind: ActKind,
}

/// An act as stored and sent: its exact bytes and its author's signature over them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SignedAct {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    pub signature: String,
}

impl SignedAct {
    pub fn sign(act: &Act, key: &SigningKey) -> Result<SignedAct, SignError> {
        let bytes = serde_json::to_vec(act).map_err(|e| SignError::Decode(e.to_string()))?;
        let signature = sign_hex(key, ACT_DOMAIN, &bytes);
        Ok(SignedAct { bytes, signature })
    }

    /// The act's name in the chain: the SHA-256 of its bytes, in hex.
    pub fn id(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&self.bytes))
    }

    pub fn act(&self) -> Result<Act, SignError> {
        serde_json::from_slice(&self.bytes).map_err(|e| SignError::Decode(e.to_string()))
    }

    /// Decodes the act and checks its author's signature.
    pub fn verify(&self, keys: &dyn Fn(&MemberId) -> Option<VerifyingKey>) -> Result<Act, SignError> {
        let act = self.act()?;
        if !keys(&act.by).is_some_and(|k| verify_hex(&k, ACT_DOMAIN, &self.bytes, &self.signature)) {
            return Err(SignError::BadSignature(act.by));
        }
        Ok(act)
    }
}
