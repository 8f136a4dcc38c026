//! Usage, statements, billing and the ledger end to end, with real nodes and test clocks:
//! both sides count the frames Tours carries for the SMO; Tours signs the day's usage
//! statement and the SMO countersigns it over libp2p; a day counted differently (Tours's
//! clock a day ahead) becomes a dispute held on both sides; the yearly `nbO x taO`
//! invoice is issued and accepted; exports verify offline, and a changed byte does not.

mod support;

use std::process::Command;
use std::time::Duration;

use entente::process::NodeProcess;
use entente_agreements::Billing;
use entente_lns::DeviceClass;
use entente_model::{DevAddr, DevEui};
use entente_sim::SimDevice;
use serde_json::{Value, json};
use support::federation::*;
use support::receiver::Receiver;
use support::*;

const ID: &str = "tours-smo-transit";

async fn wait_json(node: &NodeProcess, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let v = node.get_json(path).await.unwrap();
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: {what}: {v}\n{}",
            node.listening.member,
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uplinks(v: &Value) -> u64 {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["counters"]["uplinks"].as_u64().unwrap())
        .sum()
}

/// Moves each node's test clock `secs` ahead.
async fn advance(nodes: &[&NodeProcess], secs: i64) {
    for n in nodes {
        n.post_json("/v1/clock", &json!({ "advance_secs": secs }))
            .await
            .unwrap();
    }
}

async fn today(node: &NodeProcess) -> chrono::NaiveDate {
    let v = node.get_json("/v1/clock").await.unwrap();
    chrono::DateTime::parse_from_rfc3339(v["now"].as_str().unwrap())
        .unwrap()
        .date_naive()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_disputes_invoices_and_an_offline_verified_ledger() {
    let Federation {
        nodes,
        dirs,
        roster,
        _shared,
    } = federation_with(false, true).await;
    let (tours, smo) = (&nodes[0], &nodes[1]);
    let cfg = |i: usize| dirs[i].path().join("node.toml").to_str().unwrap().to_string();
    let (lamp, meter): (DevEui, DevEui) = (
        "70B3D5E75E000301".parse().unwrap(),
        "70B3D5E75E000302".parse().unwrap(),
    );
    let (lamp_addr, meter_addr) = (DevAddr(0x2602_0301), DevAddr(0x2602_0302));
    let mut a = entente::agreement::transit(
        ID,
        &"tours-metropole".parse().unwrap(),
        &"smo-vdln".parse().unwrap(),
        &[lamp, meter],
        24,
        chrono::Utc::now() - chrono::TimeDelta::days(1),
    );
    a.billing = Billing::Policy {
        reference: "tours-metropole/annual-declared".into(),
    };
    entente::agreement::establish(smo, tours, &a).await.unwrap();

    let gw_tours = gw(tours, 1).await;
    let rx = Receiver::start().await;
    webhook(smo, &rx).await;
    import(
        smo,
        &[abp_row(lamp, lamp_addr, "A"), abp_row(meter, meter_addr, "A")],
    )
    .await;
    let mut lamp_dev = abp_device(lamp, lamp_addr, DeviceClass::A);
    let mut meter_dev = abp_device(meter, meter_addr, DeviceClass::A);
    let tmst = std::cell::Cell::new(1_000_000u32);
    let send = async |d: &mut SimDevice| {
        tmst.set(tmst.get() + 20_000_000);
        push(
            &gw_tours,
            &d.uplink(2, &[0x40], false, 5, 0).unwrap(),
            tmst.get(),
            8.0,
        )
        .await;
    };
    for _ in 0..3 {
        send(&mut lamp_dev).await;
    }
    for _ in 0..2 {
        send(&mut meter_dev).await;
    }
    let usage = format!("/v1/usage?agreement={ID}");
    // Both sides counted the five uplinks the SMO accepted through Tours.
    wait_json(tours, &usage, "5 uplinks", |v| uplinks(v) == 5).await;
    wait_json(smo, &usage, "5 uplinks", |v| uplinks(v) == 5).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.posts().len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} delivered",
            rx.posts().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A day is stated once it is over: today's is refused.
    let day = today(tours).await;
    let early = tours
        .api(reqwest::Method::POST, "/v1/ledger/statements")
        .json(&json!({"agreement": ID, "day": day}))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status().as_u16(), 422);
    let why = early.text().await.unwrap();
    assert!(why.contains("has not ended"), "{why}");
    // The day ends on both sides; Tours signs its statement, the SMO's count matches and
    // it countersigns.
    advance(&[tours, smo], 86_400).await;
    tours
        .post_json("/v1/ledger/statements", &json!({"agreement": ID, "day": day}))
        .await
        .unwrap();
    let statements = format!("/v1/ledger/statements?agreement={ID}");
    for n in [smo, tours] {
        let v = wait_json(n, &statements, "countersigned", |v| {
            v["statements"][0]["status"] == "countersigned"
        })
        .await;
        assert_eq!(v["statements"][0]["totals"]["uplinks"], json!(5), "{v}");
    }

    // Tours's clock runs a day ahead: three frames counted on different days on each side.
    tours
        .post_json("/v1/clock", &json!({"advance_secs": 86_400}))
        .await
        .unwrap();
    for _ in 0..3 {
        send(&mut lamp_dev).await;
    }
    wait_json(smo, &usage, "8 uplinks", |v| uplinks(v) == 8).await;
    wait_json(tours, &usage, "8 uplinks", |v| uplinks(v) == 8).await;
    let ahead = today(tours).await;
    advance(&[tours, smo], 86_400).await;
    tours
        .post_json("/v1/ledger/statements", &json!({"agreement": ID, "day": ahead}))
        .await
        .unwrap();
    let disputes = format!("/v1/ledger/disputes?agreement={ID}");
    for n in [smo, tours] {
        let v = wait_json(n, &disputes, "a dispute", |v| !v["disputes"][0].is_null()).await;
        let d = &v["disputes"][0]["dispute"];
        assert_eq!(d["statement_totals"]["uplinks"], json!(3), "{v}");
        assert_eq!(d["our_totals"]["uplinks"], json!(0), "both figures kept: {v}");
        assert_eq!(d["raised_by"], json!("smo-vdln"));
    }
    let v = tours.get_json(&statements).await.unwrap();
    assert!(
        v["statements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["status"] == "disputed"),
        "{v}"
    );

    // A year on: the yearly fee on the two objects declared on 1 January, accepted by the SMO.
    smo.post_json("/v1/clock", &json!({"advance_secs": 86_400}))
        .await
        .unwrap();
    advance(&[tours, smo], 366 * 86_400).await;
    let year = chrono::Datelike::year(&today(tours).await);
    let v = tours
        .post_json("/v1/ledger/invoices", &json!({"agreement": ID, "year": year}))
        .await
        .unwrap();
    let inv = &v["invoice"];
    assert_eq!(inv["lines"][0]["quantity"], json!(2), "{v}");
    assert_eq!(inv["amount_excl_vat"], json!(960), "2 x 4.80 EUR");
    assert_eq!(inv["vat"], json!(192));
    assert_eq!(inv["amount_incl_vat"], json!(1152));
    let seq = v["record"]["seq"].as_u64().unwrap().to_string();
    // Issuing the year again returns the same signed record: nothing is billed twice.
    let again = tours
        .post_json("/v1/ledger/invoices", &json!({"agreement": ID, "year": year}))
        .await
        .unwrap();
    assert_eq!(again["record"]["hash"], v["record"]["hash"], "{again}");
    assert_eq!(again["invoice"], v["invoice"]);
    let invoices = format!("/v1/ledger/invoices?agreement={ID}");
    wait_json(smo, &invoices, "the invoice", |v| !v["invoices"][0].is_null()).await;
    entente(&[
        "ledger",
        "accept",
        "--config",
        &cfg(1),
        "--agreement",
        ID,
        "--issuer",
        "tours-metropole",
        "--seq",
        &seq,
    ]);
    wait_json(tours, &invoices, "accepted", |v| {
        v["invoices"][0]["accepted"] == true
    })
    .await;

    // Exports from both nodes verify offline against the roster; one changed byte does not.
    let out = tempfile::tempdir().unwrap();
    for (i, format) in [(0, "csv"), (1, "json")] {
        let file = out.path().join(format!("ledger-{i}.{format}"));
        let f = file.to_str().unwrap();
        entente(&[
            "ledger",
            "export",
            "--config",
            &cfg(i),
            "--format",
            format,
            "--out",
            f,
        ]);
        let ok: Value = serde_json::from_str(&entente(&[
            "ledger",
            "verify",
            "--roster",
            roster.to_str().unwrap(),
            f,
        ]))
        .unwrap();
        let held = if format == "csv" {
            std::fs::read_to_string(&file).unwrap().lines().count() as u64 - 1
        } else {
            serde_json::from_str::<Value>(&std::fs::read_to_string(&file).unwrap())
                .unwrap()
                .as_array()
                .unwrap()
                .len() as u64
        };
        // Two statements, the dispute and the invoice at least (daily statements may add).
        assert!(held >= 4, "{held}");
        assert_eq!(ok["verified"], json!(held), "{ok}");
    }
    let csv_path = out.path().join("ledger-0.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let line = csv.lines().nth(2).unwrap().to_string();
    let body_at = line.rfind(',').unwrap() - 10;
    let mut bytes = line.clone().into_bytes();
    bytes[body_at] = if bytes[body_at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&csv_path, csv.replace(&line, &String::from_utf8(bytes).unwrap())).unwrap();
    let bad = Command::new(EXE)
        .args([
            "ledger",
            "verify",
            "--roster",
            roster.to_str().unwrap(),
            csv_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("record 1") && err.contains("modified"), "{err}");

    for n in nodes {
        n.stop().await.unwrap();
    }
}
