//! Every lifecycle transition, legal and illegal, with a manual clock; signatures over the
//! exact bytes; the Tours / SMO and Aix-Marseille shapes in one model.

mod common;

use common::*;
use std::collections::BTreeSet;

use chrono::TimeDelta;
use entente_agreements::*;
use entente_model::{DevAddr, DevEui};
use entente_peering::{FrameFacts, Refusal, RoamingPolicy};

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
    // Its users declare Class A devices only: the host relays no Class C downlink.
    let terms = |pol: &AgreementPolicy| pol.terms(&id("smo-vdln"), &id("tours-metropole"));
    assert!(!terms(&policy).class_c);
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
    // Checking spends nothing; the home node charges the frames it verified.
    assert!((0..10).all(|_| policy.check(&data(0x2601_0001)).is_ok()));
    let passed = (0..10)
        .filter(|_| policy.charge(&data(0x2601_0001)).is_ok())
        .count();
    assert_eq!(passed, 4, "burst of max(2 x 1, 4) per device");
    assert_eq!(policy.charge(&data(0x2601_0001)), Err(Refusal::DeviceRateLimited));
    assert_eq!(
        policy.charge(&data(0x2601_0002)),
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

/// Terms the calendar cannot hold, a tolerance over 100 %, a threshold that overflows:
/// refused when proposed and when a peer's signed bytes carry them, never a panic.
#[test]
fn absurd_terms_are_refused_from_a_file_or_a_peer() {
    let p = Parties::new();
    let absurd: [fn(&mut Agreement); 5] = [
        |a| a.duration_months = u32::MAX,
        |a| a.notice_months = u32::MAX,
        |a| a.count_tolerance_per_mille = 1001,
        |a| a.substantial_change_pct = u32::MAX,
        |a| a.users[0].messages_per_day = u32::MAX,
    ];
    for change in absurd {
        let mut a = tours_smo(1, 1);
        change(&mut a);
        let e = SignedAgreement::propose(&a, &id("smo-vdln"), &p.smo).unwrap_err();
        assert!(e.to_string().contains("out of bounds"), "{e}");
        // The same bytes from a peer: decoding refuses them.
        let from_peer = SignedAgreement {
            bytes: serde_json::to_vec(&a).unwrap(),
            signatures: Default::default(),
        };
        let e = from_peer.agreement().unwrap_err();
        assert!(e.to_string().contains("out of bounds"), "{e}");
    }
}

#[test]
fn a_device_two_guests_declare_is_neithers_and_class_c_is_declared() {
    let p = Parties::new();
    let now = t("2026-02-01T00:00:00Z");
    let policy = AgreementPolicy::new(
        id("tours-metropole"),
        std::sync::Arc::new(entente_model::ManualClock::new(now)),
    );
    // Another guest's convention with Tours declares the SMO's devices, as Class C.
    let mut a = tours_smo(1, 10);
    a.id = "tours-intruder".into();
    a.guest = id("intruder");
    a.users[0].class = DeclaredClass::C;
    let mut s = SignedAgreement::propose(&a, &id("intruder"), &p.other).unwrap();
    let mut r = Record::propose(s.clone(), &id("intruder"), t("2025-11-01T00:00:00Z"), &p.keys()).unwrap();
    s.sign(&id("tours-metropole"), &p.tours).unwrap();
    r.approve(s, &id("tours-metropole"), now, &p.keys()).unwrap();
    policy.replace(&[approved(&p, now), r]);
    let declared = DevEui((0x70b3_d5e7_5e00_0000u64).to_be_bytes());
    for guest in ["smo-vdln", "intruder"] {
        assert_eq!(
            policy.check(&join(declared, guest, "tours-metropole")),
            Err(Refusal::DeclaredTwice),
            "{guest}"
        );
    }
    assert!(
        !policy.declared().iter().any(|(d, _)| *d == declared),
        "routed to nobody"
    );
    assert!(policy.terms(&id("intruder"), &id("tours-metropole")).class_c);
    assert!(!policy.terms(&id("smo-vdln"), &id("tours-metropole")).class_c);
}
