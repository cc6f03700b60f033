//! Replication end to end: real `syncbase` binaries replicating through real `nats-server`
//! processes (a 3-server cluster the test starts, or each node's embedded server), checked
//! over HTTP the way a user would: every node ends with the same records, conflicts resolve
//! by the bound policy, and writes made while NATS is down arrive when it returns.

mod nats_support;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nats_support::{Cluster, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Node, Sse, posts_def};
use syncbase_plugin_build::{BuildOptions, build_plugins};

/// Starts a node joined to the external cluster through server `via`.
async fn external_node(cluster: &Cluster, via: usize, id: &str) -> Node {
    let url = cluster.url(via);
    Node::start_with(&["--nats", &url, "--node-id", id, "--cluster", "t"]).await
}

/// Restarts a node of `external_node` on its data directory.
async fn respawn_external(cluster: &Cluster, dir: &std::path::Path, via: usize, id: &str) -> Node {
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
async fn three_with(cluster: &Cluster, def: Value) -> (Node, Node, Node) {
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
async fn status(node: &Node) -> Value {
    let (code, body) = node.get("/api/sync/status").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Waits until every node has published everything, folded the whole stream, and shows no
/// overlay: the cluster is quiet.
async fn quiesce(nodes: &[&Node], secs: u64) {
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
async fn records(node: &Node, coll: &str) -> BTreeMap<String, Value> {
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
async fn same_everywhere(nodes: &[&Node], coll: &str) -> BTreeMap<String, Value> {
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

async fn status_hashes(node: &Node) -> Value {
    let (code, body) = node.get("/api/sync/status?hashes=1").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["tableHashes"].clone()
}

/// Waits until `node` has the collection (schema events replicate too).
async fn wait_collection(node: &Node, name: &str) {
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

fn counters_def() -> Value {
    json!({
        "name": "counters",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "name", "type": "text"},
            {"name": "likes", "type": "number"},
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_a_nats_cluster_replicate_schema_records_and_realtime() {
    let cluster = Cluster::start(3).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 1, "b").await;
    let c = external_node(&cluster, 2, "c").await;

    // A schema change on A answers once A applied it from the log; B and C follow.
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;
    wait_collection(&c, "posts").await;
    let (_, on_b) = b.get("/api/collections/posts").await;
    assert_eq!(
        on_b["id"], body["id"],
        "collections keep their ids everywhere"
    );

    // Realtime on B sees A's write, from B's own applied log.
    let (_, user_token) = support::user(&b, "rt@example.com").await;
    let mut sse = Sse::connect(&b).await;
    assert_eq!(
        sse.subscribe(&b, &user_token, &["posts/*"]).await,
        StatusCode::NO_CONTENT
    );

    // Writes on every node; ?sync=applied answers after the writer's node folded it.
    let mut ids = Vec::new();
    for (i, node) in [&a, &b, &c].iter().enumerate() {
        for k in 0..5 {
            let (code, rec) = node
                .post(
                    "/api/collections/posts/records?sync=applied",
                    json!({"title": format!("from {i} #{k}"), "n": k}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{rec}");
            ids.push(rec["id"].as_str().expect("id").to_string());
        }
    }
    let event = nats_support::within(30, "B's realtime event for A's write", async {
        loop {
            let e = sse.next().await.expect("stream open");
            if e.data["record"]["title"] == "from 0 #0" {
                return e;
            }
        }
    })
    .await;
    assert_eq!(event.data["action"], "create");

    quiesce(&[&a, &b, &c], 60).await;
    let all = same_everywhere(&[&a, &b, &c], "posts").await;
    for id in &ids {
        assert!(
            all.contains_key(id),
            "record {id} missing after replication"
        );
    }
    // Users (auth records, password hashes included) replicate as stored: the user made on
    // B logs in on A and C.
    for node in [&a, &c] {
        let (code, body) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/users/auth-with-password",
                Some(json!({"identity": "rt@example.com", "password": "secret123"})),
            )
            .await;
        assert_eq!(
            code,
            StatusCode::OK,
            "replicated user cannot log in: {body}"
        );
    }
    // A token issued by B is valid on A and C (one users collection, one secret): the SDK
    // behind a load balancer keeps working whichever node it reaches.
    for node in [&a, &c] {
        let (code, body) = node
            .call_as(
                &user_token,
                Method::POST,
                "/api/collections/users/auth-refresh",
                None,
            )
            .await;
        assert_eq!(code, StatusCode::OK, "B's token refused elsewhere: {body}");
    }
    // Status says who is who.
    let s = status(&a).await;
    assert_eq!(s["nodeId"], "a");
    assert_eq!(s["mode"], "external");
    assert_eq!(s["nats"]["connected"], true);
    let peers: Vec<&str> = s["peersSeen"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for p in ["a", "b", "c"] {
        assert!(peers.contains(&p), "peer {p} not seen: {peers:?}");
    }
    let (code, metrics) = a.raw_get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        metrics.contains("syncbase_applied_seq{node=\"a\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_nodes_form_a_cluster_and_converge() {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, r)| format!("127.0.0.1:{r}"))
        .collect();
    let mut nodes = Vec::new();
    let mut all_flags = Vec::new();
    for (i, (client, route)) in ports.iter().enumerate() {
        let id = format!("e{i}");
        let nats_listen = format!("127.0.0.1:{client}");
        let cluster_listen = format!("127.0.0.1:{route}");
        let join: Vec<String> = routes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| r.clone())
            .collect();
        let join = join.join(",");
        let flags: Vec<String> = [
            "--sync",
            "--node-id",
            &id,
            "--nats-listen",
            &nats_listen,
            "--cluster-listen",
            &cluster_listen,
            "--join",
            &join,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        nodes.push(Node::start_with(&args).await);
        all_flags.push(flags);
    }
    // e2 dies hard: its nats-server child outlives it. Restarted on the same directory and
    // ports, the node stops that leftover server and takes over.
    let dir = nodes[2].dir().to_path_buf();
    nodes[2].kill();
    let args: Vec<&str> = all_flags[2].iter().map(String::as_str).collect();
    let restarted = Node::spawn(&dir, &args).await;
    let dead = std::mem::replace(&mut nodes[2], restarted);
    let refs: Vec<&Node> = nodes.iter().collect();
    let (code, body) = refs[0].post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for n in &refs[1..] {
        wait_collection(n, "posts").await;
    }
    for (i, n) in refs.iter().enumerate() {
        for k in 0..3 {
            let (code, rec) = n
                .post(
                    "/api/collections/posts/records",
                    json!({"title": format!("e{i}-{k}")}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{rec}");
        }
    }
    quiesce(&refs, 90).await;
    let all = same_everywhere(&refs, "posts").await;
    assert_eq!(all.len(), 9);
    assert_eq!(status(refs[1]).await["mode"], "embedded");
    drop(nodes);
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_writes_converge_last_writer_wins() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three_with(&cluster, posts_def()).await;
    let nodes = [&a, &b, &c];
    // Ten shared records, created on A and replicated before the contest starts.
    let mut ids = Vec::new();
    for k in 0..10 {
        let (code, rec) = a
            .post(
                "/api/collections/posts/records?sync=applied",
                json!({"title": format!("shared {k}"), "n": 0}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{rec}");
        ids.push(rec["id"].as_str().expect("id").to_string());
    }
    quiesce(&nodes, 60).await;
    // Every node updates every record at once; one node also deletes two of them.
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let client = node.client.clone();
        let url = node.url.clone();
        let token = node.token.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                for (k, id) in ids.iter().enumerate() {
                    if i == 2 && round == 2 && k < 2 {
                        let r = client
                            .delete(format!("{url}/api/collections/posts/records/{id}"))
                            .header("Authorization", &token)
                            .send()
                            .await
                            .expect("delete");
                        assert!(r.status().is_success() || r.status() == 404);
                        continue;
                    }
                    let r = client
                        .patch(format!("{url}/api/collections/posts/records/{id}"))
                        .header("Authorization", &token)
                        .json(&json!({"title": format!("node {i} round {round}"), "n": round}))
                        .send()
                        .await
                        .expect("update");
                    // A record deleted locally (its delete already folded here) is a 404.
                    assert!(
                        r.status().is_success() || r.status() == 404,
                        "update failed: {}",
                        r.status()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    quiesce(&nodes, 60).await;
    let all = same_everywhere(&nodes, "posts").await;
    // Every surviving record carries one node's final round: LWW keeps whole writes, never
    // a mix of two.
    for (id, rec) in &all {
        let title = rec["title"].as_str().unwrap_or_default();
        let round: i64 = title
            .rsplit(' ')
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(-1);
        assert_eq!(rec["n"], round, "record {id} mixes two writes: {rec}");
    }
    let dead: Vec<u64> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(status(n).await["deadLetters"].as_u64().unwrap_or(0));
        }
        v
    };
    assert!(
        dead.iter().all(|d| *d == dead[0]),
        "dead letters differ: {dead:?}"
    );
}

/// The shipped plugins these tests bind, built once per test binary.
fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let options = BuildOptions {
                plugin_dirs: ["counter", "redact", "local-only"]
                    .iter()
                    .map(|p| root.join("plugins").join(p))
                    .collect(),
                target_dir: Some(
                    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-plugin-build"),
                ),
                out_dir: None,
                world: None,
            };
            build_plugins(&options)
                .unwrap_or_else(|e| panic!("building plugins: {e}"))
                .into_iter()
                .map(|b| (b.name, b.component))
                .collect()
        })
        .get(name)
        .unwrap_or_else(|| panic!("plugin {name} not built"))
        .clone()
}

/// Uploads a component to a node under `name`.
async fn upload(node: &Node, name: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_resolver_bound_through_the_log_adds_up_every_increment() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three_with(&cluster, counters_def()).await;
    let nodes = [&a, &b, &c];
    // The plugin is uploaded on A only; binding it is a log event, and B and C fetch the
    // bytes from the object store before they switch.
    upload(&a, "counter").await;
    let (code, body) = a
        .post(
            "/api/plugins/counter/bind",
            json!({"as": "resolver", "collection": "counters", "config": "{\"fields\":[\"likes\"]}"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, rec) = a
        .post(
            "/api/collections/counters/records?sync=applied",
            json!({"name": "hits", "likes": 0}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{rec}");
    let id = rec["id"].as_str().expect("id").to_string();
    quiesce(&nodes, 60).await;
    for n in &nodes {
        let s = status(n).await;
        assert!(
            s["plugins"].to_string().contains("counter"),
            "counter not bound on {}: {s}",
            s["nodeId"]
        );
    }
    // Each node increments its local view 10 times, concurrently with the others.
    let mut tasks = Vec::new();
    for node in nodes {
        let client = node.client.clone();
        let url = node.url.clone();
        let token = node.token.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let r = client
                    .patch(format!("{url}/api/collections/counters/records/{id}"))
                    .header("Authorization", &token)
                    .json(&json!({"likes+": 1}))
                    .send()
                    .await
                    .expect("increment");
                assert!(r.status().is_success(), "increment: {}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.expect("increment task");
    }
    quiesce(&nodes, 60).await;
    let all = same_everywhere(&nodes, "counters").await;
    assert_eq!(
        all[&id]["likes"], 30,
        "every increment counts: {:?}",
        all[&id]
    );
    // The operator's view of the same, from the CLI.
    let out = std::process::Command::new(support::bin())
        .args([
            "sync", "status", "--hashes", "--url", &c.url, "--token", &c.token,
        ])
        .output()
        .expect("run syncbase sync status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "node c (external NATS, cluster t): connected",
        "lag 0",
        "outbox backlog 0",
        "plugin resolver counters: counter",
        "table counters: ",
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    // A restarted node resumes with the bindings its fold committed.
    let mut b = b;
    assert!(b.terminate().success());
    let dir = b.dir().to_path_buf();
    let b2 = respawn_external(&cluster, &dir, 1, "b").await;
    let s = status(&b2).await;
    assert!(
        s["plugins"].to_string().contains("counter"),
        "binding lost over a restart: {s}"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_nats_outage_succeed_locally_and_replicate_in_order_later() {
    let mut cluster = Cluster::start(1).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 0, "b").await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;
    quiesce(&[&a, &b], 30).await;

    cluster.stop(0).await;
    let mut ids = Vec::new();
    for k in 0..20 {
        let (code, rec) = a
            .post(
                "/api/collections/posts/records",
                json!({"title": format!("offline {k}"), "n": k}),
            )
            .await;
        assert_eq!(
            code,
            StatusCode::OK,
            "a local write must succeed while NATS is down: {rec}"
        );
        ids.push(rec["id"].as_str().expect("id").to_string());
    }
    // The writer sees its own writes (the overlay) and the outbox holds them.
    assert_eq!(records(&a, "posts").await.len(), 20);
    let s = status(&a).await;
    assert_eq!(s["outboxBacklog"], 20, "{s}");
    // Waiting for publication times out with a clear answer instead of hanging.
    let (code, body) = a
        .post(
            "/api/collections/posts/records?sync=published",
            json!({"title": "waits"}),
        )
        .await;
    assert_eq!(code, StatusCode::GATEWAY_TIMEOUT, "{body}");
    ids.push(String::new());

    cluster.restart(0).await;
    quiesce(&[&a, &b], 60).await;
    let on_b = same_everywhere(&[&a, &b], "posts").await;
    assert_eq!(on_b.len(), 21);
    // In order: B folded A's offline writes in the order A made them.
    let (code, body) = b
        .get("/api/collections/posts/records?perPage=100&sort=created,n&filter=title~'offline'")
        .await;
    assert_eq!(code, StatusCode::OK);
    let views: Vec<i64> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["n"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(views, (0..20).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_applies_each_event_exactly_once() {
    let cluster = Cluster::start(1).await;
    let a = external_node(&cluster, 0, "a").await;
    let mut b = external_node(&cluster, 0, "b").await;
    let (code, body) = a.post("/api/collections", counters_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "counters").await;
    let (code, rec) = a
        .post(
            "/api/collections/counters/records?sync=applied",
            json!({"name": "x", "likes": 0}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{rec}");
    let id = rec["id"].as_str().expect("id").to_string();
    quiesce(&[&a, &b], 30).await;

    // B dies hard while A keeps writing; it comes back on the same data directory.
    let dir = b.dir().to_path_buf();
    b.kill();
    for _ in 0..50 {
        let (code, _) = a
            .patch(
                &format!("/api/collections/counters/records/{id}"),
                json!({"likes+": 1}),
            )
            .await;
        assert_eq!(code, StatusCode::OK);
    }
    let b2 = respawn_external(&cluster, &dir, 0, "b").await;
    quiesce(&[&a, &b2], 60).await;
    let all = same_everywhere(&[&a, &b2], "counters").await;
    assert_eq!(all[&id]["likes"], 50);
    let s = status(&b2).await;
    assert_eq!(s["deadLetters"], 0, "{s}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replication_input_is_refused_clearly() {
    // An unknown write concern.
    let cluster = Cluster::start(1).await;
    let a = external_node(&cluster, 0, "a").await;
    let (code, _) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = a
        .post(
            "/api/collections/posts/records?sync=eventually",
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sync")
    );
    // The status endpoint is for superusers only.
    let (code, _) = a.call_as("", Method::GET, "/api/sync/status", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // Embedded mode without a nats-server binary: a clear error naming how to get one.
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(support::bin())
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--sync",
            "--nats-server-bin",
        ])
        .arg(tmp.path().join("no-such-nats-server"))
        .arg("--dir")
        .arg(tmp.path())
        .output()
        .expect("run syncbase");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nats-server-bin"), "{err}");
    // --nats and --sync together.
    let out = std::process::Command::new(support::bin())
        .args(["serve", "--sync", "--nats", "nats://127.0.0.1:1", "--dir"])
        .arg(tmp.path())
        .output()
        .expect("run syncbase");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exclusive"));
}

/// One seeded run of random operations across three nodes, with a node killed (-9) and
/// restarted and a NATS server restarted at random points, a schema change and a resolver
/// swap in the middle. Invariants: every node ends with the same records and the same dead
/// letter count, and no acknowledged create that nobody deleted is lost.
async fn random_run(seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start(3).await;
    let mut nodes = vec![
        Some(external_node(&cluster, 0, "a").await),
        Some(external_node(&cluster, 1, "b").await),
        Some(external_node(&cluster, 2, "c").await),
    ];
    let names = ["a", "b", "c"];
    let (code, body) = nodes[0]
        .as_ref()
        .expect("a")
        .post("/api/collections", counters_def())
        .await;
    assert_eq!(code, StatusCode::OK, "seed {seed}: {body}");
    for n in nodes.iter().skip(1).flatten() {
        wait_collection(n, "counters").await;
    }
    let mut created: Vec<String> = Vec::new();
    let mut deleted: std::collections::HashSet<String> = Default::default();
    let ops = 120;
    let kill_at = rng.random_range(20..ops - 20);
    let nats_at = rng.random_range(20..ops - 20);
    let schema_at = ops / 2;
    let swap_at = ops / 3;
    let mut killed: Option<(usize, PathBuf)> = None;
    let mut graveyard = Vec::new();
    for step in 0..ops {
        if step == kill_at {
            let i = rng.random_range(1..3);
            let mut n = nodes[i].take().expect("node up");
            let dir = n.dir().to_path_buf();
            n.kill();
            killed = Some((i, dir));
            // The dead node keeps owning its temp dir until the end of the run.
            graveyard.push(n);
        }
        if step == kill_at + 15
            && let Some((i, dir)) = killed.take()
        {
            nodes[i] = Some(respawn_external(&cluster, &dir, i, names[i]).await);
        }
        if step == nats_at {
            let i = rng.random_range(0..3);
            cluster.restart(i).await;
        }
        if step == schema_at {
            let n = nodes[0].as_ref().expect("a stays up");
            let mut def = counters_def();
            def["fields"]
                .as_array_mut()
                .expect("fields")
                .push(json!({"name": "note", "type": "text"}));
            let (code, body) = n.patch("/api/collections/counters", def).await;
            assert_eq!(code, StatusCode::OK, "seed {seed}: schema change: {body}");
        }
        if step == swap_at {
            let n = nodes[0].as_ref().expect("a stays up");
            upload(n, "counter").await;
            let (code, body) = n
                .post(
                    "/api/plugins/counter/bind",
                    json!({"as": "resolver", "collection": "counters"}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "seed {seed}: swap: {body}");
        }
        let up: Vec<usize> = (0..3).filter(|i| nodes[*i].is_some()).collect();
        let node = nodes[up[rng.random_range(0..up.len())]]
            .as_ref()
            .expect("up");
        let roll = rng.random_range(0..10);
        if created.is_empty() || roll < 3 {
            let (code, rec) = node
                .post(
                    "/api/collections/counters/records",
                    json!({"name": format!("r{step}"), "likes": rng.random_range(0..5)}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "seed {seed}: create: {rec}");
            created.push(rec["id"].as_str().expect("id").to_string());
        } else if roll < 9 {
            let id = &created[rng.random_range(0..created.len())];
            let (code, body) = node
                .patch(
                    &format!("/api/collections/counters/records/{id}"),
                    json!({"likes+": 1, "name": format!("u{step}")}),
                )
                .await;
            assert!(
                code == StatusCode::OK || code == StatusCode::NOT_FOUND,
                "seed {seed}: update: {code} {body}"
            );
        } else {
            let id = created[rng.random_range(0..created.len())].clone();
            let (code, body) = node
                .delete(&format!("/api/collections/counters/records/{id}"))
                .await;
            assert!(
                code == StatusCode::NO_CONTENT || code == StatusCode::NOT_FOUND,
                "seed {seed}: delete: {code} {body}"
            );
            deleted.insert(id);
        }
    }
    if let Some((i, dir)) = killed.take() {
        nodes[i] = Some(respawn_external(&cluster, &dir, i, names[i]).await);
    }
    let refs: Vec<&Node> = nodes.iter().flatten().collect();
    quiesce(&refs, 120).await;
    let all = same_everywhere(&refs, "counters").await;
    for id in created.iter().filter(|id| !deleted.contains(*id)) {
        assert!(
            all.contains_key(id),
            "seed {seed}: acknowledged record {id} lost"
        );
    }
    let mut dead = Vec::new();
    for n in &refs {
        dead.push(status(n).await["deadLetters"].clone());
    }
    assert!(
        dead.iter().all(|d| *d == dead[0]),
        "seed {seed}: dead letters differ: {dead:?}"
    );
    drop(nodes);
    drop(graveyard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_runs_with_kills_and_nats_restarts_converge() {
    // SYNCBASE_SEED reruns one seed; otherwise two fixed seeds and one from the clock.
    let seeds: Vec<u64> = match std::env::var("SYNCBASE_SEED") {
        Ok(s) => vec![s.parse().expect("SYNCBASE_SEED is a number")],
        Err(_) => vec![
            1,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(2),
        ],
    };
    for seed in seeds {
        eprintln!("randomized replication run, seed {seed} (rerun: SYNCBASE_SEED={seed})");
        random_run(seed).await;
    }
}

/// The fold of the log, replayed outside Syncbase for one counter record: built-in LWW until
/// the binding event, the counter policy after it. Returns (likes, conflicts before the
/// swap, conflicts after).
fn replay_counter(events: &[syncbase::replication::Event], id: &str) -> (i64, usize, usize) {
    use syncbase::replication::EventKind;
    let mut counter = false;
    let (mut likes, mut version, mut hlc, mut origin) = (0i64, None::<String>, 0u64, String::new());
    let (mut before_swap, mut after_swap) = (0, 0);
    for e in events {
        if e.kind == EventKind::PluginBinding {
            counter = true;
            continue;
        }
        if e.record_id.as_deref() != Some(id) {
            continue;
        }
        let data_likes = e
            .data
            .as_ref()
            .and_then(|d| d.get("likes"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let base = e.base.as_ref().map(|b| b.to_string());
        if base == version {
            likes = data_likes;
            version = Some(e.id.to_string());
            (hlc, origin) = (e.hlc.0, e.origin.clone());
            continue;
        }
        if counter {
            after_swap += 1;
            let old = e
                .before
                .as_ref()
                .and_then(|b| b.get("likes"))
                .and_then(Value::as_i64)
                .unwrap_or(data_likes);
            likes += data_likes - old;
            version = Some(format!("m-{}", e.id));
            hlc = hlc.max(e.hlc.0);
            origin = e.origin.clone();
        } else {
            before_swap += 1;
            if (e.hlc.0, e.origin.as_str()) > (hlc, origin.as_str()) {
                likes = data_likes;
                version = Some(e.id.to_string());
                (hlc, origin) = (e.hlc.0, e.origin.clone());
            }
        }
    }
    (likes, before_swap, after_swap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_swap_under_load_switches_at_its_log_position_on_every_node() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three_with(&cluster, counters_def()).await;
    let nodes = [&a, &b, &c];
    let (code, rec) = a
        .post(
            "/api/collections/counters/records?sync=applied",
            json!({"name": "hot", "likes": 0}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{rec}");
    let id = rec["id"].as_str().expect("id").to_string();
    quiesce(&nodes, 60).await;
    upload(&a, "counter").await;

    // Load: every node increments the one record as fast as it can until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for node in nodes {
        let (client, url, token, id) = (
            node.client.clone(),
            node.url.clone(),
            node.token.clone(),
            id.clone(),
        );
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .patch(format!("{url}/api/collections/counters/records/{id}"))
                    .header("Authorization", &token)
                    .json(&json!({"likes+": 1}))
                    .send()
                    .await
                    .expect("increment");
                assert!(r.status().is_success(), "increment: {}", r.status());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let wait_done = |n: usize| {
        let done = done.clone();
        async move {
            while done.load(Ordering::Relaxed) < n {
                // Poll interval while the load runs (bounded by `within`).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    nats_support::within(60, "load before the swap", wait_done(60)).await;
    let (code, body) = a
        .post(
            "/api/plugins/counter/bind",
            json!({"as": "resolver", "collection": "counters", "config": "{\"fields\":[\"likes\"]}"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let at_swap = done.load(Ordering::Relaxed);
    nats_support::within(60, "load after the swap", wait_done(at_swap + 60)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    quiesce(&nodes, 60).await;
    let all = same_everywhere(&nodes, "counters").await;

    // Replay the log itself and fold it with the two policies switching at the binding event.
    let log = cluster.log(&[0, 1, 2], 3).await;
    let last = log.state().await.expect("stream state").last_seq;
    let mut consumer = log
        .consumer(
            "replay",
            syncbase::replication::ConsumerOptions {
                resume_after: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let mut events = Vec::new();
    let mut transient = 0;
    while consumer.last_seq() < last {
        // A transient `Err` (e.g. no responders while the stream settles) repositions the
        // consumer on the next call.
        let d = match nats_support::within(30, "the log replay", consumer.next()).await {
            Ok(d) => d,
            Err(e) => {
                transient += 1;
                assert!(transient < 50, "replay consumer keeps failing: {e}");
                continue;
            }
        };
        events.push(d.event.clone().expect("every event decodes"));
    }
    let (likes, before, after) = replay_counter(&events, &id);
    assert!(
        before > 0 && after > 0,
        "the load made no conflicts on one side of the swap: {before} / {after}"
    );
    assert_eq!(
        all[&id]["likes"], likes,
        "the nodes' fold differs from replaying the log with the swap at its position"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_filters_keep_data_on_the_node_that_wrote_it() {
    let cluster = Cluster::start(1).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 0, "b").await;
    let nodes = [&a, &b];
    let people = json!({
        "name": "people",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [{"name": "name", "type": "text"}, {"name": "phone", "type": "text"}],
    });
    let drafts = json!({
        "name": "drafts",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [{"name": "body", "type": "text"}],
    });
    for def in [people, drafts] {
        let (code, body) = a.post("/api/collections", def).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    wait_collection(&b, "drafts").await;
    // Bindings replicate: both nodes redact `phone` from what they publish of `people` and
    // publish nothing of `drafts`.
    upload(&a, "redact").await;
    upload(&a, "local-only").await;
    let (code, body) = a
        .post(
            "/api/plugins/redact/bind",
            json!({"as": "outbound-filter", "collection": "people",
                   "config": "{\"fields\":[\"phone\"],\"direction\":\"outbound\"}"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = a
        .post(
            "/api/plugins/local-only/bind",
            json!({"as": "outbound-filter", "collection": "drafts"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, person) = a
        .post(
            "/api/collections/people/records?sync=applied",
            json!({"name": "Ann", "phone": "555-0100"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{person}");
    let (code, draft) = a
        .post(
            "/api/collections/drafts/records",
            json!({"body": "unfinished"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{draft}");
    quiesce(&nodes, 30).await;
    let id = person["id"].as_str().expect("id");
    // A keeps the phone number after its own event came back; B never got it.
    let on_a = records(&a, "people").await;
    let on_b = records(&b, "people").await;
    assert_eq!(
        on_a[id]["phone"], "555-0100",
        "the writer lost its own data"
    );
    assert_eq!(on_b[id]["name"], "Ann");
    assert_eq!(on_b[id]["phone"], "", "the redacted field travelled");
    // The draft stays on A only.
    assert_eq!(records(&a, "drafts").await.len(), 1);
    assert!(
        records(&b, "drafts").await.is_empty(),
        "a local-only record replicated"
    );
    // Each node's outbound log shows what its filters decided for its own writes, and
    // nothing of what it applied from the others.
    let (_, log) = a.get("/api/plugins/outbound").await;
    assert_eq!(
        (log["rewritten"].as_u64(), log["dropped"].as_u64()),
        (Some(1), Some(1)),
        "{log}"
    );
    let items = log["items"].as_array().expect("items");
    let sent = items
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("person: {log}"));
    assert_eq!(sent["verdict"], "replace", "{log}");
    assert_eq!(sent["data"]["name"], "Ann", "{log}");
    assert!(sent["data"].get("phone").is_none(), "not redacted: {log}");
    assert!(!items.iter().any(|i| i["id"] == draft["id"]), "{log}");
    let (_, log) = b.get("/api/plugins/outbound").await;
    assert!(
        !log["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["id"] == id),
        "B logged A's write as its own outbound change: {log}"
    );
}

/// Nodes that start together on an empty stream may each seed their own `users` collection
/// (with its own token secret). The first seed in the log wins; a later one changes nothing,
/// so a token issued once the first seed folded stays valid on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_second_users_seed_changes_nothing() {
    use syncbase::replication::{CollectionRef, Event, EventId, EventKind, Hlc};
    let cluster = Cluster::start(3).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 1, "b").await;
    quiesce(&[&a, &b], 60).await;
    let (_, token) = support::user(&b, "seed@example.com").await;
    quiesce(&[&a, &b], 60).await;

    // The seed a third node would have published had it started on the empty stream too:
    // its users collection, with a token secret of its own.
    let (code, users) = a.get("/api/collections/users").await;
    assert_eq!(code, StatusCode::OK, "{users}");
    let mut late = users.clone();
    late["authToken"]["secret"] = json!("z".repeat(50));
    late["_syncbaseSeed"] = json!(true);
    let seed = Event {
        id: EventId::random(),
        origin: "z".into(),
        hlc: Hlc::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as u64,
            0,
        ),
        kind: EventKind::CollectionUpdate,
        collection: CollectionRef {
            id: users["id"].as_str().expect("users id").into(),
            name: "users".into(),
        },
        record_id: None,
        data: late.as_object().cloned(),
        before: None,
        base: None,
        schema_version: 0,
        plugin_version: 0,
    };
    let log = cluster.log(&[0, 1, 2], 3).await;
    log.publish(&seed).await.expect("publish the late seed");
    quiesce(&[&a, &b], 60).await;

    for node in [&a, &b] {
        let (code, body) = node
            .call_as(
                &token,
                Method::POST,
                "/api/collections/users/auth-refresh",
                None,
            )
            .await;
        assert_eq!(
            code,
            StatusCode::OK,
            "token refused after a late seed: {body}"
        );
    }
    // Nothing dead-lettered: the late seed applied as a no-op on both nodes alike.
    same_everywhere(&[&a, &b], "users").await;
    for node in [&a, &b] {
        let (_, status) = node.get("/api/sync/status").await;
        assert_eq!(status["deadLetters"], json!(0), "{status}");
    }
}

/// A node with no realtime client folds without reading rows for the change feed, except for
/// auth collections: a password changed on A must still revoke, on B, the old token B has
/// already accepted (and cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_one_node_revokes_old_tokens_on_the_others() {
    let cluster = Cluster::start(1).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 0, "b").await;
    quiesce(&[&a, &b], 60).await;
    let (id, token) = support::user(&a, "pw@example.com").await;
    quiesce(&[&a, &b], 60).await;
    let refresh = "/api/collections/users/auth-refresh";
    let (code, body) = b.call_as(&token, Method::POST, refresh, None).await;
    assert_eq!(code, StatusCode::OK, "B accepts A's token: {body}");
    let (code, body) = a
        .call_as(
            &token,
            Method::PATCH,
            &format!("/api/collections/users/records/{id}?sync=applied"),
            Some(json!({"oldPassword": "secret123", "password": "newsecret1",
                        "passwordConfirm": "newsecret1"})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    quiesce(&[&a, &b], 60).await;
    let (code, body) = b.call_as(&token, Method::POST, refresh, None).await;
    assert_eq!(
        code,
        StatusCode::UNAUTHORIZED,
        "B still accepts a revoked token: {body}"
    );
}
