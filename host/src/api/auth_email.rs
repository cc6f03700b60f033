//! The email flows of auth collections, as PocketBase serves them: `request-verification` /
//! `confirm-verification`, `request-password-reset` / `confirm-password-reset`,
//! `request-email-change` / `confirm-email-change`.
//!
//! Requests answer 204 whether or not the email belongs to anyone (no address enumeration) and
//! queue the mail in the node's outbox, so only this node sends it. Confirms verify the token
//! against the record as stored here: the token secrets travel with the collection and the
//! records replicate, so a token mailed by one node is accepted on every node.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::busy;
use super::auth_flow::{
    auth_collection, body_text, check_email, field_error, find_by_email, invalid_form, issue,
    issue_with_email, record_by_token,
};
use super::error::{ApiError, ApiResult};
use super::extract::Input;
use super::guard::ClientIp;
use crate::access::Auth;
use crate::auth::{gate, password};
use crate::mail::message::AppMeta;
use crate::mail::{Message, templates};
use crate::records::validate::Access;
use crate::store::schema::{Collection, FieldKind, TokenKind};
use crate::store::{Record, records, settings};

const SUPERUSERS: &str = "_superusers";

fn text(rec: &Record, key: &str) -> String {
    rec.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn one_error(key: &str, code: &str, message: &str) -> ApiError {
    let mut data = Map::new();
    data.insert(key.into(), field_error(code, message));
    invalid_form(data)
}

fn email_form(body: &Map<String, Value>, key: &str) -> ApiResult<String> {
    let email = body_text(body, key);
    match check_email(&email) {
        Some(err) => {
            let mut data = Map::new();
            data.insert(key.into(), err);
            Err(invalid_form(data))
        }
        None => Ok(email),
    }
}

async fn app_meta(st: &AppState) -> ApiResult<AppMeta> {
    let s = st.store.read(|conn, _| settings::load(conn)).await?;
    Ok(AppMeta::from_settings(&s))
}

/// Queues `msg` (kind `kind`) in the outbox and wakes the sender.
async fn send(st: &AppState, kind: &'static str, msg: Message) -> ApiResult<()> {
    st.mailer.enqueue(kind, msg).await?;
    Ok(())
}

fn resend_key(kind: &str, c: &Collection, rec: &Record) -> String {
    format!("{kind}:{}:{}", c.id, text(rec, "id"))
}

pub async fn request_verification(
    State(st): State<AppState>,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<StatusCode> {
    let c = auth_collection(&st, &coll)?;
    if c.name == SUPERUSERS {
        return Err(ApiError::bad_request(
            "All superusers are verified by default.",
        ));
    }
    let email = email_form(&body, "email")?;
    let Some(rec) = find_by_email(&st, &c, &email).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let key = resend_key("verification", &c, &rec);
    if rec.get("verified") == Some(&Value::Bool(true)) || st.resend.active(&key) {
        return Ok(StatusCode::NO_CONTENT);
    }
    let token = issue_with_email(&c, &rec, TokenKind::Verification);
    let msg = templates::verification(&app_meta(&st).await?, &c, &rec, &token);
    send(&st, "verification", msg).await?;
    st.resend.mark(key);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn confirm_verification(
    State(st): State<AppState>,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<StatusCode> {
    let c = auth_collection(&st, &coll)?;
    if c.name == SUPERUSERS {
        return Err(ApiError::bad_request(
            "All superusers are verified by default.",
        ));
    }
    let token = body_text(&body, "token");
    if token.is_empty() {
        return Err(one_error(
            "token",
            "validation_required",
            "Cannot be blank.",
        ));
    }
    let claimed = crate::auth::jwt::peek_map(&token)
        .ok()
        .and_then(|m| m.get("email").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    if claimed.is_empty() {
        return Err(one_error(
            "token",
            "validation_invalid_token_claims",
            "Missing email token claim.",
        ));
    }
    let (tc, rec) = token_record(&st, &c, &token, TokenKind::Verification).await?;
    if text(&rec, "email") != claimed {
        return Err(one_error(
            "token",
            "validation_token_email_mismatch",
            "The record email doesn't match with the requested token claims.",
        ));
    }
    if rec.get("verified") != Some(&Value::Bool(true)) {
        let mut input = Map::new();
        input.insert("verified".into(), json!(true));
        let opts = tc.auth.clone().unwrap_or_default();
        // As PocketBase: without password sign-in, a verified upgrade gets a random password,
        // so a password set by whoever pre-created the account is useless.
        let hash = if opts.password_auth.enabled {
            None
        } else {
            Some(random_password(&mut input).await)
        };
        update(
            &st,
            &tc,
            &rec,
            input,
            hash,
            "An error occurred while saving the verified state.",
        )
        .await?;
    }
    st.resend.clear(&resend_key("verification", &tc, &rec));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn request_password_reset(
    State(st): State<AppState>,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<StatusCode> {
    let c = auth_collection(&st, &coll)?;
    if !c.auth.clone().unwrap_or_default().password_auth.enabled {
        return Err(ApiError::bad_request(
            "The collection is not configured to allow password authentication.",
        ));
    }
    let email = email_form(&body, "email")?;
    let Some(rec) = find_by_email(&st, &c, &email).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let key = resend_key("passwordReset", &c, &rec);
    if st.resend.active(&key) {
        return Ok(StatusCode::NO_CONTENT);
    }
    let token = issue_with_email(&c, &rec, TokenKind::PasswordReset);
    let msg = templates::password_reset(&app_meta(&st).await?, &c, &rec, &token);
    send(&st, "password-reset", msg).await?;
    st.resend.mark(key);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn confirm_password_reset(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<StatusCode> {
    let c = auth_collection(&st, &coll)?;
    let token = body_text(&body, "token");
    let pass = body_text(&body, "password");
    let confirm = body_text(&body, "passwordConfirm");
    let min = c
        .field("password")
        .and_then(|f| match &f.kind {
            FieldKind::Password(o) if o.min > 0 => Some(o.min),
            _ => None,
        })
        .unwrap_or(1);
    let mut errors = Map::new();
    let required = || field_error("validation_required", "Cannot be blank.");
    let found = if token.is_empty() {
        errors.insert("token".into(), required());
        None
    } else {
        match token_record(&st, &c, &token, TokenKind::PasswordReset).await {
            Ok(found) => Some(found),
            Err(e) => {
                errors.extend(e.data.as_object().cloned().unwrap_or_default());
                None
            }
        }
    };
    let len = pass.chars().count() as i64;
    if pass.is_empty() {
        errors.insert("password".into(), required());
    } else if len < min || len > 255 {
        errors.insert(
            "password".into(),
            field_error(
                "validation_length_out_of_range",
                &format!("The length must be between {min} and 255."),
            ),
        );
    }
    if confirm.is_empty() {
        errors.insert("passwordConfirm".into(), required());
    } else if confirm != pass {
        errors.insert(
            "passwordConfirm".into(),
            field_error("validation_values_mismatch", "Values don't match."),
        );
    }
    let Some((tc, rec)) = found.filter(|_| errors.is_empty()) else {
        return Err(invalid_form(errors));
    };
    let mut input = Map::new();
    input.insert("password".into(), json!(pass));
    input.insert("passwordConfirm".into(), json!(pass));
    // The reset proves the mailbox: an unverified record whose email is still the one the token
    // was mailed to becomes verified.
    let claimed = crate::auth::jwt::peek_map(&token)
        .ok()
        .and_then(|m| m.get("email").and_then(Value::as_str).map(String::from));
    if rec.get("verified") != Some(&Value::Bool(true))
        && claimed.as_deref() == Some(text(&rec, "email").as_str())
    {
        input.insert("verified".into(), json!(true));
    }
    let key = text(&rec, "id");
    let hash = gate::run(&st.guard.passwords, &ip, &key, move || {
        password::hash(&pass)
    })
    .await
    .map_err(busy)?;
    update(
        &st,
        &tc,
        &rec,
        input,
        Some(hash),
        "Failed to set new password.",
    )
    .await?;
    st.resend.clear(&resend_key("passwordReset", &tc, &rec));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn request_email_change(
    State(st): State<AppState>,
    auth: Auth,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<StatusCode> {
    let c = auth_collection(&st, &coll)?;
    let Auth::Record { collection, record } = &auth else {
        return Err(ApiError::unauthorized());
    };
    if collection.id != c.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The authorized record is not allowed to perform this action.",
        ));
    }
    if c.name == SUPERUSERS {
        return Err(ApiError::bad_request(
            "All superusers can change their emails directly.",
        ));
    }
    let new_email = email_form(&body, "newEmail")?;
    if new_email == text(record, "email") {
        return Err(one_error(
            "newEmail",
            "validation_not_in_invalid",
            "Must not be in list.",
        ));
    }
    if let Some(other) = find_by_email(&st, &c, &new_email).await?
        && text(&other, "id") != text(record, "id")
    {
        return Err(one_error(
            "newEmail",
            "validation_invalid_new_email",
            "Invalid new email address.",
        ));
    }
    let mut extra = Map::new();
    extra.insert("email".into(), json!(text(record, "email")));
    extra.insert("newEmail".into(), json!(new_email));
    let token = issue(&c, record, TokenKind::EmailChange, extra);
    let msg = templates::email_change(&app_meta(&st).await?, &c, record, &new_email, &token);
    send(&st, "email-change", msg).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn confirm_email_change(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<StatusCode> {
    let c = auth_collection(&st, &coll)?;
    if c.name == SUPERUSERS {
        return Err(ApiError::bad_request(
            "All superusers can change their emails directly.",
        ));
    }
    let token = body_text(&body, "token");
    let pass = body_text(&body, "password");
    let mut errors = Map::new();
    let required = || field_error("validation_required", "Cannot be blank.");
    let mut found = None;
    if token.is_empty() {
        errors.insert("token".into(), required());
    } else {
        match email_change_target(&st, &c, &token).await {
            Ok(f) => found = Some(f),
            Err(e) => {
                errors.insert("token".into(), e);
            }
        }
    }
    if pass.is_empty() {
        errors.insert("password".into(), required());
    } else if pass.chars().count() > 100 {
        errors.insert(
            "password".into(),
            field_error(
                "validation_length_out_of_range",
                "The length must be between 1 and 100.",
            ),
        );
    } else if let Some((_, rec, _)) = &found {
        let (p, hash, key) = (pass.clone(), text(rec, "password"), text(rec, "id"));
        let ok = gate::run(&st.guard.passwords, &ip, &key, move || {
            password::verify(&p, &hash)
        })
        .await
        .map_err(busy)?;
        if !ok {
            errors.insert(
                "password".into(),
                field_error(
                    "validation_invalid_password",
                    "Missing or invalid auth record password.",
                ),
            );
        }
    } else {
        errors.insert(
            "password".into(),
            field_error(
                "validation_invalid_password",
                "Missing or invalid auth record password.",
            ),
        );
    }
    let Some((tc, rec, new_email)) = found.filter(|_| errors.is_empty()) else {
        return Err(invalid_form(errors));
    };
    let mut input = Map::new();
    input.insert("email".into(), json!(new_email));
    input.insert("verified".into(), json!(true));
    update(
        &st,
        &tc,
        &rec,
        input,
        None,
        "Failed to confirm email change.",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The record and new address of an email-change token, or the token's form error.
async fn email_change_target(
    st: &AppState,
    c: &Arc<Collection>,
    token: &str,
) -> Result<(Arc<Collection>, Record, String), Value> {
    let new_email = crate::auth::jwt::peek_map(token)
        .ok()
        .and_then(|m| m.get("newEmail").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    if new_email.is_empty() {
        return Err(field_error(
            "validation_invalid_token_payload",
            "Invalid token payload - newEmail must be set.",
        ));
    }
    let (tc, rec) = token_record(st, c, token, TokenKind::EmailChange)
        .await
        .map_err(|e| e.data.get("token").cloned().unwrap_or(Value::Null))?;
    let taken = find_by_email(st, c, &new_email)
        .await
        .map_err(|_| field_error("validation_invalid_token", "Invalid or expired token."))?;
    if taken.is_some() {
        return Err(field_error(
            "validation_invalid_token_email",
            "The new email address is invalid.",
        ));
    }
    Ok((tc, rec, new_email))
}

/// The record of a token of `kind` meant for collection `c`, or the `token` form error.
async fn token_record(
    st: &AppState,
    c: &Arc<Collection>,
    token: &str,
    kind: TokenKind,
) -> ApiResult<(Arc<Collection>, Record)> {
    let Some((tc, rec, _)) = record_by_token(st, token, kind).await else {
        return Err(one_error(
            "token",
            "validation_invalid_token",
            "Invalid or expired token.",
        ));
    };
    if tc.id != c.id {
        return Err(one_error(
            "token",
            "validation_token_collection_mismatch",
            "The provided token is for different auth collection.",
        ));
    }
    Ok((tc, rec))
}

/// A random 30-character password put in `input`, returned hashed.
pub async fn random_password(input: &mut Map<String, Value>) -> String {
    let pass = crate::store::schema::random_string(30, crate::store::schema::ALNUM);
    input.insert("password".into(), json!(pass));
    input.insert("passwordConfirm".into(), json!(pass));
    tokio::task::spawn_blocking(move || password::hash(&pass))
        .await
        .unwrap_or_default()
}

/// Writes `input` over the stored record as the system would (a manager's rights: email,
/// verified and password without the old one); a new password or email gets a new tokenKey,
/// which revokes the record's earlier tokens, the confirm token included.
pub async fn update(
    st: &AppState,
    c: &Arc<Collection>,
    rec: &Record,
    input: Map<String, Value>,
    hash: Option<String>,
    action: &'static str,
) -> ApiResult<Record> {
    let (cid, id) = (c.id.clone(), text(rec, "id"));
    st.store
        .write(move |ctx| records::update(ctx, &cid, &id, &input, hash, Access::Manager))
        .await
        .map_err(|e| ApiError::from_store(e, action))
}
