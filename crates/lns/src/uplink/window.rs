//! The dedup window: frames waiting for their other copies, each with every reception so
//! far. Two FIFOs of deadlines, one per window length, so each stays in order.
//!
//! A frame is found by a 64-bit hash of its bytes (the hasher is keyed at random per
//! process, so no one can aim for a collision), the bytes then compared. The map holds
//! only `u64`s: no copy of the frame's bytes is kept and none is hashed twice.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use entente_frame::UplinkFrame;
use entente_gateway::Arrival;
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
        open_in: impl FnOnce(&UplinkFrame) -> (Queue, Instant),
    ) -> Admitted {
        let hash = self.hasher.hash_one(frame.bytes());
        if let Some(open) = self.waiting(hash, &frame) {
            let receptions = copies.rx.len();
            let c = &mut open.copies;
            c.rx.extend(copies.rx);
            c.waiters.join(copies.waiters);
            if copies.arrival == Arrival::Live {
                c.arrival = Arrival::Live;
            }
            return Admitted::Joined { receptions };
        }
        let (queue, deadline) = open_in(&frame);
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
