//! Each member's gateways, as it announced them, signed with its roster key. A gateway
//! counts as a peer's only if that peer announced it first: a member cannot pass another's
//! gateways off as its own to take over or black-hole its downlinks. The lists, and which
//! gateways each member owns, are kept in the node's store: a restart does not hand a
//! gateway to whoever announces it first afterwards.
//!
//! The visited node announces its gateways to a home peer before it forwards any frame
//! heard by a gateway that peer has not been told of, in the same ordered sender task, so
//! an honest node's frames never arrive ahead of its announcement.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use entente_model::{GatewayEui, MemberId};
use entente_store::{Durability, Store, StoreError, Table};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::metrics::PeeringMetrics;
use crate::protocol::UplinkForward;
use crate::service::{Peering, lock, read, write};

/// The sync channel gateway lists travel on.
pub const GATEWAYS_CHANNEL: &str = "gateways";
/// What a signature over a gateway list starts with, so it signs nothing else.
const DOMAIN: &[u8] = b"entente gateway list v1\n";
/// Gateways one member may announce.
const MAX_GATEWAYS: usize = 100_000;
/// How far ahead of our clock a list may be dated.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// A member's gateways at a time, as it signs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayList {
    pub member: MemberId,
    pub at: DateTime<Utc>,
    pub gateways: BTreeSet<GatewayEui>,
}

/// The list's exact JSON text and its signature (hex), as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedGatewayList {
    pub list: String,
    pub signature: String,
}

impl SignedGatewayList {
    pub fn sign(list: &GatewayList, key: &SigningKey) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(list)?;
        let signature = key.sign(&[DOMAIN, text.as_bytes()].concat());
        Ok(SignedGatewayList {
            list: text,
            signature: hex::encode(signature.to_bytes()),
        })
    }
}

/// A peer's list as last taken, and the gateways of it that are the peer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    list: GatewayList,
    owned: BTreeSet<GatewayEui>,
}

struct HeldLists;
impl Table for HeldLists {
    const NAME: &'static str = "peer_gateway_lists";
    type Key = MemberId;
    type Value = Held;
}

/// The tables the federation keeps in the node's store.
pub const TABLES: &[&str] = &[HeldLists::NAME, crate::buffer::LateFrames::NAME];

#[derive(Default)]
pub(crate) struct GatewayLists {
    /// Where the lists are kept across restarts (none in tools and tests without a store).
    store: RwLock<Option<Arc<Store>>>,
    /// Each peer's gateways as it announced them last.
    lists: RwLock<HashMap<MemberId, GatewayList>>,
    /// Gateway -> the peer that announced it first.
    owners: RwLock<HashMap<GatewayEui, MemberId>>,
    /// Our gateways as last announced to each peer, so a new one is announced first.
    told: Mutex<HashMap<PeerId, Arc<BTreeSet<GatewayEui>>>>,
}

impl GatewayLists {
    /// Takes back the lists kept in `store` (of members still on the roster) and keeps
    /// every later one there.
    pub(crate) fn keep_in(
        &self,
        store: Arc<Store>,
        on_roster: impl Fn(&MemberId) -> bool,
    ) -> Result<(), StoreError> {
        {
            let mut lists = write(&self.lists);
            let mut owners = write(&self.owners);
            for row in store.iter::<HeldLists>()? {
                let (member, held) = row?;
                if !on_roster(&member) {
                    continue;
                }
                for g in held.owned {
                    owners.entry(g).or_insert_with(|| member.clone());
                }
                lists.insert(member, held.list);
            }
        }
        *write(&self.store) = Some(store);
        Ok(())
    }

    /// Keeps `member`'s list and what it owns of it, once taken.
    fn save(&self, member: &MemberId, list: &GatewayList) {
        let Some(store) = read(&self.store).clone() else {
            return;
        };
        let owners = read(&self.owners);
        let owned = list
            .gateways
            .iter()
            .filter(|g| owners.get(*g) == Some(member))
            .copied()
            .collect();
        drop(owners);
        let held = Held {
            list: list.clone(),
            owned,
        };
        // Rare (a peer's connection, a change of its gateways): written at once.
        if let Err(e) = store.put::<HeldLists>(member, &held, Durability::Buffered) {
            warn!(%member, error = %e, "gateway list not kept; held in memory until restart");
        }
    }

    /// The peer that announced `gateway` first.
    pub(crate) fn owner(&self, gateway: &GatewayEui) -> Option<MemberId> {
        read(&self.owners).get(gateway).cloned()
    }

    /// `member`'s gateways are now `new`: those it no longer lists are free again, and of
    /// the new ones it gets those nobody announced before. Returns how many it claimed
    /// that another member holds.
    fn update_owners(
        &self,
        member: &MemberId,
        old: Option<&GatewayList>,
        new: &BTreeSet<GatewayEui>,
    ) -> usize {
        let mut owners = write(&self.owners);
        for g in old.into_iter().flat_map(|l| l.gateways.difference(new)) {
            if owners.get(g) == Some(member) {
                owners.remove(g);
            }
        }
        let mut taken = 0;
        for g in new {
            match owners.get(g) {
                Some(o) if o != member => taken += 1,
                Some(_) => {}
                None => {
                    owners.insert(*g, member.clone());
                }
            }
        }
        taken
    }
}

impl Peering {
    /// Our gateways now, signed.
    fn our_list(&self) -> Option<(Arc<BTreeSet<GatewayEui>>, SignedGatewayList)> {
        let gateways: BTreeSet<GatewayEui> = self
            .home
            .local_gateways
            .list()
            .into_iter()
            .map(|v| v.record.eui)
            .collect();
        let list = GatewayList {
            member: self.me.clone(),
            at: self.clock.now(),
            gateways,
        };
        let signed = SignedGatewayList::sign(&list, &self.signing).ok()?;
        Some((Arc::new(list.gateways), signed))
    }

    /// The member that owns `gateway`, as its signed list said first.
    pub fn gateway_owner(&self, gateway: &GatewayEui) -> Option<MemberId> {
        self.gateway_lists.owner(gateway)
    }

    /// What we told `peer` of our gateways no longer holds (it may have restarted).
    pub(crate) fn forget_told(&self, peer: &PeerId) {
        lock(&self.gateway_lists.told).remove(peer);
    }

    /// Before frames go to `peer`: announces our gateways if one of theirs is new to it.
    pub(crate) async fn announce_for(&self, peer: PeerId, frames: &[UplinkForward]) {
        let known = lock(&self.gateway_lists.told).get(&peer).cloned();
        let all_told = known.is_some_and(|k| {
            frames
                .iter()
                .all(|f| f.rx.iter().all(|r| k.contains(&r.info.gateway)))
        });
        if !all_told {
            self.announce(peer).await;
        }
    }

    /// Sends our signed gateway list to `peer` and takes its own in answer.
    pub async fn announce(&self, peer: PeerId) {
        let Some((set, signed)) = self.our_list() else {
            return;
        };
        let Ok(body) = serde_json::to_vec(&signed) else {
            return;
        };
        let from = self.member_of(&peer).map(|m| m.id.clone());
        match self.client.sync_request(peer, GATEWAYS_CHANNEL, body).await {
            Ok(answer) => {
                lock(&self.gateway_lists.told).insert(peer, set);
                if let (Some(from), false) = (from, answer.is_empty()) {
                    self.take_list(&from, &answer);
                }
            }
            Err(e) => warn!(%peer, error = %e, "gateway list not announced"),
        }
    }

    /// A peer's gateway list: kept if it is signed by that peer, dated within our clock
    /// skew and newer than the one held. Answers with ours.
    pub(crate) fn on_gateway_list(&self, from: &MemberId, body: &[u8]) -> Vec<u8> {
        self.take_list(from, body);
        self.our_list()
            .and_then(|(_, signed)| serde_json::to_vec(&signed).ok())
            .unwrap_or_default()
    }

    fn take_list(&self, from: &MemberId, body: &[u8]) {
        if let Err(reason) = self.check_list(from, body) {
            PeeringMetrics::count(&self.metrics.received, from.as_str(), "gateway_list_refused");
            warn!(%from, %reason, "gateway list refused");
        }
    }

    fn check_list(&self, from: &MemberId, body: &[u8]) -> Result<(), String> {
        let signed: SignedGatewayList = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let member = self.roster.member(from).ok_or("not a roster member")?;
        let sig: [u8; 64] = hex::decode(&signed.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("malformed signature")?;
        member
            .public_key
            .verify(
                &[DOMAIN, signed.list.as_bytes()].concat(),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| "bad signature")?;
        let list: GatewayList = serde_json::from_str(&signed.list).map_err(|e| e.to_string())?;
        if &list.member != from {
            return Err(format!("a list of {}'s gateways", list.member));
        }
        if list.gateways.len() > MAX_GATEWAYS {
            return Err(format!("more than {MAX_GATEWAYS} gateways"));
        }
        if list.at > self.clock.now() + CLOCK_SKEW {
            return Err(format!("dated {} ahead of our clock", list.at));
        }
        if list
            .gateways
            .iter()
            .any(|g| self.home.local_gateways.get(g).is_some())
        {
            return Err("it lists one of our own gateways".into());
        }
        let mut lists = write(&self.gateway_lists.lists);
        if lists.get(from).is_some_and(|held| held.at >= list.at) {
            return Ok(());
        }
        let taken = self
            .gateway_lists
            .update_owners(from, lists.get(from), &list.gateways);
        self.gateway_lists.save(from, &list);
        lists.insert(from.clone(), list);
        if taken > 0 {
            return Err(format!(
                "{taken} of its gateways were announced by another member first"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(s: &str) -> MemberId {
        s.parse().unwrap()
    }

    fn list(of: &str, gateways: &[u8]) -> GatewayList {
        GatewayList {
            member: member(of),
            at: Utc::now(),
            gateways: gateways
                .iter()
                .map(|i| GatewayEui([0, 0, 0, 0, 0, 0, 0, *i]))
                .collect(),
        }
    }

    /// What `check_list` does once a list verified.
    fn take(l: &GatewayLists, new: GatewayList) -> usize {
        let m = new.member.clone();
        let old = read(&l.lists).get(&m).cloned();
        let taken = l.update_owners(&m, old.as_ref(), &new.gateways);
        l.save(&m, &new);
        write(&l.lists).insert(m, new);
        taken
    }

    #[test]
    fn owners_outlive_a_restart_and_leave_with_the_roster() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), TABLES).unwrap());
        let l = GatewayLists::default();
        l.keep_in(store.clone(), |_| true).unwrap();
        assert_eq!(take(&l, list("tours-metropole", &[1, 2])), 0);
        assert_eq!(take(&l, list("agglopolys", &[2, 3])), 1, "gateway 2 is Tours's");

        // A restart: a rogue announcing Tours's gateways first still does not get them.
        let again = GatewayLists::default();
        again.keep_in(store.clone(), |_| true).unwrap();
        let g = |i| GatewayEui([0, 0, 0, 0, 0, 0, 0, i]);
        assert_eq!(again.owner(&g(2)), Some(member("tours-metropole")));
        assert_eq!(again.owner(&g(3)), Some(member("agglopolys")));
        assert_eq!(take(&again, list("agglopolys", &[1, 2, 3])), 2);
        assert_eq!(again.owner(&g(1)), Some(member("tours-metropole")));

        // A member who left the roster owns nothing any more.
        let later = GatewayLists::default();
        later.keep_in(store, |m| m.as_str() != "tours-metropole").unwrap();
        assert_eq!(later.owner(&g(1)), None);
        assert_eq!(later.owner(&g(3)), Some(member("agglopolys")));
    }
}
