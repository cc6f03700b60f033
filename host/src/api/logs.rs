//! Request logs: the middleware that records every request as PocketBase's activity logger
//! does, and the superuser API over them (`/api/logs`, `/api/logs/stats`, `/api/logs/{id}`,
//! `DELETE /api/logs`). Logs are node-local (`store::logs`, in `auxiliary.db`).
//!
//! The middleware does no I/O: it builds the entry after the response and queues it
//! (`Logs::record` never blocks). Who made the request comes from the `Auth` extractor through
//! an [`AuthSlot`] in the request's extensions, so the token is not verified twice; the error
//! of a failed request from the [`LoggedError`] that `ApiError` leaves on its response.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::access::Auth;
use crate::access::present::FieldsPicker;
use crate::filter::{self, CollectionLookup};
use crate::store::Collection;
use crate::store::logs::{self, Entry, LogQuery, LogSettings};

/// PocketBase's level of a request that failed (slog's ERROR).
const LEVEL_ERROR: i64 = 8;

/// Filled by the `Auth` extractor: the collection name and id of the caller.
#[derive(Default)]
pub struct AuthSlot(Mutex<Option<(String, String)>>);

impl AuthSlot {
    pub fn set(&self, auth: &Auth) {
        if let Auth::Record { collection, .. } = auth {
            let id = auth.id().unwrap_or_default().to_string();
            *self.0.lock() = Some((collection.name.clone(), id));
        }
    }
}

/// What an error response carries for the log (set by `ApiError::into_response`).
#[derive(Debug, Clone)]
pub struct LoggedError {
    pub message: String,
    pub data: Value,
}

/// Cuts `s` to `max` bytes, marked with `...`, as PocketBase does.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The middleware: runs the request, then queues its log entry.
pub async fn log_requests(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let settings = st.logs.settings();
    if settings.max_days == 0 {
        return next.run(req).await;
    }
    let started = Instant::now();
    let slot = Arc::new(AuthSlot::default());
    req.extensions_mut().insert(slot.clone());
    // Only what the entry needs is copied out of the request.
    let headers = req.headers();
    let peer = req
        .extensions()
        .get::<ConnectInfo<crate::net::ConnInfo>>()
        .map(|c| c.0.remote.ip());
    let remote = peer.map(|ip| ip.to_string()).unwrap_or_default();
    let seen = Seen {
        method: cut(&req.method().as_str().to_ascii_uppercase(), 50),
        uri: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
        referer: cut(&header_text(headers, header::REFERER), 2000),
        user_agent: cut(&header_text(headers, header::USER_AGENT), 2000),
        token: super::extract::token_in(headers),
        user_ip: if settings.log_ip {
            // The guard's reading of `trustedProxy`, so logs and rate limits agree on the IP.
            peer.map(|ip| st.guard.client_ip(headers, ip))
                .unwrap_or_default()
        } else {
            String::new()
        },
        remote,
    };
    let resp = next.run(req).await;
    let status = resp.status();
    let error = resp.extensions().get::<LoggedError>().cloned();
    // The logs API does not log its own successful reads (PocketBase's SkipSuccessActivityLog).
    if error.is_none() && seen.uri.starts_with("/api/logs") {
        return resp;
    }
    let level = if error.is_some() { LEVEL_ERROR } else { 0 };
    if !settings.wants(level) {
        return resp;
    }
    let exec_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut auth = slot.0.lock().clone();
    // A handler that never asked who is calling: resolve the token (usually cached).
    if auth.is_none()
        && let Some(token) = &seen.token
        && let Some(a) = crate::access::authenticate(&st.store, &st.auth_cache, token).await
    {
        let s = AuthSlot::default();
        s.set(&a);
        auth = s.0.into_inner();
    }
    st.logs
        .record(entry(&settings, seen, status, exec_ms, auth, error));
    resp
}

/// The parts of a request its log entry needs, taken before the handler consumes it.
struct Seen {
    method: String,
    uri: String,
    referer: String,
    user_agent: String,
    token: Option<String>,
    user_ip: String,
    remote: String,
}

fn entry(
    settings: &LogSettings,
    req: Seen,
    status: StatusCode,
    exec_ms: f64,
    auth: Option<(String, String)>,
    error: Option<LoggedError>,
) -> Entry {
    let level = if error.is_some() { LEVEL_ERROR } else { 0 };
    let url = cut(&req.uri, 3000);
    let message = format!("{} {}", req.method, percent_encoding_decode(&url));
    let mut data = Map::new();
    data.insert("type".into(), json!("request"));
    data.insert("execTime".into(), json!(exec_ms));
    if let Some(e) = error {
        let empty = e.data.as_object().is_none_or(Map::is_empty);
        data.insert("error".into(), json!(e.message));
        data.insert("details".into(), if empty { Value::Null } else { e.data });
    }
    data.insert("url".into(), json!(url));
    data.insert("method".into(), json!(req.method));
    data.insert("status".into(), json!(status.as_u16()));
    data.insert("referer".into(), json!(req.referer));
    data.insert("userAgent".into(), json!(req.user_agent));
    match auth {
        Some((collection, id)) => {
            data.insert("auth".into(), json!(collection));
            if settings.log_auth_id {
                data.insert("authId".into(), json!(id));
            }
        }
        None => {
            data.insert("auth".into(), json!(""));
        }
    }
    if settings.log_ip {
        data.insert("userIP".into(), json!(req.user_ip));
        data.insert("remoteIP".into(), json!(req.remote));
    }
    Entry {
        level,
        message,
        data,
        created: crate::records::validate::now_string(),
    }
}

/// `%XX` sequences decoded (PocketBase's `url.PathUnescape`); the text as is when invalid.
fn percent_encoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return s.to_string(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

// ----- the logs API ----------------------------------------------------------------------

/// Only the `_logs` pseudo-collection: filters cannot reach any real collection.
struct LogsLookup(Collection);

impl CollectionLookup for LogsLookup {
    fn collection(&self, name_or_id: &str) -> Option<&Collection> {
        (name_or_id == self.0.name).then_some(&self.0)
    }
}

/// PocketBase answers any bad logs query with its generic 400.
fn bad_query(e: impl std::fmt::Display) -> ApiError {
    tracing::debug!(error = %e, "logs query refused");
    ApiError::bad_request("Something went wrong while processing your request.")
}

fn where_clause(
    lookup: &LogsLookup,
    filter_src: &str,
) -> Result<(String, Vec<filter::SqlParam>), ApiError> {
    let q = filter::Query {
        lookup,
        collection: &lookup.0,
        request: None,
        allow_request_refs: false,
        allow_hidden: true,
        now: chrono::Utc::now(),
    };
    filter::filter_sql(filter_src, &q).map_err(bad_query)
}

/// `GET /api/logs`: PocketBase's list (`page`, `perPage`, `sort`, `filter`, `skipTotal`,
/// `fields`) over `id`, `created`, `level`, `message`, `data` and `data.*`.
pub async fn list(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let lookup = LogsLookup(logs::logs_collection());
    let (where_sql, params) = where_clause(&lookup, q.get("filter").map_or("", String::as_str))?;
    let (order_sql, order_params) = match q.get("sort").filter(|s| !s.trim().is_empty()) {
        Some(sort) => {
            let fq = filter::Query {
                lookup: &lookup,
                collection: &lookup.0,
                request: None,
                allow_request_refs: false,
                allow_hidden: true,
                now: chrono::Utc::now(),
            };
            filter::sort_sql(sort, &fq).map_err(bad_query)?
        }
        None => (String::new(), Vec::new()),
    };
    let page = q
        .get("page")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let per_page = match q.get("perPage").and_then(|p| p.parse::<i64>().ok()) {
        Some(n) if n > 0 => n.min(1000),
        _ => 30,
    };
    let skip_total = matches!(
        q.get("skipTotal").map(String::as_str),
        Some("1" | "true" | "t" | "TRUE" | "True")
    );
    let query = LogQuery {
        where_sql,
        params,
        order_sql,
        order_params,
        limit: per_page,
        offset: (page - 1).saturating_mul(per_page),
        count: !skip_total,
    };
    let (mut items, total) = st
        .logs
        .read(move |conn| logs::list(conn, &query))
        .await
        .map_err(bad_query)?;
    if let Some(p) = q.get("fields").and_then(|f| FieldsPicker::parse(f)) {
        items = items.into_iter().map(|v| p.apply(v)).collect();
    }
    let (total_items, total_pages) = match total {
        Some(t) => (t, (t + per_page - 1) / per_page),
        None => (-1, -1),
    };
    Ok(Json(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total_items,
        "totalPages": total_pages,
        "items": items,
    })))
}

/// `GET /api/logs/stats`: entries per hour, optionally filtered.
pub async fn stats(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let lookup = LogsLookup(logs::logs_collection());
    let (where_sql, params) = where_clause(&lookup, q.get("filter").map_or("", String::as_str))
        .map_err(|_| ApiError::bad_request("Invalid filter format."))?;
    let rows = st
        .logs
        .read(move |conn| logs::stats(conn, &where_sql, &params))
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "logs stats failed");
            ApiError::bad_request("Failed to generate logs stats.")
        })?;
    Ok(Json(Value::Array(rows)))
}

/// `GET /api/logs/{id}`.
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    st.logs
        .read(move |conn| logs::get(conn, &id))
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// `DELETE /api/logs`: deletes every entry (the retention setting is unchanged).
pub async fn clear(State(st): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    st.logs.clear().await.map_err(|e| {
        tracing::warn!(error = %e, "could not clear the logs");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to truncate all logs.",
        )
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_cut_and_unescaped_like_pocketbase() {
        assert_eq!(cut("abcdef", 3), "abc...");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(
            percent_encoding_decode("/api/x?filter=a%3D%27b%27"),
            "/api/x?filter=a='b'"
        );
        assert_eq!(percent_encoding_decode("/bad%zz"), "/bad%zz");
    }
}
