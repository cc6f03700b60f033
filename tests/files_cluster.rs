//! File fields on a cluster, with real `syncbase` binaries and real `nats-server`s: a file
//! uploaded on one node downloads byte for byte on every other; a record a node shows always
//! has its files there; replaced files are gone from every node; a node killed while files
//! are uploaded catches up with every file.

mod nats_support;
mod replication_support;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nats_support::Cluster;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::Node;

use replication_support::*;

fn docs_def() -> Value {
    json!({
        "name": "docs", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "file", "type": "file", "maxSelect": 1, "maxSize": 50_000_000},
            {"name": "more", "type": "file", "maxSelect": 5, "maxSize": 50_000_000}
        ]
    })
}

/// Deterministic bytes of a given size (different per seed).
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn upload(node: &Node, title: &str, files: &[(&str, &str, Vec<u8>)]) -> Value {
    let (code, body) = node
        .multipart(
            reqwest::Method::POST,
            "/api/collections/docs/records",
            &[("title", title)],
            files,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

async fn download(node: &Node, rec: &Value, name: &str) -> (StatusCode, Vec<u8>) {
    let url = format!(
        "{}/api/files/{}/{}/{name}",
        node.url,
        rec["collectionId"].as_str().unwrap_or_default(),
        rec["id"].as_str().unwrap_or_default()
    );
    let resp = node.client.get(url).send().await.expect("download");
    let status = resp.status();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// Waits until `node` shows record `id`, then returns it.
async fn wait_record(node: &Node, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, body) = node
            .get(&format!("/api/collections/docs/records/{id}"))
            .await;
        if code == StatusCode::OK {
            return body;
        }
        assert!(Instant::now() < deadline, "record {id} never arrived");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where a node keeps a record's file (local storage under `--dir`).
fn stored_path(node: &Node, rec: &Value, name: &str) -> std::path::PathBuf {
    node.dir()
        .join("storage")
        .join(rec["collectionId"].as_str().unwrap_or_default())
        .join(rec["id"].as_str().unwrap_or_default())
        .join(name)
}

async fn wait_gone(nodes: &[&Node], rec: &Value, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes {
        loop {
            let (code, _) = download(n, rec, name).await;
            let on_disk = stored_path(n, rec, name).exists();
            if code == StatusCode::NOT_FOUND && !on_disk {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} still on {} (HTTP {code}, on disk {on_disk})",
                n.url
            );
            // Poll interval of the deadline-bounded wait above.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn files_in(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                files_in(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_on_a_downloads_from_c_and_a_replacement_on_b_removes_it_everywhere() {
    let cluster = Cluster::start(3).await;
    let (a, b, c) = three_with(&cluster, docs_def()).await;

    let big = bytes(1, 3 * 1024 * 1024 + 17);
    let rec = upload(
        &a,
        "first",
        &[
            ("file", "report.bin", big.clone()),
            ("more", "a.txt", b"alpha".to_vec()),
        ],
    )
    .await;
    let id = rec["id"].as_str().expect("id");
    let name = rec["file"].as_str().expect("file").to_string();

    // The moment C shows the record, it serves its files: the fold waited for the bytes.
    let on_c = wait_record(&c, id, 30).await;
    assert_eq!(on_c["file"], rec["file"]);
    let (code, got) = download(&c, &on_c, &name).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(sha(&got), sha(&big), "C serves the bytes uploaded on A");
    let on_b = wait_record(&b, id, 30).await;
    let (code, got) = download(&b, &on_b, on_b["more"][0].as_str().expect("more")).await;
    assert_eq!(
        (code, got.as_slice()),
        (StatusCode::OK, b"alpha".as_slice())
    );

    // Replace on B: the new file everywhere, the old one gone from every node.
    let newer = bytes(2, 200_000);
    let (code, replaced) = b
        .multipart(
            reqwest::Method::PATCH,
            &format!("/api/collections/docs/records/{id}"),
            &[],
            &[("file", "report-v2.bin", newer.clone())],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{replaced}");
    let new_name = replaced["file"].as_str().expect("file").to_string();
    assert_ne!(new_name, name);
    quiesce(&[&a, &b, &c], 30).await;
    for n in [&a, &b, &c] {
        let (code, got) = download(n, &replaced, &new_name).await;
        assert_eq!(code, StatusCode::OK, "{}", n.url);
        assert_eq!(sha(&got), sha(&newer));
    }
    wait_gone(&[&a, &b, &c], &rec, &name).await;
    same_everywhere(&[&a, &b, &c], "docs").await;

    // Deleting the record removes its files on every node.
    let (code, _) = c
        .delete(&format!("/api/collections/docs/records/{id}"))
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    quiesce(&[&a, &b, &c], 30).await;
    wait_gone(&[&a, &b, &c], &replaced, &new_name).await;
    wait_gone(&[&a, &b, &c], &rec, rec["more"][0].as_str().expect("more")).await;
    for n in [&a, &b, &c] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while files_in(&n.dir().join("storage")) > 0 {
            assert!(
                Instant::now() < deadline,
                "files left in {}",
                n.dir().display()
            );
            // Poll interval of the deadline-bounded wait above.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_uploads_catches_up_with_every_file() {
    let cluster = Cluster::start(3).await;
    let (a, b, mut c) = three_with(&cluster, docs_def()).await;
    let c_dir = c.dir().to_path_buf();
    let mut uploaded = Vec::new();
    for i in 0..30u8 {
        if i == 10 {
            // Killed mid-stream: uploads keep going on A and B.
            c.kill();
        }
        let node = if i % 2 == 0 { &a } else { &b };
        let content = bytes(i, 1000 + usize::from(i) * 5000);
        let rec = upload(
            node,
            &format!("doc {i}"),
            &[("file", &format!("f{i}.bin"), content.clone())],
        )
        .await;
        uploaded.push((rec, content));
    }
    let c = respawn_external(&cluster, &c_dir, 2, "c").await;
    quiesce(&[&a, &b, &c], 60).await;
    for (rec, content) in &uploaded {
        let name = rec["file"].as_str().expect("file");
        let (code, got) = download(&c, rec, name).await;
        assert_eq!(code, StatusCode::OK, "{name} on the restarted node");
        assert_eq!(sha(&got), sha(content), "{name}");
    }
    same_everywhere(&[&a, &b, &c], "docs").await;
}

/// The bucket keeps an object while any record references it, and drops it once none does
/// and the log compacted every event that named it (here with no grace: `--file-gc-grace 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_no_record_references_leaves_the_bucket_after_compaction() {
    let cluster = Cluster::start(1).await;
    let url = cluster.url(0);
    let flags = |id: &'static str| {
        vec![
            "--nats".to_string(),
            url.clone(),
            "--node-id".into(),
            id.into(),
            "--cluster".into(),
            "t".into(),
            "--file-gc-grace".into(),
            "0".into(),
        ]
    };
    let fa = flags("a");
    let a = Node::start_with(&fa.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let fb = flags("b");
    let b = Node::start_with(&fb.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (code, body) = a.post("/api/collections", docs_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "docs").await;
    let (code, body) = a.post("/api/collections", support::posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_collection(&b, "posts").await;

    let (old, kept, new) = (bytes(7, 70_000), bytes(8, 80_000), bytes(9, 90_000));
    let rec = upload(&a, "replaced", &[("file", "old.bin", old.clone())]).await;
    let other = upload(&a, "kept", &[("file", "kept.bin", kept.clone())]).await;
    let id = rec["id"].as_str().expect("id");
    wait_record(&b, id, 30).await;
    // B replaces the file: `old` is referenced by no record any more, on either node.
    let (code, body) = b
        .multipart(
            reqwest::Method::PATCH,
            &format!("/api/collections/docs/records/{id}?sync=applied"),
            &[],
            &[("file", "new.bin", new.clone())],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    quiesce(&[&a, &b], 60).await;
    let orphaned_at = status(&a).await["stream"]["lastSeq"]
        .as_u64()
        .expect("lastSeq");

    let log = cluster.log(&[0], 1).await;
    let objects = syncbase::replication::FileObjects::open(&log)
        .await
        .expect("file bucket");
    assert!(
        objects.has(&sha(&old)).await.expect("has"),
        "kept until compacted"
    );

    // Snapshots every 20 events, one kept: the log soon starts past the replacement.
    replication_support::upload(&a, "every-n").await;
    let (code, body) = a
        .post(
            "/api/plugins/every-n/bind",
            json!({"as": "snapshot-policy", "config": json!({"events": 20, "keep": 1}).to_string()}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for k in 0..60 {
        let (code, body) = a
            .post(
                "/api/collections/posts/records",
                json!({"title": format!("p{k}"), "n": k}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    quiesce(&[&a, &b], 60).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while objects.has(&sha(&old)).await.expect("has") {
        let s = status(&a).await;
        assert!(
            Instant::now() < deadline,
            "the unreferenced object stayed (orphaned at {orphaned_at}): {}",
            s["stream"]
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = status(&a).await["stream"]["firstSeq"]
        .as_u64()
        .expect("firstSeq");
    assert!(
        first > orphaned_at,
        "deleted before the log was compacted past it"
    );
    // What records still reference stays, and every node serves it.
    for n in [&a, &b] {
        assert!(objects.has(&sha(&kept)).await.expect("has"));
        assert!(objects.has(&sha(&new)).await.expect("has"));
        let on_n = wait_record(n, other["id"].as_str().expect("id"), 30).await;
        let (code, got) = download(n, &on_n, on_n["file"].as_str().expect("file")).await;
        assert_eq!((code, sha(&got)), (StatusCode::OK, sha(&kept)));
    }
}
