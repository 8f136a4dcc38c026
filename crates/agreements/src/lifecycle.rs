//! An agreement's life: proposed (signed by the proposer), approved (countersigned),
//! active from its start date, amended (a new version both sign), terminating while the
//! notice runs, ended; suspended and resumed. Every other move is refused.

use chrono::{DateTime, Months, Utc};
use ed25519_dalek::VerifyingKey;
use entente_model::MemberId;
use serde::{Deserialize, Serialize};

use crate::model::{Agreement, Renewal};
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
            answer_due: now.checked_add_months(Months::new(1)).unwrap_or(now),
            ends_at: None,
            history: vec![(now, format!("proposed by {proposer}"))],
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
        let old = self.current()?;
        let a = new.agreement()?;
        if a.id != old.id || a.host != old.host || a.guest != old.guest || a.version != old.version + 1 {
            return Err(LifecycleError::BadAmendment {
                expected: old.version + 1,
            });
        }
        new.verify_both(keys)?;
        self.versions.push(new);
        self.history
            .push((now, format!("amended to version {}", a.version)));
        self.tick(now)
    }

    /// Notice is given: the agreement stays in force until the notice runs out.
    pub fn terminate(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
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
        if self.state != State::Active {
            return Err(self.illegal("suspend"));
        }
        self.state = State::Suspended;
        self.history.push((now, format!("suspended by {by}")));
        Ok(())
    }

    pub fn resume(&mut self, by: &MemberId, now: DateTime<Utc>) -> Result<(), LifecycleError> {
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
