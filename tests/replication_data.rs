//! View collections, truncate, the SQL console and request logs on a 3-node cluster (real
//! `syncbase` binaries on a real 3-server NATS cluster): a view's definition replicates like
//! any schema change and every node computes its rows from its own canonical tables; a
//! truncate replicates as the deletes it is made of; raw SQL writes are refused on a
//! replicating node; logs stay on the node that served the request.

mod nats_support;
mod replication_support;
mod support;

use std::time::{Duration, Instant};

use nats_support::Cluster;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Node, posts_def};

use replication_support::*;

/// The view's collection JSON on a node, timestamps included (they come from the event).
async fn collection(node: &Node, name: &str) -> Value {
    let (code, body) = node.get(&format!("/api/collections/{name}")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Waits until `node`'s collection `name` satisfies `ok`.
async fn wait_for_collection(node: &Node, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = node.get(&format!("/api/collections/{name}")).await;
        if code == StatusCode::OK && ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became as expected: {body}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn field<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no field {name} in {c}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_truncate_sql_and_logs_on_three_nodes() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three_with(&cluster, posts_def()).await;

    // A view defined on B reaches every node with the same fields, ids included.
    let (code, view) = b
        .post(
            "/api/collections",
            json!({
                "name": "post_stats", "type": "view", "listRule": "", "viewRule": "",
                "viewQuery": "SELECT id, title, n AS score, count(tags) AS tagged FROM posts GROUP BY id",
            }),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{view}");
    assert_eq!(field(&view, "score")["type"], "number");
    for node in [&a, &c] {
        wait_collection(node, "post_stats").await;
        assert_eq!(
            collection(node, "post_stats").await,
            view,
            "the view differs on a node"
        );
    }

    // Records written on every node show in the view on every node.
    for (i, node) in [&a, &b, &c].iter().enumerate() {
        for k in 0..3 {
            node.create_record(
                "posts",
                json!({"title": format!("p{i}{k}"), "n": i * 10 + k, "tags": ["a"]}),
            )
            .await;
        }
    }
    quiesce(&[&a, &b, &c], 60).await;
    let rows = records(&a, "post_stats").await;
    assert_eq!(rows.len(), 9);
    for node in [&b, &c] {
        assert_eq!(records(node, "post_stats").await, rows, "view rows differ");
    }
    let (code, page) = c
        .get("/api/collections/post_stats/records?filter=score%3E%3D20&sort=-score")
        .await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(page["totalItems"], 3);
    assert_eq!(page["items"][0]["title"], "p22");

    // A change to the base collection on C re-infers the view on every node alike.
    let mut posts = collection(&c, "posts").await;
    for f in posts["fields"].as_array_mut().expect("fields") {
        if f["name"] == "title" {
            f["max"] = json!(40);
        }
    }
    let (code, body) = c
        .patch("/api/collections/posts", json!({"fields": posts["fields"]}))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let updated = wait_for_collection(&c, "post_stats", |v| field(v, "title")["max"] == 40).await;
    for node in [&a, &b] {
        let seen =
            wait_for_collection(node, "post_stats", |v| field(v, "title")["max"] == 40).await;
        assert_eq!(seen, updated, "the re-inferred view differs on a node");
    }

    // View records are read-only on every node.
    let id = rows.keys().next().expect("a row").clone();
    let (code, _) = a
        .patch(
            &format!("/api/collections/post_stats/records/{id}"),
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // Truncate on A replicates as deletes: every node ends empty, tables identical.
    let (code, body) = a.delete("/api/collections/posts/truncate").await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    quiesce(&[&a, &b, &c], 60).await;
    assert!(same_everywhere(&[&a, &b, &c], "posts").await.is_empty());
    for node in [&a, &b, &c] {
        assert!(records(node, "post_stats").await.is_empty());
    }
    // A record written after the truncate survives it everywhere.
    b.create_record("posts", json!({"title": "after"})).await;
    quiesce(&[&a, &b, &c], 60).await;
    assert_eq!(same_everywhere(&[&a, &b, &c], "posts").await.len(), 1);

    // The SQL console reads, but refuses writes: they would bypass the log.
    let (code, body) = b
        .post("/api/sql", json!({"query": "UPDATE posts SET n = 99"}))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("replicating node"),
        "{body}"
    );
    let (code, body) = b
        .post("/api/sql", json!({"query": "SELECT title, n FROM posts"}))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([["after", "0"]]), "nothing was written");
    let (code, body) = b.post("/api/sql", json!({"query": "VACUUM"})).await;
    assert_eq!(code, StatusCode::OK, "maintenance is node-local: {body}");

    // Logs stay on the node that served the request.
    let marker = format!("only-on-a-{}", std::process::id());
    let (code, _) = a.raw_get(&format!("/api/health?m={marker}")).await;
    assert_eq!(code, StatusCode::OK);
    let filter = format!("data.url~'{marker}'");
    let q = format!(
        "/api/logs?filter={}",
        url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = a.get(&q).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["totalItems"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never logged its request: {body}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in [&b, &c] {
        let (_, body) = node.get(&q).await;
        assert_eq!(body["totalItems"], 0, "logs are node-local: {body}");
    }
}
