//! Plugins as a cluster feature, on three real nodes over a 3-server NATS cluster, under a
//! load of conflicting writes on every node:
//!
//! - a plugin pushed to one node is listed by every node, with the nodes that compiled it;
//! - binding it through a node that did not receive the push works, and the bind waits for
//!   every node to have it compiled, so no node's fold ever stops to fetch or compile
//!   (`pluginFoldWaits` stays 0 everywhere: the machine-independent form of "a swap adds no
//!   fold lag"; `scripts/bench-plugin-swap` measures the lag itself);
//! - Python field-merge, then a swap to the JavaScript one, then a rollback: every node ends
//!   with the same rows (table hashes) and the same bindings;
//! - the binding event carries its limits: a node started with a tiny `--plugin-fuel` runs
//!   the plugin under the binding node's budget and decides like the others;
//! - a plugin a binding uses cannot be deleted, from any node.

mod nats_support;
mod replication_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nats_support::Cluster;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Node, foreign_plugin};
use syncbase_plugin_build::Lang;

use replication_support::*;

fn posts() -> Value {
    json!({
        "name": "posts",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "body", "type": "text"},
            {"name": "likes", "type": "number"},
        ],
    })
}

/// A shipped foreign plugin (`plugins/<lang>/<policy>`) built into a component file.
fn shipped_foreign(lang: Lang, policy: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(lang.name())
        .join(policy);
    let source = std::fs::read_to_string(dir.join(match lang {
        Lang::Python => "plugin.py",
        _ => "plugin.js",
    }))
    .expect("plugin source");
    let file = match lang {
        Lang::Python => "plugin.py",
        _ => "plugin.js",
    };
    foreign_plugin(lang, policy, "resolver", &[(file, &source)])
}

async fn push(node: &Node, name: &str, file: &std::path::Path) -> Value {
    let resp = node
        .client
        .post(format!("{}/api/plugins?name={name}", node.url))
        .header("Authorization", &node.token)
        .header("Content-Type", "application/wasm")
        .body(std::fs::read(file).expect("component"))
        .send()
        .await
        .expect("push");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "push {name}: {body}");
    body
}

/// Waits until every node lists `name` as compiled on all three nodes.
async fn listed_and_compiled_everywhere(nodes: &[&Node], name: &str) {
    nats_support::within(300, "the plugin compiled on every node", async {
        loop {
            let mut all = true;
            for n in nodes {
                let (_, list) = n.get("/api/plugins").await;
                let item = list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == name)
                    .cloned();
                all &= item.is_some_and(|p| p["nodes"].as_array().is_some_and(|n| n.len() == 3));
            }
            if all {
                return;
            }
            // Poll interval of the bounded wait for prefetching nodes.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

async fn bind(node: &Node, name: &str) {
    let (s, body) = node
        .post(
            &format!("/api/plugins/{name}/bind"),
            json!({"collection": "posts", "as": "resolver"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "bind {name}: {body}");
}

/// Conflicting writes from every node: each edits one field of a shared record.
fn start_load(
    nodes: &[&Node],
    ids: &[String],
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (client, url, token, ids) = (
            node.client.clone(),
            node.url.clone(),
            node.token.clone(),
            ids.to_vec(),
        );
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let field = ["title", "body", "likes"][i];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let id = &ids[(n as usize * 7 + i) % ids.len()];
                let value = if field == "likes" {
                    json!(n)
                } else {
                    json!(format!("{field}-{i}-{n}"))
                };
                let r = client
                    .patch(format!("{url}/api/collections/posts/records/{id}"))
                    .header("Authorization", &token)
                    .json(&json!({ field: value }))
                    .send()
                    .await
                    .expect("write");
                assert!(r.status().is_success(), "write: {}", r.status());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

async fn wait_writes(done: &Arc<AtomicUsize>, more: usize) {
    let target = done.load(Ordering::Relaxed) + more;
    nats_support::within(120, "writes under load", async {
        while done.load(Ordering::Relaxed) < target {
            // Poll interval while the load runs (bounded by `within`).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn active(node: &Node) -> Value {
    let (_, table) = node.get("/api/plugins/bindings").await;
    table[0]["active"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_every_node_and_swaps_under_load_never_stall_a_fold() {
    let py = shipped_foreign(Lang::Python, "field-merge");
    let js = shipped_foreign(Lang::Js, "field-merge");
    let cluster = Cluster::start(3).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 1, "b").await;
    // C's own defaults would starve any plugin: the bindings' limits must come from the log.
    let c = Node::start_with(&[
        "--nats",
        &cluster.url(2),
        "--node-id",
        "c",
        "--cluster",
        "t",
        "--plugin-fuel",
        "1000",
    ])
    .await;
    let nodes = [&a, &b, &c];
    let (code, body) = a.post("/api/collections", posts()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for n in [&b, &c] {
        wait_collection(n, "posts").await;
    }
    let mut ids = Vec::new();
    for i in 0..12 {
        let (s, r) = a
            .post(
                "/api/collections/posts/records?sync=applied",
                json!({"title": format!("t{i}"), "body": "b", "likes": 0}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        ids.push(r["id"].as_str().expect("id").to_string());
    }
    quiesce(&nodes, 60).await;

    // Pushed to A only, listed everywhere; C (which never saw the push) binds it.
    let pushed = push(&a, "fm-py", &py).await;
    assert_eq!(pushed["version"], 1, "{pushed}");
    listed_and_compiled_everywhere(&nodes, "fm-py").await;
    // The same content again is no new version.
    assert_eq!(push(&b, "fm-py", &py).await["unchanged"], true);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = start_load(&nodes, &ids, &stop, &done);
    wait_writes(&done, 150).await;
    bind(&c, "fm-py").await;
    wait_writes(&done, 150).await;

    // Swap to JavaScript (pushed to B, bound through A), then roll back through B.
    push(&b, "fm-js", &js).await;
    listed_and_compiled_everywhere(&nodes, "fm-js").await;
    bind(&a, "fm-js").await;
    wait_writes(&done, 150).await;
    let (s, body) = b
        .post(
            "/api/plugins/rollback",
            json!({"collection": "posts", "as": "resolver"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["binding"]["plugin"], "fm-py", "{body}");
    wait_writes(&done, 150).await;

    // A Rust resolver (light limits) bound through A: C's own fuel default would starve it,
    // the binding event's budget does not.
    push(&c, "fm-rs", &support::shipped_component("field-merge")).await;
    listed_and_compiled_everywhere(&nodes, "fm-rs").await;
    bind(&a, "fm-rs").await;
    wait_writes(&done, 150).await;

    // A plugin a binding uses (active, or kept for rollback) is not deleted, whichever node is
    // asked; an unused one is deleted everywhere.
    for n in nodes {
        let (s, body) = n.delete("/api/plugins/fm-rs").await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
        let (s, body) = n.delete("/api/plugins/fm-py").await;
        assert_eq!(s, StatusCode::CONFLICT, "kept for rollback: {body}");
    }
    let (s, body) = c.delete("/api/plugins/fm-js").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    quiesce(&nodes, 120).await;
    let rows = same_everywhere(&nodes, "posts").await;
    assert_eq!(rows.len(), 12);
    let binding = active(&a).await;
    assert_eq!(binding["plugin"], "fm-rs", "{binding}");
    // The binding carries A's default fuel for a light plugin, which C applies too.
    assert_eq!(binding["fuel"], 20_000_000, "{binding}");
    for n in nodes {
        assert_eq!(active(n).await, binding, "every node has the same binding");
        let s = status(n).await;
        assert_eq!(
            s["pluginFoldWaits"], 0,
            "{} waited in its fold: {s}",
            s["nodeId"]
        );
        assert_eq!(s["deadLetters"], 0, "{s}");
        let (_, list) = n.get("/api/plugins").await;
        let names: Vec<&str> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["fm-py", "fm-rs"], "{list}");
    }
    let (_, metrics) = c.raw_get("/metrics").await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("syncbase_plugin_fallbacks_total")
                && l.contains("plugin=\"fm-rs\"")
                && !l.ends_with(" 0")),
        "C's calls of fm-rs all answered: {metrics}"
    );
    // Conflicts were decided by the plugins, counted per collection.
    let (_, metrics) = c.raw_get("/metrics").await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("syncbase_conflicts_total{node=\"c\",collection=\"posts\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}
