//! The federation service: one libp2p swarm task, admission by the roster, the roaming
//! protocol on both sides, the per-peer buffer for unreachable home nodes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use entente_frame::{UplinkFrame, UplinkKind};
use entente_gateway::{
    Downlink, DownlinkError, GatewayBackend, Registry, Roaming, Route, RxInfo, Timing, TxFuture, TxOutcome,
    Uplink,
};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui, MemberId, SharedClock};
use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, Swarm, allow_block_list, noise, ping, tcp, yamux};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::PeeringMetrics;
use crate::policy::{FrameFacts, Refusal};
use crate::protocol::*;
use crate::roster::{Member, Roster};
use crate::routing::RoutingTable;
use crate::token::{Token, TokenKey};

#[derive(Debug, thiserror::Error)]
pub enum PeeringError {
    #[error("node key: {0}")]
    Key(String),
    #[error("libp2p: {0}")]
    Transport(String),
    #[error("{0} is not a member of the roster")]
    NotAMember(MemberId),
    #[error("roster: {0}")]
    Roster(#[from] crate::roster::RosterError),
    #[error("routing: {0}")]
    Routing(String),
}

#[derive(Debug, Clone)]
pub struct PeeringConfig {
    pub listen: Vec<Multiaddr>,
    /// Frames a peer may forward per second (and burst) before being refused.
    pub peer_rate_per_sec: u32,
    pub peer_burst: u32,
    /// Frames kept per unreachable home node, and for how long.
    pub buffer_max: usize,
    pub buffer_retention: TimeDelta,
    pub request_timeout: Duration,
    /// Safety margin kept before a downlink's RX window when deciding TOO_LATE.
    pub tx_margin: Duration,
    /// Hold peers' requests until `Peering::ready` is called, so the policy, the usage
    /// counters and the sync handlers installed after `start` see the very first frame.
    pub hold_until_ready: bool,
}

impl Default for PeeringConfig {
    fn default() -> Self {
        PeeringConfig {
            listen: vec![],
            peer_rate_per_sec: 1_000,
            peer_burst: 5_000,
            buffer_max: 100_000,
            buffer_retention: TimeDelta::hours(48),
            request_timeout: Duration::from_secs(5),
            tx_margin: Duration::from_millis(50),
            hold_until_ready: false,
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    ping: ping::Behaviour,
    roaming: request_response::cbor::Behaviour<Request, Response>,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
}

enum Command {
    Request {
        peer: PeerId,
        req: Request,
        reply: oneshot::Sender<Result<Response, String>>,
    },
    Respond {
        channel: ResponseChannel<Response>,
        resp: Response,
    },
    Sync {
        peer: PeerId,
        channel: &'static str,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    SyncRespond {
        channel: ResponseChannel<SyncResponse>,
        body: Vec<u8>,
    },
}

/// The replication of signed documents (`/entente/sync/1`) is the agreements' business;
/// the federation only carries the bytes between roster members and says when a peer
/// connects, so the documents are reconciled after any disconnection.
pub trait SyncHandler: Send + Sync {
    /// Answers a peer's sync request (the bytes are untrusted).
    fn on_request(&self, from: &MemberId, body: Vec<u8>) -> Vec<u8>;
    /// A roster member connected (again).
    fn on_connected(&self, peer: &MemberId);
}

/// A roamed frame this side saw complete: on the visited side, an uplink the home node
/// accepted or a downlink its gateway sent; on the home side, an uplink it accepted or a
/// downlink the visited gateway sent. The usage counters hang here.
pub struct Carried<'a> {
    pub home: &'a MemberId,
    pub visited: &'a MemberId,
    pub frame: CarriedFrame<'a>,
    pub airtime_us: u32,
    pub at: DateTime<Utc>,
}

/// The frame a [`Carried`] is about, as parsed where it entered this node.
#[derive(Debug, Clone, Copy)]
pub enum CarriedFrame<'a> {
    Uplink(&'a UplinkFrame),
    /// A downlink (built here, or relayed for a home node); its DevAddr when it is a data
    /// frame, `None` for a join accept.
    Downlink {
        phy_payload: &'a [u8],
        dev_addr: Option<DevAddr>,
    },
}

impl CarriedFrame<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            CarriedFrame::Uplink(f) => f.bytes(),
            CarriedFrame::Downlink { phy_payload, .. } => phy_payload,
        }
    }
}

pub trait UsageHook: Send + Sync {
    fn carried(&self, c: &Carried<'_>);
}

fn airtime_us(dr: entente_region::DataRate, len: usize, downlink: bool) -> u32 {
    let m = if downlink {
        entente_region::Modulation::downlink(dr)
    } else {
        entente_region::Modulation::uplink(dr)
    };
    entente_region::time_on_air(m, len)
        .as_micros()
        .min(u32::MAX as u128) as u32
}

/// One refusal count as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalCount {
    /// `visited` (we refused to forward) or `home` (we refused what a peer forwarded).
    pub side: &'static str,
    pub peer: MemberId,
    pub flow: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

/// A peer as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub member: MemberId,
    pub name: String,
    pub peer_id: String,
    pub connected: bool,
    pub since: Option<DateTime<Utc>>,
    pub rtt_ms: Option<f64>,
    pub buffered: usize,
}

struct HeldToken {
    tmst: u32,
    token: Vec<u8>,
    peer: PeerId,
    member: MemberId,
    at: Instant,
}

/// How long a home node remembers tokens (Class C uses the latest for this long).
const TOKEN_MEMORY: Duration = Duration::from_secs(3600);
const TOKENS_PER_GATEWAY: usize = 64;
const MAX_HELD_GATEWAYS: usize = 50_000;

pub struct Peering {
    me: MemberId,
    peer_id: PeerId,
    roster: Arc<Roster>,
    routing: RwLock<Arc<RoutingTable>>,
    cfg: PeeringConfig,
    clock: SharedClock,
    cmd: mpsc::Sender<Command>,
    token_key: TokenKey,
    /// Process start: token times are monotonic milliseconds since then.
    epoch: Instant,
    held: Mutex<HashMap<GatewayEui, VecDeque<HeldToken>>>,
    local_gateways: Arc<Registry>,
    gateways: Arc<dyn GatewayBackend>,
    roamed_tx: mpsc::Sender<Uplink>,
    status: RwLock<HashMap<PeerId, PeerStatus>>,
    /// Frames waiting for a home peer, keyed by the order they were heard in, so a batch
    /// that failed in flight goes back before what was buffered after it.
    buffers: Mutex<HashMap<PeerId, BTreeMap<u64, (DateTime<Utc>, UplinkForward)>>>,
    next_frame: std::sync::atomic::AtomicU64,
    limiter: DefaultKeyedRateLimiter<PeerId>,
    pub metrics: PeeringMetrics,
    weak: std::sync::OnceLock<std::sync::Weak<Peering>>,
    senders: Mutex<HashMap<PeerId, mpsc::Sender<(u64, UplinkForward)>>>,
    flushing: Mutex<std::collections::HashSet<PeerId>>,
    policy: RwLock<Arc<dyn crate::RoamingPolicy>>,
    refusals: Mutex<BTreeMap<(&'static str, MemberId, &'static str, &'static str), u64>>,
    sync_handlers: RwLock<HashMap<&'static str, Arc<dyn SyncHandler>>>,
    usage: RwLock<Option<Arc<dyn UsageHook>>>,
    ready: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Started {
    pub peering: Arc<Peering>,
    /// Frames of this node's devices heard by peers' gateways, for the network server.
    pub roamed: mpsc::Receiver<Uplink>,
    pub listening: Vec<Multiaddr>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Peering {
    /// Builds the swarm, listens, and starts the swarm task.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        me: MemberId,
        secret: [u8; 32],
        roster: Roster,
        cfg: PeeringConfig,
        clock: SharedClock,
        local_gateways: Arc<Registry>,
        gateways: Arc<dyn GatewayBackend>,
        shutdown: CancellationToken,
    ) -> Result<Started, PeeringError> {
        roster.verify()?;
        let mine = roster
            .member(&me)
            .ok_or_else(|| PeeringError::NotAMember(me.clone()))?;
        let mut secret = secret;
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
            .map_err(|e| PeeringError::Key(e.to_string()))?;
        let peer_id = keypair.public().to_peer_id();
        if peer_id != mine.peer_id {
            return Err(PeeringError::Key(format!(
                "this node's key is not {me}'s public key in the roster"
            )));
        }
        let routing = RoutingTable::build(&roster.members, &[]).map_err(PeeringError::Routing)?;
        let mut allowed = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for m in &roster.members {
            if m.peer_id != peer_id {
                allowed.allow_peer(m.peer_id);
            }
        }
        let codec = request_response::cbor::codec::Codec::<Request, Response>::default()
            .set_request_size_maximum(MAX_REQUEST_BYTES)
            .set_response_size_maximum(MAX_RESPONSE_BYTES);
        let rr = request_response::Behaviour::with_codec(
            codec,
            [(
                libp2p::StreamProtocol::new(ROAMING_PROTOCOL),
                ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(cfg.request_timeout)
                .with_max_concurrent_streams(10_000),
        );
        let sync = request_response::cbor::Behaviour::<SyncRequest, SyncResponse>::new(
            [(libp2p::StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(cfg.request_timeout),
        );
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| PeeringError::Transport(e.to_string()))?
            .with_behaviour(|_| Behaviour {
                allow: allowed,
                ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(5))),
                roaming: rr,
                sync,
            })
            .map_err(|e| PeeringError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
            .build();
        for a in &cfg.listen {
            swarm
                .listen_on(a.clone())
                .map_err(|e| PeeringError::Transport(format!("cannot listen on {a}: {e}")))?;
        }
        // Wait for the listen addresses so the caller can publish the real ports.
        let mut listening = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while listening.len() < cfg.listen.len() {
            match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr { address, .. }) => listening.push(address),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(65_536);
        let (roamed_tx, roamed_rx) = mpsc::channel(65_536);
        let quota =
            Quota::per_second(NonZeroU32::new(cfg.peer_rate_per_sec.max(1)).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(cfg.peer_burst.max(1)).unwrap_or(NonZeroU32::MIN));
        let status = roster
            .members
            .iter()
            .filter(|m| m.peer_id != peer_id)
            .map(|m| {
                (
                    m.peer_id,
                    PeerStatus {
                        member: m.id.clone(),
                        name: m.name.clone(),
                        peer_id: m.peer_id.to_string(),
                        connected: false,
                        since: None,
                        rtt_ms: None,
                        buffered: 0,
                    },
                )
            })
            .collect();
        let roster_arc = Arc::new(roster);
        let cfg_hold = cfg.hold_until_ready;
        let p = Arc::new(Peering {
            me,
            peer_id,
            roster: roster_arc.clone(),
            routing: RwLock::new(Arc::new(routing)),
            cfg,
            clock,
            cmd: cmd_tx,
            token_key: TokenKey::random().map_err(|e| PeeringError::Key(e.to_string()))?,
            epoch: Instant::now(),
            held: Mutex::new(HashMap::new()),
            local_gateways,
            gateways,
            roamed_tx,
            status: RwLock::new(status),
            buffers: Mutex::new(HashMap::new()),
            next_frame: std::sync::atomic::AtomicU64::new(0),
            limiter: RateLimiter::keyed(quota),
            metrics: PeeringMetrics::default(),
            weak: std::sync::OnceLock::new(),
            senders: Mutex::new(HashMap::new()),
            flushing: Mutex::new(Default::default()),
            policy: RwLock::new(Arc::new(crate::RosterPolicy(roster_arc.clone()))),
            refusals: Mutex::new(BTreeMap::new()),
            sync_handlers: RwLock::new(HashMap::new()),
            usage: RwLock::new(None),
            ready: tokio::sync::watch::Sender::new(!cfg_hold),
        });
        let _ = p.weak.set(Arc::downgrade(&p));
        let task = tokio::spawn(p.clone().swarm_task(swarm, cmd_rx, shutdown));
        Ok(Started {
            peering: p,
            roamed: roamed_rx,
            listening,
            task,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Everything is installed: peers' requests held until now are served.
    pub fn ready(&self) {
        self.ready.send_replace(true);
    }

    async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn peers(&self) -> Vec<PeerStatus> {
        let buffers = lock(&self.buffers);
        let mut v: Vec<PeerStatus> = self
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(pid, s)| PeerStatus {
                buffered: buffers.get(pid).map_or(0, |b| b.len()),
                ..s.clone()
            })
            .collect();
        v.sort_by(|a, b| a.member.cmp(&b.member));
        v
    }

    fn routing(&self) -> Arc<RoutingTable> {
        self.routing.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The member a DevAddr belongs to, as this node's routing table says.
    pub fn route_dev_addr(&self, a: DevAddr) -> Option<MemberId> {
        self.routing().dev_addr(a).cloned()
    }

    /// Replaces the DevEUIs declared under agreements (joins routed by DevEUI); atomic.
    pub fn set_declared(&self, declared: &[(DevEui, MemberId)]) -> Result<(), PeeringError> {
        let t = RoutingTable::build(&self.roster.members, declared).map_err(PeeringError::Routing)?;
        *self.routing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
        Ok(())
    }

    fn member_of(&self, peer: &PeerId) -> Option<&Member> {
        self.roster.by_peer(peer)
    }

    /// Asks the policy in force about one frame; a refusal is counted by side, peer,
    /// flow and reason. A frame that is neither an uplink nor a downlink is refused as
    /// having no agreement.
    fn check_policy(
        &self,
        side: &'static str,
        home: &MemberId,
        visited: &MemberId,
        facts: Option<FrameFacts>,
    ) -> Result<(), Refusal> {
        let (flow, verdict) = match facts {
            Some(f) => (
                f.flow.as_str(),
                self.policy.read().unwrap_or_else(|p| p.into_inner()).check(&f),
            ),
            None => ("unknown", Err(Refusal::NoAgreement)),
        };
        if let Err(r) = verdict {
            let peer = if side == "visited" { home } else { visited };
            *lock(&self.refusals)
                .entry((side, peer.clone(), flow, r.as_str()))
                .or_default() += 1;
        }
        verdict
    }

    /// Refusals so far, by side, peer, flow and reason.
    pub fn refusals(&self) -> Vec<RefusalCount> {
        lock(&self.refusals)
            .iter()
            .map(|((side, peer, flow, reason), n)| RefusalCount {
                side,
                peer: peer.clone(),
                flow,
                reason,
                count: *n,
            })
            .collect()
    }

    /// Installs the handler of one sync channel (`agreements`, `ledger`).
    pub fn set_sync_handler(&self, channel: &'static str, h: Arc<dyn SyncHandler>) {
        self.sync_handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel, h);
    }

    fn sync_handler(&self, channel: &str) -> Option<Arc<dyn SyncHandler>> {
        self.sync_handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
    }

    pub fn set_usage_hook(&self, h: Arc<dyn UsageHook>) {
        *self.usage.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    fn carried(&self, home: &MemberId, visited: &MemberId, frame: CarriedFrame<'_>, airtime_us: u32) {
        let hook = self.usage.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(h) = hook {
            h.carried(&Carried {
                home,
                visited,
                frame,
                airtime_us,
                at: self.clock.now(),
            });
        }
    }

    /// Counts the frames of a batch the home node accepted (visited side).
    fn count_carried(&self, peer: &PeerId, frames: &[UplinkForward], resp: &Response) {
        let (Response::Uplinks(answers), Some(home)) = (resp, self.member_of(peer)) else {
            return;
        };
        for (f, a) in frames.iter().zip(answers) {
            if *a == UplinkAnswer::Accepted {
                let air =
                    f.rx.first()
                        .map_or(0, |r| airtime_us(r.info.data_rate, f.frame.len(), false));
                self.carried(&home.id, &self.me, CarriedFrame::Uplink(&f.frame), air);
            }
        }
    }

    /// Sends sync bytes on `channel` to a roster member and waits for its answer.
    pub async fn sync_request(
        &self,
        member: &MemberId,
        channel: &'static str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let peer = self
            .roster
            .member(member)
            .map(|m| m.peer_id)
            .ok_or_else(|| format!("{member} is not on the roster"))?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Sync {
                peer,
                channel,
                body,
                reply: tx,
            })
            .await
            .map_err(|_| "the federation is stopping".to_string())?;
        self.answer(rx).await
    }

    pub fn is_member_connected(&self, member: &MemberId) -> bool {
        self.roster
            .member(member)
            .is_some_and(|m| self.is_connected(&m.peer_id))
    }

    pub fn me(&self) -> &MemberId {
        &self.me
    }

    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// Replaces the roaming policy (the agreements install theirs).
    pub fn set_policy(&self, policy: Arc<dyn crate::RoamingPolicy>) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    fn home_of(&self, frame: &UplinkFrame) -> Option<MemberId> {
        let r = self.routing();
        match frame.kind() {
            UplinkKind::Data(d) => r.dev_addr(d.dev_addr).cloned(),
            UplinkKind::Join(j) => r.join(j.join_eui, j.dev_eui).cloned(),
        }
    }

    fn is_connected(&self, peer: &PeerId) -> bool {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .is_some_and(|s| s.connected)
    }

    /// Sends one request to a peer and waits for its answer.
    /// Waits for the swarm task's answer to a request, within the request timeout.
    async fn answer<T>(&self, rx: oneshot::Receiver<Result<T, String>>) -> Result<T, String> {
        match tokio::time::timeout(self.cfg.request_timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("request dropped".into()),
            Err(_) => Err("timeout".into()),
        }
    }

    pub async fn request(&self, peer: PeerId, req: Request) -> Result<Response, String> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Request { peer, req, reply: tx })
            .await
            .map_err(|_| "the federation is stopping".to_string())?;
        self.answer(rx).await
    }

    // ---- visited side ------------------------------------------------------------

    /// The token that lets `home` ask for a downlink through this reception's gateway.
    pub fn issue_token(&self, home: &PeerId, info: &RxInfo) -> Vec<u8> {
        self.token_key.issue(
            home,
            Token {
                gateway: info.gateway,
                tmst: info.tmst,
                issued_ms: self.now_ms(),
            },
        )
    }

    fn buffer(&self, peer: PeerId, seq: u64, fwd: UplinkForward) {
        let mut b = lock(&self.buffers);
        let q = b.entry(peer).or_default();
        if q.len() >= self.cfg.buffer_max {
            q.pop_first();
            if let Some(m) = self.member_of(&peer) {
                PeeringMetrics::count(&self.metrics.forwarded, m.id.as_str(), "buffer_overflow");
            }
        }
        q.insert(seq, (self.clock.now(), UplinkForward { late: true, ..fwd }));
        self.metrics
            .buffered
            .set(b.values().map(|q| q.len() as i64).sum());
    }

    /// Sends what waited for `peer`, oldest first and in batches, dropping (and counting)
    /// what is over the retention; stops at the first failure and keeps the rest.
    async fn flush(self: Arc<Self>, peer: PeerId) {
        if !lock(&self.flushing).insert(peer) {
            return; // one flush per peer at a time keeps the order
        }
        self.clone().flush_inner(peer).await;
        lock(&self.flushing).remove(&peer);
    }

    /// Starts a flush for every connected peer that has frames waiting.
    fn kick_flushes(self: &Arc<Self>) {
        let waiting: Vec<PeerId> = lock(&self.buffers)
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            if self.is_connected(&p) && !lock(&self.flushing).contains(&p) {
                tokio::spawn(self.clone().flush(p));
            }
        }
    }

    async fn flush_inner(self: Arc<Self>, peer: PeerId) {
        let member = self
            .member_of(&peer)
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        loop {
            let (seqs, batch): (Vec<u64>, Vec<UplinkForward>) = {
                let mut b = lock(&self.buffers);
                let horizon = self.clock.now() - self.cfg.buffer_retention;
                let Some(q) = b.get_mut(&peer) else { return };
                while q.first_key_value().is_some_and(|(_, (t, _))| *t < horizon) {
                    q.pop_first();
                    PeeringMetrics::count(&self.metrics.forwarded, &member, "expired");
                }
                q.iter()
                    .take(MAX_BATCH)
                    .map(|(k, (_, f))| (*k, f.clone()))
                    .unzip()
            };
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match self.request(peer, Request::Uplinks(batch.clone())).await {
                Ok(resp) => {
                    self.count_carried(&peer, &batch, &resp);
                    let mut b = lock(&self.buffers);
                    if let Some(q) = b.get_mut(&peer) {
                        for k in &seqs {
                            q.remove(k);
                        }
                    }
                    self.metrics
                        .buffered
                        .set(b.values().map(|q| q.len() as i64).sum());
                    drop(b);
                    self.count_answers(&member, &resp, n, true);
                }
                Err(e) => {
                    debug!(peer = %member, error = %e, "buffer flush stopped");
                    return;
                }
            }
        }
    }

    fn has_buffered(&self, peer: &PeerId) -> bool {
        lock(&self.buffers).get(peer).is_some_and(|q| !q.is_empty())
    }

    fn count_answers(&self, member: &str, resp: &Response, n: usize, late: bool) {
        let answers: &[UplinkAnswer] = match resp {
            Response::Uplinks(a) => a,
            _ => &[],
        };
        for i in 0..n {
            let label = match (answers.get(i), late) {
                (Some(UplinkAnswer::Accepted), false) => "accepted",
                (Some(UplinkAnswer::Accepted), true) => "late_accepted",
                (Some(UplinkAnswer::Rejected { .. }), false) => "rejected",
                (Some(UplinkAnswer::Rejected { .. }), true) => "late_rejected",
                (None, _) => "refused",
            };
            PeeringMetrics::count(&self.metrics.forwarded, member, label);
        }
    }

    /// One sender per home peer: takes whatever frames queued meanwhile (up to a batch),
    /// sends them in one request, waits for the answer, and so on; order is kept. A
    /// failed request leaves its frames in the late buffer.
    async fn sender(self: Arc<Self>, peer: PeerId, mut rx: mpsc::Receiver<(u64, UplinkForward)>) {
        let member = self
            .member_of(&peer)
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            let n = batch.len();
            if !self.is_connected(&peer) || self.has_buffered(&peer) {
                for (seq, f) in batch {
                    PeeringMetrics::count(&self.metrics.forwarded, &member, "buffered");
                    self.buffer(peer, seq, f);
                }
                continue;
            }
            let frames: Vec<UplinkForward> = batch.iter().map(|(_, f)| f.clone()).collect();
            match self.request(peer, Request::Uplinks(frames.clone())).await {
                Ok(resp) => {
                    self.count_answers(&member, &resp, n, false);
                    self.count_carried(&peer, &frames, &resp);
                }
                Err(e) => {
                    debug!(peer = %member, error = %e, "forward failed; frames wait for the peer");
                    for (seq, f) in batch {
                        PeeringMetrics::count(&self.metrics.forwarded, &member, "buffered");
                        self.buffer(peer, seq, f);
                    }
                }
            }
        }
    }

    // ---- home side -----------------------------------------------------------------

    fn valid_rx(i: &RxInfo) -> bool {
        (863_000_000..=870_000_000).contains(&i.frequency_hz)
            && (-200..=0).contains(&i.rssi)
            && i.snr.is_finite()
            && (-40.0..=40.0).contains(&i.snr)
    }

    async fn on_uplinks(&self, peer: PeerId, batch: Vec<UplinkForward>) -> Response {
        let Some(visited) = self.member_of(&peer).map(|m| m.id.clone()) else {
            return Response::Refused {
                reason: "not a roster member".into(),
            };
        };
        if batch.len() > MAX_BATCH {
            return Response::Refused {
                reason: format!("more than {MAX_BATCH} frames in one request"),
            };
        }
        Response::Uplinks(
            batch
                .into_iter()
                .map(|f| self.on_uplink(peer, &visited, f))
                .collect(),
        )
    }

    fn on_uplink(&self, peer: PeerId, visited: &MemberId, fwd: UplinkForward) -> UplinkAnswer {
        let count = |r: &'static str| PeeringMetrics::count(&self.metrics.received, visited.as_str(), r);
        let reject = |r: &'static str| {
            count(r);
            UplinkAnswer::Rejected { reason: r.into() }
        };
        if self.limiter.check_key(&peer).is_err() {
            return reject("rate_limited");
        }
        if fwd.rx.is_empty() || fwd.rx.len() > MAX_RX_PER_FRAME {
            return reject("malformed");
        }
        match self.home_of(&fwd.frame) {
            Some(h) if h == self.me => {}
            _ => return reject("not_home"),
        }
        let facts = FrameFacts::of_uplink(self.me.clone(), visited.clone(), &fwd.frame);
        if let Err(r) = self.check_policy("home", &self.me, visited, Some(facts)) {
            return reject(r.as_str());
        }
        let mut frames = Vec::new();
        for r in fwd.rx {
            // A peer cannot pass one of our own gateways off as its own.
            if !Self::valid_rx(&r.info) || self.local_gateways.get(&r.info.gateway).is_some() {
                continue;
            }
            let mut held = lock(&self.held);
            // A peer inventing gateway EUIs cannot grow this without bound: when full, the
            // frame still goes home, without a downlink path through that gateway.
            if held.len() >= MAX_HELD_GATEWAYS && !held.contains_key(&r.info.gateway) {
                held.retain(|_, q| q.back().is_some_and(|h| h.at.elapsed() < TOKEN_MEMORY));
            }
            let room = held.len() < MAX_HELD_GATEWAYS || held.contains_key(&r.info.gateway);
            if !fwd.late && room {
                let q = held.entry(r.info.gateway).or_default();
                if q.len() >= TOKENS_PER_GATEWAY {
                    q.pop_front();
                }
                q.push_back(HeldToken {
                    tmst: r.info.tmst,
                    token: r.token,
                    peer,
                    member: visited.clone(),
                    at: Instant::now(),
                });
            }
            drop(held);
            frames.push(Uplink {
                frame: fwd.frame.clone(),
                rx: r.info,
            });
        }
        if frames.is_empty() {
            return reject("malformed");
        }
        let air = airtime_us(frames[0].rx.data_rate, fwd.frame.len(), false);
        for f in frames {
            if self.roamed_tx.try_send(f).is_err() {
                return reject("busy");
            }
        }
        // Counted before the answer leaves: if this node dies now, the visited node
        // sends the frame again and the count, keyed by the frame, does not double.
        self.carried(&self.me, visited, CarriedFrame::Uplink(&fwd.frame), air);
        count(if fwd.late { "accepted_late" } else { "accepted" });
        UplinkAnswer::Accepted
    }

    // ---- visited side: downlinks asked by a home node ---------------------------------

    async fn on_downlink(&self, peer: PeerId, req: DownlinkRequest) -> Response {
        let member = self
            .member_of(&peer)
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        let result = self.downlink_result(peer, req).await;
        let label = match &result {
            TxResult::Ok { .. } => "ok",
            TxResult::GatewayError { .. } => "gateway_error",
            TxResult::NotAcknowledged => "not_acknowledged",
            TxResult::TooLate => "too_late",
            TxResult::BadToken => "bad_token",
            TxResult::Refused { .. } => "refused",
            TxResult::Failed { .. } => "failed",
        };
        PeeringMetrics::count(&self.metrics.downlinks, &member, label);
        Response::Downlink(result)
    }

    async fn downlink_result(&self, peer: PeerId, req: DownlinkRequest) -> TxResult {
        let Some(t) = self.token_key.check(&peer, &req.token) else {
            return TxResult::BadToken;
        };
        if t.gateway != req.gateway {
            return TxResult::BadToken;
        }
        let age_ms = self.now_ms() - t.issued_ms;
        match req.downlink.timing {
            // Class C: through the gateway that heard the device last, for an hour.
            Timing::Immediately => {
                if !(0..=TOKEN_MEMORY.as_millis() as i64).contains(&age_ms) {
                    return TxResult::BadToken;
                }
            }
            Timing::AfterReception { context, delay } => {
                let delay_us = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                // RX1 is at least 1 s after the uplink and RX2 at most 16 s.
                if context.0 != u64::from(t.tmst) || !(900_000..=16_000_000).contains(&delay_us) {
                    return TxResult::BadToken;
                }
                if age_ms * 1000 + self.cfg.tx_margin.as_micros() as i64 > delay_us {
                    return TxResult::TooLate;
                }
            }
        }
        let Some(home) = self.member_of(&peer).map(|m| m.id.clone()) else {
            return TxResult::BadToken;
        };
        let phy = req.downlink.phy_payload.clone();
        let facts = FrameFacts::of_downlink(home.clone(), self.me.clone(), &phy);
        let dev_addr = facts.as_ref().and_then(|f| f.dev_addr);
        if let Err(r) = self.check_policy("visited", &home, &self.me, facts) {
            return TxResult::Refused {
                reason: r.as_str().to_string(),
            };
        }
        let air = airtime_us(req.downlink.data_rate, phy.len(), true);
        match self
            .gateways
            .transmit(req.gateway, req.downlink, Duration::from_millis(800))
            .await
        {
            Ok(TxOutcome::Ok { warning }) => {
                self.carried(
                    &home,
                    &self.me,
                    CarriedFrame::Downlink {
                        phy_payload: &phy,
                        dev_addr,
                    },
                    air,
                );
                TxResult::Ok { warning }
            }
            Ok(TxOutcome::NotAcknowledged) => TxResult::NotAcknowledged,
            Ok(TxOutcome::Error(error)) => TxResult::GatewayError { error },
            Err(e) => TxResult::Failed {
                reason: e.to_string(),
            },
        }
    }

    // ---- the swarm task ---------------------------------------------------------------

    async fn swarm_task(
        self: Arc<Self>,
        mut swarm: Swarm<Behaviour>,
        mut cmds: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut pending: HashMap<
            request_response::OutboundRequestId,
            oneshot::Sender<Result<Response, String>>,
        > = HashMap::new();
        let mut backoff: HashMap<PeerId, (Instant, Duration)> = HashMap::new();
        let mut sync_pending: SyncPending = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.redial(&mut swarm, &mut backoff);
                    self.kick_flushes();
                }
                c = cmds.recv() => match c {
                    None => break,
                    Some(Command::Request { peer, req, reply }) => {
                        let id = swarm.behaviour_mut().roaming.send_request(&peer, req);
                        pending.insert(id, reply);
                    }
                    Some(Command::Respond { channel, resp }) => {
                        let _ = swarm.behaviour_mut().roaming.send_response(channel, resp);
                    }
                    Some(Command::Sync { peer, channel, body, reply }) => {
                        let id = swarm
                            .behaviour_mut()
                            .sync
                            .send_request(&peer, SyncRequest { channel: channel.to_string(), body });
                        sync_pending.insert(id, reply);
                    }
                    Some(Command::SyncRespond { channel, body }) => {
                        let _ = swarm.behaviour_mut().sync.send_response(channel, SyncResponse(body));
                    }
                },
                ev = swarm.select_next_some() => self.on_event(ev, &mut pending, &mut sync_pending, &mut backoff),
            }
        }
        info!("federation stopped");
    }

    fn redial(&self, swarm: &mut Swarm<Behaviour>, backoff: &mut HashMap<PeerId, (Instant, Duration)>) {
        let now = Instant::now();
        for m in &self.roster.members {
            if m.peer_id == self.peer_id || m.addresses.is_empty() || swarm.is_connected(&m.peer_id) {
                continue;
            }
            let (next, step) = backoff
                .get(&m.peer_id)
                .copied()
                .unwrap_or((now, Duration::from_millis(500)));
            if now < next {
                continue;
            }
            let opts = DialOpts::peer_id(m.peer_id)
                .addresses(m.addresses.clone())
                .build();
            if let Err(e) = swarm.dial(opts) {
                debug!(peer = %m.id, error = %e, "dial not started");
            }
            // Doubles until a connection resets it; at most a minute between tries.
            backoff.insert(m.peer_id, (now + step, (step * 2).min(Duration::from_secs(60))));
        }
    }

    fn set_status(&self, peer: &PeerId, f: impl FnOnce(&mut PeerStatus)) {
        if let Some(s) = self
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(peer)
        {
            f(s);
        }
    }

    fn on_event(
        self: &Arc<Self>,
        ev: SwarmEvent<BehaviourEvent>,
        pending: &mut HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Response, String>>>,
        sync_pending: &mut SyncPending,
        backoff: &mut HashMap<PeerId, (Instant, Duration)>,
    ) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                backoff.remove(&peer_id);
                if num_established.get() == 1 {
                    let now = self.clock.now();
                    self.set_status(&peer_id, |s| {
                        s.connected = true;
                        s.since = Some(now);
                    });
                    self.metrics.peers_connected.inc();
                    if let Some(m) = self.member_of(&peer_id) {
                        info!(peer = %m.id, "peer connected");
                    }
                    tokio::spawn(self.clone().flush(peer_id));
                    if let Some(m) = self.member_of(&peer_id) {
                        let handlers: Vec<_> = self
                            .sync_handlers
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .values()
                            .cloned()
                            .collect();
                        for h in handlers {
                            let m = m.id.clone();
                            tokio::spawn(async move { h.on_connected(&m) });
                        }
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.set_status(&peer_id, |s| {
                    s.connected = false;
                    s.since = None;
                    s.rtt_ms = None;
                });
                self.metrics.peers_connected.dec();
                if let Some(m) = self.member_of(&peer_id) {
                    warn!(peer = %m.id, "peer disconnected");
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.metrics.connections_refused.inc();
                    warn!(from = %send_back_addr, "connection refused: peer not on the roster");
                } else {
                    debug!(from = %send_back_addr, error = %error, "incoming connection failed");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => self.set_status(&peer, |s| s.rtt_ms = Some(rtt.as_secs_f64() * 1000.0)),
            SwarmEvent::Behaviour(BehaviourEvent::Roaming(e)) => match e {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let this = self.clone();
                        tokio::spawn(async move {
                            this.wait_ready().await;
                            let resp = match request {
                                Request::Uplinks(f) => this.on_uplinks(peer, f).await,
                                Request::Downlink(d) => this.on_downlink(peer, d).await,
                            };
                            let _ = this.cmd.send(Command::Respond { channel, resp }).await;
                        });
                    }
                    request_response::Message::Response { request_id, response } => {
                        if let Some(tx) = pending.remove(&request_id) {
                            let _ = tx.send(Ok(response));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let _ = tx.send(Err(error.to_string()));
                    }
                }
                request_response::Event::InboundFailure { peer, error, .. } => {
                    debug!(%peer, %error, "inbound request failed");
                }
                request_response::Event::ResponseSent { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync_event(e, sync_pending),
            _ => {}
        }
    }
}

type SyncPending = HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>>;

impl Peering {
    fn on_sync_event(
        self: &Arc<Self>,
        e: request_response::Event<SyncRequest, SyncResponse>,
        pending: &mut SyncPending,
    ) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let this = self.clone();
                    let from = self.member_of(&peer).map(|m| m.id.clone());
                    tokio::spawn(async move {
                        this.wait_ready().await;
                        let body = match (from, this.sync_handler(&request.channel)) {
                            (Some(from), Some(h)) => {
                                tokio::task::spawn_blocking(move || h.on_request(&from, request.body))
                                    .await
                                    .unwrap_or_default()
                            }
                            _ => Vec::new(),
                        };
                        let _ = this.cmd.send(Command::SyncRespond { channel, body }).await;
                    });
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let _ = tx.send(Ok(response.0));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = pending.remove(&request_id) {
                    let _ = tx.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

impl Roaming for Peering {
    fn route_data(&self, dev_addr: DevAddr) -> Route {
        match self.routing().dev_addr(dev_addr) {
            Some(m) if *m == self.me => Route::Home,
            Some(_) => Route::Forward,
            None => Route::Unknown,
        }
    }

    fn route_join(&self, join_eui: JoinEui, dev_eui: DevEui) -> Route {
        match self.routing().join(join_eui, dev_eui) {
            Some(m) if *m == self.me => Route::Home,
            Some(_) => Route::Forward,
            None => Route::Unknown,
        }
    }

    fn forward(&self, frame: UplinkFrame, rx: Vec<RxInfo>) {
        let Some(home) = self.home_of(&frame) else {
            return;
        };
        let Some(peer) = self.roster.member(&home).map(|m| m.peer_id) else {
            return;
        };
        let facts = FrameFacts::of_uplink(home.clone(), self.me.clone(), &frame);
        if let Err(r) = self.check_policy("visited", &home, &self.me, Some(facts)) {
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), r.as_str());
            return;
        }
        let terms = self
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .terms(&home, &self.me);
        // The agreement caps the copies shared: the best receptions go.
        let mut rx = rx;
        rx.sort_by(|a, b| b.snr.total_cmp(&a.snr));
        let rx = rx
            .into_iter()
            .take(terms.max_copies.clamp(1, MAX_RX_PER_FRAME))
            .map(|info| RoamedRx {
                token: self.issue_token(&peer, &info),
                info,
            })
            .collect();
        let fwd = UplinkForward {
            frame,
            rx,
            late: false,
        };
        let seq = self.next_frame.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // While older frames wait for this peer, newer ones queue behind them: the home
        // node's frame counters would refuse anything that overtook them.
        if !self.is_connected(&peer) || self.has_buffered(&peer) {
            if !terms.buffer_when_unreachable {
                PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "dropped_unreachable");
                return;
            }
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "buffered");
            self.buffer(peer, seq, fwd);
            return;
        }
        let tx = {
            let mut senders = lock(&self.senders);
            match senders.get(&peer) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let (tx, rx) = mpsc::channel(65_536);
                    if let Some(me) = self.self_arc() {
                        tokio::spawn(me.sender(peer, rx));
                    }
                    senders.insert(peer, tx.clone());
                    tx
                }
            }
        };
        if let Err(e) = tx.try_send((seq, fwd)) {
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "buffered");
            let (seq, f) = match e {
                mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f) => f,
            };
            self.buffer(peer, seq, f);
        }
    }

    fn is_remote_gateway(&self, gateway: &GatewayEui) -> bool {
        lock(&self.held).get(gateway).is_some_and(|q| !q.is_empty())
    }

    fn send_downlink(&self, gateway: GatewayEui, downlink: Downlink, timeout: Duration) -> TxFuture<'_> {
        let chosen = {
            let mut held = lock(&self.held);
            let Some(q) = held.get_mut(&gateway) else {
                return Box::pin(async move {
                    Err(DownlinkError::Peer(gateway, "no token for this gateway".into()))
                });
            };
            q.retain(|h| h.at.elapsed() < TOKEN_MEMORY);
            match downlink.timing {
                Timing::AfterReception { context, .. } => q
                    .iter()
                    .rev()
                    .find(|h| u64::from(h.tmst) == context.0)
                    .map(|h| (h.peer, h.member.clone(), h.token.clone())),
                Timing::Immediately => q.back().map(|h| (h.peer, h.member.clone(), h.token.clone())),
            }
        };
        let me = self.self_arc();
        Box::pin(async move {
            let Some((peer, member, token)) = chosen else {
                return Err(DownlinkError::Peer(
                    gateway,
                    "no token for this gateway and time".into(),
                ));
            };
            let Some(p) = me else {
                return Err(DownlinkError::Peer(gateway, "federation stopped".into()));
            };
            let phy = downlink.phy_payload.clone();
            let air = airtime_us(downlink.data_rate, phy.len(), true);
            let facts = FrameFacts::of_downlink(p.me.clone(), member.clone(), &phy);
            let dev_addr = facts.as_ref().and_then(|f| f.dev_addr);
            if let Err(r) = p.check_policy("home", &p.me, &member, facts) {
                PeeringMetrics::count(&p.metrics.downlinks, member.as_str(), r.as_str());
                return Err(DownlinkError::Peer(
                    gateway,
                    format!("no agreement lets this downlink through {member}: {}", r.as_str()),
                ));
            }
            let req = Request::Downlink(DownlinkRequest {
                gateway,
                token,
                downlink,
            });
            let resp = tokio::time::timeout(timeout, p.request(peer, req))
                .await
                .map_err(|_| DownlinkError::Timeout(gateway, timeout))?;
            let out = match resp {
                Ok(Response::Downlink(r)) => r,
                Ok(other) => TxResult::Failed {
                    reason: format!("unexpected answer {other:?}"),
                },
                Err(e) => TxResult::Failed { reason: e },
            };
            let label = match &out {
                TxResult::Ok { .. } => "sent_ok",
                TxResult::GatewayError { .. } => "sent_gateway_error",
                TxResult::NotAcknowledged => "sent_not_acknowledged",
                TxResult::TooLate => "sent_too_late",
                TxResult::BadToken => "sent_bad_token",
                TxResult::Refused { .. } => "sent_refused",
                TxResult::Failed { .. } => "sent_failed",
            };
            PeeringMetrics::count(&p.metrics.downlinks, member.as_str(), label);
            if matches!(out, TxResult::Ok { .. }) {
                p.carried(
                    &p.me,
                    &member,
                    CarriedFrame::Downlink {
                        phy_payload: &phy,
                        dev_addr,
                    },
                    air,
                );
            }
            match out {
                TxResult::Ok { warning } => Ok(TxOutcome::Ok { warning }),
                TxResult::NotAcknowledged => Ok(TxOutcome::NotAcknowledged),
                TxResult::GatewayError { error } => Ok(TxOutcome::Error(error)),
                TxResult::TooLate => Ok(TxOutcome::Error(entente_gateway::TxAckError::TooLate)),
                TxResult::BadToken => Err(DownlinkError::Peer(gateway, "the peer refused our token".into())),
                TxResult::Refused { reason } => Err(DownlinkError::Peer(
                    gateway,
                    format!("the peer's agreement policy refused it: {reason}"),
                )),
                TxResult::Failed { reason } => Err(DownlinkError::Peer(gateway, reason)),
            }
        })
    }
}

impl Peering {
    /// The Arc this service lives in (set once at start).
    fn self_arc(&self) -> Option<Arc<Peering>> {
        self.weak.get().and_then(std::sync::Weak::upgrade)
    }
}
