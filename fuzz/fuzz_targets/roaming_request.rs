//! Arbitrary bytes as a `/entente/roaming/3` request, decoded as the libp2p CBOR codec
//! decodes what a peer sends (frames forwarded to their home, verdicts, a downlink to
//! transmit). What decodes must encode, and decode again to the same encoding.

#![no_main]

use entente_wire::roaming::{MAX_REQUEST_BYTES, Request};
use entente_wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > MAX_REQUEST_BYTES {
        return;
    }
    let Ok(request) = decode::<Request>(data) else {
        return;
    };
    let bytes = encode(&request).expect("a decoded request encodes");
    let again: Request = decode(&bytes).expect("a re-encoded request decodes");
    assert_eq!(
        encode(&again).expect("encodes"),
        bytes,
        "decode(encode(x)) encodes differently"
    );
});
