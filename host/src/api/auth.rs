//! Auth endpoints of auth collections: `auth-with-password`, `auth-refresh`, `auth-methods`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::guard::ClientIp;
use super::records::collection;
use crate::access::Auth;
use crate::access::present;
use crate::access::rules::{request_info, rule_condition};
use crate::auth::{gate, jwt, password};
use crate::store::schema::quote_ident;
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

/// This client already has as many password checks in flight as it may (see `auth::gate`).
pub fn busy(_: gate::Busy) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "Too many password checks in flight for this client; try again shortly.",
    )
}

/// Issues a token for `rec`, signed with its tokenKey plus the collection secret.
pub fn issue_token(c: &Collection, rec: &Record) -> String {
    let opts = c.auth.clone().unwrap_or_default();
    let token_key = rec
        .get("tokenKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let claims = jwt::Claims {
        id: rec
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        kind: "auth".into(),
        collection_id: c.id.clone(),
        refreshable: true,
        exp: chrono::Utc::now().timestamp() + opts.auth_token.duration,
    };
    jwt::sign(
        &claims,
        format!("{token_key}{}", opts.auth_token.secret).as_bytes(),
    )
}

pub async fn with_password(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Path(coll): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = auth_collection(&schema, &coll)?;
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
                let collate = if f == "email" { " COLLATE NOCASE" } else { "" };
                let q = records::ListQuery {
                    where_sql: format!("{}.{} = ?{collate}", c2.table(), quote_ident(f)),
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
    let auth = Auth::Record {
        collection: c.clone(),
        record: rec.clone(),
    };
    match &opts.auth_rule {
        None if c.name != "_superusers" => return Err(failed()),
        Some(rule) if !rule.trim().is_empty() => {
            let request = request_info(&auth, &method, &HashMap::new(), &headers, None);
            let (c3, rule, id) = (
                c.clone(),
                rule.clone(),
                auth.id().unwrap_or_default().to_string(),
            );
            let ok = st
                .store
                .read(
                    move |conn, schema| match rule_condition(schema, &c3, &rule, &request)? {
                        None => Ok(true),
                        Some((sql, params)) => records::matches(conn, &c3, &id, &sql, &params),
                    },
                )
                .await?;
            if !ok {
                return Err(failed());
            }
        }
        _ => {}
    }
    let token = issue_token(&c, &rec);
    Ok(Json(
        json!({"token": token, "record": present::record(&schema, &c, rec, &auth)}),
    ))
}

pub async fn refresh(
    State(st): State<AppState>,
    auth: Auth,
    Path(coll): Path<String>,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = auth_collection(&schema, &coll)?;
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

pub async fn methods(
    State(st): State<AppState>,
    Path(coll): Path<String>,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = auth_collection(&schema, &coll)?;
    let opts = c.auth.clone().unwrap_or_default();
    Ok(Json(json!({
        "password": {"enabled": opts.password_auth.enabled, "identityFields": opts.password_auth.identity_fields},
        "oauth2": {"enabled": false, "providers": []},
        "mfa": {"enabled": false, "duration": 0},
        "otp": {"enabled": false, "duration": 0},
    })))
}
