//! `GET/PATCH /api/settings`, `POST /api/settings/test/email` and `GET /api/mails` (superusers
//! only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth_flow::{body_text, check_email, field_error, issue, issue_with_email};
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::Auth;
use crate::mail::message::AppMeta;
use crate::mail::templates;
use crate::store::schema::{ALNUM, TokenKind, new_record_id, random_string};
use crate::store::{mails, settings};

/// Settings as served: PocketBase's model with its secrets (SMTP password, S3 secrets) left
/// out; they are write-only.
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
    let mail_changed = patch.get("smtp").is_some() || patch.get("meta").is_some();
    let s = st
        .store
        .write(move |ctx| settings::update(ctx.conn, &patch))
        .await?;
    st.guard.settings_changed(&s);
    apply(&st, &s).await;
    if mail_changed {
        // Mails that failed under the old settings get a fresh round of attempts now.
        st.mailer.retry_all().await?;
    }
    Ok(Json(s.to_public_json()))
}

fn loading_error() -> ApiError {
    ApiError::bad_request("An error occurred while loading the submitted data.")
}

const TEST_TEMPLATES: [&str; 5] = [
    "verification",
    "password-reset",
    "email-change",
    "otp",
    "login-alert",
];

/// Sends one of the auth collections' system mails to `email`, filled for a stand-in record,
/// straight away (not through the outbox): the caller wants to know whether the settings work.
pub async fn test_email(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let body = body.as_object().cloned().unwrap_or_default();
    let (email, template, coll) = (
        body_text(&body, "email"),
        body_text(&body, "template"),
        body_text(&body, "collection"),
    );
    let schema = st.store.schema();
    let mut errors = Map::new();
    let c = schema
        .get(if coll.is_empty() {
            "_superusers"
        } else {
            &coll
        })
        .filter(|c| c.is_auth())
        .cloned();
    if c.is_none() {
        errors.insert(
            "collection".into(),
            field_error(
                "validation_invalid_auth_collection",
                "Must be a valid auth collection id or name.",
            ),
        );
    }
    if let Some(e) = check_email(&email) {
        errors.insert("email".into(), e);
    }
    if template.is_empty() {
        errors.insert(
            "template".into(),
            field_error("validation_required", "Cannot be blank."),
        );
    } else if !TEST_TEMPLATES.contains(&template.as_str()) {
        errors.insert(
            "template".into(),
            field_error("validation_in_invalid", "Must be a valid value."),
        );
    }
    let Some(c) = c.filter(|_| errors.is_empty()) else {
        return Err(ApiError::bad_request("Failed to send the test email.")
            .with_data(Value::Object(errors)));
    };
    // A stand-in record: every visible field says which it is, as PocketBase fills it.
    let mut rec = Map::new();
    for f in c.fields.iter().filter(|f| !f.hidden) {
        rec.insert(f.name.clone(), json!(format!("__pb_test_{}__", f.name)));
    }
    rec.insert("id".into(), json!(new_record_id()));
    rec.insert("tokenKey".into(), json!(random_string(50, ALNUM)));
    rec.insert("email".into(), json!(email));
    let s = st.store.read(|conn, _| settings::load(conn)).await?;
    let meta = AppMeta::from_settings(&s);
    let msg = match template.as_str() {
        "verification" => templates::verification(
            &meta,
            &c,
            &rec,
            &issue_with_email(&c, &rec, TokenKind::Verification),
        ),
        "password-reset" => templates::password_reset(
            &meta,
            &c,
            &rec,
            &issue_with_email(&c, &rec, TokenKind::PasswordReset),
        ),
        "email-change" => {
            let mut extra = Map::new();
            extra.insert("email".into(), json!(email));
            extra.insert("newEmail".into(), json!(email));
            let token = issue(&c, &rec, TokenKind::EmailChange, extra);
            templates::email_change(&meta, &c, &rec, &email, &token)
        }
        "otp" => templates::otp(&meta, &c, &rec, "_PB_TEST_OTP_ID_", "123456"),
        _ => {
            let info = format!(
                "{} - TEST_IP TEST_USER_AGENT",
                crate::records::validate::now_string()
            );
            templates::auth_alert(&meta, &c, &rec, &info)
        }
    };
    st.mailer.send_now(&msg).await.map_err(|e| {
        ApiError::bad_request(format!("Failed to send the test email. Raw error: \n{e}"))
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The mail outbox: what this node still has to send (`pending`, with its attempts and last
/// error) and what it gave up on (`failed`).
pub async fn mail_outbox(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let items = st.store.read_raw(|conn| mails::list(conn, 500)).await?;
    let count = |status: &str| items.iter().filter(|m| m.status == status).count();
    Ok(Json(json!({
        "pending": count("pending"),
        "failed": count("failed"),
        "items": items,
    })))
}

/// Hands the settings the request logger reads to it (at start and after every change; the
/// client IP it logs comes from the guard, which reads `trustedProxy`).
pub async fn apply(st: &AppState, s: &crate::settings::Settings) {
    if let Err(e) = st
        .logs
        .configure(crate::store::logs::LogSettings::from_settings(&s.to_json()))
        .await
    {
        tracing::warn!(error = %e, "could not apply the new log settings");
    }
}
