//! The libp2p swarm: the roster as an allow-list, ping, and the two request-response
//! protocols (`/entente/roaming/3`, `/entente/sync/1`) over TCP, noise and yamux.

use std::time::Duration;

use entente_model::MemberId;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, noise, ping, tcp, yamux};

use crate::protocol::*;
use crate::roster::Roster;
use crate::service::PeeringError;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    ping: ping::Behaviour,
    pub(crate) roaming: request_response::cbor::Behaviour<Request, Response>,
    pub(crate) sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
}

/// This node's libp2p key, checked against its roster entry.
pub(crate) fn identity(
    me: &MemberId,
    secret: [u8; 32],
    roster: &Roster,
) -> Result<libp2p::identity::Keypair, PeeringError> {
    let mine = roster
        .member(me)
        .ok_or_else(|| PeeringError::NotAMember(me.clone()))?;
    let mut secret = secret;
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| PeeringError::Key(e.to_string()))?;
    if keypair.public().to_peer_id() != mine.peer_id {
        return Err(PeeringError::Key(format!(
            "this node's key is not {me}'s public key in the roster"
        )));
    }
    Ok(keypair)
}

/// The swarm of `keypair` (whose peer id is `me`), admitting the other roster members only.
pub(crate) fn build(
    keypair: Keypair,
    roster: &Roster,
    me: PeerId,
    request_timeout: Duration,
) -> Result<Swarm<Behaviour>, PeeringError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| PeeringError::Transport(e.to_string()))?
        .with_behaviour(|_| Behaviour {
            allow: allow_list(roster, me),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(5))),
            roaming: roaming(request_timeout),
            sync: sync(request_timeout),
        })
        .map_err(|e| PeeringError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    Ok(swarm)
}

fn allow_list(roster: &Roster, me: PeerId) -> allow_block_list::Behaviour<allow_block_list::AllowedPeers> {
    let mut allowed = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for m in &roster.members {
        if m.peer_id != me {
            allowed.allow_peer(m.peer_id);
        }
    }
    allowed
}

fn roaming(request_timeout: Duration) -> request_response::cbor::Behaviour<Request, Response> {
    let codec = request_response::cbor::codec::Codec::<Request, Response>::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(ROAMING_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(request_timeout)
            .with_max_concurrent_streams(10_000),
    )
}

fn sync(request_timeout: Duration) -> request_response::cbor::Behaviour<SyncRequest, SyncResponse> {
    let codec = request_response::cbor::codec::Codec::<SyncRequest, SyncResponse>::default()
        .set_request_size_maximum(MAX_SYNC_BYTES)
        .set_response_size_maximum(MAX_SYNC_BYTES);
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(request_timeout),
    )
}

/// Listens on `addrs` and waits (up to 5 s) for the real addresses, so the caller can
/// publish the ports the system chose.
pub(crate) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, PeeringError> {
    for a in addrs {
        swarm
            .listen_on(a.clone())
            // The transport error's own text can be empty; its debug form names the cause.
            .map_err(|e| PeeringError::Transport(format!("cannot listen on {a}: {e:?}")))?;
    }
    let mut listening = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listening.len() < addrs.len() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => listening.push(address),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(listening)
}
