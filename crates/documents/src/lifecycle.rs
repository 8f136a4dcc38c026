//! An agreement's life: proposed (signed by the proposer), approved (countersigned),
//! active from its start date, amended (a new version both sign), terminating while the
//! notice runs, ended; suspended and resumed. Every other move is refused.

use chrono::{DateTime, Months, Utc};
use ed25519_dalek::VerifyingKey;
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::model::{Agreement, AuthorisedUser, Renewal};
use crate::signing::{SignError, SignedAgreement};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Proposed,
    Rejected,
    Approved,
    Active,
    Suspended,
    Terminating,
    Ended,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LifecycleError {
    #[error("cannot {action} an agreement that is {from:?}")]
    Illegal { from: State, action: &'static str },
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("an amendment must keep the id and the parties and be version {expected}")]
    BadAmendment { expected: u32 },
    #[error("{0} may not do this: only the other party answers a proposal")]
    WrongParty(MemberId),
    #[error("{0} may not do this: {1}")]
    NotAllowed(MemberId, &'static str),
    #[error("no access request {0}")]
    UnknownRequest(String),
    #[error("no amendment is waiting for an answer")]
    NoPendingAmendment,
}

/// A version proposed as an amendment, signed by its proposer, awaiting the other party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAmendment {
    pub version: u32,
    pub proposer: MemberId,
    pub proposed_at: DateTime<Utc>,
    pub answer_due: DateTime<Utc>,
    /// Device count or frequency beyond the policy's threshold.
    pub substantial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    Pending,
    Approved,
    Refused,
}

/// An access request (001 art. 5): the guest asks for a user to be authorised, or for an
/// authorised user's declaration to change; the host answers within a month. A change of
/// an existing user below the substantial threshold takes effect by simple exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub user: AuthorisedUser,
    pub filed_by: MemberId,
    pub filed_at: DateTime<Utc>,
    pub answer_due: DateTime<Utc>,
    pub state: AccessState,
    pub answered_at: Option<DateTime<Utc>>,
    pub substantial: bool,
}

/// One agreement: its signed versions (the last is in force) and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub versions: Vec<SignedAgreement>,
    pub state: State,
    pub proposer: MemberId,
    pub proposed_at: DateTime<Utc>,
    /// The host has one month to answer a proposal (001 art. 5).
    pub answer_due: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub history: Vec<(DateTime<Utc>, String)>,
    #[serde(default)]
    pub pending_amendment: Option<PendingAmendment>,
    #[serde(default)]
    pub access_requests: Vec<AccessRequest>,
}

fn one_month_after(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_add_months(Months::new(1)).unwrap_or(t)
}

type Keys<'a> = &'a dyn Fn(&MemberId) -> Option<VerifyingKey>;

impl Record {
    pub fn propose(
        signed: SignedAgreement,
        proposer: &MemberId,
        now: DateTime<Utc>,
        keys: Keys<'_>,
    ) -> Result<Record, LifecycleError> {
        let signers = signed.verify(keys)?;
        if !signers.contains(proposer) {
            return Err(SignError::Missing(proposer.clone()).into());
        }
        Ok(Record {
            versions: vec![signed],
            state: State::Proposed,
            proposer: proposer.clone(),
            proposed_at: now,
            answer_due: one_month_after(now),
            ends_at: None,
            history: vec![(now, format!("proposed by {proposer}"))],
            pending_amendment: None,
            access_requests: Vec::new(),
        })
    }

    pub fn current(&self) -> Result<Agreement, LifecycleError> {
        match self.versions.last() {
            Some(v) => Ok(v.agreement()?),
            None => Err(LifecycleError::Illegal {
                from: self.state,
                action: "read",
            }),
        }
    }

    fn illegal(&self, action: &'static str) -> LifecycleError {
        LifecycleError::Illegal {
            from: self.state,
            action,
        }
    }

    /// Past its answer deadline without an answer.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.state == State::Proposed && now > self.answer_due
    }

    /// The version in force with the approved access requests applied: what the network
    /// enforces and the committee reviews.
    pub fn effective(&self) -> Result<Agreement, LifecycleError> {
        let mut a = self.current()?;
        for r in self
            .access_requests
            .iter()
            .filter(|r| r.state == AccessState::Approved)
        {
            match a.users.iter_mut().find(|u| u.name == r.user.name) {
                Some(u) => *u = r.user.clone(),
                None => a.users.push(r.user.clone()),
            }
        }
        Ok(a)
    }

    fn party(&self, by: &MemberId) -> Result<Agreement, LifecycleError> {
        let a = self.current()?;
        if !a.parties().contains(&by) {
            return Err(LifecycleError::NotAllowed(
                by.clone(),
                "not a party to this agreement",
            ));
        }
        Ok(a)
    }

    /// One party proposes version n+1, signed by itself; the other answers within a month.
    pub fn propose_amendment(
        &mut self,
        new: &SignedAgreement,
        by: &MemberId,
        now: DateTime<Utc>,
        keys: Keys<'_>,
    ) -> Result<(), LifecycleError> {
        if !matches!(self.state, State::Approved | State::Active | State::Suspended) {
            return Err(self.illegal("amend"));
        }
        if self.pending_amendment.is_some() {
            return Err(self.illegal("propose a second amendment to"));
        }
        let old = self.party(by)?;
        let a = self.next_version(new)?;
        if !new.verify(keys)?.contains(by) {
            return Err(SignError::Missing(by.clone()).into());
        }
        self.pending_amendment = Some(PendingAmendment {
            version: a.version,
            proposer: by.clone(),
            proposed_at: now,
            answer_due: one_month_after(now),
            substantial: old.is_substantial_change(&a),
        });
        self.history.push((
            now,
            format!("amendment to version {} proposed by {by}", a.version),
        ));
        Ok(())
    }

    /// The other party countersigns the pending amendment: it takes effect.
    pub fn approve_amendment(
        &mut self,
        countersigned: SignedAgreement,
        by: &MemberId,
        now: DateTime<Utc>,
        keys: Keys<'_>,
    ) -> Result<(), LifecycleError> {
        let p = self
            .pending_amendment
            .clone()
            .ok_or(LifecycleError::NoPendingAmendment)?;
        if by == &p.proposer {
            return Err(LifecycleError::WrongParty(by.clone()));
        }
        if countersigned.agreement()?.version != p.version {
            return Err(LifecycleError::BadAmendment { expected: p.version });
        }
        self.amend(countersigned, now, keys)?;
        self.pending_amendment = None;
        Ok(())
    }

    pub fn reject_amendment(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        let p = self
            .pending_amendment
            .clone()
            .ok_or(LifecycleError::NoPendingAmendment)?;
        if by == &p.proposer {
            return Err(LifecycleError::WrongParty(by.clone()));
        }
        self.pending_amendment = None;
        self.history.push((
            now,
            format!("amendment to version {} rejected by {by}", p.version),
        ));
        Ok(())
    }

    /// The guest files an access request. A change to an authorised user that is not
    /// substantial takes effect at once; a new user or a substantial change waits for the
    /// host.
    pub fn file_access(
        &mut self,
        request: &str,
        user: AuthorisedUser,
        by: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        if !matches!(self.state, State::Approved | State::Active | State::Suspended) {
            return Err(self.illegal("file an access request under"));
        }
        let current = self.party(by)?;
        if by != &current.guest {
            return Err(LifecycleError::NotAllowed(
                by.clone(),
                "only the guest files access requests",
            ));
        }
        if self.access_requests.iter().any(|r| r.id == request) {
            return Err(LifecycleError::NotAllowed(
                by.clone(),
                "that request id is already used",
            ));
        }
        let effective = self.effective()?;
        let existing = effective.users.iter().any(|u| u.name == user.name);
        let mut after = effective.clone();
        match after.users.iter_mut().find(|u| u.name == user.name) {
            Some(u) => *u = user.clone(),
            None => after.users.push(user.clone()),
        }
        let substantial = effective.is_substantial_change(&after);
        let immediate = existing && !substantial;
        self.access_requests.push(AccessRequest {
            id: request.to_string(),
            user,
            filed_by: by.clone(),
            filed_at: now,
            answer_due: one_month_after(now),
            state: if immediate {
                AccessState::Approved
            } else {
                AccessState::Pending
            },
            answered_at: immediate.then_some(now),
            substantial,
        });
        self.history.push((
            now,
            if immediate {
                format!("access request {request} filed by {by}; in effect (not substantial)")
            } else {
                format!("access request {request} filed by {by}; the host answers")
            },
        ));
        Ok(())
    }

    pub fn answer_access(
        &mut self,
        request: &str,
        approve: bool,
        by: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let current = self.party(by)?;
        if by != &current.host {
            return Err(LifecycleError::NotAllowed(
                by.clone(),
                "only the host answers access requests",
            ));
        }
        let r = self
            .access_requests
            .iter_mut()
            .find(|r| r.id == request)
            .ok_or_else(|| LifecycleError::UnknownRequest(request.to_string()))?;
        if r.state != AccessState::Pending {
            return Err(LifecycleError::NotAllowed(
                by.clone(),
                "the request was already answered",
            ));
        }
        r.state = if approve {
            AccessState::Approved
        } else {
            AccessState::Refused
        };
        r.answered_at = Some(now);
        self.history.push((
            now,
            format!(
                "access request {request} {} by {by}",
                if approve { "approved" } else { "refused" }
            ),
        ));
        Ok(())
    }

    /// The other party countersigns the proposed version.
    pub fn approve(
        &mut self,
        countersigned: SignedAgreement,
        by: &MemberId,
        now: DateTime<Utc>,
        keys: Keys<'_>,
    ) -> Result<(), LifecycleError> {
        if self.state != State::Proposed {
            return Err(self.illegal("approve"));
        }
        self.party(by)?;
        if by == &self.proposer {
            return Err(LifecycleError::WrongParty(by.clone()));
        }
        let proposed = self.versions.last().map(|v| v.bytes.clone()).unwrap_or_default();
        if countersigned.bytes != proposed {
            return Err(SignError::Decode("the countersigned bytes differ from the proposal".into()).into());
        }
        countersigned.verify_both(keys)?;
        let from = self.state;
        *self.versions.last_mut().ok_or(LifecycleError::Illegal {
            from,
            action: "approve",
        })? = countersigned;
        self.state = State::Approved;
        self.history.push((now, format!("approved by {by}")));
        self.tick(now)?;
        Ok(())
    }

    pub fn reject(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        self.party(by)?;
        if self.state != State::Proposed {
            return Err(self.illegal("reject"));
        }
        if by == &self.proposer {
            return Err(LifecycleError::WrongParty(by.clone()));
        }
        self.state = State::Rejected;
        self.history.push((now, format!("rejected by {by}")));
        Ok(())
    }

    /// Moves with time: approved -> active at the start; fixed terms end; notice runs out.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        let a = self.current()?;
        if self.state == State::Approved && now >= a.start {
            self.state = State::Active;
            self.history.push((now, "active".into()));
        }
        if matches!(self.state, State::Active | State::Suspended) && a.renewal == Renewal::Fixed {
            // A term past the calendar's end never ends (and must not panic).
            let end = a.start.checked_add_months(Months::new(a.duration_months));
            if let Some(end) = end.filter(|e| now >= *e) {
                self.state = State::Ended;
                self.ends_at = Some(end);
                self.history.push((now, "term reached".into()));
            }
        }
        if self.state == State::Terminating && self.ends_at.is_some_and(|e| now >= e) {
            self.state = State::Ended;
            self.history.push((now, "notice ran out: ended".into()));
        }
        Ok(())
    }

    /// The document `new` holds, if it is the next version of this agreement: same id and
    /// parties, version number one up.
    fn next_version(&self, new: &SignedAgreement) -> Result<Agreement, LifecycleError> {
        let old = self.current()?;
        let a = new.agreement()?;
        if a.id != old.id || a.host != old.host || a.guest != old.guest || a.version != old.version + 1 {
            return Err(LifecycleError::BadAmendment {
                expected: old.version + 1,
            });
        }
        Ok(a)
    }

    /// A new version both parties signed; same id and parties, next version number.
    pub fn amend(
        &mut self,
        new: SignedAgreement,
        now: DateTime<Utc>,
        keys: Keys<'_>,
    ) -> Result<(), LifecycleError> {
        if !matches!(self.state, State::Approved | State::Active | State::Suspended) {
            return Err(self.illegal("amend"));
        }
        let a = self.next_version(&new)?;
        new.verify_both(keys)?;
        self.versions.push(new);
        self.history
            .push((now, format!("amended to version {}", a.version)));
        self.tick(now)
    }

    /// Notice is given: the agreement stays in force until the notice runs out.
    pub fn terminate(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        self.party(by)?;
        if !matches!(self.state, State::Approved | State::Active | State::Suspended) {
            return Err(self.illegal("terminate"));
        }
        let a = self.current()?;
        self.state = State::Terminating;
        self.ends_at = now.checked_add_months(Months::new(a.notice_months));
        self.history.push((now, format!("notice given by {by}")));
        Ok(())
    }

    pub fn suspend(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        self.party(by)?;
        if self.state != State::Active {
            return Err(self.illegal("suspend"));
        }
        self.state = State::Suspended;
        self.history.push((now, format!("suspended by {by}")));
        Ok(())
    }

    pub fn resume(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
        self.party(by)?;
        if self.state != State::Suspended {
            return Err(self.illegal("resume"));
        }
        self.state = State::Active;
        self.history.push((now, format!("resumed by {by}")));
        self.tick(now)
    }

    /// Whether frames may flow under this agreement now (notice running included).
    pub fn in_force(&self) -> bool {
        matches!(self.state, State::Active | State::Terminating)
    }
}
