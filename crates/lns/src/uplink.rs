//! The uplink pipeline: dedup window, then join or data processing, one frame at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use entente_frame::{UplinkFrame, UplinkKind};
use entente_gateway::{Route, RxInfo, Uplink};
use entente_model::{DevEui, GatewayEui};
use entente_region::Eu868;
use entente_store::Durability;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crypto::{self, Dir, Uplink11Ctx};
use crate::device::DeviceClass;
use crate::downlink::{DownlinkPlan, Window};
use crate::join::{self, JoinAcceptParams};
use crate::mac::{self, DownCommand, UpCommand};
use crate::metrics::{KindLabel, Rejection};
use crate::phy::{self, DataFrame, JoinRequest};
use crate::server::{LnsError, NetworkServer};
use crate::session::{FCntCheck, Session};
use crate::tables::{
    DevAddrIndex, Devices, DownlinkQueue, JoinState, Sessions, UplinkRecord, Uplinks, UsedDevNonces,
};

/// How many SNR readings ADR looks at.
const ADR_HISTORY: usize = 20;
/// Installation margin ADR keeps, in dB.
const ADR_MARGIN_DB: f32 = 10.0;

/// Lowest SNR at which a LoRa demodulator still decodes, per spreading factor.
pub fn demod_floor_db(sf: u8) -> f32 {
    -20.0 + (12.0 - sf as f32) * 2.5
}

/// Best gateway first: highest SNR, then RSSI.
fn best_first(mut rx: Vec<RxInfo>) -> Vec<RxInfo> {
    rx.sort_by(|a, b| b.snr.total_cmp(&a.snr).then(b.rssi.cmp(&a.rssi)));
    rx
}

fn sf_of(dr_index: u8) -> u8 {
    match Eu868::data_rate(dr_index) {
        Ok(entente_region::DataRate::Lora { sf, .. }) => sf.get(),
        _ => 7,
    }
}

/// Index of an uplink channel as the device numbers it (3 default + CFList channels).
fn channel_index(freq_hz: u32) -> u8 {
    Eu868::DEFAULT_CHANNELS_HZ
        .iter()
        .chain(join::EU868_CFLIST_HZ.iter())
        .position(|f| *f == freq_hz)
        .map(|i| i as u8)
        .unwrap_or(0)
}

impl NetworkServer {
    /// Runs the dedup window over frames from the gateways and, when the node federates,
    /// over gateway receptions of this node's frames reported by peers; processes each
    /// frame once with every copy's metadata, wherever it was heard.
    pub async fn run(
        self: Arc<Self>,
        mut frames: mpsc::Receiver<Uplink>,
        mut roamed: mpsc::Receiver<Uplink>,
        shutdown: CancellationToken,
    ) {
        let mut pending: HashMap<Vec<u8>, Vec<RxInfo>> = HashMap::new();
        // Two FIFOs of deadlines, one per window length, so each stays in order.
        let mut home: VecDeque<(Instant, UplinkFrame)> = VecDeque::new();
        let mut visited: VecDeque<(Instant, UplinkFrame)> = VecDeque::new();
        let mut roamed_open = true;
        loop {
            let next = match (home.front(), visited.front()) {
                (Some(a), Some(b)) => Some(a.0.min(b.0)),
                (a, b) => a.or(b).map(|x| x.0),
            };
            let f = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                f = frames.recv() => match f { Some(f) => f, None => break },
                f = roamed.recv(), if roamed_open => match f {
                    Some(f) => { self.metrics.roamed_in.inc(); f }
                    None => { roamed_open = false; continue }
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    let now = Instant::now();
                    for (q, forward) in [(&mut home, false), (&mut visited, true)] {
                        while q.front().is_some_and(|(t, _)| *t <= now) {
                            if let Some((_, frame)) = q.pop_front() {
                                if let Some(rx) = pending.remove(frame.bytes()) {
                                    self.dispatch(frame, rx, forward);
                                }
                            }
                        }
                    }
                    continue;
                }
            };
            match pending.get_mut(f.frame.bytes()) {
                Some(rx) => {
                    self.metrics.duplicate_copies.inc();
                    rx.push(f.rx);
                }
                None => {
                    pending.insert(f.frame.bytes().to_vec(), vec![f.rx]);
                    if self.forwards(&f.frame) {
                        visited.push_back((Instant::now() + self.cfg.visited_dedup_window, f.frame));
                    } else {
                        home.push_back((Instant::now() + self.cfg.dedup_window, f.frame));
                    }
                }
            }
        }
        // Frames still in their window are processed rather than lost.
        for (q, forward) in [(&mut home, false), (&mut visited, true)] {
            while let Some((_, frame)) = q.pop_front() {
                if let Some(rx) = pending.remove(frame.bytes()) {
                    self.dispatch(frame, rx, forward);
                }
            }
        }
    }

    /// The routing decision was taken once, when the frame's first copy arrived: the
    /// queue it waited in says whether it is ours or forwarded.
    fn dispatch(self: &Arc<Self>, frame: UplinkFrame, rx: Vec<RxInfo>, forward: bool) {
        match (forward, self.roaming.get()) {
            (true, Some(r)) => {
                self.metrics.frames_deduplicated.inc();
                self.metrics.forwarded.inc();
                r.forward(frame, best_first(rx));
            }
            _ => self.process(&frame, rx),
        }
    }

    /// Whether this frame belongs to another member and is only forwarded from here.
    fn forwards(&self, frame: &UplinkFrame) -> bool {
        let Some(r) = self.roaming.get() else {
            return false;
        };
        match frame.kind() {
            UplinkKind::Data(d) => {
                !self.cfg.dev_addr_block.contains(d.dev_addr) && r.route_data(d.dev_addr) == Route::Forward
            }
            UplinkKind::Join(j) => {
                !matches!(self.store.get::<Devices>(&j.dev_eui), Ok(Some(_)))
                    && r.route_join(j.join_eui, j.dev_eui) == Route::Forward
            }
        }
    }

    /// Processes one deduplicated frame with every gateway's reception metadata.
    pub fn process(self: &Arc<Self>, frame: &UplinkFrame, rx: Vec<RxInfo>) {
        self.metrics.frames_deduplicated.inc();
        let rx = best_first(rx);
        let result = match (frame.kind(), frame.data()) {
            (UplinkKind::Join(j), _) => self.process_join(frame.signed(), *j, rx),
            (UplinkKind::Data(_), Some(d)) => self.process_data(d, rx),
            (UplinkKind::Data(_), None) => Err(Rejection::BadPhy),
        };
        if let Err(r) = result {
            debug!(reason = r.as_str(), "uplink rejected");
            self.metrics.reject(r);
        }
    }

    fn process_join(
        self: &Arc<Self>,
        signed: &[u8],
        j: JoinRequest,
        rx: Vec<RxInfo>,
    ) -> Result<(), Rejection> {
        let store_err = |e: entente_store::StoreError| {
            warn!(error = %e, "store error in join");
            Rejection::Store
        };
        let device = self
            .store
            .get::<Devices>(&j.dev_eui)
            .map_err(store_err)?
            .ok_or(Rejection::UnknownDevice)?;
        if device.join_eui != Some(j.join_eui) {
            return Err(Rejection::JoinEuiMismatch);
        }
        let v11 = device.profile.mac_version.is_11();
        let root = if v11 { device.nwk_key } else { device.app_key }.ok_or(Rejection::NoKey)?;
        // MIC first: a forged request must not consume a DevNonce.
        if crypto::join_request_mic(&root, signed) != j.mic {
            return Err(Rejection::MicFailed);
        }
        let _g = self.lock_sessions();
        let mut counters = self
            .store
            .get::<JoinState>(&j.dev_eui)
            .map_err(store_err)?
            .unwrap_or_default();
        let counter_nonces = device.profile.mac_version >= crate::device::MacVersion::V1_0_4;
        if counter_nonces {
            if counters.last_dev_nonce.is_some_and(|last| j.dev_nonce <= last) {
                return Err(Rejection::DevNonceReused);
            }
        } else if self
            .store
            .get::<UsedDevNonces>(&(j.dev_eui, j.dev_nonce))
            .map_err(store_err)?
            .is_some()
        {
            return Err(Rejection::DevNonceReused);
        }
        let dev_addr = self
            .allocate_dev_addr()
            .map_err(|_| Rejection::Store)?
            .ok_or(Rejection::DevAddrExhausted)?;
        counters.join_nonce = (counters.join_nonce + 1) & 0x00ff_ffff;
        counters.last_dev_nonce = Some(j.dev_nonce);
        counters.joins += 1;

        let (f_key, s_key, e_key, app_s_key) = if v11 {
            let app_key = device.app_key.unwrap_or(root);
            let k = crypto::derive_session_11(
                &root,
                &app_key,
                counters.join_nonce,
                phy::eui_le(j.join_eui.0),
                j.dev_nonce,
            );
            (
                k.f_nwk_s_int_key,
                k.s_nwk_s_int_key,
                k.nwk_s_enc_key,
                device.app_key.map(|_| k.app_s_key),
            )
        } else {
            let (n, a) = crypto::derive_session_10(&root, counters.join_nonce, self.cfg.net_id, j.dev_nonce);
            (n, n, n, Some(a))
        };
        let p = &device.profile;
        let now = self.now();
        let session = Session {
            dev_eui: j.dev_eui,
            dev_addr,
            mac_version: p.mac_version,
            class: p.class,
            f_nwk_s_int_key: f_key,
            s_nwk_s_int_key: s_key,
            nwk_s_enc_key: e_key,
            app_s_key: if device.member_keeps_app_s_key {
                None
            } else {
                app_s_key
            },
            fcnt_up: None,
            n_fcnt_down: 0,
            a_fcnt_down: 0,
            rx_delay: p.rx_delay,
            rx1_dr_offset: p.rx1_dr_offset,
            rx2_dr: p.rx2_dr,
            pending_confirmed_down: None,
            last_seen: Some(now),
            last_gateway: rx.first().map(|r| r.gateway),
            battery: None,
            margin: None,
            snr_history: Vec::new(),
            data_rate: rx
                .first()
                .and_then(|r| Eu868::data_rate_index(r.data_rate))
                .unwrap_or(0),
            tx_power_index: 0,
            pending_mac: Vec::new(),
            created_at: now,
            last_dev_status_req: None,
            channels_configured: true,
        };
        let params = JoinAcceptParams {
            join_nonce: counters.join_nonce,
            net_id: self.cfg.net_id,
            dev_addr,
            rx1_dr_offset: p.rx1_dr_offset,
            rx2_dr: p.rx2_dr,
            rx_delay: p.rx_delay,
            opt_neg: v11,
            cflist: true,
        };
        let accept = join::build_accept(&params, &root, j.dev_eui, j.join_eui, j.dev_nonce);

        let write = || -> Result<(), entente_store::StoreError> {
            let mut batch = self.store.batch();
            if let Some(old) = self.store.get::<Sessions>(&j.dev_eui)? {
                batch.delete::<DevAddrIndex>(&(old.dev_addr, j.dev_eui))?;
            }
            batch.put::<DevAddrIndex>(&(dev_addr, j.dev_eui), &())?;
            batch.put::<Sessions>(&j.dev_eui, &session)?;
            batch.put::<JoinState>(&j.dev_eui, &counters)?;
            if !counter_nonces {
                batch.put::<UsedDevNonces>(&(j.dev_eui, j.dev_nonce), &())?;
            }
            // Joins are rare and guard against nonce replay: make them durable.
            self.store.write(batch, Durability::Sync)
        };
        write().map_err(store_err)?;
        drop(_g);
        self.metrics.joins_accepted.inc();
        info!(dev_eui = %j.dev_eui, dev_addr = %dev_addr, version = %p.mac_version, "join accepted");

        let up_dr = rx
            .first()
            .and_then(|r| Eu868::data_rate_index(r.data_rate))
            .unwrap_or(0);
        self.spawn_class_a(
            DownlinkPlan {
                dev_eui: j.dev_eui,
                phy_payload: accept,
                kind: "join_accept",
                rx1: Window::rx1(Eu868::JOIN_ACCEPT_DELAY1, up_dr, 0),
                rx2: Window::rx2(Eu868::JOIN_ACCEPT_DELAY2, Eu868::RX2_DATA_RATE),
                queue_item: None,
            },
            rx,
        );
        Ok(())
    }

    fn allocate_dev_addr(&self) -> Result<Option<entente_model::DevAddr>, entente_store::StoreError> {
        for _ in 0..64 {
            let a = self.cfg.dev_addr_block.random();
            let mut used = false;
            if let Some(r) = self
                .store
                .range_from::<DevAddrIndex>(&(a, DevEui([0; 8])))?
                .next()
            {
                used = r?.0.0 == a;
            }
            if !used {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// Finds the session whose keys verify the MIC among the devices sharing the DevAddr.
    fn match_session(&self, f: &DataFrame<'_>, dr: u8, ch: u8) -> Result<Option<(Session, u32)>, Rejection> {
        let store_err = |_| Rejection::Store;
        let mut any = false;
        for r in self
            .store
            .range_from::<DevAddrIndex>(&(f.dev_addr, DevEui([0; 8])))
            .map_err(store_err)?
        {
            let ((addr, eui), ()) = r.map_err(store_err)?;
            if addr != f.dev_addr {
                break;
            }
            any = true;
            let Some(s) = self.store.get::<Sessions>(&eui).map_err(store_err)? else {
                continue;
            };
            let full = s.full_fcnt(f.fcnt16);
            // The 32-bit counter is in the MIC: an old frame replayed only verifies with the
            // counter it was sent with, one 16-bit epoch back.
            let previous_epoch = full
                .checked_sub(0x1_0000)
                .filter(|p| s.fcnt_up.is_some_and(|l| *p <= l));
            for candidate in std::iter::once(full).chain(previous_epoch) {
                let mic = if s.mac_version.is_11() {
                    let conf = if f.fctrl.ack() {
                        s.pending_confirmed_down.unwrap_or(0) as u16
                    } else {
                        0
                    };
                    let ctx = Uplink11Ctx {
                        conf_fcnt: conf,
                        tx_dr: dr,
                        tx_ch: ch,
                    };
                    crypto::uplink_mic_11(
                        &s.f_nwk_s_int_key,
                        &s.s_nwk_s_int_key,
                        ctx,
                        f.dev_addr.0,
                        candidate,
                        f.signed,
                    )
                } else {
                    crypto::uplink_mic_10(&s.f_nwk_s_int_key, f.dev_addr.0, candidate, f.signed)
                };
                if mic == f.mic {
                    return Ok(Some((s, candidate)));
                }
            }
        }
        if any {
            Err(Rejection::MicFailed)
        } else {
            Err(Rejection::UnknownDevAddr)
        }
    }

    fn process_data(self: &Arc<Self>, f: DataFrame<'_>, rx: Vec<RxInfo>) -> Result<(), Rejection> {
        let Some(best) = rx.first() else {
            return Err(Rejection::BadPhy);
        };
        let dr = Eu868::data_rate_index(best.data_rate).unwrap_or(0);
        let ch = channel_index(best.frequency_hz);
        let store_err = |e: entente_store::StoreError| {
            warn!(error = %e, "store error in uplink");
            Rejection::Store
        };
        let guard = self.lock_sessions();
        let (mut s, full) = self.match_session(&f, dr, ch)?.ok_or(Rejection::MicFailed)?;
        let confirmed = f.confirmed();
        match s.check_fcnt(full, f.fcnt16) {
            FCntCheck::Replay => return Err(Rejection::Replay),
            FCntCheck::TooFarAhead => return Err(Rejection::FCntGap),
            FCntCheck::Retransmission(_) => {
                self.metrics.retransmissions.inc();
                if confirmed {
                    // The device missed our ACK: acknowledge again, deliver nothing twice.
                    let plan = self
                        .plan_class_a(&mut s, &f, full, dr, true, &[], false)
                        .map_err(|_| Rejection::Store)?;
                    self.store
                        .put::<Sessions>(&s.dev_eui, &s, Durability::Buffered)
                        .map_err(store_err)?;
                    drop(guard);
                    if let Some(p) = plan {
                        self.spawn_class_a(p, rx);
                    }
                }
                return Ok(());
            }
            FCntCheck::Fresh(_) => {}
        }
        let device = self.store.get::<Devices>(&s.dev_eui).map_err(store_err)?;
        let now = self.now();

        // MAC commands: FOpts (encrypted in 1.1) or an FPort 0 payload.
        let mut mac_bytes = f.fopts.to_vec();
        if s.mac_version.is_11() && !mac_bytes.is_empty() {
            crypto::crypt_fopts_11(
                &s.nwk_s_enc_key,
                Dir::Up,
                false,
                f.dev_addr.0,
                full,
                &mut mac_bytes,
            );
        }
        if f.fport == Some(0) {
            mac_bytes = f.frm_payload.to_vec();
            crypto::crypt_frm_payload(&s.nwk_s_enc_key, Dir::Up, f.dev_addr.0, full, &mut mac_bytes);
        }
        let (commands, mac_err) = mac::parse_up(&mac_bytes);
        if let Some(e) = mac_err {
            debug!(dev_eui = %s.dev_eui, error = %e, "MAC commands cut short");
        }
        let mut answers = Vec::new();
        for c in &commands {
            self.handle_mac(&mut s, c, best, &rx, &mut answers, device.as_ref());
        }

        // Acknowledgement of our confirmed downlink.
        let mut batch = self.store.batch();
        if f.fctrl.ack() {
            if let Some(fc) = s.pending_confirmed_down.take() {
                for r in self
                    .store
                    .range_from::<DownlinkQueue>(&(s.dev_eui, 0))
                    .map_err(store_err)?
                {
                    let (k, item) = r.map_err(store_err)?;
                    if k.0 != s.dev_eui {
                        break;
                    }
                    if item.sent_fcnt == Some(fc) {
                        batch.delete::<DownlinkQueue>(&k).map_err(store_err)?;
                        self.metrics
                            .downlinks
                            .get_or_create(&KindLabel {
                                kind: "confirmed_acked",
                            })
                            .inc();
                    }
                }
            }
        }

        // Application payload.
        let (payload, encrypted) = match f.fport {
            Some(p) if p > 0 => match &s.app_s_key {
                Some(k) => {
                    let mut p = f.frm_payload.to_vec();
                    crypto::crypt_frm_payload(k, Dir::Up, f.dev_addr.0, full, &mut p);
                    (p, false)
                }
                None => (f.frm_payload.to_vec(), true),
            },
            _ => (Vec::new(), false),
        };

        s.fcnt_up = Some(full);
        s.last_seen = Some(now);
        s.last_gateway = Some(best.gateway);
        s.data_rate = dr;
        s.snr_history.push(best.snr);
        if s.snr_history.len() > ADR_HISTORY {
            s.snr_history.remove(0);
        }

        // Network-initiated commands.
        let profile = device.as_ref().map(|d| d.profile.clone()).unwrap_or_default();
        if f.fctrl.adr() && profile.adr && self.cfg.adr {
            if let Some(c) = adr_step(&mut s, dr) {
                answers.push(c);
            }
        }
        if s.last_dev_status_req
            .is_none_or(|t| now - t >= self.cfg.dev_status_interval)
        {
            s.last_dev_status_req = Some(now);
            answers.push(DownCommand::DevStatusReq);
        }
        if s.rx_delay != profile.rx_delay {
            answers.push(DownCommand::RxTimingSetupReq {
                delay: profile.rx_delay,
            });
        }
        if s.rx1_dr_offset != profile.rx1_dr_offset || s.rx2_dr != profile.rx2_dr {
            answers.push(DownCommand::RxParamSetupReq {
                rx1_dr_offset: profile.rx1_dr_offset,
                rx2_dr: profile.rx2_dr,
                frequency_hz: Eu868::RX2_FREQUENCY_HZ,
            });
        }
        if !s.channels_configured {
            for (i, hz) in join::EU868_CFLIST_HZ.iter().enumerate() {
                answers.push(DownCommand::NewChannelReq {
                    ch_index: 3 + i as u8,
                    frequency_hz: *hz,
                    min_dr: 0,
                    max_dr: 5,
                });
            }
        }
        let mut mac_out = Vec::new();
        for a in &answers {
            a.encode_into(&mut mac_out);
        }

        let record = UplinkRecord {
            seq: self.seq(),
            dev_eui: s.dev_eui,
            dev_addr: f.dev_addr,
            fcnt: full,
            fport: f.fport,
            payload,
            encrypted,
            confirmed,
            data_rate: dr,
            frequency_hz: best.frequency_hz,
            rx: rx.clone(),
            received_at: now,
        };
        let class_c = s.class == DeviceClass::C;
        let plan = self
            .plan_class_a(&mut s, &f, full, dr, confirmed, &mac_out, true)
            .map_err(|_| Rejection::Store)?;
        if let Some(p) = &plan {
            if let Some(item) = &p.queue_item {
                batch
                    .put::<DownlinkQueue>(&(s.dev_eui, item.id), item)
                    .map_err(store_err)?;
            }
        }
        batch.put::<Sessions>(&s.dev_eui, &s).map_err(store_err)?;
        batch
            .put::<Uplinks>(&(s.dev_eui, record.seq), &record)
            .map_err(store_err)?;
        let hook = self.hook.get();
        if let (Some(h), Some(d)) = (hook, device.as_ref()) {
            h.on_uplink(&mut batch, d, &record).map_err(store_err)?;
        }
        self.store.write(batch, Durability::Buffered).map_err(store_err)?;
        drop(guard);
        if let Some(h) = hook {
            h.committed();
        }
        self.metrics.uplinks_accepted.inc();
        debug!(dev_eui = %s.dev_eui, fcnt = full, gateways = rx.len(), "uplink accepted");
        match plan {
            Some(p) => self.spawn_class_a(p, rx),
            // A Class C device may have downlinks that waited for its first uplink.
            None if class_c => self.send_class_c(s.dev_eui),
            None => {}
        }
        Ok(())
    }

    fn handle_mac(
        &self,
        s: &mut Session,
        c: &UpCommand,
        best: &RxInfo,
        rx: &[RxInfo],
        answers: &mut Vec<DownCommand>,
        device: Option<&crate::device::Device>,
    ) {
        let kind = match c {
            UpCommand::LinkCheckReq => {
                let sf = match best.data_rate {
                    entente_region::DataRate::Lora { sf, .. } => sf.get(),
                    _ => 7,
                };
                let margin = (best.snr - demod_floor_db(sf)).clamp(0.0, 254.0) as u8;
                let gws: std::collections::HashSet<GatewayEui> = rx.iter().map(|r| r.gateway).collect();
                answers.push(DownCommand::LinkCheckAns {
                    margin,
                    gw_count: gws.len().min(255) as u8,
                });
                "link_check_req"
            }
            UpCommand::DevStatusAns { battery, margin } => {
                s.battery = Some(*battery);
                s.margin = Some(*margin);
                "dev_status_ans"
            }
            UpCommand::DeviceTimeReq => {
                let gps_ms = best.gps_time_ms.unwrap_or_else(|| {
                    // Unix to GPS epoch (1980-01-06) plus the 18 leap seconds since then.
                    (best.received_at.timestamp_millis() - 315_964_800_000 + 18_000).max(0) as u64
                });
                answers.push(DownCommand::DeviceTimeAns {
                    gps_seconds: (gps_ms / 1000) as u32,
                    fraction: ((gps_ms % 1000) * 256 / 1000) as u8,
                });
                "device_time_req"
            }
            UpCommand::LinkAdrAns {
                power_ack,
                dr_ack,
                ch_mask_ack,
            } => {
                if !(*power_ack && *dr_ack && *ch_mask_ack) {
                    s.snr_history.clear();
                }
                "link_adr_ans"
            }
            UpCommand::RxParamSetupAns { status } => {
                if status & 0x07 == 0x07 {
                    if let Some(d) = device {
                        s.rx1_dr_offset = d.profile.rx1_dr_offset;
                        s.rx2_dr = d.profile.rx2_dr;
                    }
                }
                "rx_param_setup_ans"
            }
            UpCommand::RxTimingSetupAns => {
                if let Some(d) = device {
                    s.rx_delay = d.profile.rx_delay;
                }
                "rx_timing_setup_ans"
            }
            UpCommand::NewChannelAns { status } => {
                if status & 0x03 == 0x03 {
                    s.channels_configured = true;
                }
                "new_channel_ans"
            }
            UpCommand::ResetInd { minor } => {
                answers.push(DownCommand::ResetConf {
                    minor: (*minor).min(1),
                });
                // An ABP 1.1 device that resets starts its counters again.
                s.n_fcnt_down = 0;
                s.a_fcnt_down = 0;
                "reset_ind"
            }
            UpCommand::RekeyInd { minor } => {
                answers.push(DownCommand::RekeyConf {
                    minor: (*minor).min(1),
                });
                "rekey_ind"
            }
            UpCommand::DutyCycleAns => "duty_cycle_ans",
            UpCommand::TxParamSetupAns => "tx_param_setup_ans",
            UpCommand::DlChannelAns { .. } => "dl_channel_ans",
            UpCommand::AdrParamSetupAns => "adr_param_setup_ans",
            UpCommand::RejoinParamSetupAns { .. } => "rejoin_param_setup_ans",
        };
        self.metrics.mac_commands.get_or_create(&KindLabel { kind }).inc();
    }
}

/// A simple SNR-margin ADR: raise the data rate while the best recent SNR leaves room.
fn adr_step(s: &mut Session, dr: u8) -> Option<DownCommand> {
    if s.snr_history.len() < ADR_HISTORY {
        return None;
    }
    let max = s.snr_history.iter().copied().fold(f32::MIN, f32::max);
    let headroom = max - demod_floor_db(sf_of(dr)) - ADR_MARGIN_DB;
    let steps = (headroom / 2.5).floor() as i32;
    if steps <= 0 || dr >= 5 {
        return None;
    }
    let new_dr = (dr as i32 + steps).min(5) as u8;
    s.snr_history.clear();
    Some(DownCommand::LinkAdrReq {
        data_rate: new_dr,
        tx_power: s.tx_power_index,
        ch_mask: if s.channels_configured { 0x00ff } else { 0x0007 },
        ch_mask_cntl: 0,
        nb_trans: 1,
    })
}

impl From<LnsError> for Rejection {
    fn from(_: LnsError) -> Self {
        Rejection::Store
    }
}
