//! Replication over a long history: two members on their own RocksDB stores, linked by
//! their sync handlers, a year of daily signed statements under a convention declaring
//! 1 000 devices, several amendments, then a one-week partition. Both converge to the
//! same dossier and ledger; no sync message exceeds a page; the time per reconciliation
//! is printed (it should stay flat as history grows), never asserted.

use std::time::Instant;

use entente_ledger::chain::Kind;
use entente_ledger::pair::Pair;
use entente_peering::protocol::SYNC_PAGE_BYTES;

#[test]
fn a_year_of_statements_and_a_week_apart_converge_in_pages() {
    let (h, g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut p = Pair::open(h.path(), g.path(), 1000).unwrap();
    let mut largest = 0;
    for day in 1..=365u32 {
        p.day(20).unwrap();
        if day % 90 == 60 {
            p.amend(10).unwrap();
        }
        // Reconciled weekly (a debug build replays the 1 000-device dossier slowly);
        // the last week is the partition.
        if day % 7 != 0 || day > 357 {
            continue;
        }
        let t = Instant::now();
        let s = p.sync().unwrap();
        largest = largest.max(s.largest);
        if day % 28 == 0 {
            println!(
                "day {day:3}: sync {:6.2} ms, {} rounds, {} B sent, {} B received",
                t.elapsed().as_secs_f64() * 1e3,
                s.rounds,
                s.bytes_sent,
                s.bytes_received
            );
        }
    }
    let t = Instant::now();
    let s = p.sync().unwrap();
    println!(
        "after the partition: {:.2} ms, {} rounds, {} B sent, {} B received, largest {} B",
        t.elapsed().as_secs_f64() * 1e3,
        s.rounds,
        s.bytes_sent,
        s.bytes_received,
        s.largest
    );
    largest = largest.max(s.largest);
    assert!(p.converged().unwrap(), "both hold the same documents");
    assert!(largest <= SYNC_PAGE_BYTES, "largest message {largest} B");
    let records = p
        .host
        .accounts
        .records(Some(&p.agreement), Some(Kind::UsageStatement))
        .unwrap();
    assert_eq!(records.len(), 365);
    assert!(
        records.iter().all(|e| e.signatures.len() == 2),
        "every statement countersigned, the partition's too"
    );
    assert!(
        p.guest.accounts.rejections().is_empty(),
        "{:?}",
        p.guest.accounts.rejections()
    );
    assert!(
        p.host.accounts.rejections().is_empty(),
        "{:?}",
        p.host.accounts.rejections()
    );
    // Nothing left to move: one round, heads only.
    assert_eq!(p.sync().unwrap().rounds, 2, "one round per channel");
}

/// A replica that lost everything (a new node, a restored backup) catches up in pages,
/// each under the page size.
#[test]
fn a_fresh_replica_catches_up_in_bounded_pages() {
    let (h, g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let p = Pair::open(h.path(), g.path(), 1000).unwrap();
    for _ in 0..120 {
        p.day(200).unwrap();
    }
    let s = p.sync().unwrap();
    println!("catch-up of 120 statements: {s:?}");
    assert!(s.rounds > 3, "several pages: {s:?}");
    assert!(s.largest <= SYNC_PAGE_BYTES, "{s:?}");
    assert!(p.converged().unwrap());
}

fn pair(days: u32) -> (Pair, tempfile::TempDir, tempfile::TempDir) {
    let (h, g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let p = Pair::open(h.path(), g.path(), 1000).unwrap();
    for _ in 0..days {
        p.day(30).unwrap();
    }
    (p, h, g)
}

#[test]
fn a_peer_missing_n_records_receives_exactly_them_oldest_first() {
    let (p, _h, _g) = pair(40);
    p.sync().unwrap();
    for _ in 0..10 {
        p.day(30).unwrap();
    }
    let heads = p.guest.accounts.heads_for(&p.host.id).unwrap();
    let (page, more) = p
        .host
        .accounts
        .page_for(&p.guest.id, &heads, SYNC_PAGE_BYTES)
        .unwrap();
    assert!(!more);
    let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (40..50).collect::<Vec<u64>>());
    assert!(page.iter().all(|e| e.issuer == p.host.id));
    // What the guest holds all countersigned, nothing goes the other way.
    let heads = p.host.accounts.heads_for(&p.guest.id).unwrap();
    let (back, _) = p
        .guest
        .accounts
        .page_for(&p.host.id, &heads, SYNC_PAGE_BYTES)
        .unwrap();
    assert!(back.is_empty(), "{back:?}");
}

#[test]
fn a_page_never_exceeds_its_size_and_paging_loses_nothing() {
    let (p, _h, _g) = pair(60);
    let budget = 16 * 1024;
    let mut pages = 0;
    loop {
        let heads = p.guest.accounts.heads_for(&p.host.id).unwrap();
        let (page, more) = p.host.accounts.page_for(&p.guest.id, &heads, budget).unwrap();
        if page.is_empty() {
            break;
        }
        let size: usize = page
            .iter()
            .map(|e| entente_peering::sync::encode(e).unwrap().len())
            .sum();
        assert!(size <= budget || page.len() == 1, "page of {size} B");
        assert_eq!(
            more,
            p.host
                .accounts
                .ledger
                .head(&p.agreement, &p.host.id)
                .unwrap()
                .next
                > page.last().unwrap().seq + 1
        );
        let entries = page.into_iter().map(Into::into).collect();
        assert!(p.guest.accounts.merge_from(&p.host.id, entries));
        pages += 1;
    }
    assert!(pages > 3, "{pages} pages");
    let l = |m: &entente_ledger::pair::Member| m.accounts.ledger.entries(None).unwrap().len();
    assert_eq!(l(&p.guest), 60);
}

#[test]
fn bad_input_is_refused_and_nothing_held_is_lost() {
    use entente_ledger::accounts::{ChainHead, LedgerMsg, MAX_PENDING, WireEntry};
    use entente_peering::SyncHandler;
    use entente_peering::sync::encode;
    let (p, _h, _g) = pair(5);
    p.sync().unwrap();
    let held = p.guest.accounts.ledger.entries(None).unwrap();
    let refusals = p.guest.accounts.rejections().len();

    // Not CBOR at all: refused, recorded, nothing answered.
    assert!(
        p.guest
            .accounts
            .on_request(&p.host.id, b"\xff\x00garbage".to_vec())
            .is_empty()
    );
    // A heads list beyond the limit.
    let huge = LedgerMsg {
        heads: vec![ChainHead {
            agreement: p.agreement.clone(),
            issuer: p.host.id.clone(),
            next: 1,
            last: String::new(),
            pending: vec![0; MAX_PENDING + 1],
        }],
        ..Default::default()
    };
    assert!(
        p.guest
            .accounts
            .on_request(&p.host.id, encode(&huge).unwrap())
            .is_empty()
    );
    // A record altered after signing, and one that skips a place in the chain.
    let mut next = p.host.accounts.ledger.entries(None).unwrap().pop().unwrap();
    next.seq += 2;
    let mut altered: WireEntry = p
        .host
        .accounts
        .ledger
        .get(&p.agreement, &p.host.id, 3)
        .unwrap()
        .into();
    altered.body[1] ^= 1;
    let bad = LedgerMsg {
        heads: vec![],
        page: vec![altered, next.into()],
        more: false,
    };
    let answer = p.guest.accounts.on_request(&p.host.id, encode(&bad).unwrap());
    assert!(
        LedgerMsg::from_peer(&answer).is_ok(),
        "a well-formed request is answered"
    );
    assert_eq!(p.guest.accounts.rejections().len(), refusals + 4);
    assert_eq!(
        p.guest.accounts.ledger.entries(None).unwrap(),
        held,
        "nothing lost or changed"
    );
    assert!(p.converged().unwrap());
}
