//! Arbitrary text as a roster (TOML, what every node loads at start and `entente roster
//! sign` signs): `Roster::parse` (members, keys, addresses, DevAddr blocks, JoinEUI
//! ranges, the routing table they imply) and `Roster::verify` (signatures, the rule).
//! A roster that parses, signed by a member whose key we hold, still parses, and that
//! member is among its verified signers.

#![no_main]

#[path = "shared/members.rs"]
mod members;

use entente_documents::roster::Roster;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(roster) = Roster::parse(text) else {
        return;
    };
    let _ = roster.verify();
    for i in 0..members::MEMBERS.len() {
        let id = members::member_id(i);
        let Ok(signed) = Roster::sign(text, &id, &members::signing_key(i)) else {
            continue;
        };
        let again = Roster::parse(&signed).expect("a signed roster parses");
        assert_eq!(again.body_text, roster.body_text, "signing changed the body");
        match again.verify() {
            Ok(signers) => assert!(signers.contains(&id), "{id} signed but is not a signer"),
            Err(e) => assert!(
                !names(&e.to_string(), id.as_str()) || e.to_string().contains("signed twice"),
                "{id}'s own signature does not verify: {e}"
            ),
        }
    }
});

/// Whether `msg` names member `id` itself, not another id that starts or ends with it
/// (`tours-metropole-` is not `tours-metropole`).
fn names(msg: &str, id: &str) -> bool {
    let part_of_id = |c: char| c.is_ascii_alphanumeric() || c == '-';
    msg.match_indices(id).any(|(at, _)| {
        let before = msg[..at].chars().next_back();
        let after = msg[at + id.len()..].chars().next();
        !before.is_some_and(part_of_id) && !after.is_some_and(part_of_id)
    })
}
