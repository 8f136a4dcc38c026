//! Arbitrary bytes as a `/entente/roaming/3` response, decoded as the libp2p CBOR codec
//! decodes what a peer sends (receipts, the verdicts read, a downlink's TX result,
//! a refusal). What decodes must encode, and decode again to the same encoding.

#![no_main]

use entente_wire::roaming::{MAX_RESPONSE_BYTES, Response};
use entente_wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > MAX_RESPONSE_BYTES {
        return;
    }
    let Ok(response) = decode::<Response>(data) else {
        return;
    };
    let bytes = encode(&response).expect("a decoded response encodes");
    let again: Response = decode(&bytes).expect("a re-encoded response decodes");
    assert_eq!(
        encode(&again).expect("encodes"),
        bytes,
        "decode(encode(x)) encodes differently"
    );
});
