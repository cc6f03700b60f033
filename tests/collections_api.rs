//! The collections API against the real binary: access control, schema changes that keep
//! data, and PocketBase's validation codes.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn collections_are_superuser_only() {
    let node = Node::start().await;
    let (s, body) = node
        .call_as("", Method::GET, "/api/collections", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["status"], 401);
    // A regular user's token is authenticated but not allowed.
    node.create_record(
        "users",
        json!({"email": "u@example.com", "password": "secret123", "passwordConfirm": "secret123"}),
    )
    .await;
    let (s, auth) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "u@example.com", "password": "secret123"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{auth}");
    let user_token = auth["token"].as_str().expect("token").to_string();
    let (s, _) = node
        .call_as(&user_token, Method::GET, "/api/collections", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, list) = node.get("/api/collections").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"_superusers") && names.contains(&"users"),
        "{names:?}"
    );
}

#[tokio::test]
async fn fields_can_be_added_renamed_and_removed_keeping_other_data() {
    let node = Node::start().await;
    let coll = node.create_collection(posts_def()).await;
    let rec = node
        .create_record(
            "posts",
            json!({"title": "kept", "n": 7, "tags": ["a", "b"]}),
        )
        .await;
    let id = rec["id"].as_str().expect("id");

    let mut fields: Vec<Value> = coll["fields"].as_array().expect("fields").clone();
    for f in fields.iter_mut() {
        if f["name"] == "n" {
            f["name"] = json!("count");
        }
    }
    fields.retain(|f| f["name"] != "active");
    fields.push(json!({"name": "summary", "type": "text"}));
    let (s, body) = node
        .patch("/api/collections/posts", json!({"fields": fields}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let (s, got) = node
        .get(&format!("/api/collections/posts/records/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["title"], "kept");
    assert_eq!(got["count"], 7, "renamed field keeps its value: {got}");
    assert_eq!(got["tags"], json!(["a", "b"]));
    assert_eq!(got["summary"], "");
    assert!(
        got.get("active").is_none() && got.get("n").is_none(),
        "{got}"
    );

    // The collection can be renamed too, and records follow.
    let (s, _) = node
        .patch("/api/collections/posts", json!({"name": "articles"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, got) = node
        .get(&format!("/api/collections/articles/records/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["collectionName"], "articles");
    assert_eq!(
        node.get("/api/collections/posts").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_rename_that_collides_is_refused_and_changes_nothing() {
    let node = Node::start().await;
    let coll = node.create_collection(posts_def()).await;
    node.create_record("posts", json!({"title": "x", "n": 1}))
        .await;
    let mut fields: Vec<Value> = coll["fields"].as_array().expect("fields").clone();
    for f in fields.iter_mut() {
        if f["name"] == "n" {
            f["name"] = json!("title");
        }
    }
    let (s, body) = node
        .patch("/api/collections/posts", json!({"fields": fields}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let errs = body["data"]["fields"].as_object().expect("field errors");
    let first = errs.values().next().expect("one error");
    assert_eq!(first["name"]["code"], "validation_duplicated_field_name");
    let (_, after) = node.get("/api/collections/posts").await;
    assert_eq!(after["fields"], coll["fields"], "schema unchanged");
}

#[tokio::test]
async fn invalid_collection_definitions_get_pocketbase_codes() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let cases = [
        (
            json!({"name": "posts"}),
            "/data/name/code",
            "validation_collection_name_exists",
        ),
        (
            json!({"name": "POSTS"}),
            "/data/name/code",
            "validation_collection_name_exists",
        ),
        (
            json!({"name": "bad name"}),
            "/data/name/code",
            "validation_match_invalid",
        ),
        (
            json!({"name": ""}),
            "/data/name/code",
            "validation_required",
        ),
        (
            json!({"name": "x", "fields": [{"name": "r", "type": "relation", "collectionId": "nope"}]}),
            "/data/fields/1/collectionId/code",
            "validation_field_relation_missing_collection",
        ),
        (
            json!({"name": "x", "listRule": "nope = 1"}),
            "/data/listRule/code",
            "validation_invalid_rule",
        ),
        (
            json!({"name": "x", "indexes": ["CREATE INDEX bad"]}),
            "/data/indexes/0/code",
            "validation_invalid_index_expression",
        ),
    ];
    for (def, pointer, code) in cases {
        let (s, body) = node.post("/api/collections", def.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{def} → {body}");
        assert_eq!(
            body.pointer(pointer).and_then(Value::as_str),
            Some(code),
            "{def} → {body}"
        );
    }
    let (s, body) = node
        .post(
            "/api/collections",
            json!({"name": "x", "fields": [{"name": "z", "type": "weird"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // A field's type cannot change.
    let (_, coll) = node.get("/api/collections/posts").await;
    let mut fields: Vec<Value> = coll["fields"].as_array().expect("fields").clone();
    for f in fields.iter_mut() {
        if f["name"] == "n" {
            f["type"] = json!("text");
        }
    }
    let (s, body) = node
        .patch("/api/collections/posts", json!({"fields": fields}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let errs = body["data"]["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("field errors: {body}"));
    assert_eq!(
        errs.values().next().expect("one")["code"],
        "validation_field_type_change"
    );
}

#[tokio::test]
async fn system_and_referenced_collections_cannot_be_deleted() {
    let node = Node::start().await;
    let (s, _) = node.delete("/api/collections/_superusers").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    node.create_collection(posts_def()).await;
    let (_, posts) = node.get("/api/collections/posts").await;
    node.create_collection(json!({"name": "comments", "fields": [
        {"name": "post", "type": "relation", "collectionId": posts["id"], "maxSelect": 1}
    ]}))
    .await;
    let (s, _) = node.delete("/api/collections/posts").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        node.delete("/api/collections/comments").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        node.delete("/api/collections/posts").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        node.get("/api/collections/posts/records").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn import_creates_updates_and_deletes_missing() {
    let node = Node::start().await;
    node.create_collection(json!({"name": "old"})).await;
    node.create_collection(posts_def()).await;
    let (s, body) = node
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(json!({"deleteMissing": true, "collections": [
                // Order does not matter: tags refers to a collection defined after it.
                {"name": "tags", "fields": [{"name": "owner", "type": "relation", "collectionId": "pbc_999", "maxSelect": 1}]},
                {"id": "pbc_999", "name": "owners", "fields": [{"name": "label", "type": "text"}]},
                posts_def(),
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (_, list) = node.get("/api/collections?perPage=100").await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"tags") && names.contains(&"owners") && names.contains(&"posts"),
        "{names:?}"
    );
    assert!(!names.contains(&"old"), "{names:?}");
    // Importing something invalid changes nothing at all.
    let (s, _) = node
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(json!({"collections": [{"name": "fresh"}, {"name": "bad name"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        node.get("/api/collections/fresh").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unique_indexes_report_validation_not_unique() {
    let node = Node::start().await;
    node.create_collection(json!({
        "name": "slugs",
        "fields": [{"name": "slug", "type": "text"}],
        "indexes": ["CREATE UNIQUE INDEX idx_slug ON slugs (slug)"]
    }))
    .await;
    node.create_record("slugs", json!({"slug": "hello"})).await;
    let (s, body) = node
        .post("/api/collections/slugs/records", json!({"slug": "hello"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["data"]["slug"]["code"], "validation_not_unique",
        "{body}"
    );
    assert_eq!(node.ids("slugs", "").await.len(), 1);
}
