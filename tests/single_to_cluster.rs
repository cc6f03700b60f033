//! Single node → cluster with real `syncbase` binaries and a real `nats-server`: a node that
//! served alone (10,000 records, a user, a file, a bound resolver plugin) is restarted with
//! replication and becomes the cluster's first snapshot; a second node joins and holds the
//! same tables, the user logs in there with their password, the binding and the file are
//! there, writes on either node replicate, and a restart of the first node seeds nothing
//! again. Two nodes with data of their own started at once on one empty stream: one starts
//! the cluster, the other refuses with a clear error and keeps its data as it was. And the
//! same step in embedded mode (`--sync`, each node running its own `nats-server`): a node with
//! 10,000 records, a user and a bound plugin, restarted with `--sync`, is joined by a second
//! embedded node that receives everything, and writes on either node replicate.

mod nats_support;
mod replication_support;
mod support;

use std::time::{Duration, Instant};

use nats_support::{Cluster, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Node, posts_def};

use replication_support::*;

const RECORDS: usize = 10_000;
const BATCH: usize = 1_000;

fn flags<'a>(url: &'a str, id: &'a str) -> Vec<&'a str> {
    vec!["--nats", url, "--node-id", id, "--cluster", "t"]
}

/// Waits until `GET /api/sync/ready` answers 200.
async fn wait_ready(node: &Node, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, body) = node.raw_get("/api/sync/ready").await;
        if code == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready in {secs}s: {code} {body}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `totalItems` of a collection as a node lists it.
async fn total(node: &Node, coll: &str) -> u64 {
    let (code, body) = node
        .get(&format!("/api/collections/{coll}/records?perPage=1"))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["totalItems"].as_u64().expect("totalItems")
}

/// Creates `n` posts through the batch API, `BATCH` to a request.
async fn seed_posts(node: &Node, n: usize) {
    let (code, body) = node
        .patch(
            "/api/settings",
            json!({"batch": {"enabled": true, "maxRequests": BATCH, "maxBodySize": 0}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for start in (0..n).step_by(BATCH) {
        let requests: Vec<Value> = (start..(start + BATCH).min(n))
            .map(|i| {
                json!({"method": "POST", "url": "/api/collections/posts/records",
                       "body": {"title": format!("post {i}"), "n": i}})
            })
            .collect();
        let (code, body) = node
            .post("/api/batch", json!({ "requests": requests }))
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
}

/// Uploads one file into a new `docs` record and returns the record.
async fn upload_doc(node: &Node, bytes: Vec<u8>) -> Value {
    let (code, body) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[("title", "a doc")],
            &[("doc", "hello.txt", bytes)],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
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
    let code = resp.status();
    (code, resp.bytes().await.expect("bytes").to_vec())
}

async fn login(node: &Node, email: &str, password: &str) -> (StatusCode, Value) {
    node.call_as(
        "",
        Method::POST,
        "/api/collections/users/auth-with-password",
        Some(json!({"identity": email, "password": password})),
    )
    .await
}

/// The active binding of plugin `name` as a node shows it.
/// Uploads the shipped `field-merge` plugin and binds it as the resolver of `posts`.
async fn bind_field_merge(node: &Node) {
    upload(node, "field-merge").await;
    let (code, body) = node
        .post(
            "/api/plugins/field-merge/bind",
            json!({"collection": "posts", "as": "resolver"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

async fn active_binding(node: &Node, name: &str) -> Value {
    let (code, shown) = node.get(&format!("/api/plugins/{name}")).await;
    assert_eq!(code, StatusCode::OK, "{shown}");
    shown["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["bindings"].as_array().cloned().unwrap_or_default())
        .find(|b| b["state"] == "active")
        .unwrap_or_else(|| panic!("no active binding of {name}: {shown}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_with_data_becomes_the_first_node_of_a_cluster() {
    let cluster = Cluster::start(1).await;
    let url = cluster.url(0);

    // A single node, served alone: records, a user, a file, a bound resolver.
    let mut a = Node::start().await;
    let dir = a.dir().to_path_buf();
    a.create_collection(posts_def()).await;
    seed_posts(&a, RECORDS).await;
    a.create_collection(json!({
        "name": "docs", "listRule": "", "viewRule": "",
        "fields": [{"name": "title", "type": "text"},
                   {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 1000000}],
    }))
    .await;
    let bytes = b"the bytes of a file the single node held".to_vec();
    let doc = upload_doc(&a, bytes.clone()).await;
    a.create_record(
        "users",
        json!({"email": "ann@example.com", "password": "annsecret1", "passwordConfirm": "annsecret1"}),
    )
    .await;
    bind_field_merge(&a).await;
    assert!(a.terminate().success());

    // The same directory with replication: its state is the cluster's start.
    let a = Node::spawn_logged(&dir, &flags(&url, "a")).await;
    wait_ready(&a, 120).await;
    let b = Node::start_with(&flags(&url, "b")).await;
    wait_ready(&b, 120).await;
    quiesce(&[&a, &b], 60).await;
    assert_eq!(total(&b, "posts").await, RECORDS as u64);
    assert_eq!(status_hashes(&a).await, status_hashes(&b).await);

    // The user logs in on the joined node with the password set on the single node.
    let (code, auth) = login(&b, "ann@example.com", "annsecret1").await;
    assert_eq!(code, StatusCode::OK, "{auth}");
    let (code, _) = login(&b, "ann@example.com", "wrong-password").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // The binding and the file came along.
    let binding = active_binding(&b, "field-merge").await;
    assert_eq!(
        (
            &binding["target"]["role"],
            &binding["target"]["collectionName"]
        ),
        (&json!("resolver"), &json!("posts")),
        "{binding}"
    );
    assert_eq!(download(&b, &doc).await, (StatusCode::OK, bytes));

    // Writes on either node replicate: a new record on B, an edit of a seeded one on A.
    let made = b
        .create_record("posts", json!({"title": "from b", "n": -1}))
        .await;
    let seeded = a.ids("posts", "filter=(n=7)").await;
    assert_eq!(seeded.len(), 1);
    let (code, body) = a
        .patch(
            &format!("/api/collections/posts/records/{}", seeded[0]),
            json!({"title": "edited on a"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    quiesce(&[&a, &b], 60).await;
    let (code, got) = a
        .get(&format!(
            "/api/collections/posts/records/{}",
            made["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(
        (code, got["title"].clone()),
        (StatusCode::OK, json!("from b"))
    );
    let (code, got) = b
        .get(&format!("/api/collections/posts/records/{}", seeded[0]))
        .await;
    assert_eq!(
        (code, got["title"].clone()),
        (StatusCode::OK, json!("edited on a"))
    );
    assert_eq!(status_hashes(&a).await, status_hashes(&b).await);

    // A restart of the first node seeds nothing again: one genesis snapshot, same tables.
    let mut a = a;
    assert!(a.terminate().success());
    let a = Node::spawn_logged(&dir, &flags(&url, "a")).await;
    wait_ready(&a, 60).await;
    quiesce(&[&a, &b], 60).await;
    assert_eq!(total(&a, "posts").await, RECORDS as u64 + 1);
    assert_eq!(status_hashes(&a).await, status_hashes(&b).await);
    let (code, snaps) = a.get("/api/sync/snapshots").await;
    assert_eq!(code, StatusCode::OK, "{snaps}");
    assert_eq!(
        snaps["kept"].as_array().map(Vec::len),
        Some(1),
        "only the genesis snapshot: {snaps}"
    );
    let log = a.log();
    assert_eq!(
        log.matches("is the cluster's first snapshot").count(),
        1,
        "seeded once: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_nodes_with_data_on_one_empty_stream_one_starts_the_cluster_the_other_refuses() {
    let cluster = Cluster::start(1).await;
    let url = cluster.url(0);
    let mut dirs = Vec::new();
    let mut keep = Vec::new();
    for tag in ["one", "two"] {
        let mut n = Node::start().await;
        n.create_collection(posts_def()).await;
        for i in 0..3 {
            n.create_record("posts", json!({"title": format!("{tag} {i}"), "n": i}))
                .await;
        }
        assert!(n.terminate().success());
        dirs.push(n.dir().to_path_buf());
        keep.push(n);
    }
    // Both at once on the same empty stream.
    let mut nodes = [
        Started::spawn(&dirs[0], &flags(&url, "one")),
        Started::spawn(&dirs[1], &flags(&url, "two")),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let loser = loop {
        let exited: Vec<usize> = (0..2)
            .filter(|i| nodes[*i].child.try_wait().expect("wait").is_some())
            .collect();
        if let [i] = exited[..] {
            break i;
        }
        assert!(exited.len() < 2, "both nodes stopped");
        assert!(Instant::now() < deadline, "neither node refused to start");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let winner = 1 - loser;
    let status = nodes[loser].child.wait().expect("wait");
    assert!(!status.success());
    let log = std::fs::read_to_string(dirs[loser].join("node.log")).expect("log");
    assert!(
        log.contains("already holds another history"),
        "a clear reason: {log}"
    );
    let url = nodes[winner].url.clone();
    let first = Node::attach(&url, "");
    wait_ready(&first, 60).await;
    assert_eq!(total(&first, "posts").await, 3);
    assert!(nodes[winner].child.try_wait().expect("wait").is_none());

    // The refused node's data is as it was: alone, it serves its own three records.
    let alone = Node::spawn(&dirs[loser], &[]).await;
    let titles: Vec<Value> = records(&alone, "posts")
        .await
        .into_values()
        .map(|r| r["title"].clone())
        .collect();
    let tag = ["one", "two"][loser];
    let mut want: Vec<Value> = (0..3).map(|i| json!(format!("{tag} {i}"))).collect();
    let mut titles = titles;
    titles.sort_by_key(|t| t.to_string());
    want.sort_by_key(|t| t.to_string());
    assert_eq!(titles, want);
    drop(keep);
}

/// A node process started on a directory, its stderr in `<dir>/node.log`: it may stop at
/// once, before anyone could sign in.
struct Started {
    child: std::process::Child,
    url: String,
}

impl Started {
    fn spawn(dir: &std::path::Path, flags: &[&str]) -> Started {
        use std::io::BufRead;
        let log = std::fs::File::create(dir.join("node.log")).expect("log file");
        let mut child = std::process::Command::new(support::bin())
            .args(["serve", "--http", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(flags)
            .env("SYNCBASE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn syncbase");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("startup line");
        let url = line
            .trim()
            .strip_prefix("Server started at ")
            .unwrap_or_else(|| panic!("unexpected startup line: {line:?}"))
            .to_string();
        Started { child, url }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Single node → cluster in embedded mode, as the README runs it: the node with data is
/// restarted with `--sync` (its own `nats-server`), a second node joins its NATS cluster with
/// `--join`, and receives every record and the user, who logs in there with their password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_with_data_restarted_with_sync_is_joined_by_an_embedded_node() {
    // The scenario in embedded mode: 10,000 records, a user and a bound plugin.
    const SEEDED: usize = RECORDS;
    let mut a = Node::start().await;
    let dir = a.dir().to_path_buf();
    a.create_collection(posts_def()).await;
    seed_posts(&a, SEEDED).await;
    a.create_record(
        "users",
        json!({"email": "eve@example.com", "password": "evesecret1", "passwordConfirm": "evesecret1"}),
    )
    .await;
    bind_field_merge(&a).await;
    assert!(a.terminate().success());

    let (nats_a, route_a) = (free_port().to_string(), free_port().to_string());
    let (nats_b, route_b) = (free_port().to_string(), free_port().to_string());
    let listen = |p: &str| format!("127.0.0.1:{p}");
    let (nats_a, route_a, nats_b, route_b) = (
        listen(&nats_a),
        listen(&route_a),
        listen(&nats_b),
        listen(&route_b),
    );
    let a = Node::spawn_logged(
        &dir,
        &[
            "--sync",
            "--node-id",
            "a",
            "--nats-listen",
            &nats_a,
            "--cluster-listen",
            &route_a,
        ],
    )
    .await;
    // A clustered nats-server runs JetStream only once a peer's server is routed to it: the
    // node cannot be ready alone, the second node starts now (and yields the stream to it).
    let b = Node::start_with(&[
        "--sync",
        "--node-id",
        "b",
        "--nats-listen",
        &nats_b,
        "--cluster-listen",
        &route_b,
        "--join",
        &route_a,
    ])
    .await;
    wait_ready(&a, 120).await;
    wait_ready(&b, 120).await;
    quiesce(&[&a, &b], 60).await;
    assert!(
        a.log().contains("is the cluster's first snapshot"),
        "{}",
        a.log()
    );
    assert_eq!(total(&b, "posts").await, SEEDED as u64);
    assert_eq!(status_hashes(&a).await, status_hashes(&b).await);
    let (code, auth) = login(&b, "eve@example.com", "evesecret1").await;
    assert_eq!(code, StatusCode::OK, "{auth}");
    let (code, _) = login(&b, "eve@example.com", "not-her-password").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let binding = active_binding(&b, "field-merge").await;
    assert_eq!(binding["target"]["collectionName"], "posts", "{binding}");

    // Writes on either node replicate.
    let from_b = b
        .create_record("posts", json!({"title": "from b", "n": -1}))
        .await;
    let from_a = a
        .create_record("posts", json!({"title": "from a", "n": -2}))
        .await;
    quiesce(&[&a, &b], 60).await;
    for (node, rec) in [(&a, &from_b), (&b, &from_a)] {
        let id = rec["id"].as_str().expect("id");
        let (code, got) = node
            .get(&format!("/api/collections/posts/records/{id}"))
            .await;
        assert_eq!((code, &got["title"]), (StatusCode::OK, &rec["title"]));
    }
    assert_eq!(total(&b, "posts").await, SEEDED as u64 + 2);
    assert_eq!(status_hashes(&a).await, status_hashes(&b).await);
}
