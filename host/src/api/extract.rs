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
    let ctype = content_type(&req);
    if ctype.starts_with("multipart/form-data") {
        return multipart(req, state, None).await;
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(body_rejection)?;
    parse_body(&ctype, &bytes)
}

fn content_type(req: &Request) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large.")
}

/// A record write's body: its values and the files uploaded with it (multipart parts under a
/// file field's key, `field`, `field+` or `+field`), each already received whole into a
/// temporary file. The body limit is PocketBase's for the collection: `--body-limit` plus
/// every file field's `maxSize × maxSelect`.
pub struct RecordInput {
    pub record: Record,
    pub uploads: Vec<crate::files::Upload>,
}

impl FromRequest<AppState> for RecordInput {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<RecordInput, ApiError> {
        let (mut parts, body) = req.into_parts();
        let params =
            axum::extract::Path::<HashMap<String, String>>::from_request_parts(&mut parts, state)
                .await
                .map(|p| p.0)
                .unwrap_or_default();
        let schema = state.store.schema();
        let collection = params
            .get("collection")
            .and_then(|c| schema.get(c))
            .cloned();
        let limit = record_body_limit(state.files.body_limit(), collection.as_deref());
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let req = Request::from_parts(parts, body);
        let ctype = content_type(&req);
        if ctype.starts_with("multipart/form-data") {
            let mut sink = UploadSink {
                files: state.files.clone(),
                collection,
                budget: limit,
                uploads: Vec::new(),
            };
            let record = multipart(req, state, Some(&mut sink)).await?;
            return Ok(RecordInput {
                record,
                uploads: sink.uploads,
            });
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large())?;
        Ok(RecordInput {
            record: parse_body(&ctype, &bytes)?,
            uploads: Vec::new(),
        })
    }
}

/// PocketBase's body limit of a record write: the base limit plus what the collection's file
/// fields may carry.
pub fn record_body_limit(base: usize, c: Option<&crate::store::Collection>) -> usize {
    let files: i64 = c
        .map(|c| c.file_fields().map(|(_, o)| o.max_body()).sum())
        .unwrap_or(0);
    base.saturating_add(usize::try_from(files.max(0)).unwrap_or(usize::MAX))
}

/// Where multipart file parts go while a record body is read.
struct UploadSink {
    files: crate::files::Files,
    collection: Option<std::sync::Arc<crate::store::Collection>>,
    /// Bytes the body may still carry.
    budget: usize,
    uploads: Vec<crate::files::Upload>,
}

impl UploadSink {
    /// Whether `key` names a file field (`f`, `f+` or `+f`).
    fn takes(&self, key: &str) -> bool {
        let Some(c) = &self.collection else {
            return false;
        };
        let base = key
            .strip_prefix('+')
            .or_else(|| key.strip_suffix('+'))
            .unwrap_or(key);
        c.field(base)
            .is_some_and(|f| matches!(f.kind, crate::store::FieldKind::File(_)))
    }

    fn spend(&mut self, n: usize) -> Result<(), ApiError> {
        self.budget = self.budget.checked_sub(n).ok_or_else(too_large)?;
        Ok(())
    }
}

fn parse_body(ctype: &str, bytes: &[u8]) -> Result<Record, ApiError> {
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let mut form = FormValues::default();
        for (k, v) in url::form_urlencoded::parse(bytes) {
            form.push(k.into_owned(), v.into_owned());
        }
        return Ok(form.into_record());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
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

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::bad_request(format!("Invalid multipart body: {e}."))
    }
}

/// Streams one file part into a temporary file.
async fn receive_file(
    sink: &mut UploadSink,
    mut field: axum::extract::multipart::Field<'_>,
    key: String,
    declared: String,
) -> Result<(), ApiError> {
    let io = |e: crate::files::FileError| {
        tracing::error!(error = %e, "receiving an upload failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to receive the uploaded file.",
        )
    };
    let mut writer = sink.files.begin_upload().await.map_err(io)?;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        sink.spend(chunk.len())?;
        writer.write(&chunk).await.map_err(io)?;
    }
    let upload = writer.finish(key, &declared).await.map_err(io)?;
    sink.uploads.push(upload);
    Ok(())
}

async fn multipart<S: Send + Sync>(
    req: Request,
    state: &S,
    mut sink: Option<&mut UploadSink>,
) -> Result<Record, ApiError> {
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
        // A part with a file name is a file (Go's multipart reader: an empty name is a value).
        if let Some(declared) = field
            .file_name()
            .filter(|n| !n.is_empty())
            .map(String::from)
        {
            match sink.as_deref_mut() {
                Some(s) if s.takes(&name) => receive_file(s, field, name, declared).await?,
                Some(s) => {
                    // Files under other keys are not read by PocketBase either.
                    let mut field = field;
                    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                        s.spend(chunk.len())?;
                    }
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "File uploads are not supported here (field {name:?})."
                    )));
                }
            }
            continue;
        }
        // Read chunk by chunk against the record's budget: a record write has no
        // `DefaultBodyLimit` (its files may exceed it), so an endless value must be cut here.
        let mut field = field;
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if let Some(s) = sink.as_deref_mut() {
                s.spend(chunk.len())?;
            }
            buf.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
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
