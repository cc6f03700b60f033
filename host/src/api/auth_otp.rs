//! One-time passwords (PocketBase 0.23+): `request-otp` mails a numeric password and answers
//! its `otpId`; `auth-with-otp` trades the pair for a token (or for the second step of MFA).
//!
//! An OTP is an `_otps` record (the password bcrypt-hashed), written in the same writer job as
//! its mail's outbox row, so either both happen or neither. The record replicates: an OTP
//! requested on one node is accepted on any other; the mail leaves from the requesting node only.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use rand::Rng;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::AppState;
use super::auth::busy;
use super::auth_email::random_password;
use super::auth_flow::{
    Call, auth_collection, body_text, check_email, field_error, find_by_email, invalid_form,
    older_than, respond,
};
use super::error::{ApiError, ApiResult};
use super::extract::Input;
use super::guard::ClientIp;
use crate::auth::{gate, password};
use crate::mail::message::AppMeta;
use crate::mail::{enqueue_in, templates};
use crate::records::validate::Access;
use crate::store::schema::new_record_id;
use crate::store::{Record, StoreError, records, settings};

pub use crate::store::OTPS;

/// An OTP record's bcrypt cost, as PocketBase's `_otps.password` field.
const OTP_COST: u32 = 8;

/// Unexpired OTPs one record may hold before new requests reuse the newest.
const MAX_RECENT: usize = 10;

fn text(rec: &Record, key: &str) -> String {
    rec.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "The collection is not configured to allow OTP authentication.",
    )
}

pub async fn request_otp(
    State(st): State<AppState>,
    Path(coll): Path<String>,
    Input(body): Input,
) -> ApiResult<Json<Value>> {
    let c = auth_collection(&st, &coll)?;
    let opts = c.auth.clone().unwrap_or_default();
    if !opts.otp.enabled {
        return Err(disabled());
    }
    let email = body_text(&body, "email");
    if let Some(err) = check_email(&email) {
        let mut data = Map::new();
        data.insert("email".into(), err);
        return Err(invalid_form(data));
    }
    let Some(rec) = find_by_email(&st, &c, &email).await? else {
        // The same answer as for a real account: no address enumeration.
        return Ok(Json(json!({"otpId": new_record_id()})));
    };
    let (cid, rid) = (c.id.clone(), text(&rec, "id"));
    let duration = opts.otp.duration;
    let recent = st
        .store
        .read(move |conn, schema| {
            let otps = schema.get(OTPS).cloned().ok_or(StoreError::NotFound)?;
            let q = records::ListQuery {
                where_sql: "`collectionRef` = ?1 AND `recordRef` = ?2".into(),
                params: vec![
                    crate::filter::SqlParam::Text(cid),
                    crate::filter::SqlParam::Text(rid),
                ],
                order_sql: "`created` DESC".into(),
                limit: 100,
                ..Default::default()
            };
            Ok(records::list(conn, &otps, &q)?.0)
        })
        .await?;
    let live: Vec<&Record> = recent.iter().filter(|o| !older_than(o, duration)).collect();
    if live.len() >= MAX_RECENT {
        tracing::warn!(record = %text(&rec, "id"), "too many OTP requests; reusing the last issued");
        return Ok(Json(json!({"otpId": text(live[0], "id")})));
    }
    let digits: String = {
        let mut rng = rand::rng();
        (0..opts.otp.length.max(1))
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    let plain = digits.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash_with_cost(&plain, OTP_COST))
        .await
        .map_err(|_| ApiError::bad_request("Failed to create OTP."))?;
    let settings = st.store.read(|conn, _| settings::load(conn)).await?;
    let otp_id = new_record_id();
    let msg = templates::otp(
        &AppMeta::from_settings(&settings),
        &c,
        &rec,
        &otp_id,
        &digits,
    );
    let mut input = Map::new();
    input.insert("id".into(), json!(otp_id));
    input.insert("collectionRef".into(), json!(c.id));
    input.insert("recordRef".into(), json!(text(&rec, "id")));
    input.insert("password".into(), json!(digits));
    // The mail is queued with the record, so it is the address the OTP was sent to.
    input.insert("sentTo".into(), json!(text(&rec, "email")));
    st.store
        .write(move |ctx| {
            records::create(ctx, OTPS, &input, Some(hash), Access::Manager)?;
            enqueue_in(ctx, "otp", &msg)
        })
        .await
        .map_err(|e| ApiError::from_store(e, "Failed to create OTP."))?;
    st.mailer.wake();
    Ok(Json(json!({"otpId": otp_id})))
}

pub async fn auth_with_otp(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    method: Method,
    headers: HeaderMap,
    Path(coll): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Input(body): Input,
) -> ApiResult<Response> {
    let c = auth_collection(&st, &coll)?;
    let opts = c.auth.clone().unwrap_or_default();
    if !opts.otp.enabled {
        return Err(disabled());
    }
    let (otp_id, pass) = (body_text(&body, "otpId"), body_text(&body, "password"));
    let mut errors = Map::new();
    for (key, value, max) in [("otpId", &otp_id, 255), ("password", &pass, 71)] {
        if value.is_empty() {
            errors.insert(
                key.into(),
                field_error("validation_required", "Cannot be blank."),
            );
        } else if value.chars().count() > max {
            errors.insert(
                key.into(),
                field_error(
                    "validation_length_out_of_range",
                    &format!("The length must be between 1 and {max}."),
                ),
            );
        }
    }
    if !errors.is_empty() {
        return Err(invalid_form(errors));
    }
    let invalid = || ApiError::bad_request("Invalid or expired OTP");
    let lookup = otp_id.clone();
    let otp = st
        .store
        .read(move |conn, schema| {
            let otps = schema.get(OTPS).cloned().ok_or(StoreError::NotFound)?;
            records::get(conn, &otps, &lookup)
        })
        .await?
        .ok_or_else(invalid)?;
    if text(&otp, "collectionRef") != c.id || older_than(&otp, opts.otp.duration) {
        return Err(invalid());
    }
    let (c2, rid) = (c.clone(), text(&otp, "recordRef"));
    let mut rec = st
        .store
        .read(move |conn, _| records::get(conn, &c2, &rid))
        .await?
        .ok_or_else(invalid)?;
    // OTPs are short digit strings: a handful of guesses per record, then a new OTP.
    if !st.resend.attempt(
        &format!("otp:{}", text(&rec, "id")),
        5,
        Duration::from_secs(180),
    ) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts, please try again later with a new OTP.",
        ));
    }
    let hash = text(&otp, "password");
    let key = text(&rec, "id");
    let ok = gate::run(&st.guard.passwords, &ip, &key, move || {
        password::verify(&pass, &hash)
    })
    .await
    .map_err(busy)?;
    if !ok {
        return Err(invalid());
    }
    let deleted = otp_id.clone();
    if let Err(e) = st
        .store
        .write(move |ctx| records::delete(ctx, OTPS, &deleted))
        .await
    {
        tracing::error!(error = %e, otp = %otp_id, "failed to delete a used OTP");
    }
    // The OTP reached the record's own address: that proves the mailbox.
    let sent_to = text(&otp, "sentTo");
    if rec.get("verified") != Some(&Value::Bool(true))
        && !sent_to.is_empty()
        && sent_to == text(&rec, "email")
    {
        let mut input = Map::new();
        input.insert("verified".into(), json!(true));
        let hash = if opts.mfa.enabled {
            None
        } else {
            Some(random_password(&mut input).await)
        };
        match super::auth_email::update(&st, &c, &rec, input, hash, "Failed to authenticate.").await
        {
            Ok(updated) => rec = updated,
            Err(e) => {
                tracing::error!(error = %e.message, "failed to mark a record verified after its OTP")
            }
        }
    }
    let call = Call {
        ip: &ip,
        method: &method,
        headers: &headers,
        query: &query,
        body: &body,
    };
    respond(&st, &call, &c, rec, "otp", None).await
}
