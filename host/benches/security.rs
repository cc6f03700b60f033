//! What a hostile client costs everyone else, measured against a baseline in the same run.
//!
//! 1. Logins under a password flood: `FLOOD` clients send wrong passwords for one account
//!    without pause while one client signs in to another account `LOGINS` times in a row.
//!    Latency of the legitimate logins idle and under the flood, for real PocketBase and for
//!    Syncbase (whose bcrypt work passes a fair, bounded gate).
//! 2. Realtime with a heavy subscriber: `LIGHT` SSE clients subscribe to a collection; one more
//!    client subscribes to it `HEAVY_TOPICS` times, each with a filter that needs SQL. Delivery
//!    latency (update answered → last light client has the event) over `UPDATES` updates, without
//!    and with the heavy client (Syncbase).
//! 3. Outbound log memory: `BIG_RECORDS` guest creates of `BIG_MB` MiB records; resident memory
//!    growth with the default outbound log bound and with an unbounded log (the old behaviour,
//!    `--outbound-log-bytes` set far above the data), each on a fresh Syncbase node.
//!
//! Env: FLOOD (64), LOGINS (20), LIGHT (20), HEAVY_TOPICS (1000), UPDATES (200),
//! BIG_RECORDS (10), BIG_MB (30), POCKETBASE_BIN (`pocketbase`), SYNCBASE_BIN.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Conn, Server, superuser_token};

fn num(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

fn bin(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map_or(default, PathBuf::from)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pb_bin = bin("POCKETBASE_BIN", PathBuf::from("pocketbase"));
    let sb_bin = bin(
        "SYNCBASE_BIN",
        PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
    );
    println!(
        "Security bench, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    rt.block_on(async {
        logins(&pb_bin, &sb_bin).await?;
        realtime(&sb_bin).await?;
        outbound_memory(&sb_bin).await
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Logins under a flood

const LOGIN: &str = "/api/collections/users/auth-with-password";

async fn create_user(addr: SocketAddr, email: &str) -> Result<()> {
    let mut c = Conn::connect(addr).await?;
    c.json(
        Method::POST,
        "/api/collections/users/records",
        None,
        Some(json!({"email": email, "password": "a-long-password-1", "passwordConfirm": "a-long-password-1"})),
    )
    .await?;
    Ok(())
}

async fn timed_logins(addr: SocketAddr, n: usize) -> Result<Vec<Duration>> {
    let body = Bytes::from(
        json!({"identity": "alice@example.com", "password": "a-long-password-1"}).to_string(),
    );
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Conn::connect(addr).await?;
        let t = Instant::now();
        let (status, text) = c
            .send(Method::POST, LOGIN, None, Some(body.clone()))
            .await?;
        ensure!(
            status == StatusCode::OK,
            "legitimate login -> {status}: {}",
            String::from_utf8_lossy(&text)
        );
        out.push(t.elapsed());
    }
    out.sort();
    Ok(out)
}

struct LoginFigures {
    idle: Vec<Duration>,
    flood: Vec<Duration>,
    flood_answers: u64,
    flood_refused: u64,
}

async fn login_run(label: &str, bin: &Path, flood: usize, logins: usize) -> Result<LoginFigures> {
    let server = Server::start(bin, "sb-bench-sec-")
        .await
        .with_context(|| format!("starting {label}"))?;
    let addr = server.addr;
    create_user(addr, "alice@example.com").await?;
    create_user(addr, "victim@example.com").await?;
    let idle = timed_logins(addr, logins).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (answers, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for i in 0..flood {
        let (stop, answers, refused) = (stop.clone(), answers.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(
                json!({"identity": "victim@example.com", "password": format!("guess-{i}")})
                    .to_string(),
            );
            let Ok(mut c) = Conn::connect(addr).await else {
                return;
            };
            while !stop.load(Ordering::Relaxed) {
                match c.send(Method::POST, LOGIN, None, Some(body.clone())).await {
                    Ok((s, _)) => {
                        answers.fetch_add(1, Ordering::Relaxed);
                        if s == StatusCode::TOO_MANY_REQUESTS {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the flood fill the server's queue before the legitimate logins start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flooded = timed_logins(addr, logins).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    server.stop().await;
    Ok(LoginFigures {
        idle,
        flood: flooded?,
        flood_answers: answers.load(Ordering::Relaxed),
        flood_refused: refused.load(Ordering::Relaxed),
    })
}

async fn logins(pb_bin: &Path, sb_bin: &Path) -> Result<()> {
    let (flood, logins) = (num("FLOOD", 64)?, num("LOGINS", 20)?);
    println!(
        "\n1. Legitimate logins ({logins} in a row) while {flood} clients send wrong passwords for another account"
    );
    println!(
        "{:<12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>16}",
        "server",
        "idle p50 ms",
        "idle p99 ms",
        "flood p50 ms",
        "flood p99 ms",
        "p50 ratio",
        "flood answers"
    );
    for (label, bin) in [("PocketBase", pb_bin), ("Syncbase", sb_bin)] {
        let f = login_run(label, bin, flood, logins).await?;
        println!(
            "{:<12} {:>12.1} {:>12.1} {:>14.1} {:>14.1} {:>10.1} {:>9} ({} 429)",
            label,
            ms(pct(&f.idle, 0.5)),
            ms(pct(&f.idle, 0.99)),
            ms(pct(&f.flood, 0.5)),
            ms(pct(&f.flood, 0.99)),
            ms(pct(&f.flood, 0.5)) / ms(pct(&f.idle, 0.5)),
            f.flood_answers,
            f.flood_refused,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Realtime with a heavy subscriber

/// An SSE client that records when it saw each `"n":<value>` event.
struct Subscriber {
    seen: Arc<parking_lot::Mutex<Vec<(u64, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn sse_subscribe(addr: SocketAddr, topics: Vec<String>) -> Result<Subscriber> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /api/realtime HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        .await?;
    let mut text = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !text.contains("PB_CONNECT") {
        let n = s.read(&mut buf).await?;
        ensure!(n > 0, "SSE closed before PB_CONNECT");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let id = text
        .split("\"clientId\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("no clientId")?
        .to_string();
    let mut c = Conn::connect(addr).await?;
    let body = Bytes::from(json!({"clientId": id, "subscriptions": topics}).to_string());
    let (status, text) = c
        .send(Method::POST, "/api/realtime", None, Some(body))
        .await?;
    ensure!(
        status == StatusCode::NO_CONTENT,
        "subscribe -> {status}: {}",
        String::from_utf8_lossy(&text)
    );
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut carry = String::new();
        loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = Instant::now();
            carry.push_str(&String::from_utf8_lossy(&buf[..n]));
            let mut rest = carry.as_str();
            let mut consumed = 0;
            while let Some(at) = rest.find("\"n\":") {
                let tail = &rest[at + 4..];
                let end = tail
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(tail.len());
                if end == tail.len() {
                    break;
                }
                if let Ok(v) = tail[..end].parse::<u64>() {
                    log.lock().push((v, now));
                }
                consumed += at + 4 + end;
                rest = &carry[consumed..];
            }
            carry.drain(..consumed);
        }
    });
    Ok(Subscriber { seen, task })
}

fn options(filter: &str) -> String {
    let opts = json!({"query": {"filter": filter}}).to_string();
    let enc: String = url::form_urlencoded::byte_serialize(opts.as_bytes()).collect();
    format!("rt/*?options={enc}")
}

/// Delivery latencies (update answered → last light subscriber has it), sorted.
async fn realtime_run(bin: &Path, heavy_topics: usize) -> Result<(Vec<Duration>, Duration)> {
    let (light, updates) = (num("LIGHT", 20)?, num("UPDATES", 200)?);
    let server = Server::start(bin, "sb-bench-sec-rt-").await?;
    let addr = server.addr;
    let token = superuser_token(addr).await?;
    let mut c = Conn::connect(addr).await?;
    c.json(
        Method::POST,
        "/api/collections",
        Some(&token),
        Some(
            json!({"name": "rt", "listRule": "", "viewRule": "", "updateRule": "",
                     "fields": [{"name": "n", "type": "number"}]}),
        ),
    )
    .await?;
    let rec = c
        .json(
            Method::POST,
            "/api/collections/rt/records",
            Some(&token),
            Some(json!({"n": 0})),
        )
        .await?;
    let id = rec["id"].as_str().context("id")?.to_string();
    let mut subs = Vec::new();
    for _ in 0..light {
        subs.push(sse_subscribe(addr, vec!["rt/*".to_string()]).await?);
    }
    let heavy = if heavy_topics > 0 {
        // Filters no update matches, each evaluated with SQL for every change.
        let topics = (0..heavy_topics)
            .map(|i| options(&format!("n = {}", 1_000_000 + i)))
            .collect();
        Some(sse_subscribe(addr, topics).await?)
    } else {
        None
    };
    let mut answered = Vec::with_capacity(updates);
    let path = format!("/api/collections/rt/records/{id}");
    let started = Instant::now();
    for i in 1..=updates as u64 {
        let body = Bytes::from(json!({ "n": i }).to_string());
        let (status, _) = c
            .send(Method::PATCH, &path, Some(&token), Some(body))
            .await?;
        ensure!(status == StatusCode::OK, "update -> {status}");
        answered.push(Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while subs.iter().any(|s| s.seen.lock().len() < updates) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await; // polling the recorded deliveries
    }
    let mut lat = Vec::with_capacity(updates);
    for (i, at) in answered.iter().enumerate() {
        let n = i as u64 + 1;
        let last = subs
            .iter()
            .filter_map(|s| s.seen.lock().iter().find(|(v, _)| *v == n).map(|(_, t)| *t))
            .max();
        if let Some(t) = last {
            lat.push(t.saturating_duration_since(*at));
        }
    }
    lat.sort();
    let total = started.elapsed();
    for s in subs.iter().chain(heavy.iter()) {
        s.task.abort();
    }
    server.stop().await;
    ensure!(
        lat.len() == updates,
        "{} of {updates} updates reached every light subscriber",
        lat.len()
    );
    Ok((lat, total))
}

async fn realtime(sb_bin: &Path) -> Result<()> {
    let heavy = num("HEAVY_TOPICS", 1000)?;
    println!(
        "\n2. Realtime: {} light SSE clients, {} updates; a heavy client with {heavy} filtered topics (Syncbase)",
        num("LIGHT", 20)?,
        num("UPDATES", 200)?
    );
    let (base, base_total) = realtime_run(sb_bin, 0).await?;
    let (with, with_total) = realtime_run(sb_bin, heavy).await?;
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>12}",
        "", "p50 ms", "p99 ms", "max ms", "run s"
    );
    for (label, l, t) in [
        ("no heavy client", &base, base_total),
        ("with heavy client", &with, with_total),
    ] {
        println!(
            "{:<22} {:>10.2} {:>10.2} {:>10.2} {:>12.2}",
            label,
            ms(pct(l, 0.5)),
            ms(pct(l, 0.99)),
            ms(pct(l, 1.0)),
            t.as_secs_f64()
        );
    }
    println!(
        "ratio (with/without): p50 {:.2}, p99 {:.2}",
        ms(pct(&with, 0.5)) / ms(pct(&base, 0.5)),
        ms(pct(&with, 0.99)) / ms(pct(&base, 0.99))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Outbound log memory

async fn outbound_memory(sb_bin: &Path) -> Result<()> {
    let (records, mb) = (num("BIG_RECORDS", 10)?, num("BIG_MB", 30)?);
    println!("\n3. Resident memory after {records} guest creates of {mb} MiB records (Syncbase)");
    println!(
        "{:<34} {:>14} {:>14} {:>14}",
        "outbound log", "RSS before MiB", "RSS after MiB", "growth MiB"
    );
    let unbounded = ((records * (mb + 1)) << 21).to_string();
    let body_limit = ((mb + 2) << 20).to_string();
    let mut growth = Vec::new();
    for (label, bytes) in [
        ("bounded (default 16 MiB)", None),
        ("unbounded (the old behaviour)", Some(unbounded.as_str())),
    ] {
        let mut flags = vec!["--body-limit", body_limit.as_str()];
        if let Some(b) = bytes {
            flags.extend(["--outbound-log-bytes", b]);
        }
        let server = Server::start_with(sb_bin, "sb-bench-sec-mem-", &flags).await?;
        let addr = server.addr;
        let token = superuser_token(addr).await?;
        let mut c = Conn::connect(addr).await?;
        c.json(
            Method::POST,
            "/api/collections",
            Some(&token),
            Some(json!({"name": "blobs", "createRule": "",
                         "fields": [{"name": "data", "type": "json", "maxSize": (mb + 1) << 20}]})),
        )
        .await?;
        let before = server.rss_kib()?;
        let payload = Bytes::from(json!({"data": {"pad": "x".repeat(mb << 20)}}).to_string());
        for _ in 0..records {
            let (status, text) = c
                .send(
                    Method::POST,
                    "/api/collections/blobs/records",
                    None,
                    Some(payload.clone()),
                )
                .await?;
            ensure!(
                status == StatusCode::OK,
                "create -> {status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(300)])
            );
        }
        // The outbound stage follows the change feed: wait until it has logged every create.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let log: Value = c
                .json(
                    Method::GET,
                    "/api/plugins/outbound?limit=0",
                    Some(&token),
                    None,
                )
                .await?;
            if log["passed"].as_u64().unwrap_or(0) >= records as u64 {
                break;
            }
            ensure!(Instant::now() < deadline, "outbound stage did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await; // polling the stage's counter
        }
        let after = server.rss_kib()?;
        server.stop().await;
        let g = after.saturating_sub(before) as f64 / 1024.0;
        growth.push(g);
        println!(
            "{:<34} {:>14.1} {:>14.1} {:>14.1}",
            label,
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            g
        );
    }
    println!(
        "growth ratio (bounded/unbounded): {:.2}",
        growth[0] / growth[1].max(1.0)
    );
    Ok(())
}
