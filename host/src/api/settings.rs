//! `GET/PATCH /api/settings` (superusers only).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::Auth;
use crate::store::settings;

pub async fn get(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    Ok(Json(st.store.read(|conn, _| settings::load(conn)).await?))
}

pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(patch): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("The settings must be a JSON object."));
    }
    if let Some(max) = patch.pointer("/batch/maxRequests")
        && max.as_u64().is_none_or(|m| m == 0)
    {
        return Err(ApiError::bad_request("An error occurred while validating the submitted data.").with_data(
                serde_json::json!({"batch": {"maxRequests": {"code": "validation_required", "message": "Cannot be blank."}}}),
            ));
    }
    let s = st
        .store
        .write(move |ctx| settings::update(ctx.conn, &patch))
        .await?;
    apply(&st, &s).await;
    Ok(Json(s))
}

/// Hands the settings the request logger reads to it (at start and after every change).
pub async fn apply(st: &AppState, s: &Value) {
    st.trusted_proxy.store(std::sync::Arc::new(
        super::logs::TrustedProxy::from_settings(s),
    ));
    if let Err(e) = st
        .logs
        .configure(crate::store::logs::LogSettings::from_settings(s))
        .await
    {
        tracing::warn!(error = %e, "could not apply the new log settings");
    }
}
