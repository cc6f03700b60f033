//! File fields on one node, over HTTP with the real binary: body limits per collection, no
//! bytes left behind by refused or failed uploads, files following schema changes.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::Node;

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Waits until the node's storage holds exactly `n` files.
async fn wait_files(node: &Node, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = count_files(&node.dir().join("storage"));
        if have == n {
            return;
        }
        assert!(Instant::now() < deadline, "{have} files stored, want {n}");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_record_write_may_carry_its_file_fields_allowance_and_no_more() {
    let node = Node::start_with(&["--body-limit", "2000"]).await;
    node.create_collection(json!({
        "name": "docs",
        "fields": [{"name": "doc", "type": "file", "maxSelect": 2, "maxSize": 5000}]
    }))
    .await;
    node.create_collection(json!({"name": "plain", "fields": [{"name": "t", "type": "text"}]}))
        .await;
    // 2000 + 2 × 5000 bytes for `docs`: two 4 KB files fit, though far over --body-limit.
    let (code, body) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[],
            &[
                ("doc", "a.bin", vec![1; 4000]),
                ("doc", "b.bin", vec![2; 4000]),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Over the allowance: 413 before anything is stored.
    let (code, body) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[],
            &[
                ("doc", "a.bin", vec![1; 7000]),
                ("doc", "b.bin", vec![2; 7000]),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // A collection without file fields keeps the plain limit.
    let (code, _) = node
        .post(
            "/api/collections/plain/records",
            json!({"t": "x".repeat(3000)}),
        )
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    wait_files(&node, 2).await;
    assert_eq!(
        count_files(&node.dir().join("files_tmp")),
        0,
        "no temporary file left"
    );
}

#[tokio::test]
async fn refused_uploads_leave_no_bytes_and_a_dropped_field_takes_its_files() {
    let node = Node::start().await;
    let c = node
        .create_collection(json!({
            "name": "docs",
            "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "doc", "type": "file", "maxSelect": 1, "mimeTypes": ["image/png"]},
                {"name": "other", "type": "file", "maxSelect": 3},
                {"name": "one", "type": "file", "maxSelect": 1}
            ]
        }))
        .await;
    // Refused by validation after the bytes were stored under the new record's id.
    let (code, body) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[],
            &[("other", "a.txt", b"aaa".to_vec())],
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["data"]["title"]["code"], "validation_required");
    let (code, body) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[],
            &[("doc", "fake.png", b"not a png".to_vec())],
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["data"]["doc"]["code"], "validation_invalid_mime_type");
    wait_files(&node, 0).await;

    // A single-file field keeps the last of several uploads; the others are not kept.
    let parts: Vec<(&str, String, Vec<u8>)> = [
        ("one", 0u8),
        ("one", 1),
        ("one", 2),
        ("other", 3),
        ("other", 4),
    ]
    .into_iter()
    .map(|(key, i)| (key, format!("f{i}.bin"), vec![i; 10]))
    .collect();
    let parts: Vec<(&str, &str, Vec<u8>)> = parts
        .iter()
        .map(|(k, n, b)| (*k, n.as_str(), b.clone()))
        .collect();
    let (code, rec) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[("title", "t")],
            &parts,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{rec}");
    assert_eq!(rec["other"].as_array().map(Vec::len), Some(2));
    // "f2" is shorter than 3 characters, so PocketBase pads it with a random part.
    assert!(
        rec["one"].as_str().is_some_and(|n| n.starts_with("f2")),
        "{rec}"
    );
    wait_files(&node, 3).await;

    // The field goes: so do its files.
    let mut def = c.clone();
    def["fields"] = json!(
        c["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter(|f| f["name"] != "other" && f["name"] != "one")
            .cloned()
            .collect::<Vec<_>>()
    );
    let (code, body) = node
        .patch(
            &format!("/api/collections/{}", c["id"].as_str().expect("id")),
            def,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_files(&node, 0).await;
}
