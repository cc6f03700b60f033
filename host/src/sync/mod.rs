//! Replication at run time: the node's connection to the log, the publisher that drains the
//! outbox, the applier that folds the stream into SQLite, write concern, and cluster status.
//!
//! The store does the transactional parts (`store::sync`: outbox rows written with each
//! change, the fold applied in writer jobs); `replication` is the JetStream vocabulary (log,
//! consumer, event codec); this module runs the loops between them:
//!
//! ```text
//! HTTP write ─▶ writer job: rows + outbox row + overlay ─▶ COMMIT ─▶ reply (default)
//!                                   │ notify
//!                                   ▼
//! publisher: outbox rows in order ─▶ JetStream (Nats-Msg-Id = event id) ─▶ ack ─▶ trim outbox
//!                                                                  (?sync=published waits here)
//! applier: durable consumer node_<id> ─▶ batch ─▶ writer job: fold + applied_seq ─▶ COMMIT ─▶ ack
//!                                                                  (?sync=applied waits here)
//! ```

mod apply;
mod files;
mod genesis;
mod health;
mod plugins;
mod policy;
mod snapshots;
mod status;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

pub use genesis::genesis_of;
pub use health::{GRACE, LastError, Part};
pub use plugins::{ClusterPlugins, NotReady};
pub use policy::{PluginPolicy, binding_data};
pub use snapshots::{Phase, READY_LAG};
pub use status::{hashes, metrics_text, snapshots_json, status_json};

use crate::nats::{EmbeddedNats, EmbeddedOptions};
use crate::plugins::Plugins;
use crate::replication::{
    ConnectOptions, ConsumerOptions, Delivery, EventConsumer, Log, LogError, Outgoing,
    PluginObjects, StreamOptions, StreamState,
};
use crate::store::Store;
use crate::store::sync::{Delivered, SyncHooks};

/// Where the node's NATS comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An existing cluster (`--nats`).
    External(ConnectOptions),
    /// A `nats-server` child supervised by this node (`--sync`).
    Embedded(EmbeddedOptions),
}

/// Replication settings from the command line.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub node_id: String,
    /// Names the stream (`SYNCBASE_<cluster>`): nodes of one cluster share it.
    pub cluster: String,
    pub source: Source,
    /// Largest number of events folded in one transaction.
    pub apply_batch: usize,
    /// How long `?sync=published|applied` waits before answering 504.
    pub wait_timeout: Duration,
    /// How long a bind waits for every node to have the plugin compiled.
    pub plugin_ready_timeout: Duration,
    /// How long a snapshot claim lives without renewal (another node takes over after it).
    pub claim_ttl: Duration,
    /// How long an unreferenced file object stays in the bucket at least.
    pub file_gc_grace: Duration,
}

/// Counters for status and metrics.
#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead: AtomicU64,
    pub batches: AtomicU64,
    pub stream_last_seq: AtomicU64,
    pub applied_seq: AtomicU64,
    /// Events read straight from the stream while the node's consumer could not deliver.
    pub read_from_stream: AtomicU64,
}

/// The node's replication; cheap to clone.
#[derive(Clone)]
pub struct Sync {
    inner: Arc<Inner>,
}

struct Inner {
    config: SyncConfig,
    hooks: Arc<SyncHooks>,
    store: Store,
    plugins: Plugins,
    log: watch::Sender<Option<Log>>,
    objects: watch::Sender<Option<PluginObjects>>,
    file_objects: watch::Sender<Option<crate::replication::FileObjects>>,
    files: crate::files::Files,
    embedded: tokio::sync::Mutex<Option<EmbeddedNats>>,
    /// Largest outbox sequence JetStream acknowledged.
    published: watch::Sender<u64>,
    /// Largest outbox sequence of this node's own events folded.
    applied_own: watch::Sender<u64>,
    connected: AtomicBool,
    /// This node has folded the cluster's `users` seed (cached once true).
    users_seeded: AtomicBool,
    health: health::Health,
    /// The highest stream sequence this node knows exists (its publish acks): the consumer
    /// follows it to notice a pull that stopped delivering.
    tip: watch::Sender<u64>,
    peers: Mutex<BTreeSet<String>>,
    counters: Counters,
    started: Instant,
    stop: Notify,
    /// Prefetching, presence and readiness of plugins (`plugins.rs`).
    cluster_plugins: ClusterPlugins,
    /// Snapshots: taking them when due, and bootstrapping from them.
    snapshots: crate::snapshot::Snapshots,
    /// Where the node stands: connecting, bootstrapping, consuming the log.
    phase: Mutex<Phase>,
    /// Bytes of the bootstrap step under way.
    boot_progress: Arc<crate::replication::Progress>,
    /// Set when the node must not go on (it would serve state that is not the cluster's).
    fatal: watch::Sender<Option<String>>,
    /// The snapshot the node last bootstrapped from (status).
    last_bootstrap: Mutex<Option<serde_json::Value>>,
    /// Whether this node may publish: set once it knows it is not the cluster's genesis, or
    /// has claimed it (`genesis.rs`), so none of its events precedes the genesis marker.
    may_publish: watch::Sender<bool>,
}

/// The value of a watch channel that starts `None` (a bucket, the log: opened once NATS is
/// reachable), once it is `Some`. Never returns if the sender goes away first (shutdown).
pub(crate) async fn wait_some<T: Clone>(mut rx: watch::Receiver<Option<T>>) -> T {
    if let Ok(v) = rx.wait_for(Option::is_some).await
        && let Some(v) = v.clone()
    {
        return v;
    }
    std::future::pending().await
}

/// Why a write concern was not met.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the write committed on this node but was not {what} within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    #[error("the write committed on this node but the cluster refused it: {0}")]
    Refused(String),
    #[error(
        "the write committed on this node but was not {what}: the replication log is unavailable ({reason}); it is published when NATS is reachable again"
    )]
    Unavailable { what: &'static str, reason: String },
    #[error("replication stopped")]
    Stopped,
}

impl Sync {
    /// Connects once to the external cluster to find out whether it accepts this node's
    /// credentials and TLS settings: `Err` only when the servers refused them (or a file named
    /// by a flag is unreadable); unreachable servers are left to the background retries.
    pub async fn check_access(conn: &ConnectOptions) -> Result<(), LogError> {
        match tokio::time::timeout(Duration::from_secs(10), crate::replication::connect(conn)).await
        {
            Ok(Err(e @ LogError::Refused { .. })) => Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "NATS not reachable at start; the node serves and retries");
                Ok(())
            }
            Ok(Ok(client)) => {
                let _ = client.drain().await;
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// The hooks the store needs before it opens (clock, outbox wake-up, policy).
    pub fn hooks(config: &SyncConfig, plugins: &Plugins) -> Arc<SyncHooks> {
        Arc::new(SyncHooks {
            node_id: config.node_id.clone(),
            clock: Arc::new(crate::replication::Clock::with_wall(
                crate::testhooks::wall_clock(),
            )),
            outbox: Arc::new(Notify::new()),
            policy: Arc::new(PluginPolicy::new(plugins.clone())),
            fresh: Default::default(),
            listeners: Default::default(),
        })
    }

    /// Starts replication in the background: NATS (embedded or external), then the publisher
    /// and the applier. The node serves and accepts writes at once; events wait in the outbox
    /// until the log is reachable.
    /// On a replicating node bindings come from the log alone: the runtime takes the table
    /// the fold last committed (or none), whatever `bindings.json` says.
    pub async fn restore_bindings(store: &Store, plugins: &Plugins) -> Result<(), String> {
        let text = store
            .read_raw(crate::store::sync::folded_bindings)
            .await
            .map_err(|e| e.to_string())?;
        let table = match text {
            Some(t) => crate::plugins::BindingTable::from_json(&t).map_err(|e| e.to_string())?,
            None => crate::plugins::BindingTable::default(),
        };
        // Tables folded before bindings were keyed by collection id name collections.
        let (mut table, _) = crate::plugins::reconcile_bindings(table, &store.schema());
        // Version numbers are each registry's own (a table from a snapshot may have been another
        // node's, and bindings folded before the log numbered versions were): a binding names
        // its bytes by sha256, and where its (name, version) does not name those bytes here,
        // that decides the local version.
        let local = plugins.runtime.list();
        for slot in table.slots.values_mut() {
            for b in [&mut slot.active, &mut slot.previous].into_iter().flatten() {
                let exact = local.iter().any(|p| {
                    p.version.name == b.plugin
                        && p.version.version == b.version
                        && p.version.sha256 == b.sha256
                });
                if exact {
                    continue;
                }
                if let Some(p) = local
                    .iter()
                    .find(|p| p.version.sha256 == b.sha256 && p.version.name == b.plugin)
                {
                    b.version = p.version.version;
                }
            }
        }
        plugins
            .blocking(move |rt| rt.apply_bindings(table))
            .await
            .map_err(|e| e.to_string())
    }

    pub fn start(
        config: SyncConfig,
        hooks: Arc<SyncHooks>,
        store: Store,
        plugins: Plugins,
        files: crate::files::Files,
    ) -> Sync {
        let (log, _) = watch::channel(None);
        let (objects, _) = watch::channel(None);
        let (file_objects, _) = watch::channel(None);
        let (published, _) = watch::channel(0);
        let (applied_own, _) = watch::channel(0);
        let (tip, _) = watch::channel(0);
        let snapshots = crate::snapshot::Snapshots::start(
            store.clone(),
            config.node_id.clone(),
            config.cluster.clone(),
            config.claim_ttl,
        );
        let sync = Sync {
            inner: Arc::new(Inner {
                config,
                hooks,
                store,
                plugins,
                log,
                objects,
                file_objects,
                files,
                embedded: tokio::sync::Mutex::new(None),
                published,
                applied_own,
                connected: AtomicBool::new(false),
                users_seeded: AtomicBool::new(false),
                health: Default::default(),
                tip,
                peers: Mutex::new(BTreeSet::new()),
                counters: Counters::default(),
                started: Instant::now(),
                stop: Notify::new(),
                cluster_plugins: ClusterPlugins::default(),
                snapshots,
                phase: Mutex::new(Phase::Connecting),
                boot_progress: crate::replication::Progress::new(),
                fatal: watch::channel(None).0,
                last_bootstrap: Mutex::new(None),
                may_publish: watch::channel(false).0,
            }),
        };
        let s = sync.clone();
        tokio::spawn(async move { s.connect_loop().await });
        let s = sync.clone();
        tokio::spawn(async move { s.publish_loop().await });
        let s = sync.clone();
        tokio::spawn(async move { s.apply_loop().await });
        let s = sync.clone();
        tokio::spawn(async move { s.gc_loop().await });
        let s = sync.clone();
        tokio::spawn(async move { s.plugin_loop().await });
        sync
    }

    pub fn config(&self) -> &SyncConfig {
        &self.inner.config
    }

    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    pub fn sync_hooks(&self) -> &Arc<SyncHooks> {
        &self.inner.hooks
    }

    /// The connected log as it becomes available (rooms open their buckets on it).
    pub fn log_watch(&self) -> watch::Receiver<Option<Log>> {
        self.inner.log.subscribe()
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    fn set_error(&self, part: Part, e: impl ToString) {
        self.inner.health.fail(part, e);
    }

    /// The connected log, waiting for it.
    async fn log(&self) -> Log {
        wait_some(self.inner.log.subscribe()).await
    }

    /// The plugin object store, waiting for the log.
    pub async fn objects(&self) -> PluginObjects {
        wait_some(self.inner.objects.subscribe()).await
    }

    async fn connect_loop(&self) {
        let cfg = &self.inner.config;
        let conn = match &cfg.source {
            Source::External(c) => c.clone(),
            Source::Embedded(opts) => {
                let nats = loop {
                    match EmbeddedNats::start(opts.clone()).await {
                        Ok(n) => break n,
                        Err(e) => {
                            tracing::error!(error = %e, "could not start the embedded nats-server");
                            self.set_error(Part::Connect, &e);
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                };
                let url = nats.client_url();
                *self.inner.embedded.lock().await = Some(nats);
                ConnectOptions {
                    urls: vec![url],
                    name: Some(format!("syncbase-{}", cfg.node_id)),
                    ..Default::default()
                }
            }
        };
        let mut delay = Duration::from_millis(100);
        let (client, servers) = loop {
            match crate::replication::connect_choosing(&conn).await {
                Ok(connected) => break connected,
                Err(e) => {
                    tracing::warn!(error = %e, "replication log not reachable yet; retrying");
                    self.set_error(Part::Connect, &e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        };
        // A node about to start the cluster from its data says so before JetStream answers,
        // so a peer starting at the same time does not write the stream's first event.
        if let Some(until) = self.genesis_announcement().await
            && let Err(e) = crate::replication::intent::announce_start(
                &client,
                &cfg.cluster,
                &cfg.node_id,
                until,
            )
            .await
        {
            tracing::warn!(error = %e, "could not announce that this node starts the cluster");
        }
        let log = loop {
            let stream = StreamOptions::new(cfg.cluster.clone());
            match Log::open(client.clone(), &stream).await {
                Ok(log) => break log.with_servers(servers.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "replication log not reachable yet; retrying");
                    self.set_error(Part::Connect, &e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        };
        self.inner.connected.store(true, Ordering::Release);
        self.inner.health.ok(Part::Connect);
        tracing::info!(
            stream = log.stream_name(),
            replicas = log.replicas(),
            "replication log open"
        );
        // Other nodes' publish acks show a pull that died silently (`replication/tip.rs`).
        let inner = Arc::downgrade(&self.inner);
        let on_tip = move |seq| {
            if let Some(inner) = inner.upgrade() {
                raise(&inner.tip, seq);
            }
        };
        let tips = log.clone();
        tokio::spawn(async move {
            if let Err(e) = tips.follow_tips(on_tip).await {
                tracing::warn!(error = %e, "not following other nodes' stream tips; the idle probe remains");
            }
        });
        // The fold and the publisher need only the stream: they start now. Each bucket opens
        // on its own, retrying until it does, and none holds the log or another bucket back
        // while NATS recovers or the account refuses more streams: the plugin bucket is needed
        // when a binding event names bytes this node lacks, the file bucket when an event
        // names files (`Sync::file_objects`), the snapshot bucket when a snapshot is taken or
        // installed (`snapshot::Bootstrap` waits for it only when the log cannot do instead).
        self.inner.log.send_replace(Some(log.clone()));
        let plugin_bucket = async {
            let objects = self.open_retrying(|| log.plugin_objects()).await;
            self.inner.objects.send_replace(Some(objects));
        };
        let file_bucket = async {
            let files = self.open_retrying(|| log.file_objects()).await;
            self.inner.file_objects.send_replace(Some(files));
        };
        let snapshot_bucket = async {
            let bucket = self
                .open_retrying(|| crate::replication::SnapshotStore::open(&log, cfg.claim_ttl))
                .await;
            self.inner.snapshots.connected(bucket);
        };
        tokio::join!(plugin_bucket, file_bucket, snapshot_bucket);
        self.inner.health.ok(Part::Objects);
        // Servers that join later let the log keep more copies: look now and then until it
        // has three (a cheap stream-info request while it has fewer).
        loop {
            match log.grow_replicas().await {
                Ok(n) if n >= 3 => return,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "checking the stream's replicas"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = self.inner.stop.notified() => return,
            }
        }
    }

    /// Opens one of the log's buckets, retrying every half second; each failure is the
    /// status's last error (part `objects`).
    async fn open_retrying<T, F, Fut>(&self, open: F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, crate::replication::LogError>>,
    {
        loop {
            match open().await {
                Ok(t) => return t,
                Err(e) => {
                    self.set_error(Part::Objects, &e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Drains the outbox into the stream, in order, forever.
    async fn publish_loop(&self) {
        const READ_LIMIT: usize = 1024;
        let log = self.log().await;
        let mut may = self.inner.may_publish.subscribe();
        if may.wait_for(|m| *m).await.is_err() {
            return;
        }
        let store = &self.inner.store;
        let hooks = &self.inner.hooks;
        let mut backoff = Duration::from_millis(50);
        // The last outbox sequence published (and trimmed), and whether every row committed
        // after it reaches `hooks.fresh`: then fresh rows are published without reading the
        // outbox back (a reader-thread hop in every write's replication latency).
        let mut upto: Option<u64> = None;
        let mut in_sync = false;
        loop {
            let (mut fresh, dropped) = hooks.fresh.lock().take();
            in_sync &= !dropped;
            if let Some(u) = upto {
                fresh.retain(|r| r.0 > u);
            }
            let continues = upto.is_some_and(|u| {
                fresh.first().is_some_and(|r| r.0 == u + 1)
                    && fresh.windows(2).all(|w| w[1].0 == w[0].0 + 1)
            });
            let (rows, read) = if in_sync && continues {
                (fresh, false)
            } else if in_sync && fresh.is_empty() {
                (Vec::new(), false)
            } else {
                match store
                    .read_raw(|c| crate::store::sync::outbox_after(c, 0, READ_LIMIT))
                    .await
                {
                    Ok(rows) => (rows, true),
                    Err(e) => {
                        tracing::error!(error = %e, "reading the outbox failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            if rows.is_empty() {
                // A read that found nothing leaves publisher and outbox in step.
                in_sync |= read;
                tokio::select! {
                    _ = hooks.outbox.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        // Idle: check the table itself now and then.
                        in_sync = false;
                    }
                }
                continue;
            }
            let more_in_table = read && rows.len() == READ_LIMIT;
            let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
            let outgoing: Vec<Outgoing> = rows
                .into_iter()
                .filter_map(|(_, id, payload)| {
                    crate::replication::EventId::parse(&id)
                        .ok()
                        .map(|id| Outgoing {
                            id,
                            payload: payload.into(),
                        })
                })
                .collect();
            let all = outgoing.len() == seqs.len();
            // The bucket holds the bytes of every file an event names before the event is in
            // the log.
            if let Err(e) = self.push_files(&outgoing).await {
                tracing::warn!(error = %e, "putting files in the bucket failed; the outbox keeps the events");
                self.set_error(Part::Objects, &e);
                in_sync = false;
                upto = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            let (acked, error) = match log.publish_pipelined(outgoing, 256).await {
                Ok(acks) => (acks, None),
                Err(e) => (e.acked, Some(e.error)),
            };
            if let Some(top) = acked.iter().map(|p| p.seq).max() {
                self.inner
                    .counters
                    .stream_last_seq
                    .fetch_max(top, Ordering::Relaxed);
                if self.raise_tip(top) {
                    log.announce_tip(top).await;
                }
            }
            in_sync = all && error.is_none() && !more_in_table;
            if !acked.is_empty() {
                let last = seqs[acked.len() - 1];
                upto = Some(last);
                if let Err(e) = store.trim_outbox(last).await {
                    tracing::error!(error = %e, "trimming the outbox failed");
                }
                self.inner
                    .counters
                    .published
                    .fetch_add(acked.len() as u64, Ordering::Relaxed);
                self.inner.published.send_modify(|p| *p = (*p).max(last));
            } else {
                upto = None;
            }
            match error {
                None => {
                    backoff = Duration::from_millis(50);
                    self.inner.health.ok(Part::Publish);
                }
                Some(e) => {
                    self.inner
                        .counters
                        .publish_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "publishing failed; the outbox keeps the events");
                    self.set_error(Part::Publish, &e);
                    self.switch_server_if_stuck(&log);
                    // Short: a failed round already waited for its acks, and the stream
                    // usually comes back (a new leader) within seconds.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(400));
                }
            }
        }
    }

    /// Raises the stream tip the consumer follows (`replication/tip.rs`) to `seq`: whether it
    /// was below.
    fn raise_tip(&self, seq: u64) -> bool {
        raise(&self.inner.tip, seq)
    }

    /// The name of the NATS server the node is connected to (or was last).
    pub fn server_name(&self) -> Option<String> {
        self.inner.log.borrow().as_ref().map(Log::server_name)
    }

    /// Whether the node holds a NATS connection right now.
    pub fn connected(&self) -> bool {
        match self.inner.log.borrow().as_ref() {
            Some(log) => log.connected(),
            None => false,
        }
    }

    /// The stream's last sequence, asked from JetStream (falls back to the last one seen).
    pub async fn stream_last_seq(&self) -> u64 {
        self.stream_state().await;
        self.inner.counters.stream_last_seq.load(Ordering::Relaxed)
    }

    /// The stream's state asked from JetStream now (`None` when it does not answer within
    /// half a second).
    pub async fn stream_state(&self) -> Option<StreamState> {
        let log = self.inner.log.borrow().clone()?;
        let state = tokio::time::timeout(Duration::from_millis(500), log.state())
            .await
            .ok()?
            .ok()?;
        self.inner
            .counters
            .stream_last_seq
            .fetch_max(state.last_seq, Ordering::Relaxed);
        Some(state)
    }

    pub fn peers(&self) -> Vec<String> {
        self.inner.peers.lock().iter().cloned().collect()
    }

    /// The last replication error, until the part that failed works again.
    pub fn last_error(&self) -> Option<LastError> {
        self.inner.health.last_error()
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub fn mode(&self) -> &'static str {
        match self.inner.config.source {
            Source::External(_) => "external",
            Source::Embedded(_) => "embedded",
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn plugins(&self) -> &Plugins {
        &self.inner.plugins
    }

    /// Stops the embedded nats-server, if any (on shutdown).
    pub async fn stop(&self) {
        if let Some(nats) = self.inner.embedded.lock().await.take()
            && let Err(e) = nats.stop().await
        {
            tracing::warn!(error = %e, "stopping the embedded nats-server");
        }
    }
}

impl From<LogError> for WaitError {
    fn from(e: LogError) -> Self {
        WaitError::Refused(e.to_string())
    }
}

/// Raises a watched sequence to `seq`: whether it was below.
fn raise(tip: &watch::Sender<u64>, seq: u64) -> bool {
    tip.send_if_modified(|t| {
        let newer = seq > *t;
        *t = (*t).max(seq);
        newer
    })
}
