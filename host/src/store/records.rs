//! Record rows: reading and writing a collection's table, and the record write operations that
//! run inside writer jobs (create, update, delete with relation cascades). Every operation
//! records its committed effect on the change feed through `WriteCtx::changes`.

use std::sync::Arc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, params_from_iter};
use serde_json::Value;

use super::schema::{Collection, FieldKind, push_ident, quote_ident};
use super::values::{from_sql, param, to_sql};
use super::{Change, Op, StoreError, WriteCtx, ddl};
use crate::filter::SqlParam;
use crate::records::validate::{self, Access, FieldError, FieldErrors, Prepared};

/// A record: field name → value, in the collection's field order.
pub type Record = serde_json::Map<String, Value>;

/// One page of a list query, already translated to SQL.
#[derive(Default)]
pub struct ListQuery {
    /// Where totals may be remembered until the next commit (see `CountCache`).
    pub count_cache: Option<std::sync::Arc<super::CountCache>>,
    pub where_sql: String,
    pub params: Vec<SqlParam>,
    pub order_sql: String,
    /// Parameters of `order_sql` (bound after `params`).
    pub order_params: Vec<SqlParam>,
    pub limit: i64,
    pub offset: i64,
    pub count: bool,
}

fn select_list(c: &Collection) -> String {
    let mut out = String::with_capacity(c.fields.len() * (c.name.len() + 16));
    push_select_list(&mut out, c);
    out
}

/// `table.col, table.col, ...` for every field (one allocation per query on hot paths).
fn push_select_list(out: &mut String, c: &Collection) {
    for (i, f) in c.fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_ident(out, &c.name);
        out.push('.');
        push_ident(out, &f.name);
    }
}

fn row_to_record(row: &rusqlite::Row<'_>, c: &Collection) -> Result<Record, rusqlite::Error> {
    let mut rec = Record::new();
    for (i, f) in c.fields.iter().enumerate() {
        rec.insert(f.name.clone(), from_sql(f, row.get_ref(i)?));
    }
    Ok(rec)
}

/// Reads one record by id.
pub fn get(conn: &Connection, c: &Collection, id: &str) -> Result<Option<Record>, StoreError> {
    let sql = c.sql.by_id(|| {
        let mut sql = String::with_capacity(c.fields.len() * (c.name.len() + 16) + 64);
        sql.push_str("SELECT ");
        push_select_list(&mut sql, c);
        sql.push_str(" FROM ");
        push_ident(&mut sql, &c.name);
        sql.push_str(" WHERE `id` = ?1");
        sql
    });
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(row_to_record(row, c)?)),
        None => Ok(None),
    }
}

/// Reads records whose ids are in `ids`, in no particular order.
pub fn get_many(
    conn: &Connection,
    c: &Collection,
    ids: &[String],
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT {} FROM {} WHERE `id` IN ({marks})",
            select_list(c),
            c.table()
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(chunk.iter()), |r| row_to_record(r, c))?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Runs a list query; the total is counted only when asked.
pub fn list(
    conn: &Connection,
    c: &Collection,
    q: &ListQuery,
) -> Result<(Vec<Record>, Option<i64>), StoreError> {
    let where_sql = if q.where_sql.is_empty() {
        "1=1"
    } else {
        &q.where_sql
    };
    let order = if q.order_sql.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", q.order_sql)
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {where_sql}{order} LIMIT {} OFFSET {}",
        select_list(c),
        c.table(),
        q.limit,
        q.offset
    );
    let params: Vec<SqlValue> = q.params.iter().map(param).collect();
    let all_params = params
        .iter()
        .cloned()
        .chain(q.order_params.iter().map(param));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(all_params), |r| row_to_record(r, c))?;
    let mut items = Vec::new();
    for r in rows {
        items.push(r?);
    }
    let total = if q.count {
        let sql = format!("SELECT COUNT(*) FROM {} WHERE {where_sql}", c.table());
        let key = format!("{sql}\u{0}{:?}", q.params);
        let cached = q
            .count_cache
            .as_ref()
            .map(|cc| (cc.generation(), cc.get(&key)));
        match cached {
            Some((_, Some(n))) => Some(n),
            _ => {
                let mut stmt = conn.prepare_cached(&sql)?;
                let n = stmt.query_row(params_from_iter(params.iter()), |r| r.get::<_, i64>(0))?;
                if let (Some(cc), Some((generation, None))) = (&q.count_cache, cached) {
                    cc.put(key, generation, n);
                }
                Some(n)
            }
        }
    } else {
        None
    };
    Ok((items, total))
}

/// True when record `id` exists and satisfies the condition (a rule translated to SQL).
pub fn matches(
    conn: &Connection,
    c: &Collection,
    id: &str,
    cond: &str,
    params: &[SqlParam],
) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT 1 FROM {} WHERE {}.`id` = ? AND ({cond}) LIMIT 1",
        c.table(),
        c.table()
    );
    let mut values = vec![SqlValue::Text(id.to_string())];
    values.extend(params.iter().map(param));
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.exists(params_from_iter(values.iter()))?)
}

/// True when the record with exactly these values satisfies the condition. The values stand in
/// for the table through a CTE of the same name, so this works for records that are no longer
/// (or not yet) stored, such as a deleted record's realtime event.
pub fn matches_values(
    conn: &Connection,
    c: &Collection,
    rec: &Record,
    cond: &str,
    params: &[SqlParam],
) -> Result<bool, StoreError> {
    let cols: Vec<String> = c
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("?{} AS {}", i + 1, quote_ident(&f.name)))
        .collect();
    let n = c.fields.len();
    // Filter params are positional `?`; number them after the record's values.
    let mut renumbered = String::with_capacity(cond.len() + 16);
    let mut next = n + 1;
    let mut in_str: Option<char> = None;
    for ch in cond.chars() {
        match (in_str, ch) {
            (None, '\'' | '"' | '`') => {
                in_str = Some(ch);
                renumbered.push(ch);
            }
            (Some(q), c2) if c2 == q => {
                in_str = None;
                renumbered.push(ch);
            }
            (None, '?') => {
                renumbered.push_str(&format!("?{next}"));
                next += 1;
            }
            _ => renumbered.push(ch),
        }
    }
    let sql = format!(
        "WITH {t} AS (SELECT {cols}) SELECT 1 FROM {t} WHERE ({renumbered}) LIMIT 1",
        t = c.table(),
        cols = cols.join(", ")
    );
    let mut values: Vec<SqlValue> = c
        .fields
        .iter()
        .map(|f| to_sql(f, rec.get(&f.name).unwrap_or(&Value::Null)))
        .collect();
    values.extend(params.iter().map(param));
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.exists(params_from_iter(values.iter()))?)
}

fn insert_row(conn: &Connection, c: &Collection, rec: &Record) -> Result<(), StoreError> {
    let cols: Vec<String> = c.fields.iter().map(|f| quote_ident(&f.name)).collect();
    let marks: Vec<String> = (1..=c.fields.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        c.table(),
        cols.join(", "),
        marks.join(", ")
    );
    let values: Vec<SqlValue> = c
        .fields
        .iter()
        .map(|f| to_sql(f, rec.get(&f.name).unwrap_or(&Value::Null)))
        .collect();
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.execute(params_from_iter(values.iter()))
        .map_err(|e| unique_error(e, c))?;
    Ok(())
}

fn update_row(conn: &Connection, c: &Collection, id: &str, rec: &Record) -> Result<(), StoreError> {
    let sets: Vec<String> = c
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} = ?{}", quote_ident(&f.name), i + 1))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE `id` = ?{}",
        c.table(),
        sets.join(", "),
        c.fields.len() + 1
    );
    let mut values: Vec<SqlValue> = c
        .fields
        .iter()
        .map(|f| to_sql(f, rec.get(&f.name).unwrap_or(&Value::Null)))
        .collect();
    values.push(SqlValue::Text(id.to_string()));
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.execute(params_from_iter(values.iter()))
        .map_err(|e| unique_error(e, c))?;
    Ok(())
}

/// Maps a unique-constraint failure to PocketBase's `validation_not_unique` on the field(s).
fn unique_error(e: rusqlite::Error, c: &Collection) -> StoreError {
    let rusqlite::Error::SqliteFailure(code, Some(msg)) = &e else {
        return StoreError::Sql(e);
    };
    if code.code != ErrorCode::ConstraintViolation || !msg.contains("UNIQUE") {
        return StoreError::Sql(e);
    }
    let mut fields: Vec<String> = Vec::new();
    if let Some(rest) = msg.split("failed: ").nth(1) {
        if let Some(index) = rest
            .strip_prefix("index '")
            .and_then(|r| r.strip_suffix('\''))
        {
            for sql in &c.indexes {
                if let Some(info) = ddl::parse_index(sql).filter(|i| i.name == index) {
                    fields = info.columns;
                }
            }
        } else {
            fields = rest
                .split(", ")
                .filter_map(|p| p.rsplit('.').next())
                .map(String::from)
                .collect();
        }
    }
    if fields.is_empty() {
        fields.push("id".into());
    }
    let mut errs = FieldErrors::new();
    for f in fields {
        errs.insert(
            f,
            FieldError {
                code: "validation_not_unique".into(),
                message: "Value must be unique.".into(),
                params: None,
            },
        );
    }
    StoreError::Validation(errs)
}

/// The relation fields whose ids do not all exist in their target collection, with
/// PocketBase's error.
fn missing_relations(
    ctx: &WriteCtx,
    relations: &validate::Relations,
) -> Result<FieldErrors, StoreError> {
    let mut errs = FieldErrors::new();
    for (field, target, ids) in relations {
        if ids.is_empty() {
            continue;
        }
        let Some(tc) = ctx.schema.get(target) else {
            errs.insert(field.clone(), missing_rel());
            continue;
        };
        let found = get_many(ctx.conn, tc, ids)?;
        if found.len() != ids.len() {
            errs.insert(field.clone(), missing_rel());
        }
    }
    Ok(errs)
}

/// Checks that every related id exists in its target collection.
fn check_relations(ctx: &WriteCtx, prepared: &Prepared) -> Result<(), StoreError> {
    let errs = missing_relations(ctx, &prepared.relations)?;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Validation(errs))
    }
}

/// A refused record's errors, with its missing relations beside them.
fn rejected(ctx: &WriteCtx, r: validate::Rejected) -> StoreError {
    let mut errors = r.errors;
    match missing_relations(ctx, &r.relations) {
        Ok(missing) => errors.extend(missing),
        Err(e) => return e,
    }
    StoreError::Validation(errors)
}

fn missing_rel() -> FieldError {
    FieldError {
        code: "validation_missing_rel_records".into(),
        message: "Failed to find all relation records with the provided ids.".into(),
        params: None,
    }
}

/// The collection a record write targets; never a view (its rows are computed).
fn collection(ctx: &WriteCtx, id_or_name: &str) -> Result<Arc<Collection>, StoreError> {
    let c = ctx
        .schema
        .get(id_or_name)
        .cloned()
        .ok_or(StoreError::NotFound)?;
    if c.is_view() {
        return Err(StoreError::BadRequest(
            "Unsupported collection type.".into(),
        ));
    }
    Ok(c)
}

/// Creates a record from client input. `password_hash` is the already-hashed new password
/// (hashing is slow and happens off the writer thread).
pub fn create(
    ctx: &mut WriteCtx,
    coll: &str,
    input: &Record,
    password_hash: Option<String>,
    access: Access,
) -> Result<Record, StoreError> {
    let c = collection(ctx, coll)?;
    let now = validate::now_string();
    let prepared =
        validate::prepare_create_checked(&c, input, &now, access).map_err(|r| rejected(ctx, r))?;
    check_relations(ctx, &prepared)?;
    let mut rec = prepared.record;
    if let (Some(_), Some(hash)) = (&prepared.password, password_hash) {
        rec.insert("password".into(), Value::String(hash));
    }
    insert_row(ctx.conn, &c, &rec)?;
    let first_superuser = c.name == "_superusers"
        && rec.get("email").and_then(Value::as_str) != Some(super::installer::INSTALLER_EMAIL);
    ctx.changes.push(Change {
        op: Op::Create,
        collection: c,
        record: rec.clone(),
        before: None,
    });
    if first_superuser {
        // A real superuser retires the first-run placeholder and with it the install link.
        super::installer::remove(ctx)?;
    }
    Ok(rec)
}

/// Updates a record from client input, reading its current value in the same transaction so
/// modifiers like `n+` apply atomically. A `Regular` caller's `oldPassword` must have been
/// verified by the caller before (hashing is too slow for the writer thread).
pub fn update(
    ctx: &mut WriteCtx,
    coll: &str,
    id: &str,
    input: &Record,
    password_hash: Option<String>,
    access: Access,
) -> Result<Record, StoreError> {
    let c = collection(ctx, coll)?;
    let current = get(ctx.conn, &c, id)?.ok_or(StoreError::NotFound)?;
    let now = validate::now_string();
    let prepared = validate::prepare_update_checked(&c, &current, input, &now, access)
        .map_err(|r| rejected(ctx, r))?;
    check_relations(ctx, &prepared)?;
    let mut rec = prepared.record;
    // A new password also gets a new tokenKey from validation, revoking older tokens.
    if let (Some(_), Some(hash)) = (&prepared.password, password_hash) {
        rec.insert("password".into(), Value::String(hash));
    }
    let verified = |r: &Record| r.get("verified") == Some(&Value::Bool(true));
    if c.is_auth() && !verified(&current) && verified(&rec) {
        // As PocketBase: proving the address ends every OAuth2 link made before (someone may
        // have pre-created the account and linked their own provider), and with any link
        // gone, the sessions that came with it.
        if super::auth_rows::delete_for(ctx, super::system::EXTERNAL_AUTHS, &c.id, id)? > 0 {
            rec.insert(
                "tokenKey".into(),
                Value::String(super::schema::random_string(50, super::schema::ALNUM)),
            );
        }
    }
    update_row(ctx.conn, &c, id, &rec)?;
    ctx.changes.push(Change {
        op: Op::Update,
        collection: c,
        record: rec.clone(),
        before: Some(current),
    });
    Ok(rec)
}

/// Writes a record exactly as given (no validation, nothing regenerated): used for system
/// writes such as superuser upserts.
pub fn put_raw(ctx: &mut WriteCtx, coll: &str, rec: &Record) -> Result<(), StoreError> {
    let c = collection(ctx, coll)?;
    let id = rec
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let before = get(ctx.conn, &c, &id)?;
    let op = if before.is_some() {
        update_row(ctx.conn, &c, &id, rec)?;
        Op::Update
    } else {
        insert_row(ctx.conn, &c, rec)?;
        Op::Create
    };
    ctx.changes.push(Change {
        op,
        collection: c,
        record: rec.clone(),
        before,
    });
    Ok(())
}

/// Makes the stored row of `id` equal `rec` (`None`: no row), exactly as given: nothing is
/// validated or regenerated and nothing goes on the change feed. Replication's fold writes
/// canonical rows with this.
pub(crate) fn write_raw(
    conn: &Connection,
    c: &Collection,
    id: &str,
    rec: Option<&Record>,
) -> Result<(), StoreError> {
    match rec {
        None => {
            conn.prepare_cached(&format!("DELETE FROM {} WHERE `id` = ?1", c.table()))?
                .execute([id])?;
        }
        Some(rec) => {
            // One statement: an insert that becomes an update on the same id (any other unique
            // index still refuses the row).
            let sql = c.sql.upsert(|| {
                use std::fmt::Write as _;
                let mut sql = String::with_capacity(64 + c.fields.len() * 48);
                sql.push_str("INSERT INTO ");
                push_ident(&mut sql, &c.name);
                sql.push_str(" (");
                for (i, f) in c.fields.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    push_ident(&mut sql, &f.name);
                }
                sql.push_str(") VALUES (");
                for i in 1..=c.fields.len() {
                    if i > 1 {
                        sql.push_str(", ");
                    }
                    let _ = write!(sql, "?{i}");
                }
                sql.push_str(") ON CONFLICT(`id`) DO UPDATE SET ");
                let mut first = true;
                for f in c.fields.iter().filter(|f| f.name != "id") {
                    if !first {
                        sql.push_str(", ");
                    }
                    first = false;
                    push_ident(&mut sql, &f.name);
                    sql.push_str(" = excluded.");
                    push_ident(&mut sql, &f.name);
                }
                sql
            });
            let values: Vec<SqlValue> = c
                .fields
                .iter()
                .map(|f| to_sql(f, rec.get(&f.name).unwrap_or(&Value::Null)))
                .collect();
            conn.prepare_cached(sql)?
                .execute(params_from_iter(values.iter()))
                .map_err(|e| unique_error(e, c))?;
        }
    }
    Ok(())
}

/// Deletes every record of a collection through [`delete`], so relation cascades apply and,
/// on a replicating node, each deletion is an ordinary delete event: the truncate converges
/// like any deletes (a record another node creates concurrently survives it, as it would a
/// truncate that ran a moment earlier). Returns how many records it deleted itself.
pub fn truncate(ctx: &mut WriteCtx, coll: &str) -> Result<usize, StoreError> {
    let c = collection(ctx, coll)?;
    let page = format!("SELECT `id` FROM {} LIMIT 500", c.table());
    let mut deleted = 0;
    loop {
        let ids: Vec<String> = {
            let mut stmt = ctx.conn.prepare_cached(&page)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if ids.is_empty() {
            return Ok(deleted);
        }
        for id in ids {
            // A cascade from an earlier record of this batch may have taken it already.
            if get(ctx.conn, &c, &id)?.is_some() {
                delete_inner(ctx, &c, &id, 0)?;
                deleted += 1;
            }
        }
    }
}

/// Deletes a record, then applies its relations' policies: cascade deletes, or removal of the
/// id from referencing records (refused when that would empty a required relation).
pub fn delete(ctx: &mut WriteCtx, coll: &str, id: &str) -> Result<Record, StoreError> {
    let c = collection(ctx, coll)?;
    delete_inner(ctx, &c, id, 0)
}

pub(super) fn delete_inner(
    ctx: &mut WriteCtx,
    c: &Arc<Collection>,
    id: &str,
    depth: usize,
) -> Result<Record, StoreError> {
    if depth > 32 {
        return Err(StoreError::BadRequest(
            "Relation cascade is too deep.".into(),
        ));
    }
    let rec = get(ctx.conn, c, id)?.ok_or(StoreError::NotFound)?;
    // A node without superusers could not be administered any more (a truncate of
    // `_superusers` fails on its last record, and rolls back, as in PocketBase).
    if c.name == super::sync::LOCAL_ONLY {
        let left: i64 =
            ctx.conn
                .query_row(&format!("SELECT count(*) FROM {}", c.table()), [], |r| {
                    r.get(0)
                })?;
        if left <= 1 {
            return Err(StoreError::BadRequest(
                "You can't delete the only existing superuser.".into(),
            ));
        }
    }
    ctx.conn
        .execute(&format!("DELETE FROM {} WHERE `id` = ?1", c.table()), [id])?;
    ctx.changes.push(Change {
        op: Op::Delete,
        collection: c.clone(),
        record: rec.clone(),
        before: Some(rec.clone()),
    });
    if c.is_auth() {
        // An auth record takes its OAuth2 links, OTPs and MFA sessions with it.
        for sys in [
            super::system::EXTERNAL_AUTHS,
            super::system::OTPS,
            super::system::MFAS,
        ] {
            super::auth_rows::delete_for(ctx, sys, &c.id, id)?;
        }
    }
    // A view's relation columns are computed from other tables: nothing to cascade there.
    for (rc, fields) in ctx
        .schema
        .referencing(&c.id)
        .into_iter()
        .filter(|(rc, _)| !rc.is_view())
    {
        for f in fields {
            let FieldKind::Relation(opts) = &f.kind else {
                continue;
            };
            let col = quote_ident(&f.name);
            let cond = if f.is_multiple() {
                format!(
                    "EXISTS (SELECT 1 FROM json_each({}.{col}) WHERE value = ?1)",
                    rc.table()
                )
            } else {
                format!("{}.{col} = ?1", rc.table())
            };
            let sql = format!(
                "SELECT {} FROM {} WHERE {cond}",
                select_list(&rc),
                rc.table()
            );
            let rows: Vec<Record> = {
                let mut stmt = ctx.conn.prepare_cached(&sql)?;
                let it = stmt.query_map([id], |r| row_to_record(r, &rc))?;
                it.collect::<Result<_, _>>()?
            };
            for mut row in rows {
                let before = row.clone();
                let row_id = row
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if opts.cascade_delete {
                    if get(ctx.conn, &rc, &row_id)?.is_some() {
                        delete_inner(ctx, &rc, &row_id, depth + 1)?;
                    }
                    continue;
                }
                let emptied = match row.get_mut(&f.name) {
                    Some(Value::Array(ids)) => {
                        ids.retain(|v| v.as_str() != Some(id));
                        ids.is_empty()
                    }
                    Some(v) => {
                        *v = Value::String(String::new());
                        true
                    }
                    None => true,
                };
                if emptied && f.required {
                    return Err(StoreError::BadRequest(
                        "The record cannot be deleted because it is part of a required reference in another record."
                            .into(),
                    ));
                }
                update_row(ctx.conn, &rc, &row_id, &row)?;
                ctx.changes.push(Change {
                    op: Op::Update,
                    collection: rc.clone(),
                    record: row,
                    before: Some(before),
                });
            }
        }
    }
    Ok(rec)
}
