//! The agreements as the federation's roaming policy, checked on every roamed frame on
//! both sides: an agreement in force with transit, hosted by the visited member for the
//! home member as guest; the flow allowed by the agreement and the device's user; for a
//! join (and, at home, for every frame) the device declared; then the device's rate,
//! derived from its declared frequency, and the agreement's total rate.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use entente_model::{DevAddr, DevEui, Flow, MemberId, SharedClock};
use entente_peering::{FrameFacts, Refusal, RoamingPolicy, Terms};
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The node's clock as the rate limiters' time source, so a test clock moved a day ahead
/// refills a day's allowance, as it would on the air.
#[derive(Clone)]
pub struct PolicyClock(pub SharedClock);

impl governor::clock::Clock for PolicyClock {
    type Instant = std::time::Duration;

    fn now(&self) -> std::time::Duration {
        let t = self.0.now();
        std::time::Duration::from_nanos(t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64)
    }
}

type Mw = governor::middleware::NoOpMiddleware<std::time::Duration>;
type DeviceLimiter = RateLimiter<DeviceKey, HashMapStateStore<DeviceKey>, PolicyClock, Mw>;
type AgreementLimiter = RateLimiter<NotKeyed, InMemoryState, PolicyClock, Mw>;

use crate::lifecycle::Record;
use crate::model::{Agreement, DeclaredClass, Service, WhenHomeUnreachable};

/// DevAddr -> the home node's devices using it (only the home node can answer).
pub type Resolver = Arc<dyn Fn(DevAddr) -> Vec<DevEui> + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum DeviceKey {
    Eui(DevEui),
    Addr(DevAddr),
}

struct Entry {
    id: String,
    /// The effective agreement's JSON: what the entry was built from.
    content: Vec<u8>,
    host: MemberId,
    guest: MemberId,
    flows: BTreeSet<Flow>,
    /// Declared DevEUI -> the flows its user may use and its declared messages per day.
    declared: HashMap<DevEui, (BTreeSet<Flow>, u32)>,
    max_per_day: u32,
    terms: Terms,
    per_device: HashMap<u32, DeviceLimiter>,
    per_agreement: AgreementLimiter,
}

fn nz(n: u64) -> NonZeroU32 {
    NonZeroU32::new(n.clamp(1, u32::MAX as u64) as u32).unwrap_or(NonZeroU32::MIN)
}

/// A device may send twice its declared day's messages in a burst (retries, a reading
/// caught up after an outage) and replenishes at four times its declared rate, so a
/// device keeping its declaration is never limited.
pub fn device_quota(per_day: u32) -> Quota {
    let per_day = per_day.max(1) as u64;
    let period = Duration::from_secs(86_400) / (per_day * 4).min(u32::MAX as u64) as u32;
    Quota::with_period(period.max(Duration::from_micros(1)))
        .unwrap_or(Quota::per_second(NonZeroU32::MIN))
        .allow_burst(nz((per_day * 2).max(4)))
}

/// The agreement's total: its derived rate per second, with a burst of two days of the
/// declared traffic, what a home node back from an outage receives at once.
pub fn agreement_quota(a: &Agreement) -> Quota {
    let rate = a.rate_per_second() as u64;
    let per_day: u64 = a
        .users
        .iter()
        .map(|u| u.devices.len() as u64 * u.messages_per_day.max(1) as u64)
        .sum();
    Quota::per_second(nz(rate)).allow_burst(nz((rate * 60).max(per_day * 2).max(10)))
}

impl Entry {
    fn new(a: &Agreement, content: Vec<u8>, clock: &PolicyClock) -> Entry {
        let mut declared = HashMap::new();
        let mut per_device = HashMap::new();
        for u in &a.users {
            for d in &u.devices {
                declared.insert(*d, (u.flows.clone(), u.messages_per_day));
            }
            per_device.entry(u.messages_per_day).or_insert_with(|| {
                RateLimiter::hashmap_with_clock(device_quota(u.messages_per_day), clock.clone())
            });
        }
        let max_per_day = a.users.iter().map(|u| u.messages_per_day).max().unwrap_or(1);
        per_device
            .entry(max_per_day)
            .or_insert_with(|| RateLimiter::hashmap_with_clock(device_quota(max_per_day), clock.clone()));
        Entry {
            id: a.id.clone(),
            content,
            host: a.host.clone(),
            guest: a.guest.clone(),
            flows: a.flows.clone(),
            declared,
            max_per_day,
            terms: Terms {
                max_copies: a.max_copies_per_frame.max(1) as usize,
                buffer_when_unreachable: a.when_home_unreachable == WhenHomeUnreachable::Buffer,
                class_c: a.users.iter().any(|u| u.class == DeclaredClass::C),
            },
            per_device,
            per_agreement: RateLimiter::direct_with_clock(agreement_quota(a), clock.clone()),
        }
    }
}

pub struct AgreementPolicy {
    me: MemberId,
    clock: PolicyClock,
    entries: RwLock<Vec<Arc<Entry>>>,
    resolver: Option<Resolver>,
}

impl AgreementPolicy {
    pub fn new(me: MemberId, clock: SharedClock) -> Self {
        AgreementPolicy {
            me,
            clock: PolicyClock(clock),
            entries: RwLock::new(Vec::new()),
            resolver: None,
        }
    }

    /// How the home node finds its devices behind a DevAddr.
    pub fn with_resolver(self, r: Option<Resolver>) -> Self {
        AgreementPolicy { resolver: r, ..self }
    }

    /// Installs the agreements in force (with their approved access requests); an
    /// unchanged version keeps its rate-limit state.
    pub fn replace(&self, records: &[Record]) {
        // Keyed by the agreement's whole effective content: a device list changed at equal
        // count (an access request swapping devices) is a new entry.
        let old: HashMap<(String, Vec<u8>), Arc<Entry>> = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| ((e.id.clone(), e.content.clone()), e.clone()))
            .collect();
        let mut next = Vec::new();
        for r in records.iter().filter(|r| r.in_force()) {
            let Ok(a) = r.effective() else { continue };
            if !a.services.contains(&Service::Transit) {
                continue;
            }
            let key = (a.id.clone(), serde_json::to_vec(&a).unwrap_or_default());
            let e = match old.get(&key) {
                Some(e) => {
                    for l in e.per_device.values() {
                        l.retain_recent();
                    }
                    e.clone()
                }
                None => Arc::new(Entry::new(&a, key.1, &self.clock)),
            };
            next.push(e);
        }
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// The agreement in force under which `home`'s frames cross `visited`'s network.
    pub fn agreement_of(&self, home: &MemberId, visited: &MemberId) -> Option<String> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| &e.guest == home && &e.host == visited)
            .map(|e| e.id.clone())
    }

    /// DevEUI -> home member, for every device declared under an agreement in force: the
    /// visited side routes joins by it.
    pub fn declared(&self) -> Vec<(DevEui, MemberId)> {
        let mut by_device: HashMap<DevEui, BTreeSet<MemberId>> = HashMap::new();
        for e in self.entries.read().unwrap_or_else(|p| p.into_inner()).iter() {
            for d in e.declared.keys() {
                by_device.entry(*d).or_default().insert(e.guest.clone());
            }
        }
        // Declared by two guests: routed to neither (see `find`).
        by_device
            .into_iter()
            .filter_map(|(d, guests)| match guests.len() {
                1 => guests.into_iter().next().map(|g| (d, g)),
                _ => None,
            })
            .collect()
    }

    fn resolve(&self, f: &FrameFacts) -> Vec<DevEui> {
        if let Some(d) = f.dev_eui {
            return vec![d];
        }
        match (f.dev_addr, f.home == self.me) {
            (Some(a), true) => self.resolver.as_ref().map(|r| r(a)).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl RoamingPolicy for AgreementPolicy {
    fn terms(&self, home: &MemberId, visited: &MemberId) -> Terms {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| &e.guest == home && &e.host == visited)
            .map(|e| e.terms)
            .unwrap_or_default()
    }

    fn check(&self, f: &FrameFacts) -> Result<(), Refusal> {
        self.find(f).map(|_| ())
    }

    fn charge(&self, f: &FrameFacts) -> Result<(), Refusal> {
        let (entry, key, per_day) = self.find(f)?;
        // The declared frequency bounds what devices send; downlinks are the home node's,
        // bounded by the visited gateway's duty cycle.
        if f.downlink {
            return Ok(());
        }
        if let (Some(key), Some(l)) = (key, entry.per_device.get(&per_day))
            && l.check_key(&key).is_err()
        {
            return Err(Refusal::DeviceRateLimited);
        }
        entry
            .per_agreement
            .check()
            .map_err(|_| Refusal::AgreementRateLimited)
    }
}

impl AgreementPolicy {
    /// The agreement, the device's rate-limit key and its declared messages per day
    /// under which the frame may pass.
    fn find(&self, f: &FrameFacts) -> Result<(Arc<Entry>, Option<DeviceKey>, u32), Refusal> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut candidates: Vec<&Arc<Entry>> = entries
            .iter()
            .filter(|e| e.guest == f.home && e.host == f.visited)
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::NoAgreement);
        }
        candidates.retain(|e| e.flows.contains(&f.flow));
        let Some(first) = candidates.first() else {
            return Err(Refusal::FlowNotAllowed);
        };
        // A device is identified for joins everywhere, and for every frame at home.
        let known = f.dev_eui.is_some() || (f.home == self.me && f.dev_addr.is_some());
        if !known {
            // A join accept names no device in clear: only the agreement's rate applies.
            return Ok((
                (*first).clone(),
                f.dev_addr.map(DeviceKey::Addr),
                first.max_per_day,
            ));
        }
        let euis = self.resolve(f);
        let found = candidates.iter().find_map(|e| {
            euis.iter()
                .find_map(|d| e.declared.get(d).map(|(flows, pd)| (e, *d, flows, *pd)))
        });
        let Some((e, d, flows, pd)) = found else {
            return Err(Refusal::UndeclaredDevice);
        };
        // A guest declaring another member's device would pull its joins: a DevEUI two
        // guests declare belongs to neither here.
        if entries
            .iter()
            .any(|o| o.guest != f.home && o.declared.contains_key(&d))
        {
            return Err(Refusal::DeclaredTwice);
        }
        if !flows.contains(&f.flow) {
            return Err(Refusal::FlowNotAllowed);
        }
        Ok(((*e).clone(), Some(DeviceKey::Eui(d)), pd))
    }
}
