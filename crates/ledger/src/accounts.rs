//! A node's accounts: it counts every roamed frame under the agreement it crossed,
//! issues the daily usage statements of the agreements it hosts, answers the
//! counterparty's statements (countersigned, or a dispute with both figures), issues
//! billing records and device-count statements from the policies, and keeps its ledger
//! replicated with each counterparty over `/entente/sync/1` (channel `ledger`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use entente_agreements::{Billing, Book};
use entente_frame::UplinkKind;
use entente_model::{DevAddr, DevEui, MemberId, SharedClock};
use entente_peering::{Carried, CarriedFrame, Peering, UsageHook};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::billing::{self, DeviceUse, Invoice};
use crate::chain::{Entry, Kind};
use crate::policy::{BillingPolicy, Rule};
use crate::statement::{self, UsageStatement};
use crate::store::{Ledger, LedgerError};
use crate::usage::{FrameKind, Usage};

mod replication;
pub use replication::{ChainHead, LedgerMsg, LedgerSession, MAX_HEADS, MAX_PENDING, WireEntry};

pub const SYNC_CHANNEL: &str = "ledger";

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Book(#[from] entente_agreements::BookError),
    #[error(transparent)]
    Lifecycle(#[from] entente_agreements::LifecycleError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Billing(#[from] billing::BillingError),
    #[error("{0}")]
    Invalid(String),
}

/// One device of a yearly device-count statement (000 annex 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountedDevice {
    pub dev_eui: String,
    pub brand: String,
    pub model: String,
    pub address: String,
    pub commune: String,
    pub commissioned: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCountStatement {
    pub agreement: String,
    pub year: i32,
    pub devices: Vec<CountedDevice>,
}

pub struct Accounts {
    me: MemberId,
    pub ledger: Arc<Ledger>,
    pub usage: Arc<Usage>,
    book: Arc<Book>,
    devices: Arc<dyn DeviceDirectory>,
    clock: SharedClock,
    policies: PathBuf,
    peering: RwLock<Option<Arc<Peering>>>,
    this: OnceLock<Weak<Accounts>>,
    rejections: std::sync::Mutex<Vec<String>>,
    /// Held from "is this day's statement issued?" to its append, so the daily task and an
    /// operator's request cannot both issue one day; and while a counterparty's statement
    /// is answered, so two syncs cannot both countersign or dispute it.
    issuing: std::sync::Mutex<()>,
}

/// This node's devices as the accounts read them; the network server provides them (the
/// node wires it), so the ledger does not depend on it.
pub trait DeviceDirectory: Send + Sync {
    fn device(&self, eui: &DevEui) -> Option<DeviceFacts>;
    /// When the device's first kept uplink was received.
    fn first_uplink(&self, eui: &DevEui) -> Option<DateTime<Utc>>;
    /// When its session last heard it.
    fn last_seen(&self, eui: &DevEui) -> Option<DateTime<Utc>>;
    /// The device holding this DevAddr, when one does.
    fn device_at(&self, addr: DevAddr) -> Option<DevEui>;
}

/// What billing and device counts need of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// `water_metering` or `other`, as the billing policies name use cases.
    pub use_case: &'static str,
    pub quantities: u32,
    pub equipment: String,
    pub reference: String,
    pub address: String,
    pub sub_group: String,
}

/// Devices are keyed by what both sides see: the DevEUI of a join, the DevAddr of data.
fn device_key(frame: &CarriedFrame<'_>) -> (String, FrameKind) {
    match frame {
        CarriedFrame::Uplink(f) => match f.kind() {
            UplinkKind::Join(j) => (format!("eui:{}", j.dev_eui), FrameKind::Join),
            UplinkKind::Data(d) => (format!("addr:{}", d.dev_addr), FrameKind::Uplink),
        },
        CarriedFrame::Downlink {
            dev_addr: Some(a), ..
        } => (format!("addr:{a}"), FrameKind::Downlink),
        CarriedFrame::Downlink { dev_addr: None, .. } => ("join-accept".into(), FrameKind::Downlink),
    }
}

impl Accounts {
    pub fn new(
        ledger: Arc<Ledger>,
        usage: Arc<Usage>,
        book: Arc<Book>,
        devices: Arc<dyn DeviceDirectory>,
        clock: SharedClock,
        policies: PathBuf,
        peering: Option<Arc<Peering>>,
    ) -> Arc<Accounts> {
        let a = Arc::new(Accounts {
            me: ledger.me().clone(),
            ledger,
            usage,
            book,
            devices,
            clock,
            policies,
            peering: RwLock::new(peering),
            this: OnceLock::new(),
            rejections: std::sync::Mutex::new(Vec::new()),
            issuing: std::sync::Mutex::new(()),
        });
        let _ = a.this.set(Arc::downgrade(&a));
        a
    }

    /// Lets go of the federation at shutdown, so the book and the federation (which holds
    /// the book as a handler) do not keep each other, and the database, alive.
    pub fn detach(&self) {
        *self.peering.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn peering(&self) -> Option<Arc<Peering>> {
        self.peering.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn rejections(&self) -> Vec<String> {
        self.rejections.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn reject(&self, what: String) {
        warn!(%what, "ledger record refused");
        let mut v = self.rejections.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= 1000 {
            v.remove(0);
        }
        v.push(what);
    }

    // ---- statements ------------------------------------------------------------------

    /// Signs this member's count of `day` for an agreement it hosts and sends it.
    pub fn issue_statement(&self, agreement: &str, day: NaiveDate) -> Result<Entry, AccountsError> {
        let a = self.book.record(agreement)?.effective()?;
        if a.host != self.me {
            return Err(AccountsError::Invalid(format!(
                "{} serves agreement {agreement}; it issues the statements",
                a.host
            )));
        }
        let today = self.clock.now().date_naive();
        if day >= today {
            return Err(AccountsError::Invalid(format!(
                "{day} has not ended (today is {today}): a day is stated once it is over"
            )));
        }
        let _issuing = self.issuing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = self.statement_for(agreement, &self.me, day)? {
            return Ok(e);
        }
        let s = UsageStatement {
            agreement: agreement.into(),
            day,
            serving: self.me.clone(),
            counterparty: a.guest.clone(),
            summary: self.usage.day(agreement, day)?,
        };
        let e = self.ledger.append(agreement, Kind::UsageStatement, &s)?;
        info!(%agreement, %day, frames = s.summary.totals.frames(), "usage statement signed");
        self.push(a.guest);
        Ok(e)
    }

    fn statement_for(
        &self,
        agreement: &str,
        issuer: &MemberId,
        day: NaiveDate,
    ) -> Result<Option<Entry>, AccountsError> {
        match self.ledger.statement_seq(agreement, issuer, day)? {
            Some(seq) => Ok(Some(self.ledger.get(agreement, issuer, seq)?)),
            None => Ok(None),
        }
    }

    /// A counterparty's statement held but not yet answered: countersign it when our own
    /// count is within the agreement's tolerance, otherwise record a dispute.
    /// `tolerances` holds each agreement's count tolerance as read once per page: reading
    /// it replays the agreement's dossier.
    fn answer_statement(
        &self,
        e: &Entry,
        tolerances: &mut HashMap<String, u32>,
    ) -> Result<bool, AccountsError> {
        if e.kind != Kind::UsageStatement || e.issuer == self.me || e.signatures.contains_key(&self.me) {
            return Ok(false);
        }
        // One answer per statement: two syncs merging it at once must not countersign it
        // twice or record two disputes, so the check is made again under the lock, on the
        // record as it is now.
        let _answering = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let e = &self.ledger.get(&e.agreement, &e.issuer, e.seq)?;
        if e.signatures.contains_key(&self.me) || self.ledger.disputed_by(&e.agreement, &self.me, &e.hash)? {
            return Ok(false);
        }
        let s: UsageStatement = e
            .body_json()
            .map_err(|err| AccountsError::Invalid(format!("statement body: {err}")))?;
        if s.counterparty != self.me || s.serving != e.issuer || s.agreement != e.agreement {
            return Err(AccountsError::Invalid("the statement names other parties".into()));
        }
        let tolerance = match tolerances.get(&e.agreement) {
            Some(t) => *t,
            None => {
                let t = self
                    .book
                    .record(&e.agreement)?
                    .effective()?
                    .count_tolerance_per_mille;
                tolerances.insert(e.agreement.clone(), t);
                t
            }
        };
        let ours = self.usage.day(&e.agreement, s.day)?;
        if statement::within_tolerance(&s.summary, &ours, tolerance) {
            self.ledger.countersign(&e.agreement, &e.issuer, e.seq)?;
            info!(agreement = %e.agreement, day = %s.day, "usage statement countersigned");
        } else {
            let d = statement::dispute(&s, &e.issuer, e.seq, &e.hash, &self.me, &ours, tolerance);
            self.ledger.append(&e.agreement, Kind::Dispute, &d)?;
            warn!(agreement = %e.agreement, day = %s.day, statement = s.summary.totals.frames(),
                ours = ours.totals.frames(), "usage statement disputed");
        }
        Ok(true)
    }

    // ---- billing -------------------------------------------------------------------

    fn policy_of(
        &self,
        agreement: &str,
    ) -> Result<(BillingPolicy, entente_agreements::Agreement), AccountsError> {
        let a = self.book.record(agreement)?.effective()?;
        match &a.billing {
            Billing::Policy { reference } => Ok((BillingPolicy::load(&self.policies, reference)?, a)),
            Billing::Free => Err(AccountsError::Invalid(format!(
                "agreement {agreement} is free of charge"
            ))),
        }
    }

    /// The year's invoice of an agreement this member hosts, signed into the ledger.
    pub fn issue_invoice(&self, agreement: &str, year: i32) -> Result<(Invoice, Entry), AccountsError> {
        let (policy, a) = self.policy_of(agreement)?;
        if a.host != self.me {
            return Err(AccountsError::Invalid(format!(
                "{} bills agreement {agreement}",
                a.host
            )));
        }
        let now = self.clock.now();
        // The yearly fee counts the objects declared on 1 January: billed from that day.
        // A catalogue bills the year's use: once the year is over.
        let last_billable = match policy.rule {
            Rule::AnnualDeclared { .. } => now.year(),
            Rule::Catalogue { .. } => now.year() - 1,
        };
        if year > last_billable {
            return Err(AccountsError::Invalid(format!(
                "{year} cannot be invoiced yet under {agreement}'s policy (the latest is {last_billable})"
            )));
        }
        let _issuing = self.issuing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(issued) =
            self.issued::<Invoice>(agreement, Kind::BillingRecord, |i| i.period_start.year() == year)?
        {
            return Ok(issued);
        }
        let inv = match policy.rule {
            Rule::AnnualDeclared { .. } => {
                let jan1 = billing::first_of_january(year).ok_or(billing::BillingError::BadYear(year))?;
                let declared = self
                    .book
                    .record_as_of(agreement, jan1)
                    .ok()
                    .filter(|r| r.in_force())
                    .and_then(|r| r.effective().ok())
                    .map_or(0, |a| a.declared_devices().len() as u64);
                billing::annual_declared(&policy, agreement, a.guest.as_str(), year, declared, now)?
            }
            Rule::Catalogue { .. } => {
                let devices = self.device_uses(agreement)?;
                billing::catalogue_year(
                    &policy,
                    agreement,
                    a.guest.as_str(),
                    year,
                    &["network_access"],
                    &devices,
                    now,
                )?
            }
        };
        let e = self.ledger.append(agreement, Kind::BillingRecord, &inv)?;
        self.push(a.guest);
        Ok((inv, e))
    }

    /// Devices counted under an agreement, with their first and last frames. A member
    /// hosted on this node (a tenant: nothing roams) is counted by this node's own
    /// network server: its first kept uplink and its session's last.
    fn device_uses(&self, agreement: &str) -> Result<Vec<DeviceUse>, AccountsError> {
        let mut v = self.roamed_device_uses(agreement)?;
        let a = self.book.record(agreement)?.effective()?;
        let counted: std::collections::BTreeSet<_> = v.iter().map(|d| d.dev_eui).collect();
        for eui in a.declared_devices().into_iter().filter(|e| !counted.contains(e)) {
            let Some(d) = self.devices.device(&eui) else {
                continue;
            };
            let first = self.devices.first_uplink(&eui);
            let last = self.devices.last_seen(&eui);
            v.push(DeviceUse {
                dev_eui: eui,
                use_case: d.use_case.into(),
                quantities: d.quantities,
                first_seen: first,
                last_seen: last,
            });
        }
        Ok(v)
    }

    fn roamed_device_uses(&self, agreement: &str) -> Result<Vec<DeviceUse>, AccountsError> {
        let mut v = Vec::new();
        for (key, c) in self.usage.devices(agreement)? {
            let eui = key.strip_prefix("eui:").and_then(|e| e.parse().ok()).or_else(|| {
                let addr = key.strip_prefix("addr:")?.parse().ok()?;
                self.devices.device_at(addr)
            });
            let Some(dev_eui) = eui else { continue };
            let (use_case, quantities) = match self.devices.device(&dev_eui) {
                Some(d) => (d.use_case, d.quantities),
                None => ("other", 1),
            };
            v.push(DeviceUse {
                dev_eui,
                use_case: use_case.into(),
                quantities,
                first_seen: c.first_seen,
                last_seen: c.last_seen,
            });
        }
        Ok(v)
    }

    /// The yearly device-count statement of the guest's devices known to this node.
    pub fn issue_device_count(&self, agreement: &str, year: i32) -> Result<Entry, AccountsError> {
        let a = self.book.record(agreement)?.effective()?;
        let this_year = self.clock.now().year();
        if year > this_year {
            return Err(AccountsError::Invalid(format!(
                "{year} has not begun (this is {this_year}): its devices cannot be counted"
            )));
        }
        let _issuing = self.issuing.lock().unwrap_or_else(|e| e.into_inner());
        let held =
            self.issued::<DeviceCountStatement>(agreement, Kind::DeviceCountStatement, |d| d.year == year)?;
        if let Some((_, e)) = held {
            return Ok(e);
        }
        // First frames of the devices counted under this agreement, read once.
        let first_seen: std::collections::HashMap<String, DateTime<Utc>> = self
            .usage
            .devices(agreement)?
            .into_iter()
            .filter_map(|(k, c)| Some((k, c.first_seen?)))
            .collect();
        let mut devices = Vec::new();
        for eui in a.declared_devices() {
            let d = self.devices.device(&eui);
            devices.push(CountedDevice {
                dev_eui: eui.to_string(),
                brand: d.as_ref().map(|d| d.equipment.clone()).unwrap_or_default(),
                model: d.as_ref().map(|d| d.reference.clone()).unwrap_or_default(),
                address: d.as_ref().map(|d| d.address.clone()).unwrap_or_default(),
                commune: d.as_ref().map(|d| d.sub_group.clone()).unwrap_or_default(),
                commissioned: first_seen.get(&format!("eui:{eui}")).map(|t| t.date_naive()),
            });
        }
        let e = self.ledger.append(
            agreement,
            Kind::DeviceCountStatement,
            &DeviceCountStatement {
                agreement: agreement.into(),
                year,
                devices,
            },
        )?;
        self.push(self.book.counterparty_of(agreement)?);
        Ok(e)
    }

    /// A record of `kind` this member already issued for the period `of` picks: issuing
    /// again returns it instead of billing or counting twice.
    fn issued<T: serde::de::DeserializeOwned>(
        &self,
        agreement: &str,
        kind: Kind,
        of: impl Fn(&T) -> bool,
    ) -> Result<Option<(T, Entry)>, AccountsError> {
        for e in self.ledger.entries(Some(agreement))? {
            if e.kind != kind || e.issuer != self.me {
                continue;
            }
            if let Ok(body) = e.body_json::<T>()
                && of(&body)
            {
                return Ok(Some((body, e)));
            }
        }
        Ok(None)
    }

    /// Keeps a committee review in the ledger once both parties signed it.
    pub fn record_review(
        &self,
        agreement: &str,
        review: &entente_agreements::SignedReview,
    ) -> Result<Option<Entry>, AccountsError> {
        if review.signatures.len() < 2 {
            return Ok(None);
        }
        let held = self.ledger.entries(Some(agreement))?.into_iter().any(|e| {
            e.kind == Kind::CommitteeReview
                && e.body_json::<entente_agreements::SignedReview>()
                    .is_ok_and(|r| r.bytes == review.bytes)
        });
        if held {
            return Ok(None);
        }
        let e = self.ledger.append(agreement, Kind::CommitteeReview, review)?;
        self.push(self.book.counterparty_of(agreement)?);
        Ok(Some(e))
    }

    /// Countersigns a record of the counterparty (an invoice accepted, a device count).
    pub fn accept(&self, agreement: &str, issuer: &MemberId, seq: u64) -> Result<Entry, AccountsError> {
        let e = self.ledger.countersign(agreement, issuer, seq)?;
        self.push(issuer.clone());
        Ok(e)
    }

    /// Issues yesterday's statements of the agreements this member hosts (once each), and
    /// reconciles with every counterparty every half minute.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.daily_statements()).await;
            let peers: std::collections::BTreeSet<MemberId> = self
                .book
                .list()
                .into_iter()
                .map(|v| if v.host == self.me { v.guest } else { v.host })
                .collect();
            for p in peers {
                self.push(p);
            }
        }
    }

    fn daily_statements(&self) {
        let yesterday = (self.clock.now() - TimeDelta::days(1)).date_naive();
        for v in self.book.list() {
            if v.host != self.me || !v.in_force || v.agreement.start.date_naive() > yesterday {
                continue;
            }
            if let Err(e) = self.issue_statement(&v.id, yesterday) {
                warn!(agreement = %v.id, error = %e, "daily usage statement not issued");
            }
        }
    }

    /// Records held for an agreement, optionally of one kind.
    pub fn records(&self, agreement: Option<&str>, kind: Option<Kind>) -> Result<Vec<Entry>, AccountsError> {
        Ok(self
            .ledger
            .entries(agreement)?
            .into_iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .collect())
    }

    pub fn year_now(&self) -> i32 {
        self.clock.now().year()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

impl UsageHook for Accounts {
    fn carried(&self, c: &Carried<'_>) {
        let Some(agreement) = self.book.policy.agreement_of(c.home, c.visited) else {
            return;
        };
        let (device, kind) = device_key(&c.frame);
        if let Err(e) = self
            .usage
            .record(&agreement, &device, kind, c.frame.bytes(), c.airtime_us, c.at)
        {
            warn!(%agreement, error = %e, "usage not counted");
        }
    }

    fn counted(&self, c: &Carried<'_>) -> bool {
        let Some(agreement) = self.book.policy.agreement_of(c.home, c.visited) else {
            return false;
        };
        self.usage
            .has(&agreement, c.frame.bytes(), c.at)
            .unwrap_or_else(|e| {
                warn!(%agreement, error = %e, "usage not read");
                false
            })
    }
}
