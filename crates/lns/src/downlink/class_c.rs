//! A Class C send: the head of the queue, now, through the gateway that heard the device
//! last; the next item follows once a gateway took this one.

use std::sync::Arc;
use std::time::Duration;

use entente_gateway::RxInfo;
use entente_model::{DevEui, GatewayEui};
use entente_region::{Bandwidth, DataRate, Eu868};
use entente_store::Durability;
use tracing::warn;

use super::frame::{Ack, DataDown, build_data_down};
use super::{DownlinkPlan, Schedule, Window};
use crate::device::DeviceClass;
use crate::metrics::ReasonLabel;
use crate::server::{LnsError, NetworkServer};
use crate::session::Session;
use crate::tables::{DownlinkQueue, QueueItem, Sessions};

/// One Class C downlink on its way: the device's session, the gateway, the item.
struct ClassCSend {
    session: Session,
    gateway: GatewayEui,
    item: QueueItem,
    /// Items in the queue, this one included.
    queued: usize,
}

impl ClassCSend {
    /// The frame, advancing the session's counter and the item's attempt.
    fn build(&mut self) -> Vec<u8> {
        let more_pending = self.queued > 1;
        build_data_down(
            &mut self.session,
            DataDown {
                item: Some(&mut self.item),
                ack: Ack::No,
                mac: &[],
                more_pending,
            },
        )
    }

    fn plan(self, phy_payload: Vec<u8>) -> (DownlinkPlan, GatewayEui) {
        let rx2 = Window::rx2(Duration::ZERO, self.session.rx2_dr);
        let plan = DownlinkPlan {
            dev_eui: self.session.dev_eui,
            phy_payload,
            kind: "class_c",
            rx1: rx2,
            rx2,
            queue_item: Some(self.item),
        };
        (plan, self.gateway)
    }
}

impl NetworkServer {
    /// Class C: sends the head of the queue now through the gateway that heard the device last.
    pub(crate) fn send_class_c(self: &Arc<Self>, eui: DevEui) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.plan_class_c(eui) {
                Ok(Some((plan, gw))) => this.transmit_class_c(plan, gw).await,
                Ok(None) => {}
                Err(e) => warn!(error = %e, "class C downlink not planned"),
            }
        });
    }

    /// Builds the frame and stores the session and item it advanced, under the session lock.
    fn plan_class_c(&self, eui: DevEui) -> Result<Option<(DownlinkPlan, GatewayEui)>, LnsError> {
        let mut index = self.lock_sessions();
        let Some(mut send) = self.class_c_send(eui)? else {
            return Ok(None);
        };
        index.queueing(eui);
        let phy_payload = send.build();
        let mut batch = self.store.batch();
        batch.put::<Sessions>(&eui, &send.session)?;
        batch.put::<DownlinkQueue>(&(eui, send.item.id), &send.item)?;
        self.store.write(batch, Durability::Sync)?;
        Ok(Some(send.plan(phy_payload)))
    }

    /// A Class C session heard by some gateway, with an item that may go now (a confirmed
    /// item already sent waits for the device's ACK).
    fn class_c_send(&self, eui: DevEui) -> Result<Option<ClassCSend>, LnsError> {
        let Some(session) = self.store.get::<Sessions>(&eui)? else {
            return Ok(None);
        };
        if session.class != DeviceClass::C {
            return Ok(None);
        }
        let Some(gateway) = session.last_gateway else {
            return Ok(None);
        };
        let (item, queued) = self.queue_head(&eui)?;
        let Some(item) = item else { return Ok(None) };
        if item.confirmed && item.sent_fcnt.is_some() && session.pending_confirmed_down.is_some() {
            return Ok(None);
        }
        Ok(Some(ClassCSend {
            session,
            gateway,
            item,
            queued,
        }))
    }

    async fn transmit_class_c(self: &Arc<Self>, plan: DownlinkPlan, gw: GatewayEui) {
        let info = class_c_reception(gw, self.now());
        match self.transmit(&plan, &info, plan.rx2, Schedule::Immediately).await {
            Ok(true) => {
                self.after_sent(&plan);
                if self.has_unsent(&plan.dev_eui) {
                    self.send_class_c(plan.dev_eui);
                }
            }
            Ok(false) | Err(_) => {
                let reason = "class_c_not_sent";
                self.metrics
                    .downlink_failures
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
        }
    }

    fn has_unsent(&self, eui: &DevEui) -> bool {
        self.queue(eui)
            .map(|q| q.iter().any(|i| i.sent_fcnt.is_none()))
            .unwrap_or(false)
    }
}

/// No uplink to answer: the transmission goes through `gw` on RX2, immediately.
fn class_c_reception(gw: GatewayEui, now: chrono::DateTime<chrono::Utc>) -> RxInfo {
    RxInfo {
        gateway: gw,
        tmst: 0,
        time: None,
        gps_time_ms: None,
        received_at: now,
        frequency_hz: Eu868::RX2_FREQUENCY_HZ,
        channel: 0,
        rf_chain: 0,
        data_rate: DataRate::lora(12, Bandwidth::Khz125),
        coding_rate: None,
        rssi: 0,
        snr: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use crate::device::{DeviceClass, MacVersion};
    use crate::testkit::{Harness, abp_device, abp_sim, eui, gateway, profile, rx};
    use entente_gateway::Timing;
    use entente_model::DevAddr;

    #[tokio::test]
    async fn class_c_sends_now_and_waits_for_an_ack() {
        // (queued items as confirmed flags, downlinks that go out before an ACK)
        for (queue, sent) in [
            (&[false, false][..], 2),
            (&[true, false][..], 1),
            (&[false, true, false][..], 2),
        ] {
            let h = Harness::new();
            let d = abp_device(
                eui(1),
                DevAddr(0x2600_0001),
                profile(MacVersion::V1_0_3, DeviceClass::C),
            );
            h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
            let mut sim = abp_sim(&d);
            h.uplink(&sim.uplink(1, b"x", false, 5, 0).unwrap(), vec![rx(3, 0.0, 5)]);
            for (i, h_) in h.downlinks().await.iter().enumerate() {
                sim.receive(&h_.1.phy_payload)
                    .unwrap_or_else(|e| panic!("first answer {i}: {e}"));
            }
            for confirmed in queue {
                h.ns.enqueue(&d.dev_eui, 2, vec![1], *confirmed).unwrap();
            }
            let out = h.downlinks().await;
            assert_eq!(out.len(), sent, "{queue:?}");
            for (gw, dl) in &out {
                assert_eq!(
                    (*gw, dl.timing, dl.frequency_hz),
                    (gateway(3), Timing::Immediately, 869_525_000)
                );
                assert_eq!(sim.receive(&dl.phy_payload).unwrap().payload, [1]);
            }
        }
    }
}
