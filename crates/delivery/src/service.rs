//! The delivery service: enqueues inside the LNS's uplink batch, then one worker per
//! recipient delivers in order, retries with exponential backoff and expires after 48 h.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use entente_lns::{Device, UplinkHook, UplinkRecord};
use entente_model::SharedClock;
use entente_store::{Batch, Durability, Store, StoreError};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::allow::PushAllowList;
use crate::message::uplink_json;
use crate::metrics::DeliveryMetrics;
use crate::recipient::{FileFormat, NewRecipient, Recipient, RecipientKind};
pub use crate::settings::DeliveryConfig;
use crate::tables::{Pending, Queue, RecipientState, Recipients, Served, States};

/// A queued message with its key (recipient, seq).
type Queued = ((u64, u64), Pending);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("recipient {0} not found")]
    NotFound(u64),
    #[error("invalid recipient: {0}")]
    Invalid(String),
    #[error("recipient {0} is not a REST pull recipient")]
    NotPull(u64),
    #[error(
        "cursor {cursor} is beyond the last message served ({served}): it would acknowledge messages never read"
    )]
    CursorAhead { cursor: u64, served: u64 },
}

struct Live {
    recipient: Recipient,
    stop: CancellationToken,
    depth: Arc<AtomicU64>,
    /// First queue seq that may still be present: scans start here instead of walking
    /// over the tombstones of delivered messages. Seqs only grow, so nothing is skipped.
    head: Arc<AtomicU64>,
    /// The highest seq a pull returned ([`Served`]).
    served: Arc<AtomicU64>,
}

pub struct Delivery {
    store: Arc<Store>,
    clock: SharedClock,
    cfg: DeliveryConfig,
    live: RwLock<HashMap<u64, Live>>,
    by_group: RwLock<HashMap<String, Vec<u64>>>,
    notify: Notify,
    next_id: Mutex<u64>,
    http: reqwest::Client,
    pub metrics: DeliveryMetrics,
    shutdown: CancellationToken,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Delivery {
    /// Loads recipients and their queue depths. Workers start with [`Delivery::start`].
    pub fn load(
        store: Arc<Store>,
        clock: SharedClock,
        cfg: DeliveryConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, DeliveryError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .build()
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let d = Arc::new(Delivery {
            store: store.clone(),
            clock,
            cfg,
            live: RwLock::new(HashMap::new()),
            by_group: RwLock::new(HashMap::new()),
            notify: Notify::new(),
            next_id: Mutex::new(1),
            http,
            metrics: DeliveryMetrics::default(),
            shutdown,
        });
        let mut max_id = 0;
        for row in store.iter::<Recipients>()? {
            let (id, json) = row?;
            max_id = max_id.max(id);
            match serde_json::from_str::<Recipient>(&json) {
                Ok(r) => {
                    let mut depth = 0;
                    let mut head = u64::MAX;
                    for q in store.range_from::<Queue>(&(id, 0))? {
                        let (k, _) = q?;
                        if k.0 != id {
                            break;
                        }
                        head = head.min(k.1);
                        depth += 1;
                    }
                    let served = store.get::<Served>(&id)?.unwrap_or(0);
                    d.install(r, depth, if depth == 0 { 0 } else { head }, served);
                }
                Err(e) => warn!(recipient = id, error = %e, "unreadable recipient skipped"),
            }
        }
        *d.next_id.lock().unwrap_or_else(|p| p.into_inner()) = max_id + 1;
        Ok(d)
    }

    fn install(&self, r: Recipient, depth: u64, head: u64, served: u64) {
        let id = r.id;
        write(&self.by_group).entry(r.group.clone()).or_default().push(id);
        let live = Live {
            recipient: r,
            stop: self.shutdown.child_token(),
            depth: Arc::new(AtomicU64::new(depth)),
            head: Arc::new(AtomicU64::new(head)),
            served: Arc::new(AtomicU64::new(served)),
        };
        self.metrics.depth(id).set(depth as i64);
        write(&self.live).insert(id, live);
    }

    /// Starts one worker per recipient.
    pub fn start(self: &Arc<Self>) {
        let ids: Vec<u64> = read(&self.live).keys().copied().collect();
        for id in ids {
            self.spawn_worker(id);
        }
    }

    fn spawn_worker(self: &Arc<Self>, id: u64) {
        let Some(stop) = read(&self.live).get(&id).map(|l| l.stop.clone()) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move { this.worker(id, stop).await });
    }

    pub fn create(self: &Arc<Self>, new: NewRecipient) -> Result<Recipient, DeliveryError> {
        new.validate().map_err(DeliveryError::Invalid)?;
        if let Some(why) = self.cfg.refuses(&new.kind) {
            return Err(DeliveryError::Invalid(why));
        }
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            let id = *n;
            *n += 1;
            id
        };
        let r = Recipient {
            id,
            name: new.name,
            group: new.group,
            kind: new.kind,
            created_at: self.clock.now(),
        };
        let json = serde_json::to_string(&r).map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        self.store.put::<Recipients>(&id, &json, Durability::Sync)?;
        self.install(r.clone(), 0, 0, 0);
        self.spawn_worker(id);
        info!(recipient = id, group = %r.group, "recipient created");
        Ok(r)
    }

    pub fn list(&self) -> Vec<(Recipient, u64, RecipientState)> {
        let mut v: Vec<_> = read(&self.live)
            .values()
            .map(|l| {
                let st = self
                    .store
                    .get::<States>(&l.recipient.id)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                (l.recipient.clone(), l.depth.load(Ordering::Relaxed), st)
            })
            .collect();
        v.sort_by_key(|(r, ..)| r.id);
        v
    }

    pub fn get(&self, id: u64) -> Result<(Recipient, u64, RecipientState), DeliveryError> {
        let live = read(&self.live);
        let l = live.get(&id).ok_or(DeliveryError::NotFound(id))?;
        let st = self.store.get::<States>(&id)?.unwrap_or_default();
        Ok((l.recipient.clone(), l.depth.load(Ordering::Relaxed), st))
    }

    /// Removes a recipient and its queue.
    pub fn delete(&self, id: u64) -> Result<(), DeliveryError> {
        let l = write(&self.live).remove(&id).ok_or(DeliveryError::NotFound(id))?;
        l.stop.cancel();
        if let Some(ids) = write(&self.by_group).get_mut(&l.recipient.group) {
            ids.retain(|x| *x != id);
        }
        let mut batch = self.store.batch();
        batch.delete::<Recipients>(&id)?;
        batch.delete::<States>(&id)?;
        batch.delete::<Served>(&id)?;
        for q in self.store.range_from::<Queue>(&(id, 0))? {
            let (k, _) = q?;
            if k.0 != id {
                break;
            }
            batch.delete::<Queue>(&k)?;
        }
        self.store.write(batch, Durability::Sync)?;
        self.metrics.depth(id).set(0);
        Ok(())
    }

    /// REST pull: messages after `cursor`, oldest first, and the next cursor. Passing a
    /// cursor acknowledges everything up to it: those messages leave the queue, so a
    /// connector that lost a response asks again with its old cursor and loses nothing.
    pub fn pull(&self, id: u64, cursor: u64, limit: usize) -> Result<(Vec<Value>, u64), DeliveryError> {
        let (depth, head, served) = match read(&self.live).get(&id) {
            None => return Err(DeliveryError::NotFound(id)),
            Some(l) if l.recipient.kind != RecipientKind::RestPull => return Err(DeliveryError::NotPull(id)),
            Some(l) => (l.depth.clone(), l.head.clone(), l.served.clone()),
        };
        let last_served = served.load(Ordering::Relaxed);
        if cursor > last_served {
            return Err(DeliveryError::CursorAhead {
                cursor,
                served: last_served,
            });
        }
        if cursor > 0 {
            let mut acked = Vec::new();
            for q in self
                .store
                .range_from::<Queue>(&(id, head.load(Ordering::Relaxed)))?
            {
                let (k, _) = q?;
                if k.0 != id || k.1 > cursor {
                    break;
                }
                acked.push(k);
            }
            if !acked.is_empty() {
                let mut state = self.store.get::<States>(&id)?.unwrap_or_default();
                let mut batch = self.store.batch();
                for k in &acked {
                    batch.delete::<Queue>(k)?;
                }
                state.delivered += acked.len() as u64;
                batch.put::<States>(&id, &state)?;
                self.store.write(batch, Durability::Buffered)?;
                self.metrics.attempt(id, "ok").inc_by(acked.len() as u64);
                self.dec_depth(id, &depth, acked.len() as u64);
            }
            head.fetch_max(cursor.saturating_add(1), Ordering::Relaxed);
        }
        let mut out = Vec::new();
        let mut next = cursor;
        let horizon = self.clock.now() - self.cfg.retention;
        for (k, p) in self.window(id, head.load(Ordering::Relaxed), limit)? {
            if p.enqueued_at < horizon {
                continue; // expired; the worker removes and counts it
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&p.body) {
                out.push(v);
            }
            next = k.1;
        }
        if next > served.load(Ordering::Relaxed) {
            self.store.put::<Served>(&id, &next, Durability::Buffered)?;
            served.fetch_max(next, Ordering::Relaxed);
        }
        Ok((out, next))
    }

    fn backoff(&self, attempts: u32) -> TimeDelta {
        let exp = attempts.saturating_sub(1).min(20);
        let d = self.cfg.backoff_base * 2i32.pow(exp);
        d.min(self.cfg.backoff_max)
    }

    async fn worker(self: Arc<Self>, id: u64, stop: CancellationToken) {
        loop {
            if let Err(e) = self.pass(id).await {
                warn!(recipient = id, error = %e, "delivery pass failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(self.cfg.tick) => {}
            }
        }
    }

    fn handles(&self, id: u64) -> Option<(Recipient, Arc<AtomicU64>, Arc<AtomicU64>)> {
        read(&self.live)
            .get(&id)
            .map(|l| (l.recipient.clone(), l.depth.clone(), l.head.clone()))
    }

    /// Up to `max` queued messages of a recipient, oldest first, from its head.
    fn window(&self, id: u64, head: u64, max: usize) -> Result<Vec<Queued>, StoreError> {
        let mut out = Vec::new();
        for q in self.store.range_from::<Queue>(&(id, head))? {
            let (k, p) = q?;
            if k.0 != id || out.len() >= max {
                break;
            }
            out.push((k, p));
        }
        Ok(out)
    }

    fn dec_depth(&self, id: u64, depth: &AtomicU64, n: u64) {
        let v = depth
            .fetch_sub(n.min(depth.load(Ordering::Relaxed)), Ordering::Relaxed)
            .saturating_sub(n);
        self.metrics.depth(id).set(v as i64);
    }

    /// One pass over a recipient: expire, then deliver what is due.
    async fn pass(&self, id: u64) -> Result<(), DeliveryError> {
        let Some((r, depth, head)) = self.handles(id) else {
            return Ok(());
        };
        let now = self.clock.now();
        let mut state = self.store.get::<States>(&id)?.unwrap_or_default();

        // Expiry by key order: the head is the oldest.
        let horizon = now - self.cfg.retention;
        let mut expired = Vec::new();
        for q in self
            .store
            .range_from::<Queue>(&(id, head.load(Ordering::Relaxed)))?
        {
            let (k, p) = q?;
            if k.0 != id || p.enqueued_at >= horizon {
                break;
            }
            expired.push(k);
        }
        if !expired.is_empty() {
            let mut batch = self.store.batch();
            for k in &expired {
                batch.delete::<Queue>(k)?;
            }
            state.expired += expired.len() as u64;
            batch.put::<States>(&id, &state)?;
            self.store.write(batch, Durability::Sync)?;
            if let Some(last) = expired.last() {
                head.fetch_max(last.1 + 1, Ordering::Relaxed);
            }
            self.metrics.expired(id).inc_by(expired.len() as u64);
            self.dec_depth(id, &depth, expired.len() as u64);
            warn!(
                recipient = id,
                count = expired.len(),
                "undelivered messages expired after the retention period"
            );
        }

        match &r.kind {
            RecipientKind::RestPull => Ok(()),
            RecipientKind::HttpPush { url, authorization } => {
                self.push_http(id, url, authorization.as_deref(), &mut state, &depth, &head, now)
                    .await
            }
            RecipientKind::FilePush {
                format,
                directory,
                url,
                interval_secs,
            } => {
                let due = state
                    .last_file_at
                    .is_none_or(|t| file_due(t, now, *interval_secs));
                let retry_ok = state.next_attempt_at.is_none_or(|t| now >= t);
                if due && retry_ok {
                    self.push_file(
                        id,
                        *format,
                        directory.as_deref(),
                        url.as_deref(),
                        &mut state,
                        &depth,
                        &head,
                        now,
                    )
                    .await?;
                }
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_http(
        &self,
        id: u64,
        url: &str,
        authorization: Option<&str>,
        state: &mut RecipientState,
        depth: &AtomicU64,
        head: &AtomicU64,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        if state.next_attempt_at.is_some_and(|t| now < t) {
            return Ok(());
        }
        // In order, one at a time: a failure stops the pass so nothing overtakes it.
        loop {
            let window = self.window(id, head.load(Ordering::Relaxed), 256)?;
            if window.is_empty() {
                return Ok(());
            }
            for (k, p) in window {
                let mut req = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-entente-seq", k.1.to_string())
                    .body(p.body);
                if let Some(a) = authorization {
                    req = req.header("authorization", a);
                }
                let result = match req.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err((
                        status_label(resp.status().as_u16()),
                        format!("HTTP {}", resp.status()),
                    )),
                    Err(e) if e.is_timeout() => Err(("timeout", "timeout".to_string())),
                    Err(e) => Err(("error", e.to_string())),
                };
                match result {
                    Ok(()) => {
                        // In the WAL before the next message goes: a kill -9 cannot make an
                        // acknowledged message go out again.
                        let mut batch = self.store.batch();
                        batch.delete::<Queue>(&k)?;
                        state.delivered += 1;
                        state.attempts = 0;
                        state.next_attempt_at = None;
                        state.last_error = None;
                        batch.put::<States>(&id, state)?;
                        self.store.write(batch, Durability::Buffered)?;
                        head.fetch_max(k.1 + 1, Ordering::Relaxed);
                        self.metrics.attempt(id, "ok").inc();
                        self.dec_depth(id, depth, 1);
                    }
                    Err((label, msg)) => {
                        state.attempts += 1;
                        if state.attempts > 1 {
                            state.retries += 1;
                            self.metrics.retries(id).inc();
                        }
                        let at = self.clock.now() + self.backoff(state.attempts);
                        state.next_attempt_at = Some(at);
                        state.last_error = Some(msg.clone());
                        self.store.put::<States>(&id, state, Durability::Buffered)?;
                        self.metrics.attempt(id, label).inc();
                        tracing::debug!(recipient = id, error = %msg, next = %at, "delivery failed; will retry");
                        return Ok(());
                    }
                }
                if self.shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_file(
        &self,
        id: u64,
        format: FileFormat,
        directory: Option<&std::path::Path>,
        url: Option<&str>,
        state: &mut RecipientState,
        depth: &AtomicU64,
        head: &AtomicU64,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let mut keys = Vec::new();
        let mut msgs = Vec::new();
        for (k, p) in self.window(id, head.load(Ordering::Relaxed), 100_000)? {
            if let Ok(v) = serde_json::from_slice::<Value>(&p.body) {
                msgs.push(v);
            }
            keys.push(k);
        }
        state.last_file_at = Some(now);
        if keys.is_empty() {
            self.store.put::<States>(&id, state, Durability::Buffered)?;
            return Ok(());
        }
        let ext = match format {
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
        };
        let body = match format {
            FileFormat::Csv => to_csv(&msgs),
            FileFormat::Json => serde_json::to_vec_pretty(&msgs).unwrap_or_default(),
        };
        let name = format!(
            "entente-{id}-{}-{}.{ext}",
            now.format("%Y%m%dT%H%M%SZ"),
            keys[0].1
        );
        let sent: Result<(), String> = match (directory, url) {
            (Some(dir), _) => {
                let tmp = dir.join(format!(".{name}.tmp"));
                let path = dir.join(&name);
                tokio::fs::write(&tmp, &body)
                    .await
                    .and(tokio::fs::rename(&tmp, &path).await)
                    .map_err(|e| format!("{}: {e}", dir.display()))
            }
            (None, Some(u)) => {
                let target = format!("{}/{name}", u.trim_end_matches('/'));
                match self.http.put(&target).body(body).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
            (None, None) => Err("no target".into()),
        };
        match sent {
            Ok(()) => {
                let mut batch = self.store.batch();
                for k in &keys {
                    batch.delete::<Queue>(k)?;
                }
                state.delivered += keys.len() as u64;
                state.attempts = 0;
                state.next_attempt_at = None;
                state.last_error = None;
                batch.put::<States>(&id, state)?;
                self.store.write(batch, Durability::Sync)?;
                if let Some(last) = keys.last() {
                    head.fetch_max(last.1 + 1, Ordering::Relaxed);
                }
                self.metrics.attempt(id, "ok").inc();
                self.dec_depth(id, depth, keys.len() as u64);
                info!(recipient = id, file = %name, messages = keys.len(), "file pushed");
            }
            Err(e) => {
                state.attempts += 1;
                state.retries += u64::from(state.attempts > 1);
                state.next_attempt_at = Some(now + self.backoff(state.attempts));
                state.last_error = Some(e.clone());
                self.store.put::<States>(&id, state, Durability::Buffered)?;
                self.metrics.attempt(id, "error").inc();
                warn!(recipient = id, error = %e, "file push failed; will retry");
            }
        }
        Ok(())
    }
}

fn status_label(code: u16) -> &'static str {
    match code / 100 {
        1 => "http_1xx",
        3 => "http_3xx",
        4 => "http_4xx",
        _ => "http_5xx",
    }
}

const CSV_COLUMNS: &[&str] = &[
    "seq",
    "time",
    "dev_eui",
    "dev_addr",
    "device_name",
    "group",
    "fport",
    "fcnt",
    "payload_hex",
    "rssi",
    "snr",
    "sf",
    "frequency_hz",
    "gateway_count",
];

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn to_csv(msgs: &[Value]) -> Vec<u8> {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for m in msgs {
        let row: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_field(&m[*c])).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

impl UplinkHook for Delivery {
    fn on_uplink(
        &self,
        batch: &mut Batch<'_>,
        device: &Device,
        record: &UplinkRecord,
    ) -> Result<(), StoreError> {
        let ids = read(&self.by_group)
            .get(&device.group)
            .cloned()
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&uplink_json(record, device)).unwrap_or_default();
        let p = Pending {
            dev_eui: record.dev_eui,
            body,
            enqueued_at: record.received_at,
        };
        let live = read(&self.live);
        for id in ids {
            batch.put::<Queue>(&(id, record.seq), &p)?;
            if let Some(l) = live.get(&id) {
                let d = l.depth.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics.depth(id).set(d as i64);
            }
        }
        Ok(())
    }

    fn committed(&self) {
        self.notify.notify_waiters();
    }
}

/// Whether a file push last written at `last` is due again; an interval too long for a
/// date (stored before the 31-day limit) never comes round.
fn file_due(last: DateTime<Utc>, now: DateTime<Utc>, interval_secs: u64) -> bool {
    i64::try_from(interval_secs)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .is_some_and(|interval| now - last >= interval)
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
