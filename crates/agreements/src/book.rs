//! A node's agreements: the dossiers in RocksDB, the actions its operator takes (each a
//! signed act), replication and reconciliation with the counterparty over
//! `/entente/sync/1`, the committee reviews, and the policy the federation enforces.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_model::{DevEui, MemberId, SharedClock};
use entente_peering::{Peering, SyncHandler};
use entente_store::{Durability, Store, Table};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::act::{Act, ActKind, SignedAct};
use crate::dossier::{Dossier, DossierError};
use crate::lifecycle::{AccessRequest, LifecycleError, PendingAmendment, Record, State};
use crate::model::{Agreement, AuthorisedUser};
use crate::policy::AgreementPolicy;
use crate::review::{Review, SignedReview};
use crate::signing::{SignError, SignedAgreement};

pub mod replication;

pub struct Dossiers;
impl Table for Dossiers {
    const NAME: &'static str = "agreements";
    type Key = String;
    type Value = Dossier;
}

pub struct Reviews;
impl Table for Reviews {
    const NAME: &'static str = "committee_reviews";
    type Key = String;
    type Value = SignedReview;
}

pub const TABLES: &[&str] = &[Dossiers::NAME, Reviews::NAME];

/// The book's channel on `/entente/sync/1`.
pub const SYNC_CHANNEL: &str = "agreements";

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("no agreement {0}")]
    NotFound(String),
    #[error("agreement {0} already exists")]
    Exists(String),
    #[error("{0} is not a party to agreement {1}")]
    NotAParty(MemberId, String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Dossier(#[from] DossierError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("nothing waits for {0}'s answer on agreement {1}")]
    NothingToAnswer(MemberId, String),
    #[error("storage: {0}")]
    Store(#[from] entente_store::StoreError),
    #[error("no review {0}")]
    NoReview(String),
}

pub use entente_documents::book_sync::SyncMsg;

/// An agreement as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub id: String,
    pub state: State,
    pub version: u32,
    pub title: String,
    pub host: MemberId,
    pub guest: MemberId,
    pub proposer: MemberId,
    pub proposed_at: DateTime<Utc>,
    pub answer_due: DateTime<Utc>,
    pub overdue: bool,
    pub ends_at: Option<DateTime<Utc>>,
    pub in_force: bool,
    pub signed_by: Vec<MemberId>,
    pub pending_amendment: Option<PendingAmendment>,
    pub access_requests: Vec<AccessRequest>,
    pub history: Vec<(DateTime<Utc>, String)>,
    /// The version in force with approved access requests applied.
    pub agreement: Agreement,
}

/// A sync document refused, kept for the operator (most recent last).
#[derive(Debug, Clone, Serialize)]
pub struct SyncRejection {
    pub at: DateTime<Utc>,
    pub from: MemberId,
    pub agreement: String,
    pub reason: String,
}

pub type Keys = Arc<dyn Fn(&MemberId) -> Option<VerifyingKey> + Send + Sync>;
pub type Seen = Arc<dyn Fn(&DevEui) -> Option<DateTime<Utc>> + Send + Sync>;

/// What the book reaches beyond its store, given when it is loaded.
#[derive(Default)]
pub struct Links {
    /// The federation: where dossiers and reviews are replicated.
    pub peering: Option<Arc<Peering>>,
    /// How the home node finds its devices behind a DevAddr (for the policy).
    pub resolver: Option<crate::policy::Resolver>,
    /// How the node tells when a device was last heard (for the committee review).
    pub seen: Option<Seen>,
}

pub struct Book {
    me: MemberId,
    key: SigningKey,
    store: Arc<Store>,
    clock: SharedClock,
    keys: Keys,
    dossiers: Mutex<BTreeMap<String, Dossier>>,
    reviews: Mutex<BTreeMap<String, SignedReview>>,
    pub policy: Arc<AgreementPolicy>,
    peering: RwLock<Option<Arc<Peering>>>,
    rejections: Mutex<Vec<SyncRejection>>,
    seen: Option<Seen>,
    this: std::sync::OnceLock<std::sync::Weak<Book>>,
    /// Each dossier's digest and parties, kept while its shape does not change.
    summaries: Mutex<std::collections::HashMap<String, replication::Summary>>,
    /// Each dossier last replayed, with its record before time moves it on.
    settled: Mutex<std::collections::HashMap<String, (Dossier, Record)>>,
}

/// Dossiers whose replay is kept; beyond it the cache starts again (a node is party to a
/// few dozen agreements).
const MAX_SETTLED: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Book {
    /// Loads the dossiers; one that no longer replays (a key changed in the roster) is
    /// kept on disk and reported, never deleted.
    pub fn load(
        me: MemberId,
        key: SigningKey,
        store: Arc<Store>,
        clock: SharedClock,
        keys: Keys,
        links: Links,
    ) -> Result<Arc<Book>, BookError> {
        let mut dossiers = BTreeMap::new();
        for kv in store.iter::<Dossiers>()? {
            let (id, d) = kv?;
            dossiers.insert(id, d);
        }
        let mut reviews = BTreeMap::new();
        for kv in store.iter::<Reviews>()? {
            let (id, r) = kv?;
            reviews.insert(id, r);
        }
        let book = Arc::new(Book {
            policy: Arc::new(AgreementPolicy::new(me.clone(), clock.clone()).with_resolver(links.resolver)),
            me,
            key,
            store,
            clock,
            keys,
            dossiers: Mutex::new(dossiers),
            reviews: Mutex::new(reviews),
            peering: RwLock::new(links.peering),
            rejections: Mutex::new(Vec::new()),
            seen: links.seen,
            this: std::sync::OnceLock::new(),
            summaries: Mutex::new(Default::default()),
            settled: Mutex::new(Default::default()),
        });
        let _ = book.this.set(Arc::downgrade(&book));
        book.refresh();
        Ok(book)
    }

    /// Lets go of the federation at shutdown, so the book and the federation (which holds
    /// the book as a handler) do not keep each other, and the database, alive.
    pub fn detach(&self) {
        *self.peering.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Sends every counterparty that is connected what it shares with this member.
    fn reconcile_all(&self) {
        let Some(p) = self.peering() else { return };
        let peers: std::collections::BTreeSet<MemberId> = lock(&self.dossiers)
            .values()
            .filter_map(|d| self.counterparty(d).ok())
            .filter(|m| p.is_member_connected(m))
            .collect();
        for m in peers {
            self.push(m);
        }
    }

    fn peering(&self) -> Option<Arc<Peering>> {
        self.peering.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn me(&self) -> &MemberId {
        &self.me
    }

    fn replay(&self, d: &Dossier) -> Result<Record, DossierError> {
        let mut r = self.settled(d)?;
        r.tick(self.clock.now())?;
        Ok(r)
    }

    /// [`Dossier::settle`], kept per agreement while the dossier stays the same: a
    /// dossier with a long history of amendments of 1 000 declared devices takes tens of
    /// milliseconds to verify and replay, and every sync page, API call and refresh asks.
    /// A hit needs the very same documents (compared whole), so nothing unverified passes.
    fn settled(&self, d: &Dossier) -> Result<Record, DossierError> {
        if let Some((held, r)) = lock(&self.settled).get(&d.id)
            && held == d
        {
            return Ok(r.clone());
        }
        let r = d.settle(&*self.keys, None)?;
        let mut cache = lock(&self.settled);
        if cache.len() >= MAX_SETTLED && !cache.contains_key(&d.id) {
            cache.clear();
        }
        cache.insert(d.id.clone(), (d.clone(), r.clone()));
        Ok(r)
    }

    /// Re-reads time: approved agreements become active, notices run out. Installs the
    /// result in the policy and the routing of joins.
    pub fn refresh(&self) {
        let records: Vec<Record> = lock(&self.dossiers)
            .values()
            .filter_map(|d| match self.replay(d) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(agreement = %d.id, error = %e, "agreement does not verify; not enforced");
                    None
                }
            })
            .collect();
        self.policy.replace(&records);
        if let Some(p) = self.peering()
            && let Err(e) = p.set_declared(&self.policy.declared())
        {
            warn!(error = %e, "declared devices not installed in the routing table");
        }
    }

    /// Refreshes every second so time-driven transitions apply without an action, and
    /// reconciles with every connected counterparty every half minute, so a message lost
    /// in a disconnection is made good without waiting for the next one.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let b = self.clone();
            let _ = tokio::task::spawn_blocking(move || b.refresh()).await;
            n += 1;
            if n.is_multiple_of(30) {
                self.reconcile_all();
            }
        }
    }

    fn view(&self, d: &Dossier) -> Result<View, BookError> {
        let r = self.replay(d)?;
        let a = r.effective()?;
        let signed_by = r
            .versions
            .last()
            .map(|v| v.signatures.keys().cloned().collect())
            .unwrap_or_default();
        Ok(View {
            id: a.id.clone(),
            state: r.state,
            version: a.version,
            title: a.title.clone(),
            host: a.host.clone(),
            guest: a.guest.clone(),
            proposer: r.proposer.clone(),
            proposed_at: r.proposed_at,
            answer_due: r.answer_due,
            overdue: r.overdue(self.clock.now()),
            ends_at: r.ends_at,
            in_force: r.in_force(),
            signed_by,
            pending_amendment: r.pending_amendment.clone(),
            access_requests: r.access_requests.clone(),
            history: r.history.clone(),
            agreement: a,
        })
    }

    pub fn list(&self) -> Vec<View> {
        let ds: Vec<Dossier> = lock(&self.dossiers).values().cloned().collect();
        ds.iter().filter_map(|d| self.view(d).ok()).collect()
    }

    pub fn show(&self, id: &str) -> Result<View, BookError> {
        let d = self.dossier(id)?;
        self.view(&d)
    }

    /// The signed documents exactly as held (both parties hold the same).
    pub fn dossier(&self, id: &str) -> Result<Dossier, BookError> {
        lock(&self.dossiers)
            .get(id)
            .cloned()
            .ok_or_else(|| BookError::NotFound(id.to_string()))
    }

    /// The agreement as it stood at `at` (acts taken by then).
    pub fn record_as_of(&self, id: &str, at: DateTime<Utc>) -> Result<Record, BookError> {
        Ok(self.dossier(id)?.as_of(&*self.keys, at)?)
    }

    /// The other party of agreement `id`.
    pub fn counterparty_of(&self, id: &str) -> Result<MemberId, BookError> {
        self.counterparty(&self.dossier(id)?)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn record(&self, id: &str) -> Result<Record, BookError> {
        Ok(self.replay(&self.dossier(id)?)?)
    }

    fn counterparty(&self, d: &Dossier) -> Result<MemberId, BookError> {
        let [h, g] = d.parties()?;
        if h == self.me {
            Ok(g)
        } else if g == self.me {
            Ok(h)
        } else {
            Err(BookError::NotAParty(self.me.clone(), d.id.clone()))
        }
    }

    /// The time of a new act: now, but never before the dossier's last act, so the acts
    /// replay in the order they were taken even across two nodes' clocks.
    fn act_time(&self, d: Option<&Dossier>) -> DateTime<Utc> {
        let now = self.clock.now();
        let last = d
            .and_then(|d| d.acts.last())
            .and_then(|a| a.act().ok())
            .map(|a| a.at + TimeDelta::milliseconds(1));
        last.map_or(now, |l| l.max(now))
    }

    fn save(&self, d: &Dossier) -> Result<(), BookError> {
        self.store.put::<Dossiers>(&d.id, d, Durability::Sync)?;
        Ok(())
    }

    /// Takes one action: checks it against the current record (a clear error if it is
    /// illegal), signs it, stores it, and sends it to the counterparty.
    fn act(&self, id: &str, kind: ActKind, doc: Option<SignedAgreement>) -> Result<View, BookError> {
        let d = {
            let mut ds = lock(&self.dossiers);
            let held = ds.get(id).ok_or_else(|| BookError::NotFound(id.to_string()))?;
            let mut d = held.clone();
            let mut r = self.replay(&d)?;
            if let Some(doc) = doc {
                d.put_version(doc)?;
            }
            let act = Act {
                agreement: id.to_string(),
                by: self.me.clone(),
                at: self.act_time(Some(&d)),
                follows: d.head().map(SignedAct::id),
                kind,
            };
            r.tick(act.at)?;
            d.apply(&mut r, &act, &*self.keys)?;
            d.put_act(SignedAct::sign(&act, &self.key)?)?;
            self.replay(&d)?;
            self.save(&d)?;
            ds.insert(id.to_string(), d.clone());
            d
        };
        info!(agreement = %id, "agreement updated");
        self.refresh();
        self.push_dossier(&d);
        self.view(&d)
    }

    /// Proposes a new agreement, signed by this member.
    pub fn propose(&self, a: &Agreement) -> Result<View, BookError> {
        if !a.parties().contains(&&self.me) {
            return Err(BookError::NotAParty(self.me.clone(), a.id.clone()));
        }
        let mut a = a.clone();
        a.version = 1;
        let d = {
            let mut ds = lock(&self.dossiers);
            if ds.contains_key(&a.id) {
                return Err(BookError::Exists(a.id.clone()));
            }
            let signed = SignedAgreement::propose(&a, &self.me, &self.key)?;
            let act = Act {
                agreement: a.id.clone(),
                by: self.me.clone(),
                at: self.clock.now(),
                follows: None,
                kind: ActKind::Propose { version: 1 },
            };
            let d = Dossier::new(signed, SignedAct::sign(&act, &self.key)?)?;
            self.replay(&d)?;
            self.save(&d)?;
            ds.insert(a.id.clone(), d.clone());
            d
        };
        self.refresh();
        self.push_dossier(&d);
        self.view(&d)
    }

    /// Answers what waits for this member: the proposal, or the pending amendment.
    pub fn approve(&self, id: &str) -> Result<View, BookError> {
        let r = self.record(id)?;
        let version = match (&r.state, &r.pending_amendment) {
            (State::Proposed, _) if r.proposer != self.me => 1,
            (_, Some(p)) if p.proposer != self.me => p.version,
            _ => return Err(BookError::NothingToAnswer(self.me.clone(), id.to_string())),
        };
        let mut doc = self
            .dossier(id)?
            .version(version)
            .cloned()
            .ok_or(LifecycleError::BadAmendment { expected: version })?;
        doc.sign(&self.me, &self.key)?;
        self.act(id, ActKind::Approve { version }, Some(doc))
    }

    pub fn reject(&self, id: &str) -> Result<View, BookError> {
        let r = self.record(id)?;
        let version = match (&r.state, &r.pending_amendment) {
            (State::Proposed, _) => 1,
            (_, Some(p)) => p.version,
            _ => return Err(BookError::NothingToAnswer(self.me.clone(), id.to_string())),
        };
        self.act(id, ActKind::Reject { version }, None)
    }

    /// Proposes the next version; the other party approves it like a proposal.
    pub fn amend(&self, id: &str, a: &Agreement) -> Result<View, BookError> {
        let current = self.record(id)?.current()?;
        let mut a = a.clone();
        a.id = id.to_string();
        a.version = current.version + 1;
        let doc = SignedAgreement::propose(&a, &self.me, &self.key)?;
        self.act(id, ActKind::Propose { version: a.version }, Some(doc))
    }

    pub fn terminate(&self, id: &str) -> Result<View, BookError> {
        self.act(id, ActKind::Terminate, None)
    }

    pub fn suspend(&self, id: &str) -> Result<View, BookError> {
        self.act(id, ActKind::Suspend, None)
    }

    pub fn resume(&self, id: &str) -> Result<View, BookError> {
        self.act(id, ActKind::Resume, None)
    }

    pub fn file_access(&self, id: &str, request: &str, user: AuthorisedUser) -> Result<View, BookError> {
        self.act(
            id,
            ActKind::FileAccess {
                request: request.to_string(),
                user,
            },
            None,
        )
    }

    pub fn answer_access(&self, id: &str, request: &str, approve: bool) -> Result<View, BookError> {
        self.act(
            id,
            ActKind::AnswerAccess {
                request: request.to_string(),
                approve,
            },
            None,
        )
    }

    // ---- committee reviews -------------------------------------------------------------

    /// Prepares (or re-signs) this quarter's review and signs it for this member.
    pub fn review(&self, id: &str) -> Result<(Review, SignedReview), BookError> {
        let r = self.record(id)?;
        let seen = self.seen.clone();
        let seen_fn = |d: &DevEui| seen.as_ref().and_then(|s| s(d));
        let now = self.clock.now();
        let (quarter, ..) = crate::review::quarter_of(now);
        let key = format!("{id}/{quarter}");
        let last = lock(&self.reviews)
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{id}/")) && **k != key)
            .filter_map(|(_, v)| v.review().ok())
            .map(|v| v.prepared_at)
            .max();
        let mut signed = match lock(&self.reviews).get(&key) {
            // The counterparty prepared it: sign the very same bytes.
            Some(held) if !held.signatures.contains_key(&self.me) => held.clone(),
            _ => SignedReview::new(&Review::prepare(&r, &self.me, now, &seen_fn, last)?)?,
        };
        signed.sign(&self.me, &self.key)?;
        let review = signed.review()?;
        self.store.put::<Reviews>(&key, &signed, Durability::Sync)?;
        lock(&self.reviews).insert(key, signed.clone());
        if let Ok(d) = self.dossier(id) {
            self.push_dossier(&d);
        }
        Ok((review, signed))
    }

    pub fn reviews(&self, id: &str) -> Vec<(String, SignedReview)> {
        lock(&self.reviews)
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{id}/")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn self_arc(&self) -> Option<Arc<Book>> {
        self.this.get().and_then(std::sync::Weak::upgrade)
    }
}
