//! Realtime fan-out benchmark: real PocketBase against Syncbase, same machine, same load.
//!
//! For each server in turn (PocketBase first, then Syncbase; never both at once) it starts the
//! server in a temp dir on a free 127.0.0.1 port, creates the collection `bench_rt` (all rules
//! `""`, so neither subscribers nor writers carry a token), and opens `SUBSCRIBERS` raw SSE
//! clients on `GET /api/realtime`. Each reads its client id from `PB_CONNECT` and subscribes to
//! `bench_rt/*` with `POST /api/realtime`. Then `WRITERS` keep-alive clients perform `UPDATES`
//! record updates between them (`PATCH .../records/{id} {"n": i}`, `i` = the update's index),
//! and every subscriber records when it received the event for update `i`.
//!
//! Figures per server, printed side by side with the ratio Syncbase/PocketBase:
//! - delivery latency p50/p99: from the update's HTTP response (its commit) to the LAST
//!   subscriber receiving that event, over the updates every subscriber received;
//! - delivered events/s: all deliveries / (last delivery - first update sent);
//! - peak RSS of the server process (VmHWM from /proc/PID/status).
//!
//! The clients are raw hyper HTTP/1.1 connections on one runtime with `CLIENT_THREADS` threads,
//! and read only what they need from each event (its name and the `"n":` value), so the client
//! costs the same, and little, against both servers.
//!
//! PocketBase answers an update only after handing its event to every subscriber, so its writers
//! are slowed to its fan-out rate; a server that answers first and fans out afterwards lets the
//! writers run ahead, and its latency then includes the backlog. `WRITE_RATE` (updates/s, paced
//! open-loop) offers both servers the same load instead, so latency measures fan-out alone.
//! The table also shows each side's CPU seconds, since server and client share the machine.
//!
//! Env: `SUBSCRIBERS` (1000), `UPDATES` (1000), `WRITERS` (4), `WRITE_RATE` (0 = unpaced),
//! `CLIENT_THREADS` (1),
//! `SETUP_CONCURRENCY` (64 subscribers connecting at once), `DEADLINE_SECS` (120, per phase),
//! `POCKETBASE_BIN` (`pocketbase`), `SYNCBASE_BIN` (the binary cargo built; set it to
//! `pocketbase` to check the harness with PocketBase on both sides). The process needs about
//! 2 x SUBSCRIBERS file descriptors (`ulimit -n`), as does each server.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use support::{Conn, Server, cpu_seconds, superuser_token};

const COLLECTION: &str = "bench_rt";
const TOPIC: &str = "bench_rt/*";

struct Config {
    subscribers: usize,
    updates: usize,
    writers: usize,
    /// Updates per second offered in total (0: each writer sends its next update on the answer).
    write_rate: usize,
    client_threads: usize,
    setup_concurrency: usize,
    deadline: Duration,
    pocketbase_bin: PathBuf,
    syncbase_bin: PathBuf,
}

impl Config {
    fn from_env() -> Result<Self> {
        fn num(name: &str, default: usize) -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .with_context(|| format!("{name}={v} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let config = Self {
            subscribers: num("SUBSCRIBERS", 1000)?,
            updates: num("UPDATES", 1000)?,
            writers: num("WRITERS", 4)?,
            write_rate: num("WRITE_RATE", 0)?,
            client_threads: num("CLIENT_THREADS", 1)?,
            setup_concurrency: num("SETUP_CONCURRENCY", 64)?,
            deadline: Duration::from_secs(num("DEADLINE_SECS", 120)? as u64),
            pocketbase_bin: std::env::var_os("POCKETBASE_BIN")
                .map_or_else(|| PathBuf::from("pocketbase"), PathBuf::from),
            syncbase_bin: std::env::var_os("SYNCBASE_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
                PathBuf::from,
            ),
        };
        ensure!(
            config.subscribers > 0
                && config.updates > 0
                && config.writers > 0
                && config.client_threads > 0
                && config.setup_concurrency > 0
                && !config.deadline.is_zero(),
            "SUBSCRIBERS, UPDATES, WRITERS, CLIENT_THREADS, SETUP_CONCURRENCY and \
             DEADLINE_SECS must be positive"
        );
        Ok(config)
    }
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    check_fd_limit(config.subscribers)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.client_threads)
        .enable_all()
        .build()?;
    println!(
        "Realtime bench: {} SSE subscribers on {TOPIC}, {} updates by {} writers ({}), \
         {} client thread(s), {} CPUs",
        config.subscribers,
        config.updates,
        config.writers,
        pacing(&config),
        config.client_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    rt.block_on(async {
        let pb = run_subject("PocketBase", &config.pocketbase_bin, &config).await?;
        let sb = run_subject("Syncbase", &config.syncbase_bin, &config).await?;
        print_table(&pb, &sb, &config);
        anyhow::Ok(())
    })
}

/// Each subscriber holds one socket (plus one briefly to subscribe); fail early and clearly
/// rather than with EMFILE half-way through.
fn check_fd_limit(subscribers: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        let need = subscribers + subscribers / 4 + 256;
        ensure!(
            soft >= need,
            "open-file limit {soft} is too low for {subscribers} subscribers (need ~{need}): \
             raise it with `ulimit -n` (scripts/bench-realtime does)"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One server's run

/// What one server achieved.
struct Outcome {
    label: &'static str,
    bin: PathBuf,
    setup: Duration,
    /// Time from the first update sent to the last one acknowledged.
    write_time: Duration,
    write_errors: usize,
    first_write_error: Option<String>,
    delivered: u64,
    /// Time from the first update sent to the last delivery.
    delivery_time: Duration,
    /// Commit-to-last-subscriber latencies (µs) of the fully delivered updates, sorted.
    latencies_us: Vec<u64>,
    /// Updates some subscriber never received (within the deadline).
    incomplete: usize,
    /// Deliveries that reached the last subscriber before the update's response did.
    before_response: usize,
    /// Subscribers whose stream the server ended during the run (e.g. dropped as too slow).
    closed: usize,
    unparsed: u64,
    peak_rss_kib: u64,
    /// CPU seconds the server and this bench process spent from subscriber setup to the end.
    server_cpu: f64,
    client_cpu: f64,
}

impl Outcome {
    fn events_per_sec(&self) -> f64 {
        self.delivered as f64 / self.delivery_time.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }
}

async fn run_subject(label: &'static str, bin: &Path, config: &Config) -> Result<Outcome> {
    let server = Server::start(bin, "sb-bench-rt-")
        .await
        .with_context(|| format!("starting {label}"))?;
    println!(
        "{label}: {} on {} (pid {})",
        bin.display(),
        server.addr,
        server.pid
    );
    let token = superuser_token(server.addr).await?;
    create_collection(server.addr, &token).await?;
    let records = create_records(server.addr, config.writers).await?;

    let tally = Arc::new(Tally::new(config.updates, config.subscribers));
    let (server_cpu0, client_cpu0) = (cpu_seconds(server.pid)?, cpu_seconds(std::process::id())?);
    let started = Instant::now();
    let mut readers = open_subscribers(server.addr, config, &tally).await?;
    let setup = started.elapsed();
    println!(
        "{label}: {} subscribers connected and subscribed in {:.2} s",
        config.subscribers,
        setup.as_secs_f64()
    );

    let writes = run_updates(server.addr, config, &records, &tally).await?;
    let all_delivered = tokio::time::timeout(config.deadline, tally.all_delivered()).await;
    if all_delivered.is_err() {
        println!(
            "{label}: WARNING: not every event delivered within {:?} ({} of {})",
            config.deadline,
            tally.total.load(Ordering::Relaxed),
            tally.expected
        );
    }
    let peak_rss_kib = server.peak_rss_kib()?;
    let server_cpu = cpu_seconds(server.pid)? - server_cpu0;
    let client_cpu = cpu_seconds(std::process::id())? - client_cpu0;
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    server.stop().await;

    let mut outcome = tally.outcome(label, bin, setup, writes, peak_rss_kib);
    (outcome.server_cpu, outcome.client_cpu) = (server_cpu, client_cpu);
    println!(
        "{label}: {:.0} events/s delivered, latency p50 {:.2} ms p99 {:.2} ms, {} updates \
         in {:.2} s, peak RSS {:.1} MiB",
        outcome.events_per_sec(),
        outcome.percentile_ms(0.50),
        outcome.percentile_ms(0.99),
        config.updates,
        outcome.write_time.as_secs_f64(),
        outcome.peak_rss_kib as f64 / 1024.0,
    );
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Deliveries

/// Shared by every subscriber: when each update reached its last subscriber, and how many had it.
struct Tally {
    epoch: Instant,
    expected: u64,
    subscribers: u32,
    /// Per update index: the latest delivery, in ns since `epoch`.
    last_ns: Vec<AtomicU64>,
    /// Per update index: how many subscribers received it.
    counts: Vec<AtomicU32>,
    /// Per update index: when its HTTP response arrived, in ns since `epoch` (0 = not yet/failed).
    committed_ns: Vec<AtomicU64>,
    /// When the first update was sent, in ns since `epoch`.
    first_sent_ns: AtomicU64,
    total: AtomicU64,
    unparsed: AtomicU64,
    closed: AtomicUsize,
    done: Notify,
}

/// What the writers did.
struct Writes {
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn new(updates: usize, subscribers: usize) -> Self {
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            epoch: Instant::now(),
            expected: (updates * subscribers) as u64,
            subscribers: u32::try_from(subscribers).unwrap_or(u32::MAX),
            last_ns: zeros(updates),
            counts: (0..updates).map(|_| AtomicU32::new(0)).collect(),
            committed_ns: zeros(updates),
            first_sent_ns: AtomicU64::new(0),
            total: AtomicU64::new(0),
            unparsed: AtomicU64::new(0),
            closed: AtomicUsize::new(0),
            done: Notify::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// One subscriber received the event whose data is `data`.
    fn delivered(&self, data: &[u8]) {
        let now = self.now_ns();
        let Some(i) = update_index(data).filter(|&i| i < self.counts.len()) else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.last_ns[i].fetch_max(now, Ordering::Relaxed);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        if self.total.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.done.notify_one();
        }
    }

    async fn all_delivered(&self) {
        let notified = self.done.notified();
        if self.total.load(Ordering::Acquire) >= self.expected {
            return;
        }
        notified.await;
    }

    fn outcome(
        &self,
        label: &'static str,
        bin: &Path,
        setup: Duration,
        writes: Writes,
        peak_rss_kib: u64,
    ) -> Outcome {
        let mut latencies_us = Vec::with_capacity(self.counts.len());
        let (mut incomplete, mut before_response, mut last_delivery) = (0, 0, 0);
        for i in 0..self.counts.len() {
            let last = self.last_ns[i].load(Ordering::Relaxed);
            last_delivery = last_delivery.max(last);
            let committed = self.committed_ns[i].load(Ordering::Relaxed);
            if self.counts[i].load(Ordering::Relaxed) < self.subscribers || committed == 0 {
                incomplete += 1;
                continue;
            }
            if last < committed {
                before_response += 1;
            }
            latencies_us.push(last.saturating_sub(committed) / 1000);
        }
        latencies_us.sort_unstable();
        let first_sent = self.first_sent_ns.load(Ordering::Relaxed);
        Outcome {
            label,
            bin: bin.to_owned(),
            setup,
            write_time: writes.elapsed,
            write_errors: writes.errors,
            first_write_error: writes.first_error,
            delivered: self.total.load(Ordering::Relaxed),
            delivery_time: Duration::from_nanos(last_delivery.saturating_sub(first_sent)),
            latencies_us,
            incomplete,
            before_response,
            closed: self.closed.load(Ordering::Relaxed),
            unparsed: self.unparsed.load(Ordering::Relaxed),
            peak_rss_kib,
            server_cpu: 0.0,
            client_cpu: 0.0,
        }
    }
}

/// The update index carried as `"n":<digits>` in an event's record JSON. A byte scan, not a JSON
/// parse, to keep the client's cost per event small; the other fields are fixed strings.
fn update_index(data: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"n\":";
    let at = data.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &data[at..];
    let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Opens every subscriber (at most `setup_concurrency` connecting at once) and returns once each
/// has its subscription acknowledged; their reader tasks keep running in the returned set.
async fn open_subscribers(
    addr: SocketAddr,
    config: &Config,
    tally: &Arc<Tally>,
) -> Result<JoinSet<()>> {
    let gate = Arc::new(Semaphore::new(config.setup_concurrency));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(config.subscribers);
    let mut readers = JoinSet::new();
    for _ in 0..config.subscribers {
        let (gate, ready_tx, tally) = (gate.clone(), ready_tx.clone(), tally.clone());
        readers.spawn(async move {
            let permit = gate.acquire_owned().await;
            let connected = Subscriber::connect(addr).await;
            drop(permit);
            match connected {
                Ok(sub) => {
                    let _ = ready_tx.send(Ok(())).await;
                    sub.read_events(&tally).await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e)).await;
                }
            }
        });
    }
    drop(ready_tx);
    let deadline = tokio::time::Instant::now() + config.deadline;
    for n in 0..config.subscribers {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e.context(format!("subscriber {n}"))),
            Ok(None) => bail!("subscriber tasks ended early"),
            Err(_) => bail!(
                "only {n} of {} subscribers ready within {:?}",
                config.subscribers,
                config.deadline
            ),
        }
    }
    Ok(readers)
}

/// One SSE client, connected and subscribed to `TOPIC`.
struct Subscriber {
    body: hyper::body::Incoming,
    parser: SseParser,
    driver: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Opens `GET /api/realtime`, reads the client id from `PB_CONNECT` and subscribes.
    async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get("/api/realtime")
            .header("host", addr.to_string())
            .header("accept", "text/event-stream")
            .body(Empty::<Bytes>::new())?;
        let res = sender.send_request(req).await?;
        ensure!(
            res.status() == StatusCode::OK,
            "GET /api/realtime -> {}",
            res.status()
        );
        let mut sub = Self {
            body: res.into_body(),
            parser: SseParser::default(),
            driver,
        };
        let client_id = loop {
            if let Some(ev) = sub.parser.next_event() {
                if ev.event.as_ref() == b"PB_CONNECT" {
                    break String::from_utf8(ev.id.to_vec())?;
                }
                continue;
            }
            let frame = sub
                .body
                .frame()
                .await
                .context("stream ended before PB_CONNECT")??;
            if let Ok(data) = frame.into_data() {
                sub.parser.push(&data);
            }
        };
        ensure!(!client_id.is_empty(), "PB_CONNECT without an id");
        let mut conn = Conn::connect(addr).await?;
        let body = json!({"clientId": client_id, "subscriptions": [TOPIC]});
        let body = Bytes::from(body.to_string());
        let (status, answer) = conn
            .send(Method::POST, "/api/realtime", None, Some(body))
            .await?;
        ensure!(
            status == StatusCode::NO_CONTENT,
            "POST /api/realtime -> {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        Ok(sub)
    }

    /// Counts every `TOPIC` event until the server ends the stream.
    async fn read_events(mut self, tally: &Tally) {
        loop {
            while let Some(ev) = self.parser.next_event() {
                if ev.event.as_ref() == TOPIC.as_bytes() {
                    tally.delivered(&ev.data);
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data);
                    }
                }
                _ => break,
            }
        }
        tally.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One parsed SSE event (only the fields the bench reads).
struct SseEvent {
    id: Bytes,
    event: Bytes,
    data: Bytes,
}

/// Splits an SSE byte stream into events (blank-line separated; `\n` or `\r\n` line ends).
#[derive(Default)]
struct SseParser {
    buf: BytesMut,
}

impl SseParser {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let (end, sep) = find_blank_line(&self.buf)?;
            let block = self.buf.split_to(end).freeze();
            self.buf.advance(sep);
            let mut ev = SseEvent {
                id: Bytes::new(),
                event: Bytes::new(),
                data: Bytes::new(),
            };
            for line in block.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = block.slice_ref(value);
                match &line[..colon] {
                    b"id" => ev.id = value,
                    b"event" => ev.event = value,
                    b"data" => ev.data = value,
                    _ => {} // comments (keep-alives) and retry
                }
            }
            if !ev.event.is_empty() || !ev.data.is_empty() {
                return Some(ev);
            }
        }
    }
}

/// The end of the first event block and the length of the blank-line separator after it.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let nn = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let rnrn = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (nn, rnrn) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

// ---------------------------------------------------------------------------------------------
// Updates

/// `config.writers` keep-alive clients share the update indexes `0..config.updates`; writer `w`
/// updates record `records[w]` with `{"n": i}`.
async fn run_updates(
    addr: SocketAddr,
    config: &Config,
    records: &[String],
    tally: &Arc<Tally>,
) -> Result<Writes> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    let mut conns = Vec::with_capacity(config.writers);
    for _ in 0..config.writers {
        conns.push(Conn::connect(addr).await?);
    }
    tally.first_sent_ns.store(tally.now_ns(), Ordering::Relaxed);
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let interval =
        (config.write_rate > 0).then(|| Duration::from_secs(1) / config.write_rate as u32);
    for (mut conn, id) in conns.into_iter().zip(records.iter().cloned()) {
        let (next, tally, updates) = (next.clone(), tally.clone(), config.updates);
        writers.spawn(async move {
            let path = format!("/api/collections/{COLLECTION}/records/{id}");
            let (mut errors, mut first_error) = (0, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= updates {
                    break;
                }
                // Pacing the offered load (a schedule, not synchronisation).
                if let Some(interval) = interval {
                    tokio::time::sleep_until(start + interval * i as u32).await;
                }
                let body = Bytes::from(json!({"n": i}).to_string());
                let (status, answer) = conn.send(Method::PATCH, &path, None, Some(body)).await?;
                if status == StatusCode::OK {
                    tally.committed_ns[i].store(tally.now_ns(), Ordering::Relaxed);
                } else {
                    errors += 1;
                    first_error.get_or_insert_with(|| {
                        format!("{status} {}", String::from_utf8_lossy(&answer))
                    });
                }
            }
            anyhow::Ok((errors, first_error))
        });
    }
    let mut writes = Writes {
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    while let Some(res) = writers.join_next().await {
        let (errors, first_error) = res??;
        writes.errors += errors;
        if writes.first_error.is_none() {
            writes.first_error = first_error;
        }
    }
    writes.elapsed = started.elapsed();
    Ok(writes)
}

fn pacing(config: &Config) -> String {
    match config.write_rate {
        0 => "unpaced".to_owned(),
        r => format!("paced at {r} updates/s"),
    }
}

// ---------------------------------------------------------------------------------------------
// Setup through the API

async fn create_collection(addr: SocketAddr, token: &str) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    let body = json!({
        "name": COLLECTION,
        "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "note", "type": "text"},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
        ],
    });
    conn.json(Method::POST, "/api/collections", Some(token), Some(body))
        .await?;
    Ok(())
}

/// One record per writer, so writers never contend for a row.
async fn create_records(addr: SocketAddr, writers: usize) -> Result<Vec<String>> {
    let mut conn = Conn::connect(addr).await?;
    let mut ids = Vec::with_capacity(writers);
    for w in 0..writers {
        let body = json!({
            "title": format!("writer {w}"),
            "n": 0,
            "note": "the quick brown fox jumps over the lazy dog",
        });
        let path = format!("/api/collections/{COLLECTION}/records");
        let rec = conn.json(Method::POST, &path, None, Some(body)).await?;
        ids.push(rec["id"].as_str().context("record without id")?.to_owned());
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// Output

fn print_table(pb: &Outcome, sb: &Outcome, config: &Config) {
    println!(
        "\nPocketBase: {}\nSyncbase:   {}",
        pb.bin.display(),
        sb.bin.display()
    );
    println!(
        "{} SSE subscribers on {TOPIC}, {} updates by {} writers ({}), {} client thread(s)\n",
        config.subscribers,
        config.updates,
        config.writers,
        pacing(config),
        config.client_threads
    );
    println!(
        "{:<34}{:>14}{:>14}{:>10}",
        "metric", "PocketBase", "Syncbase", "SB/PB"
    );
    let row = |name: &str, a: f64, b: f64| {
        println!("{name:<34}{a:>14.2}{b:>14.2}{:>9.2}x", b / a);
    };
    row(
        "delivered events/s",
        pb.events_per_sec(),
        sb.events_per_sec(),
    );
    row(
        "latency p50 ms (commit->last sub)",
        pb.percentile_ms(0.50),
        sb.percentile_ms(0.50),
    );
    row(
        "latency p99 ms (commit->last sub)",
        pb.percentile_ms(0.99),
        sb.percentile_ms(0.99),
    );
    row(
        "peak RSS MiB",
        pb.peak_rss_kib as f64 / 1024.0,
        sb.peak_rss_kib as f64 / 1024.0,
    );
    row(
        "updates/s acknowledged",
        config.updates as f64 / pb.write_time.as_secs_f64(),
        config.updates as f64 / sb.write_time.as_secs_f64(),
    );
    row("server CPU s", pb.server_cpu, sb.server_cpu);
    row("bench client CPU s", pb.client_cpu, sb.client_cpu);
    row(
        "subscriber setup s",
        pb.setup.as_secs_f64(),
        sb.setup.as_secs_f64(),
    );
    let count = |name: &str, a: f64, b: f64| println!("{name:<34}{a:>14}{b:>14}");
    count("deliveries", pb.delivered as f64, sb.delivered as f64);
    count(
        "updates not seen by every sub",
        pb.incomplete as f64,
        sb.incomplete as f64,
    );
    count(
        "last delivery before response",
        pb.before_response as f64,
        sb.before_response as f64,
    );
    count(
        "subscribers closed by the server",
        pb.closed as f64,
        sb.closed as f64,
    );

    let rate = sb.events_per_sec() / pb.events_per_sec();
    let p99_ok = sb.percentile_ms(0.99) <= pb.percentile_ms(0.99);
    let met = rate >= 2.0 && p99_ok && sb.incomplete == 0;
    println!(
        "\ngoal (>= 2x PocketBase's delivered events/s at equal or lower p99, every event \
         delivered): {} ({rate:.2}x, p99 {})",
        if met { "met" } else { "MISSED" },
        if p99_ok { "not higher" } else { "HIGHER" }
    );
    for o in [pb, sb] {
        let expected = (config.updates * config.subscribers) as u64;
        if o.delivered < expected {
            println!(
                "WARNING: {}: {} of {expected} deliveries arrived",
                o.label, o.delivered
            );
        }
        if o.write_errors > 0 {
            println!(
                "WARNING: {}: {} failed updates, first: {}",
                o.label,
                o.write_errors,
                o.first_write_error.as_deref().unwrap_or("")
            );
        }
        if o.unparsed > 0 {
            println!(
                "WARNING: {}: {} events without a readable \"n\"",
                o.label, o.unparsed
            );
        }
    }
    println!("\nevents/s: higher is better; latency and RSS: lower is better.");
}
