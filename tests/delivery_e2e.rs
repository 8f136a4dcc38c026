//! End-to-end delivery to applications: a node process, uplinks through an emulated
//! gateway over real UDP, and a real HTTP receiver started by the test that can be told to
//! fail (500, 404, 410, no answer). The node's test clock stands in for minutes and days.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use entente::process::{NodeProcess, metric};
use entente_lns::DeviceClass;
use entente_model::{DevAddr, DevEui};
use entente_sim::{GatewayEmulator, SimDevice};
use reqwest::Method;
use serde_json::{Value, json};
use support::receiver::*;
use support::*;

/// A node with the test clock, a short push timeout and a 2-minute backoff cap.
async fn delivery_net() -> Net {
    net_with(1, |c| {
        c.replace(
            "key_file = \"node.key\"",
            "key_file = \"node.key\"\ntest_clock = true",
        )
        .replace("# http_timeout = \"10s\"", "http_timeout = \"300ms\"")
        .replace("# backoff_max = \"5m\"", "backoff_max = \"2m\"")
    })
    .await
}

struct Fleet {
    devices: Vec<(DevEui, SimDevice)>,
    tmst: u32,
}

/// `n` ABP devices of group AGGLOPOLYS with the Cayenne LPP decoder.
async fn fleet(node: &NodeProcess, n: u8) -> Fleet {
    let mut rows = Vec::new();
    let mut devices = Vec::new();
    for i in 0..n {
        let eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 4, i + 1]);
        let addr = DevAddr(0x2601_4000 + u32::from(i));
        rows.push(format!("{};cayenne-lpp", abp_row(eui, addr, "A")));
        devices.push((eui, abp_device(eui, addr, DeviceClass::A)));
    }
    import_csv(
        node,
        format!(
            "{HEADER};Décodeur
{}
",
            rows.join(
                "
"
            )
        ),
    )
    .await;
    Fleet {
        devices,
        tmst: 1_000_000,
    }
}

impl Fleet {
    /// One uplink from device `i`: a Cayenne LPP temperature whose tenths are the FCnt.
    async fn send(&mut self, gw: &GatewayEmulator, i: usize) -> u32 {
        let (_, d) = &mut self.devices[i];
        let fcnt = d.session.as_ref().map_or(0, |s| s.fcnt_up);
        let t = (fcnt as u16).to_be_bytes();
        let f = d.uplink(2, &[1, 103, t[0], t[1]], false, 5, 0).unwrap();
        self.tmst = self.tmst.wrapping_add(3_000_000);
        push(gw, &f, self.tmst, 7.5).await;
        fcnt
    }

    /// `rounds` uplinks from every device, interleaved; waits until the node stored them.
    async fn round_robin(&mut self, node: &NodeProcess, gw: &GatewayEmulator, rounds: usize) {
        let before: usize = self.stored(node).await;
        for _ in 0..rounds {
            for i in 0..self.devices.len() {
                self.send(gw, i).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let want = before + rounds * self.devices.len();
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.stored(node).await < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "uplinks not stored in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stored(&self, node: &NodeProcess) -> usize {
        let mut n = 0;
        for (eui, _) in &self.devices {
            let v = node
                .get_json(&format!("/v1/devices/{eui}/uplinks?limit=1000"))
                .await
                .unwrap();
            n += v["count"].as_u64().unwrap() as usize;
        }
        n
    }
}

async fn advance(node: &NodeProcess, secs: u64) {
    node.post_json("/v1/clock", &json!({ "advance_secs": secs }))
        .await
        .unwrap();
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn m(node: &NodeProcess, series: &str) -> f64 {
    metric(&node.metrics().await.unwrap(), series).unwrap_or(0.0)
}

async fn recipient(node: &NodeProcess, kind: Value) -> u64 {
    let r = node
        .post_json(
            "/v1/recipients",
            &json!({ "name": "application", "group": "AGGLOPOLYS", "kind": kind }),
        )
        .await
        .unwrap();
    r["id"].as_u64().unwrap()
}

/// (dev_eui, fcnt) of each message, and the FCnts per device in arrival order.
fn by_device(msgs: &[Value]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in msgs {
        out.entry(m["dev_eui"].as_str().unwrap().to_string())
            .or_default()
            .push(m["fcnt"].as_u64().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_ten_minutes_then_every_message_in_order() {
    let n = delivery_net().await;
    let gw = &n.gws[0];
    let rx = Receiver::start().await;
    let mut fleet = fleet(&n.node, 3).await;
    let id = recipient(&n.node, json!({ "type": "http_push", "url": rx.url("/hook") })).await;

    rx.set(E500);
    fleet.round_robin(&n.node, gw, 4).await;
    until("a first failed attempt", async || rx.hits() >= 1).await;

    // Ten minutes of test clock, the receiver failing in every way it can.
    for mode in [E500, E404, E410, HANG] {
        rx.set(mode);
        let before = rx.hits();
        advance(&n.node, 150).await;
        until("a retry", async || rx.hits() > before).await;
    }
    let series = |r: &str| format!("entente_delivery_attempts_total{{recipient=\"{id}\",result=\"{r}\"}}");
    until("the timeout to be counted", async || {
        m(&n.node, &series("timeout")).await >= 1.0
    })
    .await;
    assert!(rx.posts().is_empty(), "nothing accepted while the receiver fails");
    assert!(m(&n.node, &series("http_5xx")).await >= 1.0);
    assert!(
        m(&n.node, &series("http_4xx")).await >= 2.0,
        "404 and 410 retried"
    );
    let retries = m(
        &n.node,
        &format!("entente_delivery_retries_total{{recipient=\"{id}\"}}"),
    )
    .await;
    assert!(retries >= 4.0, "retries counted: {retries}");
    let shown = n.node.get_json(&format!("/v1/recipients/{id}")).await.unwrap();
    assert_eq!(shown["queue_depth"], 12, "{shown}");
    assert!(shown["state"]["last_error"].is_string(), "{shown}");

    rx.set(OK);
    advance(&n.node, 150).await;
    until("all 12 messages", async || rx.posts().len() >= 12).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = rx.posts();
    assert_eq!(posts.len(), 12, "each message exactly once");
    for (eui, fcnts) in by_device(&posts) {
        assert_eq!(fcnts, vec![0, 1, 2, 3], "{eui}: in order, none lost");
    }
    let seqs: Vec<u64> = posts.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "arrival order is uplink order"
    );

    // The message carries what the conventions list.
    let p = &posts[0];
    assert_eq!(p["fport"], 2);
    assert_eq!(p["payload_hex"], "01670000");
    assert_eq!(p["payload_base64"], "AWcAAA==");
    assert_eq!(p["decoded"]["temperature_1"], 0.0, "{p}");
    assert_eq!(p["sf"], 7);
    assert_eq!(p["frequency_hz"], 868_100_000);
    assert_eq!(p["gateway_count"], 1);
    assert_eq!(p["gateways"].as_array().unwrap().len(), 1);
    assert_eq!(p["rssi"], -60);
    assert_eq!(p["snr"], 7.5);
    assert!(p["dev_addr"].is_string() && p["time"].is_string(), "{p}");
    assert_eq!(posts[3]["decoded"]["temperature_1"], 0.1, "{}", posts[3]);

    // A 2xx deletes: nothing left, nothing sent again.
    let shown = n.node.get_json(&format!("/v1/recipients/{id}")).await.unwrap();
    assert_eq!(shown["queue_depth"], 0, "{shown}");
    assert_eq!(shown["state"]["delivered"], 12, "{shown}");
    assert_eq!(m(&n.node, &series("ok")).await, 12.0);
    assert_eq!(
        m(
            &n.node,
            &format!("entente_delivery_queue_depth{{recipient=\"{id}\"}}")
        )
        .await,
        0.0
    );
    advance(&n.node, 600).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.posts().len(), 12);
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_messages_expire_after_48_hours_and_are_counted() {
    let n = delivery_net().await;
    let gw = &n.gws[0];
    let rx = Receiver::start().await;
    let mut fleet = fleet(&n.node, 1).await;
    let id = recipient(&n.node, json!({ "type": "http_push", "url": rx.url("/hook") })).await;

    rx.set(E500);
    fleet.round_robin(&n.node, gw, 3).await;
    until("a first failed attempt", async || rx.hits() >= 1).await;
    advance(&n.node, 47 * 3600).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let shown = n.node.get_json(&format!("/v1/recipients/{id}")).await.unwrap();
    assert_eq!(shown["queue_depth"], 3, "kept for 47 h: {shown}");

    advance(&n.node, 2 * 3600).await;
    let expired = format!("entente_delivery_expired_total{{recipient=\"{id}\"}}");
    until("3 expiries", async || m(&n.node, &expired).await >= 3.0).await;
    let shown = n.node.get_json(&format!("/v1/recipients/{id}")).await.unwrap();
    assert_eq!(shown["queue_depth"], 0, "{shown}");
    assert_eq!(shown["state"]["expired"], 3, "{shown}");

    // The receiver comes back: only the new message goes, the expired ones are gone.
    rx.set(OK);
    advance(&n.node, 300).await;
    fleet.round_robin(&n.node, gw, 1).await;
    until("the new message", async || !rx.posts().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = rx.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["fcnt"], 3);
    assert_eq!(m(&n.node, &expired).await, 3.0);
    n.node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_survives_kill_9_without_loss_or_double_delivery() {
    let n = delivery_net().await;
    let gw = &n.gws[0];
    let rx = Receiver::start().await;
    rx.hook.delay_ms.store(100, Ordering::SeqCst);
    let mut fleet = fleet(&n.node, 3).await;
    let id = recipient(&n.node, json!({ "type": "http_push", "url": rx.url("/hook") })).await;

    fleet.round_robin(&n.node, gw, 10).await;
    until("a third of the messages", async || rx.posts().len() >= 10).await;
    n.node.kill9().await.unwrap();
    let before_kill = rx.posts();
    let in_flight = before_kill.last().unwrap()["seq"].as_u64().unwrap();

    rx.hook.delay_ms.store(0, Ordering::SeqCst);
    let node = NodeProcess::start(Path::new(EXE), n.dir.path()).await.unwrap();
    until("every message", async || {
        let seqs: BTreeSet<u64> = rx.posts().iter().map(|p| p["seq"].as_u64().unwrap()).collect();
        seqs.len() >= 30
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = rx.posts();
    let seqs: Vec<u64> = posts.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 30, "nothing lost");
    // Only the message whose 2xx had not reached the node when it died may come again.
    let dups: Vec<u64> = seqs
        .iter()
        .enumerate()
        .filter(|(i, s)| seqs[..*i].contains(s))
        .map(|(_, s)| *s)
        .collect();
    assert!(
        dups.is_empty() || dups == vec![in_flight],
        "acknowledged messages delivered twice: {dups:?} (in flight at the kill: {in_flight})"
    );
    let mut dedup = posts.clone();
    dedup.dedup_by_key(|p| p["seq"].as_u64());
    for (eui, fcnts) in by_device(&dedup) {
        assert_eq!(
            fcnts,
            (0..10).collect::<Vec<u64>>(),
            "{eui}: in order across the restart"
        );
    }
    let shown = node.get_json(&format!("/v1/recipients/{id}")).await.unwrap();
    assert_eq!(shown["queue_depth"], 0, "{shown}");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_pull_pages_once_and_file_push_writes_csv_and_json() {
    let n = delivery_net().await;
    let gw = &n.gws[0];
    let rx = Receiver::start().await;
    let out = tempfile::tempdir().unwrap();
    let mut fleet = fleet(&n.node, 2).await;

    // Bad recipients are refused with a reason.
    let r = n
        .node
        .api(Method::POST, "/v1/recipients")
        .json(
            &json!({ "name": "x", "group": "AGGLOPOLYS", "kind": { "type": "http_push", "url": "ftp://x" } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("not an http(s) URL"));
    let r = n
        .node
        .api(Method::POST, "/v1/recipients")
        .json(&json!({ "name": "x", "group": "AGGLOPOLYS", "kind": { "type": "file_push", "format": "xml", "directory": "/tmp", "interval_secs": 60 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // Outside the operator's allow-list (node.toml delivery.push_urls, push_directories):
    // an internal service, another host, a directory elsewhere on the disk.
    for (kind, list) in [
        (
            json!({ "type": "http_push", "url": "http://169.254.169.254/latest/meta-data" }),
            "push_urls",
        ),
        (
            json!({ "type": "http_push", "url": "https://127.0.0.1.example.net/hook" }),
            "push_urls",
        ),
        (
            json!({ "type": "file_push", "format": "csv", "directory": "/etc/cron.d", "interval_secs": 60 }),
            "push_directories",
        ),
    ] {
        let r = n
            .node
            .api(Method::POST, "/v1/recipients")
            .json(&json!({ "name": "x", "group": "AGGLOPOLYS", "kind": kind }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{kind}");
        assert!(r.text().await.unwrap().contains(list), "{kind}");
    }

    let pull = recipient(&n.node, json!({ "type": "rest_pull" })).await;
    let csv = recipient(
        &n.node,
        json!({ "type": "file_push", "format": "csv", "directory": out.path(), "interval_secs": 60 }),
    )
    .await;
    let json_put = recipient(
        &n.node,
        json!({ "type": "file_push", "format": "json", "url": rx.url("/files"), "interval_secs": 60 }),
    )
    .await;
    fleet.round_robin(&n.node, gw, 4).await; // 8 messages

    let mut cursor = 0;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let v = n
            .node
            .get_json(&format!("/v1/uplinks?recipient={pull}&cursor={cursor}&limit=3"))
            .await
            .unwrap();
        let page = v["uplinks"].as_array().unwrap().clone();
        cursor = v["cursor"].as_u64().unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        got.extend(page);
    }
    assert_eq!(pages, 3, "8 messages in pages of 3");
    let seqs: Vec<u64> = got.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len(), 8);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "each once, in order: {seqs:?}"
    );
    for (_, fcnts) in by_device(&got) {
        assert_eq!(fcnts, vec![0, 1, 2, 3]);
    }
    // The last cursor acknowledged everything; an old cursor does not bring it back.
    let shown = n.node.get_json(&format!("/v1/recipients/{pull}")).await.unwrap();
    assert_eq!(shown["queue_depth"], 0, "{shown}");
    let again = n
        .node
        .get_json(&format!("/v1/uplinks?recipient={pull}&cursor=0"))
        .await
        .unwrap();
    assert_eq!(again["count"], 0);
    let r = n
        .node
        .api(Method::GET, &format!("/v1/uplinks?recipient={csv}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "a file recipient cannot be pulled");

    // Files go out at the interval.
    advance(&n.node, 61).await;
    let csv_rows = async || -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for e in std::fs::read_dir(out.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "csv") {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut lines = text.lines();
                let header = lines.next().unwrap();
                assert!(header.starts_with("seq,time,dev_eui,dev_addr"), "{header}");
                let width = header.split(',').count();
                for l in lines {
                    let cells: Vec<String> = l.split(',').map(str::to_string).collect();
                    assert_eq!(cells.len(), width, "{l}");
                    rows.push(cells);
                }
            }
        }
        rows
    };
    until("8 CSV rows", async || csv_rows().await.len() >= 8).await;
    let json_msgs = || -> Vec<Value> {
        rx.hook
            .puts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(name, body)| {
                assert!(name.ends_with(".json"), "{name}");
                serde_json::from_slice::<Vec<Value>>(body).expect("a JSON array")
            })
            .collect()
    };
    until("8 JSON messages", async || json_msgs().len() >= 8).await;
    let rows = csv_rows().await;
    let csv_seqs: BTreeSet<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    let json_seqs: BTreeSet<u64> = json_msgs().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let all: BTreeSet<u64> = seqs.into_iter().collect();
    assert_eq!(rows.len(), 8);
    assert_eq!(csv_seqs, all);
    assert_eq!(json_seqs, all);
    // The queue is emptied once the file is written: just after, not before.
    for id in [csv, json_put] {
        let path = format!("/v1/recipients/{id}");
        until("the queue emptied after the file", async || {
            n.node.get_json(&path).await.unwrap()["queue_depth"] == 0
        })
        .await;
    }

    // Recipients change at any time: a deleted one no longer receives.
    let r = n
        .node
        .api(Method::DELETE, &format!("/v1/recipients/{pull}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let list = n.node.get_json("/v1/recipients").await.unwrap();
    assert_eq!(list["count"], 2);
    n.node.stop().await.unwrap();
}
