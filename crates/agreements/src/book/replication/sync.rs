//! Reconciliation by heads: each side shows a digest per dossier and per review it
//! shares with the other, and sends, whole and in pages under [`SYNC_PAGE_BYTES`], only
//! the documents whose digest the other does not hold. What arrives is merged exactly as
//! before (`merge_one`, `merge_review`).

use std::collections::HashMap;

use entente_peering::protocol::{MAX_SYNC_DOCUMENT_BYTES, SYNC_PAGE_BYTES};
use entente_peering::sync::{Replica, Session, answer_request, encode};
use sha2::{Digest, Sha256};

use super::*;
pub use entente_documents::book_sync::{BookMsg, DocHead, Heads, MAX_HEADS};

type Shape = (usize, usize, usize, usize);

/// A dossier's digest and parties, valid while its shape (versions, acts, signatures,
/// first version's length) stays: merges only ever add to these.
#[derive(Debug, Clone)]
pub struct Summary {
    shape: Shape,
    digest: Vec<u8>,
    parties: Option<[MemberId; 2]>,
}

fn shape(d: &Dossier) -> Shape {
    (
        d.versions.len(),
        d.acts.len(),
        d.versions.iter().map(|v| v.signatures.len()).sum(),
        d.versions.first().map_or(0, |v| v.bytes.len()),
    )
}

fn digest_of<T: Serialize>(v: &T) -> Vec<u8> {
    Sha256::digest(encode(v).unwrap_or_default()).to_vec()
}

/// A page being filled with whole documents.
struct Page {
    msg: SyncMsg,
    used: usize,
    budget: usize,
    full: bool,
}

impl Page {
    /// Whether a document of `size` bytes goes in (a larger one than the page alone).
    fn fits(&mut self, size: usize) -> bool {
        let empty = self.msg.dossiers.is_empty() && self.msg.reviews.is_empty();
        if !empty && self.used.saturating_add(size) > self.budget {
            self.full = true;
            return false;
        }
        self.used = self.used.saturating_add(size);
        true
    }
}

impl Book {
    fn summary(&self, d: &Dossier) -> Summary {
        let sh = shape(d);
        if let Some(s) = lock(&self.summaries).get(&d.id).filter(|s| s.shape == sh) {
            return s.clone();
        }
        let s = Summary {
            shape: sh,
            digest: digest_of(d),
            parties: d.parties().ok(),
        };
        lock(&self.summaries).insert(d.id.clone(), s.clone());
        s
    }

    /// The ids and parties of the dossiers this node and `member` are both party to.
    pub fn shared_with_member(&self, member: &MemberId) -> Vec<(String, [MemberId; 2])> {
        let ds = lock(&self.dossiers);
        ds.values()
            .filter_map(|d| {
                let p = self.summary(d).parties?;
                (p.contains(member) && p.contains(&self.me)).then(|| (d.id.clone(), p))
            })
            .collect()
    }

    /// This node's heads of every dossier and review shared with `peer`.
    pub fn heads_for(&self, peer: &MemberId) -> Heads {
        let mut h = Heads::default();
        let mut prefixes = Vec::new();
        for d in lock(&self.dossiers).values() {
            let s = self.summary(d);
            if s.parties.as_ref().is_some_and(|p| p.contains(peer)) {
                h.dossiers.push(DocHead {
                    key: d.id.clone(),
                    digest: s.digest,
                });
                prefixes.push(format!("{}/", d.id));
            }
        }
        let rs = lock(&self.reviews);
        for p in &prefixes {
            for (k, r) in rs
                .range(p.clone()..)
                .take_while(|(k, _)| k.starts_with(p.as_str()))
            {
                h.reviews.push(DocHead {
                    key: k.clone(),
                    digest: digest_of(r),
                });
            }
        }
        h
    }

    /// The documents of `mine` whose digest `theirs` does not hold, whole, in a page of
    /// about `budget` bytes; and whether more remains.
    pub fn page_for(&self, mine: &Heads, theirs: &Heads, budget: usize) -> (SyncMsg, bool) {
        let held = |hs: &[DocHead]| -> HashMap<String, Vec<u8>> {
            hs.iter().map(|h| (h.key.clone(), h.digest.clone())).collect()
        };
        let (their_d, their_r) = (held(&theirs.dossiers), held(&theirs.reviews));
        let mut page = Page {
            msg: SyncMsg::default(),
            used: 0,
            budget,
            full: false,
        };
        for h in mine
            .dossiers
            .iter()
            .filter(|h| their_d.get(&h.key) != Some(&h.digest))
        {
            let Ok(d) = self.dossier(&h.key) else { continue };
            let size = encode(&d).map_or(usize::MAX, |b| b.len());
            if size > MAX_SYNC_DOCUMENT_BYTES {
                warn!(agreement = %h.key, size, "dossier too large to replicate");
            } else if page.fits(size) {
                page.msg.dossiers.push(d);
            } else {
                return (page.msg, true);
            }
        }
        let rs = lock(&self.reviews);
        for h in mine
            .reviews
            .iter()
            .filter(|h| their_r.get(&h.key) != Some(&h.digest))
        {
            let Some(r) = rs.get(&h.key) else { continue };
            if !page.fits(encode(r).map_or(usize::MAX, |b| b.len())) {
                break;
            }
            page.msg.reviews.push(r.clone());
        }
        (page.msg, page.full)
    }

    /// The message for `peer`: this node's heads and a page of what `theirs` lack; and
    /// how many documents the page holds.
    fn message_for(&self, peer: &MemberId, theirs: Option<&Heads>) -> Result<(Vec<u8>, usize), String> {
        let heads = self.heads_for(peer);
        let room = SYNC_PAGE_BYTES
            .saturating_sub(encode(&heads)?.len() + 64)
            .max(1024);
        let (page, more) = match theirs {
            Some(t) => self.page_for(&heads, t, room),
            None => (SyncMsg::default(), false),
        };
        let n = page.dossiers.len() + page.reviews.len();
        Ok((encode(&BookMsg { heads, page, more })?, n))
    }

    /// A session reconciling this book with `peer`'s.
    pub fn session(self: &Arc<Self>, peer: MemberId) -> BookSession {
        Session::new(self.clone(), peer)
    }
}

/// The initiator's side of one reconciliation of the agreements.
pub type BookSession = Session<Book>;

impl Replica for Book {
    type Heads = Heads;
    type Page = SyncMsg;

    fn decode_message(bytes: &[u8]) -> Result<(Heads, SyncMsg), String> {
        BookMsg::from_peer(bytes).map(|m| (m.heads, m.page))
    }

    fn merge_page(&self, from: &MemberId, page: SyncMsg) -> bool {
        self.merge_from(from, page) > 0
    }

    fn message_to(&self, peer: &MemberId, theirs: Option<&Heads>) -> Result<(Vec<u8>, usize), String> {
        self.message_for(peer, theirs)
    }

    fn refuse_request(&self, from: &MemberId, reason: String) {
        self.reject_doc(from, "sync", reason);
    }
}

impl SyncHandler for Book {
    fn on_request(&self, from: &MemberId, body: Vec<u8>) -> Vec<u8> {
        answer_request(self, from, &body)
    }

    fn on_connected(&self, peer: &MemberId) {
        self.push(peer.clone());
    }
}
