//! Downlinks: the receive windows, the gateway's answer, the duty cycle. A Class A answer
//! is planned in [`class_a`], a Class C send in [`class_c`], the frame built in [`frame`].

mod class_a;
mod class_c;
mod frame;

use std::time::Duration;

use entente_gateway::{Downlink, DownlinkError, RxInfo, Timing, TxOutcome};
use entente_model::{DevEui, GatewayEui};
use entente_region::{DataRate, Eu868, Modulation, time_on_air};
use entente_store::Durability;
use tracing::{debug, info, warn};

use crate::metrics::{KindLabel, ReasonLabel};
use crate::server::{LnsError, NetworkServer};
use crate::tables::{DownlinkQueue, QueueItem};

pub(crate) use class_a::{AnswerKind, ClassAAnswer};
pub(crate) use frame::Ack;

/// One receive window: when (after the uplink), which data rate, which frequency.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub delay: Duration,
    pub data_rate: u8,
    /// None: the uplink's frequency (RX1 in EU868).
    pub frequency_hz: Option<u32>,
    pub power_dbm: i8,
    pub name: &'static str,
}

impl Window {
    pub fn rx1(delay: Duration, uplink_dr: u8, offset: u8) -> Window {
        Window {
            delay,
            data_rate: Eu868::rx1_data_rate(uplink_dr, offset).unwrap_or(uplink_dr),
            frequency_hz: None,
            power_dbm: Eu868::DEFAULT_TX_POWER_DBM,
            name: "rx1",
        }
    }
    pub fn rx2(delay: Duration, data_rate: u8) -> Window {
        Window {
            delay,
            data_rate,
            frequency_hz: Some(Eu868::RX2_FREQUENCY_HZ),
            power_dbm: Eu868::RX2_TX_POWER_DBM,
            name: "rx2",
        }
    }
}

/// When the gateway transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// In a receive window, the window's delay after the uplink (Class A).
    AfterUplink,
    /// As soon as it can (Class C).
    Immediately,
}

impl Schedule {
    fn timing(self, info: &RxInfo, w: Window) -> Timing {
        match self {
            Schedule::Immediately => Timing::Immediately,
            Schedule::AfterUplink => Timing::AfterReception {
                context: info.context(),
                delay: w.delay,
            },
        }
    }
}

/// A downlink ready to go, with what to do once the gateway confirms it.
#[derive(Debug, Clone)]
pub struct DownlinkPlan {
    pub dev_eui: DevEui,
    pub phy_payload: Vec<u8>,
    pub kind: &'static str,
    pub rx1: Window,
    pub rx2: Window,
    /// The application item carried, already updated with its FCnt and attempt.
    pub queue_item: Option<QueueItem>,
}

impl NetworkServer {
    /// Head of the application queue that may go out now (confirmed items wait for their ACK
    /// until the next uplink without one, then go again).
    fn queue_head(&self, eui: &DevEui) -> Result<(Option<QueueItem>, usize), LnsError> {
        let items = self.queue(eui)?;
        let n = items.len();
        Ok((items.into_iter().next(), n))
    }

    /// Returns Ok(true) when the gateway accepted the downlink.
    async fn transmit(
        &self,
        plan: &DownlinkPlan,
        info: &RxInfo,
        w: Window,
        schedule: Schedule,
    ) -> Result<bool, DownlinkError> {
        let frequency_hz = w.frequency_hz.unwrap_or(info.frequency_hz);
        let data_rate =
            Eu868::data_rate(w.data_rate).unwrap_or(DataRate::lora(12, entente_region::Bandwidth::Khz125));
        // A frame built for RX1 may be too long for RX2's slower rate: that window is
        // skipped rather than sent over the band's limits.
        if let Err(e) = Eu868::check_downlink(frequency_hz, data_rate, w.power_dbm, plan.phy_payload.len()) {
            self.metrics
                .downlink_failures
                .get_or_create(&ReasonLabel {
                    reason: "region_limits",
                })
                .inc();
            debug!(dev_eui = %plan.dev_eui, error = %e, "window skipped");
            return Ok(false);
        }
        if !self.reserve_airtime(info.gateway, frequency_hz, data_rate, plan) {
            return Ok(false);
        }
        let downlink = Downlink {
            phy_payload: plan.phy_payload.clone(),
            frequency_hz,
            data_rate,
            power_dbm: w.power_dbm,
            timing: schedule.timing(info, w),
        };
        let outcome = self.send_through(info.gateway, downlink).await?;
        Ok(self.record_outcome(plan, info, w, outcome))
    }

    /// The gateway's sub-band must have the airtime left this hour.
    fn reserve_airtime(&self, gw: GatewayEui, freq: u32, dr: DataRate, plan: &DownlinkPlan) -> bool {
        let airtime = time_on_air(Modulation::downlink(dr), plan.phy_payload.len());
        let reserved = self
            .gateways
            .duty_cycle()
            .try_reserve(gw, freq, airtime, self.now());
        if !reserved {
            self.metrics
                .downlink_failures
                .get_or_create(&ReasonLabel { reason: "duty_cycle" })
                .inc();
        }
        reserved
    }

    async fn send_through(&self, gw: GatewayEui, downlink: Downlink) -> Result<TxOutcome, DownlinkError> {
        match self.roaming.as_ref() {
            // A peer's gateway: its TX_ACK comes back over the federation.
            Some(r) if r.is_remote_gateway(&gw) => {
                r.send_downlink(gw, downlink, self.cfg.tx_ack_timeout * 2).await
            }
            _ => {
                self.gateways
                    .transmit(gw, downlink, self.cfg.tx_ack_timeout)
                    .await
            }
        }
    }

    /// Counts the gateway's answer; true when it took the downlink.
    fn record_outcome(&self, plan: &DownlinkPlan, info: &RxInfo, w: Window, outcome: TxOutcome) -> bool {
        match outcome {
            TxOutcome::Ok { .. } | TxOutcome::NotAcknowledged => {
                let kind = window_kind(plan.kind, w.name);
                self.metrics.downlinks.get_or_create(&KindLabel { kind }).inc();
                info!(dev_eui = %plan.dev_eui, kind = plan.kind, window = w.name, gateway = %info.gateway, "downlink scheduled");
                true
            }
            TxOutcome::Error(e) => {
                let reason = e.as_str();
                self.metrics
                    .downlink_failures
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
                debug!(dev_eui = %plan.dev_eui, window = w.name, error = ?e, "gateway refused the downlink");
                false
            }
        }
    }

    /// An unconfirmed application downlink leaves the queue once a gateway took it.
    fn after_sent(&self, plan: &DownlinkPlan) {
        let Some(item) = plan.queue_item.as_ref().filter(|it| !it.confirmed) else {
            return;
        };
        let key = (plan.dev_eui, item.id);
        if let Err(e) = self.store.delete::<DownlinkQueue>(&key, Durability::Buffered) {
            warn!(error = %e, "could not remove a sent downlink from the queue");
        }
    }
}

fn window_kind(kind: &'static str, window: &'static str) -> &'static str {
    match (kind, window) {
        ("join_accept", "rx1") => "join_accept_rx1",
        ("join_accept", _) => "join_accept_rx2",
        ("class_c", _) => "class_c",
        (_, "rx1") => "data_rx1",
        _ => "data_rx2",
    }
}
