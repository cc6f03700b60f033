//! Which nodes are up, and which plugins each has compiled: one JetStream key-value entry per
//! node, refreshed every few seconds, in the bucket `SYNCBASE_<cluster>_NODES`.
//!
//! A plugin binding must not reach the log before every live node can apply it without
//! stopping its fold to fetch and compile the plugin (an 18 MB Python component takes seconds
//! to compile). So each node announces the components it holds compiled, and the node that
//! takes a bind waits until every node announced within the last [`Presence::ttl`] has the
//! binding's component (or gives up and names those that do not). A node that stopped
//! announcing is not waited for: it fetches and compiles what it needs when it folds the
//! binding, as a node catching up does anyway.
//!
//! Presence is advice for timing, never state: the fold does not read it, so nothing a node
//! decides depends on it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::log::{Log, LogError};

/// What a node announces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The components (sha256) this node holds compiled, ready to bind without delay.
    pub compiled: Vec<String>,
    /// Components this node could not prepare, with why (sha256 → reason).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
    /// The announcing node's wall clock, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// The cluster's presence bucket.
#[derive(Clone)]
pub struct Presence {
    kv: kv::Store,
    ttl: Duration,
}

/// The wall clock in ms (presence only compares it with other nodes' within seconds).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Presence {
    /// Opens (or creates) the bucket. Entries older than `ttl` are gone; nodes refresh theirs
    /// more often than that.
    pub(crate) async fn open(log: &Log, ttl: Duration) -> Result<Presence, LogError> {
        let bucket = format!("SYNCBASE_{}_NODES", log.cluster());
        let js = log.jetstream();
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "Syncbase nodes and the plugins each has compiled".into(),
                    history: 1,
                    max_age: ttl * 2,
                    storage: StorageType::Memory,
                    num_replicas: log.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| LogError::Objects(format!("creating bucket {bucket}: {e}")))?,
        };
        Ok(Presence { kv, ttl })
    }

    /// How long an announcement counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Announces this node's state.
    pub async fn announce(&self, node: &str, state: &NodeState) -> Result<(), LogError> {
        let value = serde_json::to_vec(state).map_err(|e| LogError::Objects(e.to_string()))?;
        self.kv
            .put(node, value.into())
            .await
            .map(|_| ())
            .map_err(|e| LogError::Objects(format!("announcing node {node}: {e}")))
    }

    /// Every announcement, now and as they change: `(node, state)`, `None` when a node's
    /// entry was deleted. Ends when the connection's watcher does.
    pub async fn watch(
        &self,
    ) -> Result<impl futures::Stream<Item = (String, Option<NodeState>)> + use<>, LogError> {
        let watch = self
            .kv
            .watch_all()
            .await
            .map_err(|e| LogError::Objects(format!("watching nodes: {e}")))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry.ok()?;
            let state = match entry.operation {
                kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            Some((entry.key, state))
        }))
    }

    /// Whether an announcement made at `at_ms` still counts.
    pub fn is_live(&self, state: &NodeState) -> bool {
        now_ms().saturating_sub(state.at_ms) <= self.ttl.as_millis() as u64
    }
}
