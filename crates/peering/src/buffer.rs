//! The late buffer: frames for a home peer that is unreachable (or behind) wait here, in
//! the order they were heard, and are flushed in batches when it is back.
//!
//! Every frame forwarded to a home peer is also kept in the node's store (`late_frames`)
//! from its first copy (while its dedup window is open) until the home's verdict on it
//! arrives: a kill -9 of
//! this node, or of the home before it committed the frame, loses none of them. At start
//! the kept frames come back into the buffer and go again, late; a home that already
//! committed one answers it as verified without counting it twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use entente_model::MemberId;
use entente_store::{Durability, Store, StoreError, Table};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::metrics::PeeringMetrics;
use crate::protocol::{MAX_BATCH, Request, UplinkForward};
use crate::service::{Peering, lock, read, write};
use crate::visited::Delivery;

/// A frame's place in the order frames were heard in.
pub(crate) type Seq = u64;

/// What waits for one peer, by [`Seq`], with the time it was buffered.
type Queue = BTreeMap<Seq, (DateTime<Utc>, UplinkForward)>;

/// A forwarded frame as the store keeps it until the home's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeptFrame {
    home: MemberId,
    #[serde(with = "entente_model::timestamp")]
    kept_at: DateTime<Utc>,
    fwd: UplinkForward,
}

pub(crate) struct LateFrames;
impl Table for LateFrames {
    const NAME: &'static str = "roaming_late_frames";
    type Key = Seq;
    type Value = KeptFrame;
}

pub(crate) struct LateBuffer {
    /// Frames waiting for a home peer, keyed by the order they were heard in, so a batch
    /// that failed in flight goes back before what was buffered after it.
    frames: Mutex<HashMap<PeerId, Queue>>,
    /// The next [`Seq`] to hand out.
    next_seq: AtomicU64,
    /// Peers being flushed now: one flush per peer at a time keeps the order.
    flushing: Mutex<HashSet<PeerId>>,
    /// Where forwarded frames are kept until their verdict (none in tools and tests
    /// without a store).
    store: RwLock<Option<Arc<Store>>>,
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
    expired: Vec<Seq>,
}

impl LateBuffer {
    pub(crate) fn new(max: usize, retention: TimeDelta) -> Self {
        LateBuffer {
            frames: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            flushing: Mutex::new(HashSet::new()),
            store: RwLock::new(None),
            max,
            retention,
        }
    }

    /// Takes back the frames kept in `store` (for homes still on the roster and within
    /// the retention), late, and keeps every later one there. Sequence numbers go on from
    /// above both the kept ones and the clock's microseconds, so a verdict a home still
    /// sends for the previous process never names a new frame.
    pub(crate) fn keep_in(
        &self,
        store: Arc<Store>,
        peer_of: impl Fn(&MemberId) -> Option<PeerId>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let horizon = now - self.retention;
        let mut gone = Vec::new();
        let mut last: Seq = 0;
        let taken = {
            let mut frames = lock(&self.frames);
            for row in store.iter::<LateFrames>()? {
                let (seq, kept) = row?;
                last = last.max(seq);
                let Some(peer) = peer_of(&kept.home).filter(|_| kept.kept_at >= horizon) else {
                    gone.push(seq);
                    continue;
                };
                let q = frames.entry(peer).or_default();
                if q.len() >= self.max
                    && let Some((old, _)) = q.pop_first()
                {
                    gone.push(old);
                }
                q.insert(
                    seq,
                    (
                        kept.kept_at,
                        UplinkForward {
                            late: true,
                            ..kept.fwd
                        },
                    ),
                );
            }
            frames.values().map(BTreeMap::len).sum()
        };
        let clock_base = u64::try_from(now.timestamp_micros()).unwrap_or(0);
        self.next_seq
            .fetch_max(last.saturating_add(1).max(clock_base), Ordering::Relaxed);
        *write(&self.store) = Some(store);
        self.forget(&gone);
        Ok(taken)
    }

    /// Keeps a frame just forwarded (or buffered) to `home` until its verdict.
    pub(crate) fn keep(&self, home: &MemberId, fwd: &UplinkForward, now: DateTime<Utc>) {
        let Some(store) = read(&self.store).clone() else {
            return;
        };
        let kept = KeptFrame {
            home: home.clone(),
            kept_at: now,
            fwd: fwd.clone(),
        };
        if let Err(e) = store.put::<LateFrames>(&fwd.id, &kept, Durability::Buffered) {
            warn!(%home, error = %e, "forwarded frame not kept; a crash before its verdict loses it");
        }
    }

    /// Forgets kept frames: their verdict came, or they were dropped.
    pub(crate) fn forget(&self, seqs: &[Seq]) {
        let Some(store) = read(&self.store).clone() else {
            return;
        };
        if seqs.is_empty() {
            return;
        }
        let mut batch = store.batch();
        for s in seqs {
            if let Err(e) = batch.delete::<LateFrames>(s) {
                warn!(error = %e, "kept frame not forgotten");
            }
        }
        if let Err(e) = store.write(batch, Durability::Buffered) {
            warn!(error = %e, "kept frames not forgotten; they go again after a restart");
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
        let mut expired = Vec::new();
        while q.first_key_value().is_some_and(|(_, (t, _))| *t < horizon) {
            if let Some((seq, _)) = q.pop_first() {
                expired.push(seq);
            }
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
            if let Some((old, _)) = q.pop_first() {
                self.buffer.forget(&[old]);
            }
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
            self.buffer.forget(&batch.expired);
            for _ in &batch.expired {
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
                    if self.on_receipts(peer, &member, &batch.frames, &resp, Delivery::Late) {
                        return; // the home is busy: the next tick tries again
                    }
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
