//! `/entente/sync/1` on this side: the handler of each channel, and what a peer's sync
//! request or connection means to them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use entente_model::MemberId;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;

use crate::gateways::GATEWAYS_CHANNEL;
use crate::protocol::{SyncRequest, SyncResponse};
use crate::service::{Peering, read, write};

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
