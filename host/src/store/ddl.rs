//! Collection DDL: each collection is a real table with one typed column per field. Creating,
//! renaming and altering collections maps to `CREATE TABLE` / `ALTER TABLE`, so existing rows
//! keep their other data when fields are added, renamed or removed.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use rusqlite::Connection;

use super::StoreError;
use super::schema::{Collection, Field, quote_ident};

/// The parts of a `CREATE [UNIQUE] INDEX` statement the server needs.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    pub name: String,
    pub unique: bool,
    pub table: String,
    pub columns: Vec<String>,
}

static INDEX_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?[`"\[]?(\w+)[`"\]]?\s+ON\s+[`"\[]?(\w+)[`"\]]?\s*\((.+?)\)\s*(?:WHERE\s+(.+))?$"#,
    )
    .expect("static regex")
});

/// Parses an index definition; anything else (a second statement included) is refused.
pub fn parse_index(sql: &str) -> Option<IndexInfo> {
    if sql.contains(';') {
        return None;
    }
    let caps = INDEX_RE.captures(sql)?;
    let columns = caps[4]
        .split(',')
        .map(|c| {
            let c = c.trim();
            let c = c.split_whitespace().next().unwrap_or(c);
            c.trim_matches(|ch| ch == '`' || ch == '"' || ch == '[' || ch == ']')
                .to_string()
        })
        .collect();
    Some(IndexInfo {
        unique: caps.get(1).is_some(),
        name: caps[2].to_string(),
        table: caps[3].to_string(),
        columns,
    })
}

/// Rewrites an index definition so it targets `table` (after a collection rename).
fn retarget_index(sql: &str, info: &IndexInfo, table: &str) -> String {
    if info.table == table {
        return sql.to_string();
    }
    let re = Regex::new(&format!(
        r#"(?i)\bON\s+[`"\[]?{}[`"\]]?"#,
        regex::escape(&info.table)
    ))
    .expect("escaped regex");
    re.replace(sql, format!("ON {}", quote_ident(table)).as_str())
        .into_owned()
}

fn column_sql(f: &Field) -> String {
    format!("{} {}", quote_ident(&f.name), f.column_def())
}

/// True when a table or view of this name (any case) exists, internal ones included.
pub fn table_exists(conn: &Connection, name: &str) -> bool {
    conn.prepare_cached(
        "SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') AND lower(name) = lower(?1)",
    )
    .and_then(|mut st| st.exists([name]))
    .unwrap_or(false)
}

pub fn create_table(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    if c.is_view() {
        return super::views::create(conn, c);
    }
    create_table_bare(conn, c)?;
    create_indexes(conn, c)
}

/// The collection's table without its indexes: a bulk load builds them after the rows are in.
pub fn create_table_bare(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    let cols: Vec<String> = c.fields.iter().map(column_sql).collect();
    conn.execute_batch(&format!("CREATE TABLE {} ({})", c.table(), cols.join(", ")))?;
    Ok(())
}

/// Creates index `sql` (one of a collection's `indexes`) on `table`, whatever table the
/// definition names (it may predate a rename).
pub fn create_index(conn: &Connection, table: &str, sql: &str) -> Result<(), StoreError> {
    let info = parse_index(sql).ok_or_else(|| {
        StoreError::field(
            "indexes",
            "validation_invalid_index",
            "Invalid index expression.",
        )
    })?;
    conn.execute_batch(&retarget_index(sql, &info, table))?;
    Ok(())
}

pub fn drop_table(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    if c.is_view() {
        return super::views::drop(conn, c);
    }
    drop_indexes(conn, c)?;
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", c.table()))?;
    Ok(())
}

fn create_indexes(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    for sql in &c.indexes {
        let info = parse_index(sql).ok_or_else(|| {
            StoreError::field(
                "indexes",
                "validation_invalid_index",
                "Invalid index expression.",
            )
        })?;
        let sql = retarget_index(sql, &info, &c.name);
        conn.execute_batch(&sql).map_err(|e| {
            StoreError::field(
                "indexes",
                "validation_invalid_index_expression",
                &format!("Failed to create index {}: {e}", info.name),
            )
        })?;
    }
    Ok(())
}

fn drop_indexes(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    for sql in &c.indexes {
        if let Some(info) = parse_index(sql) {
            conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", quote_ident(&info.name)))?;
        }
    }
    Ok(())
}

/// Brings `old`'s table to `new`'s shape. Fields are matched by id: a changed name is a rename,
/// a missing id a removal, a new id an addition. Type changes are refused before this point.
pub fn alter_table(
    conn: &Connection,
    old: &Collection,
    new: &Collection,
) -> Result<(), StoreError> {
    if new.is_view() {
        // A view holds no data: it is dropped and made again from its (new) query.
        super::views::drop(conn, old)?;
        return super::views::create(conn, new);
    }
    drop_indexes(conn, old)?;
    if old.name != new.name {
        // Renames that differ only in case need a detour: SQLite names are case-insensitive.
        let tmp = format!("_tmp_{}", new.id);
        conn.execute_batch(&format!(
            "ALTER TABLE {} RENAME TO {}; ALTER TABLE {} RENAME TO {}",
            old.table(),
            quote_ident(&tmp),
            quote_ident(&tmp),
            new.table()
        ))?;
    }
    let t = new.table();
    let old_by_id: HashMap<&str, &Field> = old.fields.iter().map(|f| (f.id.as_str(), f)).collect();
    let new_by_id: HashMap<&str, &Field> = new.fields.iter().map(|f| (f.id.as_str(), f)).collect();
    for f in &old.fields {
        if !new_by_id.contains_key(f.id.as_str()) {
            conn.execute_batch(&format!(
                "ALTER TABLE {t} DROP COLUMN {}",
                quote_ident(&f.name)
            ))
            .map_err(|e| refused(&format!("failed to drop column {}", f.name), e))?;
        }
    }
    // Two-phase renames, so swapping two fields' names never collides midway.
    let renamed: Vec<(&Field, &Field)> = new
        .fields
        .iter()
        .filter_map(|f| old_by_id.get(f.id.as_str()).map(|o| (*o, f)))
        .filter(|(o, f)| o.name != f.name)
        .collect();
    for (o, f) in &renamed {
        conn.execute_batch(&format!(
            "ALTER TABLE {t} RENAME COLUMN {} TO {}",
            quote_ident(&o.name),
            quote_ident(&format!("_tmp_{}", f.id))
        ))
        .map_err(|e| refused(&format!("failed to rename column {}", o.name), e))?;
    }
    for (_, f) in &renamed {
        conn.execute_batch(&format!(
            "ALTER TABLE {t} RENAME COLUMN {} TO {}",
            quote_ident(&format!("_tmp_{}", f.id)),
            quote_ident(&f.name)
        ))?;
    }
    for f in &new.fields {
        match old_by_id.get(f.id.as_str()) {
            None => {
                conn.execute_batch(&format!("ALTER TABLE {t} ADD COLUMN {}", column_sql(f)))?;
            }
            Some(o) if o.is_multiple() != f.is_multiple() => convert_multiplicity(conn, &t, f)?,
            Some(_) => {}
        }
    }
    create_indexes(conn, new)
}

/// A schema change SQLite refuses for what the schema says (a view reads the column being
/// dropped or renamed) is the client's error, answered as PocketBase does; any other failure
/// (I/O, disk full) stays a database error.
fn refused(what: &str, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code & 0xff == 1 => {
            StoreError::BadRequest(format!(
                "Failed to update collection. Raw error: \n{what} - {}.",
                super::views::sqlite_text(&e)
            ))
        }
        _ => StoreError::Sql(e),
    }
}

/// Converts stored values between single (`"a"`) and multiple (`["a"]`) forms.
fn convert_multiplicity(conn: &Connection, table: &str, f: &Field) -> Result<(), StoreError> {
    let col = quote_ident(&f.name);
    let sql = if f.is_multiple() {
        format!(
            "UPDATE {table} SET {col} = CASE WHEN {col} IS NULL OR {col} = '' THEN '[]' \
             WHEN json_valid({col}) AND json_type({col}) = 'array' THEN {col} \
             ELSE json_array({col}) END"
        )
    } else {
        format!(
            "UPDATE {table} SET {col} = CASE WHEN json_valid({col}) AND json_type({col}) = 'array' \
             THEN COALESCE(json_extract({col}, '$[#-1]'), '') ELSE COALESCE({col}, '') END"
        )
    };
    conn.execute_batch(&sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pocketbase_index_definitions() {
        let i = parse_index(
            "CREATE UNIQUE INDEX `idx_email_x` ON `users` (`email`) WHERE `email` != ''",
        )
        .expect("parse");
        assert!(i.unique);
        assert_eq!(i.name, "idx_email_x");
        assert_eq!(i.table, "users");
        assert_eq!(i.columns, vec!["email"]);
        let i = parse_index("create index idx_a on posts (a, b DESC)").expect("parse");
        assert!(!i.unique);
        assert_eq!(i.columns, vec!["a", "b"]);
        assert!(parse_index("CREATE INDEX a ON b (c); DROP TABLE x").is_none());
        assert!(parse_index("DROP TABLE x").is_none());
    }
}
