//! ed25519 over `domain || bytes`, signatures as hex: the one way every signed document
//! of Entente (agreements, acts, reviews, ledger records) is signed and checked.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

fn message(domain: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + bytes.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(bytes);
    m
}

pub fn sign_hex(key: &SigningKey, domain: &[u8], bytes: &[u8]) -> String {
    hex::encode(key.sign(&message(domain, bytes)).to_bytes())
}

/// Whether `sig_hex` is `key`'s signature over `domain || bytes`; malformed is false.
pub fn verify_hex(key: &VerifyingKey, domain: &[u8], bytes: &[u8], sig_hex: &str) -> bool {
    let Ok(raw) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&raw) else {
        return false;
    };
    key.verify(&message(domain, bytes), &sig).is_ok()
}
