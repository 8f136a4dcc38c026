//! What the nodes report at the end of a run: service levels (devices heard) and
//! traffic (frames, roaming each way, refusals), all counts as integers.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::federation::Federation;
use crate::process::{NodeProcess, metric};

/// The value of each sample line of `metrics` starting with `prefix`, summed by the value
/// of its label `label`; only lines that `keep` accepts count.
fn sum_by(metrics: &str, prefix: &str, label: &str, keep: impl Fn(&str) -> bool) -> BTreeMap<String, u64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for l in metrics.lines().filter(|l| l.starts_with(prefix) && keep(l)) {
        let Some((labels, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let key = labels
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        *sums.entry(key).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
    }
    sums.into_iter().map(|(k, v)| (k, v as u64)).collect()
}

/// Counter `prefix` summed by peer, over the samples whose result is one of `results`.
fn by_peer(metrics: &str, prefix: &str, results: &[&str]) -> BTreeMap<String, u64> {
    sum_by(metrics, prefix, "peer", |l| {
        results.iter().any(|r| l.contains(&format!("result=\"{r}\"")))
    })
}

/// Counter `prefix` summed by the value of its label `label`.
fn by_label(metrics: &str, prefix: &str, label: &str) -> BTreeMap<String, u64> {
    sum_by(metrics, prefix, label, |_| true)
}

/// A counter without labels, as an integer (0 if absent).
fn count(metrics: &str, series: &str) -> u64 {
    metric(metrics, series).unwrap_or(0.0) as u64
}

/// `part` of `total` as a percentage rounded down to a tenth.
fn pct(part: u64, total: u64) -> f64 {
    (part * 1000 / total) as f64 / 10.0
}

impl Federation {
    /// Share of each member's devices heard within a day and within 14 days.
    pub async fn sla(&self) -> Result<Vec<Value>> {
        let now = self.now().await?;
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            out.extend(self.member_sla(m, n, now).await?);
        }
        Ok(out)
    }

    /// Member `m`'s service levels as its node `n` sees them at `now` (none if it has no
    /// devices).
    async fn member_sla(&self, m: usize, n: &NodeProcess, now: DateTime<Utc>) -> Result<Option<Value>> {
        let (mut total, mut day, mut fortnight) = (0u64, 0u64, 0u64);
        for d in self
            .devices
            .iter()
            .filter(|d| self.sc.devices[d.group].member == self.sc.members[m].id)
        {
            total += 1;
            let v = n.get_json(&format!("/v1/devices/{}", d.eui)).await?;
            if let Some(t) = v["session"]["last_seen"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            {
                let age = now - t.to_utc();
                day += (age <= TimeDelta::hours(24)) as u64;
                fortnight += (age <= TimeDelta::days(14)) as u64;
            }
        }
        if total == 0 {
            return Ok(None);
        }
        Ok(Some(json!({
            "member": self.sc.members[m].id, "devices": total,
            "heard_24h_pct": pct(day, total),
            "heard_14d_pct": pct(fortnight, total),
            "targets": {"heard_24h_pct": 90.0, "heard_14d_pct": 95.0},
        })))
    }

    /// Per node: frames, devices, roaming each way, refusals.
    pub async fn traffic_report(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            out.push(self.node_traffic(m, n).await?);
        }
        Ok(out)
    }

    /// Member `m`'s traffic as its node `n` counted it.
    async fn node_traffic(&self, m: usize, n: &NodeProcess) -> Result<Value> {
        let metrics = n.metrics().await?;
        let refusals = n.get_json("/v1/refusals").await?;
        let id = &self.sc.members[m].id;
        Ok(json!({
            "member": id,
            "devices": self.devices.iter().filter(|d| &self.sc.devices[d.group].member == id).count(),
            "uplinks_accepted": count(&metrics, "entente_lns_uplinks_accepted_total"),
            "joins_accepted": count(&metrics, "entente_lns_joins_accepted_total"),
            "delivered_to_application": self.inboxes[m].count(),
            "expected_at_home": self.expected[m],
            "roamed_out_as_visited": by_peer(&metrics, "entente_roaming_forwarded_total", &["accepted", "late_accepted"]),
            "roamed_in_as_home": by_peer(&metrics, "entente_roaming_received_total", &["accepted", "accepted_late"]),
            "downlinks_through_peers": by_peer(&metrics, "entente_roaming_downlinks_total", &["sent_ok"]),
            "refusals": refusals["frames"],
            "lns_rejected": by_label(&metrics, "entente_lns_rejected_total", "reason"),
            "delivery_attempts": by_label(&metrics, "entente_delivery_attempts_total", "result"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    const METRICS: &str = "# TYPE entente_lns_uplinks_accepted_total counter
entente_lns_uplinks_accepted_total 280
entente_lns_joins_accepted_total 0
entente_roaming_forwarded_total{peer=\"smo-vdln\",result=\"accepted\"} 400
entente_roaming_forwarded_total{peer=\"smo-vdln\",result=\"late_accepted\"} 6.0
entente_roaming_forwarded_total{peer=\"smo-vdln\",result=\"refused\"} 3
entente_lns_rejected_total{reason=\"bad_mic\"} 2
";

    #[test]
    fn counts_are_integers() {
        assert_eq!(
            json!(super::count(METRICS, "entente_lns_uplinks_accepted_total")),
            json!(280)
        );
        assert_eq!(
            json!(super::count(METRICS, "entente_lns_joins_accepted_total")),
            json!(0)
        );
        let out = super::by_peer(
            METRICS,
            "entente_roaming_forwarded_total",
            &["accepted", "late_accepted"],
        );
        assert_eq!(json!(out), json!({"smo-vdln": 406}));
        let rejected = super::by_label(METRICS, "entente_lns_rejected_total", "reason");
        assert_eq!(json!(rejected), json!({"bad_mic": 2}));
    }

    #[test]
    fn the_report_prints_them_without_a_fraction() {
        let node = json!({
            "member": "smo-vdln", "devices": 27,
            "uplinks_accepted": super::count(METRICS, "entente_lns_uplinks_accepted_total"),
            "joins_accepted": super::count(METRICS, "entente_lns_joins_accepted_total"),
            "roamed_out_as_visited": super::by_peer(METRICS, "entente_roaming_forwarded_total", &["accepted"]),
        });
        let t = super::super::report::text(&json!({"title": "t", "nodes": [node]}));
        assert!(t.contains("uplinks accepted 280  joins 0  delivered null"), "{t}");
        assert!(t.contains("carried for smo-vdln: 400 frames"), "{t}");
    }
}
