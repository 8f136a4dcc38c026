//! The MAC commands the network server handles (TS001 §5), one file per command: where
//! the network asks (`request`), and what it does with what the device sent (`handle`).
//! The codec itself lives in `entente_frame::mac`.

mod adr_param_setup;
mod dev_status;
mod device_time;
mod dl_channel;
mod duty_cycle;
pub(crate) mod link_adr;
mod link_check;
mod new_channel;
mod rejoin_param_setup;
mod rekey;
mod reset;
mod rx_param_setup;
mod rx_timing_setup;
mod tx_param_setup;

use chrono::{DateTime, TimeDelta, Utc};
use entente_gateway::RxInfo;

use crate::device::Profile;
use crate::mac::{DownCommand, UpCommand};
use crate::session::Session;

/// Lowest SNR at which a LoRa demodulator still decodes, per spreading factor.
pub fn demod_floor_db(sf: u8) -> f32 {
    -20.0 + (12.0 - sf as f32) * 2.5
}

/// What the handlers of a device's commands may look at.
pub(crate) struct Reception<'a> {
    /// The gateway that heard the frame best.
    pub best: &'a RxInfo,
    /// Every gateway that heard it.
    pub rx: &'a [RxInfo],
    /// The device's profile; None when the device record is gone.
    pub profile: Option<&'a Profile>,
    /// How the device got its session; None when the device record is gone.
    pub activation: Option<Activation>,
}

/// How a device got its session: commands of one kind are for one kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Abp,
    Otaa,
}

impl Activation {
    pub(crate) fn of(d: &crate::device::Device) -> Activation {
        match d.abp {
            Some(_) => Activation::Abp,
            None => Activation::Otaa,
        }
    }
}

/// One command handled: what to answer, if anything, and its metric label.
#[derive(Debug, PartialEq)]
pub(crate) struct Handled {
    pub answer: Option<DownCommand>,
    pub label: &'static str,
}

/// Handles one command the device sent.
pub(crate) fn handle(s: &mut Session, c: &UpCommand, at: &Reception<'_>) -> Handled {
    let (answer, label) = match *c {
        UpCommand::LinkCheckReq => (Some(link_check::handle(at)), link_check::LABEL),
        UpCommand::DevStatusAns { battery, margin } => {
            dev_status::handle(s, battery, margin);
            (None, dev_status::LABEL)
        }
        UpCommand::DeviceTimeReq => (Some(device_time::handle(at.best)), device_time::LABEL),
        UpCommand::LinkAdrAns {
            power_ack,
            dr_ack,
            ch_mask_ack,
        } => {
            link_adr::handle(s, power_ack && dr_ack && ch_mask_ack);
            (None, link_adr::LABEL)
        }
        UpCommand::RxParamSetupAns { status } => {
            rx_param_setup::handle(s, status, at.profile);
            (None, rx_param_setup::LABEL)
        }
        UpCommand::RxTimingSetupAns => {
            rx_timing_setup::handle(s, at.profile);
            (None, rx_timing_setup::LABEL)
        }
        UpCommand::NewChannelAns { status } => {
            new_channel::handle(s, status);
            (None, new_channel::LABEL)
        }
        // TS001 §5.1: ResetInd is an ABP device's; from any other it changes nothing.
        UpCommand::ResetInd { minor } => match at.activation {
            Some(Activation::Abp) => (Some(reset::handle(s, minor)), reset::LABEL),
            _ => (None, reset::LABEL),
        },
        UpCommand::RekeyInd { minor } => (Some(rekey::handle(minor)), rekey::LABEL),
        UpCommand::DutyCycleAns => (None, duty_cycle::LABEL),
        UpCommand::TxParamSetupAns => (None, tx_param_setup::LABEL),
        UpCommand::DlChannelAns { .. } => (None, dl_channel::LABEL),
        UpCommand::AdrParamSetupAns => (None, adr_param_setup::LABEL),
        UpCommand::RejoinParamSetupAns { .. } => (None, rejoin_param_setup::LABEL),
    };
    Handled { answer, label }
}

/// What the network weighs before asking the device for something.
pub(crate) struct Asking<'a> {
    /// The profile the device should run; the default one when its record is gone.
    pub profile: &'a Profile,
    /// The uplink's ADR bit, the profile and the server all allow steering the data rate.
    pub adr_allowed: bool,
    /// Data rate of the uplink being answered.
    pub data_rate: u8,
    pub now: DateTime<Utc>,
    pub dev_status_interval: TimeDelta,
}

/// The network's own requests after an uplink, in the order they go out.
pub(crate) fn requests(s: &mut Session, a: &Asking<'_>) -> Vec<DownCommand> {
    let mut out = Vec::new();
    if a.adr_allowed {
        out.extend(link_adr::request(s, a.data_rate));
    }
    out.extend(dev_status::request(s, a.now, a.dev_status_interval));
    out.extend(rx_timing_setup::request(s, a.profile));
    out.extend(rx_param_setup::request(s, a.profile));
    out.extend(new_channel::request(s));
    out
}

/// The commands as they go on the air, in order.
pub(crate) fn encode(commands: &[DownCommand]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in commands {
        c.encode_into(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{rx, session};

    #[test]
    fn every_command_is_counted_under_its_label() {
        let best = rx(1, 5.0, 5);
        let at = Reception {
            best: &best,
            rx: std::slice::from_ref(&best),
            profile: None,
            activation: Some(Activation::Abp),
        };
        let cases = [
            (UpCommand::LinkCheckReq, "link_check_req", true),
            (
                UpCommand::DevStatusAns {
                    battery: 1,
                    margin: 2,
                },
                "dev_status_ans",
                false,
            ),
            (UpCommand::DeviceTimeReq, "device_time_req", true),
            (
                UpCommand::LinkAdrAns {
                    power_ack: true,
                    dr_ack: true,
                    ch_mask_ack: true,
                },
                "link_adr_ans",
                false,
            ),
            (
                UpCommand::RxParamSetupAns { status: 7 },
                "rx_param_setup_ans",
                false,
            ),
            (UpCommand::RxTimingSetupAns, "rx_timing_setup_ans", false),
            (UpCommand::NewChannelAns { status: 3 }, "new_channel_ans", false),
            (UpCommand::ResetInd { minor: 1 }, "reset_ind", true),
            (UpCommand::RekeyInd { minor: 1 }, "rekey_ind", true),
            (UpCommand::DutyCycleAns, "duty_cycle_ans", false),
            (UpCommand::TxParamSetupAns, "tx_param_setup_ans", false),
            (UpCommand::DlChannelAns { status: 3 }, "dl_channel_ans", false),
            (UpCommand::AdrParamSetupAns, "adr_param_setup_ans", false),
            (
                UpCommand::RejoinParamSetupAns { status: 1 },
                "rejoin_param_setup_ans",
                false,
            ),
        ];
        for (c, label, answers) in cases {
            let h = handle(&mut session(), &c, &at);
            assert_eq!((h.label, h.answer.is_some()), (label, answers), "{c:?}");
        }
    }

    #[test]
    fn a_reset_ind_counts_only_from_an_abp_device() {
        let best = rx(1, 5.0, 5);
        for (activation, answers) in [
            (Some(Activation::Abp), true),
            (Some(Activation::Otaa), false),
            (None, false),
        ] {
            let at = Reception {
                best: &best,
                rx: std::slice::from_ref(&best),
                profile: None,
                activation,
            };
            let mut s = session();
            (s.n_fcnt_down, s.a_fcnt_down) = (7, 9);
            let h = handle(&mut s, &UpCommand::ResetInd { minor: 1 }, &at);
            assert_eq!(h.answer.is_some(), answers, "{activation:?}");
            let reset = (s.n_fcnt_down, s.a_fcnt_down) == (0, 0);
            assert_eq!(reset, answers, "{activation:?}: the counters");
        }
    }

    fn cid(c: &DownCommand) -> u8 {
        encode(std::slice::from_ref(c))[0]
    }

    #[test]
    fn requests_go_out_adr_first_then_status_timing_params_channels() {
        let mut s = session();
        s.channels_configured = false;
        s.snr_history = vec![20.0; link_adr::ADR_HISTORY];
        let profile = Profile {
            rx_delay: 3,
            rx2_dr: 2,
            ..Profile::default()
        };
        let a = Asking {
            profile: &profile,
            adr_allowed: true,
            data_rate: 0,
            now: s.created_at,
            dev_status_interval: TimeDelta::hours(24),
        };
        let kinds: Vec<u8> = requests(&mut s, &a).iter().map(cid).collect();
        assert_eq!(kinds, [0x03, 0x06, 0x08, 0x05, 0x07, 0x07, 0x07, 0x07, 0x07]);
        let cmds = requests(
            &mut session(),
            &Asking {
                adr_allowed: false,
                ..a
            },
        );
        assert!(!cmds.iter().any(|c| matches!(c, DownCommand::LinkAdrReq { .. })));
    }
}
