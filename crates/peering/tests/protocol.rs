//! The roaming protocol between in-process nodes over real libp2p connections on
//! loopback: tokens only work for the peer they were given to, and garbage on the
//! protocol is refused without harming the node.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::SigningKey;
use entente_frame::UplinkFrame;
use entente_gateway::{
    Downlink, GatewayMetrics, GatewayServer, Registry, RxContext, RxInfo, ServerConfig, Timing,
};
use entente_model::{GatewayEui, SharedClock, SystemClock};
use entente_peering::protocol::{DownlinkRequest, ROAMING_PROTOCOL, Request, Response, TxResult};
use entente_peering::{Peering, PeeringConfig, Roster};
use entente_region::{Bandwidth, DataRate};
use entente_store::Store;
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, noise, tcp, yamux};
use tokio_util::sync::CancellationToken;

const IDS: [&str; 4] = ["tours-metropole", "smo-vdln", "agglopolys", "blois"];

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn roster(keys: &[SigningKey], ports: &[u16]) -> String {
    let mut t = "federation = \"test\"\nversion = 1\nrule = \"all\"\n".to_string();
    for (i, k) in keys.iter().enumerate() {
        t.push_str(&format!(
            "\n[[member]]\nid = \"{}\"\nname = \"{}\"\nkind = \"syndicate\"\npublic_key = \"{}\"\naddresses = [\"/ip4/127.0.0.1/tcp/{}\"]\ndev_addr_blocks = [\"260{}0000/16\"]\nroams_on = [\"tours-metropole\"]\n",
            IDS[i],
            IDS[i],
            hex::encode(k.verifying_key().as_bytes()),
            ports[i],
            i + 1
        ));
    }
    for (i, k) in keys.iter().enumerate() {
        t = Roster::sign(&t, &IDS[i].parse().unwrap(), k).unwrap();
    }
    t
}

struct Node {
    peering: Arc<Peering>,
    registry: Arc<Registry>,
    server: Arc<GatewayServer>,
    _dir: tempfile::TempDir,
}

/// Stands in for the home network server, which these tests do not run: every frame
/// handed to it verifies.
fn verify_all(mut roamed: tokio::sync::mpsc::Receiver<entente_gateway::RoamedUplink>) {
    tokio::spawn(async move {
        while let Some(f) = roamed.recv().await {
            let _ = f.verdict.send(entente_gateway::Verdict::Verified);
        }
    });
}

async fn node(i: usize, key: &SigningKey, roster_text: &str, port: u16, stop: &CancellationToken) -> Node {
    node_with(i, key, roster_text, port, stop, PeeringConfig::default()).await
}

async fn node_with(
    i: usize,
    key: &SigningKey,
    roster_text: &str,
    port: u16,
    stop: &CancellationToken,
    base: PeeringConfig,
) -> Node {
    node_handling(
        i,
        key,
        roster_text,
        port,
        stop,
        base,
        entente_peering::Handlers::default(),
    )
    .await
}

async fn node_handling(
    i: usize,
    key: &SigningKey,
    roster_text: &str,
    port: u16,
    stop: &CancellationToken,
    base: PeeringConfig,
    handlers: entente_peering::Handlers,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &Registry::TABLES).unwrap());
    let clock: SharedClock = Arc::new(SystemClock);
    let registry = Arc::new(
        Registry::load(
            store,
            clock.clone(),
            IDS[i].parse().unwrap(),
            Duration::from_secs(90),
        )
        .unwrap(),
    );
    let cfg = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let (server, _frames) = GatewayServer::bind(
        &cfg,
        registry.clone(),
        GatewayMetrics::register(&mut prometheus_client::registry::Registry::default()),
        None,
    )
    .await
    .unwrap();
    let pcfg = PeeringConfig {
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()],
        ..base
    };
    let registry_kept = registry.clone();
    let server_kept = server.clone();
    let started = Peering::build(
        IDS[i].parse().unwrap(),
        key.to_bytes(),
        Roster::parse(roster_text).unwrap(),
        pcfg,
        clock,
        registry,
        server,
    )
    .await
    .unwrap()
    .start(handlers, stop.clone());
    verify_all(started.roamed);
    Node {
        peering: started.peering,
        registry: registry_kept,
        server: server_kept,
        _dir: dir,
    }
}

async fn connected(n: &Peering, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while n.peers().iter().filter(|p| p.connected).count() < want {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", n.peers());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rx_info(gw: GatewayEui, tmst: u32) -> RxInfo {
    RxInfo {
        gateway: gw,
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
        snr: 5.0,
    }
}

/// A downlink timed `at` on the concentrator clock of the reception at tmst 10 000 000.
fn downlink(at: u32) -> Downlink {
    Downlink {
        // An unconfirmed data downlink on FPort 1: a flow the roster policy lets through.
        phy_payload: vec![96, 1, 0, 1, 38, 0, 0, 0, 1, 170, 0, 0, 0, 0],
        frequency_hz: 868_100_000,
        data_rate: DataRate::lora(7, Bandwidth::Khz125),
        power_dbm: 14,
        timing: Timing::AfterReception {
            context: RxContext(10_000_000),
            delay: Duration::from_micros(u64::from(at.wrapping_sub(10_000_000))),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_only_for_their_peer_and_garbage_is_refused() {
    let keys: Vec<SigningKey> = (1..=4u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let ports: Vec<u16> = (0..4).map(|_| port()).collect();
    let text = roster(&keys, &ports);
    let stop = CancellationToken::new();
    // Three nodes run; the fourth member's key is held by the test for a raw swarm.
    let tours = node(0, &keys[0], &text, ports[0], &stop).await;
    let smo = node(1, &keys[1], &text, ports[1], &stop).await;
    let agglo = node(2, &keys[2], &text, ports[2], &stop).await;
    connected(&tours.peering, 2).await;
    connected(&agglo.peering, 2).await;

    // Tours (visited) gave SMO (home) a token for its gateway; Agglopolys tries to use it.
    let gw = GatewayEui([0, 0x80, 0, 0, 0, 0, 0xc0, 1]);
    let token = tours.peering.issue_token(
        &smo.peering.peer_id(),
        &rx_info(gw, 10_000_000),
        Some(entente_model::DevAddr(0x2601_0001)),
    );
    let req = |t: Vec<u8>, at: u32| {
        Request::Downlink(DownlinkRequest {
            gateway: gw,
            token: t,
            downlink: downlink(at),
        })
    };
    let stolen = agglo
        .peering
        .request(tours.peering.peer_id(), req(token.clone(), 11_000_000))
        .await
        .unwrap();
    assert!(
        matches!(stolen, Response::Downlink(TxResult::BadToken)),
        "{stolen:?}"
    );
    // A forged token, and a real one stretched to another gateway's or time's use.
    let mut forged = token.clone();
    forged[30] ^= 0x55;
    let r = smo
        .peering
        .request(tours.peering.peer_id(), req(forged, 11_000_000))
        .await
        .unwrap();
    assert!(matches!(r, Response::Downlink(TxResult::BadToken)), "{r:?}");
    let r = smo
        .peering
        .request(tours.peering.peer_id(), req(token.clone(), 90_000_000))
        .await
        .unwrap();
    assert!(
        matches!(r, Response::Downlink(TxResult::BadToken)),
        "outside RX1/RX2: {r:?}"
    );
    // The rightful holder, asking for what EU868 or a downlink does not allow: refused
    // before the gateway, and the window stays unused.
    let odd = |edit: fn(&mut Downlink)| {
        let mut d = downlink(11_000_000);
        edit(&mut d);
        Request::Downlink(DownlinkRequest {
            gateway: gw,
            token: token.clone(),
            downlink: d,
        })
    };
    type Edit = fn(&mut Downlink);
    let refused: [(&str, Edit); 4] = [
        ("30 dBm", |d| d.power_dbm = 30),
        ("out of band", |d| d.frequency_hz = 915_000_000),
        ("an uplink MType", |d| d.phy_payload[0] = 0x40),
        ("too long for the data rate", |d| {
            d.data_rate = DataRate::lora(12, Bandwidth::Khz125);
            d.phy_payload.resize(100, 0)
        }),
    ];
    for (what, edit) in refused {
        let r = smo
            .peering
            .request(tours.peering.peer_id(), odd(edit))
            .await
            .unwrap();
        assert!(
            matches!(r, Response::Downlink(TxResult::Refused { .. })),
            "{what}: {r:?}"
        );
    }
    // It passes the checks; the gateway itself is not connected, and that is what comes
    // back (never a synthesised OK).
    let r = smo
        .peering
        .request(tours.peering.peer_id(), req(token.clone(), 11_000_000))
        .await
        .unwrap();
    assert!(
        matches!(r, Response::Downlink(TxResult::Failed { .. } | TxResult::TooLate)),
        "{r:?}"
    );
    // One downlink per receive window: the same window again is refused.
    let r = smo
        .peering
        .request(tours.peering.peer_id(), req(token.clone(), 11_000_000))
        .await
        .unwrap();
    assert!(
        matches!(r, Response::Downlink(TxResult::BadToken)),
        "reused: {r:?}"
    );
    // The relayed downlink was booked in the gateway's duty cycle like Tours's own: the
    // 1 % sub-band's 36 s per hour no longer fit whole.
    use entente_gateway::GatewayBackend;
    let duty = tours.server.duty_cycle();
    assert!(!duty.try_reserve(gw, 868_100_000, Duration::from_secs(36), Utc::now()));
    // Tours's own downlinks spend the rest: the RX2 window of the same token is refused
    // before the gateway, as Tours's own would be.
    while duty.try_reserve(gw, 868_100_000, Duration::from_millis(10), Utc::now()) {}
    let r = smo
        .peering
        .request(tours.peering.peer_id(), req(token.clone(), 12_000_000))
        .await
        .unwrap();
    assert!(
        matches!(&r, Response::Downlink(TxResult::Refused { reason }) if reason == "duty_cycle"),
        "{r:?}"
    );

    // Garbage on the roaming protocol from a roster member: refused, node unharmed.
    let kp = libp2p::identity::Keypair::ed25519_from_bytes(keys[3].to_bytes()).unwrap();
    let mut raw = libp2p::SwarmBuilder::with_existing_identity(kp)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::cbor::Behaviour::<Vec<u8>, Vec<u8>>::new(
                [(StreamProtocol::new(ROAMING_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .build();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", ports[0]).parse().unwrap();
    let target: PeerId = tours.peering.peer_id();
    raw.add_peer_address(target, addr);
    let mut failures = 0;
    for junk in [vec![0xffu8; 100], vec![], (0..=255u8).collect::<Vec<u8>>()] {
        raw.behaviour_mut().send_request(&target, junk);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while failures < 3 {
        match tokio::time::timeout_at(deadline, raw.select_next_some()).await {
            Ok(SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. })) => failures += 1,
            Ok(SwarmEvent::Behaviour(request_response::Event::Message { message, .. })) => {
                panic!("garbage was answered: {message:?}")
            }
            Ok(_) => {}
            Err(_) => panic!("no answer to garbage after 15 s ({failures} failures)"),
        }
    }
    // Tours still answers its members.
    let r = smo
        .peering
        .request(tours.peering.peer_id(), req(vec![1, 2, 3], 11_000_000))
        .await
        .unwrap();
    assert!(matches!(r, Response::Downlink(TxResult::BadToken)), "{r:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_rate_is_refused_frame_by_frame() {
    use entente_peering::protocol::{Receipt, RoamedRx, UplinkForward};
    let keys: Vec<SigningKey> = (1..=4u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let ports: Vec<u16> = (0..4).map(|_| port()).collect();
    let text = roster(&keys, &ports);
    let stop = CancellationToken::new();
    let tours = node(0, &keys[0], &text, ports[0], &stop).await;
    let slow = PeeringConfig {
        peer_rate_per_sec: 1,
        peer_burst: 2,
        ..PeeringConfig::default()
    };
    let smo = node_with(1, &keys[1], &text, ports[1], &stop, slow).await;
    connected(&tours.peering, 1).await;
    // Tours announces the gateway its frames were heard by: the SMO takes no reception
    // from a gateway its forwarder did not announce.
    let heard_by = GatewayEui([0, 0x80, 0, 0, 0, 0, 0xc0, 2]);
    tours
        .registry
        .create(entente_gateway::NewGateway {
            eui: heard_by,
            name: "tours".into(),
            owner: None,
            position: None,
            source: None,
        })
        .unwrap();
    tours.peering.announce(smo.peering.peer_id()).await;
    // Five frames of an SMO device (DevAddr 2602xxxx), all within one second.
    let frame = |fcnt: u8| {
        let mut phy = vec![0x40, 0x01, 0x00, 0x02, 0x26, 0x80, fcnt, 0x00, 0x01, 0xaa];
        phy.extend_from_slice(&[0, 0, 0, 0]);
        UplinkForward {
            id: u64::from(fcnt),
            frame: UplinkFrame::parse(phy).unwrap(),
            rx: vec![RoamedRx {
                info: rx_info(GatewayEui([0, 0x80, 0, 0, 0, 0, 0xc0, 2]), 1_000),
                token: vec![],
            }],
            late: false,
        }
    };
    let r = tours
        .peering
        .request(
            smo.peering.peer_id(),
            Request::Uplinks((0..5).map(frame).collect()),
        )
        .await
        .unwrap();
    let Response::Uplinks(answers) = r else {
        panic!("{r:?}")
    };
    assert_eq!(answers.len(), 5);
    let limited = answers
        .iter()
        .filter(|a| matches!(a, Receipt::Rejected { reason } if reason == "rate_limited"))
        .count();
    assert_eq!(limited, 3, "burst of 2, then refused: {answers:?}");
    assert_eq!(answers[0], Receipt::Taken, "{answers:?}");
    stop.cancel();
}

/// A peer whose sync answers do not decode: the session stops, with a warning and a count
/// per peer and channel, and nothing else is harmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_fails_is_counted_per_peer_and_channel() {
    use entente_peering::sync::{SyncHandler, SyncSession};
    struct Garbage;
    impl SyncHandler for Garbage {
        fn on_request(&self, _: &entente_model::MemberId, _: Vec<u8>) -> Vec<u8> {
            vec![0xff; 16]
        }
        fn on_connected(&self, _: &entente_model::MemberId) {}
    }
    struct Strict;
    impl SyncSession for Strict {
        fn first(&mut self) -> Vec<u8> {
            b"heads".to_vec()
        }
        fn answer(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Err(format!("{} bytes that are no heads", answer.len()))
        }
    }
    let keys: Vec<SigningKey> = (1..=4u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let ports: Vec<u16> = (0..4).map(|_| port()).collect();
    let text = roster(&keys, &ports);
    let stop = CancellationToken::new();
    let tours = node(0, &keys[0], &text, ports[0], &stop).await;
    let handlers = entente_peering::Handlers {
        sync: vec![("test", Arc::new(Garbage) as Arc<dyn SyncHandler>)],
        ..Default::default()
    };
    let _smo = node_handling(
        1,
        &keys[1],
        &text,
        ports[1],
        &stop,
        PeeringConfig::default(),
        handlers,
    )
    .await;
    connected(&tours.peering, 1).await;
    let smo_id: entente_model::MemberId = IDS[1].parse().unwrap();
    let failures = |channel: &str| {
        tours
            .peering
            .metrics
            .sync_failures
            .get_or_create(&entente_peering::metrics::PeerChannel {
                peer: IDS[1].into(),
                channel: channel.into(),
            })
            .get()
    };
    assert_eq!(failures("test"), 0);
    let stats = tours.peering.reconcile(&smo_id, "test", Box::new(Strict)).await;
    assert_eq!(stats, None, "the session stopped");
    assert_eq!(failures("test"), 1);
    assert_eq!(failures("ledger"), 0, "counted on its own channel only");
    // The connection and the other requests carry on.
    assert!(tours.peering.is_member_connected(&smo_id));
    stop.cancel();
}
