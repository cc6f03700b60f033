//! The plugin admin API on a replicating node: every change is a log event, answered once
//! this node folded it (so the answer says what every node will do).
//!
//! - upload: validated and compiled here first (a bad component never reaches the log), then
//!   its bytes go to the Object Store and a `plugin-registry` event gives it its version;
//! - delete: a `plugin-registry` event, refused at its position if a binding uses the version;
//! - bind, rollback: the binding event is published only once every live node announced the
//!   component compiled (see `sync::plugins`), so no node's fold stops to compile it; after
//!   the wait, the answer names the nodes that are not ready.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{AppState, plugin_error};
use crate::api::error::{ApiError, ApiResult};
use crate::plugins::{Binding, PluginError, PluginRuntime, Target};
use crate::replication::{CollectionRef, EventKind};
use crate::sync::{NotReady, Sync, WaitError};

/// How a bind treats nodes that have not compiled the plugin yet.
pub enum Ready {
    /// Wait this long at most (instead of `--plugin-ready-timeout`).
    Wait(Duration),
    /// Publish at once: nodes that are not ready compile it when they fold the binding.
    Force,
}

/// Puts a plugin event in the log and waits until this node folded it. A refusal at its
/// position is answered with `refused`.
async fn publish(
    st: &AppState,
    sync: &Sync,
    kind: EventKind,
    coll: CollectionRef,
    data: Value,
    refused: StatusCode,
) -> ApiResult<()> {
    let (seq, event_id) = st
        .store
        .write(move |ctx| {
            let hooks = ctx
                .sync_hooks()
                .ok_or_else(|| crate::store::StoreError::Internal("no replication".into()))?;
            let event = crate::store::sync::schema_event(hooks, kind, coll, data);
            let seq = ctx.enqueue(&event)?;
            Ok((seq, event.id.to_string()))
        })
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to change the plugins."))?;
    sync.wait_applied(seq, Some(event_id))
        .await
        .map_err(|e| match e {
            WaitError::Refused(reason) => ApiError::new(refused, format!("Refused: {reason}")),
            other => ApiError::new(StatusCode::GATEWAY_TIMEOUT, other.to_string()),
        })
}

/// The cluster's object store, or 503 while the log is unreachable.
async fn objects(sync: &Sync) -> ApiResult<crate::replication::PluginObjects> {
    tokio::time::timeout(sync.config().wait_timeout, sync.objects())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The replication log is not reachable; plugin changes need it.",
            )
        })
}

fn version_json(v: &crate::plugins::PluginVersion, unchanged: bool) -> Value {
    let mut out = serde_json::to_value(v).unwrap_or_default();
    out["unchanged"] = json!(unchanged);
    out
}

/// `POST /api/plugins` on a replicating node.
pub async fn upload(st: &AppState, sync: &Sync, name: String, bytes: Bytes) -> ApiResult<Value> {
    crate::plugins::validate_name(&name).map_err(plugin_error)?;
    let b = bytes.clone();
    let report = st
        .plugins
        .blocking(move |rt| rt.prepare(&b))
        .await
        .map_err(plugin_error)?;
    let latest = |rt: &PluginRuntime| {
        rt.show(&name)
            .ok()
            .and_then(|v| v.into_iter().map(|p| p.version).max_by_key(|v| v.version))
    };
    if let Some(l) = latest(&st.plugins.runtime)
        && PluginRuntime::is_unchanged(&l, &report.sha256, &report.canonical)
    {
        return Ok(version_json(&l, true));
    }
    objects(sync).await?.put(&bytes).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Storing the plugin in the cluster failed: {e}"),
        )
    })?;
    let data = json!({
        "op": "upload", "name": name, "sha256": report.sha256, "world": report.world,
        "size": report.size, "code_size": report.code_size, "canonical": report.canonical,
        "exports": report.exports, "uploaded_at_ms": crate::replication::presence::now_ms(),
    });
    let kind = EventKind::PluginRegistry;
    publish(
        st,
        sync,
        kind,
        CollectionRef::default(),
        data,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    sync.plugins_changed();
    let rt = &st.plugins.runtime;
    let mine = rt.show(&name).ok().and_then(|versions| {
        versions
            .into_iter()
            .map(|p| p.version)
            .find(|v| v.sha256 == report.sha256)
    });
    match (mine, latest(rt)) {
        (Some(v), _) => Ok(version_json(&v, false)),
        // Another node registered the same content first.
        (None, Some(l)) => Ok(version_json(&l, true)),
        (None, None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Plugin {name:?} was deleted while it was being pushed."),
        )),
    }
}

/// `DELETE /api/plugins/{name}` on a replicating node.
pub async fn delete(st: &AppState, sync: &Sync, name: &str, version: Option<u32>) -> ApiResult<()> {
    let versions = st.plugins.runtime.show(name).map_err(plugin_error)?;
    if version.is_some_and(|v| !versions.iter().any(|p| p.version.version == v)) {
        return Err(plugin_error(PluginError::NotFound {
            name: name.to_string(),
            version,
        }));
    }
    // Bound here is bound everywhere (bindings are folded): refuse without a log event. The
    // fold checks again at the event's position, for a bind racing this delete.
    if let Some(used) = versions
        .iter()
        .filter(|p| version.is_none_or(|v| p.version.version == v))
        .find(|p| !p.bindings.is_empty())
    {
        let targets: Vec<String> = used
            .bindings
            .iter()
            .map(|b| format!("{} ({:?})", b.target, b.state).to_lowercase())
            .collect();
        return Err(plugin_error(PluginError::InUse {
            plugin: name.to_string(),
            version: used.version.version,
            targets: targets.join(", "),
        }));
    }
    let mut data = json!({"op": "delete", "name": name});
    if let Some(v) = version {
        data["version"] = json!(v);
    }
    let kind = EventKind::PluginRegistry;
    publish(
        st,
        sync,
        kind,
        CollectionRef::default(),
        data,
        StatusCode::CONFLICT,
    )
    .await?;
    sync.plugins_changed();
    Ok(())
}

/// A binding change on a replicating node: the plugin's bytes in the cluster's object store,
/// every node ready, then the event; the answer waits until this node switched at the
/// event's position (as every node does).
pub async fn bind(
    st: &AppState,
    target: &Target,
    binding: Option<&Binding>,
    ready: Option<Ready>,
) -> ApiResult<()> {
    let Some(sync) = st.sync.clone() else {
        return Ok(());
    };
    if let Some(b) = binding {
        let wait = match ready {
            Some(Ready::Force) => None,
            Some(Ready::Wait(d)) => Some(d),
            None => Some(sync.config().plugin_ready_timeout),
        };
        if let Some(wait) = wait {
            sync.wait_ready(&b.sha256, wait)
                .await
                .map_err(|e| match e {
                    NotReady::NoLog => {
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    }
                    NotReady::Nodes(ref nodes) => ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "Not bound: {e} after {} s. Retry when they are (or bind with \
                         \"force\": true, and they compile it in their fold).",
                            wait.as_secs()
                        ),
                    )
                    .with_data(json!({"notReady": nodes})),
                })?;
        }
        let objects = objects(&sync).await?;
        let present = objects.has(&b.sha256).await.unwrap_or(false);
        if !present {
            let bytes = st.plugins.runtime.blob(&b.sha256).map_err(plugin_error)?;
            objects.put(&bytes).await.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Storing the plugin failed: {e}"),
                )
            })?;
        }
    }
    let data = crate::sync::binding_data(target, binding);
    let coll = match target
        .collection()
        .and_then(|id| st.store.schema().get(id).cloned())
    {
        Some(c) => CollectionRef {
            id: c.id.clone(),
            name: c.name.clone(),
        },
        None => CollectionRef::default(),
    };
    publish(
        st,
        &sync,
        EventKind::PluginBinding,
        coll,
        data,
        StatusCode::BAD_REQUEST,
    )
    .await
}

/// Adds to each listed version the live nodes that hold it compiled (`nodes`).
pub fn add_nodes(sync: &Sync, items: &mut Value) {
    for item in items.as_array_mut().into_iter().flatten() {
        if let Some(sha) = item["sha256"].as_str() {
            let nodes = sync.compiled_on(sha);
            item["nodes"] = json!(nodes);
        }
    }
}
