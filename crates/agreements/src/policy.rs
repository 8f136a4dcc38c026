//! The agreements as the federation's roaming policy: a home member's devices may use a
//! visited member's network while an agreement with transit, hosted by the visited member
//! for the home member as guest, is in force.

use std::sync::RwLock;

use entente_model::MemberId;
use entente_peering::RoamingPolicy;

use crate::lifecycle::Record;
use crate::model::Service;

#[derive(Default)]
pub struct AgreementPolicy {
    records: RwLock<Vec<Record>>,
}

impl AgreementPolicy {
    pub fn replace(&self, records: Vec<Record>) {
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = records;
    }
}

impl RoamingPolicy for AgreementPolicy {
    fn may_roam(&self, home: &MemberId, visited: &MemberId) -> bool {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.in_force())
            .filter_map(|r| r.current().ok())
            .any(|a| &a.guest == home && &a.host == visited && a.services.contains(&Service::Transit))
    }
}
