//! Every lifecycle transition, legal and illegal, with a manual clock; signatures over the
//! exact bytes; the Tours / SMO and Aix-Marseille shapes in one model.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use entente_agreements::*;
use entente_model::{DevAddr, DevEui, MemberId};
use entente_peering::{FrameFacts, Refusal, RoamingPolicy};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn id(s: &str) -> MemberId {
    s.parse().unwrap()
}

struct Parties {
    tours: SigningKey,
    smo: SigningKey,
    other: SigningKey,
}

impl Parties {
    fn new() -> Self {
        Parties {
            tours: SigningKey::from_bytes(&[1; 32]),
            smo: SigningKey::from_bytes(&[2; 32]),
            other: SigningKey::from_bytes(&[3; 32]),
        }
    }
    fn keys(&self) -> impl Fn(&MemberId) -> Option<VerifyingKey> + '_ {
        move |m: &MemberId| match m.as_str() {
            "tours-metropole" => Some(self.tours.verifying_key()),
            "smo-vdln" => Some(self.smo.verifying_key()),
            "intruder" => Some(self.other.verifying_key()),
            _ => None,
        }
    }
}

/// The Tours Métropole / SMO convention: Tours hosts, the SMO's users roam, 10 years,
/// one year's notice, yearly nbO x taO fee.
fn tours_smo(version: u32, devices: u64) -> Agreement {
    Agreement {
        id: "tours-smo-2025".into(),
        version,
        title: "Convention de coopération Tours Métropole / SMO Val de Loire Numérique".into(),
        host: id("tours-metropole"),
        guest: id("smo-vdln"),
        host_role: Role::Host,
        guest_role: Role::Depositor,
        services: Service::ALL.into_iter().collect(),
        users: vec![AuthorisedUser {
            name: "Syndicat des eaux de la Vallée du Cher".into(),
            public_service_mission: "distribution d'eau potable".into(),
            duration: "2026-2036".into(),
            coverage: vec![Coverage::DeepIndoor],
            devices_volume: devices as u32,
            devices_location: "communes en limite de Tours Métropole".into(),
            flows: [Flow::Join, Flow::Mac, Flow::UplinkData].into_iter().collect(),
            messages_per_day: 1,
            devices: (0..devices)
                .map(|i| DevEui((0x70b3_d5e7_5e00_0000 + i).to_be_bytes()))
                .collect(),
        }],
        flows: [Flow::Join, Flow::Mac, Flow::UplinkData, Flow::DownlinkData]
            .into_iter()
            .collect(),
        share_signal_quality: true,
        share_gateway_location: false,
        host_data_use_consent: false,
        sla: Sla::Targets {
            day_pct: 90.0,
            fortnight_pct: 95.0,
        },
        fair_use: FairUse {
            max_messages_per_device_per_day: Some(144),
            max_bytes_per_device_per_day: None,
            no_real_time: false,
            no_personal_data: false,
        },
        billing: Billing::Policy {
            reference: "tours-metropole/annual-declared".into(),
        },
        start: t("2026-01-01T00:00:00Z"),
        duration_months: 120,
        renewal: Renewal::Fixed,
        notice_months: 12,
        count_tolerance_per_mille: 10,
        max_copies_per_frame: 3,
        when_home_unreachable: WhenHomeUnreachable::Buffer,
        substantial_change_pct: 20,
        admin_accounts: vec![],
    }
}

fn proposed(p: &Parties, now: DateTime<Utc>) -> (Record, SignedAgreement) {
    let s = SignedAgreement::propose(&tours_smo(1, 10), &id("smo-vdln"), &p.smo).unwrap();
    let r = Record::propose(s.clone(), &id("smo-vdln"), now, &p.keys()).unwrap();
    (r, s)
}

fn approved(p: &Parties, now: DateTime<Utc>) -> Record {
    let (mut r, mut s) = proposed(p, t("2025-11-01T00:00:00Z"));
    s.sign(&id("tours-metropole"), &p.tours).unwrap();
    r.approve(s, &id("tours-metropole"), now, &p.keys()).unwrap();
    r
}

#[test]
fn proposal_deadline_approval_and_activation_at_the_start_date() {
    let p = Parties::new();
    let (mut r, s) = proposed(&p, t("2025-11-01T00:00:00Z"));
    assert_eq!(r.state, State::Proposed);
    assert_eq!(r.answer_due, t("2025-12-01T00:00:00Z"), "one month to answer");
    assert!(!r.overdue(t("2025-11-30T00:00:00Z")));
    assert!(r.overdue(t("2025-12-02T00:00:00Z")));
    // The proposer cannot approve its own proposal; a half-signed copy is not approval.
    assert!(matches!(
        r.clone()
            .approve(s.clone(), &id("smo-vdln"), t("2025-11-10T00:00:00Z"), &p.keys()),
        Err(LifecycleError::WrongParty(_))
    ));
    assert!(matches!(
        r.clone().approve(
            s.clone(),
            &id("tours-metropole"),
            t("2025-11-10T00:00:00Z"),
            &p.keys()
        ),
        Err(LifecycleError::Sign(SignError::Missing(_)))
    ));
    let mut both = s.clone();
    both.sign(&id("tours-metropole"), &p.tours).unwrap();
    r.approve(both, &id("tours-metropole"), t("2025-11-10T00:00:00Z"), &p.keys())
        .unwrap();
    assert_eq!(r.state, State::Approved, "before the start date");
    r.tick(t("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(r.state, State::Active);
    assert!(r.in_force());
    // Ten years later the fixed term ends.
    r.tick(t("2035-12-31T23:59:59Z")).unwrap();
    assert_eq!(r.state, State::Active);
    r.tick(t("2036-01-01T00:00:00Z")).unwrap();
    assert_eq!(r.state, State::Ended);
}

#[test]
fn every_illegal_transition_is_refused() {
    let p = Parties::new();
    let now = t("2026-02-01T00:00:00Z");
    let (proposed_r, _) = proposed(&p, now);
    let mut rejected = proposed_r.clone();
    rejected.reject(&id("tours-metropole"), now).unwrap();
    assert_eq!(rejected.state, State::Rejected);
    let active = approved(&p, now);
    assert_eq!(active.state, State::Active);
    let mut suspended = active.clone();
    suspended.suspend(&id("tours-metropole"), now).unwrap();
    let mut terminating = active.clone();
    terminating.terminate(&id("smo-vdln"), now).unwrap();
    let mut ended = terminating.clone();
    ended.tick(now + TimeDelta::days(366)).unwrap();
    assert_eq!(ended.state, State::Ended);

    let by = id("tours-metropole");
    for r in [&rejected, &active, &suspended, &terminating, &ended] {
        assert!(r.clone().reject(&by, now).is_err(), "reject from {:?}", r.state);
    }
    for r in [&proposed_r, &rejected, &suspended, &terminating, &ended] {
        assert!(r.clone().suspend(&by, now).is_err(), "suspend from {:?}", r.state);
    }
    for r in [&proposed_r, &rejected, &active, &terminating, &ended] {
        assert!(r.clone().resume(&by, now).is_err(), "resume from {:?}", r.state);
    }
    for r in [&proposed_r, &rejected, &terminating, &ended] {
        assert!(
            r.clone().terminate(&by, now).is_err(),
            "terminate from {:?}",
            r.state
        );
    }
    let e = rejected.clone().terminate(&by, now).unwrap_err().to_string();
    assert!(e.contains("Rejected"), "{e}");
}

#[test]
fn suspension_notice_and_amendments() {
    let p = Parties::new();
    let now = t("2026-03-01T00:00:00Z");
    let mut r = approved(&p, now);
    r.suspend(&id("tours-metropole"), now).unwrap();
    assert!(!r.in_force(), "no frames while suspended");
    r.resume(&id("tours-metropole"), now).unwrap();
    assert!(r.in_force());

    // Amendment: version 2 with more devices, signed by both.
    let mut v2 = SignedAgreement::propose(&tours_smo(2, 15), &id("smo-vdln"), &p.smo).unwrap();
    assert!(
        r.current()
            .unwrap()
            .is_substantial_change(&v2.agreement().unwrap()),
        "10 -> 15 devices is over 20 %"
    );
    assert!(
        r.clone().amend(v2.clone(), now, &p.keys()).is_err(),
        "one signature is not enough"
    );
    v2.sign(&id("tours-metropole"), &p.tours).unwrap();
    r.amend(v2, now, &p.keys()).unwrap();
    assert_eq!(r.current().unwrap().version, 2);
    assert_eq!(r.versions.len(), 2, "every version is kept");
    // Skipping a version is refused.
    let mut v4 = SignedAgreement::propose(&tours_smo(4, 15), &id("smo-vdln"), &p.smo).unwrap();
    v4.sign(&id("tours-metropole"), &p.tours).unwrap();
    assert!(matches!(
        r.clone().amend(v4, now, &p.keys()),
        Err(LifecycleError::BadAmendment { expected: 3 })
    ));

    // One year's notice: in force until it runs out.
    r.terminate(&id("smo-vdln"), now).unwrap();
    assert_eq!(r.state, State::Terminating);
    assert!(r.in_force());
    r.tick(t("2027-02-28T00:00:00Z")).unwrap();
    assert!(r.in_force());
    r.tick(t("2027-03-01T00:00:00Z")).unwrap();
    assert_eq!(r.state, State::Ended);
    assert!(!r.in_force());
}

#[test]
fn a_changed_byte_or_a_non_party_signature_is_rejected() {
    let p = Parties::new();
    let mut s = SignedAgreement::propose(&tours_smo(1, 3), &id("smo-vdln"), &p.smo).unwrap();
    s.sign(&id("tours-metropole"), &p.tours).unwrap();
    s.verify_both(&p.keys()).unwrap();
    // One byte of the stored document changed.
    let mut tampered = s.clone();
    let i = tampered.bytes.iter().position(|b| *b == b'3').unwrap();
    tampered.bytes[i] = b'4';
    assert!(tampered.verify_both(&p.keys()).is_err());
    // A non-party cannot sign, even by slipping its signature in.
    assert_eq!(
        s.clone().sign(&id("intruder"), &p.other),
        Err(SignError::NotAParty(id("intruder")))
    );
    let mut slipped = s.clone();
    slipped
        .signatures
        .insert(id("intruder"), slipped.signatures[&id("smo-vdln")].clone());
    assert_eq!(
        slipped.verify(&p.keys()),
        Err(SignError::NotAParty(id("intruder")))
    );
    // A party's signature made with the wrong key.
    let mut wrong = SignedAgreement::propose(&tours_smo(1, 3), &id("smo-vdln"), &p.other).unwrap();
    wrong.sign(&id("tours-metropole"), &p.tours).unwrap();
    assert_eq!(
        wrong.verify_both(&p.keys()),
        Err(SignError::BadSignature(id("smo-vdln")))
    );
    // Garbage bytes are an error, not a panic.
    let garbage = SignedAgreement {
        bytes: vec![0xff, 0, 1],
        signatures: Default::default(),
    };
    assert!(garbage.verify(&p.keys()).is_err());
}

fn join(dev: DevEui, home: &str, visited: &str) -> FrameFacts {
    FrameFacts {
        home: id(home),
        visited: id(visited),
        flow: Flow::Join,
        dev_eui: Some(dev),
        dev_addr: None,
        downlink: false,
    }
}

#[test]
fn the_policy_follows_the_agreements_in_force() {
    let p = Parties::new();
    let policy = AgreementPolicy::new(
        id("tours-metropole"),
        std::sync::Arc::new(entente_model::ManualClock::new(t("2026-02-01T00:00:00Z"))),
    );
    let now = t("2026-02-01T00:00:00Z");
    let declared = DevEui((0x70b3_d5e7_5e00_0000u64).to_be_bytes());
    let (proposed_r, _) = proposed(&p, now);
    policy.replace(&[proposed_r]);
    assert_eq!(
        policy.check(&join(declared, "smo-vdln", "tours-metropole")),
        Err(Refusal::NoAgreement),
        "not before approval"
    );
    let mut r = approved(&p, now);
    policy.replace(std::slice::from_ref(&r));
    assert_eq!(
        policy.check(&join(declared, "smo-vdln", "tours-metropole")),
        Ok(())
    );
    assert_eq!(
        policy.check(&join(declared, "tours-metropole", "smo-vdln")),
        Err(Refusal::NoAgreement),
        "one direction only"
    );
    let undeclared = DevEui([0xde, 0xad, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        policy.check(&join(undeclared, "smo-vdln", "tours-metropole")),
        Err(Refusal::UndeclaredDevice)
    );
    // The user declared join, MAC and uplink data, not downlink data.
    let down = FrameFacts {
        flow: Flow::DownlinkData,
        ..join(declared, "smo-vdln", "tours-metropole")
    };
    assert_eq!(policy.check(&down), Err(Refusal::FlowNotAllowed));
    // One message a day declared: a burst of 4 passes, the rest of the burst is dropped.
    let data = |addr: u32| FrameFacts {
        flow: Flow::UplinkData,
        dev_eui: None,
        dev_addr: Some(DevAddr(addr)),
        ..join(declared, "smo-vdln", "tours-metropole")
    };
    let passed = (0..10)
        .filter(|_| policy.check(&data(0x2601_0001)).is_ok())
        .count();
    assert_eq!(passed, 4, "burst of max(2 x 1, 4) per device");
    assert_eq!(policy.check(&data(0x2601_0001)), Err(Refusal::DeviceRateLimited));
    assert_eq!(
        policy.check(&data(0x2601_0002)),
        Ok(()),
        "another device has its own budget"
    );

    r.terminate(&id("smo-vdln"), now).unwrap();
    r.tick(now + TimeDelta::days(400)).unwrap();
    policy.replace(&[r]);
    assert_eq!(
        policy.check(&join(declared, "smo-vdln", "tours-metropole")),
        Err(Refusal::NoAgreement),
        "not after termination"
    );
}

#[test]
fn the_aix_marseille_model_fits_the_same_data() {
    // Either party host and depositor, best effort, fair use with the two flags, consent,
    // 3 years then tacit yearly renewal with 3 months' notice, free.
    let a = Agreement {
        id: "amp-commune-2025".into(),
        version: 1,
        title: "Convention type Métropole Aix-Marseille-Provence / commune".into(),
        host: id("metropole-amp"),
        guest: id("commune-aubagne"),
        host_role: Role::Both,
        guest_role: Role::Both,
        services: [
            Service::Transit,
            Service::IncidentReporting,
            Service::MaintenanceNotices,
        ]
        .into_iter()
        .collect(),
        users: vec![],
        flows: [Flow::Join, Flow::UplinkData].into_iter().collect(),
        share_signal_quality: false,
        share_gateway_location: false,
        host_data_use_consent: true,
        sla: Sla::None,
        fair_use: FairUse {
            max_messages_per_device_per_day: Some(48),
            max_bytes_per_device_per_day: Some(48 * 51),
            no_real_time: true,
            no_personal_data: true,
        },
        billing: Billing::Free,
        start: t("2025-06-01T00:00:00Z"),
        duration_months: 36,
        renewal: Renewal::TacitYearly,
        notice_months: 3,
        count_tolerance_per_mille: 0,
        max_copies_per_frame: 1,
        when_home_unreachable: WhenHomeUnreachable::Drop,
        substantial_change_pct: 50,
        admin_accounts: vec![],
    };
    let json = serde_json::to_string(&a).unwrap();
    let back: Agreement = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.billing, Billing::Free);
    assert_eq!(back.declared_devices(), BTreeSet::new());
    assert!(back.rate_per_second() >= 1);
}

#[test]
fn absurd_terms_from_a_document_do_not_panic() {
    let p = Parties::new();
    let mut a = tours_smo(1, 1);
    a.duration_months = u32::MAX;
    a.notice_months = u32::MAX;
    let mut s = SignedAgreement::propose(&a, &id("smo-vdln"), &p.smo).unwrap();
    let now = t("2026-02-01T00:00:00Z");
    let mut r = Record::propose(s.clone(), &id("smo-vdln"), now, &p.keys()).unwrap();
    s.sign(&id("tours-metropole"), &p.tours).unwrap();
    r.approve(s, &id("tours-metropole"), now, &p.keys()).unwrap();
    r.tick(t("2200-01-01T00:00:00Z")).unwrap();
    assert_eq!(r.state, State::Active, "a term beyond the calendar never ends");
    r.terminate(&id("smo-vdln"), now).unwrap();
    r.tick(t("2200-01-01T00:00:00Z")).unwrap();
    assert_eq!(r.state, State::Terminating);
}

fn act(p: &SigningKey, by: &str, at: &str, kind: ActKind) -> SignedAct {
    SignedAct::sign(
        &Act {
            agreement: "tours-smo-2025".into(),
            by: id(by),
            at: t(at),
            kind,
        },
        p,
    )
    .unwrap()
}

/// Two nodes each hold a dossier; every act is signed by its author; merging in either
/// order gives the same bytes and the same state.
#[test]
fn signed_acts_replay_to_the_same_state_on_both_sides() {
    let p = Parties::new();
    let v1 = SignedAgreement::propose(&tours_smo(1, 10), &id("smo-vdln"), &p.smo).unwrap();
    let smo = Dossier::new(
        v1.clone(),
        act(
            &p.smo,
            "smo-vdln",
            "2025-11-01T00:00:00Z",
            ActKind::Propose { version: 1 },
        ),
    )
    .unwrap();
    let keys = p.keys();
    let r = smo.replay(&keys, t("2025-11-02T00:00:00Z")).unwrap();
    assert_eq!(r.state, State::Proposed);
    assert_eq!(r.answer_due, t("2025-12-01T00:00:00Z"));

    // Tours receives it and approves: countersigned version 1 and an Approve act.
    let mut tours = smo.clone();
    let mut both = v1.clone();
    both.sign(&id("tours-metropole"), &p.tours).unwrap();
    tours.put_version(both).unwrap();
    tours
        .put_act(act(
            &p.tours,
            "tours-metropole",
            "2025-11-20T00:00:00Z",
            ActKind::Approve { version: 1 },
        ))
        .unwrap();
    let now = t("2026-01-02T00:00:00Z");
    assert_eq!(tours.replay(&keys, now).unwrap().state, State::Active);
    let at_smo = smo.merged(&tours, &keys, now).unwrap();
    let at_tours = tours.merged(&smo, &keys, now).unwrap();
    assert_eq!(
        serde_json::to_vec(&at_smo).unwrap(),
        serde_json::to_vec(&at_tours).unwrap(),
        "byte-identical on both sides"
    );

    // Both give notice at the same moment: the later act is ignored on both sides alike.
    let mut a = at_smo.clone();
    a.put_act(act(
        &p.smo,
        "smo-vdln",
        "2026-03-01T00:00:00Z",
        ActKind::Terminate,
    ))
    .unwrap();
    let mut b = at_tours.clone();
    b.put_act(act(
        &p.tours,
        "tours-metropole",
        "2026-03-01T00:00:01Z",
        ActKind::Terminate,
    ))
    .unwrap();
    let (ra, rb) = (
        a.merged(&b, &keys, now)
            .unwrap()
            .replay(&keys, t("2026-04-01T00:00:00Z"))
            .unwrap(),
        b.merged(&a, &keys, now)
            .unwrap()
            .replay(&keys, t("2026-04-01T00:00:00Z"))
            .unwrap(),
    );
    assert_eq!(ra.state, State::Terminating);
    assert_eq!(ra.history, rb.history);
    assert!(
        ra.history.iter().any(|(_, h)| h.contains("ignored")),
        "{:?}",
        ra.history
    );
    assert_eq!(ra.ends_at, Some(t("2027-03-01T00:00:00Z")));
}

#[test]
fn forged_altered_and_non_party_documents_are_refused_by_a_merge() {
    let p = Parties::new();
    let keys = p.keys();
    let now = t("2026-01-02T00:00:00Z");
    let mut v1 = SignedAgreement::propose(&tours_smo(1, 10), &id("smo-vdln"), &p.smo).unwrap();
    v1.sign(&id("tours-metropole"), &p.tours).unwrap();
    let mut good = Dossier::new(
        v1.clone(),
        act(
            &p.smo,
            "smo-vdln",
            "2025-11-01T00:00:00Z",
            ActKind::Propose { version: 1 },
        ),
    )
    .unwrap();
    good.put_act(act(
        &p.tours,
        "tours-metropole",
        "2025-11-20T00:00:00Z",
        ActKind::Approve { version: 1 },
    ))
    .unwrap();
    good.replay(&keys, now).unwrap();

    // One byte of version 1 changed: a different document claims the same version.
    let mut altered = good.clone();
    let i = altered.versions[0].bytes.len() / 2;
    altered.versions[0].bytes[i] ^= 0x01;
    assert!(good.merged(&altered, &keys, now).is_err());
    assert!(altered.replay(&keys, now).is_err());
    // An act with one byte changed no longer verifies.
    let mut bad_act = good.clone();
    let mut forged = act(
        &p.tours,
        "tours-metropole",
        "2026-02-01T00:00:00Z",
        ActKind::Suspend,
    );
    forged.bytes = String::from_utf8(forged.bytes)
        .unwrap()
        .replace("suspend", "terminate")
        .into_bytes();
    bad_act.put_act(forged).unwrap();
    assert!(matches!(
        good.merged(&bad_act, &keys, now),
        Err(DossierError::Sign(SignError::BadSignature(_)))
    ));
    // A third member signs an act about this agreement: not a party.
    let mut intruder = good.clone();
    intruder
        .put_act(act(
            &p.other,
            "intruder",
            "2026-02-01T00:00:00Z",
            ActKind::Terminate,
        ))
        .unwrap();
    assert!(matches!(
        good.merged(&intruder, &keys, now),
        Err(DossierError::Sign(SignError::NotAParty(_)))
    ));
    // An act claiming Tours's name but signed with another key.
    let mut impostor = good.clone();
    impostor
        .put_act(act(
            &p.other,
            "tours-metropole",
            "2026-02-01T00:00:00Z",
            ActKind::Terminate,
        ))
        .unwrap();
    assert!(good.merged(&impostor, &keys, now).is_err());
    // The good dossier is unchanged by all of this.
    assert_eq!(good.replay(&keys, now).unwrap().state, State::Active);
}

#[test]
fn access_requests_and_amendments_follow_the_convention() {
    let p = Parties::new();
    let now = t("2026-02-01T00:00:00Z");
    let mut r = approved(&p, now);
    let (tours, smo) = (id("tours-metropole"), id("smo-vdln"));
    let current = r.effective().unwrap();

    // A new user: waits for the host, who has a month.
    let mut newcomer = current.users[0].clone();
    newcomer.name = "CHU de Tours".into();
    newcomer.devices = [DevEui([0x11; 8])].into_iter().collect();
    assert!(
        matches!(
            r.clone().file_access("req-1", newcomer.clone(), &tours, now),
            Err(LifecycleError::NotAllowed(..))
        ),
        "the host does not file requests"
    );
    r.file_access("req-1", newcomer.clone(), &smo, now).unwrap();
    assert_eq!(r.access_requests[0].state, AccessState::Pending);
    assert_eq!(r.access_requests[0].answer_due, t("2026-03-01T00:00:00Z"));
    assert!(
        !r.effective()
            .unwrap()
            .declared_devices()
            .contains(&DevEui([0x11; 8]))
    );
    assert!(
        r.clone().answer_access("req-1", true, &smo, now).is_err(),
        "only the host answers"
    );
    r.answer_access("req-1", true, &tours, now).unwrap();
    assert!(
        r.effective()
            .unwrap()
            .declared_devices()
            .contains(&DevEui([0x11; 8]))
    );
    assert!(
        r.clone().answer_access("req-1", false, &tours, now).is_err(),
        "answered once"
    );

    // One more device on an existing user (10 -> 11, under 20 %): in effect at once.
    let mut grown = current.users[0].clone();
    grown.devices.insert(DevEui([0x22; 8]));
    r.file_access("req-2", grown.clone(), &smo, now).unwrap();
    assert_eq!(r.access_requests[1].state, AccessState::Approved);
    assert!(!r.access_requests[1].substantial);
    // Ten more devices (11 -> 21): substantial, waits for the host.
    for i in 0..10u8 {
        grown.devices.insert(DevEui([0x33, i, 0, 0, 0, 0, 0, 0]));
    }
    r.file_access("req-3", grown, &smo, now).unwrap();
    assert_eq!(r.access_requests[2].state, AccessState::Pending);
    assert!(r.access_requests[2].substantial);
    r.answer_access("req-3", false, &tours, now).unwrap();
    assert_eq!(
        r.effective().unwrap().declared_devices().len(),
        12,
        "10 + 1 + the newcomer's 1"
    );

    // An amendment: proposed by one side, countersigned by the other, or rejected.
    let v2 = SignedAgreement::propose(&tours_smo(2, 10), &smo, &p.smo).unwrap();
    r.propose_amendment(&v2, &smo, now, &p.keys()).unwrap();
    assert!(
        r.clone().propose_amendment(&v2, &smo, now, &p.keys()).is_err(),
        "one at a time"
    );
    assert!(
        r.clone().reject_amendment(&smo, now).is_err(),
        "not by its proposer"
    );
    let mut v2b = v2.clone();
    v2b.sign(&tours, &p.tours).unwrap();
    let mut refused = r.clone();
    refused.reject_amendment(&tours, now).unwrap();
    assert_eq!(refused.current().unwrap().version, 1);
    assert!(
        refused
            .clone()
            .approve_amendment(v2b.clone(), &tours, now, &p.keys())
            .is_err()
    );
    r.approve_amendment(v2b, &tours, now, &p.keys()).unwrap();
    assert_eq!(r.current().unwrap().version, 2);
    assert!(r.pending_amendment.is_none());
}

/// The shipped conventions parse into the model: the Tours / SMO roaming convention and
/// the SMO / Agglopolys services convention with a hosted tenant (no transit).
#[test]
fn the_example_conventions_fit_the_model() {
    let roaming: Agreement = toml::from_str(include_str!(
        "../../../federation/val-de-loire/convention-tours-smo.toml"
    ))
    .unwrap();
    assert_eq!(roaming.services.len(), 7);
    assert_eq!(roaming.declared_devices().len(), 5);
    assert_eq!((roaming.duration_months, roaming.notice_months), (120, 12));
    let tenant: Agreement = toml::from_str(include_str!(
        "../../../federation/val-de-loire/convention-smo-agglopolys.toml"
    ))
    .unwrap();
    assert!(!tenant.services.contains(&Service::Transit));
    assert!(
        matches!(tenant.billing, Billing::Policy { ref reference } if reference == "smo-vdln/catalogue-2025-09")
    );
    // A tenant convention in force gives no roaming right.
    let p = AgreementPolicy::new(
        id("smo-vdln"),
        std::sync::Arc::new(entente_model::ManualClock::new(t("2025-09-02T00:00:00Z"))),
    );
    let keys = |m: &MemberId| match m.as_str() {
        "smo-vdln" => Some(SigningKey::from_bytes(&[2; 32]).verifying_key()),
        "agglopolys" => Some(SigningKey::from_bytes(&[4; 32]).verifying_key()),
        _ => None,
    };
    let mut s =
        SignedAgreement::propose(&tenant, &id("agglopolys"), &SigningKey::from_bytes(&[4; 32])).unwrap();
    let mut r = Record::propose(s.clone(), &id("agglopolys"), t("2025-08-01T00:00:00Z"), &keys).unwrap();
    s.sign(&id("smo-vdln"), &SigningKey::from_bytes(&[2; 32]))
        .unwrap();
    r.approve(s, &id("smo-vdln"), t("2025-09-02T00:00:00Z"), &keys)
        .unwrap();
    assert!(r.in_force());
    p.replace(&[r]);
    assert_eq!(
        p.check(&join(
            DevEui([0x70, 0xb3, 0xd5, 0xe7, 0x5e, 2, 0, 1]),
            "agglopolys",
            "smo-vdln"
        )),
        Err(Refusal::NoAgreement)
    );
}
