//! The event loop: the one task that owns the swarm, the requests in flight, the redial
//! backoff and the peers' status. It runs the `Client`'s commands and hands what peers
//! ask, and who connects, to an `Inbound` side.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entente_model::SharedClock;
use futures::StreamExt;
use libp2p::request_response::ResponseChannel;
use libp2p::swarm::{ListenError, SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, Swarm, ping};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dispatch::{Command, Pending};
use crate::metrics::PeeringMetrics;
use crate::peers::PeerTable;
use crate::protocol::*;
use crate::roster::Roster;
use crate::swarm::{Behaviour, BehaviourEvent};

/// Where the event loop's events go out. Each call returns at once (work is spawned), so
/// the loop never waits on a handler.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// A roster member's first connection is up.
    fn connected(this: &Arc<Self>, peer: PeerId);
    /// A member's last connection closed.
    fn disconnected(this: &Arc<Self>, peer: PeerId);
    /// A peer's roaming request, answered later on `channel`.
    fn roaming_request(this: &Arc<Self>, peer: PeerId, req: Request, channel: ResponseChannel<Response>);
    /// A peer's sync request, answered later on `channel`.
    fn sync_request(this: &Arc<Self>, peer: PeerId, req: SyncRequest, channel: ResponseChannel<SyncResponse>);
    /// Every half second.
    fn tick(this: &Arc<Self>);
}

/// When a disconnected member is dialled next.
#[derive(Clone, Copy)]
struct Backoff {
    next_try: Instant,
    /// The wait after that try; doubles up to a minute until a connection resets it.
    step: Duration,
}

pub(crate) struct EventLoop<I> {
    /// Driven from here only.
    swarm: Swarm<Behaviour>,
    /// From the clients.
    commands: mpsc::Receiver<Command>,
    /// Roaming requests in flight.
    roaming: Pending<Response>,
    /// Sync requests in flight.
    sync: Pending<SyncResponse>,
    /// Members to redial, by peer.
    backoff: HashMap<PeerId, Backoff>,
    /// Whom to dial and where; names for the logs.
    roster: Arc<Roster>,
    /// Connection status, kept current here.
    peers: Arc<PeerTable>,
    /// Connection counters (the same counters as `Peering::metrics`).
    metrics: PeeringMetrics,
    /// Time of connection, for the peer status.
    clock: SharedClock,
    /// Where peers' requests and connections go.
    inbound: Arc<I>,
}

impl<I: Inbound> EventLoop<I> {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        roster: Arc<Roster>,
        peers: Arc<PeerTable>,
        metrics: PeeringMetrics,
        clock: SharedClock,
        inbound: Arc<I>,
    ) -> Self {
        EventLoop {
            swarm,
            commands,
            roaming: Pending::new(ROAMING_PROTOCOL),
            sync: Pending::new(SYNC_PROTOCOL),
            backoff: HashMap::new(),
            roster,
            peers,
            metrics,
            clock,
            inbound,
        }
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.redial();
                    I::tick(&self.inbound);
                }
                c = self.commands.recv() => match c {
                    None => break,
                    Some(c) => self.on_command(c),
                },
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
            }
        }
        info!("federation stopped");
    }

    fn on_command(&mut self, c: Command) {
        let b = self.swarm.behaviour_mut();
        match c {
            Command::Roaming(call) => self.roaming.run(&mut b.roaming, call),
            Command::Sync(call) => self.sync.run(&mut b.sync, call),
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        let inbound = &self.inbound;
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                self.backoff.remove(&peer_id);
                if num_established.get() == 1 {
                    self.on_connected(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.on_disconnected(peer_id),
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => self.on_incoming_error(error, send_back_addr),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => self
                .peers
                .update(&peer, |s| s.rtt_ms = Some(rtt.as_secs_f64() * 1000.0)),
            SwarmEvent::Behaviour(BehaviourEvent::Roaming(e)) => self
                .roaming
                .on_event(e, |peer, req, ch| I::roaming_request(inbound, peer, req, ch)),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self
                .sync
                .on_event(e, |peer, req, ch| I::sync_request(inbound, peer, req, ch)),
            _ => {}
        }
    }

    fn on_connected(&mut self, peer: PeerId) {
        let now = self.clock.now();
        self.peers.update(&peer, |s| {
            s.connected = true;
            s.since = Some(now);
        });
        self.metrics.peers_connected.inc();
        if let Some(m) = self.roster.by_peer(&peer) {
            info!(peer = %m.id, "peer connected");
        }
        I::connected(&self.inbound, peer);
    }

    fn on_disconnected(&mut self, peer: PeerId) {
        self.peers.update(&peer, |s| {
            s.connected = false;
            s.since = None;
            s.rtt_ms = None;
        });
        self.metrics.peers_connected.dec();
        if let Some(m) = self.roster.by_peer(&peer) {
            warn!(peer = %m.id, "peer disconnected");
        }
        I::disconnected(&self.inbound, peer);
    }

    fn on_incoming_error(&mut self, error: ListenError, from: Multiaddr) {
        if matches!(error, ListenError::Denied { .. }) {
            self.metrics.connections_refused.inc();
            warn!(from = %from, "connection refused: peer not on the roster");
        } else {
            debug!(from = %from, error = %error, "incoming connection failed");
        }
    }

    /// Dials every member not connected whose backoff has passed.
    fn redial(&mut self) {
        let now = Instant::now();
        let me = *self.swarm.local_peer_id();
        for m in &self.roster.members {
            if m.peer_id == me || m.addresses.is_empty() || self.swarm.is_connected(&m.peer_id) {
                continue;
            }
            let b = self.backoff.get(&m.peer_id).copied().unwrap_or(Backoff {
                next_try: now,
                step: Duration::from_millis(500),
            });
            if now < b.next_try {
                continue;
            }
            let opts = DialOpts::peer_id(m.peer_id)
                .addresses(m.addresses.clone())
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(peer = %m.id, error = %e, "dial not started");
            }
            let next = Backoff {
                next_try: now + b.step,
                step: (b.step * 2).min(Duration::from_secs(60)),
            };
            self.backoff.insert(m.peer_id, next);
        }
    }
}
