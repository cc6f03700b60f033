//! Request logs, as PocketBase keeps them: the `_logs` table of a second SQLite file,
//! `<dir>/auxiliary.db`, written by a thread of its own so logging never waits on (or makes
//! wait) the data writer.
//!
//! A request hands its entry to [`Logs::record`], which only tries to put it on a bounded
//! channel: when the log thread falls that far behind, entries are dropped (and counted), never
//! the request delayed. The thread writes what arrives within [`LINGER`] of a first entry in
//! one transaction (a busy server commits hundreds of entries at once). Entry ids start with
//! the time, so inserts append to the primary key instead of landing on random pages. Logs
//! are node-local: nothing here replicates.
//!
//! Reads (`/api/logs`) open their own read-only connection on a blocking thread; cleanups
//! (the cron job, a settings change) and clearing run on the log thread, in order with the
//! writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use super::StoreError;
use super::schema::{
    Collection, CollectionType, DateOptions, Field, FieldKind, JsonOptions, NumberOptions,
    TextOptions,
};
use super::system::open_connection;
use super::values::param;
use crate::filter::SqlParam;

/// Largest stored message, in bytes (PocketBase's limit).
const MAX_MESSAGE: usize = 8000;
/// Largest stored `data` JSON when the settings leave it at 0 (PocketBase's default, ~16 KB).
const DEFAULT_MAX_DATA: usize = 16 << 10;
/// Most entries one commit writes.
const MAX_BATCH: usize = 2000;
/// How long the log thread keeps gathering after an entry arrives before it commits: one
/// transaction per burst instead of one per request (each commit rewrites the table's and
/// every index's last pages). Entries show in `/api/logs` this much later (PocketBase: up
/// to 3 s).
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// The `logs` section of the settings, as the logger reads it on every request.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// Days logs are kept; 0 turns request logging off.
    pub max_days: i64,
    /// Entries below this level are not stored.
    pub min_level: i64,
    pub log_ip: bool,
    pub log_auth_id: bool,
    /// Largest `data` JSON in bytes (0: PocketBase's default).
    pub max_data_size: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_days: 5,
            min_level: 0,
            log_ip: true,
            log_auth_id: false,
            max_data_size: 0,
        }
    }
}

impl LogSettings {
    /// Reads the `logs` section of the settings document (missing keys keep their defaults).
    pub fn from_settings(settings: &Value) -> LogSettings {
        let d = LogSettings::default();
        let logs = &settings["logs"];
        LogSettings {
            max_days: logs["maxDays"].as_i64().unwrap_or(d.max_days),
            min_level: logs["minLevel"].as_i64().unwrap_or(d.min_level),
            log_ip: logs["logIP"].as_bool().unwrap_or(d.log_ip),
            log_auth_id: logs["logAuthId"].as_bool().unwrap_or(d.log_auth_id),
            max_data_size: logs["maxDataSize"]
                .as_u64()
                .map_or(d.max_data_size, |n| n as usize),
        }
    }

    /// Whether an entry of `level` is stored at all.
    pub fn wants(&self, level: i64) -> bool {
        self.max_days > 0 && level >= self.min_level
    }
}

/// One log entry (`created` is PocketBase's date text, taken when the entry was made).
#[derive(Debug, Clone)]
pub struct Entry {
    pub level: i64,
    pub message: String,
    pub data: Map<String, Value>,
    pub created: String,
}

enum Msg {
    Entry(Entry),
    /// Deletes entries created at or before `before` (and, when given, below `min_level`).
    Cleanup {
        before: String,
        min_level: Option<i64>,
        vacuum: bool,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Clear(oneshot::Sender<Result<(), StoreError>>),
    /// Copies the WAL back and truncates it (the database upkeep job).
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
    Close(oneshot::Sender<()>),
}

/// Handle to the node's request logs; cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Msg>,
    settings: ArcSwap<LogSettings>,
    dropped: AtomicU64,
    path: PathBuf,
    /// One read connection, reused by the (rare, superuser-only) log reads.
    reader: Mutex<Option<Connection>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The `_logs` table, as PocketBase creates it.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS _logs (
    id      TEXT PRIMARY KEY DEFAULT ('r'||lower(hex(randomblob(7)))) NOT NULL,
    level   INTEGER DEFAULT 0 NOT NULL,
    message TEXT DEFAULT '' NOT NULL,
    data    JSON DEFAULT '{}' NOT NULL,
    created TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%fZ')) NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_logs_level ON _logs (level);
CREATE INDEX IF NOT EXISTS idx_logs_message ON _logs (message);
CREATE INDEX IF NOT EXISTS idx_logs_created_hour ON _logs (strftime('%Y-%m-%d %H:00:00', created));";

impl Logs {
    /// Opens (creating if needed) `<dir>/auxiliary.db` and starts the log thread, whose queue
    /// holds at most `queue` entries.
    pub fn open(dir: &Path, queue: usize, settings: LogSettings) -> Result<Logs, StoreError> {
        let path = dir.join("auxiliary.db");
        let conn = open_connection(&path, false)?;
        conn.execute_batch(SCHEMA)?;
        let (tx, rx) = sync_channel(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("sqlite-logs".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Logs {
            inner: Arc::new(Inner {
                tx,
                settings: ArcSwap::from_pointee(settings),
                dropped: AtomicU64::new(0),
                path,
                reader: Mutex::new(None),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The settings in force (read on every request: a pointer load).
    pub fn settings(&self) -> Arc<LogSettings> {
        self.inner.settings.load_full()
    }

    /// Queues an entry for writing, unless the settings do not want it. Never blocks: with
    /// the queue full the entry is dropped and counted.
    pub fn record(&self, mut entry: Entry) {
        let settings = self.settings();
        if !settings.wants(entry.level) {
            return;
        }
        truncate_entry(&mut entry, settings.max_data_size);
        match self.inner.tx.try_send(Msg::Entry(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "request log queue full; entries dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Entries dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Applies new settings; like PocketBase, drops the entries they no longer keep (older
    /// than `maxDays`, below `minLevel`) and reclaims the space when logging is turned off.
    pub async fn configure(&self, settings: LogSettings) -> Result<(), StoreError> {
        let changed = *self.settings() != settings;
        self.inner.settings.store(Arc::new(settings.clone()));
        if !changed {
            return Ok(());
        }
        self.cleanup_with(
            days_ago(settings.max_days),
            Some(settings.min_level),
            settings.max_days == 0,
        )
        .await
        .map(|_| ())
    }

    /// Deletes the entries older than the settings' `maxDays` (the log cleanup cron job).
    pub async fn cleanup(&self) -> Result<usize, StoreError> {
        let days = self.settings().max_days;
        self.cleanup_with(days_ago(days), None, false).await
    }

    async fn cleanup_with(
        &self,
        before: String,
        min_level: Option<i64>,
        vacuum: bool,
    ) -> Result<usize, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Cleanup {
            before,
            min_level,
            vacuum,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Deletes every entry (`DELETE /api/logs`).
    pub async fn clear(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Clear(reply)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Copies `auxiliary.db`'s WAL back into the file and truncates it.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Checkpoint(reply)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Control messages wait for room in the queue (off the async runtime's threads).
    async fn send(&self, msg: Msg) -> Result<(), StoreError> {
        let tx = self.inner.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(msg).map_err(|_| StoreError::Closed))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Writes what is queued and stops the log thread.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Msg::Close(reply)).await.is_ok() {
            let _ = rx.await;
        }
        let thread = self.inner.thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// Runs `f` on the read connection, on a blocking thread.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = inner.reader.lock();
            if slot.is_none() {
                *slot = Some(open_connection(&inner.path, true)?);
            }
            let conn = slot.as_ref().ok_or(StoreError::Closed)?;
            f(conn)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }
}

/// PocketBase's date text for now minus `days`.
fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .format("%Y-%m-%d %H:%M:%S%.3fZ")
        .to_string()
}

/// Cuts the message at 8000 bytes and `data` at the size limit, as PocketBase does: what
/// fits of the data stays, marked `__pb_truncated__`.
fn truncate_entry(entry: &mut Entry, max_data_size: usize) {
    if entry.message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !entry.message.is_char_boundary(cut) {
            cut -= 1;
        }
        entry.message.truncate(cut);
    }
    let limit = if max_data_size == 0 {
        DEFAULT_MAX_DATA
    } else {
        max_data_size
    };
    let size = serde_json::to_string(&entry.data).map_or(0, |s| s.len());
    if size <= limit {
        return;
    }
    // Keep whole entries, in order, while they fit.
    let mut kept = Map::new();
    let mut used = 2;
    for (k, v) in std::mem::take(&mut entry.data) {
        let len = serde_json::to_string(&k).map_or(0, |s| s.len())
            + serde_json::to_string(&v).map_or(0, |s| s.len())
            + 2;
        if used + len > limit {
            break;
        }
        used += len;
        kept.insert(k, v);
    }
    kept.insert("__pb_truncated__".into(), Value::Bool(true));
    entry.data = kept;
}

/// The log thread: writes queued entries in batches, runs cleanups in order with them.
fn run(conn: Connection, rx: Receiver<Msg>) {
    let mut batch: Vec<Entry> = Vec::new();
    let mut pending: Option<Msg> = None;
    loop {
        let first = match pending.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        match first {
            Msg::Entry(e) => {
                batch.push(e);
                let until = std::time::Instant::now() + LINGER;
                while batch.len() < MAX_BATCH {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(Msg::Entry(e)) => batch.push(e),
                        // Cleanups and shutdown come after what was queued before them.
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = write_batch(&conn, &batch) {
                    tracing::warn!(error = %e, entries = batch.len(), "request logs not written");
                }
                batch.clear();
            }
            Msg::Cleanup {
                before,
                min_level,
                vacuum,
                reply,
            } => {
                let _ = reply.send(delete_old(&conn, &before, min_level, vacuum));
            }
            Msg::Clear(reply) => {
                let r = conn
                    .execute_batch("DELETE FROM _logs; VACUUM;")
                    .map_err(StoreError::from);
                let _ = reply.send(r);
            }
            Msg::Checkpoint(reply) => {
                let r = conn
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .map_err(StoreError::from);
                let _ = reply.send(r);
            }
            Msg::Close(reply) => {
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                let _ = reply.send(());
                return;
            }
        }
    }
}

fn write_batch(conn: &Connection, batch: &[Entry]) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO _logs (id, level, message, data, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for e in batch {
            let data = serde_json::to_string(&e.data).unwrap_or_else(|_| "{}".into());
            stmt.execute(params![log_id(), e.level, e.message, data, e.created])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A 15-character `[a-z0-9]` id (a record id's shape, as PocketBase's log ids) that starts
/// with the millisecond in base 36, then random characters.
fn log_id() -> String {
    log_id_at(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

fn log_id_at(ms: u64) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(15);
    for i in (0..8).rev() {
        id.push(char::from(ALPHABET[((ms / 36u64.pow(i)) % 36) as usize]));
    }
    let mut rng = rand::rng();
    id.extend((0..7).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])));
    id
}

fn delete_old(
    conn: &Connection,
    before: &str,
    min_level: Option<i64>,
    vacuum: bool,
) -> Result<usize, StoreError> {
    let n = match min_level {
        Some(level) => conn.execute(
            "DELETE FROM _logs WHERE created <= ?1 OR level < ?2",
            params![before, level],
        )?,
        None => conn.execute("DELETE FROM _logs WHERE created <= ?1", params![before])?,
    };
    if vacuum {
        conn.execute_batch("VACUUM")?;
    }
    Ok(n)
}

/// The `_logs` table as a collection, so the filter language can query it: `id`, `created`,
/// `level`, `message` and `data` (with `data.*` paths into the JSON), as PocketBase allows.
pub fn logs_collection() -> Collection {
    Collection {
        id: "_logs".into(),
        name: "_logs".into(),
        kind: CollectionType::Base,
        system: true,
        fields: vec![
            Field::new("id", FieldKind::Text(TextOptions::default())),
            Field::new("created", FieldKind::Date(DateOptions::default())),
            Field::new("data", FieldKind::Json(JsonOptions::default())),
            Field::new("message", FieldKind::Text(TextOptions::default())),
            Field::new("level", FieldKind::Number(NumberOptions::default())),
        ],
        indexes: Vec::new(),
        list_rule: None,
        view_rule: None,
        create_rule: None,
        update_rule: None,
        delete_rule: None,
        auth: None,
        view_query: None,
        created: String::new(),
        updated: String::new(),
        sql: Default::default(),
    }
}

/// A page of log entries: `where_sql`/`order_sql` come from the filter language over
/// [`logs_collection`].
pub struct LogQuery {
    pub where_sql: String,
    pub params: Vec<SqlParam>,
    pub order_sql: String,
    /// Parameters of `order_sql` (bound after `params`).
    pub order_params: Vec<SqlParam>,
    pub limit: i64,
    pub offset: i64,
    pub count: bool,
}

fn entry_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let data: String = row.get(2)?;
    Ok(json!({
        "id": row.get::<_, String>(0)?,
        "created": row.get::<_, String>(1)?,
        "data": serde_json::from_str::<Value>(&data).unwrap_or_else(|_| json!({})),
        "message": row.get::<_, String>(3)?,
        "level": row.get::<_, i64>(4)?,
    }))
}

const COLUMNS: &str =
    "`_logs`.`id`, `_logs`.`created`, `_logs`.`data`, `_logs`.`message`, `_logs`.`level`";

/// Runs a list query; the total is counted only when asked.
pub fn list(conn: &Connection, q: &LogQuery) -> Result<(Vec<Value>, Option<i64>), StoreError> {
    let order = if q.order_sql.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", q.order_sql)
    };
    let params: Vec<_> = q.params.iter().map(param).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM `_logs` WHERE {}{order} LIMIT {} OFFSET {}",
        q.where_sql, q.limit, q.offset
    );
    let mut stmt = conn.prepare(&sql)?;
    let all: Vec<_> = params
        .iter()
        .cloned()
        .chain(q.order_params.iter().map(param))
        .collect();
    let items = stmt
        .query_map(params_from_iter(all.iter()), entry_json)?
        .collect::<Result<Vec<_>, _>>()?;
    let total = if q.count {
        let sql = format!("SELECT COUNT(*) FROM `_logs` WHERE {}", q.where_sql);
        Some(conn.query_row(&sql, params_from_iter(params.iter()), |r| r.get(0))?)
    } else {
        None
    };
    Ok((items, total))
}

/// One entry by id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Value>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM `_logs` WHERE `_logs`.`id` = ?1");
    Ok(conn.query_row(&sql, [id], entry_json).optional()?)
}

/// Entries per hour (`[{date, total}]`, oldest first) among those matching `where_sql`.
pub fn stats(
    conn: &Connection,
    where_sql: &str,
    params: &[SqlParam],
) -> Result<Vec<Value>, StoreError> {
    let sql = format!(
        "SELECT count(`_logs`.`id`), strftime('%Y-%m-%d %H:00:00', `_logs`.`created`) AS date
         FROM `_logs` WHERE {where_sql} GROUP BY date ORDER BY date"
    );
    let params: Vec<_> = params.iter().map(param).collect();
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(params.iter()), |r| {
        let date: Option<String> = r.get(1)?;
        Ok(json!({
            "date": date.map(|d| format!("{d}.000Z")).unwrap_or_default(),
            "total": r.get::<_, i64>(0)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: i64, created: &str) -> Entry {
        Entry {
            level,
            message: "GET /".into(),
            data: Map::new(),
            created: created.into(),
        }
    }

    async fn count(logs: &Logs) -> i64 {
        logs.read(|c| Ok(c.query_row("SELECT count(*) FROM _logs", [], |r| r.get(0))?))
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn cleanup_deletes_what_is_older_than_max_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = Logs::open(dir.path(), 16, LogSettings::default()).expect("open");
        logs.record(entry(0, "2000-01-01 00:00:00.000Z"));
        logs.record(entry(0, &days_ago(1)));
        logs.record(entry(0, &days_ago(0)));
        assert_eq!(
            logs.cleanup().await.expect("cleanup"),
            1,
            "maxDays 5: only 2000 goes"
        );
        assert_eq!(count(&logs).await, 2);
        // Raising minLevel drops what is below it; maxDays 0 drops everything.
        logs.configure(LogSettings {
            min_level: 4,
            ..LogSettings::default()
        })
        .await
        .expect("configure");
        assert_eq!(count(&logs).await, 0);
        logs.record(entry(0, &days_ago(0)));
        logs.record(entry(8, &days_ago(0)));
        assert_eq!(logs.cleanup().await.expect("cleanup"), 0);
        assert_eq!(count(&logs).await, 1, "the info entry was never stored");
        logs.close().await;
    }

    #[test]
    fn log_ids_look_like_record_ids_and_grow_with_time() {
        let now = 1_796_000_000_000;
        let (a, b) = (log_id_at(now), log_id_at(now + 1));
        assert!(super::super::schema::is_valid_record_id(&a), "{a}");
        assert!(super::super::schema::is_valid_record_id(&log_id()));
        assert!(a[..8] < b[..8], "{a} then {b}");
    }

    #[test]
    fn oversized_data_keeps_what_fits_and_says_so() {
        let mut e = entry(0, "");
        e.message = "é".repeat(5000);
        e.data.insert("a".into(), json!("x".repeat(100)));
        e.data.insert("b".into(), json!("y".repeat(2000)));
        truncate_entry(&mut e, 500);
        assert!(e.message.len() <= MAX_MESSAGE && e.message.is_char_boundary(e.message.len()));
        assert_eq!(e.data.get("a"), Some(&json!("x".repeat(100))));
        assert!(e.data.get("b").is_none());
        assert_eq!(e.data["__pb_truncated__"], json!(true));
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The thread is busy with nothing, but the queue holds one entry: send many at once.
        let logs = Logs::open(dir.path(), 1, LogSettings::default()).expect("open");
        for _ in 0..10_000 {
            logs.record(entry(0, "2024-01-01 00:00:00.000Z"));
        }
        assert!(
            logs.dropped() > 0,
            "a 1-entry queue cannot take 10k entries at once"
        );
    }
}
