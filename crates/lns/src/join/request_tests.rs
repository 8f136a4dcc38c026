//! Each step of the join flow on its own, against a real store and real crypto.

use entente_gateway::TxAckError;
use entente_model::{DevAddr, JoinEui};
use entente_region::Eu868;
use entente_sim::SimDevice;
use entente_store::Durability;

use super::request::JoinUplink;
use crate::device::{Device, DeviceClass, MacVersion};
use crate::metrics::Rejection;
use crate::server::LnsConfig;
use crate::tables::{Devices, JoinState};
use crate::testkit::*;

const JOIN_EUI: JoinEui = JoinEui([0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 1]);

fn otaa(version: MacVersion) -> (Harness, Device, SimDevice) {
    let d = otaa_device(eui(1), JOIN_EUI, profile(version, DeviceClass::A));
    let h = Harness::new();
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let sim = otaa_sim(&d);
    (h, d, sim)
}

fn request(bytes: &[u8]) -> crate::phy::JoinRequest {
    match crate::phy::parse(bytes).unwrap() {
        crate::phy::Phy::JoinRequest(j) => j,
        other => panic!("not a join request: {other:?}"),
    }
}

fn load<'a>(h: &'a Harness, bytes: &'a [u8]) -> Result<JoinUplink<'a>, Rejection> {
    JoinUplink::load(
        &h.ns,
        &bytes[..bytes.len() - 4],
        request(bytes),
        vec![rx(1, 0.0, 3)],
    )
}

#[test]
fn the_device_its_join_eui_and_its_root_key_come_first() {
    let (h, d, mut sim) = otaa(MacVersion::V1_1);
    let join = sim.join_request();
    assert_eq!(load(&h, &join).map(|j| j.root).ok(), d.nwk_key);
    // (what is wrong with the record, rejection)
    let mut other_eui = d.clone();
    other_eui.join_eui = Some(JoinEui([9; 8]));
    let mut no_key = d.clone();
    no_key.nwk_key = None;
    for (record, rejection) in [
        (other_eui, Rejection::JoinEuiMismatch),
        (no_key, Rejection::NoKey),
    ] {
        h.ns.store
            .put::<Devices>(&d.dev_eui, &record, Durability::Sync)
            .unwrap();
        assert_eq!(load(&h, &join).err(), Some(rejection));
    }
    let mut stranger = otaa_sim(&otaa_device(eui(2), JOIN_EUI, d.profile.clone()));
    assert_eq!(
        load(&h, &stranger.join_request()).err(),
        Some(Rejection::UnknownDevice)
    );
}

#[tokio::test]
async fn a_forged_request_does_not_consume_its_dev_nonce() {
    let (h, _, mut sim) = otaa(MacVersion::V1_0_4);
    let join = sim.join_request_with_nonce(7);
    let mut forged = join.clone();
    *forged.last_mut().unwrap() ^= 0xff;
    assert_eq!(load(&h, &forged).unwrap().check_mic(), Err(Rejection::MicFailed));
    h.uplink(&forged, vec![rx(1, 0.0, 3)]);
    h.uplink(&join, vec![rx(1, 0.0, 3)]);
    assert_eq!(h.ns.metrics.joins_accepted.get(), 1);
    let sent = h.downlinks().await;
    sim.accept_join(&sent[0].1.phy_payload).unwrap();
}

#[tokio::test]
async fn dev_nonces_are_a_counter_from_1_0_4_and_a_set_before() {
    // (version, nonce accepted first, nonce tried next, reused)
    let cases = [
        (MacVersion::V1_0_4, 5, 5, true),
        (MacVersion::V1_0_4, 5, 4, true),
        (MacVersion::V1_0_4, 5, 6, false),
        (MacVersion::V1_0_3, 5, 5, true),
        (MacVersion::V1_0_3, 5, 4, false),
        (MacVersion::V1_1, 5, 3, true),
    ];
    for (version, first, next, reused) in cases {
        let (h, _, mut sim) = otaa(version);
        h.uplink(&sim.join_request_with_nonce(first), vec![rx(1, 0.0, 3)]);
        let again = sim.join_request_with_nonce(next);
        let mut j = load(&h, &again).unwrap();
        let want = if reused {
            Err(Rejection::DevNonceReused)
        } else {
            Ok(())
        };
        assert_eq!(j.check_dev_nonce(), want, "{version:?} {first} then {next}");
    }
}

#[tokio::test]
async fn a_device_deleted_and_provisioned_again_refuses_a_join_request_captured_before() {
    for version in [MacVersion::V1_0_3, MacVersion::V1_0_4, MacVersion::V1_1] {
        let (h, d, mut sim) = otaa(version);
        let captured = sim.join_request_with_nonce(5);
        h.uplink(&captured, vec![rx(1, 0.0, 3)]);
        assert_eq!(h.ns.metrics.joins_accepted.get(), 1, "{version:?}");
        h.ns.delete_device(&d.dev_eui).unwrap();
        h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
        let mut j = load(&h, &captured).unwrap();
        assert_eq!(j.check_dev_nonce(), Err(Rejection::DevNonceReused), "{version:?}");
    }
}

#[tokio::test]
async fn dev_addrs_come_from_the_block_and_are_not_shared() {
    let cfg = LnsConfig {
        dev_addr_block: "26011234/32".parse().unwrap(),
        ..LnsConfig::default()
    };
    let h = Harness::with_config(cfg);
    let (d1, d2) = (
        otaa_device(eui(1), JOIN_EUI, profile(MacVersion::V1_0_4, DeviceClass::A)),
        otaa_device(eui(2), JOIN_EUI, profile(MacVersion::V1_0_4, DeviceClass::A)),
    );
    h.ns.create_devices(&[d1.clone(), d2.clone()]).unwrap();
    let first = otaa_sim(&d1).join_request();
    assert_eq!(
        load(&h, &first).unwrap().allocate_dev_addr(),
        Ok(DevAddr(0x2601_1234))
    );
    h.uplink(&first, vec![rx(1, 0.0, 3)]);
    let second = otaa_sim(&d2).join_request();
    assert_eq!(
        load(&h, &second).unwrap().allocate_dev_addr(),
        Err(Rejection::DevAddrExhausted)
    );
}

#[test]
fn the_join_nonce_is_24_bits() {
    let (h, d, mut sim) = otaa(MacVersion::V1_0_4);
    let join = sim.join_request_with_nonce(3);
    // (stored JoinNonce, next)
    for (stored, next) in [(0, 1), (41, 42), (0x00ff_fffe, 0x00ff_ffff), (0x00ff_ffff, 0)] {
        let counters = crate::tables::JoinCounters {
            join_nonce: stored,
            ..Default::default()
        };
        h.ns.store
            .put::<JoinState>(&d.dev_eui, &counters, Durability::Sync)
            .unwrap();
        let mut j = load(&h, &join).unwrap();
        j.check_dev_nonce().unwrap();
        j.next_join_nonce();
        assert_eq!(j.counters.join_nonce, next);
        assert_eq!((j.counters.last_dev_nonce, j.counters.joins), (Some(3), 1));
    }
}

#[test]
fn session_keys_are_the_ones_the_device_derives() {
    for (version, keeps) in [
        (MacVersion::V1_0_2, false),
        (MacVersion::V1_0_4, false),
        (MacVersion::V1_1, false),
        (MacVersion::V1_1, true),
    ] {
        let (h, mut d, mut sim) = otaa(version);
        d.member_keeps_app_s_key = keeps;
        h.ns.store
            .put::<Devices>(&d.dev_eui, &d, Durability::Sync)
            .unwrap();
        let join = sim.join_request();
        let mut j = load(&h, &join).unwrap();
        j.check_dev_nonce().unwrap();
        j.next_join_nonce();
        let addr = j.allocate_dev_addr().unwrap();
        let s = j.new_session(addr);
        sim.accept_join(&j.build_accept(addr)).unwrap();
        let dev = sim.session.as_ref().unwrap();
        assert_eq!(dev.dev_addr, addr);
        let keys = (s.f_nwk_s_int_key, s.s_nwk_s_int_key, s.nwk_s_enc_key);
        assert_eq!(
            keys,
            (dev.f_nwk_s_int_key, dev.s_nwk_s_int_key, dev.nwk_s_enc_key),
            "{version:?}"
        );
        assert_eq!(
            s.app_s_key,
            (!keeps).then_some(dev.app_s_key),
            "{version:?} keeps={keeps}"
        );
        assert_eq!(
            (s.data_rate, s.last_gateway, s.channels_configured),
            (3, Some(gateway(1)), true)
        );
    }
}

#[tokio::test]
async fn a_rejoin_moves_the_device_to_its_new_dev_addr() {
    let (h, d, mut sim) = otaa(MacVersion::V1_0_4);
    h.uplink(&sim.join_request(), vec![rx(1, 0.0, 3)]);
    let old = h.session(d.dev_eui).dev_addr;
    h.uplink(&sim.join_request(), vec![rx(1, 0.0, 3)]);
    let new = h.session(d.dev_eui).dev_addr;
    assert_eq!(h.ns.devices_at(new).unwrap(), [d.dev_eui]);
    if old != new {
        assert!(h.ns.devices_at(old).unwrap().is_empty());
    }
    assert_eq!(h.ns.store.get::<JoinState>(&d.dev_eui).unwrap().unwrap().joins, 2);
}

#[tokio::test]
async fn the_accept_goes_in_rx1_then_rx2() {
    // (RX1 refused, window delay, frequency, data rate index)
    for (refused, delay, freq, dr) in [(false, 5, 868_100_000, 3), (true, 6, Eu868::RX2_FREQUENCY_HZ, 0)] {
        let (h, _, mut sim) = otaa(MacVersion::V1_0_4);
        if refused {
            h.gateways.refusals.lock().unwrap().push_back(TxAckError::TooLate);
        }
        h.uplink(&sim.join_request(), vec![rx(1, 0.0, 3)]);
        let sent = h.downlinks().await;
        let d = &sent[0].1;
        let entente_gateway::Timing::AfterReception { delay: got, .. } = d.timing else {
            panic!("not after the uplink")
        };
        assert_eq!((got.as_secs(), d.frequency_hz), (delay, freq));
        assert_eq!(Eu868::data_rate_index(d.data_rate), Some(dr));
        sim.accept_join(&d.phy_payload).unwrap();
    }
}
