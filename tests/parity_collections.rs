//! PocketBase parity of collection definitions (issue 17), against the real binary: ids
//! derived as PocketBase derives them, auth fields in PocketBase's order, and the names and
//! sizes SQLite cannot take refused as validation errors. Every id and order asserted here is
//! what PocketBase 0.40.6 gives the same definitions.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

fn names(c: &Value) -> Vec<&str> {
    c["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn collection_ids_and_auth_field_order_are_pocketbases() {
    let node = Node::start().await;
    let zz = node.create_collection(json!({"name": "zz"})).await;
    assert_eq!(zz["id"], "pbc_37379816");
    let aa = node
        .create_collection(json!({"name": "aa2", "type": "auth",
            "fields": [{"name": "nick", "type": "text"}, {"name": "verified", "type": "bool"},
                       {"name": "created", "type": "autodate", "onCreate": true}]}))
        .await;
    assert_eq!(aa["id"], "pbc_3836098511");
    // Missing system fields come after the submitted ones; submitted ones keep their place.
    assert_eq!(
        names(&aa),
        [
            "id",
            "nick",
            "verified",
            "created",
            "password",
            "tokenKey",
            "email",
            "emailVisibility"
        ]
    );
    assert_eq!(
        aa["indexes"],
        json!([
            "CREATE UNIQUE INDEX `idx_tokenKey_pbc_3836098511` ON `aa2` (`tokenKey`)",
            "CREATE UNIQUE INDEX `idx_email_pbc_3836098511` ON `aa2` (`email`) WHERE `email` != ''"
        ])
    );
    let (s, aa) = node
        .patch(
            "/api/collections/aa2",
            json!({"fields": [{"name": "nick2", "type": "text"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{aa}");
    assert_eq!(
        names(&aa),
        [
            "id",
            "nick2",
            "password",
            "tokenKey",
            "email",
            "emailVisibility",
            "verified"
        ]
    );
    // A taken id gets a suffix, as PocketBase does.
    node.create_collection(json!({"name": "squatter", "id": "pbc_2165074983"}))
        .await;
    let second = node.create_collection(json!({"name": "second"})).await;
    assert_eq!(second["id"], "pbc_21650749832");
    // Deleted and made again, the same definition gets the same id.
    assert_eq!(
        node.delete("/api/collections/zz").await.0,
        StatusCode::NO_CONTENT
    );
    let again = node.create_collection(json!({"name": "zz"})).await;
    assert_eq!(again["id"], "pbc_37379816");
}

#[tokio::test]
async fn names_and_sizes_sqlite_cannot_take_are_validation_errors() {
    let node = Node::start().await;
    for name in [
        "_params",
        "_collections",
        "sqlite_master",
        "sqlite_x",
        "_sync_outbox",
        "_sync_later",
        "_SYNC_x",
    ] {
        let (s, err) = node
            .post(
                "/api/collections",
                json!({"name": name, "fields": [{"name": "t", "type": "text"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name}: {err}");
        assert_eq!(
            err["data"]["name"]["code"], "validation_collection_name_invalid",
            "{name}: {err}"
        );
    }
    // Renaming into one is refused the same way.
    node.create_collection(json!({"name": "plain"})).await;
    let (s, err) = node
        .patch("/api/collections/plain", json!({"name": "_params"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(
        err["data"]["name"]["code"],
        "validation_collection_name_invalid"
    );

    // More fields than SQLite allows columns: a validation error, nothing created.
    let many: Vec<Value> = (0..2001)
        .map(|i| json!({"name": format!("f{i}"), "type": "text"}))
        .collect();
    let (s, err) = node
        .post("/api/collections", json!({"name": "wide", "fields": many}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["data"]["fields"]["code"], "validation_too_many_fields");
    assert_eq!(
        node.get("/api/collections/wide").await.0,
        StatusCode::NOT_FOUND
    );
    // ...also by adding them to an existing collection.
    let (s, err) = node
        .patch("/api/collections/plain", json!({"fields": many}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");

    // Field names get PocketBase's codes.
    for (name, code) in [
        ("expand", "validation_not_in_invalid"),
        ("collectionId", "validation_not_in_invalid"),
        ("_rowid_", "validation_not_in_invalid"),
        ("a-b", "validation_match_invalid"),
        ("a_via_b", "validation_found_via"),
    ] {
        let (s, err) = node
            .post(
                "/api/collections",
                json!({"name": "fx", "fields": [{"name": name, "type": "text"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name}: {err}");
        assert_eq!(
            err["data"]["fields"]["1"]["name"]["code"], code,
            "{name}: {err}"
        );
    }
    // A name PocketBase accepts that Syncbase used to refuse.
    node.create_collection(
        json!({"name": "1st_place", "fields": [{"name": "2nd", "type": "text"}]}),
    )
    .await;
}
