//! Forgetting the journal of acknowledged frames ([`entente_gateway::journal`]) as frames
//! become safe. A frame forwarded from here is safe once admitted (the peering keeps it
//! from its first copy); a frame of ours once its group is written. Rows are numbered in
//! the order the network server receives them, and the home window is a FIFO in that
//! order, so every row before the oldest home frame still waiting is safe: those are
//! forgotten, at most every [`EVERY`].

use std::sync::Arc;
use std::time::Duration;

use entente_gateway::Journal;
use entente_gateway::journal::Mark;
use tokio::time::Instant;
use tracing::warn;

use super::window::DedupWindow;

/// How often rows are forgotten at most: what a crash brings back that was already safe
/// (and is then refused as seen) is at most this much traffic.
const EVERY: Duration = Duration::from_millis(20);

pub(super) struct Forgetting {
    journal: Arc<Journal>,
    /// Past the newest row received so far.
    seen: Mark,
    /// The first row not yet forgotten.
    floor: Mark,
    last: Instant,
}

impl Forgetting {
    pub(super) fn new(journal: Arc<Journal>) -> Self {
        Forgetting {
            journal,
            seen: 0,
            floor: 0,
            last: Instant::now(),
        }
    }

    /// A frame of row `mark` reached the network server.
    pub(super) fn received(&mut self, mark: Option<Mark>) {
        if let Some(m) = mark {
            self.seen = self.seen.max(m.saturating_add(1));
        }
    }

    /// Forgets the rows before the oldest home frame still waiting, if it is time.
    pub(super) fn tick(&mut self, window: &DedupWindow) {
        if self.last.elapsed() >= EVERY {
            self.forget_safe(window);
        }
    }

    /// Forgets the rows before the oldest home frame still waiting (every row received,
    /// when none waits).
    pub(super) fn forget_safe(&mut self, window: &DedupWindow) {
        self.last = Instant::now();
        let safe = window.oldest_home_journal().unwrap_or(self.seen).min(self.seen);
        if safe <= self.floor {
            return;
        }
        match self.journal.forget(self.floor, safe) {
            Ok(()) => self.floor = safe,
            Err(e) => warn!(error = %e, "cannot forget journaled frames; retried"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use entente_frame::UplinkFrame;
    use entente_gateway::Uplink;
    use entente_store::Store;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::device::{DeviceClass, MacVersion};
    use crate::server::LnsConfig;
    use crate::testkit::*;

    fn rows(store: &Arc<Store>) -> Vec<Option<Mark>> {
        let (_, left) = Journal::open(store.clone()).unwrap();
        left.iter().map(|u| u.journal).collect()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never: {what}");
    }

    /// A row stays while its frame waits in the home window and goes once the frame is
    /// written; what a crash left in the journal is processed at start and forgotten.
    #[tokio::test]
    async fn rows_go_once_their_frames_are_written_and_a_crash_leaves_none_unprocessed() {
        let dir = tempfile::tempdir().unwrap();
        let jstore = Arc::new(Store::open(dir.path(), &Journal::TABLES).unwrap());
        let d = abp_device(
            eui(1),
            entente_model::DevAddr(0x2600_0001),
            profile(MacVersion::V1_0_3, DeviceClass::A),
        );
        let mut sim = abp_sim(&d);
        let mut frame = || {
            let phy = sim.uplink(1, &[7], false, 5, 0).unwrap();
            Uplink {
                frame: UplinkFrame::parse(phy).unwrap(),
                rx: rx(1, 7.0, 5),
                journal: None,
            }
        };
        // A crash left one acknowledged frame behind.
        let (before, _) = Journal::open(jstore.clone()).unwrap();
        before.keep([frame()].iter()).unwrap();
        drop(before);
        let (journal, left) = Journal::open(jstore.clone()).unwrap();
        assert_eq!(left.len(), 1);
        let journal = Arc::new(journal);
        let cfg = LnsConfig {
            dedup_window: Duration::from_secs(2),
            ..LnsConfig::default()
        };
        let h = Harness::built(cfg, |ns| ns.with_journal(journal.clone(), left));
        h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
        let (tx, frames) = tokio::sync::mpsc::channel(8);
        let (_roamed_tx, roamed) = tokio::sync::mpsc::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(h.ns.clone().run(frames, roamed, stop.clone()));
        let stored = || h.ns.uplinks(&d.dev_eui, 0, 10).unwrap().len();
        until("the frame left by the crash is stored", || stored() == 1).await;
        until("its row is forgotten", || rows(&jstore).is_empty()).await;

        let mut next = frame();
        next.journal = Some(journal.keep([next.clone()].iter()).unwrap());
        tx.send(next).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            rows(&jstore),
            vec![Some(1)],
            "kept while the frame waits in its window"
        );
        until("the new frame is stored", || stored() == 2).await;
        until("its row is forgotten", || rows(&jstore).is_empty()).await;
        stop.cancel();
        task.await.unwrap();
    }
}
