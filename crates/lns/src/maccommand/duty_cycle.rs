//! DutyCycleReq / DutyCycleAns (TS001 §5.4): the device's aggregated duty cycle.
//!
//! The network never sends the request yet, so an answer only counts; the session stays as it is.

pub(super) const LABEL: &str = "duty_cycle_ans";

#[cfg(test)]
mod tests {
    use super::super::{Reception, handle};
    use crate::mac::UpCommand;
    use crate::testkit::{rx, session};

    #[test]
    fn an_answer_changes_nothing() {
        let best = rx(1, 0.0, 5);
        let at = Reception {
            best: &best,
            rx: std::slice::from_ref(&best),
            profile: None,
            activation: None,
        };
        let c = UpCommand::DutyCycleAns;
        let mut s = session();
        let h = handle(&mut s, &c, &at);
        assert_eq!((h.answer, h.label), (None, super::LABEL), "{c:?}");
        assert_eq!(s, session());
    }
}
