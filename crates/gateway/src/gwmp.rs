//! Where the server meets `entente-gwmp`, the protocol's pure part: a codec error is
//! counted under its `DatagramDrop` label. (A seam `Downlink` is put in the protocol's
//! terms, from which `TxPk::from_downlink` builds the `txpk`, in `entente-wire`, where
//! `Downlink` is defined.)

use entente_gwmp::DatagramError;

use crate::metrics::DatagramDrop;

impl From<DatagramError> for DatagramDrop {
    fn from(e: DatagramError) -> Self {
        match e {
            DatagramError::TooShort => Self::TooShort,
            DatagramError::BadVersion => Self::BadVersion,
            DatagramError::UnknownType => Self::UnknownType,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use entente_gwmp::json::{Datr, TxPk};
    use entente_region::DataRate;

    use super::*;
    use crate::seam::{Downlink, RxContext, Timing};

    fn downlink(timing: Timing, data_rate: DataRate) -> Downlink {
        Downlink {
            phy_payload: vec![0x60, 1, 2, 3],
            frequency_hz: 868_100_000,
            data_rate,
            power_dbm: 14,
            timing,
        }
    }

    #[test]
    fn class_a_rx1_after_the_reception_and_the_counter_wraps() {
        let rx1 = Timing::AfterReception {
            context: RxContext(u64::from(u32::MAX - 499_999)),
            delay: Duration::from_secs(1),
        };
        let d = downlink(rx1, "SF9BW125".parse().unwrap());
        let t = TxPk::from_downlink(&d);
        assert_eq!((t.imme, t.tmst), (false, Some(500_000)));
        assert_eq!(t.datr, Datr::Lora("SF9BW125".into()));
        assert_eq!(
            (t.modu.as_str(), t.freq, t.powe, t.ipol),
            ("LORA", 868.1, 14, true)
        );
        assert_eq!((t.size, t.data.as_str()), (4, "YAECAw=="));
    }

    #[test]
    fn codec_errors_keep_their_labels() {
        let drop = |b: &[u8]| DatagramDrop::from(entente_gwmp::protocol::parse_upstream(b).unwrap_err());
        assert_eq!(drop(&[2, 0]), DatagramDrop::TooShort);
        assert_eq!(drop(&[9, 0, 0, 0]), DatagramDrop::BadVersion);
        assert_eq!(drop(&[2, 0, 0, 0x42]), DatagramDrop::UnknownType);
    }

    #[test]
    fn class_c_fsk_at_once() {
        let d = downlink(Timing::Immediately, DataRate::Fsk { bitrate: 50_000 });
        let t = TxPk::from_downlink(&d);
        assert_eq!((t.imme, t.tmst), (true, None));
        assert_eq!((t.datr, t.fdev, t.ipol), (Datr::Fsk(50_000), Some(25_000), false));
    }
}
