//! The HTTP API: PocketBase's routes on axum. Handlers translate HTTP to store calls and back;
//! this module knows nothing of wasmtime or NATS.

pub mod auth;
pub mod auth_email;
pub mod auth_flow;
pub mod auth_oauth2;
pub mod auth_otp;
pub mod backups;
pub mod batch;
pub mod collections;
pub mod crons;
pub mod error;
pub mod extract;
pub mod guard;
pub mod logs;
pub mod plugins;
pub mod realtime;
pub mod records;
pub mod rooms;
pub mod settings;
pub mod snapshots;
pub mod sql;
pub mod sync;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use serde_json::json;

use crate::access::AuthCache;
use crate::plugins::Plugins;
use crate::realtime::Hub;
use crate::store::Store;
use error::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth_cache: Arc<AuthCache>,
    pub hub: Arc<Hub>,
    pub plugins: Plugins,
    /// Replication, on a node that replicates.
    pub sync: Option<crate::sync::Sync>,
    /// Backups (`/api/backups`): local files, or the cluster's snapshot bucket.
    pub backups: Arc<crate::snapshot::backups::Backups>,
    /// Connection cap, client IPs, rate limits and the password gate.
    pub guard: Arc<guard::Guard>,
    /// Websocket rooms.
    pub rooms: crate::rooms::Rooms,
    /// The node's mail outbox and sender.
    pub mailer: crate::mail::Mailer,
    /// Recent verification / password-reset requests (PocketBase's resend guard).
    pub resend: Arc<auth_flow::ResendLimiter>,
    /// HTTP client for OAuth2 providers.
    pub http: reqwest::Client,
    /// This node's request logs (node-local, `auxiliary.db`).
    pub logs: crate::store::logs::Logs,
    /// This node's scheduled jobs.
    pub crons: crate::cron::Crons,
}

/// Builds the router with a request body limit of `body_limit` bytes.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/api/health", get(health).head(health))
        .route(
            "/api/collections",
            get(collections::list).post(collections::create),
        )
        .route("/api/collections/import", put(collections::import))
        .route(
            "/api/collections/meta/validate",
            post(collections::validate),
        )
        .route(
            "/api/collections/meta/scaffolds",
            get(collections::scaffolds),
        )
        .route(
            "/api/collections/meta/dry-run-view",
            post(collections::dry_run_view),
        )
        .route(
            "/api/collections/{collection}/truncate",
            delete(collections::truncate),
        )
        .route(
            "/api/collections/{collection}",
            get(collections::view)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route(
            "/api/collections/{collection}/records",
            get(records::list).post(records::create),
        )
        .route(
            "/api/collections/{collection}/records/{id}",
            get(records::view)
                .patch(records::update)
                .delete(records::delete),
        )
        .route(
            "/api/collections/{collection}/auth-with-password",
            post(auth::with_password),
        )
        .route(
            "/api/collections/{collection}/auth-refresh",
            post(auth::refresh),
        )
        .route(
            "/api/collections/{collection}/auth-methods",
            get(auth::methods),
        )
        .route(
            "/api/collections/{collection}/request-verification",
            post(auth_email::request_verification),
        )
        .route(
            "/api/collections/{collection}/confirm-verification",
            post(auth_email::confirm_verification),
        )
        .route(
            "/api/collections/{collection}/request-password-reset",
            post(auth_email::request_password_reset),
        )
        .route(
            "/api/collections/{collection}/confirm-password-reset",
            post(auth_email::confirm_password_reset),
        )
        .route(
            "/api/collections/{collection}/request-email-change",
            post(auth_email::request_email_change),
        )
        .route(
            "/api/collections/{collection}/confirm-email-change",
            post(auth_email::confirm_email_change),
        )
        .route(
            "/api/collections/{collection}/request-otp",
            post(auth_otp::request_otp),
        )
        .route(
            "/api/collections/{collection}/auth-with-otp",
            post(auth_otp::auth_with_otp),
        )
        .route(
            "/api/collections/{collection}/auth-with-oauth2",
            post(auth_oauth2::auth_with_oauth2),
        )
        .route(
            "/api/oauth2-redirect",
            get(auth_oauth2::redirect).post(auth_oauth2::redirect),
        )
        .route("/api/settings/test/email", post(settings::test_email))
        .route("/api/mails", get(settings::mail_outbox))
        .route(
            "/api/realtime",
            get(realtime::connect).post(realtime::subscribe),
        )
        .route("/api/batch", post(batch::batch))
        .route("/api/plugins", get(plugins::list).post(plugins::upload))
        .route("/api/plugins/bindings", get(plugins::bindings))
        .route("/api/plugins/outbound", get(plugins::outbound))
        .route("/api/plugins/unbind", post(plugins::unbind))
        .route("/api/plugins/rollback", post(plugins::rollback))
        .route(
            "/api/plugins/{name}",
            get(plugins::show).delete(plugins::delete),
        )
        .route("/api/plugins/{name}/bind", post(plugins::bind))
        .route(
            "/api/plugins/{name}/resolve",
            post(plugins::dry_run_resolve),
        )
        .route("/api/settings", get(settings::get).patch(settings::update))
        .route("/api/backups", get(backups::list).post(backups::create))
        .route(
            "/api/backups/upload",
            post(backups::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/backups/{key}",
            get(backups::download).delete(backups::delete),
        )
        .route("/api/backups/{key}/restore", post(backups::restore))
        .route("/api/files/token", post(backups::file_token))
        .route("/api/logs", get(logs::list).delete(logs::clear))
        .route("/api/logs/stats", get(logs::stats))
        .route("/api/logs/{id}", get(logs::view))
        .route("/api/sql", post(sql::run))
        .route("/api/crons", get(crons::list))
        .route("/api/crons/{id}", post(crons::run))
        .route("/api/sync/status", get(sync::status))
        .route("/api/sync/ready", get(snapshots::ready))
        .route(
            "/api/sync/snapshots",
            get(snapshots::list).post(snapshots::create),
        )
        .route("/api/sync/snapshots/{name}/verify", post(snapshots::verify))
        .route("/api/sync/dead-letters/{seq}", get(sync::dead_letter))
        .route("/metrics", get(sync::metrics))
        .route("/api/realtime/ws", get(realtime::websocket))
        .route("/_", get(crate::dashboard::redirect))
        .route("/_/", get(crate::dashboard::index))
        .route("/_/{*path}", get(crate::dashboard::file))
        .route("/api/rooms/{collection}/{id}", get(rooms::join))
        .route("/api/rooms/{collection}/{id}/link", get(rooms::link))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            guard::body_limit(body_limit, req, next)
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            logs::log_requests,
        ))
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"message": "API is healthy.", "code": 200, "data": {}}))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "The requested resource wasn't found.",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
}
