//! In-process test kit: a NetworkServer on a temporary RocksDB store, a manual clock, a
//! gateway backend that records every downlink, and builders for devices and receptions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entente_frame::UplinkFrame;
use entente_gateway::{Downlink, DutyCycle, GatewayBackend, RxInfo, TxAckError, TxFuture, TxOutcome};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui, ManualClock};
use entente_region::{Bandwidth, DataRate, Eu868};
use entente_store::{Sealer, Store};

use crate::device::{AbpKeys, Device, DeviceClass, GeolocationMode, Lifecycle, MacVersion, Profile};
use crate::keys::AesKey;
use crate::server::{LnsConfig, NetworkServer};
use crate::session::Session;

pub const START: &str = "2030-01-01T00:00:00Z";

/// Records downlinks; refuses the next `refuse` ones with TOO_LATE.
#[derive(Default)]
pub struct RecordingGateways {
    pub sent: Mutex<Vec<(GatewayEui, Downlink)>>,
    pub refusals: Mutex<VecDeque<TxAckError>>,
    pub duty_cycle: DutyCycle,
}

impl GatewayBackend for RecordingGateways {
    fn transmit(&self, gateway: GatewayEui, downlink: Downlink, _timeout: Duration) -> TxFuture<'_> {
        let refusal = self.refusals.lock().unwrap().pop_front();
        let outcome = match refusal {
            Some(e) => TxOutcome::Error(e),
            None => {
                self.sent.lock().unwrap().push((gateway, downlink));
                TxOutcome::Ok { warning: None }
            }
        };
        Box::pin(async move { Ok(outcome) })
    }

    fn duty_cycle(&self) -> &DutyCycle {
        &self.duty_cycle
    }
}

pub struct Harness {
    pub ns: Arc<NetworkServer>,
    pub gateways: Arc<RecordingGateways>,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(LnsConfig::default())
    }

    pub fn with_config(cfg: LnsConfig) -> Harness {
        Self::built(cfg, |ns| ns)
    }

    /// A network server built with `build` (an uplink hook, say) from the defaults.
    pub fn built(cfg: LnsConfig, build: impl FnOnce(NetworkServer) -> NetworkServer) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open_sealed(dir.path(), crate::tables::ALL, Sealer::ephemeral().unwrap()).unwrap(),
        );
        let gateways = Arc::new(RecordingGateways::default());
        let clock = Arc::new(ManualClock::new(START.parse::<DateTime<Utc>>().unwrap()));
        let ns = build(NetworkServer::new(store, gateways.clone(), cfg, clock.clone()).unwrap());
        Harness {
            ns: Arc::new(ns),
            gateways,
            clock,
            _dir: dir,
        }
    }

    /// Processes one frame as the dedup window would hand it over.
    pub fn uplink(&self, bytes: &[u8], rx: Vec<RxInfo>) {
        let frame = UplinkFrame::parse(bytes.to_vec()).expect("a parsable uplink");
        self.ns.process(&frame, rx);
    }

    /// Lets the spawned downlink tasks run, then takes what they sent.
    pub async fn downlinks(&self) -> Vec<(GatewayEui, Downlink)> {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        std::mem::take(&mut *self.gateways.sent.lock().unwrap())
    }

    pub fn session(&self, eui: DevEui) -> Session {
        self.ns.session(&eui).unwrap().expect("a session")
    }
}

pub fn gateway(n: u8) -> GatewayEui {
    GatewayEui([0xaa, 0, 0, 0, 0, 0, 0, n])
}

/// A reception on 868.1 MHz at data rate `dr`.
pub fn rx(gw: u8, snr: f32, dr: u8) -> RxInfo {
    RxInfo {
        gateway: gateway(gw),
        tmst: 1_000_000 * u32::from(gw),
        time: None,
        gps_time_ms: None,
        received_at: START.parse().unwrap(),
        frequency_hz: Eu868::DEFAULT_CHANNELS_HZ[0],
        channel: 0,
        rf_chain: 0,
        data_rate: Eu868::data_rate(dr).unwrap_or(DataRate::lora(12, Bandwidth::Khz125)),
        coding_rate: Some("4/5".into()),
        rssi: -80 - i32::from(gw),
        snr,
    }
}

/// Key `salt` of device `eui`: no two devices share a key.
pub fn key_of(eui: DevEui, salt: u8) -> AesKey {
    let mut k = [salt; 16];
    k[15] = eui.0[7];
    AesKey(k)
}

fn device(eui: DevEui, profile: Profile) -> Device {
    Device {
        dev_eui: eui,
        name: format!("device {eui}"),
        serial: String::new(),
        reference: String::new(),
        equipment: String::new(),
        address: String::new(),
        geolocation_mode: GeolocationMode::None,
        position: None,
        lifecycle: Lifecycle::Service,
        group: "test".into(),
        sub_group: String::new(),
        offer: String::new(),
        join_eui: None,
        app_key: None,
        nwk_key: None,
        abp: None,
        member_keeps_app_s_key: false,
        profile,
    }
}

pub fn profile(version: MacVersion, class: DeviceClass) -> Profile {
    Profile {
        mac_version: version,
        class,
        ..Profile::default()
    }
}

/// An ABP device with its keys 1 (F/NwkSKey), 2 (SNwkSIntKey), 3 (NwkSEncKey), 4 (AppSKey).
pub fn abp_device(eui: DevEui, addr: DevAddr, profile: Profile) -> Device {
    let v11 = profile.mac_version.is_11();
    let mut d = device(eui, profile);
    d.abp = Some(AbpKeys {
        dev_addr: addr,
        nwk_s_key: key_of(eui, 1),
        s_nwk_s_int_key: v11.then(|| key_of(eui, 2)),
        nwk_s_enc_key: v11.then(|| key_of(eui, 3)),
        app_s_key: Some(key_of(eui, 4)),
    });
    d
}

/// An OTAA device with its keys 5 (AppKey) and 6 (NwkKey).
pub fn otaa_device(eui: DevEui, join_eui: JoinEui, profile: Profile) -> Device {
    let v11 = profile.mac_version.is_11();
    let mut d = device(eui, profile);
    d.join_eui = Some(join_eui);
    d.app_key = Some(key_of(eui, 5));
    d.nwk_key = v11.then(|| key_of(eui, 6));
    d
}

/// The simulated device matching [`abp_device`].
pub fn abp_sim(d: &Device) -> entente_sim::SimDevice {
    let abp = d.abp.as_ref().unwrap();
    let mut s = entente_sim::DeviceSession::abp_10(abp.dev_addr, abp.nwk_s_key, key_of(d.dev_eui, 4));
    if d.profile.mac_version.is_11() {
        s.s_nwk_s_int_key = key_of(d.dev_eui, 2);
        s.nwk_s_enc_key = key_of(d.dev_eui, 3);
        s.opt_neg = true;
    }
    entente_sim::SimDevice::abp(d.profile.mac_version, d.profile.class, d.dev_eui, s)
}

/// The simulated device matching [`otaa_device`].
pub fn otaa_sim(d: &Device) -> entente_sim::SimDevice {
    let p = &d.profile;
    let (app_key, nwk_key) = (key_of(d.dev_eui, 5), key_of(d.dev_eui, 6));
    entente_sim::SimDevice::otaa(
        p.mac_version,
        p.class,
        d.dev_eui,
        d.join_eui.unwrap(),
        app_key,
        nwk_key,
    )
}

pub fn eui(n: u8) -> DevEui {
    DevEui([0x70, 0xb3, 0xd5, 0, 0, 0, 0, n])
}

/// A session as after ABP provisioning of a 1.0.3 device, for step and MAC tests.
pub fn session() -> Session {
    let now = START.parse().unwrap();
    let d = abp_device(eui(1), DevAddr(0x2600_0001), Profile::default());
    crate::server::abp_session(&d, d.abp.as_ref().unwrap(), now)
}

/// A 1.0.x uplink with its MAC commands in an FPort 0 payload.
pub fn fport0_uplink(sim: &mut entente_sim::SimDevice, mac: &[u8]) -> Vec<u8> {
    let s = sim.session.as_mut().unwrap();
    let fcnt = s.fcnt_up;
    s.fcnt_up += 1;
    let mut payload = mac.to_vec();
    crate::crypto::crypt_frm_payload(
        &s.nwk_s_enc_key,
        crate::crypto::Dir::Up,
        s.dev_addr.0,
        fcnt,
        &mut payload,
    );
    let mut f = crate::phy::build_data(
        crate::phy::MType::UnconfirmedUp,
        s.dev_addr,
        0x80,
        fcnt,
        &[],
        Some(0),
        &payload,
    );
    let mic = crate::crypto::uplink_mic_10(&s.f_nwk_s_int_key, s.dev_addr.0, fcnt, &f);
    f.extend_from_slice(&mic);
    f
}
