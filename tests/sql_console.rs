//! The SQL console (`POST /api/sql`) cannot disturb the connections that serve the API: what
//! SQLite counts as reading but changes a connection runs on one of its own, and transaction
//! statements, which would end the writer's batch or leave a reader inside a transaction, are
//! refused. (Its PocketBase-compatible behaviour is in `tests/js/data.test.mjs`.)

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Node, posts_def};

async fn sql(node: &Node, query: &str) -> (StatusCode, Value) {
    node.post("/api/sql", json!({ "query": query })).await
}

#[tokio::test]
async fn console_queries_leave_the_api_connections_as_they_were() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    node.create_record("posts", json!({"title": "Hello"})).await;

    // LIKE is case-insensitive for filters (`~`); a console PRAGMA must not change that for
    // the reader that happens to run it, nor for any other.
    let (code, body) = sql(&node, "PRAGMA case_sensitive_like = 1").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for _ in 0..8 {
        let ids = node
            .ids("posts", "filter=title~%27hello%27&skipTotal=1")
            .await;
        assert_eq!(ids.len(), 1, "a reader's LIKE became case-sensitive");
    }

    // Transaction statements are refused; nothing of the query runs.
    for q in [
        "BEGIN",
        "select 1; COMMIT",
        "UPDATE posts SET n = 7; COMMIT",
        "SAVEPOINT s",
    ] {
        let (code, body) = sql(&node, q).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("transaction statements are not allowed"),
            "{q}: {body}"
        );
    }
    let (_, body) = sql(&node, "SELECT n FROM posts").await;
    assert_eq!(
        body["rows"],
        json!([["0"]]),
        "the refused UPDATE wrote nothing"
    );

    // The writer still commits (a COMMIT inside its job would have ended its batch), and a
    // write through the console is one transaction: all of it or nothing.
    node.create_record("posts", json!({"title": "second"}))
        .await;
    let (code, body) = sql(&node, "UPDATE posts SET n = 1; UPDATE nosuch SET x = 1").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = sql(&node, "SELECT count(*) FROM posts WHERE n = 1").await;
    assert_eq!(
        body["rows"],
        json!([["0"]]),
        "the failed query left nothing behind"
    );
    let (code, body) = sql(&node, "UPDATE posts SET n = 2").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["affectedRows"], 2);
}
