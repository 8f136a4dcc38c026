//! A simulated end device with real LoRaWAN crypto (1.0.0–1.0.4 and 1.1, OTAA and ABP).
//!
//! It builds the frames a device would put on the air and checks and answers what the
//! network sends back, the way a device's LoRaWAN stack does.

use entente_frame::crypto::{self, Dir, Uplink11Ctx};
use entente_frame::mac::{self, DownCommand};
use entente_frame::phy::{self, MType, Phy};
use entente_frame::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, JoinEui};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("not joined")]
    NotJoined,
    #[error("no join request outstanding")]
    NoJoinPending,
    #[error("bad frame: {0}")]
    BadFrame(String),
    #[error("MIC check failed")]
    BadMic,
    #[error("frame for another DevAddr")]
    OtherDevice,
    #[error("downlink counter went backwards")]
    OldCounter,
}

#[derive(Debug, Clone)]
pub struct DeviceSession {
    pub dev_addr: DevAddr,
    pub f_nwk_s_int_key: AesKey,
    pub s_nwk_s_int_key: AesKey,
    pub nwk_s_enc_key: AesKey,
    pub app_s_key: AesKey,
    /// Next uplink FCnt.
    pub fcnt_up: u32,
    pub last_n_fcnt_down: Option<u32>,
    pub last_a_fcnt_down: Option<u32>,
    pub rx_delay: u8,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    pub opt_neg: bool,
}

impl DeviceSession {
    /// A LoRaWAN 1.0.x ABP session: one network key, counters at zero, EU868 defaults.
    pub fn abp_10(dev_addr: DevAddr, nwk_s_key: AesKey, app_s_key: AesKey) -> Self {
        DeviceSession {
            dev_addr,
            f_nwk_s_int_key: nwk_s_key,
            s_nwk_s_int_key: nwk_s_key,
            nwk_s_enc_key: nwk_s_key,
            app_s_key,
            fcnt_up: 0,
            last_n_fcnt_down: None,
            last_a_fcnt_down: None,
            rx_delay: 1,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            opt_neg: false,
        }
    }
}

/// What the device made of a downlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub confirmed: bool,
    pub ack: bool,
    pub fcnt: u32,
    pub fport: Option<u8>,
    pub payload: Vec<u8>,
    pub mac: Vec<DownCommand>,
}

#[derive(Debug, Clone)]
pub struct SimDevice {
    pub dev_eui: DevEui,
    pub join_eui: JoinEui,
    pub version: MacVersion,
    pub class: DeviceClass,
    pub app_key: AesKey,
    pub nwk_key: AesKey,
    pub session: Option<DeviceSession>,
    next_dev_nonce: u16,
    pending_join: Option<u16>,
    /// MAC commands (answers or requests) for the next uplink's FOpts.
    pending_mac: Vec<u8>,
    /// FCnt of a confirmed downlink to acknowledge in the next uplink.
    ack_pending: Option<u32>,
    pub battery: u8,
}

impl SimDevice {
    pub fn otaa(
        version: MacVersion,
        class: DeviceClass,
        dev_eui: DevEui,
        join_eui: JoinEui,
        app_key: AesKey,
        nwk_key: AesKey,
    ) -> Self {
        SimDevice {
            dev_eui,
            join_eui,
            version,
            class,
            app_key,
            nwk_key: if version.is_11() { nwk_key } else { app_key },
            session: None,
            next_dev_nonce: if version >= MacVersion::V1_0_4 {
                0
            } else {
                fastrand::u16(..)
            },
            pending_join: None,
            pending_mac: Vec::new(),
            ack_pending: None,
            battery: 200,
        }
    }

    pub fn abp(version: MacVersion, class: DeviceClass, dev_eui: DevEui, session: DeviceSession) -> Self {
        SimDevice {
            dev_eui,
            join_eui: JoinEui([0; 8]),
            version,
            class,
            app_key: AesKey::default(),
            nwk_key: AesKey::default(),
            session: Some(session),
            next_dev_nonce: 0,
            pending_join: None,
            pending_mac: Vec::new(),
            ack_pending: None,
            battery: 200,
        }
    }

    /// Builds a JoinRequest with a fresh DevNonce (a counter from 1.0.4, random before).
    pub fn join_request(&mut self) -> Vec<u8> {
        let nonce = self.next_dev_nonce;
        self.next_dev_nonce = if self.version >= MacVersion::V1_0_4 {
            nonce.wrapping_add(1)
        } else {
            fastrand::u16(..)
        };
        self.join_request_with_nonce(nonce)
    }

    /// A JoinRequest with a chosen DevNonce (to test replay protection).
    pub fn join_request_with_nonce(&mut self, nonce: u16) -> Vec<u8> {
        self.pending_join = Some(nonce);
        let mut f = phy::build_join_request(self.join_eui, self.dev_eui, nonce);
        let key = if self.version.is_11() {
            self.nwk_key
        } else {
            self.app_key
        };
        let mic = crypto::join_request_mic(&key, &f);
        f.extend_from_slice(&mic);
        f
    }

    /// Checks and applies a JoinAccept, deriving the session keys.
    pub fn accept_join(&mut self, phy_payload: &[u8]) -> Result<(), DeviceError> {
        let dev_nonce = self.pending_join.ok_or(DeviceError::NoJoinPending)?;
        if phy_payload.len() != 17 && phy_payload.len() != 33 {
            return Err(DeviceError::BadFrame(format!(
                "join accept of {} bytes",
                phy_payload.len()
            )));
        }
        if MType::from_mhdr(phy_payload[0]) != MType::JoinAccept {
            return Err(DeviceError::BadFrame("not a join accept".into()));
        }
        let key = if self.version.is_11() {
            self.nwk_key
        } else {
            self.app_key
        };
        let mut b = phy_payload.to_vec();
        crypto::decrypt_join_accept(&key, &mut b[1..]);
        let (msg, mic) = b.split_at(b.len() - 4);
        let join_nonce = u32::from_le_bytes([msg[1], msg[2], msg[3], 0]);
        let net_id = u32::from_le_bytes([msg[4], msg[5], msg[6], 0]);
        let dev_addr = DevAddr(u32::from_le_bytes([msg[7], msg[8], msg[9], msg[10]]));
        let dl = msg[11];
        let opt_neg = dl & 0x80 != 0 && self.version.is_11();
        let expected = if opt_neg {
            let js = crypto::js_int_key(&self.nwk_key, phy::eui_le(self.dev_eui.0));
            crypto::join_accept_mic_11(&js, 0xff, phy::eui_le(self.join_eui.0), dev_nonce, msg)
        } else {
            crypto::join_accept_mic_10(&key, msg)
        };
        if expected != mic {
            return Err(DeviceError::BadMic);
        }
        let (f, s, e, a) = if opt_neg {
            let k = crypto::derive_session_11(
                &self.nwk_key,
                &self.app_key,
                join_nonce,
                phy::eui_le(self.join_eui.0),
                dev_nonce,
            );
            (k.f_nwk_s_int_key, k.s_nwk_s_int_key, k.nwk_s_enc_key, k.app_s_key)
        } else {
            let (n, a) = crypto::derive_session_10(&key, join_nonce, net_id, dev_nonce);
            (n, n, n, a)
        };
        self.pending_join = None;
        self.pending_mac.clear();
        self.ack_pending = None;
        self.session = Some(DeviceSession {
            dev_addr,
            f_nwk_s_int_key: f,
            s_nwk_s_int_key: s,
            nwk_s_enc_key: e,
            app_s_key: a,
            fcnt_up: 0,
            last_n_fcnt_down: None,
            last_a_fcnt_down: None,
            rx_delay: msg[12].max(1),
            rx1_dr_offset: (dl >> 4) & 0x07,
            rx2_dr: dl & 0x0f,
            opt_neg,
        });
        Ok(())
    }

    /// Queues MAC commands (e.g. `[0x02]` for LinkCheckReq) for the next uplink.
    pub fn queue_mac(&mut self, bytes: &[u8]) {
        self.pending_mac.extend_from_slice(bytes);
    }

    pub fn set_fcnt_up(&mut self, fcnt: u32) -> Result<(), DeviceError> {
        self.session.as_mut().ok_or(DeviceError::NotJoined)?.fcnt_up = fcnt;
        Ok(())
    }

    /// Builds a data uplink sent at data rate `dr` on channel index `ch`.
    pub fn uplink(
        &mut self,
        fport: u8,
        payload: &[u8],
        confirmed: bool,
        dr: u8,
        ch: u8,
    ) -> Result<Vec<u8>, DeviceError> {
        let v11 = self.version.is_11();
        let ack = self.ack_pending.take();
        let mac = std::mem::take(&mut self.pending_mac);
        let s = self.session.as_mut().ok_or(DeviceError::NotJoined)?;
        let fcnt = s.fcnt_up;
        s.fcnt_up = s.fcnt_up.wrapping_add(1);
        let mut fopts = mac;
        fopts.truncate(15);
        if v11 && !fopts.is_empty() {
            crypto::crypt_fopts_11(&s.nwk_s_enc_key, Dir::Up, false, s.dev_addr.0, fcnt, &mut fopts);
        }
        let mut enc = payload.to_vec();
        crypto::crypt_frm_payload(&s.app_s_key, Dir::Up, s.dev_addr.0, fcnt, &mut enc);
        let mtype = if confirmed {
            MType::ConfirmedUp
        } else {
            MType::UnconfirmedUp
        };
        let fctrl = 0x80 | if ack.is_some() { 0x20 } else { 0 };
        let mut f = phy::build_data(mtype, s.dev_addr, fctrl, fcnt, &fopts, Some(fport), &enc);
        let mic = if v11 {
            let ctx = Uplink11Ctx {
                conf_fcnt: ack.unwrap_or(0) as u16,
                tx_dr: dr,
                tx_ch: ch,
            };
            crypto::uplink_mic_11(
                &s.f_nwk_s_int_key,
                &s.s_nwk_s_int_key,
                ctx,
                s.dev_addr.0,
                fcnt,
                &f,
            )
        } else {
            crypto::uplink_mic_10(&s.f_nwk_s_int_key, s.dev_addr.0, fcnt, &f)
        };
        f.extend_from_slice(&mic);
        Ok(f)
    }

    /// Checks and decrypts a data downlink, answering its MAC commands in the next uplink.
    pub fn receive(&mut self, phy_payload: &[u8]) -> Result<Received, DeviceError> {
        let v11 = self.version.is_11();
        let s = self.session.as_mut().ok_or(DeviceError::NotJoined)?;
        let d = match phy::parse(phy_payload) {
            Ok(Phy::Data(d)) if matches!(d.mtype, MType::UnconfirmedDown | MType::ConfirmedDown) => d,
            Ok(_) => return Err(DeviceError::BadFrame("not a data downlink".into())),
            Err(e) => return Err(DeviceError::BadFrame(e.to_string())),
        };
        if d.dev_addr != s.dev_addr {
            return Err(DeviceError::OtherDevice);
        }
        let app = v11 && d.fport.is_some_and(|p| p > 0);
        let last = if app {
            s.last_a_fcnt_down
        } else {
            s.last_n_fcnt_down
        };
        let mut full = (last.unwrap_or(0) & 0xffff_0000) | d.fcnt16 as u32;
        if last.is_some_and(|l| full <= l) {
            full = full.wrapping_add(0x1_0000);
        }
        let conf = if d.fctrl.ack() {
            (s.fcnt_up.wrapping_sub(1)) as u16
        } else {
            0
        };
        let mic = if v11 {
            crypto::downlink_mic(&s.s_nwk_s_int_key, conf, d.dev_addr.0, full, d.signed)
        } else {
            crypto::downlink_mic(&s.f_nwk_s_int_key, 0, d.dev_addr.0, full, d.signed)
        };
        if mic != d.mic {
            return Err(DeviceError::BadMic);
        }
        if app {
            s.last_a_fcnt_down = Some(full);
        } else {
            s.last_n_fcnt_down = Some(full);
        }
        let mut mac_bytes = d.fopts.to_vec();
        if v11 && !mac_bytes.is_empty() {
            crypto::crypt_fopts_11(
                &s.nwk_s_enc_key,
                Dir::Down,
                app,
                d.dev_addr.0,
                full,
                &mut mac_bytes,
            );
        }
        let mut payload = d.frm_payload.to_vec();
        match d.fport {
            Some(0) => {
                crypto::crypt_frm_payload(&s.nwk_s_enc_key, Dir::Down, d.dev_addr.0, full, &mut payload);
                mac_bytes = std::mem::take(&mut payload);
            }
            Some(_) => crypto::crypt_frm_payload(&s.app_s_key, Dir::Down, d.dev_addr.0, full, &mut payload),
            None => {}
        }
        let cmds = mac::parse_down(&mac_bytes).map_err(|e| DeviceError::BadFrame(e.to_string()))?;
        let mut answers = Vec::new();
        for c in &cmds {
            match c {
                DownCommand::DevStatusReq => answers.extend_from_slice(&[0x06, self.battery, 10]),
                DownCommand::LinkAdrReq { .. } => answers.extend_from_slice(&[0x03, 0x07]),
                DownCommand::RxParamSetupReq {
                    rx1_dr_offset,
                    rx2_dr,
                    ..
                } => {
                    s.rx1_dr_offset = *rx1_dr_offset;
                    s.rx2_dr = *rx2_dr;
                    answers.extend_from_slice(&[0x05, 0x07]);
                }
                DownCommand::RxTimingSetupReq { delay } => {
                    s.rx_delay = (*delay).max(1);
                    answers.push(0x08);
                }
                DownCommand::NewChannelReq { .. } => answers.extend_from_slice(&[0x07, 0x03]),
                _ => {}
            }
        }
        self.pending_mac.extend_from_slice(&answers);
        let confirmed = d.mtype == MType::ConfirmedDown;
        if confirmed {
            self.ack_pending = Some(full);
        }
        Ok(Received {
            confirmed,
            ack: d.fctrl.ack(),
            fcnt: full,
            fport: d.fport,
            payload,
            mac: cmds,
        })
    }
}
