//! The outbound stage: every local change passes the collection's outbound filter before it
//! may leave the node. A filter can keep it, drop it (node-local data) or rewrite it (e.g.
//! redact fields). The most recent outbound events are kept in a bounded log, shown at
//! `GET /api/plugins/outbound`.
//!
//! With replication, the filter runs where the change is captured for the log
//! (`store::sync::capture`, through `sync::policy`), which records here what it decided; the
//! change feed also carries changes applied from other nodes, which are not outbound. On a
//! single node, [`run_outbound`] runs the filters over the change feed instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use syncbase_plugin_runtime::types::{Change as WitChange, Direction, Verdict};
use tokio::sync::broadcast::error::RecvError;

use super::Plugins;
use crate::store::Store;

/// One change as it left the outbound stage.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundEvent {
    pub event_id: String,
    pub op: &'static str,
    pub collection: String,
    pub id: String,
    pub data: Option<Value>,
    /// `keep`, `replace` or (for the counters only) `drop`.
    pub verdict: &'static str,
}

/// Counters and the most recent events that passed the stage.
pub struct OutboundLog {
    recent: Mutex<VecDeque<OutboundEvent>>,
    cap: usize,
    pub passed: AtomicU64,
    pub dropped: AtomicU64,
    pub rewritten: AtomicU64,
    pub failures: AtomicU64,
}

impl OutboundLog {
    pub fn new(cap: usize) -> OutboundLog {
        OutboundLog {
            recent: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
            passed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Records one change as the outbound filter decided it.
    pub fn record(&self, e: OutboundEvent) {
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

    fn push(&self, e: OutboundEvent) {
        let mut r = self.recent.lock();
        if r.len() == self.cap {
            r.pop_front();
        }
        r.push_back(e);
    }

    pub fn recent(&self) -> Vec<OutboundEvent> {
        self.recent.lock().iter().cloned().collect()
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
        // Collections without an outbound filter pass as they are: no WIT conversion, no
        // blocking thread. Only batches that touch a filtered collection pay for plugin calls.
        let filtered = batch.iter().any(|c| {
            plugins
                .runtime
                .has_filter(&c.collection.id, Direction::Outbound)
        });
        if !filtered {
            for change in batch.iter() {
                plugins.outbound.passed.fetch_add(1, Ordering::Relaxed);
                plugins.outbound.push(OutboundEvent {
                    event_id: new_event_id(),
                    op: match change.op {
                        crate::store::Op::Create => "create",
                        crate::store::Op::Update => "update",
                        crate::store::Op::Delete => "delete",
                    },
                    collection: change.collection.name.clone(),
                    id: change
                        .record
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    data: (change.op != crate::store::Op::Delete)
                        .then(|| Value::Object(change.record.clone())),
                    verdict: "keep",
                });
            }
            continue;
        }
        let p = plugins.clone();
        let work = tokio::task::spawn_blocking(move || {
            for change in batch.iter() {
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
                match verdict {
                    "drop" => p.outbound.dropped.fetch_add(1, Ordering::Relaxed),
                    "replace" => p.outbound.rewritten.fetch_add(1, Ordering::Relaxed),
                    _ => p.outbound.passed.fetch_add(1, Ordering::Relaxed),
                };
                if let Some(c) = out {
                    p.outbound.push(OutboundEvent {
                        op: op_name(&c),
                        data: c.data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
                        event_id,
                        collection: c.collection,
                        id: c.id,
                        verdict,
                    });
                }
            }
        });
        if let Err(e) = work.await {
            tracing::error!(error = %e, "outbound stage task failed");
        }
    }
}

/// A fresh event id (single node: random; replication will assign log event ids).
fn new_event_id() -> String {
    crate::store::schema::random_string(20, crate::store::schema::LOWER_ALNUM)
}
