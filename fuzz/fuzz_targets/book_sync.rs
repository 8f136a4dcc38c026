//! Arbitrary bytes as a message of sync channel `agreements` (`BookMsg`: heads and a
//! page of dossiers and committee reviews), read as the book reads a peer's: the limits
//! of `BookMsg::from_peer`, then each dossier checked as `merge_one` checks one it does
//! not hold (parties, signatures and replay with the members' keys, the acts' causal
//! chain and dates) and each review's signatures and period. A dossier accepted stays
//! accepted: re-encoded it decodes to the same dossier, which replays to the same
//! record, and merging it with itself still replays.

#![no_main]

#[path = "shared/members.rs"]
mod members;

use chrono::{DateTime, Utc};
use entente_documents::Dossier;
use entente_documents::book_sync::BookMsg;
use entente_documents::review;
use entente_wire::sync::{decode, encode};
use libfuzzer_sys::fuzz_target;
use members::key_of;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = BookMsg::from_peer(data) else {
        return;
    };
    let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().expect("a date");
    for d in &msg.page.dossiers {
        dossier(d, now);
    }
    let mut verified = Vec::new();
    for r in &msg.page.reviews {
        let _ = r.key();
        if let (Ok(rv), Ok(_)) = (r.review(), r.verify(&key_of)) {
            let _ = review::check_period(&rv, now);
            verified.push(r);
        }
    }
    if let [a, b, ..] = verified[..] {
        let _ = review::preferred(a, b);
    }
});

fn dossier(d: &Dossier, now: DateTime<Utc>) {
    let _ = Dossier::valid_id(&d.id);
    if d.parties().is_err() {
        return;
    }
    let Ok(record) = d.replay(&key_of, now) else {
        return;
    };
    if d.check_new_acts(None, now).is_err() {
        return;
    }
    let bytes = encode(d).expect("a dossier encodes");
    let again: Dossier = decode(&bytes).expect("a re-encoded dossier decodes");
    assert_eq!(&again, d, "decode(encode(dossier)) differs");
    let replayed = again
        .replay(&key_of, now)
        .expect("an accepted dossier replays again");
    assert_eq!(
        json(&replayed),
        json(&record),
        "the same dossier replays differently"
    );
    let merged = d
        .merged(d, &key_of, now)
        .expect("an accepted dossier merged with itself replays");
    merged
        .check_new_acts(Some(d), now)
        .expect("merging a dossier with itself adds no act");
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}
