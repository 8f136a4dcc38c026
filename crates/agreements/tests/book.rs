//! Two members' books on their own RocksDB stores and one test clock: every transition
//! through the operator's actions (legal ones succeed, illegal ones give a clear error and
//! change nothing), replication by the sync handler, reconciliation after a disconnection,
//! and a restart that reloads the same state.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use entente_agreements::book::TABLES;
use entente_agreements::*;
use entente_model::{DevEui, ManualClock, MemberId, SharedClock};
use entente_store::Store;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn id(s: &str) -> MemberId {
    s.parse().unwrap()
}

const EXAMPLE: &str = include_str!("../../../federation/val-de-loire/convention-tours-smo.toml");

struct Side {
    book: Arc<Book>,
    _dir: tempfile::TempDir,
}

fn keys() -> entente_agreements::book::Keys {
    Arc::new(|m: &MemberId| match m.as_str() {
        "tours-metropole" => Some(SigningKey::from_bytes(&[1; 32]).verifying_key()),
        "smo-vdln" => Some(SigningKey::from_bytes(&[2; 32]).verifying_key()),
        _ => None,
    })
}

fn open(member: &str, seed: u8, clock: &SharedClock, dir: tempfile::TempDir) -> Side {
    let store = Arc::new(Store::open(dir.path(), TABLES).unwrap());
    let book = Book::load(
        id(member),
        SigningKey::from_bytes(&[seed; 32]),
        store,
        clock.clone(),
        keys(),
        Default::default(),
    )
    .unwrap();
    Side { book, _dir: dir }
}

/// What the federation does on a connection: a session from `a`, answered by `b`'s
/// handler, exchanging heads and then what the other lacks until both agree.
fn sync(a: &Side, b: &Side) {
    let mut s = a.book.session(b.book.me().clone());
    entente_peering::sync::reconcile_local(&mut s, &*b.book, a.book.me()).unwrap();
}

fn err(r: Result<View, BookError>) -> String {
    r.expect_err("must be refused").to_string()
}

#[test]
fn every_transition_through_the_books_with_the_test_clock() {
    let manual = Arc::new(ManualClock::new(t("2025-12-01T09:00:00Z")));
    let clock: SharedClock = manual.clone();
    let tours = open("tours-metropole", 1, &clock, tempfile::tempdir().unwrap());
    let smo = open("smo-vdln", 2, &clock, tempfile::tempdir().unwrap());
    let a: Agreement = toml::from_str(EXAMPLE).unwrap();
    let id_ = a.id.clone();

    // Proposed by the SMO; Tours has until 1 January to answer.
    let v = smo.book.propose(&a).unwrap();
    assert_eq!(v.state, State::Proposed);
    assert_eq!(v.answer_due, t("2026-01-01T09:00:00Z"));
    assert!(err(smo.book.propose(&a)).contains("already exists"));
    assert!(err(smo.book.approve(&id_)).contains("nothing waits for smo-vdln"));
    for illegal in [Book::terminate, Book::suspend, Book::resume] {
        assert!(err(illegal(&smo.book, &id_)).contains("Proposed"));
    }
    sync(&smo, &tours);
    assert_eq!(tours.book.show(&id_).unwrap().state, State::Proposed);
    manual.advance(TimeDelta::days(40));
    assert!(tours.book.show(&id_).unwrap().overdue, "the month has passed");
    manual.set(t("2025-12-10T09:00:00Z"));

    // Approved before the start date: approved, then active on 1 January 2026.
    assert_eq!(tours.book.approve(&id_).unwrap().state, State::Approved);
    assert!(err(tours.book.approve(&id_)).contains("nothing waits"));
    assert!(err(tours.book.reject(&id_)).contains("nothing waits"));
    sync(&tours, &smo);
    manual.set(t("2026-01-01T00:00:00Z"));
    for s in [&tours, &smo] {
        let v = s.book.show(&id_).unwrap();
        assert_eq!(v.state, State::Active);
        assert_eq!(v.signed_by, vec![id("smo-vdln"), id("tours-metropole")]);
    }
    assert_eq!(
        serde_json::to_vec(&tours.book.dossier(&id_).unwrap()).unwrap(),
        serde_json::to_vec(&smo.book.dossier(&id_).unwrap()).unwrap(),
    );

    // Suspended and resumed by the host.
    assert_eq!(tours.book.suspend(&id_).unwrap().state, State::Suspended);
    assert!(err(tours.book.suspend(&id_)).contains("Suspended"));
    assert_eq!(tours.book.resume(&id_).unwrap().state, State::Active);
    assert!(err(tours.book.resume(&id_)).contains("Active"));

    // An access request: filed by the guest, answered by the host.
    let mut user = a.users[0].clone();
    user.name = "CHU de Tours".into();
    user.devices = [DevEui([0x11; 8])].into_iter().collect();
    assert!(err(tours.book.file_access(&id_, "r1", user.clone())).contains("only the guest"));
    smo.book.file_access(&id_, "r1", user).unwrap();
    sync(&smo, &tours);
    assert!(err(smo.book.answer_access(&id_, "r1", true)).contains("only the host"));
    tours.book.answer_access(&id_, "r1", true).unwrap();
    assert!(err(tours.book.answer_access(&id_, "r1", false)).contains("already answered"));

    // An amendment proposed by Tours, rejected by the SMO, proposed again, approved.
    let mut v2 = a.clone();
    v2.notice_months = 6;
    tours.book.amend(&id_, &v2).unwrap();
    assert!(err(tours.book.amend(&id_, &v2)).contains("second amendment"));
    sync(&tours, &smo);
    smo.book.reject(&id_).unwrap();
    sync(&smo, &tours);
    assert!(tours.book.show(&id_).unwrap().pending_amendment.is_none());
    tours.book.amend(&id_, &v2).unwrap();
    sync(&tours, &smo);
    let v = smo.book.approve(&id_).unwrap();
    assert_eq!((v.version, v.agreement.notice_months), (2, 6));
    assert!(
        v.agreement.declared_devices().contains(&DevEui([0x11; 8])),
        "annex kept"
    );

    // The two are disconnected: each acts alone, then they reconcile to the same state.
    manual.set(t("2026-06-01T00:00:00Z"));
    smo.book.terminate(&id_).unwrap();
    manual.advance(TimeDelta::seconds(1));
    let (review, _) = tours.book.review(&id_).unwrap();
    assert_eq!(review.quarter, "2026-Q2");
    assert_eq!(
        tours.book.show(&id_).unwrap().state,
        State::Active,
        "not told yet"
    );
    sync(&tours, &smo);
    for s in [&tours, &smo] {
        let v = s.book.show(&id_).unwrap();
        assert_eq!(v.state, State::Terminating);
        assert_eq!(
            v.ends_at,
            Some(t("2026-12-01T00:00:00Z")),
            "six months' notice (v2)"
        );
    }
    assert_eq!(smo.book.reviews(&id_).len(), 1, "the review travelled too");
    assert_eq!(
        serde_json::to_vec(&tours.book.dossier(&id_).unwrap()).unwrap(),
        serde_json::to_vec(&smo.book.dossier(&id_).unwrap()).unwrap(),
    );
    assert!(err(smo.book.terminate(&id_)).contains("Terminating"));

    // The notice runs out; nothing more is legal.
    manual.set(t("2026-12-01T00:00:00Z"));
    assert_eq!(tours.book.show(&id_).unwrap().state, State::Ended);
    for illegal in [
        Book::terminate,
        Book::suspend,
        Book::resume,
        Book::approve,
        Book::reject,
    ] {
        assert!(illegal(&tours.book, &id_).is_err());
    }
    assert!(!tours.book.show(&id_).unwrap().in_force);

    // A restart reloads the same state from the store.
    let Side { book, _dir } = tours;
    drop(book);
    let again = open("tours-metropole", 1, &clock, _dir);
    assert_eq!(again.book.show(&id_).unwrap().state, State::Ended);
    assert_eq!(again.book.reviews(&id_).len(), 1);
}

#[test]
fn a_rejected_proposal_stays_rejected() {
    let clock: SharedClock = Arc::new(ManualClock::new(t("2026-02-01T00:00:00Z")));
    let tours = open("tours-metropole", 1, &clock, tempfile::tempdir().unwrap());
    let smo = open("smo-vdln", 2, &clock, tempfile::tempdir().unwrap());
    let a: Agreement = toml::from_str(EXAMPLE).unwrap();
    smo.book.propose(&a).unwrap();
    sync(&smo, &tours);
    assert!(
        err(smo.book.reject(&a.id)).contains("may not do this"),
        "not the proposer"
    );
    assert_eq!(tours.book.reject(&a.id).unwrap().state, State::Rejected);
    sync(&tours, &smo);
    assert_eq!(smo.book.show(&a.id).unwrap().state, State::Rejected);
    for illegal in [Book::approve, Book::terminate, Book::suspend, Book::resume] {
        assert!(illegal(&tours.book, &a.id).is_err());
    }
    // An id that would not survive a path, a file name or a CSV export is refused.
    let mut odd = a.clone();
    odd.id = "tours,smo/2026".into();
    assert!(err(smo.book.propose(&odd)).contains("not an agreement id"));
    // A member that is not a party cannot propose it.
    let mut foreign = a.clone();
    foreign.id = "agglo-smo".into();
    foreign.host = id("agglopolys");
    assert!(err(tours.book.propose(&foreign)).contains("not a party"));
}

/// Two books holding one active agreement, at 10:00 on 1 June 2026.
fn active_pair() -> (Arc<ManualClock>, Side, Side, String) {
    let manual = Arc::new(ManualClock::new(t("2025-12-01T09:00:00Z")));
    let clock: SharedClock = manual.clone();
    let tours = open("tours-metropole", 1, &clock, tempfile::tempdir().unwrap());
    let smo = open("smo-vdln", 2, &clock, tempfile::tempdir().unwrap());
    let a: Agreement = toml::from_str(EXAMPLE).unwrap();
    smo.book.propose(&a).unwrap();
    sync(&smo, &tours);
    tours.book.approve(&a.id).unwrap();
    sync(&tours, &smo);
    manual.set(t("2026-06-01T10:00:00Z"));
    (manual, tours, smo, a.id)
}

fn send_reviews(to: &Side, from: &str, reviews: Vec<SignedReview>) -> usize {
    to.book.merge_from(
        &id(from),
        SyncMsg {
            dossiers: vec![],
            reviews,
        },
    )
}

#[test]
fn a_review_is_kept_only_from_a_party_signed_by_its_preparer_for_a_quarter_begun() {
    let (_clock, tours, smo, id_) = active_pair();
    let (review, signed) = tours.book.review(&id_).unwrap();
    let refusals = smo.book.rejections().len();

    let mut unsigned = signed.clone();
    unsigned.signatures.clear();
    let mut future = review.clone();
    (future.quarter, future.period_start, future.period_end) =
        entente_agreements::review::quarter_of(t("2100-01-01T00:00:00Z"));
    future.quarter = "2100-Q1".into();
    let mut future = SignedReview::new(&future).unwrap();
    future
        .sign(&id("tours-metropole"), &SigningKey::from_bytes(&[1; 32]))
        .unwrap();
    let mut forged = signed.clone();
    forged.bytes[20] ^= 1;
    let attempts = [
        ("a third member sends it", "orleans-metropole", signed.clone()),
        ("nobody signed it", "tours-metropole", unsigned),
        ("its quarter has not begun", "tours-metropole", future),
        ("its bytes were changed", "tours-metropole", forged),
    ];
    for (what, from, r) in attempts {
        assert_eq!(send_reviews(&smo, from, vec![r]), 0, "{what}");
        assert!(smo.book.reviews(&id_).is_empty(), "{what}: nothing kept");
    }
    assert_eq!(smo.book.rejections().len(), refusals + 4, "each refusal recorded");

    assert_eq!(send_reviews(&smo, "tours-metropole", vec![signed]), 1);
    assert_eq!(smo.book.reviews(&id_).len(), 1);
}

#[test]
fn two_reviews_of_one_quarter_end_as_the_same_one_on_both_sides() {
    let (clock, tours, smo, id_) = active_pair();
    // Each prepares its own before hearing of the other's; the host's is kept by both,
    // whichever side syncs first.
    let (_, guests) = smo.book.review(&id_).unwrap();
    clock.advance(TimeDelta::seconds(5));
    let (_, hosts) = tours.book.review(&id_).unwrap();
    assert_ne!(guests.bytes, hosts.bytes);
    sync(&smo, &tours);
    let held = |s: &Side| {
        s.book
            .reviews(&id_)
            .into_iter()
            .map(|(_, r)| r.bytes)
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&tours), vec![hosts.bytes.clone()]);
    assert_eq!(held(&smo), vec![hosts.bytes.clone()]);
    // The guest's committee signs the kept one, and both end with both signatures.
    smo.book.review(&id_).unwrap();
    sync(&smo, &tours);
    for s in [&tours, &smo] {
        let (_, r) = s.book.reviews(&id_).pop().unwrap();
        assert_eq!(r.bytes, hosts.bytes);
        assert_eq!(r.signatures.len(), 2);
    }
}

#[test]
fn acts_dated_beyond_the_clock_or_before_what_they_follow_are_refused_and_not_stored() {
    let (_clock, tours, smo, id_) = active_pair();
    let held = smo.book.dossier(&id_).unwrap();
    let head = held.head().unwrap().clone();
    let head_at = head.act().unwrap().at;
    let host_key = SigningKey::from_bytes(&[1; 32]);
    let suspend = |at: DateTime<Utc>, follows: Option<String>| {
        let act = Act {
            agreement: id_.clone(),
            by: id("tours-metropole"),
            at,
            follows,
            kind: ActKind::Suspend,
        };
        let mut d = held.clone();
        d.put_act(SignedAct::sign(&act, &host_key).unwrap()).unwrap();
        d
    };
    let refusals = smo.book.rejections().len();
    let attempts = [
        (
            "backdated before the act it follows",
            suspend(head_at - TimeDelta::days(30), Some(head.id())),
        ),
        (
            "dated in 2100",
            suspend(t("2100-01-01T00:00:00Z"), Some(head.id())),
        ),
        ("naming no act", suspend(t("2026-06-01T10:00:00Z"), None)),
        (
            "following an act nobody holds",
            suspend(t("2026-06-01T10:00:00Z"), Some("00".repeat(32))),
        ),
    ];
    for (what, d) in attempts {
        let msg = SyncMsg {
            dossiers: vec![d],
            reviews: vec![],
        };
        assert_eq!(smo.book.merge_from(&id("tours-metropole"), msg), 0, "{what}");
        assert_eq!(smo.book.dossier(&id_).unwrap(), held, "{what}: nothing stored");
        assert_eq!(smo.book.show(&id_).unwrap().state, State::Active, "{what}");
    }
    assert_eq!(smo.book.rejections().len(), refusals + 4);

    // The same act made honestly, on the dossier as it stands, goes through.
    tours.book.suspend(&id_).unwrap();
    sync(&tours, &smo);
    assert_eq!(smo.book.show(&id_).unwrap().state, State::Suspended);
    let d = smo.book.dossier(&id_).unwrap();
    let last = d.head().unwrap().act().unwrap();
    assert_eq!(
        last.follows,
        Some(head.id()),
        "the chain names the act it was made on"
    );
}
