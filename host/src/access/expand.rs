//! Which related records a caller sees in `expand`: PocketBase's `expandFetch`. Superusers see
//! everything; for others a collection whose viewRule is `None` cannot be expanded at all (the
//! path expands nothing), and an expression viewRule keeps only the records it matches, with
//! `@request.context` = `"expand"`. Shared by the records API and realtime deliveries.

use serde_json::{Value, json};

use super::Auth;
use super::rules::rule_condition;
use crate::store::expand::{self, ExpandError};
use crate::store::records::{self, Record};
use crate::store::{Collection, ReadConn, Schema, StoreError};

/// Expands `paths` on `recs` (of collection `c`) as `auth` may see them; `request` is the
/// caller's `@request` object.
pub fn expand_visible(
    conn: &ReadConn,
    schema: &Schema,
    c: &Collection,
    recs: &mut [Record],
    paths: &str,
    auth: &Auth,
    request: &Value,
) -> Result<(), StoreError> {
    let mut request = request.clone();
    request["context"] = json!("expand");
    let fetch = |rc: &Collection, ids: &[String]| -> Result<Vec<Record>, ExpandError> {
        let found = records::get_many(conn, rc, ids)?;
        if auth.is_superuser() {
            return Ok(found);
        }
        let Some(rule) = &rc.view_rule else {
            return Err(ExpandError::Skip(format!(
                "only superusers can view collection {:?} records",
                rc.name
            )));
        };
        let cond = rule_condition(schema, rc, rule, &request)
            .map_err(|e| ExpandError::Skip(format!("viewRule of {:?}: {e}", rc.name)))?;
        let Some((sql, params)) = cond else {
            return Ok(found);
        };
        let mut kept = Vec::with_capacity(found.len());
        for r in found {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
            if records::matches(conn, rc, id, &sql, &params)? {
                kept.push(r);
            }
        }
        Ok(kept)
    };
    expand::expand(conn, schema, c, recs, paths, &fetch)
}
