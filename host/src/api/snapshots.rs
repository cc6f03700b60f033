//! Snapshots and readiness over HTTP.
//!
//! - `GET /api/sync/ready` (public, for load balancers and orchestrators): 200 when the node
//!   has folded the log to within a small lag of its end, 503 while it connects, bootstraps
//!   from a snapshot (with the step and bytes done of total) or catches up. A node without
//!   replication is always ready.
//! - `GET /api/sync/snapshots` (superuser): the cluster's stored snapshots, the stream's
//!   extent, what this node's snapshot service is doing, the policy's figures and decisions.
//! - `POST /api/sync/snapshots` (superuser): take a snapshot now, at this node's position.
//! - `POST /api/sync/snapshots/{name}/verify` (superuser): download one and check it
//!   completely (file sha256, then rows against the header's table hashes).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::access::Auth;
use crate::snapshot::SnapshotError;

pub async fn ready(State(st): State<AppState>) -> Response {
    let Some(sync) = &st.sync else {
        return Json(json!({"ready": true, "phase": "single"})).into_response();
    };
    let (ready, mut body) = sync.readiness().await;
    body["ready"] = json!(ready);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn replicating(st: &AppState) -> ApiResult<&crate::sync::Sync> {
    st.sync.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            "This node does not replicate: it has no cluster snapshots (use /api/backups).",
        )
    })
}

pub fn snapshot_error(e: SnapshotError) -> ApiError {
    match e {
        SnapshotError::NotFound(what) => {
            ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found."))
        }
        SnapshotError::Busy(msg) => ApiError::bad_request(msg),
        SnapshotError::Invalid(msg) | SnapshotError::Format(msg) => ApiError::bad_request(msg),
        SnapshotError::Log(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The cluster's snapshot bucket is not reachable: {e}"),
        ),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `GET /api/sync/snapshots`.
pub async fn list(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let sync = replicating(&st)?;
    Ok(Json(crate::sync::snapshots_json(sync, false).await))
}

/// `POST /api/sync/snapshots`.
pub async fn create(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let sync = replicating(&st)?;
    let stored = sync.snapshots().create().await.map_err(snapshot_error)?;
    Ok(Json(json!(stored)))
}

/// `POST /api/sync/snapshots/{name}/verify`.
pub async fn verify(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let sync = replicating(&st)?;
    let header = sync
        .snapshots()
        .verify(&name)
        .await
        .map_err(snapshot_error)?;
    Ok(Json(json!({"name": name, "ok": true, "header": header})))
}
