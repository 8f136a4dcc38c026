//! The whole server through one scripted conversation — joins of 1.0.4 and 1.1, ABP 1.0.2,
//! 1.0.3 and 1.1, MAC commands both ways, confirmed frames, ACKs, retransmissions, replays,
//! ADR, Class C, an RX1 refusal — compared byte for byte with a recorded transcript of
//! what went on the air and what was stored. `ENTENTE_BLESS=1` records it anew.

use std::fmt::Write;

use entente_gateway::TxAckError;
use entente_model::{DevAddr, JoinEui};
use entente_sim::SimDevice;

use crate::device::{DeviceClass, MacVersion};
use crate::testkit::*;

const TRANSCRIPT: &str = "src/testdata/air_transcript.txt";
const JOIN_EUI: JoinEui = JoinEui([0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 0]);

struct Script {
    h: Harness,
    out: String,
}

impl Script {
    /// Sends a frame, writes what came back to the transcript and lets `sim` receive it.
    async fn send(
        &mut self,
        label: &str,
        sim: Option<&mut SimDevice>,
        bytes: &[u8],
        rx: Vec<entente_gateway::RxInfo>,
    ) {
        self.h.uplink(bytes, rx);
        let sent = self.h.downlinks().await;
        writeln!(self.out, "== {label}: up {}", hex::encode(bytes)).unwrap();
        for (gw, d) in &sent {
            writeln!(
                self.out,
                "  down gw={gw} freq={} dr={:?} power={} timing={:?} phy={}",
                d.frequency_hz,
                d.data_rate,
                d.power_dbm,
                d.timing,
                hex::encode(&d.phy_payload)
            )
            .unwrap();
        }
        if let (Some(sim), Some((_, d))) = (sim, sent.last()) {
            let got = if d.phy_payload[0] >> 5 == 1 {
                sim.accept_join(&d.phy_payload).map(|_| None)
            } else {
                sim.receive(&d.phy_payload).map(Some)
            };
            writeln!(self.out, "  device: {got:?}").unwrap();
        }
    }

    async fn data(
        &mut self,
        label: &str,
        sim: &mut SimDevice,
        confirmed: bool,
        rx: Vec<entente_gateway::RxInfo>,
    ) {
        let dr = entente_region::Eu868::data_rate_index(rx[0].data_rate).unwrap();
        let up = sim.uplink(1, b"meter", confirmed, dr, 0).unwrap();
        self.send(label, Some(sim), &up, rx).await;
    }

    async fn settle(&mut self, label: &str) {
        let sent = self.h.downlinks().await;
        writeln!(self.out, "== {label}").unwrap();
        for (gw, d) in &sent {
            writeln!(
                self.out,
                "  down gw={gw} timing={:?} phy={}",
                d.timing,
                hex::encode(&d.phy_payload)
            )
            .unwrap();
        }
    }

    fn state(&mut self, devices: &[entente_model::DevEui]) {
        for eui in devices {
            writeln!(
                self.out,
                "-- {eui}\n  session {:?}",
                self.h.ns.session(eui).unwrap()
            )
            .unwrap();
            writeln!(self.out, "  queue {:?}", self.h.ns.queue(eui).unwrap()).unwrap();
            for u in self.h.ns.uplinks(eui, 0, 1000).unwrap() {
                writeln!(self.out, "  uplink {u:?}").unwrap();
            }
        }
        let mut reg = prometheus_client::registry::Registry::default();
        self.h.ns.metrics.register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        lines.sort();
        for l in lines {
            writeln!(self.out, "  {l}").unwrap();
        }
    }
}

#[tokio::test]
async fn the_air_transcript_is_unchanged() {
    fastrand::seed(7);
    let mut t = Script {
        h: Harness::new(),
        out: String::new(),
    };
    let mut p1 = profile(MacVersion::V1_0_3, DeviceClass::A);
    (p1.channels_provisioned, p1.rx_delay, p1.rx1_dr_offset, p1.rx2_dr) = (false, 2, 1, 3);
    let d1 = abp_device(eui(1), DevAddr(0x2600_0001), p1);
    let d2 = abp_device(
        eui(2),
        DevAddr(0x2600_0002),
        profile(MacVersion::V1_1, DeviceClass::A),
    );
    let d3 = otaa_device(eui(3), JOIN_EUI, profile(MacVersion::V1_0_4, DeviceClass::A));
    let d4 = otaa_device(eui(4), JOIN_EUI, profile(MacVersion::V1_1, DeviceClass::C));
    let d5 = abp_device(
        eui(5),
        DevAddr(0x2600_0001),
        profile(MacVersion::V1_0_2, DeviceClass::A),
    );
    let all = [d1.dev_eui, d2.dev_eui, d3.dev_eui, d4.dev_eui, d5.dev_eui];
    t.h.ns
        .create_devices(&[d1.clone(), d2.clone(), d3.clone(), d4.clone(), d5.clone()])
        .unwrap();
    let (mut s1, mut s2, mut s5) = (abp_sim(&d1), abp_sim(&d2), abp_sim(&d5));
    let (mut s3, mut s4) = (otaa_sim(&d3), otaa_sim(&d4));

    // ABP 1.0.3 asking for everything at once: more than 15 bytes, so FPort 0.
    t.data("d1 first uplink", &mut s1, false, vec![rx(1, 5.0, 5)])
        .await;
    t.data(
        "d1 answers in FOpts, confirmed",
        &mut s1,
        true,
        vec![rx(1, 5.0, 5)],
    )
    .await;
    s1.queue_mac(&[0x02]);
    t.h.gateways
        .refusals
        .lock()
        .unwrap()
        .push_back(TxAckError::TooLate);
    t.data(
        "d1 link check from three gateways, RX1 refused",
        &mut s1,
        false,
        vec![rx(2, 3.0, 5), rx(1, 8.0, 5), rx(3, -4.0, 5)],
    )
    .await;
    t.h.ns.enqueue(&d1.dev_eui, 5, vec![0xab; 4], true).unwrap();
    t.data("d1 confirmed downlink out", &mut s1, false, vec![rx(1, 5.0, 3)])
        .await;
    t.data("d1 acknowledges it", &mut s1, false, vec![rx(1, 5.0, 3)])
        .await;
    let confirmed = s1.uplink(2, b"again", true, 5, 0).unwrap();
    t.send(
        "d1 confirmed uplink",
        Some(&mut s1),
        &confirmed,
        vec![rx(1, 5.0, 5)],
    )
    .await;
    t.send(
        "d1 retransmits it",
        Some(&mut s1),
        &confirmed,
        vec![rx(1, 5.0, 5)],
    )
    .await;
    t.send("d1 replayed frame", None, &confirmed, vec![rx(1, 5.0, 5)])
        .await;
    let mut forged = s1.uplink(1, b"forged", false, 5, 0).unwrap();
    *forged.last_mut().unwrap() ^= 1;
    t.send("d1 wrong MIC", None, &forged, vec![rx(1, 5.0, 5)]).await;
    let ahead = s1.session.as_ref().unwrap().fcnt_up + 20_000;
    s1.set_fcnt_up(ahead).unwrap();
    let gap = s1.uplink(1, b"far", false, 5, 0).unwrap();
    t.send("d1 FCnt too far ahead", None, &gap, vec![rx(1, 5.0, 5)])
        .await;
    s1.set_fcnt_up(ahead - 19_990).unwrap();
    let mac0 = fport0_uplink(&mut s1, &[0x02, 0x06, 0x80, 0x05]);
    t.send("d1 MAC in FPort 0", Some(&mut s1), &mac0, vec![rx(1, 5.0, 5)])
        .await;
    t.h.ns.enqueue(&d1.dev_eui, 7, vec![0xcd; 60], false).unwrap();
    t.data(
        "d1 item too long for RX1 at DR0",
        &mut s1,
        false,
        vec![rx(1, 5.0, 0)],
    )
    .await;
    t.data("d1 item fits at DR5", &mut s1, false, vec![rx(1, 5.0, 5)])
        .await;

    // Another device on the same DevAddr: the MIC tells them apart.
    t.data("d5 shares d1's DevAddr", &mut s5, false, vec![rx(1, 2.0, 4)])
        .await;
    let mut stranger = abp_sim(&abp_device(
        eui(9),
        DevAddr(0x2600_00ff),
        profile(MacVersion::V1_0_3, DeviceClass::A),
    ));
    let up = stranger.uplink(1, b"who", false, 5, 0).unwrap();
    t.send("unknown DevAddr", None, &up, vec![rx(1, 5.0, 5)]).await;

    // ABP 1.1: encrypted FOpts, device-initiated commands.
    s2.queue_mac(&[0x02, 0x0d]);
    t.data(
        "d2 link check and device time",
        &mut s2,
        true,
        vec![rx(1, 6.5, 5), rx(2, 1.0, 5)],
    )
    .await;
    s2.queue_mac(&[0x01, 0x01, 0x0b, 0x01]);
    t.data("d2 reset and rekey", &mut s2, false, vec![rx(1, 6.5, 5)])
        .await;
    t.data("d2 after reset", &mut s2, false, vec![rx(1, 6.5, 5)])
        .await;

    // OTAA 1.0.4: join, data, a replayed DevNonce, ADR after twenty uplinks.
    let join = s3.join_request();
    t.send("d3 join 1.0.4", Some(&mut s3), &join, vec![rx(1, 4.0, 2)])
        .await;
    t.send("d3 DevNonce replayed", None, &join, vec![rx(1, 4.0, 2)])
        .await;
    for i in 0..21 {
        t.data(
            &format!("d3 uplink {i} at DR0"),
            &mut s3,
            false,
            vec![rx(1, 9.0, 0)],
        )
        .await;
    }
    t.data("d3 answers LinkADRReq", &mut s3, false, vec![rx(1, 9.0, 5)])
        .await;

    // OTAA 1.1 Class C: join, an uplink, then downlinks that go out at once.
    let join = s4.join_request();
    t.send("d4 join 1.1 class C", Some(&mut s4), &join, vec![rx(2, 4.0, 3)])
        .await;
    t.data("d4 first uplink", &mut s4, false, vec![rx(2, 4.0, 3)])
        .await;
    t.h.ns.enqueue(&d4.dev_eui, 3, vec![1, 2, 3], false).unwrap();
    t.h.ns.enqueue(&d4.dev_eui, 4, vec![4, 5], true).unwrap();
    t.settle("d4 class C queue").await;
    t.data(
        "d4 uplink while a confirmed item waits",
        &mut s4,
        false,
        vec![rx(2, 4.0, 3)],
    )
    .await;

    // A confirmed item never acknowledged is dropped after its attempts.
    t.h.ns.enqueue(&d5.dev_eui, 9, vec![9; 3], true).unwrap();
    for i in 0..10 {
        let up = s5.uplink(1, b"x", false, 5, 0).unwrap();
        t.send(
            &format!("d5 ignores confirmed item {i}"),
            None,
            &up,
            vec![rx(1, 2.0, 5)],
        )
        .await;
    }

    // A day later the network asks for the device status again.
    t.h.clock.advance(chrono::TimeDelta::hours(25));
    t.data("d2 a day later", &mut s2, false, vec![rx(1, 6.5, 5)])
        .await;

    t.state(&all);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TRANSCRIPT);
    if std::env::var_os("ENTENTE_BLESS").is_some() {
        std::fs::write(&path, &t.out).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("a recorded transcript (ENTENTE_BLESS=1)");
    for (i, (got, want)) in t.out.lines().zip(want.lines()).enumerate() {
        assert_eq!(got, want, "transcript line {}", i + 1);
    }
    assert_eq!(t.out.lines().count(), want.lines().count());
}
