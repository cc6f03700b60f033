//! The outbound stage: every local change passes the collection's outbound filter before it
//! may leave the node. A filter can keep it, drop it (node-local data) or rewrite it (e.g.
//! redact fields). The most recent outbound events are kept in a log bounded by count and by
//! bytes, shown at `GET /api/plugins/outbound` without secret fields; `_superusers` changes
//! never leave a node and never appear there.
//!
//! With replication, the filter runs where the change is captured for the log
//! (`store::sync::capture`, through `sync::policy`), which records here what it decided; the
//! change feed also carries changes applied from other nodes, which are not outbound. On a
//! single node, [`run_outbound`] runs the filters over the change feed instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::{Value, json};
use syncbase_plugin_runtime::types::{Change as WitChange, Direction, Verdict};
use tokio::sync::broadcast::error::RecvError;

use super::Plugins;
use crate::access::present::WithoutSecrets;
use crate::store::sync::LOCAL_ONLY;
use crate::store::{Collection, Record, Store};

/// Most recent events the log keeps, whatever their size.
pub const OUTBOUND_ENTRIES: usize = 1000;
/// Default bound on the bytes of record data the log keeps (`--outbound-log-bytes`).
pub const OUTBOUND_BYTES: usize = 16 << 20;
/// What one entry costs besides its data (ids, names, the queue slot), for the byte bound.
const ENTRY_OVERHEAD: usize = 160;

/// One change as it left the outbound stage. Its record data is kept as JSON text without
/// secret fields (password hashes, tokenKeys, hidden fields): the log is a diagnostic view and
/// shows nothing the record API would not.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    pub event_id: String,
    pub op: &'static str,
    pub collection: String,
    pub id: String,
    /// The record as it left (JSON text); `None` for deletes and for records too large to keep.
    data: Option<String>,
    /// The record was larger than the whole log may hold: only its key is kept.
    truncated: bool,
    /// `keep`, `replace` or (for the counters only) `drop`.
    pub verdict: &'static str,
}

impl OutboundEvent {
    /// An event for a change of `c`, its data stripped of secrets. `max_bytes` is the log's
    /// bound: larger data is not even serialized.
    pub fn new(
        c: &Collection,
        event_id: String,
        op: &'static str,
        id: String,
        data: Option<&Record>,
        verdict: &'static str,
        max_bytes: usize,
    ) -> OutboundEvent {
        let mut truncated = false;
        let data = data.and_then(|rec| {
            if min_json_len(rec) > max_bytes {
                truncated = true;
                return None;
            }
            serde_json::to_string(&WithoutSecrets(c, rec)).ok()
        });
        OutboundEvent {
            event_id,
            op,
            collection: c.name.clone(),
            id,
            data,
            truncated,
            verdict,
        }
    }

    /// What the entry costs the log's byte bound.
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD
            + self.event_id.len()
            + self.collection.len()
            + self.id.len()
            + self.data.as_ref().map_or(0, String::len)
    }

    fn to_json(&self) -> Value {
        let data = self
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok());
        let mut v = json!({
            "eventId": self.event_id, "op": self.op, "collection": self.collection,
            "id": self.id, "data": data, "verdict": self.verdict,
        });
        if self.truncated {
            v["truncated"] = Value::Bool(true);
        }
        v
    }
}

/// A lower bound of a record's JSON length (its strings and keys), cheap to compute, so a
/// record far larger than the log is never serialized just to be thrown away.
fn min_json_len(rec: &Record) -> usize {
    fn walk(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len() + 2,
            Value::Array(a) => a.iter().map(walk).sum::<usize>() + 2,
            Value::Object(m) => m.iter().map(|(k, v)| k.len() + 3 + walk(v)).sum::<usize>() + 2,
            _ => 1,
        }
    }
    rec.iter().map(|(k, v)| k.len() + 3 + walk(v)).sum()
}

struct Recent {
    events: VecDeque<OutboundEvent>,
    bytes: usize,
}

/// Counters and the most recent events that passed the stage, bounded by count and by bytes.
pub struct OutboundLog {
    recent: Mutex<Recent>,
    cap: usize,
    max_bytes: usize,
    pub passed: AtomicU64,
    pub dropped: AtomicU64,
    pub rewritten: AtomicU64,
    pub failures: AtomicU64,
}

impl OutboundLog {
    /// A log of at most `cap` events and `max_bytes` bytes.
    pub fn new(cap: usize, max_bytes: usize) -> OutboundLog {
        OutboundLog {
            recent: Mutex::new(Recent {
                events: VecDeque::new(),
                bytes: 0,
            }),
            cap: cap.max(1),
            max_bytes,
            passed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Records one change as the outbound filter decided it. Changes of `_superusers` never
    /// leave a node and are not recorded at all.
    pub fn record(&self, e: OutboundEvent) {
        if e.collection == LOCAL_ONLY {
            return;
        }
        match e.verdict {
            "drop" => &self.dropped,
            "replace" => &self.rewritten,
            _ => &self.passed,
        }
        .fetch_add(1, Ordering::Relaxed);
        if e.verdict != "drop" {
            self.push(e);
        }
    }

    fn push(&self, mut e: OutboundEvent) {
        if e.bytes() > self.max_bytes {
            e.data = None;
            e.truncated = true;
        }
        let size = e.bytes();
        let mut r = self.recent.lock();
        while r.events.len() >= self.cap
            || (!r.events.is_empty() && r.bytes + size > self.max_bytes)
        {
            if let Some(old) = r.events.pop_front() {
                r.bytes -= old.bytes();
            }
        }
        r.bytes += size;
        r.events.push_back(e);
    }

    /// The `limit` most recent kept events (all: `usize::MAX`), oldest first, as the API
    /// shows them.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let r = self.recent.lock();
        let skip = r.events.len().saturating_sub(limit);
        r.events
            .iter()
            .skip(skip)
            .map(OutboundEvent::to_json)
            .collect()
    }

    /// Bytes the kept events cost against the bound.
    pub fn retained_bytes(&self) -> usize {
        self.recent.lock().bytes
    }
}

fn op_name(c: &WitChange) -> &'static str {
    use syncbase_plugin_runtime::types::Op;
    match c.op {
        Op::Create => "create",
        Op::Update => "update",
        Op::Delete => "delete",
    }
}

/// Runs the outbound stage over the change feed until it closes (single node only: with
/// replication the change feed also carries other nodes' changes).
pub async fn run_outbound(store: Store, plugins: Plugins) {
    let mut rx = store.subscribe();
    loop {
        let batch = match rx.recv().await {
            Ok(b) => b,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "outbound stage lagged behind the change feed");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        // `_superusers` changes are never outbound: no filter sees them, the log never shows them.
        let outbound: Vec<&crate::store::Change> = batch
            .iter()
            .filter(|c| c.collection.name != LOCAL_ONLY)
            .collect();
        if outbound.is_empty() {
            continue;
        }
        // Collections without an outbound filter pass as they are: no WIT conversion, no
        // blocking thread. Only batches that touch a filtered collection pay for plugin calls.
        let filtered = outbound.iter().any(|c| {
            plugins
                .runtime
                .has_filter(&c.collection.id, Direction::Outbound)
        });
        let max = plugins.outbound.max_bytes();
        if !filtered {
            for change in outbound {
                plugins.outbound.record(OutboundEvent::new(
                    &change.collection,
                    new_event_id(),
                    store_op_name(change.op),
                    record_id(&change.record),
                    (change.op != crate::store::Op::Delete).then_some(&change.record),
                    "keep",
                    max,
                ));
            }
            continue;
        }
        let p = plugins.clone();
        let work = tokio::task::spawn_blocking(move || {
            for change in batch.iter().filter(|c| c.collection.name != LOCAL_ONLY) {
                let hlc = (chrono::Utc::now().timestamp_millis().max(0) as u64) << 16;
                let event_id = new_event_id();
                let wit = p.wit_change(change, hlc);
                let outcome = p
                    .runtime
                    .filter(&change.collection.id, Direction::Outbound, &wit);
                if outcome.failure().is_some() {
                    p.outbound.failures.fetch_add(1, Ordering::Relaxed);
                }
                let (verdict, out) = match outcome.value {
                    Verdict::Keep => ("keep", Some(wit)),
                    Verdict::Drop => ("drop", None),
                    Verdict::Replace(c) => ("replace", Some(c)),
                };
                let (op, id, data) = match &out {
                    Some(c) => (
                        op_name(c),
                        c.id.clone(),
                        c.data
                            .as_deref()
                            .and_then(|d| serde_json::from_str::<Record>(d).ok()),
                    ),
                    None => (store_op_name(change.op), record_id(&change.record), None),
                };
                p.outbound.record(OutboundEvent::new(
                    &change.collection,
                    event_id,
                    op,
                    id,
                    data.as_ref(),
                    verdict,
                    max,
                ));
            }
        });
        if let Err(e) = work.await {
            tracing::error!(error = %e, "outbound stage task failed");
        }
    }
}

fn record_id(rec: &Record) -> String {
    rec.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn store_op_name(op: crate::store::Op) -> &'static str {
    match op {
        crate::store::Op::Create => "create",
        crate::store::Op::Update => "update",
        crate::store::Op::Delete => "delete",
    }
}

/// A fresh event id (single node: random; replication will assign log event ids).
fn new_event_id() -> String {
    crate::store::schema::random_string(20, crate::store::schema::LOWER_ALNUM)
}
