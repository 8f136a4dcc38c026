use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use entente_model::{GatewayEui, MemberId, Position, SharedClock};
use entente_store::{Durability, Store, StoreError, Table};
use serde::{Deserialize, Serialize};

use crate::json::Stat;
use crate::source::{AllowedSource, PinnedBy, SourcePin, SourcesTable};

/// What an operator registers. Persisted in table `gateways`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayRecord {
    pub eui: GatewayEui,
    pub name: String,
    /// The member that owns the gateway (for roaming and billing).
    pub owner: MemberId,
    pub position: Option<Position>,
    pub created_at: DateTime<Utc>,
}

/// A registration request (API or CLI).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGateway {
    pub eui: GatewayEui,
    pub name: String,
    #[serde(default)]
    pub owner: Option<MemberId>,
    #[serde(default)]
    pub position: Option<Position>,
    /// Where its datagrams may come from; when absent, its first datagram's address.
    #[serde(default)]
    pub source: Option<AllowedSource>,
}

/// The last status report of a gateway, as this node understood it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatReport {
    pub reported_at: DateTime<Utc>,
    /// The gateway's own clock, when it sent a parsable one.
    pub gateway_time: Option<DateTime<Utc>>,
    pub position: Option<Position>,
    pub rx_received: u32,
    pub rx_crc_ok: u32,
    pub rx_forwarded: u32,
    pub upstream_ack_percent: f64,
    pub downlinks_received: u32,
    pub downlinks_emitted: u32,
}

/// Counters and last-seen of a gateway. Persisted in table `gateway_status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub last_seen: Option<DateTime<Utc>>,
    pub push_data: u64,
    pub pull_data: u64,
    pub frames_received: u64,
    pub frames_dropped: u64,
    pub downlinks_sent: u64,
    pub tx_ok: u64,
    pub tx_errors: u64,
    pub last_stat: Option<StatReport>,
}

/// A gateway as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayView {
    #[serde(flatten)]
    pub record: GatewayRecord,
    pub online: bool,
    #[serde(flatten)]
    pub status: GatewayStatus,
    /// None until the gateway's first datagram (or an operator) pins one.
    pub source: Option<SourcePin>,
}

struct GatewaysTable;
impl Table for GatewaysTable {
    const NAME: &'static str = "gateways";
    type Key = GatewayEui;
    type Value = GatewayRecord;
}

struct StatusTable;
impl Table for StatusTable {
    const NAME: &'static str = "gateway_status";
    type Key = GatewayEui;
    type Value = GatewayStatus;
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("gateway {0} is already registered")]
    Exists(GatewayEui),
    #[error("gateway {0} is not registered")]
    NotFound(GatewayEui),
    #[error("invalid gateway: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default)]
pub(crate) struct NetState {
    pub push_addr: Option<SocketAddr>,
    /// Where downlinks go: the source of the last PULL_DATA.
    pub pull_addr: Option<SocketAddr>,
    pub pull_version: u8,
    pub last_stat: Option<StatReport>,
    pub pin: Option<SourcePin>,
}

/// Runtime state of a registered gateway; the receive loop only touches atomics and,
/// on PULL_DATA and stat, one uncontended mutex.
#[derive(Debug)]
pub(crate) struct Live {
    pub record: GatewayRecord,
    last_seen_us: AtomicI64,
    pub push_data: AtomicU64,
    pub pull_data: AtomicU64,
    pub frames_received: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub downlinks_sent: AtomicU64,
    pub tx_ok: AtomicU64,
    pub tx_errors: AtomicU64,
    pub net: Mutex<NetState>,
}

const NEVER: i64 = i64::MIN;

impl Live {
    fn new(record: GatewayRecord, s: GatewayStatus, pin: Option<SourcePin>) -> Self {
        Self {
            record,
            last_seen_us: AtomicI64::new(s.last_seen.map_or(NEVER, |t| t.timestamp_micros())),
            push_data: s.push_data.into(),
            pull_data: s.pull_data.into(),
            frames_received: s.frames_received.into(),
            frames_dropped: s.frames_dropped.into(),
            downlinks_sent: s.downlinks_sent.into(),
            tx_ok: s.tx_ok.into(),
            tx_errors: s.tx_errors.into(),
            net: Mutex::new(NetState {
                last_stat: s.last_stat,
                pin,
                ..NetState::default()
            }),
        }
    }

    pub fn seen(&self, now: DateTime<Utc>) {
        self.last_seen_us
            .fetch_max(now.timestamp_micros(), Ordering::Relaxed);
    }

    fn last_seen(&self) -> Option<DateTime<Utc>> {
        match self.last_seen_us.load(Ordering::Relaxed) {
            NEVER => None,
            us => DateTime::from_timestamp_micros(us),
        }
    }

    pub fn net(&self) -> std::sync::MutexGuard<'_, NetState> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.net.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self) -> GatewayStatus {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayStatus {
            last_seen: self.last_seen(),
            push_data: n(&self.push_data),
            pull_data: n(&self.pull_data),
            frames_received: n(&self.frames_received),
            frames_dropped: n(&self.frames_dropped),
            downlinks_sent: n(&self.downlinks_sent),
            tx_ok: n(&self.tx_ok),
            tx_errors: n(&self.tx_errors),
            last_stat: self.net().last_stat.clone(),
        }
    }
}

/// The gateways this node accepts traffic from.
pub struct Registry {
    store: Arc<Store>,
    clock: SharedClock,
    default_owner: MemberId,
    online_window: Duration,
    map: RwLock<HashMap<GatewayEui, Arc<Live>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("default_owner", &self.default_owner)
            .finish()
    }
}

impl Registry {
    /// Column families the registry needs in the store.
    pub const TABLES: [&'static str; 3] = [GatewaysTable::NAME, StatusTable::NAME, SourcesTable::NAME];

    pub fn load(
        store: Arc<Store>,
        clock: SharedClock,
        default_owner: MemberId,
        online_window: Duration,
    ) -> Result<Self, RegistryError> {
        let mut map = HashMap::new();
        for row in store.iter::<GatewaysTable>()? {
            let (eui, record) = row?;
            let status = store.get::<StatusTable>(&eui)?.unwrap_or_default();
            let pin = store.get::<SourcesTable>(&eui)?;
            map.insert(eui, Arc::new(Live::new(record, status, pin)));
        }
        Ok(Self {
            store,
            clock,
            default_owner,
            online_window,
            map: RwLock::new(map),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GatewayEui, Arc<Live>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GatewayEui, Arc<Live>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(crate) fn live(&self, eui: &GatewayEui) -> Option<Arc<Live>> {
        self.read().get(eui).cloned()
    }

    pub fn create(&self, new: NewGateway) -> Result<GatewayView, RegistryError> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(RegistryError::Invalid("name must be 1 to 100 characters".into()));
        }
        let position = new
            .position
            .map(Position::validate)
            .transpose()
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let record = GatewayRecord {
            eui: new.eui,
            name,
            owner: new.owner.unwrap_or_else(|| self.default_owner.clone()),
            position,
            created_at: self.clock.now(),
        };
        let mut map = self.write();
        if map.contains_key(&record.eui) {
            return Err(RegistryError::Exists(record.eui));
        }
        let pin = new.source.map(|source| SourcePin {
            source,
            by: PinnedBy::Operator,
            at: record.created_at,
        });
        let mut batch = self.store.batch();
        batch.put::<GatewaysTable>(&record.eui, &record)?;
        batch.put::<StatusTable>(&record.eui, &GatewayStatus::default())?;
        if let Some(p) = &pin {
            batch.put::<SourcesTable>(&record.eui, p)?;
        }
        self.store.write(batch, Durability::Sync)?;
        let live = Arc::new(Live::new(record, GatewayStatus::default(), pin));
        let view = self.view_of(&live);
        map.insert(view.record.eui, live);
        Ok(view)
    }

    pub fn delete(&self, eui: &GatewayEui) -> Result<(), RegistryError> {
        let mut map = self.write();
        if !map.contains_key(eui) {
            return Err(RegistryError::NotFound(*eui));
        }
        let mut batch = self.store.batch();
        batch.delete::<GatewaysTable>(eui)?;
        batch.delete::<StatusTable>(eui)?;
        batch.delete::<SourcesTable>(eui)?;
        self.store.write(batch, Durability::Sync)?;
        map.remove(eui);
        Ok(())
    }

    /// The operator moves a gateway's pin, or with `None` lets its next datagram set it.
    pub fn pin(&self, eui: &GatewayEui, source: Option<AllowedSource>) -> Result<GatewayView, RegistryError> {
        let live = self.live(eui).ok_or(RegistryError::NotFound(*eui))?;
        let pin = source.map(|source| SourcePin {
            source,
            by: PinnedBy::Operator,
            at: self.clock.now(),
        });
        // Held across the write, so a datagram cannot learn a pin in between.
        let mut net = live.net();
        match &pin {
            Some(p) => self.store.put::<SourcesTable>(eui, p, Durability::Sync)?,
            None => self.store.delete::<SourcesTable>(eui, Durability::Sync)?,
        }
        net.pin = pin;
        drop(net);
        Ok(self.view_of(&live))
    }

    /// Keeps a pin learned from a first datagram. Buffered: lost in a crash, it is learned
    /// again from the next datagram.
    pub(crate) fn keep_learned(&self, eui: &GatewayEui, pin: &SourcePin) -> Result<(), RegistryError> {
        self.store.put::<SourcesTable>(eui, pin, Durability::Buffered)?;
        Ok(())
    }

    pub fn get(&self, eui: &GatewayEui) -> Option<GatewayView> {
        self.live(eui).map(|l| self.view_of(&l))
    }

    pub fn list(&self) -> Vec<GatewayView> {
        let lives: Vec<Arc<Live>> = self.read().values().cloned().collect();
        let mut out: Vec<GatewayView> = lives.iter().map(|l| self.view_of(l)).collect();
        out.sort_by_key(|v| v.record.eui);
        out
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn online_count(&self) -> usize {
        let now = self.clock.now();
        self.read().values().filter(|l| self.is_online(l, now)).count()
    }

    fn is_online(&self, l: &Live, now: DateTime<Utc>) -> bool {
        let window = chrono::TimeDelta::from_std(self.online_window).unwrap_or(chrono::TimeDelta::MAX);
        l.last_seen()
            .is_some_and(|t| now.signed_duration_since(t) <= window)
    }

    fn view_of(&self, l: &Live) -> GatewayView {
        GatewayView {
            record: l.record.clone(),
            online: self.is_online(l, self.clock.now()),
            status: l.status(),
            source: l.net().pin,
        }
    }

    /// Persists every gateway's counters and last-seen in one batch. Called periodically
    /// and at shutdown; a crash loses at most one period of counters, never a registration.
    pub fn flush(&self) -> Result<(), RegistryError> {
        let lives: Vec<Arc<Live>> = self.read().values().cloned().collect();
        let mut batch = self.store.batch();
        for l in &lives {
            batch.put::<StatusTable>(&l.record.eui, &l.status())?;
        }
        self.store.write(batch, Durability::Buffered)?;
        Ok(())
    }

    pub(crate) fn record_stat(&self, live: &Live, stat: &Stat) {
        let position = match (stat.lati, stat.long) {
            (Some(latitude), Some(longitude)) => Position {
                latitude,
                longitude,
                altitude: stat.alti,
            }
            .validate()
            .ok(),
            _ => None,
        };
        let gateway_time = stat
            .time
            .as_deref()
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S GMT").ok())
            .map(|t| t.and_utc());
        live.net().last_stat = Some(StatReport {
            reported_at: self.clock.now(),
            gateway_time,
            position,
            rx_received: stat.rxnb,
            rx_crc_ok: stat.rxok,
            rx_forwarded: stat.rxfw,
            upstream_ack_percent: stat.ackr,
            downlinks_received: stat.dwnb,
            downlinks_emitted: stat.txnb,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use entente_model::Clock;
    use entente_model::{ManualClock, SystemClock};

    fn open(dir: &std::path::Path) -> Arc<Store> {
        Arc::new(Store::open(dir, &Registry::TABLES).unwrap())
    }

    fn new_gw(n: u64) -> NewGateway {
        NewGateway {
            eui: GatewayEui::from_u64(n),
            name: format!("gw {n}"),
            owner: None,
            position: None,
            source: None,
        }
    }

    #[test]
    fn pins_outlive_a_restart_and_leave_with_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let load = || {
            Registry::load(
                open(dir.path()),
                Arc::new(SystemClock),
                "m".parse().unwrap(),
                Duration::from_secs(60),
            )
            .unwrap()
        };
        let net: AllowedSource = "192.0.2.0/24".parse().unwrap();
        let learned = SourcePin {
            source: "198.51.100.7".parse().unwrap(),
            by: PinnedBy::FirstContact,
            at: Utc::now(),
        };
        {
            let r = load();
            let v = r
                .create(NewGateway {
                    source: Some(net),
                    ..new_gw(1)
                })
                .unwrap();
            assert_eq!(
                v.source.map(|p| (p.source, p.by)),
                Some((net, PinnedBy::Operator))
            );
            r.create(new_gw(2)).unwrap();
            r.keep_learned(&GatewayEui::from_u64(2), &learned).unwrap();
            r.create(new_gw(3)).unwrap();
        }
        let r = load();
        let pin_of = |n: u64| r.get(&GatewayEui::from_u64(n)).and_then(|v| v.source);
        assert_eq!(pin_of(1).map(|p| p.source), Some(net));
        assert_eq!(pin_of(2), Some(learned));
        assert_eq!(pin_of(3), None);
        r.pin(&GatewayEui::from_u64(1), None).unwrap();
        assert_eq!(pin_of(1), None);
        r.delete(&GatewayEui::from_u64(2)).unwrap();
        r.create(new_gw(2)).unwrap();
        assert_eq!(
            pin_of(2),
            None,
            "a re-registered gateway learns its source afresh"
        );
        assert!(matches!(
            r.pin(&GatewayEui::from_u64(9), Some(net)),
            Err(RegistryError::NotFound(_))
        ));
    }

    #[test]
    fn create_list_delete_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let owner: MemberId = "tours-metropole".parse().unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        {
            let r = Registry::load(
                open(dir.path()),
                clock.clone(),
                owner.clone(),
                Duration::from_secs(60),
            )
            .unwrap();
            r.create(new_gw(2)).unwrap();
            r.create(new_gw(1)).unwrap();
            r.create(new_gw(3)).unwrap();
            assert!(matches!(r.create(new_gw(1)), Err(RegistryError::Exists(_))));
            r.delete(&GatewayEui::from_u64(3)).unwrap();
            assert!(matches!(
                r.delete(&GatewayEui::from_u64(3)),
                Err(RegistryError::NotFound(_))
            ));
            let live = r.live(&GatewayEui::from_u64(1)).unwrap();
            live.push_data.fetch_add(5, Ordering::Relaxed);
            live.seen(clock.now());
            r.flush().unwrap();
        }
        let r = Registry::load(open(dir.path()), clock, owner.clone(), Duration::from_secs(60)).unwrap();
        let all = r.list();
        assert_eq!(
            all.iter().map(|v| v.record.eui.to_u64()).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(all[0].status.push_data, 5);
        assert!(all[0].status.last_seen.is_some());
        assert_eq!(all[0].record.owner, owner);
    }

    #[test]
    fn online_follows_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let r = Registry::load(
            open(dir.path()),
            clock.clone(),
            "m".parse().unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
        r.create(new_gw(1)).unwrap();
        assert_eq!(r.online_count(), 0);
        r.live(&GatewayEui::from_u64(1)).unwrap().seen(clock.now());
        assert_eq!(r.online_count(), 1);
        clock.advance(chrono::TimeDelta::seconds(61));
        assert_eq!(r.online_count(), 0);
    }

    #[test]
    fn invalid_registrations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::load(
            open(dir.path()),
            Arc::new(SystemClock),
            "m".parse().unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(matches!(
            r.create(NewGateway {
                name: " ".into(),
                ..new_gw(1)
            }),
            Err(RegistryError::Invalid(_))
        ));
        let bad = Position {
            latitude: 200.0,
            longitude: 0.0,
            altitude: None,
        };
        assert!(matches!(
            r.create(NewGateway {
                position: Some(bad),
                source: None,
                ..new_gw(1)
            }),
            Err(RegistryError::Invalid(_))
        ));
        assert!(r.is_empty());
    }
}
