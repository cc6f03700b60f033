//! Replication's side of the store: the outbox written with each local change, the
//! read-your-writes overlay, and the fold that applies the log to canonical state.
//!
//! Canonical state is what the fold of the log produced. The collection tables show canonical
//! rows, except that a row this node wrote and whose event has not come back yet shows the
//! local write (the overlay); the canonical row it covers waits in `_sync_shadow`. Invariant at
//! rest: a key has a shadow row iff it has pending rows.
//!
//! Applying a batch (one writer job, `fold.rs`):
//! 1. for each event's key, the overlay is reverted (the shadow restored), so the event meets
//!    canonical state only; a write that breaks a unique index reverts every overlay of the
//!    collection and is tried again, so overlays never decide whether an event applies;
//! 2. the event is applied: taken when its `base` is the canonical version, otherwise the
//!    collection's resolver decides (built-in: last writer by HLC, then node id);
//! 3. the pending local writes of reverted keys are laid over the result again.
//!
//! Tables (all created at bootstrap, empty on a node without replication):
//! `_sync_outbox` (events to publish, in order), `_sync_pending` (this node's events not yet
//! applied, with the row each wrote), `_sync_shadow` (canonical rows under an overlay),
//! `_sync_versions` (each key's canonical version; deletes leave a tombstone), `_sync_seen`
//! (applied event ids: a republished duplicate is a no-op), `_sync_dead` (events that could
//! not be applied, with the reason), `_sync_state` (the applied stream sequence),
//! `_sync_bindings` (the plugin binding table at the applied position) and `_sync_plugins`
//! (the cluster's plugin versions, `plugins.rs`).

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::records::Record;
use super::schema::Collection;
use super::snapshot::stats::{SnapshotDecision, SnapshotStats, builtin_decision};
use super::{Change, Op, StoreError};
use crate::replication::{Clock, CollectionRef, Event, EventId, EventKind, Hlc};

/// The collection that never replicates: each node keeps its own superusers.
pub const LOCAL_ONLY: &str = "_superusers";

pub(crate) fn create_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_outbox (
             seq      INTEGER PRIMARY KEY AUTOINCREMENT,
             event_id TEXT NOT NULL,
             payload  BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_pending (
             seq      INTEGER PRIMARY KEY,
             event_id TEXT NOT NULL UNIQUE,
             coll     TEXT NOT NULL,
             rid      TEXT NOT NULL,
             data     TEXT,
             hlc      INTEGER
         );
         CREATE INDEX IF NOT EXISTS _sync_pending_key ON _sync_pending (coll, rid);
         CREATE TABLE IF NOT EXISTS _sync_shadow (
             coll TEXT NOT NULL,
             rid  TEXT NOT NULL,
             data TEXT,
             PRIMARY KEY (coll, rid)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_versions (
             coll     TEXT NOT NULL,
             rid      TEXT NOT NULL,
             event_id TEXT NOT NULL,
             hlc      INTEGER NOT NULL,
             origin   TEXT NOT NULL,
             deleted  INTEGER NOT NULL,
             verdict  TEXT NOT NULL,
             seq      INTEGER NOT NULL,
             PRIMARY KEY (coll, rid)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _sync_seen (
             event_id TEXT PRIMARY KEY,
             seq      INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS _sync_seen_seq ON _sync_seen (seq);
         CREATE TABLE IF NOT EXISTS _sync_dead (
             seq        INTEGER PRIMARY KEY,
             event_id   TEXT NOT NULL,
             origin     TEXT NOT NULL,
             kind       TEXT NOT NULL,
             collection TEXT NOT NULL,
             record_id  TEXT NOT NULL,
             reason     TEXT NOT NULL,
             payload    BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_bindings (
             id   INTEGER PRIMARY KEY CHECK (id = 1),
             data TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_state (
             key   TEXT PRIMARY KEY NOT NULL,
             value INTEGER NOT NULL
         );",
    )?;
    // A pending write keeps its HLC (files from before this column lack it): a node that
    // restarts before its own write is folded resumes its clock past it.
    let has_hlc = conn
        .prepare("SELECT 1 FROM pragma_table_info('_sync_pending') WHERE name = 'hlc'")?
        .exists([])?;
    if !has_hlc {
        conn.execute_batch("ALTER TABLE _sync_pending ADD COLUMN hlc INTEGER")?;
    }
    plugins::create_table(conn)?;
    super::snapshot::stats::create_tables(conn)
}

/// What a filter does with a change.
#[derive(Debug, Clone)]
pub enum Filtered {
    Keep,
    Drop,
    /// Publish / apply this record data instead.
    Replace(Record),
}

/// A resolver's decision.
#[derive(Debug, Clone)]
pub enum Resolved {
    KeepCurrent,
    TakeIncoming,
    Merged(Record),
}

/// The canonical version an incoming event conflicts with.
#[derive(Debug, Clone)]
pub struct Current {
    /// `None`: deleted (a tombstone) or never created.
    pub data: Option<Record>,
    pub hlc: u64,
    pub origin: String,
    pub event_id: String,
}

/// The deterministic functions the fold calls: filters and resolvers (plugins or built-in),
/// and plugin binding events. Implemented outside the store (`crate::sync`).
///
/// An `Err` is a fault of this node (a plugin had no instance slot), never a decision: the
/// local write fails, or the fold's batch is retried. A plugin's own failure (trap, fuel,
/// memory cap) is deterministic and is answered with the built-in default instead.
pub trait Policy: Send + Sync {
    fn outbound(&self, c: &Collection, event: &Event) -> Result<Filtered, StoreError>;
    fn inbound(&self, c: &Collection, event: &Event) -> Result<Filtered, StoreError>;
    /// The decision and a label recorded with the version (who decided).
    fn resolve(
        &self,
        c: &Collection,
        current: &Current,
        incoming: &Event,
    ) -> Result<(Resolved, String), StoreError>;
    /// Applies a plugin binding event at its log position: `Ok(Err(reason))` when the binding
    /// is refused (a dead letter on every node).
    fn bind(&self, event: &Event, schema: &super::Schema)
    -> Result<Result<(), String>, StoreError>;
    /// The node's binding table after a bind, stored with the fold's transaction (so a crash
    /// before COMMIT cannot leave the runtime ahead of SQLite: startup restores this one).
    fn bindings(&self) -> String {
        String::new()
    }
    /// A resolver's merged record failed the schema check (`store::merged`): the built-in
    /// default was applied instead. For counting and logging only.
    fn rejected_merge(&self, _c: &Collection, _reason: &str) {}
    /// The bindings (active or kept for rollback) that use a plugin version, described; `None`
    /// when it is unused and may be deleted.
    fn plugin_in_use(&self, _name: &str, _version: u32) -> Option<String> {
        None
    }
    /// A plugin version was registered at this log position (metadata as folded).
    fn registered(&self, _meta: &Value) {}
    /// A collection was deleted at this log position: its plugin bindings go with it.
    /// `Ok(true)` when bindings were removed (the fold then stores `bindings()`).
    fn drop_collection(&self, _id: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The cluster's snapshot policy, asked after every folded event with log-derived figures
    /// (see `store::snapshot::stats`). Default: the built-in policy.
    fn decide(&self, stats: &SnapshotStats) -> Result<SnapshotDecision, StoreError> {
        Ok(builtin_decision(stats))
    }
}

/// The built-in policy: keep everything, last writer wins.
pub struct Builtin;

impl Policy for Builtin {
    fn outbound(&self, _: &Collection, _: &Event) -> Result<Filtered, StoreError> {
        Ok(Filtered::Keep)
    }
    fn inbound(&self, _: &Collection, _: &Event) -> Result<Filtered, StoreError> {
        Ok(Filtered::Keep)
    }
    fn resolve(
        &self,
        _: &Collection,
        current: &Current,
        incoming: &Event,
    ) -> Result<(Resolved, String), StoreError> {
        Ok((last_writer_wins(current, incoming), "default".into()))
    }
    fn bind(&self, _: &Event, _: &super::Schema) -> Result<Result<(), String>, StoreError> {
        Ok(Err("plugin bindings need the plugin runtime".into()))
    }
}

/// Later HLC wins, ties broken by the larger origin node id.
pub fn last_writer_wins(current: &Current, incoming: &Event) -> Resolved {
    if (incoming.hlc.0, incoming.origin.as_str()) > (current.hlc, current.origin.as_str()) {
        Resolved::TakeIncoming
    } else {
        Resolved::KeepCurrent
    }
}

/// What a node with replication gives its writer.
pub struct SyncHooks {
    pub node_id: String,
    pub clock: Arc<Clock>,
    /// Woken after a commit that wrote outbox rows.
    pub outbox: Arc<tokio::sync::Notify>,
    pub policy: Arc<dyn Policy>,
    /// Outbox rows just committed, handed to the publisher so it need not read them back.
    pub fresh: parking_lot::Mutex<Fresh>,
    /// Whether anyone reads the change feed for records (realtime clients).
    pub listeners: Arc<ChangeListeners>,
}

/// Whether the change feed's record changes have readers: connected realtime clients. With
/// none, the fold does not read each folded row before and after for the feed (two of its
/// reads per event), except in auth collections, whose changes the token cache always needs.
///
/// A client that subscribes while a batch folded without announcing may still be committing
/// must not miss that batch's changes: the subscription waits for the writer
/// ([`ChangeListeners::fold_was_blind`]) before it is confirmed. The fold sets `blind` before
/// it reads `clients`, and a client is counted before it can subscribe, so (sequentially
/// consistent) either the fold sees the client or the subscription sees `blind`.
#[derive(Debug, Default)]
pub struct ChangeListeners {
    clients: std::sync::atomic::AtomicUsize,
    blind: std::sync::atomic::AtomicBool,
}

impl ChangeListeners {
    /// The number of connected clients changed to `n`.
    pub fn set_clients(&self, n: usize) {
        self.clients.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// At the start of a fold batch: whether to announce its changes.
    pub(crate) fn begin_fold(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.blind.store(true, SeqCst);
        let wanted = self.clients.load(SeqCst) > 0;
        if wanted {
            self.blind.store(false, SeqCst);
        }
        wanted
    }

    /// Whether the last fold batch started without listeners (it may not have committed
    /// yet): a new subscription waits for the writer before it is confirmed.
    pub fn fold_was_blind(&self) -> bool {
        self.blind.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One outbox row: its sequence, event id and encoded event.
pub type OutboxRow = (u64, String, Vec<u8>);

/// Outbox rows committed since the publisher last looked, in commit order. The outbox table
/// stays the truth: the publisher uses these only when they continue exactly where it left
/// off, and otherwise reads the table.
#[derive(Default)]
pub struct Fresh {
    rows: Vec<OutboxRow>,
    /// Rows were thrown away (the publisher was not keeping up); it must read the table.
    dropped: bool,
}

/// Fresh rows kept at most; beyond, they are dropped and the publisher reads the table.
const FRESH_MAX: usize = 8192;

impl Fresh {
    /// Adds a committed transaction's rows.
    pub fn push(&mut self, rows: &mut Vec<OutboxRow>) {
        if self.rows.len() + rows.len() > FRESH_MAX {
            self.rows.clear();
            rows.clear();
            self.dropped = true;
            return;
        }
        self.rows.append(rows);
    }

    /// Takes every row, and whether any were dropped since the last take.
    pub fn take(&mut self) -> (Vec<OutboxRow>, bool) {
        (
            std::mem::take(&mut self.rows),
            std::mem::replace(&mut self.dropped, false),
        )
    }
}

pub(crate) fn json_text(r: &Record) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| "{}".into())
}

fn parse_record(text: Option<String>) -> Result<Option<Record>, StoreError> {
    text.map(|t| {
        serde_json::from_str::<Record>(&t)
            .map_err(|e| StoreError::Internal(format!("corrupt overlay row: {e}")))
    })
    .transpose()
}

fn record_id(r: &Record) -> String {
    r.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The version a writer on this node sees for a key (its event id and HLC): its own newest
/// pending write, else the canonical version.
fn visible_version(
    conn: &Connection,
    coll: &str,
    rid: &str,
) -> Result<Option<(String, Option<u64>)>, StoreError> {
    let row =
        |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.map(|h| h as u64)));
    let pending = conn
        .prepare_cached(
            "SELECT event_id, hlc FROM _sync_pending WHERE coll = ?1 AND rid = ?2
             ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![coll, rid], row)
        .optional()?;
    if pending.is_some() {
        return Ok(pending);
    }
    Ok(conn
        .prepare_cached("SELECT event_id, hlc FROM _sync_versions WHERE coll = ?1 AND rid = ?2")?
        .query_row(params![coll, rid], row)
        .optional()?)
}

/// Writes the outbox rows, overlay records and shadows for a job's committed-to-be changes.
/// Returns the outbox sequence of each event written.
pub(crate) fn capture(
    conn: &Connection,
    hooks: &SyncHooks,
    changes: &[Change],
    fresh: &mut Vec<OutboxRow>,
) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    for change in changes {
        let c = &change.collection;
        if c.name == LOCAL_ONLY {
            continue;
        }
        let rid = record_id(&change.record);
        let kind = match change.op {
            Op::Create => EventKind::RecordCreate,
            Op::Update => EventKind::RecordUpdate,
            Op::Delete => EventKind::RecordDelete,
        };
        let before = match (&change.op, &change.before) {
            (Op::Update, Some(old)) => Some(
                old.iter()
                    .filter(|(k, v)| change.record.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => None,
        };
        let visible = visible_version(conn, &c.id, &rid)?;
        let base = visible
            .as_ref()
            .map(|(s, _)| EventId::parse(s).map_err(|e| StoreError::Internal(e.to_string())))
            .transpose()?;
        // Later than the version it replaces, whatever this node's clock did since (a write
        // folded from a node whose clock runs ahead, a restart before its own write folded).
        let hlc = match visible.and_then(|(_, hlc)| hlc) {
            Some(base_hlc) => hooks.clock.observe(Hlc(base_hlc)),
            None => hooks.clock.now(),
        };
        let mut event = Event {
            id: EventId::random(),
            origin: hooks.node_id.clone(),
            hlc,
            kind,
            collection: CollectionRef {
                id: c.id.clone(),
                name: c.name.clone(),
            },
            record_id: Some(rid.clone()),
            data: Some(change.record.clone()),
            before,
            base,
            schema_version: 0,
            plugin_version: 0,
            files: Vec::new(),
        };
        match hooks.policy.outbound(c, &event)? {
            Filtered::Keep => {}
            // Node-local: the change stays here and is never part of the log.
            Filtered::Drop => continue,
            Filtered::Replace(rec) => {
                if change.op != Op::Delete {
                    event.data = Some(rec);
                }
            }
        }
        if c.has_files()
            && change.op != Op::Delete
            && let Some(data) = &event.data
        {
            // Every file the published record names, by name and sha256: the bytes go to the
            // bucket when the event is published, never inside it.
            event.files = super::files::refs(conn, &c.id, &rid, &c.file_names(data))?;
        }
        conn.prepare_cached(
            "INSERT OR IGNORE INTO _sync_shadow (coll, rid, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![c.id, rid, change.before.as_ref().map(json_text)])?;
        let seq = enqueue_event(conn, &event, fresh)?;
        let overlay = (change.op != Op::Delete).then(|| json_text(&change.record));
        conn.prepare_cached(
            "INSERT INTO _sync_pending (seq, event_id, coll, rid, data, hlc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            seq as i64,
            event.id.as_str(),
            c.id,
            rid,
            overlay,
            event.hlc.0 as i64
        ])?;
        seqs.push(seq);
    }
    Ok(seqs)
}

/// Puts one event in the outbox (and the row in `fresh`); returns its outbox sequence.
pub(crate) fn enqueue_event(
    conn: &Connection,
    event: &Event,
    fresh: &mut Vec<OutboxRow>,
) -> Result<u64, StoreError> {
    let payload = event.encode();
    conn.prepare_cached("INSERT INTO _sync_outbox (event_id, payload) VALUES (?1, ?2)")?
        .execute(params![event.id.as_str(), payload])?;
    let seq = conn.last_insert_rowid() as u64;
    fresh.push((seq, event.id.as_str().to_owned(), payload));
    Ok(seq)
}

/// Puts a schema or binding event in the outbox, tracked as pending (no overlay: it applies
/// only at its position in the log), so the writer can wait for it.
pub(crate) fn enqueue_own(
    conn: &Connection,
    event: &Event,
    fresh: &mut Vec<OutboxRow>,
) -> Result<u64, StoreError> {
    let seq = enqueue_event(conn, event, fresh)?;
    conn.prepare_cached(
        "INSERT INTO _sync_pending (seq, event_id, coll, rid, data, hlc)
         VALUES (?1, ?2, '', ?2, NULL, ?3)",
    )?
    .execute(params![seq as i64, event.id.as_str(), event.hlc.0 as i64])?;
    Ok(seq)
}

/// A schema event (collection create/update/delete/import) for the outbox.
pub fn schema_event(hooks: &SyncHooks, kind: EventKind, c: CollectionRef, data: Value) -> Event {
    let data = match data {
        Value::Object(m) => m,
        other => {
            let mut m = Record::new();
            m.insert("value".into(), other);
            m
        }
    };
    Event {
        id: EventId::random(),
        origin: hooks.node_id.clone(),
        hlc: hooks.clock.now(),
        kind,
        collection: c,
        record_id: None,
        data: Some(data),
        before: None,
        base: None,
        schema_version: 0,
        plugin_version: 0,
        files: Vec::new(),
    }
}

// ----- outbox reads and trims (publisher) -----------------------------------------------

/// Up to `limit` outbox rows after `after`, in order.
pub fn outbox_after(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, String, Vec<u8>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, event_id, payload FROM _sync_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets the outbox up to and including `upto` (published and acknowledged).
pub(crate) fn trim_outbox(conn: &Connection, upto: u64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM _sync_outbox WHERE seq <= ?1")?
        .execute([upto as i64])?;
    Ok(())
}

/// Figures for the status endpoint, read in one transaction.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalStatus {
    pub applied_seq: u64,
    pub outbox_backlog: u64,
    pub pending_overlay: u64,
    pub dead_letters: u64,
}

pub fn local_status(conn: &Connection) -> Result<LocalStatus, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok(LocalStatus {
        applied_seq: applied_seq(conn)?,
        outbox_backlog: count("SELECT count(*) FROM _sync_outbox")?,
        pending_overlay: count("SELECT count(*) FROM _sync_pending")?,
        dead_letters: count("SELECT count(*) FROM _sync_dead")?,
    })
}

/// Whether this node should put its `users` seed in the outbox now: not if it did before or
/// has folded one already. Claims it (in the caller's transaction) when it returns true.
pub fn claim_seed(conn: &Connection) -> Result<bool, StoreError> {
    let done: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _sync_state WHERE key IN ('users_seeded', 'seed_enqueued'))",
        [],
        |r| r.get(0),
    )?;
    if done {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO _sync_state (key, value) VALUES ('seed_enqueued', 1)",
        [],
    )?;
    Ok(true)
}

/// Whether this node has folded the cluster's `users` seed (the first `users` definition in
/// the log, whose token secret every node shares).
pub fn users_seeded(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _sync_state WHERE key = 'users_seeded')",
        [],
        |r| r.get::<_, bool>(0),
    )?)
}

pub fn applied_seq(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT value FROM _sync_state WHERE key = 'applied_seq'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64)
}

/// The newest HLC the node has folded or given its own unfolded writes, to resume its clock
/// after a restart.
pub fn max_hlc(conn: &Connection) -> Result<Hlc, StoreError> {
    let v: Option<i64> = conn.query_row(
        "SELECT max(h) FROM (SELECT max(hlc) AS h FROM _sync_versions
                             UNION ALL SELECT max(hlc) FROM _sync_pending)",
        [],
        |r| r.get(0),
    )?;
    Ok(Hlc(v.unwrap_or(0) as u64))
}

/// The binding table as of the last folded binding event (`None`: none folded yet).
pub fn folded_bindings(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT data FROM _sync_bindings WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The node ids whose events this node has folded.
pub fn peers_seen(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT DISTINCT origin FROM _sync_versions")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A dead letter, as the status API shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub seq: u64,
    pub event_id: String,
    pub origin: String,
    pub kind: String,
    pub collection: String,
    pub record_id: String,
    pub reason: String,
}

pub fn dead_letters(conn: &Connection, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, event_id, origin, kind, collection, record_id, reason FROM _sync_dead
         ORDER BY seq LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(DeadLetter {
            seq: r.get::<_, i64>(0)? as u64,
            event_id: r.get(1)?,
            origin: r.get(2)?,
            kind: r.get(3)?,
            collection: r.get(4)?,
            record_id: r.get(5)?,
            reason: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One dead letter with the event it could not apply (its encoded bytes), for the detail view.
pub fn dead_letter(
    conn: &Connection,
    seq: u64,
) -> Result<Option<(DeadLetter, Vec<u8>)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT seq, event_id, origin, kind, collection, record_id, reason, payload
             FROM _sync_dead WHERE seq = ?1",
        )?
        .query_row([seq as i64], |r| {
            Ok((
                DeadLetter {
                    seq: r.get::<_, i64>(0)? as u64,
                    event_id: r.get(1)?,
                    origin: r.get(2)?,
                    kind: r.get(3)?,
                    collection: r.get(4)?,
                    record_id: r.get(5)?,
                    reason: r.get(6)?,
                },
                r.get(7)?,
            ))
        })
        .optional()?)
}

/// Why this node's event (by outbox sequence) became a dead letter, if it did.
pub fn own_failure(conn: &Connection, event_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT reason FROM _sync_dead WHERE event_id = ?1")?
        .query_row([event_id], |r| r.get(0))
        .optional()?)
}

mod fold;
pub mod genesis;
mod hashes;
pub mod plugins;

pub(crate) use fold::apply;
pub use fold::{ApplyReport, Delivered, SEED_MARK};
pub use hashes::{HashScheme, hash_table, hash_table_with, table_hashes};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_without_listeners_makes_new_subscriptions_wait_for_the_writer() {
        let l = ChangeListeners::default();
        assert!(!l.begin_fold(), "no client: nothing to announce");
        assert!(l.fold_was_blind());
        l.set_clients(1);
        assert!(l.fold_was_blind(), "until the next batch sees the client");
        assert!(l.begin_fold());
        assert!(!l.fold_was_blind());
    }

    fn rows(seqs: std::ops::Range<u64>) -> Vec<OutboxRow> {
        seqs.map(|s| (s, format!("e{s}"), vec![s as u8])).collect()
    }

    #[test]
    fn fresh_rows_come_out_in_commit_order_once() {
        let mut fresh = Fresh::default();
        fresh.push(&mut rows(1..4));
        fresh.push(&mut rows(4..6));
        let (taken, dropped) = fresh.take();
        assert_eq!(
            taken.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(!dropped);
        assert_eq!(fresh.take(), (Vec::new(), false));
    }

    #[test]
    fn a_publisher_that_falls_behind_is_told_to_read_the_table() {
        let mut fresh = Fresh::default();
        fresh.push(&mut rows(1..(FRESH_MAX as u64)));
        fresh.push(&mut rows(FRESH_MAX as u64..FRESH_MAX as u64 + 10));
        let (taken, dropped) = fresh.take();
        assert!(taken.is_empty(), "rows kept past the cap");
        assert!(dropped, "the drop must be reported");
        // After the report the queue works as before.
        fresh.push(&mut rows(9000..9002));
        assert_eq!(fresh.take().0.len(), 2);
    }
}
