//! The demo's scenario engine on a shortened `val-de-loire`: three real nodes, agreements
//! proposed and approved over libp2p, five days of traffic with roaming, joins, Class C
//! downlinks and the SMO node killed and restarted, daily statements, a billing period.

mod support;

use std::path::Path;

use entente::scenario::Scenario;
use serde_json::json;
use support::EXE;

fn scenarios() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn every_shipped_scenario_loads() {
    for name in ["val-de-loire", "loire"] {
        let s = Scenario::load(&scenarios().join(format!("{name}.toml"))).unwrap();
        assert_eq!(s.name, name);
        assert!(!s.agreements.is_empty());
    }
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        "name = \"x\"\ntitle = \"x\"\ndays = 0\nmembers = []\ndevices = []\n",
    )
    .unwrap();
    assert!(Scenario::load(bad.path()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_val_de_loire_delivers_everything_and_bills_to_the_cent() {
    let mut sc = Scenario::load(&scenarios().join("val-de-loire.toml")).unwrap();
    sc.days = 5; // day 5 holds the SMO outage
    let base = tempfile::tempdir().unwrap();
    let r = entente::demo::run_scenario(sc, base.path(), Path::new(EXE))
        .await
        .unwrap();

    // Every frame a live node could take reached its home node's application.
    for n in r["nodes"].as_array().unwrap() {
        assert_eq!(
            n["delivered_to_application"].as_u64(),
            n["expected_at_home"].as_u64(),
            "{}: {n}",
            n["member"]
        );
        assert!(n["expected_at_home"].as_u64().unwrap() > 0);
    }
    // The SMO's frames roamed through both neighbours.
    let tours = &r["nodes"][0];
    assert!(
        tours["roamed_out_as_visited"]["smo-vdln"].as_f64().unwrap() > 0.0,
        "{tours}"
    );
    let agglo = &r["nodes"][2];
    assert!(
        agglo["roamed_out_as_visited"]["smo-vdln"].as_f64().unwrap() > 0.0,
        "{agglo}"
    );
    // Every day's statement countersigned on both agreements, none disputed.
    for a in r["statements"].as_array().unwrap() {
        let st = a["statements"].as_array().unwrap();
        assert_eq!(st.len(), 5, "{a}");
        assert!(st.iter().all(|s| s["status"] == "countersigned"), "{a}");
    }
    // 19 objects declared on 1 January x 4.80 EUR, 20 % VAT, accepted by the SMO.
    let inv = &r["invoices"][0];
    assert_eq!(inv["agreement"], "tours-smo-2026");
    assert_eq!(inv["invoice"]["amount_excl_vat"], json!(9120), "{inv}");
    assert_eq!(inv["invoice"]["vat"], json!(1824));
    assert_eq!(inv["invoice"]["amount_incl_vat"], json!(10944));
    assert_eq!(inv["accepted"], json!(true));
    // Every ledger verifies offline; reviews signed by both; service levels met.
    for l in r["ledgers"].as_array().unwrap() {
        assert_eq!(l["verified"], json!(true), "{l}");
    }
    for v in r["reviews"].as_array().unwrap() {
        assert_eq!(v["signed_by"].as_array().unwrap().len(), 2, "{v}");
        assert_eq!(v["devices_seen"], v["devices_declared"], "{v}");
    }
    // The SMO's own sensors, heard only by its gateways, were silent while it was down on
    // the last day: 8 of its 27 devices, which the 24 h figure shows.
    for s in r["sla"].as_array().unwrap() {
        let day = s["heard_24h_pct"].as_f64().unwrap();
        if s["member"] == "smo-vdln" {
            assert_eq!(day, 70.3, "{s}");
        } else {
            assert_eq!(day, 100.0, "{s}");
        }
        assert_eq!(s["heard_14d_pct"].as_f64().unwrap(), 100.0, "{s}");
    }
    assert_eq!(
        r["run"]["joins"],
        json!(18),
        "8 SMO sensors and 10 Agglopolys meters"
    );
    assert!(r["run"]["downlinks_requested"].as_u64().unwrap() >= 16);
}
