//! End-to-end: `entente` nodes as real processes, gateways emulated over real UDP, the
//! API over real HTTP, RocksDB in a temporary directory.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use entente::process::{NodeProcess, metric};
use entente_gateway::json::{PushData, Stat};
use entente_gateway::protocol::{self, Upstream};
use entente_model::GatewayEui;
use entente_sim::{GatewayEmulator, rxpk};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_entente");
const WAIT: Duration = Duration::from_secs(5);

fn init(dir: &Path) {
    let out = Command::new(EXE)
        .args(["init", "--member", "tours-metropole", "--name", "Tours Métropole"])
        .args(["--gateway-port", "0", "--api-port", "0", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn start(dir: &Path) -> NodeProcess {
    NodeProcess::start(Path::new(EXE), dir).await.unwrap()
}

async fn register(node: &NodeProcess, eui: GatewayEui, name: &str) -> Value {
    node.post_json("/v1/gateways", &json!({"eui": eui.to_string(), "name": name}))
        .await
        .unwrap()
}

async fn metrics_when(node: &NodeProcess, series: &str, at_least: f64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = node.metrics().await.unwrap();
        if metric(&text, series).unwrap_or(0.0) >= at_least || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn uplink(i: u32) -> Vec<u8> {
    let mut phy = vec![0x40, 0x04, 0x03, 0x02, 0x26, 0x00];
    phy.extend_from_slice(&i.to_le_bytes());
    phy.extend_from_slice(&[0x11; 6]);
    phy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_gets_acks_and_shows_in_api_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let node = start(dir.path()).await;

    // Auth: /v1 needs the operator token; errors share one JSON shape.
    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong-token"), Some("Basic abc")] {
        let mut req = http.get(node.url("/v1/gateways"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 3);
    }
    let health: Value = http
        .get(node.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["member"], "tours-metropole");

    // Bad requests get the same error shape.
    let r = node
        .api(Method::POST, "/v1/gateways")
        .json(&json!({"eui": "nope", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16 hexadecimal digits"),
        "{body}"
    );
    let r = node
        .api(Method::POST, "/v1/gateways")
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["error"]["code"].is_string());
    let r = node.api(Method::GET, "/v1/gateways/zz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = node
        .api(Method::GET, "/v1/gateways/0080000000000099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    let r = node.api(Method::GET, "/v1/nothing-here").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    let r = node.api(Method::PUT, "/v1/gateways").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );

    let eui: GatewayEui = "0080000000a1b2c3".parse().unwrap();
    let created = register(&node, eui, "Tours - Hôtel de Ville").await;
    assert_eq!(created["eui"], "0080000000a1b2c3");
    assert_eq!(created["owner"], "tours-metropole");
    assert!(created["last_seen"].is_null());
    let r = node
        .api(Method::POST, "/v1/gateways")
        .json(&json!({"eui": eui.to_string(), "name": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The emulator checks that every ack carries its request's token.
    let gw = GatewayEmulator::connect(node.listening.gateway, eui)
        .await
        .unwrap();
    gw.pull(WAIT).await.unwrap();
    let stat = Stat {
        rxnb: 3,
        rxok: 3,
        rxfw: 3,
        ackr: 100.0,
        time: Some("2026-11-23 08:59:28 GMT".into()),
        ..Stat::default()
    };
    gw.push(
        &PushData {
            rxpk: vec![],
            stat: Some(stat),
        },
        WAIT,
    )
    .await
    .unwrap();
    for i in 0..3 {
        let body = PushData {
            rxpk: vec![rxpk(&uplink(i), 868.1, "SF7BW125", -60, 9.0, i)],
            stat: None,
        };
        gw.push(&body, WAIT).await.unwrap();
    }
    // Two frames in one datagram.
    let body = PushData {
        rxpk: vec![
            rxpk(&uplink(10), 868.3, "SF9BW125", -90, 2.0, 10),
            rxpk(&uplink(11), 868.5, "SF12BW125", -110, -8.0, 11),
        ],
        stat: None,
    };
    gw.push(&body, WAIT).await.unwrap();

    // An unregistered gateway gets no ack and is counted.
    let stranger = GatewayEmulator::connect(node.listening.gateway, GatewayEui::from_u64(0xdead))
        .await
        .unwrap();
    assert!(
        stranger
            .push(&PushData::default(), Duration::from_millis(300))
            .await
            .is_err()
    );
    assert!(stranger.pull(Duration::from_millis(300)).await.is_err());

    let text = metrics_when(
        &node,
        "entente_gateway_datagrams_dropped_total{reason=\"unknown_gateway\"}",
        2.0,
    )
    .await;
    assert_eq!(metric(&text, "entente_gateway_frames_received_total"), Some(5.0));
    assert_eq!(metric(&text, "entente_gateway_frames_accepted_total"), Some(5.0));
    assert_eq!(
        metric(
            &text,
            "entente_gateway_datagrams_accepted_total{kind=\"push_data\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &text,
            "entente_gateway_datagrams_accepted_total{kind=\"pull_data\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "entente_gateway_datagrams_dropped_total{reason=\"unknown_gateway\"}"
        ),
        Some(2.0)
    );
    assert_eq!(metric(&text, "entente_gateways_online"), Some(1.0));
    assert_eq!(metric(&text, "entente_gateways_registered"), Some(1.0));

    let list = node.get_json("/v1/gateways").await.unwrap();
    assert_eq!(list["count"], 1);
    let g = &list["gateways"][0];
    assert_eq!(g["eui"], "0080000000a1b2c3");
    assert_eq!(g["online"], true);
    let last_seen = chrono::DateTime::parse_from_rfc3339(g["last_seen"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - last_seen.to_utc()).num_seconds().abs() < 60);
    assert_eq!(g["push_data"], 5);
    assert_eq!(g["pull_data"], 1);
    assert_eq!(g["frames_received"], 5);
    assert_eq!(g["last_stat"]["rx_received"], 3);
    assert_eq!(g["last_stat"]["gateway_time"], "2026-11-23T08:59:28Z");

    // Delete, then its traffic is refused.
    let r = node
        .api(Method::DELETE, &format!("/v1/gateways/{eui}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        gw.push(&PushData::default(), Duration::from_millis(300))
            .await
            .is_err()
    );
    assert_eq!(node.get_json("/v1/gateways").await.unwrap()["count"], 0);

    assert!(node.stop().await.unwrap().success());
}

/// Datagrams of known kinds that the node must refuse, each with the reason it must count.
fn crafted(eui: GatewayEui, rng: &mut fastrand::Rng) -> Vec<(Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    let valid_json = serde_json::to_vec(&PushData {
        rxpk: vec![rxpk(&uplink(1), 868.1, "SF7BW125", -60, 9.0, 1)],
        stat: None,
    })
    .unwrap();
    let mut valid = Vec::new();
    protocol::encode_upstream(
        &Upstream::PushData {
            version: 2,
            token: [1, 2],
            eui,
            json: &valid_json,
        },
        &mut valid,
    );
    // Every strict prefix of a valid PUSH_DATA: header too short, or JSON cut short.
    for _ in 0..4000 {
        let n = rng.usize(0..valid.len());
        let reason = if n < 12 { "too_short" } else { "bad_json" };
        out.push((valid[..n].to_vec(), reason));
    }
    for _ in 0..300 {
        let mut d = valid.clone();
        d[0] = *[0u8, 3, 4, 0x7f, 0xff].get(rng.usize(0..5)).unwrap();
        out.push((d, "bad_version"));
        let mut d = valid.clone();
        d[3] = *[0x01u8, 0x03, 0x04, 0x06, 0xff].get(rng.usize(0..5)).unwrap();
        out.push((d, "unknown_type"));
        let mut d = valid.clone();
        d[4..12].copy_from_slice(&rng.u64(..).to_be_bytes());
        out.push((d, "unknown_gateway"));
        let mut d = valid[..12].to_vec();
        d.extend((0..rng.usize(1..200)).map(|_| rng.u8(..)));
        d[12] = b'x';
        out.push((d, "bad_json"));
    }
    for _ in 0..10 {
        out.push((vec![2; 40_000], "oversize"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bad_datagrams_are_counted_and_a_valid_push_still_gets_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let node = start(dir.path()).await;
    let eui: GatewayEui = "0080000000000001".parse().unwrap();
    register(&node, eui, "robust").await;
    let gw = GatewayEmulator::connect(node.listening.gateway, eui)
        .await
        .unwrap();

    let mut rng = fastrand::Rng::with_seed(0xe17e17e);
    let mut datagrams = crafted(eui, &mut rng);
    let mut expected: std::collections::BTreeMap<&str, u64> = Default::default();
    for (_, r) in &datagrams {
        *expected.entry(r).or_default() += 1;
    }
    let n_crafted = datagrams.len();
    // Pure noise, any length, any bytes; some with a plausible header.
    for _ in 0..(10_000 - n_crafted) {
        let n = rng.usize(0..300);
        let mut d: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        if n > 4 && rng.bool() {
            d[0] = 2;
            d[3] = [0u8, 2, 5][rng.usize(0..3)];
        }
        datagrams.push((d, "random"));
    }
    rng.shuffle(&mut datagrams);
    assert_eq!(datagrams.len(), 10_000);

    // Frames inside acked datagrams that must be dropped one by one.
    let mut bad_b64 = rxpk(&uplink(2), 868.1, "SF7BW125", -60, 9.0, 2);
    bad_b64.data = "@@not base64@@".into();
    let mut crc = rxpk(&uplink(3), 868.1, "SF7BW125", -60, 9.0, 3);
    crc.stat = -1;
    let mut size = rxpk(&uplink(4), 868.1, "SF7BW125", -60, 9.0, 4);
    size.size += 1;
    let good = rxpk(&uplink(5), 868.1, "SF7BW125", -60, 9.0, 5);

    // Paced, so the kernel's socket buffer never overflows and every datagram is counted.
    let mut sent = 0.0;
    for chunk in datagrams.chunks(250) {
        for (d, _) in chunk {
            gw.send_raw(d).await.unwrap();
        }
        sent += chunk.len() as f64;
        let text = metrics_when(&node, "entente_gateway_datagrams_received_total", sent).await;
        assert_eq!(
            metric(&text, "entente_gateway_datagrams_received_total"),
            Some(sent),
            "{}",
            node.log_tail()
        );
    }
    gw.push(
        &PushData {
            rxpk: vec![bad_b64, crc, size, good],
            stat: None,
        },
        WAIT,
    )
    .await
    .unwrap();

    let text = node.metrics().await.unwrap();
    let m = |s: String| metric(&text, &s).unwrap_or(0.0) as u64;
    let reasons = [
        "too_short",
        "oversize",
        "bad_version",
        "unknown_type",
        "bad_json",
        "unknown_gateway",
    ];
    let dropped: u64 = reasons
        .iter()
        .map(|r| {
            m(format!(
                "entente_gateway_datagrams_dropped_total{{reason=\"{r}\"}}"
            ))
        })
        .sum();
    let accepted: u64 = ["push_data", "pull_data", "tx_ack"]
        .iter()
        .map(|k| {
            m(format!(
                "entente_gateway_datagrams_accepted_total{{kind=\"{k}\"}}"
            ))
        })
        .sum();
    // Every datagram is either accepted or dropped for exactly one reason.
    assert_eq!(m("entente_gateway_datagrams_received_total".into()), 10_001);
    assert_eq!(dropped + accepted, 10_001, "{text}");
    assert_eq!(accepted, 1, "only the valid PUSH_DATA is accepted: {text}");
    // The crafted ones are counted under their own reason (noise adds to some reasons).
    for (reason, n) in &expected {
        let got = m(format!(
            "entente_gateway_datagrams_dropped_total{{reason=\"{reason}\"}}"
        ));
        assert!(got >= *n, "{reason}: expected at least {n}, got {got}");
    }
    assert_eq!(
        m("entente_gateway_datagrams_dropped_total{reason=\"oversize\"}".into()),
        10
    );
    // And the frames of the last datagram, one reason each.
    assert_eq!(m("entente_gateway_frames_received_total".into()), 4);
    assert_eq!(m("entente_gateway_frames_accepted_total".into()), 1);
    for r in ["bad_base64", "crc_failed", "size_mismatch"] {
        assert_eq!(
            m(format!("entente_gateway_frames_dropped_total{{reason=\"{r}\"}}")),
            1,
            "{r}"
        );
    }
    assert!(node.stop().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_survive_restarts_clean_or_killed() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let node = start(dir.path()).await;
    let a: GatewayEui = "00800000000000aa".parse().unwrap();
    let b: GatewayEui = "00800000000000bb".parse().unwrap();
    node.post_json(
        "/v1/gateways",
        &json!({"eui": a.to_string(), "name": "Joué-lès-Tours", "owner": "smo-vdln",
                "position": {"latitude": 47.35, "longitude": 0.66}}),
    )
    .await
    .unwrap();
    let gw = GatewayEmulator::connect(node.listening.gateway, a).await.unwrap();
    gw.push(
        &PushData {
            rxpk: vec![rxpk(&uplink(1), 868.1, "SF7BW125", -60, 9.0, 1)],
            stat: None,
        },
        WAIT,
    )
    .await
    .unwrap();
    assert!(node.stop().await.unwrap().success());

    let node = start(dir.path()).await;
    let g = node.get_json(&format!("/v1/gateways/{a}")).await.unwrap();
    assert_eq!(g["name"], "Joué-lès-Tours");
    assert_eq!(g["owner"], "smo-vdln");
    assert_eq!(g["position"]["latitude"], 47.35);
    assert_eq!(g["push_data"], 1, "counters saved at shutdown");
    assert!(g["last_seen"].is_string());
    // The new process serves the same gateway on its new port.
    let gw = GatewayEmulator::connect(node.listening.gateway, a).await.unwrap();
    gw.pull(WAIT).await.unwrap();

    // A registration acknowledged by the API survives a crash.
    register(&node, b, "registered before a crash").await;
    node.kill9().await.unwrap();
    let node = start(dir.path()).await;
    let list = node.get_json("/v1/gateways").await.unwrap();
    let euis: Vec<&str> = list["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["eui"].as_str().unwrap())
        .collect();
    assert_eq!(euis, vec!["00800000000000aa", "00800000000000bb"]);
    assert!(node.stop().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let node = start(dir.path()).await;
    let out = Command::new(EXE)
        .arg("node")
        .arg("--config")
        .arg(dir.path().join("node.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use by another entente process"), "{err}");
    assert!(err.contains(&format!("pid {}", node.listening.pid)), "{err}");
    // The first node is unharmed.
    assert_eq!(node.get_json("/v1/gateways").await.unwrap()["count"], 0);
    assert!(node.stop().await.unwrap().success());
}

#[test]
fn bad_config_fails_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let cfg = dir.path().join("node.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("bind = \"0.0.0.0:0\"", "bind = \"0.0.0.0:99999\""),
    )
    .unwrap();
    let out = Command::new(EXE)
        .arg("node")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node.toml") && err.contains("gateway.bind"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = Command::new(EXE)
        .args(["node", "--config", "/nonexistent/node.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/node.toml"));
}

#[test]
fn init_refuses_to_overwrite_and_help_is_useful() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let key = std::fs::read(dir.path().join("node.key")).unwrap();
    let out = Command::new(EXE)
        .args(["init", "--member", "x", "--name", "y", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(dir.path().join("node.key")).unwrap(), key);
    use std::os::unix::fs::PermissionsExt;
    for f in ["node.key", "operator.token", "master.key"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let out = Command::new(EXE)
        .args(["init", "--member", "Bad Id", "--name", "y", "--dir"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a-z"));

    let help = String::from_utf8(Command::new(EXE).arg("--help").output().unwrap().stdout).unwrap();
    for word in ["init", "node", "demo", "LoRaWAN"] {
        assert!(help.contains(word), "{help}");
    }
    for sub in ["init", "node", "demo"] {
        let out = Command::new(EXE).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).len() > 200,
            "{sub} --help is too thin"
        );
    }
}
