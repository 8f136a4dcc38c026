//! Arbitrary text as a ledger export (CSV, what `entente ledger verify` reads offline):
//! `chain::from_csv`, then `chain::verify` with the members' keys. Records that read
//! are written back by `to_csv` and read again the same.

#![no_main]

#[path = "shared/members.rs"]
mod members;

use entente_documents::chain;
use libfuzzer_sys::fuzz_target;
use members::key_of;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = chain::from_csv(text) else {
        return;
    };
    let verified = chain::verify(&entries, &key_of).is_ok();
    let back = chain::from_csv(&chain::to_csv(&entries)).expect("an export written back reads");
    assert_eq!(back, entries, "from_csv(to_csv(records)) differs");
    assert_eq!(chain::verify(&back, &key_of).is_ok(), verified);
});
