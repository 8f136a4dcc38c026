//! The ledger's replication on channel `ledger`: each side shows the heads of the
//! chains it holds (length, last hash, records still lacking a second signature) and
//! sends, oldest first and in pages under [`SYNC_PAGE_BYTES`], only the records the
//! other's heads lack. Records merged are checked exactly as before (hash, signatures,
//! chain link, parties) and the counterparty's statements are answered.

use std::collections::HashMap;

use entente_model::MemberId;
use entente_peering::SyncHandler;
use entente_peering::protocol::SYNC_PAGE_BYTES;
use entente_peering::sync::{Replica, Session, answer_request, encode};

use super::*;

pub use entente_documents::ledger_sync::{ChainHead, LedgerMsg, MAX_HEADS, MAX_PENDING, WireEntry};

/// A page being filled: whole records while they fit (a larger one goes alone).
struct Page {
    items: Vec<WireEntry>,
    used: usize,
    budget: usize,
    full: bool,
}

impl Page {
    fn new(budget: usize) -> Page {
        Page {
            items: Vec::new(),
            used: 0,
            budget,
            full: false,
        }
    }

    /// Adds a record if it fits; false (and the page full) when it does not.
    fn add(&mut self, e: Entry) -> bool {
        let w = WireEntry::from(e);
        let size = encode(&w).map_or(usize::MAX, |b| b.len());
        if !self.items.is_empty() && self.used.saturating_add(size) > self.budget {
            self.full = true;
            return false;
        }
        self.used = self.used.saturating_add(size);
        self.items.push(w);
        true
    }
}

impl Accounts {
    /// The chains of agreements this node and `peer` are both party to.
    fn shared_chains(&self, peer: &MemberId) -> Vec<(String, MemberId)> {
        let mut v = Vec::new();
        for (id, parties) in self.book.shared_with_member(peer) {
            for issuer in parties {
                v.push((id.clone(), issuer));
            }
        }
        v
    }

    /// This node's heads of every chain shared with `peer`.
    pub fn heads_for(&self, peer: &MemberId) -> Result<Vec<ChainHead>, AccountsError> {
        let mut v = Vec::new();
        for (agreement, issuer) in self.shared_chains(peer) {
            let h = self.ledger.head(&agreement, &issuer)?;
            if h.next == 0 {
                continue;
            }
            let pending = self.ledger.pending(&agreement, &issuer, MAX_PENDING)?;
            v.push(ChainHead {
                agreement,
                issuer,
                next: h.next,
                last: h.last,
                pending,
            });
        }
        Ok(v)
    }

    /// What `peer`'s heads lack, oldest first per chain, in one page of at most
    /// `budget` bytes; and whether more remains. Reads chains by key range only.
    pub fn page_for(
        &self,
        peer: &MemberId,
        theirs: &[ChainHead],
        budget: usize,
    ) -> Result<(Vec<WireEntry>, bool), AccountsError> {
        let known: HashMap<(&str, &MemberId), &ChainHead> = theirs
            .iter()
            .map(|h| ((h.agreement.as_str(), &h.issuer), h))
            .collect();
        let mut page = Page::new(budget);
        for (agreement, issuer) in self.shared_chains(peer) {
            let t = known.get(&(agreement.as_str(), &issuer)).copied();
            if !self.fill_chain(&mut page, &agreement, &issuer, t)? {
                break;
            }
        }
        Ok((page.items, page.full))
    }

    /// One chain's part of a page: countersignatures the peer lacks, then the records
    /// after its head. False when the page is full.
    fn fill_chain(
        &self,
        page: &mut Page,
        agreement: &str,
        issuer: &MemberId,
        theirs: Option<&ChainHead>,
    ) -> Result<bool, AccountsError> {
        let mine = self.ledger.head(agreement, issuer)?;
        let (next, last, pending) = theirs.map_or((0, "", &[][..]), |t| {
            (t.next, t.last.as_str(), t.pending.as_slice())
        });
        for &seq in pending.iter().filter(|&&s| s < mine.next.min(next)) {
            let e = self.ledger.get(agreement, issuer, seq)?;
            if e.signatures.len() > 1 && !page.add(e) {
                return Ok(false);
            }
        }
        if next >= mine.next {
            return Ok(true);
        }
        if let Some(prev) = next.checked_sub(1)
            && self.ledger.get(agreement, issuer, prev)?.hash != last
        {
            warn!(%agreement, %issuer, seq = prev, "the peer holds another record in this chain; not replicated");
            return Ok(true);
        }
        for e in self.ledger.chain_from(agreement, issuer, next)? {
            if !page.add(e?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Merges a peer's page (only agreements both are party to, each record checked by
    /// the ledger), answers its statements, and says whether anything changed.
    pub fn merge_from(&self, from: &MemberId, page: Vec<Entry>) -> bool {
        let mut changed = false;
        let mut shared: HashMap<String, bool> = HashMap::new();
        let mut tolerances: HashMap<String, u32> = HashMap::new();
        for e in page {
            let parties_ok = *shared.entry(e.agreement.clone()).or_insert_with(|| {
                self.book.show(&e.agreement).is_ok_and(|v| {
                    (v.host == *from || v.guest == *from) && (v.host == self.me || v.guest == self.me)
                })
            });
            if !parties_ok {
                self.reject(format!(
                    "{} #{} from {from}: not an agreement between us",
                    e.agreement, e.seq
                ));
                continue;
            }
            changed |= self.merge_entry(from, e, &mut tolerances);
        }
        changed
    }

    fn merge_entry(&self, from: &MemberId, e: Entry, tolerances: &mut HashMap<String, u32>) -> bool {
        let (agreement, issuer, seq) = (e.agreement.clone(), e.issuer.clone(), e.seq);
        let mut changed = match self.ledger.merge(e) {
            Ok(c) => c,
            Err(err) => {
                self.reject(format!("from {from}: {err}"));
                return false;
            }
        };
        if let Ok(held) = self.ledger.get(&agreement, &issuer, seq) {
            match self.answer_statement(&held, tolerances) {
                Ok(c) => changed |= c,
                Err(err) => self.reject(format!("{agreement} #{seq}: {err}")),
            }
        }
        changed
    }

    /// The message for `peer`: this node's heads and a page of what `theirs` lack.
    /// Also says how many records the page holds.
    fn message_for(&self, peer: &MemberId, theirs: Option<&[ChainHead]>) -> Result<(Vec<u8>, usize), String> {
        let heads = self.heads_for(peer).map_err(|e| e.to_string())?;
        let room = SYNC_PAGE_BYTES
            .saturating_sub(encode(&heads)?.len() + 64)
            .max(1024);
        let (page, more) = match theirs {
            Some(t) => self.page_for(peer, t, room).map_err(|e| e.to_string())?,
            None => (Vec::new(), false),
        };
        let n = page.len();
        Ok((encode(&LedgerMsg { heads, page, more })?, n))
    }

    /// A session reconciling this node's ledger with `peer`'s.
    pub fn session(self: &Arc<Self>, peer: MemberId) -> LedgerSession {
        Session::new(self.clone(), peer)
    }

    /// Reconciles with `peer` in the background; when the peer is away, its next
    /// connection does.
    pub(super) fn push(&self, peer: MemberId) {
        let (Some(p), Ok(rt)) = (self.peering(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let Some(me) = self.this.get().and_then(Weak::upgrade) else {
            return;
        };
        rt.spawn(async move {
            let s = me.session(peer.clone());
            p.reconcile(&peer, SYNC_CHANNEL, Box::new(s)).await;
        });
    }
}

/// The initiator's side of one reconciliation of the ledger.
pub type LedgerSession = Session<Accounts>;

impl Replica for Accounts {
    type Heads = Vec<ChainHead>;
    type Page = Vec<Entry>;

    fn decode_message(bytes: &[u8]) -> Result<(Vec<ChainHead>, Vec<Entry>), String> {
        LedgerMsg::from_peer(bytes).map(|m| (m.heads, m.page.into_iter().map(Entry::from).collect()))
    }

    fn merge_page(&self, from: &MemberId, page: Vec<Entry>) -> bool {
        self.merge_from(from, page)
    }

    fn message_to(
        &self,
        peer: &MemberId,
        theirs: Option<&Vec<ChainHead>>,
    ) -> Result<(Vec<u8>, usize), String> {
        self.message_for(peer, theirs.map(Vec::as_slice))
    }

    fn refuse_request(&self, from: &MemberId, reason: String) {
        self.reject(format!("ledger request from {from}: {reason}"));
    }
}

impl SyncHandler for Accounts {
    fn on_request(&self, from: &MemberId, body: Vec<u8>) -> Vec<u8> {
        answer_request(self, from, &body)
    }

    fn on_connected(&self, peer: &MemberId) {
        self.push(peer.clone());
    }
}
