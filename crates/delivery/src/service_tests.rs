//! The service's REST-pull cursor and file-push timing.
use entente_model::{DevEui, SystemClock};

use super::*;
use crate::recipient::NewRecipient;

fn with_queue(dir: &std::path::Path, messages: u64) -> (Arc<Delivery>, u64) {
    let store = Arc::new(Store::open(dir, crate::tables::ALL).unwrap());
    let d = Delivery::load(
        store.clone(),
        Arc::new(SystemClock),
        DeliveryConfig::default(),
        CancellationToken::new(),
    )
    .unwrap();
    let r = d
        .create(NewRecipient {
            name: "connector".into(),
            group: "meters".into(),
            kind: RecipientKind::RestPull,
        })
        .unwrap();
    for seq in 1..=messages {
        let p = Pending {
            dev_eui: DevEui([1; 8]),
            body: format!("{{\"seq\":{seq}}}").into_bytes(),
            enqueued_at: Utc::now(),
        };
        store.put::<Queue>(&(r.id, seq), &p, Durability::Sync).unwrap();
    }
    (d, r.id)
}

#[tokio::test]
async fn a_cursor_beyond_what_was_served_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (d, id) = with_queue(dir.path(), 5);
    for cursor in [1, 5, u64::MAX] {
        let e = d.pull(id, cursor, 10).unwrap_err();
        assert!(matches!(e, DeliveryError::CursorAhead { served: 0, .. }), "{e}");
    }
    let (page, next) = d.pull(id, 0, 2).unwrap();
    assert_eq!((page.len(), next), (2, 2));
    assert!(matches!(
        d.pull(id, 3, 10),
        Err(DeliveryError::CursorAhead { cursor: 3, served: 2 })
    ));
    // The connector's real cursor acknowledges the two it read, and only those.
    let (page, next) = d.pull(id, 2, 10).unwrap();
    assert_eq!((page.len(), next), (3, 5));
    assert_eq!(page.first().and_then(|m| m["seq"].as_u64()), Some(3));
}

#[tokio::test]
async fn what_was_served_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (d, id) = with_queue(dir.path(), 3);
    assert_eq!(d.pull(id, 0, 10).unwrap().1, 3);
    // The workers hold the service (and its store) until they see the shutdown.
    d.shutdown.cancel();
    while Arc::strong_count(&d) > 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(d);
    let store = Arc::new(Store::open(dir.path(), crate::tables::ALL).unwrap());
    let d = Delivery::load(
        store,
        Arc::new(SystemClock),
        DeliveryConfig::default(),
        CancellationToken::new(),
    )
    .unwrap();
    let (page, next) = d.pull(id, 3, 10).unwrap();
    assert_eq!((page.len(), next), (0, 3));
}

#[test]
fn a_file_push_is_due_after_its_interval_and_never_with_an_impossible_one() {
    let last = Utc::now();
    let later = last + TimeDelta::seconds(60);
    assert!(file_due(last, later, 60));
    assert!(!file_due(last, later, 61));
    assert!(!file_due(last, later, u64::MAX));
    assert!(!file_due(last, later, i64::MAX as u64));
}
