//! PocketBase → Syncbase: reads a PocketBase database (attached read-only) and writes a new
//! Syncbase database with the collections a plan names and every row of theirs, as stored.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use super::{
    CopyProgress, PbCollection, attach_read_only, copy_rows, count_rows, each_file, has_table,
    in_transaction, open_target, table_columns,
};
use crate::store::files::FileRef;
use crate::store::schema::{Collection, quote_ident};
use crate::store::{StoreError, ddl, files, settings, system};

/// Which PocketBase a database comes from, by its `_collections` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbFormat {
    /// PocketBase 0.23 or newer (`_collections.fields`).
    Current,
    /// PocketBase before 0.23 (`_collections.schema`), which stored collections differently.
    Legacy,
    /// No `_collections` table: not a PocketBase database.
    NotPocketBase,
}

/// A table of the source database: its columns and how many rows it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PbTable {
    pub columns: Vec<String>,
    pub rows: u64,
}

/// What the planner is told about a PocketBase database.
#[derive(Debug, Clone)]
pub struct PbSource {
    pub format: PbFormat,
    pub collections: Vec<PbCollection>,
    /// `_params.settings` as stored: JSON, or the encrypted text PocketBase writes when it
    /// runs with an encryption key.
    pub settings: Option<String>,
    /// Names of the migrations PocketBase recorded as applied (`_migrations.file`).
    pub migrations: Vec<String>,
    /// The tables of the base and auth collections (and `_authOrigins`), by collection name.
    pub tables: BTreeMap<String, PbTable>,
    /// Tables that belong to no collection and are not PocketBase's own (made by hand or by
    /// an app's migrations).
    pub other_tables: Vec<String>,
}

/// A collection to create, filled from the source table of the same name: `columns` (each a
/// field of the collection) are read; fields not among them get their empty value.
#[derive(Debug, Clone)]
pub struct ImportTable {
    pub collection: Collection,
    pub columns: Vec<String>,
}

/// What to write: collections in creation order, and settings.
#[derive(Debug, Clone, Default)]
pub struct ImportPlan {
    pub collections: Vec<ImportTable>,
    /// Settings to store (merged over Syncbase's defaults).
    pub settings: Option<Value>,
    /// Source columns left behind (collection name, column): their non-empty values are
    /// counted for the report.
    pub left_behind: Vec<(String, String)>,
    /// Whether the files the records name are handed to the import's file callback (false
    /// when their bytes are not where the import can read them).
    pub copy_files: bool,
}

/// Stores one file a record names (collection, record id, name) and returns its reference
/// (`None`: not stored).
pub type StoreFile<'a, E> = dyn FnMut(&Collection, &str, &str) -> Result<Option<FileRef>, E> + 'a;

/// What the import wrote.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    /// Rows per collection, in plan order.
    pub records: Vec<(String, u64)>,
    /// (collection, column, rows whose value there was not empty) for each column left behind.
    pub left_behind: Vec<(String, String, u64)>,
    /// (collection, index definition, SQLite's reason) for each index that could not be built
    /// over the imported rows; it is dropped from the collection.
    pub failed_indexes: Vec<(String, String, String)>,
    /// Files stored (with their `_files` row): how many, and their bytes.
    pub files: u64,
    pub file_bytes: u64,
}

/// Writes a new Syncbase database at `dest` from the PocketBase database `source`, as `plan`
/// decides from the source's description. `dest` must not exist; on failure it is left for
/// the caller to delete. The source is only ever read.
///
/// When the plan says so, `file(collection, record id, name)` is called for every file a
/// record names once the rows are in: it stores the bytes and returns their reference, which
/// becomes the name's `_files` row (what a served file needs), or `None` for a file it could
/// not store (and reported).
pub fn import_pocketbase<E: From<StoreError>>(
    source: &Path,
    dest: &Path,
    plan: impl FnOnce(&PbSource) -> Result<ImportPlan, E>,
    progress: &mut dyn FnMut(CopyProgress<'_>),
    file: &mut StoreFile<'_, E>,
) -> Result<ImportOutcome, E> {
    let conn = open_target(dest)?;
    attach_read_only(&conn, source, "pb")?;
    let outcome = in_transaction(&conn, || -> Result<ImportOutcome, E> {
        let described = describe(&conn)?;
        let plan = plan(&described)?;
        let with_files: Vec<Collection> = plan
            .collections
            .iter()
            .filter(|t| plan.copy_files && t.collection.has_files())
            .map(|t| t.collection.clone())
            .collect();
        let mut outcome = write(&conn, &described, plan, progress)?;
        files::create_tables(&conn)?;
        for c in &with_files {
            each_file(&conn, "main", c, &mut |rid, name| -> Result<(), E> {
                if let Some(f) = file(c, rid, name)? {
                    outcome.files += 1;
                    outcome.file_bytes += f.size;
                    files::add(&conn, &c.id, rid, &f)?;
                }
                Ok(())
            })?;
        }
        Ok(outcome)
    })?;
    conn.execute_batch("DETACH DATABASE pb")
        .map_err(StoreError::from)?;
    // System collections the source did not have (an older PocketBase's) get Syncbase's.
    system::bootstrap(&conn)?;
    Ok(outcome)
}

/// Reads the source's collections, settings, migrations and record tables.
fn describe(conn: &Connection) -> Result<PbSource, StoreError> {
    let cols = table_columns(conn, "pb", "_collections")?;
    let format = if cols.iter().any(|c| c == "fields") {
        PbFormat::Current
    } else if cols.iter().any(|c| c == "schema") {
        PbFormat::Legacy
    } else {
        PbFormat::NotPocketBase
    };
    let mut source = PbSource {
        format,
        collections: Vec::new(),
        settings: None,
        migrations: Vec::new(),
        tables: BTreeMap::new(),
        other_tables: Vec::new(),
    };
    if format != PbFormat::Current {
        return Ok(source);
    }
    let mut stmt = conn.prepare(
        "SELECT id, name, type, system, fields, indexes, listRule, viewRule, createRule,
                updateRule, deleteRule, options, created, updated
         FROM pb._collections ORDER BY created, name",
    )?;
    source.collections = stmt
        .query_map([], |r| {
            Ok(PbCollection {
                id: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                system: r.get(3)?,
                fields: r.get(4)?,
                indexes: r.get(5)?,
                list_rule: r.get(6)?,
                view_rule: r.get(7)?,
                create_rule: r.get(8)?,
                update_rule: r.get(9)?,
                delete_rule: r.get(10)?,
                options: r.get(11)?,
                created: r.get(12)?,
                updated: r.get(13)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if has_table(conn, "pb", "_params")? {
        source.settings = conn
            .query_row(
                "SELECT CAST(value AS TEXT) FROM pb._params WHERE id = 'settings'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
    }
    if has_table(conn, "pb", "_migrations")? {
        let mut stmt = conn.prepare("SELECT file FROM pb._migrations ORDER BY applied, file")?;
        source.migrations = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
    }
    for c in &source.collections {
        if c.kind == "view" || !has_table(conn, "pb", &c.name)? {
            continue;
        }
        let table = PbTable {
            columns: table_columns(conn, "pb", &c.name)?,
            rows: count_rows(conn, "pb", &c.name)?,
        };
        source.tables.insert(c.name.clone(), table);
    }
    let mut stmt = conn.prepare(
        "SELECT name FROM pb.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         AND name NOT IN ('_collections', '_params', '_migrations') ORDER BY name",
    )?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    source.other_tables = names
        .into_iter()
        .filter(|t| {
            !source
                .collections
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(t))
        })
        .collect();
    Ok(source)
}

fn write(
    conn: &Connection,
    source: &PbSource,
    plan: ImportPlan,
    progress: &mut dyn FnMut(CopyProgress<'_>),
) -> Result<ImportOutcome, StoreError> {
    system::create_system_tables(conn)?;
    let total: u64 = plan
        .collections
        .iter()
        .filter_map(|t| source.tables.get(&t.collection.name))
        .map(|t| t.rows)
        .sum();
    let mut done = 0u64;
    let mut outcome = ImportOutcome::default();
    for ImportTable {
        collection: mut c,
        columns,
    } in plan.collections
    {
        ddl::create_table_bare(conn, &c)?;
        let copied = match source.tables.get(&c.name) {
            Some(table) if !columns.is_empty() => {
                if let Some(missing) = columns
                    .iter()
                    .find(|f| !table.columns.contains(f) || c.field(f).is_none())
                {
                    return Err(StoreError::Internal(format!(
                        "column {missing} of {} is not both a source column and a field",
                        c.name
                    )));
                }
                progress(CopyProgress {
                    table: &c.name,
                    done,
                    total,
                });
                copy_rows(conn, "pb", &c.name, &c.name, &columns, &mut |n| {
                    done += n;
                    progress(CopyProgress {
                        table: &c.name,
                        done,
                        total,
                    });
                })?
            }
            _ => 0,
        };
        // Indexes are built once the rows are in (one sort each instead of a b-tree insert per
        // row). One that the rows break, or SQLite refuses, is left out and reported rather
        // than failing the whole import.
        let mut kept = Vec::with_capacity(c.indexes.len());
        for sql in std::mem::take(&mut c.indexes) {
            conn.execute_batch("SAVEPOINT idx")?;
            match ddl::create_index(conn, &c.name, &sql) {
                Ok(()) => {
                    conn.execute_batch("RELEASE idx")?;
                    kept.push(sql);
                }
                Err(e) => {
                    conn.execute_batch("ROLLBACK TO idx; RELEASE idx")?;
                    outcome
                        .failed_indexes
                        .push((c.name.clone(), sql, e.to_string()));
                }
            }
        }
        c.indexes = kept;
        system::save_collection(conn, &c)?;
        outcome.records.push((c.name.clone(), copied));
    }
    if let Some(s) = &plan.settings {
        settings::update(conn, s)?;
    }
    for (coll, column) in plan.left_behind {
        let filled = if source
            .tables
            .get(&coll)
            .is_some_and(|t| t.columns.contains(&column))
        {
            filled_values(conn, &coll, &column)?
        } else {
            0
        };
        outcome.left_behind.push((coll, column, filled));
    }
    Ok(outcome)
}

/// Rows of `pb.table` whose `column` holds something (not NULL, `''`, `'[]'` or `'{}'`).
fn filled_values(conn: &Connection, table: &str, column: &str) -> Result<u64, StoreError> {
    let col = quote_ident(column);
    let n: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM pb.{} WHERE {col} IS NOT NULL AND CAST({col} AS TEXT) NOT IN ('', '[]', '{{}}')",
            quote_ident(table)
        ),
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}
