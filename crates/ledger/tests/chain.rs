//! `ledger verify` catches a modified, a removed and a reordered record, and a forged
//! signature, and names the first bad record; the stored ledger only accepts records that
//! extend a chain or add valid signatures.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_ledger::chain::{self, Entry, Kind};
use entente_ledger::{Ledger, LedgerError};
use entente_model::MemberId;
use entente_store::Store;
use serde_json::json;

fn id(s: &str) -> MemberId {
    s.parse().unwrap()
}

fn key(m: &MemberId) -> Option<VerifyingKey> {
    match m.as_str() {
        "tours-metropole" => Some(SigningKey::from_bytes(&[1; 32]).verifying_key()),
        "smo-vdln" => Some(SigningKey::from_bytes(&[2; 32]).verifying_key()),
        "agglopolys" => Some(SigningKey::from_bytes(&[3; 32]).verifying_key()),
        _ => None,
    }
}

fn ledger(member: &str, seed: u8) -> (Ledger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), entente_ledger::store::TABLES).unwrap());
    (
        Ledger::new(
            id(member),
            SigningKey::from_bytes(&[seed; 32]),
            store,
            Arc::new(key),
        )
        .unwrap(),
        dir,
    )
}

/// Tours writes five records; the SMO holds the replica and countersigns them.
fn five() -> Vec<Entry> {
    let (tours, _d1) = ledger("tours-metropole", 1);
    let (smo, _d2) = ledger("smo-vdln", 2);
    let kinds = [
        Kind::UsageStatement,
        Kind::UsageStatement,
        Kind::Dispute,
        Kind::BillingRecord,
        Kind::DeviceCountStatement,
    ];
    for (i, k) in kinds.into_iter().enumerate() {
        let e = tours
            .append("tours-smo-2026", k, &json!({"n": i, "amount_cents": 65760}))
            .unwrap();
        assert!(smo.merge(e.clone()).unwrap());
        let c = smo
            .countersign("tours-smo-2026", &id("tours-metropole"), e.seq)
            .unwrap();
        assert!(tours.merge(c).unwrap(), "the countersignature travels back");
    }
    let v = tours.entries(None).unwrap();
    assert_eq!(v, smo.entries(None).unwrap(), "both hold the same records");
    assert!(v.iter().all(|e| e.signatures.len() == 2));
    v
}

#[test]
fn a_good_chain_verifies_in_json_and_csv() {
    let v = five();
    assert_eq!(chain::verify(&v, &key), Ok(5));
    let csv = chain::to_csv(&v);
    assert_eq!(chain::from_csv(&csv).unwrap(), v);
    let json = serde_json::to_string(&v).unwrap();
    let back: Vec<Entry> = serde_json::from_str(&json).unwrap();
    assert_eq!(chain::verify(&back, &key), Ok(5));
}

#[test]
fn modified_removed_reordered_and_forged_records_are_named() {
    let v = five();
    let mut modified = v.clone();
    modified[2].body = br#"{"n":2,"amount_cents":1}"#.to_vec();
    let e = chain::verify(&modified, &key).unwrap_err();
    assert_eq!((e.index, e.seq), (2, 2));
    assert!(e.reason.contains("modified"), "{e}");

    let mut removed = v.clone();
    removed.remove(1);
    let e = chain::verify(&removed, &key).unwrap_err();
    assert_eq!((e.index, e.seq), (1, 2));
    assert!(e.reason.contains("removed or reordered"), "{e}");

    let mut reordered = v.clone();
    reordered.swap(3, 4);
    let e = chain::verify(&reordered, &key).unwrap_err();
    assert_eq!(e.index, 3);

    // A record rebuilt with a new hash: its successor no longer follows it.
    let mut rehashed = v.clone();
    rehashed[1].body = br#"{"n":1,"amount_cents":0}"#.to_vec();
    rehashed[1].hash = chain::hash_of(
        &rehashed[1].agreement,
        &rehashed[1].issuer,
        1,
        rehashed[1].kind,
        &rehashed[1].prev,
        &rehashed[1].body,
    );
    let e = chain::verify(&rehashed, &key).unwrap_err();
    assert_eq!(e.index, 1, "its signatures no longer verify: {e}");

    let mut forged = v.clone();
    let mut s = forged[4].clone();
    s.sign(&id("smo-vdln"), &SigningKey::from_bytes(&[9; 32]));
    forged[4] = s;
    let e = chain::verify(&forged, &key).unwrap_err();
    assert_eq!(e.index, 4);
    assert!(e.reason.contains("smo-vdln's signature does not verify"), "{e}");

    let mut stranger = v.clone();
    stranger[0].signatures.insert(id("rogue"), "00".repeat(64));
    assert!(
        chain::verify(&stranger, &key)
            .unwrap_err()
            .reason
            .contains("not a known signer")
    );
    assert!(chain::from_csv("agreement,issuer\nx,y,z\n").is_err());
    // Found by the ledger_export fuzz target: control characters in the id, the hash and
    // a signature read, and a trailing CR was lost on the way back. Such fields are refused.
    let header = "agreement,issuer,seq,kind,prev,hash,body,signatures\n";
    let genesis = chain::GENESIS;
    let sig = "ab".repeat(64);
    let good = format!("tours-smo,tours-metropole,0,usage_statement,{genesis},{genesis},,smo-vdln:{sig}\n");
    assert_eq!(chain::from_csv(&format!("{header}{good}")).unwrap().len(), 1);
    for bad in [
        good.replacen("tours-smo", "\r\r'\rtours", 1),
        good.replacen(&format!(",{genesis},,"), ",4ead5ac910\u{0}\u{0}\u{0}655ac,,", 1),
        good.replacen(&sig, &format!("2671{}", "\r".repeat(24)), 1),
        good.replacen(&sig, &sig.to_uppercase(), 1),
    ] {
        assert!(chain::from_csv(&format!("{header}{bad}")).is_err(), "{bad:?}");
    }
}

#[test]
fn the_stored_ledger_refuses_what_does_not_extend_a_chain() {
    let (tours, _d1) = ledger("tours-metropole", 1);
    let (smo, _d2) = ledger("smo-vdln", 2);
    let a = tours
        .append("tours-smo-2026", Kind::UsageStatement, &json!({"day": 1}))
        .unwrap();
    let b = tours
        .append("tours-smo-2026", Kind::UsageStatement, &json!({"day": 2}))
        .unwrap();
    assert!(
        matches!(smo.merge(b.clone()), Err(LedgerError::Refused(_))),
        "a gap"
    );
    assert!(smo.merge(a.clone()).unwrap());
    let mut altered = b.clone();
    altered.body = br#"{"day":3}"#.to_vec();
    assert!(smo.merge(altered).is_err());
    let mut unsigned = b.clone();
    unsigned.signatures.clear();
    assert!(smo.merge(unsigned).is_err());
    assert!(smo.merge(b.clone()).unwrap());
    assert!(!smo.merge(b).unwrap(), "nothing new");
    // A record in the SMO's own name that the SMO did not write.
    let mut fake = Entry::next(
        None,
        "tours-smo-2026",
        &id("smo-vdln"),
        Kind::Dispute,
        b"{}".to_vec(),
    );
    fake.sign(&id("smo-vdln"), &SigningKey::from_bytes(&[2; 32]));
    assert!(smo.merge(fake).is_err());
}

/// A signature is read in the one form it is written in: the same bytes in capital hex
/// would verify as sent by a peer and then be refused when its export is read back.
#[test]
fn a_signature_in_capitals_does_not_verify() {
    let mut entries = five();
    assert!(chain::verify(&entries, &key).is_ok());
    let e = &mut entries[2];
    let sig = e.signatures.get_mut(&e.issuer).unwrap();
    *sig = sig.to_uppercase();
    let err = chain::verify(&entries, &key).unwrap_err();
    assert_eq!(err.index, 2);
    assert!(err.reason.contains("does not verify"), "{err}");
}
