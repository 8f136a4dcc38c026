//! The home role: frames of our devices forwarded by visited nodes are checked and handed
//! to the network server; the tokens that came with them are held, and our downlinks go
//! back through the visited gateway they name.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entente_gateway::{
    Arrival, Downlink, DownlinkError, Registry, RoamedUplink, RxInfo, Timing, TxAckError, TxOutcome, Verdict,
};
use entente_model::{DevAddr, GatewayEui, MemberId};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::PeeringMetrics;
use crate::policy::FrameFacts;
use crate::protocol::*;
use crate::service::{Peering, PeeringConfig, Side, lock};
use crate::usage::{CarriedFrame, Direction, airtime_us};
use crate::verdicts::Taken;
use crate::visited::{TOKEN_MEMORY, downlink_dev_addr};

const TOKENS_PER_GATEWAY: usize = 64;
const MAX_HELD_GATEWAYS: usize = 50_000;

/// A token a visited node gave us with one reception: our way back through its gateway.
struct HeldToken {
    tmst: u32,
    /// The frame's DevAddr (none for a join request): the token answers that device only.
    dev_addr: Option<DevAddr>,
    token: Vec<u8>,
    member: MemberId,
    at: Instant,
}

/// The visited peer and the token a downlink goes through.
pub(crate) struct Path {
    peer: PeerId,
    member: MemberId,
    token: Vec<u8>,
}

/// Tokens are held per forwarding peer and gateway: a peer's tokens never stand for
/// another peer's gateway.
type HeldKey = (PeerId, GatewayEui);

pub(crate) struct Home {
    /// Tokens peers gave us, per (peer, gateway of theirs), newest last (at most 64 each).
    held: Mutex<HashMap<HeldKey, VecDeque<HeldToken>>>,
    /// Our own gateways: a peer cannot pass one of them off as its own.
    pub(crate) local_gateways: Arc<Registry>,
    /// Where the roamed uplinks we accept go, for the network server.
    pub(crate) roamed_tx: mpsc::Sender<RoamedUplink>,
    /// Frames each peer may forward per second (and burst) before being refused.
    pub(crate) limiter: DefaultKeyedRateLimiter<PeerId>,
}

impl Home {
    pub(crate) fn new(
        cfg: &PeeringConfig,
        local_gateways: Arc<Registry>,
        roamed_tx: mpsc::Sender<RoamedUplink>,
    ) -> Self {
        let quota =
            Quota::per_second(NonZeroU32::new(cfg.peer_rate_per_sec.max(1)).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(cfg.peer_burst.max(1)).unwrap_or(NonZeroU32::MIN));
        Home {
            held: Mutex::new(HashMap::new()),
            local_gateways,
            roamed_tx,
            limiter: RateLimiter::keyed(quota),
        }
    }

    fn has_tokens(&self, key: &HeldKey) -> bool {
        lock(&self.held).get(key).is_some_and(|q| !q.is_empty())
    }

    /// When the table is full and `key` is new, forgets the gateways whose latest token
    /// expired.
    fn sweep_if_full(&self, key: &HeldKey) {
        let mut held = lock(&self.held);
        if held.len() >= MAX_HELD_GATEWAYS && !held.contains_key(key) {
            held.retain(|_, q| q.back().is_some_and(|h| h.at.elapsed() < TOKEN_MEMORY));
        }
    }

    /// Holds the token of one reception. A peer inventing gateway EUIs cannot grow this
    /// without bound: when full, the frame still goes home, without a downlink path
    /// through that gateway.
    fn hold(&self, peer: PeerId, member: &MemberId, rx: &RxInfo, dev_addr: Option<DevAddr>, token: Vec<u8>) {
        let mut held = lock(&self.held);
        let key = (peer, rx.gateway);
        if held.len() >= MAX_HELD_GATEWAYS && !held.contains_key(&key) {
            return;
        }
        let q = held.entry(key).or_default();
        if q.len() >= TOKENS_PER_GATEWAY {
            q.pop_front();
        }
        q.push_back(HeldToken {
            tmst: rx.tmst,
            dev_addr,
            token,
            member: member.clone(),
            at: Instant::now(),
        });
    }

    /// The token for a downlink to `dev_addr` (none: a join accept) through `peer`'s
    /// `gateway`: the one of the reception it answers, or that device's latest for a
    /// Class C downlink.
    fn path(&self, key: HeldKey, timing: &Timing, dev_addr: Option<DevAddr>) -> Result<Path, DownlinkError> {
        let gateway = key.1;
        let mut held = lock(&self.held);
        let Some(q) = held.get_mut(&key) else {
            return Err(DownlinkError::Peer(gateway, "no token for this gateway".into()));
        };
        q.retain(|h| h.at.elapsed() < TOKEN_MEMORY);
        let mut of_device = q.iter().rev().filter(|h| h.dev_addr == dev_addr);
        let chosen = match timing {
            Timing::AfterReception { context, .. } => of_device.find(|h| u64::from(h.tmst) == context.0),
            Timing::Immediately => of_device.next(),
        };
        chosen
            .map(|h| Path {
                peer: key.0,
                member: h.member.clone(),
                token: h.token.clone(),
            })
            .ok_or_else(|| DownlinkError::Peer(gateway, "no token for this gateway, device and time".into()))
    }
}

impl Peering {
    /// The peer whose gateway this is (the one member that announced it), if we hold
    /// tokens of it.
    fn gateway_peer(&self, gateway: &GatewayEui) -> Option<PeerId> {
        let owner = self.gateway_lists.owner(gateway)?;
        self.roster.member(&owner).map(|m| m.peer_id)
    }

    pub(crate) fn is_remote_gateway(&self, gateway: &GatewayEui) -> bool {
        self.gateway_peer(gateway)
            .is_some_and(|p| self.home.has_tokens(&(p, *gateway)))
    }

    /// The token a downlink goes through `gateway` with, chosen as the network server asks.
    pub(crate) fn downlink_path(
        &self,
        gateway: GatewayEui,
        downlink: &Downlink,
    ) -> Result<Path, DownlinkError> {
        let peer = self
            .gateway_peer(&gateway)
            .ok_or_else(|| DownlinkError::Peer(gateway, "no peer announced this gateway".into()))?;
        let dev_addr = downlink_dev_addr(&downlink.phy_payload);
        self.home.path((peer, gateway), &downlink.timing, dev_addr)
    }
}

fn valid_rx(i: &RxInfo) -> bool {
    (863_000_000..=870_000_000).contains(&i.frequency_hz)
        && (-200..=0).contains(&i.rssi)
        && i.snr.is_finite()
        && (-40.0..=40.0).contains(&i.snr)
}

impl Peering {
    /// A visited node forwards a batch of our devices' frames.
    pub(crate) fn on_uplinks(&self, peer: PeerId, batch: Vec<UplinkForward>) -> Response {
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
        let receipts = batch.into_iter().map(|f| self.on_uplink(peer, &visited, f));
        Response::Uplinks(receipts.collect())
    }

    /// Checks a forwarded frame, holds its tokens and hands it to the network server;
    /// its verdict follows (see `verdicts`), and only then is it counted.
    fn on_uplink(&self, peer: PeerId, visited: &MemberId, fwd: UplinkForward) -> Receipt {
        let reject = |reason: &'static str| {
            PeeringMetrics::count(&self.metrics.received, visited.as_str(), reason);
            Receipt::Rejected {
                reason: reason.into(),
            }
        };
        let (roamed, verdict) = match self.admit_uplink(peer, visited, &fwd) {
            Ok(r) => r,
            Err(reason) => return reject(reason),
        };
        let Some(me) = self.self_arc() else {
            return reject("shutting_down");
        };
        let airtime_us = roamed
            .rx
            .first()
            .map_or(0, |r| airtime_us(r.data_rate, fwd.frame.len(), Direction::Uplink));
        if self.home.roamed_tx.try_send(roamed).is_err() {
            return reject("busy");
        }
        let taken = Taken {
            id: fwd.id,
            frame: fwd.frame,
            late: fwd.late,
            airtime_us,
        };
        tokio::spawn(me.follow(peer, visited.clone(), taken, verdict));
        Receipt::Taken
    }

    /// The checks that need nothing but the frame and what peers told us: the frame for
    /// the network server (tokens held), and where its verdict comes back.
    fn admit_uplink(
        &self,
        peer: PeerId,
        visited: &MemberId,
        fwd: &UplinkForward,
    ) -> Result<(RoamedUplink, oneshot::Receiver<Verdict>), &'static str> {
        if self.home.limiter.check_key(&peer).is_err() {
            return Err("rate_limited");
        }
        if fwd.rx.is_empty() || fwd.rx.len() > MAX_RX_PER_FRAME {
            return Err("malformed");
        }
        match self.home_of(&fwd.frame) {
            Some(h) if h == self.me => {}
            _ => return Err("not_home"),
        }
        let facts = FrameFacts::of_uplink(self.me.clone(), visited.clone(), &fwd.frame);
        self.check_policy(Side::Home, &self.me, visited, Some(facts.clone()))
            .map_err(|r| r.as_str())?;
        let mut rx = Vec::with_capacity(fwd.rx.len());
        let dev_addr = fwd.frame.dev_addr();
        for r in &fwd.rx {
            if !valid_rx(&r.info) {
                continue;
            }
            // A peer cannot pass off as its own a gateway of ours or of another member.
            if self.gateway_lists.owner(&r.info.gateway).as_ref() != Some(visited) {
                PeeringMetrics::count(&self.metrics.received, visited.as_str(), "unannounced_gateway");
                continue;
            }
            let key = (peer, r.info.gateway);
            self.home.sweep_if_full(&key);
            if !fwd.late {
                self.home.hold(peer, visited, &r.info, dev_addr, r.token.clone());
            }
            rx.push(r.info.clone());
        }
        if rx.is_empty() {
            return Err("no_valid_reception");
        }
        let me = self.self_arc().ok_or("shutting_down")?;
        let (tx, verdict) = oneshot::channel();
        let roamed = RoamedUplink {
            frame: fwd.frame.clone(),
            rx,
            arrival: if fwd.late { Arrival::Late } else { Arrival::Live },
            charge: Box::new(move |dev_eui| {
                let facts = FrameFacts {
                    dev_eui: Some(dev_eui),
                    ..facts
                };
                me.charge_policy(Side::Home, facts).map_err(|r| r.as_str())
            }),
            verdict: tx,
        };
        Ok((roamed, verdict))
    }

    /// Sends one of our downlinks through a peer's gateway (the `Roaming` seam) on the
    /// `path` held for it, if the policy lets it through that peer.
    pub(crate) async fn send_downlink_via_peer(
        &self,
        path: Path,
        gateway: GatewayEui,
        downlink: Downlink,
        timeout: Duration,
    ) -> Result<TxOutcome, DownlinkError> {
        let Path { peer, member, token } = path;
        let phy = downlink.phy_payload.clone();
        let air = airtime_us(downlink.data_rate, phy.len(), Direction::Downlink);
        let facts = FrameFacts::of_downlink(self.me.clone(), member.clone(), &phy);
        let dev_addr = facts.as_ref().and_then(|f| f.dev_addr);
        if let Err(r) = self.check_policy(Side::Home, &self.me, &member, facts) {
            PeeringMetrics::count(&self.metrics.downlinks, member.as_str(), r.as_str());
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
        let resp = tokio::time::timeout(timeout, self.client.request(peer, req))
            .await
            .map_err(|_| DownlinkError::Timeout(gateway, timeout))?;
        let out = match resp {
            Ok(Response::Downlink(r)) => r,
            Ok(other) => TxResult::Failed {
                reason: format!("unexpected answer {other:?}"),
            },
            Err(e) => TxResult::Failed { reason: e },
        };
        PeeringMetrics::count(&self.metrics.downlinks, member.as_str(), sent_label(&out));
        if matches!(out, TxResult::Ok { .. }) {
            let frame = CarriedFrame::Downlink {
                phy_payload: &phy,
                dev_addr,
            };
            self.carried(&self.me, &member, frame, air);
        }
        outcome(gateway, out)
    }
}

fn sent_label(r: &TxResult) -> &'static str {
    match r {
        TxResult::Ok { .. } => "sent_ok",
        TxResult::GatewayError { .. } => "sent_gateway_error",
        TxResult::NotAcknowledged => "sent_not_acknowledged",
        TxResult::TooLate => "sent_too_late",
        TxResult::BadToken => "sent_bad_token",
        TxResult::Refused { .. } => "sent_refused",
        TxResult::Failed { .. } => "sent_failed",
    }
}

/// The visited gateway's answer as the network server takes it.
fn outcome(gateway: GatewayEui, r: TxResult) -> Result<TxOutcome, DownlinkError> {
    match r {
        TxResult::Ok { warning } => Ok(TxOutcome::Ok { warning }),
        TxResult::NotAcknowledged => Ok(TxOutcome::NotAcknowledged),
        TxResult::GatewayError { error } => Ok(TxOutcome::Error(error)),
        TxResult::TooLate => Ok(TxOutcome::Error(TxAckError::TooLate)),
        TxResult::BadToken => Err(DownlinkError::Peer(gateway, "the peer refused our token".into())),
        TxResult::Refused { reason } => Err(DownlinkError::Peer(
            gateway,
            format!("the peer's agreement policy refused it: {reason}"),
        )),
        TxResult::Failed { reason } => Err(DownlinkError::Peer(gateway, reason)),
    }
}
