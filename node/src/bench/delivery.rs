//! `entente bench delivery`: messages per second from the persistent delivery queue to a
//! local HTTP receiver, each one POSTed, acknowledged with a 2xx and removed from RocksDB
//! before the next goes (the order and durability the conventions ask for).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use entente_delivery::tables::{Pending, Queue, Recipients};
use entente_delivery::{Delivery, DeliveryConfig, Recipient, RecipientKind};
use entente_model::{DevEui, SharedClock, SystemClock};
use entente_store::{Durability, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct DeliveryArgs {
    /// Messages queued per recipient before the clock starts.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Recipients (each has its own worker and its own ordered queue).
    #[arg(long, default_value_t = 1)]
    pub recipients: u64,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

fn body(seq: u64) -> Vec<u8> {
    // The shape and size of a real uplink message (one gateway, decoded payload).
    serde_json::to_vec(&json!({
        "seq": seq, "dev_eui": format!("70b3d5e7{seq:08x}"), "dev_addr": "26011234",
        "device_name": format!("Compteur {seq}"), "group": "bench", "sub_group": "eau",
        "fport": 1, "fcnt": seq, "confirmed": false, "encrypted": false,
        "payload_hex": "0040e20100", "payload_base64": "AEDiAQA=",
        "rssi": -97, "snr": 4.5, "sf": 9, "data_rate": 3, "frequency_hz": 868_300_000,
        "gateway_count": 1,
        "gateways": [{"eui": "0080000000a00001", "rssi": -97, "snr": 4.5,
                      "time": "2026-11-23T10:00:00Z", "tmst": 1_234_567}],
        "time": "2026-11-23T10:00:00Z",
        "decoded": {"index_litres": 123_456, "index_m3": 123.456, "leak": false},
    }))
    .unwrap_or_default()
}

async fn receiver(counter: Arc<AtomicU64>, stop: CancellationToken) -> Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |b: axum::body::Bytes| {
            let c = counter.clone();
            async move {
                if !b.is_empty() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(format!("http://{addr}/hook"))
}

async fn run_once(a: &DeliveryArgs) -> Result<Value> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let store = Arc::new(Store::open(dir.path(), entente_delivery::tables::ALL)?);
    let stop = CancellationToken::new();
    let received = Arc::new(AtomicU64::new(0));
    let url = receiver(received.clone(), stop.clone()).await?;
    let now = Utc::now();
    let mut seq = 0u64;
    for id in 1..=a.recipients {
        let r = Recipient {
            id,
            name: format!("bench {id}"),
            group: "bench".into(),
            kind: RecipientKind::HttpPush {
                url: url.clone(),
                authorization: None,
            },
            created_at: now,
        };
        store.put::<Recipients>(&id, &serde_json::to_string(&r)?, Durability::Sync)?;
        let mut batch = store.batch();
        for _ in 0..a.messages {
            seq += 1;
            let p = Pending {
                dev_eui: DevEui(seq.to_be_bytes()),
                body: body(seq),
                enqueued_at: now,
            };
            batch.put::<Queue>(&(id, seq), &p)?;
            if batch.len() >= 10_000 {
                store.write(std::mem::replace(&mut batch, store.batch()), Durability::Buffered)?;
            }
        }
        store.write(batch, Durability::Buffered)?;
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let d = Delivery::load(store.clone(), clock, DeliveryConfig::default(), stop.clone())?;
    let total = a.messages * a.recipients;
    let start = Instant::now();
    d.start();
    let deadline = start + Duration::from_secs(600);
    loop {
        let left: u64 = d.list().iter().map(|(_, depth, _)| depth).sum();
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let delivered: u64 = d.list().iter().map(|(_, _, s)| s.delivered).sum();
    stop.cancel();
    let got = received.load(Ordering::Relaxed);
    Ok(json!({
        "messages": total,
        "delivered": delivered,
        "received": got,
        "seconds": secs,
        "deliveries_per_second": (delivered as f64 / secs).round(),
    }))
}

pub async fn delivery(a: DeliveryArgs) -> Result<Value> {
    if a.messages == 0 || a.recipients == 0 || a.runs == 0 {
        bail!("messages, recipients and runs must be at least 1");
    }
    let mut runs = Vec::new();
    for _ in 0..a.runs {
        runs.push(run_once(&a).await?);
    }
    let mut rates: Vec<f64> = runs
        .iter()
        .filter_map(|r| r["deliveries_per_second"].as_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    let lost: u64 = runs
        .iter()
        .map(|r| {
            r["messages"].as_u64().unwrap_or(0)
                - r["received"]
                    .as_u64()
                    .unwrap_or(0)
                    .min(r["messages"].as_u64().unwrap_or(0))
        })
        .sum();
    Ok(json!({
        "bench": "delivery",
        "recipients": a.recipients,
        "messages_per_recipient": a.messages,
        "path": "RocksDB queue -> HTTP POST (keep-alive, loopback) -> 2xx -> delete in WAL",
        "runs": runs,
        "median_deliveries_per_second": rates.get(rates.len() / 2).copied().unwrap_or(0.0),
        "lost": lost,
    }))
}
