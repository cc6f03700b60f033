//! Files through `syncbase export pocketbase` and `syncbase import pocketbase` with the real
//! binary, without PocketBase (tests/js/import_pocketbase.test.mjs runs the round trip through
//! real PocketBase): a node's uploaded files are exported into `pb_data/storage`; one of them
//! is then deleted there, as happens to a PocketBase whose storage lost a file; the import
//! still succeeds, copies the other, names the missing one in its report, and the imported
//! node serves the copied file with its bytes and answers 404 for the missing one.

mod support;

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Node;

/// Runs the binary; returns its exit status and its `--json` report.
fn run(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(support::bin())
        .args(args)
        .output()
        .expect("run syncbase");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), report, stderr)
}

async fn upload(node: &Node, bytes: &[u8], name: &str) -> Value {
    let form = reqwest::multipart::Form::new().part(
        "doc",
        reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name.to_string()),
    );
    let resp = node
        .client
        .post(format!("{}/api/collections/docs/records", node.url))
        .header("Authorization", &node.token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

async fn download(node: &Node, rec: &Value) -> (StatusCode, Vec<u8>) {
    let url = format!(
        "{}/api/files/{}/{}/{}",
        node.url,
        rec["collectionId"].as_str().expect("collectionId"),
        rec["id"].as_str().expect("id"),
        rec["doc"].as_str().expect("doc")
    );
    let resp = node.client.get(url).send().await.expect("download");
    (resp.status(), resp.bytes().await.expect("bytes").to_vec())
}

fn key(rec: &Value) -> String {
    format!(
        "{}/{}/{}",
        rec["collectionId"].as_str().expect("collectionId"),
        rec["id"].as_str().expect("id"),
        rec["doc"].as_str().expect("doc")
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn a_file_missing_from_pb_data_storage_is_reported_and_the_import_goes_on() {
    let mut node = Node::start().await;
    node.create_collection(json!({
        "name": "docs", "type": "base", "listRule": "", "viewRule": "",
        "fields": [{"name": "doc", "type": "file", "maxSelect": 1}]
    }))
    .await;
    let kept_bytes = b"these bytes come along".repeat(100);
    let kept = upload(&node, &kept_bytes, "kept.txt").await;
    let lost = upload(&node, b"these bytes get lost", "lost.txt").await;
    node.terminate();

    let tmp = tempfile::tempdir().expect("tempdir");
    let pb_data = tmp.path().join("pb_data");
    let (ok, report, stderr) = run(&[
        "export",
        "pocketbase",
        "--dir",
        path(node.dir()),
        path(&pb_data),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(report["files"], 2, "{report:#}");
    let storage = pb_data.join("storage");
    assert_eq!(
        std::fs::read(storage.join(key(&kept))).expect("exported bytes"),
        kept_bytes
    );
    std::fs::remove_file(storage.join(key(&lost))).expect("remove");

    let sb = tmp.path().join("sb");
    let (ok, report, stderr) = run(&[
        "import",
        "pocketbase",
        path(&pb_data),
        "--dir",
        path(&sb),
        "--json",
    ]);
    assert!(ok, "the import goes on past a missing file: {stderr}");
    assert_eq!(report["files"], 1, "{report:#}");
    let lost_name = lost["doc"].as_str().expect("name");
    let notes = report["notCarried"].as_array().expect("notes");
    let note = notes
        .iter()
        .find(|n| n["subject"] == format!("docs/{}", lost["id"].as_str().expect("id")))
        .unwrap_or_else(|| panic!("the missing file is reported: {report:#}"));
    let reason = note["reason"].as_str().expect("reason");
    assert!(
        reason.contains(lost_name) && reason.contains("not in pb_data/storage"),
        "{reason}"
    );

    let imported = Node::spawn(&sb, &[]).await;
    let (code, bytes) = download(&imported, &kept).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(bytes, kept_bytes);
    let (code, _) = download(&imported, &lost).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // The record keeps the name it had.
    let (code, rec) = imported
        .get(&format!(
            "/api/collections/docs/records/{}",
            lost["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rec["doc"], lost["doc"]);
}
