//! Plugin swap benchmark (issue 19): the fold lag a policy swap adds on a 3-node cluster under
//! load, for the heaviest plugin the node accepts in practice (the Python field-merge, an
//! ~19 MB component with its interpreter).
//!
//! A fresh 3-server NATS cluster (R3) and three release `syncbase serve` processes a, b, c.
//! Background load: paced creates on B and C (`LOAD_RATE`, default 150 writes/s in all).
//! Probes: one create on A every `PROBE_MS` (20 ms), each timed from A's answer to C's realtime
//! event for it: the replication latency, which is where a fold that stops shows up.
//!
//! Windows, in one run (each probe is filed by when it was sent):
//! 1. **baseline** — `BASELINE_SECS` of load, nothing else;
//! 2. **push** — the Python field-merge pushed to A; every node fetches and compiles it
//!    (CPU contention on a small machine, but no fold waits for it), until all three list it
//!    compiled;
//! 3. **bind** — bound through C once every node is ready, to `SETTLE_SECS` after the answer:
//!    the fold switches by loading compiled code;
//! 4. **bind unprepared** (`FORCE=1`, default) — a second Python build (other bytes) pushed and
//!    at once bound with `"force": true`, so nodes compile it inside their fold: what every
//!    bind cost before binds waited for readiness.
//!
//! Printed per window: probes, p50 / p99 / max latency; and the fold lag a bind adds, as the
//! window's max minus the baseline's p99 (the goal: ≤ 100 ms), with each node's
//! `pluginFoldWaits`. Knobs: `LOAD_RATE`, `PROBE_MS`, `BASELINE_SECS` (10), `SETTLE_SECS` (5),
//! `FORCE` (1), `SYNCBASE_BIN`.

#[path = "../../tests/nats_support/mod.rs"]
mod nats_support;

#[path = "support/mod.rs"]
mod support;

// Shared with the replication bench; this bench uses part of it.
#[allow(dead_code)]
#[path = "replication/node.rs"]
mod node;

// Shared with the replication bench; this bench uses part of it.
#[allow(dead_code)]
#[path = "replication/workload.rs"]
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};

use nats_support::Cluster;
use node::{Node, wait_collection};
use support::Conn;
use workload::{Subscriber, collection_def, create};

const COLL: &str = "swap";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One probe: when it was sent, and its latency (`None`: C never showed it).
type Probe = (Instant, Option<Duration>);

/// The Python field-merge built from `plugins/python/field-merge`, with `salt` appended as a
/// comment (other bytes, same policy).
fn python_field_merge(salt: &str) -> Result<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::Builder::new().prefix("sb-swap-").tempdir()?;
    let src = root.join("plugins/python/field-merge");
    for file in ["plugin.py", "plugin.json"] {
        let mut text = std::fs::read_to_string(src.join(file))?;
        if file == "plugin.py" {
            text.push_str(&format!("\n# {salt}\n"));
        }
        std::fs::write(dir.path().join(file), text)?;
    }
    let built = syncbase_plugin_build::build_foreign(&syncbase_plugin_build::ForeignBuild::new(
        syncbase_plugin_build::Lang::Python,
        dir.path(),
    ))
    .map_err(|e| anyhow::anyhow!("building the Python field-merge: {e}"))?;
    Ok(std::fs::read(built.component)?)
}

async fn push(node: &Node, name: &str, bytes: Vec<u8>) -> Result<Value> {
    let mut conn = Conn::connect(node.addr).await?;
    let (status, body) = conn
        .send(
            Method::POST,
            &format!("/api/plugins?name={name}"),
            Some(&node.token),
            Some(Bytes::from(bytes)),
        )
        .await?;
    ensure!(
        status == StatusCode::OK,
        "push {name}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}

/// Waits until every node lists `name` compiled on all three.
async fn compiled_everywhere(nodes: &[&Node], name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut ready = true;
        for n in nodes {
            let list = n.call(Method::GET, "/api/plugins", None).await?;
            ready &=
                list["items"].as_array().into_iter().flatten().any(|p| {
                    p["name"] == name && p["nodes"].as_array().is_some_and(|n| n.len() == 3)
                });
        }
        if ready {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{name} never compiled on every node"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // polling the prefetch
    }
}

async fn fold_waits(nodes: &[&Node]) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for n in nodes {
        let s = n.call(Method::GET, "/api/sync/status", None).await?;
        out.push(s["pluginFoldWaits"].as_u64().unwrap_or(0));
    }
    Ok(out)
}

/// Paced creates on `node` until `stop`.
fn load(node: &Node, rate: f64, stop: Arc<AtomicBool>, base: u64) -> tokio::task::JoinHandle<()> {
    let (addr, id) = (node.addr, node.id);
    tokio::spawn(async move {
        let Ok(mut conn) = Conn::connect(addr).await else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut n = base;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            if create(&mut conn, COLL, id, n).await.is_err() {
                return;
            }
        }
    })
}

/// One create on A every `every`, each waited for on C, until `stop`.
fn probes(
    a: &Node,
    c: &Node,
    every: Duration,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Probe>>>,
) -> tokio::task::JoinHandle<Result<()>> {
    let (a_addr, c_addr, a_id) = (a.addr, c.addr, a.id);
    tokio::spawn(async move {
        let mut sub = Subscriber::connect(c_addr, COLL).await?;
        let mut conn = Conn::connect(a_addr).await?;
        let mut n = 900_000_000u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let sent = Instant::now();
            ensure!(
                create(&mut conn, COLL, a_id, n).await?,
                "probe create failed"
            );
            let answered = Instant::now();
            let seen = sub.wait_for(n, Duration::from_secs(120)).await;
            let latency = seen.map(|at| at.saturating_duration_since(answered));
            out.lock().push((sent, latency));
            let next = sent + every;
            tokio::time::sleep_until(next.into()).await;
        }
        Ok(())
    })
}

struct Window {
    name: &'static str,
    from: Instant,
    to: Instant,
}

fn stats(probes: &[Probe], w: &Window) -> (usize, f64, f64, f64, usize) {
    let mut lat: Vec<f64> = probes
        .iter()
        .filter(|(at, _)| *at >= w.from && *at < w.to)
        .filter_map(|(_, l)| l.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    let missing = probes
        .iter()
        .filter(|(at, l)| *at >= w.from && *at < w.to && l.is_none())
        .count();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    (
        lat.len(),
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(0.0),
        missing,
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = std::env::var_os("SYNCBASE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
        PathBuf::from,
    );
    let rate = env_num("LOAD_RATE", 150) as f64;
    let every = Duration::from_millis(env_num("PROBE_MS", 20));
    let baseline = Duration::from_secs(env_num("BASELINE_SECS", 10));
    let settle = Duration::from_secs(env_num("SETTLE_SECS", 5));
    let force = env_num("FORCE", 1) == 1;
    println!(
        "Plugin swap bench: 3 NATS servers (R3), 3 Syncbase nodes, {} CPUs; load {rate} writes/s \
         on B and C, a probe on A every {} ms timed to C's realtime event",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        every.as_millis()
    );
    println!("building the Python field-merge (twice: two builds, other bytes)...");
    let py1 = python_field_merge("build 1")?;
    let py2 = if force {
        Some(python_field_merge("build 2")?)
    } else {
        None
    };
    println!("  {} bytes", py1.len());

    let cluster = Cluster::start(3).await;
    let root = tempfile::Builder::new()
        .prefix("sb-bench-swap-")
        .tempdir()?;
    let outcome = run(
        &bin,
        &cluster,
        root.path(),
        rate,
        every,
        baseline,
        settle,
        py1,
        py2,
    )
    .await;
    cluster.shutdown().await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run(
    bin: &Path,
    cluster: &Cluster,
    root: &Path,
    rate: f64,
    every: Duration,
    baseline: Duration,
    settle: Duration,
    py1: Vec<u8>,
    py2: Option<Vec<u8>>,
) -> Result<()> {
    let mut a = Node::create(bin, root, "a", cluster.url(0)).await?;
    let mut b = Node::create(bin, root, "b", cluster.url(1)).await?;
    let mut c = Node::create(bin, root, "c", cluster.url(2)).await?;
    a.call(Method::POST, "/api/collections", Some(collection_def(COLL)))
        .await?;
    for n in [&b, &c] {
        wait_collection(n, COLL, Duration::from_secs(30)).await?;
    }
    let nodes = [&a, &b, &c];
    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let loads = [
        load(&b, rate / 2.0, stop.clone(), 100_000_000),
        load(&c, rate / 2.0, stop.clone(), 200_000_000),
    ];
    let prober = probes(&a, &c, every, stop.clone(), recorded.clone());
    let mut windows = Vec::new();

    let t = Instant::now();
    tokio::time::sleep(baseline).await;
    windows.push(Window {
        name: "baseline",
        from: t,
        to: Instant::now(),
    });

    let t = Instant::now();
    let pushed = push(&a, "fm-py", py1).await?;
    compiled_everywhere(&nodes, "fm-py").await?;
    windows.push(Window {
        name: "push + prefetch",
        from: t,
        to: Instant::now(),
    });
    println!(
        "  pushed fm-py v{} and compiled on every node in {:.1} s",
        pushed["version"],
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    c.call(
        Method::POST,
        "/api/plugins/fm-py/bind",
        Some(json!({"collection": COLL, "as": "resolver"})),
    )
    .await
    .context("bind")?;
    let bound = t.elapsed();
    tokio::time::sleep(settle).await;
    windows.push(Window {
        name: "bind",
        from: t,
        to: Instant::now(),
    });
    println!(
        "  bound through C in {:.0} ms",
        bound.as_secs_f64() * 1000.0
    );
    let waits_after_bind = fold_waits(&nodes).await?;

    if let Some(py2) = py2 {
        // Quiet first, so the unprepared bind's window holds only its own cost.
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        let v2 = push(&a, "fm-py", py2).await?["version"].clone();
        // Unprepared, C compiles inside its fold: the answer may well be the write-concern
        // timeout (504). The window runs until every node folded the binding, then settles.
        if let Err(e) = c
            .call(
                Method::POST,
                "/api/plugins/fm-py/bind",
                Some(json!({"collection": COLL, "as": "resolver", "force": true})),
            )
            .await
        {
            println!("  forced bind answered: {:#}", e);
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        for n in nodes {
            loop {
                let list = n.call(Method::GET, "/api/plugins/bindings", None).await?;
                let active = list.as_array().and_then(|b| {
                    b.iter()
                        .find(|e| e["collectionName"] == COLL)
                        .map(|e| e["active"]["version"].clone())
                });
                if active.as_ref() == Some(&v2) {
                    break;
                }
                ensure!(Instant::now() < deadline, "node {} never bound v{v2}", n.id);
                tokio::time::sleep(Duration::from_millis(100)).await; // polling the fold
            }
        }
        println!(
            "  forced bind folded on every node {:.1} s after it was sent",
            t.elapsed().as_secs_f64()
        );
        tokio::time::sleep(settle).await;
        windows.push(Window {
            name: "bind unprepared (force)",
            from: t,
            to: Instant::now(),
        });
    }

    stop.store(true, Ordering::Relaxed);
    for l in loads {
        let _ = l.await;
    }
    prober.await??;
    let waits_end = fold_waits(&nodes).await?;
    let probes = recorded.lock().clone();

    println!(
        "\n| window | probes | p50 ms | p99 ms | max ms | missing | fold lag added (max − baseline p99) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let base = stats(&probes, &windows[0]);
    for w in &windows {
        let (n, p50, p99, max, missing) = stats(&probes, w);
        let added = if w.name == "baseline" {
            "—".to_string()
        } else {
            format!("{:.0} ms", (max - base.2).max(0.0))
        };
        println!(
            "| {} | {n} | {p50:.1} | {p99:.1} | {max:.1} | {missing} | {added} |",
            w.name
        );
    }
    println!(
        "\npluginFoldWaits (a, b, c): after the prepared bind {waits_after_bind:?}, at the end {waits_end:?}"
    );
    for n in [&mut a, &mut b, &mut c] {
        n.stop().await;
    }
    Ok(())
}
