//! The fold: applies a batch of the log's events to canonical state, in one writer job (see
//! the parent module for the model).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::super::records::{self, Record, write_raw};
use super::super::schema::Collection;
use super::super::snapshot::stats::{Due, Tracker};
use super::super::writer::exec_cached;
use super::super::{Change, Op, StoreError, WriteCtx, merged};
use super::{Current, Filtered, Resolved, SyncHooks, json_text, parse_record};
use crate::replication::{Event, EventId, EventKind};

/// One event delivered from the stream.
pub struct Delivered {
    pub seq: u64,
    /// The decoded event, or why the bytes are not one.
    pub event: Result<Event, String>,
    pub payload: bytes::Bytes,
}

/// What one apply batch did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub last_seq: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub dead: u64,
    /// The largest outbox sequence of this node's own events applied in the batch.
    pub own_upto: Option<u64>,
    pub schema_changed: bool,
    /// A plugin version was registered or deleted (the runtime's registry follows).
    pub registry_changed: bool,
    /// Deliveries of the batch folded (from its start): fewer than given when the snapshot
    /// policy decided a snapshot is due, which ends the batch at that position.
    pub consumed: usize,
    /// The snapshot due at `last_seq`, if the policy decided one.
    pub snapshot: Option<Due>,
}

type Key = (String, String);

struct Fold<'a, 'c> {
    ctx: &'a mut WriteCtx<'c>,
    hooks: &'a SyncHooks,
    /// Whether any overlay existed when the batch began.
    overlays: bool,
    /// Keys whose overlay was reverted in this batch (to lay again at the end).
    reverted: BTreeMap<Key, ()>,
    /// The row each touched key showed before the batch, for the change feed.
    shown: HashMap<Key, (Arc<Collection>, Option<Record>)>,
    /// Whether the change feed has listeners for this batch's record changes (auth
    /// collections' changes are announced regardless: the token cache needs them).
    announce: bool,
    /// Records with file fields this batch touched: their unreferenced files are swept at
    /// its end.
    file_keys: Vec<(Arc<Collection>, String)>,
    /// The batch's last stream position (where files it leaves unreferenced became orphans).
    last_seq: u64,
    /// The snapshot policy's figures, carried through the batch.
    tracker: Tracker,
    /// Payload size of the event being folded (the content size its version stands for).
    payload_len: usize,
}

/// Applies a batch of stream events in order, in the caller's transaction; stores the last
/// sequence with them. The batch ends early, right after the event at which the snapshot
/// policy decides a snapshot is due (`ApplyReport::snapshot`), so the caller can pin a read of
/// exactly that state before anything else folds.
pub(crate) fn apply(
    ctx: &mut WriteCtx,
    hooks: &SyncHooks,
    batch: &[Delivered],
) -> Result<ApplyReport, StoreError> {
    let mut report = ApplyReport::default();
    // Overlays only come from this node's own writes, which cannot run inside this job: when
    // none exists now, no key needs reverting in this batch.
    let overlays = ctx
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM _sync_shadow)")?
        .query_row([], |r| r.get::<_, bool>(0))?;
    let tracker = Tracker::load(ctx.conn)?;
    let mut fold = Fold {
        ctx,
        hooks,
        overlays,
        reverted: BTreeMap::new(),
        shown: HashMap::new(),
        announce: hooks.listeners.begin_fold(),
        file_keys: Vec::new(),
        last_seq: batch.iter().map(|d| d.seq).max().unwrap_or(0),
        tracker,
        payload_len: 0,
    };
    let schema_at_start = fold.ctx.schema.clone();
    for d in batch {
        report.last_seq = report.last_seq.max(d.seq);
        report.consumed += 1;
        fold.payload_len = d.payload.len();
        fold.one(d, &mut report)?;
        // Every stream position counts, whatever became of its event: all nodes reach each one.
        fold.tracker
            .step(d.payload.len(), d.event.as_ref().ok().map(|e| e.hlc.0));
        let decision = hooks.policy.decide(&fold.tracker.stats(d.seq))?;
        if decision.take {
            report.snapshot = Some(fold.tracker.taken(fold.ctx.conn, d.seq, &decision)?);
            break;
        }
    }
    fold.relay()?;
    fold.sweep_files()?;
    fold.announce()?;
    fold.tracker.store(fold.ctx.conn)?;
    let conn = fold.ctx.conn;
    if report.last_seq > 0 {
        conn.prepare_cached(
            "INSERT INTO _sync_state (key, value) VALUES ('applied_seq', ?1)
             ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute([report.last_seq as i64])?;
        // Duplicates arrive within JetStream's window or from an outbox replayed after a long
        // outage; a million events of memory is far beyond either, and pruning by stream
        // position keeps every node's table identical.
        conn.prepare_cached("DELETE FROM _sync_seen WHERE seq < ?1")?
            .execute([report.last_seq as i64 - 1_000_000])?;
    }
    report.schema_changed = !Arc::ptr_eq(&schema_at_start, &fold.ctx.schema);
    Ok(report)
}

/// This node's own event with the row as it was written locally (before any outbound
/// filter), when that differs from what was published.
fn own_written(conn: &Connection, event: &Event) -> Result<Option<Event>, StoreError> {
    if event.kind == EventKind::RecordDelete {
        return Ok(None);
    }
    let data: Option<Option<String>> = conn
        .prepare_cached("SELECT data FROM _sync_pending WHERE event_id = ?1")?
        .query_row([event.id.as_str()], |r| r.get(0))
        .optional()?;
    let Some(Some(text)) = data else {
        return Ok(None);
    };
    let written = parse_record(Some(text))?;
    if written.is_none() || written == event.data {
        return Ok(None);
    }
    let mut e = event.clone();
    e.data = written;
    Ok(Some(e))
}

/// Marks the bootstrap `users` collection event a brand-new cluster gets (see
/// `sync::Sync::seed_users`): only the first one in the log applies.
pub const SEED_MARK: &str = "_syncbaseSeed";

fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::RecordCreate => "create",
        EventKind::RecordUpdate => "update",
        EventKind::RecordDelete => "delete",
        EventKind::CollectionCreate => "collection-create",
        EventKind::CollectionUpdate => "collection-update",
        EventKind::CollectionDelete => "collection-delete",
        EventKind::CollectionImport => "collection-import",
        EventKind::PluginBinding => "plugin-binding",
        EventKind::PluginRegistry => "plugin-registry",
    }
}

fn dead_letter(
    conn: &Connection,
    d: &Delivered,
    event: Option<&Event>,
    reason: &str,
) -> Result<(), StoreError> {
    // SQLite ends the whole transaction on some failures (a full disk, I/O errors), and what
    // then surfaces may be a secondary error ("no such savepoint") that looks like the
    // event's fault. Without the fold's transaction nothing about the event is known, and a
    // dead letter written now would commit on its own, on this node alone: retry the batch.
    if conn.is_autocommit() {
        return Err(StoreError::Commit(format!(
            "SQLite ended the fold's transaction while applying seq {} ({reason}); the batch is retried",
            d.seq
        )));
    }
    tracing::warn!(seq = d.seq, reason, "event not applied: dead letter");
    conn.prepare_cached(
        "INSERT OR REPLACE INTO _sync_dead (seq, event_id, origin, kind, collection, record_id, reason, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        d.seq as i64,
        event.map(|e| e.id.as_str()).unwrap_or(""),
        event.map(|e| e.origin.as_str()).unwrap_or(""),
        event.map(|e| kind_name(e.kind)).unwrap_or("unknown"),
        event.map(|e| e.collection.name.as_str()).unwrap_or(""),
        event.and_then(|e| e.record_id.as_deref()).unwrap_or(""),
        reason,
        d.payload.as_ref(),
    ])?;
    Ok(())
}

/// The database failed (I/O, disk full, corruption, memory, locking), not the event: the
/// batch is retried instead of the event becoming a dead letter on this node alone.
fn is_engine_fault(e: &StoreError) -> bool {
    use rusqlite::ErrorCode as C;
    match e {
        StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            C::SystemIoFailure
                | C::DiskFull
                | C::OutOfMemory
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::CannotOpen
                | C::ReadOnly
                | C::FileLockingProtocolFailed
                | C::OperationInterrupted
                | C::PermissionDenied
        ),
        StoreError::Io(_)
        | StoreError::Commit(_)
        | StoreError::Closed
        | StoreError::Unavailable(_) => true,
        _ => false,
    }
}

fn is_constraint(e: &StoreError) -> bool {
    match e {
        StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::ConstraintViolation
        }
        StoreError::Validation(_) => true,
        _ => false,
    }
}

impl Fold<'_, '_> {
    /// Folds one delivery: a dead letter when it does not decode or apply, nothing for a
    /// duplicate.
    fn one(&mut self, d: &Delivered, report: &mut ApplyReport) -> Result<(), StoreError> {
        let hooks = self.hooks;
        let event = match &d.event {
            Ok(e) => e,
            Err(reason) => {
                dead_letter(
                    self.ctx.conn,
                    d,
                    None,
                    &format!("undecodable event: {reason}"),
                )?;
                report.dead += 1;
                return Ok(());
            }
        };
        let fresh = self
            .ctx
            .conn
            .prepare_cached("INSERT OR IGNORE INTO _sync_seen (event_id, seq) VALUES (?1, ?2)")?
            .execute(params![event.id.as_str(), d.seq as i64])?;
        if fresh == 0 {
            report.duplicates += 1;
            return Ok(());
        }
        hooks.clock.observe(event.hlc);
        // This node's own change comes back as published, which an outbound filter may have
        // rewritten (e.g. fields redacted so they never leave the node). Here it folds the
        // change as it was written: what it kept back stays on this node.
        let local;
        let event = if event.origin == hooks.node_id && event.kind.is_record() {
            match own_written(self.ctx.conn, event)? {
                Some(e) => {
                    local = e;
                    &local
                }
                None => event,
            }
        } else {
            event
        };
        let outcome = self.apply_one(d.seq, event)?;
        if event.kind == EventKind::PluginRegistry && outcome.is_ok() {
            report.registry_changed = true;
        }
        if let Err(reason) = outcome {
            dead_letter(self.ctx.conn, d, Some(event), &reason)?;
            report.dead += 1;
        } else {
            report.applied += 1;
        }
        if event.origin == hooks.node_id {
            let own: Option<i64> = self
                .ctx
                .conn
                .prepare_cached("DELETE FROM _sync_pending WHERE event_id = ?1 RETURNING seq")?
                .query_row([event.id.as_str()], |r| r.get(0))
                .optional()?;
            if let Some(s) = own {
                report.own_upto = Some(report.own_upto.unwrap_or(0).max(s as u64));
            }
        }
        Ok(())
    }

    fn conn(&self) -> &Connection {
        self.ctx.conn
    }

    /// Folds one event. `Ok(Err(reason))`: the event cannot apply (a dead letter, the same on
    /// every node); `Err`: the database itself failed, and the whole batch is retried.
    fn apply_one(&mut self, seq: u64, event: &Event) -> Result<Result<(), String>, StoreError> {
        let conn = self.ctx.conn;
        if event.kind.is_record() {
            // No savepoint per record event: everything before its one row write only reads
            // or restores canonical rows, the row write is a single statement (atomic on its
            // own), and what follows it can only fail when the database does, which fails
            // the batch. Savepoints here cost a sub-journal copy of every page each event
            // touched, about a third of the fold.
            let outcome = (|| {
                // The key meets canonical state only.
                if let Some(c) = self.ctx.schema.get(&event.collection.id).cloned() {
                    let rid = event.record_id.clone().unwrap_or_default();
                    self.revert_key(&c, &rid)?;
                }
                self.apply_record(seq, event)
            })();
            return match outcome {
                Ok(()) => Ok(Ok(())),
                Err(e) if is_engine_fault(&e) => Err(e),
                Err(e) => Ok(Err(e.to_string())),
            };
        }
        let before = self.ctx.schema.clone();
        let content_before = self.tracker.content_bytes;
        exec_cached(conn, "SAVEPOINT fold_event")?;
        // `Ok(Err(reason))`: the event cannot apply (a dead letter on every node). `Err`: this
        // node's database failed, and the batch is retried — never a dead letter on one node
        // only, which would fork it from the others.
        let result: Result<Result<(), String>, StoreError> =
            if event.kind == EventKind::PluginBinding {
                match self.hooks.policy.bind(event, &self.ctx.schema) {
                    Err(fault) => Err(fault),
                    Ok(Err(reason)) => Ok(Err(reason)),
                    // The runtime has the new binding now; if the table cannot store it, the
                    // batch fails and its retry restores the committed bindings first.
                    Ok(Ok(())) => self.store_bindings().map(Ok),
                }
            } else if event.kind == EventKind::PluginRegistry {
                let policy = &self.hooks.policy;
                let in_use = |name: &str, version: u32| policy.plugin_in_use(name, version);
                super::plugins::apply(conn, event, &in_use).map(|r| {
                    r.map(|applied| {
                        // The runtime lists the version at once, so a binding event later in
                        // this batch finds it.
                        if let super::plugins::Applied::Registered(meta) = applied {
                            policy.registered(&meta);
                        }
                    })
                })
            } else {
                match self.apply_schema(event) {
                    Ok(()) => Ok(Ok(())),
                    Err(e) if is_engine_fault(&e) => Err(e),
                    Err(e) => Ok(Err(e.to_string())),
                }
            };
        if matches!(result, Ok(Ok(()))) {
            exec_cached(conn, "RELEASE fold_event")?;
        } else {
            self.ctx.schema = before;
            self.tracker.content_bytes = content_before;
            exec_cached(conn, "ROLLBACK TO fold_event")
                .and_then(|()| exec_cached(conn, "RELEASE fold_event"))?;
        }
        result
    }

    /// Restores the canonical row under a key's overlay.
    fn revert_key(&mut self, c: &Arc<Collection>, rid: &str) -> Result<(), StoreError> {
        let key = (c.id.clone(), rid.to_string());
        self.remember_shown(c, rid)?;
        if !self.overlays {
            return Ok(());
        }
        let shadow: Option<Option<String>> = self
            .conn()
            .prepare_cached("SELECT data FROM _sync_shadow WHERE coll = ?1 AND rid = ?2")?
            .query_row(params![c.id, rid], |r| r.get(0))
            .optional()?;
        let Some(data) = shadow else {
            return Ok(());
        };
        let row = parse_record(data)?;
        let conn = self.conn();
        conn.execute_batch("SAVEPOINT fold_revert")?;
        match write_raw(conn, c, rid, row.as_ref()) {
            Ok(()) => conn.execute_batch("RELEASE fold_revert")?,
            Err(e) if is_constraint(&e) => {
                conn.execute_batch("ROLLBACK TO fold_revert; RELEASE fold_revert")?;
                return self.revert_collection(c);
            }
            Err(e) => {
                // The original error is the one that says what failed (after a full disk
                // SQLite has already ended the transaction, and the savepoint with it).
                let _ = conn.execute_batch("ROLLBACK TO fold_revert; RELEASE fold_revert");
                return Err(e);
            }
        }
        conn.prepare_cached("DELETE FROM _sync_shadow WHERE coll = ?1 AND rid = ?2")?
            .execute(params![c.id, rid])?;
        self.reverted.insert(key, ());
        Ok(())
    }

    /// Restores every canonical row under an overlay in `c`: overlay rows out first, then the
    /// canonical rows back, so overlays cannot collide with them.
    fn revert_collection(&mut self, c: &Arc<Collection>) -> Result<(), StoreError> {
        let rows: Vec<(String, Option<String>)> = {
            let mut stmt = self
                .conn()
                .prepare_cached("SELECT rid, data FROM _sync_shadow WHERE coll = ?1")?;
            let it = stmt.query_map([&c.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            it.collect::<Result<_, _>>()?
        };
        for (rid, _) in &rows {
            self.remember_shown(c, rid)?;
            write_raw(self.conn(), c, rid, None)?;
        }
        for (rid, data) in rows {
            if let Some(row) = parse_record(data)? {
                write_raw(self.conn(), c, &rid, Some(&row))?;
            }
            self.reverted.insert((c.id.clone(), rid), ());
        }
        self.conn()
            .prepare_cached("DELETE FROM _sync_shadow WHERE coll = ?1")?
            .execute([&c.id])?;
        Ok(())
    }

    fn remember_shown(&mut self, c: &Arc<Collection>, rid: &str) -> Result<(), StoreError> {
        if !self.announce && !c.is_auth() {
            return Ok(());
        }
        let key = (c.id.clone(), rid.to_string());
        if !self.shown.contains_key(&key) {
            let row = records::get(self.conn(), c, rid)?;
            self.shown.insert(key, (c.clone(), row));
        }
        Ok(())
    }

    fn apply_record(&mut self, seq: u64, event: &Event) -> Result<(), StoreError> {
        let c = self
            .ctx
            .schema
            .get(&event.collection.id)
            .cloned()
            .ok_or_else(|| {
                StoreError::BadRequest(format!(
                    "unknown collection {:?} ({})",
                    event.collection.name, event.collection.id
                ))
            })?;
        let rid = event.record_id.clone().unwrap_or_default();
        if c.has_files() {
            // The bytes of every file the event names were fetched before the batch (see
            // `sync::prepare_files`): they are this node's now, referenced or not; the sweep
            // at the end of the batch drops what the outcome does not reference.
            for f in &event.files {
                super::super::files::add(self.conn(), &c.id, &rid, f)?;
            }
            self.file_keys.push((c.clone(), rid.clone()));
        }
        // Copied only when an inbound filter rewrites it.
        let mut event = std::borrow::Cow::Borrowed(event);
        match self.hooks.policy.inbound(&c, &event)? {
            Filtered::Keep => {}
            Filtered::Drop => return Ok(()),
            Filtered::Replace(rec) => {
                if event.kind != EventKind::RecordDelete {
                    event.to_mut().data = Some(rec);
                }
            }
        }
        if event.kind != EventKind::RecordDelete {
            let data = event
                .data
                .as_ref()
                .ok_or_else(|| StoreError::BadRequest("record event without data".into()))?;
            if let Some(unknown) = data.keys().find(|k| c.field(k).is_none()) {
                return Err(StoreError::BadRequest(format!(
                    "field {unknown:?} is not in collection {:?}",
                    c.name
                )));
            }
            if data.get("id").and_then(Value::as_str) != Some(rid.as_str()) {
                return Err(StoreError::BadRequest(
                    "record data's id differs from the event's record id".into(),
                ));
            }
        }
        match self.decide_and_write(seq, &c, &rid, &event) {
            Err(e) if is_constraint(&e) => {
                // Overlays of other keys may hold the unique value: decide on canonical
                // state alone.
                // All of it or none: several rows move, and this event may still fail.
                let conn = self.ctx.conn;
                conn.execute_batch("SAVEPOINT fold_revert_all")?;
                if let Err(e) = self.revert_collection(&c) {
                    conn.execute_batch("ROLLBACK TO fold_revert_all; RELEASE fold_revert_all")?;
                    return Err(e);
                }
                conn.execute_batch("RELEASE fold_revert_all")?;
                self.decide_and_write(seq, &c, &rid, &event)
            }
            other => other,
        }
    }

    fn decide_and_write(
        &mut self,
        seq: u64,
        c: &Arc<Collection>,
        rid: &str,
        event: &Event,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let version: Option<(String, i64, String, i64, i64)> = conn
            .prepare_cached(
                "SELECT event_id, hlc, origin, deleted, bytes FROM _sync_versions
                 WHERE coll = ?1 AND rid = ?2",
            )?
            .query_row(params![c.id, rid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        // The snapshot policy's content figure: each live version counts its event's payload.
        let old_bytes = version.as_ref().map_or(0, |v| v.4);
        let new_bytes = self.payload_len as i64;
        let base_matches =
            event.base.as_ref().map(EventId::as_str) == version.as_ref().map(|v| v.0.as_str());
        let (resolved, mut label) = if base_matches {
            (Resolved::TakeIncoming, "in-order".to_string())
        } else {
            let data = records::get(conn, c, rid)?;
            let current = Current {
                data,
                hlc: version.as_ref().map(|v| v.1 as u64).unwrap_or(0),
                origin: version.as_ref().map(|v| v.2.clone()).unwrap_or_default(),
                event_id: version.as_ref().map(|v| v.0.clone()).unwrap_or_default(),
            };
            let (resolved, label) = self.hooks.policy.resolve(c, &current, event)?;
            match resolved {
                // A merged record is stored only as the collection's schema allows, the same
                // on every node (and in the dry run); otherwise the built-in rule decides.
                Resolved::Merged(rec) => match merged::check(c, rid, &rec) {
                    Ok(stored) => (Resolved::Merged(stored), label),
                    Err(reason) => {
                        self.hooks.policy.rejected_merge(c, &reason);
                        (
                            super::last_writer_wins(&current, event),
                            format!("default after an invalid merge by {label}: {reason}"),
                        )
                    }
                },
                other => (other, label),
            }
        };
        if label.len() > 512 {
            let mut end = 512;
            while !label.is_char_boundary(end) {
                end -= 1;
            }
            label.truncate(end);
        }
        let upsert_version = |event_id: &str,
                              hlc: u64,
                              origin: &str,
                              deleted: bool,
                              verdict: &str| {
            let bytes = if deleted { 0 } else { new_bytes };
            conn.prepare_cached(
                "INSERT INTO _sync_versions (coll, rid, event_id, hlc, origin, deleted, verdict, seq, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(coll, rid) DO UPDATE SET event_id = excluded.event_id,
                   hlc = excluded.hlc, origin = excluded.origin, deleted = excluded.deleted,
                   verdict = excluded.verdict, seq = excluded.seq, bytes = excluded.bytes",
            )?
            .execute(params![c.id, rid, event_id, hlc as i64, origin, deleted, verdict, seq as i64, bytes])
            .map(|_| bytes)
        };
        let mut content_delta = 0;
        match resolved {
            Resolved::TakeIncoming => {
                let deleted = event.kind == EventKind::RecordDelete;
                let row = if deleted { None } else { event.data.as_ref() };
                write_raw(conn, c, rid, row)?;
                content_delta = upsert_version(
                    event.id.as_str(),
                    event.hlc.0,
                    &event.origin,
                    deleted,
                    &format!("take-incoming ({label})"),
                )? - old_bytes;
            }
            Resolved::KeepCurrent => {
                conn.prepare_cached(
                    "UPDATE _sync_versions SET verdict = ?3, seq = ?4 WHERE coll = ?1 AND rid = ?2",
                )?
                .execute(params![
                    c.id,
                    rid,
                    format!("keep-current over {} ({label})", event.id),
                    seq as i64
                ])?;
            }
            Resolved::Merged(rec) => {
                write_raw(conn, c, rid, Some(&rec))?;
                let hlc = version
                    .as_ref()
                    .map(|v| v.1 as u64)
                    .unwrap_or(0)
                    .max(event.hlc.0);
                content_delta = upsert_version(
                    &format!("m-{}", event.id),
                    hlc,
                    &event.origin,
                    false,
                    &format!("merged ({label})"),
                )? - old_bytes;
            }
        }
        self.tracker.content_bytes += content_delta;
        Ok(())
    }

    /// Drops the files no row references any more from the records this batch touched.
    fn sweep_files(&mut self) -> Result<(), StoreError> {
        let keys = std::mem::take(&mut self.file_keys);
        for (c, rid) in keys {
            let c = self.ctx.schema.get(&c.id).cloned().unwrap_or(c);
            super::super::files::sweep(self.conn(), &c, &rid, Some(self.last_seq))?;
        }
        Ok(())
    }

    /// Lays this node's still-pending writes over the keys reverted in this batch.
    fn relay(&mut self) -> Result<(), StoreError> {
        // A shadow whose writes are all gone (e.g. this node's own event was dead-lettered)
        // covers nothing any more: canonical state shows again.
        let orphans: Vec<(String, String)> = {
            let mut stmt = self.conn().prepare_cached(
                "SELECT coll, rid FROM _sync_shadow s WHERE NOT EXISTS
                   (SELECT 1 FROM _sync_pending p WHERE p.coll = s.coll AND p.rid = s.rid)",
            )?;
            let it = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            it.collect::<Result<_, _>>()?
        };
        for (coll, rid) in orphans {
            match self.ctx.schema.get(&coll).cloned() {
                Some(c) => self.revert_key(&c, &rid)?,
                None => {
                    self.conn()
                        .prepare_cached("DELETE FROM _sync_shadow WHERE coll = ?1 AND rid = ?2")?
                        .execute(params![coll, rid])?;
                }
            }
        }
        let keys: Vec<Key> = self.reverted.keys().cloned().collect();
        for (coll, rid) in keys {
            let overlay: Option<Option<String>> = self
                .conn()
                .prepare_cached(
                    "SELECT data FROM _sync_pending WHERE coll = ?1 AND rid = ?2 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![coll, rid], |r| r.get(0))
                .optional()?;
            let Some(overlay) = overlay else { continue };
            let Some(c) = self.ctx.schema.get(&coll).cloned() else {
                continue;
            };
            let canonical = records::get(self.conn(), &c, &rid)?;
            self.conn()
                .prepare_cached(
                    "INSERT OR REPLACE INTO _sync_shadow (coll, rid, data) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![coll, rid, canonical.as_ref().map(json_text)])?;
            let row = parse_record(overlay)?;
            let conn = self.conn();
            conn.execute_batch("SAVEPOINT fold_relay")?;
            match write_raw(conn, &c, &rid, row.as_ref()) {
                Ok(()) => conn.execute_batch("RELEASE fold_relay")?,
                Err(e) => {
                    // The overlay no longer fits (a unique value taken meanwhile): show the
                    // canonical row until this write's own event decides.
                    tracing::debug!(error = %e, coll, rid, "overlay not re-applied");
                    conn.execute_batch("ROLLBACK TO fold_relay; RELEASE fold_relay")?;
                }
            }
        }
        Ok(())
    }

    /// Puts a change on the feed for every key whose shown row changed.
    fn announce(&mut self) -> Result<(), StoreError> {
        let shown = std::mem::take(&mut self.shown);
        for ((_, rid), (c, before)) in shown {
            let Some(c) = self.ctx.schema.get(&c.id).cloned() else {
                continue;
            };
            let after = records::get(self.conn(), &c, &rid)?;
            if after == before {
                continue;
            }
            let (op, record) = match (&before, after) {
                (None, Some(a)) => (Op::Create, a),
                (Some(_), Some(a)) => (Op::Update, a),
                (Some(b), None) => (Op::Delete, b.clone()),
                (None, None) => continue,
            };
            self.ctx.changes.push(Change {
                op,
                collection: c,
                record,
                before,
            });
        }
        Ok(())
    }
}

#[path = "fold_schema.rs"]
mod schema;

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
