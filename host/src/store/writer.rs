//! The writer thread: the only connection that writes. Jobs queue on a bounded channel; the
//! thread takes every job already waiting (up to `max_batch`), runs each in its own savepoint
//! inside one transaction, commits once, then publishes the new schema and the change feed
//! before replying, so a client that got its answer can already read what it wrote.
//!
//! Copying the WAL back into the database file (checkpointing) happens on a second thread with
//! its own connection, so commits never wait for it.

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use rusqlite::Connection;
use rusqlite::hooks::Wal;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::sync::SyncHooks;
use super::system::Schema;
use super::{AuthEpoch, Change, CountCache, StoreError, StoreOptions};

/// What a write job sees: the connection inside its savepoint, the schema as of this job
/// (including earlier jobs of the same batch), and the changes it records.
pub struct WriteCtx<'a> {
    pub conn: &'a Connection,
    pub schema: Arc<Schema>,
    pub changes: Vec<Change>,
    /// Replication's hooks, on a node that replicates.
    pub(crate) sync: Option<&'a SyncHooks>,
    /// Whether this job's changes go to the outbox (off for the fold itself).
    pub(crate) capture: bool,
    /// How many of `changes` already have outbox rows.
    captured: usize,
    /// Outbox sequences written by this job.
    pub(crate) outbox: Vec<u64>,
    /// Outbox rows written by this batch's successful jobs (and the running one), handed to
    /// the publisher after COMMIT.
    fresh: Vec<super::sync::OutboxRow>,
}

impl WriteCtx<'_> {
    /// Writes the outbox rows (and read-your-writes overlay) for the job's changes so far and
    /// returns their outbox sequences. The writer calls it after every successful job; a job
    /// calls it itself when it needs the sequences (write concern). No-op without replication.
    pub fn capture(&mut self) -> Result<Vec<u64>, StoreError> {
        let Some(hooks) = self.sync.filter(|_| self.capture) else {
            if self.capture {
                self.sweep_files()?;
            }
            self.captured = self.changes.len();
            return Ok(Vec::new());
        };
        let seqs = super::sync::capture(
            self.conn,
            hooks,
            &self.changes[self.captured..],
            &mut self.fresh,
        )?;
        // After the overlay's shadow and pending rows exist: they reference files too.
        self.sweep_files()?;
        self.captured = self.changes.len();
        self.outbox.extend(&seqs);
        Ok(seqs)
    }

    /// Moves the files that the job's changed records no longer reference to the trash.
    fn sweep_files(&mut self) -> Result<(), StoreError> {
        for change in &self.changes[self.captured..] {
            if change.collection.has_files() {
                let rid = change
                    .record
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                super::files::sweep(self.conn, &change.collection, rid, None)?;
            }
        }
        Ok(())
    }

    /// Whether this node replicates.
    pub fn replicated(&self) -> bool {
        self.sync.is_some()
    }

    /// The replication hooks, when this node replicates.
    pub fn sync_hooks(&self) -> Option<&SyncHooks> {
        self.sync
    }

    /// Runs `f` and undoes everything it did (rows, DDL, schema, changes), keeping its
    /// result: how a replicated schema change is validated before it goes to the log.
    pub fn dry_run<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let schema = self.schema.clone();
        let changes = self.changes.len();
        let fresh = self.fresh.len();
        self.conn.execute_batch("SAVEPOINT dry_run")?;
        let out = f(self);
        self.conn
            .execute_batch("ROLLBACK TO dry_run; RELEASE dry_run")?;
        self.schema = schema;
        self.changes.truncate(changes);
        self.fresh.truncate(fresh);
        self.captured = self.captured.min(changes);
        out
    }

    /// Queues an event built by the caller (schema changes) in the outbox.
    pub fn enqueue(&mut self, event: &crate::replication::Event) -> Result<u64, StoreError> {
        let seq = super::sync::enqueue_own(self.conn, event, &mut self.fresh)?;
        self.outbox.push(seq);
        Ok(seq)
    }
}

type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// A job runs with the batch's context, or with `None` when the batch could not even begin (it
/// then only produces its failure reply).
type Job = Box<dyn FnOnce(Option<&mut WriteCtx>) -> (bool, Reply) + Send>;

/// Work on the connection between transactions (statements SQLite refuses inside one).
type Outside = Box<dyn FnOnce(&Connection) + Send>;

enum Msg {
    Job(Job),
    /// A job that runs in a transaction of its own, without a savepoint.
    Alone(Job),
    /// Replaces the database file (see [`Writer::reopen`]).
    Reopen(Reopen),
    /// Runs with no transaction open (`VACUUM`, checkpoints); writes nothing to the feed.
    Outside(Outside),
    Close(oneshot::Sender<()>),
}

/// Prepares the file that replaces the database, given the live connection (nothing else is
/// writing meanwhile); returns its path.
pub type PrepareFile =
    Box<dyn FnOnce(&Connection, &Schema) -> Result<std::path::PathBuf, StoreError> + Send>;

pub struct Reopen {
    prepare: PrepareFile,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl Writer {
    pub fn start(
        conn: Connection,
        path: &Path,
        schema: Arc<ArcSwap<Schema>>,
        changes: broadcast::Sender<Arc<Vec<Change>>>,
        (counts, auth_epoch): (Arc<CountCache>, Arc<AuthEpoch>),
        opts: &StoreOptions,
        sync: Option<Arc<SyncHooks>>,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(opts.write_queue.max(1));
        let max_batch = opts.max_batch.max(1);
        let checkpointer = Checkpointer::start(path)?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(
                    conn,
                    rx,
                    schema,
                    changes,
                    (counts, auth_epoch),
                    max_batch,
                    sync,
                    checkpointer,
                );
            })
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Writer { tx })
    }

    pub async fn submit<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_as(false, f).await
    }

    /// Like `submit`, but the job gets a transaction of its own with no savepoint around it:
    /// its `Err` rolls the whole transaction back. For big jobs (the replication fold): a
    /// savepoint makes SQLite copy every page the job touches to the sub-journal first.
    pub async fn submit_alone<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_as(true, f).await
    }

    async fn submit_as<R, F>(&self, alone: bool, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let result = match ctx {
                Some(ctx) => f(ctx),
                None => Err(StoreError::Commit("could not begin a transaction".into())),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_err| {
                let out = match commit_err {
                    None => result,
                    Some(e) => Err(result.err().unwrap_or(StoreError::Commit(e.to_string()))),
                };
                let _ = reply_tx.send(out);
            });
            (ok, reply)
        });
        let msg = if alone {
            Msg::Alone(job)
        } else {
            Msg::Job(job)
        };
        self.tx.send(msg).await.map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Swaps the database file, on the writer thread between two transactions: `prepare` builds
    /// the new file (reading the live one as it wishes), then the live connection and the
    /// checkpoint thread's are closed after a full checkpoint, the new file is renamed over the
    /// old one, and the writer reopens it with the schema it holds. Every reader connection
    /// must be closed first (`Readers::drain`): an old connection's last close would delete
    /// the new file's WAL by name.
    pub async fn reopen(&self, prepare: PrepareFile) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Reopen(Reopen { prepare, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer's connection between two transactions, in queue order with
    /// the jobs: for maintenance statements that cannot run inside a transaction (`VACUUM`,
    /// `PRAGMA wal_checkpoint(TRUNCATE)`). Whatever `f` writes bypasses the change feed and
    /// replication.
    pub async fn outside<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let run: Outside = Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        });
        self.tx
            .send(Msg::Outside(run))
            .await
            .map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_err() {
            return Ok(());
        }
        rx.await.map_err(|_| StoreError::Closed)
    }
}

/// New WAL pages after which the checkpoint thread copies the log back: SQLite's own default.
const CHECKPOINT_PAGES: c_int = 1000;
/// WAL size at which the writer checkpoints itself after a commit. Under a steady stream of
/// commits the background checkpoints trail the writer and the WAL, never fully copied when
/// a transaction begins, would never restart from its first page. By this size the background
/// has copied nearly all of it, so the writer's own checkpoint is short, and the next
/// transaction restarts the log. Commits larger than half of it (a catching-up node's fold
/// batches rewrite thousands of pages each) raise it to twice their size: otherwise the
/// writer would copy every batch back itself, with the background thread idle.
const RESTART_PAGES: c_int = 4 * CHECKPOINT_PAGES;

thread_local! {
    /// Pages in the WAL after this thread's last commit (set by the WAL hook during COMMIT).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer connection's WAL hook. Registering it replaces SQLite's auto-checkpoint, which
/// would otherwise copy the whole log back inside COMMIT on the writer thread.
fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// The checkpoint thread: woken each time commits add `CHECKPOINT_PAGES` to the WAL, it runs a
/// PASSIVE checkpoint on its own connection (which waits for no reader or writer).
struct Checkpointer {
    wake: Option<std_mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// WAL size after the previous commit, and pages added since the thread was last woken.
    last_pages: c_int,
    added: c_int,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = super::system::open_connection(path, false)?;
        let (wake, rx) = std_mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            last_pages: 0,
            added: 0,
        })
    }

    /// Called on the writer thread after every batch.
    fn committed(&mut self, conn: &Connection) {
        let pages = WAL_PAGES.get();
        // A smaller WAL than last time means it restarted from its first page.
        let added = if pages < self.last_pages {
            pages
        } else {
            pages - self.last_pages
        };
        self.added += added;
        self.last_pages = pages;
        if self.added >= CHECKPOINT_PAGES
            && let Some(wake) = &self.wake
        {
            self.added = 0;
            // Full means a checkpoint is already due; it will copy this commit's pages too.
            let _ = wake.try_send(());
        }
        if pages >= RESTART_PAGES.max(added.saturating_mul(2))
            && let Err(e) = checkpoint(conn)
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    /// Stops the thread, letting a running checkpoint finish.
    fn stop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    published: Arc<ArcSwap<Schema>>,
    changes: broadcast::Sender<Arc<Vec<Change>>>,
    (counts, auth_epoch): (Arc<CountCache>, Arc<AuthEpoch>),
    max_batch: usize,
    sync: Option<Arc<SyncHooks>>,
    mut checkpointer: Checkpointer,
) {
    conn.wal_hook(Some(note_wal_pages));
    let mut schema = published.load_full();
    let mut closing = None;
    // A job that must run alone (or outside a transaction), taken off the queue while a
    // batch was being gathered.
    let mut held: Option<Msg> = None;
    loop {
        let first = match held.take() {
            Some(msg) => msg,
            None => match rx.blocking_recv() {
                Some(m) => m,
                None => break,
            },
        };
        let mut batch = Vec::new();
        let mut alone = false;
        // A swap waiting behind the batch being gathered.
        let mut reopen = None;
        match first {
            Msg::Job(j) => batch.push(j),
            Msg::Alone(j) => {
                batch.push(j);
                alone = true;
            }
            Msg::Reopen(r) => reopen = Some(r),
            Msg::Outside(f) => {
                f(&conn);
                continue;
            }
            Msg::Close(tx) => {
                closing = Some(tx);
                break;
            }
        }
        while !alone && reopen.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(m @ (Msg::Alone(_) | Msg::Outside(_))) => {
                    held = Some(m);
                    break;
                }
                Ok(Msg::Reopen(r)) => reopen = Some(r),
                Ok(Msg::Close(tx)) => {
                    closing = Some(tx);
                    break;
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            if let Some(r) = reopen.take() {
                schema = swap_file(
                    &mut conn,
                    &mut checkpointer,
                    r,
                    schema,
                    &published,
                    (&counts, &auth_epoch),
                    sync.as_deref(),
                );
            }
            continue;
        }
        schema = run_batch(
            &conn,
            batch,
            alone,
            schema,
            &published,
            &changes,
            (&counts, &auth_epoch),
            sync.as_deref(),
        );
        checkpointer.committed(&conn);
        if let Some(r) = reopen.take() {
            schema = swap_file(
                &mut conn,
                &mut checkpointer,
                r,
                schema,
                &published,
                (&counts, &auth_epoch),
                sync.as_deref(),
            );
        }
        if closing.is_some() {
            // A job held back still runs before the writer stops.
            match held.take() {
                Some(Msg::Alone(job)) => {
                    run_batch(
                        &conn,
                        vec![job],
                        true,
                        schema,
                        &published,
                        &changes,
                        (&counts, &auth_epoch),
                        sync.as_deref(),
                    );
                }
                Some(Msg::Outside(f)) => f(&conn),
                _ => {}
            }
            break;
        }
    }
    // Drain nothing further: the channel is closed or a close was requested. Fold the WAL back
    // into the database file so the directory is self-contained after shutdown.
    checkpointer.stop();
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
    drop(conn);
    if let Some(tx) = closing {
        let _ = tx.send(());
    }
}

/// Replaces the database file (see [`Writer::reopen`]) and returns the schema now live. A
/// failure of `prepare` changes nothing; a failure after the rename leaves the writer on
/// whatever connection it could reopen, and reports the error.
#[allow(clippy::too_many_arguments)]
fn swap_file(
    conn: &mut Connection,
    checkpointer: &mut Checkpointer,
    r: Reopen,
    schema: Arc<Schema>,
    published: &ArcSwap<Schema>,
    (counts, auth_epoch): (&CountCache, &AuthEpoch),
    sync: Option<&SyncHooks>,
) -> Arc<Schema> {
    let path = match conn.path() {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let _ = r
                .reply
                .send(Err(StoreError::Internal("database has no path".into())));
            return schema;
        }
    };
    let prepared = match std::panic::catch_unwind(AssertUnwindSafe(|| (r.prepare)(conn, &schema))) {
        Ok(result) => result,
        Err(_) => Err(StoreError::Internal(
            "preparing the new database file panicked".into(),
        )),
    };
    let incoming = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = r.reply.send(Err(e));
            return schema;
        }
    };
    let result = (|| -> Result<Arc<Schema>, StoreError> {
        // Everything committed goes into the old file, so it is whole on its own should
        // anything below fail; then no connection to it stays open.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        checkpointer.stop();
        let placeholder = Connection::open_in_memory()?;
        let old = std::mem::replace(conn, placeholder);
        old.close().map_err(|(_, e)| StoreError::Sql(e))?;
        let io = |e: std::io::Error| StoreError::Io(e.to_string());
        for suffix in ["-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        std::fs::rename(&incoming, &path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        *conn = super::system::open_connection(&path, false)?;
        conn.wal_hook(Some(note_wal_pages));
        *checkpointer = Checkpointer::start(&path)?;
        // As `Store::open_with` does: the file may come from an older version.
        let loaded = super::system::bootstrap(conn)?;
        super::sync::create_tables(conn)?;
        super::mails::create_table(conn)?;
        if let Some(hooks) = sync {
            hooks.clock.resume(super::sync::max_hlc(conn)?);
        }
        Ok(Arc::new(loaded))
    })();
    match result {
        Ok(new_schema) => {
            published.store(new_schema.clone());
            counts.bump();
            // Every auth record may differ in the new file: cached tokens are re-verified.
            auth_epoch.bump();
            let _ = r.reply.send(Ok(()));
            new_schema
        }
        Err(e) => {
            tracing::error!(error = %e, "replacing the database file failed");
            // Whatever the connection is now, serve on the file in place.
            if conn.path().is_none_or(|p| p.is_empty())
                && let Ok(c) = super::system::open_connection(&path, false)
            {
                *conn = c;
                conn.wal_hook(Some(note_wal_pages));
                if let Ok(cp) = Checkpointer::start(&path) {
                    *checkpointer = cp;
                }
            }
            let loaded = super::system::load_schema(conn)
                .map(Arc::new)
                .unwrap_or(schema);
            published.store(loaded.clone());
            counts.bump();
            auth_epoch.bump();
            let _ = r.reply.send(Err(e));
            loaded
        }
    }
}

/// Runs `batch` in one transaction, each job in its own savepoint, or (`alone`) its single
/// job with no savepoint, its failure rolling the transaction back.
#[allow(clippy::too_many_arguments)]
fn run_batch(
    conn: &Connection,
    batch: Vec<Job>,
    alone: bool,
    schema: Arc<Schema>,
    published: &ArcSwap<Schema>,
    feed: &broadcast::Sender<Arc<Vec<Change>>>,
    (counts, auth_epoch): (&CountCache, &AuthEpoch),
    sync: Option<&SyncHooks>,
) -> Arc<Schema> {
    let span = tracing::debug_span!("write_batch", jobs = batch.len());
    let _guard = span.enter();
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        let msg = e.to_string();
        tracing::error!(error = %msg, "could not begin a write transaction");
        for job in batch {
            let (_, reply) = (job)(None);
            reply(Some(&msg));
        }
        return schema;
    }
    let start_schema = schema.clone();
    let mut ctx = WriteCtx {
        conn,
        schema,
        changes: Vec::new(),
        sync,
        capture: true,
        captured: 0,
        outbox: Vec::new(),
        fresh: Vec::new(),
    };
    let mut replies: Vec<(Reply, Option<String>)> = Vec::with_capacity(batch.len());
    let mut committed_changes = Vec::new();
    let mut outbox_written = false;
    // A job running alone failed: the transaction is rolled back instead of committed.
    let mut roll_back = false;
    for job in batch {
        let before = ctx.schema.clone();
        ctx.capture = true;
        ctx.captured = 0;
        ctx.outbox.clear();
        let fresh_before = ctx.fresh.len();
        if !alone && let Err(e) = exec_cached(conn, "SAVEPOINT job") {
            tracing::error!(error = %e, "savepoint failed");
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (job)(Some(&mut ctx))));
        let mut ok = match &outcome {
            Ok((ok, _)) => *ok,
            Err(_) => false,
        };
        // The job's changes and their outbox rows commit together, or not at all.
        let mut failure = None;
        if ok && let Err(e) = ctx.capture() {
            tracing::error!(error = %e, "could not write the outbox; the request fails");
            failure = Some(e.to_string());
            ok = false;
        }
        if ok {
            if !alone {
                let _ = exec_cached(conn, "RELEASE job");
            }
            outbox_written |= !ctx.outbox.is_empty();
            committed_changes.append(&mut ctx.changes);
        } else if alone {
            roll_back = true;
        } else {
            let _ = exec_cached(conn, "ROLLBACK TO job")
                .and_then(|()| exec_cached(conn, "RELEASE job"));
            ctx.schema = before;
            ctx.changes.clear();
            ctx.fresh.truncate(fresh_before);
        }
        match outcome {
            Ok((_, reply)) => replies.push((reply, failure)),
            Err(_) => tracing::error!("a write job panicked; its request fails"),
        }
    }
    if roll_back {
        if let Err(e) = exec_cached(conn, "ROLLBACK") {
            tracing::error!(error = %e, "rolling back a failed job's transaction failed");
        }
        for (reply, failure) in replies {
            reply(failure.as_deref());
        }
        return start_schema;
    }
    let commit = exec_cached(conn, "COMMIT");
    let schema = ctx.schema;
    let mut fresh = ctx.fresh;
    match commit {
        Ok(()) => {
            // Totals cached before this commit may be stale now.
            counts.bump();
            let schema_changed = !Arc::ptr_eq(&schema, &start_schema);
            if schema_changed {
                published.store(schema.clone());
            }
            // Before anyone hears of this commit: a token it revoked is refused from now on.
            if schema_changed || committed_changes.iter().any(|c| c.collection.is_auth()) {
                auth_epoch.bump();
            }
            if !committed_changes.is_empty() {
                // Nobody listening is fine: the feed is best-effort fan-out.
                let _ = feed.send(Arc::new(committed_changes));
            }
            if outbox_written && let Some(hooks) = sync {
                hooks.fresh.lock().push(&mut fresh);
                hooks.outbox.notify_one();
            }
            for (reply, failure) in replies {
                reply(failure.as_deref());
            }
            schema
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let msg = e.to_string();
            tracing::error!(error = %msg, "commit failed; the whole batch is rolled back");
            for (reply, _) in replies {
                reply(Some(&msg));
            }
            start_schema
        }
    }
}

/// Runs one parameterless statement from the connection's statement cache (the per-job
/// savepoint statements would otherwise be parsed again for every job; the fold uses it too).
pub(super) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Copies what it can of the WAL into the database file without waiting for anyone.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
