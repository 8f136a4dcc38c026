use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a whole datagram was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatagramDrop {
    /// Shorter than its header.
    TooShort,
    /// Longer than `max_datagram_bytes`.
    Oversize,
    BadVersion,
    /// Unknown identifier, or one only the server sends.
    UnknownType,
    /// PUSH_DATA or TX_ACK body that is not the expected JSON.
    BadJson,
    /// From a gateway that is not in the registry.
    UnknownGateway,
    /// For a registered gateway, from an address its pinned source does not allow.
    SourceMismatch,
}

impl DatagramDrop {
    pub const ALL: [Self; 7] = [
        Self::TooShort,
        Self::Oversize,
        Self::BadVersion,
        Self::UnknownType,
        Self::BadJson,
        Self::UnknownGateway,
        Self::SourceMismatch,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::Oversize => "oversize",
            Self::BadVersion => "bad_version",
            Self::UnknownType => "unknown_type",
            Self::BadJson => "bad_json",
            Self::UnknownGateway => "unknown_gateway",
            Self::SourceMismatch => "source_mismatch",
        }
    }
}

/// Why one `rxpk` of an accepted PUSH_DATA was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameDrop {
    BadBase64,
    /// Decoded length differs from `size`, or exceeds the LoRa maximum of 255 bytes.
    SizeMismatch,
    CrcFailed,
    /// `stat` 0: no CRC, so the frame cannot be trusted.
    NoCrc,
    /// Frequency, modulation, data rate or signal fields that do not make sense.
    BadRxpk,
    /// The network server behind this gateway server is not keeping up.
    Backpressure,
    /// Not a LoRaWAN uplink (too short, bad FOpts, a downlink or proprietary frame).
    BadPhy,
}

impl FrameDrop {
    pub const ALL: [Self; 7] = [
        Self::BadBase64,
        Self::SizeMismatch,
        Self::CrcFailed,
        Self::NoCrc,
        Self::BadRxpk,
        Self::Backpressure,
        Self::BadPhy,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadBase64 => "bad_base64",
            Self::SizeMismatch => "size_mismatch",
            Self::CrcFailed => "crc_failed",
            Self::NoCrc => "no_crc",
            Self::BadRxpk => "bad_rxpk",
            Self::Backpressure => "backpressure",
            Self::BadPhy => "bad_phy",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatagramLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Counters of the gateway server. Handles are resolved once so the receive loop only
/// touches atomics.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    pub datagrams_received: Counter,
    datagrams_dropped: [Counter; 7],
    pub push_data: Counter,
    pub pull_data: Counter,
    pub tx_ack: Counter,
    pub frames_received: Counter,
    pub frames_accepted: Counter,
    frames_dropped: [Counter; 7],
    pub downlinks_sent: Counter,
    pub tx_ack_ok: Counter,
    pub tx_ack_error: Counter,
    pub tx_ack_unmatched: Counter,
    pub gateways_online: Gauge,
    pub gateways_registered: Gauge,
}

impl GatewayMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let dg = Family::<DatagramLabels, Counter>::default();
        let fr = Family::<FrameLabels, Counter>::default();
        let kinds = Family::<KindLabels, Counter>::default();
        let datagrams_received = Counter::default();
        let frames_received = Counter::default();
        let frames_accepted = Counter::default();
        let downlinks_sent = Counter::default();
        let tx_acks = Family::<KindLabels, Counter>::default();
        let gateways_online = Gauge::default();
        let gateways_registered = Gauge::default();
        reg.register(
            "entente_gateway_datagrams_received",
            "UDP datagrams received on the gateway port",
            datagrams_received.clone(),
        );
        reg.register(
            "entente_gateway_datagrams_dropped",
            "Datagrams discarded, by reason",
            dg.clone(),
        );
        reg.register(
            "entente_gateway_datagrams_accepted",
            "Datagrams accepted, by packet kind",
            kinds.clone(),
        );
        reg.register(
            "entente_gateway_frames_received",
            "rxpk entries in accepted PUSH_DATA datagrams",
            frames_received.clone(),
        );
        reg.register(
            "entente_gateway_frames_accepted",
            "Frames handed to the network server",
            frames_accepted.clone(),
        );
        reg.register(
            "entente_gateway_frames_dropped",
            "Frames discarded, by reason",
            fr.clone(),
        );
        reg.register(
            "entente_gateway_downlinks_sent",
            "PULL_RESP datagrams sent to gateways",
            downlinks_sent.clone(),
        );
        reg.register(
            "entente_gateway_tx_acks",
            "TX_ACK datagrams, by result",
            tx_acks.clone(),
        );
        reg.register(
            "entente_gateways_online",
            "Registered gateways heard within the online window",
            gateways_online.clone(),
        );
        reg.register(
            "entente_gateways_registered",
            "Gateways in the registry",
            gateways_registered.clone(),
        );
        let kind = |k| kinds.get_or_create(&KindLabels { kind: k }).clone();
        let ack = |k| tx_acks.get_or_create(&KindLabels { kind: k }).clone();
        Self {
            datagrams_received,
            datagrams_dropped: DatagramDrop::ALL
                .map(|r| dg.get_or_create(&DatagramLabels { reason: r.as_str() }).clone()),
            push_data: kind("push_data"),
            pull_data: kind("pull_data"),
            tx_ack: kind("tx_ack"),
            frames_received,
            frames_accepted,
            frames_dropped: FrameDrop::ALL
                .map(|r| fr.get_or_create(&FrameLabels { reason: r.as_str() }).clone()),
            downlinks_sent,
            tx_ack_ok: ack("ok"),
            tx_ack_error: ack("error"),
            tx_ack_unmatched: ack("unmatched"),
            gateways_online,
            gateways_registered,
        }
    }

    pub fn drop_datagram(&self, r: DatagramDrop) {
        self.datagrams_dropped[r as usize].inc();
    }

    pub fn drop_frame(&self, r: FrameDrop) {
        self.frames_dropped[r as usize].inc();
    }

    pub fn datagrams_dropped(&self, r: DatagramDrop) -> u64 {
        self.datagrams_dropped[r as usize].get()
    }

    pub fn frames_dropped(&self, r: FrameDrop) -> u64 {
        self.frames_dropped[r as usize].get()
    }
}
