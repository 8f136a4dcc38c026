#![allow(dead_code)] // each target uses what it needs
//! The members the document targets know, with fixed keys: the seeds (`fuzz/seedgen`)
//! are signed with them, so mutated documents reach verification and replay, not only
//! the first signature check.

use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::MemberId;

pub const MEMBERS: [&str; 3] = ["tours-metropole", "smo-vdln", "agglopolys"];

/// Member `i`'s key: 32 bytes of `i + 1`.
pub fn signing_key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

pub fn member_id(i: usize) -> MemberId {
    MEMBERS[i].parse().expect("a valid member id")
}

/// The verifying key of a known member, as the roster gives it.
pub fn key_of(m: &MemberId) -> Option<VerifyingKey> {
    MEMBERS
        .iter()
        .position(|n| *n == m.as_str())
        .map(|i| signing_key(i).verifying_key())
}
