//! `auth-with-oauth2`: the client brings the code its user got from the provider; Syncbase
//! trades it for the provider's user, finds or creates the auth record and answers a token, as
//! PocketBase does (`apis/record_auth_with_oauth2.go`).
//!
//! The record is the one linked to this provider identity in `_externalAuths`, else the caller
//! itself (linking a provider to a signed-in account), else the record with the provider's
//! verified email, else a new record from `createData` and the collection's mapped fields
//! (its `createRule` applies). Pre-hijacking guards as PocketBase: an unverified record found
//! by email loses its password and other links before it is linked. All record changes of one
//! sign-in are one writer job, and they replicate like any other write.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth_email::random_password;
use super::auth_flow::{Call, auth_collection, body_text, field_error, find_by_email, respond};
use super::error::{ApiError, ApiResult};
use super::extract::Input;
use super::guard::ClientIp;
use super::records::{OpKind, prepare_op, run_op};
use crate::access::Auth;
use crate::oauth2::{AuthUser, Provider};
use crate::records::validate::Access;
use crate::store::schema::{Collection, FieldKind};
use crate::store::{Record, StoreError, WriteCtx, records};

pub use crate::store::EXTERNAL_AUTHS;

fn text(rec: &Record, key: &str) -> String {
    rec.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn is_verified(rec: &Record) -> bool {
    rec.get("verified") == Some(&Value::Bool(true))
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    tracing::info!(error = %e, "OAuth2 sign-in refused");
    ApiError::bad_request("Failed to authenticate.")
}

// One extractor per request part, as axum handlers take them.
#[allow(clippy::too_many_arguments)]
pub async fn auth_with_oauth2(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    Path(coll): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Input(body): Input,
) -> ApiResult<Response> {
    let c = auth_collection(&st, &coll)?;
    let opts = c.auth.clone().unwrap_or_default();
    if !opts.oauth2.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The collection is not configured to allow OAuth2 authentication.",
        ));
    }
    let name = body_text(&body, "provider");
    let code = body_text(&body, "code");
    let config = opts.oauth2.providers.iter().find(|p| p.name == name);
    let mut errors = Map::new();
    if name.is_empty() {
        errors.insert(
            "provider".into(),
            field_error("validation_required", "Cannot be blank."),
        );
    } else if config.is_none() {
        let mut e = field_error(
            "validation_invalid_provider",
            &format!("Provider with name {name} is missing or is not enabled."),
        );
        e["params"] = json!({"name": name});
        errors.insert("provider".into(), e);
    }
    if code.is_empty() {
        errors.insert(
            "code".into(),
            field_error("validation_required", "Cannot be blank."),
        );
    }
    let Some(config) = config.filter(|_| errors.is_empty()) else {
        return Err(
            ApiError::bad_request("An error occurred while loading the submitted data.")
                .with_data(Value::Object(errors)),
        );
    };
    let provider = Provider::from_config(config).map_err(|e| {
        tracing::error!(error = %e, "OAuth2 provider unusable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to init provider {name}"),
        )
    })?;
    let mut redirect = body_text(&body, "redirectURL");
    if redirect.is_empty() {
        redirect = body_text(&body, "redirectUrl");
    }
    let verifier = body_text(&body, "codeVerifier");
    let token = provider
        .exchange(&st.http, &code, &verifier, &redirect)
        .await
        .map_err(|e| {
            tracing::info!(error = %e, provider = %name, "OAuth2 token exchange failed");
            ApiError::bad_request("Failed to fetch OAuth2 token.")
        })?;
    let user = provider.user(&st.http, &token).await.map_err(|e| {
        tracing::info!(error = %e, provider = %name, "OAuth2 user fetch failed");
        ApiError::bad_request("Failed to fetch OAuth2 user.")
    })?;
    let linked = find_link(&st, &c, &name, &user.id).await?;
    let signed_in = match &auth {
        Auth::Record { collection, record } if collection.id == c.id => Some(record.clone()),
        _ => None,
    };
    let existing = match (&linked, &signed_in) {
        (Some(link), _) => {
            let (c2, id) = (c.clone(), text(link, "recordRef"));
            st.store
                .read(move |conn, _| records::get(conn, &c2, &id))
                .await?
        }
        (None, Some(me)) => Some(me.clone()),
        (None, None) if !user.email.is_empty() => find_by_email(&st, &c, &user.email).await?,
        _ => None,
    };
    let is_new = existing.is_none();
    let call = Call {
        ip: &ip,
        method: &method,
        headers: &headers,
        query: &query,
        body: &body,
    };
    let rec = match existing {
        None => sign_up(&st, &auth, &call, &c, &body, &user, &name).await?,
        Some(rec) => {
            let me = signed_in
                .as_ref()
                .is_some_and(|m| text(m, "id") == text(&rec, "id"));
            sign_in(&st, &c, rec, me, linked.is_some(), &user, &name).await?
        }
    };
    let mut meta = user.to_meta();
    meta["isNew"] = json!(is_new);
    respond(&st, &call, &c, rec, "oauth2", Some(meta)).await
}

/// The `_externalAuths` row linking this provider identity to a record of `c`.
async fn find_link(
    st: &AppState,
    c: &Collection,
    provider: &str,
    provider_id: &str,
) -> ApiResult<Option<Record>> {
    let params = [c.id.clone(), provider.to_string(), provider_id.to_string()];
    Ok(st
        .store
        .read(move |conn, schema| {
            let ext = schema
                .get(EXTERNAL_AUTHS)
                .cloned()
                .ok_or(StoreError::NotFound)?;
            let q = records::ListQuery {
                where_sql: "`collectionRef` = ?1 AND `provider` = ?2 AND `providerId` = ?3".into(),
                params: params
                    .into_iter()
                    .map(crate::filter::SqlParam::Text)
                    .collect(),
                limit: 1,
                ..Default::default()
            };
            Ok(records::list(conn, &ext, &q)?.0.pop())
        })
        .await?)
}

/// Links `provider`/`user` to record `rid` unless already linked.
fn link(
    ctx: &mut WriteCtx,
    c: &Collection,
    rid: &str,
    provider: &str,
    user: &AuthUser,
) -> Result<(), StoreError> {
    let mut input = Map::new();
    input.insert("collectionRef".into(), json!(c.id));
    input.insert("recordRef".into(), json!(rid));
    input.insert("provider".into(), json!(provider));
    input.insert("providerId".into(), json!(user.id));
    records::create(ctx, EXTERNAL_AUTHS, &input, None, Access::Manager).map(|_| ())
}

/// Deletes every provider link of record `rid`.
fn unlink_all(ctx: &mut WriteCtx, c: &Collection, rid: &str) -> Result<(), StoreError> {
    let ext = ctx
        .schema
        .get(EXTERNAL_AUTHS)
        .cloned()
        .ok_or(StoreError::NotFound)?;
    let q = records::ListQuery {
        where_sql: "`collectionRef` = ?1 AND `recordRef` = ?2".into(),
        params: vec![
            crate::filter::SqlParam::Text(c.id.clone()),
            crate::filter::SqlParam::Text(rid.to_string()),
        ],
        limit: 1000,
        ..Default::default()
    };
    for row in records::list(ctx.conn, &ext, &q)?.0 {
        records::delete(ctx, EXTERNAL_AUTHS, &text(&row, "id"))?;
    }
    Ok(())
}

/// A new record for the provider's user: `createData`, then the provider's email and the
/// mapped fields where `createData` left them out, a random password unless one was given;
/// created as the caller (the collection's `createRule` applies) and linked in one job.
async fn sign_up(
    st: &AppState,
    auth: &Auth,
    call: &Call<'_>,
    c: &Arc<Collection>,
    body: &Map<String, Value>,
    user: &AuthUser,
    provider: &str,
) -> ApiResult<Record> {
    if c.name == "_superusers" {
        return Err(failed("superusers cannot sign up with OAuth2"));
    }
    let opts = c.auth.clone().unwrap_or_default();
    let mut input = match body.get("createData") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if text(&input, "email").is_empty() {
        input.insert("email".into(), json!(user.email));
    }
    let mapped = &opts.oauth2.mapped_fields;
    for (field, value) in [
        (&mapped.id, &user.id),
        (&mapped.name, &user.name),
        (&mapped.username, &user.username),
        (&mapped.avatar_url, &user.avatar_url),
    ] {
        let usable = c.field(field).is_some_and(|f| {
            matches!(
                f.kind,
                FieldKind::Text(_) | FieldKind::Url(_) | FieldKind::Email(_) | FieldKind::Editor(_)
            )
        });
        if !field.is_empty() && usable && !input.contains_key(field.as_str()) && !value.is_empty() {
            input.insert(field.clone(), json!(value));
        }
    }
    if !input.contains_key("password") {
        random_password(&mut input).await;
    }
    let op = prepare_op(
        st,
        call.ip,
        auth,
        call.method,
        call.headers,
        call.query,
        OpKind::Create,
        &c.id,
        None,
        input,
    )
    .await?;
    let (provider, user, cid, email) = (
        provider.to_string(),
        user.clone(),
        c.id.clone(),
        user.email.clone(),
    );
    st.store
        .write(move |ctx| {
            let mut rec = run_op(ctx, &op)?.ok_or(StoreError::NotFound)?;
            let c = ctx.schema.get(&cid).cloned().ok_or(StoreError::NotFound)?;
            let rid = text(&rec, "id");
            // Created from the provider's own address: verified, as PocketBase marks it (before
            // the link: a verified upgrade ends the links made before it).
            if text(&rec, "email") == email && !is_verified(&rec) {
                let mut v = Map::new();
                v.insert("verified".into(), json!(true));
                rec = records::update(ctx, &cid, &rid, &v, None, Access::Manager)?;
            }
            link(ctx, &c, &rid, &provider, &user)?;
            Ok(rec)
        })
        .await
        .map_err(|e| match e {
            StoreError::Validation(_) | StoreError::Invalid { .. } | StoreError::BadRequest(_) => {
                ApiError::from_store(e, "Failed to authenticate.")
            }
            other => ApiError::from_store(other, "Failed to authenticate."),
        })
}

/// Signs `rec` in with the provider: PocketBase's guards against pre-created accounts, the
/// provider's email for a record without one, `verified` when the addresses agree, and the
/// link when missing — all in one job.
async fn sign_in(
    st: &AppState,
    c: &Arc<Collection>,
    rec: Record,
    signed_in_as_it: bool,
    linked: bool,
    user: &AuthUser,
    provider: &str,
) -> ApiResult<Record> {
    let verified = is_verified(&rec);
    let mut input = Map::new();
    // Someone may have created this account with the victim's address and a password they
    // know: until the address is proven, that password goes.
    let hash = if !signed_in_as_it && !verified {
        Some(random_password(&mut input).await)
    } else {
        None
    };
    let email = text(&rec, "email");
    if email.is_empty() && !user.email.is_empty() {
        input.insert("email".into(), json!(user.email));
    }
    if !verified && (email.is_empty() || email == user.email) {
        input.insert("verified".into(), json!(true));
    }
    let (c2, provider, user, rid) = (
        c.clone(),
        provider.to_string(),
        user.clone(),
        text(&rec, "id"),
    );
    st.store
        .write(move |ctx| {
            let mut linked = linked;
            if !verified {
                // At most one provider link for an unproven account.
                unlink_all(ctx, &c2, &rid)?;
                linked = false;
            }
            let rec = if input.is_empty() {
                rec
            } else {
                records::update(ctx, &c2.id, &rid, &input, hash, Access::Manager)?
            };
            if !linked {
                link(ctx, &c2, &rid, &provider, &user)?;
            }
            Ok(rec)
        })
        .await
        .map_err(failed)
}

/// `GET/POST /api/oauth2-redirect`: where a provider sends the browser back in the SDK's
/// `authWithOAuth2()` flow. The `state` is the realtime client that started the sign-in; it
/// gets `{state, code, error?}` on its `@oauth2` subscription and completes the sign-in itself
/// with `auth-with-oauth2`. Answers a short page (Syncbase has no dashboard to redirect to).
pub async fn redirect(
    State(st): State<AppState>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    Input(body): Input,
) -> (StatusCode, axum::response::Html<&'static str>) {
    let get = |k: &str| {
        if method == Method::POST {
            body_text(&body, k)
        } else {
            query.get(k).cloned().unwrap_or_default()
        }
    };
    let (state, code, error) = (get("state"), get("code"), get("error"));
    let failed = (
        StatusCode::OK,
        axum::response::Html(
            "Failed to authenticate. You can close this window and go back to the app to try again.",
        ),
    );
    if state.is_empty() {
        return failed;
    }
    let mut data = json!({"state": state, "code": code});
    if !error.is_empty() {
        data["error"] = json!(error);
    }
    if !st.hub.deliver_once(&state, "@oauth2", data.to_string()) {
        tracing::debug!(client = %state, "OAuth2 redirect for no waiting realtime client");
        return failed;
    }
    if !error.is_empty() || code.is_empty() {
        return failed;
    }
    (
        StatusCode::OK,
        axum::response::Html("Auth completed. You can close this window and go back to the app."),
    )
}
