//! The network server: devices, sessions, the uplink pipeline and downlink decisions.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use entente_gateway::{GatewayBackend, Journal, Roaming, Uplink};
use entente_model::{DevAddr, DevEui, SharedClock};
use entente_region::Eu868;
use entente_store::{Durability, Store, StoreError};

use crate::device::{Device, DeviceClass};
use crate::metrics::LnsMetrics;
use crate::seq::Sequence;
use crate::session::Session;
use crate::session_index::SessionIndex;
pub use crate::settings::LnsConfig;
use crate::tables::{DevAddrIndex, Devices, DownlinkQueue, QueueItem, Sessions, UplinkRecord, Uplinks};
pub use entente_frame::DevAddrBlock;

#[derive(Debug, thiserror::Error)]
pub enum LnsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("device {0} not found")]
    DeviceNotFound(DevEui),
    #[error("device {0} already exists")]
    DeviceExists(DevEui),
    #[error("invalid device {0}: {1}")]
    InvalidDevice(DevEui, String),
    #[error("DevAddr {0} of an ABP device is outside this member's block")]
    DevAddrOutsideBlock(DevAddr),
    #[error("FPort {0} is reserved (use 1..223)")]
    BadFPort(u8),
    #[error("payload of {0} bytes is over the 242 bytes LoRaWAN allows")]
    PayloadTooLarge(usize),
    #[error("payload of {len} bytes is over the {max} bytes a Class C downlink carries at RX2's DR{dr}")]
    PayloadOverRx2 { len: usize, max: usize, dr: u8 },
}

/// Receives every accepted uplink inside the write batch that stores it, so whatever the
/// hook queues (application delivery) is committed atomically with the uplink.
pub trait UplinkHook: Send + Sync {
    fn on_uplink(
        &self,
        batch: &mut entente_store::Batch<'_>,
        device: &Device,
        record: &crate::tables::UplinkRecord,
    ) -> Result<(), StoreError>;
    /// Called after the batch is durable in the WAL.
    fn committed(&self);
}

/// The LoRaWAN network server of one node.
pub struct NetworkServer {
    pub(crate) store: Arc<Store>,
    pub(crate) gateways: Arc<dyn GatewayBackend>,
    pub(crate) cfg: LnsConfig,
    pub(crate) clock: SharedClock,
    pub metrics: LnsMetrics,
    /// Serialises read-modify-write of sessions between the pipeline and the API, and
    /// guards the in-memory indexes of what it serialises.
    pub(crate) session_lock: Mutex<SessionIndex>,
    /// Numbers of uplinks and queue items.
    pub(crate) seq: Sequence,
    /// Who gets every accepted uplink in its batch (application delivery).
    pub(crate) hook: Option<Arc<dyn UplinkHook>>,
    /// The federation, when the node federates: routes, forwards, peers' gateways.
    pub(crate) roaming: Option<Arc<dyn Roaming>>,
    /// The journal of frames acknowledged to gateways, forgotten as they become safe.
    pub(crate) journal: Option<Arc<Journal>>,
    /// What a crash left in that journal, taken back when the uplink pipeline starts.
    pub(crate) journaled_at_start: Mutex<Vec<Uplink>>,
}

impl NetworkServer {
    pub fn new(
        store: Arc<Store>,
        gateways: Arc<dyn GatewayBackend>,
        cfg: LnsConfig,
        clock: SharedClock,
    ) -> Result<Self, LnsError> {
        let (index, newest_queued) = SessionIndex::load(&store)?;
        let seq = Sequence::load(&store, newest_queued)?;
        Ok(NetworkServer {
            store,
            gateways,
            cfg,
            clock,
            metrics: LnsMetrics::default(),
            session_lock: Mutex::new(index),
            seq,
            hook: None,
            roaming: None,
            journal: None,
            journaled_at_start: Mutex::new(Vec::new()),
        })
    }

    /// Hands every accepted uplink to `hook` inside the batch that stores it.
    pub fn with_uplink_hook(mut self, hook: Arc<dyn UplinkHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Routes and forwards frames through the federation.
    pub fn with_roaming(mut self, roaming: Arc<dyn Roaming>) -> Self {
        self.roaming = Some(roaming);
        self
    }

    /// Forgets the journal of acknowledged frames as they become safe; `left`, what the
    /// journal held at start, is processed first.
    pub fn with_journal(mut self, journal: Arc<Journal>, left: Vec<Uplink>) -> Self {
        self.journal = Some(journal);
        self.journaled_at_start = Mutex::new(left);
        self
    }

    pub fn config(&self) -> &LnsConfig {
        &self.cfg
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn seq(&self) -> Result<u64, StoreError> {
        self.seq.next(&self.store)
    }

    pub(crate) fn lock_sessions(&self) -> std::sync::MutexGuard<'_, SessionIndex> {
        self.session_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- devices -------------------------------------------------------------------

    fn check_device(&self, d: &Device) -> Result<(), LnsError> {
        d.validate().map_err(|e| LnsError::InvalidDevice(d.dev_eui, e))?;
        if let Some(abp) = d
            .abp
            .as_ref()
            .filter(|a| !self.cfg.dev_addr_block.contains(a.dev_addr))
        {
            return Err(LnsError::DevAddrOutsideBlock(abp.dev_addr));
        }
        Ok(())
    }

    /// Creates devices all together or not at all (import and single create).
    pub fn create_devices(&self, devices: &[Device]) -> Result<(), LnsError> {
        let mut seen = std::collections::HashSet::new();
        for d in devices {
            self.check_device(d)?;
            if !seen.insert(d.dev_eui) || self.store.get::<Devices>(&d.dev_eui)?.is_some() {
                return Err(LnsError::DeviceExists(d.dev_eui));
            }
        }
        let now = self.now();
        let mut index = self.lock_sessions();
        let mut batch = self.store.batch();
        for d in devices {
            batch.put::<Devices>(&d.dev_eui, d)?;
            if let Some(abp) = &d.abp {
                let s = abp_session(d, abp, now);
                batch.put::<DevAddrIndex>(&(abp.dev_addr, d.dev_eui), &())?;
                batch.put::<Sessions>(&d.dev_eui, &s)?;
            }
        }
        self.store.write(batch, Durability::Sync)?;
        for abp in devices.iter().filter_map(|d| d.abp.as_ref()) {
            index.addr_changed(abp.dev_addr);
        }
        Ok(())
    }

    pub fn device(&self, eui: &DevEui) -> Result<Device, LnsError> {
        self.store
            .get::<Devices>(eui)?
            .ok_or(LnsError::DeviceNotFound(*eui))
    }

    pub fn devices(&self) -> Result<Vec<Device>, LnsError> {
        let mut v = Vec::new();
        for r in self.store.iter::<Devices>()? {
            v.push(r?.1);
        }
        Ok(v)
    }

    pub fn session(&self, eui: &DevEui) -> Result<Option<Session>, LnsError> {
        Ok(self.store.get::<Sessions>(eui)?)
    }

    /// The devices whose session uses `addr` (several may share one; the MIC tells them
    /// apart later). The federation's home-side policy asks it for roamed frames.
    pub fn devices_at(&self, addr: DevAddr) -> Result<Vec<DevEui>, LnsError> {
        Ok(crate::session_index::read_devices_at(&self.store, addr)?)
    }

    pub fn delete_device(&self, eui: &DevEui) -> Result<(), LnsError> {
        let mut index = self.lock_sessions();
        self.device(eui)?;
        let mut batch = self.store.batch();
        let session = self.store.get::<Sessions>(eui)?;
        if let Some(s) = &session {
            batch.delete::<DevAddrIndex>(&(s.dev_addr, *eui))?;
            batch.delete::<Sessions>(eui)?;
        }
        batch.delete::<Devices>(eui)?;
        // Its join counters and used DevNonces stay: provisioned again, the device cannot
        // be joined with a JoinRequest captured before.
        for r in self.store.range_from::<Uplinks>(&(*eui, 0))? {
            let (k, _) = r?;
            if k.0 != *eui {
                break;
            }
            batch.delete::<Uplinks>(&k)?;
        }
        for r in self.store.range_from::<DownlinkQueue>(&(*eui, 0))? {
            let (k, _) = r?;
            if k.0 != *eui {
                break;
            }
            batch.delete::<DownlinkQueue>(&k)?;
        }
        self.store.write(batch, Durability::Sync)?;
        if let Some(s) = session {
            index.addr_changed(s.dev_addr);
        }
        Ok(())
    }

    /// Uplinks of a device from sequence `after` (exclusive), oldest first.
    pub fn uplinks(&self, eui: &DevEui, after: u64, limit: usize) -> Result<Vec<UplinkRecord>, LnsError> {
        let mut v = Vec::new();
        for r in self
            .store
            .range_from::<Uplinks>(&(*eui, after.saturating_add(1)))?
        {
            let (k, u) = r?;
            if k.0 != *eui || v.len() >= limit {
                break;
            }
            v.push(u);
        }
        Ok(v)
    }

    pub fn queue(&self, eui: &DevEui) -> Result<Vec<QueueItem>, LnsError> {
        let mut v = Vec::new();
        for r in self.store.range_from::<DownlinkQueue>(&(*eui, 0))? {
            let (k, q) = r?;
            if k.0 != *eui {
                break;
            }
            v.push(q);
        }
        Ok(v)
    }

    /// Queues an application downlink; a Class C device gets it at once.
    pub fn enqueue(
        self: &Arc<Self>,
        eui: &DevEui,
        fport: u8,
        payload: Vec<u8>,
        confirmed: bool,
    ) -> Result<QueueItem, LnsError> {
        if fport == 0 || fport > 223 {
            return Err(LnsError::BadFPort(fport));
        }
        if payload.len() > 242 {
            return Err(LnsError::PayloadTooLarge(payload.len()));
        }
        let device = self.device(eui)?;
        if device.profile.class == DeviceClass::C {
            // Class C frames go out in RX2 only: FHDR without FOpts and the FPort besides.
            let dr = device.profile.rx2_dr;
            let max = Eu868::max_mac_payload(dr).unwrap_or(51).saturating_sub(8);
            if payload.len() > max {
                return Err(LnsError::PayloadOverRx2 {
                    len: payload.len(),
                    max,
                    dr,
                });
            }
        }
        let item = QueueItem {
            id: self.seq()?,
            fport,
            payload,
            confirmed,
            sent_fcnt: None,
            attempts: 0,
            created_at: self.now(),
        };
        {
            let mut index = self.lock_sessions();
            index.queueing(*eui);
            self.store
                .put::<DownlinkQueue>(&(*eui, item.id), &item, Durability::Sync)?;
        }
        if device.profile.class == DeviceClass::C {
            self.send_class_c(*eui);
        }
        Ok(item)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

pub(crate) fn abp_session(d: &Device, abp: &crate::device::AbpKeys, now: DateTime<Utc>) -> Session {
    Session {
        dev_eui: d.dev_eui,
        dev_addr: abp.dev_addr,
        mac_version: d.profile.mac_version,
        class: d.profile.class,
        f_nwk_s_int_key: abp.nwk_s_key,
        s_nwk_s_int_key: abp.s_nwk_s_int_key.unwrap_or(abp.nwk_s_key),
        nwk_s_enc_key: abp.nwk_s_enc_key.unwrap_or(abp.nwk_s_key),
        app_s_key: if d.member_keeps_app_s_key {
            None
        } else {
            abp.app_s_key
        },
        fcnt_up: None,
        n_fcnt_down: 0,
        a_fcnt_down: 0,
        // ABP devices start with the regional defaults; the profile is applied by MAC commands.
        rx_delay: 1,
        rx1_dr_offset: 0,
        rx2_dr: Eu868::RX2_DATA_RATE,
        pending_confirmed_down: None,
        last_seen: None,
        last_gateway: None,
        battery: None,
        margin: None,
        snr_history: Vec::new(),
        data_rate: 0,
        tx_power_index: 0,
        pending_mac: Vec::new(),
        created_at: now,
        last_dev_status_req: None,
        channels_configured: d.profile.channels_provisioned,
    }
}
