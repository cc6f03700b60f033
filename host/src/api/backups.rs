//! PocketBase's backups API, as `pb.backups.*` in the JS SDK calls it, and the file token its
//! downloads need (`POST /api/files/token`, `pb.files.getToken()`).
//!
//! - `GET /api/backups` → `[{key, size, modified}]`; `POST /api/backups {name?}` → 204;
//!   `POST /api/backups/upload` (multipart `file`, no body limit) → 204;
//!   `DELETE /api/backups/{key}` → 204; `POST /api/backups/{key}/restore` → 204, the restore
//!   runs after the answer (as in PocketBase); all superuser only.
//! - `GET /api/backups/{key}?token=FILE_TOKEN` streams the file to a superuser's file token.
//!
//! Names follow PocketBase's rule (`^[a-z0-9_-]+\.zip$`, at most 150 characters), and so do the
//! validation errors. What a backup is and where it lives: `snapshot::backups`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::{Auth, authenticate_file};
use crate::auth::jwt;
use crate::snapshot::SnapshotError;
use crate::snapshot::backups::{default_name, valid_name};

/// Lifetime of a file token, as PocketBase's default.
const FILE_TOKEN_SECONDS: i64 = 180;

fn backup_error(e: SnapshotError, action: &str) -> ApiError {
    match e {
        SnapshotError::Busy(m) | SnapshotError::Invalid(m) => ApiError::bad_request(m),
        SnapshotError::NotFound(_) => ApiError::bad_request("Missing or invalid backup file."),
        other => {
            tracing::error!(error = %other, "{action}");
            ApiError::bad_request(format!("{action} Raw error: \n{other}"))
        }
    }
}

fn name_error(message: &str) -> ApiError {
    ApiError::bad_request("An error occurred while validating the submitted data.")
        .with_data(json!({"name": {"code": "validation_backup_name_exists", "message": message}}))
}

/// `POST /api/files/token`: a short-lived token for protected files and backup downloads.
pub async fn file_token(auth: Auth) -> ApiResult<Json<Value>> {
    let Auth::Record { collection, record } = &auth else {
        return Err(ApiError::unauthorized());
    };
    let opts = collection.auth.clone().unwrap_or_default();
    let token_key = record
        .get("tokenKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let claims = jwt::Claims {
        id: auth.id().unwrap_or_default().to_string(),
        kind: "file".into(),
        collection_id: collection.id.clone(),
        refreshable: false,
        exp: chrono::Utc::now().timestamp() + FILE_TOKEN_SECONDS,
    };
    let token = jwt::sign(
        &claims,
        format!("{token_key}{}", opts.auth_token.secret).as_bytes(),
    );
    Ok(Json(json!({"token": token})))
}

/// `GET /api/backups`.
pub async fn list(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let list = st
        .backups
        .list()
        .await
        .map_err(|e| backup_error(e, "Failed to retrieve backup items."))?;
    Ok(Json(json!(list)))
}

/// `POST /api/backups {name?}`.
pub async fn create(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let name = match body.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(name_error(
                "The backup file name is invalid or already exists.",
            ));
        }
    };
    let name = if name.is_empty() {
        let settings = st
            .store
            .read(|c, _| crate::store::settings::load(c))
            .await
            .unwrap_or_default();
        default_name(settings["meta"]["appName"].as_str().unwrap_or("Syncbase"))
    } else {
        name
    };
    if !valid_name(&name) {
        return Err(ApiError::bad_request(
            "An error occurred while validating the submitted data.",
        )
        .with_data(json!({"name": {"code": "validation_match_invalid",
                                   "message": "Must be in a valid format."}})));
    }
    let exists = st
        .backups
        .exists(&name)
        .await
        .map_err(|e| backup_error(e, "Failed to create backup."))?;
    if exists {
        return Err(name_error(
            "The backup file name is invalid or already exists.",
        ));
    }
    let _slot = st
        .backups
        .begin(&name)
        .map_err(|e| backup_error(e, "Failed to create backup."))?;
    st.backups
        .create(&name)
        .await
        .map_err(|e| backup_error(e, "Failed to create backup."))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/backups/upload` (multipart, field `file`).
pub async fn upload(
    State(st): State<AppState>,
    auth: Auth,
    mut form: Multipart,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let invalid = |code: &str, message: &str| {
        ApiError::bad_request("An error occurred while validating the submitted data.")
            .with_data(json!({"file": {"code": code, "message": message}}))
    };
    let work = crate::snapshot::work_dir(
        st.store
            .path()
            .parent()
            .unwrap_or(std::path::Path::new(".")),
    )
    .map_err(|e| backup_error(e, "Failed to upload backup."))?;
    let tmp = work.join(format!(
        "upload-{}.zip",
        crate::replication::EventId::random()
    ));
    let mut name = None;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("Failed to read the upload: {e}")))?;
        let Some(mut field) = field else { break };
        if field.name() != Some("file") {
            continue;
        }
        name = Some(field.file_name().unwrap_or_default().to_string());
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| {
            backup_error(SnapshotError::Io(e.to_string()), "Failed to upload backup.")
        })?;
        // Streamed to disk: a backup may be far larger than memory.
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::bad_request(format!("Failed to read the upload: {e}")))?
        {
            out.write_all(&chunk).await.map_err(|e| {
                backup_error(SnapshotError::Io(e.to_string()), "Failed to upload backup.")
            })?;
        }
        out.flush().await.map_err(|e| {
            backup_error(SnapshotError::Io(e.to_string()), "Failed to upload backup.")
        })?;
        break;
    }
    let result = async {
        let Some(name) = name else {
            return Err(invalid("validation_required", "Missing required value."));
        };
        if !valid_name(&name) {
            return Err(invalid(
                "validation_invalid_name",
                "The backup file name must match ^[a-z0-9_-]+\\.zip$.",
            ));
        }
        if st.backups.exists(&name).await.unwrap_or(false) {
            return Err(ApiError::bad_request(
                "An error occurred while validating the submitted data.",
            )
            .with_data(json!({"file": {"code": "validation_backup_name_exists",
                "message": "Backup file with the specified name already exists."}})));
        }
        st.backups.upload(&name, &tmp).await.map_err(|e| match e {
            SnapshotError::Format(m) => invalid("validation_invalid_mime_type", &m),
            other => backup_error(other, "Failed to upload backup."),
        })
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result.map(|()| StatusCode::NO_CONTENT)
}

/// `GET /api/backups/{key}?token=...`: the file, to a superuser's file token.
pub async fn download(
    State(st): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    let allowed = authenticate_file(&st.store, token)
        .await
        .is_some_and(|a| a.is_superuser());
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Insufficient permissions to access the resource.",
        ));
    }
    let (size, reader) = st.backups.open(&key).await.map_err(|e| match e {
        SnapshotError::NotFound(_) => ApiError::not_found(),
        other => backup_error(other, "Failed to read the backup."),
    })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename={key}"),
            ),
        ],
        body,
    )
        .into_response())
}

/// `DELETE /api/backups/{key}`.
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    if st.backups.active().as_deref() == Some(key.as_str()) {
        return Err(ApiError::bad_request(
            "The backup is currently being used and cannot be deleted.",
        ));
    }
    st.backups.delete(&key).await.map_err(|e| match e {
        SnapshotError::NotFound(what) => ApiError::bad_request(format!(
            "Invalid or already deleted backup file. Raw error: \n{what} not found"
        )),
        other => backup_error(other, "Failed to delete the backup."),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/backups/{key}/restore`: answers, then restores.
pub async fn restore(
    State(st): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    if let Some(reason) = st.backups.restore_refused() {
        return Err(ApiError::bad_request(reason));
    }
    if st.backups.active().is_some() {
        return Err(ApiError::bad_request(
            "Try again later - another backup/restore process has already been started.",
        ));
    }
    if !st.backups.exists(&key).await.unwrap_or(false) {
        return Err(ApiError::bad_request("Missing or invalid backup file."));
    }
    let backups = st.backups.clone();
    tokio::spawn(async move {
        let Ok(_slot) = backups.begin(&key) else {
            tracing::warn!(backup = %key, "another backup or restore started first");
            return;
        };
        match backups.restore(&key).await {
            Ok(()) => tracing::info!(backup = %key, "backup restored"),
            Err(e) => tracing::error!(backup = %key, error = %e, "restoring the backup failed"),
        }
    });
    Ok(StatusCode::NO_CONTENT)
}
