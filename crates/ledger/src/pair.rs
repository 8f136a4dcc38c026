//! Two members in one process (Tours Métropole hosting the SMO Val de Loire Numérique),
//! each with its book and accounts on its own RocksDB store, one manual clock, linked
//! directly by their sync handlers: what the long-history replication test and
//! `entente bench sync` drive.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use entente_agreements::book::{Keys, Links};
use entente_agreements::{Agreement, Book};
use entente_model::{Clock, DevAddr, DevEui, ManualClock, MemberId, SharedClock};
use entente_peering::SyncStats;
use entente_peering::sync::reconcile_local;
use entente_store::Store;

use crate::accounts::{Accounts, DeviceDirectory, DeviceFacts};
use crate::store::Ledger;
use crate::usage::{FrameKind, Usage};

pub const HOST: &str = "tours-metropole";
pub const GUEST: &str = "smo-vdln";
const CONVENTION: &str = include_str!("../../../federation/val-de-loire/convention-tours-smo.toml");

pub struct Member {
    pub id: MemberId,
    pub book: Arc<Book>,
    pub accounts: Arc<Accounts>,
}

struct NoDevices;
impl DeviceDirectory for NoDevices {
    fn device(&self, _: &DevEui) -> Option<DeviceFacts> {
        None
    }
    fn first_uplink(&self, _: &DevEui) -> Option<DateTime<Utc>> {
        None
    }
    fn last_seen(&self, _: &DevEui) -> Option<DateTime<Utc>> {
        None
    }
    fn device_at(&self, _: DevAddr) -> Option<DevEui> {
        None
    }
}

fn seed(m: &str) -> Option<u8> {
    match m {
        HOST => Some(1),
        GUEST => Some(2),
        _ => None,
    }
}

fn keys() -> Keys {
    Arc::new(|m: &MemberId| seed(m.as_str()).map(|s| SigningKey::from_bytes(&[s; 32]).verifying_key()))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn member(name: &str, dir: &Path, clock: &SharedClock) -> Result<Member, String> {
    let id: MemberId = name.parse().map_err(err)?;
    let key = SigningKey::from_bytes(&[seed(name).unwrap_or(0); 32]);
    let tables: Vec<&'static str> = entente_agreements::book::TABLES
        .iter()
        .chain(crate::store::TABLES)
        .chain(crate::usage::TABLES)
        .copied()
        .collect();
    let store = Arc::new(Store::open(dir, &tables).map_err(err)?);
    let book = Book::load(
        id.clone(),
        key.clone(),
        store.clone(),
        clock.clone(),
        keys(),
        Links::default(),
    )
    .map_err(err)?;
    let ledger = Arc::new(Ledger::new(id.clone(), key, store.clone(), keys()).map_err(err)?);
    let usage = Arc::new(Usage::new(store));
    let accounts = Accounts::new(
        ledger,
        usage,
        book.clone(),
        Arc::new(NoDevices),
        clock.clone(),
        PathBuf::new(),
        None,
    );
    Ok(Member { id, book, accounts })
}

/// The `i`th declared device.
pub fn device(i: u64) -> DevEui {
    DevEui((0x70B3_D5E7_0000_0000u64 + i).to_be_bytes())
}

pub struct Pair {
    pub clock: Arc<ManualClock>,
    pub host: Member,
    pub guest: Member,
    pub agreement: String,
    devices: u64,
}

fn add(a: &mut SyncStats, b: SyncStats) {
    a.rounds += b.rounds;
    a.bytes_sent += b.bytes_sent;
    a.bytes_received += b.bytes_received;
    a.largest = a.largest.max(b.largest);
}

impl Pair {
    /// Both members, the convention proposed by the guest with `devices` declared
    /// devices and approved by the host, in force from 1 January 2026 (the clock's now).
    pub fn open(host_dir: &Path, guest_dir: &Path, devices: u64) -> Result<Pair, String> {
        let start = DateTime::parse_from_rfc3339("2025-12-01T09:00:00Z").map_err(err)?;
        let clock = Arc::new(ManualClock::new(start.to_utc()));
        let shared: SharedClock = clock.clone();
        let host = member(HOST, host_dir, &shared)?;
        let guest = member(GUEST, guest_dir, &shared)?;
        let mut a: Agreement = toml::from_str(CONVENTION).map_err(err)?;
        if let Some(u) = a.users.first_mut() {
            u.devices = (0..devices).map(device).collect();
            u.devices_volume = u32::try_from(devices).map_err(err)?;
        }
        let p = Pair {
            clock,
            host,
            guest,
            agreement: a.id.clone(),
            devices,
        };
        p.guest.book.propose(&a).map_err(err)?;
        p.sync()?;
        p.host.book.approve(&a.id).map_err(err)?;
        p.sync()?;
        p.clock
            .set(start.to_utc() + TimeDelta::days(31) - TimeDelta::hours(9));
        Ok(p)
    }

    /// One reconciliation, as a connection starts it: the books, then the ledgers, each
    /// a session of the host answered by the guest's handler.
    pub fn sync(&self) -> Result<SyncStats, String> {
        let mut s = self.host.book.session(self.guest.id.clone());
        let mut stats = reconcile_local(&mut s, &*self.guest.book, &self.host.id)?;
        let mut l = self.host.accounts.session(self.guest.id.clone());
        add(
            &mut stats,
            reconcile_local(&mut l, &*self.guest.accounts, &self.host.id)?,
        );
        Ok(stats)
    }

    /// A day of roaming: `frames` uplinks counted alike by both sides, then midnight
    /// passes and the host signs the day's usage statement.
    pub fn day(&self, frames: u64) -> Result<(), String> {
        let now = self.clock.now();
        let day = now.date_naive();
        let n = (now - DateTime::UNIX_EPOCH).num_days().unsigned_abs();
        for i in 0..frames {
            let dev = format!("eui:{}", device((n * frames + i) % self.devices.max(1)));
            let payload = [n.to_be_bytes(), i.to_be_bytes()].concat();
            let at = now + TimeDelta::seconds(i64::try_from(i % 80_000).map_err(err)?);
            for m in [&self.host, &self.guest] {
                m.accounts
                    .usage
                    .record(&self.agreement, &dev, FrameKind::Uplink, &payload, 50_000, at)
                    .map_err(err)?;
            }
        }
        self.clock.advance(TimeDelta::days(1));
        self.host
            .accounts
            .issue_statement(&self.agreement, day)
            .map_err(err)?;
        Ok(())
    }

    /// An amendment by the host declaring `more` devices, approved by the guest, with a
    /// reconciliation after each act.
    pub fn amend(&mut self, more: u64) -> Result<(), String> {
        let mut a = self
            .host
            .book
            .record(&self.agreement)
            .map_err(err)?
            .current()
            .map_err(err)?;
        if let Some(u) = a.users.first_mut() {
            u.devices.extend((self.devices..self.devices + more).map(device));
            u.devices_volume = u32::try_from(u.devices.len()).map_err(err)?;
        }
        self.devices += more;
        self.host.book.amend(&self.agreement, &a).map_err(err)?;
        self.sync()?;
        self.guest.book.approve(&self.agreement).map_err(err)?;
        self.sync()?;
        Ok(())
    }

    /// Whether both hold the same dossier, reviews and ledger, byte for byte.
    pub fn converged(&self) -> Result<bool, String> {
        let d = |m: &Member| serde_json::to_vec(&m.book.dossier(&self.agreement).map_err(err)?).map_err(err);
        let reviews = |m: &Member| m.book.reviews(&self.agreement);
        let l = |m: &Member| m.accounts.ledger.entries(None).map_err(err);
        Ok(d(&self.host)? == d(&self.guest)?
            && reviews(&self.host) == reviews(&self.guest)
            && l(&self.host)? == l(&self.guest)?)
    }
}
