//! The home node's two answers to a forwarded frame. The first, at once, says whether it
//! took the frame (tokens held, handed to its network server), so the visited node's
//! requests never wait out the home's dedup window. The second, the verdict, follows in
//! batches once the network server checked the frame's MIC and counter; only a verified
//! frame is counted, on either side.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use entente_frame::UplinkFrame;
use entente_gateway::Verdict;
use entente_model::MemberId;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::metrics::PeeringMetrics;
use crate::protocol::*;
use crate::service::{Peering, lock, take_batch};
use crate::usage::{CarriedFrame, Direction, airtime_us};
use crate::visited::Delivery;

/// How long the home waits for its network server's verdict on a frame it took: the
/// dedup window and a busy moment.
const VERDICT_PATIENCE: Duration = Duration::from_secs(3);
/// How long a visited node waits for a verdict before it stops counting on one.
const VERDICT_WAIT: Duration = Duration::from_secs(15);
/// Frames awaiting a verdict, all home peers together: 15 s of 10 000 frames/s and more.
const MAX_AWAITED: usize = 262_144;

/// Refusals a home gives when it cannot take a frame now, not for what the frame is.
fn is_transient(reason: &str) -> bool {
    matches!(reason, "rate_limited" | "busy" | "shutting_down")
}

/// A frame the home took, as the visited node remembers it until the verdict: all of it,
/// so that it can go again if the verdict never comes.
struct Awaited {
    home: MemberId,
    fwd: UplinkForward,
    airtime_us: u32,
    delivery: Delivery,
    since: Instant,
}

#[derive(Default)]
pub(crate) struct Verdicts {
    /// Home side: one queue of verdicts per visited peer, drained by its sender task.
    outbox: Mutex<HashMap<PeerId, mpsc::Sender<FrameVerdict>>>,
    /// Visited side: frames sent to a home node, by peer and id, until their verdict.
    awaited: Mutex<HashMap<(PeerId, u64), Awaited>>,
    /// When `awaited` was last cleared of frames whose verdict never came.
    swept: Mutex<Option<Instant>>,
}

/// A frame the home took, followed until its network server's verdict.
pub(crate) struct Taken {
    pub(crate) id: u64,
    pub(crate) frame: UplinkFrame,
    pub(crate) late: bool,
    pub(crate) airtime_us: u32,
}

/// Home side.
impl Peering {
    /// Waits for the network server's verdict on a frame we took, counts it if verified
    /// (before the verdict leaves: the count is keyed by the frame, so a resend does not
    /// double it), and queues the verdict for the visited node.
    pub(crate) async fn follow(
        self: Arc<Self>,
        peer: PeerId,
        visited: MemberId,
        taken: Taken,
        rx: oneshot::Receiver<Verdict>,
    ) {
        let count = |r: &'static str| PeeringMetrics::count(&self.metrics.received, visited.as_str(), r);
        let answer = match tokio::time::timeout(VERDICT_PATIENCE, rx).await {
            Ok(Ok(Verdict::Verified)) => {
                self.carried(
                    &self.me,
                    &visited,
                    CarriedFrame::Uplink(&taken.frame),
                    taken.airtime_us,
                );
                count(if taken.late { "accepted_late" } else { "accepted" });
                UplinkAnswer::Verified
            }
            // Sent again after a crash (ours before the verdict left, or the visited
            // node's): the network server has it. As the device's last frame it is
            // counted now if the crash came between the two writes (counting is keyed by
            // the frame: never twice); an older one was counted then, or is refused.
            Ok(Ok(Verdict::Rejected(reason)))
                if taken.late
                    && (reason == "retransmission"
                        || self.was_carried(&self.me, &visited, CarriedFrame::Uplink(&taken.frame))) =>
            {
                self.carried(
                    &self.me,
                    &visited,
                    CarriedFrame::Uplink(&taken.frame),
                    taken.airtime_us,
                );
                count("accepted_again");
                UplinkAnswer::Verified
            }
            Ok(Ok(Verdict::Rejected(reason))) => {
                count(reason);
                UplinkAnswer::Rejected {
                    reason: reason.into(),
                }
            }
            Ok(Err(_)) => {
                count("dropped");
                UplinkAnswer::Rejected {
                    reason: "dropped".into(),
                }
            }
            Err(_) => {
                count("timeout");
                UplinkAnswer::Rejected {
                    reason: "timeout".into(),
                }
            }
        };
        let verdict = FrameVerdict { id: taken.id, answer };
        if self.verdict_queue(peer).try_send(verdict).is_err() {
            count("verdict_unsent");
        }
    }

    fn verdict_queue(&self, peer: PeerId) -> mpsc::Sender<FrameVerdict> {
        let mut outbox = lock(&self.verdicts.outbox);
        match outbox.get(&peer) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(65_536);
                if let Some(me) = self.self_arc() {
                    tokio::spawn(me.send_verdicts(peer, rx));
                }
                outbox.insert(peer, tx.clone());
                tx
            }
        }
    }

    /// One task per visited peer: sends whatever verdicts queued meanwhile in one request.
    async fn send_verdicts(self: Arc<Self>, peer: PeerId, mut rx: mpsc::Receiver<FrameVerdict>) {
        let member = self
            .member_of(&peer)
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        while let Some(first) = rx.recv().await {
            let batch = take_batch(first, &mut rx, MAX_VERDICTS);
            let n = batch.len();
            if let Err(e) = self.client.request(peer, Request::Verdicts(batch)).await {
                warn!(peer = %member, error = %e, frames = n, "verdicts not delivered; the visited node will not count these frames");
                for _ in 0..n {
                    PeeringMetrics::count(&self.metrics.received, &member, "verdict_unsent");
                }
            }
        }
    }
}

/// Visited side.
impl Peering {
    /// Remembers frames about to be sent to `peer`, before the request leaves: the
    /// verdict may come back before the request's own answer.
    pub(crate) fn expect_verdicts(&self, peer: PeerId, frames: &[UplinkForward], delivery: Delivery) {
        let Some(home) = self.member_of(&peer).map(|m| m.id.clone()) else {
            return;
        };
        self.sweep_awaited();
        let mut awaited = lock(&self.verdicts.awaited);
        for f in frames {
            if awaited.len() >= MAX_AWAITED {
                PeeringMetrics::count(&self.metrics.forwarded, home.as_str(), "untracked");
                continue;
            }
            let airtime_us = f.rx.first().map_or(0, |r| {
                airtime_us(r.info.data_rate, f.frame.len(), Direction::Uplink)
            });
            let entry = Awaited {
                home: home.clone(),
                fwd: f.clone(),
                airtime_us,
                delivery,
                since: Instant::now(),
            };
            awaited.insert((peer, f.id), entry);
        }
    }

    /// The home's first answer: frames it did not take get no verdict. Those it could
    /// not take now (busy, over its rate) go back into the late buffer; returns whether
    /// there were any, so a flush pauses instead of pressing on.
    pub(crate) fn on_receipts(
        &self,
        peer: PeerId,
        member: &str,
        frames: &[UplinkForward],
        resp: &Response,
        delivery: Delivery,
    ) -> bool {
        let receipts: &[Receipt] = match resp {
            Response::Uplinks(r) => r,
            _ => &[],
        };
        let mut deferred = Vec::new();
        let mut awaited = lock(&self.verdicts.awaited);
        for (i, f) in frames.iter().enumerate() {
            let label = match (receipts.get(i), delivery) {
                (Some(Receipt::Taken), _) => continue,
                (Some(Receipt::Rejected { reason }), _) if is_transient(reason) => {
                    deferred.push(f.clone());
                    "deferred"
                }
                (Some(Receipt::Rejected { .. }), Delivery::Live) => "rejected",
                (Some(Receipt::Rejected { .. }), Delivery::Late) => "late_rejected",
                (None, _) => "refused",
            };
            awaited.remove(&(peer, f.id));
            if deferred.last().is_none_or(|d| d.id != f.id) {
                self.buffer.forget(&[f.id]);
            }
            PeeringMetrics::count(&self.metrics.forwarded, member, label);
        }
        drop(awaited);
        let any = !deferred.is_empty();
        for f in deferred {
            self.buffer(peer, f.id, f);
        }
        any
    }

    /// Forgets frames whose request failed: they wait in the late buffer.
    pub(crate) fn forget_verdicts(&self, peer: PeerId, frames: &[UplinkForward]) {
        let mut awaited = lock(&self.verdicts.awaited);
        for f in frames {
            awaited.remove(&(peer, f.id));
        }
    }

    /// The home's verdicts: a frame it verified is counted here too. A verdict for a
    /// frame we did not send it, or already had one for, counts for nothing.
    pub(crate) fn on_verdicts(&self, peer: PeerId, verdicts: Vec<FrameVerdict>) -> Response {
        let Some(member) = self.member_of(&peer).map(|m| m.id.to_string()) else {
            return Response::Refused {
                reason: "not a roster member".into(),
            };
        };
        if verdicts.len() > MAX_VERDICTS {
            return Response::Refused {
                reason: format!("more than {MAX_VERDICTS} verdicts in one request"),
            };
        }
        for v in verdicts {
            let Some(a) = lock(&self.verdicts.awaited).remove(&(peer, v.id)) else {
                PeeringMetrics::count(&self.metrics.forwarded, &member, "verdict_unknown");
                continue;
            };
            let label = match (&v.answer, a.delivery) {
                (UplinkAnswer::Verified, Delivery::Live) => "accepted",
                (UplinkAnswer::Verified, Delivery::Late) => "late_accepted",
                (UplinkAnswer::Rejected { .. }, Delivery::Live) => "rejected",
                (UplinkAnswer::Rejected { .. }, Delivery::Late) => "late_rejected",
            };
            if v.answer == UplinkAnswer::Verified {
                self.carried(
                    &a.home,
                    &self.me,
                    CarriedFrame::Uplink(&a.fwd.frame),
                    a.airtime_us,
                );
            }
            self.buffer.forget(&[v.id]);
            PeeringMetrics::count(&self.metrics.forwarded, &member, label);
        }
        Response::Verdicts
    }

    /// The home went away with frames it took but gave no verdict on: perhaps it never
    /// committed them. They go back into the late buffer, before anything newer, and go
    /// again when it is back.
    pub(crate) fn requeue_awaited(&self, peer: PeerId) {
        let mut back = Vec::new();
        lock(&self.verdicts.awaited).retain(|(p, _), a| {
            if *p != peer {
                return true;
            }
            back.push(a.fwd.clone());
            false
        });
        self.requeue(peer, back, "requeued");
    }

    fn requeue(&self, peer: PeerId, frames: Vec<UplinkForward>, label: &'static str) {
        let Some(member) = self.member_of(&peer).map(|m| m.id.to_string()) else {
            return;
        };
        for f in frames {
            PeeringMetrics::count(&self.metrics.forwarded, &member, label);
            self.buffer(peer, f.id, f);
        }
    }

    /// Once a second (or when full), frames whose verdict never came go back into the late
    /// buffer, to go again.
    fn sweep_awaited(&self) {
        {
            let mut swept = lock(&self.verdicts.swept);
            let full = lock(&self.verdicts.awaited).len() >= MAX_AWAITED;
            if !full && swept.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *swept = Some(Instant::now());
        }
        let mut late: HashMap<PeerId, Vec<UplinkForward>> = HashMap::new();
        lock(&self.verdicts.awaited).retain(|(peer, _), a| {
            let keep = a.since.elapsed() < VERDICT_WAIT;
            if !keep {
                late.entry(*peer).or_default().push(a.fwd.clone());
            }
            keep
        });
        for (peer, frames) in late {
            self.requeue(peer, frames, "unanswered");
        }
    }
}
