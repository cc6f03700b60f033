//! `GET /api/crons` and `POST /api/crons/{id}` (superusers): the node's scheduled jobs
//! (`cron/`), listed and started on demand, as PocketBase serves them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::access::Auth;

/// The jobs as `[{id, expression}]`: the app's own first (by id), then the built-in `__pb*`
/// ones in the order they were registered.
pub async fn list(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let mut jobs = st.crons.list();
    jobs.sort_by(|a, b| {
        let (sa, sb) = (a.0.starts_with("__pb"), b.0.starts_with("__pb"));
        match (sa, sb) {
            (false, false) => a.0.cmp(&b.0),
            _ => sa.cmp(&sb),
        }
    });
    Ok(Json(Value::Array(
        jobs.into_iter()
            .map(|(id, expression)| json!({"id": id, "expression": expression}))
            .collect(),
    )))
}

/// Starts a job in the background and answers at once.
pub async fn run(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    if st.crons.run_now(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Missing or invalid cron job.",
        ))
    }
}
