//! A data uplink, step by step: match the session, check the frame counter, decrypt and
//! handle the MAC commands, take the ACK, decrypt the payload, persist everything in one
//! batch, answer in Class A.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entente_gateway::{Arrival, RxInfo};
use entente_model::DevEui;
use entente_region::Eu868;
use entente_store::{Batch, Durability, StoreError};
use tracing::{debug, warn};

use crate::crypto::{self, Dir};
use crate::device::{Device, Profile};
use crate::downlink::{Ack, AnswerKind, ClassAAnswer, DownlinkPlan};
use crate::mac::{self, DownCommand, UpCommand};
use crate::maccommand::{self, Asking, Reception, link_adr};
use crate::metrics::{KindLabel, Rejection};
use crate::phy::DataFrame;
use crate::server::NetworkServer;
use crate::session::{FCntCheck, Session};
use crate::tables::{Devices, DownlinkQueue, Sessions, UplinkRecord, Uplinks};

use super::Waiters;
use super::channel_index;
use super::group::{Accepted, Group};
use crate::session_index::SessionIndex;

fn store_err(e: StoreError) -> Rejection {
    warn!(error = %e, "store error in uplink");
    Rejection::Store
}

/// How the best gateway heard the frame: what the 1.1 MIC and the answer depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Radio {
    pub data_rate: u8,
    /// Channel index as the device numbers it.
    pub channel: u8,
}

impl Radio {
    pub(crate) fn of(best: &RxInfo) -> Radio {
        Radio {
            data_rate: Eu868::data_rate_index(best.data_rate).unwrap_or(0),
            channel: channel_index(best.frequency_hz),
        }
    }
}

/// The application payload as it is stored.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct AppPayload {
    pub bytes: Vec<u8>,
    /// The member keeps the AppSKey: the FRMPayload as sent.
    pub encrypted: bool,
}

/// Everything one data uplink's steps read and write.
pub(crate) struct DataUplink<'a> {
    pub ns: &'a Arc<NetworkServer>,
    pub frame: DataFrame<'a>,
    /// Every gateway's reception, best first.
    pub rx: Vec<RxInfo>,
    pub radio: Radio,
    pub session: Session,
    /// The full 32-bit FCnt whose MIC verified.
    pub fcnt: u32,
    pub device: Option<Arc<Device>>,
    pub now: DateTime<Utc>,
    /// The device's MAC commands, in the clear.
    pub mac_in: Vec<UpCommand>,
    /// Answers to them, then the network's own requests.
    pub mac_out: Vec<DownCommand>,
    /// Queue items the device acknowledged.
    pub acked: Vec<(DevEui, u64)>,
    pub payload: AppPayload,
    /// A late frame gets no answer: its receive windows closed long ago.
    pub arrival: Arrival,
}

/// Where a data uplink that passed its checks stands.
pub(crate) enum Staging {
    /// In the group's batch with the peers waiting for it, accepted once the batch is
    /// written.
    Staged,
    /// The last accepted frame again: answered, not stored twice.
    Retransmission,
}

impl NetworkServer {
    pub(super) fn process_data(
        self: &Arc<Self>,
        frame: DataFrame<'_>,
        (rx, arrival): (Vec<RxInfo>, Arrival),
        waiters: &mut Waiters,
        group: &mut Group<'_>,
    ) -> Result<Staging, Rejection> {
        let radio = Radio::of(rx.first().ok_or(Rejection::BadPhy)?);
        let staged = group.for_addr(frame.dev_addr);
        let (session, fcnt) = self.match_session(&mut staged.index, &frame, radio)?;
        let mut up = DataUplink::new(self, frame, rx, radio, session, fcnt);
        up.arrival = arrival;
        if up.check_fcnt()? == Counter::Retransmission {
            up.answer_retransmission(&mut staged.index)?;
            return Ok(Staging::Retransmission);
        }
        waiters.charge(up.session.dev_eui)?;
        up.load_device()?;
        up.decrypt_mac_commands();
        up.handle_mac_commands();
        up.handle_ack()?;
        up.decrypt_payload();
        up.update_session();
        up.request_mac_commands();
        let plan = up.plan_answer(&mut staged.index)?;
        if let Err(r) = up.persist(plan.as_ref(), &mut staged.batch) {
            staged.fail();
            return Err(r);
        }
        staged.accept(up.accepted(plan, std::mem::take(waiters)));
        Ok(Staging::Staged)
    }
}

/// What the frame counter says about a frame whose MIC verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Fresh,
    /// The last accepted frame again.
    Retransmission,
}

impl<'a> DataUplink<'a> {
    pub(crate) fn new(
        ns: &'a Arc<NetworkServer>,
        frame: DataFrame<'a>,
        rx: Vec<RxInfo>,
        radio: Radio,
        session: Session,
        fcnt: u32,
    ) -> Self {
        DataUplink {
            now: ns.now(),
            ns,
            frame,
            rx,
            radio,
            session,
            fcnt,
            device: None,
            mac_in: Vec::new(),
            mac_out: Vec::new(),
            acked: Vec::new(),
            payload: AppPayload::default(),
            arrival: Arrival::Live,
        }
    }

    pub(crate) fn check_fcnt(&self) -> Result<Counter, Rejection> {
        match self.session.check_fcnt(self.fcnt, self.frame.fcnt16) {
            FCntCheck::Replay => Err(Rejection::Replay),
            FCntCheck::TooFarAhead => Err(Rejection::FCntGap),
            FCntCheck::Retransmission(_) => Ok(Counter::Retransmission),
            FCntCheck::Fresh(_) => Ok(Counter::Fresh),
        }
    }

    /// The device missed our ACK: acknowledge again, deliver nothing twice.
    fn answer_retransmission(mut self, index: &mut SessionIndex) -> Result<(), Rejection> {
        self.ns.metrics.retransmissions.inc();
        if !self.frame.confirmed() || self.arrival == Arrival::Late {
            return Ok(());
        }
        let answer = ClassAAnswer::re_ack(self.fcnt, self.radio.data_rate);
        let plan = self
            .ns
            .plan_class_a(index, &mut self.session, &answer)
            .map_err(|_| Rejection::Store)?;
        self.ns
            .store
            .put::<Sessions>(&self.session.dev_eui, &self.session, Durability::Buffered)
            .map_err(store_err)?;
        if let Some(p) = plan {
            self.ns.spawn_class_a(p, self.rx);
        }
        Ok(())
    }

    pub(crate) fn load_device(&mut self) -> Result<(), Rejection> {
        self.device = self
            .ns
            .store
            .get_shared::<Devices>(&self.session.dev_eui)
            .map_err(store_err)?;
        Ok(())
    }

    /// MAC commands ride in FOpts (encrypted in 1.1) or, instead, in an FPort 0 payload.
    pub(crate) fn decrypt_mac_commands(&mut self) {
        let (s, f) = (&self.session, &self.frame);
        let mut bytes = f.fopts.to_vec();
        if s.mac_version.is_11() && !bytes.is_empty() {
            crypto::crypt_fopts_11(
                &s.nwk_s_enc_key,
                Dir::Up,
                false,
                f.dev_addr.0,
                self.fcnt,
                &mut bytes,
            );
        }
        if f.fport == Some(0) {
            bytes = f.frm_payload.to_vec();
            crypto::crypt_frm_payload(&s.nwk_s_enc_key, Dir::Up, f.dev_addr.0, self.fcnt, &mut bytes);
        }
        let (commands, error) = mac::parse_up(&bytes);
        if let Some(e) = error {
            debug!(dev_eui = %s.dev_eui, error = %e, "MAC commands cut short");
        }
        self.mac_in = commands;
    }

    pub(crate) fn handle_mac_commands(&mut self) {
        let at = Reception {
            best: &self.rx[0],
            rx: &self.rx,
            profile: self.device.as_ref().map(|d| &d.profile),
            activation: self.device.as_deref().map(maccommand::Activation::of),
        };
        for c in &self.mac_in {
            let handled = maccommand::handle(&mut self.session, c, &at);
            self.mac_out.extend(handled.answer);
            let kind = handled.label;
            self.ns
                .metrics
                .mac_commands
                .get_or_create(&KindLabel { kind })
                .inc();
        }
    }

    /// The device acknowledged our confirmed downlink: its queue item is done.
    pub(crate) fn handle_ack(&mut self) -> Result<(), Rejection> {
        if !self.frame.fctrl.ack() {
            return Ok(());
        }
        let Some(fcnt) = self.session.pending_confirmed_down.take() else {
            return Ok(());
        };
        let eui = self.session.dev_eui;
        for r in self
            .ns
            .store
            .range_from::<DownlinkQueue>(&(eui, 0))
            .map_err(store_err)?
        {
            let (k, item) = r.map_err(store_err)?;
            if k.0 != eui {
                break;
            }
            if item.sent_fcnt == Some(fcnt) {
                self.acked.push(k);
                let kind = "confirmed_acked";
                self.ns.metrics.downlinks.get_or_create(&KindLabel { kind }).inc();
            }
        }
        Ok(())
    }

    /// Clear text with the AppSKey; as sent when the member keeps it; nothing on FPort 0.
    pub(crate) fn decrypt_payload(&mut self) {
        let f = &self.frame;
        self.payload = match (f.fport, &self.session.app_s_key) {
            (Some(p), Some(k)) if p > 0 => {
                let mut bytes = f.frm_payload.to_vec();
                crypto::crypt_frm_payload(k, Dir::Up, f.dev_addr.0, self.fcnt, &mut bytes);
                AppPayload {
                    bytes,
                    encrypted: false,
                }
            }
            (Some(p), None) if p > 0 => AppPayload {
                bytes: f.frm_payload.to_vec(),
                encrypted: true,
            },
            _ => AppPayload::default(),
        };
    }

    /// The counter, when and where the device was heard, the SNR for ADR.
    pub(crate) fn update_session(&mut self) {
        let best = &self.rx[0];
        let s = &mut self.session;
        s.fcnt_up = Some(self.fcnt);
        s.last_seen = Some(self.now);
        s.last_gateway = Some(best.gateway);
        s.data_rate = self.radio.data_rate;
        link_adr::remember_snr(s, best.snr);
    }

    /// What the network asks of the device on its own, after the answers.
    pub(crate) fn request_mac_commands(&mut self) {
        let default = Profile::default();
        let profile = self.device.as_ref().map_or(&default, |d| &d.profile);
        let asking = Asking {
            adr_allowed: self.frame.fctrl.adr() && profile.adr && self.ns.cfg.adr,
            profile,
            data_rate: self.radio.data_rate,
            now: self.now,
            dev_status_interval: self.ns.cfg.dev_status_interval,
        };
        let requests = maccommand::requests(&mut self.session, &asking);
        self.mac_out.extend(requests);
    }

    pub(crate) fn plan_answer(
        &mut self,
        index: &mut SessionIndex,
    ) -> Result<Option<DownlinkPlan>, Rejection> {
        // Planning would spend one of a queued downlink's attempts on a frame that
        // cannot be answered.
        if self.arrival == Arrival::Late {
            return Ok(None);
        }
        let mac = maccommand::encode(&self.mac_out);
        let ack = if self.frame.confirmed() {
            Ack::Uplink(self.fcnt)
        } else {
            Ack::No
        };
        let acked: Vec<u64> = self.acked.iter().map(|(_, id)| *id).collect();
        let answer = ClassAAnswer {
            uplink_dr: self.radio.data_rate,
            ack,
            mac: &mac,
            kind: AnswerKind::Fresh { acked: &acked },
        };
        self.ns
            .plan_class_a(index, &mut self.session, &answer)
            .map_err(|_| Rejection::Store)
    }

    fn record(&mut self) -> Result<UplinkRecord, Rejection> {
        let frequency_hz = self.rx.first().map_or(0, |r| r.frequency_hz);
        Ok(UplinkRecord {
            seq: self.ns.seq().map_err(store_err)?,
            dev_eui: self.session.dev_eui,
            dev_addr: self.frame.dev_addr,
            fcnt: self.fcnt,
            fport: self.frame.fport,
            payload: std::mem::take(&mut self.payload.bytes),
            encrypted: self.payload.encrypted,
            confirmed: self.frame.confirmed(),
            data_rate: self.radio.data_rate,
            frequency_hz,
            rx: self.rx.clone(),
            received_at: self.now,
        })
    }

    /// Into the group's batch: acknowledged items out, the answer's item, the session,
    /// the uplink and whatever the hook queues with it.
    pub(crate) fn persist(
        &mut self,
        plan: Option<&DownlinkPlan>,
        batch: &mut Batch<'_>,
    ) -> Result<UplinkRecord, Rejection> {
        let record = self.record()?;
        let eui = self.session.dev_eui;
        for k in &self.acked {
            batch.delete::<DownlinkQueue>(k).map_err(store_err)?;
        }
        if let Some(item) = plan.and_then(|p| p.queue_item.as_ref()) {
            batch
                .put::<DownlinkQueue>(&(eui, item.id), item)
                .map_err(store_err)?;
        }
        batch.put::<Sessions>(&eui, &self.session).map_err(store_err)?;
        batch
            .put::<Uplinks>(&(eui, record.seq), &record)
            .map_err(store_err)?;
        if let (Some(h), Some(d)) = (self.ns.hook.as_ref(), self.device.as_ref()) {
            h.on_uplink(batch, d, &record).map_err(store_err)?;
        }
        Ok(record)
    }

    /// What is left to do once the batch is durable.
    pub(crate) fn accepted(self, answer: Option<DownlinkPlan>, waiters: Waiters) -> Accepted {
        Accepted {
            dev_eui: self.session.dev_eui,
            fcnt: self.fcnt,
            class: self.session.class,
            answer,
            rx: self.rx,
            arrival: self.arrival,
            waiters,
        }
    }
}
