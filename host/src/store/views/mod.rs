//! View collections in SQLite: a view collection's table is an SQL `VIEW` over its
//! `viewQuery`, and its fields are inferred from the query as PocketBase infers them
//! (`core/view.go`): `parse.rs` suggests a field per selected column, SQLite names the columns
//! the view really has (through a temporary view), and the result is one field per column in
//! the view's order, with a required `id`.
//!
//! Everything here runs on the writer connection inside the caller's job. Inference is a
//! function of the query and the schema and tables at that moment, so a replicating node that
//! folds a schema event gets the same fields as the node that validated it (copied fields get
//! ids derived from their alias, not random ones as in PocketBase).

pub mod parse;

use rusqlite::Connection;
use serde_json::{Map, Value, json};

use super::StoreError;
use super::records::Record;
use super::schema::{Collection, Field, quote_ident};
use super::system::Schema;
use super::values::from_sql;

/// Why a query cannot be a view, with what was inferred before the failure (PocketBase shows
/// a missing `id` column differently from a query that inferred nothing).
#[derive(Debug, Clone)]
pub struct Invalid {
    pub message: String,
    pub fields: Vec<Field>,
}

impl Invalid {
    fn new(message: impl Into<String>) -> Invalid {
        Invalid {
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

/// SQLite's text for an error as PocketBase's driver reports it: `SQL logic error: no such
/// column: x (1)`.
pub fn sqlite_text(e: &rusqlite::Error) -> String {
    let (f, msg) = match e {
        rusqlite::Error::SqliteFailure(f, msg) => (f, msg.as_deref()),
        // A syntax error, with where it is (not shown: the statement is wrapped here).
        rusqlite::Error::SqlInputError { error, msg, .. } => (error, Some(msg.as_str())),
        other => return other.to_string(),
    };
    let primary = f.extended_code & 0xff;
    let kind = match primary {
        1 => "SQL logic error",
        2 => "internal logic error",
        3 => "access permission denied",
        4 => "query aborted",
        5 => "database is locked",
        6 => "database table is locked",
        7 => "out of memory",
        8 => "attempt to write a readonly database",
        9 => "interrupted",
        10 => "disk I/O error",
        11 => "database disk image is malformed",
        13 => "database or disk is full",
        14 => "unable to open database file",
        17 => "database schema has changed",
        18 => "string or blob too big",
        19 => "constraint failed",
        20 => "datatype mismatch",
        21 => "bad parameter or other API misuse",
        23 => "authorization denied",
        25 => "column index out of range",
        26 => "file is not a database",
        _ => "unknown error",
    };
    match msg {
        Some(m) => format!("{kind}: {m} ({})", f.extended_code),
        None => format!("{kind} ({})", f.extended_code),
    }
}

/// The probe view's name, in the connection's temp schema (the writer runs one job at a time).
const PROBE: &str = "_sb_view_probe";

/// The columns of `query` as a view would have them: (name, declared type).
fn columns(conn: &Connection, query: &str) -> Result<Vec<(String, String)>, rusqlite::Error> {
    conn.execute_batch(&format!("DROP VIEW IF EXISTS temp.{PROBE}"))?;
    // Wrapped in a sub-select, as PocketBase does, so a second statement cannot ride along.
    conn.execute_batch(&format!(
        "CREATE TEMP VIEW {PROBE} AS SELECT * FROM ({query})"
    ))?;
    let info = table_info(conn, &format!("temp.{PROBE}"));
    conn.execute_batch(&format!("DROP VIEW IF EXISTS temp.{PROBE}"))?;
    info
}

/// `PRAGMA table_info` of a table or view (`schema.name` or a quoted name).
fn table_info(conn: &Connection, target: &str) -> Result<Vec<(String, String)>, rusqlite::Error> {
    let (schema, name) = match target.split_once('.') {
        Some((s, n)) => (format!("{s}."), n.to_string()),
        None => (String::new(), target.to_string()),
    };
    let mut stmt = conn.prepare(&format!("PRAGMA {schema}table_info({name})"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    rows.collect()
}

/// Infers a view's fields from its query (PocketBase's `CreateViewFields`).
pub fn infer_fields(
    conn: &Connection,
    schema: &Schema,
    query: &str,
) -> Result<Vec<Field>, Invalid> {
    let suggested = parse::suggest_fields(schema, query).map_err(|e| Invalid::new(e.0))?;
    let columns = columns(conn, query).map_err(|e| Invalid::new(sqlite_text(&e)))?;
    let mut fields: Vec<Field> = Vec::with_capacity(columns.len());
    let mut has_id = false;
    for (name, _) in &columns {
        has_id |= name == "id";
        let field = match suggested.get(name) {
            Some(s) => s.field.clone(),
            None => parse::default_view_field(name),
        };
        fields.push(field);
    }
    if !has_id {
        return Err(Invalid {
            message: "missing required id column (you can use `(ROW_NUMBER() OVER()) as id` if you don't have one)".into(),
            fields,
        });
    }
    Ok(fields)
}

/// Validates a view query as PocketBase's dry run does and returns its fields: one
/// statement, fields inferable, and the first rows' ids present and distinct.
pub fn dry_run(conn: &Connection, schema: &Schema, query: &str) -> Result<Vec<Field>, Invalid> {
    checked(conn, schema, query).map(|(fields, _)| fields)
}

/// A view query's fields and its first `limit` records, as a view of them would show
/// (`POST /api/collections/meta/dry-run-view`).
pub fn preview(
    conn: &Connection,
    schema: &Schema,
    query: &str,
    limit: usize,
) -> Result<(Vec<Field>, Vec<Record>), Invalid> {
    let (fields, normalized) = checked(conn, schema, query)?;
    let rows = || -> Result<Vec<Record>, rusqlite::Error> {
        let cols: Vec<String> = fields.iter().map(|f| quote_ident(&f.name)).collect();
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM (SELECT * FROM ({normalized})) LIMIT {limit}",
            cols.join(", ")
        ))?;
        let rows = stmt.query_map([], |row| {
            let mut rec = Record::new();
            for (i, f) in fields.iter().enumerate() {
                rec.insert(f.name.clone(), from_sql(f, row.get_ref(i)?));
            }
            Ok(rec)
        })?;
        rows.collect()
    };
    let records = rows().map_err(|e| Invalid::new(sqlite_text(&e)))?;
    Ok((fields, records))
}

/// The dry run: the fields and the query as the view would run it (`id` as text).
fn checked(
    conn: &Connection,
    schema: &Schema,
    query: &str,
) -> Result<(Vec<Field>, String), Invalid> {
    let query = parse::normalize_select(query).map_err(|e| Invalid::new(e.0))?;
    let fields = infer_fields(conn, schema, &query)?;
    let normalized = normalize_id(conn, &query).map_err(|e| Invalid {
        message: format!("failed to normalize view query id: {e}"),
        fields: fields.clone(),
    })?;
    let sample = || -> Result<Vec<Option<String>>, rusqlite::Error> {
        let mut stmt = conn.prepare(&format!(
            "SELECT `id` FROM (SELECT * FROM ({normalized})) LIMIT 10"
        ))?;
        let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0))?;
        rows.collect()
    };
    let ids = sample().map_err(|e| Invalid {
        message: format!("failed to retrieve query records: {}", sqlite_text(&e)),
        fields: fields.clone(),
    })?;
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let Some(id) = id.filter(|s| !s.is_empty()) else {
            return Err(Invalid {
                message: "the query could return records with empty or invalid ids".into(),
                fields,
            });
        };
        if !seen.insert(id) {
            return Err(Invalid {
                message: "the query could return records with non-unique ids".into(),
                fields,
            });
        }
    }
    Ok((fields, normalized))
}

/// Wraps the query so its `id` column is text (record ids are strings), unless it is already.
fn normalize_id(conn: &Connection, query: &str) -> Result<String, String> {
    let query = query.trim().trim_matches(';');
    let cols = columns(conn, query).map_err(|e| sqlite_text(&e))?;
    if cols
        .iter()
        .any(|(n, t)| n.eq_ignore_ascii_case("id") && t.eq_ignore_ascii_case("TEXT"))
    {
        return Ok(query.to_string());
    }
    // The query's own column order, as written.
    let ids = parse::identifiers(query).map_err(|e| e.0)?;
    let list: Vec<String> = ids
        .columns
        .iter()
        .map(|c| {
            if c.alias == "id" {
                "CAST(`id` as TEXT) `id`".to_string()
            } else {
                quote_ident(&c.alias)
            }
        })
        .collect();
    Ok(format!("SELECT {} FROM ({query})", list.join(",")))
}

/// Fills a view collection's fields from its query and records what PocketBase refuses in a
/// view: a missing or invalid query, no `id` column, create/update/delete rules (its records
/// are read-only) and indexes.
pub fn validate(
    conn: &Connection,
    schema: &Schema,
    c: &mut Collection,
    errors: &mut Map<String, Value>,
) {
    let err = |code: &str, message: &str| json!({"code": code, "message": message});
    let query = c.view_query.clone().unwrap_or_default();
    if query.trim().is_empty() {
        c.fields.clear();
        errors.insert(
            "viewQuery".into(),
            err("validation_required", "Cannot be blank."),
        );
    } else {
        match dry_run(conn, schema, &query) {
            Ok(fields) => c.fields = fields,
            Err(invalid) => {
                c.fields = invalid.fields;
                let mut raw = invalid.message;
                if raw.len() > 500 {
                    let mut cut = 500;
                    while !raw.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    raw.truncate(cut);
                }
                errors.insert(
                    "viewQuery".into(),
                    err(
                        "validation_invalid_view_query",
                        &sentence(&format!("Invalid query - {raw}")),
                    ),
                );
            }
        }
    }
    if c.fields.is_empty() {
        errors.insert(
            "fields".into(),
            err("validation_required", "Cannot be blank."),
        );
    } else if !c.fields.iter().any(|f| f.name == "id") {
        errors.insert(
            "fields".into(),
            err(
                "validation_missing_primary_key",
                "Missing or invalid \"id\" PK field.",
            ),
        );
    }
    for (key, rule) in [
        ("createRule", &c.create_rule),
        ("updateRule", &c.update_rule),
        ("deleteRule", &c.delete_rule),
    ] {
        if rule.is_some() {
            errors.insert(key.into(), err("validation_nil", "Must be blank."));
        }
    }
    if !c.indexes.is_empty() {
        errors.insert(
            "indexes".into(),
            err(
                "validation_indexes_not_supported",
                "View collections don't support indexes.",
            ),
        );
    }
}

/// PocketBase's error messages end as sentences.
fn sentence(s: &str) -> String {
    if s.ends_with(['.', '!', '?']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// Creates the SQL view of a view collection. Its tables must exist (the `id` column's type is
/// read from them): create view collections after the others (a restore, an import). Whether
/// every column still resolves is [`check`]'s business.
pub fn create(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    let query = c.view_query.as_deref().unwrap_or_default();
    let query = parse::normalize_select(query).map_err(|e| StoreError::BadRequest(e.0))?;
    let normalized = normalize_id(conn, &query).map_err(StoreError::BadRequest)?;
    conn.execute_batch(&format!(
        "CREATE VIEW {} AS SELECT * FROM ({normalized})",
        c.table()
    ))?;
    Ok(())
}

pub fn drop(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("DROP VIEW IF EXISTS {}", c.table()))?;
    Ok(())
}

/// Whether the view still resolves against the tables it reads.
pub fn check(conn: &Connection, c: &Collection) -> Result<(), String> {
    table_info(conn, &c.table()).map(|_| ()).map_err(|e| {
        format!(
            "view collection {:?} no longer resolves: {}",
            c.name,
            sqlite_text(&e)
        )
    })
}

/// The views whose inferred fields differ after a schema change, with their new fields
/// (PocketBase re-saves such views after every collection save). `Err` names a view whose
/// query no longer works. `changed` is left out (it was just saved).
pub fn stale_views(
    conn: &Connection,
    schema: &Schema,
    changed: &str,
) -> Result<Vec<Collection>, String> {
    let mut out = Vec::new();
    for view in schema
        .all()
        .into_iter()
        .filter(|c| c.is_view() && c.id != changed)
    {
        let query = view.view_query.as_deref().unwrap_or_default();
        let fields = infer_fields(conn, schema, query)
            .map_err(|e| format!("[{}] {}", view.name, e.message))?;
        let strip = |fs: &[Field]| -> Vec<Field> {
            fs.iter()
                .cloned()
                .map(|mut f| {
                    f.id.clear();
                    f
                })
                .collect()
        };
        if strip(&fields) != strip(&view.fields) {
            let mut updated = (*view).clone();
            updated.fields = fields;
            out.push(updated);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(
            "CREATE TABLE posts (id TEXT PRIMARY KEY, title TEXT, views NUMERIC);
             INSERT INTO posts VALUES ('a', 'one', 1), ('b', 'two', 2);",
        )
        .expect("setup");
        c
    }

    #[test]
    fn an_integer_id_column_is_cast_to_text() {
        let c = conn();
        let q = "SELECT (ROW_NUMBER() OVER()) as id, title FROM posts";
        let n = normalize_id(&c, q).expect("normalize");
        assert_eq!(
            n,
            format!("SELECT CAST(`id` as TEXT) `id`,`title` FROM ({q})")
        );
        let t: String = c
            .query_row(&format!("SELECT typeof(id) FROM ({n}) LIMIT 1"), [], |r| {
                r.get(0)
            })
            .expect("query");
        assert_eq!(t, "text");
        assert_eq!(
            normalize_id(&c, "SELECT id FROM posts").expect("text"),
            "SELECT id FROM posts"
        );
    }

    #[test]
    fn dry_runs_report_what_pocketbase_reports() {
        let c = conn();
        let s = Schema::default();
        let msg = |q: &str| dry_run(&c, &s, q).expect_err(q).message;
        assert!(msg("SELECT title FROM posts").starts_with("missing required id column"));
        assert_eq!(
            msg("SELECT id, nope FROM posts"),
            "SQL logic error: no such column: nope (1)"
        );
        assert_eq!(
            msg("SELECT id, NULL AS nothing FROM posts"),
            "SQL logic error: near \"nothing\": syntax error (1)",
            "no trace of the wrapping statement"
        );
        assert_eq!(
            msg("SELECT 'x' AS id FROM posts"),
            "the query could return records with non-unique ids"
        );
        assert_eq!(
            msg("SELECT '' AS id"),
            "the query could return records with empty or invalid ids"
        );
        let fields = dry_run(&c, &s, "SELECT id, views FROM posts").expect("valid");
        assert_eq!(fields.len(), 2);
        assert_eq!(
            fields[1].kind.type_name(),
            "json",
            "unknown collection: json"
        );
        let left: i64 = c
            .query_row("SELECT count(*) FROM temp.sqlite_master", [], |r| r.get(0))
            .expect("temp schema");
        assert_eq!(left, 0, "the probe view is gone");
    }
}
