//! `/entente/sync/1` on this side: the handler of each channel, and what a peer's sync
//! request or connection means to them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use entente_model::MemberId;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;

use crate::gateways::GATEWAYS_CHANNEL;
use crate::metrics::PeerChannel;
use crate::protocol::{SyncRequest, SyncResponse};
use crate::service::{Peering, read, write};

/// Rounds of one replication session at most; each round moves at least one page or
/// ends the session, so this is only a guard against a peer that never settles.
pub const MAX_SYNC_ROUNDS: usize = 100_000;

/// One replication session, driven by its initiator: it sends what it holds (heads)
/// and what it knows the other lacks, the other answers in kind, until both agree.
pub trait SyncSession: Send {
    /// The first request of the session.
    fn first(&mut self) -> Vec<u8>;
    /// Takes the peer's answer (untrusted); the next request, or `None` when reconciled.
    fn answer(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, String>;
}

/// A replicated set of signed documents, reconciled by heads, then pages of what the
/// other side lacks: what the agreements (`Book`) and the ledger (`Accounts`) each are
/// to their sync channel. [`Session`] drives it from the initiator's side and
/// [`answer_request`] from the other.
pub trait Replica: Send + Sync + 'static {
    /// What one side says it holds.
    type Heads: PartialEq + Send;
    /// Documents sent to the side that lacks them.
    type Page: Send;
    /// A peer's message, refused beyond the limits (it is untrusted).
    fn decode_message(bytes: &[u8]) -> Result<(Self::Heads, Self::Page), String>;
    /// Merges a peer's page; whether any document changed this replica.
    fn merge_page(&self, from: &MemberId, page: Self::Page) -> bool;
    /// Our heads and a page of what `theirs` lack (everything shared, when unknown),
    /// encoded; with how many documents the page holds.
    fn message_to(&self, peer: &MemberId, theirs: Option<&Self::Heads>) -> Result<(Vec<u8>, usize), String>;
    /// A request that does not decode, recorded for the operator.
    fn refuse_request(&self, from: &MemberId, reason: String);
}

/// The initiator's side of one reconciliation of a replica.
pub struct Session<R: Replica> {
    replica: Arc<R>,
    peer: MemberId,
    /// The peer's heads in its previous answer.
    last: Option<R::Heads>,
}

impl<R: Replica> Session<R> {
    pub fn new(replica: Arc<R>, peer: MemberId) -> Self {
        Session {
            replica,
            peer,
            last: None,
        }
    }
}

impl<R: Replica> SyncSession for Session<R> {
    fn first(&mut self) -> Vec<u8> {
        self.replica
            .message_to(&self.peer, None)
            .map(|(b, _)| b)
            .unwrap_or_default()
    }

    fn answer(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let (heads, page) = R::decode_message(answer)?;
        let accepted = self.replica.merge_page(&self.peer, page);
        // Go on while either side takes something: a page refused (recorded by its
        // receiver) would come back the same, and the session would never settle.
        let moved = self.last.as_ref() != Some(&heads);
        let (next, ours) = self.replica.message_to(&self.peer, Some(&heads))?;
        self.last = Some(heads);
        Ok((accepted || (ours > 0 && moved)).then_some(next))
    }
}

/// The answering side of a session: merges the request's page, then answers with our
/// heads and a page of what the peer's heads lack. A request that does not decode is
/// recorded and answered with nothing.
pub fn answer_request<R: Replica>(replica: &R, from: &MemberId, body: &[u8]) -> Vec<u8> {
    let theirs = match R::decode_message(body) {
        Ok((heads, page)) => {
            replica.merge_page(from, page);
            heads
        }
        Err(e) => {
            replica.refuse_request(from, format!("undecodable request: {e}"));
            return Vec::new();
        }
    };
    replica
        .message_to(from, Some(&theirs))
        .map(|(b, _)| b)
        .unwrap_or_default()
}

/// What one session moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub rounds: usize,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    /// The largest request or answer of the session.
    pub largest: usize,
}

impl SyncStats {
    fn add(&mut self, sent: usize, received: usize) {
        self.rounds += 1;
        self.bytes_sent += sent;
        self.bytes_received += received;
        self.largest = self.largest.max(sent).max(received);
    }
}

pub use entente_wire::sync::{decode, encode};

/// Runs a session against a handler in this process (tests, benches): exactly what
/// [`Peering::reconcile`] does over the network, `from` being the initiator.
pub fn reconcile_local(
    session: &mut dyn SyncSession,
    handler: &dyn SyncHandler,
    from: &MemberId,
) -> Result<SyncStats, String> {
    let mut stats = SyncStats::default();
    let mut body = session.first();
    for _ in 0..MAX_SYNC_ROUNDS {
        let sent = body.len();
        let answer = handler.on_request(from, body);
        stats.add(sent, answer.len());
        match session.answer(&answer)? {
            Some(next) => body = next,
            None => return Ok(stats),
        }
    }
    Err("the peer never settled".into())
}

/// The replication of signed documents (`/entente/sync/1`) is the agreements' business;
/// the federation only carries the bytes between roster members and says when a peer
/// connects, so the documents are reconciled after any disconnection.
pub trait SyncHandler: Send + Sync {
    /// Answers a peer's sync request (the bytes are untrusted).
    fn on_request(&self, from: &MemberId, body: Vec<u8>) -> Vec<u8>;
    /// A roster member connected (again).
    fn on_connected(&self, peer: &MemberId);
}

/// The handler of each sync channel (`agreements`, `ledger`), installed after start.
#[derive(Default)]
pub(crate) struct SyncHandlers(RwLock<HashMap<&'static str, Arc<dyn SyncHandler>>>);

impl SyncHandlers {
    pub(crate) fn insert(&self, channel: &'static str, h: Arc<dyn SyncHandler>) {
        write(&self.0).insert(channel, h);
    }

    pub(crate) fn clear(&self) {
        write(&self.0).clear();
    }

    fn get(&self, channel: &str) -> Option<Arc<dyn SyncHandler>> {
        read(&self.0).get(channel).cloned()
    }

    fn all(&self) -> Vec<Arc<dyn SyncHandler>> {
        read(&self.0).values().cloned().collect()
    }
}

impl Peering {
    /// Runs a replication session with `peer` on `channel`. A peer not connected is
    /// left for its next connection; a request that fails or an answer that does not
    /// decode is a warning and counts in `entente_sync_failures`.
    pub async fn reconcile(
        &self,
        peer: &MemberId,
        channel: &'static str,
        mut session: Box<dyn SyncSession>,
    ) -> Option<SyncStats> {
        if !self.is_member_connected(peer) {
            tracing::debug!(%peer, channel, "not connected; the next connection reconciles");
            return None;
        }
        let mut stats = SyncStats::default();
        let mut body = session.first();
        for _ in 0..MAX_SYNC_ROUNDS {
            let sent = body.len();
            let answer = match self.sync_request(peer, channel, body).await {
                Ok(a) => a,
                Err(e) => return self.sync_failed(peer, channel, format!("request failed: {e}")),
            };
            stats.add(sent, answer.len());
            // A peer still starting has no handler yet; it reconciles when ready.
            if answer.is_empty() {
                return Some(stats);
            }
            let step = tokio::task::spawn_blocking(move || {
                let next = session.answer(&answer);
                (session, next)
            })
            .await;
            let next = match step {
                Ok((s, next)) => {
                    session = s;
                    next
                }
                Err(e) => return self.sync_failed(peer, channel, format!("session task: {e}")),
            };
            match next {
                Ok(Some(b)) => body = b,
                Ok(None) => return Some(stats),
                Err(e) => return self.sync_failed(peer, channel, format!("undecodable answer: {e}")),
            }
        }
        self.sync_failed(peer, channel, "the peer never settled".into())
    }

    fn sync_failed(&self, peer: &MemberId, channel: &'static str, reason: String) -> Option<SyncStats> {
        tracing::warn!(%peer, channel, %reason, "sync failed");
        self.metrics
            .sync_failures
            .get_or_create(&PeerChannel {
                peer: peer.to_string(),
                channel: channel.to_string(),
            })
            .inc();
        None
    }

    /// Answers a peer's sync request with its channel's handler; a peer off
    /// the roster, or a channel nobody handles, gets empty bytes.
    pub(crate) fn serve_sync(
        self: &Arc<Self>,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let this = self.clone();
        let from = self.member_of(&peer).map(|m| m.id.clone());
        tokio::spawn(async move {
            if request.channel == GATEWAYS_CHANNEL {
                let body = from
                    .map(|f| this.on_gateway_list(&f, &request.body))
                    .unwrap_or_default();
                this.client.respond_sync(channel, body).await;
                return;
            }
            let body = match (from, this.sync.get(&request.channel)) {
                (Some(from), Some(h)) => {
                    tokio::task::spawn_blocking(move || h.on_request(&from, request.body))
                        .await
                        .unwrap_or_default()
                }
                _ => Vec::new(),
            };
            this.client.respond_sync(channel, body).await;
        });
    }

    /// Tells every sync handler that a roster member connected.
    pub(crate) fn tell_connected(&self, peer: &PeerId) {
        let Some(m) = self.member_of(peer) else { return };
        if let Some(me) = self.self_arc() {
            let peer = *peer;
            tokio::spawn(async move { me.announce(peer).await });
        }
        for h in self.sync.all() {
            let m = m.id.clone();
            tokio::spawn(async move { h.on_connected(&m) });
        }
    }
}
