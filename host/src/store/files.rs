//! Which file bytes this node must keep, in SQL: `_files` holds every stored name a row of
//! this node references (the row shown, the canonical row under an overlay, this node's writes
//! not yet folded), with the bytes' sha256, size and type; `_files_trash` holds the storage
//! keys of names no row references any more, for the janitor (`files::janitor`) to delete
//! after the transaction that dropped them committed.
//!
//! Invariant: a `_files` row exists only while its bytes are in this node's storage (they are
//! written before the row's transaction, and deleted only after the row left). Rows are added
//! by the write that uploads a file or by the fold that brings one, and removed by `sweep`,
//! which every writer job and fold batch runs over the records it touched.

use std::collections::{BTreeSet, HashSet};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::records::{self, Record};
use super::schema::Collection;
use super::{Schema, StoreError};

pub use crate::replication::FileRef;

/// A storage key the janitor may delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trashed {
    pub key: String,
    pub coll: String,
    pub rid: String,
    pub name: String,
}

pub(crate) fn create_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _files (
             coll   TEXT NOT NULL,
             rid    TEXT NOT NULL,
             name   TEXT NOT NULL,
             sha256 TEXT NOT NULL,
             size   INTEGER NOT NULL,
             mime   TEXT NOT NULL,
             PRIMARY KEY (coll, rid, name)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS _files_sha ON _files (sha256);
         CREATE TABLE IF NOT EXISTS _files_orphans (
             sha256 TEXT PRIMARY KEY NOT NULL,
             seq    INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _files_trash (
             key  TEXT PRIMARY KEY NOT NULL,
             coll TEXT NOT NULL,
             rid  TEXT NOT NULL,
             name TEXT NOT NULL
         ) WITHOUT ROWID;",
    )?;
    Ok(())
}

fn key(coll: &str, rid: &str, name: &str) -> String {
    format!("{coll}/{rid}/{name}")
}

/// Records that `name` of record `rid` is stored here (bytes already written).
pub fn add(conn: &Connection, coll: &str, rid: &str, f: &FileRef) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO _files (coll, rid, name, sha256, size, mime) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (coll, rid, name) DO UPDATE SET sha256 = excluded.sha256,
           size = excluded.size, mime = excluded.mime",
    )?
    .execute(params![coll, rid, f.name, f.sha256, f.size as i64, f.mime])?;
    // Referenced again before the janitor got to it: keep the bytes.
    conn.prepare_cached("DELETE FROM _files_trash WHERE key = ?1")?
        .execute([key(coll, rid, &f.name)])?;
    conn.prepare_cached("DELETE FROM _files_orphans WHERE sha256 = ?1")?
        .execute([&f.sha256])?;
    Ok(())
}

/// The stored file `name` of a record, if this node has it.
pub fn get(
    conn: &Connection,
    coll: &str,
    rid: &str,
    name: &str,
) -> Result<Option<FileRef>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT name, sha256, size, mime FROM _files WHERE coll = ?1 AND rid = ?2 AND name = ?3",
        )?
        .query_row(params![coll, rid, name], |r| {
            Ok(FileRef {
                name: r.get(0)?,
                sha256: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                mime: r.get(3)?,
            })
        })
        .optional()?)
}

/// The references of `names` of a record (names this node does not have are left out).
pub fn refs(
    conn: &Connection,
    coll: &str,
    rid: &str,
    names: &[String],
) -> Result<Vec<FileRef>, StoreError> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if let Some(f) = get(conn, coll, rid, n)? {
            out.push(f);
        }
    }
    Ok(out)
}

fn parse(text: Option<String>) -> Option<Record> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Every name a record references on this node: the row shown, the canonical row under an
/// overlay (`_sync_shadow`) and this node's unfolded writes (`_sync_pending`).
fn referenced(
    conn: &Connection,
    c: &Collection,
    rid: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    if let Some(row) = records::get(conn, c, rid)? {
        names.extend(c.file_names(&row));
    }
    let shadow: Option<Option<String>> = conn
        .prepare_cached("SELECT data FROM _sync_shadow WHERE coll = ?1 AND rid = ?2")?
        .query_row(params![c.id, rid], |r| r.get(0))
        .optional()?;
    if let Some(row) = parse(shadow.flatten()) {
        names.extend(c.file_names(&row));
    }
    let mut stmt =
        conn.prepare_cached("SELECT data FROM _sync_pending WHERE coll = ?1 AND rid = ?2")?;
    let pending = stmt.query_map(params![c.id, rid], |r| r.get::<_, Option<String>>(0))?;
    for p in pending {
        if let Some(row) = parse(p?) {
            names.extend(c.file_names(&row));
        }
    }
    Ok(names)
}

/// Moves the files of record `rid` that nothing references any more to the trash. Returns
/// how many. `orphan_seq`: the fold's stream position, where a sha256 no row of this node
/// references any more becomes an orphan (a candidate for deletion from the cluster's bucket,
/// see `sync::files`); local writes pass `None` (their events fold later and decide then).
pub fn sweep(
    conn: &Connection,
    c: &Collection,
    rid: &str,
    orphan_seq: Option<u64>,
) -> Result<usize, StoreError> {
    let stored: Vec<String> = {
        let mut stmt =
            conn.prepare_cached("SELECT name FROM _files WHERE coll = ?1 AND rid = ?2")?;
        let rows = stmt.query_map(params![c.id, rid], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if stored.is_empty() {
        return Ok(0);
    }
    let keep = referenced(conn, c, rid)?;
    let mut n = 0;
    for name in stored.into_iter().filter(|s| !keep.contains(s)) {
        trash(conn, &c.id, rid, &name, orphan_seq)?;
        n += 1;
    }
    Ok(n)
}

fn trash(
    conn: &Connection,
    coll: &str,
    rid: &str,
    name: &str,
    orphan_seq: Option<u64>,
) -> Result<(), StoreError> {
    let sha: Option<String> = conn
        .prepare_cached(
            "DELETE FROM _files WHERE coll = ?1 AND rid = ?2 AND name = ?3 RETURNING sha256",
        )?
        .query_row(params![coll, rid, name], |r| r.get(0))
        .optional()?;
    if let (Some(sha), Some(seq)) = (sha, orphan_seq) {
        let still: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM _files WHERE sha256 = ?1)")?
            .query_row([&sha], |r| r.get(0))?;
        if !still {
            conn.prepare_cached(
                "INSERT INTO _files_orphans (sha256, seq) VALUES (?1, ?2)
                 ON CONFLICT (sha256) DO UPDATE SET seq = max(seq, excluded.seq)",
            )?
            .execute(params![sha, seq as i64])?;
        }
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO _files_trash (key, coll, rid, name) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key(coll, rid, name), coll, rid, name])?;
    Ok(())
}

/// Sweeps every record of a collection that has stored files (after its fields changed).
pub fn sweep_collection(
    conn: &Connection,
    c: &Collection,
    orphan_seq: Option<u64>,
) -> Result<usize, StoreError> {
    let rids: Vec<String> = {
        let mut stmt = conn.prepare("SELECT DISTINCT rid FROM _files WHERE coll = ?1")?;
        let rows = stmt.query_map([&c.id], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut n = 0;
    for rid in rids {
        n += sweep(conn, c, &rid, orphan_seq)?;
    }
    Ok(n)
}

/// Trashes every file of a dropped collection.
pub fn drop_collection(
    conn: &Connection,
    coll: &str,
    orphan_seq: Option<u64>,
) -> Result<usize, StoreError> {
    let rows: Vec<(String, String)> = {
        let mut stmt = conn.prepare("SELECT rid, name FROM _files WHERE coll = ?1")?;
        let rows = stmt.query_map([coll], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (rid, name) in &rows {
        trash(conn, coll, rid, name, orphan_seq)?;
    }
    Ok(rows.len())
}

/// Up to `limit` trashed keys.
pub fn trashed(conn: &Connection, limit: usize) -> Result<Vec<Trashed>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT key, coll, rid, name FROM _files_trash LIMIT ?1")?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(Trashed {
            key: r.get(0)?,
            coll: r.get(1)?,
            rid: r.get(2)?,
            name: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets trash entries whose bytes are deleted.
pub fn forget_trashed(conn: &Connection, keys: &[String]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("DELETE FROM _files_trash WHERE key = ?1")?;
    for k in keys {
        stmt.execute([k])?;
    }
    Ok(())
}

/// Whether a storage key is referenced again (the janitor checks before deleting).
pub fn is_referenced(
    conn: &Connection,
    coll: &str,
    rid: &str,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(get(conn, coll, rid, name)?.is_some())
}

/// Every sha256 this node holds (objects the cluster's bucket must keep).
pub fn all_shas(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT DISTINCT sha256 FROM _files")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Orphaned sha256s (no row of this node references them) that became orphans at or before
/// stream position `before`, and that no row references now.
pub fn orphans_before(conn: &Connection, before: u64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT o.sha256 FROM _files_orphans o WHERE o.seq < ?1
           AND NOT EXISTS (SELECT 1 FROM _files f WHERE f.sha256 = o.sha256)",
    )?;
    let rows = stmt.query_map([before as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets orphans deleted from the bucket (unless referenced again meanwhile, which already
/// removed them).
pub fn forget_orphans(conn: &Connection, shas: &[String]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("DELETE FROM _files_orphans WHERE sha256 = ?1")?;
    for s in shas {
        stmt.execute([s])?;
    }
    Ok(())
}

/// The storage key of every file this node's rows reference, in key order.
pub fn stored_keys(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT coll, rid, name FROM _files ORDER BY coll, rid, name")?;
    let rows = stmt.query_map([], |r| {
        Ok(key(
            &r.get::<_, String>(0)?,
            &r.get::<_, String>(1)?,
            &r.get::<_, String>(2)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// While a restored backup that carries its files replaces the database (`main`: the
/// backup, `live`: the node's database, attached): every stored file the backup's rows do
/// not name goes to the trash, as a PocketBase restore replaces `pb_data/storage`. Returns
/// how many.
pub(crate) fn trash_unnamed(new: &Connection) -> Result<usize, StoreError> {
    Ok(new.execute(
        "INSERT OR IGNORE INTO main._files_trash (key, coll, rid, name)
           SELECT l.coll || '/' || l.rid || '/' || l.name, l.coll, l.rid, l.name
           FROM live._files l
           WHERE NOT EXISTS (SELECT 1 FROM main._files m
                             WHERE m.coll = l.coll AND m.rid = l.rid AND m.name = l.name)",
        [],
    )?)
}

/// Leaves a snapshot's copy with only what its canonical rows reference: the `_files` rows
/// of the taker's own unfolded writes (and of collections gone) go, and so does the taker's
/// trash (keys of *its* storage). Run after the copy's overlays and pending writes are gone.
pub(crate) fn canonicalize(conn: &Connection, schema: &Schema) -> Result<(), StoreError> {
    let colls: Vec<String> = {
        let mut stmt = conn.prepare("SELECT DISTINCT coll FROM _files")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for coll in colls {
        match schema.get(&coll) {
            Some(c) => {
                sweep_collection(conn, c, None)?;
            }
            None => {
                conn.execute("DELETE FROM _files WHERE coll = ?1", [&coll])?;
            }
        }
    }
    conn.execute_batch("DELETE FROM _files_trash")?;
    Ok(())
}

/// While a snapshot replaces a node's database (`main`: the incoming copy, `live`: the
/// node's database, attached): the bytes in this node's storage must follow the new rows.
/// - The files of the node's writes it keeps (pending over the snapshot) stay known, so they
///   are served and published as before.
/// - Every stored key the new rows do not name, and the node's own trash, go to the new
///   trash: the janitor deletes those bytes (records deleted in the compacted part of the log
///   would otherwise stay on disk for ever).
///
/// Returns how many keys were trashed.
pub(crate) fn carry_into_install(new: &Connection, schema: &Schema) -> Result<usize, StoreError> {
    new.execute_batch(
        "DELETE FROM main._files_trash;
         INSERT OR IGNORE INTO main._files (coll, rid, name, sha256, size, mime)
           SELECT l.coll, l.rid, l.name, l.sha256, l.size, l.mime FROM live._files l
           WHERE EXISTS (SELECT 1 FROM main._sync_pending p
                         WHERE p.coll = l.coll AND p.rid = l.rid);",
    )?;
    // Of those, only the names the kept writes (or the rows) still reference stay.
    let pending: Vec<(String, String)> = {
        let mut stmt =
            new.prepare("SELECT DISTINCT coll, rid FROM main._sync_pending WHERE coll != ''")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (coll, rid) in pending {
        if let Some(c) = schema.get(&coll) {
            sweep(new, c, &rid, None)?;
        }
    }
    let trashed = trash_unnamed(new)?;
    new.execute_batch("INSERT OR IGNORE INTO main._files_trash SELECT * FROM live._files_trash;")?;
    Ok(trashed)
}

/// Every file the rows of this node reference, with its `_files` row (`None`: no sha256
/// known here). After a snapshot is installed the rows came from another node: the caller
/// checks which of these its storage lacks and fetches them by sha256.
pub type Referenced = (String, String, String, Option<FileRef>);

pub fn referenced_all(conn: &Connection, schema: &Schema) -> Result<Vec<Referenced>, StoreError> {
    let mut out = Vec::new();
    for c in schema.all() {
        if !c.has_files() {
            continue;
        }
        let cols: Vec<String> = std::iter::once("`id`".to_string())
            .chain(
                c.file_fields()
                    .map(|(f, _)| super::schema::quote_ident(&f.name)),
            )
            .collect();
        let sql = format!("SELECT {} FROM {}", cols.join(", "), c.table());
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let rid: String = row.get(0)?;
            let mut rec = Record::new();
            for (i, (f, _)) in c.file_fields().enumerate() {
                let v = super::values::from_sql(f, row.get_ref(i + 1)?);
                rec.insert(f.name.clone(), v);
            }
            for name in c.file_names(&rec) {
                let found = get(conn, &c.id, &rid, &name)?;
                out.push((c.id.clone(), rid.clone(), name, found));
            }
        }
    }
    Ok(out)
}

/// `names` with the value of a file field: a name, a list, or nothing.
pub fn names_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}
