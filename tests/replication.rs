//! Replication end to end: real `syncbase` binaries replicating through real `nats-server`
//! processes (a 3-server cluster the test starts, or each node's embedded server), checked
//! over HTTP the way a user would: every node ends with the same records, conflicts resolve
//! by the bound policy, filters keep data where it belongs. Faults (NATS outages, killed
//! nodes, bad input, randomized runs, a policy swap under load) are in
//! `replication_faults.rs`.

mod nats_support;
mod replication_support;
mod support;

use nats_support::{Cluster, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Node, Sse, posts_def};

use replication_support::*;

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
    // Ids are derived as PocketBase derives them (`pbc_` + CRC-32 of type and name), so the
    // same definition made on two nodes at once names the same collection: one create wins in
    // the log, the other is refused, and every node ends with that one id.
    assert_eq!(body["id"], "pbc_1125843985");
    let twice = json!({"name": "twice", "fields": [{"name": "t", "type": "text"}]});
    let (on_b, on_c) = tokio::join!(
        b.post("/api/collections", twice.clone()),
        c.post("/api/collections", twice)
    );
    let mut codes = [on_b.0, on_c.0];
    codes.sort();
    assert_eq!(
        codes,
        [StatusCode::OK, StatusCode::BAD_REQUEST],
        "{on_b:?} {on_c:?}"
    );
    for node in [&a, &b, &c] {
        wait_collection(node, "twice").await;
        let (_, got) = node.get("/api/collections/twice").await;
        assert_eq!(got["id"], "pbc_3285240512");
    }

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
