//! Relation expansion (`?expand=author,comments_via_post.author`): loads related records in
//! one query per relation and level, and attaches them under each record's `expand` key.

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;
use serde_json::Value;

use super::StoreError;
use super::records::{self, Record};
use super::schema::{Collection, FieldKind, quote_ident};
use super::system::Schema;

/// Most levels of nesting followed, as PocketBase.
pub const MAX_DEPTH: usize = 6;

/// Decides whether a related record may be shown (the caller's view-rule check).
pub type Visible<'a> = &'a dyn Fn(&Collection, &Record) -> bool;

/// Parses an expand parameter into a tree of relation names.
pub fn parse(expand: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut tree: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for path in expand.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = path.splitn(2, '.');
        let head = parts.next().unwrap_or_default().to_string();
        let entry = tree.entry(head).or_default();
        if let Some(rest) = parts.next() {
            entry.insert(rest.to_string(), Value::Null);
        }
    }
    tree
}

/// Expands `paths` (comma-separated) on `recs` of collection `c`.
pub fn expand(
    conn: &Connection,
    schema: &Schema,
    c: &Collection,
    recs: &mut [Record],
    paths: &str,
    visible: Visible<'_>,
) -> Result<(), StoreError> {
    expand_level(conn, schema, c, recs, paths, visible, 0)
}

fn expand_level(
    conn: &Connection,
    schema: &Schema,
    c: &Collection,
    recs: &mut [Record],
    paths: &str,
    visible: Visible<'_>,
    depth: usize,
) -> Result<(), StoreError> {
    if depth >= MAX_DEPTH || recs.is_empty() {
        return Ok(());
    }
    for (key, children) in parse(paths) {
        let rest: Vec<&str> = children.keys().map(String::as_str).collect();
        let rest = rest.join(",");
        if let Some(field) = c.field(&key) {
            let FieldKind::Relation(opts) = &field.kind else {
                continue;
            };
            let Some(target) = schema.get(&opts.collection_id) else {
                continue;
            };
            let multiple = field.is_multiple();
            let mut ids: Vec<String> = Vec::new();
            for r in recs.iter() {
                match r.get(&key) {
                    Some(Value::String(s)) if !s.is_empty() => ids.push(s.clone()),
                    Some(Value::Array(a)) => {
                        ids.extend(a.iter().filter_map(|v| v.as_str().map(String::from)))
                    }
                    _ => {}
                }
            }
            ids.sort();
            ids.dedup();
            let mut related = records::get_many(conn, target, &ids)?;
            related.retain(|r| visible(target, r));
            tag(&mut related, target);
            if !rest.is_empty() {
                expand_level(
                    conn,
                    schema,
                    target,
                    &mut related,
                    &rest,
                    visible,
                    depth + 1,
                )?;
            }
            let by_id: HashMap<String, Record> = related
                .into_iter()
                .map(|r| {
                    (
                        r.get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        r,
                    )
                })
                .collect();
            for r in recs.iter_mut() {
                let value = match r.get(&key) {
                    Some(Value::String(s)) => by_id.get(s).cloned().map(Value::Object),
                    Some(Value::Array(a)) => {
                        let items: Vec<Value> = a
                            .iter()
                            .filter_map(|v| {
                                v.as_str()
                                    .and_then(|s| by_id.get(s))
                                    .cloned()
                                    .map(Value::Object)
                            })
                            .collect();
                        (!items.is_empty()).then_some(Value::Array(items))
                    }
                    _ => None,
                };
                let value = match (value, multiple) {
                    (Some(Value::Object(o)), true) => Some(Value::Array(vec![Value::Object(o)])),
                    (v, _) => v,
                };
                if let Some(v) = value {
                    attach(r, &key, v);
                }
            }
        } else if let Some((coll_name, field_name)) = key.split_once("_via_") {
            expand_back(
                conn, schema, c, recs, &key, coll_name, field_name, &rest, visible, depth,
            )?;
        }
    }
    Ok(())
}

/// Back-relation expansion: records of `coll_name` whose relation `field_name` points here.
#[allow(clippy::too_many_arguments)]
fn expand_back(
    conn: &Connection,
    schema: &Schema,
    c: &Collection,
    recs: &mut [Record],
    key: &str,
    coll_name: &str,
    field_name: &str,
    rest: &str,
    visible: Visible<'_>,
    depth: usize,
) -> Result<(), StoreError> {
    let Some(src) = schema.get(coll_name) else {
        return Ok(());
    };
    let Some(field) = src.field(field_name) else {
        return Ok(());
    };
    let FieldKind::Relation(opts) = &field.kind else {
        return Ok(());
    };
    if opts.collection_id != c.id {
        return Ok(());
    }
    let col = quote_ident(&field.name);
    for r in recs.iter_mut() {
        let id = r
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let cond = if field.is_multiple() {
            format!(
                "EXISTS (SELECT 1 FROM json_each({}.{col}) WHERE value = ?)",
                src.table()
            )
        } else {
            format!("{}.{col} = ?", src.table())
        };
        let q = records::ListQuery {
            count_cache: None,
            where_sql: cond,
            params: vec![crate::filter::SqlParam::Text(id)],
            order_sql: String::new(),
            order_params: Vec::new(),
            limit: 1000,
            offset: 0,
            count: false,
        };
        let (mut items, _) = records::list(conn, src, &q)?;
        items.retain(|x| visible(src, x));
        tag(&mut items, src);
        if !rest.is_empty() {
            expand_level(conn, schema, src, &mut items, rest, visible, depth + 1)?;
        }
        if !items.is_empty() {
            attach(
                r,
                key,
                Value::Array(items.into_iter().map(Value::Object).collect()),
            );
        }
    }
    Ok(())
}

/// Marks expanded records with their collection, so presenters can apply its field visibility.
fn tag(recs: &mut [Record], c: &Collection) {
    for r in recs {
        r.insert("collectionId".into(), Value::String(c.id.clone()));
        r.insert("collectionName".into(), Value::String(c.name.clone()));
    }
}

fn attach(r: &mut Record, key: &str, v: Value) {
    let entry = r
        .entry("expand")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(m) = entry {
        m.insert(key.to_string(), v);
    }
}
