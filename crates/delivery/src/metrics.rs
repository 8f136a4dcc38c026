//! Delivery metrics per recipient.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecipientLabel {
    pub recipient: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub recipient: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct DeliveryMetrics {
    queue_depth: Family<RecipientLabel, Gauge>,
    attempts: Family<ResultLabel, Counter>,
    expired: Family<RecipientLabel, Counter>,
    retries: Family<RecipientLabel, Counter>,
}

impl DeliveryMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "entente_delivery_queue_depth",
            "Messages waiting per recipient",
            self.queue_depth.clone(),
        );
        r.register(
            "entente_delivery_attempts",
            "Delivery attempts by result",
            self.attempts.clone(),
        );
        r.register(
            "entente_delivery_expired",
            "Messages dropped after the 48 h retention",
            self.expired.clone(),
        );
        r.register(
            "entente_delivery_retries",
            "Retried deliveries",
            self.retries.clone(),
        );
    }
    fn l(id: u64) -> RecipientLabel {
        RecipientLabel {
            recipient: id.to_string(),
        }
    }
    pub fn depth(&self, id: u64) -> Gauge {
        self.queue_depth.get_or_create(&Self::l(id)).clone()
    }
    pub fn expired(&self, id: u64) -> Counter {
        self.expired.get_or_create(&Self::l(id)).clone()
    }
    pub fn retries(&self, id: u64) -> Counter {
        self.retries.get_or_create(&Self::l(id)).clone()
    }
    pub fn attempt(&self, id: u64, result: &'static str) -> Counter {
        self.attempts
            .get_or_create(&ResultLabel {
                recipient: id.to_string(),
                result,
            })
            .clone()
    }
}
