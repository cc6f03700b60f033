//! Replication over HTTP: `GET /api/sync/status` (superuser), `GET /metrics`, write concern
//! (`?sync=published|applied` on record writes), and schema changes on a replicating node,
//! which are validated here and applied at their position in the log.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::access::Auth;
use crate::replication::{CollectionRef, EventKind};
use crate::store::sync::schema_event;
use crate::store::{StoreError, WriteCtx};
use crate::sync::WaitError;

/// `GET /api/sync/status[?hashes=1]`: replication figures; with `hashes`, a content hash of
/// every replicated table (reads every row: for checks, not for polling).
pub async fn status(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let Some(sync) = &st.sync else {
        return Ok(Json(
            json!({"mode": "single", "nodeId": st.plugins.node_id(), "rooms": st.rooms.status_json()}),
        ));
    };
    let mut out = crate::sync::status_json(sync).await;
    out["rooms"] = st.rooms.status_json();
    super::plugins::name_collections(&st, &mut out["plugins"]);
    if q.get("hashes").is_some_and(|v| v != "0" && v != "false") {
        out["tableHashes"] = crate::sync::hashes(sync).await;
    }
    Ok(Json(out))
}

/// `GET /api/sync/dead-letters/{seq}` (superuser): one event this node could not apply, the
/// reason, and the event as JSON (password hashes and token keys masked). For the dashboard's
/// dead-letter detail.
pub async fn dead_letter(
    State(st): State<AppState>,
    auth: Auth,
    Path(seq): Path<u64>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let Some(sync) = &st.sync else {
        return Err(ApiError::not_found());
    };
    let found = sync
        .store()
        .read_raw(move |c| crate::store::sync::dead_letter(c, seq))
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to read the dead letter."))?;
    let (letter, payload) = found.ok_or_else(ApiError::not_found)?;
    let event = match crate::replication::Event::decode(&payload) {
        Ok(e) => {
            let mask = |m: Option<serde_json::Map<String, Value>>| {
                m.map(|mut m| {
                    for k in ["password", "tokenKey"] {
                        if m.contains_key(k) {
                            m.insert(k.into(), json!("(hidden)"));
                        }
                    }
                    m
                })
            };
            json!({
                "id": e.id.to_string(),
                "kind": format!("{:?}", e.kind),
                "origin": e.origin,
                "hlc": e.hlc.0,
                "collection": {"id": e.collection.id, "name": e.collection.name},
                "recordId": e.record_id,
                "base": e.base.map(|b| b.to_string()),
                "schemaVersion": e.schema_version,
                "pluginVersion": e.plugin_version,
                "data": mask(e.data),
                "before": mask(e.before),
            })
        }
        Err(e) => json!({"error": format!("undecodable event: {e}")}),
    };
    let mut out = serde_json::to_value(letter).unwrap_or_default();
    out["event"] = event;
    Ok(Json(out))
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut body = match &st.sync {
        Some(sync) => crate::sync::metrics_text(sync).await,
        None => String::new(),
    };
    body.push_str(&crate::plugins::metrics::render(
        &st.plugins.runtime,
        &st.plugins.counters,
        &st.store.schema(),
        st.plugins.node_id(),
    ));
    body.push_str(&st.rooms.metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// What a write asked to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    Local,
    Published,
    Applied,
}

impl Concern {
    pub fn from_query(q: &HashMap<String, String>) -> Result<Concern, ApiError> {
        match q.get("sync").map(String::as_str) {
            None | Some("") | Some("local") => Ok(Concern::Local),
            Some("published") => Ok(Concern::Published),
            Some("applied") => Ok(Concern::Applied),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid sync value {other:?}: use local, published or applied."
            ))),
        }
    }
}

fn wait_error(e: WaitError) -> ApiError {
    match e {
        WaitError::Refused(reason) => ApiError::new(
            StatusCode::CONFLICT,
            format!("The cluster did not apply the write: {reason}"),
        ),
        e @ WaitError::Unavailable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        other => ApiError::new(StatusCode::GATEWAY_TIMEOUT, other.to_string()),
    }
}

/// Waits for `concern` on the events a write put in the outbox (`seqs`, outbox sequences).
pub async fn wait_for(st: &AppState, concern: Concern, seqs: &[u64]) -> ApiResult<()> {
    let (Some(sync), Some(&last)) = (&st.sync, seqs.iter().max()) else {
        return Ok(());
    };
    match concern {
        Concern::Local => Ok(()),
        Concern::Published => sync.wait_published(last).await.map_err(wait_error),
        Concern::Applied => sync.wait_applied(last, None).await.map_err(wait_error),
    }
}

/// A schema change on a replicating node: `f` runs as a dry run (validating it and giving
/// its result), the event goes to the outbox, and the answer waits until this node has
/// applied it at its position in the log. Without replication `f` simply runs.
pub async fn schema_write<R, F>(
    st: &AppState,
    action: &'static str,
    kind: EventKind,
    f: F,
    describe: fn(&R, &WriteCtx) -> (CollectionRef, Value),
) -> ApiResult<R>
where
    R: Send + 'static,
    F: FnOnce(&mut WriteCtx) -> Result<R, StoreError> + Send + 'static,
{
    let Some(sync) = &st.sync else {
        let out = st
            .store
            .write(f)
            .await
            .map_err(|e| ApiError::from_store(e, action))?;
        if matches!(
            kind,
            EventKind::CollectionDelete | EventKind::CollectionImport
        ) {
            // A deleted collection's plugin bindings go with it (a replicating node does
            // this in the fold, at the event's position).
            if let Err(e) = st.plugins.reconcile(st.store.schema()).await {
                tracing::error!(error = %e, "removing a deleted collection's plugin bindings failed");
            }
        }
        return Ok(out);
    };
    let (out, seq, event_id) = st
        .store
        .write(move |ctx| {
            let (out, coll, data) = ctx.dry_run(|ctx| {
                let out = f(ctx)?;
                let (coll, data) = describe(&out, ctx);
                Ok((out, coll, data))
            })?;
            let hooks = ctx
                .sync_hooks()
                .ok_or_else(|| StoreError::Internal("replication hooks missing".into()))?;
            let event = schema_event(hooks, kind, coll, data);
            let seq = ctx.enqueue(&event)?;
            Ok((out, seq, event.id.to_string()))
        })
        .await
        .map_err(|e| ApiError::from_store(e, action))?;
    sync.wait_applied(seq, Some(event_id))
        .await
        .map_err(|e| match e {
            WaitError::Refused(reason) => ApiError::bad_request(format!("{action} {reason}")),
            other => wait_error(other),
        })?;
    Ok(out)
}
