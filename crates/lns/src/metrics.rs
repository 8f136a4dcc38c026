//! LNS counters, exposed at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why an uplink was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    BadPhy,
    UnknownDevAddr,
    MicFailed,
    Replay,
    FCntGap,
    UnknownDevice,
    JoinEuiMismatch,
    NoKey,
    DevNonceReused,
    DevAddrExhausted,
    /// A join a peer kept while we were unreachable.
    LateJoin,
    /// Only peers forwarded it, and every one's agreement was over its quota.
    OverQuota,
    Store,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BadPhy => "bad_phy",
            Rejection::UnknownDevAddr => "unknown_dev_addr",
            Rejection::MicFailed => "mic_failed",
            Rejection::Replay => "replay",
            Rejection::FCntGap => "fcnt_gap",
            Rejection::UnknownDevice => "unknown_device",
            Rejection::JoinEuiMismatch => "join_eui_mismatch",
            Rejection::NoKey => "no_key",
            Rejection::DevNonceReused => "dev_nonce_reused",
            Rejection::DevAddrExhausted => "dev_addr_exhausted",
            Rejection::LateJoin => "late_join",
            Rejection::OverQuota => "over_quota",
            Rejection::Store => "store_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Default, Debug)]
pub struct LnsMetrics {
    /// Distinct frames after deduplication.
    pub frames_deduplicated: Counter,
    /// Copies merged into an earlier frame by the dedup window.
    pub duplicate_copies: Counter,
    pub uplinks_accepted: Counter,
    pub retransmissions: Counter,
    pub joins_accepted: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub downlinks: Family<KindLabel, Counter>,
    pub downlink_failures: Family<ReasonLabel, Counter>,
    pub mac_commands: Family<KindLabel, Counter>,
    /// Frames handed to the federation for their home member (visited side).
    pub forwarded: Counter,
    /// Frames received from peers for this node's devices (home side).
    pub roamed_in: Counter,
    /// Stored uplinks deleted once older than the retention.
    pub uplinks_purged: Counter,
    /// Frames acknowledged to a gateway before a crash, taken back from the journal at
    /// start.
    pub journal_taken_back: Counter,
}

impl LnsMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "entente_lns_uplinks_purged",
            "Stored uplinks deleted once older than the retention",
            self.uplinks_purged.clone(),
        );
        r.register(
            "entente_lns_frames_deduplicated",
            "Distinct frames after deduplication",
            self.frames_deduplicated.clone(),
        );
        r.register(
            "entente_lns_duplicate_copies",
            "Copies of a frame merged by the dedup window",
            self.duplicate_copies.clone(),
        );
        r.register(
            "entente_lns_uplinks_accepted",
            "Data uplinks that passed MIC and FCnt checks",
            self.uplinks_accepted.clone(),
        );
        r.register(
            "entente_lns_retransmissions",
            "Uplinks repeating the last accepted FCnt",
            self.retransmissions.clone(),
        );
        r.register(
            "entente_lns_joins_accepted",
            "Join requests answered with a join accept",
            self.joins_accepted.clone(),
        );
        r.register(
            "entente_lns_rejected",
            "Frames refused, by reason",
            self.rejected.clone(),
        );
        r.register(
            "entente_lns_downlinks",
            "Downlinks scheduled, by kind and window",
            self.downlinks.clone(),
        );
        r.register(
            "entente_lns_downlink_failures",
            "Downlinks that could not be sent, by reason",
            self.downlink_failures.clone(),
        );
        r.register(
            "entente_lns_mac_commands",
            "MAC commands received from devices",
            self.mac_commands.clone(),
        );
    }

    pub fn register_roaming(&self, r: &mut Registry) {
        r.register(
            "entente_lns_forwarded",
            "Frames forwarded to their home member (this node visited)",
            self.forwarded.clone(),
        );
        r.register(
            "entente_lns_roamed_in",
            "Gateway receptions of this node's frames reported by peers",
            self.roamed_in.clone(),
        );
        r.register(
            "entente_lns_journal_taken_back",
            "Frames acknowledged to a gateway before a crash, taken back from the journal at start",
            self.journal_taken_back.clone(),
        );
    }

    pub fn reject(&self, r: Rejection) {
        self.rejected
            .get_or_create(&ReasonLabel { reason: r.as_str() })
            .inc();
    }
}
