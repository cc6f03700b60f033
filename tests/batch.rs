//! `POST /api/batch`: all-or-nothing, with per-request results.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

async fn enable_batch(node: &Node) {
    let (s, body) = node
        .call(
            Method::PATCH,
            "/api/settings",
            Some(json!({"batch": {"enabled": true, "maxRequests": 10}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["batch"]["enabled"], true);
    assert!(
        body["meta"]["appName"].is_string(),
        "other sections stay: {body}"
    );
}

#[tokio::test]
async fn batch_is_off_until_enabled_in_settings() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let req = json!({"requests": [{"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "a"}}]});
    assert_eq!(
        node.post("/api/batch", req.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, _) = node.call_as("", Method::GET, "/api/settings", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    enable_batch(&node).await;
    assert_eq!(node.post("/api/batch", req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn creates_updates_upserts_and_deletes_in_one_transaction() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    enable_batch(&node).await;
    let existing = node
        .create_record("posts", json!({"title": "old", "n": 1}))
        .await;
    let gone = node.create_record("posts", json!({"title": "gone"})).await;
    let eid = existing["id"].as_str().expect("id");
    let (s, body) = node
        .post("/api/batch", json!({"requests": [
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"id": "batchcreated001", "title": "new"}},
            {"method": "PATCH", "url": format!("/api/collections/posts/records/{eid}"), "body": {"n+": 5}},
            {"method": "PUT", "url": "/api/collections/posts/records", "body": {"id": "batchupserted01", "title": "upserted"}},
            {"method": "PUT", "url": "/api/collections/posts/records", "body": {"id": eid, "title": "upserted existing"}},
            {"method": "DELETE", "url": format!("/api/collections/posts/records/{}", gone["id"].as_str().expect("id"))}
        ]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let statuses: Vec<i64> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["status"].as_i64().expect("status"))
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 204]);
    assert_eq!(body[1]["body"]["n"], 6);
    let (_, e) = node
        .get(&format!("/api/collections/posts/records/{eid}"))
        .await;
    assert_eq!(
        (e["title"].clone(), e["n"].clone()),
        (json!("upserted existing"), json!(6))
    );
    let mut ids = node.ids("posts", "perPage=10").await;
    ids.sort();
    let mut want = vec![
        "batchcreated001".to_string(),
        "batchupserted01".to_string(),
        eid.to_string(),
    ];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn a_batch_whose_third_request_fails_leaves_nothing() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    enable_batch(&node).await;
    let (s, body) = node
        .post("/api/batch", json!({"requests": [
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "one"}},
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "two"}},
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"n": 3}}
        ]}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["data"]["requests"]["2"]["code"], "batch_request_failed",
        "{body}"
    );
    assert_eq!(
        body["data"]["requests"]["2"]["response"]["data"]["title"]["code"],
        "validation_required"
    );
    assert!(
        node.ids("posts", "").await.is_empty(),
        "nothing of the first two remains"
    );
}

#[tokio::test]
async fn batch_limits_are_enforced() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    enable_batch(&node).await;
    let many: Vec<_> = (0..11).map(|i| json!({"method": "POST", "url": "/api/collections/posts/records", "body": {"title": format!("t{i}")}})).collect();
    assert_eq!(
        node.post("/api/batch", json!({"requests": many})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        node.post("/api/batch", json!({"requests": []})).await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _) = node
        .post(
            "/api/batch",
            json!({"requests": [{"method": "GET", "url": "/api/collections/posts/records"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(node.ids("posts", "").await.is_empty());
}
