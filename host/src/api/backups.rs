//! PocketBase's backups API, as `pb.backups.*` in the JS SDK calls it; its downloads take the
//! file token of `POST /api/files/token` (api/files.rs, `pb.files.getToken()`).
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
use crate::access::Auth;
use crate::snapshot::SnapshotError;
use crate::snapshot::backups::{AUTO_PREFIX, Backups, auto_name, default_name, valid_name};
use crate::store::schema::TokenKind;

/// PocketBase's job id for the `backups.cron` setting.
const AUTO_JOB: &str = "__pbAutoBackup__";

/// PocketBase's automatic backups: a non-empty `backups.cron` schedules `__pbAutoBackup__`
/// (listed and run through `/api/crons` like the built-in jobs), which makes
/// `@auto_pb_backup_<app>_<time>.zip` and then deletes the oldest automatic backups beyond
/// `backups.cronMaxKeep`; an empty one removes the job. Called at start and after every
/// settings change. Settings are per node: on a cluster, set it on the node that should make
/// them (the backups land in the cluster's bucket).
pub fn schedule(st: &AppState, s: &crate::settings::Settings) {
    let cron = s.backups.cron.trim();
    if cron.is_empty() {
        st.crons.remove(AUTO_JOB);
        return;
    }
    let (backups, store) = (st.backups.clone(), st.store.clone());
    let added = st.crons.add(AUTO_JOB, cron, move || {
        let (backups, store) = (backups.clone(), store.clone());
        async move { auto_backup(&backups, &store).await }
    });
    if let Err(e) = added {
        // Settings validation refuses a bad expression; one stored before that is reported.
        tracing::warn!(error = %e, cron, "backups.cron is not a valid cron expression; no automatic backups");
        st.crons.remove(AUTO_JOB);
    }
}

/// One run of the automatic backup job.
async fn auto_backup(backups: &Backups, store: &crate::store::Store) {
    let settings = match store
        .read(|c, _| crate::store::settings::load_settings(c))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "automatic backup: cannot read the settings");
            return;
        }
    };
    // Two runs within one second would share PocketBase's name: the second gets a suffix.
    let base = auto_name(&settings.meta.app_name);
    let mut name = base.clone();
    for n in 2..100 {
        if !backups.exists(&name).await.unwrap_or(false) {
            break;
        }
        name = format!("{}_{n}.zip", base.trim_end_matches(".zip"));
    }
    let created = match backups.begin(&name) {
        Ok(slot) => {
            let r = backups.create(&name).await;
            drop(slot);
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        tracing::error!(error = %e, name = %name, "automatic backup failed");
        return;
    }
    tracing::info!(name = %name, "automatic backup created");
    let keep = usize::try_from(settings.backups.cron_max_keep.max(1)).unwrap_or(1);
    let mut autos: Vec<_> = match backups.list().await {
        Ok(l) => l
            .into_iter()
            .filter(|b| b.key.starts_with(AUTO_PREFIX))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "automatic backup: cannot list backups to prune");
            return;
        }
    };
    // Newest first (the names carry the time too, for equal modification times).
    autos.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.key.cmp(&a.key)));
    for old in autos.iter().skip(keep) {
        if let Err(e) = backups.delete(&old.key).await {
            tracing::warn!(error = %e, key = %old.key, "automatic backup: cannot delete an old one");
        }
    }
}

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
    // The file token of `POST /api/files/token` (api/files.rs), signed as PocketBase signs it.
    let allowed = super::auth_flow::record_by_token(&st, token, TokenKind::File)
        .await
        .is_some_and(|(c, _, _)| c.name == "_superusers");
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
