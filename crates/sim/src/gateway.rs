use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use entente_gateway::json::{Datr, PullResp, PushData, RxPk, TxAckBody, TxPk, TxPkAck};
use entente_gateway::protocol::{self, Downstream, Token, Upstream};
use entente_model::GatewayEui;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no {0} within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// A downlink the emulated gateway received, with the TX_ACK it answered.
#[derive(Debug, Clone)]
pub struct ReceivedDownlink {
    pub txpk: TxPk,
    pub phy_payload: Vec<u8>,
    pub answered_error: Option<String>,
}

/// What the emulated gateway answers in TX_ACK.
#[derive(Debug, Default)]
struct TxAckPlan {
    always: Option<String>,
    once: std::collections::VecDeque<String>,
}

type Waiters = Arc<Mutex<HashMap<Token, oneshot::Sender<()>>>>;

/// Emulates a packet forwarder: an "up" socket for PUSH_DATA and a "down" socket for
/// PULL_DATA and the downlinks that come back on it, as the Semtech forwarder does.
pub struct GatewayEmulator {
    pub eui: GatewayEui,
    version: u8,
    server: SocketAddr,
    up: UdpSocket,
    down: Arc<UdpSocket>,
    pull_waiters: Waiters,
    tx_ack_error: Arc<Mutex<TxAckPlan>>,
    downlinks: tokio::sync::Mutex<mpsc::Receiver<ReceivedDownlink>>,
    down_task: JoinHandle<()>,
}

impl Drop for GatewayEmulator {
    fn drop(&mut self) {
        self.down_task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GatewayEmulator {
    /// Opens the two sockets on loopback towards `server` (protocol version 2).
    pub async fn connect(server: SocketAddr, eui: GatewayEui) -> Result<Self, SimError> {
        Self::connect_version(server, eui, 2).await
    }

    pub async fn connect_version(server: SocketAddr, eui: GatewayEui, version: u8) -> Result<Self, SimError> {
        let local: std::net::IpAddr = if server.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        Self::connect_from(server, eui, version, local).await
    }

    /// The same from another local address (e.g. 127.0.0.2): a second host claiming a
    /// gateway's EUI, as a spoofer would.
    pub async fn connect_from(
        server: SocketAddr,
        eui: GatewayEui,
        version: u8,
        local: std::net::IpAddr,
    ) -> Result<Self, SimError> {
        let bind = SocketAddr::new(local, 0);
        let up = UdpSocket::bind(bind).await?;
        let down = Arc::new(UdpSocket::bind(bind).await?);
        let pull_waiters: Waiters = Arc::default();
        let tx_ack_error: Arc<Mutex<TxAckPlan>> = Arc::default();
        let (tx, rx) = mpsc::channel(256);
        let down_task = tokio::spawn(down_loop(
            down.clone(),
            server,
            eui,
            pull_waiters.clone(),
            tx_ack_error.clone(),
            tx,
        ));
        Ok(Self {
            eui,
            version,
            server,
            up,
            down,
            pull_waiters,
            tx_ack_error,
            downlinks: tokio::sync::Mutex::new(rx),
            down_task,
        })
    }

    fn token() -> Token {
        fastrand::u16(..).to_be_bytes()
    }

    /// Sends PUSH_DATA and waits for the PUSH_ACK carrying the same token.
    pub async fn push(&self, body: &PushData<'_>, wait: Duration) -> Result<Token, SimError> {
        let json = serde_json::to_vec(body).map_err(|e| SimError::Encode(e.to_string()))?;
        let token = Self::token();
        let mut out = Vec::with_capacity(json.len() + 12);
        protocol::encode_upstream(
            &Upstream::PushData {
                version: self.version,
                token,
                eui: self.eui,
                json: &json,
            },
            &mut out,
        );
        self.up.send_to(&out, self.server).await?;
        let mut buf = [0u8; 64];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let r = tokio::time::timeout_at(deadline, self.up.recv_from(&mut buf)).await;
            let Ok(r) = r else {
                return Err(SimError::Timeout("PUSH_ACK", wait));
            };
            let (n, _) = r?;
            // Acks of earlier, timed-out pushes may still arrive: skip them.
            if let Ok(Downstream::PushAck { token: t, .. }) = protocol::parse_downstream(&buf[..n])
                && t == token
            {
                return Ok(token);
            }
        }
    }

    /// Sends PUSH_DATA without waiting for an ack.
    pub async fn push_no_wait(&self, body: &PushData<'_>) -> Result<(), SimError> {
        let json = serde_json::to_vec(body).map_err(|e| SimError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(json.len() + 12);
        protocol::encode_upstream(
            &Upstream::PushData {
                version: self.version,
                token: Self::token(),
                eui: self.eui,
                json: &json,
            },
            &mut out,
        );
        self.up.send_to(&out, self.server).await?;
        Ok(())
    }

    /// Sends PULL_DATA (the keep-alive that opens the downlink path) and waits for PULL_ACK.
    pub async fn pull(&self, wait: Duration) -> Result<(), SimError> {
        let token = Self::token();
        let (tx, rx) = oneshot::channel();
        lock(&self.pull_waiters).insert(token, tx);
        let mut out = Vec::with_capacity(12);
        protocol::encode_upstream(
            &Upstream::PullData {
                version: self.version,
                token,
                eui: self.eui,
            },
            &mut out,
        );
        self.down.send_to(&out, self.server).await?;
        let r = tokio::time::timeout(wait, rx).await;
        lock(&self.pull_waiters).remove(&token);
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(SimError::Timeout("PULL_ACK", wait)),
        }
    }

    /// Sends arbitrary bytes from the up socket (robustness tests).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), SimError> {
        self.up.send_to(bytes, self.server).await?;
        Ok(())
    }

    /// The error the emulator answers in TX_ACK from now on (`None`: success).
    pub fn set_tx_ack_error(&self, error: Option<&str>) {
        lock(&self.tx_ack_error).always = error.map(str::to_owned);
    }

    /// Answers `error` to the next downlink only (e.g. TOO_LATE, to force RX2).
    pub fn fail_next_tx(&self, error: &str) {
        lock(&self.tx_ack_error).once.push_back(error.to_owned());
    }

    pub async fn next_downlink(&self, wait: Duration) -> Result<ReceivedDownlink, SimError> {
        let mut rx = self.downlinks.lock().await;
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(d)) => Ok(d),
            _ => Err(SimError::Timeout("downlink", wait)),
        }
    }
}

async fn down_loop(
    sock: Arc<UdpSocket>,
    server: SocketAddr,
    eui: GatewayEui,
    pull_waiters: Waiters,
    tx_ack_error: Arc<Mutex<TxAckPlan>>,
    downlinks: mpsc::Sender<ReceivedDownlink>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::new();
    loop {
        let Ok((n, _)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        match protocol::parse_downstream(&buf[..n]) {
            Ok(Downstream::PullAck { token, .. }) => {
                if let Some(w) = lock(&pull_waiters).remove(&token) {
                    let _ = w.send(());
                }
            }
            Ok(Downstream::PullResp { version, token, json }) => {
                let Ok(resp) = serde_json::from_slice::<PullResp>(json) else {
                    tracing::warn!("emulated gateway {eui}: undecodable PULL_RESP");
                    continue;
                };
                let error = {
                    let mut plan = lock(&tx_ack_error);
                    plan.once.pop_front().or_else(|| plan.always.clone())
                };
                if version >= 2 {
                    let body = TxAckBody {
                        txpk_ack: TxPkAck {
                            error: Some(error.clone().unwrap_or_else(|| "NONE".into())),
                            warn: None,
                        },
                    };
                    let json = serde_json::to_vec(&body).unwrap_or_default();
                    protocol::encode_upstream(
                        &Upstream::TxAck {
                            version,
                            token,
                            eui,
                            json: &json,
                        },
                        &mut out,
                    );
                    let _ = sock.send_to(&out, server).await;
                }
                let phy_payload = STANDARD.decode(resp.txpk.data.as_bytes()).unwrap_or_default();
                let _ = downlinks
                    .send(ReceivedDownlink {
                        txpk: resp.txpk,
                        phy_payload,
                        answered_error: error,
                    })
                    .await;
            }
            _ => {}
        }
    }
}

/// An `rxpk` as a Semtech forwarder would report a LoRa frame received at `freq_mhz`.
pub fn rxpk(phy_payload: &[u8], freq_mhz: f64, datr: &str, rssi: i32, snr: f32, tmst: u32) -> RxPk<'static> {
    RxPk {
        time: Some(
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        ),
        tmms: None,
        tmst,
        freq: freq_mhz,
        chan: 0,
        rfch: 0,
        stat: 1,
        modu: "LORA".into(),
        datr: Datr::Lora(datr.to_owned().into()),
        codr: Some("4/5".into()),
        rssi: Some(rssi),
        lsnr: Some(snr),
        size: phy_payload.len() as u16,
        data: STANDARD.encode(phy_payload).into(),
        rsig: Vec::new(),
    }
}
