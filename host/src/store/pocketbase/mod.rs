//! PocketBase's database on the SQLite side of `syncbase import pocketbase` and `syncbase
//! export pocketbase`: a PocketBase 0.23+ `data.db` read into a fresh Syncbase database
//! (`import.rs`), and a fresh PocketBase database written from a Syncbase one (`export.rs`).
//!
//! Each direction is one function that runs on the calling thread with a connection of its own
//! to a new file (the caller renames it into place once it is complete). The source is
//! attached read-only (`mode=ro`): nothing here can write to it. Everything happens inside one
//! transaction, so the source is read at one consistent moment even if its server still runs.
//! What to create is decided outside, in `crate::pocketbase`: the source's description goes to
//! a planning closure and the plan comes back, so this module never decides what is carried;
//! it only moves rows as stored (ids, password hashes, token keys, dates: nothing is
//! regenerated).

mod export;
mod import;

use std::path::Path;

use rusqlite::Connection;

pub use export::*;
pub use import::*;

use super::StoreError;
use super::schema::{Collection, quote_ident};

/// A `_collections` row of a PocketBase database, column by column (`fields`, `indexes` and
/// `options` as the JSON text PocketBase stores).
#[derive(Debug, Clone, PartialEq)]
pub struct PbCollection {
    pub id: String,
    pub name: String,
    /// `base`, `auth` or `view`.
    pub kind: String,
    pub system: bool,
    pub fields: String,
    pub indexes: String,
    pub list_rule: Option<String>,
    pub view_rule: Option<String>,
    pub create_rule: Option<String>,
    pub update_rule: Option<String>,
    pub delete_rule: Option<String>,
    pub options: String,
    pub created: String,
    pub updated: String,
}

/// Where a copy stands: rows copied so far of all the rows to copy, and the table at hand.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress<'a> {
    pub table: &'a str,
    pub done: u64,
    pub total: u64,
}

/// An SQLite URI that opens `path` read-only, whatever characters the path holds.
fn read_only_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            _ => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// Attaches `path` read-only as `alias` on `conn`. SQLite reads the file lazily: a file that
/// is not a database fails at the first read, not here.
fn attach_read_only(conn: &Connection, path: &Path, alias: &str) -> Result<(), StoreError> {
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {alias}"),
        [read_only_uri(path)],
    )?;
    Ok(())
}

/// Opens the new database file a copy writes. It is a fresh file the caller deletes if the
/// copy fails, so it is loaded without fsyncs, and with its rollback journal in memory (pages
/// past the file's starting size, i.e. nearly all of them, are never journaled; the journal
/// only has to undo an index that fails).
fn open_target(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = MEMORY;
         PRAGMA synchronous = OFF;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -65536;",
    )?;
    Ok(conn)
}

/// Column names of table `table` in attached database `db` (empty when there is no such table).
fn table_columns(conn: &Connection, db: &str, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("PRAGMA {db}.table_info({})", quote_ident(table)))?;
    let cols = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cols)
}

/// Whether attached database `db` has a table (not a view) named `table`, in any case.
fn has_table(conn: &Connection, db: &str, table: &str) -> Result<bool, StoreError> {
    let n: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM {db}.sqlite_master WHERE type = 'table' AND lower(name) = lower(?1)"
        ),
        [table],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

fn count_rows(conn: &Connection, db: &str, table: &str) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {db}.{}", quote_ident(table)),
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Rowids per INSERT … SELECT step: small enough for a live progress bar, large enough that
/// the steps cost nothing next to the rows.
const CHUNK: i64 = 20_000;

/// Copies `columns` of every row of `from_db.from` into `main.to`, as stored, in rowid order,
/// reporting each step's row count to `step`. Returns the rows copied.
fn copy_rows(
    conn: &Connection,
    from_db: &str,
    from: &str,
    to: &str,
    columns: &[String],
    step: &mut dyn FnMut(u64),
) -> Result<u64, StoreError> {
    let cols = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!(
        "INSERT INTO main.{} ({cols}) SELECT {cols} FROM {from_db}.{}",
        quote_ident(to),
        quote_ident(from)
    );
    let (lo, hi, count): (Option<i64>, Option<i64>, i64) = conn.query_row(
        &format!(
            "SELECT min(rowid), max(rowid), count(*) FROM {from_db}.{}",
            quote_ident(from)
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(0);
    };
    // Rowids far sparser than the rows (explicit rowids) would make the range steps mostly
    // empty: copy such a table in one statement.
    if (hi - lo) / 4 > count + CHUNK {
        let n = conn.execute(&select, [])? as u64;
        step(n);
        return Ok(n);
    }
    let mut stmt = conn.prepare(&format!("{select} WHERE rowid BETWEEN ?1 AND ?2"))?;
    let mut copied = 0u64;
    let mut at = lo;
    loop {
        let end = at.saturating_add(CHUNK - 1).min(hi);
        let n = stmt.execute([at, end])? as u64;
        copied += n;
        step(n);
        if end >= hi {
            return Ok(copied);
        }
        at = end + 1;
    }
}

/// Calls `each(record id, name)` for every file name the file fields of `c` hold in the rows of
/// `db.<c.name>` (a single name or a JSON list of names, as both PocketBase and Syncbase store
/// them). Rows stream: nothing is collected.
fn each_file<E: From<StoreError>>(
    conn: &Connection,
    db: &str,
    c: &Collection,
    each: &mut dyn FnMut(&str, &str) -> Result<(), E>,
) -> Result<(), E> {
    if !c.has_files() {
        return Ok(());
    }
    let cols: Vec<String> = std::iter::once("`id`".to_string())
        .chain(c.file_fields().map(|(f, _)| quote_ident(&f.name)))
        .collect();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM {db}.{}",
            cols.join(", "),
            quote_ident(&c.name)
        ))
        .map_err(StoreError::from)?;
    let mut rows = stmt.query([]).map_err(StoreError::from)?;
    while let Some(row) = rows.next().map_err(StoreError::from)? {
        let rid: String = row.get(0).map_err(StoreError::from)?;
        let mut rec = super::records::Record::new();
        for (i, (f, _)) in c.file_fields().enumerate() {
            let v = row.get_ref(i + 1).map_err(StoreError::from)?;
            rec.insert(f.name.clone(), super::values::from_sql(f, v));
        }
        for name in c.file_names(&rec) {
            each(&rid, &name)?;
        }
    }
    Ok(())
}

/// Runs `f` inside one transaction on `conn`: committed when it succeeds, rolled back when it
/// fails (the caller then deletes the file anyway).
fn in_transaction<R, E: From<StoreError>>(
    conn: &Connection,
    f: impl FnOnce() -> Result<R, E>,
) -> Result<R, E> {
    conn.execute_batch("BEGIN").map_err(StoreError::from)?;
    match f() {
        Ok(r) => {
            conn.execute_batch("COMMIT").map_err(StoreError::from)?;
            Ok(r)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_uris_escape_what_sqlite_would_read_as_uri_syntax() {
        assert_eq!(
            read_only_uri(Path::new("/tmp/a b/data.db")),
            "file:/tmp/a b/data.db?mode=ro"
        );
        assert_eq!(
            read_only_uri(Path::new("/tmp/50%?#/data.db")),
            "file:/tmp/50%25%3F%23/data.db?mode=ro"
        );
    }

    #[test]
    fn rows_are_copied_in_steps_as_stored() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "ATTACH DATABASE ':memory:' AS src;
             CREATE TABLE src.t (id TEXT PRIMARY KEY, n NUMERIC, j JSON, gone TEXT);
             CREATE TABLE main.t (id TEXT PRIMARY KEY, n NUMERIC, j JSON);",
        )
        .expect("schema");
        {
            let mut ins = conn
                .prepare("INSERT INTO src.t VALUES (?1, ?2, ?3, 'x')")
                .expect("prepare");
            for i in 0..45_000i64 {
                let j = if i % 2 == 0 { Some("[1,2]") } else { None };
                ins.execute(rusqlite::params![format!("id{i:012}"), i as f64 / 2.0, j])
                    .expect("insert");
            }
        }
        let mut steps = Vec::new();
        let n = copy_rows(
            &conn,
            "src",
            "t",
            "t",
            &["id".into(), "n".into(), "j".into()],
            &mut |k| steps.push(k),
        )
        .expect("copy");
        assert_eq!(n, 45_000);
        assert_eq!(steps, vec![20_000, 20_000, 5_000]);
        let same: i64 = conn
            .query_row(
                "SELECT count(*) FROM main.t m JOIN src.t s USING (id)
                 WHERE m.n IS s.n AND m.j IS s.j AND typeof(m.n) = typeof(s.n)",
                [],
                |r| r.get(0),
            )
            .expect("compare");
        assert_eq!(same, 45_000);
    }

    #[test]
    fn sparse_rowids_are_copied_in_one_statement() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "ATTACH DATABASE ':memory:' AS src;
             CREATE TABLE src.t (id TEXT PRIMARY KEY);
             CREATE TABLE main.t (id TEXT PRIMARY KEY);
             INSERT INTO src.t (rowid, id) VALUES (1, 'a'), (9000000000000, 'b');",
        )
        .expect("schema");
        let mut steps = Vec::new();
        let n = copy_rows(&conn, "src", "t", "t", &["id".into()], &mut |k| {
            steps.push(k)
        })
        .expect("copy");
        assert_eq!((n, steps), (2, vec![2]));
    }
}
