//! Arbitrary bytes as MAC commands: uplink commands (FOpts, or an FPort 0 payload, as a
//! device sends them and the network server reads them) and downlink commands (as the
//! network sends them and the simulated devices read them). The uplink parse must
//! account for every byte it reads; downlink commands that decode must encode to bytes
//! that decode to the same commands.

#![no_main]

use entente_frame::mac::{self, DownCommand, MacError, UpCommand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    up(data);
    down(data);
});

fn up(data: &[u8]) {
    let (commands, error) = mac::parse_up(data);
    let read: usize = commands.iter().map(up_len).sum();
    match error {
        None => assert_eq!(read, data.len(), "parse_up read {read} of {} bytes", data.len()),
        Some(MacError::Unknown(cid)) => assert_eq!(data.get(read), Some(&cid)),
        Some(MacError::Truncated(cid)) => {
            assert_eq!(data.get(read), Some(&cid));
            assert!(
                data.len() - read <= 2,
                "truncated but {} bytes left",
                data.len() - read
            );
        }
    }
}

/// CID plus payload of an uplink command (TS001 §5).
fn up_len(c: &UpCommand) -> usize {
    1 + match c {
        UpCommand::LinkCheckReq
        | UpCommand::DutyCycleAns
        | UpCommand::RxTimingSetupAns
        | UpCommand::TxParamSetupAns
        | UpCommand::AdrParamSetupAns
        | UpCommand::DeviceTimeReq => 0,
        UpCommand::ResetInd { .. }
        | UpCommand::LinkAdrAns { .. }
        | UpCommand::RxParamSetupAns { .. }
        | UpCommand::NewChannelAns { .. }
        | UpCommand::DlChannelAns { .. }
        | UpCommand::RekeyInd { .. }
        | UpCommand::RejoinParamSetupAns { .. } => 1,
        UpCommand::DevStatusAns { .. } => 2,
    }
}

fn down(data: &[u8]) {
    let Ok(commands) = mac::parse_down(data) else {
        return;
    };
    let mut encoded = Vec::new();
    for c in &commands {
        c.encode_into(&mut encoded);
    }
    let again: Result<Vec<DownCommand>, MacError> = mac::parse_down(&encoded);
    assert_eq!(again.as_ref(), Ok(&commands), "decode(encode(decode(x))) differs");
}
