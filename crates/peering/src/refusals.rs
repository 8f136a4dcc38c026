//! The refusals the policy made, counted by side, peer, flow and reason, for the API.

use std::collections::BTreeMap;
use std::sync::Mutex;

use entente_model::MemberId;
use serde::Serialize;

use crate::service::lock;

/// Which side of a roamed frame this node is on when it checks the policy.
/// (Declared in this order so the refusals list as they always have: home first.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    /// The frame's device is ours; a peer's gateway carries it.
    Home,
    /// Our gateway carries a peer's device.
    Visited,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Home => "home",
            Side::Visited => "visited",
        }
    }
}

/// One refusal count as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalCount {
    /// `visited` (we refused to forward) or `home` (we refused what a peer forwarded).
    pub side: &'static str,
    pub peer: MemberId,
    pub flow: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

/// What a refusal is counted by: side, peer, flow, reason.
type Key = (Side, MemberId, &'static str, &'static str);

#[derive(Default)]
pub(crate) struct Refusals(Mutex<BTreeMap<Key, u64>>);

impl Refusals {
    pub(crate) fn count(&self, side: Side, peer: &MemberId, flow: &'static str, reason: &'static str) {
        *lock(&self.0)
            .entry((side, peer.clone(), flow, reason))
            .or_default() += 1;
    }

    pub(crate) fn list(&self) -> Vec<RefusalCount> {
        lock(&self.0)
            .iter()
            .map(|((side, peer, flow, reason), n)| RefusalCount {
                side: side.as_str(),
                peer: peer.clone(),
                flow,
                reason,
                count: *n,
            })
            .collect()
    }
}
