//! `GET/PATCH /api/settings` (superusers only): PocketBase's settings model, secrets hidden.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::Auth;
use crate::store::settings;

pub async fn get(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let s = st
        .store
        .read(|conn, _| settings::load_settings(conn))
        .await?;
    Ok(Json(s.to_public_json()))
}

/// Binds the body onto the current settings (PocketBase's model only: unknown keys dropped,
/// wrong types refused), validates and stores it; answers the new settings.
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    body: Result<JsonBody, ApiError>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let patch = match body {
        Ok(JsonBody(v)) => v,
        // Too large stays 413; anything unreadable is PocketBase's loading error.
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => return Err(e),
        Err(_) => return Err(loading_error()),
    };
    if !patch.is_object() {
        return Err(loading_error());
    }
    let s = st
        .store
        .write(move |ctx| settings::update(ctx.conn, &patch))
        .await?;
    st.guard.settings_changed(&s);
    Ok(Json(s.to_public_json()))
}

fn loading_error() -> ApiError {
    ApiError::bad_request("An error occurred while loading the submitted data.")
}
