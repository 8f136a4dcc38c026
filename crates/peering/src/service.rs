//! The federation service: `Peering` wires the parts together and holds what they share
//! (identity, roster, routing, policy, refusals, the usage hook). The swarm runs in its
//! own task (`event_loop`), reached through a `Client`; the roles live in `visited` and
//! `home`, the late buffer in `buffer`, the sync channels in `sync`.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use entente_frame::{UplinkFrame, UplinkKind};
use entente_gateway::{Downlink, GatewayBackend, Registry, RoamedUplink, Roaming, Route, RxInfo, TxFuture};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui, MemberId, SharedClock};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buffer::LateBuffer;
use crate::client::Client;
use crate::event_loop::{EventLoop, Inbound};
use crate::gateways::GatewayLists;
use crate::home::Home;
use crate::metrics::PeeringMetrics;
use crate::peers::PeerTable;
use crate::policy::{FrameFacts, Refusal, RoamingPolicy, RosterPolicy, Terms};
use crate::protocol::*;
use crate::refusals::Refusals;
use crate::roster::{Member, Roster};
use crate::routing::RoutingTable;
use crate::sync::SyncHandlers;
use crate::token::TokenKey;
use crate::verdicts::Verdicts;
use crate::visited::Visited;

pub use crate::peers::PeerStatus;
pub use crate::refusals::RefusalCount;
pub(crate) use crate::refusals::Side;
pub use crate::settings::PeeringConfig;
pub use crate::sync::SyncHandler;
pub use crate::usage::{Carried, CarriedFrame, UsageHook};

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

/// `first` and whatever already waits in `rx` behind it, `max` in all at most: what one
/// request carries.
pub(crate) fn take_batch<T>(first: T, rx: &mut mpsc::Receiver<T>, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub struct Peering {
    /// This node's member id: one side of every policy check.
    pub(crate) me: MemberId,
    /// This node's libp2p identity.
    pub(crate) peer_id: PeerId,
    /// The signed roster: who may connect, where they listen, what addresses are whose.
    pub(crate) roster: Arc<Roster>,
    /// Where a frame's home is; replaced whole when the declared DevEUIs change.
    pub(crate) routing: RwLock<Arc<RoutingTable>>,
    /// Wall clock for buffer ages, peer status and usage records.
    pub(crate) clock: SharedClock,
    /// Reaches peers through the event loop.
    pub(crate) client: Client,
    /// Every other member's connection status, kept by the event loop.
    pub(crate) peers: Arc<PeerTable>,
    /// The visited role's state: token key, our gateways, per-peer senders.
    pub(crate) visited: Visited,
    /// The home role's state: held tokens, local gateways, the roamed queue, the limiter.
    pub(crate) home: Home,
    /// Frames waiting for unreachable home peers.
    pub(crate) buffer: LateBuffer,
    /// Verdicts on frames we took (home) and frames awaiting theirs (visited).
    pub(crate) verdicts: Verdicts,
    /// Peers' gateways as each announced them, and what we told each peer of ours.
    pub(crate) gateway_lists: GatewayLists,
    /// Signs our gateway list (the roster key of this member).
    pub(crate) signing: ed25519_dalek::SigningKey,
    /// Who answers each sync channel.
    pub(crate) sync: SyncHandlers,
    /// Who may roam where, frame by frame: the roster's until the agreements install theirs.
    pub(crate) policy: RwLock<Arc<dyn RoamingPolicy>>,
    /// Refusals so far, for the API.
    pub(crate) refusals: Refusals,
    /// Where carried frames are counted (the ledger).
    pub(crate) usage: RwLock<Option<Arc<dyn UsageHook>>>,
    /// The Arc this service lives in, for the sender tasks it starts.
    pub(crate) weak: OnceLock<Weak<Peering>>,
    pub metrics: PeeringMetrics,
}

/// What the parts built on the federation give it before it starts serving peers.
#[derive(Default)]
pub struct Handlers {
    /// Who may roam where (the agreements); the roster's own rule without one.
    pub policy: Option<Arc<dyn RoamingPolicy>>,
    /// Where carried frames are counted (the ledger).
    pub usage: Option<Arc<dyn UsageHook>>,
    /// Who answers each sync channel (`agreements`, `ledger`).
    pub sync: Vec<(&'static str, Arc<dyn SyncHandler>)>,
    /// Where the federation keeps what must outlive a restart (peers' gateway lists,
    /// tables [`crate::gateways::TABLES`]); in memory without one.
    pub store: Option<Arc<entente_store::Store>>,
}

/// The federation built and listening, its swarm not yet polled: peers' connections and
/// requests wait until [`Built::start`], so nothing is served before the handlers exist.
pub struct Built {
    pub peering: Arc<Peering>,
    /// Frames of this node's devices heard by peers' gateways, for the network server.
    pub roamed: mpsc::Receiver<RoamedUplink>,
    pub listening: Vec<Multiaddr>,
    events: EventLoop<Peering>,
}

pub struct Started {
    pub peering: Arc<Peering>,
    /// Frames of this node's devices heard by peers' gateways, for the network server.
    pub roamed: mpsc::Receiver<RoamedUplink>,
    pub listening: Vec<Multiaddr>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Built {
    /// Installs the handlers, then starts the swarm task.
    pub fn start(self, handlers: Handlers, shutdown: CancellationToken) -> Started {
        let Built {
            peering,
            roamed,
            listening,
            events,
        } = self;
        peering.install(handlers);
        Started {
            peering,
            roamed,
            listening,
            task: tokio::spawn(events.run(shutdown)),
        }
    }
}

impl Peering {
    /// Builds the swarm and listens; the swarm task starts with [`Built::start`].
    #[allow(clippy::too_many_arguments)]
    pub async fn build(
        me: MemberId,
        secret: [u8; 32],
        roster: Roster,
        cfg: PeeringConfig,
        clock: SharedClock,
        local_gateways: Arc<Registry>,
        gateways: Arc<dyn GatewayBackend>,
    ) -> Result<Built, PeeringError> {
        roster.verify()?;
        let keypair = crate::swarm::identity(&me, secret, &roster)?;
        let peer_id = keypair.public().to_peer_id();
        let routing = RoutingTable::build(&roster.members, &[]).map_err(PeeringError::Routing)?;
        let mut swarm = crate::swarm::build(keypair, &roster, peer_id, cfg.request_timeout)?;
        let listening = crate::swarm::listen(&mut swarm, &cfg.listen).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(65_536);
        let (roamed_tx, roamed_rx) = mpsc::channel(65_536);
        let roster = Arc::new(roster);
        let peers = Arc::new(PeerTable::of_roster(&roster, peer_id));
        let token_key = TokenKey::random().map_err(|e| PeeringError::Key(e.to_string()))?;
        let p = Arc::new(Peering {
            me,
            peer_id,
            routing: RwLock::new(Arc::new(routing)),
            clock: clock.clone(),
            client: Client::new(cmd_tx, cfg.request_timeout),
            peers: peers.clone(),
            visited: Visited::new(token_key, gateways, cfg.tx_margin),
            home: Home::new(&cfg, local_gateways, roamed_tx),
            buffer: LateBuffer::new(cfg.buffer_max, cfg.buffer_retention),
            verdicts: Verdicts::default(),
            gateway_lists: GatewayLists::default(),
            signing: ed25519_dalek::SigningKey::from_bytes(&secret),
            sync: SyncHandlers::default(),
            policy: RwLock::new(Arc::new(RosterPolicy(roster.clone()))),
            refusals: Refusals::default(),
            usage: RwLock::new(None),
            weak: OnceLock::new(),
            metrics: PeeringMetrics::default(),
            roster: roster.clone(),
        });
        let _ = p.weak.set(Arc::downgrade(&p));
        let events = EventLoop::new(swarm, cmd_rx, roster, peers, p.metrics.clone(), clock, p.clone());
        Ok(Built {
            peering: p,
            roamed: roamed_rx,
            listening,
            events,
        })
    }

    /// Builds and starts at once, for a federation with no parts on top (tests, tools).
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
        let built = Self::build(me, secret, roster, cfg, clock, local_gateways, gateways).await?;
        Ok(built.start(Handlers::default(), shutdown))
    }

    /// Called once, by [`Built::start`], before the swarm task runs.
    fn install(&self, h: Handlers) {
        if let Some(policy) = h.policy {
            *write(&self.policy) = policy;
        }
        *write(&self.usage) = h.usage;
        for (channel, handler) in h.sync {
            self.sync.insert(channel, handler);
        }
        let Some(store) = h.store else { return };
        if let Err(e) = self
            .gateway_lists
            .keep_in(store.clone(), |m| self.roster.member(m).is_some())
        {
            tracing::warn!(error = %e, "peers' gateway lists not read back; each is taken again when announced");
        }
        let peer_of = |m: &MemberId| self.roster.member(m).map(|m| m.peer_id);
        match self.buffer.keep_in(store, peer_of, self.clock.now()) {
            Ok(n) => {
                self.metrics.buffered.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "frames kept for home peers not read back"),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn peers(&self) -> Vec<PeerStatus> {
        let buffered = self.buffer.lens();
        self.peers.snapshot(|p| buffered.get(p).copied().unwrap_or(0))
    }

    /// The member a DevAddr belongs to, as this node's routing table says.
    pub fn route_dev_addr(&self, a: DevAddr) -> Option<MemberId> {
        self.routing().dev_addr(a).cloned()
    }

    /// Replaces the DevEUIs declared under agreements (joins routed by DevEUI); atomic.
    pub fn set_declared(&self, declared: &[(DevEui, MemberId)]) -> Result<(), PeeringError> {
        let t = RoutingTable::build(&self.roster.members, declared).map_err(PeeringError::Routing)?;
        *write(&self.routing) = Arc::new(t);
        Ok(())
    }

    /// Refusals so far, by side, peer, flow and reason.
    pub fn refusals(&self) -> Vec<RefusalCount> {
        self.refusals.list()
    }

    /// At shutdown, once the event loop stopped: lets go of the handlers given at start
    /// (the agreements, the accounts) and ends the sender tasks, which hold this
    /// service, so that every part is dropped and the database can close.
    pub fn detach(&self) {
        self.sync.clear();
        *write(&self.usage) = None;
        *write(&self.policy) = Arc::new(RosterPolicy(self.roster.clone()));
        self.close_senders();
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
        self.client.sync_request(peer, channel, body).await
    }

    /// Sends one request to a peer and waits for its answer.
    pub async fn request(&self, peer: PeerId, req: Request) -> Result<Response, String> {
        self.client.request(peer, req).await
    }

    pub fn is_member_connected(&self, member: &MemberId) -> bool {
        self.roster
            .member(member)
            .is_some_and(|m| self.peers.is_connected(&m.peer_id))
    }

    pub fn me(&self) -> &MemberId {
        &self.me
    }

    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// Asks the policy in force about one frame; a refusal is counted by side, peer,
    /// flow and reason. A frame that is neither an uplink nor a downlink is refused as
    /// having no agreement.
    pub(crate) fn check_policy(
        &self,
        side: Side,
        home: &MemberId,
        visited: &MemberId,
        facts: Option<FrameFacts>,
    ) -> Result<(), Refusal> {
        let (flow, verdict) = match facts {
            Some(f) => (f.flow.as_str(), read(&self.policy).check(&f)),
            None => ("unknown", Err(Refusal::NoAgreement)),
        };
        if let Err(r) = verdict {
            let peer = match side {
                Side::Visited => home,
                Side::Home => visited,
            };
            self.refusals.count(side, peer, flow, r.as_str());
        }
        verdict
    }

    /// Spends a verified frame's share of the policy's quotas; a refusal is counted like
    /// the check's.
    pub(crate) fn charge_policy(&self, side: Side, facts: FrameFacts) -> Result<(), Refusal> {
        let verdict = read(&self.policy).charge(&facts);
        if let Err(r) = verdict {
            let peer = match side {
                Side::Visited => &facts.home,
                Side::Home => &facts.visited,
            };
            self.refusals.count(side, peer, facts.flow.as_str(), r.as_str());
        }
        verdict
    }

    /// What the policy lets this node do, as visited, for `home`'s devices.
    pub(crate) fn terms(&self, home: &MemberId) -> Terms {
        read(&self.policy).terms(home, &self.me)
    }

    fn routing(&self) -> Arc<RoutingTable> {
        read(&self.routing).clone()
    }

    pub(crate) fn member_of(&self, peer: &PeerId) -> Option<&Member> {
        self.roster.by_peer(peer)
    }

    pub(crate) fn home_of(&self, frame: &UplinkFrame) -> Option<MemberId> {
        let r = self.routing();
        match frame.kind() {
            UplinkKind::Data(d) => r.dev_addr(d.dev_addr).cloned(),
            UplinkKind::Join(j) => r.join(j.join_eui, j.dev_eui).cloned(),
        }
    }

    /// The Arc this service lives in (set once at start).
    pub(crate) fn self_arc(&self) -> Option<Arc<Peering>> {
        self.weak.get().and_then(Weak::upgrade)
    }

    /// Where a frame is processed: here, at a peer, or nowhere known.
    fn route(&self, home: Option<&MemberId>) -> Route {
        match home {
            Some(m) if *m == self.me => Route::Home,
            Some(_) => Route::Forward,
            None => Route::Unknown,
        }
    }
}

/// What the event loop hands out: peers' requests and connections.
impl Inbound for Peering {
    fn connected(this: &Arc<Self>, peer: PeerId) {
        this.forget_told(&peer);
        tokio::spawn(this.clone().flush(peer));
        this.tell_connected(&peer);
    }

    fn roaming_request(this: &Arc<Self>, peer: PeerId, req: Request, channel: ResponseChannel<Response>) {
        let this = this.clone();
        tokio::spawn(async move {
            let resp = match req {
                Request::Uplinks(f) => this.on_uplinks(peer, f),
                Request::Verdicts(v) => this.on_verdicts(peer, v),
                Request::Downlink(d) => this.on_downlink(peer, d).await,
            };
            this.client.respond(channel, resp).await;
        });
    }

    fn disconnected(this: &Arc<Self>, peer: PeerId) {
        // It may come back as a new process that knows none of our gateways, nor the
        // frames it took without committing them.
        this.forget_told(&peer);
        this.requeue_awaited(peer);
    }

    fn sync_request(
        this: &Arc<Self>,
        peer: PeerId,
        req: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        this.serve_sync(peer, req, channel);
    }

    fn tick(this: &Arc<Self>) {
        this.kick_flushes();
    }
}

impl Roaming for Peering {
    fn route_data(&self, dev_addr: DevAddr) -> Route {
        self.route(self.routing().dev_addr(dev_addr))
    }

    fn route_join(&self, join_eui: JoinEui, dev_eui: DevEui) -> Route {
        self.route(self.routing().join(join_eui, dev_eui))
    }

    fn heard(&self, frame: &UplinkFrame, rx: &[RxInfo]) -> Option<u64> {
        self.keep_heard(frame, rx)
    }

    fn forward(&self, frame: UplinkFrame, rx: Vec<RxInfo>, kept: Option<u64>) {
        self.forward_uplink(frame, rx, kept);
    }

    fn is_remote_gateway(&self, gateway: &GatewayEui) -> bool {
        Peering::is_remote_gateway(self, gateway)
    }

    fn send_downlink(&self, gateway: GatewayEui, downlink: Downlink, timeout: Duration) -> TxFuture<'_> {
        // The token is chosen now, as the network server asks, not when the future runs.
        let path = self.downlink_path(gateway, &downlink);
        Box::pin(async move {
            self.send_downlink_via_peer(path?, gateway, downlink, timeout)
                .await
        })
    }
}
