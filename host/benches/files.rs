//! File benchmark: real PocketBase against Syncbase on the same machine, then a 3-node
//! Syncbase cluster for replication latency.
//!
//! Per server (one after the other, never both under load): a collection with a file field,
//! then `BENCH_CLIENTS` concurrent clients for `BENCH_SECS` per phase:
//!
//! - `upload 100KB` / `upload 10MB`: multipart creates, MB/s of file bytes accepted;
//! - `download 100KB` / `download 10MB`: GETs of one stored file, MB/s served;
//! - `thumb cached`: `?thumb=100x100` of one image (made by the first request), requests/s;
//! - `thumb first`: one request per freshly uploaded 640x480 PNG (each makes its thumb),
//!   requests/s.
//!
//! Then three Syncbase nodes replicating through embedded `nats-server`s: 1 MB uploads on A,
//! timed from A's answer until C's realtime subscription announces the record (C announces it
//! only after the fold, which waits for the file bytes): p50/p99 over `BENCH_REPL` uploads.
//!
//! Env: `BENCH_SECS` (5), `BENCH_CLIENTS` (4), `BENCH_REPL` (30), `POCKETBASE_BIN`
//! (`pocketbase`), `SYNCBASE_BIN` (the binary cargo built).

mod support;

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use serde_json::{Value, json};

use support::{Server, superuser_token};

struct Config {
    secs: Duration,
    clients: usize,
    repl: usize,
    pocketbase_bin: PathBuf,
    syncbase_bin: PathBuf,
}

fn num(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Config> {
        Ok(Config {
            secs: Duration::from_secs(num("BENCH_SECS", 5)?.max(1)),
            clients: usize::try_from(num("BENCH_CLIENTS", 4)?)?.max(1),
            repl: usize::try_from(num("BENCH_REPL", 30)?)?.max(1),
            pocketbase_bin: std::env::var_os("POCKETBASE_BIN")
                .map_or_else(|| PathBuf::from("pocketbase"), PathBuf::from),
            syncbase_bin: std::env::var_os("SYNCBASE_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
                PathBuf::from,
            ),
        })
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(addr: SocketAddr) -> Result<Api> {
        Ok(Api {
            base: format!("http://{addr}"),
            token: superuser_token(addr).await?,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
        })
    }

    async fn upload(&self, coll: &str, name: &str, bytes: Vec<u8>) -> Result<Value> {
        let form = reqwest::multipart::Form::new().part(
            "f",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
        );
        let res = self
            .http
            .post(format!("{}/api/collections/{coll}/records", self.base))
            .header("authorization", &self.token)
            .multipart(form)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        ensure!(status.is_success(), "upload -> {status}: {body}");
        Ok(body)
    }

    fn file_url(&self, rec: &Value, query: &str) -> String {
        format!(
            "{}/api/files/{}/{}/{}{query}",
            self.base,
            rec["collectionId"].as_str().unwrap_or_default(),
            rec["id"].as_str().unwrap_or_default(),
            rec["f"].as_str().unwrap_or_default()
        )
    }

    async fn setup(&self) -> Result<()> {
        let res = self
            .http
            .post(format!("{}/api/collections", self.base))
            .header("authorization", &self.token)
            .json(&json!({
                "name": "bench_files", "listRule": "", "viewRule": "", "createRule": "",
                "fields": [{"name": "f", "type": "file", "maxSelect": 1, "maxSize": 30_000_000,
                            "thumbs": ["100x100"]}]
            }))
            .send()
            .await?;
        ensure!(
            res.status().is_success(),
            "collection: {}",
            res.text().await?
        );
        Ok(())
    }
}

/// Runs `clients` loops of `op` for `secs`; returns (operations, units summed).
async fn drive<F, Fut>(clients: usize, secs: Duration, op: F) -> Result<(u64, u64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let op = Arc::new(op);
    let ops = Arc::new(AtomicU64::new(0));
    let units = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (op, ops, units) = (op.clone(), ops.clone(), units.clone());
        tasks.spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                let n = op(c, i).await?;
                ops.fetch_add(1, Ordering::Relaxed);
                units.fetch_add(n, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((ops.load(Ordering::Relaxed), units.load(Ordering::Relaxed)))
}

async fn download(http: &reqwest::Client, url: &str) -> Result<u64> {
    let res = http.get(url).send().await?;
    ensure!(res.status().is_success(), "GET {url} -> {}", res.status());
    let mut n = 0u64;
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        n += chunk?.len() as u64;
    }
    Ok(n)
}

/// Figures of one server, by phase name.
type Figures = Vec<(&'static str, f64, &'static str)>;

async fn measure(cfg: &Config, bin: &Path, label: &str) -> Result<Figures> {
    let server = Server::start(bin, &format!("bench-files-{label}-")).await?;
    let api = Arc::new(Api::new(server.addr).await?);
    api.setup().await?;
    let secs = cfg.secs.as_secs_f64();
    let mut out = Vec::new();
    for (phase, size) in [
        ("upload 100KB", 100 * 1024),
        ("upload 10MB", 10 * 1024 * 1024),
    ] {
        let bytes = Arc::new(payload(size));
        let a = api.clone();
        let (_, total) = drive(cfg.clients, cfg.secs, move |_, _| {
            let (a, b) = (a.clone(), bytes.clone());
            async move {
                a.upload("bench_files", "blob.bin", b.to_vec()).await?;
                Ok(b.len() as u64)
            }
        })
        .await?;
        out.push((phase, total as f64 / secs / 1e6, "MB/s"));
    }
    for (phase, size) in [
        ("download 100KB", 100 * 1024),
        ("download 10MB", 10 * 1024 * 1024),
    ] {
        let rec = api.upload("bench_files", "get.bin", payload(size)).await?;
        let url = Arc::new(api.file_url(&rec, ""));
        let http = api.http.clone();
        let (_, total) = drive(cfg.clients, cfg.secs, move |_, _| {
            let (http, url) = (http.clone(), url.clone());
            async move { download(&http, &url).await }
        })
        .await?;
        out.push((phase, total as f64 / secs / 1e6, "MB/s"));
    }
    let image = png(640, 480);
    let rec = api.upload("bench_files", "pic.png", image.clone()).await?;
    let url = Arc::new(api.file_url(&rec, "?thumb=100x100"));
    download(&api.http, &url).await?;
    let http = api.http.clone();
    let (n, _) = drive(cfg.clients, cfg.secs, move |_, _| {
        let (http, url) = (http.clone(), url.clone());
        async move { download(&http, &url).await }
    })
    .await?;
    out.push(("thumb cached", n as f64 / secs, "req/s"));
    // Fresh images (uploaded untimed), one thumb request each.
    let mut urls = Vec::new();
    let fresh = (cfg.clients * 20).max(40);
    for _ in 0..fresh {
        let rec = api.upload("bench_files", "pic.png", image.clone()).await?;
        urls.push(api.file_url(&rec, "?thumb=100x100"));
    }
    let urls = Arc::new(urls);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..cfg.clients {
        let (http, urls, clients) = (api.http.clone(), urls.clone(), cfg.clients);
        tasks.spawn(async move {
            for u in urls.iter().skip(c).step_by(clients) {
                download(&http, u).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    out.push((
        "thumb first",
        fresh as f64 / started.elapsed().as_secs_f64(),
        "req/s",
    ));
    server.stop().await;
    Ok(out)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A replicating Syncbase node with an embedded nats-server.
struct SyncNode {
    _child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn sync_node(bin: &Path, id: &str, route: u16, join: &[u16]) -> Result<SyncNode> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("bench-files-{id}-"))
        .tempdir()?;
    let data = dir.path().join("data");
    let status = tokio::process::Command::new(bin)
        .args([
            "superuser",
            "upsert",
            support::SUPERUSER_EMAIL,
            support::SUPERUSER_PASSWORD,
            "--dir",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .await?;
    ensure!(status.success(), "superuser upsert");
    let port = free_port()?;
    let joins: Vec<String> = join.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(&data)
        .args(["--sync", "--node-id", id])
        .args(["--nats-listen", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--cluster-listen", &format!("127.0.0.1:{route}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if !joins.is_empty() {
        cmd.args(["--join", &joins.join(",")]);
    }
    let child = cmd.spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    support::wait_healthy(addr).await?;
    Ok(SyncNode {
        _child: child,
        addr,
        _dir: dir,
    })
}

/// C's realtime stream: the client id, then every message's data.
async fn subscribe(
    addr: SocketAddr,
    token: &str,
) -> Result<tokio::sync::mpsc::UnboundedReceiver<Instant>> {
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/api/realtime"))
        .send()
        .await?;
    let mut stream = res.bytes_stream();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (id_tx, id_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        let mut id_tx = Some(id_tx);
        while let Some(Ok(chunk)) = stream.next().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if frame.contains("PB_CONNECT") {
                    let id = frame
                        .lines()
                        .find_map(|l| l.strip_prefix("id:"))
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    if let Some(t) = id_tx.take() {
                        let _ = t.send(id);
                    }
                } else if frame.contains("\"create\"") {
                    let _ = tx.send(at);
                }
            }
        }
    });
    let client_id = tokio::time::timeout(Duration::from_secs(10), id_rx).await??;
    let res = http
        .post(format!("http://{addr}/api/realtime"))
        .header("authorization", token)
        .json(&json!({"clientId": client_id, "subscriptions": ["bench_files/*"]}))
        .send()
        .await?;
    ensure!(res.status().is_success(), "subscribe -> {}", res.status());
    Ok(rx)
}

/// Polls `url` until it answers 2xx, for at most 60 s (the cluster forming).
async fn wait_ok(http: &reqwest::Client, url: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(url).send().await?.status().is_success() {
        if Instant::now() > deadline {
            bail!("{what} not there within 60 s ({url})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the cluster forming
    }
    Ok(())
}

async fn replication(cfg: &Config) -> Result<(f64, f64)> {
    let routes = [free_port()?, free_port()?, free_port()?];
    let a = sync_node(&cfg.syncbase_bin, "a", routes[0], &[]).await?;
    let b = sync_node(&cfg.syncbase_bin, "b", routes[1], &routes[..1]).await?;
    let c = sync_node(&cfg.syncbase_bin, "c", routes[2], &routes[..2]).await?;
    // A node serves before its log is open; schema writes need the log.
    for addr in [a.addr, b.addr, c.addr] {
        let http = reqwest::Client::new();
        wait_ok(
            &http,
            &format!("http://{addr}/api/sync/ready"),
            "a node's log",
        )
        .await?;
    }
    let api = Api::new(a.addr).await?;
    api.setup().await?;
    let c_api = Api::new(c.addr).await?;
    let records = format!("{}/api/collections/bench_files/records", c_api.base);
    wait_ok(&c_api.http, &records, "the collection on C").await?;
    let mut events = subscribe(c.addr, &c_api.token).await?;
    let mut lat = Vec::new();
    for i in 0..cfg.repl + 3 {
        let body = payload(1024 * 1024 + i);
        api.upload("bench_files", "one-mb.bin", body).await?;
        let answered = Instant::now();
        let at = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await?
            .context("realtime stream ended")?;
        if i >= 3 {
            // The first uploads warm connections and the bucket.
            lat.push(at.saturating_duration_since(answered).as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    drop(a);
    drop(c);
    Ok((p(0.5), p(0.99)))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let cfg = Config::from_env()?;
    println!(
        "files bench: {} clients, {:?} per phase, {} replicated uploads",
        cfg.clients, cfg.secs, cfg.repl
    );
    let pb = measure(&cfg, &cfg.pocketbase_bin, "pocketbase").await?;
    let sb = measure(&cfg, &cfg.syncbase_bin, "syncbase").await?;
    println!(
        "{:<16} {:>14} {:>14} {:>8}",
        "phase", "PocketBase", "Syncbase", "ratio"
    );
    for ((phase, p, unit), (_, s, _)) in pb.iter().zip(&sb) {
        println!(
            "{phase:<16} {:>9.1} {unit:<5}{:>9.1} {unit:<5}{:>7.2}x",
            p,
            s,
            s / p
        );
    }
    let (p50, p99) = replication(&cfg).await?;
    println!(
        "replication of a 1 MB file A -> C (3 nodes, embedded NATS): p50 {p50:.1} ms, p99 {p99:.1} ms (goal: p50 <= 50 ms)"
    );
    Ok(())
}
