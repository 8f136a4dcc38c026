//! Who may roam on whose network. Today the roster's `roams_on` flag answers; the
//! agreements implement the same trait, so the enforcement points do not change.

use std::sync::Arc;

use entente_model::MemberId;

use crate::roster::Roster;

pub trait RoamingPolicy: Send + Sync {
    /// May devices homed at `home` be served by `visited`'s gateways?
    fn may_roam(&self, home: &MemberId, visited: &MemberId) -> bool;
}

/// The roster's flag: `home`'s entry lists `visited` in `roams_on`.
pub struct RosterPolicy(pub Arc<Roster>);

impl RoamingPolicy for RosterPolicy {
    fn may_roam(&self, home: &MemberId, visited: &MemberId) -> bool {
        self.0.member(home).is_some_and(|m| m.roams_on.contains(visited))
    }
}
