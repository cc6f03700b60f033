//! Embedded mode as the README shows it, and its loose ends: the README's three-node commands
//! run verbatim (ports substituted) and end with a log kept in three copies; the stream gains
//! copies as servers join; a node's `nats-server` child dies with the node even on kill -9;
//! logins to `users` wait until the node has the cluster's users collection.

mod nats_support;
#[path = "support/readme.rs"]
#[allow(dead_code)]
mod readme;
mod replication_support;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nats_support::{Cluster, free_port, within};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{EMAIL, Node, PASSWORD};

/// Processes started by a test, killed when it ends (pass or fail).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, failing the test after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Poll interval of the deadline-bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp = client
        .post(format!(
            "{url}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .ok()?;
    let body: Value = resp.json().await.ok()?;
    body["token"].as_str().map(str::to_string)
}

async fn sync_status(client: &reqwest::Client, url: &str, token: &str) -> Option<Value> {
    let resp = client
        .get(format!("{url}/api/sync/status"))
        .header("Authorization", token)
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// The README's three `syncbase serve ... --sync` commands, run as written in a temp dir with
/// every port swapped for a free one: the nodes form a cluster, replicate, and the log ends up
/// in three copies on three servers (however the nodes' start-up interleaved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_embedded_commands_form_a_cluster_keeping_three_copies() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    let block = readme::sh_blocks(&readme)
        .into_iter()
        .find(|b| b.contains("--sync --node-id n1"))
        .expect("the README's embedded cluster commands");
    let lines: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("syncbase serve"))
        .collect();
    assert_eq!(lines.len(), 3, "{block}");
    // Every port the commands name, each replaced by a free one everywhere it appears.
    let ports: BTreeMap<String, String> = block
        .split(|c: char| !c.is_ascii_digit() && c != ':')
        .filter_map(|w| w.rsplit(':').next().filter(|p| p.len() == 4))
        .map(|p| (p.to_string(), free_port().to_string()))
        .collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin_dir = Path::new(support::bin())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut procs = Procs(Vec::new());
    let mut urls = Vec::new();
    for line in &lines {
        let mut cmd = line.to_string();
        for (from, to) in &ports {
            cmd = cmd.replace(&format!(":{from}"), &format!(":{to}"));
        }
        let dir = cmd
            .split_whitespace()
            .skip_while(|w| *w != "--dir")
            .nth(1)
            .expect("--dir")
            .to_string();
        support::upsert_superuser(&tmp.path().join(&dir), EMAIL, PASSWORD);
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec {cmd}")])
            .current_dir(tmp.path())
            .env("PATH", &path)
            .env("SYNCBASE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the README command");
        let mut started = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut started)
            .expect("startup line");
        // `--http :PORT` listens on every interface, as in PocketBase.
        let port = started.trim().rsplit(':').next().expect("port").to_string();
        assert!(started.contains("0.0.0.0"), "{started}");
        urls.push(format!("http://127.0.0.1:{port}"));
        procs.0.push(child);
    }
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for url in &urls {
        tokens.push(eventually(30, "a superuser login", || login(&client, url)).await);
    }
    // Three copies of the log on three servers, as each node reports it.
    for (url, token) in urls.iter().zip(&tokens) {
        let stream = eventually(90, "three copies of the log", || async {
            let s = sync_status(&client, url, token).await?;
            let stream = s["stream"].clone();
            (stream["replicas"] == 3 && stream["servers"].as_array().is_some_and(|a| a.len() == 3))
                .then_some(stream)
        })
        .await;
        assert!(stream["leader"].is_string(), "{stream}");
    }
    // And they replicate: a user signed up on n1 logs in on n3.
    let signup = client
        .post(format!("{}/api/collections/users/records", urls[0]))
        .json(&json!({"email": "readme@example.com", "password": "secret123", "passwordConfirm": "secret123"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::OK);
    eventually(30, "the user on n3", || async {
        let resp = client
            .post(format!(
                "{}/api/collections/users/auth-with-password",
                urls[2]
            ))
            .json(&json!({"identity": "readme@example.com", "password": "secret123"}))
            .send()
            .await
            .ok()?;
        (resp.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// A node that connected while the NATS cluster had two servers made the stream with two
/// copies; when the third server joins, the node raises it to three without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_gains_copies_as_servers_join() {
    let mut cluster = Cluster::start(3).await;
    cluster.stop(2).await;
    let node = replication_support::external_node(&cluster, 0, "a").await;
    let first = eventually(60, "the stream", || async {
        let (code, s) = node.get("/api/sync/status").await;
        (code == StatusCode::OK && s["stream"]["replicas"].as_u64().is_some_and(|r| r >= 1))
            .then(|| s["stream"].clone())
    })
    .await;
    assert!(first["replicas"].as_u64() < Some(3), "{first}");
    cluster.restart(2).await;
    eventually(60, "three copies on three servers", || async {
        let (_, s) = node.get("/api/sync/status").await;
        let servers = s["stream"]["servers"].as_array().map_or(0, Vec::len);
        (s["stream"]["replicas"] == 3 && servers == 3).then_some(())
    })
    .await;
}

fn alive(pid: u32) -> bool {
    // Reparented to init and reaped there once it exits: gone from /proc.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
}

/// kill -9 of a node leaves nobody to stop its nats-server; the child must stop by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_nats_server_dies_with_a_node_killed_with_9() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut node = Node::start_with(&["--sync", "--node-id", "k", "--nats-listen", &listen]).await;
    let pid_file = node.dir().join("nats").join("nats-server.pid");
    let pid: u32 = eventually(30, "the nats-server pid file", || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await;
    assert!(alive(pid));
    // Make sure it is the child that would be left behind: it serves the node's address.
    within(30, "the embedded server", async {
        while std::net::TcpStream::connect(&listen).is_err() {
            // Poll interval of the bounded wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    node.kill();
    let gone = within(30, "the orphaned nats-server to exit", async {
        while alive(pid) {
            // Poll interval: another process's exit has nothing to await.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let () = gone;
    assert!(
        std::net::TcpStream::connect(&listen).is_err(),
        "its port is free again"
    );
}

/// Before a node has folded the cluster's `users` seed, its `users` collection has a token
/// secret of its own that the seed replaces: logins there are refused with a clear 503 instead
/// of handing out tokens that would stop working; once NATS is reachable they work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_to_users_wait_until_the_node_has_the_clusters_users_collection() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    // NATS is not running yet: the node starts anyway and takes local writes.
    let node = Node::start_with(&["--nats", &url, "--node-id", "a", "--cluster", "t"]).await;
    let (code, body) = node
        .post(
            "/api/collections/users/records",
            json!({"email": "early@example.com", "password": "secret123", "passwordConfirm": "secret123"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let login = || {
        node.call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "early@example.com", "password": "secret123"})),
        )
    };
    let (code, body) = login().await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("users collection") && m.contains("replication log")),
        "{body}"
    );
    // Superusers are per node: their logins never wait.
    let (code, _) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/_superusers/auth-with-password",
            Some(json!({"identity": EMAIL, "password": PASSWORD})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);

    let dir = tempfile::tempdir().expect("tempdir");
    let nats = syncbase::nats::EmbeddedNats::start(nats_support::options(
        dir.path().to_path_buf(),
        "s0",
        port,
        None,
    ))
    .await
    .expect("start nats-server");
    let token = eventually(60, "a login once the seed is folded", || async {
        let (code, body) = login().await;
        (code == StatusCode::OK).then(|| body["token"].as_str().unwrap_or_default().to_string())
    })
    .await;
    // The token was signed with the cluster's secret: it still works after more folding.
    let (code, body) = node
        .call_as(
            &token,
            Method::POST,
            "/api/collections/users/auth-refresh",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    nats.stop().await.expect("stop");
}
