//! Agreements end to end: three real nodes federated over libp2p, with test clocks. The
//! SMO proposes the Tours / SMO convention with the CLI, Tours approves it with the CLI,
//! and the convention is then enforced on every frame heard by a Tours gateway: nothing
//! roams before approval or after the notice has run out, an undeclared device's join is
//! refused, a device over its declared rate is cut and counted. Altered or foreign
//! documents are refused; the committee review is signed by both parties.

mod support;

use std::process::Command;
use std::time::Duration;

use entente::process::NodeProcess;
use entente_agreements::{Act, ActKind, Agreement, SignedAct};
use entente_lns::{DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, JoinEui};
use entente_sim::{GatewayEmulator, SimDevice};
use serde_json::{Value, json};
use support::federation::*;
use support::receiver::Receiver;
use support::*;

const ID: &str = "tours-smo-2026";
const EXAMPLE: &str = include_str!("../federation/val-de-loire/convention-tours-smo.toml");

fn eui(s: &str) -> DevEui {
    s.parse().unwrap()
}

/// Frames refused on `side` for `reason` (any flow), as `/v1/refusals` counts them.
async fn refused(node: &NodeProcess, side: &str, reason: &str) -> u64 {
    let v = node.get_json("/v1/refusals").await.unwrap();
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["side"] == side && r["reason"] == reason)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

async fn wait_refused(node: &NodeProcess, side: &str, reason: &str, at_least: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = refused(node, side, reason).await;
        if n >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{side}/{reason}: {n} < {at_least}: {}\n{}\n{}",
            node.get_json("/v1/refusals").await.unwrap(),
            node.metrics()
                .await
                .unwrap()
                .lines()
                .filter(|l| l.contains("roam") || l.contains("uplink"))
                .collect::<Vec<_>>()
                .join("\n"),
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn t(n: &Option<NodeProcess>) -> &NodeProcess {
    n.as_ref().unwrap()
}

fn posts_of(rx: &Receiver, d: DevEui) -> usize {
    rx.posts()
        .iter()
        .filter(|p| p["dev_eui"] == d.to_string())
        .count()
}

async fn document(node: &NodeProcess) -> String {
    node.api(reqwest::Method::GET, &format!("/v1/agreements/{ID}/document"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn import_doc(node: &NodeProcess, doc: &Value) -> (u16, Value) {
    let r = node
        .api(reqwest::Method::POST, "/v1/agreements/import")
        .json(doc)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_convention_proposed_approved_enforced_reviewed_and_terminated() {
    let Federation {
        nodes,
        dirs,
        _shared: _keep_roster,
        ..
    } = federation_with(false, true).await;
    let mut nodes = nodes.into_iter();
    let (tours, smo_node, agglo) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    let (tours, smo) = (&mut Some(tours), &smo_node);
    let cfg = |i: usize| dirs[i].path().join("node.toml").to_str().unwrap().to_string();
    let mut gw_tours = gw(t(tours), 1).await;
    let rx = Receiver::start().await;
    webhook(smo, &rx).await;

    // Two declared devices (lighting: 24 a day; water meter: 1 a day), one undeclared.
    let (lamp, meter, stranger) = (
        eui("70B3D5E75E000201"),
        eui("70B3D5E75E000101"),
        eui("70B3D5E75E000999"),
    );
    let (lamp_addr, meter_addr) = (DevAddr(0x2602_0201), DevAddr(0x2602_0101));
    import(
        smo,
        &[
            abp_row(lamp, lamp_addr, "A"),
            abp_row(meter, meter_addr, "A"),
            otaa_row(stranger, MacVersion::V1_0_3, "A"),
        ],
    )
    .await;
    let mut lamp_dev = abp_device(lamp, lamp_addr, DeviceClass::A);
    let mut meter_dev = abp_device(meter, meter_addr, DeviceClass::A);
    let tmst = std::cell::Cell::new(1_000_000u32);
    let next = || {
        tmst.set(tmst.get() + 20_000_000);
        tmst.get()
    };
    let send = async |gw: &GatewayEmulator, d: &mut SimDevice| {
        push(gw, &d.uplink(2, &[0x40], false, 5, 0).unwrap(), next(), 8.0).await;
    };

    // No agreement yet: the Tours node does not forward the SMO's frames.
    send(&gw_tours, &mut lamp_dev).await;
    wait_refused(t(tours), "visited", "no_agreement", 1).await;

    // The SMO proposes the example convention (starting yesterday) with the CLI.
    let mut a: Agreement = toml::from_str(EXAMPLE).unwrap();
    a.start = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let file = dirs[1].path().join("convention.json");
    std::fs::write(&file, serde_json::to_vec(&a).unwrap()).unwrap();
    entente(&[
        "agreement",
        "propose",
        "--config",
        &cfg(1),
        file.to_str().unwrap(),
    ]);
    let path = format!("/v1/agreements/{ID}");
    let v = entente::agreement::wait_for(t(tours), &path, |v| v["state"] == "proposed")
        .await
        .unwrap();
    let proposed = chrono::DateTime::parse_from_rfc3339(v["proposed_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(v["answer_due"].as_str().unwrap()).unwrap();
    assert!(
        (28..=31).contains(&(due - proposed).num_days()),
        "one month to answer: {v}"
    );
    assert_eq!(v["signed_by"], json!(["smo-vdln"]));

    // Proposed is not approved: still refused.
    send(&gw_tours, &mut lamp_dev).await;
    wait_refused(t(tours), "visited", "no_agreement", 2).await;
    // The proposer cannot approve its own proposal: a clear error, nothing changes.
    let out = Command::new(EXE)
        .args(["agreement", "approve", "--config", &cfg(1), ID])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing waits for smo-vdln"), "{err}");

    // Tours approves with the CLI; both nodes hold the same signed bytes.
    entente(&["agreement", "approve", "--config", &cfg(0), ID]);
    entente::agreement::wait_for(smo, &path, |v| v["in_force"] == true)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while document(t(tours)).await != document(smo).await {
        assert!(tokio::time::Instant::now() < deadline, "documents differ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held: Value = serde_json::from_str(&document(smo).await).unwrap();
    assert_eq!(
        held["versions"][0]["signatures"].as_object().unwrap().len(),
        2,
        "signed by both: {held}"
    );
    let listed = entente(&["agreement", "list", "--config", &cfg(0)]);
    assert!(listed.contains("\"state\": \"active\""), "{listed}");

    // The lamp roams: delivered to the SMO's webhook.
    let before = posts_of(&rx, lamp);
    send(&gw_tours, &mut lamp_dev).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while posts_of(&rx, lamp) == before {
        assert!(tokio::time::Instant::now() < deadline, "{}", t(tours).log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An undeclared device's join is refused at Tours.
    let mut s = SimDevice::otaa(
        MacVersion::V1_0_3,
        DeviceClass::A,
        stranger,
        JOIN_EUI.parse::<JoinEui>().unwrap(),
        APP_KEY.parse().unwrap(),
        NWK_KEY.parse().unwrap(),
    );
    push(&gw_tours, &s.join_request(), next(), 8.0).await;
    wait_refused(t(tours), "visited", "undeclared_device", 1).await;

    // The meter declared one message a day may burst 4; the rest are dropped and counted
    // by its home node, the side that knows which device a DevAddr is.
    for _ in 0..9 {
        send(&gw_tours, &mut meter_dev).await;
    }
    wait_refused(smo, "home", "rate_limited_device", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(posts_of(&rx, meter), 4, "exactly the burst arrives");
    assert_eq!(refused(smo, "home", "rate_limited_device").await, 5);

    // A document with one byte changed is refused, and so is an act signed by a third
    // member or signed by one member in another's name. What is held does not change.
    let good = document(t(tours)).await;
    let mut altered: Value = serde_json::from_str(&good).unwrap();
    let b = altered["versions"][0]["bytes"][40].as_u64().unwrap();
    altered["versions"][0]["bytes"][40] = json!(b ^ 1);
    let (status, body) = import_doc(smo, &altered).await;
    assert_eq!(status, 422, "{body}");
    let agglo_key = entente::keys::load_node_key(&dirs[2].path().join("node.key")).unwrap();
    for (by, code) in [("agglopolys", 422), ("tours-metropole", 422)] {
        let act = SignedAct::sign(
            &Act {
                agreement: ID.into(),
                by: by.parse().unwrap(),
                at: chrono::Utc::now(),
                follows: None,
                kind: ActKind::Terminate,
            },
            &agglo_key,
        )
        .unwrap();
        let mut forged: Value = serde_json::from_str(&good).unwrap();
        forged["acts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::to_value(act).unwrap());
        let (status, body) = import_doc(smo, &forged).await;
        assert_eq!(status, code, "{by}: {body}");
    }
    let v = smo.get_json("/v1/refusals").await.unwrap();
    assert_eq!(v["documents"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(document(smo).await, good, "nothing held was lost or changed");

    // The quarterly review: prepared and signed by the SMO, countersigned by Tours.
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let md = entente(&[
        "committee",
        "review",
        "--config",
        &cfg(1),
        "--agreement",
        ID,
        "--out",
        o,
    ]);
    assert!(
        md.contains("Syndicat intercommunal des eaux du Val de Cher"),
        "{md}"
    );
    assert!(md.contains("Devices declared: 5; seen this quarter: 2."), "{md}");
    assert!(md.contains("Claire Martin"), "{md}");
    // Tours countersigns the very bytes the SMO prepared, once they have reached it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while t(tours).get_json(&format!("{path}/reviews")).await.unwrap()["reviews"][0].is_null() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the review did not reach Tours"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    entente(&[
        "committee",
        "review",
        "--config",
        &cfg(0),
        "--agreement",
        ID,
        "--out",
        o,
    ]);
    let files: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(files.len(), 2, "one Markdown and one JSON file for the quarter");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = smo.get_json(&format!("{path}/reviews")).await.unwrap();
        if v["reviews"][0]["signed_by"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "review not countersigned: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Signed by both, the review is a ledger record, replicated to the SMO.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = smo
            .get_json(&format!("/v1/ledger?agreement={ID}&kind=committee_review"))
            .await
            .unwrap();
        if v.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["signatures"].as_object().unwrap().len() == 1)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "review not in the ledger: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Notice from the SMO while the Tours node is down: the two reconcile when it is back.
    tours.take().unwrap().stop().await.unwrap();
    entente(&["agreement", "terminate", "--config", &cfg(1), ID]);
    *tours = Some(
        NodeProcess::start(std::path::Path::new(EXE), dirs[0].path())
            .await
            .unwrap(),
    );
    gw_tours = GatewayEmulator::connect(t(tours).listening.gateway, gw_tours.eui)
        .await
        .unwrap();
    gw_tours.pull(WAIT).await.unwrap();
    // In force for a year more, then no more roaming.
    entente::agreement::wait_for(t(tours), &path, |v| v["state"] == "terminating")
        .await
        .unwrap();
    let before = posts_of(&rx, lamp);
    send(&gw_tours, &mut lamp_dev).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while posts_of(&rx, lamp) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered during notice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in [t(tours), smo] {
        n.post_json("/v1/clock", &json!({"advance_secs": 370 * 86_400}))
            .await
            .unwrap();
    }
    for n in [t(tours), smo] {
        entente::agreement::wait_for(n, &path, |v| v["state"] == "ended")
            .await
            .unwrap();
    }
    // The policy re-reads the time every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused_before = refused(t(tours), "visited", "no_agreement").await;
    let before = posts_of(&rx, lamp);
    send(&gw_tours, &mut lamp_dev).await;
    wait_refused(t(tours), "visited", "no_agreement", refused_before + 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        posts_of(&rx, lamp),
        before,
        "nothing roams after the notice ran out"
    );

    for n in [tours.take().unwrap(), smo_node, agglo] {
        n.stop().await.unwrap();
    }
}
