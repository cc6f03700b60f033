//! API rules: what `@request.*` looks like to a rule or filter, and rule expressions turned into
//! SQL conditions. A `None` rule means superusers only; `""` means anyone.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

use super::{Auth, Denied};
use crate::filter::{self, FilterError, SqlParam};
use crate::store::{Collection, ReadConn, Record, Schema, StoreError, records};

/// The `@request` object rules and filters read.
pub fn request_info(
    auth: &Auth,
    method: &Method,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Option<&Record>,
) -> Value {
    let mut hs = Map::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            hs.insert(
                k.as_str().to_ascii_lowercase().replace('-', "_"),
                Value::String(v.to_string()),
            );
        }
    }
    let q: Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "auth": auth.as_json(),
        "method": method.as_str(),
        "query": q,
        "headers": hs,
        "body": body.cloned().map(Value::Object).unwrap_or_else(|| json!({})),
        "context": "default",
    })
}

/// An SQL condition for a rule, or `None` when the rule lets everyone through.
pub fn rule_condition(
    schema: &Schema,
    c: &Collection,
    rule: &str,
    request: &Value,
) -> Result<Option<(String, Vec<SqlParam>)>, FilterError> {
    if rule.trim().is_empty() {
        return Ok(None);
    }
    let q = filter::Query {
        lookup: schema,
        collection: c,
        request: Some(request),
        allow_request_refs: true,
        allow_hidden: true,
        now: chrono::Utc::now(),
    };
    let (sql, params) = filter::filter_sql(rule, &q)?;
    Ok(Some((sql, params)))
}

/// Checks that the caller may use an operation guarded by `rule`: superusers always may;
/// a `None` rule refuses everyone else with 403.
pub fn allowed<'a>(auth: &Auth, rule: &'a Option<String>) -> Result<Option<&'a str>, Denied> {
    if auth.is_superuser() {
        return Ok(None);
    }
    match rule {
        None => Err(Denied::Forbidden),
        Some(r) => Ok(Some(r.as_str())),
    }
}

/// Removes expanded records whose view rule (an expression) the caller does not satisfy.
pub fn check_expanded(
    conn: &ReadConn,
    schema: &Schema,
    request: &Value,
    auth: &Auth,
    v: &mut Value,
) -> Result<(), StoreError> {
    if auth.is_superuser() {
        return Ok(());
    }
    let Some(Value::Object(exp)) = v.get_mut("expand") else {
        return Ok(());
    };
    for (_, item) in exp.iter_mut() {
        let was_array = item.is_array();
        let mut list: Vec<Value> = match item.take() {
            Value::Array(a) => a,
            other => vec![other],
        };
        let mut kept = Vec::new();
        for mut rec in list.drain(..) {
            let cid = rec
                .get("collectionId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let id = rec
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(c) = schema.get(&cid) else { continue };
            let ok = match &c.view_rule {
                None => false,
                Some(r) if r.trim().is_empty() => true,
                Some(r) => match rule_condition(schema, c, r, request)? {
                    None => true,
                    Some((sql, params)) => records::matches(conn, c, &id, &sql, &params)?,
                },
            };
            if ok {
                check_expanded(conn, schema, request, auth, &mut rec)?;
                kept.push(rec);
            }
        }
        *item = if was_array {
            Value::Array(kept)
        } else {
            kept.pop().unwrap_or(Value::Null)
        };
    }
    exp.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    Ok(())
}
