//! Request logging's cost on the write path: create throughput with logging on against off,
//! on one Syncbase server, in one run.
//!
//! Starts the release `syncbase` in a temp dir, creates `bench_writes`, then alternates
//! phases of `BENCH_SECS` with `BENCH_CLIENTS` concurrent keep-alive clients doing
//! `POST /api/collections/bench_writes/records`: logging off (`logs.maxDays = 0`), then on
//! (`logs.maxDays = 5`, every request logged), `BENCH_ROUNDS` times, the order flipping every
//! round so drifting background load hits both alike. Prints each phase, then the creates/s,
//! p50/p99 latency and server CPU time per create of each mode over all rounds, the on/off
//! ratios (throughput also as the median of each round's own ratio, which drifting load
//! disturbs least), and checks that every request made while logging was on is in
//! `/api/logs` (none dropped, none lost). CPU per create (user + system time of the server
//! process, `/proc`) is the figure a loaded machine blurs least, and the log writer's own
//! thread (`sqlite-logs`) is timed apart: what it spends per entry is the cost logging moves
//! off the request path; the rest of the difference is the middleware on the request path.
//!
//! Env: `BENCH_SECS` (5), `BENCH_CLIENTS` (16), `BENCH_ROUNDS` (3), `SYNCBASE_BIN` (the binary
//! cargo built for the bench).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::task::JoinSet;

use support::{Conn, Server, cpu_seconds, superuser_token};

struct Config {
    secs: Duration,
    clients: usize,
    rounds: usize,
    bin: PathBuf,
}

fn num(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

#[derive(Default)]
struct Stats {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// Server CPU seconds (user + system) spent during the phase.
    cpu: f64,
    /// Of which the log writer thread's.
    log_cpu: f64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.log_cpu += other.log_cpu;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per successful create.
    fn cpu_us(&self) -> f64 {
        self.cpu * 1e6 / self.ok as f64
    }

    /// The log thread's CPU microseconds per successful create.
    fn log_cpu_us(&self) -> f64 {
        self.log_cpu * 1e6 / self.ok as f64
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

fn main() -> Result<()> {
    let config = Config {
        secs: Duration::from_secs_f64(
            std::env::var("BENCH_SECS")
                .unwrap_or_else(|_| "5".into())
                .parse()
                .context("BENCH_SECS")?,
        ),
        clients: usize::try_from(num("BENCH_CLIENTS", 16)?)?.max(1),
        rounds: usize::try_from(num("BENCH_ROUNDS", 3)?)?.max(1),
        bin: std::env::var_os("SYNCBASE_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
            PathBuf::from,
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "Logging bench: {} clients, {:.1} s per phase x {} round(s) per mode, {} CPUs",
        config.clients,
        config.secs.as_secs_f64(),
        config.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    rt.block_on(run(config))
}

async fn run(config: Config) -> Result<()> {
    let server = Server::start(&config.bin, "sb-bench-logs-").await?;
    println!("Syncbase: {} on {}", config.bin.display(), server.addr);
    let token = superuser_token(server.addr).await?;
    let mut admin = Conn::connect(server.addr).await?;
    admin
        .json(
            Method::POST,
            "/api/collections",
            Some(&token),
            Some(json!({
                "name": "bench_writes", "createRule": "",
                "fields": [
                    {"name": "title", "type": "text", "required": true},
                    {"name": "n", "type": "number"},
                    {"name": "created", "type": "autodate", "onCreate": true},
                ],
            })),
        )
        .await?;
    let (mut off, mut on) = (Stats::default(), Stats::default());
    // Creates logged since logging was last turned off (turning it off deletes the logs, as
    // in PocketBase).
    let mut expected = 0usize;
    let mut ratios = Vec::new();
    for round in 0..config.rounds {
        let mut rates = [0.0f64; 2];
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for logging in order {
            let days = if logging { 5 } else { 0 };
            admin
                .json(
                    Method::PATCH,
                    "/api/settings",
                    Some(&token),
                    Some(json!({"logs": {"maxDays": days}})),
                )
                .await?;
            if !logging {
                expected = 0;
            }
            let (cpu_before, log_before) = (cpu_seconds(server.pid)?, log_thread_cpu(server.pid)?);
            let mut stats = phase(server.addr, &config).await?;
            stats.cpu = cpu_seconds(server.pid)? - cpu_before;
            stats.log_cpu = log_thread_cpu(server.pid)? - log_before;
            rates[usize::from(logging)] = stats.rate();
            println!(
                "round {round} logging {:<3}: {:>8.0} creates/s  p50 {:.2} ms  p99 {:.2} ms  {:.0} µs CPU/create (log thread {:.1})  ({} errors)",
                if logging { "on" } else { "off" },
                stats.rate(),
                stats.percentile_ms(0.5),
                stats.percentile_ms(0.99),
                stats.cpu_us(),
                stats.log_cpu_us(),
                stats.errors,
            );
            if logging {
                expected += stats.ok + stats.errors;
                let found = logged(&mut admin, &token, expected).await?;
                println!("  logged {found} of the {expected} creates made with logging on");
                ensure!(
                    found == expected,
                    "request log entries were dropped or lost"
                );
                on.merge(stats);
            } else {
                off.merge(stats);
            }
        }
        ratios.push(rates[1] / rates[0]);
    }
    ratios.sort_by(f64::total_cmp);
    println!();
    println!(
        "{:<12} {:>12} {:>10} {:>10} {:>16}",
        "logging", "creates/s", "p50 ms", "p99 ms", "CPU µs/create"
    );
    for (label, s) in [("off", &off), ("on", &on)] {
        println!(
            "{label:<12} {:>12.0} {:>10.2} {:>10.2} {:>16.0}",
            s.rate(),
            s.percentile_ms(0.5),
            s.percentile_ms(0.99),
            s.cpu_us()
        );
    }
    let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "on / off: throughput x{:.3} (median of rounds x{:.3}; rounds {}), p50 x{:.3}, \
         p99 x{:.3}, CPU per create x{:.3} ({:+.0} µs)",
        on.rate() / off.rate(),
        ratios[ratios.len() / 2],
        rounds.join(" "),
        on.percentile_ms(0.5) / off.percentile_ms(0.5),
        on.percentile_ms(0.99) / off.percentile_ms(0.99),
        on.cpu_us() / off.cpu_us(),
        on.cpu_us() - off.cpu_us(),
    );
    println!(
        "log writer thread: {:.1} µs CPU per logged create ({:.1}% of a create's CPU with logging on)",
        on.log_cpu_us(),
        100.0 * on.log_cpu_us() / on.cpu_us(),
    );
    server.stop().await;
    Ok(())
}

/// The number of logged creates, once the log thread has written `expected` of them (or a
/// minute passed): it writes behind the requests.
async fn logged(admin: &mut Conn, token: &str, expected: usize) -> Result<usize> {
    let filter: String =
        url::form_urlencoded::byte_serialize(b"data.method='POST' && data.url~'bench_writes'")
            .collect();
    let path = format!("/api/logs?perPage=1&filter={filter}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = admin.json(Method::GET, &path, Some(token), None).await?;
        let found = body["totalItems"].as_u64().unwrap_or(0) as usize;
        if found >= expected || Instant::now() > deadline {
            return Ok(found);
        }
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU seconds (user + system) of the server's log writer thread (named `sqlite-logs`).
fn log_thread_cpu(pid: u32) -> Result<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != "sqlite-logs" {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat"))?;
        let rest = stat.rsplit_once(')').context("malformed task stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields.get(11).context("no utime")?.parse::<f64>()?
            + fields.get(12).context("no stime")?.parse::<f64>()?;
        // USER_HZ is 100 on every Linux configuration this runs on.
        return Ok(ticks / 100.0);
    }
    anyhow::bail!("no sqlite-logs thread in process {pid}")
}

/// One phase: every client creates records back to back for `config.secs`.
async fn phase(addr: SocketAddr, config: &Config) -> Result<Stats> {
    let started = Instant::now();
    let end = started + config.secs;
    let mut tasks = JoinSet::new();
    for client in 0..config.clients {
        tasks.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut s = Stats::default();
            let mut i = 0u64;
            while Instant::now() < end {
                let body = json!({"title": format!("c{client} #{i}"), "n": i});
                let t = Instant::now();
                let (status, _) = conn
                    .send(
                        Method::POST,
                        "/api/collections/bench_writes/records",
                        None,
                        Some(Bytes::from(body.to_string())),
                    )
                    .await?;
                if status == StatusCode::OK {
                    s.ok += 1;
                    s.latencies_us
                        .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    s.errors += 1;
                }
                i += 1;
            }
            anyhow::Ok(s)
        });
    }
    let mut total = Stats::default();
    while let Some(r) = tasks.join_next().await {
        total.merge(r??);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
