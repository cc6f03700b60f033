//! Relation expansion (`?expand=author,comments_via_post.author`), as PocketBase's
//! `ExpandRecords` does it: each path on its own, all or nothing, attached under each record's
//! `expand` key.
//!
//! The shape a client sees follows from that algorithm: a path that cannot be resolved (an
//! unknown or non-relation field, a collection the caller may not view) expands nothing and
//! adds no `expand` key; a path that resolves gives every record of that level an `expand`
//! object, empty when it has no related record (`expand: {}` on middle records too); paths
//! sharing a prefix (`b.a,b.c`) merge their expansions. Who may see what is the caller's
//! business: `fetch` loads the related records (and refuses a collection outright).

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::{Map, Value};

use super::StoreError;
use super::records::{self, Record};
use super::schema::{Collection, FieldKind};
use super::system::Schema;

/// Most levels of nesting followed, as PocketBase.
pub const MAX_DEPTH: usize = 6;

/// Most back-related records expanded per record, as PocketBase.
const MAX_BACK_RELATED: i64 = 1000;

/// Why an expand path expanded nothing.
#[derive(Debug)]
pub enum ExpandError {
    /// The path names no relation the caller may expand: the path is skipped.
    Skip(String),
    /// The database failed: the request fails.
    Store(StoreError),
}

impl From<StoreError> for ExpandError {
    fn from(e: StoreError) -> Self {
        ExpandError::Store(e)
    }
}

/// Loads the records of a collection with these ids that the caller may see (any order).
/// `Err(Skip)` when the caller may not expand that collection at all.
pub type Fetch<'a> = &'a dyn Fn(&Collection, &[String]) -> Result<Vec<Record>, ExpandError>;

/// The paths of an `expand` parameter as PocketBase normalizes them: spaces removed, dots
/// trimmed, empty ones dropped, a path dropped when a longer one continues it (`a` beside
/// `a.b`), duplicates dropped.
pub fn normalize(expand: &str) -> Vec<String> {
    let paths: Vec<String> = expand
        .split(',')
        .map(|p| p.replace(' ', "").trim_matches('.').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let longer = paths
            .iter()
            .enumerate()
            .any(|(j, q)| i != j && q.starts_with(&format!("{p}.")));
        if !longer && !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// Expands `paths` (comma-separated) on `recs` of collection `c`. Paths that cannot be
/// expanded are skipped; only a database failure is an error.
pub fn expand(
    conn: &Connection,
    schema: &Schema,
    c: &Collection,
    recs: &mut [Record],
    paths: &str,
    fetch: Fetch<'_>,
) -> Result<(), StoreError> {
    for path in normalize(paths) {
        match expand_path(conn, schema, c, recs, &path, fetch, 1) {
            Ok(()) | Err(ExpandError::Skip(_)) => {}
            Err(ExpandError::Store(e)) => return Err(e),
        }
    }
    Ok(())
}

/// The relation a path segment names from collection `c`.
struct Relation<'s> {
    target: &'s Collection,
    multiple: bool,
    /// For a back-relation: the field of `target` that points at `c`.
    back_field: Option<(String, bool)>,
}

fn resolve<'s>(
    schema: &'s Schema,
    c: &Collection,
    name: &str,
) -> Result<Relation<'s>, ExpandError> {
    if let Some((coll_name, field_name)) = via(name) {
        let skip = || ExpandError::Skip(format!("no back-relation {name:?}"));
        let target = schema.get(coll_name).ok_or_else(skip)?;
        let field = target.field(field_name).ok_or_else(skip)?;
        let FieldKind::Relation(opts) = &field.kind else {
            return Err(skip());
        };
        if opts.collection_id != c.id {
            return Err(skip());
        }
        // A single relation with a unique index points here at most once: one record.
        let multiple = field.is_multiple() || !has_unique_index(target, &field.name);
        return Ok(Relation {
            target,
            multiple,
            back_field: Some((field.name.clone(), field.is_multiple())),
        });
    }
    let skip = || ExpandError::Skip(format!("no relation field {name:?} in {:?}", c.name));
    let field = c.field(name).ok_or_else(skip)?;
    let FieldKind::Relation(opts) = &field.kind else {
        return Err(skip());
    };
    let target = schema.get(&opts.collection_id).ok_or_else(skip)?;
    Ok(Relation {
        target,
        multiple: field.is_multiple(),
        back_field: None,
    })
}

/// `COLL_via_FIELD` (both `\w+`), PocketBase's back-relation syntax.
fn via(name: &str) -> Option<(&str, &str)> {
    let (coll, field) = name.split_once("_via_")?;
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (word(coll) && word(field)).then_some((coll, field))
}

/// The ids a record's relation value holds, in order.
fn ids_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

fn id_of(r: &Record) -> &str {
    r.get("id").and_then(Value::as_str).unwrap_or_default()
}

fn expand_path(
    conn: &Connection,
    schema: &Schema,
    c: &Collection,
    recs: &mut [Record],
    path: &str,
    fetch: Fetch<'_>,
    level: usize,
) -> Result<(), ExpandError> {
    if path.is_empty() || level > MAX_DEPTH || recs.is_empty() {
        return Ok(());
    }
    let (name, rest) = match path.split_once('.') {
        Some((n, r)) => (n, Some(r)),
        None => (path, None),
    };
    let rel = resolve(schema, c, name)?;
    // Each record's related ids, in the order they are listed.
    let per_record: Vec<Vec<String>> = match &rel.back_field {
        None => recs.iter().map(|r| ids_of(r.get(name))).collect(),
        Some((field, field_multiple)) => {
            let mut out = Vec::with_capacity(recs.len());
            for r in recs.iter() {
                out.push(back_ids(
                    conn,
                    rel.target,
                    field,
                    *field_multiple,
                    id_of(r),
                )?);
            }
            out
        }
    };
    let mut unique: Vec<String> = Vec::new();
    for id in per_record.iter().flatten() {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let mut related = fetch(rel.target, &unique)?;
    for r in related.iter_mut() {
        r.insert("collectionId".into(), Value::String(rel.target.id.clone()));
        r.insert(
            "collectionName".into(),
            Value::String(rel.target.name.clone()),
        );
    }
    if let Some(rest) = rest {
        expand_path(
            conn,
            schema,
            rel.target,
            &mut related,
            rest,
            fetch,
            level + 1,
        )?;
    }
    let by_id: HashMap<String, Record> = related
        .into_iter()
        .map(|r| (id_of(&r).to_string(), r))
        .collect();
    for (r, ids) in recs.iter_mut().zip(per_record) {
        let expand = r
            .entry("expand")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(expand) = expand else {
            continue;
        };
        let found: Vec<Value> = ids
            .iter()
            .filter_map(|id| by_id.get(id).cloned().map(Value::Object))
            .collect();
        let Some(first) = found.first().cloned() else {
            continue;
        };
        let mut value = if rel.multiple {
            Value::Array(found)
        } else {
            first
        };
        if let Some(old) = expand.get(name) {
            merge_expanded(&mut value, old);
        }
        expand.insert(name.to_string(), value);
    }
    Ok(())
}

/// Ids of the records of `back` whose relation `field` points at `id`.
fn back_ids(
    conn: &Connection,
    back: &Collection,
    field: &str,
    multiple: bool,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let col = super::schema::quote_ident(field);
    let cond = if multiple {
        format!(
            "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({t}.{col}) THEN {t}.{col} \
             ELSE json_array({t}.{col}) END) je WHERE je.value = ?)",
            t = back.table()
        )
    } else {
        format!("{}.{col} = ?", back.table())
    };
    let q = records::ListQuery {
        count_cache: None,
        where_sql: cond,
        params: vec![crate::filter::SqlParam::Text(id.to_string())],
        order_sql: String::new(),
        order_params: Vec::new(),
        limit: MAX_BACK_RELATED,
        offset: 0,
        count: false,
    };
    let (items, _) = records::list(conn, back, &q)?;
    Ok(items.iter().map(|r| id_of(r).to_string()).collect())
}

/// Keeps what an earlier path expanded on the same related records (`b.a` then `b.c`).
fn merge_expanded(new: &mut Value, old: &Value) {
    match (new, old) {
        (Value::Array(items), Value::Array(olds)) => {
            for item in items.iter_mut() {
                let id = item.get("id").cloned();
                if let Some(o) = olds.iter().find(|o| o.get("id") == id.as_ref()) {
                    merge_expanded(item, o);
                }
            }
        }
        (Value::Object(n), Value::Object(o)) if n.get("id") == o.get("id") => {
            let Some(Value::Object(old_expand)) = o.get("expand") else {
                return;
            };
            let entry = n
                .entry("expand")
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(new_expand) = entry else {
                return;
            };
            for (k, ov) in old_expand {
                match new_expand.get_mut(k) {
                    Some(nv) => merge_expanded(nv, ov),
                    None => {
                        new_expand.insert(k.clone(), ov.clone());
                    }
                }
            }
        }
        _ => {}
    }
}

/// True when the collection has a unique index on exactly this one column.
fn has_unique_index(coll: &Collection, column: &str) -> bool {
    coll.indexes.iter().any(|idx| {
        super::ddl::parse_index(idx)
            .is_some_and(|i| i.unique && i.columns.len() == 1 && i.columns[0] == column)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_as_pocketbase() {
        assert_eq!(
            normalize("a.b.c, a.b ,  test  ,  ,test"),
            vec!["a.b.c", "test"]
        );
        assert_eq!(normalize(" b ,,bs"), vec!["b", "bs"]);
        assert_eq!(normalize(".b.a."), vec!["b.a"]);
        assert_eq!(normalize("b..a"), vec!["b..a"]);
        assert!(normalize(",").is_empty());
    }
}
