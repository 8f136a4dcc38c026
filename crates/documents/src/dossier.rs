//! Everything signed about one agreement: its versions and its acts. Both nodes hold the
//! same dossier, byte for byte; the record (state, deadlines, history) is replayed from it.
//! Merging two dossiers is a union that must still replay: a forged, altered or
//! conflicting document is refused and nothing already held is lost.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::act::{Act, ActKind, SignedAct};
use crate::lifecycle::{LifecycleError, Record};
use crate::signing::{SignError, SignedAgreement};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DossierError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("the dossier is inconsistent: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("act refused: {0}")]
    Refused(String),
}

/// How far ahead of a receiver's clock an act may be dated.
pub const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dossier {
    pub id: String,
    /// One entry per version number, in order.
    pub versions: Vec<SignedAgreement>,
    /// In the order they are replayed: by time, then by bytes.
    pub acts: Vec<SignedAct>,
}

type Keys<'a> = &'a dyn Fn(&MemberId) -> Option<VerifyingKey>;

impl Dossier {
    /// Applies one act to a record, with the documents it names from this dossier.
    pub fn apply(&self, r: &mut Record, act: &Act, keys: Keys<'_>) -> Result<(), LifecycleError> {
        let doc = |n: u32| {
            self.version(n)
                .cloned()
                .ok_or(LifecycleError::BadAmendment { expected: n })
        };
        let (by, at) = (&act.by, act.at);
        match &act.kind {
            ActKind::Propose { version: 1 } => Err(LifecycleError::Illegal {
                from: r.state,
                action: "propose again",
            }),
            ActKind::Propose { version } => doc(*version).and_then(|d| r.propose_amendment(&d, by, at, keys)),
            ActKind::Approve { version: 1 } => doc(1).and_then(|d| r.approve(d, by, at, keys)),
            ActKind::Approve { version } => doc(*version).and_then(|d| r.approve_amendment(d, by, at, keys)),
            ActKind::Reject { version: 1 } => r.reject(by, at),
            ActKind::Reject { .. } => r.reject_amendment(by, at),
            ActKind::Terminate => r.terminate(by, at),
            ActKind::Suspend => r.suspend(by, at),
            ActKind::Resume => r.resume(by, at),
            ActKind::FileAccess { request, user } => r.file_access(request, user.clone(), by, at),
            ActKind::AnswerAccess { request, approve } => r.answer_access(request, *approve, by, at),
        }
    }

    pub fn new(first: SignedAgreement, act: SignedAct) -> Result<Dossier, DossierError> {
        let id = first.agreement()?.id;
        Ok(Dossier {
            id,
            versions: vec![first],
            acts: vec![act],
        })
    }

    pub fn version(&self, n: u32) -> Option<&SignedAgreement> {
        self.versions
            .iter()
            .find(|v| v.agreement().is_ok_and(|a| a.version == n))
    }

    /// The two parties, from version 1.
    pub fn parties(&self) -> Result<[MemberId; 2], DossierError> {
        let first = self
            .versions
            .first()
            .ok_or_else(|| DossierError::Inconsistent("no version".into()))?
            .agreement()?;
        Ok([first.host, first.guest])
    }

    /// Adds a version (or new signatures on a version held) and keeps the order.
    pub fn put_version(&mut self, v: SignedAgreement) -> Result<(), DossierError> {
        let n = v.agreement()?.version;
        match self
            .versions
            .iter_mut()
            .find(|x| x.agreement().is_ok_and(|a| a.version == n))
        {
            Some(held) if held.bytes != v.bytes => {
                return Err(DossierError::Inconsistent(format!(
                    "two different documents claim to be version {n}"
                )));
            }
            Some(held) => {
                for (m, s) in v.signatures {
                    held.signatures.entry(m).or_insert(s);
                }
            }
            None => self.versions.push(v),
        }
        self.versions
            .sort_by_key(|v| v.agreement().map(|a| a.version).unwrap_or(u32::MAX));
        Ok(())
    }

    pub fn put_act(&mut self, act: SignedAct) -> Result<(), DossierError> {
        if !self.acts.contains(&act) {
            self.acts.push(act);
        }
        // By time; an act dated like the one it follows still comes after it.
        let depths = self.depths()?;
        let mut keyed: Vec<(DateTime<Utc>, usize, SignedAct)> = self
            .acts
            .drain(..)
            .map(|a| {
                let depth = depths.get(&a.id()).copied().unwrap_or(0);
                Ok((a.act()?.at, depth, a))
            })
            .collect::<Result<_, SignError>>()?;
        keyed.sort();
        self.acts = keyed.into_iter().map(|(.., a)| a).collect();
        Ok(())
    }

    /// The act a new act follows: the last in replay order.
    pub fn head(&self) -> Option<&SignedAct> {
        self.acts.last()
    }

    /// Each act's distance from the start of its chain (0 for one that names no act held).
    fn depths(&self) -> Result<HashMap<String, usize>, SignError> {
        let mut follows = HashMap::new();
        for a in &self.acts {
            follows.insert(a.id(), a.act()?.follows);
        }
        let mut depths = HashMap::new();
        for id in follows.keys() {
            let (mut n, mut at) = (0, id);
            // The chain is of hashes: it cannot loop, and is at most as long as the acts.
            while let Some(Some(prev)) = follows.get(at) {
                n += 1;
                at = prev;
                if n > follows.len() {
                    break;
                }
            }
            depths.insert(id.clone(), n);
        }
        Ok(depths)
    }

    /// As a receiver: every act here that `held` lacks names an act of this dossier it
    /// follows, is dated no earlier than that act and no later than `now` plus
    /// [`CLOCK_SKEW`]. Only the proposal follows nothing.
    pub fn check_new_acts(&self, held: Option<&Dossier>, now: DateTime<Utc>) -> Result<(), DossierError> {
        let by_id: HashMap<String, Act> = self
            .acts
            .iter()
            .map(|a| Ok((a.id(), a.act()?)))
            .collect::<Result<_, SignError>>()?;
        let refused = |act: &Act, why: String| {
            Err(DossierError::Refused(format!(
                "{:?} by {} dated {}: {why}",
                act.kind, act.by, act.at
            )))
        };
        for sa in self
            .acts
            .iter()
            .filter(|a| held.is_none_or(|h| !h.acts.contains(a)))
        {
            let act = sa.act()?;
            if act.at > now + CLOCK_SKEW {
                return refused(&act, format!("later than this node's clock ({now}) allows"));
            }
            match (&act.follows, &act.kind) {
                (None, ActKind::Propose { version: 1 }) => {}
                (None, _) => return refused(&act, "it names no act it follows".into()),
                (Some(prev), _) => match by_id.get(prev) {
                    None => return refused(&act, format!("it follows act {prev}, which is not held")),
                    Some(p) if act.at < p.at => {
                        return refused(&act, format!("dated before the act it follows ({})", p.at));
                    }
                    Some(_) => {}
                },
            }
        }
        Ok(())
    }

    /// The union of both dossiers, if it replays; `self` is untouched otherwise.
    pub fn merged(
        &self,
        other: &Dossier,
        keys: Keys<'_>,
        now: DateTime<Utc>,
    ) -> Result<Dossier, DossierError> {
        if other.id != self.id {
            return Err(DossierError::Inconsistent("different agreements".into()));
        }
        let mut m = self.clone();
        for v in &other.versions {
            m.put_version(v.clone())?;
        }
        for a in &other.acts {
            m.put_act(a.clone())?;
        }
        m.replay(keys, now)?;
        Ok(m)
    }

    /// Checks every signature and document, then replays the acts in order. An act that is
    /// illegal where it falls (two parties acting at once) is ignored, and the history
    /// says so: both sides ignore the same act.
    pub fn replay(&self, keys: Keys<'_>, now: DateTime<Utc>) -> Result<Record, DossierError> {
        self.replay_until(keys, now, None)
    }

    /// Agreement ids travel in paths, file names and CSV exports: 1 to 64 of a-z, A-Z,
    /// 0-9, '-', '_' and '.'.
    pub fn valid_id(id: &str) -> bool {
        (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }

    /// The record as it stood at `at`: only the acts taken by then count (the objects
    /// declared on 1 January, the state on the day a statement covers).
    pub fn as_of(&self, keys: Keys<'_>, at: DateTime<Utc>) -> Result<Record, DossierError> {
        self.replay_until(keys, at, Some(at))
    }

    fn replay_until(
        &self,
        keys: Keys<'_>,
        now: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Record, DossierError> {
        let mut r = self.settle(keys, until)?;
        r.tick(now)?;
        Ok(r)
    }

    /// The record once every act (taken by `until`) is applied, before time moves it on:
    /// what [`Dossier::replay`] computes whatever the time, so it can be kept while the
    /// dossier does not change.
    pub fn settle(&self, keys: Keys<'_>, until: Option<DateTime<Utc>>) -> Result<Record, DossierError> {
        if !Self::valid_id(&self.id) {
            return Err(DossierError::Inconsistent(format!(
                "{:?} is not an agreement id (1 to 64 of a-z, A-Z, 0-9, '-', '_', '.')",
                self.id
            )));
        }
        let parties = self.parties()?;
        let mut numbers = BTreeSet::new();
        for v in &self.versions {
            let a = v.agreement()?;
            if a.id != self.id || [a.host.clone(), a.guest.clone()] != parties {
                return Err(DossierError::Inconsistent(format!(
                    "version {} does not belong to agreement {} between the same parties",
                    a.version, self.id
                )));
            }
            if !numbers.insert(a.version) {
                return Err(DossierError::Inconsistent(format!("version {} twice", a.version)));
            }
            v.verify(keys)?;
        }
        let mut acts = Vec::with_capacity(self.acts.len());
        for sa in &self.acts {
            let act = sa.verify(keys)?;
            if act.agreement != self.id {
                return Err(DossierError::Inconsistent("an act of another agreement".into()));
            }
            if !parties.contains(&act.by) {
                return Err(SignError::NotAParty(act.by).into());
            }
            acts.push(act);
        }
        if let Some(u) = until {
            acts.retain(|a| a.at <= u);
        }
        let mut it = acts.into_iter();
        let first = it
            .next()
            .ok_or_else(|| DossierError::Inconsistent("no proposal".into()))?;
        let v1 = match first.kind {
            ActKind::Propose { version: 1 } => self
                .version(1)
                .ok_or_else(|| DossierError::Inconsistent("version 1 is missing".into()))?,
            _ => {
                return Err(DossierError::Inconsistent(
                    "the first act must propose version 1".into(),
                ));
            }
        };
        let mut r = Record::propose(v1.clone(), &first.by, first.at, keys)?;
        for act in it {
            r.tick(act.at)?;
            if let Err(e) = self.apply(&mut r, &act, keys) {
                r.history
                    .push((act.at, format!("ignored an act of {}: {e}", act.by)));
            }
        }
        Ok(r)
    }
}
