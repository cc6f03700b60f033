//! Plugins as a cluster feature: every node holds every registered plugin, compiled, before
//! a binding can reach the log, so a swap never stops a fold to fetch and compile.
//!
//! ```text
//! push (any node) ─▶ validate + compile here ─▶ Object Store (by sha256)
//!                 ─▶ plugin-registry event ─▶ fold: `_sync_plugins` numbers the version
//! every node, after folding it ─▶ runtime registry gets the metadata ─▶ prefetch task:
//!                 fetch bytes, compile, announce "compiled" in the presence bucket
//! bind (any node) ─▶ wait until every live node announced the component (or time out,
//!                 naming the nodes not ready) ─▶ binding event ─▶ fold: swap, no compile
//! ```
//!
//! A node that was down when a plugin was pushed prefetches it when it starts; one that
//! folds a binding it has not prepared (catching up) fetches and compiles it first, and the
//! wait is counted (`pluginFoldWaits` in the status) — the fold never decides without it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use super::Sync;
use crate::plugins::PluginVersion;
use crate::replication::{Delivery, EventKind, NodeState, Presence, presence::now_ms};

/// How often a node re-announces itself; an announcement counts for three times this.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The cluster side of this node's plugins.
#[derive(Default)]
pub struct ClusterPlugins {
    presence: watch::Sender<Option<Presence>>,
    /// The latest announcement of every node (this one included).
    nodes: Mutex<BTreeMap<String, NodeState>>,
    /// Bumped whenever an announcement arrives (readiness waits watch it).
    changed: watch::Sender<u64>,
    /// Wakes the prefetch task (a registry change was folded).
    wake: Notify,
    /// Components this node failed to prepare, with why.
    failed: Mutex<BTreeMap<String, String>>,
    /// Times the fold had to wait for a plugin's bytes or compilation.
    pub fold_waits: AtomicU64,
    /// Held from reading the folded registry to applying it to the runtime: the periodic pass
    /// and the fold's own pass must not interleave, or a read taken before a delete folded
    /// would register the deleted version again after the fold's pass removed it.
    registry_sync: tokio::sync::Mutex<()>,
}

/// Why a bind cannot go ahead yet.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the replication log is not reachable")]
    NoLog,
    #[error("not every node has the plugin compiled yet: {}", describe(.0))]
    Nodes(BTreeMap<String, String>),
}

fn describe(nodes: &BTreeMap<String, String>) -> String {
    nodes
        .iter()
        .map(|(n, why)| format!("{n} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Sync {
    fn cluster(&self) -> &ClusterPlugins {
        &self.inner.cluster_plugins
    }

    /// Runs forever once the log is open: keeps the runtime's registry in step with the
    /// folded one, prefetches and compiles every registered plugin, and announces this node.
    pub(super) async fn plugin_loop(&self) {
        let log = self.log().await;
        let presence = loop {
            match log.presence(HEARTBEAT * 3).await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(error = %e, "opening the presence bucket failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        self.cluster().presence.send_replace(Some(presence.clone()));
        let s = self.clone();
        let watcher = presence.clone();
        tokio::spawn(async move { s.watch_nodes(watcher).await });
        loop {
            self.sync_registry().await;
            self.prefetch().await;
            self.announce(&presence).await;
            let _ = tokio::time::timeout(HEARTBEAT, self.cluster().wake.notified()).await;
        }
    }

    /// Keeps `nodes` up to date from the presence bucket (re-watching after an error).
    async fn watch_nodes(&self, presence: Presence) {
        loop {
            match presence.watch().await {
                Ok(updates) => {
                    let mut updates = std::pin::pin!(updates);
                    while let Some((node, state)) = updates.next().await {
                        let mut nodes = self.cluster().nodes.lock();
                        match state {
                            Some(s) => nodes.insert(node, s),
                            None => nodes.remove(&node),
                        };
                        drop(nodes);
                        self.cluster().changed.send_modify(|n| *n += 1);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "watching the presence bucket failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The folded registry's versions, as the runtime stores them, and the deleted ones.
    async fn folded_registry(&self) -> Option<(Vec<PluginVersion>, Vec<(String, u32)>)> {
        use crate::store::sync::plugins::{deleted, registry};
        match self
            .inner
            .store
            .read_raw(|c| Ok((registry(c)?, deleted(c)?)))
            .await
        {
            Ok((rows, deleted)) => Some((
                rows.into_iter()
                    .filter_map(|v| serde_json::from_value(v).ok())
                    .collect(),
                deleted,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "reading the plugin registry failed");
                None
            }
        }
    }

    /// Makes the runtime's registry follow the folded one: versions registered by the log
    /// appear (their bytes follow), versions deleted by it go.
    pub(super) async fn sync_registry(&self) {
        let _one_at_a_time = self.cluster().registry_sync.lock().await;
        let Some((rows, deleted)) = self.folded_registry().await else {
            return;
        };
        let result = self
            .inner
            .plugins
            .blocking(move |rt| {
                for meta in rows {
                    rt.register(meta)?;
                }
                let gone: BTreeSet<(String, u32)> = deleted.into_iter().collect();
                for info in rt.list() {
                    let v = &info.version;
                    if gone.contains(&(v.name.clone(), v.version)) && info.bindings.is_empty() {
                        rt.delete(&v.name, Some(v.version))?;
                    }
                }
                Ok::<_, crate::plugins::PluginError>(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "updating the local plugin registry failed");
        }
        self.cluster().wake.notify_one();
    }

    /// Fetches and compiles every registered component this node lacks.
    async fn prefetch(&self) {
        let rt = self.inner.plugins.runtime.clone();
        let metas: Vec<PluginVersion> = rt.list().into_iter().map(|p| p.version).collect();
        let mut seen = BTreeSet::new();
        for meta in metas {
            if !seen.insert(meta.sha256.clone()) || rt.is_compiled(&meta.sha256) {
                continue;
            }
            let sha = meta.sha256.clone();
            let started = Instant::now();
            match self.prepare_component(meta).await {
                Ok(()) => {
                    self.cluster().failed.lock().remove(&sha);
                    tracing::info!(%sha, ms = started.elapsed().as_millis() as u64, "plugin prefetched and compiled");
                    // Say so at once: a bind may be waiting for this node.
                    let presence = self.cluster().presence.borrow().clone();
                    if let Some(p) = presence {
                        self.announce(&p).await;
                    }
                }
                Err(why) => {
                    tracing::warn!(%sha, reason = %why, "plugin not prepared on this node");
                    self.cluster().failed.lock().insert(sha, why);
                }
            }
        }
    }

    /// Brings one component here, compiled: from the local blob, or from the Object Store.
    async fn prepare_component(&self, meta: PluginVersion) -> Result<(), String> {
        let rt = &self.inner.plugins;
        let sha = meta.sha256.clone();
        if rt.runtime.has_blob(&sha) {
            return rt
                .blocking(move |rt| rt.precompile(&sha))
                .await
                .map_err(|e| e.to_string());
        }
        let bytes = match self.objects().await.get(&sha).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err("not in the object store yet".into()),
            Err(e) => return Err(e.to_string()),
        };
        rt.blocking(move |rt| rt.import(meta, &bytes).map(|_| ()))
            .await
            .map_err(|e| e.to_string())
    }

    async fn announce(&self, presence: &Presence) {
        let rt = &self.inner.plugins.runtime;
        let compiled: BTreeSet<String> = rt
            .list()
            .into_iter()
            .map(|p| p.version.sha256)
            .filter(|sha| rt.is_compiled(sha))
            .collect();
        let state = NodeState {
            compiled: compiled.into_iter().collect(),
            failed: self.cluster().failed.lock().clone(),
            at_ms: now_ms(),
        };
        if let Err(e) = presence.announce(self.node_id(), &state).await {
            tracing::debug!(error = %e, "announcing this node failed");
        }
    }

    /// The live nodes and what each announced.
    fn live_nodes(&self) -> Option<BTreeMap<String, NodeState>> {
        let presence = self.cluster().presence.borrow().clone()?;
        Some(
            self.cluster()
                .nodes
                .lock()
                .iter()
                .filter(|(_, s)| presence.is_live(s))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect(),
        )
    }

    /// The live nodes that hold `sha256` compiled.
    pub fn compiled_on(&self, sha256: &str) -> Vec<String> {
        self.live_nodes()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, s)| s.compiled.iter().any(|c| c == sha256))
            .map(|(n, _)| n)
            .collect()
    }

    /// Waits until every live node (this one included) announced `sha256` compiled, for at
    /// most `timeout`; otherwise names the nodes that did not, and why.
    pub async fn wait_ready(&self, sha256: &str, timeout: Duration) -> Result<(), NotReady> {
        let deadline = Instant::now() + timeout;
        let mut changed = self.cluster().changed.subscribe();
        self.cluster().wake.notify_one();
        loop {
            // Right after start the presence bucket may not be open yet: wait for it within
            // the same timeout rather than refusing at once.
            let Some(nodes) = self.live_nodes() else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(NotReady::NoLog);
                }
                let _ =
                    tokio::time::timeout(left.min(Duration::from_millis(200)), changed.changed())
                        .await;
                continue;
            };
            let mut missing: BTreeMap<String, String> = nodes
                .iter()
                .filter(|(_, s)| !s.compiled.iter().any(|c| c == sha256))
                .map(|(n, s)| {
                    let why = s
                        .failed
                        .get(sha256)
                        .cloned()
                        .unwrap_or_else(|| "fetching or compiling it".into());
                    (n.clone(), why)
                })
                .collect();
            if !self.inner.plugins.runtime.is_compiled(sha256) {
                missing
                    .entry(self.node_id().to_string())
                    .or_insert_with(|| "fetching or compiling it".into());
            }
            if missing.is_empty() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NotReady::Nodes(missing));
            }
            // An announcement arrives, or look again shortly (this node's own compile
            // finishing is seen by `is_compiled`).
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(200)), changed.changed()).await;
        }
    }

    /// Makes sure the plugins bound in this batch are here, compiled, before the fold reaches
    /// their binding events: a node never resolves with the wrong policy. Normally the
    /// prefetch did it already; otherwise the fold waits, and the wait is counted.
    pub(super) async fn prepare_plugins(&self, batch: &[Delivery]) {
        for (i, d) in batch.iter().enumerate() {
            let Ok(event) = &d.event else { continue };
            if event.kind != EventKind::PluginBinding {
                continue;
            }
            let Some((name, sha)) = super::policy::binding_plugin(event) else {
                continue;
            };
            let rt = self.inner.plugins.runtime.clone();
            if rt.is_compiled(&sha) {
                continue;
            }
            self.cluster().fold_waits.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let objects = self.objects().await;
            let mut delay = Duration::from_millis(100);
            let bytes = loop {
                if rt.has_blob(&sha) {
                    break None;
                }
                match objects.get(&sha).await {
                    Ok(Some(b)) => break Some(b),
                    Ok(None) => {
                        tracing::warn!(%sha, "plugin bytes not in the object store yet; waiting")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %sha, "fetching plugin bytes failed; retrying")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            };
            // A binding event from before the log carried uploads names a plugin no registry
            // event registered: it gets this node's next version number, as it always did.
            let registered_in_batch = batch[..i].iter().any(|d| {
                d.event.as_ref().is_ok_and(|e| {
                    e.kind == EventKind::PluginRegistry
                        && e.data
                            .as_ref()
                            .and_then(|m| m.get("sha256"))
                            .and_then(|v| v.as_str())
                            == Some(sha.as_str())
                })
            });
            let known = registered_in_batch || rt.list().iter().any(|p| p.version.sha256 == sha);
            let name = name.to_string();
            let sha2 = sha.clone();
            let done = self
                .inner
                .plugins
                .blocking(move |rt| match bytes {
                    Some(bytes) if !known => rt.upload(&name, &bytes).map(|_| ()),
                    Some(bytes) => rt.prepare(&bytes).map(|_| ()),
                    None => rt.precompile(&sha2),
                })
                .await;
            match done {
                Ok(()) => tracing::warn!(
                    %sha,
                    ms = started.elapsed().as_millis() as u64,
                    "the fold waited for a plugin this node had not prepared"
                ),
                // The binding event will fail identically everywhere: the bytes are the same.
                Err(e) => tracing::warn!(error = %e, %sha, "replicated plugin does not load"),
            }
        }
    }

    /// Times this node's fold waited for a plugin it had not prepared (fetch or compile).
    pub fn plugin_fold_waits(&self) -> u64 {
        self.cluster().fold_waits.load(Ordering::Relaxed)
    }

    /// Called after a fold that changed the registry.
    pub fn plugins_changed(&self) {
        self.cluster().wake.notify_one();
    }
}
