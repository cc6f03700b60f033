//! Installing a snapshot (or a backup) in place of the live database.
//!
//! The incoming file is prepared on the writer thread, between two transactions, so no local
//! write can slip between reading the node's own state and the swap:
//! 1. what stays the node's own is copied from the live database into the incoming file: its
//!    superusers and settings, and on a replicating node every write it acknowledged but the
//!    snapshot does not hold: the outbox (unpublished events, with their outbox sequences, so
//!    the publisher and write-concern waiters keep counting where they were), and pending
//!    writes whose events the snapshot has not folded (`_sync_seen` tells), laid over the
//!    snapshot's canonical rows as overlays with those rows as their shadows;
//! 2. the writer checkpoints and closes the live file, renames the incoming one over it (one
//!    atomic rename: a crash leaves either the old database or the new one, each whole), and
//!    reopens. Readers are drained before and reopen after; a snapshot being taken finishes
//!    first (the file lock).
//!
//! The caller verifies the incoming file (sha256 and table hashes) before installing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::super::records::{self, Record};
use super::super::schema::Collection;
use super::super::sync::LOCAL_ONLY;
use super::super::system::{self, Schema};
use super::super::{Store, StoreError, ddl};

/// How an incoming database meets the node's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallMode {
    /// A replicating node (re-)bootstraps from a cluster snapshot: it keeps its superusers,
    /// settings, outbox and pending writes.
    KeepLocal,
    /// A backup restored as PocketBase restores one: the backup's data replaces everything,
    /// except that the node keeps its superusers (and settings) when the backup has none (a
    /// cluster snapshot).
    Replace,
    /// [`InstallMode::Replace`] with a backup that carries its stored files (they were put
    /// into the storage before): the node's stored files its rows do not name go, as a
    /// PocketBase restore replaces `pb_data/storage`.
    ReplaceWithFiles,
}

/// What an install did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallReport {
    /// The stream sequence the installed state stands at.
    pub applied_seq: u64,
    /// The largest outbox sequence of this node's pending writes the snapshot had already
    /// folded (their waiters are answered as applied).
    pub own_applied: Option<u64>,
    /// Unpublished events kept in the outbox.
    pub outbox_kept: u64,
    /// Pending writes kept (their events are still to come or to publish).
    pub pending_kept: u64,
    /// Stored files the installed rows no longer name, handed to the janitor.
    pub files_trashed: u64,
}

impl Store {
    /// Replaces the live database with `incoming` (a verified snapshot or backup file, moved,
    /// not copied), keeping the node's own state as `mode` says.
    pub async fn install(
        &self,
        incoming: &Path,
        mode: InstallMode,
    ) -> Result<InstallReport, StoreError> {
        let _file = self.inner.file_lock.clone().write_owned().await;
        let _readers = self.inner.readers.drain().await?;
        let report = Arc::new(parking_lot::Mutex::new(InstallReport::default()));
        let out = report.clone();
        let incoming: PathBuf = incoming.to_path_buf();
        self.inner
            .writer
            .reopen(Box::new(move |live, schema| {
                *out.lock() = merge(live, schema, &incoming, mode)?;
                Ok(incoming)
            }))
            .await?;
        self.inner.installed.send_modify(|n| *n += 1);
        let r = report.lock().clone();
        tracing::info!(
            applied_seq = r.applied_seq,
            outbox_kept = r.outbox_kept,
            pending_kept = r.pending_kept,
            files_trashed = r.files_trashed,
            ?mode,
            "database replaced"
        );
        Ok(r)
    }

    /// Counts database installs: a receiver sees a change after each one (caches keyed on
    /// rows, such as verified tokens, must be dropped then).
    pub fn installs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.installed.subscribe()
    }
}

fn merge(
    live: &Connection,
    live_schema: &Schema,
    incoming: &Path,
    mode: InstallMode,
) -> Result<InstallReport, StoreError> {
    let live_path = live
        .path()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| StoreError::Internal("the live database has no path".into()))?
        .to_string();
    let new = Connection::open(incoming)?;
    new.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA foreign_keys = OFF;")?;
    let schema = system::load_schema(&new)?;
    let keep_superusers = mode == InstallMode::KeepLocal || schema.get(LOCAL_ONLY).is_none();
    // Before the live file is attached: unqualified DDL could otherwise reach into it.
    if keep_superusers && let Some(su) = schema.get(LOCAL_ONLY) {
        ddl::drop_table(&new, su)?;
        system::delete_collection_row(&new, &su.id)?;
    }
    // A snapshot from before the mail outbox existed lacks the table.
    super::super::mails::create_table(&new)?;
    super::super::files::create_tables(&new)?;
    // And one from before the pending writes kept their HLC, the column.
    super::super::sync::create_tables(&new)?;
    new.execute("ATTACH DATABASE ?1 AS live", [&live_path])?;
    let result = (|| {
        let tx = new.unchecked_transaction()?;
        let mut report = InstallReport::default();
        if keep_superusers {
            let su = match live_schema.get(LOCAL_ONLY) {
                Some(c) => (**c).clone(),
                None => system::default_superusers(&crate::records::validate::now_string()),
            };
            ddl::create_table(&new, &su)?;
            system::save_collection(&new, &su)?;
            let cols = column_list(&su);
            new.execute_batch(&format!(
                "INSERT INTO main.{t} ({cols}) SELECT {cols} FROM live.{t}",
                t = su.table()
            ))?;
        }
        let incoming_settings: bool = new.prepare("SELECT 1 FROM main._params")?.exists([])?;
        if mode == InstallMode::KeepLocal || !incoming_settings {
            new.execute_batch(
                "DELETE FROM main._params; INSERT INTO main._params SELECT * FROM live._params;",
            )?;
        }
        if mode == InstallMode::KeepLocal {
            keep_writes(&new, &schema, &mut report)?;
            report.files_trashed = super::super::files::carry_into_install(&new, &schema)? as u64;
        }
        // A restored backup without files of its own (a cluster's, or an older one) keeps
        // the node's stored bytes: a newer backup restored next may name them again.
        if mode == InstallMode::ReplaceWithFiles {
            report.files_trashed = super::super::files::trash_unnamed(&new)? as u64;
        }
        report.applied_seq = super::super::sync::applied_seq(&new)?;
        tx.commit()?;
        Ok(report)
    })();
    new.execute_batch("DETACH DATABASE live")?;
    result
}

fn column_list(c: &Collection) -> String {
    c.fields
        .iter()
        .map(|f| super::super::schema::quote_ident(&f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Carries the node's unpublished and unfolded writes into the incoming database.
fn keep_writes(
    new: &Connection,
    schema: &Schema,
    report: &mut InstallReport,
) -> Result<(), StoreError> {
    report.outbox_kept = new.execute(
        "INSERT INTO main._sync_outbox (seq, event_id, payload)
         SELECT seq, event_id, payload FROM live._sync_outbox",
        [],
    )? as u64;
    // Outbox sequences go on from where this node was, whatever the snapshot's taker had.
    new.execute_batch(
        "DELETE FROM main.sqlite_sequence WHERE name = '_sync_outbox';
         INSERT INTO main.sqlite_sequence (name, seq)
           SELECT name, seq FROM live.sqlite_sequence WHERE name = '_sync_outbox';",
    )?;
    // Mails this node still owes, and whether it already enqueued its `users` seed.
    new.execute_batch(
        "DELETE FROM main._mail_outbox;
         INSERT INTO main._mail_outbox SELECT * FROM live._mail_outbox;
         INSERT OR REPLACE INTO main._sync_state (key, value)
           SELECT key, value FROM live._sync_state WHERE key = 'seed_enqueued';",
    )?;
    report.own_applied = new
        .query_row(
            "SELECT max(seq) FROM live._sync_pending
             WHERE event_id IN (SELECT event_id FROM main._sync_seen)",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?
        .map(|s| s as u64);
    report.pending_kept = new.execute(
        "INSERT INTO main._sync_pending (seq, event_id, coll, rid, data, hlc)
         SELECT seq, event_id, coll, rid, data, hlc FROM live._sync_pending
         WHERE event_id NOT IN (SELECT event_id FROM main._sync_seen)",
        [],
    )? as u64;
    // Each key's newest pending write shows over the snapshot's row, which becomes its shadow.
    let overlays: Vec<(String, String, Option<String>)> = {
        let mut st = new.prepare(
            "SELECT coll, rid, data FROM main._sync_pending p WHERE coll != ''
               AND seq = (SELECT max(seq) FROM main._sync_pending q
                          WHERE q.coll = p.coll AND q.rid = p.rid)",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (coll, rid, data) in overlays {
        // A pending write to a collection the snapshot no longer has stays pending (its event
        // decides), with nothing to show.
        let Some(c) = schema.get(&coll) else { continue };
        let canonical = records::get(new, c, &rid)?;
        new.prepare_cached(
            "INSERT OR REPLACE INTO main._sync_shadow (coll, rid, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            coll,
            rid,
            canonical.as_ref().map(super::super::sync::json_text)
        ])?;
        let row: Option<Record> = data
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Internal(format!("corrupt pending row: {e}")))?;
        new.execute_batch("SAVEPOINT overlay")?;
        match records::write_raw(new, c, &rid, row.as_ref()) {
            Ok(()) => new.execute_batch("RELEASE overlay")?,
            Err(e) => {
                // It no longer fits (a unique value taken meanwhile): the canonical row shows
                // until the write's own event decides, as in the fold.
                tracing::debug!(error = %e, coll, rid, "overlay not laid over the snapshot");
                new.execute_batch("ROLLBACK TO overlay; RELEASE overlay")?;
            }
        }
    }
    Ok(())
}

/// The event ids of the live database's pending writes.
#[cfg(test)]
pub fn pending_ids(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare("SELECT event_id FROM _sync_pending ORDER BY seq")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
