//! MAC commands (TS001 §5): parsing what devices send, encoding what the network sends.

/// A MAC command received from a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpCommand {
    ResetInd {
        minor: u8,
    },
    LinkCheckReq,
    LinkAdrAns {
        power_ack: bool,
        dr_ack: bool,
        ch_mask_ack: bool,
    },
    DutyCycleAns,
    RxParamSetupAns {
        status: u8,
    },
    DevStatusAns {
        battery: u8,
        margin: i8,
    },
    NewChannelAns {
        status: u8,
    },
    RxTimingSetupAns,
    TxParamSetupAns,
    DlChannelAns {
        status: u8,
    },
    RekeyInd {
        minor: u8,
    },
    AdrParamSetupAns,
    DeviceTimeReq,
    RejoinParamSetupAns {
        status: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("unknown MAC command 0x{0:02x}")]
    Unknown(u8),
    #[error("MAC command 0x{0:02x} is truncated")]
    Truncated(u8),
}

/// Parses a sequence of uplink MAC commands. Stops at the first unknown CID, as the
/// specification requires (its length cannot be known), keeping what came before.
pub fn parse_up(mut b: &[u8]) -> (Vec<UpCommand>, Option<MacError>) {
    let mut out = Vec::new();
    while let Some((&cid, rest)) = b.split_first() {
        let len = match cid {
            0x02 | 0x04 | 0x08 | 0x09 | 0x0c | 0x0d => 0,
            0x01 | 0x03 | 0x05 | 0x07 | 0x0a | 0x0b | 0x0f => 1,
            0x06 => 2,
            other => return (out, Some(MacError::Unknown(other))),
        };
        if rest.len() < len {
            return (out, Some(MacError::Truncated(cid)));
        }
        let p = &rest[..len];
        out.push(match cid {
            0x01 => UpCommand::ResetInd { minor: p[0] & 0x0f },
            0x02 => UpCommand::LinkCheckReq,
            0x03 => UpCommand::LinkAdrAns {
                power_ack: p[0] & 0x04 != 0,
                dr_ack: p[0] & 0x02 != 0,
                ch_mask_ack: p[0] & 0x01 != 0,
            },
            0x04 => UpCommand::DutyCycleAns,
            0x05 => UpCommand::RxParamSetupAns { status: p[0] },
            0x06 => {
                // Margin is a signed 6-bit value.
                let m = (p[1] & 0x3f) as i8;
                UpCommand::DevStatusAns {
                    battery: p[0],
                    margin: if m >= 32 { m - 64 } else { m },
                }
            }
            0x07 => UpCommand::NewChannelAns { status: p[0] },
            0x08 => UpCommand::RxTimingSetupAns,
            0x09 => UpCommand::TxParamSetupAns,
            0x0a => UpCommand::DlChannelAns { status: p[0] },
            0x0b => UpCommand::RekeyInd { minor: p[0] & 0x0f },
            0x0c => UpCommand::AdrParamSetupAns,
            0x0d => UpCommand::DeviceTimeReq,
            _ => UpCommand::RejoinParamSetupAns { status: p[0] },
        });
        b = &rest[len..];
    }
    (out, None)
}

/// A MAC command the network sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownCommand {
    ResetConf {
        minor: u8,
    },
    LinkCheckAns {
        margin: u8,
        gw_count: u8,
    },
    LinkAdrReq {
        data_rate: u8,
        tx_power: u8,
        ch_mask: u16,
        ch_mask_cntl: u8,
        nb_trans: u8,
    },
    RxParamSetupReq {
        rx1_dr_offset: u8,
        rx2_dr: u8,
        frequency_hz: u32,
    },
    DevStatusReq,
    NewChannelReq {
        ch_index: u8,
        frequency_hz: u32,
        min_dr: u8,
        max_dr: u8,
    },
    RxTimingSetupReq {
        delay: u8,
    },
    RekeyConf {
        minor: u8,
    },
    /// Seconds since the GPS epoch and 1/256 s fractions.
    DeviceTimeAns {
        gps_seconds: u32,
        fraction: u8,
    },
}

impl DownCommand {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            DownCommand::ResetConf { minor } => out.extend_from_slice(&[0x01, minor & 0x0f]),
            DownCommand::LinkCheckAns { margin, gw_count } => {
                out.extend_from_slice(&[0x02, margin, gw_count])
            }
            DownCommand::LinkAdrReq {
                data_rate,
                tx_power,
                ch_mask,
                ch_mask_cntl,
                nb_trans,
            } => {
                out.push(0x03);
                out.push((data_rate << 4) | (tx_power & 0x0f));
                out.extend_from_slice(&ch_mask.to_le_bytes());
                out.push(((ch_mask_cntl & 0x07) << 4) | (nb_trans & 0x0f));
            }
            DownCommand::RxParamSetupReq {
                rx1_dr_offset,
                rx2_dr,
                frequency_hz,
            } => {
                out.push(0x05);
                out.push(((rx1_dr_offset & 0x07) << 4) | (rx2_dr & 0x0f));
                out.extend_from_slice(&(frequency_hz / 100).to_le_bytes()[..3]);
            }
            DownCommand::DevStatusReq => out.push(0x06),
            DownCommand::NewChannelReq {
                ch_index,
                frequency_hz,
                min_dr,
                max_dr,
            } => {
                out.push(0x07);
                out.push(ch_index);
                out.extend_from_slice(&(frequency_hz / 100).to_le_bytes()[..3]);
                out.push((max_dr << 4) | (min_dr & 0x0f));
            }
            DownCommand::RxTimingSetupReq { delay } => out.extend_from_slice(&[0x08, delay & 0x0f]),
            DownCommand::RekeyConf { minor } => out.extend_from_slice(&[0x0b, minor & 0x0f]),
            DownCommand::DeviceTimeAns {
                gps_seconds,
                fraction,
            } => {
                out.push(0x0d);
                out.extend_from_slice(&gps_seconds.to_le_bytes());
                out.push(fraction);
            }
        }
    }
}

/// Parses downlink MAC commands (used by the device simulator).
pub fn parse_down(mut b: &[u8]) -> Result<Vec<DownCommand>, MacError> {
    let mut out = Vec::new();
    while let Some((&cid, rest)) = b.split_first() {
        let len = match cid {
            0x06 => 0,
            0x01 | 0x08 | 0x0b | 0x04 | 0x09 | 0x0c | 0x0f => 1,
            0x02 | 0x0e => 2,
            0x03 | 0x05 | 0x0a => 4,
            0x07 | 0x0d => 5,
            other => return Err(MacError::Unknown(other)),
        };
        if rest.len() < len {
            return Err(MacError::Truncated(cid));
        }
        let p = &rest[..len];
        let freq = |x: &[u8]| u32::from_le_bytes([x[0], x[1], x[2], 0]) * 100;
        match cid {
            0x01 => out.push(DownCommand::ResetConf { minor: p[0] & 0x0f }),
            0x02 => out.push(DownCommand::LinkCheckAns {
                margin: p[0],
                gw_count: p[1],
            }),
            0x03 => out.push(DownCommand::LinkAdrReq {
                data_rate: p[0] >> 4,
                tx_power: p[0] & 0x0f,
                ch_mask: u16::from_le_bytes([p[1], p[2]]),
                ch_mask_cntl: (p[3] >> 4) & 0x07,
                nb_trans: p[3] & 0x0f,
            }),
            0x05 => out.push(DownCommand::RxParamSetupReq {
                rx1_dr_offset: (p[0] >> 4) & 0x07,
                rx2_dr: p[0] & 0x0f,
                frequency_hz: freq(&p[1..4]),
            }),
            0x06 => out.push(DownCommand::DevStatusReq),
            0x07 => out.push(DownCommand::NewChannelReq {
                ch_index: p[0],
                frequency_hz: freq(&p[1..4]),
                min_dr: p[4] & 0x0f,
                max_dr: p[4] >> 4,
            }),
            0x08 => out.push(DownCommand::RxTimingSetupReq { delay: p[0] & 0x0f }),
            0x0b => out.push(DownCommand::RekeyConf { minor: p[0] & 0x0f }),
            0x0d => out.push(DownCommand::DeviceTimeAns {
                gps_seconds: u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                fraction: p[4],
            }),
            _ => {} // commands the simulator ignores
        }
        b = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_stops_at_unknown() {
        let mut b = Vec::new();
        for c in [
            DownCommand::LinkCheckAns {
                margin: 12,
                gw_count: 3,
            },
            DownCommand::LinkAdrReq {
                data_rate: 5,
                tx_power: 1,
                ch_mask: 0x0007,
                ch_mask_cntl: 0,
                nb_trans: 1,
            },
            DownCommand::RxParamSetupReq {
                rx1_dr_offset: 1,
                rx2_dr: 3,
                frequency_hz: 869_525_000,
            },
            DownCommand::DevStatusReq,
            DownCommand::NewChannelReq {
                ch_index: 3,
                frequency_hz: 867_100_000,
                min_dr: 0,
                max_dr: 5,
            },
            DownCommand::RxTimingSetupReq { delay: 2 },
            DownCommand::DeviceTimeAns {
                gps_seconds: 1_400_000_000,
                fraction: 128,
            },
        ] {
            c.encode_into(&mut b);
        }
        assert_eq!(parse_down(&b).unwrap().len(), 7);
        let (cmds, err) = parse_up(&[0x02, 0x06, 200, 0x3f, 0x0d, 0x99, 0x02]);
        assert_eq!(
            cmds,
            vec![
                UpCommand::LinkCheckReq,
                UpCommand::DevStatusAns {
                    battery: 200,
                    margin: -1
                },
                UpCommand::DeviceTimeReq
            ]
        );
        assert_eq!(err, Some(MacError::Unknown(0x99)));
        assert_eq!(parse_up(&[0x06, 1]).1, Some(MacError::Truncated(0x06)));
    }
}
