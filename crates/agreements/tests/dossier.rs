//! Signed acts and dossiers: replay on both sides, merges that refuse forged or altered
//! documents, access requests and amendments, the example conventions.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use entente_agreements::*;
use entente_model::{DevEui, MemberId};
use entente_peering::{Refusal, RoamingPolicy};

fn act(p: &SigningKey, by: &str, at: &str, kind: ActKind) -> SignedAct {
    SignedAct::sign(
        &Act {
            agreement: "tours-smo-2025".into(),
            by: id(by),
            at: t(at),
            follows: None,
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
    // A swap at equal count (one device dropped, another named): waits for the host.
    let mut swapped = r.effective().unwrap().users[0].clone();
    let first = *swapped.devices.iter().next().unwrap();
    swapped.devices.remove(&first);
    swapped.devices.insert(DevEui([0x44; 8]));
    r.file_access("req-4", swapped, &smo, now).unwrap();
    assert_eq!(r.access_requests[3].state, AccessState::Pending);
    assert!(r.access_requests[3].substantial);
    r.answer_access("req-4", false, &tours, now).unwrap();

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
