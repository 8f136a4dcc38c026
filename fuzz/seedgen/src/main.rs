//! Writes `fuzz/corpus/<target>/` seeds for the targets that read the crates' own
//! encodings, made with the crates' own encoders: roaming requests and responses, sync
//! envelopes, an agreements sync message with a dossier approved by both parties and a
//! committee review, a ledger sync message with countersigned statements and a dispute,
//! its CSV export, the conventions and rosters of `federation/`, device imports. The
//! documents are signed with the fuzz targets' member keys (`shared/members.rs`). It
//! rewrites only the files it names.

#[path = "../../fuzz_targets/shared/members.rs"]
mod members;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use entente_documents::book_sync::{BookMsg, DocHead, Heads, SyncMsg};
use entente_documents::chain::{self, Entry, Kind};
use entente_documents::ledger_sync::{ChainHead, LedgerMsg, WireEntry};
use entente_documents::review::{Review, SignedReview};
use entente_documents::roster::Roster;
use entente_documents::statement::{self, UsageStatement};
use entente_documents::usage::{DaySummary, Figures};
use entente_documents::{Act, ActKind, Agreement, Dossier, SignedAct, SignedAgreement};
use entente_frame::UplinkFrame;
use entente_model::{GatewayEui, MemberId};
use entente_region::DataRate;
use entente_wire::roaming::{
    DownlinkRequest, FrameVerdict, Receipt, Request, Response, RoamedRx, TxResult, UplinkAnswer,
    UplinkForward,
};
use entente_wire::sync::{SyncRequest, SyncResponse};
use entente_wire::{Downlink, RxContext, RxInfo, Timing, TxAckError, encode};
use members::{member_id, signing_key};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Seeds(root.join("fuzz/corpus"));
    roaming(&out);
    let (book, ledger, entries) = (book_msg(&root), ledger_msg(), ledger_entries());
    out.write("book_sync", "dossier_approved_and_review", &book);
    out.write("book_sync", "heads_only", &cbor(&BookMsg::default()));
    out.write("ledger_sync", "statements_and_dispute", &ledger);
    out.write(
        "ledger_export",
        "statements_and_dispute.csv",
        chain::to_csv(&entries).as_bytes(),
    );
    for (e, name) in entries
        .iter()
        .zip(["statement_countersigned", "statement_disputed", "dispute"])
    {
        out.write("ledger_statement", &format!("{name}.json"), &e.body);
    }
    for (name, channel, body) in [("agreements", "agreements", &book), ("ledger", "ledger", &ledger)] {
        let req = SyncRequest {
            channel: channel.into(),
            body: body.clone(),
        };
        out.write("sync_envelope", &format!("request_{name}"), &cbor(&req));
        out.write(
            "sync_envelope",
            &format!("response_{name}"),
            &cbor(&SyncResponse(body.clone())),
        );
    }
    let gateways = SyncRequest {
        channel: "gateways".into(),
        body: Vec::new(),
    };
    out.write("sync_envelope", "request_gateways_empty", &cbor(&gateways));
    for f in [
        "convention-tours-smo.toml",
        "convention-smo-agglopolys.toml",
        "roster.toml",
    ] {
        let text = std::fs::read(root.join("federation/val-de-loire").join(f)).expect("a federation file");
        let target = if f == "roster.toml" {
            "roster_toml"
        } else {
            "agreement_toml"
        };
        out.write(target, &format!("val_de_loire_{f}"), &text);
    }
    out.write("roster_toml", "signed_by_two_of_three.toml", roster().as_bytes());
    out.write("device_csv", "french_template.csv", DEVICES_FR.as_bytes());
    out.write("device_csv", "english_abp.csv", DEVICES_EN.as_bytes());
}

struct Seeds(PathBuf);

impl Seeds {
    fn write(&self, target: &str, name: &str, data: &[u8]) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        std::fs::write(dir.join(name), data).expect("a seed written");
    }
}

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    encode(v).expect("encodes")
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("a date")
}

// --- /entente/roaming/3 ------------------------------------------------------------

/// Confirmed data up with FOpts and FPort 10 (as in seeds.py), and a JoinRequest.
const DATA_UP: &str = "80 da1b0126 86 2a00 0206c8050307 0a a1b2c3d4 8f1c3a5e";
const JOIN: &str = "00 010000d07ed5b370 30051c000ba30400 0201 1d3b0ea9";

fn frame(hex_text: &str) -> UplinkFrame {
    let bytes = hex_of(hex_text);
    UplinkFrame::parse(bytes).expect("a valid uplink")
}

fn hex_of(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn rx(gateway: u64, rssi: i32, snr: f32, fsk: bool) -> RxInfo {
    RxInfo {
        gateway: GatewayEui::from_u64(gateway),
        tmst: 3_512_348_611,
        time: Some(t("2026-12-02T08:59:28.123456Z")),
        gps_time_ms: fsk.then_some(1_417_000_000_123),
        received_at: t("2026-12-02T08:59:28.130000Z"),
        frequency_hz: 868_100_000,
        channel: 2,
        rf_chain: 0,
        data_rate: if fsk {
            DataRate::Fsk { bitrate: 50_000 }
        } else {
            "SF7BW125".parse().expect("a data rate")
        },
        coding_rate: (!fsk).then(|| "4/5".into()),
        rssi,
        snr,
    }
}

fn roaming(out: &Seeds) {
    let uplinks = Request::Uplinks(vec![UplinkForward {
        id: 41,
        frame: frame(DATA_UP),
        rx: vec![RoamedRx {
            info: rx(0x0080_0000_0000_0001, -57, 7.5, false),
            token: vec![0xA5; 32],
        }],
        late: false,
    }]);
    let join_late = Request::Uplinks(vec![UplinkForward {
        id: 42,
        frame: frame(JOIN),
        rx: vec![
            RoamedRx {
                info: rx(0x0080_0000_0000_0001, -90, -3.0, false),
                token: vec![0x11; 32],
            },
            RoamedRx {
                info: rx(0x0080_0000_0000_0002, -70, 4.5, true),
                token: vec![0x22; 32],
            },
        ],
        late: true,
    }]);
    let verdicts = Request::Verdicts(vec![
        FrameVerdict {
            id: 41,
            answer: UplinkAnswer::Verified,
        },
        FrameVerdict {
            id: 42,
            answer: UplinkAnswer::Rejected {
                reason: "mic_failed".into(),
            },
        },
    ]);
    let rx1 = Request::Downlink(DownlinkRequest {
        gateway: GatewayEui::from_u64(0x0080_0000_0000_0001),
        token: vec![0xA5; 32],
        downlink: Downlink {
            phy_payload: hex_of("60 da1b0126 a4 0300 020c0306 01 55 8f1c3a5e"),
            frequency_hz: 868_100_000,
            data_rate: "SF7BW125".parse().expect("a data rate"),
            power_dbm: 14,
            timing: Timing::AfterReception {
                context: RxContext(3_512_348_611),
                delay: Duration::from_secs(1),
            },
        },
    });
    let class_c = Request::Downlink(DownlinkRequest {
        gateway: GatewayEui::from_u64(0x0080_0000_0000_0002),
        token: vec![0x22; 32],
        downlink: Downlink {
            phy_payload: hex_of("60 da1b0126 00 0400 01 aa 8f1c3a5e"),
            frequency_hz: 869_525_000,
            data_rate: DataRate::Fsk { bitrate: 50_000 },
            power_dbm: 27,
            timing: Timing::Immediately,
        },
    });
    for (name, r) in [
        ("uplinks_data", uplinks),
        ("uplinks_join_late_two_gateways", join_late),
        ("verdicts", verdicts),
        ("downlink_rx1", rx1),
        ("downlink_class_c_fsk", class_c),
    ] {
        out.write("roaming_request", name, &cbor(&r));
    }
    let responses = [
        (
            "receipts",
            Response::Uplinks(vec![
                Receipt::Taken,
                Receipt::Rejected {
                    reason: "no_agreement".into(),
                },
            ]),
        ),
        ("verdicts_read", Response::Verdicts),
        (
            "tx_ok_warning",
            Response::Downlink(TxResult::Ok {
                warning: Some("TX_POWER".into()),
            }),
        ),
        (
            "tx_gateway_error",
            Response::Downlink(TxResult::GatewayError {
                error: TxAckError::TooLate,
            }),
        ),
        (
            "tx_gateway_error_other",
            Response::Downlink(TxResult::GatewayError {
                error: TxAckError::Other("BUSY".into()),
            }),
        ),
        (
            "tx_not_acknowledged",
            Response::Downlink(TxResult::NotAcknowledged),
        ),
        ("tx_too_late", Response::Downlink(TxResult::TooLate)),
        ("tx_bad_token", Response::Downlink(TxResult::BadToken)),
        (
            "tx_failed",
            Response::Downlink(TxResult::Failed {
                reason: "timeout".into(),
            }),
        ),
        (
            "refused",
            Response::Refused {
                reason: "not a roster member".into(),
            },
        ),
    ];
    for (name, r) in responses {
        out.write("roaming_response", name, &cbor(&r));
    }
}

// --- channel `agreements` ----------------------------------------------------------

/// The Tours/SMO convention proposed by the SMO, countersigned and approved by Tours,
/// and Tours's committee review of 2026-Q2 signed by both.
fn book_msg(root: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(root.join("federation/val-de-loire/convention-tours-smo.toml"))
        .expect("the convention");
    let a: Agreement = toml::from_str(&text).expect("the convention parses");
    let (tours, smo) = (member_id(0), member_id(1));
    let (tours_key, smo_key) = (signing_key(0), signing_key(1));
    let mut v1 = SignedAgreement::propose(&a, &smo, &smo_key).expect("proposed");
    let propose = sign_act(
        &a.id,
        &smo,
        "2025-12-01T09:00:00Z",
        None,
        ActKind::Propose { version: 1 },
        &smo_key,
    );
    v1.sign(&tours, &tours_key).expect("countersigned");
    let approve = sign_act(
        &a.id,
        &tours,
        "2025-12-10T14:00:00Z",
        Some(propose.id()),
        ActKind::Approve { version: 1 },
        &tours_key,
    );
    let mut d = Dossier::new(v1, propose).expect("a dossier");
    d.put_act(approve).expect("the approval");
    let now = t("2026-06-01T00:00:00Z");
    let record = d.replay(&members::key_of, now).expect("the dossier replays");
    d.check_new_acts(None, now).expect("the acts follow each other");
    let review =
        Review::prepare(&record, &tours, t("2026-05-20T10:00:00Z"), &|_| None, None).expect("a review");
    let mut signed = SignedReview::new(&review).expect("encodes");
    signed.sign(&tours, &tours_key).expect("signed by the host");
    signed.sign(&smo, &smo_key).expect("signed by the guest");
    let head = |key: String, digest: u8| DocHead {
        key,
        digest: vec![digest; 32],
    };
    let msg = BookMsg {
        heads: Heads {
            dossiers: vec![head(d.id.clone(), 0x3c)],
            reviews: vec![head(signed.key().expect("a key"), 0x7e)],
        },
        page: SyncMsg {
            dossiers: vec![d],
            reviews: vec![signed],
        },
        more: false,
    };
    cbor(&msg)
}

fn sign_act(
    agreement: &str,
    by: &MemberId,
    at: &str,
    follows: Option<String>,
    kind: ActKind,
    key: &ed25519_dalek::SigningKey,
) -> SignedAct {
    let act = Act {
        agreement: agreement.into(),
        by: by.clone(),
        at: t(at),
        follows,
        kind,
    };
    SignedAct::sign(&act, key).expect("signed")
}

// --- channel `ledger` --------------------------------------------------------------

fn summary(day: NaiveDate, uplinks: u64, root: &str) -> DaySummary {
    let device = Figures {
        uplinks,
        downlinks: 1,
        joins: 0,
        bytes: 23 * (uplinks + 1),
        airtime_us: 61_696 * (uplinks + 1),
    };
    DaySummary {
        agreement: "tours-smo-2026".into(),
        day,
        totals: device.clone(),
        devices: BTreeMap::from([("addr:26011BDA".to_string(), device)]),
        merkle_root: root.repeat(64 / root.len()),
    }
}

/// Tours's statements of two days, countersigned by the SMO, and the SMO's dispute of
/// the second (its own count differs beyond the tolerance).
fn ledger_entries() -> Vec<Entry> {
    let (tours, smo) = (member_id(0), member_id(1));
    let agreement = "tours-smo-2026";
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 5, d).expect("a day");
    let statement = |d: u32, uplinks: u64| UsageStatement {
        agreement: agreement.into(),
        day: day(d),
        serving: tours.clone(),
        counterparty: smo.clone(),
        summary: summary(day(d), uplinks, "ab"),
    };
    let (s1, s2) = (statement(30, 144), statement(31, 140));
    let mut e1 = Entry::next(None, agreement, &tours, Kind::UsageStatement, json(&s1));
    e1.sign(&tours, &signing_key(0));
    e1.sign(&smo, &signing_key(1));
    let mut e2 = Entry::next(Some(&e1), agreement, &tours, Kind::UsageStatement, json(&s2));
    e2.sign(&tours, &signing_key(0));
    let ours = summary(day(31), 100, "cd");
    let dispute = statement::dispute(&s2, &tours, e2.seq, &e2.hash, &smo, &ours, 10);
    let mut e3 = Entry::next(None, agreement, &smo, Kind::Dispute, json(&dispute));
    e3.sign(&smo, &signing_key(1));
    let entries = vec![e1, e2, e3];
    chain::verify(&entries, &members::key_of).expect("the seed chain verifies");
    entries
}

fn ledger_msg() -> Vec<u8> {
    let entries = ledger_entries();
    let head = |e: &Entry, pending: Vec<u64>| ChainHead {
        agreement: e.agreement.clone(),
        issuer: e.issuer.clone(),
        next: e.seq + 1,
        last: e.hash.clone(),
        pending,
    };
    let msg = LedgerMsg {
        heads: vec![head(&entries[1], vec![1]), head(&entries[2], vec![0])],
        page: entries.into_iter().map(WireEntry::from).collect(),
        more: true,
    };
    cbor(&msg)
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}

// --- files -------------------------------------------------------------------------

/// A roster of the three members with the targets' keys, signed by two of them.
fn roster() -> String {
    let mut text = "federation = \"val-de-loire\"\nversion = 1\nrule = \"majority\"\n".to_string();
    for (i, name) in members::MEMBERS.iter().enumerate() {
        text.push_str(&format!(
            "\n[[member]]\nid = \"{name}\"\nname = \"Member {i}\"\nkind = \"syndicate\"\npublic_key = \"{}\"\naddresses = [\"/ip4/192.0.2.{}/tcp/4001\"]\ndev_addr_blocks = [\"2601{}000/20\"]\njoin_eui_ranges = [\"70B3D5E75E0{i}0000-70B3D5E75E0{i}FFFF\"]\nroams_on = [\"{}\"]\n",
            hex_text(signing_key(i).verifying_key().as_bytes()),
            10 * (i + 1),
            i + 1,
            members::MEMBERS[(i + 1) % 3],
        ));
    }
    for i in 0..2 {
        text = Roster::sign(&text, &member_id(i), &signing_key(i)).expect("signed");
    }
    let r = Roster::parse(&text).expect("the roster parses");
    assert_eq!(r.verify().expect("verifies").len(), 2);
    text
}

fn hex_text(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const DEVICES_FR: &str = "Nom;Numéro de série;Référence;Équipement;Adresse;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Offre;Dev EUI;Classe;App EUI;App Key\n\
Compteur 1;SN-001;WM-15;Compteur eau;1 rue de Blois, Blois;MANUAL;47,5861;1,3359;SERVICE;AGGLOPOLYS/Eau;Réseau;70B3D5E75E000001;A;70B3D5E75E000000;2B7E151628AED2A6ABF7158809CF4F3C\n\
Lampadaire 7;SN-007;;Luminaire;;NONE;47.59;1.33;STOCK;AGGLOPOLYS/Eclairage;;70B3D5E75E000007;C;70B3D5E75E000000;2B7E151628AED2A6ABF7158809CF4F3C\n";

const DEVICES_EN: &str = "name,serial,geolocation,latitude,longitude,group,deveui,class,activation,devaddr,nwkskey,appskey,version\n\
m,s,NONE,0,0,g,0000000000000001,A,ABP,26011234,000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f,1.0.2\n";
