//! Helpers of the replication tests (`tests/replication.rs`, `tests/replication_faults.rs`):
//! nodes on an external NATS cluster, waiting for quiescence, comparing what every node holds,
//! and the shipped plugins built once per test binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::nats_support::Cluster;
use crate::support::Node;

/// Starts a node joined to the external cluster through server `via`.
pub async fn external_node(cluster: &Cluster, via: usize, id: &str) -> Node {
    let url = cluster.url(via);
    Node::start_with(&["--nats", &url, "--node-id", id, "--cluster", "t"]).await
}

/// Restarts a node of `external_node` on its data directory.
pub async fn respawn_external(
    cluster: &Cluster,
    dir: &std::path::Path,
    via: usize,
    id: &str,
) -> Node {
    Node::spawn(
        dir,
        &[
            "--nats",
            &cluster.url(via),
            "--node-id",
            id,
            "--cluster",
            "t",
        ],
    )
    .await
}

/// Three nodes on a 3-server cluster (a, b, c through servers 0, 1, 2), with the collection
/// `def` created on A and arrived everywhere.
pub async fn three_with(cluster: &Cluster, def: Value) -> (Node, Node, Node) {
    let a = external_node(cluster, 0, "a").await;
    let b = external_node(cluster, 1, "b").await;
    let c = external_node(cluster, 2, "c").await;
    let name = def["name"].as_str().expect("name").to_string();
    let (code, body) = a.post("/api/collections", def).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, &name).await;
    wait_collection(&c, &name).await;
    (a, b, c)
}

/// The status document of a node.
pub async fn status(node: &Node) -> Value {
    let (code, body) = node.get("/api/sync/status").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Waits until every node has published everything, folded the whole stream, and shows no
/// overlay: the cluster is quiet.
pub async fn quiesce(nodes: &[&Node], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut all = Vec::new();
        for n in nodes {
            all.push(status(n).await);
        }
        let seqs: Vec<u64> = all
            .iter()
            .map(|s| s["appliedSeq"].as_u64().unwrap_or(0))
            .collect();
        let quiet = all.iter().all(|s| {
            s["outboxBacklog"] == 0 && s["pendingOverlay"] == 0 && s["appliedSeq"] == s["streamSeq"]
        }) && seqs.iter().all(|s| *s == seqs[0] && *s > 0);
        if quiet {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not quiesce in {secs}s: {all:#?}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of `coll` on a node, by id (the API's view, hidden fields excluded).
pub async fn records(node: &Node, coll: &str) -> BTreeMap<String, Value> {
    let (code, body) = node
        .get(&format!(
            "/api/collections/{coll}/records?perPage=1000&sort=id&skipTotal=1"
        ))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| (r["id"].as_str().unwrap_or_default().to_string(), r.clone()))
        .collect()
}

/// Asserts all nodes hold identical records in `coll` (as the API shows them, and byte for
/// byte in every replicated table, hidden fields included) and returns them.
pub async fn same_everywhere(nodes: &[&Node], coll: &str) -> BTreeMap<String, Value> {
    let first = records(nodes[0], coll).await;
    let hashes = status_hashes(nodes[0]).await;
    assert!(hashes.get(coll).is_some(), "no hash for {coll}: {hashes}");
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let other = records(n, coll).await;
        assert_eq!(first, other, "node {i} differs from node 0 in {coll}");
        assert_eq!(
            hashes,
            status_hashes(n).await,
            "node {i}'s tables differ from node 0's"
        );
    }
    first
}

pub async fn status_hashes(node: &Node) -> Value {
    let (code, body) = node.get("/api/sync/status?hashes=1").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["tableHashes"].clone()
}

/// Waits until `node` has the collection (schema events replicate too).
pub async fn wait_collection(node: &Node, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _) = node.get(&format!("/api/collections/{name}")).await;
        if code == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "collection {name} never arrived");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn counters_def() -> Value {
    json!({
        "name": "counters",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "name", "type": "text"},
            {"name": "likes", "type": "number"},
        ],
    })
}

/// The shipped plugins these tests bind, built once per test binary.
pub fn component(name: &str) -> PathBuf {
    crate::support::shipped_component(name)
}

/// Uploads a component to a node under `name`.
pub async fn upload(node: &Node, name: &str) {
    let bytes = std::fs::read(component(name)).expect("read component");
    let resp = node
        .client
        .post(format!("{}/api/plugins?name={name}", node.url))
        .header("Authorization", &node.token)
        .header("Content-Type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert!(
        resp.status().is_success(),
        "upload {name}: {}",
        resp.status()
    );
}
