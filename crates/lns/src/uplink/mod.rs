//! The uplink pipeline: dedup window, then the join flow ([`crate::join`]) or the data
//! flow ([`data`]), one frame at a time.

pub(crate) mod data;
#[cfg(test)]
mod data_tests;
mod group;
mod session_match;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use entente_frame::{UplinkFrame, UplinkKind};
use entente_gateway::{Route, RxInfo, Uplink};
use entente_region::Eu868;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use self::group::Group;
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

/// Frames waiting for their other copies, each with every reception so far. Two FIFOs
/// of deadlines, one per window length, so each stays in order.
#[derive(Default)]
struct DedupWindow {
    pending: HashMap<Vec<u8>, Vec<RxInfo>, foldhash::fast::RandomState>,
    home: VecDeque<(Instant, UplinkFrame)>,
    visited: VecDeque<(Instant, UplinkFrame)>,
}

impl DedupWindow {
    fn next_deadline(&self) -> Option<Instant> {
        match (self.home.front(), self.visited.front()) {
            (Some(a), Some(b)) => Some(a.0.min(b.0)),
            (a, b) => a.or(b).map(|x| x.0),
        }
    }
}

impl NetworkServer {
    /// Runs the dedup window over frames from the gateways and, when the node federates,
    /// over gateway receptions of this node's frames reported by peers; processes each
    /// frame once with every copy's metadata, wherever it was heard.
    pub async fn run(
        self: Arc<Self>,
        mut frames: mpsc::Receiver<Uplink>,
        mut roamed: mpsc::Receiver<Uplink>,
        shutdown: CancellationToken,
    ) {
        let mut window = DedupWindow::default();
        let mut roamed_open = true;
        loop {
            let next = window.next_deadline();
            let f = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                f = frames.recv() => match f { Some(f) => f, None => break },
                f = roamed.recv(), if roamed_open => match f {
                    Some(f) => { self.metrics.roamed_in.inc(); f }
                    None => { roamed_open = false; continue }
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.dispatch_closed(&mut window, Some(Instant::now()));
                    continue;
                }
            };
            self.admit(&mut window, f);
        }
        // Frames still in their window are processed rather than lost.
        self.dispatch_closed(&mut window, None);
    }

    /// A later copy joins its frame; a first copy opens the frame's window, the visited
    /// one when the frame is only forwarded from here.
    fn admit(&self, window: &mut DedupWindow, f: Uplink) {
        if let Some(rx) = window.pending.get_mut(f.frame.bytes()) {
            self.metrics.duplicate_copies.inc();
            rx.push(f.rx);
            return;
        }
        window.pending.insert(f.frame.bytes().to_vec(), vec![f.rx]);
        if self.forwards(&f.frame) {
            let deadline = Instant::now() + self.cfg.visited_dedup_window;
            window.visited.push_back((deadline, f.frame));
        } else {
            window
                .home
                .push_back((Instant::now() + self.cfg.dedup_window, f.frame));
        }
    }

    /// Dispatches the frames whose window closed by `until` (every frame when None).
    fn dispatch_closed(self: &Arc<Self>, window: &mut DedupWindow, until: Option<Instant>) {
        let DedupWindow {
            pending,
            home,
            visited,
        } = window;
        let mut group = Group::new(self);
        for (q, forward) in [(home, false), (visited, true)] {
            while q.front().is_some_and(|(t, _)| until.is_none_or(|u| *t <= u)) {
                let Some((_, frame)) = q.pop_front() else { break };
                if let Some(rx) = pending.remove(frame.bytes()) {
                    self.dispatch(frame, rx, forward, &mut group);
                }
            }
        }
        group.commit();
    }

    /// The routing decision was taken once, when the frame's first copy arrived: the
    /// queue it waited in says whether it is ours or forwarded.
    fn dispatch(self: &Arc<Self>, frame: UplinkFrame, rx: Vec<RxInfo>, forward: bool, group: &mut Group<'_>) {
        match (forward, self.roaming.as_ref()) {
            (true, Some(r)) => {
                self.metrics.frames_deduplicated.inc();
                self.metrics.forwarded.inc();
                r.forward(frame, best_first(rx));
            }
            _ => self.process_in(group, &frame, rx),
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
        self.process_in(&mut group, frame, rx);
        group.commit();
    }

    /// Processes a frame among the others of its group; a join writes what the group
    /// staged first, then takes the session lock itself.
    fn process_in(self: &Arc<Self>, group: &mut Group<'_>, frame: &UplinkFrame, rx: Vec<RxInfo>) {
        self.metrics.frames_deduplicated.inc();
        let rx = best_first(rx);
        let result = match (frame.kind(), frame.data()) {
            (UplinkKind::Join(j), _) => {
                group.commit();
                self.process_join(frame.signed(), *j, rx)
            }
            (UplinkKind::Data(_), Some(d)) => self.process_data(d, rx, group),
            (UplinkKind::Data(_), None) => Err(Rejection::BadPhy),
        };
        if let Err(r) = result {
            debug!(reason = r.as_str(), "uplink rejected");
            self.metrics.reject(r);
        }
    }
}

impl From<LnsError> for Rejection {
    fn from(_: LnsError) -> Self {
        Rejection::Store
    }
}
