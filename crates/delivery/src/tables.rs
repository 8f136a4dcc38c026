//! Delivery tables: recipients, per-recipient queues in uplink order, recipient state.

use chrono::{DateTime, Utc};
use entente_model::DevEui;
use entente_store::Table;
use serde::{Deserialize, Serialize};

/// Recipients, stored as their JSON (the API's own shape, tagged enums included).
pub struct Recipients;
impl Table for Recipients {
    const NAME: &'static str = "delivery_recipients";
    type Key = u64;
    type Value = String;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub dev_eui: DevEui,
    /// The message's JSON, encoded once at enqueue.
    pub body: Vec<u8>,
    pub enqueued_at: DateTime<Utc>,
}

/// (recipient, uplink seq): key order is delivery order and expiry order.
pub struct Queue;
impl Table for Queue {
    const NAME: &'static str = "delivery_queue";
    type Key = (u64, u64);
    type Value = Pending;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientState {
    /// Consecutive failed attempts on the head of the queue.
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered: u64,
    pub expired: u64,
    pub retries: u64,
    pub last_error: Option<String>,
    pub last_file_at: Option<DateTime<Utc>>,
}

pub struct States;
impl Table for States {
    const NAME: &'static str = "delivery_state";
    type Key = u64;
    type Value = RecipientState;
}

/// The highest queue seq a REST pull returned to the recipient: a cursor beyond it would
/// acknowledge messages the connector never read.
pub struct Served;
impl Table for Served {
    const NAME: &'static str = "delivery_served";
    type Key = u64;
    type Value = u64;
}

pub const ALL: &[&str] = &[Recipients::NAME, Queue::NAME, States::NAME, Served::NAME];
