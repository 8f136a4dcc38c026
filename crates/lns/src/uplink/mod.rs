//! The uplink pipeline: dedup window, then the join flow ([`crate::join`]) or the data
//! flow ([`data`]), one frame at a time.

mod acked;
pub(crate) mod data;
#[cfg(test)]
mod data_tests;
mod group;
mod session_match;
#[cfg(test)]
mod verdict_tests;
mod window;

use std::sync::Arc;

use entente_frame::{UplinkFrame, UplinkKind};
use entente_gateway::journal::Mark;
use entente_gateway::{Arrival, Charge, RoamedUplink, Route, RxInfo, Uplink, Verdict};
use entente_model::DevEui;
use entente_region::Eu868;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use self::acked::Forgetting;
use self::data::Staging;
use self::group::Group;
use self::window::{Admitted, DedupWindow, Queue};
use crate::join;
use crate::metrics::Rejection;
use crate::server::{LnsError, NetworkServer};
use crate::tables::Devices;

/// Best gateway first: highest SNR, then RSSI.
fn best_first(mut rx: Vec<RxInfo>) -> Vec<RxInfo> {
    rx.sort_by(|a, b| b.snr.total_cmp(&a.snr).then(b.rssi.cmp(&a.rssi)));
    rx
}

/// Index of an uplink channel as the device numbers it (3 default + CFList channels).
pub(crate) fn channel_index(freq_hz: u32) -> u8 {
    Eu868::DEFAULT_CHANNELS_HZ
        .iter()
        .chain(join::EU868_CFLIST_HZ.iter())
        .position(|f| *f == freq_hz)
        .map(|i| i as u8)
        .unwrap_or(0)
}

/// Where a frame's copies came from: our own gateways, and the peers that forwarded one
/// to us, its home, each waiting for the verdict.
#[derive(Default)]
pub(crate) struct Waiters {
    heard_here: bool,
    peers: Vec<(Charge, oneshot::Sender<Verdict>)>,
}

impl Waiters {
    pub(crate) fn heard_here() -> Self {
        Waiters {
            heard_here: true,
            peers: Vec::new(),
        }
    }

    fn join(&mut self, other: Waiters) {
        self.heard_here |= other.heard_here;
        self.peers.extend(other.peers);
    }

    /// The frame verified as `dev_eui`'s: each forwarding peer's agreement is charged
    /// for it, and a peer refused hears why. The frame goes on if a copy was heard here
    /// or one charge passed.
    pub(crate) fn charge(&mut self, dev_eui: DevEui) -> Result<(), Rejection> {
        let mut kept = Vec::with_capacity(self.peers.len());
        for (charge, verdict) in self.peers.drain(..) {
            match charge(dev_eui) {
                Ok(()) => kept.push((no_charge(), verdict)),
                Err(reason) => {
                    let _ = verdict.send(Verdict::Rejected(reason));
                }
            }
        }
        let refused_all = kept.is_empty() && !self.heard_here;
        self.peers = kept;
        if refused_all {
            return Err(Rejection::OverQuota);
        }
        Ok(())
    }

    pub(crate) fn tell(self, verdict: Verdict) {
        for (_, w) in self.peers {
            // A peer that stopped waiting has nothing to count.
            let _ = w.send(verdict);
        }
    }
}

/// A charge already paid.
fn no_charge() -> Charge {
    Box::new(|_| Ok(()))
}

/// Runs `f`, which writes to RocksDB with fsync (a join, a group of uplinks), telling a
/// multi-threaded runtime that this worker blocks, so its other tasks (the gateway
/// server, Class A answers due in RX1, the API) move to another worker meanwhile.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A frame's copies so far, and who waits for what becomes of it.
struct Copies {
    rx: Vec<RxInfo>,
    waiters: Waiters,
    /// Late only when every copy came from a peer's buffer.
    arrival: Arrival,
    /// A frame forwarded from here: its place in the store since its first copy.
    kept: Option<u64>,
    /// The journal row of its first copy acknowledged to one of our gateways.
    journal: Option<Mark>,
}

impl Copies {
    /// A copy from one of our gateways.
    fn heard(u: Uplink, arrival: Arrival) -> (UplinkFrame, Copies) {
        let copies = Copies {
            rx: vec![u.rx],
            waiters: Waiters::heard_here(),
            arrival,
            kept: None,
            journal: u.journal,
        };
        (u.frame, copies)
    }
}

impl NetworkServer {
    /// Runs the dedup window over frames from the gateways and, when the node federates,
    /// over gateway receptions of this node's frames reported by peers; processes each
    /// frame once with every copy's metadata, wherever it was heard.
    pub async fn run(
        self: Arc<Self>,
        mut frames: mpsc::Receiver<Uplink>,
        mut roamed: mpsc::Receiver<RoamedUplink>,
        shutdown: CancellationToken,
    ) {
        let mut window = DedupWindow::default();
        let mut forgetting = self.journal.clone().map(Forgetting::new);
        self.take_back_journaled(&mut window, forgetting.as_mut());
        let mut roamed_open = true;
        loop {
            let next = window.next_deadline();
            let (frame, copies) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                f = frames.recv() => match f {
                    Some(f) => {
                        if let Some(fg) = forgetting.as_mut() {
                            fg.received(f.journal);
                        }
                        Copies::heard(f, Arrival::Live)
                    }
                    None => break,
                },
                f = roamed.recv(), if roamed_open => match f {
                    Some(f) => {
                        self.metrics.roamed_in.inc();
                        let waiters = Waiters { heard_here: false, peers: vec![(f.charge, f.verdict)] };
                        (f.frame, Copies { rx: f.rx, waiters, arrival: f.arrival, kept: None, journal: None })
                    }
                    None => { roamed_open = false; continue }
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    off_the_runtime(|| self.dispatch_closed(&mut window, Some(Instant::now())));
                    if let Some(fg) = forgetting.as_mut() {
                        fg.tick(&window);
                    }
                    continue;
                }
            };
            self.admit(&mut window, frame, copies);
            if let Some(fg) = forgetting.as_mut() {
                fg.tick(&window);
            }
        }
        // Frames still in their window are processed rather than lost.
        self.dispatch_closed(&mut window, None);
        if let Some(fg) = forgetting.as_mut() {
            fg.forget_safe(&window);
        }
    }

    /// Admits the frames a crash left in the journal of acknowledged frames, before any
    /// new one. Their receive windows are long gone: they arrive late.
    fn take_back_journaled(&self, window: &mut DedupWindow, mut forgetting: Option<&mut Forgetting>) {
        let left = std::mem::take(&mut *self.journaled_at_start.lock().unwrap_or_else(|p| p.into_inner()));
        self.metrics.journal_taken_back.inc_by(left.len() as u64);
        if !left.is_empty() {
            info!(
                frames = left.len(),
                "frames acknowledged before a crash taken back from the journal"
            );
        }
        for u in left {
            if let Some(fg) = forgetting.as_deref_mut() {
                fg.received(u.journal);
            }
            let (frame, copies) = Copies::heard(u, Arrival::Late);
            self.admit(window, frame, copies);
        }
    }

    /// Later copies join their frame; a first copy opens the frame's window, the visited
    /// one when the frame is only forwarded from here.
    fn admit(&self, window: &mut DedupWindow, frame: UplinkFrame, copies: Copies) {
        let admitted = window.admit(frame, copies, |frame, copies| {
            if self.forwards(frame) {
                copies.kept = self.roaming.as_ref().and_then(|r| r.heard(frame, &copies.rx));
                (Queue::Visited, Instant::now() + self.cfg.visited_dedup_window)
            } else {
                (Queue::Home, Instant::now() + self.cfg.dedup_window)
            }
        });
        if let Admitted::Joined { receptions } = admitted {
            self.metrics.duplicate_copies.inc_by(receptions as u64);
        }
    }

    /// Dispatches the frames whose window closed by `until` (every frame when None).
    fn dispatch_closed(self: &Arc<Self>, window: &mut DedupWindow, until: Option<Instant>) {
        let mut group = Group::new(self);
        for queue in [Queue::Home, Queue::Visited] {
            while let Some((frame, copies)) = window.pop_closed(queue, until) {
                self.dispatch(frame, copies, queue, &mut group);
            }
        }
        group.commit();
    }

    /// The routing decision was taken once, when the frame's first copy arrived: the
    /// queue it waited in says whether it is ours or forwarded.
    fn dispatch(self: &Arc<Self>, frame: UplinkFrame, copies: Copies, queue: Queue, group: &mut Group<'_>) {
        let Copies {
            rx,
            waiters,
            arrival,
            kept,
            ..
        } = copies;
        match (queue, self.roaming.as_ref()) {
            (Queue::Visited, Some(r)) => {
                self.metrics.frames_deduplicated.inc();
                self.metrics.forwarded.inc();
                waiters.tell(Verdict::Rejected("not_home"));
                r.forward(frame, best_first(rx), kept);
            }
            _ => self.process_in(group, &frame, rx, waiters, arrival),
        }
    }

    /// Whether this frame belongs to another member and is only forwarded from here.
    fn forwards(&self, frame: &UplinkFrame) -> bool {
        let Some(r) = self.roaming.as_ref() else {
            return false;
        };
        match frame.kind() {
            UplinkKind::Data(d) => {
                !self.cfg.dev_addr_block.contains(d.dev_addr) && r.route_data(d.dev_addr) == Route::Forward
            }
            UplinkKind::Join(j) => {
                !matches!(self.store.get::<Devices>(&j.dev_eui), Ok(Some(_)))
                    && r.route_join(j.join_eui, j.dev_eui) == Route::Forward
            }
        }
    }

    /// Processes one deduplicated frame with every gateway's reception metadata.
    pub fn process(self: &Arc<Self>, frame: &UplinkFrame, rx: Vec<RxInfo>) {
        let mut group = Group::new(self);
        self.process_in(&mut group, frame, rx, Waiters::heard_here(), Arrival::Live);
        group.commit();
    }

    /// Processes a frame among the others of its group; a join writes what the group
    /// staged first, then takes the session lock itself. The peers waiting for the frame
    /// hear of a data uplink once its group is written.
    fn process_in(
        self: &Arc<Self>,
        group: &mut Group<'_>,
        frame: &UplinkFrame,
        rx: Vec<RxInfo>,
        waiters: Waiters,
        arrival: Arrival,
    ) {
        self.metrics.frames_deduplicated.inc();
        let rx = best_first(rx);
        let mut waiters = waiters;
        let result = match (frame.kind(), frame.data()) {
            // Its accept could no longer reach the device, and the session it would
            // start would replace the one the device uses.
            (UplinkKind::Join(_), _) if arrival == Arrival::Late => Err(Rejection::LateJoin),
            (UplinkKind::Join(j), _) => {
                group.commit();
                self.process_join(frame.signed(), *j, rx, &mut waiters)
                    .map(|()| Some(Verdict::Verified))
            }
            (UplinkKind::Data(_), Some(d)) => {
                self.process_data(d, (rx, arrival), &mut waiters, group)
                    .map(|s| match s {
                        Staging::Staged => None,
                        Staging::Retransmission => Some(Verdict::Rejected("retransmission")),
                    })
            }
            (UplinkKind::Data(_), None) => Err(Rejection::BadPhy),
        };
        match result {
            Ok(verdict) => {
                if let Some(v) = verdict {
                    waiters.tell(v);
                }
            }
            Err(r) => {
                debug!(reason = r.as_str(), "uplink rejected");
                self.metrics.reject(r);
                waiters.tell(Verdict::Rejected(r.as_str()));
            }
        }
    }
}

impl From<LnsError> for Rejection {
    fn from(_: LnsError) -> Self {
        Rejection::Store
    }
}
