//! Auth endpoints of auth collections: `auth-with-password`, `auth-refresh`, `auth-methods`.
//! The other sign-in flows (OTP, OAuth2) and the email flows have their own modules; all of
//! them end in `auth_flow::respond`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::auth_flow::{Call, identity_condition, respond};
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::guard::ClientIp;
use super::records::collection;
use crate::access::Auth;
use crate::access::present;
use crate::auth::{gate, password};
use crate::oauth2::{Provider, s256_challenge};
use crate::store::schema::{ALNUM, TokenKind, random_string};
use crate::store::{Collection, Record, Schema, StoreError, records};

fn auth_collection(schema: &Schema, name: &str) -> ApiResult<std::sync::Arc<Collection>> {
    let c = collection(schema, name)?;
    if !c.is_auth() {
        return Err(ApiError::bad_request(
            "The collection is not an auth collection.",
        ));
    }
    Ok(c)
}

/// On a replicating node that has not folded the cluster's `users` seed yet, the bootstrap
/// `users` collection still has this node's own token secret, which the seed will replace:
/// a token issued now would stop working moments later. Refuse with 503 until the seed is in.
pub(super) async fn seed_folded(st: &AppState, c: &Collection) -> ApiResult<()> {
    let Some(sync) = &st.sync else {
        return Ok(());
    };
    if c.id != crate::store::BOOTSTRAP_USERS_ID || sync.users_seeded().await {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "This node has not received the cluster's users collection from the replication log yet \
         (is NATS reachable?); logins to users are refused until it has, so tokens stay valid \
         on every node. Try again in a moment.",
    ))
}

/// This client already has as many password checks in flight as it may (see `auth::gate`).
pub fn busy(_: gate::Busy) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "Too many password checks in flight for this client; try again shortly.",
    )
}

/// Issues an auth token for `rec`, signed with its tokenKey plus the collection secret.
pub fn issue_token(c: &Collection, rec: &Record) -> String {
    let mut extra = serde_json::Map::new();
    extra.insert("refreshable".into(), json!(true));
    super::auth_flow::issue(c, rec, TokenKind::Auth, extra)
}

pub async fn with_password(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Path(coll): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let schema = st.store.schema();
    let c = auth_collection(&schema, &coll)?;
    seed_folded(&st, &c).await?;
    let opts = c.auth.clone().unwrap_or_default();
    let failed = || ApiError::bad_request("Failed to authenticate.");
    if !opts.password_auth.enabled {
        return Err(ApiError::bad_request(
            "The collection is not configured to allow password authentication.",
        ));
    }
    let identity = body
        .get("identity")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let pass = body
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if identity.is_empty() || pass.is_empty() {
        let mut data = serde_json::Map::new();
        for (k, v) in [("identity", &identity), ("password", &pass)] {
            if v.is_empty() {
                data.insert(
                    k.into(),
                    json!({"code": "validation_required", "message": "Cannot be blank."}),
                );
            }
        }
        return Err(ApiError::bad_request(
            "An error occurred while validating the submitted data.",
        )
        .with_data(Value::Object(data)));
    }
    let fields = opts.password_auth.identity_fields.clone();
    let c2 = c.clone();
    let key = identity.clone();
    let found = st
        .store
        .read(move |conn, _| {
            for f in &fields {
                if c2.field(f).is_none() {
                    continue;
                }
                let q = records::ListQuery {
                    where_sql: identity_condition(&c2, f),
                    params: vec![crate::filter::SqlParam::Text(identity.clone())],
                    limit: 1,
                    ..Default::default()
                };
                let (mut items, _) = records::list(conn, &c2, &q)?;
                if let Some(r) = items.pop() {
                    return Ok(Some(r));
                }
            }
            Ok(None)
        })
        .await?;
    let Some(rec) = found else {
        // Spend the same time as a real check so timing does not reveal unknown identities.
        gate::run(&st.guard.passwords, &ip, &key, move || {
            password::verify_dummy(&pass)
        })
        .await
        .map_err(busy)?;
        return Err(failed());
    };
    let hash = rec
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ok = gate::run(&st.guard.passwords, &ip, &key, move || {
        password::verify(&pass, &hash)
    })
    .await
    .map_err(busy)?;
    if !ok {
        return Err(failed());
    }
    let body = body.as_object().cloned().unwrap_or_default();
    let call = Call {
        ip: &ip,
        method: &method,
        headers: &headers,
        query: &query,
        body: &body,
    };
    respond(&st, &call, &c, rec, "password", None).await
}

pub async fn refresh(
    State(st): State<AppState>,
    auth: Auth,
    Path(coll): Path<String>,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = auth_collection(&schema, &coll)?;
    seed_folded(&st, &c).await?;
    let Auth::Record { collection, record } = &auth else {
        return Err(ApiError::unauthorized());
    };
    if collection.id != c.id {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "The authorized record is not allowed to perform this action.",
        ));
    }
    // Reload so the answer reflects the record as stored now.
    let (c2, id) = (c.clone(), auth.id().unwrap_or_default().to_string());
    let rec = st
        .store
        .read(move |conn, _| records::get(conn, &c2, &id)?.ok_or(StoreError::NotFound))
        .await
        .map_err(|_| ApiError::unauthorized())?;
    let _ = record;
    let token = issue_token(&c, &rec);
    Ok(Json(
        json!({"token": token, "record": present::record(&schema, &c, rec, &auth)}),
    ))
}

/// What a client may sign in with, in PocketBase's shape (legacy keys included): password
/// identity fields, OTP and MFA durations, and each OAuth2 provider with a fresh `state`, a
/// PKCE verifier and challenge, and its authorization URL.
pub async fn methods(
    State(st): State<AppState>,
    Path(coll): Path<String>,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = auth_collection(&schema, &coll)?;
    let opts = c.auth.clone().unwrap_or_default();
    let mut providers = Vec::new();
    if opts.oauth2.enabled {
        for cfg in &opts.oauth2.providers {
            let Ok(p) = Provider::from_config(cfg) else {
                continue;
            };
            let state = random_string(30, ALNUM);
            let (verifier, challenge) = if p.pkce {
                let v = random_string(43, ALNUM);
                let ch = s256_challenge(&v);
                (v, ch)
            } else {
                (String::new(), String::new())
            };
            let url = p.authorization_url(&state, p.pkce.then_some(challenge.as_str()));
            providers.push(json!({
                "name": cfg.name,
                "displayName": p.display_name,
                "state": state,
                "authURL": url,
                "authUrl": url,
                "codeVerifier": verifier,
                "codeChallenge": challenge,
                "codeChallengeMethod": if p.pkce { "S256" } else { "" },
            }));
        }
    }
    let password = opts.password_auth.enabled;
    let fields = if password {
        opts.password_auth.identity_fields.clone()
    } else {
        Vec::new()
    };
    let legacy: Vec<Value> = providers.clone();
    Ok(Json(json!({
        "password": {"identityFields": fields, "enabled": password},
        "oauth2": {"providers": providers, "enabled": opts.oauth2.enabled},
        "mfa": {"enabled": opts.mfa.enabled, "duration": if opts.mfa.enabled { opts.mfa.duration } else { 0 }},
        "otp": {"enabled": opts.otp.enabled, "duration": if opts.otp.enabled { opts.otp.duration } else { 0 }},
        "authProviders": if opts.oauth2.enabled { Value::Array(legacy) } else { Value::Null },
        "usernamePassword": password && fields.iter().any(|f| f == "username"),
        "emailPassword": password && fields.iter().any(|f| f == "email"),
    })))
}
