//! Arbitrary bytes as a `/entente/sync/1` request or response, decoded as the libp2p
//! CBOR codec decodes them (the envelope: a channel name and opaque bytes), with a round
//! trip; then the request's body as its channel's handler reads it (`agreements`:
//! `BookMsg::from_peer`, `ledger`: `LedgerMsg::from_peer`), and the response's bytes as
//! both.

#![no_main]

use entente_documents::book_sync::BookMsg;
use entente_documents::ledger_sync::LedgerMsg;
use entente_wire::sync::{MAX_SYNC_BYTES, SyncRequest, SyncResponse};
use entente_wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > MAX_SYNC_BYTES {
        return;
    }
    if let Ok(request) = decode::<SyncRequest>(data) {
        let bytes = encode(&request).expect("a decoded request encodes");
        let again: SyncRequest = decode(&bytes).expect("a re-encoded request decodes");
        assert_eq!((&again.channel, &again.body), (&request.channel, &request.body));
        match request.channel.as_str() {
            "agreements" => {
                let _ = BookMsg::from_peer(&request.body);
            }
            "ledger" => {
                let _ = LedgerMsg::from_peer(&request.body);
            }
            _ => {}
        }
    }
    if let Ok(response) = decode::<SyncResponse>(data) {
        let bytes = encode(&response).expect("a decoded response encodes");
        let again: SyncResponse = decode(&bytes).expect("a re-encoded response decodes");
        assert_eq!(again.0, response.0);
        let _ = BookMsg::from_peer(&response.0);
        let _ = LedgerMsg::from_peer(&response.0);
    }
});
