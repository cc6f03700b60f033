//! Syncbase → PocketBase: reads a Syncbase database (attached read-only) and writes a new
//! PocketBase 0.40 database: PocketBase's own tables (`_migrations`, `_params`,
//! `_collections`) as its init migration creates them, then a table per collection with
//! PocketBase's column types, every row as stored, and the indexes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, params};
use serde_json::Value;

use super::{
    CopyProgress, PbCollection, attach_read_only, copy_rows, count_rows, each_file, has_table,
    in_transaction, open_target,
};
use crate::store::schema::{Collection, quote_ident};
use crate::store::{StoreError, ddl, settings, system};

/// PocketBase's system migrations up to 0.40 (`_migrations.file`). Recorded as applied, so
/// PocketBase does not try to create its tables again; a newer PocketBase applies its own newer
/// ones on top. `1640988000_aux_init.go` recreates `auxiliary.db` (the logs) when it is missing.
pub const POCKETBASE_MIGRATIONS: [&str; 8] = [
    "1640988000_aux_init.go",
    "1640988000_init.go",
    "1717233556_v0.23_migrate.go",
    "1717233557_v0.23_migrate2.go",
    "1717233558_v0.23_migrate3.go",
    "1717233559_v0.23_migrate4.go",
    "1763020353_update_default_auth_alert_templates.go",
    "1778828400_normalize_indexes.go",
];

/// PocketBase's own tables, as its init migration creates them.
const POCKETBASE_TABLES: &str = r#"
CREATE TABLE `_migrations` (file VARCHAR(255) PRIMARY KEY NOT NULL, applied INTEGER NOT NULL);
CREATE TABLE `_params` (
    `id`      TEXT PRIMARY KEY DEFAULT ('r'||lower(hex(randomblob(7)))) NOT NULL,
    `value`   JSON DEFAULT NULL,
    `created` TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%fZ')) NOT NULL,
    `updated` TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%fZ')) NOT NULL
);
CREATE TABLE `_collections` (
    `id`         TEXT PRIMARY KEY DEFAULT ('r'||lower(hex(randomblob(7)))) NOT NULL,
    `system`     BOOLEAN DEFAULT FALSE NOT NULL,
    `type`       TEXT DEFAULT "base" NOT NULL,
    `name`       TEXT UNIQUE NOT NULL,
    `fields`     JSON DEFAULT "[]" NOT NULL,
    `indexes`    JSON DEFAULT "[]" NOT NULL,
    `listRule`   TEXT DEFAULT NULL,
    `viewRule`   TEXT DEFAULT NULL,
    `createRule` TEXT DEFAULT NULL,
    `updateRule` TEXT DEFAULT NULL,
    `deleteRule` TEXT DEFAULT NULL,
    `options`    JSON DEFAULT "{}" NOT NULL,
    `created`    TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%fZ')) NOT NULL,
    `updated`    TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%fZ')) NOT NULL
);
CREATE INDEX IF NOT EXISTS idx__collections_type on `_collections` (`type`);
"#;

/// What the planner is told about a Syncbase database.
#[derive(Debug, Clone)]
pub struct SbSource {
    /// Every collection, system ones first.
    pub collections: Vec<Arc<Collection>>,
    pub settings: Value,
    /// Rows per collection name.
    pub rows: BTreeMap<String, u64>,
    /// Replication's bookkeeping: records with a folded version, local writes not yet folded,
    /// events not yet published, dead letters. PocketBase has no place for any of it.
    pub versions: u64,
    pub pending: u64,
    pub outbox: u64,
    pub dead_letters: u64,
    /// Mails queued on this node and not sent yet.
    pub mails_queued: u64,
}

/// One PocketBase collection to write: its `_collections` row, its table's columns (name and
/// PocketBase column type; none for a view) and indexes, and the Syncbase table its rows come
/// from (`None`: created empty).
#[derive(Debug, Clone)]
pub struct PbTablePlan {
    pub collection: PbCollection,
    pub columns: Vec<(String, String)>,
    pub indexes: Vec<String>,
    pub copy_from: Option<String>,
}

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct ExportPlan {
    pub tables: Vec<PbTablePlan>,
    /// `_params.settings`.
    pub settings: Option<Value>,
    /// When the system migrations are recorded as applied (Unix microseconds, as PocketBase).
    pub applied_at: i64,
    /// Whether the files the exported records name are handed to the export's file callback
    /// (false when their bytes are not where the export can read them).
    pub copy_files: bool,
}

/// What the export wrote: rows per collection, in plan order.
#[derive(Debug, Clone, Default)]
pub struct ExportOutcome {
    pub records: Vec<(String, u64)>,
}

/// Writes a new PocketBase database at `dest` from the Syncbase database `source`, as `plan`
/// decides from the source's description. `dest` must not exist; on failure it is left for
/// the caller to delete. The source is only ever read.
///
/// When the plan says so, `file(collection, record id, name)` is called for every file an
/// exported record names, once the rows are in, to copy its bytes.
pub fn export_pocketbase<E: From<StoreError>>(
    source: &Path,
    dest: &Path,
    plan: impl FnOnce(&SbSource) -> Result<ExportPlan, E>,
    progress: &mut dyn FnMut(CopyProgress<'_>),
    file: &mut dyn FnMut(&Collection, &str, &str) -> Result<(), E>,
) -> Result<ExportOutcome, E> {
    let conn = open_target(dest)?;
    attach_read_only(&conn, source, "sb")?;
    let outcome = in_transaction(&conn, || -> Result<ExportOutcome, E> {
        let described = describe(&conn)?;
        let plan = plan(&described)?;
        let with_files: Vec<Arc<Collection>> = plan
            .tables
            .iter()
            .filter(|_| plan.copy_files)
            .filter_map(|t| t.copy_from.as_ref())
            .filter_map(|from| described.collections.iter().find(|c| &c.name == from))
            .filter(|c| c.has_files())
            .cloned()
            .collect();
        let outcome = write(&conn, &described, plan, progress)?;
        for c in &with_files {
            each_file(&conn, "sb", c, &mut |rid, name| file(c, rid, name))?;
        }
        Ok(outcome)
    })?;
    conn.execute_batch("DETACH DATABASE sb")
        .map_err(StoreError::from)?;
    Ok(outcome)
}

fn describe(conn: &Connection) -> Result<SbSource, StoreError> {
    if !has_table(conn, "sb", "_collections")? {
        return Err(StoreError::BadRequest(
            "not a Syncbase database: it has no _collections table".into(),
        ));
    }
    let schema = system::load_schema_in(conn, "sb")?;
    let collections = schema.all();
    let mut rows = BTreeMap::new();
    for c in &collections {
        let n = if has_table(conn, "sb", &c.name)? {
            count_rows(conn, "sb", &c.name)?
        } else {
            0
        };
        rows.insert(c.name.clone(), n);
    }
    let count = |table: &str| -> Result<u64, StoreError> {
        if has_table(conn, "sb", table)? {
            count_rows(conn, "sb", table)
        } else {
            Ok(0)
        }
    };
    let mails_queued = if has_table(conn, "sb", "_mail_outbox")? {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM sb._mail_outbox WHERE status != 'failed'",
            [],
            |r| r.get(0),
        )?;
        n.max(0) as u64
    } else {
        0
    };
    Ok(SbSource {
        settings: if has_table(conn, "sb", "_params")? {
            settings::load_in(conn, "sb")?
        } else {
            settings::defaults()
        },
        collections,
        rows,
        versions: count("_sync_versions")?,
        pending: count("_sync_pending")?,
        outbox: count("_sync_outbox")?,
        dead_letters: count("_sync_dead")?,
        mails_queued,
    })
}

fn write(
    conn: &Connection,
    source: &SbSource,
    plan: ExportPlan,
    progress: &mut dyn FnMut(CopyProgress<'_>),
) -> Result<ExportOutcome, StoreError> {
    conn.execute_batch(POCKETBASE_TABLES)?;
    for file in POCKETBASE_MIGRATIONS {
        conn.execute(
            "INSERT INTO main._migrations (file, applied) VALUES (?1, ?2)",
            params![file, plan.applied_at],
        )?;
    }
    if let Some(s) = &plan.settings {
        conn.execute(
            "INSERT INTO main._params (id, value) VALUES ('settings', ?1)",
            [s.to_string()],
        )?;
    }
    let total: u64 = plan
        .tables
        .iter()
        .filter_map(|t| t.copy_from.as_ref())
        .filter_map(|name| source.rows.get(name))
        .sum();
    let mut done = 0u64;
    let mut outcome = ExportOutcome::default();
    for t in &plan.tables {
        let c = &t.collection;
        conn.execute(
            "INSERT INTO main._collections (id, system, type, name, fields, indexes, listRule,
                 viewRule, createRule, updateRule, deleteRule, options, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                c.id,
                c.system,
                c.kind,
                c.name,
                c.fields,
                c.indexes,
                c.list_rule,
                c.view_rule,
                c.create_rule,
                c.update_rule,
                c.delete_rule,
                c.options,
                c.created,
                c.updated
            ],
        )?;
        if t.columns.is_empty() {
            outcome.records.push((c.name.clone(), 0));
            continue;
        }
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(name, kind)| format!("{} {kind}", quote_ident(name)))
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE main.{} ({})",
            quote_ident(&c.name),
            cols.join(", ")
        ))?;
        let copied = match &t.copy_from {
            Some(from) => {
                let names: Vec<String> = t.columns.iter().map(|(n, _)| n.clone()).collect();
                progress(CopyProgress {
                    table: &c.name,
                    done,
                    total,
                });
                copy_rows(conn, "sb", from, &c.name, &names, &mut |n| {
                    done += n;
                    progress(CopyProgress {
                        table: &c.name,
                        done,
                        total,
                    });
                })?
            }
            None => 0,
        };
        for sql in &t.indexes {
            ddl::create_index(conn, &c.name, sql)
                .map_err(|e| StoreError::Internal(format!("index of {} ({sql}): {e}", c.name)))?;
        }
        outcome.records.push((c.name.clone(), copied));
    }
    Ok(outcome)
}
