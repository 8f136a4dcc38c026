//! The request-response plumbing both protocols share, written once and generic over the
//! protocol: the call a client makes, the requests in flight, a behaviour's events.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::request_response::{self, Codec, Message, OutboundRequestId, ResponseChannel};
use tokio::sync::oneshot;
use tracing::debug;

use crate::protocol::{Request, Response, SyncRequest, SyncResponse};

/// Who waits for the answer to one request (or for why it failed).
pub(crate) type Reply<Resp> = oneshot::Sender<Result<Resp, String>>;

/// One request-response call, whichever the protocol.
pub(crate) enum Call<Req, Resp> {
    /// Sends `req` to `peer`; the answer goes to `reply`.
    Request {
        peer: PeerId,
        req: Req,
        reply: Reply<Resp>,
    },
    /// Answers a request a peer made.
    Respond {
        channel: ResponseChannel<Resp>,
        resp: Resp,
    },
}

/// What a client asks the event loop: a call, tagged by the protocol it is made on.
pub(crate) enum Command {
    Roaming(Call<Request, Response>),
    Sync(Call<SyncRequest, SyncResponse>),
}

/// The requests of one protocol in flight, each with whoever waits for its answer.
pub(crate) struct Pending<Resp> {
    /// The protocol's name, for the logs.
    protocol: &'static str,
    /// By the id the behaviour gave the request.
    waiting: HashMap<OutboundRequestId, Reply<Resp>>,
}

impl<Resp> Pending<Resp> {
    pub(crate) fn new(protocol: &'static str) -> Self {
        Pending {
            protocol,
            waiting: HashMap::new(),
        }
    }

    /// Runs one call on the protocol's behaviour.
    pub(crate) fn run<C>(&mut self, rr: &mut request_response::Behaviour<C>, call: Call<C::Request, Resp>)
    where
        C: Codec<Response = Resp> + Clone + Send + 'static,
    {
        match call {
            Call::Request { peer, req, reply } => {
                let id = rr.send_request(&peer, req);
                self.waiting.insert(id, reply);
            }
            Call::Respond { channel, resp } => {
                let _ = rr.send_response(channel, resp);
            }
        }
    }

    /// Answers whoever waits for a response or a failure; hands a peer's request to
    /// `on_request`, which answers it later through a [`Call::Respond`].
    pub(crate) fn on_event<Req>(
        &mut self,
        event: request_response::Event<Req, Resp>,
        on_request: impl FnOnce(PeerId, Req, ResponseChannel<Resp>),
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { request, channel, .. } => on_request(peer, request, channel),
                Message::Response { request_id, response } => self.answer(request_id, Ok(response)),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.answer(request_id, Err(error.to_string())),
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, protocol = self.protocol, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer(&mut self, id: OutboundRequestId, result: Result<Resp, String>) {
        if let Some(tx) = self.waiting.remove(&id) {
            let _ = tx.send(result);
        }
    }
}
