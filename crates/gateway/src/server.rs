use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entente_model::GatewayEui;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use entente_frame::UplinkFrame;

use crate::dutycycle::DutyCycle;
use crate::frame::RxFrame;
use crate::gso;
use crate::journal::Journal;
use crate::json::{PullResp, PushData, TxAckBody, TxPk};
use crate::metrics::{DatagramDrop, FrameDrop, GatewayMetrics};
use crate::mmsg::{self, RecvBatch};
use crate::protocol::{self, Downstream, Token, Upstream};
use crate::registry::{Live, Registry};
use crate::seam::{Downlink, DownlinkError, GatewayBackend, TxAckError, TxFuture, TxOutcome, Uplink};
use crate::source::{self, SourceCheck};

pub use crate::settings::ServerConfig;

/// Downlinks waiting for their TX_ACK, with the address each PULL_RESP went to: only the
/// same socket may acknowledge it.
type Pending = HashMap<(GatewayEui, Token), (SocketAddr, oneshot::Sender<TxOutcome>)>;

/// Acks of one received batch, encoded back to back, with where each goes.
#[derive(Default)]
struct Replies {
    /// One run per gateway address (and reply size): sent as one segmented datagram run.
    runs: Vec<gso::Run>,
    scratch: Vec<u8>,
}

impl Replies {
    fn push(&mut self, packet: &Downstream<'_>, to: SocketAddr) {
        protocol::encode_downstream(packet, &mut self.scratch);
        let len = self.scratch.len();
        if len == 0 {
            return;
        }
        let open = self
            .runs
            .iter_mut()
            .find(|r| r.to == to && r.segment == len && r.datagrams() < gso::MAX_SEGMENTS);
        match open {
            Some(run) => run.bytes.extend_from_slice(&self.scratch),
            None => self.runs.push(gso::Run {
                to,
                segment: len,
                bytes: self.scratch.clone(),
            }),
        }
    }
}

/// The UDP server gateways' packet forwarders talk to.
pub struct GatewayServer {
    socket: UdpSocket,
    registry: Arc<Registry>,
    metrics: GatewayMetrics,
    frames: mpsc::Sender<Uplink>,
    /// Where the frames of a datagram are written before its PUSH_ACK goes; `None`: not
    /// kept (tests and benches without a node around them).
    journal: Option<Arc<Journal>>,
    pending: Mutex<Pending>,
    max_datagram: usize,
    /// Acks go as segmented runs until the kernel refuses one.
    segmented: AtomicBool,
    /// Airtime spent per gateway and sub-band, whoever asked for the downlink.
    duty_cycle: DutyCycle,
}

impl GatewayServer {
    /// Binds the UDP socket. Frames accepted from registered gateways arrive on the
    /// returned receiver, each written to `journal` (when given) before it is acknowledged.
    pub async fn bind(
        cfg: &ServerConfig,
        registry: Arc<Registry>,
        metrics: GatewayMetrics,
        journal: Option<Arc<Journal>>,
    ) -> io::Result<(Arc<Self>, mpsc::Receiver<Uplink>)> {
        let domain = socket2::Domain::for_address(cfg.bind);
        let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if let Err(e) = sock.set_recv_buffer_size(cfg.recv_buffer_bytes) {
            warn!("cannot enlarge UDP receive buffer: {e}");
        }
        sock.set_nonblocking(true)?;
        sock.bind(&cfg.bind.into())?;
        let socket = UdpSocket::from_std(sock.into())?;
        let (tx, rx) = mpsc::channel(cfg.frame_queue.max(1));
        let server = Arc::new(Self {
            socket,
            registry,
            metrics,
            frames: tx,
            journal,
            pending: Mutex::new(HashMap::new()),
            max_datagram: cfg.max_datagram_bytes.clamp(12, 65_507),
            segmented: AtomicBool::new(true),
            duty_cycle: DutyCycle::default(),
        });
        Ok((server, rx))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Receives until `shutdown` is cancelled. A bad datagram is counted and skipped; it
    /// never ends or stalls the loop.
    ///
    /// Datagrams come in batches (`recvmmsg`, up to [`mmsg::BATCH`] per call, whatever is
    /// waiting); their acks go out together (`sendmmsg`) and their frames reach the network
    /// server with one reservation of the frame queue per batch.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // One byte more than allowed, so an oversize datagram is seen as such, not truncated.
        let mut batch = RecvBatch::new(self.max_datagram + 1);
        let mut out = Replies::default();
        let mut frames: Vec<(Arc<Live>, Uplink)> = Vec::with_capacity(mmsg::BATCH);
        info!(addr = ?self.socket.local_addr().ok(), "gateway server listening");
        loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.socket.async_io(Interest::READABLE, || batch.recv(&self.socket)) => r,
            };
            if let Err(e) = r {
                // ICMP errors from earlier sends surface here on some systems.
                debug!("udp receive error: {e}");
                continue;
            }
            let now = self.registry.clock().now();
            for i in 0..batch.len() {
                let Some((bytes, from)) = batch.get(i) else { break };
                self.metrics.datagrams_received.inc();
                if bytes.len() > self.max_datagram {
                    self.metrics.drop_datagram(DatagramDrop::Oversize);
                    continue;
                }
                if let Err(reason) = self.handle(bytes, from, now, &mut out, &mut frames) {
                    self.metrics.drop_datagram(reason);
                    debug!(%from, reason = reason.as_str(), "datagram dropped");
                }
            }
            self.push_frames(&mut frames);
            self.send_replies(&mut out).await;
        }
        info!("gateway server stopped");
    }

    fn handle(
        &self,
        buf: &[u8],
        from: SocketAddr,
        now: chrono::DateTime<chrono::Utc>,
        out: &mut Replies,
        frames: &mut Vec<(Arc<Live>, Uplink)>,
    ) -> Result<(), DatagramDrop> {
        let packet = protocol::parse_upstream(buf)?;
        let live = self
            .registry
            .live(&packet.eui())
            .ok_or(DatagramDrop::UnknownGateway)?;
        self.check_source(&live, from, now)?;
        match packet {
            Upstream::PushData {
                version, token, json, ..
            } => {
                let body: PushData<'_> = serde_json::from_slice(json).map_err(|_| DatagramDrop::BadJson)?;
                self.metrics.push_data.inc();
                live.seen(now);
                live.push_data.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                live.net().push_addr = Some(from);
                out.push(&Downstream::PushAck { version, token }, from);
                if let Some(stat) = &body.stat {
                    self.registry.record_stat(&live, stat);
                }
                for pk in &body.rxpk {
                    if let Some(u) = self.frame(&live, pk, now) {
                        frames.push((live.clone(), u));
                    }
                }
            }
            Upstream::PullData { version, token, .. } => {
                self.metrics.pull_data.inc();
                live.seen(now);
                live.pull_data.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                {
                    let mut net = live.net();
                    net.pull_addr = Some(from);
                    net.pull_version = version;
                }
                out.push(&Downstream::PullAck { version, token }, from);
            }
            Upstream::TxAck { token, json, eui, .. } => {
                let outcome = tx_outcome(json)?;
                self.metrics.tx_ack.inc();
                live.seen(now);
                // Counted as the gateway's only when it answers a downlink we sent there.
                let Some(waiter) = self.take_waiter(eui, token, from) else {
                    self.metrics.tx_ack_unmatched.inc();
                    return Ok(());
                };
                let ordering = std::sync::atomic::Ordering::Relaxed;
                match &outcome {
                    TxOutcome::Ok { .. } => {
                        live.tx_ok.fetch_add(1, ordering);
                        self.metrics.tx_ack_ok.inc();
                    }
                    _ => {
                        live.tx_errors.fetch_add(1, ordering);
                        self.metrics.tx_ack_error.inc();
                    }
                }
                let _ = waiter.send(outcome);
            }
        }
        Ok(())
    }

    /// Drops a datagram from anywhere but the gateway's pinned source; the first datagram
    /// of a gateway without a pin sets it.
    fn check_source(
        &self,
        live: &Live,
        from: SocketAddr,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DatagramDrop> {
        let checked = source::check(&mut live.net().pin, from.ip(), now);
        match checked {
            SourceCheck::Allowed => Ok(()),
            SourceCheck::Learned(pin) => {
                info!(eui = %live.record.eui, source = %pin.source, "gateway source pinned at first contact");
                if let Err(e) = self.registry.keep_learned(&live.record.eui, &pin) {
                    warn!(eui = %live.record.eui, error = %e, "cannot store the learned gateway source");
                }
                Ok(())
            }
            SourceCheck::Refused => Err(DatagramDrop::SourceMismatch),
        }
    }

    /// The downlink a TX_ACK answers, if it came from where that downlink was sent.
    fn take_waiter(
        &self,
        eui: GatewayEui,
        token: Token,
        from: SocketAddr,
    ) -> Option<oneshot::Sender<TxOutcome>> {
        let mut pending = self.pending();
        match pending.get(&(eui, token)) {
            Some((to, _)) if *to == from => pending.remove(&(eui, token)).map(|(_, w)| w),
            _ => None,
        }
    }

    /// Hands a batch of frames to the network server: the queue's room is reserved (for
    /// the whole batch at once when it has it), the frames that fit are journaled as one
    /// row, then queued; what does not fit is dropped and counted as `backpressure`, never
    /// waited for. Runs before the batch's acks are sent.
    fn push_frames(&self, frames: &mut Vec<(Arc<Live>, Uplink)>) {
        if frames.is_empty() {
            return;
        }
        let permits = self.reserve(frames.len());
        let kept = permits.len().min(frames.len());
        let mark = self.journal.as_ref().and_then(|j| {
            j.keep(frames.iter().take(kept).map(|(_, u)| u))
                .inspect_err(|e| warn!(error = %e, "cannot journal acknowledged frames"))
                .ok()
        });
        let ordering = std::sync::atomic::Ordering::Relaxed;
        let mut drained = frames.drain(..);
        for (permit, (_, mut u)) in permits.into_iter().zip(drained.by_ref()) {
            u.journal = mark;
            permit.send(u);
            self.metrics.frames_accepted.inc();
        }
        for (live, _) in drained {
            live.frames_dropped.fetch_add(1, ordering);
            self.metrics.drop_frame(FrameDrop::Backpressure);
        }
    }

    /// Room in the frame queue for up to `n` frames: all at once, else as much as there is.
    fn reserve(&self, n: usize) -> Vec<mpsc::Permit<'_, Uplink>> {
        if let Ok(all) = self.frames.try_reserve_many(n) {
            return all.collect();
        }
        std::iter::from_fn(|| self.frames.try_reserve().ok())
            .take(n)
            .collect()
    }

    /// Sends the batch's acks, as many per system call as the kernel takes.
    async fn send_replies(&self, out: &mut Replies) {
        let mut done = 0;
        while let Some(runs) = out.runs.get(done..).filter(|r| !r.is_empty()) {
            let segmented = self.segmented.load(Ordering::Relaxed);
            let sent = match runs.first() {
                Some(run) if !segmented => self.send_run_plain(run).await.map(|()| 1),
                _ => {
                    self.socket
                        .async_io(Interest::WRITABLE, || gso::send_runs(&self.socket, runs))
                        .await
                }
            };
            match sent {
                Ok(n) => done += n.max(1),
                Err(e) if segmented && gso::unsupported(&e) => {
                    info!("the kernel refuses segmented UDP sends ({e}); acks go one datagram at a time");
                    self.segmented.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    // This one cannot be sent (gone gateway, ICMP error): skip it.
                    if let Some(run) = runs.first() {
                        debug!(to = %run.to, "cannot send ack: {e}");
                    }
                    done += 1;
                }
            }
        }
        out.runs.clear();
    }

    /// A run's datagrams one by one, for kernels without segmented sends.
    async fn send_run_plain(&self, run: &gso::Run) -> std::io::Result<()> {
        let datagrams: Vec<(&[u8], Option<SocketAddr>)> = run
            .bytes
            .chunks(run.segment.max(1))
            .map(|d| (d, Some(run.to)))
            .collect();
        let mut done = 0;
        while let Some(rest) = datagrams.get(done..).filter(|r| !r.is_empty()) {
            done += self
                .socket
                .async_io(Interest::WRITABLE, || mmsg::send_batch(&self.socket, rest))
                .await?
                .max(1);
        }
        Ok(())
    }

    /// Checks and parses one `rxpk`; a refused one is counted here.
    fn frame(
        &self,
        live: &Live,
        pk: &crate::json::RxPk<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Uplink> {
        let ordering = std::sync::atomic::Ordering::Relaxed;
        self.metrics.frames_received.inc();
        live.frames_received.fetch_add(1, ordering);
        let result = RxFrame::from_rxpk(live.record.eui, pk, now)
            .map_err(|e| e.reason)
            .and_then(|f| {
                // The one parse of this reception: every later step reads `Uplink::frame`.
                let frame = UplinkFrame::parse(f.phy_payload).map_err(|_| FrameDrop::BadPhy)?;
                Ok(Uplink {
                    frame,
                    rx: f.rx,
                    journal: None,
                })
            });
        match result {
            Ok(u) => Some(u),
            Err(reason) => {
                live.frames_dropped.fetch_add(1, ordering);
                self.metrics.drop_frame(reason);
                None
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a PULL_RESP to the gateway and waits for its TX_ACK.
    pub async fn send_downlink(
        &self,
        eui: GatewayEui,
        txpk: TxPk,
        wait: Duration,
    ) -> Result<TxOutcome, DownlinkError> {
        let live = self
            .registry
            .live(&eui)
            .ok_or(DownlinkError::UnknownGateway(eui))?;
        let (addr, version) = {
            let net = live.net();
            (
                net.pull_addr.ok_or(DownlinkError::NotConnected(eui))?,
                net.pull_version,
            )
        };
        let json =
            serde_json::to_vec(&PullResp { txpk }).map_err(|e| DownlinkError::Encode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        let token = {
            let mut pending = self.pending();
            let mut token = fastrand::u16(..).to_be_bytes();
            while pending.contains_key(&(eui, token)) {
                token = fastrand::u16(..).to_be_bytes();
            }
            if version >= 2 {
                pending.insert((eui, token), (addr, tx));
            }
            token
        };
        let mut out = Vec::with_capacity(json.len() + 4);
        protocol::encode_downstream(
            &Downstream::PullResp {
                version,
                token,
                json: &json,
            },
            &mut out,
        );
        if let Err(e) = self.socket.send_to(&out, addr).await {
            self.pending().remove(&(eui, token));
            return Err(e.into());
        }
        self.metrics.downlinks_sent.inc();
        live.downlinks_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if version < 2 {
            return Ok(TxOutcome::NotAcknowledged);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                self.pending().remove(&(eui, token));
                Err(DownlinkError::Timeout(eui, wait))
            }
        }
    }
}

impl GatewayBackend for GatewayServer {
    fn transmit(&self, gateway: GatewayEui, downlink: Downlink, timeout: Duration) -> TxFuture<'_> {
        Box::pin(self.send_downlink(gateway, TxPk::from_downlink(&downlink), timeout))
    }

    fn duty_cycle(&self) -> &DutyCycle {
        &self.duty_cycle
    }
}

fn tx_outcome(json: &[u8]) -> Result<TxOutcome, DatagramDrop> {
    // Forwarders before v2.x send TX_ACK with no body when all went well.
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(TxOutcome::Ok { warning: None });
    }
    let body: TxAckBody = serde_json::from_slice(json).map_err(|_| DatagramDrop::BadJson)?;
    Ok(match body.txpk_ack.error.as_deref() {
        None | Some("NONE") | Some("") => TxOutcome::Ok {
            warning: body.txpk_ack.warn,
        },
        Some(e) => TxOutcome::Error(TxAckError::parse(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_ack_bodies() {
        assert_eq!(tx_outcome(b"").unwrap(), TxOutcome::Ok { warning: None });
        assert_eq!(
            tx_outcome(br#"{"txpk_ack":{"error":"NONE"}}"#).unwrap(),
            TxOutcome::Ok { warning: None }
        );
        assert_eq!(
            tx_outcome(br#"{"txpk_ack":{"error":"TOO_LATE"}}"#).unwrap(),
            TxOutcome::Error(TxAckError::TooLate)
        );
        assert_eq!(
            tx_outcome(br#"{"txpk_ack":{"warn":"TX_POWER"}}"#).unwrap(),
            TxOutcome::Ok {
                warning: Some("TX_POWER".into())
            }
        );
        assert_eq!(tx_outcome(b"{nope"), Err(DatagramDrop::BadJson));
    }
}
