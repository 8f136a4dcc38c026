//! Every other roster member's connection, as the event loop last saw it.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use entente_model::MemberId;
use libp2p::PeerId;
use serde::Serialize;

use crate::roster::Roster;
use crate::service::{read, write};

/// A peer as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub member: MemberId,
    pub name: String,
    pub peer_id: String,
    pub connected: bool,
    pub since: Option<DateTime<Utc>>,
    pub rtt_ms: Option<f64>,
    pub buffered: usize,
}

/// Written by the event loop; read by the roles (is the home peer reachable?) and the API.
pub(crate) struct PeerTable(RwLock<HashMap<PeerId, PeerStatus>>);

impl PeerTable {
    /// Every member but `me`, none connected yet.
    pub(crate) fn of_roster(roster: &Roster, me: PeerId) -> Self {
        let status = roster
            .members
            .iter()
            .filter(|m| m.peer_id != me)
            .map(|m| {
                let s = PeerStatus {
                    member: m.id.clone(),
                    name: m.name.clone(),
                    peer_id: m.peer_id.to_string(),
                    connected: false,
                    since: None,
                    rtt_ms: None,
                    buffered: 0,
                };
                (m.peer_id, s)
            })
            .collect();
        PeerTable(RwLock::new(status))
    }

    pub(crate) fn update(&self, peer: &PeerId, f: impl FnOnce(&mut PeerStatus)) {
        if let Some(s) = write(&self.0).get_mut(peer) {
            f(s);
        }
    }

    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        read(&self.0).get(peer).is_some_and(|s| s.connected)
    }

    /// The peers by member id, each with the frames `buffered` says wait for it.
    pub(crate) fn snapshot(&self, buffered: impl Fn(&PeerId) -> usize) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = read(&self.0)
            .iter()
            .map(|(pid, s)| PeerStatus {
                buffered: buffered(pid),
                ..s.clone()
            })
            .collect();
        v.sort_by(|a, b| a.member.cmp(&b.member));
        v
    }
}
