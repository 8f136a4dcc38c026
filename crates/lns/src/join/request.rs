//! A JoinRequest, step by step: the device and its root key, the MIC, the DevNonce, a
//! DevAddr, the next JoinNonce, the session keys, the JoinAccept, one durable batch, the
//! answer in the join windows.

use crate::session_index::SessionIndex;
use crate::uplink::Waiters;
use std::sync::Arc;

use entente_gateway::RxInfo;
use entente_model::{DevAddr, DevEui};
use entente_region::Eu868;
use entente_store::{Durability, StoreError};
use tracing::{info, warn};

use super::{JoinAcceptParams, build_accept};
use crate::crypto;
use crate::device::{Device, MacVersion};
use crate::downlink::{DownlinkPlan, Window};
use crate::keys::AesKey;
use crate::metrics::Rejection;
use crate::phy::{self, JoinRequest};
use crate::server::NetworkServer;
use crate::session::Session;
use crate::tables::{DevAddrIndex, Devices, JoinCounters, JoinState, Sessions, UsedDevNonces};

/// Random DevAddrs tried before the block is called exhausted.
const DEV_ADDR_TRIES: usize = 64;

fn store_err(e: StoreError) -> Rejection {
    warn!(error = %e, "store error in join");
    Rejection::Store
}

/// Session keys as the join derives them.
struct SessionKeys {
    f_nwk_s_int_key: AesKey,
    s_nwk_s_int_key: AesKey,
    nwk_s_enc_key: AesKey,
    /// None when the member keeps the AppKey (1.1).
    app_s_key: Option<AesKey>,
}

/// Everything one join's steps read and write.
pub(crate) struct JoinUplink<'a> {
    pub ns: &'a Arc<NetworkServer>,
    pub request: JoinRequest,
    /// MHDR..DevNonce, what the MIC covers.
    pub signed: &'a [u8],
    /// Every gateway's reception, best first.
    pub rx: Vec<RxInfo>,
    pub device: Device,
    /// AppKey for 1.0.x, NwkKey for 1.1.
    pub root: AesKey,
    pub counters: JoinCounters,
}

impl NetworkServer {
    pub(crate) fn process_join(
        self: &Arc<Self>,
        signed: &[u8],
        j: JoinRequest,
        rx: Vec<RxInfo>,
        waiters: &mut Waiters,
    ) -> Result<(), Rejection> {
        let mut join = JoinUplink::load(self, signed, j, rx)?;
        join.check_mic()?;
        let mut guard = self.lock_sessions();
        join.check_dev_nonce()?;
        waiters.charge(j.dev_eui)?;
        let dev_addr = join.allocate_dev_addr()?;
        join.next_join_nonce();
        let session = join.new_session(dev_addr);
        let accept = join.build_accept(dev_addr);
        join.persist(&mut guard, &session)?;
        drop(guard);
        join.accepted(dev_addr);
        join.answer(accept);
        Ok(())
    }
}

impl<'a> JoinUplink<'a> {
    /// The device, its JoinEUI and the root key the request is signed with.
    pub(crate) fn load(
        ns: &'a Arc<NetworkServer>,
        signed: &'a [u8],
        request: JoinRequest,
        rx: Vec<RxInfo>,
    ) -> Result<Self, Rejection> {
        let device = ns
            .store
            .get::<Devices>(&request.dev_eui)
            .map_err(store_err)?
            .ok_or(Rejection::UnknownDevice)?;
        if device.join_eui != Some(request.join_eui) {
            return Err(Rejection::JoinEuiMismatch);
        }
        let root = if device.profile.mac_version.is_11() {
            device.nwk_key
        } else {
            device.app_key
        };
        Ok(JoinUplink {
            ns,
            request,
            signed,
            rx,
            root: root.ok_or(Rejection::NoKey)?,
            device,
            counters: JoinCounters::default(),
        })
    }

    fn v11(&self) -> bool {
        self.device.profile.mac_version.is_11()
    }

    /// From 1.0.4 DevNonce is a counter; before it is random and every one is remembered.
    fn counter_nonces(&self) -> bool {
        self.device.profile.mac_version >= MacVersion::V1_0_4
    }

    fn dev_eui(&self) -> DevEui {
        self.request.dev_eui
    }

    /// Checked first: a forged request must not consume a DevNonce.
    pub(crate) fn check_mic(&self) -> Result<(), Rejection> {
        if crypto::join_request_mic(&self.root, self.signed) != self.request.mic {
            return Err(Rejection::MicFailed);
        }
        Ok(())
    }

    /// Loads the join counters and refuses a DevNonce already used.
    pub(crate) fn check_dev_nonce(&mut self) -> Result<(), Rejection> {
        let store = &self.ns.store;
        let nonce = self.request.dev_nonce;
        self.counters = store
            .get::<JoinState>(&self.dev_eui())
            .map_err(store_err)?
            .unwrap_or_default();
        let reused = if self.counter_nonces() {
            self.counters.last_dev_nonce.is_some_and(|last| nonce <= last)
        } else {
            store
                .get::<UsedDevNonces>(&(self.dev_eui(), nonce))
                .map_err(store_err)?
                .is_some()
        };
        if reused {
            return Err(Rejection::DevNonceReused);
        }
        Ok(())
    }

    /// A random DevAddr of the block that no session uses.
    pub(crate) fn allocate_dev_addr(&self) -> Result<DevAddr, Rejection> {
        let store = &self.ns.store;
        for _ in 0..DEV_ADDR_TRIES {
            let a = self.ns.cfg.dev_addr_block.random();
            let first = store
                .range_from::<DevAddrIndex>(&(a, DevEui([0; 8])))
                .map_err(|_| Rejection::Store)?
                .next();
            let used = match first {
                Some(r) => r.map_err(|_| Rejection::Store)?.0.0 == a,
                None => false,
            };
            if !used {
                return Ok(a);
            }
        }
        Err(Rejection::DevAddrExhausted)
    }

    /// JoinNonce is 24 bits and grows with every accepted join.
    pub(crate) fn next_join_nonce(&mut self) {
        let c = &mut self.counters;
        c.join_nonce = (c.join_nonce + 1) & 0x00ff_ffff;
        c.last_dev_nonce = Some(self.request.dev_nonce);
        c.joins += 1;
    }

    fn derive_keys(&self) -> SessionKeys {
        let (j, nonce) = (&self.request, self.counters.join_nonce);
        if !self.v11() {
            let (n, a) = crypto::derive_session_10(&self.root, nonce, self.ns.cfg.net_id, j.dev_nonce);
            return SessionKeys {
                f_nwk_s_int_key: n,
                s_nwk_s_int_key: n,
                nwk_s_enc_key: n,
                app_s_key: Some(a),
            };
        }
        let app_key = self.device.app_key.unwrap_or(self.root);
        let k = crypto::derive_session_11(
            &self.root,
            &app_key,
            nonce,
            phy::eui_le(j.join_eui.0),
            j.dev_nonce,
        );
        SessionKeys {
            f_nwk_s_int_key: k.f_nwk_s_int_key,
            s_nwk_s_int_key: k.s_nwk_s_int_key,
            nwk_s_enc_key: k.nwk_s_enc_key,
            app_s_key: self.device.app_key.map(|_| k.app_s_key),
        }
    }

    fn uplink_dr(&self) -> u8 {
        self.rx
            .first()
            .and_then(|r| Eu868::data_rate_index(r.data_rate))
            .unwrap_or(0)
    }

    /// A fresh session on the profile's windows, the CFList channels already known.
    pub(crate) fn new_session(&self, dev_addr: DevAddr) -> Session {
        let keys = self.derive_keys();
        let (p, now) = (&self.device.profile, self.ns.now());
        Session {
            dev_eui: self.dev_eui(),
            dev_addr,
            mac_version: p.mac_version,
            class: p.class,
            f_nwk_s_int_key: keys.f_nwk_s_int_key,
            s_nwk_s_int_key: keys.s_nwk_s_int_key,
            nwk_s_enc_key: keys.nwk_s_enc_key,
            app_s_key: keys.app_s_key.filter(|_| !self.device.member_keeps_app_s_key),
            fcnt_up: None,
            n_fcnt_down: 0,
            a_fcnt_down: 0,
            rx_delay: p.rx_delay,
            rx1_dr_offset: p.rx1_dr_offset,
            rx2_dr: p.rx2_dr,
            pending_confirmed_down: None,
            last_seen: Some(now),
            last_gateway: self.rx.first().map(|r| r.gateway),
            battery: None,
            margin: None,
            snr_history: Vec::new(),
            data_rate: self.uplink_dr(),
            tx_power_index: 0,
            pending_mac: Vec::new(),
            created_at: now,
            last_dev_status_req: None,
            channels_configured: true,
        }
    }

    pub(crate) fn build_accept(&self, dev_addr: DevAddr) -> Vec<u8> {
        let p = &self.device.profile;
        let params = JoinAcceptParams {
            join_nonce: self.counters.join_nonce,
            net_id: self.ns.cfg.net_id,
            dev_addr,
            rx1_dr_offset: p.rx1_dr_offset,
            rx2_dr: p.rx2_dr,
            rx_delay: p.rx_delay,
            opt_neg: self.v11(),
            cflist: true,
        };
        let j = &self.request;
        build_accept(&params, &self.root, j.dev_eui, j.join_eui, j.dev_nonce)
    }

    /// The new session replaces the old one and its DevAddr; joins are rare and guard
    /// against nonce replay, so the batch is durable.
    pub(crate) fn persist(&self, index: &mut SessionIndex, session: &Session) -> Result<(), Rejection> {
        let mut write = || -> Result<(), StoreError> {
            let (store, eui) = (&self.ns.store, self.dev_eui());
            let mut batch = store.batch();
            let old = store.get::<Sessions>(&eui)?;
            if let Some(old) = &old {
                batch.delete::<DevAddrIndex>(&(old.dev_addr, eui))?;
            }
            batch.put::<DevAddrIndex>(&(session.dev_addr, eui), &())?;
            batch.put::<Sessions>(&eui, session)?;
            batch.put::<JoinState>(&eui, &self.counters)?;
            if !self.counter_nonces() {
                batch.put::<UsedDevNonces>(&(eui, self.request.dev_nonce), &())?;
            }
            store.write(batch, Durability::Sync)?;
            if let Some(old) = old {
                index.addr_changed(old.dev_addr);
            }
            index.addr_changed(session.dev_addr);
            Ok(())
        };
        write().map_err(store_err)
    }

    pub(crate) fn accepted(&self, dev_addr: DevAddr) {
        self.ns.metrics.joins_accepted.inc();
        let version = self.device.profile.mac_version;
        info!(dev_eui = %self.dev_eui(), dev_addr = %dev_addr, version = %version, "join accepted");
    }

    /// The JoinAccept in RX1 (5 s, the uplink's data rate) or RX2 (6 s, DR0).
    pub(crate) fn answer(self, accept: Vec<u8>) {
        let plan = DownlinkPlan {
            dev_eui: self.dev_eui(),
            phy_payload: accept,
            kind: "join_accept",
            rx1: Window::rx1(Eu868::JOIN_ACCEPT_DELAY1, self.uplink_dr(), 0),
            rx2: Window::rx2(Eu868::JOIN_ACCEPT_DELAY2, Eu868::RX2_DATA_RATE),
            queue_item: None,
        };
        self.ns.spawn_class_a(plan, self.rx);
    }
}
