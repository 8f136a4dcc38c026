//! Replication of the book over `/entente/sync/1`: what a peer shares with us, merged as a
//! union that must still replay; refused documents recorded; reconciliation pushes.

use super::*;

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

    /// Everything this node holds that `peer` is a party to.
    pub(super) fn shared_with(&self, peer: &MemberId) -> SyncMsg {
        let dossiers: Vec<Dossier> = lock(&self.dossiers)
            .values()
            .filter(|d| d.parties().is_ok_and(|p| p.contains(peer)))
            .cloned()
            .collect();
        let ids: Vec<String> = dossiers.iter().map(|d| format!("{}/", d.id)).collect();
        let reviews = lock(&self.reviews)
            .iter()
            .filter(|(k, _)| ids.iter().any(|i| k.starts_with(i.as_str())))
            .map(|(_, v)| v.clone())
            .collect();
        SyncMsg { dossiers, reviews }
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
            let key = match (r.key(), r.verify(&*self.keys)) {
                (Ok(k), Ok(_)) => k,
                (Err(e), _) | (_, Err(e)) => {
                    self.reject_doc(from, "review", e.to_string());
                    continue;
                }
            };
            let mut rs = lock(&self.reviews);
            let next = match rs.get(&key) {
                Some(held) if held.bytes != r.bytes => {
                    // Both prepared one: the earlier-signed bytes stay; ours is not replaced.
                    continue;
                }
                Some(held) => {
                    let mut m = held.clone();
                    for (k, v) in r.signatures {
                        m.signatures.entry(k).or_insert(v);
                    }
                    m
                }
                None => r,
            };
            if rs.get(&key) != Some(&next) && self.store.put::<Reviews>(&key, &next, Durability::Sync).is_ok()
            {
                rs.insert(key, next);
                changed += 1;
            }
        }
        if changed > 0 {
            debug!(%from, changed, "agreements synced");
            self.refresh();
        }
        changed
    }

    /// One dossier from `from`: merged if both of us are its parties and it verifies and
    /// replays together with what is held. Returns whether anything changed.
    pub(super) fn merge_one(&self, from: &MemberId, theirs: Dossier) -> Result<bool, BookError> {
        let parties = theirs.parties()?;
        if !parties.contains(from) || !parties.contains(&self.me) {
            return Err(BookError::NotAParty(from.clone(), theirs.id.clone()));
        }
        let mut ds = lock(&self.dossiers);
        let merged = match ds.get(&theirs.id) {
            Some(ours) => ours.merged(&theirs, &*self.keys, self.clock.now())?,
            None => {
                self.replay(&theirs)?;
                theirs
            }
        };
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

    /// Sends everything shared with `peer` and merges its answer; when the peer is away,
    /// its next connection reconciles.
    pub(super) fn push(&self, peer: MemberId) {
        let (Some(p), Ok(rt)) = (self.peering(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let Some(me) = self.self_arc() else { return };
        let Ok(body) = serde_json::to_vec(&self.shared_with(&peer)) else {
            return;
        };
        rt.spawn(async move {
            match p.sync_request(&peer, SYNC_CHANNEL, body).await {
                // A peer still starting has nothing to say yet; it reconciles when ready.
                Ok(answer) if answer.is_empty() => {}
                Ok(answer) => match serde_json::from_slice::<SyncMsg>(&answer) {
                    Ok(msg) => {
                        let _ = tokio::task::spawn_blocking(move || me.merge_from(&peer, msg)).await;
                    }
                    Err(e) => me.reject_doc(&peer, "sync", format!("undecodable answer: {e}")),
                },
                Err(e) => debug!(%peer, error = %e, "sync not sent; the next connection reconciles"),
            }
        });
    }
}

impl SyncHandler for Book {
    fn on_request(&self, from: &MemberId, body: Vec<u8>) -> Vec<u8> {
        match serde_json::from_slice::<SyncMsg>(&body) {
            Ok(msg) => {
                self.merge_from(from, msg);
            }
            Err(e) => self.reject_doc(from, "sync", format!("undecodable request: {e}")),
        }
        serde_json::to_vec(&self.shared_with(from)).unwrap_or_default()
    }

    fn on_connected(&self, peer: &MemberId) {
        self.push(peer.clone());
    }
}
