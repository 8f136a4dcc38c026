//! Binary framing of the Semtech UDP protocol (PROTOCOL.TXT of the packet forwarder):
//! `version | token(2) | identifier | [gateway EUI(8)] | [JSON]`.

use entente_model::GatewayEui;

/// Why a datagram is not one of the protocol's: the gateway server counts each reason
/// (`entente_gateway::DatagramDrop` has a label for each, and for its own refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatagramError {
    /// Shorter than its header.
    TooShort,
    BadVersion,
    /// Unknown identifier, or one sent the other way (server to gateway or back).
    UnknownType,
}

impl std::fmt::Display for DatagramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooShort => "datagram shorter than its header",
            Self::BadVersion => "unsupported protocol version",
            Self::UnknownType => "unknown datagram type for this direction",
        })
    }
}

impl std::error::Error for DatagramError {}

pub const PUSH_DATA: u8 = 0x00;
pub const PUSH_ACK: u8 = 0x01;
pub const PULL_DATA: u8 = 0x02;
pub const PULL_RESP: u8 = 0x03;
pub const PULL_ACK: u8 = 0x04;
pub const TX_ACK: u8 = 0x05;

/// Version 2 added TX_ACK; version 1 forwarders are still deployed and framed the same.
pub const SUPPORTED_VERSIONS: [u8; 2] = [1, 2];

/// The random token a gateway puts in a request and expects back in the ack.
pub type Token = [u8; 2];

/// A datagram sent by a gateway to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream<'a> {
    PushData {
        version: u8,
        token: Token,
        eui: GatewayEui,
        json: &'a [u8],
    },
    PullData {
        version: u8,
        token: Token,
        eui: GatewayEui,
    },
    TxAck {
        version: u8,
        token: Token,
        eui: GatewayEui,
        json: &'a [u8],
    },
}

impl Upstream<'_> {
    pub fn eui(&self) -> GatewayEui {
        match *self {
            Self::PushData { eui, .. } | Self::PullData { eui, .. } | Self::TxAck { eui, .. } => eui,
        }
    }
}

/// A datagram sent by the server to a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downstream<'a> {
    PushAck {
        version: u8,
        token: Token,
    },
    PullAck {
        version: u8,
        token: Token,
    },
    PullResp {
        version: u8,
        token: Token,
        json: &'a [u8],
    },
}

fn header(buf: &[u8]) -> Result<(u8, Token, u8), DatagramError> {
    if buf.len() < 4 {
        return Err(DatagramError::TooShort);
    }
    if !SUPPORTED_VERSIONS.contains(&buf[0]) {
        return Err(DatagramError::BadVersion);
    }
    Ok((buf[0], [buf[1], buf[2]], buf[3]))
}

fn eui_at(buf: &[u8]) -> Result<GatewayEui, DatagramError> {
    let bytes: [u8; 8] = buf
        .get(4..12)
        .and_then(|s| s.try_into().ok())
        .ok_or(DatagramError::TooShort)?;
    Ok(GatewayEui(bytes))
}

/// Parses a datagram from a gateway. Never panics, whatever the bytes.
pub fn parse_upstream(buf: &[u8]) -> Result<Upstream<'_>, DatagramError> {
    let (version, token, ident) = header(buf)?;
    match ident {
        PUSH_DATA => {
            let eui = eui_at(buf)?;
            Ok(Upstream::PushData {
                version,
                token,
                eui,
                json: &buf[12..],
            })
        }
        PULL_DATA => {
            let eui = eui_at(buf)?;
            Ok(Upstream::PullData { version, token, eui })
        }
        TX_ACK => {
            let eui = eui_at(buf)?;
            Ok(Upstream::TxAck {
                version,
                token,
                eui,
                json: &buf[12..],
            })
        }
        _ => Err(DatagramError::UnknownType),
    }
}

/// Parses a datagram from the server (used by gateway emulators).
pub fn parse_downstream(buf: &[u8]) -> Result<Downstream<'_>, DatagramError> {
    let (version, token, ident) = header(buf)?;
    match ident {
        PUSH_ACK => Ok(Downstream::PushAck { version, token }),
        PULL_ACK => Ok(Downstream::PullAck { version, token }),
        PULL_RESP => Ok(Downstream::PullResp {
            version,
            token,
            json: &buf[4..],
        }),
        _ => Err(DatagramError::UnknownType),
    }
}

pub fn encode_upstream(p: &Upstream<'_>, out: &mut Vec<u8>) {
    out.clear();
    let (version, token, ident, eui, json): (u8, Token, u8, GatewayEui, &[u8]) = match *p {
        Upstream::PushData {
            version,
            token,
            eui,
            json,
        } => (version, token, PUSH_DATA, eui, json),
        Upstream::PullData { version, token, eui } => (version, token, PULL_DATA, eui, &[]),
        Upstream::TxAck {
            version,
            token,
            eui,
            json,
        } => (version, token, TX_ACK, eui, json),
    };
    out.push(version);
    out.extend_from_slice(&token);
    out.push(ident);
    out.extend_from_slice(eui.as_bytes());
    out.extend_from_slice(json);
}

pub fn encode_downstream(p: &Downstream<'_>, out: &mut Vec<u8>) {
    out.clear();
    let (version, token, ident, json): (u8, Token, u8, &[u8]) = match *p {
        Downstream::PushAck { version, token } => (version, token, PUSH_ACK, &[]),
        Downstream::PullAck { version, token } => (version, token, PULL_ACK, &[]),
        Downstream::PullResp { version, token, json } => (version, token, PULL_RESP, json),
    };
    out.push(version);
    out.extend_from_slice(&token);
    out.push(ident);
    out.extend_from_slice(json);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_packet_type() {
        let eui = GatewayEui::from_u64(0x0080_0000_0000_0001);
        let mut buf = Vec::new();
        for p in [
            Upstream::PushData {
                version: 2,
                token: [1, 2],
                eui,
                json: b"{}",
            },
            Upstream::PullData {
                version: 1,
                token: [3, 4],
                eui,
            },
            Upstream::TxAck {
                version: 2,
                token: [5, 6],
                eui,
                json: b"",
            },
        ] {
            encode_upstream(&p, &mut buf);
            assert_eq!(parse_upstream(&buf).unwrap(), p);
        }
        for p in [
            Downstream::PushAck {
                version: 2,
                token: [1, 2],
            },
            Downstream::PullAck {
                version: 2,
                token: [3, 4],
            },
            Downstream::PullResp {
                version: 2,
                token: [5, 6],
                json: b"{\"txpk\":{}}",
            },
        ] {
            encode_downstream(&p, &mut buf);
            assert_eq!(parse_downstream(&buf).unwrap(), p);
        }
    }

    #[test]
    fn rejects_with_reason() {
        assert_eq!(parse_upstream(&[]), Err(DatagramError::TooShort));
        assert_eq!(parse_upstream(&[2, 0, 0]), Err(DatagramError::TooShort));
        assert_eq!(
            parse_upstream(&[3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(DatagramError::BadVersion)
        );
        assert_eq!(
            parse_upstream(&[2, 0, 0, 0, 1, 2, 3]),
            Err(DatagramError::TooShort)
        );
        assert_eq!(
            parse_upstream(&[2, 0, 0, PULL_ACK]),
            Err(DatagramError::UnknownType)
        );
        assert_eq!(
            parse_upstream(&[2, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DatagramError::UnknownType)
        );
    }

    #[test]
    fn never_panics_on_any_prefix_or_random_bytes() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let n = rng.usize(0..64);
            let mut b: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if n > 0 && rng.bool() {
                b[0] = 2;
            }
            let _ = parse_upstream(&b);
            let _ = parse_downstream(&b);
        }
    }
}
