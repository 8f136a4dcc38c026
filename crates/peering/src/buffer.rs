//! The late buffer: frames for a home peer that is unreachable (or behind) wait here, in
//! the order they were heard, and are flushed in batches when it is back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use libp2p::PeerId;
use tracing::debug;

use crate::metrics::PeeringMetrics;
use crate::protocol::{MAX_BATCH, Request, UplinkForward};
use crate::service::{Peering, lock};
use crate::visited::Delivery;

/// A frame's place in the order frames were heard in.
pub(crate) type Seq = u64;

/// What waits for one peer, by [`Seq`], with the time it was buffered.
type Queue = BTreeMap<Seq, (DateTime<Utc>, UplinkForward)>;

pub(crate) struct LateBuffer {
    /// Frames waiting for a home peer, keyed by the order they were heard in, so a batch
    /// that failed in flight goes back before what was buffered after it.
    frames: Mutex<HashMap<PeerId, Queue>>,
    /// The next [`Seq`] to hand out.
    next_seq: AtomicU64,
    /// Peers being flushed now: one flush per peer at a time keeps the order.
    flushing: Mutex<HashSet<PeerId>>,
    /// Frames kept per peer; the oldest goes first.
    max: usize,
    /// How long a frame is kept before it is dropped as expired.
    retention: TimeDelta,
}

/// The oldest frames waiting for a peer, as one request takes them.
struct Batch {
    seqs: Vec<Seq>,
    frames: Vec<UplinkForward>,
    /// Frames dropped on the way for being older than the retention.
    expired: usize,
}

impl LateBuffer {
    pub(crate) fn new(max: usize, retention: TimeDelta) -> Self {
        LateBuffer {
            frames: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            flushing: Mutex::new(HashSet::new()),
            max,
            retention,
        }
    }

    pub(crate) fn next_seq(&self) -> Seq {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn has(&self, peer: &PeerId) -> bool {
        lock(&self.frames).get(peer).is_some_and(|q| !q.is_empty())
    }

    /// How many frames wait for each peer.
    pub(crate) fn lens(&self) -> HashMap<PeerId, usize> {
        lock(&self.frames).iter().map(|(p, q)| (*p, q.len())).collect()
    }

    fn total(frames: &HashMap<PeerId, Queue>) -> i64 {
        frames.values().map(|q| q.len() as i64).sum()
    }

    /// Drops the expired frames for `peer`, then takes (without removing) a batch.
    fn batch(&self, peer: &PeerId, now: DateTime<Utc>) -> Option<Batch> {
        let mut b = lock(&self.frames);
        let horizon = now - self.retention;
        let q = b.get_mut(peer)?;
        let mut expired = 0;
        while q.first_key_value().is_some_and(|(_, (t, _))| *t < horizon) {
            q.pop_first();
            expired += 1;
        }
        let (seqs, frames) = q
            .iter()
            .take(MAX_BATCH)
            .map(|(k, (_, f))| (*k, f.clone()))
            .unzip();
        Some(Batch {
            seqs,
            frames,
            expired,
        })
    }

    /// Removes frames the peer answered; the frames left in all, for the gauge.
    fn remove(&self, peer: &PeerId, seqs: &[Seq]) -> i64 {
        let mut b = lock(&self.frames);
        if let Some(q) = b.get_mut(peer) {
            for k in seqs {
                q.remove(k);
            }
        }
        Self::total(&b)
    }
}

impl Peering {
    /// Keeps a frame for `peer`, marked late, dropping the oldest when full.
    pub(crate) fn buffer(&self, peer: PeerId, seq: Seq, fwd: UplinkForward) {
        let mut b = lock(&self.buffer.frames);
        let q = b.entry(peer).or_default();
        if q.len() >= self.buffer.max {
            q.pop_first();
            if let Some(m) = self.member_of(&peer) {
                PeeringMetrics::count(&self.metrics.forwarded, m.id.as_str(), "buffer_overflow");
            }
        }
        q.insert(seq, (self.clock.now(), UplinkForward { late: true, ..fwd }));
        self.metrics.buffered.set(LateBuffer::total(&b));
    }

    /// Sends what waited for `peer`, oldest first and in batches, dropping (and counting)
    /// what is over the retention; stops at the first failure and keeps the rest.
    pub(crate) async fn flush(self: Arc<Self>, peer: PeerId) {
        if !lock(&self.buffer.flushing).insert(peer) {
            return; // one flush per peer at a time keeps the order
        }
        self.clone().flush_batches(peer).await;
        lock(&self.buffer.flushing).remove(&peer);
    }

    /// Starts a flush for every connected peer that has frames waiting.
    pub(crate) fn kick_flushes(self: &Arc<Self>) {
        let waiting: Vec<PeerId> = lock(&self.buffer.frames)
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            if self.peers.is_connected(&p) && !lock(&self.buffer.flushing).contains(&p) {
                tokio::spawn(self.clone().flush(p));
            }
        }
    }

    async fn flush_batches(self: Arc<Self>, peer: PeerId) {
        let member = self
            .member_of(&peer)
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        loop {
            let Some(batch) = self.buffer.batch(&peer, self.clock.now()) else {
                return;
            };
            for _ in 0..batch.expired {
                PeeringMetrics::count(&self.metrics.forwarded, &member, "expired");
            }
            if batch.frames.is_empty() {
                break;
            }
            self.announce_for(peer, &batch.frames).await;
            self.expect_verdicts(peer, &batch.frames, Delivery::Late);
            match self
                .client
                .request(peer, Request::Uplinks(batch.frames.clone()))
                .await
            {
                Ok(resp) => {
                    let left = self.buffer.remove(&peer, &batch.seqs);
                    self.metrics.buffered.set(left);
                    self.on_receipts(peer, &member, &batch.frames, &resp, Delivery::Late);
                }
                Err(e) => {
                    self.forget_verdicts(peer, &batch.frames);
                    debug!(peer = %member, error = %e, "buffer flush stopped");
                    return;
                }
            }
        }
    }
}
