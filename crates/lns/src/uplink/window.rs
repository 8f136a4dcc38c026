//! The dedup window: frames waiting for their other copies, each with every reception so
//! far. Two FIFOs of deadlines, one per window length, so each stays in order.
//!
//! A frame is found by a 64-bit hash of its bytes (the hasher is keyed at random per
//! process, so no one can aim for a collision), the bytes then compared. The map holds
//! only `u64`s: no copy of the frame's bytes is kept and none is hashed twice.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use entente_frame::UplinkFrame;
use entente_gateway::journal::Mark;
use entente_gateway::{Arrival, RxInfo};
use tokio::time::Instant;

use super::Copies;

/// Which window a frame waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// Ours: the home window, then processed here.
    Home,
    /// Another member's: the visited window, then forwarded.
    Visited,
}

/// Where a frame waits: its queue, and its number in that queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    queue: Queue,
    seq: u64,
}

struct Open {
    deadline: Instant,
    hash: u64,
    frame: UplinkFrame,
    copies: Copies,
}

/// One queue of frames in deadline order, numbered from `first`.
#[derive(Default)]
struct Fifo {
    first: u64,
    open: VecDeque<Open>,
}

impl Fifo {
    fn get_mut(&mut self, seq: u64) -> Option<&mut Open> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.open.get_mut(i)
    }
}

#[derive(Default)]
pub(super) struct DedupWindow {
    hasher: foldhash::fast::RandomState,
    by_hash: HashMap<u64, Slot, foldhash::fast::RandomState>,
    home: Fifo,
    visited: Fifo,
}

/// Gateways a frame keeps receptions from at most: the best ones. Bounds the work and
/// the delivery JSON of a frame whatever a peer or a flood of copies claims.
pub(crate) const MAX_GATEWAYS_PER_FRAME: usize = 16;

/// Whether `a` heard the frame better than `b` (the order the best gateway is chosen by).
fn better(a: &RxInfo, b: &RxInfo) -> bool {
    a.snr.total_cmp(&b.snr).then(a.rssi.cmp(&b.rssi)).is_gt()
}

/// Adds receptions to a frame's: one per gateway (its best), at most
/// [`MAX_GATEWAYS_PER_FRAME`] gateways (the best heard).
fn merge_receptions(into: &mut Vec<RxInfo>, new: Vec<RxInfo>) {
    for rx in new {
        if let Some(same) = into.iter_mut().find(|r| r.gateway == rx.gateway) {
            if better(&rx, same) {
                *same = rx;
            }
            continue;
        }
        if into.len() < MAX_GATEWAYS_PER_FRAME {
            into.push(rx);
            continue;
        }
        let worst = into.iter_mut().reduce(|w, r| if better(w, r) { r } else { w });
        if let Some(w) = worst.filter(|w| better(&rx, w)) {
            *w = rx;
        }
    }
}

/// What [`DedupWindow::admit`] did with a copy.
pub(super) enum Admitted {
    /// A later copy of a frame already waiting: its receptions joined the first.
    Joined { receptions: usize },
    /// The frame's first copy: its window opened.
    Opened,
}

impl DedupWindow {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let front = |f: &Fifo| f.open.front().map(|o| o.deadline);
        match (front(&self.home), front(&self.visited)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Joins a copy to its frame, or opens the frame's window in `queue` (asked only for a
    /// first copy) until `deadline`.
    pub(super) fn admit(
        &mut self,
        frame: UplinkFrame,
        copies: Copies,
        open_in: impl FnOnce(&UplinkFrame, &mut Copies) -> (Queue, Instant),
    ) -> Admitted {
        let hash = self.hasher.hash_one(frame.bytes());
        if let Some(open) = self.waiting(hash, &frame) {
            let receptions = copies.rx.len();
            let c = &mut open.copies;
            merge_receptions(&mut c.rx, copies.rx);
            c.waiters.join(copies.waiters);
            // Its first journaled copy (a frame a peer reported first may have none).
            c.journal = c.journal.or(copies.journal);
            if copies.arrival == Arrival::Live {
                c.arrival = Arrival::Live;
            }
            return Admitted::Joined { receptions };
        }
        let mut copies = copies;
        // One reception (a gateway's copy) is within bounds; a peer's list may not be.
        if copies.rx.len() > 1 {
            let first = std::mem::take(&mut copies.rx);
            merge_receptions(&mut copies.rx, first);
        }
        let (queue, deadline) = open_in(&frame, &mut copies);
        let fifo = self.fifo(queue);
        let seq = fifo.first + fifo.open.len() as u64;
        fifo.open.push_back(Open {
            deadline,
            hash,
            frame,
            copies,
        });
        // Two frames with one hash (2^-64 per pair): the second is not found by its copies.
        self.by_hash.entry(hash).or_insert(Slot { queue, seq });
        Admitted::Opened
    }

    fn waiting(&mut self, hash: u64, frame: &UplinkFrame) -> Option<&mut Open> {
        let slot = *self.by_hash.get(&hash)?;
        self.fifo(slot.queue)
            .get_mut(slot.seq)
            .filter(|o| o.frame.bytes() == frame.bytes())
    }

    fn fifo(&mut self, queue: Queue) -> &mut Fifo {
        match queue {
            Queue::Home => &mut self.home,
            Queue::Visited => &mut self.visited,
        }
    }

    /// The oldest row of the journal of acknowledged frames that a frame of ours still
    /// waiting holds a copy of.
    pub(super) fn oldest_home_journal(&self) -> Option<Mark> {
        self.home.open.iter().filter_map(|o| o.copies.journal).min()
    }

    /// Takes the oldest frame of `queue` whose window closed by `until` (any, when None).
    pub(super) fn pop_closed(
        &mut self,
        queue: Queue,
        until: Option<Instant>,
    ) -> Option<(UplinkFrame, Copies)> {
        let fifo = self.fifo(queue);
        if fifo
            .open
            .front()
            .is_none_or(|o| until.is_some_and(|u| o.deadline > u))
        {
            return None;
        }
        let open = fifo.open.pop_front()?;
        let slot = Slot {
            queue,
            seq: fifo.first,
        };
        fifo.first += 1;
        if self.by_hash.get(&open.hash) == Some(&slot) {
            self.by_hash.remove(&open.hash);
        }
        Some((open.frame, open.copies))
    }
}

#[cfg(test)]
mod tests {
    use entente_model::GatewayEui;

    use super::*;
    use crate::testkit::rx;

    fn on(gateway: u64, snr: f32) -> RxInfo {
        RxInfo {
            gateway: GatewayEui::from_u64(gateway),
            ..rx(1, snr, 5)
        }
    }

    fn heard(v: &[RxInfo]) -> Vec<(u64, f32)> {
        let mut out: Vec<(u64, f32)> = v.iter().map(|r| (r.gateway.to_u64(), r.snr)).collect();
        out.sort_by_key(|a| a.0);
        out
    }

    #[test]
    fn a_frame_keeps_one_reception_per_gateway_its_best() {
        let mut into = Vec::new();
        merge_receptions(&mut into, vec![on(1, 2.0), on(1, 7.0), on(2, 1.0)]);
        merge_receptions(&mut into, vec![on(1, 3.0), on(2, 4.0)]);
        assert_eq!(heard(&into), vec![(1, 7.0), (2, 4.0)]);
    }

    #[test]
    fn a_frame_keeps_the_best_gateways_up_to_the_bound() {
        let mut into = Vec::new();
        let flood: Vec<RxInfo> = (0..1000).map(|g| on(g, (g % 100) as f32 / 10.0)).collect();
        merge_receptions(&mut into, flood);
        assert_eq!(into.len(), MAX_GATEWAYS_PER_FRAME);
        assert!(into.iter().all(|r| r.snr >= 9.8), "{:?}", heard(&into));
        // A worse gateway does not displace any; a better one displaces the worst.
        merge_receptions(&mut into, vec![on(5000, -3.0), on(5001, 20.0)]);
        assert_eq!(into.len(), MAX_GATEWAYS_PER_FRAME);
        assert!(into.iter().all(|r| r.gateway != GatewayEui::from_u64(5000)));
        assert!(into.iter().any(|r| r.gateway == GatewayEui::from_u64(5001)));
    }
}
