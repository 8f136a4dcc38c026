//! The visited role: frames our gateways heard for a peer's devices go to their home node
//! (in order, batched, buffered while it is away), with a token per reception that lets
//! the home node send a downlink back through that gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entente_frame::UplinkFrame;
use entente_frame::phy::MType;
use entente_gateway::{Downlink, GatewayBackend, RxInfo, Timing, TxOutcome};
use entente_model::{DevAddr, MemberId};
use entente_region::Eu868;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tracing::debug;

use crate::buffer::Seq;
use crate::metrics::PeeringMetrics;
use crate::policy::{FrameFacts, Terms};
use crate::protocol::*;
use crate::service::{Peering, Side, lock, take_batch};
use crate::token::{Token, TokenKey};
use crate::usage::{CarriedFrame, Direction, airtime_us};

/// How long a home node may use a token for a Class C downlink (`Timing::Immediately`).
pub(crate) const TOKEN_MEMORY: Duration = Duration::from_secs(3600);

pub(crate) struct Visited {
    /// Signs the tokens home nodes show to send a downlink through our gateways.
    token_key: TokenKey,
    /// Process start: token times are monotonic milliseconds since then.
    epoch: Instant,
    /// Our gateways, which the downlinks home nodes ask for go out through.
    gateways: Arc<dyn GatewayBackend>,
    /// Safety margin kept before a downlink's RX window when deciding TOO_LATE.
    tx_margin: Duration,
    /// One queue per home peer, drained in order by that peer's sender task.
    senders: Mutex<HashMap<PeerId, mpsc::Sender<(Seq, UplinkForward)>>>,
    /// Receive windows already used, by token and delay: one downlink per window.
    used_windows: Mutex<HashMap<(Vec<u8>, Duration), Instant>>,
}

impl Visited {
    pub(crate) fn new(token_key: TokenKey, gateways: Arc<dyn GatewayBackend>, tx_margin: Duration) -> Self {
        Visited {
            token_key,
            epoch: Instant::now(),
            gateways,
            tx_margin,
            senders: Mutex::new(HashMap::new()),
            used_windows: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }
}

/// Whether forwarded frames went out as they were heard or from the late buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Live,
    Late,
}

impl Peering {
    /// The token that lets `home` ask for a downlink through this reception's gateway,
    /// for the device that sent it (`dev_addr`; none for a join request).
    pub fn issue_token(&self, home: &PeerId, info: &RxInfo, dev_addr: Option<DevAddr>) -> Vec<u8> {
        let token = Token {
            gateway: info.gateway,
            tmst: info.tmst,
            issued_ms: self.visited.now_ms(),
            dev_addr,
        };
        self.visited.token_key.issue(home, token)
    }

    /// The first copy of a frame for a peer's device, while its dedup window is open:
    /// kept in the store at once, under the place it will be forwarded with, so a crash
    /// before the window closes loses nothing (it goes to its home, late, at the next
    /// start). The policy is asked when the window closes.
    pub(crate) fn keep_heard(&self, frame: &UplinkFrame, rx: &[RxInfo]) -> Option<Seq> {
        let home = self.home_of(frame)?;
        let peer = self.roster.member(&home).map(|m| m.peer_id)?;
        let terms = self.terms(&home);
        let seq = self.buffer.next_seq();
        let fwd = UplinkForward {
            id: seq,
            frame: frame.clone(),
            rx: self.copies(&peer, rx.to_vec(), &terms, frame.dev_addr()),
            late: false,
        };
        self.buffer.keep(&home, &fwd, self.clock.now());
        Some(seq)
    }

    /// Sends a frame to its home node if the policy lets it go: through the peer's sender,
    /// or into the late buffer while the peer is away or older frames still wait. `kept`:
    /// the place [`Peering::keep_heard`] gave it, forgotten if the frame does not go.
    pub(crate) fn forward_uplink(&self, frame: UplinkFrame, rx: Vec<RxInfo>, kept: Option<Seq>) {
        let forget = || self.buffer.forget(kept.as_slice());
        let Some(home) = self.home_of(&frame) else {
            return forget();
        };
        let Some(peer) = self.roster.member(&home).map(|m| m.peer_id) else {
            return forget();
        };
        let facts = FrameFacts::of_uplink(home.clone(), self.me.clone(), &frame);
        if let Err(r) = self.check_policy(Side::Visited, &home, &self.me, Some(facts)) {
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), r.as_str());
            return forget();
        }
        let terms = self.terms(&home);
        let rx = self.copies(&peer, rx, &terms, frame.dev_addr());
        let seq = kept.unwrap_or_else(|| self.buffer.next_seq());
        let fwd = UplinkForward {
            id: seq,
            frame,
            rx,
            late: false,
        };
        // While older frames wait for this peer, newer ones queue behind them: the home
        // node's frame counters would refuse anything that overtook them.
        let wait = !self.peers.is_connected(&peer) || self.buffer.has(&peer);
        if wait && !terms.buffer_when_unreachable {
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "dropped_unreachable");
            return forget();
        }
        self.buffer.keep(&home, &fwd, self.clock.now());
        if wait {
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "buffered");
            self.buffer(peer, seq, fwd);
            return;
        }
        if let Err(e) = self.sender_of(peer).try_send((seq, fwd)) {
            PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "buffered");
            let (seq, f) = match e {
                mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f) => f,
            };
            self.buffer(peer, seq, f);
        }
    }

    /// The receptions shared with the home node: the best ones, as many as the agreement
    /// lets through, each with its token.
    fn copies(
        &self,
        peer: &PeerId,
        mut rx: Vec<RxInfo>,
        terms: &Terms,
        dev_addr: Option<DevAddr>,
    ) -> Vec<RoamedRx> {
        rx.sort_by(|a, b| b.snr.total_cmp(&a.snr));
        rx.into_iter()
            .take(terms.max_copies.clamp(1, MAX_RX_PER_FRAME))
            .map(|info| RoamedRx {
                token: self.issue_token(peer, &info, dev_addr),
                info,
            })
            .collect()
    }

    /// Closes every sender's queue, so the sender tasks end once they drained it.
    pub(crate) fn close_senders(&self) {
        lock(&self.visited.senders).clear();
    }

    /// The queue of `peer`'s sender task, started if there is none running.
    fn sender_of(&self, peer: PeerId) -> mpsc::Sender<(Seq, UplinkForward)> {
        let mut senders = lock(&self.visited.senders);
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
    }

    /// One sender per home peer: takes whatever frames queued meanwhile (up to a batch)
    /// and sends them in one request, the next once the home node took it: the home's
    /// frame counters refuse a frame that overtook an older one. A failed request leaves
    /// its frames in the late buffer.
    async fn sender(self: Arc<Self>, peer: PeerId, mut rx: mpsc::Receiver<(Seq, UplinkForward)>) {
        let member = self
            .member_of(&peer)
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        while let Some(first) = rx.recv().await {
            let batch = take_batch(first, &mut rx, MAX_BATCH);
            self.send_batch(peer, &member, batch).await;
        }
    }

    async fn send_batch(&self, peer: PeerId, member: &str, batch: Vec<(Seq, UplinkForward)>) {
        if self.peers.is_connected(&peer) && !self.buffer.has(&peer) {
            let frames: Vec<UplinkForward> = batch.iter().map(|(_, f)| f.clone()).collect();
            self.announce_for(peer, &frames).await;
            self.expect_verdicts(peer, &frames, Delivery::Live);
            match self.client.request(peer, Request::Uplinks(frames.clone())).await {
                Ok(resp) => {
                    self.on_receipts(peer, member, &frames, &resp, Delivery::Live);
                    return;
                }
                Err(e) => {
                    self.forget_verdicts(peer, &frames);
                    debug!(peer = %member, error = %e, "forward failed; frames wait for the peer");
                }
            }
        }
        for (seq, f) in batch {
            PeeringMetrics::count(&self.metrics.forwarded, member, "buffered");
            self.buffer(peer, seq, f);
        }
    }

    /// A home node asks for a downlink through one of our gateways.
    pub(crate) async fn on_downlink(&self, peer: PeerId, req: DownlinkRequest) -> Response {
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
        let Some(home) = self.member_of(&peer).map(|m| m.id.clone()) else {
            return TxResult::BadToken;
        };
        if let Err(refused) = self.check_token(&peer, &home, &req) {
            return refused;
        }
        if let Err(reason) = check_radio(&req.downlink) {
            return TxResult::Refused { reason };
        }
        if let Err(refused) = self.use_window(&req) {
            return refused;
        }
        let phy = req.downlink.phy_payload.clone();
        let facts = FrameFacts::of_downlink(home.clone(), self.me.clone(), &phy);
        let dev_addr = facts.as_ref().and_then(|f| f.dev_addr);
        if let Err(r) = self.check_policy(Side::Visited, &home, &self.me, facts) {
            return TxResult::Refused {
                reason: r.as_str().to_string(),
            };
        }
        let air = airtime_us(req.downlink.data_rate, phy.len(), Direction::Downlink);
        // Booked like our own downlinks: a peer's traffic cannot take our gateway past
        // its sub-band's duty cycle.
        let booked = self.visited.gateways.duty_cycle().try_reserve(
            req.gateway,
            req.downlink.frequency_hz,
            Duration::from_micros(u64::from(air)),
            self.clock.now(),
        );
        if !booked {
            return TxResult::Refused {
                reason: "duty_cycle".into(),
            };
        }
        let sent = self
            .visited
            .gateways
            .transmit(req.gateway, req.downlink, Duration::from_millis(800))
            .await;
        match sent {
            Ok(TxOutcome::Ok { warning }) => {
                let frame = CarriedFrame::Downlink {
                    phy_payload: &phy,
                    dev_addr,
                };
                self.carried(&home, &self.me, frame, air);
                TxResult::Ok { warning }
            }
            Ok(TxOutcome::NotAcknowledged) => TxResult::NotAcknowledged,
            Ok(TxOutcome::Error(error)) => TxResult::GatewayError { error },
            Err(e) => TxResult::Failed {
                reason: e.to_string(),
            },
        }
    }

    /// A Class A token opens each of its receive windows once.
    fn use_window(&self, req: &DownlinkRequest) -> Result<(), TxResult> {
        let Timing::AfterReception { delay, .. } = req.downlink.timing else {
            return Ok(());
        };
        let mut used = lock(&self.visited.used_windows);
        if used.len() >= 4096 {
            used.retain(|_, at| at.elapsed() < Duration::from_secs(20));
        }
        match used.entry((req.token.clone(), delay)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(TxResult::BadToken),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Instant::now());
                Ok(())
            }
        }
    }

    /// The token must be ours, issued to this peer for this gateway and the device the
    /// downlink is for, and still usable for the downlink's timing.
    fn check_token(&self, peer: &PeerId, home: &MemberId, req: &DownlinkRequest) -> Result<(), TxResult> {
        let Some(t) = self.visited.token_key.check(peer, &req.token) else {
            return Err(TxResult::BadToken);
        };
        if t.gateway != req.gateway || !answers_token(&req.downlink.phy_payload, t.dev_addr) {
            return Err(TxResult::BadToken);
        }
        let age_ms = self.visited.now_ms() - t.issued_ms;
        match req.downlink.timing {
            // Class C: through the gateway that heard the device last, for an hour, and
            // only for the devices of an agreement that declares Class C ones.
            Timing::Immediately => {
                if !(0..=TOKEN_MEMORY.as_millis() as i64).contains(&age_ms) {
                    return Err(TxResult::BadToken);
                }
                if !self.terms(home).class_c {
                    return Err(TxResult::Refused {
                        reason: "class_c_not_declared".into(),
                    });
                }
            }
            Timing::AfterReception { context, delay } => {
                let delay_us = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                // RX1 is at least 1 s after the uplink and RX2 at most 16 s.
                if context.0 != u64::from(t.tmst) || !(900_000..=16_000_000).contains(&delay_us) {
                    return Err(TxResult::BadToken);
                }
                if age_ms * 1000 + self.visited.tx_margin.as_micros() as i64 > delay_us {
                    return Err(TxResult::TooLate);
                }
            }
        }
        Ok(())
    }
}

/// A token issued for a data frame answers that device only; one issued for a join
/// request, only with a join accept.
fn answers_token(phy: &[u8], dev_addr: Option<DevAddr>) -> bool {
    let mtype = phy.first().map(|m| MType::from_mhdr(*m));
    match dev_addr {
        None => mtype == Some(MType::JoinAccept),
        Some(a) => downlink_dev_addr(phy) == Some(a),
    }
}

/// The DevAddr a data downlink is for; none for a join accept (or anything else).
pub(crate) fn downlink_dev_addr(phy: &[u8]) -> Option<DevAddr> {
    match entente_frame::phy::parse(phy) {
        Ok(entente_frame::phy::Phy::Data(d)) => Some(d.dev_addr),
        _ => None,
    }
}

/// What a home node asks to transmit must be a downlink (a join accept or a data
/// downlink) that EU868 allows on our gateway: frequency, data rate, power and size.
fn check_radio(d: &Downlink) -> Result<(), String> {
    let mtype = d.phy_payload.first().map(|m| MType::from_mhdr(*m));
    if !matches!(
        mtype,
        Some(MType::JoinAccept | MType::UnconfirmedDown | MType::ConfirmedDown)
    ) {
        return Err("not_a_downlink".into());
    }
    Eu868::check_downlink(d.frequency_hz, d.data_rate, d.power_dbm, d.phy_payload.len())
        .map_err(|e| format!("outside_eu868: {e}"))
}
