//! Arbitrary bytes as a message of sync channel `ledger` (`LedgerMsg`: chain heads and a
//! page of records), read as the accounts read a peer's: the limits of
//! `LedgerMsg::from_peer`, a CBOR round trip, then the page's records checked as a chain
//! (`chain::verify`: sequence, links, hashes, signatures by the members' keys), their
//! bodies read as usage statements and disputes, and two statements compared as the
//! guest compares the host's with its own (tolerance, differing devices, the dispute).
//! Records that verify stay verified through the CSV export and back.

#![no_main]

#[path = "shared/members.rs"]
mod members;

use entente_documents::Dossier;
use entente_documents::chain::{self, Entry};
use entente_documents::ledger_sync::LedgerMsg;
use entente_documents::statement::{self, Dispute, UsageStatement};
use entente_wire::sync::{decode, encode};
use libfuzzer_sys::fuzz_target;
use members::key_of;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = LedgerMsg::from_peer(data) else {
        return;
    };
    let bytes = encode(&msg).expect("a decoded message encodes");
    let again: LedgerMsg = decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(message)) differs");

    let entries: Vec<Entry> = msg.page.into_iter().map(Entry::from).collect();
    let statements: Vec<UsageStatement> = entries.iter().filter_map(|e| e.body_json().ok()).collect();
    let tolerance = entries
        .iter()
        .filter_map(|e| e.body_json::<Dispute>().ok())
        .map(|d| d.tolerance_per_mille)
        .next()
        .unwrap_or(10);
    if let [a, b, ..] = &statements[..] {
        let _ = statement::difference(&a.summary, &b.summary);
        if !statement::within_tolerance(&a.summary, &b.summary, tolerance) {
            let e = &entries[0];
            let _ = statement::dispute(a, &e.issuer, e.seq, &e.hash, &b.serving, &b.summary, tolerance);
        }
    }

    if chain::verify(&entries, &key_of).is_err() {
        return;
    }
    // A verified chain's hashes, links and signatures are hex; an agreement id that
    // could be one (what the book accepts) leaves the CSV export nothing to escape.
    if entries.iter().all(|e| Dossier::valid_id(&e.agreement)) {
        let back = chain::from_csv(&chain::to_csv(&entries)).expect("an export reads back");
        assert_eq!(back, entries, "from_csv(to_csv(records)) differs");
        chain::verify(&back, &key_of).expect("records read back verify");
    }
});
