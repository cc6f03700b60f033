//! The store owns SQLite: the database file under `--dir`, the writer thread, the reader pool,
//! the in-memory schema snapshot and the change feed fed by committed writes.
//!
//! Only this module touches rusqlite. Every request's write is one job on the writer thread and
//! runs inside its own savepoint, so a failed request leaves nothing behind; jobs that arrive
//! together share one SQLite transaction (group commit). Readers run on blocking threads and see
//! only committed data.

mod auth_options;
pub mod auth_rows;
pub mod collections;
mod ddl;
mod error;
pub mod expand;
pub mod files;
pub mod installer;
pub mod logs;
pub mod mails;
pub mod merged;
pub mod pocketbase;
mod readers;
pub mod records;
pub mod schema;
pub mod settings;
pub mod snapshot;
pub mod sql;
pub mod sync;
mod system;
mod values;
pub mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;

pub use ddl::{IndexInfo, parse_index};
pub use error::StoreError;
pub use readers::ReadConn;
pub use records::Record;
pub use schema::{Collection, Field, FieldKind};
pub use system::{BOOTSTRAP_USERS_ID, EXTERNAL_AUTHS, MFAS, OTPS, Schema, auth_system_collections};
pub use writer::WriteCtx;

/// What happened to a record, as published on the change feed after commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// One committed record change. The change feed is the single source for realtime fan-out now
/// and for replication later.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: Op,
    pub collection: Arc<Collection>,
    /// The record as stored after the change (for deletes: as it was before).
    pub record: Record,
    /// The record as stored before the change (`None` for creates).
    pub before: Option<Record>,
}

/// List totals remembered until the next commit. A list's `COUNT(*)` is most of its cost on a
/// large table, and reads far outnumber writes; every successful commit bumps the generation,
/// and an entry is only served, or stored, within the generation its query started in, so a
/// total is never older than the data it is shown with.
#[derive(Default)]
pub struct CountCache {
    generation: std::sync::atomic::AtomicU64,
    entries: parking_lot::Mutex<std::collections::HashMap<String, (u64, i64)>>,
}

impl CountCache {
    const MAX_ENTRIES: usize = 10_000;

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn get(&self, key: &str) -> Option<i64> {
        let generation = self.generation();
        let entries = self.entries.lock();
        entries
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, n)| *n)
    }

    /// Stores a total computed by a query that started in `generation`, unless a commit has
    /// happened since.
    pub fn put(&self, key: String, generation: u64, total: i64) {
        let mut entries = self.entries.lock();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (generation, total));
    }

    /// Called by the writer after every successful commit.
    fn bump(&self) {
        let mut entries = self.entries.lock();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.clear();
    }
}

/// A counter bumped after every commit that changed an auth record (password, tokenKey,
/// deletion, any field) or the schema (a collection's token secret), before that write
/// answers, on the writer thread. Caches of verified tokens remember the value they were
/// verified under and are only served under the same value, so a revocation takes effect when
/// its write commits: locally before the reply, and on other nodes when their fold commits it.
#[derive(Default)]
pub struct AuthEpoch(std::sync::atomic::AtomicU64);

impl AuthEpoch {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Tuning for the store, from the validated config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Number of reader connections.
    pub readers: usize,
    /// Capacity of the writer's job queue.
    pub write_queue: usize,
    /// Largest number of jobs committed in one transaction.
    pub max_batch: usize,
    /// Capacity of the change feed (per subscriber lag before it loses events).
    pub change_feed: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            readers: 4,
            write_queue: 1024,
            max_batch: 256,
            change_feed: 4096,
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: writer::Writer,
    readers: readers::Readers,
    schema: Arc<ArcSwap<Schema>>,
    changes: broadcast::Sender<Arc<Vec<Change>>>,
    counts: Arc<CountCache>,
    auth_epoch: Arc<AuthEpoch>,
    path: PathBuf,
    /// Held (shared) by snapshot copies reading the file, (exclusive) by an install swapping it.
    file_lock: Arc<tokio::sync::RwLock<()>>,
    /// Bumped after each install of a snapshot or backup.
    installed: tokio::sync::watch::Sender<u64>,
}

impl Store {
    /// Opens (creating if needed) the database in `dir`, bootstraps the system tables and
    /// default collections, and starts the writer thread.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        Store::open_with(dir, opts, None)
    }

    /// Opens the store of a replicating node: every local change also writes its event to
    /// the outbox, in the same transaction.
    pub fn open_with(
        dir: &Path,
        opts: &StoreOptions,
        sync: Option<Arc<sync::SyncHooks>>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(e.to_string()))?;
        let path = dir.join("data.db");
        let conn = system::open_connection(&path, false)?;
        let schema = system::bootstrap(&conn)?;
        sync::create_tables(&conn)?;
        files::create_tables(&conn)?;
        mails::create_table(&conn)?;
        if let Some(hooks) = &sync {
            hooks.clock.resume(sync::max_hlc(&conn)?);
        }
        let schema = Arc::new(ArcSwap::from_pointee(schema));
        let (changes, _) = broadcast::channel(opts.change_feed.max(16));
        let counts = Arc::new(CountCache::default());
        let auth_epoch = Arc::new(AuthEpoch::default());
        let writer = writer::Writer::start(
            conn,
            &path,
            schema.clone(),
            changes.clone(),
            (counts.clone(), auth_epoch.clone()),
            opts,
            sync,
        )?;
        let readers = readers::Readers::open(&path, opts.readers.max(1))?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer,
                readers,
                schema,
                changes,
                counts,
                auth_epoch,
                path,
                file_lock: Arc::new(tokio::sync::RwLock::new(())),
                installed: tokio::sync::watch::channel(0).0,
            }),
        })
    }

    /// The current committed schema.
    pub fn schema(&self) -> Arc<Schema> {
        self.inner.schema.load_full()
    }

    /// Runs `f` on the writer thread inside its own savepoint; its effects commit only if it
    /// returns `Ok`, and the reply arrives after the commit.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    {
        self.inner.writer.submit(f).await
    }

    /// Runs `f` on a reader connection on a blocking thread, with the schema snapshot current
    /// when the read started.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&ReadConn, &Schema) -> Result<R, StoreError> + Send + 'static,
    {
        let schema = self.schema();
        self.inner.readers.run(move |conn| f(conn, &schema)).await
    }

    /// Applies a batch of stream events (the fold) in one transaction. Its row changes go on
    /// the change feed but never to the outbox.
    pub async fn apply_events(
        &self,
        hooks: Arc<sync::SyncHooks>,
        batch: Arc<Vec<sync::Delivered>>,
        start: usize,
    ) -> Result<sync::ApplyReport, StoreError> {
        // Alone in its transaction: a fold touches thousands of pages, and a savepoint around
        // it would copy each to the sub-journal first.
        self.inner
            .writer
            .submit_alone(move |ctx| {
                ctx.capture = false;
                sync::apply(ctx, &hooks, batch.get(start..).unwrap_or_default())
            })
            .await
    }

    /// Forgets outbox rows up to `upto` once JetStream has acknowledged them.
    pub async fn trim_outbox(&self, upto: u64) -> Result<(), StoreError> {
        self.write(move |ctx| {
            ctx.capture = false;
            sync::trim_outbox(ctx.conn, upto)
        })
        .await
    }

    /// Runs `f` on a reader connection without a schema (replication bookkeeping).
    pub async fn read_raw<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.inner.readers.run(move |conn| f(conn)).await
    }

    /// Subscribes to the change feed: one message per committed transaction.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Change>>> {
        self.inner.changes.subscribe()
    }

    /// The list-total cache, valid until the next commit.
    pub fn counts(&self) -> Arc<CountCache> {
        self.inner.counts.clone()
    }

    /// The auth epoch now (see [`AuthEpoch`]): read it before reading an auth record.
    pub fn auth_epoch(&self) -> u64 {
        self.inner.auth_epoch.get()
    }

    /// Path of the SQLite database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Caps the database at its current size plus `slack` pages (`None` lifts the cap): the
    /// chaos harness's full disk (`crate::testhooks`). Writes that need more room fail with
    /// SQLite's "database or disk is full".
    pub async fn cap_pages(&self, slack: Option<u64>) -> Result<(), StoreError> {
        self.write(move |ctx| {
            ctx.capture = false;
            let pages: u64 = ctx.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            // SQLite's own ceiling when no cap is wanted.
            let cap = slack.map_or(4_294_967_294, |s| pages + s);
            ctx.conn
                .query_row(&format!("PRAGMA max_page_count = {cap}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// The writer, for the store's own modules.
    pub(crate) fn writer(&self) -> &writer::Writer {
        &self.inner.writer
    }

    /// Stops the writer after the queued jobs and checkpoints the WAL into the main file.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.writer.close().await
    }
}
