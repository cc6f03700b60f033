//! Request extractors: the caller's auth (from the `Authorization` token) and the request body
//! as a record-shaped map, from JSON, multipart or url-encoded forms. Body-size and format
//! failures become PocketBase error JSON (413 / 400) rather than axum's plain-text rejections.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use crate::access::{Auth, authenticate};
use crate::records::validate::multipart_value;
use crate::store::Record;

/// The raw token of a request (with or without a `Bearer ` prefix).
pub fn token_of(parts: &Parts) -> Option<String> {
    token_in(&parts.headers)
}

/// The raw token in a request's headers.
pub fn token_in(headers: &axum::http::HeaderMap) -> Option<String> {
    let raw = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let t = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, ApiError> {
        let Some(token) = token_of(parts) else {
            return Ok(Auth::Guest);
        };
        let auth = authenticate(&state.store, &state.auth_cache, &token)
            .await
            .unwrap_or(Auth::Guest);
        // The request log names the caller without verifying the token again.
        if let Some(slot) = parts
            .extensions
            .get::<std::sync::Arc<super::logs::AuthSlot>>()
        {
            slot.set(&auth);
        }
        Ok(auth)
    }
}

/// A request body as a map of field → value.
pub struct Input(pub Record);

impl FromRequest<AppState> for Input {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Input, ApiError> {
        read_input(req, state).await.map(Input)
    }
}

/// Reads a record-shaped body: multipart form, url-encoded form or a JSON object (anything
/// else is JSON). Independent of the state, so it can be exercised on its own.
pub(crate) async fn read_input<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Record, ApiError> {
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        return multipart(req, state).await;
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(body_rejection)?;
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let mut form = FormValues::default();
        for (k, v) in url::form_urlencoded::parse(&bytes) {
            form.push(k.into_owned(), v.into_owned());
        }
        return Ok(form.into_record());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "Failed to load the submitted data due to invalid formatting: {e}."
        ))),
    }
}

/// A JSON body of any shape (for collection payloads, imports and batch requests).
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<JsonBody, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Object(Map::new())));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request(format!(
                "Failed to load the submitted data due to invalid formatting: {e}."
            ))
        })
    }
}

fn body_rejection(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large.")
    } else {
        ApiError::bad_request(format!("Failed to read the request body: {e}."))
    }
}

/// Form values by key in arrival order; a repeated key becomes an array and text is typed the
/// way PocketBase reads forms (see `validate::multipart_value`).
#[derive(Default)]
struct FormValues {
    keys: Vec<String>,
    values: HashMap<String, Vec<String>>,
}

impl FormValues {
    fn push(&mut self, key: String, value: String) {
        if !self.values.contains_key(&key) {
            self.keys.push(key.clone());
        }
        self.values.entry(key).or_default().push(value);
    }

    fn into_record(mut self) -> Record {
        let mut map = Map::new();
        for k in self.keys {
            let vals = self.values.remove(&k).unwrap_or_default();
            map.insert(k, multipart_value(&vals));
        }
        map
    }
}

async fn multipart<S: Send + Sync>(req: Request, state: &S) -> Result<Record, ApiError> {
    let mut mp = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("Invalid multipart body: {e}.")))?;
    let mut form = FormValues::default();
    let mut json_payload = Map::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request entity too large.",
                ));
            }
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid multipart body: {e}."
                )));
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if field.file_name().is_some() {
            return Err(ApiError::bad_request(format!(
                "File uploads are not supported (field {name:?})."
            )));
        }
        let text = field.text().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large.")
            } else {
                ApiError::bad_request(format!("Invalid multipart body: {e}."))
            }
        })?;
        if name == "@jsonPayload" {
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(obj)) => json_payload.extend(obj),
                _ => {
                    return Err(ApiError::bad_request(
                        "Invalid @jsonPayload: it must be a JSON object.",
                    ));
                }
            }
            continue;
        }
        form.push(name, text);
    }
    let mut map = form.into_record();
    map.extend(json_payload);
    Ok(map)
}

#[cfg(test)]
#[path = "extract_fuzz.rs"]
mod fuzz;
