//! Each step of the data flow on its own, against a real store and real crypto.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use entente_frame::UplinkFrame;
use entente_gateway::RxInfo;
use entente_model::DevAddr;
use entente_sim::SimDevice;
use entente_store::{Durability, StoreError};

use super::data::{Counter, DataUplink, Radio};
use crate::device::{Device, DeviceClass, MacVersion};
use crate::mac::{DownCommand, UpCommand};
use crate::metrics::{KindLabel, Rejection};
use crate::server::{LnsConfig, UplinkHook};
use crate::session::Session;
use crate::tables::{Sessions, UplinkRecord};
use crate::testkit::*;

const ADDR: DevAddr = DevAddr(0x2600_0001);

fn with_device(d: &Device) -> (Harness, SimDevice) {
    let h = Harness::new();
    h.ns.create_devices(std::slice::from_ref(d)).unwrap();
    let sim = abp_sim(d);
    (h, sim)
}

fn abp(version: MacVersion) -> (Harness, Device, SimDevice) {
    let d = abp_device(eui(1), ADDR, profile(version, DeviceClass::A));
    let (h, sim) = with_device(&d);
    (h, d, sim)
}

fn parse(bytes: Vec<u8>) -> UplinkFrame {
    UplinkFrame::parse(bytes).unwrap()
}

/// The flow's context after session matching, as `process_data` builds it.
fn matched<'a>(h: &'a Harness, f: &'a UplinkFrame, rx: Vec<RxInfo>) -> Result<DataUplink<'a>, Rejection> {
    let d = f.data().unwrap();
    let radio = Radio::of(&rx[0]);
    let (s, fcnt) = h.ns.match_session(&mut h.ns.lock_sessions(), &d, radio)?;
    Ok(DataUplink::new(&h.ns, d, rx, radio, s, fcnt))
}

fn edit_session(h: &Harness, d: &Device, edit: impl FnOnce(&mut Session)) {
    let mut s = h.session(d.dev_eui);
    edit(&mut s);
    h.ns.store
        .put::<Sessions>(&d.dev_eui, &s, Durability::Sync)
        .unwrap();
}

#[test]
fn the_mic_picks_the_device_among_those_sharing_a_dev_addr() {
    let a = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    let b = abp_device(eui(2), ADDR, profile(MacVersion::V1_1, DeviceClass::A));
    let h = Harness::new();
    h.ns.create_devices(&[a.clone(), b.clone()]).unwrap();
    for d in [&a, &b] {
        let f = parse(abp_sim(d).uplink(1, b"x", false, 5, 0).unwrap());
        let up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
        assert_eq!((up.session.dev_eui, up.fcnt), (d.dev_eui, 0));
    }
    // The 1.1 MIC covers the data rate and channel: the same frame at another DR fails.
    let f = parse(abp_sim(&b).uplink(1, b"x", false, 5, 0).unwrap());
    assert_eq!(
        matched(&h, &f, vec![rx(1, 0.0, 4)]).err(),
        Some(Rejection::MicFailed)
    );
    let stranger = abp_device(
        eui(3),
        DevAddr(0x2600_0099),
        profile(MacVersion::V1_0_3, DeviceClass::A),
    );
    let f = parse(abp_sim(&stranger).uplink(1, b"x", false, 5, 0).unwrap());
    assert_eq!(
        matched(&h, &f, vec![rx(1, 0.0, 5)]).err(),
        Some(Rejection::UnknownDevAddr)
    );
}

#[test]
fn a_frame_from_the_previous_epoch_verifies_with_its_own_counter_and_is_a_replay() {
    let (h, d, mut sim) = abp(MacVersion::V1_0_3);
    edit_session(&h, &d, |s| s.fcnt_up = Some(0x1_0005));
    sim.set_fcnt_up(0x1_0004).unwrap();
    let f = parse(sim.uplink(1, b"old", false, 5, 0).unwrap());
    let up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
    assert_eq!(up.fcnt, 0x1_0004);
    assert_eq!(up.check_fcnt(), Err(Rejection::Replay));
}

#[test]
fn frame_counter_cases() {
    // (last accepted, FCnt sent, verdict)
    let cases = [
        (None, 0, Ok(Counter::Fresh)),
        (Some(5), 6, Ok(Counter::Fresh)),
        (Some(5), 5, Ok(Counter::Retransmission)),
        (Some(0xffff), 0x1_0000, Ok(Counter::Fresh)),
        (Some(5), 5 + 16_385, Err(Rejection::FCntGap)),
    ];
    for (last, sent, verdict) in cases {
        let (h, d, mut sim) = abp(MacVersion::V1_0_3);
        edit_session(&h, &d, |s| s.fcnt_up = last);
        sim.set_fcnt_up(sent).unwrap();
        let f = parse(sim.uplink(1, b"x", false, 5, 0).unwrap());
        let up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
        assert_eq!(up.check_fcnt(), verdict, "{last:?} then {sent}");
    }
}

#[test]
fn mac_commands_are_read_from_encrypted_fopts_and_from_fport_0() {
    let (h, _, mut sim) = abp(MacVersion::V1_1);
    sim.queue_mac(&[0x02, 0x0d]);
    let f = parse(sim.uplink(1, b"x", false, 5, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
    up.decrypt_mac_commands();
    assert_eq!(up.mac_in, [UpCommand::LinkCheckReq, UpCommand::DeviceTimeReq]);

    let (h, _, mut sim) = abp(MacVersion::V1_0_3);
    let f = parse(fport0_uplink(&mut sim, &[0x06, 0x80, 0x05, 0x02, 0xee]));
    let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
    up.decrypt_mac_commands();
    // 0xee is unknown: what came before it is kept.
    let status = UpCommand::DevStatusAns {
        battery: 0x80,
        margin: 5,
    };
    assert_eq!(up.mac_in, [status, UpCommand::LinkCheckReq]);
}

#[test]
fn mac_commands_are_answered_and_counted() {
    let (h, _, mut sim) = abp(MacVersion::V1_0_3);
    sim.queue_mac(&[0x02, 0x06, 0x10, 0x03]);
    let f = parse(sim.uplink(1, b"x", false, 5, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(1, 5.0, 5), rx(2, 1.0, 5)]).unwrap();
    up.load_device().unwrap();
    up.decrypt_mac_commands();
    up.handle_mac_commands();
    let answer = DownCommand::LinkCheckAns {
        margin: 12,
        gw_count: 2,
    };
    assert_eq!(up.mac_out, [answer]);
    assert_eq!((up.session.battery, up.session.margin), (Some(0x10), Some(3)));
    for kind in ["link_check_req", "dev_status_ans"] {
        assert_eq!(
            h.ns.metrics.mac_commands.get_or_create(&KindLabel { kind }).get(),
            1
        );
    }
}

#[tokio::test]
async fn an_ack_takes_the_confirmed_item_out_of_the_queue() {
    let (h, d, mut sim) = abp(MacVersion::V1_0_3);
    let item = h.ns.enqueue(&d.dev_eui, 2, vec![7; 3], true).unwrap();
    h.uplink(&sim.uplink(1, b"x", false, 5, 0).unwrap(), vec![rx(1, 0.0, 5)]);
    let sent = h.downlinks().await;
    assert!(sim.receive(&sent[0].1.phy_payload).unwrap().confirmed);
    let pending = h.session(d.dev_eui).pending_confirmed_down;
    assert!(pending.is_some());

    let f = parse(sim.uplink(1, b"y", false, 5, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
    up.handle_ack().unwrap();
    assert_eq!(up.acked, [(d.dev_eui, item.id)]);
    assert_eq!(up.session.pending_confirmed_down, None);

    // Without the ACK bit nothing is taken.
    let f = parse(sim.uplink(1, b"z", false, 5, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
    up.handle_ack().unwrap();
    assert!(up.acked.is_empty());
    assert_eq!(up.session.pending_confirmed_down, pending);
}

#[test]
fn the_payload_is_clear_encrypted_or_absent() {
    // (member keeps the AppSKey, FPort 0, stored bytes are the clear text, encrypted flag)
    for (keeps, fport0) in [(false, false), (true, false), (false, true)] {
        let mut d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
        d.member_keeps_app_s_key = keeps;
        let (h, mut sim) = with_device(&d);
        let bytes = if fport0 {
            fport0_uplink(&mut sim, &[0x02])
        } else {
            sim.uplink(9, b"meter", false, 5, 0).unwrap()
        };
        let f = parse(bytes);
        let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
        up.decrypt_payload();
        let want: &[u8] = match (keeps, fport0) {
            (_, true) => &[],
            (false, _) => b"meter",
            (true, _) => f.data().unwrap().frm_payload,
        };
        assert_eq!(
            (up.payload.bytes.as_slice(), up.payload.encrypted),
            (want, keeps),
            "{keeps} {fport0}"
        );
    }
}

#[test]
fn the_session_remembers_counter_gateway_data_rate_and_snr() {
    let (h, _, mut sim) = abp(MacVersion::V1_0_3);
    let f = parse(sim.uplink(1, b"x", false, 3, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(2, 4.5, 3), rx(1, 1.0, 3)]).unwrap();
    up.update_session();
    let s = &up.session;
    assert_eq!(
        (s.fcnt_up, s.last_gateway, s.data_rate),
        (Some(0), Some(gateway(2)), 3)
    );
    assert_eq!(
        (s.snr_history.as_slice(), s.last_seen),
        (&[4.5][..], Some(up.now))
    );
}

#[test]
fn the_network_asks_after_answering() {
    let mut d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    d.profile.rx_delay = 3;
    let (h, mut sim) = with_device(&d);
    sim.queue_mac(&[0x02]);
    let f = parse(sim.uplink(1, b"x", false, 5, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(1, 5.0, 5)]).unwrap();
    up.load_device().unwrap();
    up.decrypt_mac_commands();
    up.handle_mac_commands();
    up.request_mac_commands();
    let timing = DownCommand::RxTimingSetupReq { delay: 3 };
    let check = DownCommand::LinkCheckAns {
        margin: 12,
        gw_count: 1,
    };
    assert_eq!(up.mac_out, [check, DownCommand::DevStatusReq, timing]);
}

#[derive(Default)]
struct CountingHook {
    seen: AtomicUsize,
    committed: AtomicUsize,
}

impl UplinkHook for CountingHook {
    fn on_uplink(
        &self,
        _: &mut entente_store::Batch<'_>,
        _: &Device,
        r: &UplinkRecord,
    ) -> Result<(), StoreError> {
        assert_eq!(r.payload, b"meter");
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn committed(&self) {
        self.committed.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn one_batch_holds_the_session_the_uplink_and_the_hook() {
    let hook = Arc::new(CountingHook::default());
    let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    let h = Harness::built(LnsConfig::default(), |ns| ns.with_uplink_hook(hook.clone()));
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let mut sim = abp_sim(&d);
    let f = parse(sim.uplink(4, b"meter", true, 5, 0).unwrap());
    let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
    up.load_device().unwrap();
    up.decrypt_payload();
    up.update_session();
    let mut batch = h.ns.store().batch();
    let record = up.persist(None, &mut batch).unwrap();
    assert_eq!(hook.seen.load(Ordering::SeqCst), 1);
    assert_eq!(hook.committed.load(Ordering::SeqCst), 0);
    h.ns.store().write(batch, Durability::Sync).unwrap();
    up.accepted(None, Default::default()).committed(&h.ns);
    assert_eq!(hook.committed.load(Ordering::SeqCst), 1);
    assert_eq!(h.session(d.dev_eui).fcnt_up, Some(0));
    let stored = h.ns.uplinks(&d.dev_eui, 0, 10).unwrap();
    assert_eq!(stored, [record]);
    assert!(stored[0].confirmed);
}

#[tokio::test]
async fn the_answer_acks_a_confirmed_uplink_and_says_nothing_otherwise() {
    // (confirmed, a planned answer and its kind)
    for (confirmed, kind) in [(true, Some("ack")), (false, None)] {
        let (h, d, mut sim) = abp(MacVersion::V1_0_3);
        edit_session(&h, &d, |s| s.last_dev_status_req = Some(s.created_at));
        let f = parse(sim.uplink(1, b"x", confirmed, 5, 0).unwrap());
        let mut up = matched(&h, &f, vec![rx(1, 0.0, 5)]).unwrap();
        up.load_device().unwrap();
        up.request_mac_commands();
        let plan = up.plan_answer(&mut h.ns.lock_sessions()).unwrap();
        assert_eq!(plan.as_ref().map(|p| p.kind), kind);
        up.accepted(plan, Default::default()).answer(&h.ns);
        let sent = h.downlinks().await;
        assert_eq!(sent.len(), usize::from(confirmed));
        if confirmed {
            assert!(sim.receive(&sent[0].1.phy_payload).unwrap().ack);
        }
    }
}

#[tokio::test]
async fn a_retransmitted_confirmed_uplink_is_acknowledged_again_and_stored_once() {
    let (h, d, mut sim) = abp(MacVersion::V1_1);
    edit_session(&h, &d, |s| s.last_dev_status_req = Some(s.created_at));
    let up = sim.uplink(1, b"x", true, 5, 0).unwrap();
    for _ in 0..2 {
        h.uplink(&up, vec![rx(1, 0.0, 5)]);
        let sent = h.downlinks().await;
        assert_eq!(sent.len(), 1);
        let got = sim.receive(&sent[0].1.phy_payload).unwrap();
        assert!(got.ack && got.mac.is_empty());
    }
    assert_eq!(h.ns.metrics.retransmissions.get(), 1);
    assert_eq!(h.ns.uplinks(&d.dev_eui, 0, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn a_class_c_device_gets_what_waited_for_its_first_uplink() {
    let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::C));
    let (h, mut sim) = with_device(&d);
    h.ns.enqueue(&d.dev_eui, 3, vec![1], false).unwrap();
    assert!(h.downlinks().await.is_empty(), "no gateway heard the device yet");
    edit_session(&h, &d, |s| s.last_dev_status_req = Some(s.created_at));
    h.uplink(&sim.uplink(1, b"x", false, 5, 0).unwrap(), vec![rx(2, 0.0, 5)]);
    let sent = h.downlinks().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, gateway(2));
    assert_eq!(sim.receive(&sent[0].1.phy_payload).unwrap().payload, [1]);
}

#[tokio::test]
async fn a_confirmed_downlink_the_device_acknowledged_is_not_sent_again() {
    let (h, d, mut sim) = abp(MacVersion::V1_0_3);
    edit_session(&h, &d, |s| s.last_dev_status_req = Some(s.created_at));
    h.ns.enqueue(&d.dev_eui, 5, vec![0xab; 4], true).unwrap();
    h.uplink(&sim.uplink(1, b"x", false, 5, 0).unwrap(), vec![rx(1, 0.0, 5)]);
    let sent = h.downlinks().await;
    assert_eq!(sent.len(), 1);
    assert!(sim.receive(&sent[0].1.phy_payload).unwrap().confirmed);
    // The next uplink carries the ACK: the item leaves the queue, and the answer (there
    // is nothing else to say) is no downlink at all.
    h.uplink(&sim.uplink(1, b"y", false, 5, 0).unwrap(), vec![rx(1, 0.0, 5)]);
    assert!(h.downlinks().await.is_empty());
    assert!(h.ns.queue(&d.dev_eui).unwrap().is_empty());
    assert_eq!(h.session(d.dev_eui).pending_confirmed_down, None);
}
