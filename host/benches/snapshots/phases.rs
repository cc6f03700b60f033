//! The benchmark's phases (see `main.rs`) and its report.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::nats_support::Cluster;
use crate::node::{Node, quiesce, wait_collection};
use crate::support::Conn;
use crate::{COLLECTIONS, Config, collection_def, ms, record};

#[derive(Debug, Default)]
pub struct Results {
    load: Duration,
    events: u64,
    /// The stream after the load: first sequence, messages, bytes.
    stream: (u64, u64, u64),
    /// What the whole history would weigh (bytes per message × events).
    history_bytes: f64,
    snapshots_kept: usize,
    quiet: Vec<Duration>,
    during: Vec<Duration>,
    snapshot_secs: f64,
    snapshot_size: u64,
    db_bytes: u64,
    node_verify_secs: f64,
    floor_copy: Duration,
    floor_decompress: Duration,
    floor_hash: Duration,
    /// Fetching the archive from the cluster's object store into a local file.
    floor_fetch: Duration,
    boot: Boot,
}

#[derive(Debug, Default)]
struct Boot {
    total: Duration,
    connect: Duration,
    download: Duration,
    verify: Duration,
    install: Duration,
    catch_up: Duration,
    events_after: u64,
    snapshot: String,
}

pub async fn run(
    config: &Config,
    cluster: &Cluster,
    root: &Path,
    a: &Node,
    b: &Node,
    c: &Node,
) -> Result<Results> {
    let mut r = Results::default();
    let settings = json!({"batch": {"enabled": true, "maxRequests": config.batch}});
    for n in [a, b, c] {
        n.call(Method::PATCH, "/api/settings", Some(settings.clone()))
            .await?;
    }
    for coll in COLLECTIONS {
        a.call(Method::POST, "/api/collections", Some(collection_def(coll)))
            .await?;
        for n in [b, c] {
            wait_collection(n, coll, Duration::from_secs(60)).await?;
        }
    }
    bind_every_n(a, config.policy_events).await?;

    println!(
        "\n[load] {} records of ~300 bytes into {COLLECTIONS:?} through /api/batch on A and B; \
         policy every-n {{events: {}, keep: 2}}",
        config.records, config.policy_events
    );
    let started = Instant::now();
    let half = config.records / 2;
    let (ra, rb) = tokio::join!(
        load(a, 0, half, config),
        load(b, 10_000_000, config.records - half, config)
    );
    ra?;
    rb?;
    let written = started.elapsed();
    r.events = quiesce(&[a, b, c], Duration::from_secs(3600)).await?;
    r.load = started.elapsed();
    println!(
        "  written in {:.1} s, folded everywhere in {:.1} s ({} events)",
        written.as_secs_f64(),
        r.load.as_secs_f64(),
        r.events
    );
    settle(&[a, b, c]).await?;
    let s = a.call(Method::GET, "/api/sync/status", None).await?;
    let stream = &s["stream"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    r.stream = (
        n(&stream["firstSeq"]),
        n(&stream["messages"]),
        n(&stream["bytes"]),
    );
    r.history_bytes = r.stream.2 as f64 / r.stream.1.max(1) as f64 * r.events as f64;
    r.snapshots_kept = s["snapshots"]["kept"].as_array().map_or(0, Vec::len);
    println!(
        "  stream after compaction: first seq {}, {} messages, {:.1} MB (the whole history: \
         ~{:.1} MB); {} snapshots kept",
        r.stream.0,
        r.stream.1,
        r.stream.2 as f64 / 1e6,
        r.history_bytes / 1e6,
        r.snapshots_kept
    );

    println!(
        "\n[writer] {} connections creating on B for {} s, then again while B snapshots",
        config.load_conns, config.load_secs
    );
    r.quiet = creates_on(b, config, None).await?;
    let snap = Arc::new(tokio::sync::Mutex::new(None));
    r.during = creates_on(b, config, Some(snap.clone())).await?;
    let (secs, stored) = snap.lock().await.take().context("no snapshot taken")?;
    r.snapshot_secs = secs;
    r.snapshot_size = n(&stored["size"]);
    let name = stored["name"]
        .as_str()
        .context("snapshot name")?
        .to_string();
    println!(
        "  quiet: p50 {:.2} ms p99 {:.2} ms ({} creates); during the snapshot ({:.1} s): p50 \
         {:.2} ms p99 {:.2} ms ({} creates)",
        ms(pct(&r.quiet, 0.5)),
        ms(pct(&r.quiet, 0.99)),
        r.quiet.len(),
        r.snapshot_secs,
        ms(pct(&r.during, 0.5)),
        ms(pct(&r.during, 0.99)),
        r.during.len()
    );
    quiesce(&[a, b, c], Duration::from_secs(600)).await?;
    settle(&[a, b, c]).await?;

    let t = Instant::now();
    let v = a
        .call(
            Method::POST,
            &format!("/api/sync/snapshots/{name}/verify"),
            Some(json!({})),
        )
        .await?;
    r.node_verify_secs = t.elapsed().as_secs_f64();
    r.db_bytes = n(&v["header"]["dbBytes"]);

    println!("\n[floor] copy and decompress {name} locally");
    let work = root.join("floor");
    std::fs::create_dir_all(&work)?;
    let archive = work.join("snapshot.zip");
    // The nodes' log (their `--cluster`), not the test cluster's default one.
    let conn = syncbase::replication::ConnectOptions {
        urls: (0..3).map(|i| cluster.url(i)).collect(),
        ..Default::default()
    };
    let log = syncbase::replication::Log::connect(
        &conn,
        &syncbase::replication::StreamOptions::new(crate::node::CLUSTER),
    )
    .await?;
    let bucket = syncbase::replication::SnapshotStore::open(&log, Duration::from_secs(30)).await?;
    let t = Instant::now();
    bucket
        .get(&name, &archive, &syncbase::replication::Progress::new())
        .await?
        .context("snapshot missing")?;
    r.floor_fetch = t.elapsed();
    let (copy, decompress, hash) = tokio::task::spawn_blocking({
        let work = work.clone();
        move || floor(&work)
    })
    .await??;
    r.floor_copy = copy;
    r.floor_decompress = decompress;
    r.floor_hash = hash;
    std::fs::remove_dir_all(&work)?;
    println!(
        "  fetch from the object store {:.0} ms; copy {:.0} ms + decompress {:.0} ms + one sha256 pass {:.0} ms ({:.1} MB -> {:.1} MB)",
        ms(r.floor_fetch),
        ms(copy),
        ms(decompress),
        ms(hash),
        r.snapshot_size as f64 / 1e6,
        r.db_bytes as f64 / 1e6
    );

    println!("\n[bootstrap] node D joins on an empty directory");
    r.boot = bootstrap(config, cluster, root).await?;
    Ok(r)
}

/// Binds the shipped every-n policy on the cluster (built here, uploaded to `node`).
async fn bind_every_n(node: &Node, events: u64) -> Result<()> {
    let component = tokio::task::spawn_blocking(|| {
        use syncbase_plugin_build::{BuildOptions, build_plugins};
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let options = BuildOptions {
            plugin_dirs: vec![root.join("plugins").join("every-n")],
            target_dir: Some(
                std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-plugin-build"),
            ),
            out_dir: None,
            world: None,
        };
        let built =
            build_plugins(&options).map_err(|e| anyhow::anyhow!("building every-n: {e}"))?;
        anyhow::Ok(built.into_iter().next().context("no component")?.component)
    })
    .await??;
    let bytes = std::fs::read(&component)?;
    let mut conn = Conn::connect(node.addr).await?;
    let (status, body) = conn
        .send(
            Method::POST,
            "/api/plugins?name=every-n",
            Some(&node.token),
            Some(Bytes::from(bytes)),
        )
        .await?;
    ensure!(
        status.is_success(),
        "upload every-n: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let config = json!({"events": events, "keep": 2}).to_string();
    node.call(
        Method::POST,
        "/api/plugins/every-n/bind",
        Some(json!({"as": "snapshot-policy", "config": config})),
    )
    .await?;
    Ok(())
}

/// `count` creates on `node` through `/api/batch`, alternating collections.
async fn load(node: &Node, first_n: u64, count: usize, config: &Config) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.batch_clients {
        let (next, addr, id, batch) = (next.clone(), node.addr, node.id, config.batch);
        tasks.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= count {
                    return anyhow::Ok(());
                }
                let requests: Vec<Value> = (start..(start + batch).min(count))
                    .map(|i| {
                        let coll = COLLECTIONS[i % 2];
                        json!({"method": "POST", "url": format!("/api/collections/{coll}/records"),
                               "body": record(id, first_n + i as u64)})
                    })
                    .collect();
                conn.json(
                    Method::POST,
                    "/api/batch",
                    None,
                    Some(json!({"requests": requests})),
                )
                .await?;
                if (start / batch) % 100 == 0 {
                    println!("  {id}: {start} of {count}");
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Waits until no node's snapshot service is busy.
async fn settle(nodes: &[&Node]) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(1800);
    loop {
        let mut idle = true;
        for n in nodes {
            let s = n.call(Method::GET, "/api/sync/status", None).await?;
            idle &= s["snapshots"]["service"]["phase"] == "idle";
        }
        if idle {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("snapshot services still busy");
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval of a bounded wait
    }
}

/// Where a manual snapshot's seconds and answer are put.
type SnapSlot = Arc<tokio::sync::Mutex<Option<(f64, Value)>>>;

/// Creates on `node` from `LOAD_CONNS` connections; each latency is kept. Without `snap`, for
/// `LOAD_SECS`; with it, while a manual snapshot runs on the node (its seconds and answer are
/// put in `snap`), keeping only the creates that started while it ran.
async fn creates_on(node: &Node, config: &Config, snap: Option<SnapSlot>) -> Result<Vec<Duration>> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..config.load_conns {
        let (stop, addr, id) = (stop.clone(), node.addr, node.id);
        tasks.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut out = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body =
                    Bytes::from(record(id, 50_000_000 + k as u64 * 1_000_000 + i).to_string());
                let t = Instant::now();
                let (status, _) = conn
                    .send(
                        Method::POST,
                        "/api/collections/items/records",
                        None,
                        Some(body),
                    )
                    .await?;
                ensure!(status == StatusCode::OK, "create -> {status}");
                out.push((t, t.elapsed()));
                i += 1;
            }
            anyhow::Ok(out)
        });
    }
    let window = match snap {
        None => {
            tokio::time::sleep(Duration::from_secs_f64(config.load_secs)).await; // the load's length
            None
        }
        Some(slot) => {
            // The load runs a moment before the snapshot starts, and stops when it ends.
            tokio::time::sleep(Duration::from_secs(1)).await; // warm-up of the load
            let start = Instant::now();
            let stored = node
                .call(Method::POST, "/api/sync/snapshots", Some(json!({})))
                .await?;
            let end = Instant::now();
            *slot.lock().await = Some(((end - start).as_secs_f64(), stored));
            Some((start, end))
        }
    };
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok(all
        .into_iter()
        .filter(|(t, _)| window.is_none_or(|(s, e)| *t >= s && *t <= e))
        .map(|(_, d)| d)
        .collect())
}

/// The floor of installing a snapshot file: copy it, then decompress its database; and one
/// sequential sha256 pass over the decompressed database (the least a node can do to check
/// content before serving it).
fn floor(work: &Path) -> Result<(Duration, Duration, Duration)> {
    use std::io::Write;
    let t = Instant::now();
    std::fs::copy(work.join("snapshot.zip"), work.join("copy.zip"))?;
    std::fs::File::open(work.join("copy.zip"))?.sync_all()?;
    let copy = t.elapsed();
    let t = Instant::now();
    let f = std::fs::File::open(work.join("copy.zip"))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))?;
    let mut entry = zip.by_name("data.db")?;
    let out = std::fs::File::create(work.join("data.db"))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    std::io::copy(&mut entry, &mut w)?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let decompress = t.elapsed();
    let t = Instant::now();
    {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open(work.join("data.db"))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        std::hint::black_box(h.finalize());
    }
    Ok((copy, decompress, t.elapsed()))
}

/// Starts D on an empty directory and times it to ready, by the phases it reports.
async fn bootstrap(config: &Config, cluster: &Cluster, root: &Path) -> Result<Boot> {
    let started = Instant::now();
    let mut d = Node::create_serving(&config.bin, root, "d", cluster.url(0)).await?;
    let mut seen: Vec<(String, Instant)> = Vec::new();
    let until = started + Duration::from_secs(600);
    let outcome = loop {
        let mut conn = Conn::connect(d.addr).await?;
        let (status, body) = conn
            .send(Method::GET, "/api/sync/ready", None, None)
            .await?;
        let now = Instant::now();
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let label = match v["phase"].as_str().unwrap_or("?") {
            "bootstrapping" => v["step"].as_str().unwrap_or("?").to_string(),
            other => other.to_string(),
        };
        if seen.last().is_none_or(|(l, _)| *l != label) {
            seen.push((label, now));
        }
        if status == StatusCode::OK {
            break Ok(now);
        }
        if now > until {
            break Err(anyhow::anyhow!("D not ready within 600 s: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval of a bounded wait
    };
    let ready = match outcome {
        Ok(t) => t,
        Err(e) => {
            d.stop().await;
            return Err(e);
        }
    };
    let at = |label: &str| seen.iter().find(|(l, _)| l == label).map(|(_, t)| *t);
    let span = |from: &str, to: &[&str]| -> Duration {
        let start = at(from);
        let end = to.iter().filter_map(|l| at(l)).min();
        match (start, end) {
            (Some(s), Some(e)) if e > s => e - s,
            _ => Duration::ZERO,
        }
    };
    let s = d.call(Method::GET, "/api/sync/status", None).await?;
    let boot = Boot {
        total: ready - started,
        connect: at("download").map_or(Duration::ZERO, |t| t - started),
        download: span("download", &["verify", "install", "catching-up", "ready"]),
        verify: span("verify", &["install", "catching-up", "ready"]),
        install: span("install", &["catching-up", "ready"]),
        catch_up: at("catching-up").map_or(Duration::ZERO, |t| ready - t),
        events_after: s["applied"].as_u64().unwrap_or(0),
        snapshot: s["snapshots"]["bootstrap"]["snapshot"]
            .as_str()
            .unwrap_or("none")
            .to_string(),
    };
    println!(
        "  phases seen: {:?}",
        seen.iter()
            .map(|(l, t)| (l, ms(*t - started).round()))
            .collect::<Vec<_>>()
    );
    d.stop().await;
    Ok(boot)
}

/// The `p` quantile of `v` (sorted copy).
pub fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

impl Results {
    pub fn print(&self, config: &Config) {
        let b = &self.boot;
        let floor = self.floor_copy + self.floor_decompress;
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "\n## Snapshots: {} records, two indexed collections\n",
            config.records
        );
        println!("| figure | value |");
        println!("|---|---|");
        println!(
            "| load (written and folded on 3 nodes) | {:.1} s, {} events |",
            secs(self.load),
            self.events
        );
        println!(
            "| snapshot file / database | {:.1} MB / {:.1} MB (compression {:.2}×) |",
            self.snapshot_size as f64 / 1e6,
            self.db_bytes as f64 / 1e6,
            self.db_bytes as f64 / self.snapshot_size.max(1) as f64
        );
        println!(
            "| stream after compaction | first seq {}, {} messages, {:.1} MB of ~{:.1} MB of history ({} snapshots kept) |",
            self.stream.0,
            self.stream.1,
            self.stream.2 as f64 / 1e6,
            self.history_bytes / 1e6,
            self.snapshots_kept
        );
        println!(
            "| create p50 / p99, quiet | {:.2} / {:.2} ms ({} creates) |",
            ms(pct(&self.quiet, 0.5)),
            ms(pct(&self.quiet, 0.99)),
            self.quiet.len()
        );
        println!(
            "| create p50 / p99, during a snapshot | {:.2} / {:.2} ms ({} creates; snapshot {:.1} s) |",
            ms(pct(&self.during, 0.5)),
            ms(pct(&self.during, 0.99)),
            self.during.len(),
            self.snapshot_secs
        );
        println!(
            "| p99 during / quiet | {:.2}× (goal ≤ 2×) |",
            secs(pct(&self.during, 0.99)) / secs(pct(&self.quiet, 0.99)).max(1e-9)
        );
        println!(
            "| floor: copy + decompress | {:.2} s ({:.2} + {:.2}) |",
            secs(floor),
            secs(self.floor_copy),
            secs(self.floor_decompress)
        );
        println!(
            "| bootstrap to ready | {:.2} s: connect {:.2}, download {:.2}, verify {:.2}, install {:.2}, catch-up {:.2} ({} events after {}) |",
            secs(b.total),
            secs(b.connect),
            secs(b.download),
            secs(b.verify),
            secs(b.install),
            secs(b.catch_up),
            b.events_after,
            b.snapshot
        );
        println!(
            "| bootstrap / floor | {:.2}× (goal ≤ 2×; ≤ 10 s to ready) |",
            secs(b.total) / secs(floor).max(1e-9)
        );
        let checked = floor + self.floor_hash;
        println!(
            "| floor with one sha256 pass over the database | {:.2} s (+ {:.2}) |",
            secs(checked),
            secs(self.floor_hash)
        );
        println!(
            "| bootstrap / floor with one checking pass | {:.2}× |",
            secs(b.total) / secs(checked).max(1e-9)
        );
        println!(
            "| a node's full verify of the snapshot (download, extract, hashes) | {:.2} s |",
            self.node_verify_secs
        );
        let fetched = self.floor_fetch + self.floor_decompress + self.floor_hash;
        println!(
            "| floor through the object store: fetch + decompress + one sha256 pass | {:.2} s ({:.2} + {:.2} + {:.2}) |",
            secs(fetched),
            secs(self.floor_fetch),
            secs(self.floor_decompress),
            secs(self.floor_hash)
        );
        println!(
            "| bootstrap / floor through the object store | {:.2}× |",
            secs(b.total) / secs(fetched).max(1e-9)
        );
        // The restated floor: what the issue itself asks a joining node to do with the
        // snapshot (fetch it from the cluster's object store, decompress it, check its sha256
        // and every table hash), timed on a running node of the same run.
        println!(
            "| bootstrap / fetch-and-check | {:.2}× (restated goal ≤ 2×) |",
            secs(b.total) / self.node_verify_secs.max(1e-9)
        );
        println!(
            "| bootstrap without catch-up / fetch-and-check | {:.2}× ({:.2} s to the snapshot installed) |",
            secs(b.total.saturating_sub(b.catch_up)) / self.node_verify_secs.max(1e-9),
            secs(b.total.saturating_sub(b.catch_up))
        );
    }
}
