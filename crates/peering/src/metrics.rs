//! Federation metrics, labelled by peer member and result.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerResult {
    pub peer: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerChannel {
    pub peer: String,
    pub channel: String,
}

#[derive(Clone, Debug, Default)]
pub struct PeeringMetrics {
    /// Replication sessions that failed (request failed, answer undecodable), by peer
    /// and channel.
    pub sync_failures: Family<PeerChannel, Counter>,
    /// Connections refused at connection time (peer not on the valid roster).
    pub connections_refused: Counter,
    pub peers_connected: Gauge,
    /// Visited side: frames forwarded to home nodes, by result.
    pub forwarded: Family<PeerResult, Counter>,
    /// Home side: frames received from visited nodes, by result.
    pub received: Family<PeerResult, Counter>,
    /// Downlinks through a peer's gateway, by result, on both sides.
    pub downlinks: Family<PeerResult, Counter>,
    /// Frames waiting for an unreachable home node.
    pub buffered: Gauge,
}

impl PeeringMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "entente_peering_connections_refused",
            "Connections refused at connection time (not on the roster)",
            self.connections_refused.clone(),
        );
        r.register(
            "entente_peering_peers_connected",
            "Roster members connected now",
            self.peers_connected.clone(),
        );
        r.register(
            "entente_roaming_forwarded",
            "Frames this node (visited) forwarded to their home node, by result",
            self.forwarded.clone(),
        );
        r.register(
            "entente_roaming_received",
            "Frames received from visited nodes for this node's devices, by result",
            self.received.clone(),
        );
        r.register(
            "entente_roaming_downlinks",
            "Downlinks through a peer's gateway, by result",
            self.downlinks.clone(),
        );
        r.register(
            "entente_sync_failures",
            "Replication sessions that failed (request failed, answer undecodable), by peer and channel",
            self.sync_failures.clone(),
        );
        r.register(
            "entente_roaming_buffered",
            "Frames waiting for an unreachable home node",
            self.buffered.clone(),
        );
    }

    pub fn count(f: &Family<PeerResult, Counter>, peer: &str, result: &'static str) {
        f.get_or_create(&PeerResult {
            peer: peer.to_string(),
            result,
        })
        .inc();
    }
}
