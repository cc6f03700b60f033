//! API rules: what `@request.*` looks like to a rule or filter, and rule expressions turned into
//! SQL conditions. A `None` rule means superusers only; `""` means anyone.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

use super::{Auth, Denied};
use crate::filter::{self, FilterError, SqlParam};
use crate::store::{Collection, Record, Schema};

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
    if filter::is_blank(rule) {
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
