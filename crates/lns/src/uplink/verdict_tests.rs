//! What the home network server tells a peer about a frame it forwarded: only a frame
//! whose MIC and counter verified, and whose writes are durable, is `Verified`; forged,
//! replayed and over-quota frames are refused with the reason, and spend nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use entente_frame::UplinkFrame;
use entente_gateway::{Arrival, Charge, Verdict};
use entente_model::{DevAddr, DevEui, JoinEui};
use tokio::sync::oneshot;

use super::Waiters;
use super::group::Group;
use crate::device::{DeviceClass, MacVersion};
use crate::testkit::*;

const ADDR: DevAddr = DevAddr(0x2600_0001);

/// A charge that records the devices it was asked for and answers `answer`.
fn charge(asked: &Arc<Mutex<Vec<DevEui>>>, answer: Result<(), &'static str>) -> Charge {
    let asked = asked.clone();
    Box::new(move |eui| {
        asked.lock().unwrap().push(eui);
        answer
    })
}

fn from_peer(charge: Charge) -> (Waiters, oneshot::Receiver<Verdict>) {
    let (tx, rx) = oneshot::channel();
    let w = Waiters {
        heard_here: false,
        peers: vec![(charge, tx)],
    };
    (w, rx)
}

/// Processes `bytes` as a roamed frame in its own group; the verdict once it is written.
fn roamed(h: &Harness, bytes: Vec<u8>, waiters: Waiters, arrival: Arrival) {
    let frame = UplinkFrame::parse(bytes).unwrap();
    let mut group = Group::new(&h.ns);
    h.ns.process_in(&mut group, &frame, vec![rx(1, 0.0, 5)], waiters, arrival);
    group.commit();
}

fn verdict(mut rx: oneshot::Receiver<Verdict>) -> Option<Verdict> {
    rx.try_recv().ok()
}

#[tokio::test]
async fn a_genuine_frame_is_verified_once_written_and_charged_to_its_device() {
    let h = Harness::new();
    let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (w, mut told) = from_peer(charge(&asked, Ok(())));
    let frame = UplinkFrame::parse(abp_sim(&d).uplink(1, b"x", false, 5, 0).unwrap()).unwrap();
    let mut group = Group::new(&h.ns);
    h.ns.process_in(&mut group, &frame, vec![rx(1, 0.0, 5)], w, Arrival::Live);
    assert!(told.try_recv().is_err(), "nothing said before the write");
    group.commit();
    assert_eq!(verdict(told), Some(Verdict::Verified));
    assert_eq!(*asked.lock().unwrap(), vec![d.dev_eui]);
    assert_eq!(h.ns.metrics.uplinks_accepted.get(), 1);
}

#[tokio::test]
async fn forged_replayed_and_repeated_frames_are_refused_and_charge_nothing() {
    let h = Harness::new();
    let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let mut sim = abp_sim(&d);
    let first = sim.uplink(1, b"a", false, 5, 0).unwrap();
    let second = sim.uplink(1, b"b", false, 5, 0).unwrap();
    let mut forged = second.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0xff;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let cases: [(&str, Vec<u8>, Verdict); 4] = [
        ("forged MIC", forged, Verdict::Rejected("mic_failed")),
        ("genuine", first.clone(), Verdict::Verified),
        (
            "the same frame again",
            first.clone(),
            Verdict::Rejected("retransmission"),
        ),
        ("genuine", second, Verdict::Verified),
    ];
    for (what, bytes, want) in cases {
        let (w, told) = from_peer(charge(&asked, Ok(())));
        roamed(&h, bytes, w, Arrival::Live);
        assert_eq!(verdict(told), Some(want), "{what}");
    }
    // A day later, the first frame replayed: an old counter.
    let (w, told) = from_peer(charge(&asked, Ok(())));
    roamed(&h, first, w, Arrival::Live);
    assert_eq!(verdict(told), Some(Verdict::Rejected("replay")));
    assert_eq!(
        asked.lock().unwrap().len(),
        2,
        "only the two genuine frames were charged"
    );
    assert_eq!(h.ns.metrics.uplinks_accepted.get(), 2);
}

#[tokio::test]
async fn a_frame_over_quota_is_not_stored_unless_a_gateway_of_ours_heard_it() {
    let h = Harness::new();
    let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let mut sim = abp_sim(&d);
    let asked = Arc::new(Mutex::new(Vec::new()));

    let (w, told) = from_peer(charge(&asked, Err("rate_limited_device")));
    roamed(&h, sim.uplink(1, b"a", false, 5, 0).unwrap(), w, Arrival::Live);
    assert_eq!(verdict(told), Some(Verdict::Rejected("rate_limited_device")));
    assert_eq!(h.ns.metrics.uplinks_accepted.get(), 0);
    assert!(h.ns.uplinks(&d.dev_eui, 0, 10).unwrap().is_empty());
    assert_eq!(h.session(d.dev_eui).fcnt_up, None, "the counter did not move");

    // Heard by one of our gateways too: ours to take, the peer still refused.
    let (mut w, told) = from_peer(charge(&asked, Err("rate_limited_device")));
    w.heard_here = true;
    roamed(&h, sim.uplink(1, b"b", false, 5, 0).unwrap(), w, Arrival::Live);
    assert_eq!(verdict(told), Some(Verdict::Rejected("rate_limited_device")));
    assert_eq!(h.ns.metrics.uplinks_accepted.get(), 1);
}

#[tokio::test]
async fn a_late_frame_is_taken_without_an_answer_and_spends_no_downlink_attempt() {
    let h = Harness::new();
    let d = abp_device(eui(1), ADDR, profile(MacVersion::V1_0_3, DeviceClass::A));
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let mut sim = abp_sim(&d);
    h.ns.enqueue(&d.dev_eui, 2, vec![7; 3], false).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for n in 0..10u8 {
        let c = calls.clone();
        let (w, told) = from_peer(Box::new(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }));
        roamed(&h, sim.uplink(1, &[n], false, 5, 0).unwrap(), w, Arrival::Late);
        assert_eq!(verdict(told), Some(Verdict::Verified));
    }
    assert!(h.downlinks().await.is_empty());
    let queue = h.ns.queue(&d.dev_eui).unwrap();
    assert_eq!(queue.len(), 1, "the queued downlink is still there");
    assert_eq!(queue[0].attempts, 0);
    assert_eq!(calls.load(Ordering::Relaxed), 10);
}

#[tokio::test]
async fn a_late_join_is_refused_and_leaves_the_session_alone() {
    let h = Harness::new();
    let join_eui = JoinEui([0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 1]);
    let d = otaa_device(eui(1), join_eui, profile(MacVersion::V1_0_3, DeviceClass::A));
    h.ns.create_devices(std::slice::from_ref(&d)).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (w, told) = from_peer(charge(&asked, Ok(())));
    roamed(&h, otaa_sim(&d).join_request(), w, Arrival::Late);
    assert_eq!(verdict(told), Some(Verdict::Rejected("late_join")));
    assert!(h.ns.session(&d.dev_eui).unwrap().is_none());
    assert!(asked.lock().unwrap().is_empty());
}
