//! Snapshots with real `syncbase` binaries and real `nats-server` processes: the policy fires
//! under load and a new node joins from a snapshot (with a file whose upload was compacted
//! away); a node behind a compaction re-bootstraps
//! and keeps its unpublished writes; a corrupt snapshot falls back to the previous one, and
//! with none usable the node refuses to start; two nodes' snapshots at one position hold the
//! same content; a policy swap applies at its log position everywhere; a claimant that dies is
//! taken over; readiness while the log is unreachable; backups on a cluster, and the README's
//! snapshot commands as written (seeding a data directory a node then continues from).

mod nats_support;
#[path = "support/readme.rs"]
mod readme;
mod replication_support;
mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use nats_support::Cluster;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Node, posts_def};
use syncbase::replication::SnapshotStore;

use replication_support::*;

/// Claims expire after this many seconds (the takeover test waits for it).
const CLAIM_TTL: &str = "2";

fn flags<'a>(url: &'a str, id: &'a str) -> Vec<&'a str> {
    vec![
        "--nats",
        url,
        "--node-id",
        id,
        "--cluster",
        "t",
        "--snapshot-claim-ttl",
        CLAIM_TTL,
    ]
}

async fn node(cluster: &Cluster, via: usize, id: &str) -> Node {
    let url = cluster.url(via);
    Node::start_with(&flags(&url, id)).await
}

async fn respawn(cluster: &Cluster, dir: &std::path::Path, via: usize, id: &str) -> Node {
    let url = cluster.url(via);
    Node::spawn(dir, &flags(&url, id)).await
}

/// Three nodes (a, b, c through servers 0, 1, 2) sharing `posts`.
async fn three(cluster: &Cluster) -> (Node, Node, Node) {
    let a = node(cluster, 0, "a").await;
    let b = node(cluster, 1, "b").await;
    let c = node(cluster, 2, "c").await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;
    wait_collection(&c, "posts").await;
    (a, b, c)
}

/// Binds a shipped snapshot policy on the cluster (through `node`).
async fn bind_policy(node: &Node, plugin: &str, config: Value) {
    upload(node, plugin).await;
    let (code, body) = node
        .post(
            &format!("/api/plugins/{plugin}/bind"),
            json!({"as": "snapshot-policy", "config": config.to_string()}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "bind {plugin}: {body}");
}

/// `GET /api/sync/snapshots` of a node.
async fn snapshots(node: &Node) -> Value {
    let (code, body) = node.get("/api/sync/snapshots").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Waits (polling, up to `secs`) until `check` holds.
async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `n` posts, spread over `nodes`, a few at a time on each.
async fn write_posts(nodes: &[&Node], n: usize, tag: &str) -> Vec<String> {
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let client = node.client.clone();
        let url = node.url.clone();
        let token = node.token.clone();
        let tag = tag.to_string();
        let count = n / nodes.len() + usize::from(i < n % nodes.len());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for k in 0..count {
                let r = client
                    .post(format!("{url}/api/collections/posts/records"))
                    .header("Authorization", &token)
                    .json(&json!({"title": format!("{tag} {i}-{k}"), "n": k}))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status(), StatusCode::OK);
                let body: Value = r.json().await.expect("json");
                ids.push(body["id"].as_str().expect("id").to_string());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer task"));
    }
    all
}

fn attachment_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

/// Creates `docs` (a file field) on `node`.
async fn create_docs(node: &Node) {
    let def = json!({
        "name": "docs", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [{"name": "file", "type": "file", "maxSelect": 1, "maxSize": 5_000_000}]
    });
    let (code, body) = node.post("/api/collections", def).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

/// A new `docs` record on `node` with `bytes` as its file (`query`: e.g. `?sync=applied`).
async fn upload_doc(node: &Node, query: &str, name: &str, bytes: Vec<u8>) -> Value {
    let (code, rec) = node
        .multipart(
            reqwest::Method::POST,
            &format!("/api/collections/docs/records{query}"),
            &[],
            &[("file", name, bytes)],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{rec}");
    rec
}

/// Creates `docs` and a record with a 300 KB file on `node`; returns the record once
/// `others` serve its file, and the stream's last sequence then.
async fn upload_attachment(node: &Node, others: &[&Node]) -> (Value, u64) {
    create_docs(node).await;
    let rec = upload_doc(node, "?sync=applied", "report.bin", attachment_bytes()).await;
    for n in others {
        wait_until(60, "the attachment on every node", || async {
            download(n, &rec).await == attachment_bytes()
        })
        .await;
    }
    let last = status(node).await["stream"]["lastSeq"]
        .as_u64()
        .expect("lastSeq");
    (rec, last)
}

/// The bytes of a record's `file` (empty unless 200).
async fn download(node: &Node, rec: &Value) -> Vec<u8> {
    let url = format!(
        "{}/api/files/{}/{}/{}",
        node.url,
        rec["collectionId"].as_str().unwrap_or_default(),
        rec["id"].as_str().unwrap_or_default(),
        rec["file"].as_str().unwrap_or_default()
    );
    let resp = node.client.get(url).send().await.expect("download");
    if resp.status() != StatusCode::OK {
        return Vec::new();
    }
    resp.bytes().await.expect("body").to_vec()
}

async fn ready(node: &Node) -> (StatusCode, Value) {
    let (code, body) = node.raw_get("/api/sync/ready").await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The cluster's snapshots as a node lists them, newest first.
async fn kept(node: &Node) -> Vec<Value> {
    snapshots(node).await["kept"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_from_a_snapshot_without_replaying_the_compacted_log() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three(&cluster).await;
    // A record with a file, written before everything the compaction will drop.
    let (attachment, uploaded_at) = upload_attachment(&a, &[&b, &c]).await;
    bind_policy(&a, "every-n", json!({"events": 40, "keep": 2})).await;
    write_posts(&[&a, &b, &c], 180, "load").await;
    quiesce(&[&a, &b, &c], 60).await;
    // The policy fired on every node at the same positions, and the log was compacted.
    let decisions = snapshots(&a).await["decisions"].clone();
    assert!(
        decisions.as_array().is_some_and(|d| d.len() >= 4),
        "{decisions}"
    );
    for n in [&b, &c] {
        assert_eq!(snapshots(n).await["decisions"], decisions);
    }
    wait_until(60, "compaction below two kept snapshots", || async {
        let s = status(&a).await;
        kept(&a).await.len() == 2 && s["stream"]["firstSeq"].as_u64().unwrap_or(0) > 1
    })
    .await;
    let stream = status(&a).await["stream"].clone();
    let first = stream["firstSeq"].as_u64().expect("firstSeq");
    let last = stream["lastSeq"].as_u64().expect("lastSeq");
    let newest = kept(&a).await[0].clone();
    assert!(
        newest["seq"].as_u64().expect("seq") + 1 >= first,
        "{newest} {stream}"
    );

    let d = node(&cluster, 0, "d").await;
    wait_until(60, "the new node to be ready", || async {
        ready(&d).await.0 == StatusCode::OK
    })
    .await;
    quiesce(&[&a, &b, &c, &d], 60).await;
    let rows = same_everywhere(&[&a, &b, &c, &d], "posts").await;
    assert_eq!(rows.len(), 180);
    // The upload's event was compacted away: D has the file through the snapshot, and serves
    // its bytes.
    assert!(first > uploaded_at, "{stream}");
    assert_eq!(download(&d, &attachment).await, attachment_bytes());
    let sd = status(&d).await;
    let joined_from = &sd["snapshots"]["bootstrap"];
    assert!(joined_from["snapshot"].is_string(), "{sd}");
    // The join folded only what came after the snapshot, far less than the whole log.
    // (The new node's own `users` seed, a no-op, is in the log too: count to where it is now.)
    let folded = sd["applied"].as_u64().expect("applied");
    let joined_at = joined_from["seq"].as_u64().expect("seq");
    let applied_to = sd["appliedSeq"].as_u64().expect("appliedSeq");
    assert!(first > 1, "{stream}");
    assert!(
        folded <= applied_to - joined_at && folded < last,
        "the new node folded {folded} events of {last}, joining at {joined_at}: {sd}"
    );
    // Writes on the new node replicate like any other.
    let id = d.create_record("posts", json!({"title": "from d"})).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    quiesce(&[&a, &b, &c, &d], 60).await;
    assert!(
        same_everywhere(&[&a, &b, &c, &d], "posts")
            .await
            .contains_key(&id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_compaction_rebootstraps_and_keeps_its_unpublished_writes() {
    // One NATS server: stopping it cuts every node off (a client would otherwise move to
    // another server of the cluster).
    let mut cluster = Cluster::start(1).await;
    let a = node(&cluster, 0, "a").await;
    let b = node(&cluster, 0, "b").await;
    let mut c = node(&cluster, 0, "c").await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;
    wait_collection(&c, "posts").await;
    bind_policy(&a, "every-n", json!({"events": 30, "keep": 2})).await;
    // A file on every node, whose record the cluster deletes while C is down.
    let (doomed, _) = upload_attachment(&a, &[&b, &c]).await;
    write_posts(&[&a, &b, &c], 20, "before").await;
    quiesce(&[&a, &b, &c], 60).await;
    let c_applied = status(&c).await["appliedSeq"].as_u64().expect("applied");

    // NATS goes away: C's writes, an upload among them, are acknowledged and wait in its
    // outbox.
    cluster.stop(0).await;
    let offline = write_posts(&[&c], 5, "offline on c").await;
    let offline_bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let offline_doc = upload_doc(&c, "", "offline.bin", offline_bytes.clone()).await;
    let s = status(&c).await;
    assert_eq!(s["outboxBacklog"], 6, "{s}");
    // C dies with them unpublished; the cluster comes back, deletes the record with the file
    // and writes on, past a compaction.
    let dir = c.dir().to_path_buf();
    c.kill();
    cluster.restart(0).await;
    let doomed_id = doomed["id"].as_str().expect("id");
    let (code, body) = a
        .delete(&format!("/api/collections/docs/records/{doomed_id}"))
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    write_posts(&[&a, &b], 120, "while c is down").await;
    wait_until(90, "the log compacted past C's position", || async {
        let first = status(&a).await["stream"]["firstSeq"].as_u64().unwrap_or(0);
        first > c_applied + 1
    })
    .await;

    let c2 = respawn(&cluster, &dir, 0, "c").await;
    wait_until(90, "C to be ready again", || async {
        ready(&c2).await.0 == StatusCode::OK
    })
    .await;
    quiesce(&[&a, &b, &c2], 90).await;
    let rows = same_everywhere(&[&a, &b, &c2], "posts").await;
    assert_eq!(rows.len(), 145);
    for id in &offline {
        assert!(
            rows.contains_key(id),
            "C's acknowledged write {id} was lost"
        );
    }
    let s = status(&c2).await;
    assert!(
        s["snapshots"]["bootstrap"]["snapshot"].is_string(),
        "C did not re-bootstrap: {s}"
    );
    // Its six writes came back pending over the snapshot (published on restart or not).
    assert_eq!(s["snapshots"]["bootstrap"]["pendingKept"], 6, "{s}");
    // The file uploaded offline reached every node; the deleted record's file, whose delete
    // C never folded (it was compacted away), left C's disk.
    for n in [&a, &b, &c2] {
        wait_until(60, "the offline upload on every node", || async {
            download(n, &offline_doc).await == offline_bytes
        })
        .await;
    }
    let stale = dir
        .join("storage")
        .join(doomed["collectionId"].as_str().expect("collectionId"))
        .join(doomed_id)
        .join(doomed["file"].as_str().expect("file"));
    wait_until(
        30,
        "the deleted record's file to leave C's disk",
        || async { !stale.exists() },
    )
    .await;
    assert!(download(&c2, &doomed).await.is_empty());
}

/// Starts a node that must refuse to start: waits for it to exit with an error, returns its
/// stderr.
async fn refusal(dir: &std::path::Path, flags: &[&str]) -> String {
    let mut child = tokio::process::Command::new(support::bin())
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(flags)
        .env("SYNCBASE_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run syncbase");
    let mut stderr = child.stderr.take().expect("stderr");
    // A node whose position is past the stream's end waits 20 s for that to last before it
    // refuses (`STREAM_BEHIND_FATAL_AFTER`).
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait()).await;
    let _ = child.start_kill();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
        .await
        .expect("stderr");
    let status = status
        .unwrap_or_else(|_| panic!("the node must exit, not serve: {text}"))
        .expect("wait");
    assert!(!status.success(), "{text}");
    text
}

/// The cluster's snapshot bucket, opened directly (as an operator's tool would).
async fn bucket(cluster: &Cluster) -> SnapshotStore {
    let log = cluster.log(&[0], 1).await;
    SnapshotStore::open(&log, Duration::from_secs(2))
        .await
        .expect("open the snapshot bucket")
}

/// Flips bytes in the middle of a stored snapshot, keeping its metadata (as disk rot would).
async fn corrupt(bucket: &SnapshotStore, name: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("s.zip");
    let progress = syncbase::replication::Progress::new();
    let got = bucket.get(name, &file, &progress).await.expect("download");
    if got.is_none() {
        panic!("{name} not found; listed: {:?}", bucket.list().await);
    }
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    // Not an involution: corrupting twice must not restore the bytes.
    for b in &mut bytes[mid..mid + 16] {
        *b = b.wrapping_add(1);
    }
    std::fs::write(&file, &bytes).expect("write");
    let meta = bucket.info(name).await.expect("info").expect("present");
    bucket.put(&meta, &file, &progress).await.expect("put back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_refused_and_the_previous_one_used_and_with_none_usable_a_node_refuses_to_start()
 {
    let cluster = Cluster::start(1).await;
    let a = node(&cluster, 0, "a").await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    bind_policy(&a, "every-n", json!({"events": 25, "keep": 3})).await;
    write_posts(&[&a], 90, "rows").await;
    quiesce(&[&a], 60).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = snapshots(&a).await;
        let list = s["kept"].as_array().cloned().unwrap_or_default();
        // Decisions that came faster than snapshots were taken may have been merged into the
        // newer one: two or three snapshots remain.
        if list.len() >= 2
            && list[0]["seq"] == s["decisions"][0]["seq"]
            && status(&a).await["stream"]["firstSeq"].as_u64() > Some(1)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no two kept snapshots with the newest decided and a compacted log: {s}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = kept(&a).await;
    let newest = list[0]["name"].as_str().expect("name").to_string();
    let previous = list[1]["name"].as_str().expect("name").to_string();
    let bucket = bucket(&cluster).await;
    corrupt(&bucket, &newest).await;

    let b = node(&cluster, 0, "b").await;
    wait_until(60, "B to be ready", || async {
        ready(&b).await.0 == StatusCode::OK
    })
    .await;
    quiesce(&[&a, &b], 60).await;
    same_everywhere(&[&a, &b], "posts").await;
    let boot = status(&b).await["snapshots"]["bootstrap"].clone();
    assert_eq!(boot["snapshot"], previous.as_str(), "{boot}");
    let rejected = boot["rejected"].to_string();
    assert!(
        rejected.contains(&newest) && rejected.contains("hashes to"),
        "the corrupt snapshot must be refused by its sha256: {boot}"
    );

    // Every snapshot that continues the log corrupt: a new node refuses to start.
    for s in kept(&a).await {
        corrupt(&bucket, s["name"].as_str().expect("name")).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    support::upsert_superuser(dir.path(), support::EMAIL, support::PASSWORD);
    let out = refusal(dir.path(), &flags(&cluster.url(0), "e")).await;
    let stderr = out;
    assert!(
        stderr.contains("no usable snapshot") && stderr.contains("hashes to"),
        "unclear refusal: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_snapshotting_one_position_hold_identical_content() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three(&cluster).await;
    write_posts(&[&a, &b, &c], 45, "rows").await;
    quiesce(&[&a, &b, &c], 60).await;
    let (code, on_a) = a.post("/api/sync/snapshots", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{on_a}");
    let (code, on_b) = b.post("/api/sync/snapshots", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{on_b}");
    assert_eq!(on_a["seq"], on_b["seq"], "same position");
    assert_ne!(on_a["name"], on_b["name"]);
    assert_ne!(on_a["node"], on_b["node"]);
    assert_eq!(on_a["content"], on_b["content"], "same content");
    // Each was read back right after its upload. The buckets' reads go to the stream
    // leader: with direct gets, a replica behind answered "not found" for an acknowledged
    // upload, and a manual snapshot failed on a busy machine.
    let js =
        async_nats::jetstream::new(async_nats::connect(cluster.url(2)).await.expect("connect"));
    for bucket in ["SNAPSHOTS", "FILES", "PLUGINS"] {
        let name = format!("OBJ_SYNCBASE_t_{bucket}");
        let mut stream = js.get_stream(&name).await.expect("bucket stream");
        let info = stream.info().await.expect("stream info");
        assert!(!info.config.allow_direct, "{name} answers direct gets");
    }
    // Each one, read back by a third node, matches its header row for row.
    for s in [&on_a, &on_b] {
        let name = s["name"].as_str().expect("name");
        let (code, v) = c
            .post(&format!("/api/sync/snapshots/{name}/verify"), json!({}))
            .await;
        assert_eq!(code, StatusCode::OK, "{v}");
        assert_eq!(v["header"]["tableHashes"], status_hashes(&c).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_policy_swap_applies_at_its_log_position_on_every_node() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three(&cluster).await;
    let nodes = [&a, &b, &c];
    bind_policy(&a, "every-n", json!({"events": 100000, "keep": 2})).await;
    write_posts(&nodes, 30, "quiet").await;
    quiesce(&nodes, 60).await;
    for n in nodes {
        assert_eq!(snapshots(n).await["decisions"], json!([]));
    }
    // The swap is the only event at its position: with 30+ events since the start, the new
    // policy decides at that very position, on every node.
    let at = status(&a).await["appliedSeq"].as_u64().expect("seq") + 1;
    bind_policy(&b, "every-n", json!({"events": 10, "keep": 2})).await;
    quiesce(&nodes, 60).await;
    write_posts(&nodes, 25, "busy").await;
    quiesce(&nodes, 60).await;
    let decisions = snapshots(&a).await["decisions"].clone();
    let seqs: Vec<u64> = decisions
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| d["seq"].as_u64().expect("seq"))
        .rev()
        .collect();
    assert_eq!(seqs, [at, at + 10, at + 20], "{decisions}");
    for n in [&b, &c] {
        assert_eq!(snapshots(n).await["decisions"], decisions);
    }
    // And back: from the next swap on, nothing is due any more.
    bind_policy(&c, "every-n", json!({"events": 100000, "keep": 2})).await;
    write_posts(&nodes, 25, "quiet again").await;
    quiesce(&nodes, 60).await;
    for n in nodes {
        assert_eq!(snapshots(n).await["decisions"], decisions);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_claimant_died_is_taken_over_after_the_claim_expires() {
    let cluster = Cluster::start(1).await;
    let a = node(&cluster, 0, "a").await;
    let b = node(&cluster, 0, "b").await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;
    write_posts(&[&a, &b], 20, "rows").await;
    quiesce(&[&a, &b], 60).await;
    let bucket = bucket(&cluster).await;
    // On a cluster an upload is itself a log event (plugin-registry): it goes first, so the
    // bind is the next position.
    upload(&a, "every-n").await;
    quiesce(&[&a, &b], 60).await;
    // A node claimed the next position's snapshot and died: nobody refreshes its claim.
    let at = status(&a).await["appliedSeq"].as_u64().expect("seq") + 1;
    let ghost = bucket.claim(at, "ghost").await.expect("claim");
    assert!(ghost.is_some());
    let claimed = Instant::now();
    let (code, body) = a
        .post(
            "/api/plugins/every-n/bind",
            json!({"as": "snapshot-policy", "config": json!({"events": 10, "keep": 2}).to_string()}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "bind every-n: {body}");
    quiesce(&[&a, &b], 60).await;
    for n in [&a, &b] {
        let s = snapshots(n).await;
        assert_eq!(s["decisions"][0]["seq"], at, "{s}");
    }
    wait_until(30, "a live node to take the snapshot over", || async {
        kept(&a).await.iter().any(|s| s["seq"].as_u64() >= Some(at))
    })
    .await;
    assert!(
        claimed.elapsed() >= Duration::from_secs(2),
        "taken before the dead claimant's claim expired"
    );
    let taken = kept(&a).await[0].clone();
    assert!(
        ["a", "b"].contains(&taken["node"].as_str().unwrap_or_default()),
        "{taken}"
    );
    drop(ghost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_reach_the_log_is_healthy_but_not_ready() {
    let dead = format!("nats://127.0.0.1:{}", nats_support::free_port());
    let a = Node::start_with(&flags(&dead, "a")).await;
    let (code, _) = a.raw_get("/api/health").await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = ready(&a).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["phase"], "connecting", "{body}");
    assert_eq!(body["ready"], false);
    // A node without replication is always ready.
    let single = Node::start().await;
    let (code, body) = ready(&single).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_the_clusters_and_the_readme_snapshot_commands_work_as_written() {
    let cluster = Cluster::start(1).await;
    let a = node(&cluster, 0, "a").await;
    let b = node(&cluster, 0, "b").await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;
    // A bound policy that never fires: seeding a directory must bring its plugin along.
    bind_policy(
        &a,
        "proportional",
        json!({"percent": 100000, "maxAgeMs": 0}),
    )
    .await;
    write_posts(&[&a, &b], 30, "rows").await;
    quiesce(&[&a, &b], 60).await;

    // A backup made on A is the cluster's: B lists and serves it, and refuses to restore it.
    let (code, body) = a
        .post("/api/backups", json!({"name": "cluster_backup.zip"}))
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let (code, list) = b.get("/api/backups").await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(list[0]["key"], "cluster_backup.zip", "{list}");
    let (code, token) = b.post("/api/files/token", json!({})).await;
    assert_eq!(code, StatusCode::OK, "{token}");
    let token = token["token"].as_str().expect("token");
    let resp = b
        .client
        .get(format!(
            "{}/api/backups/cluster_backup.zip?token={token}",
            b.url
        ))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.expect("bytes");
    assert_eq!(&bytes[..4], b"PK\x03\x04", "a zip archive");
    assert_eq!(bytes.len() as u64, list[0]["size"].as_u64().expect("size"));
    let (code, body) = b
        .post("/api/backups/cluster_backup.zip/restore", json!({}))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].to_string().contains("running cluster"),
        "{body}"
    );

    // The README's commands, as written: through node A, then straight through NATS.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let blocks: Vec<String> = readme::sh_blocks(&readme)
        .into_iter()
        .filter(|b| b.contains("syncbase snapshot"))
        .collect();
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let work = tempfile::tempdir().expect("tempdir");
    let via_node = readme::run_sh(
        work.path(),
        &blocks[0],
        &[
            ("SYNCBASE_URL", &a.url),
            ("SYNCBASE_EMAIL", support::EMAIL),
            ("SYNCBASE_PASSWORD", support::PASSWORD),
        ],
    );
    assert!(via_node.contains("taken at sequence"), "{via_node}");
    assert!(
        via_node.contains("ok (sha256 and table hashes match)"),
        "{via_node}"
    );
    assert!(via_node.contains("backup/cluster_backup.zip"), "{via_node}");
    let nats = cluster.url(0);
    let nats_env = [("SYNCBASE_NATS", nats.as_str()), ("SYNCBASE_CLUSTER", "t")];
    let via_nats = readme::run_sh(work.path(), &blocks[1], &nats_env);
    assert!(via_nats.contains("seeded from sequence"), "{via_nats}");
    // A second seed without --force is refused; a backup seeds a directory as well.
    let refused = std::process::Command::new(support::bin())
        .args(["snapshot", "restore", "--to"])
        .arg(work.path().join("seeded"))
        .envs(nats_env)
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    readme::run_sh(
        work.path(),
        "syncbase snapshot restore cluster_backup.zip --to ./from-backup",
        &nats_env,
    );

    // A node started on the seeded directory continues the log from the snapshot.
    let seeded = work.path().join("seeded");
    support::upsert_superuser(&seeded, support::EMAIL, support::PASSWORD);
    let c = respawn(&cluster, &seeded, 0, "c").await;
    let id = a
        .create_record("posts", json!({"title": "after the seed"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    quiesce(&[&a, &b, &c], 60).await;
    let rows = same_everywhere(&[&a, &b, &c], "posts").await;
    assert!(rows.contains_key(&id) && rows.len() == 31);
    let sc = status(&c).await;
    assert!(
        sc["snapshots"]["bootstrap"].is_null(),
        "no bootstrap needed: {sc}"
    );
    assert!(
        sc["plugins"].to_string().contains("proportional"),
        "the seeded node has the cluster's policy: {sc}"
    );
    // A node without replication on the backup serves its rows.
    let from_backup = work.path().join("from-backup");
    support::upsert_superuser(&from_backup, support::EMAIL, support::PASSWORD);
    let single = Node::spawn(&from_backup, &[]).await;
    assert_eq!(records(&single, "posts").await.len(), 30);
    drop(single);
    // The same directory with replication, on another cluster's log: refused, not folded onto.
    let other = Cluster::start(1).await;
    let stderr = refusal(&from_backup, &flags(&other.url(0), "x")).await;
    assert!(stderr.contains("another cluster"), "{stderr}");
}
