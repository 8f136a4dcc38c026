//! Downlinks: building data frames, choosing the gateway and window, retrying on TX_ACK errors.

use std::sync::Arc;
use std::time::Duration;

use entente_gateway::{Downlink, DownlinkError, RxInfo, Timing, TxOutcome};
use entente_model::DevEui;
use entente_region::Eu868;
use entente_region::{Modulation, time_on_air};
use entente_store::Durability;
use tracing::{debug, info, warn};

use crate::crypto::{self, Dir};
use crate::device::DeviceClass;
use crate::metrics::{KindLabel, ReasonLabel};
use crate::phy::{self, DataFrame, MType};
use crate::server::{LnsError, NetworkServer};
use crate::session::Session;
use crate::tables::{DownlinkQueue, QueueItem, Sessions};

/// Attempts before an application downlink is given up.
const MAX_ATTEMPTS: u32 = 8;

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

    /// Builds the Class A answer to an uplink, or None when there is nothing to say.
    /// Updates the session's downlink counters; the caller persists it with the uplink.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_class_a(
        &self,
        s: &mut Session,
        up: &DataFrame<'_>,
        up_fcnt: u32,
        up_dr: u8,
        ack: bool,
        mac: &[u8],
        with_app: bool,
    ) -> Result<Option<DownlinkPlan>, LnsError> {
        let rx1 = Window::rx1(
            Duration::from_secs(s.rx_delay.max(1) as u64),
            up_dr,
            s.rx1_dr_offset,
        );
        let rx2 = Window::rx2(Duration::from_secs(s.rx_delay.max(1) as u64 + 1), s.rx2_dr);
        let (mut item, queued) = if with_app {
            self.queue_head(&s.dev_eui)?
        } else {
            (None, 0)
        };
        if let Some(it) = &item {
            if it.attempts >= MAX_ATTEMPTS {
                self.store
                    .delete::<DownlinkQueue>(&(s.dev_eui, it.id), Durability::Sync)?;
                self.metrics
                    .downlink_failures
                    .get_or_create(&ReasonLabel {
                        reason: "max_attempts",
                    })
                    .inc();
                item = None;
            }
        }
        // Keep the frame within what the RX1 data rate carries.
        let max = Eu868::max_mac_payload(rx1.data_rate).unwrap_or(51);
        if let Some(it) = &item {
            let fopts = if mac.len() <= 15 { mac.len() } else { 0 };
            if 8 + fopts + it.payload.len() > max || (mac.len() > 15) {
                item = None; // waits for a better opportunity; MAC answers go first
            }
        }
        if item.is_none() && !ack && mac.is_empty() {
            return Ok(None);
        }
        let more = queued > usize::from(item.is_some());
        let conf_fcnt = if ack { up_fcnt as u16 } else { 0 };
        let _ = up;
        let phy_payload = build_data_down(s, item.as_mut(), ack, mac, more, conf_fcnt);
        Ok(Some(DownlinkPlan {
            dev_eui: s.dev_eui,
            phy_payload,
            kind: if item.is_some() {
                "data"
            } else if ack {
                "ack"
            } else {
                "mac"
            },
            rx1,
            rx2,
            queue_item: item,
        }))
    }

    /// Sends a Class A plan: RX1 through the best gateway, RX2 if RX1 is refused.
    pub(crate) fn spawn_class_a(self: &Arc<Self>, plan: DownlinkPlan, rx: Vec<RxInfo>) {
        let this = self.clone();
        tokio::spawn(async move {
            for info in &rx {
                for w in [plan.rx1, plan.rx2] {
                    match this.transmit(&plan, info, w, false).await {
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
            this.metrics
                .downlink_failures
                .get_or_create(&ReasonLabel { reason: "no_window" })
                .inc();
            warn!(dev_eui = %plan.dev_eui, kind = plan.kind, "no gateway could send the downlink");
        });
    }

    /// Returns Ok(true) when the gateway accepted the downlink.
    async fn transmit(
        &self,
        plan: &DownlinkPlan,
        info: &RxInfo,
        w: Window,
        immediately: bool,
    ) -> Result<bool, DownlinkError> {
        let freq = w.frequency_hz.unwrap_or(info.frequency_hz);
        let dr = Eu868::data_rate(w.data_rate).unwrap_or(entente_region::DataRate::lora(
            12,
            entente_region::Bandwidth::Khz125,
        ));
        let airtime = time_on_air(Modulation::downlink(dr), plan.phy_payload.len());
        if !self.duty.try_reserve(info.gateway, freq, airtime, self.now()) {
            self.metrics
                .downlink_failures
                .get_or_create(&ReasonLabel { reason: "duty_cycle" })
                .inc();
            return Ok(false);
        }
        let downlink = Downlink {
            phy_payload: plan.phy_payload.clone(),
            frequency_hz: freq,
            data_rate: dr,
            power_dbm: w.power_dbm,
            timing: match immediately {
                true => Timing::Immediately,
                false => Timing::AfterReception {
                    context: info.context(),
                    delay: w.delay,
                },
            },
        };
        let outcome = match self.roaming.get() {
            Some(r) if r.is_remote_gateway(&info.gateway) => {
                // A peer's gateway: its TX_ACK comes back over the federation.
                r.send_downlink(info.gateway, downlink, self.cfg.tx_ack_timeout * 2)
                    .await?
            }
            _ => {
                self.gateways
                    .transmit(info.gateway, downlink, self.cfg.tx_ack_timeout)
                    .await?
            }
        };
        match outcome {
            TxOutcome::Ok { .. } | TxOutcome::NotAcknowledged => {
                self.metrics
                    .downlinks
                    .get_or_create(&KindLabel {
                        kind: window_kind(plan.kind, w.name),
                    })
                    .inc();
                info!(dev_eui = %plan.dev_eui, kind = plan.kind, window = w.name, gateway = %info.gateway, "downlink scheduled");
                Ok(true)
            }
            TxOutcome::Error(e) => {
                self.metrics
                    .downlink_failures
                    .get_or_create(&ReasonLabel { reason: e.as_str() })
                    .inc();
                debug!(dev_eui = %plan.dev_eui, window = w.name, error = ?e, "gateway refused the downlink");
                Ok(false)
            }
        }
    }

    /// An unconfirmed application downlink leaves the queue once a gateway took it.
    fn after_sent(&self, plan: &DownlinkPlan) {
        if let Some(item) = &plan.queue_item {
            if !item.confirmed {
                if let Err(e) = self
                    .store
                    .delete::<DownlinkQueue>(&(plan.dev_eui, item.id), Durability::Buffered)
                {
                    warn!(error = %e, "could not remove a sent downlink from the queue");
                }
            }
        }
    }

    /// Class C: sends the head of the queue now through the gateway that heard the device last.
    pub(crate) fn send_class_c(self: &Arc<Self>, eui: DevEui) {
        let this = self.clone();
        tokio::spawn(async move {
            let planned = (|| -> Result<Option<(DownlinkPlan, entente_model::GatewayEui)>, LnsError> {
                let _g = this.lock_sessions();
                let Some(mut s) = this.store.get::<Sessions>(&eui)? else {
                    return Ok(None);
                };
                if s.class != DeviceClass::C {
                    return Ok(None);
                }
                let Some(gw) = s.last_gateway else { return Ok(None) };
                let (item, queued) = this.queue_head(&eui)?;
                let Some(mut item) = item else { return Ok(None) };
                if item.confirmed && item.sent_fcnt.is_some() && s.pending_confirmed_down.is_some() {
                    return Ok(None); // waiting for the device's ACK
                }
                let phy_payload = build_data_down(&mut s, Some(&mut item), false, &[], queued > 1, 0);
                let mut batch = this.store.batch();
                batch.put::<Sessions>(&eui, &s)?;
                batch.put::<DownlinkQueue>(&(eui, item.id), &item)?;
                this.store.write(batch, Durability::Sync)?;
                let rx2 = Window::rx2(Duration::ZERO, s.rx2_dr);
                Ok(Some((
                    DownlinkPlan {
                        dev_eui: eui,
                        phy_payload,
                        kind: "class_c",
                        rx1: rx2,
                        rx2,
                        queue_item: Some(item),
                    },
                    gw,
                )))
            })();
            let (plan, gw) = match planned {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "class C downlink not planned");
                    return;
                }
            };
            let info = RxInfo {
                gateway: gw,
                tmst: 0,
                time: None,
                gps_time_ms: None,
                received_at: this.now(),
                frequency_hz: Eu868::RX2_FREQUENCY_HZ,
                channel: 0,
                rf_chain: 0,
                data_rate: entente_region::DataRate::lora(12, entente_region::Bandwidth::Khz125),
                coding_rate: None,
                rssi: 0,
                snr: 0.0,
            };
            match this.transmit(&plan, &info, plan.rx2, true).await {
                Ok(true) => {
                    this.after_sent(&plan);
                    // The next item, if any, follows at once.
                    if this
                        .queue(&eui)
                        .map(|q| q.iter().any(|i| i.sent_fcnt.is_none()))
                        .unwrap_or(false)
                    {
                        this.send_class_c(eui);
                    }
                }
                Ok(false) | Err(_) => {
                    this.metrics
                        .downlink_failures
                        .get_or_create(&ReasonLabel {
                            reason: "class_c_not_sent",
                        })
                        .inc();
                }
            }
        });
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

/// Builds a data downlink and advances the session's counters.
/// 1.0.x: one counter, MIC with NwkSKey. 1.1: AFCntDown for FPort > 0, NFCntDown otherwise,
/// FOpts encrypted with NwkSEncKey, MIC with SNwkSIntKey over ConfFCnt.
pub(crate) fn build_data_down(
    s: &mut Session,
    item: Option<&mut QueueItem>,
    ack: bool,
    mac: &[u8],
    more: bool,
    conf_fcnt: u16,
) -> Vec<u8> {
    let v11 = s.mac_version.is_11();
    let has_app = item.is_some();
    let fcnt = if v11 && has_app {
        s.a_fcnt_down
    } else {
        s.n_fcnt_down
    };
    let mut fctrl = 0u8;
    if ack {
        fctrl |= 0x20;
    }
    if more {
        fctrl |= 0x10;
    }
    let (mtype, fport, payload, fopts) = match item {
        Some(it) => {
            let mut p = it.payload.clone();
            if let Some(k) = &s.app_s_key {
                crypto::crypt_frm_payload(k, Dir::Down, s.dev_addr.0, fcnt, &mut p);
            }
            // Without the AppSKey the member queued an already-encrypted payload.
            let mut fopts = mac.to_vec();
            if v11 && !fopts.is_empty() {
                crypto::crypt_fopts_11(&s.nwk_s_enc_key, Dir::Down, true, s.dev_addr.0, fcnt, &mut fopts);
            }
            it.sent_fcnt = Some(fcnt);
            it.attempts += 1;
            if it.confirmed {
                s.pending_confirmed_down = Some(fcnt);
            }
            let mt = if it.confirmed {
                MType::ConfirmedDown
            } else {
                MType::UnconfirmedDown
            };
            (mt, Some(it.fport), p, fopts)
        }
        None if mac.len() > 15 => {
            let mut p = mac.to_vec();
            crypto::crypt_frm_payload(&s.nwk_s_enc_key, Dir::Down, s.dev_addr.0, fcnt, &mut p);
            (MType::UnconfirmedDown, Some(0), p, Vec::new())
        }
        None => {
            let mut fopts = mac.to_vec();
            if v11 && !fopts.is_empty() {
                crypto::crypt_fopts_11(&s.nwk_s_enc_key, Dir::Down, false, s.dev_addr.0, fcnt, &mut fopts);
            }
            (MType::UnconfirmedDown, None, Vec::new(), fopts)
        }
    };
    let mut frame = phy::build_data(mtype, s.dev_addr, fctrl, fcnt, &fopts, fport, &payload);
    let mic = if v11 {
        crypto::downlink_mic(&s.s_nwk_s_int_key, conf_fcnt, s.dev_addr.0, fcnt, &frame)
    } else {
        crypto::downlink_mic(&s.f_nwk_s_int_key, 0, s.dev_addr.0, fcnt, &frame)
    };
    frame.extend_from_slice(&mic);
    if v11 && has_app {
        s.a_fcnt_down = s.a_fcnt_down.wrapping_add(1);
    } else {
        s.n_fcnt_down = s.n_fcnt_down.wrapping_add(1);
    }
    frame
}
