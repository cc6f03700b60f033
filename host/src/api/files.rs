//! PocketBase's file API: `GET /api/files/{collection}/{recordId}/{filename}` (thumbs with
//! `?thumb=WxH`, `?download=1`, ranges, caching headers, protected files behind a file token
//! and the view rule) and `POST /api/files/token`; plus what record writes do with uploads
//! around their writer job (stored before it under the record's id, removed again when it
//! fails or does not keep them).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::records::WriteOp;
use crate::access::Auth;
use crate::access::rules::{request_info, rule_condition};
use crate::files::{FileError, Protected, ThumbSize, file_key, thumb_key, thumbs};
use crate::records::validate::UploadInfo;
use crate::store::schema::TokenKind;
use crate::store::{Collection, Record, StoreError, records};

/// The thumb every image field serves besides its own.
const DEFAULT_THUMBS: [&str; 1] = ["100x100"];

/// Types served inline (PocketBase's list); everything else is an attachment.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpg",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/x-icon",
    "image/bmp",
    "video/webm",
    "video/mp4",
    "video/3gpp",
    "video/quicktime",
    "video/x-ms-wmv",
    "audio/basic",
    "audio/aiff",
    "audio/mpeg",
    "audio/midi",
    "audio/mp3",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-mpeg",
    "audio/x-m4a",
    "audio/aac",
    "application/pdf",
    "application/x-pdf",
];

/// Uploads stored for a write that has not committed yet.
pub struct Stored {
    keys: Vec<(String, String)>,
    _guard: Option<Protected>,
}

/// Puts a write's uploads into storage under record `rid` (before its writer job, as
/// PocketBase uploads before its INSERT) and hands their metadata to the job. Uploads under a
/// hidden field's key are dropped for non-superusers, as hidden fields are.
pub async fn store_uploads(
    st: &AppState,
    op: &mut WriteOp,
    auth: &Auth,
    rid: &str,
    uploads: Vec<crate::files::Upload>,
) -> ApiResult<Stored> {
    let c = op.collection.clone();
    let uploads: Vec<_> = uploads
        .into_iter()
        .filter(|u| {
            let base = u.key.trim_start_matches('+').trim_end_matches('+');
            auth.is_superuser() || c.field(base).is_some_and(|f| !f.hidden)
        })
        .collect();
    if uploads.is_empty() {
        return Ok(Stored {
            keys: Vec::new(),
            _guard: None,
        });
    }
    if rid.is_empty() || rid == "." || rid == ".." || rid.contains(['/', '\\']) {
        // Not a storage path segment; PocketBase's id pattern refuses it anyway.
        return Err(
            ApiError::bad_request("Failed to create record.").with_data(json!({
                "id": {"code": "validation_invalid_format", "message": "Invalid value format."}
            })),
        );
    }
    let keys: Vec<(String, String)> = uploads
        .iter()
        .map(|u| (file_key(&c.id, rid, &u.name), u.name.clone()))
        .collect();
    let guard = st
        .files
        .protect(keys.iter().map(|(k, _)| k.clone()).collect())
        .await;
    let storage = st.files.storage();
    for (u, (key, _)) in uploads.iter().zip(&keys) {
        if let Err(e) = storage.put_file(key, u.tmp_path(), &u.mime).await {
            tracing::error!(error = %e, key, "storing an upload failed");
            for (k, _) in &keys {
                let _ = storage.delete(k).await;
            }
            return Err(ApiError::bad_request(format!(
                "Failed to upload {:?}.",
                u.original_name
            )));
        }
    }
    op.uploads = uploads
        .iter()
        .map(|u| UploadInfo {
            key: u.key.clone(),
            name: u.name.clone(),
            original_name: u.original_name.clone(),
            size: u.size,
            mime: u.mime.clone(),
            sha256: u.sha256.clone(),
        })
        .collect();
    Ok(Stored {
        keys,
        _guard: Some(guard),
    })
}

/// After the writer job: a failed write's uploads are deleted, and so are uploads the stored
/// record does not keep (a single-file field keeps the last); the janitor is woken for files
/// the write replaced.
pub async fn settle(
    st: &AppState,
    stored: Stored,
    result: ApiResult<(Arc<Collection>, Option<Record>)>,
) -> ApiResult<(Arc<Collection>, Option<Record>)> {
    let storage = st.files.storage();
    let kept: Vec<String> = match &result {
        Ok((c, Some(rec))) => c.file_names(rec),
        _ => Vec::new(),
    };
    for (key, name) in &stored.keys {
        if !kept.contains(name)
            && let Err(e) = storage.delete(key).await
        {
            tracing::warn!(error = %e, key, "could not remove an upload the write did not keep");
        }
    }
    if let Ok((c, _)) = &result
        && c.has_files()
    {
        st.files.trashed();
    }
    drop(stored);
    result
}

/// `POST /api/files/token`: a short-lived token for protected files (and backups), signed
/// like PocketBase's file tokens (record `tokenKey` + the collection's `fileToken` secret).
pub async fn file_token(auth: Auth) -> ApiResult<Json<Value>> {
    let Auth::Record { collection, record } = &auth else {
        return Err(ApiError::unauthorized());
    };
    let token = super::auth_flow::issue(collection, record, TokenKind::File, Map::new());
    Ok(Json(json!({ "token": token })))
}

/// Go's `strconv.ParseBool`.
fn go_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// Go's `strconv.Quote` for the names PocketBase writes into `Content-Disposition`.
fn quote(name: &str) -> String {
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The content type served for a stored file: the detected one, except for the extensions
/// PocketBase overrides so browsers load them.
fn served_type(mime: &str, name: &str) -> String {
    let ext = name.rfind('.').map(|i| &name[i..]).unwrap_or("");
    match ext {
        ".svg" => "image/svg+xml",
        ".css" => "text/css",
        ".js" | ".mjs" => "text/javascript",
        ".xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ".pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => mime,
    }
    .to_string()
}

/// A single `Range: bytes=...` over `size` bytes: `Ok(None)` serves everything (no range, or
/// several, which may be ignored), `Err(())` is unsatisfiable (416).
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        if start >= size || end <= start {
            return Err(());
        }
        start..end
    };
    Ok(Some(range))
}

/// What a download resolved to.
struct Found {
    collection: Arc<Collection>,
    field_thumbs: Vec<String>,
    protected: bool,
    mime: String,
}

/// `GET /api/files/{collection}/{recordId}/{filename}`.
pub async fn download(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((coll, rid, filename)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match serve(st, method, headers, coll, rid, filename, q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    st: AppState,
    method: Method,
    headers: HeaderMap,
    coll: String,
    rid: String,
    filename: String,
    q: HashMap<String, String>,
) -> ApiResult<Response> {
    let schema = st.store.schema();
    let c = schema.get(&coll).cloned().ok_or_else(ApiError::not_found)?;
    let (c2, rid2, name2) = (c.clone(), rid.clone(), filename.clone());
    let found = st
        .store
        .read(move |conn, _| {
            let rec = records::get(conn, &c2, &rid2)?.ok_or(StoreError::NotFound)?;
            let (field, opts) = c2
                .file_fields()
                .find(|(f, _)| {
                    crate::store::files::names_of(rec.get(&f.name).unwrap_or(&Value::Null))
                        .contains(&name2)
                })
                .ok_or(StoreError::NotFound)?;
            let _ = field;
            let stored = crate::store::files::get(conn, &c2.id, &rid2, &name2)?
                .ok_or(StoreError::NotFound)?;
            Ok(Found {
                collection: c2.clone(),
                field_thumbs: opts.thumbs.clone(),
                protected: opts.protected,
                mime: stored.mime,
            })
        })
        .await
        .map_err(|_| ApiError::not_found())?;
    if found.protected {
        check_protected(&st, &method, &headers, &q, &found.collection, &rid).await?;
    }
    let original = file_key(&c.id, &rid, &filename);
    let mut key = original.clone();
    let mut served_name = filename.clone();
    let mut mime = found.mime.clone();
    if let Some(size) = q.get("thumb").filter(|t| !t.is_empty())
        && (DEFAULT_THUMBS.contains(&size.as_str()) || found.field_thumbs.contains(size))
        && thumbs::is_image(&found.mime)
        && let Some(parsed) = ThumbSize::parse(size)
    {
        let tkey = thumb_key(&c.id, &rid, &filename, size);
        match st.files.thumb(&original, &tkey, &found.mime, parsed).await {
            Ok(ct) => {
                key = tkey;
                served_name = format!("{size}_{filename}");
                mime = ct.to_string();
            }
            Err(e) => {
                tracing::warn!(error = %e, thumb = %tkey, "thumb not made; serving the original")
            }
        }
    }
    let storage = st.files.storage();
    let attrs = storage
        .attrs(&key)
        .await
        .ok()
        .flatten()
        .ok_or_else(ApiError::not_found)?;
    let modified = httpdate::fmt_http_date(attrs.modified);
    let mut res = Response::builder()
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "{}; filename={}",
                if !q.get("download").is_some_and(|d| go_bool(d))
                    && INLINE_TYPES.contains(&mime.split(';').next().unwrap_or("").trim())
                {
                    "inline"
                } else {
                    "attachment"
                },
                quote(&served_name)
            ),
        )
        .header(header::CONTENT_TYPE, served_type(&mime, &key))
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox",
        )
        .header(
            header::CACHE_CONTROL,
            "max-age=2592000, stale-while-revalidate=86400",
        )
        .header(header::LAST_MODIFIED, &modified)
        .header(header::ACCEPT_RANGES, "bytes");
    // Not modified since the client's copy (Go's ServeContent: seconds, modified <= since).
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let not_modified = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| secs(attrs.modified) <= secs(since));
    if not_modified {
        return res
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    // A range applies only if the client's copy is still current (If-Range).
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == modified);
    let range = if if_range_ok {
        match parse_range(&headers, attrs.size) {
            Ok(r) => r,
            Err(()) => {
                return res
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{}", attrs.size))
                    .body(Body::empty())
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
            }
        }
    } else {
        None
    };
    let (status, len) = match &range {
        Some(r) => {
            res = res.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, attrs.size),
            );
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, attrs.size),
    };
    res = res
        .status(status)
        .header(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return res
            .body(Body::empty())
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    let stream = storage.read(&key, range).await.map_err(|e| match e {
        FileError::NotFound => ApiError::not_found(),
        other => {
            tracing::error!(error = %other, key, "reading a stored file failed");
            ApiError::not_found()
        }
    })?;
    res.body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A protected file needs a file token (`?token=`) whose record passes the collection's view
/// rule (superusers always do); anything else is a 404, as in PocketBase.
async fn check_protected(
    st: &AppState,
    method: &Method,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    c: &Arc<Collection>,
    rid: &str,
) -> ApiResult<()> {
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    let auth = match super::auth_flow::record_by_token(st, token, TokenKind::File).await {
        Some((collection, record, _)) => Auth::Record { collection, record },
        None => Auth::Guest,
    };
    if auth.is_superuser() {
        return Ok(());
    }
    let Some(rule) = c.view_rule.clone() else {
        return Err(ApiError::not_found());
    };
    let mut request = request_info(&auth, method, q, headers, None);
    request["context"] = json!("protectedFile");
    let (c2, rid2) = (c.clone(), rid.to_string());
    let ok = st
        .store
        .read(
            move |conn, schema| match rule_condition(schema, &c2, &rule, &request)? {
                None => Ok(true),
                Some((sql, params)) => records::matches(conn, &c2, &rid2, &sql, &params),
            },
        )
        .await
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_says() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).expect("header"));
            m
        };
        assert_eq!(parse_range(&h("bytes=0-4"), 10), Ok(Some(0..5)));
        assert_eq!(parse_range(&h("bytes=5-"), 10), Ok(Some(5..10)));
        assert_eq!(parse_range(&h("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(parse_range(&h("bytes=8-100"), 10), Ok(Some(8..10)));
        assert_eq!(parse_range(&h("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(&h("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(&HeaderMap::new(), 10), Ok(None));
    }

    #[test]
    fn disposition_names_are_quoted_like_go() {
        assert_eq!(quote("a \"b\".txt"), "\"a \\\"b\\\".txt\"");
        assert_eq!(
            served_type("text/plain; charset=utf-8", "x/y/z.svg"),
            "image/svg+xml"
        );
    }
}
