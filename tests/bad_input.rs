//! Bad input gets PocketBase's error JSON, the right status, and loses nothing.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn malformed_json_is_a_400() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let (s, body) = node
        .raw(
            Method::POST,
            "/api/collections/posts/records",
            "application/json",
            b"{bad".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], 400);
    assert!(body["data"].is_object());
    let (s, _) = node
        .raw(
            Method::POST,
            "/api/collections",
            "application/json",
            b"[1,".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(node.ids("posts", "").await.is_empty());
}

#[tokio::test]
async fn bodies_over_the_limit_are_a_413() {
    let node = Node::start_with(&["--body-limit", "2048"]).await;
    node.create_collection(posts_def()).await;
    let big = json!({"title": "x".repeat(4096)});
    let (s, body) = node.post("/api/collections/posts/records", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["status"], 413);
    let small = json!({"title": "fits"});
    assert_eq!(
        node.post("/api/collections/posts/records", small).await.0,
        StatusCode::OK
    );
    assert_eq!(node.ids("posts", "").await.len(), 1);
}

#[tokio::test]
async fn unknown_collections_and_routes_are_404_json() {
    let node = Node::start().await;
    for path in [
        "/api/collections/nope/records",
        "/api/collections/nope/records/abc",
        "/api/nothing/here",
        "/elsewhere",
    ] {
        let (s, body) = node.get(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["status"], 404, "{path}: {body}");
        assert!(body["message"].is_string() && body["data"].is_object());
    }
    let (s, _) = node.post("/api/collections/nope/records", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_filters_are_400_naming_the_problem() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let (s, body) = node
        .get("/api/collections/posts/records?filter=nope%3D1")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().expect("message").contains("nope"),
        "{body}"
    );
    let (s, body) = node
        .get("/api/collections/posts/records?filter=(title%3D'x'")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().expect("message").len() > 20,
        "{body}"
    );
    let (s, body) = node
        .get("/api/collections/posts/records?filter=title%3D'unterminated")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let long = format!("title='{}'", "x".repeat(3600));
    let (s, body) = node
        .get(&format!("/api/collections/posts/records?filter={long}"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("too long"),
        "{body}"
    );
    let (s, _) = node.get("/api/collections/posts/records?sort=nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn client_ids_must_be_15_lowercase_alphanumerics_and_unique() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    for bad in [
        "short",
        "ABCDEFGHIJKLMNO",
        "abcdefghijklmnop",
        "abc-efghijklmno",
    ] {
        let (s, body) = node
            .post(
                "/api/collections/posts/records",
                json!({"id": bad, "title": "x"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            body["data"]["id"]["code"]
                .as_str()
                .expect("code")
                .starts_with("validation_"),
            "{bad}: {body}"
        );
    }
    node.create_record("posts", json!({"id": "aaaaaaaaaaaaaaa", "title": "first"}))
        .await;
    let (s, body) = node
        .post(
            "/api/collections/posts/records",
            json!({"id": "aaaaaaaaaaaaaaa", "title": "second"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["data"]["id"]["code"], "validation_not_unique",
        "{body}"
    );
    let (_, rec) = node
        .get("/api/collections/posts/records/aaaaaaaaaaaaaaa")
        .await;
    assert_eq!(rec["title"], "first", "the duplicate changed nothing");
}

#[tokio::test]
async fn validation_failures_report_every_field_and_write_nothing() {
    let node = Node::start().await;
    node.create_collection(json!({"name": "v", "fields": [
        {"name": "title", "type": "text", "required": true, "max": 5},
        {"name": "email", "type": "email"},
        {"name": "kind", "type": "select", "values": ["x", "y"], "maxSelect": 1}
    ]}))
    .await;
    let (s, body) = node
        .post(
            "/api/collections/v/records",
            json!({"email": "not-an-email", "kind": "z"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Failed to create record.");
    assert_eq!(body["data"]["title"]["code"], "validation_required");
    assert_eq!(body["data"]["email"]["code"], "validation_is_email");
    assert_eq!(body["data"]["kind"]["code"], "validation_invalid_value");
    let (s, body) = node
        .post("/api/collections/v/records", json!({"title": "too long"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["data"]["title"]["code"],
        "validation_max_text_constraint"
    );
    assert!(node.ids("v", "").await.is_empty());
}

#[tokio::test]
async fn a_failed_schema_change_leaves_the_table_as_it_was() {
    let node = Node::start().await;
    let coll = node.create_collection(posts_def()).await;
    node.create_record("posts", json!({"title": "kept"})).await;
    let mut fields = coll["fields"].as_array().expect("fields").clone();
    fields.push(json!({"name": "extra", "type": "text"}));
    // The index names an unknown column: the whole update is refused.
    let (s, _) = node
        .patch(
            "/api/collections/posts",
            json!({"fields": fields, "indexes": ["CREATE INDEX idx_bad ON posts (missing)"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, rec) = node.get("/api/collections/posts/records?perPage=1").await;
    assert!(rec["items"][0].get("extra").is_none(), "{rec}");
    assert_eq!(rec["items"][0]["title"], "kept");
}
