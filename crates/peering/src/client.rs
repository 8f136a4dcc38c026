//! The cloneable handle the roles reach peers with: every call is a [`Command`] to the
//! event loop and a oneshot for its answer.

use std::time::Duration;

use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{Call, Command};
use crate::protocol::{Request, Response, SyncRequest, SyncResponse};

#[derive(Clone)]
pub(crate) struct Client {
    /// The event loop's command queue.
    commands: mpsc::Sender<Command>,
    /// How long an answer is waited for: the request timeout, and a second for the loop.
    patience: Duration,
}

impl Client {
    pub(crate) fn new(commands: mpsc::Sender<Command>, request_timeout: Duration) -> Self {
        Client {
            commands,
            patience: request_timeout + Duration::from_secs(1),
        }
    }

    /// Sends one roaming request to a peer and waits for its answer.
    pub(crate) async fn request(&self, peer: PeerId, req: Request) -> Result<Response, String> {
        self.call(Command::Roaming, peer, req).await
    }

    /// Sends sync bytes on `channel` to a peer and waits for its answer.
    pub(crate) async fn sync_request(
        &self,
        peer: PeerId,
        channel: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let req = SyncRequest {
            channel: channel.to_string(),
            body,
        };
        self.call(Command::Sync, peer, req).await.map(|r| r.0)
    }

    /// Answers a peer's roaming request.
    pub(crate) async fn respond(&self, channel: ResponseChannel<Response>, resp: Response) {
        let _ = self
            .commands
            .send(Command::Roaming(Call::Respond { channel, resp }))
            .await;
    }

    /// Answers a peer's sync request.
    pub(crate) async fn respond_sync(&self, channel: ResponseChannel<SyncResponse>, body: Vec<u8>) {
        let resp = SyncResponse(body);
        let _ = self
            .commands
            .send(Command::Sync(Call::Respond { channel, resp }))
            .await;
    }

    /// One request on the protocol `tag` names, answered within the patience.
    async fn call<Req, Resp>(
        &self,
        tag: fn(Call<Req, Resp>) -> Command,
        peer: PeerId,
        req: Req,
    ) -> Result<Resp, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(tag(Call::Request { peer, req, reply }))
            .await
            .map_err(|_| "the federation is stopping".to_string())?;
        match tokio::time::timeout(self.patience, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("request dropped".into()),
            Err(_) => Err("timeout".into()),
        }
    }
}
