//! Replication of the book over `/entente/sync/1`: what a peer shares with us, merged as a
//! union that must still replay; refused documents recorded; reconciliation by heads
//! (a digest per dossier and per review) and pages of the documents whose heads differ
//! (see `sync.rs`).

use super::*;

mod sync;
pub(super) use sync::Summary;
pub use sync::{BookMsg, BookSession, DocHead, Heads, MAX_HEADS};

impl Book {
    pub fn rejections(&self) -> Vec<SyncRejection> {
        lock(&self.rejections).clone()
    }

    pub(super) fn reject_doc(&self, from: &MemberId, agreement: &str, reason: String) {
        warn!(%from, %agreement, %reason, "sync document refused");
        let mut v = lock(&self.rejections);
        if v.len() >= 1000 {
            v.remove(0);
        }
        v.push(SyncRejection {
            at: self.clock.now(),
            from: from.clone(),
            agreement: agreement.to_string(),
            reason,
        });
    }

    /// Merges what a peer sent: only documents both of us are party to, only if they
    /// verify and replay; anything else is refused and recorded, and nothing held is lost.
    pub fn merge_from(&self, from: &MemberId, msg: SyncMsg) -> usize {
        let mut changed = 0;
        for theirs in msg.dossiers {
            let id = theirs.id.clone();
            match self.merge_one(from, theirs) {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => self.reject_doc(from, &id, e.to_string()),
            }
        }
        for r in msg.reviews {
            match self.merge_review(from, r) {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => self.reject_doc(from, "review", e.to_string()),
            }
        }
        if changed > 0 {
            debug!(%from, changed, "agreements synced");
            self.refresh();
        }
        changed
    }

    /// One review from `from`: kept only if it is about an agreement we hold with
    /// `from`, for a quarter already begun, prepared by one of its parties and signed by
    /// that party. When both parties prepared one, both keep the one [`preferred`] picks.
    pub(super) fn merge_review(&self, from: &MemberId, r: SignedReview) -> Result<bool, BookError> {
        let review = r.review()?;
        let key = r.key()?;
        let parties = lock(&self.dossiers)
            .get(&review.agreement)
            .ok_or_else(|| BookError::NotFound(review.agreement.clone()))?
            .parties()?;
        let ours = [review.host.clone(), review.guest.clone()];
        if !parties.contains(from) || !ours.iter().all(|m| parties.contains(m)) {
            return Err(BookError::NotAParty(from.clone(), review.agreement.clone()));
        }
        crate::review::check_period(&review, self.clock.now())?;
        let signers = r.verify(&*self.keys)?;
        if !signers.contains(&review.prepared_by) {
            return Err(SignError::Missing(review.prepared_by.clone()).into());
        }
        let mut rs = lock(&self.reviews);
        let next = match rs.get(&key) {
            Some(held) if held.bytes == r.bytes => {
                let mut m = held.clone();
                for (k, v) in r.signatures {
                    m.signatures.entry(k).or_insert(v);
                }
                m
            }
            Some(held) if crate::review::preferred(held, &r)? == held => return Ok(false),
            _ => r,
        };
        if rs.get(&key) == Some(&next) {
            return Ok(false);
        }
        self.store.put::<Reviews>(&key, &next, Durability::Sync)?;
        rs.insert(key, next);
        Ok(true)
    }

    /// One dossier from `from`: merged if both of us are its parties and it verifies and
    /// replays together with what is held. Returns whether anything changed.
    pub(super) fn merge_one(&self, from: &MemberId, theirs: Dossier) -> Result<bool, BookError> {
        let parties = theirs.parties()?;
        if !parties.contains(from) || !parties.contains(&self.me) {
            return Err(BookError::NotAParty(from.clone(), theirs.id.clone()));
        }
        let mut ds = lock(&self.dossiers);
        let now = self.clock.now();
        let held = ds.get(&theirs.id);
        let merged = match held {
            Some(ours) => ours.merged(&theirs, &*self.keys, now)?,
            None => {
                self.replay(&theirs)?;
                theirs
            }
        };
        merged.check_new_acts(held, now)?;
        if ds.get(&merged.id) == Some(&merged) {
            return Ok(false);
        }
        self.save(&merged)?;
        ds.insert(merged.id.clone(), merged);
        Ok(true)
    }

    /// A dossier received outside the federation (a backup, a copy handed over by the
    /// counterparty): checked exactly as one received over `/entente/sync/1`.
    pub fn import(&self, d: Dossier) -> Result<View, BookError> {
        let id = d.id.clone();
        let from = match self.counterparty(&d) {
            Ok(f) => f,
            Err(e) => {
                // Altered parties, or not ours at all: refused and recorded all the same.
                self.reject_doc(&self.me, &id, e.to_string());
                return Err(e);
            }
        };
        match self.merge_one(&from, d) {
            Ok(changed) => {
                if changed {
                    self.refresh();
                }
                self.show(&id)
            }
            Err(e) => {
                self.reject_doc(&from, &id, e.to_string());
                Err(e)
            }
        }
    }

    pub(super) fn push_dossier(&self, d: &Dossier) {
        if let Ok(peer) = self.counterparty(d) {
            self.push(peer);
        }
    }

    /// Reconciles with `peer` in the background; when the peer is away, its next
    /// connection does.
    pub(super) fn push(&self, peer: MemberId) {
        let (Some(p), Ok(rt)) = (self.peering(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let Some(me) = self.self_arc() else { return };
        rt.spawn(async move {
            let s = me.session(peer.clone());
            p.reconcile(&peer, SYNC_CHANNEL, Box::new(s)).await;
        });
    }
}
