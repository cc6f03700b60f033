//! `POST /api/batch`: record creates, updates, upserts and deletes in one transaction. Every
//! request is prepared (rules, password hashing) first, then all run in one writer job: if one
//! fails, none of them leaves a trace, and the response names the failing request.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::Input;
use super::guard::ClientIp;
use super::records::{OpKind, WriteOp, prepare_op, run_op};
use crate::access::Auth;
use crate::access::present::{self, FieldsPicker};
use crate::store::{StoreError, settings};

fn failed(index: usize, e: ApiError) -> ApiError {
    let response = json!({"status": e.status.as_u16(), "message": e.message, "data": e.data});
    ApiError::bad_request("Batch transaction failed.").with_data(json!({"requests": {
        index.to_string(): {"code": "batch_request_failed", "message": "Batch request failed.", "response": response}
    }}))
}

/// A sub-request's operation, collection, record id and query parameters.
type Route = (OpKind, String, Option<String>, HashMap<String, String>);

/// Parses a sub-request's method and url into an operation on a collection (and record id).
fn route(method: &str, url: &str) -> Option<Route> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let query: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let rest = path.strip_prefix("/api/collections/")?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let kind = match (method.to_ascii_uppercase().as_str(), parts.as_slice()) {
        ("POST", [_, "records"]) => OpKind::Create,
        ("PUT", [_, "records"]) => OpKind::Upsert,
        ("PATCH", [_, "records", _]) => OpKind::Update,
        ("DELETE", [_, "records", _]) => OpKind::Delete,
        _ => return None,
    };
    Some((
        kind,
        parts[0].to_string(),
        parts.get(2).map(|s| s.to_string()),
        query,
    ))
}

pub async fn batch(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    headers: HeaderMap,
    Input(body): Input,
) -> ApiResult<impl IntoResponse> {
    let cfg = st.store.read(|conn, _| settings::load(conn)).await?;
    let cfg = &cfg["batch"];
    if !cfg["enabled"].as_bool().unwrap_or(false) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Batch requests are not allowed.",
        ));
    }
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if requests.is_empty() {
        return Err(
            ApiError::bad_request("Failed to read the batch request.").with_data(
                json!({"requests": {"code": "validation_required", "message": "Cannot be blank."}}),
            ),
        );
    }
    let max = cfg["maxRequests"].as_u64().unwrap_or(50) as usize;
    if requests.len() > max {
        return Err(ApiError::bad_request("Failed to read the batch request.").with_data(
            json!({"requests": {"code": "validation_length_too_long", "message": format!("The batch may hold at most {max} requests.")}}),
        ));
    }
    let mut ops: Vec<(WriteOp, HashMap<String, String>)> = Vec::with_capacity(requests.len());
    let mut actions: Vec<&'static str> = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let method = r.get("method").and_then(Value::as_str).unwrap_or_default();
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        let Some((kind, coll, id, query)) = route(method, url) else {
            return Err(failed(
                i,
                ApiError::bad_request(format!("Unsupported batch request {method} {url}.")),
            ));
        };
        let input = match r.get("body") {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Default::default(),
            Some(_) => {
                return Err(failed(
                    i,
                    ApiError::bad_request("The request body must be a JSON object."),
                ));
            }
        };
        let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::POST);
        // Each sub-request counts against its collection's rate limits, as in PocketBase.
        if let Some(c) = st.store.schema().get(&coll).cloned() {
            let (route, tag) = match kind {
                OpKind::Create | OpKind::Upsert => ("records", "create"),
                OpKind::Update => ("records/{id}", "update"),
                OpKind::Delete => ("records/{id}", "delete"),
            };
            st.guard
                .check_collection(&ip, &auth, &c, (&m, route), tag)
                .map_err(|e| failed(i, e))?;
        }
        let op = prepare_op(
            &st, &ip, &auth, &m, &headers, &query, kind, &coll, id, input,
        )
        .await
        .map_err(|e| failed(i, e))?;
        actions.push(match kind {
            OpKind::Create | OpKind::Upsert => "Failed to create record.",
            OpKind::Update => "Failed to update record.",
            OpKind::Delete => "Failed to delete record.",
        });
        ops.push((op, query));
    }
    let results = st
        .store
        .write(move |ctx| {
            let mut out = Vec::with_capacity(ops.len());
            for (i, (op, query)) in ops.into_iter().enumerate() {
                let rec = run_op(ctx, &op).map_err(|e| StoreError::Batch {
                    index: i,
                    source: Box::new(e),
                })?;
                out.push((op.collection.clone(), rec, query));
            }
            Ok(out)
        })
        .await
        .map_err(|e| match e {
            StoreError::Batch { index, source } => failed(
                index,
                ApiError::from_store(
                    *source,
                    actions
                        .get(index)
                        .copied()
                        .unwrap_or("Failed to process the request."),
                ),
            ),
            other => ApiError::from(other),
        })?;
    let schema = st.store.schema();
    let out: Vec<Value> = results
        .into_iter()
        .map(|(c, rec, query)| match rec {
            None => json!({"status": 204, "body": null}),
            Some(rec) => {
                let mut v = present::record(&schema, &c, rec, &auth);
                if let Some(p) = query.get("fields").and_then(|f| FieldsPicker::parse(f)) {
                    v = p.apply(v);
                }
                json!({"status": 200, "body": v})
            }
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_requests_route_to_record_operations() {
        let (k, c, id, q) =
            route("post", "/api/collections/posts/records?fields=id").expect("route");
        assert_eq!(
            (k, c.as_str(), id, q.get("fields").map(String::as_str)),
            (OpKind::Create, "posts", None, Some("id"))
        );
        let (k, _, id, _) = route("DELETE", "/api/collections/posts/records/abc").expect("route");
        assert_eq!((k, id.as_deref()), (OpKind::Delete, Some("abc")));
        assert_eq!(
            route("PUT", "/api/collections/posts/records").map(|r| r.0),
            Some(OpKind::Upsert)
        );
        assert!(route("GET", "/api/collections/posts/records").is_none());
        assert!(route("POST", "/api/settings").is_none());
    }
}
