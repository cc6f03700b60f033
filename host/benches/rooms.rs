//! Rooms benchmark (issue 13): one room with `CLIENTS` websocket clients, all on the room's
//! owner ("direct") against the same clients spread over three nodes ("proxied": two thirds
//! reach the owner through node-to-node links), then owner failover.
//!
//! Setup: a fresh 3-server NATS cluster (nats-server processes on free ports) and three
//! release `syncbase serve` processes a, b, c (`--nats <server i> --node-id a|b|c`), each
//! with its own superuser; the collection `bench_room` (every rule `""`) is created on a and
//! replicates. Each phase uses a fresh record (room). Its owner is a: a's client joins first.
//!
//! Per layout (direct, proxied):
//! * `CLIENTS` receivers join (at most `SETUP_CONCURRENCY` at a time, so the presence storm of
//!   a thousand joins stays within the clients' queues), plus three senders (one per node when
//!   proxied, all on a when direct).
//! * latency: `MESSAGES` messages, paced open-loop at `RATE`/s, round-robin over the senders;
//!   each timed from its send to the LAST receiver getting it: p50, p99, max;
//! * throughput: `BURST` messages as fast as a window of `WINDOW` not-yet-fully-delivered
//!   messages allows: messages/s and deliveries/s from the first send to the last delivery.
//!
//! Failover (`FAILOVERS` rounds): a fresh room owned by node X (its client joined first), a
//! sender on the next node; X is killed with SIGKILL and the sender keeps sending (rejoining
//! from its position after the close that says "reconnect") until a message is acknowledged
//! under a new epoch. Kill → that ack, against the lease TTL (`LEASE_MS`); then X restarts.
//!
//! Floor: before the nodes start, the raw JetStream publish→delivered latency on the same
//! cluster (R3, one 200-byte message at a time, `support/floor.rs`): a stamped message costs
//! one such append before anyone sees it.
//!
//! Ratios: proxied p99 / direct p99 (goal ≤ 2), failover / lease TTL (goal ≤ 2). The bench
//! process reads every socket on `CLIENT_THREADS` threads (default 1), so it takes as little
//! of the machine as possible from the servers. Env: `CLIENTS` (1000), `MESSAGES` (500),
//! `RATE` (50), `BURST` (1000), `WINDOW` (32), `FAILOVERS` (3), `LEASE_MS` (5000),
//! `SETUP_CONCURRENCY` (4), `CLIENT_THREADS` (1), `SYNCBASE_BIN`. Needs about
//! 2 x CLIENTS file descriptors.

#[path = "support/floor.rs"]
mod floor;
#[path = "../../tests/nats_support/mod.rs"]
mod nats_support;
mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;

use support::{Conn, SUPERUSER_EMAIL, SUPERUSER_PASSWORD, superuser_token, wait_healthy};

const COLL: &str = "bench_room";

struct Config {
    clients: usize,
    messages: usize,
    rate: f64,
    burst: usize,
    window: usize,
    failovers: usize,
    lease_ms: u64,
    setup_concurrency: usize,
    bin: PathBuf,
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Config> {
        Ok(Config {
            clients: num::<usize>("CLIENTS", 1000)?.max(1),
            messages: num::<usize>("MESSAGES", 500)?.max(1),
            rate: num::<f64>("RATE", 50.0)?.max(1.0),
            burst: num("BURST", 1000)?,
            window: num::<usize>("WINDOW", 32)?.max(1),
            failovers: num("FAILOVERS", 3)?,
            lease_ms: num::<u64>("LEASE_MS", 5000)?.max(1000),
            setup_concurrency: num::<usize>("SETUP_CONCURRENCY", 4)?.max(1),
            bin: std::env::var_os("SYNCBASE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_syncbase"))),
        })
    }
}

fn main() -> Result<()> {
    let threads = num::<usize>("CLIENT_THREADS", 1)?.max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run(Config::from_env()?))
}

/// A `syncbase serve` process of the bench cluster.
struct Node {
    id: &'static str,
    dir: PathBuf,
    nats: String,
    addr: SocketAddr,
    token: String,
    child: Option<Child>,
}

impl Node {
    async fn create(cfg: &Config, root: &Path, id: &'static str, nats: String) -> Result<Node> {
        let dir = root.join(id);
        let st = Command::new(&cfg.bin)
            .args([
                "superuser",
                "upsert",
                SUPERUSER_EMAIL,
                SUPERUSER_PASSWORD,
                "--dir",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()?;
        ensure!(st.success(), "superuser upsert on {id}: {st}");
        let mut n = Node {
            id,
            dir,
            nats,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            child: None,
        };
        n.start(cfg).await?;
        Ok(n)
    }

    async fn start(&mut self, cfg: &Config) -> Result<()> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))?;
        let child = Command::new(&cfg.bin)
            .args(["serve", "--http", &self.addr.to_string(), "--dir"])
            .arg(&self.dir)
            .args([
                "--nats",
                &self.nats,
                "--node-id",
                self.id,
                "--cluster",
                "bench",
            ])
            .args(["--room-lease-ms", &cfg.lease_ms.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        wait_healthy(self.addr).await?;
        self.token = superuser_token(self.addr).await?;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cpu(&self) -> f64 {
        self.child
            .as_ref()
            .and_then(|c| support::cpu_seconds(c.id()).ok())
            .unwrap_or(0.0)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        Conn::connect(self.addr)
            .await?
            .json(method, path, Some(&self.token), body)
            .await
    }

    fn room_url(&self, id: &str) -> String {
        format!("ws://{}/api/rooms/{COLL}/{id}", self.addr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it is true, for at most `secs`.
async fn wait(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out after {secs}s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    Ok(())
}

/// A new record (room) created on `nodes[0]` and present on every node.
async fn new_room(nodes: &[&Node]) -> Result<String> {
    let rec = nodes[0]
        .call(
            Method::POST,
            &format!("/api/collections/{COLL}/records?sync=applied"),
            Some(json!({"t": "room"})),
        )
        .await?;
    let id = rec["id"].as_str().context("record id")?.to_string();
    for n in &nodes[1..] {
        let path = format!("/api/collections/{COLL}/records/{id}");
        wait(30, "the room's record everywhere", async || {
            n.call(Method::GET, &path, None).await.is_ok()
        })
        .await?;
    }
    Ok(id)
}

/// Per-message receipt figures, shared by every reader.
struct Tally {
    t0: Instant,
    sent: Vec<AtomicU64>,
    last: Vec<AtomicU64>,
    count: Vec<AtomicU32>,
    receivers: u32,
    complete: AtomicUsize,
    progress: Notify,
    joined: AtomicUsize,
}

impl Tally {
    fn new(n: usize, receivers: usize) -> Arc<Tally> {
        let v = |n| (0..n).map(|_| AtomicU64::new(0)).collect();
        Arc::new(Tally {
            t0: Instant::now(),
            sent: v(n),
            last: v(n),
            count: (0..n).map(|_| AtomicU32::new(0)).collect(),
            receivers: receivers as u32,
            complete: AtomicUsize::new(0),
            progress: Notify::new(),
            joined: AtomicUsize::new(0),
        })
    }

    fn us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn received(&self, n: usize) {
        let Some(last) = self.last.get(n) else { return };
        last.fetch_max(self.us(), Ordering::Relaxed);
        if self.count[n].fetch_add(1, Ordering::AcqRel) + 1 == self.receivers {
            self.complete.fetch_add(1, Ordering::AcqRel);
            self.progress.notify_waiters();
        }
    }
}

/// The `"n":` of a message frame's payload, read without parsing the frame.
fn message_n(text: &str) -> Option<usize> {
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let at = text.find(r#""payload":{"n":"#)? + r#""payload":{"n":"#.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

type WsSink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// Opens a member: joins, and reads its frames into `tally` (when `receiver`) until closed.
/// Returns its sink and a channel of the frames a sender needs (acks, errors, close codes).
async fn member(
    url: &str,
    tally: Arc<Tally>,
    receiver: bool,
) -> Result<(WsSink, mpsc::UnboundedReceiver<String>)> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connect {url}"))?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::Text(r#"{"type":"join"}"#.into()))
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Text(t) => {
                    if t.starts_with(r#"{"type":"joined""#) {
                        tally.joined.fetch_add(1, Ordering::AcqRel);
                    } else if let Some(n) = message_n(&t) {
                        if receiver {
                            tally.received(n);
                        }
                        continue;
                    }
                    if !receiver
                        && (t.starts_with(r#"{"type":"ack""#)
                            || t.starts_with(r#"{"type":"error""#))
                    {
                        let _ = tx.send(t.to_string());
                    }
                }
                Message::Close(c) => {
                    let code = c.map_or(0, |c| u16::from(c.code));
                    let _ = tx.send(format!("close {code}"));
                    return;
                }
                _ => {}
            }
        }
        let _ = tx.send("close 0".into());
    });
    Ok((sink, rx))
}

/// One layout's figures.
#[derive(Debug, Default, Clone)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    delivered: usize,
    msgs_per_s: f64,
    deliveries_per_s: f64,
    cpu_s: f64,
    dropped: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn layout(cfg: &Config, nodes: &[&Node], spread: bool) -> Result<Figures> {
    let room = new_room(nodes).await?;
    let total = cfg.messages + cfg.burst;
    let tally = Tally::new(total, cfg.clients);
    // The owner: a's first member. Then the receivers, then the senders.
    let place = |i: usize| {
        if spread {
            nodes[i % nodes.len()]
        } else {
            nodes[0]
        }
    };
    let (anchor, _) = member(&nodes[0].room_url(&room), tally.clone(), false).await?;
    let gate = Arc::new(Semaphore::new(cfg.setup_concurrency));
    let mut keep = Vec::with_capacity(cfg.clients);
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..cfg.clients {
        let (url, tally, gate) = (place(i).room_url(&room), tally.clone(), gate.clone());
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let before = tally.joined.load(Ordering::Acquire);
            let m = member(&url, tally.clone(), true).await;
            // Wait for this join's answer before letting the next one in.
            let deadline = Instant::now() + Duration::from_secs(30);
            while tally.joined.load(Ordering::Acquire) <= before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await; // poll interval
            }
            m
        });
    }
    while let Some(m) = opening.join_next().await {
        keep.push(m??.0);
    }
    let mut senders = Vec::new();
    for k in 0..3 {
        senders.push(member(&place(k).room_url(&room), tally.clone(), false).await?);
    }
    let want = cfg.clients + 4;
    wait(60, "every member joined", async || {
        tally.joined.load(Ordering::Acquire) >= want
    })
    .await?;
    let cpu0: f64 = nodes.iter().map(|n| n.cpu()).sum();
    let dropped0 = dropped(nodes).await;

    // Latency: paced sends.
    let start = Instant::now();
    for n in 0..cfg.messages {
        let at = start + Duration::from_secs_f64(n as f64 / cfg.rate);
        tokio::time::sleep_until(at.into()).await;
        let (sink, _) = &mut senders[n % 3];
        tally.sent[n].store(tally.us(), Ordering::Relaxed);
        sink.send(Message::Text(
            json!({"type": "send", "payload": {"n": n}})
                .to_string()
                .into(),
        ))
        .await?;
    }
    wait_complete(&tally, cfg.messages, 60).await;
    let mut lat: Vec<f64> = (0..cfg.messages)
        .filter(|&n| tally.count[n].load(Ordering::Acquire) == tally.receivers)
        .map(|n| {
            (tally.last[n].load(Ordering::Relaxed) - tally.sent[n].load(Ordering::Relaxed)) as f64
                / 1000.0
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let delivered = lat.len();

    // Throughput: a window of messages not yet delivered to everyone.
    let t_burst = Instant::now();
    for k in 0..cfg.burst {
        let n = cfg.messages + k;
        loop {
            let notified = tally.progress.notified();
            if n < tally.complete.load(Ordering::Acquire) + cfg.window {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(30), notified)
                .await
                .is_err()
            {
                bail!("no progress for 30 s in the burst at message {n}");
            }
        }
        let (sink, _) = &mut senders[n % 3];
        tally.sent[n].store(tally.us(), Ordering::Relaxed);
        sink.send(Message::Text(
            json!({"type": "send", "payload": {"n": n}})
                .to_string()
                .into(),
        ))
        .await?;
    }
    wait_complete(&tally, total, 60).await;
    let burst_last = (cfg.messages..total)
        .map(|n| tally.last[n].load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let burst_secs = (burst_last as f64 / 1e6 - (t_burst - tally.t0).as_secs_f64()).max(1e-9);
    let cpu1: f64 = nodes.iter().map(|n| n.cpu()).sum();
    let figures = Figures {
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        delivered,
        msgs_per_s: cfg.burst as f64 / burst_secs,
        deliveries_per_s: (cfg.burst * cfg.clients) as f64 / burst_secs,
        cpu_s: cpu1 - cpu0,
        dropped: dropped(nodes).await.saturating_sub(dropped0),
    };
    drop((anchor, keep, senders));
    Ok(figures)
}

async fn wait_complete(tally: &Tally, upto: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while tally.complete.load(Ordering::Acquire) < upto && Instant::now() < deadline {
        let notified = tally.progress.notified();
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
}

async fn dropped(nodes: &[&Node]) -> u64 {
    let mut total = 0;
    for n in nodes {
        if let Ok(s) = n.call(Method::GET, "/api/sync/status", None).await {
            total += s["rooms"]["slowDropped"].as_u64().unwrap_or(0);
        }
    }
    total
}

/// Kills `nodes[victim]` (the room's owner) and times until a sender on the next node gets a
/// message acknowledged by the new owner.
async fn failover(cfg: &Config, nodes: &mut [Node], victim: usize) -> Result<Duration> {
    let survivor = (victim + 1) % nodes.len();
    let room = {
        let refs: Vec<&Node> = [survivor, victim, (victim + 2) % 3]
            .iter()
            .map(|&i| &nodes[i])
            .collect();
        new_room(&refs).await?
    };
    let tally = Tally::new(0, 1);
    let (_owner_member, _) = member(&nodes[victim].room_url(&room), tally.clone(), false).await?;
    wait(10, "the owner's member joined", async || {
        tally.joined.load(Ordering::Acquire) >= 1
    })
    .await?;
    let url = nodes[survivor].room_url(&room);
    let (mut sink, mut rx) = member(&url, tally.clone(), false).await?;
    wait(10, "the sender joined", async || {
        tally.joined.load(Ordering::Acquire) >= 2
    })
    .await?;
    sink.send(Message::Text(
        r#"{"type":"send","payload":{"x":0},"ref":0}"#.into(),
    ))
    .await?;
    let first = rx.recv().await.context("no answer")?;
    let epoch0 = serde_json::from_str::<Value>(&first)?["epoch"].clone();
    ensure!(!epoch0.is_null(), "first send not acknowledged: {first}");

    nodes[victim].kill();
    let killed = Instant::now();
    let mut k = 1;
    loop {
        ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "no new owner within 60 s"
        );
        let frame = json!({"type": "send", "payload": {"x": k}, "ref": k}).to_string();
        k += 1;
        if sink.send(Message::Text(frame.into())).await.is_ok()
            && let Some(answer) = rx.recv().await
        {
            if let Ok(v) = serde_json::from_str::<Value>(&answer)
                && v["type"] == "ack"
                && v["epoch"] != epoch0
            {
                let took = killed.elapsed();
                nodes[victim].start(cfg).await?;
                return Ok(took);
            }
            if !answer.starts_with("close") {
                continue;
            }
        }
        // Told to reconnect (or the socket died): rejoin on the same node.
        let (s, r) = member(&url, tally.clone(), false).await?;
        (sink, rx) = (s, r);
    }
}

async fn run(cfg: Config) -> Result<()> {
    let cluster = nats_support::Cluster::start(3).await;
    let floor = floor::measure(
        &cluster,
        &floor::FloorOptions {
            payload: bytes::Bytes::from(vec![b'x'; 200]),
            latency_msgs: 500,
            msgs: 5000,
            in_flight: 256,
            replicas: 3,
        },
    )
    .await;
    let floor_figures = (
        floor.latency(0.5).as_secs_f64() * 1000.0,
        floor.latency(0.99).as_secs_f64() * 1000.0,
        floor.drain_rate,
    );
    eprintln!("floor: pipelined publish {:.0} msgs/s", floor.publish_rate);
    let root = tempfile::Builder::new()
        .prefix("sb-bench-rooms-")
        .tempdir()?;
    let mut nodes = Vec::new();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        nodes.push(Node::create(&cfg, root.path(), id, cluster.url(i)).await?);
    }
    let def = json!({"name": COLL, "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
                     "deleteRule": "", "fields": [{"name": "t", "type": "text"}]});
    nodes[0]
        .call(Method::POST, "/api/collections", Some(def))
        .await?;
    for n in &nodes[1..] {
        let path = format!("/api/collections/{COLL}");
        wait(30, "the collection everywhere", async || {
            n.call(Method::GET, &path, None).await.is_ok()
        })
        .await?;
    }
    for n in &nodes {
        wait(30, "rooms ready", async || {
            n.call(Method::GET, "/api/sync/status", None)
                .await
                .is_ok_and(|s| s["rooms"]["ready"] == true)
        })
        .await?;
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    eprintln!("direct: {} clients on the owner", cfg.clients);
    let direct = layout(&cfg, &refs, false).await?;
    eprintln!("proxied: {} clients over three nodes", cfg.clients);
    let proxied = layout(&cfg, &refs, true).await?;
    let mut failovers = Vec::new();
    for round in 0..cfg.failovers {
        let t = failover(&cfg, &mut nodes, round % 3).await?;
        eprintln!("failover round {round}: {t:?}");
        failovers.push(t.as_secs_f64() * 1000.0);
    }
    report(&cfg, &direct, &proxied, &failovers, floor_figures);
    drop(nodes);
    cluster.shutdown().await;
    Ok(())
}

fn report(
    cfg: &Config,
    direct: &Figures,
    proxied: &Figures,
    failovers: &[f64],
    floor: (f64, f64, f64),
) {
    println!();
    println!(
        "Rooms: one room, {} clients; latency = send -> LAST client, {} messages at {}/s; throughput = {} messages, window {}",
        cfg.clients, cfg.messages, cfg.rate, cfg.burst, cfg.window
    );
    println!("| | direct (all on the owner) | proxied (spread over 3 nodes) | proxied / direct |");
    println!("|---|---|---|---|");
    let row = |name: &str, d: f64, p: f64, unit: &str| {
        println!("| {name} | {d:.2} {unit} | {p:.2} {unit} | {:.2} |", p / d);
    };
    row("latency p50", direct.p50_ms, proxied.p50_ms, "ms");
    row("latency p99", direct.p99_ms, proxied.p99_ms, "ms");
    row("latency max", direct.max_ms, proxied.max_ms, "ms");
    row(
        "messages/s (windowed)",
        direct.msgs_per_s,
        proxied.msgs_per_s,
        "",
    );
    row(
        "deliveries/s",
        direct.deliveries_per_s,
        proxied.deliveries_per_s,
        "",
    );
    row("server CPU s (3 nodes)", direct.cpu_s, proxied.cpu_s, "");
    println!(
        "| delivered to all (latency run) | {}/{} | {}/{} | |",
        direct.delivered, cfg.messages, proxied.delivered, cfg.messages
    );
    println!(
        "| clients dropped as slow | {} | {} | |",
        direct.dropped, proxied.dropped
    );
    let goal = proxied.p99_ms / direct.p99_ms;
    println!();
    println!(
        "JetStream floor (R3, 200 B): publish -> delivered one at a time p50 {:.2} ms, p99 {:.2} ms (direct p50 / floor p50 = {:.1}); pipelined publish + delivery {:.0} msgs/s (direct messages/s / floor = {:.3})",
        floor.0,
        floor.1,
        direct.p50_ms / floor.0,
        floor.2,
        direct.msgs_per_s / floor.2
    );
    println!(
        "proxied p99 / direct p99 = {goal:.2} (goal <= 2: {})",
        if goal <= 2.0 { "met" } else { "NOT met" }
    );
    if !failovers.is_empty() {
        let lease = cfg.lease_ms as f64;
        let worst = failovers.iter().copied().fold(0.0, f64::max);
        let list: Vec<String> = failovers.iter().map(|f| format!("{f:.0}")).collect();
        println!(
            "failover (kill -9 -> first message accepted by the new owner): {} ms; worst / lease TTL ({lease:.0} ms) = {:.2} (goal <= 2: {})",
            list.join(", "),
            worst / lease,
            if worst <= 2.0 * lease {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
