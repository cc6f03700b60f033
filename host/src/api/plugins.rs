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
    ErrorKind, PluginError, Target, change_from_json, decided_by_json, resolution_json,
    version_from_json,
};

fn plugin_error(e: PluginError) -> ApiError {
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
    let meta = st
        .plugins
        .blocking(move |rt| rt.upload(&name, &bytes))
        .await
        .map_err(plugin_error)?;
    Ok(Json(serde_json::to_value(meta).unwrap_or_default()))
}

pub async fn list(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let items = st.plugins.runtime.list();
    Ok(Json(json!({"items": items})))
}

pub async fn show(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let versions = st.plugins.runtime.show(&name).map_err(plugin_error)?;
    Ok(Json(json!({"name": name, "versions": versions})))
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
    st.plugins
        .blocking(move |rt| rt.delete(&name, version))
        .await
        .map_err(plugin_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn bindings(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let table = st.plugins.runtime.bindings().to_json();
    Ok(Json(serde_json::from_str(&table).unwrap_or_default()))
}

/// The binding target named by `{"as": role, "collection": name}`; the collection must exist
/// and is stored by name.
fn target(st: &AppState, body: &Value) -> ApiResult<Target> {
    let role = body.get("as").and_then(Value::as_str).unwrap_or_default();
    let coll = body.get("collection").and_then(Value::as_str);
    let target = Target::parse(role, coll).map_err(plugin_error)?;
    if let Some(c) = target.collection() {
        let schema = st.store.schema();
        let found = schema.get(c).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("Unknown collection {c:?}."))
        })?;
        return Target::parse(role, Some(&found.name)).map_err(plugin_error);
    }
    Ok(target)
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
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("Unknown plugin version {name}."),
                )
            })?;
        replicate_binding(&st, &target, Some((&meta.name, &meta.sha256, &config))).await?;
        let binding = st.plugins.runtime.bindings().slots.get(&target).cloned();
        return Ok(Json(
            json!({"target": target, "binding": binding.and_then(|s| s.active)}),
        ));
    }
    let t2 = target.clone();
    let binding = st
        .plugins
        .blocking(move |rt| rt.bind(t2, &name, version, &config))
        .await
        .map_err(plugin_error)?;
    Ok(Json(json!({"target": target, "binding": binding})))
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
        replicate_binding(&st, &target, None).await?;
        return Ok(Json(
            json!({"target": target, "unbound": old.and_then(|s| s.active)}),
        ));
    }
    let t2 = target.clone();
    let old = st
        .plugins
        .blocking(move |rt| rt.unbind(&t2))
        .await
        .map_err(plugin_error)?;
    Ok(Json(json!({"target": target, "unbound": old})))
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
        let p = (
            previous.plugin.as_str(),
            previous.sha256.as_str(),
            previous.config.as_str(),
        );
        replicate_binding(&st, &target, Some(p)).await?;
        let now = st.plugins.runtime.bindings().slots.get(&target).cloned();
        return Ok(Json(
            json!({"target": target, "binding": now.and_then(|s| s.active)}),
        ));
    }
    let t2 = target.clone();
    let active = st
        .plugins
        .blocking(move |rt| rt.rollback(&t2))
        .await
        .map_err(plugin_error)?;
    Ok(Json(json!({"target": target, "binding": active})))
}

/// `POST /api/plugins/{name}/resolve`: runs the plugin's resolver on the given versions
/// without binding it, so authors can try a policy against a running node.
pub async fn dry_run_resolve(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let current = version_from_json(body.get("current").unwrap_or(&Value::Null))
        .map_err(|e| ApiError::bad_request(format!("current: {e}.")))?;
    let incoming = change_from_json(body.get("incoming").unwrap_or(&Value::Null))
        .map_err(|e| ApiError::bad_request(format!("incoming: {e}.")))?;
    let version = body
        .get("version")
        .and_then(Value::as_u64)
        .map(|v| v as u32);
    let config = body
        .get("config")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let outcome = st
        .plugins
        .blocking(move |rt| rt.dry_run_resolve(&name, version, &config, &current, &incoming))
        .await
        .map_err(plugin_error)?;
    Ok(Json(
        json!({"resolution": resolution_json(&outcome.value), "decidedBy": decided_by_json(&outcome.decided_by)}),
    ))
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

/// On a replicating node a binding change is an event in the log: the plugin's bytes go to
/// the object store first, then the event, and the answer waits until this node has switched
/// at the event's position (as every node does).
async fn replicate_binding(
    st: &AppState,
    target: &Target,
    plugin: Option<(&str, &str, &str)>,
) -> ApiResult<()> {
    let Some(sync) = st.sync.clone() else {
        return Ok(());
    };
    if let Some((_, sha, _)) = plugin {
        let bytes = st.plugins.runtime.blob(sha).map_err(plugin_error)?;
        let objects = tokio::time::timeout(sync.config().wait_timeout, sync.objects())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The replication log is not reachable; plugin bindings need it.",
                )
            })?;
        objects.put(&bytes).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Storing the plugin failed: {e}"),
            )
        })?;
    }
    let data = crate::sync::binding_data(target, plugin);
    let coll = crate::replication::CollectionRef {
        id: String::new(),
        name: target.collection().unwrap_or_default().to_string(),
    };
    let (seq, event_id) = st
        .store
        .write(move |ctx| {
            let hooks = ctx
                .sync_hooks()
                .ok_or_else(|| crate::store::StoreError::Internal("no replication".into()))?;
            let event = crate::store::sync::schema_event(
                hooks,
                crate::replication::EventKind::PluginBinding,
                coll,
                data,
            );
            let seq = ctx.enqueue(&event)?;
            Ok((seq, event.id.to_string()))
        })
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to bind the plugin."))?;
    sync.wait_applied(seq, Some(event_id))
        .await
        .map_err(|e| match e {
            crate::sync::WaitError::Refused(reason) => {
                ApiError::bad_request(format!("The binding was refused: {reason}"))
            }
            other => ApiError::new(StatusCode::GATEWAY_TIMEOUT, other.to_string()),
        })
}
