//! HTTP load benchmark: real PocketBase against Syncbase, same machine, same load.
//!
//! Starts each server in its own temp dir on a free 127.0.0.1 port (one after the other, never
//! both under load at once), creates the same collections on both, then drives each with
//! `BENCH_CLIENTS` concurrent keep-alive HTTP/1.1 clients for `BENCH_SECS` per phase:
//!
//! - `create`: `POST /api/collections/bench_writes/records`
//! - `getOne`: `GET /api/collections/bench_reads/records/{random seeded id}`
//! - `list`:   `GET .../bench_reads/records?filter=(n>=X && active=true)&sort=-n&perPage=30`
//!
//! The read phases run against `bench_reads`, seeded (untimed) with exactly `BENCH_ROWS` rows, so
//! both servers answer reads over the same data however fast they created rows. Collection rules
//! are `""`, so requests carry no token and the load measures the record path. It prints
//! requests/s, p50/p99 latency and peak RSS (VmHWM) per server, side by side with the ratio
//! Syncbase/PocketBase.
//!
//! Env: `BENCH_SECS` (5), `BENCH_CLIENTS` (16), `BENCH_ROWS` (10000), `BENCH_CLIENT_THREADS` (1),
//! `POCKETBASE_BIN` (`pocketbase`), `SYNCBASE_BIN` (the binary cargo built; set it to
//! `pocketbase` to run PocketBase against itself and check the harness).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinSet;

use support::{Conn, Server, superuser_token};

/// The `n` field takes values in `0..N_RANGE`; list filters pick `X` from the same range.
const N_RANGE: u64 = 100_000;

struct Config {
    secs: Duration,
    clients: usize,
    rows: usize,
    rounds: usize,
    client_threads: usize,
    pocketbase_bin: PathBuf,
    syncbase_bin: PathBuf,
}

impl Config {
    fn from_env() -> Result<Self> {
        fn num(name: &str, default: u64) -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .with_context(|| format!("{name}={v} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let secs = std::env::var("BENCH_SECS").unwrap_or_else(|_| "5".into());
        let secs: f64 = secs.parse().with_context(|| format!("BENCH_SECS={secs}"))?;
        let clients = usize::try_from(num("BENCH_CLIENTS", 16)?)?;
        let client_threads = usize::try_from(num("BENCH_CLIENT_THREADS", 1)?)?;
        ensure!(
            secs > 0.0 && clients > 0 && client_threads > 0,
            "BENCH_* must be positive"
        );
        Ok(Self {
            secs: Duration::from_secs_f64(secs),
            clients,
            rows: usize::try_from(num("BENCH_ROWS", 10_000)?)?.max(1),
            rounds: usize::try_from(num("BENCH_ROUNDS", 1)?)?.max(1),
            client_threads,
            pocketbase_bin: std::env::var_os("POCKETBASE_BIN")
                .map_or_else(|| PathBuf::from("pocketbase"), PathBuf::from),
            syncbase_bin: std::env::var_os("SYNCBASE_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
                PathBuf::from,
            ),
        })
    }
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.client_threads)
        .enable_all()
        .build()?;
    println!(
        "HTTP bench: {} clients, {:.1} s per phase x {} round(s), {} seeded rows, \
         {} client thread(s), {} CPUs",
        config.clients,
        config.secs.as_secs_f64(),
        config.rounds,
        config.rows,
        config.client_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    rt.block_on(async {
        let mut pb = Subject::prepare("PocketBase", &config.pocketbase_bin, &config).await?;
        let mut sb = Subject::prepare("Syncbase", &config.syncbase_bin, &config).await?;
        // Both servers stay up (idle when not under load) and take turns phase by phase, the
        // first mover alternating by round, so drifting background load on a shared machine
        // hits both alike.
        for round in 0..config.rounds {
            for phase in Phase::ALL {
                let order = if round % 2 == 0 {
                    [&mut pb, &mut sb]
                } else {
                    [&mut sb, &mut pb]
                };
                for subject in order {
                    subject.run(phase, round, &config).await?;
                }
            }
        }
        print_table(&pb, &sb, &config)?;
        pb.server.stop().await;
        sb.server.stop().await;
        anyhow::Ok(())
    })
}

#[derive(Clone, Copy)]
enum Phase {
    Create,
    GetOne,
    List,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Create, Phase::GetOne, Phase::List];

    /// The target for Syncbase's throughput as a multiple of PocketBase's.
    fn goal(self) -> f64 {
        match self {
            Phase::Create => 3.0,
            Phase::GetOne | Phase::List => 2.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::GetOne => "getOne",
            Phase::List => "list (filter+sort)",
        }
    }

    /// The next request a client sends in this phase.
    fn request(self, ids: &[String], rng: &mut StdRng) -> (Method, String, Option<Bytes>) {
        match self {
            Phase::Create => create_request(rng),
            Phase::GetOne => {
                let id = &ids[rng.random_range(0..ids.len())];
                (
                    Method::GET,
                    format!("/api/collections/bench_reads/records/{id}"),
                    None,
                )
            }
            Phase::List => (Method::GET, list_path(rng.random_range(0..N_RANGE)), None),
        }
    }
}

/// One server under test, set up and seeded, and what it achieved so far.
struct Subject {
    label: &'static str,
    bin: PathBuf,
    server: Server,
    ids: Arc<Vec<String>>,
    seed_rate: f64,
    /// Why the read paths' answers looked wrong, if they did.
    sanity: Option<String>,
    stats: [PhaseStats; 3],
}

impl Subject {
    async fn prepare(label: &'static str, bin: &Path, config: &Config) -> Result<Self> {
        let server = Server::start(bin, "sb-bench-")
            .await
            .with_context(|| format!("starting {label}"))?;
        println!(
            "{label}: {} on {} (pid {})",
            bin.display(),
            server.addr,
            server.pid
        );
        let token = superuser_token(server.addr).await?;
        for name in ["bench_reads", "bench_writes"] {
            create_collection(server.addr, &token, name).await?;
        }
        let started = Instant::now();
        let ids = seed(server.addr, config).await?;
        let seed_rate = ids.len() as f64 / started.elapsed().as_secs_f64();
        println!("{label}: seeded {} rows at {seed_rate:.0}/s", ids.len());
        // A broken read path is reported, not fatal, so the other phases still get measured.
        let sanity = sanity_check(server.addr, &ids)
            .await
            .err()
            .map(|e| format!("{e:#}"));
        if let Some(e) = &sanity {
            println!("{label}: WARNING: read paths answer wrongly: {e}");
        }
        Ok(Self {
            sanity,
            label,
            bin: bin.to_owned(),
            server,
            ids: Arc::new(ids),
            seed_rate,
            stats: Default::default(),
        })
    }

    async fn run(&mut self, phase: Phase, round: usize, config: &Config) -> Result<()> {
        let stats = run_phase(self.server.addr, config, phase, round, self.ids.clone()).await?;
        println!(
            "{:<10} {:<18} round {round}: {}",
            self.label,
            phase.name(),
            stats.summary()
        );
        self.stats[phase as usize].merge(stats);
        Ok(())
    }
}

fn create_request(rng: &mut StdRng) -> (Method, String, Option<Bytes>) {
    let n = rng.random_range(0..N_RANGE);
    let body = json!({
        "title": format!("record {n}"),
        "n": n,
        "active": rng.random::<bool>(),
        "note": "the quick brown fox jumps over the lazy dog",
    });
    let path = "/api/collections/bench_writes/records".to_owned();
    (Method::POST, path, Some(Bytes::from(body.to_string())))
}

fn list_path(x: u64) -> String {
    let filter = format!("(n>={x} && active=true)");
    let filter: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/api/collections/bench_reads/records?filter={filter}&sort=-n&perPage=30")
}

// ---------------------------------------------------------------------------------------------
// Setup through the API

async fn create_collection(addr: SocketAddr, token: &str, name: &str) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    let body = json!({
        "name": name,
        "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text", "required": true},
            {"name": "n", "type": "number"},
            {"name": "active", "type": "bool"},
            {"name": "note", "type": "text"},
            {"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
        ],
        "indexes": [format!("CREATE INDEX idx_{name}_n ON {name} (n)")],
    });
    conn.json(Method::POST, "/api/collections", Some(token), Some(body))
        .await?;
    Ok(())
}

/// Creates exactly `config.rows` rows in `bench_reads` (the same rows on every server) and
/// returns their ids.
async fn seed(addr: SocketAddr, config: &Config) -> Result<Vec<String>> {
    let mut tasks = JoinSet::new();
    for client in 0..config.clients {
        let (rows, clients) = (config.rows, config.clients);
        tasks.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut ids = Vec::new();
            for i in (client..rows).step_by(clients) {
                let n = (i as u64).wrapping_mul(48_271) % N_RANGE;
                let body = json!({
                    "title": format!("seed {i}"), "n": n, "active": i % 2 == 0, "note": "seed",
                });
                let path = "/api/collections/bench_reads/records";
                let rec = conn.json(Method::POST, path, None, Some(body)).await?;
                ids.push(rec["id"].as_str().context("record without id")?.to_owned());
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(config.rows);
    while let Some(res) = tasks.join_next().await {
        ids.extend(res??);
    }
    Ok(ids)
}

/// A fast wrong answer must not count as speed: check the read paths return the right thing.
async fn sanity_check(addr: SocketAddr, ids: &[String]) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    let path = format!("/api/collections/bench_reads/records/{}", ids[0]);
    let rec = conn.json(Method::GET, &path, None, None).await?;
    ensure!(rec["id"] == ids[0].as_str(), "getOne returned {rec}");
    let list = conn
        .json(Method::GET, &list_path(N_RANGE / 2), None, None)
        .await?;
    let items = list["items"].as_array().context("list without items")?;
    ensure!(
        list["perPage"] == 30 && items.len() == 30,
        "list returned {list}"
    );
    let ns: Vec<u64> = items.iter().filter_map(|r| r["n"].as_u64()).collect();
    ensure!(
        ns.len() == 30 && ns.windows(2).all(|w| w[0] >= w[1]) && ns[29] >= N_RANGE / 2,
        "list not filtered and sorted by -n: {ns:?}"
    );
    ensure!(
        items.iter().all(|r| r["active"] == true),
        "list returned inactive rows"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Load

#[derive(Default)]
struct PhaseStats {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Sorted latencies of the successful requests, in microseconds.
    latencies_us: Vec<u32>,
}

impl PhaseStats {
    /// Adds another run's counts, durations and latencies to this one.
    fn merge(&mut self, other: PhaseStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[idx]) / 1000.0
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{:>9.0}/s  p50 {:.2} ms  p99 {:.2} ms  ({} ok",
            self.rate(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.ok
        );
        if self.errors > 0 {
            s += &format!(
                ", {} ERRORS, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("")
            );
        }
        s + ")"
    }
}

/// Runs `config.clients` keep-alive clients for `config.secs`, each sending `phase` requests
/// back to back, and merges their results. Client `c` in round `r` draws the same random
/// requests on every server.
async fn run_phase(
    addr: SocketAddr,
    config: &Config,
    phase: Phase,
    round: usize,
    ids: Arc<Vec<String>>,
) -> Result<PhaseStats> {
    let started = Instant::now();
    let deadline = started + config.secs;
    let mut tasks = JoinSet::new();
    for client in 0..config.clients {
        let ids = ids.clone();
        tasks.spawn(async move {
            let seed = (round * 10_000 + phase as usize * 1_000 + client) as u64;
            let mut rng = StdRng::seed_from_u64(seed);
            let mut conn = Conn::connect(addr).await?;
            let mut stats = PhaseStats::default();
            while Instant::now() < deadline {
                let (method, path, body) = phase.request(&ids, &mut rng);
                let t0 = Instant::now();
                let (status, body) = conn.send(method, &path, None, body).await?;
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                if status == StatusCode::OK {
                    stats.ok += 1;
                    stats.latencies_us.push(us);
                } else {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| {
                        format!("{status} {}", String::from_utf8_lossy(&body))
                    });
                }
            }
            anyhow::Ok(stats)
        });
    }
    let mut total = PhaseStats::default();
    while let Some(res) = tasks.join_next().await {
        total.merge(res??);
    }
    // Clients run concurrently: the phase lasted as long as the slowest, not their sum.
    total.elapsed = started.elapsed();
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Output

fn print_table(pb: &Subject, sb: &Subject, config: &Config) -> Result<()> {
    println!(
        "\nPocketBase: {}\nSyncbase:   {}",
        pb.bin.display(),
        sb.bin.display()
    );
    println!(
        "{} keep-alive clients, {:.1} s per phase x {} round(s), reads over {} rows\n",
        config.clients,
        config.secs.as_secs_f64(),
        config.rounds,
        config.rows
    );
    println!(
        "{:<26}{:>14}{:>14}{:>12}{:>8}",
        "metric", "PocketBase", "Syncbase", "SB/PB", "goal"
    );
    let row = |name: &str, a: f64, b: f64| {
        println!("{name:<26}{a:>14.2}{b:>14.2}{:>11.2}x", b / a);
    };
    for phase in Phase::ALL {
        let (p, s) = (&pb.stats[phase as usize], &sb.stats[phase as usize]);
        let name = phase.name();
        let goal = phase.goal();
        let met = if s.rate() / p.rate() >= goal {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "{:<26}{:>14.2}{:>14.2}{:>11.2}x{:>5.0}x {met}",
            format!("{name} req/s"),
            p.rate(),
            s.rate(),
            s.rate() / p.rate(),
            goal
        );
        row(
            &format!("{name} p50 ms"),
            p.percentile_ms(0.50),
            s.percentile_ms(0.50),
        );
        row(
            &format!("{name} p99 ms"),
            p.percentile_ms(0.99),
            s.percentile_ms(0.99),
        );
    }
    row("seed creates/s (untimed)", pb.seed_rate, sb.seed_rate);
    let (pb_rss, sb_rss) = (pb.server.peak_rss_kib()?, sb.server.peak_rss_kib()?);
    row(
        "peak RSS MiB",
        pb_rss as f64 / 1024.0,
        sb_rss as f64 / 1024.0,
    );
    let errors: usize = pb.stats.iter().chain(&sb.stats).map(|s| s.errors).sum();
    if errors > 0 {
        println!("\nWARNING: {errors} non-200 responses, excluded from the rates; see above");
    }
    for subject in [pb, sb] {
        if let Some(e) = &subject.sanity {
            println!(
                "\nWARNING: {} read paths answer wrongly: {e}",
                subject.label
            );
        }
    }
    println!("\nreq/s: higher is better; latency and RSS: lower is better.");
    Ok(())
}
