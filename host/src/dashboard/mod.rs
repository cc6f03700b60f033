//! The dashboard at `/_/`: a superuser UI served from files embedded in the binary at compile
//! time (`ui/`, plain ES modules and CSS: no build step, no CDN, nothing fetched from outside
//! the node). The pages talk only to this node's own HTTP API, as the JS SDK does.
//!
//! This module only serves bytes: it owns no state and calls no store function.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

/// Every file under `ui/`, by its path relative to `/_/`. A unit test checks that the list
/// and the folder agree, so a new page cannot be forgotten here.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("ui/", $path)) as &[u8])),*]
    };
}

static FILES: &[(&str, &[u8])] = embed![
    "index.html",
    "style.css",
    "favicon.svg",
    "js/app.js",
    "js/api.js",
    "js/dom.js",
    "js/router.js",
    "js/icons.js",
    "js/auth.js",
    "js/fields.js",
    "js/inputs.js",
    "js/collections.js",
    "js/collection_editor.js",
    "js/records.js",
    "js/record_editor.js",
    "js/cluster.js",
    "js/plugins.js",
    "js/settings.js",
    "js/transfer.js",
];

/// The Content-Security-Policy of every page: scripts, styles, images and API calls only from
/// this node, so the dashboard cannot reach anything outside it even by mistake.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

struct Asset {
    bytes: &'static [u8],
    etag: HeaderValue,
    content_type: &'static str,
}

fn assets() -> &'static HashMap<&'static str, Asset> {
    static ASSETS: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(path, bytes)| {
                let digest = Sha256::digest(bytes);
                let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                let etag = HeaderValue::from_str(&format!("\"{tag}\""))
                    .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
                let asset = Asset {
                    bytes,
                    etag,
                    content_type: content_type(path),
                };
                (*path, asset)
            })
            .collect()
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /_`: PocketBase's dashboard lives at `/_/`; the bare path redirects there.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/_/")
}

/// `GET /_/`: the single page; everything after `#` is routed in the browser.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /_/{*path}`: one embedded file, or 404.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// `SYNCBASE_DASHBOARD_DIR`: a development aid that serves the listed files from that folder
/// (e.g. `host/src/dashboard/ui`) instead of the embedded copies, so UI edits show without a
/// rebuild. Only names in the embedded list are served, so it exposes nothing else.
fn dev_dir() -> Option<&'static std::path::Path> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("SYNCBASE_DASHBOARD_DIR").map(Into::into))
        .as_deref()
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = assets().get(path) else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    if let Some(dir) = dev_dir()
        && let Ok(bytes) = std::fs::read(dir.join(path))
    {
        let mut resp = bytes.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        return resp;
    }
    // Revalidate on every load (cheap: an ETag match answers 304), so a node upgraded in
    // place never serves a page that mixes old and new modules.
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes());
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.bytes.into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_on_disk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read ui dir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().to_string_lossy().to_string();
            let path = format!("{prefix}{name}");
            if entry.file_type().expect("file type").is_dir() {
                files_on_disk(&entry.path(), &format!("{path}/"), out);
            } else {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_file_of_the_ui_folder_is_embedded_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard/ui");
        let mut on_disk = Vec::new();
        files_on_disk(&dir, "", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn no_embedded_file_names_a_host_outside_the_node() {
        // Absolute URLs in the UI would make the browser reach beyond the node (a CDN, fonts);
        // only the XML namespace of inline SVG is allowed.
        for (path, bytes) in FILES {
            let text = String::from_utf8_lossy(bytes);
            for scheme in ["http://", "https://"] {
                for (i, _) in text.match_indices(scheme) {
                    let url: String = text[i..].chars().take(40).collect();
                    assert!(
                        url.starts_with("http://www.w3.org/2000/svg"),
                        "{path} names an outside URL: {url}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_unchanged_file_is_answered_304_by_its_etag() {
        let first = serve("js/app.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("js/app.js", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("nope.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
