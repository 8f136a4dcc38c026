//! Keys at rest: a real node's data dir, copied after kill -9 (everything in the WAL) and
//! after a clean stop (everything in SST files), holds no AppKey, NwkKey or session key
//! in clear, while a control payload is found; the wrong master key stops the node at
//! start; `entente keys rotate` re-seals every key and the node goes on.

mod support;

use std::path::Path;
use std::process::Command;

use entente::process::NodeProcess;
use entente_lns::{AesKey, DeviceClass, MacVersion};
use entente_model::{DevAddr, DevEui, GatewayEui, JoinEui};
use entente_sim::{DeviceSession, GatewayEmulator, SimDevice};
use support::*;

const ABP_NWK_S_KEY: &str = "8F9E0D1C2B3A49586776A5B4C3D2E1F0";
const ABP_APP_S_KEY: &str = "1A2B3C4D5E6F708192A3B4C5D6E7F809";
const CONTROL: &[u8] = b"CONTROL-PAYLOAD-5e1f";

/// Every file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Each key as the bytes a careless store would hold: raw, reversed (little-endian), and
/// as hex text in either case.
fn forms(key: &AesKey) -> Vec<Vec<u8>> {
    let mut reversed = key.0;
    reversed.reverse();
    let hex = key.to_hex();
    vec![
        key.0.to_vec(),
        reversed.to_vec(),
        hex.to_lowercase().into_bytes(),
        hex.to_uppercase().into_bytes(),
    ]
}

fn assert_no_key_in(data: &Path, keys: &[(&str, AesKey)], when: &str) {
    let files = files_holding(data, CONTROL);
    assert!(
        !files.is_empty(),
        "{when}: the control payload must be found, or the search proves nothing"
    );
    for (name, key) in keys {
        for form in forms(key) {
            let found = files_holding(data, &form);
            assert!(found.is_empty(), "{when}: {name} in clear in {found:?}");
        }
    }
    eprintln!(
        "{when}: {} keys x 4 forms searched in {}, none found; control payload in {files:?}",
        keys.len(),
        data.display()
    );
}

fn entente(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(EXE)
        .args(args)
        .arg("--config")
        .arg(dir.join("node.toml"))
        .output()
        .unwrap()
}

struct Devices {
    otaa: SimDevice,
    abp: SimDevice,
}

impl Devices {
    /// One uplink from each device through `node`, both stored: their keys opened.
    async fn uplink(&mut self, node: &NodeProcess, round: u32) {
        // The gateway `net` registered, from a new socket on the restarted node's port.
        let gw = GatewayEmulator::connect(node.listening.gateway, GatewayEui([0, 0x80, 0, 0, 0, 0, 0xa0, 1]))
            .await
            .unwrap();
        gw.pull(WAIT).await.unwrap();
        let tmst = 100_000_000 * round;
        for (d, payload) in [(&mut self.abp, CONTROL), (&mut self.otaa, &b"meter"[..])] {
            let before = uplinks(node, d.dev_eui, 0).await.len();
            push(&gw, &d.uplink(1, payload, false, 5, 0).unwrap(), tmst, 7.0).await;
            let after = uplinks(node, d.dev_eui, before + 1).await;
            assert_eq!(after.len(), before + 1, "round {round}: {} not stored", d.dev_eui);
        }
    }

    fn keys(&self) -> Vec<(&'static str, AesKey)> {
        let s = self.otaa.session.as_ref().unwrap();
        vec![
            ("AppKey", self.otaa.app_key),
            ("NwkKey", self.otaa.nwk_key),
            ("FNwkSIntKey", s.f_nwk_s_int_key),
            ("SNwkSIntKey", s.s_nwk_s_int_key),
            ("NwkSEncKey", s.nwk_s_enc_key),
            ("AppSKey (OTAA)", s.app_s_key),
            ("NwkSKey (ABP)", ABP_NWK_S_KEY.parse().unwrap()),
            ("AppSKey (ABP)", ABP_APP_S_KEY.parse().unwrap()),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_without_its_master_key_holds_no_key() {
    let n = net(1).await;
    let otaa_eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 1]);
    let abp_eui = DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 0, 9, 2]);
    let addr = DevAddr(0x2601_0901);
    let abp_row = format!(
        "Lampadaire {abp_eui};SN-{abp_eui};NONE;47.6;1.3;SERVICE;AGGLOPOLYS/Eclairage;{abp_eui};A;;;;1.0.3;ABP;{addr};{ABP_NWK_S_KEY};{ABP_APP_S_KEY}"
    );
    import(&n.node, &[otaa_row(otaa_eui, MacVersion::V1_1, "A"), abp_row]).await;
    let mut devices = Devices {
        otaa: SimDevice::otaa(
            MacVersion::V1_1,
            DeviceClass::A,
            otaa_eui,
            JOIN_EUI.parse::<JoinEui>().unwrap(),
            APP_KEY.parse().unwrap(),
            NWK_KEY.parse().unwrap(),
        ),
        abp: SimDevice::abp(
            MacVersion::V1_0_3,
            DeviceClass::A,
            abp_eui,
            DeviceSession::abp_10(
                addr,
                ABP_NWK_S_KEY.parse().unwrap(),
                ABP_APP_S_KEY.parse().unwrap(),
            ),
        ),
    };
    push(&n.gws[0], &devices.otaa.join_request(), 1_000_000, 7.0).await;
    let accept = n.gws[0].next_downlink(WAIT).await.expect("a join accept");
    devices.otaa.accept_join(&accept.phy_payload).unwrap();
    devices.uplink(&n.node, 1).await;
    let keys = devices.keys();
    let data = n.dir.path().join("data");

    // A crash: the rows are in the WAL, not yet in SST files.
    n.node.kill9().await.unwrap();
    assert_no_key_in(&data, &keys, "after kill -9");

    // The node reads its sealed keys again, then a clean stop writes SST files.
    let node = NodeProcess::start(Path::new(EXE), n.dir.path()).await.unwrap();
    devices.uplink(&node, 2).await;
    node.stop().await.unwrap();
    assert!(
        std::fs::read_dir(data.join("db")).unwrap().any(|f| f
            .unwrap()
            .path()
            .extension()
            .is_some_and(|e| e == "sst")),
        "a clean stop flushes SST files"
    );
    assert_no_key_in(&data, &keys, "after a clean stop");

    // The data dir copied to another node, with that node's master key: refused at start.
    let thief = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args(["init", "--member", "thief", "--name", "Thief"])
        .args(["--gateway-port", "0", "--api-port", "0", "--dir"])
        .arg(thief.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(thief.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let e = NodeProcess::start(Path::new(EXE), thief.path())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("master key"), "{e:#}");

    // Rotation: every key re-sealed under a new master key; the old one opens nothing.
    let old_key = std::fs::read(n.dir.path().join("master.key")).unwrap();
    let out = entente(&["keys", "rotate"], n.dir.path());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("rows re-sealed"), "{said}");
    eprintln!("{}", said.trim());
    let node = NodeProcess::start(Path::new(EXE), n.dir.path()).await.unwrap();
    devices.uplink(&node, 3).await;
    node.stop().await.unwrap();
    assert_no_key_in(&data, &keys, "after a rotation");
    let new_key = std::fs::read(n.dir.path().join("master.key")).unwrap();
    std::fs::write(n.dir.path().join("master.key"), &old_key).unwrap();
    let e = NodeProcess::start(Path::new(EXE), n.dir.path())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("master key"), "{e:#}");
    std::fs::write(n.dir.path().join("master.key"), &new_key).unwrap();
    let node = NodeProcess::start(Path::new(EXE), n.dir.path()).await.unwrap();
    node.stop().await.unwrap();
}
