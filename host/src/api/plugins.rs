//! The plugin admin API (superusers only): upload, list, show, delete, bind, unbind, roll back,
//! the dry-run resolver, and the outbound stage's recent events.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::Auth;
use crate::plugins::{
    ErrorKind, PluginError, Resolution, Target, change_from_json, decided_by_json,
    default_resolution, resolution_json, version_from_json,
};

#[path = "plugins_cluster.rs"]
mod cluster;

/// How long a bind waits for every node to have the plugin compiled: `"wait"` seconds in the
/// body (default `--plugin-ready-timeout`), or `"force": true` to publish without waiting.
fn ready_wait(body: &Value) -> ApiResult<Option<cluster::Ready>> {
    if body.get("force").and_then(Value::as_bool) == Some(true) {
        return Ok(Some(cluster::Ready::Force));
    }
    match body.get("wait") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(|s| Some(cluster::Ready::Wait(std::time::Duration::from_secs_f64(s))))
            .ok_or_else(|| ApiError::bad_request("`wait` must be a number of seconds.")),
    }
}

pub(super) fn plugin_error(e: PluginError) -> ApiError {
    let status = match e.kind() {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => {
            tracing::error!(error = %e, "plugin operation failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    ApiError::new(status, e.to_string())
}

/// `POST /api/plugins`: a component as multipart (`name` + `file`) or as the raw body with
/// `?name=`. Validated and compiled before anything is stored.
pub async fn upload(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (mut name, bytes) = if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &st)
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid multipart body: {e}.")))?;
        let (mut name, mut bytes) = (None, None);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid multipart body: {e}.")))?
        {
            match field.name().unwrap_or_default() {
                "name" => {
                    name = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| ApiError::bad_request(e.to_string()))?,
                    )
                }
                "file" => {
                    bytes = Some(
                        field
                            .bytes()
                            .await
                            .map_err(|e| ApiError::bad_request(e.to_string()))?,
                    )
                }
                _ => {}
            }
        }
        (
            name,
            bytes
                .ok_or_else(|| ApiError::bad_request("The multipart body needs a `file` field."))?,
        )
    } else {
        let bytes = Bytes::from_request(req, &st)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        (None, bytes)
    };
    if name.is_none() {
        name = q.get("name").cloned();
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("A plugin `name` is required."))?;
    if let Some(sync) = st.sync.clone() {
        return cluster::upload(&st, &sync, name, bytes).await.map(Json);
    }
    let pushed = st
        .plugins
        .blocking(move |rt| rt.push(&name, &bytes))
        .await
        .map_err(plugin_error)?;
    let mut out = serde_json::to_value(pushed.version).unwrap_or_default();
    out["unchanged"] = json!(pushed.unchanged);
    Ok(Json(out))
}

pub async fn list(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let mut items = serde_json::to_value(st.plugins.runtime.list()).unwrap_or_default();
    name_collections(&st, &mut items);
    if let Some(sync) = &st.sync {
        cluster::add_nodes(sync, &mut items);
    }
    Ok(Json(json!({"items": items})))
}

pub async fn show(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let versions = st.plugins.runtime.show(&name).map_err(plugin_error)?;
    let mut versions = serde_json::to_value(versions).unwrap_or_default();
    name_collections(&st, &mut versions);
    Ok(Json(json!({"name": name, "versions": versions})))
}

/// Bindings name collections by id (which a rename keeps); answers also give each target's
/// current collection name, as `collectionName`, wherever a target appears in `v`.
pub(super) fn name_collections(st: &AppState, v: &mut Value) {
    let schema = st.store.schema();
    fn walk(v: &mut Value, schema: &crate::store::Schema) {
        match v {
            Value::Object(map) => {
                if map.contains_key("role")
                    && let Some(id) = map.get("collection").and_then(Value::as_str)
                    && let Some(c) = schema.get(id)
                {
                    let name = c.name.clone();
                    map.insert("collectionName".into(), Value::String(name));
                }
                for child in map.values_mut() {
                    walk(child, schema);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, schema)),
            _ => {}
        }
    }
    walk(v, &schema);
}

pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let version = match q.get("version") {
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| ApiError::bad_request("`version` must be a number."))?,
        ),
        None => None,
    };
    if let Some(sync) = st.sync.clone() {
        cluster::delete(&st, &sync, &name, version).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    st.plugins
        .blocking(move |rt| rt.delete(&name, version))
        .await
        .map_err(plugin_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn bindings(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let table = st.plugins.runtime.bindings().to_json();
    let mut v = serde_json::from_str(&table).unwrap_or_default();
    name_collections(&st, &mut v);
    Ok(Json(v))
}

/// The binding target named by `{"as": role, "collection": name or id}`; the collection must
/// exist, and the target names it by id (so a rename keeps the binding).
fn target(st: &AppState, body: &Value) -> ApiResult<Target> {
    let role = body.get("as").and_then(Value::as_str).unwrap_or_default();
    let coll = body.get("collection").and_then(Value::as_str);
    let target = Target::parse(role, coll).map_err(plugin_error)?;
    if let Some(c) = target.collection() {
        if c.is_empty() {
            return Err(ApiError::bad_request(format!(
                "A {} is bound to a collection: give `collection`.",
                target.role()
            )));
        }
        let schema = st.store.schema();
        let found = schema.get(c).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("Unknown collection {c:?}."))
        })?;
        return Ok(target.with_collection(&found.id));
    }
    Ok(target)
}

/// A target as answers show it: the role, the collection's id and its current name.
fn target_json(st: &AppState, target: &Target) -> Value {
    let mut v = json!(target);
    name_collections(st, &mut v);
    v
}

pub async fn bind(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let target = target(&st, &body)?;
    let version = body
        .get("version")
        .and_then(Value::as_u64)
        .map(|v| v as u32);
    let config = match body.get("config") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if st.sync.is_some() {
        // The binding carries this node's default limits for the plugin: every node runs it
        // under them, whatever its own flags.
        let binding = st
            .plugins
            .runtime
            .new_binding(&name, version, &config)
            .map_err(plugin_error)?;
        cluster::bind(&st, &target, Some(&binding), ready_wait(&body)?).await?;
        let binding = st.plugins.runtime.bindings().slots.get(&target).cloned();
        return Ok(Json(
            json!({"target": target_json(&st, &target), "binding": binding.and_then(|s| s.active)}),
        ));
    }
    let t2 = target.clone();
    let binding = st
        .plugins
        .blocking(move |rt| rt.bind(t2, &name, version, &config))
        .await
        .map_err(plugin_error)?;
    Ok(Json(
        json!({"target": target_json(&st, &target), "binding": binding}),
    ))
}

pub async fn unbind(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let target = target(&st, &body)?;
    if st.sync.is_some() {
        let old = st.plugins.runtime.bindings().slots.get(&target).cloned();
        cluster::bind(&st, &target, None, None).await?;
        return Ok(Json(
            json!({"target": target_json(&st, &target), "unbound": old.and_then(|s| s.active)}),
        ));
    }
    let t2 = target.clone();
    let old = st
        .plugins
        .blocking(move |rt| rt.unbind(&t2))
        .await
        .map_err(plugin_error)?;
    Ok(Json(
        json!({"target": target_json(&st, &target), "unbound": old}),
    ))
}

pub async fn rollback(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let target = target(&st, &body)?;
    if st.sync.is_some() {
        // Replicated, a rollback is a binding event naming the previous binding.
        let previous = st
            .plugins
            .runtime
            .bindings()
            .slots
            .get(&target)
            .and_then(|s| s.previous.clone())
            .ok_or_else(|| plugin_error(PluginError::NothingToRollBack(target.clone())))?;
        cluster::bind(&st, &target, Some(&previous), ready_wait(&body)?).await?;
        let now = st.plugins.runtime.bindings().slots.get(&target).cloned();
        return Ok(Json(
            json!({"target": target_json(&st, &target), "binding": now.and_then(|s| s.active)}),
        ));
    }
    let t2 = target.clone();
    let active = st
        .plugins
        .blocking(move |rt| rt.rollback(&t2))
        .await
        .map_err(plugin_error)?;
    Ok(Json(
        json!({"target": target_json(&st, &target), "binding": active}),
    ))
}

/// `POST /api/plugins/{name}/resolve`: runs the plugin's resolver on the given versions
/// without binding it, so authors can try a policy against a running node. A merged record is
/// checked against the collection's schema exactly as the fold checks it (when the collection
/// exists here), so the answer is what a real conflict would store.
pub async fn dry_run_resolve(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let version = match body.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| ApiError::bad_request("`version` must be a version number."))?,
        ),
    };
    // The plugin first: an unknown plugin is a 404 whatever the body holds.
    let meta = st
        .plugins
        .runtime
        .show(&name)
        .map_err(plugin_error)?
        .into_iter()
        .map(|p| p.version)
        .filter(|v| version.is_none_or(|want| v.version == want))
        .max_by_key(|v| v.version)
        .ok_or_else(|| {
            plugin_error(PluginError::NotFound {
                name: name.clone(),
                version,
            })
        })?;
    let part = |key: &str| {
        body.get(key)
            .filter(|v| !v.is_null())
            .ok_or_else(|| ApiError::bad_request(format!("`{key}` is required.")))
    };
    let current = version_from_json(part("current")?)
        .map_err(|e| ApiError::bad_request(format!("current: {e}.")))?;
    let incoming = change_from_json(part("incoming")?)
        .map_err(|e| ApiError::bad_request(format!("incoming: {e}.")))?;
    let config = match body.get("config") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let collection = st.store.schema().get(&incoming.collection).cloned();
    let (current2, incoming2) = (current.clone(), incoming.clone());
    let v = meta.version;
    let outcome = st
        .plugins
        .blocking(move |rt| rt.dry_run_resolve(&name, Some(v), &config, &current2, &incoming2))
        .await
        .map_err(plugin_error)?;
    let mut resolution = resolution_json(&outcome.value);
    let mut decided_by = decided_by_json(&outcome.decided_by);
    if let (Resolution::Merged(text), Some(c)) = (&outcome.value, &collection) {
        let checked = serde_json::from_str::<crate::store::Record>(text)
            .map_err(|e| e.to_string())
            .and_then(|rec| crate::store::merged::check(c, &incoming.id, &rec));
        match checked {
            Ok(stored) => resolution = json!({"merged": stored}),
            Err(reason) => {
                resolution = resolution_json(&default_resolution(&current, &incoming));
                decided_by = json!({
                    "by": "fallback", "plugin": meta.name, "version": meta.version,
                    "failure": "invalid-merge",
                    "detail": format!("the merged record does not fit collection {:?}: {reason}", c.name),
                });
            }
        }
    }
    Ok(Json(json!({
        "resolution": resolution,
        "decidedBy": decided_by,
        "schemaChecked": collection.is_some(),
    })))
}

/// `GET /api/plugins/outbound[?limit=N]`: what the outbound stage let out most recently (the
/// `N` newest events; all kept by default, none with 0), and counters.
pub async fn outbound(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let limit = match q.get("limit") {
        None => usize::MAX,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("`limit` must be a number."))?,
    };
    let log = &st.plugins.outbound;
    Ok(Json(json!({
        "passed": log.passed.load(Ordering::Relaxed),
        "dropped": log.dropped.load(Ordering::Relaxed),
        "rewritten": log.rewritten.load(Ordering::Relaxed),
        "failures": log.failures.load(Ordering::Relaxed),
        "retainedBytes": log.retained_bytes(),
        "maxBytes": log.max_bytes(),
        "items": log.recent(limit),
    })))
}
