//! Single node → cluster: the first replicated start of a node that holds data.
//!
//! A node that has folded nothing but holds records or collections of its own (a former
//! single node, an imported PocketBase) would otherwise serve rows no other node ever
//! receives: they are in no event. Instead it becomes the cluster's *genesis*: its state is the
//! cluster's first snapshot, at stream position 1, where a marker event says so.
//!
//! ```text
//! empty stream ─▶ prepare (writer job: applied 1, users seed folded, own plugins → registry,
//!                 own bindings → folded table, genesis_pending) ─▶ plugin bytes and files into
//!                 their buckets ─▶ pin, copy, upload the snapshot at 1 ─▶ claim: publish the
//!                 marker with Nats-Expected-Last-Sequence 0
//!   won  ─▶ genesis_pending cleared; the publisher starts (the node's users seed and any
//!           write made meanwhile follow at 2, 3, ...); consume after 1
//!   lost ─▶ snapshot deleted, genesis undone, the node refuses to start
//! non-empty stream (not this node's marker at 1) ─▶ the node refuses to start: two histories
//!                 never mix
//! ```
//!
//! Joining nodes see the marker at position 1 and must install a snapshot (`Bootstrap`): the
//! genesis one, or a later one once compaction replaced it. The snapshot is in the bucket
//! before the marker is in the stream, so a joiner never finds the marker without it. The
//! marker itself is an empty `collection-import` event, so a node that folded it would change
//! nothing. The publisher waits for this decision, so nothing of this node's reaches the
//! stream before its marker. A crash between prepare and claim is resumed at the next start
//! (`genesis_pending`).
//!
//! Two nodes starting at once on an empty stream race for its first event. A node with data
//! says it is starting the cluster (`replication::intent`) from its first connection to NATS
//! until it has decided; a node that finds the stream empty asks before it may publish, and
//! while such a node answers it waits for the stream's first event instead of writing it. This
//! matters in embedded mode: a clustered `nats-server` runs JetStream only once it is routed
//! to a peer, so the node with data cannot claim the stream before a second node's server is
//! up, and the second node (empty, with no genesis work) would otherwise put its `users` seed
//! at position 1 while the first still uploads its snapshot, leaving the node with data to
//! refuse two histories.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::Sync;
use crate::files::file_key;
use crate::replication::{CollectionRef, Event, EventId, EventKind, Log, LogError};
use crate::snapshot::{Kind, SnapshotError};
use crate::store::snapshot::CopyKind;
use crate::store::sync::genesis::{self, OwnPlugin};
use crate::store::{Store, StoreError};

/// The key of the marker's data that names the genesis snapshot.
pub const GENESIS_KEY: &str = "genesis";

#[derive(Debug, thiserror::Error)]
enum GenesisError {
    /// The node must not start.
    #[error("{0}")]
    Fatal(String),
    /// NATS or the store did not answer; try again.
    #[error("{0}")]
    Retry(String),
}

impl From<LogError> for GenesisError {
    fn from(e: LogError) -> Self {
        GenesisError::Retry(e.to_string())
    }
}

impl From<StoreError> for GenesisError {
    fn from(e: StoreError) -> Self {
        GenesisError::Retry(e.to_string())
    }
}

impl From<SnapshotError> for GenesisError {
    fn from(e: SnapshotError) -> Self {
        GenesisError::Retry(e.to_string())
    }
}

/// The marker's genesis description, if `event` is a genesis marker.
pub fn genesis_of(event: &Event) -> Option<&Value> {
    if event.kind != EventKind::CollectionImport {
        return None;
    }
    event.data.as_ref()?.get(GENESIS_KEY)
}

impl Sync {
    /// Whether this node would start a cluster of its own state (see the module docs): its
    /// bindings then stay the ones it served alone until the genesis makes them the log's.
    pub async fn holds_own_state(store: &Store) -> Result<bool, StoreError> {
        let pending = store.read_raw(genesis::pending).await?;
        Ok(pending || store.read(genesis::holds_own_state).await?)
    }

    /// Makes this node's own state the cluster's first snapshot if it holds any and the
    /// stream is empty; refuses (`Err` with the reason) when the stream holds another history.
    /// Retries while NATS or the buckets do not answer.
    pub(super) async fn ensure_genesis(&self) -> Result<(), String> {
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match self.genesis_step().await {
                Ok(()) => return Ok(()),
                Err(GenesisError::Fatal(reason)) => return Err(reason),
                Err(GenesisError::Retry(e)) => {
                    tracing::warn!(error = %e, "starting the cluster from this node's data failed; retrying");
                    self.set_error(super::Part::Consume, &e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }

    async fn genesis_step(&self) -> Result<(), GenesisError> {
        let store = &self.inner.store;
        let pending = store.read_raw(genesis::pending).await?;
        let own = !pending && store.read(genesis::holds_own_state).await?;
        if !pending && !own {
            return Ok(());
        }
        let log = self.log().await;
        let usage = crate::replication::snapshots::stream_usage(&log).await?;
        if usage.last_seq > 0 {
            if pending && self.genesis_is_ours(&log).await? {
                store.write(|ctx| genesis::finish(ctx.conn)).await?;
                return Ok(());
            }
            if pending {
                store.write(|ctx| genesis::undo(ctx.conn)).await?;
            }
            return Err(GenesisError::Fatal(another_history(
                log.stream_name(),
                usage.last_seq,
            )));
        }
        if !pending {
            let (plugins, bindings) = self.own_plugins().await?;
            tracing::info!(
                plugins = plugins.len(),
                "the stream is empty and this node holds data: it becomes the cluster's first snapshot"
            );
            store
                .write(move |ctx| genesis::prepare(ctx.conn, &plugins, &bindings))
                .await?;
        }
        self.claim_genesis(&log).await
    }

    /// On an empty stream, waits while another node says it is starting the cluster from its
    /// data (see the module docs), so that this node's first event follows that node's
    /// genesis. Returns at once when the stream holds events or no node answers.
    pub(super) async fn wait_for_the_clusters_start(&self, log: &Log) {
        let mut told = false;
        loop {
            match crate::replication::snapshots::stream_usage(log).await {
                Ok(u) if u.last_seq > 0 => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading the stream's state");
                    return;
                }
            }
            let wait = std::time::Duration::from_secs(1);
            let Some(node) =
                crate::replication::intent::starting_node(log.client(), log.cluster(), wait).await
            else {
                return;
            };
            if !told {
                tracing::info!(
                    %node,
                    "the stream is empty and another node is starting the cluster from its data: \
                     waiting for its first event"
                );
                told = true;
            }
            // Poll interval while that node uploads its snapshot; each round is one stream-info
            // call and one request.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// When this node holds state of its own (it will start the cluster if the stream is
    /// empty), what ends its announcement of that: the moment it may publish (it won, or
    /// never had to). `None`: nothing to announce.
    pub(super) async fn genesis_announcement(
        &self,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        match Self::holds_own_state(&self.inner.store).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "reading whether this node holds its own state");
                return None;
            }
        }
        let mut may = self.inner.may_publish.subscribe();
        Some(async move {
            let _ = may.wait_for(|v| *v).await;
        })
    }

    /// This node's plugin versions (as the cluster's registry) and binding table.
    async fn own_plugins(&self) -> Result<(Vec<OwnPlugin>, String), GenesisError> {
        let rt = &self.inner.plugins.runtime;
        let mut out = Vec::new();
        for info in rt.list() {
            let v = info.version;
            out.push(OwnPlugin {
                name: v.name.clone(),
                version: v.version,
                sha256: v.sha256.clone(),
                meta: serde_json::to_string(&v).map_err(|e| GenesisError::Retry(e.to_string()))?,
            });
        }
        Ok((out, rt.bindings().to_json()))
    }

    /// Whether the stream's first event is this node's genesis marker.
    async fn genesis_is_ours(&self, log: &Log) -> Result<bool, GenesisError> {
        Ok(log
            .event_at(1)
            .await?
            .is_some_and(|e| e.origin == self.inner.config.node_id && genesis_of(&e).is_some()))
    }

    /// Puts what the genesis snapshot needs in the buckets, stores the snapshot, then claims
    /// position 1 of the stream with the marker.
    async fn claim_genesis(&self, log: &Log) -> Result<(), GenesisError> {
        let store = &self.inner.store;
        let node = self.inner.config.node_id.clone();
        // The buckets are needed: joining nodes read the snapshot, its plugins and files.
        let bucket = self.inner.snapshots.bucket().await;
        let objects = self.objects().await;
        let rt = self.inner.plugins.runtime.clone();
        let shas: Vec<String> = store
            .read_raw(|c| {
                let mut st = c.prepare("SELECT DISTINCT sha256 FROM _sync_plugins")?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await?;
        for sha in shas {
            if objects.has(&sha).await? {
                continue;
            }
            let bytes = rt
                .blob(&sha)
                .map_err(|e| GenesisError::Retry(format!("plugin {sha}: {e}")))?;
            objects.put(&bytes).await?;
        }
        let file_objects = self.file_objects().await;
        let files = store.read(crate::store::files::referenced_all).await?;
        let mut pushed = 0u64;
        for (coll, rid, name, found) in files {
            let Some(f) = found else { continue };
            self.push_one(&file_objects, &file_key(&coll, &rid, &name), &f)
                .await
                .map_err(GenesisError::Retry)?;
            pushed += 1;
        }
        let pinned = store.pin().await?;
        if pinned.seq != 1 {
            return Err(GenesisError::Retry(format!(
                "the genesis state stands at {}, not 1",
                pinned.seq
            )));
        }
        let taken = crate::snapshot::take(
            pinned,
            crate::snapshot::Take {
                kind: Kind::Snapshot,
                copy_kind: CopyKind::Canonical,
                cluster: Some(self.inner.config.cluster.clone()),
                node: node.clone(),
                storage: None,
            },
            self.inner.snapshots.work().to_path_buf(),
            "genesis".into(),
        )
        .await?;
        let name = crate::replication::snapshots::snapshot_name(1, &node);
        let stored = taken.stored(name.clone());
        let put = bucket
            .put(&stored, &taken.archive, &self.inner.boot_progress)
            .await;
        let _ = tokio::fs::remove_file(&taken.archive).await;
        put?;
        let marker = Event {
            id: EventId::random(),
            origin: node.clone(),
            hlc: self.inner.hooks.clock.now(),
            kind: EventKind::CollectionImport,
            collection: CollectionRef {
                id: String::new(),
                name: String::new(),
            },
            record_id: None,
            data: json!({
                "collections": [],
                GENESIS_KEY: {"snapshot": name, "node": node},
            })
            .as_object()
            .cloned(),
            before: None,
            base: None,
            schema_version: 0,
            plugin_version: 0,
            files: Vec::new(),
        };
        let won = match log.publish_first(&marker).await? {
            Some(p) => p.seq == 1,
            None => self.genesis_is_ours(log).await?,
        };
        if !won {
            let _ = bucket.delete(&name).await;
            store.write(|ctx| genesis::undo(ctx.conn)).await?;
            return Err(GenesisError::Fatal(another_history(log.stream_name(), 1)));
        }
        store.write(|ctx| genesis::finish(ctx.conn)).await?;
        let c = &self.inner.counters;
        c.applied_seq.store(1, Ordering::Relaxed);
        c.stream_last_seq.fetch_max(1, Ordering::Relaxed);
        super::raise(&self.inner.tip, 1);
        tracing::info!(
            snapshot = %name,
            rows = taken.header.contents.row_counts.values().sum::<u64>(),
            files = pushed,
            "this node's data is the cluster's first snapshot; joining nodes start from it"
        );
        Ok(())
    }
}

fn another_history(stream: &str, last_seq: u64) -> String {
    format!(
        "this data directory holds records or collections that never went through a log, and \
         the cluster's stream {stream} already holds another history (up to sequence \
         {last_seq}): starting would mix the two. To make this node the first of a new \
         cluster, start it alone on an empty stream (another --cluster name, or a new NATS); \
         to join the existing cluster, start it on an empty --dir. Nothing in this data \
         directory was changed"
    )
}
