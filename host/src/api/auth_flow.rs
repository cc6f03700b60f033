//! What every auth flow shares: issuing and checking the kinds of record token (auth,
//! verification, password reset, email change), finding an auth record by email, form errors
//! in PocketBase's shape, the per-node resend limiter, and the final auth response — the
//! collection's `authRule`, the MFA step (`mfaId`), the token and the record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::access::rules::{request_info, rule_condition};
use crate::access::{Auth, present};
use crate::auth::jwt;
use crate::records::validate::Access;
use crate::store::schema::{Collection, TokenKind, quote_ident};
use crate::store::{Record, StoreError, records};

pub use crate::store::MFAS;

/// Looks up an auth collection for the auth flows: 404 when missing or not an auth collection,
/// as PocketBase answers these endpoints.
pub fn auth_collection(st: &AppState, name: &str) -> ApiResult<Arc<Collection>> {
    st.store
        .schema()
        .get(name)
        .filter(|c| c.is_auth())
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "Missing or invalid auth collection context.",
            )
        })
}

fn text(rec: &Record, key: &str) -> String {
    rec.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Issues a token of `kind` for `rec`: `{id, type, collectionId, ...extra, exp}`, signed with
/// the record's `tokenKey` plus the collection's secret for that kind.
pub fn issue(c: &Collection, rec: &Record, kind: TokenKind, extra: Map<String, Value>) -> String {
    let opts = c.auth.clone().unwrap_or_default();
    let mut claims = Map::new();
    claims.insert("collectionId".into(), json!(c.id));
    claims.insert("id".into(), json!(text(rec, "id")));
    claims.insert("type".into(), json!(kind.claim()));
    claims.extend(extra);
    claims.insert(
        "exp".into(),
        json!(chrono::Utc::now().timestamp() + opts.duration(kind)),
    );
    let key = format!("{}{}", text(rec, "tokenKey"), opts.secret(kind));
    jwt::sign(&claims, key.as_bytes())
}

/// A token of `kind` carrying the record's current email.
pub fn issue_with_email(c: &Collection, rec: &Record, kind: TokenKind) -> String {
    let mut extra = Map::new();
    extra.insert("email".into(), json!(text(rec, "email")));
    issue(c, rec, kind, extra)
}

/// The record a token of `kind` was issued to, with the token's claims, when its signature
/// (record `tokenKey` + collection secret: a changed password or email revokes it) and expiry
/// hold. Any failure is `None`.
pub async fn record_by_token(
    st: &AppState,
    token: &str,
    kind: TokenKind,
) -> Option<(Arc<Collection>, Record, Map<String, Value>)> {
    let claims = jwt::peek_map(token).ok()?;
    if claims.get("type").and_then(Value::as_str) != Some(kind.claim()) {
        return None;
    }
    let cid = claims.get("collectionId").and_then(Value::as_str)?;
    let id = claims.get("id").and_then(Value::as_str)?.to_string();
    let c = st
        .store
        .schema()
        .get(cid)
        .filter(|c| c.is_auth())
        .cloned()?;
    let c2 = c.clone();
    let rec = st
        .store
        .read(move |conn, _| records::get(conn, &c2, &id))
        .await
        .ok()??;
    let opts = c.auth.clone()?;
    let key = format!("{}{}", text(&rec, "tokenKey"), opts.secret(kind));
    let claims = jwt::verify_map(token, key.as_bytes(), chrono::Utc::now().timestamp()).ok()?;
    Some((c, rec, claims))
}

/// The auth record of `c` with exactly this email (PocketBase matches case-sensitively unless
/// the email index says `COLLATE NOCASE`).
pub async fn find_by_email(
    st: &AppState,
    c: &Arc<Collection>,
    email: &str,
) -> ApiResult<Option<Record>> {
    let nocase = c.indexes.iter().any(|i| {
        let l = i.to_ascii_lowercase();
        l.contains("unique") && l.contains("`email`") && l.contains("nocase")
    });
    let (c2, email) = (c.clone(), email.to_string());
    Ok(st
        .store
        .read(move |conn, _| {
            let q = records::ListQuery {
                where_sql: format!(
                    "{}.`email` = ?{}",
                    c2.table(),
                    if nocase { " COLLATE NOCASE" } else { "" }
                ),
                params: vec![crate::filter::SqlParam::Text(email)],
                limit: 1,
                ..Default::default()
            };
            Ok(records::list(conn, &c2, &q)?.0.pop())
        })
        .await?)
}

/// One field's form error.
pub fn field_error(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// PocketBase's answer to a form that failed validation.
pub fn invalid_form(data: Map<String, Value>) -> ApiError {
    ApiError::bad_request("An error occurred while validating the submitted data.")
        .with_data(Value::Object(data))
}

/// The text of a body key ("" when missing or not text).
pub fn body_text(body: &Map<String, Value>, key: &str) -> String {
    body.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Checks an email form value as PocketBase does (required, at most 255, an address).
pub fn check_email(value: &str) -> Option<Value> {
    if value.is_empty() {
        return Some(field_error("validation_required", "Cannot be blank."));
    }
    if value.chars().count() > 255 {
        return Some(field_error(
            "validation_length_out_of_range",
            "The length must be between 1 and 255.",
        ));
    }
    if !crate::records::validate::is_email(value) {
        return Some(field_error(
            "validation_is_email",
            "Must be a valid email address.",
        ));
    }
    None
}

/// Per-node memory of recent requests, PocketBase's "try again later" guard: a second
/// verification or password-reset mail for one record within two minutes is not sent. Like
/// PocketBase's in-memory store it is node-local.
#[derive(Default)]
pub struct ResendLimiter {
    until: Mutex<HashMap<String, Instant>>,
    attempts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl ResendLimiter {
    pub const WINDOW: Duration = Duration::from_secs(120);

    /// Whether `key` was marked within the window.
    pub fn active(&self, key: &str) -> bool {
        let mut map = self.until.lock();
        let now = Instant::now();
        map.retain(|_, until| *until > now);
        map.contains_key(key)
    }

    pub fn mark(&self, key: String) {
        self.until.lock().insert(key, Instant::now() + Self::WINDOW);
    }

    pub fn clear(&self, key: &str) {
        self.until.lock().remove(key);
    }

    /// Counts an attempt at `key`; false once more than `max` fall in one `window` (PocketBase
    /// allows 5 OTP guesses per record per 3 minutes).
    pub fn attempt(&self, key: &str, max: u32, window: Duration) -> bool {
        let mut map = self.attempts.lock();
        let now = Instant::now();
        map.retain(|_, (start, _)| now.duration_since(*start) < window);
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        entry.1 += 1;
        entry.1 <= max
    }
}

/// The request an auth response answers (for `@request` in rules and the `mfaId`).
pub struct Call<'a> {
    /// The client's IP (`guard::ClientIp`), for the password gate.
    pub ip: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: &'a HashMap<String, String>,
    pub body: &'a Map<String, Value>,
}

fn failed_rule() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "The request doesn't satisfy the collection requirements to authenticate.",
    )
}

/// Whether `rule` holds for `rec` with `auth` as `@request.auth`.
async fn rule_holds(
    st: &AppState,
    c: &Arc<Collection>,
    rec: &Record,
    rule: &str,
    call: &Call<'_>,
    context: &str,
) -> ApiResult<bool> {
    let auth = Auth::Record {
        collection: c.clone(),
        record: rec.clone(),
    };
    let mut request = request_info(&auth, call.method, call.query, call.headers, None);
    request["context"] = json!(context);
    let (c2, rule, id) = (c.clone(), rule.to_string(), text(rec, "id"));
    Ok(st
        .store
        .read(
            move |conn, schema| match rule_condition(schema, &c2, &rule, &request)? {
                None => Ok(true),
                Some((sql, params)) => records::matches(conn, &c2, &id, &sql, &params),
            },
        )
        .await?)
}

/// The end of every successful sign-in (`method`: "password", "otp" or "oauth2"): the
/// collection's `authRule` (403 when it refuses), then MFA — a first factor gets 401
/// `{"mfaId"}`, a second one must name that `mfaId` and be a different method — then
/// `{token, record, meta?}`.
pub async fn respond(
    st: &AppState,
    call: &Call<'_>,
    c: &Arc<Collection>,
    rec: Record,
    method: &str,
    meta: Option<Value>,
) -> ApiResult<Response> {
    super::auth::seed_folded(st, c).await?;
    let opts = c.auth.clone().unwrap_or_default();
    let allowed = match &opts.auth_rule {
        None => false,
        Some(rule) if rule.trim().is_empty() => true,
        Some(rule) => rule_holds(st, c, &rec, rule, call, method).await?,
    };
    if !allowed {
        return Err(failed_rule());
    }
    if opts.mfa.enabled
        && let Some(mfa_id) = check_mfa(st, call, c, &rec, method).await?
    {
        return Ok((StatusCode::UNAUTHORIZED, Json(json!({"mfaId": mfa_id}))).into_response());
    }
    let token = issue(c, &rec, TokenKind::Auth, refreshable());
    let auth = Auth::Record {
        collection: c.clone(),
        record: rec.clone(),
    };
    let schema = st.store.schema();
    let mut out = json!({"token": token, "record": present::record(&schema, c, rec, &auth)});
    if let Some(meta) = meta {
        out["meta"] = meta;
    }
    Ok(Json(out).into_response())
}

fn refreshable() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("refreshable".into(), json!(true));
    m
}

/// The MFA step: `Some(mfaId)` when this sign-in is a first factor (an `_mfas` record now
/// remembers it), `None` when no second factor is needed or this one completes it.
async fn check_mfa(
    st: &AppState,
    call: &Call<'_>,
    c: &Arc<Collection>,
    rec: &Record,
    method: &str,
) -> ApiResult<Option<String>> {
    let opts = c.auth.clone().unwrap_or_default();
    let rule = opts.mfa.rule.trim().to_string();
    if !rule.is_empty() && !rule_holds(st, c, rec, &rule, call, method).await? {
        return Ok(None);
    }
    let sent = call
        .query
        .get("mfaId")
        .cloned()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| body_text(call.body, "mfaId"));
    let (cid, rid, method_s) = (c.id.clone(), text(rec, "id"), method.to_string());
    if sent.is_empty() {
        let created = st
            .store
            .write(move |ctx| {
                let mut input = Map::new();
                input.insert("collectionRef".into(), json!(cid));
                input.insert("recordRef".into(), json!(rid));
                input.insert("method".into(), json!(method_s));
                records::create(ctx, MFAS, &input, None, Access::Manager)
            })
            .await
            .map_err(|e| ApiError::from_store(e, "Failed to create MFA record."))?;
        return Ok(Some(text(&created, "id")));
    }
    let lookup = sent.clone();
    let found = st
        .store
        .read(move |conn, schema| {
            let mfas = schema.get(MFAS).cloned().ok_or(StoreError::NotFound)?;
            records::get(conn, &mfas, &lookup)
        })
        .await?;
    let delete = |id: String| async move {
        let _ = st
            .store
            .write(move |ctx| records::delete(ctx, MFAS, &id))
            .await;
    };
    let Some(mfa) = found else {
        return Err(ApiError::bad_request("Invalid or expired MFA session."));
    };
    if older_than(&mfa, opts.mfa.duration) {
        delete(sent).await;
        return Err(ApiError::bad_request("Invalid or expired MFA session."));
    }
    if text(&mfa, "recordRef") != text(rec, "id") || text(&mfa, "collectionRef") != c.id {
        return Err(ApiError::bad_request("Invalid MFA session."));
    }
    if text(&mfa, "method") == method {
        return Err(ApiError::bad_request(
            "A different authentication method is required.",
        ));
    }
    delete(sent).await;
    Ok(None)
}

/// Whether a record's `created` is more than `secs` ago (expired OTPs and MFA sessions).
pub fn older_than(rec: &Record, secs: i64) -> bool {
    crate::records::validate::parse_date(&text(rec, "created"))
        .is_none_or(|created| created + chrono::Duration::seconds(secs) < chrono::Utc::now())
}

/// `identity = value` on a field of an auth collection (password sign-in).
pub fn identity_condition(c: &Collection, field: &str) -> String {
    let collate = if field == "email" {
        " COLLATE NOCASE"
    } else {
        ""
    };
    format!("{}.{} = ?{collate}", c.table(), quote_ident(field))
}
