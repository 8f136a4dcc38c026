//! A rogue member on the roster. Agglopolys signs its convention with the SMO as an honest
//! node would; then its node process stops and the test takes its key into a raw
//! federation client that sends what an honest node never would. Every attempt is refused
//! and counted, and the SMO's and Tours's usage, quotas, ledgers, downlink paths and the device's
//! downlink queue are unchanged. The suite prints a table attack / outcome.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entente::process::NodeProcess;
use entente_agreements::{Act, ActKind, Dossier, Review, SignedAct, SignedReview, SyncMsg};
use entente_gateway::{
    Downlink, GatewayMetrics, GatewayServer, NewGateway, Registry, Roaming, RxContext, RxInfo, ServerConfig,
    Timing,
};
use entente_lns::DeviceClass;
use entente_model::{DevAddr, DevEui, GatewayEui, MemberId, SharedClock, SystemClock};
use entente_peering::gateways::{GATEWAYS_CHANNEL, GatewayList, SignedGatewayList};
use entente_peering::metrics::PeerResult;
use entente_peering::protocol::{
    DownlinkRequest, FrameVerdict, Request, Response, RoamedRx, TxResult, UplinkAnswer, UplinkForward,
};
use entente_peering::{Peering, PeeringConfig, Roster};
use entente_region::{Bandwidth, DataRate};
use entente_store::Store;
use serde_json::{Value, json};
use support::federation::*;
use support::*;
use tokio_util::sync::CancellationToken;

const SMO: &str = "smo-vdln";
const ROGUE: &str = "agglopolys";
/// The convention Agglopolys hosts for the SMO's devices (see `establish_transit`).
const ROGUE_AGREEMENT: &str = "agglopolys-smo";
const DEVICE: DevEui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 1]);
const DEVICE_ADDR: DevAddr = DevAddr(0x2602_0901);
const ROGUE_GATEWAY: GatewayEui = GatewayEui([0, 0x80, 0, 0, 0, 0, 0xee, 1]);

/// The rogue's raw client: a federation peer with Agglopolys's key, driven by the test.
struct Rogue {
    peering: Arc<Peering>,
    roster: Roster,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Rogue {
    async fn start(agglo_dir: &std::path::Path, roster: &std::path::Path) -> Rogue {
        let key = entente::keys::load_node_key(&agglo_dir.join("node.key")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &Registry::TABLES).unwrap());
        let clock: SharedClock = Arc::new(SystemClock);
        let registry = Arc::new(
            Registry::load(
                store,
                clock.clone(),
                ROGUE.parse().unwrap(),
                Duration::from_secs(90),
            )
            .unwrap(),
        );
        registry
            .create(NewGateway {
                eui: ROGUE_GATEWAY,
                name: "rogue".into(),
                owner: None,
                position: None,
                source: None,
            })
            .unwrap();
        let cfg = ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        let metrics = GatewayMetrics::register(&mut prometheus_client::registry::Registry::default());
        let (server, _frames) = GatewayServer::bind(&cfg, registry.clone(), metrics, None)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let pcfg = PeeringConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..PeeringConfig::default()
        };
        let started = Peering::start(
            ROGUE.parse().unwrap(),
            key.to_bytes(),
            Roster::load(roster).unwrap(),
            pcfg,
            clock,
            registry,
            server,
            stop.clone(),
        )
        .await
        .unwrap();
        // Frames homed here (none are) would go to a network server the rogue does not run.
        let mut roamed = started.roamed;
        tokio::spawn(async move { while roamed.recv().await.is_some() {} });
        Rogue {
            peering: started.peering,
            roster: Roster::load(roster).unwrap(),
            stop,
            _dir: dir,
        }
    }

    fn peer(&self, member: &str) -> libp2p::PeerId {
        self.roster.member(&member.parse().unwrap()).unwrap().peer_id
    }

    /// What the SMO's verdicts on the rogue's forwarded frames were, as the rogue counted.
    fn verdicts(&self, result: &'static str) -> u64 {
        self.peering
            .metrics
            .forwarded
            .get_or_create(&PeerResult {
                peer: SMO.into(),
                result,
            })
            .get()
    }

    async fn wait_verdicts(&self, result: &'static str, want: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.verdicts(result) < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{result}: {} < {want}",
                self.verdicts(result)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn raw(&self, to: &str, req: Request) -> Response {
        self.peering.request(self.peer(to), req).await.unwrap()
    }
}

fn rx(gateway: GatewayEui, tmst: u32) -> RxInfo {
    RxInfo {
        gateway,
        tmst,
        time: None,
        gps_time_ms: None,
        received_at: Utc::now(),
        frequency_hz: 868_100_000,
        channel: 0,
        rf_chain: 0,
        data_rate: DataRate::lora(7, Bandwidth::Khz125),
        coding_rate: Some("4/5".into()),
        rssi: -80,
        snr: 9.0,
    }
}

fn frame(phy: Vec<u8>) -> entente_frame::UplinkFrame {
    entente_frame::UplinkFrame::parse(phy).unwrap()
}

/// A data uplink under the device's DevAddr with a MIC nobody computed.
fn garbage(fcnt: u16) -> Vec<u8> {
    let a = DEVICE_ADDR.0.to_le_bytes();
    let c = fcnt.to_le_bytes();
    vec![
        0x40, a[0], a[1], a[2], a[3], 0x00, c[0], c[1], 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
    ]
}

fn forward(id: u64, phy: Vec<u8>, gateway: GatewayEui) -> UplinkForward {
    UplinkForward {
        id,
        frame: frame(phy),
        rx: vec![RoamedRx {
            info: rx(gateway, 5_000_000),
            token: vec![0; 41],
        }],
        late: false,
    }
}

async fn usage_uplinks(node: &NodeProcess, agreement: &str) -> u64 {
    let v = node
        .get_json(&format!("/v1/usage?agreement={agreement}"))
        .await
        .unwrap();
    v["devices"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["counters"]["uplinks"].as_u64()).sum())
        .unwrap_or(0)
}

async fn received(node: &NodeProcess, from: &str, result: &str) -> f64 {
    let series = format!("entente_roaming_received_total{{peer=\"{from}\",result=\"{result}\"}}");
    m(node, &series).await
}

async fn wait_metric(node: &NodeProcess, series: &str, at_least: f64) {
    metric_when(node, series, at_least).await;
}

/// Documents refused so far by `node`, as `/v1/refusals` lists them.
async fn documents_refused(node: &NodeProcess) -> usize {
    let v = node.get_json("/v1/refusals").await.unwrap();
    v["documents"].as_array().map_or(0, Vec::len)
}

async fn document(node: &NodeProcess, agreement: &str) -> String {
    node.api(
        reqwest::Method::GET,
        &format!("/v1/agreements/{agreement}/document"),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap()
}

/// The agreements channel's message, as the rogue writes it: no heads, one page.
#[derive(serde::Serialize)]
struct BookMsg<'a> {
    heads: NoHeads,
    page: &'a SyncMsg,
    more: bool,
}

#[derive(serde::Serialize)]
struct NoHeads {
    dossiers: Vec<()>,
    reviews: Vec<()>,
}

async fn sync_page(rogue: &Rogue, to: &MemberId, page: &SyncMsg) {
    let msg = BookMsg {
        heads: NoHeads {
            dossiers: vec![],
            reviews: vec![],
        },
        page,
        more: false,
    };
    let body = entente_peering::sync::encode(&msg).unwrap();
    rogue
        .peering
        .sync_request(to, entente_agreements::book::SYNC_CHANNEL, body)
        .await
        .unwrap();
}

/// The figures an attack must leave alone.
#[derive(Debug, PartialEq)]
struct Honest {
    smo_usage_rogue: u64,
    smo_usage_tours: u64,
    tours_usage: u64,
    smo_frame_refusals: Value,
    tours_downlinks_ok: f64,
    smo_ledger: Value,
    tours_ledger: Value,
    /// The device's application downlinks waiting at its home: a frame taken for the
    /// device's would send one, or spend an attempt.
    smo_queue: Value,
}

async fn honest(smo: &NodeProcess, tours: &NodeProcess) -> Honest {
    Honest {
        smo_usage_rogue: usage_uplinks(smo, ROGUE_AGREEMENT).await,
        smo_usage_tours: usage_uplinks(smo, "tours-metropole-smo").await,
        tours_usage: usage_uplinks(tours, "tours-metropole-smo").await,
        smo_frame_refusals: smo.get_json("/v1/refusals").await.unwrap()["frames"].clone(),
        tours_downlinks_ok: m(
            tours,
            "entente_roaming_downlinks_total{peer=\"smo-vdln\",result=\"ok\"}",
        )
        .await,
        smo_ledger: smo.get_json("/v1/ledger").await.unwrap(),
        tours_ledger: tours.get_json("/v1/ledger").await.unwrap(),
        smo_queue: smo
            .get_json(&format!("/v1/devices/{DEVICE}/queue"))
            .await
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_member_gains_nothing_and_is_seen() {
    let f = federation_with(true, true).await;
    let mut nodes = f.nodes.into_iter();
    let (tours, smo, agglo) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    import(&smo, &[abp_row(DEVICE, DEVICE_ADDR, "A")]).await;
    let mut device = abp_device(DEVICE, DEVICE_ADDR, DeviceClass::A);
    // An honest frame through Tours first: Tours has announced its gateway to the SMO.
    let gw_tours = gw(&tours, 1).await;
    let tours_gateway = GatewayEui([0, 0x80, 0, 0, 0, 0, 0xb0, 1]);
    push(
        &gw_tours,
        &device.uplink(2, &[1], false, 5, 0).unwrap(),
        1_000_000,
        8.0,
    )
    .await;
    wait_metric(
        &smo,
        "entente_roaming_received_total{peer=\"tours-metropole\",result=\"accepted\"}",
        1.0,
    )
    .await;

    // Agglopolys turns rogue: its node stops and its key speaks raw.
    agglo.stop().await.unwrap();
    let rogue = Rogue::start(f.dirs[2].path(), &f.roster).await;
    wait_peers(&smo, 2).await;
    let mut table: Vec<(&str, String)> = Vec::new();
    let before = honest(&smo, &tours).await;

    // 1. Garbage under a declared DevAddr, more than the device's day allows (burst 48).
    for fcnt in 100..160u16 {
        rogue
            .peering
            .forward(frame(garbage(fcnt)), vec![rx(ROGUE_GATEWAY, 7_000_000)], None);
    }
    rogue.wait_verdicts("rejected", 60).await;
    assert_eq!(received(&smo, ROGUE, "mic_failed").await, 60.0);
    assert_eq!(honest(&smo, &tours).await, before, "garbage counted nowhere");
    table.push((
        "60 frames with a declared DevAddr and a bad MIC",
        "rejected mic_failed, counted 0".into(),
    ));

    // 2. The device's real next frame through the rogue still passes: its quota is whole.
    let genuine = device.uplink(2, &[2], false, 5, 0).unwrap();
    rogue
        .peering
        .forward(frame(genuine.clone()), vec![rx(ROGUE_GATEWAY, 9_000_000)], None);
    rogue.wait_verdicts("accepted", 1).await;
    let mut after = honest(&smo, &tours).await;
    assert_eq!(after.smo_usage_rogue, 1, "the genuine frame is counted once");
    after.smo_usage_rogue = 0;
    assert_eq!(after, before);
    table.push((
        "then the device's genuine frame",
        "verified and counted: quota not drained".into(),
    ));
    // From here on a downlink waits for the device's next genuine frame: no attack may
    // send it or spend its attempts.
    smo.post_json(
        &format!("/v1/devices/{DEVICE}/queue"),
        &json!({"fport": 20, "data": "0164", "confirmed": true}),
    )
    .await
    .unwrap();
    let before = honest(&smo, &tours).await;
    assert_eq!(before.smo_queue["count"], 1, "{:?}", before.smo_queue);

    // 3. The same genuine frame replayed a day later.
    smo.post_json("/v1/clock", &json!({"advance_secs": 86_400}))
        .await
        .unwrap();
    rogue
        .peering
        .forward(frame(genuine), vec![rx(ROGUE_GATEWAY, 11_000_000)], None);
    rogue.wait_verdicts("rejected", 61).await;
    assert_eq!(honest(&smo, &tours).await, before, "a replay is counted nowhere");
    table.push((
        "the genuine frame replayed a day later",
        "rejected, counted 0".into(),
    ));

    // 4. A frame passed off as heard by Tours's gateway (to take its downlinks).
    let next = device.uplink(2, &[3], false, 5, 0).unwrap();
    let r = rogue
        .raw(
            SMO,
            Request::Uplinks(vec![forward(1_000_001, next.clone(), tours_gateway)]),
        )
        .await;
    assert!(format!("{r:?}").contains("no_valid_reception"), "{r:?}");
    assert!(received(&smo, ROGUE, "unannounced_gateway").await >= 1.0);
    table.push((
        "a reception claimed on Tours's gateway",
        "rejected no_valid_reception".into(),
    ));

    // 5. A signed list claiming Tours's gateway, then the same frame again.
    let list = GatewayList {
        member: ROGUE.parse().unwrap(),
        at: Utc::now(),
        gateways: [tours_gateway, ROGUE_GATEWAY].into_iter().collect(),
    };
    let key = entente::keys::load_node_key(&f.dirs[2].path().join("node.key")).unwrap();
    let signed = serde_json::to_vec(&SignedGatewayList::sign(&list, &key).unwrap()).unwrap();
    let smo_id: MemberId = SMO.parse().unwrap();
    rogue
        .peering
        .sync_request(&smo_id, GATEWAYS_CHANNEL, signed)
        .await
        .unwrap();
    assert!(received(&smo, ROGUE, "gateway_list_refused").await >= 1.0);
    let r = rogue
        .raw(
            SMO,
            Request::Uplinks(vec![forward(1_000_002, next.clone(), tours_gateway)]),
        )
        .await;
    assert!(format!("{r:?}").contains("no_valid_reception"), "{r:?}");
    table.push((
        "a signed list claiming Tours's gateway",
        "refused: Tours announced it first".into(),
    ));

    // 6. A list in another member's name.
    let forged = GatewayList {
        member: "tours-metropole".parse().unwrap(),
        at: Utc::now(),
        gateways: [ROGUE_GATEWAY].into_iter().collect(),
    };
    let refused_before = received(&smo, ROGUE, "gateway_list_refused").await;
    let body = serde_json::to_vec(&SignedGatewayList::sign(&forged, &key).unwrap()).unwrap();
    rogue
        .peering
        .sync_request(&smo_id, GATEWAYS_CHANNEL, body)
        .await
        .unwrap();
    assert!(received(&smo, ROGUE, "gateway_list_refused").await > refused_before);
    table.push(("a gateway list in Tours's name", "refused and counted".into()));

    // 7. Verdicts for frames Tours never forwarded.
    let tours_usage = usage_uplinks(&tours, "tours-metropole-smo").await;
    let fake = (0..10)
        .map(|id| FrameVerdict {
            id,
            answer: UplinkAnswer::Verified,
        })
        .collect();
    let r = rogue.raw("tours-metropole", Request::Verdicts(fake)).await;
    assert!(matches!(r, Response::Verdicts), "{r:?}");
    let unknown = "entente_roaming_forwarded_total{peer=\"agglopolys\",result=\"verdict_unknown\"}";
    wait_metric(&tours, unknown, 10.0).await;
    assert_eq!(usage_uplinks(&tours, "tours-metropole-smo").await, tours_usage);
    table.push((
        "10 verdicts for frames never forwarded",
        "ignored, counted as verdict_unknown".into(),
    ));

    // 8. A downlink through Tours's gateway with a forged token, and one over EU868 power.
    let downlink = Downlink {
        phy_payload: vec![0x60, 1, 9, 2, 0x26, 0, 0, 0, 1, 0xaa, 0, 0, 0, 0],
        frequency_hz: 868_100_000,
        data_rate: DataRate::lora(7, Bandwidth::Khz125),
        power_dbm: 30,
        timing: Timing::AfterReception {
            context: RxContext(1_000_000),
            delay: Duration::from_secs(1),
        },
    };
    let r = rogue
        .raw(
            "tours-metropole",
            Request::Downlink(DownlinkRequest {
                gateway: tours_gateway,
                token: vec![7; 41],
                downlink,
            }),
        )
        .await;
    assert!(matches!(r, Response::Downlink(TxResult::BadToken)), "{r:?}");
    table.push((
        "a downlink through Tours's gateway, forged token",
        "refused bad_token".into(),
    ));

    // 9. More frames in one request than the protocol allows, and a frame of Tours's.
    let many = (0..65)
        .map(|i| forward(2_000_000 + i, garbage(500 + i as u16), ROGUE_GATEWAY))
        .collect();
    let r = rogue.raw(SMO, Request::Uplinks(many)).await;
    assert!(matches!(r, Response::Refused { .. }), "{r:?}");
    let tours_frame = vec![0x40, 1, 0, 1, 0x26, 0, 1, 0, 2, 0xaa, 0, 0, 0, 0];
    let r = rogue
        .raw(
            SMO,
            Request::Uplinks(vec![forward(2_000_100, tours_frame, ROGUE_GATEWAY)]),
        )
        .await;
    assert!(format!("{r:?}").contains("not_home"), "{r:?}");
    table.push((
        "65 frames in one request; a frame not homed at the SMO",
        "refused; rejected not_home".into(),
    ));

    // 10. A quarterly review of the Tours / SMO convention, which the rogue is no party
    // to, claiming the SMO prepared it, unsigned (it cannot sign in the SMO's name).
    let refused_docs = documents_refused(&smo).await;
    let reviews = smo
        .get_json("/v1/agreements/tours-metropole-smo/reviews")
        .await
        .ok();
    let (quarter, period_start, period_end) = entente_agreements::review::quarter_of(Utc::now());
    let review = Review {
        agreement: "tours-metropole-smo".into(),
        version: 1,
        quarter,
        period_start,
        period_end,
        prepared_by: SMO.parse().unwrap(),
        prepared_at: Utc::now(),
        host: "tours-metropole".parse().unwrap(),
        guest: SMO.parse().unwrap(),
        state: "active".into(),
        services: vec![],
        users: vec![],
        devices_declared: 0,
        devices_seen: 0,
        declared_not_seen: vec![],
        admin_accounts: vec![],
        changes_since_last_review: vec![],
        pending: vec![],
    };
    let signed_review = SignedReview::new(&review).unwrap();
    let page = SyncMsg {
        dossiers: vec![],
        reviews: vec![signed_review],
    };
    sync_page(&rogue, &smo_id, &page).await;
    assert!(
        documents_refused(&smo).await > refused_docs,
        "the review is refused and recorded"
    );
    assert_eq!(
        smo.get_json("/v1/agreements/tours-metropole-smo/reviews")
            .await
            .ok(),
        reviews,
        "no review kept"
    );
    table.push((
        "an unsigned review of a convention it is no party to",
        "refused and recorded".into(),
    ));

    // 11. An act of its own convention dated 2100 (it would end the agreement at once).
    let held = document(&smo, ROGUE_AGREEMENT).await;
    let mut dossier: Dossier = serde_json::from_str(&held).unwrap();
    let act = Act {
        agreement: ROGUE_AGREEMENT.into(),
        by: ROGUE.parse().unwrap(),
        at: "2100-01-01T00:00:00Z".parse().unwrap(),
        follows: dossier.head().map(SignedAct::id),
        kind: ActKind::Suspend,
    };
    dossier.acts.push(SignedAct::sign(&act, &key).unwrap());
    let refused_docs = documents_refused(&smo).await;
    let page = SyncMsg {
        dossiers: vec![dossier],
        reviews: vec![],
    };
    sync_page(&rogue, &smo_id, &page).await;
    assert!(
        documents_refused(&smo).await > refused_docs,
        "the act is refused and recorded"
    );
    assert_eq!(
        document(&smo, ROGUE_AGREEMENT).await,
        held,
        "the dossier is unchanged"
    );
    table.push((
        "an act of its own convention dated 2100",
        "refused and recorded, dossier unchanged".into(),
    ));

    let after = honest(&smo, &tours).await;
    assert_eq!(after.smo_usage_rogue, before.smo_usage_rogue);
    assert_eq!(after.smo_usage_tours, before.smo_usage_tours);
    assert_eq!(after.tours_usage, before.tours_usage);
    assert_eq!(after.tours_downlinks_ok, before.tours_downlinks_ok);
    assert_eq!(
        after.smo_queue, before.smo_queue,
        "the device's downlink queue is unchanged, attempts included"
    );
    assert_eq!(
        after.smo_ledger, before.smo_ledger,
        "the SMO's ledger is unchanged"
    );
    assert_eq!(
        after.tours_ledger, before.tours_ledger,
        "Tours's ledger is unchanged"
    );

    println!("\n{:<58} | outcome", "attack");
    println!("{}", "-".repeat(100));
    for (attack, outcome) in &table {
        println!("{attack:<58} | {outcome}");
    }
    rogue.stop.cancel();
    smo.stop().await.unwrap();
    tours.stop().await.unwrap();
}
