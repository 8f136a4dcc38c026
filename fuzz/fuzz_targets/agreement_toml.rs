//! Arbitrary text as an agreement in TOML (what `entente agreement propose` reads, and
//! the conventions in `federation/`): parsed into an `Agreement`, written back to TOML
//! and parsed again the same; then proposed as the book proposes one (signed by a
//! party, an act, a dossier replayed): the signature verifies and the signed bytes read
//! back as the same agreement.

#![no_main]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_documents::{Act, ActKind, Agreement, Dossier, SignedAct, SignedAgreement};
use entente_model::MemberId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(a) = toml::from_str::<Agreement>(text) else {
        return;
    };
    // Compared as JSON: a NaN share or percentage is not equal to itself.
    if let Ok(written) = toml::to_string(&a) {
        let again: Agreement = toml::from_str(&written).expect("an agreement written as TOML reads back");
        assert_eq!(json(&again), json(&a), "TOML round trip differs");
    }
    propose(&a);
});

fn propose(a: &Agreement) {
    let [proposer, other] = a.parties().map(Clone::clone);
    let keys: BTreeMap<MemberId, SigningKey> = [
        (other, SigningKey::from_bytes(&[2; 32])),
        (proposer.clone(), SigningKey::from_bytes(&[1; 32])),
    ]
    .into_iter()
    .collect();
    let key_of = |m: &MemberId| -> Option<VerifyingKey> { keys.get(m).map(|k| k.verifying_key()) };
    let Ok(signed) = SignedAgreement::propose(a, &proposer, &keys[&proposer]) else {
        return;
    };
    assert_eq!(
        signed.verify(&key_of),
        Ok(vec![proposer.clone()]),
        "the proposal does not verify"
    );
    let back = signed.agreement().expect("the signed bytes are an agreement");
    assert_eq!(json(&back), json(a), "the signed bytes read back differently");
    let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().expect("a date");
    let act = Act {
        agreement: a.id.clone(),
        by: proposer.clone(),
        at: now,
        follows: None,
        kind: ActKind::Propose { version: a.version },
    };
    let Ok(act) = SignedAct::sign(&act, &keys[&proposer]) else {
        return;
    };
    if let Ok(d) = Dossier::new(signed, act) {
        let _ = d.replay(&key_of, now);
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}
