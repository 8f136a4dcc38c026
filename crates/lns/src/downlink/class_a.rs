//! The Class A answer to an uplink: RX1 and RX2 from the session, the head of the
//! application queue if it fits, the ACK and MAC commands; then RX1 through the best
//! gateway, RX2 if RX1 is refused, the next gateway if both are.

use std::sync::Arc;
use std::time::Duration;

use entente_gateway::{DownlinkError, RxInfo};
use entente_region::Eu868;
use entente_store::Durability;
use tracing::warn;

use super::frame::{Ack, DataDown, MAX_FOPTS, build_data_down};
use super::{DownlinkPlan, Schedule, Window};
use crate::metrics::ReasonLabel;
use crate::server::{LnsError, NetworkServer};
use crate::session::Session;
use crate::session_index::SessionIndex;
use crate::tables::{DownlinkQueue, QueueItem};

/// Attempts before an application downlink is given up.
const MAX_ATTEMPTS: u32 = 8;
/// MHDR-less FHDR (DevAddr, FCtrl, FCnt) and FPort: what a MAC payload holds besides FOpts and data.
const FHDR_AND_FPORT: usize = 8;

/// The longest MACPayload a window's data rate carries (DR0's when the rate is unknown).
fn max_mac_payload(w: Window) -> usize {
    Eu868::max_mac_payload(w.data_rate).unwrap_or(51)
}

/// What a Class A answer may carry besides its ACK and MAC commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerKind<'a> {
    /// The device retransmitted a confirmed uplink: the ACK again, nothing else.
    ReAck,
    /// A fresh uplink: the head of the application queue may go with the answer, but
    /// never an item this very uplink acknowledged (it leaves the queue with the uplink).
    Fresh { acked: &'a [u64] },
}

/// The answer to one uplink, before the queue is looked at.
pub(crate) struct ClassAAnswer<'a> {
    pub uplink_dr: u8,
    pub ack: Ack,
    /// Encoded MAC commands.
    pub mac: &'a [u8],
    pub kind: AnswerKind<'a>,
}

impl ClassAAnswer<'static> {
    /// The ACK of a confirmed uplink the device sent again.
    pub(crate) fn re_ack(uplink_fcnt: u32, uplink_dr: u8) -> Self {
        ClassAAnswer {
            uplink_dr,
            ack: Ack::Uplink(uplink_fcnt),
            mac: &[],
            kind: AnswerKind::ReAck,
        }
    }
}

impl ClassAAnswer<'_> {
    /// RX1 after the session's delay on the uplink's channel, RX2 one second later.
    fn windows(&self, s: &Session) -> (Window, Window) {
        let delay = Duration::from_secs(s.rx_delay.max(1) as u64);
        let rx1 = Window::rx1(delay, self.uplink_dr, s.rx1_dr_offset);
        let rx2 = Window::rx2(delay + Duration::from_secs(1), s.rx2_dr);
        (rx1, rx2)
    }

    /// An item goes only if it fits RX1's data rate next to MAC commands that fit FOpts;
    /// otherwise it waits for a better opportunity and the MAC answers go first.
    fn fits(&self, item: &QueueItem, rx1: Window) -> bool {
        let max = max_mac_payload(rx1);
        let fopts = if self.mac.len() <= MAX_FOPTS {
            self.mac.len()
        } else {
            0
        };
        FHDR_AND_FPORT + fopts + item.payload.len() <= max && self.mac.len() <= MAX_FOPTS
    }

    fn is_empty(&self) -> bool {
        self.ack == Ack::No && self.mac.is_empty()
    }

    fn label(&self, item: Option<&QueueItem>) -> &'static str {
        match (item, self.ack) {
            (Some(_), _) => "data",
            (None, Ack::Uplink(_)) => "ack",
            (None, Ack::No) => "mac",
        }
    }
}

impl NetworkServer {
    /// Builds the Class A answer to an uplink, or None when there is nothing to say.
    /// Updates the session's downlink counters; the caller persists it with the uplink.
    pub(crate) fn plan_class_a(
        &self,
        index: &mut SessionIndex,
        s: &mut Session,
        a: &ClassAAnswer<'_>,
    ) -> Result<Option<DownlinkPlan>, LnsError> {
        let (rx1, rx2) = a.windows(s);
        let (item, queued) = match a.kind {
            AnswerKind::Fresh { acked } => self.live_queue_head(index, s, acked)?,
            AnswerKind::ReAck => (None, 0),
        };
        let mut item = match item {
            Some(it) if !a.fits(&it, rx1) => {
                self.missed_window(s, it, rx1)?;
                None
            }
            item => item,
        };
        if item.is_none() && a.is_empty() {
            return Ok(None);
        }
        let more_pending = queued > usize::from(item.is_some());
        let phy_payload = build_data_down(
            s,
            DataDown {
                item: item.as_mut(),
                ack: a.ack,
                mac: a.mac,
                more_pending,
            },
        );
        Ok(Some(DownlinkPlan {
            dev_eui: s.dev_eui,
            phy_payload,
            kind: a.label(item.as_ref()),
            rx1,
            rx2,
            queue_item: item,
        }))
    }

    /// An item too long for this answer's RX1 even without MAC commands counts an
    /// attempt: one that never fits the rates the device uses is given up after
    /// `MAX_ATTEMPTS` answers instead of holding the queue behind it for ever.
    fn missed_window(&self, s: &Session, mut it: QueueItem, rx1: Window) -> Result<(), LnsError> {
        if FHDR_AND_FPORT + it.payload.len() <= max_mac_payload(rx1) {
            return Ok(());
        }
        it.attempts += 1;
        self.store
            .put::<DownlinkQueue>(&(s.dev_eui, it.id), &it, Durability::Buffered)?;
        Ok(())
    }

    /// The head of the queue and how many items wait, leaving out the items the uplink
    /// acknowledged; a head out of attempts is dropped (and still counted among those
    /// waiting).
    fn live_queue_head(
        &self,
        index: &mut SessionIndex,
        s: &Session,
        acked: &[u64],
    ) -> Result<(Option<QueueItem>, usize), LnsError> {
        if !index.may_have_queue(&s.dev_eui) {
            return Ok((None, 0));
        }
        let mut items = self.queue(&s.dev_eui)?;
        if items.is_empty() {
            index.queue_empty(&s.dev_eui);
        }
        items.retain(|it| !acked.contains(&it.id));
        let queued = items.len();
        let item = items.into_iter().next();
        match item {
            Some(it) if it.attempts >= MAX_ATTEMPTS => {
                self.store
                    .delete::<DownlinkQueue>(&(s.dev_eui, it.id), Durability::Sync)?;
                let reason = "max_attempts";
                self.metrics
                    .downlink_failures
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
                Ok((None, queued))
            }
            item => Ok((item, queued)),
        }
    }

    /// Sends a Class A plan: RX1 through the best gateway, RX2 if RX1 is refused.
    pub(crate) fn spawn_class_a(self: &Arc<Self>, plan: DownlinkPlan, rx: Vec<RxInfo>) {
        let this = self.clone();
        tokio::spawn(async move {
            for info in &rx {
                for w in [plan.rx1, plan.rx2] {
                    match this.transmit(&plan, info, w, Schedule::AfterUplink).await {
                        Ok(true) => {
                            this.after_sent(&plan);
                            return;
                        }
                        Ok(false) => continue,
                        Err(DownlinkError::UnknownGateway(_) | DownlinkError::NotConnected(_)) => break,
                        Err(e) => {
                            warn!(error = %e, "downlink not sent");
                            break;
                        }
                    }
                }
            }
            let reason = "no_window";
            this.metrics
                .downlink_failures
                .get_or_create(&ReasonLabel { reason })
                .inc();
            warn!(dev_eui = %plan.dev_eui, kind = plan.kind, "no gateway could send the downlink");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DeviceClass, MacVersion};
    use crate::testkit::{Harness, abp_device, eui, profile};
    use entente_model::DevAddr;

    struct Case {
        kind: AnswerKind<'static>,
        ack: Ack,
        mac: usize,
        /// (payload length, attempts) of the queued items.
        queue: &'static [(usize, u32)],
        dr: u8,
        want: Option<&'static str>,
        /// FPending set in the frame.
        more: bool,
        /// Items left in the queue afterwards.
        left: usize,
    }

    const CASES: &[Case] = &[
        // Nothing to say.
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 0,
            queue: &[],
            dr: 5,
            want: None,
            more: false,
            left: 0,
        },
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::Uplink(9),
            mac: 0,
            queue: &[],
            dr: 5,
            want: Some("ack"),
            more: false,
            left: 0,
        },
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 3,
            queue: &[],
            dr: 5,
            want: Some("mac"),
            more: false,
            left: 0,
        },
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 0,
            queue: &[(10, 0), (1, 0)],
            dr: 5,
            want: Some("data"),
            more: true,
            left: 2,
        },
        // A re-ACK never carries the queue.
        Case {
            kind: AnswerKind::ReAck,
            ack: Ack::Uplink(9),
            mac: 0,
            queue: &[(10, 0)],
            dr: 5,
            want: Some("ack"),
            more: false,
            left: 1,
        },
        // DR0 carries 59 bytes: 8 + 3 + 49 does not fit, the item waits and FPending says so.
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 3,
            queue: &[(49, 0)],
            dr: 0,
            want: Some("mac"),
            more: true,
            left: 1,
        },
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 3,
            queue: &[(48, 0)],
            dr: 0,
            want: Some("data"),
            more: false,
            left: 1,
        },
        // MAC commands over 15 bytes go alone in FPort 0.
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 16,
            queue: &[(1, 0)],
            dr: 5,
            want: Some("mac"),
            more: true,
            left: 1,
        },
        // Out of attempts: dropped, still counted as waiting.
        Case {
            kind: AnswerKind::Fresh { acked: &[] },
            ack: Ack::No,
            mac: 3,
            queue: &[(1, MAX_ATTEMPTS)],
            dr: 5,
            want: Some("mac"),
            more: true,
            left: 0,
        },
    ];

    #[test]
    fn what_a_class_a_answer_carries() {
        for (i, c) in CASES.iter().enumerate() {
            let h = Harness::new();
            let d = abp_device(
                eui(1),
                DevAddr(0x2600_0001),
                profile(MacVersion::V1_0_3, DeviceClass::A),
            );
            h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
            for (len, attempts) in c.queue {
                let mut it = h.ns.enqueue(&d.dev_eui, 1, vec![0; *len], false).unwrap();
                it.attempts = *attempts;
                h.ns.store
                    .put::<DownlinkQueue>(&(d.dev_eui, it.id), &it, Durability::Sync)
                    .unwrap();
            }
            let mac = vec![0x06; c.mac];
            let answer = ClassAAnswer {
                uplink_dr: c.dr,
                ack: c.ack,
                mac: &mac,
                kind: c.kind,
            };
            let mut s = h.session(d.dev_eui);
            let plan =
                h.ns.plan_class_a(&mut h.ns.lock_sessions(), &mut s, &answer)
                    .unwrap();
            assert_eq!(plan.as_ref().map(|p| p.kind), c.want, "case {i}");
            if let Some(p) = &plan {
                assert_eq!(p.phy_payload[5] & 0x10 != 0, c.more, "case {i}: FPending");
                assert_eq!(p.queue_item.is_some(), c.want == Some("data"), "case {i}");
                assert_eq!((p.rx1.data_rate, p.rx2.delay.as_secs()), (c.dr, 2), "case {i}");
            }
            assert_eq!(h.ns.queue(&d.dev_eui).unwrap().len(), c.left, "case {i}");
        }
    }
}
