//! PULL_RESP / TX_ACK over real UDP between the gateway server and the emulator.

use std::sync::Arc;
use std::time::Duration;

use entente_gateway::json::{Datr, PushData, TxPk};
use entente_gateway::{
    DownlinkError, GatewayMetrics, GatewayServer, NewGateway, Registry, ServerConfig, TxAckError, TxOutcome,
};
use entente_model::{GatewayEui, SystemClock};
use entente_sim::{GatewayEmulator, rxpk};
use entente_store::Store;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    server: Arc<GatewayServer>,
    frames: tokio::sync::mpsc::Receiver<entente_gateway::Uplink>,
    metrics: GatewayMetrics,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &Registry::TABLES).unwrap());
    let registry = Arc::new(
        Registry::load(
            store,
            Arc::new(SystemClock),
            "tours-metropole".parse().unwrap(),
            Duration::from_secs(60),
        )
        .unwrap(),
    );
    let mut reg = prometheus_client::registry::Registry::default();
    let metrics = GatewayMetrics::register(&mut reg);
    let cfg = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let (server, frames) = GatewayServer::bind(&cfg, registry, metrics.clone(), None)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(server.clone().run(stop.clone()));
    Harness {
        server,
        frames,
        metrics,
        stop,
        _dir: dir,
    }
}

fn register(h: &Harness, n: u64) -> GatewayEui {
    let eui = GatewayEui::from_u64(n);
    h.server
        .registry()
        .create(NewGateway {
            eui,
            name: format!("gw{n}"),
            owner: None,
            position: None,
            source: None,
        })
        .unwrap();
    eui
}

fn txpk(payload: &[u8]) -> TxPk {
    use base64::Engine;
    TxPk {
        imme: false,
        tmst: Some(1_000_000),
        tmms: None,
        freq: 869.525,
        rfch: 0,
        powe: 27,
        modu: "LORA".into(),
        datr: Datr::Lora("SF12BW125".into()),
        codr: Some("4/5".into()),
        fdev: None,
        ipol: true,
        prea: None,
        size: payload.len() as u16,
        data: base64::engine::general_purpose::STANDARD.encode(payload),
        ncrc: false,
    }
}

#[tokio::test]
async fn downlink_reaches_the_gateway_and_its_tx_ack_comes_back() {
    let mut h = start().await;
    let eui = register(&h, 0x0080_0000_0000_0001);
    let addr = h.server.local_addr().unwrap();
    let gw = GatewayEmulator::connect(addr, eui).await.unwrap();

    // Before any PULL_DATA the server has no path to the gateway.
    let err = h.server.send_downlink(eui, txpk(b"x"), WAIT).await.unwrap_err();
    assert!(matches!(err, DownlinkError::NotConnected(_)), "{err}");

    gw.pull(WAIT).await.unwrap();
    let outcome = h
        .server
        .send_downlink(eui, txpk(&[0x60, 1, 2, 3]), WAIT)
        .await
        .unwrap();
    assert_eq!(outcome, TxOutcome::Ok { warning: None });
    let got = gw.next_downlink(WAIT).await.unwrap();
    assert_eq!(got.phy_payload, vec![0x60, 1, 2, 3]);
    assert_eq!(got.txpk.tmst, Some(1_000_000));
    assert!(got.txpk.ipol);

    // The gateway's real error is reported, not a synthesised OK.
    gw.set_tx_ack_error(Some("TOO_LATE"));
    let outcome = h.server.send_downlink(eui, txpk(b"late"), WAIT).await.unwrap();
    assert_eq!(outcome, TxOutcome::Error(TxAckError::TooLate));
    assert_eq!(h.metrics.tx_ack_error.get(), 1);
    assert_eq!(h.metrics.tx_ack_ok.get(), 1);
    let view = h.server.registry().get(&eui).unwrap();
    assert_eq!(
        (
            view.status.downlinks_sent,
            view.status.tx_ok,
            view.status.tx_errors
        ),
        (2, 1, 1)
    );

    // Uplinks still flow alongside (the seam parses them: a minimal data uplink, 12 bytes).
    let up = [0x40, 1, 2, 3, 4, 0, 0, 0, 0xa, 0xb, 0xc, 0xd];
    let body = PushData {
        rxpk: vec![rxpk(&up, 868.1, "SF7BW125", -80, 7.5, 42)],
        stat: None,
    };
    gw.push(&body, WAIT).await.unwrap();
    let f = tokio::time::timeout(WAIT, h.frames.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.frame.bytes(), up);
    assert_eq!(f.rx.gateway, eui);
    assert_eq!(f.rx.frequency_hz, 868_100_000);
    h.stop.cancel();
}

#[tokio::test]
async fn version_1_gateways_get_downlinks_without_tx_ack() {
    let h = start().await;
    let eui = register(&h, 7);
    let gw = GatewayEmulator::connect_version(h.server.local_addr().unwrap(), eui, 1)
        .await
        .unwrap();
    gw.pull(WAIT).await.unwrap();
    let outcome = h.server.send_downlink(eui, txpk(b"v1"), WAIT).await.unwrap();
    assert_eq!(outcome, TxOutcome::NotAcknowledged);
    assert_eq!(gw.next_downlink(WAIT).await.unwrap().phy_payload, b"v1");
    h.stop.cancel();
}

#[tokio::test]
async fn a_silent_gateway_times_out_and_a_late_tx_ack_is_counted_unmatched() {
    let h = start().await;
    let eui = register(&h, 9);
    // A bare socket that sends PULL_DATA but never answers TX_ACK.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    entente_gateway::protocol::encode_upstream(
        &entente_gateway::protocol::Upstream::PullData {
            version: 2,
            token: [1, 1],
            eui,
        },
        &mut out,
    );
    sock.send_to(&out, h.server.local_addr().unwrap()).await.unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = sock.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], &[2, 1, 1, 4]);
    let err = h
        .server
        .send_downlink(eui, txpk(b"q"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, DownlinkError::Timeout(..)));
    // Now answer the PULL_RESP: too late, the waiter is gone.
    let (n, _) = sock.recv_from(&mut buf).await.unwrap();
    assert_eq!(buf[3], entente_gateway::protocol::PULL_RESP);
    entente_gateway::protocol::encode_upstream(
        &entente_gateway::protocol::Upstream::TxAck {
            version: 2,
            token: [buf[1], buf[2]],
            eui,
            json: b"",
        },
        &mut out,
    );
    let _ = n;
    sock.send_to(&out, h.server.local_addr().unwrap()).await.unwrap();
    for _ in 0..100 {
        if h.metrics.tx_ack_unmatched.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.metrics.tx_ack_unmatched.get(), 1);
    h.stop.cancel();
}

/// Encodes an upstream datagram as a liar would send it.
fn datagram(packet: &entente_gateway::protocol::Upstream<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    entente_gateway::protocol::encode_upstream(packet, &mut out);
    out
}

async fn dropped_for_source(h: &Harness, want: u64) -> u64 {
    let reason = entente_gateway::DatagramDrop::SourceMismatch;
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.metrics.datagrams_dropped(reason) < want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.metrics.datagrams_dropped(reason)
}

#[tokio::test]
async fn a_gateway_is_pinned_to_its_first_source_and_a_spoofer_elsewhere_gains_nothing() {
    use entente_gateway::PinnedBy;
    use entente_gateway::protocol::Upstream;

    let mut h = start().await;
    let eui = register(&h, 0x0080_0000_0000_0002);
    let server = h.server.local_addr().unwrap();
    let gw = GatewayEmulator::connect(server, eui).await.unwrap();
    gw.pull(WAIT).await.unwrap();
    let pin = h.server.registry().get(&eui).unwrap().source.unwrap();
    assert_eq!(
        (pin.source.to_string().as_str(), pin.by),
        ("127.0.0.1", PinnedBy::FirstContact)
    );

    // Another host (127.0.0.2 is loopback too) claims the gateway's EUI: a PULL_DATA v1
    // to take its downlinks and make them count as sent, a frame, a forged TX_ACK.
    let liar = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let up = [0x40, 1, 2, 3, 4, 0, 0, 0, 0xa, 0xb, 0xc, 0xd];
    let body = serde_json::to_vec(&PushData {
        rxpk: vec![rxpk(&up, 868.1, "SF7BW125", -80, 7.5, 42)],
        stat: None,
    })
    .unwrap();
    let attacks = [
        datagram(&Upstream::PullData {
            version: 1,
            token: [6, 6],
            eui,
        }),
        datagram(&Upstream::PushData {
            version: 2,
            token: [6, 7],
            eui,
            json: &body,
        }),
        datagram(&Upstream::TxAck {
            version: 2,
            token: [6, 8],
            eui,
            json: b"",
        }),
    ];
    for a in &attacks {
        liar.send_to(a, server).await.unwrap();
    }
    assert_eq!(dropped_for_source(&h, 3).await, 3);
    let mut buf = [0u8; 64];
    let answer = tokio::time::timeout(Duration::from_millis(200), liar.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "the liar got an ack");
    assert!(
        h.frames.try_recv().is_err(),
        "the liar's frame reached the network server"
    );
    assert_eq!(h.metrics.tx_ack.get(), 0);

    // The downlink path is the genuine gateway's still, acknowledged by it.
    let outcome = h.server.send_downlink(eui, txpk(b"real"), WAIT).await.unwrap();
    assert_eq!(outcome, TxOutcome::Ok { warning: None });
    assert_eq!(gw.next_downlink(WAIT).await.unwrap().phy_payload, b"real");

    // The operator moves the pin: now the former source is the one refused; unpinned,
    // the next datagram's source is learned again.
    let view = h
        .server
        .registry()
        .pin(&eui, Some("127.0.0.2".parse().unwrap()))
        .unwrap();
    assert_eq!(view.source.map(|p| p.by), Some(PinnedBy::Operator));
    let _ = gw.pull(Duration::from_millis(300)).await;
    assert_eq!(dropped_for_source(&h, 4).await, 4);
    h.server.registry().pin(&eui, None).unwrap();
    gw.pull(WAIT).await.unwrap();
    let pin = h.server.registry().get(&eui).unwrap().source.unwrap();
    assert_eq!(
        (pin.source.to_string().as_str(), pin.by),
        ("127.0.0.1", PinnedBy::FirstContact)
    );
    h.stop.cancel();
}

#[tokio::test]
async fn a_tx_ack_from_another_port_of_the_pinned_host_answers_nothing() {
    use entente_gateway::protocol::{PULL_RESP, Upstream};

    let h = start().await;
    let eui = register(&h, 0x0080_0000_0000_0003);
    let server = h.server.local_addr().unwrap();
    // The gateway, a bare socket, and a second one on the same host that saw the token.
    let gw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 1024];
    gw.send_to(
        &datagram(&Upstream::PullData {
            version: 2,
            token: [1, 1],
            eui,
        }),
        server,
    )
    .await
    .unwrap();
    gw.recv_from(&mut buf).await.unwrap();
    let sending = h.server.send_downlink(eui, txpk(b"d"), WAIT);
    let answering = async {
        let (_, _) = gw.recv_from(&mut buf).await.unwrap();
        assert_eq!(buf[3], PULL_RESP);
        let token = [buf[1], buf[2]];
        let forged = datagram(&Upstream::TxAck {
            version: 2,
            token,
            eui,
            json: b"",
        });
        other.send_to(&forged, server).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while h.metrics.tx_ack_unmatched.get() < 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let real = br#"{"txpk_ack":{"error":"TOO_LATE"}}"#;
        gw.send_to(
            &datagram(&Upstream::TxAck {
                version: 2,
                token,
                eui,
                json: real,
            }),
            server,
        )
        .await
        .unwrap();
    };
    let (outcome, ()) = tokio::join!(sending, answering);
    // The gateway's own answer, not the forger's OK.
    assert_eq!(outcome.unwrap(), TxOutcome::Error(TxAckError::TooLate));
    assert_eq!(h.metrics.tx_ack_unmatched.get(), 1);
    let view = h.server.registry().get(&eui).unwrap();
    assert_eq!((view.status.tx_ok, view.status.tx_errors), (0, 1));
    h.stop.cancel();
}
