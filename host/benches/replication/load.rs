//! Phases under live traffic: replication latency (one write at a time on A, seen through
//! C's realtime stream) and sustained throughput (paced writers on every node, stepping the
//! offered rate up until the cluster's lag grows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::future::join_all;

use crate::node::{Node, Status, quiesce};
use crate::support::Conn;
use crate::support::cpu_seconds;
use crate::workload::{Subscriber, create};

/// Replication latencies: from A's HTTP answer to C's realtime event.
pub struct Latency {
    /// Sorted.
    pub samples: Vec<Duration>,
    /// Writes C never showed within the deadline.
    pub missing: usize,
    /// Events C showed before A's answer arrived (counted as zero latency).
    pub before_answer: usize,
    /// A's answer times (the local write alone), sorted.
    pub write: Vec<Duration>,
}

/// `writes` sequential creates on A (after `warmup` unrecorded ones), each waited for on C.
pub async fn latency(
    a: &Node,
    c: &Node,
    coll: &str,
    warmup: usize,
    writes: usize,
) -> Result<Latency> {
    let mut sub = Subscriber::connect(c.addr, coll).await?;
    let mut conn = Conn::connect(a.addr).await?;
    let mut out = Latency {
        samples: Vec::with_capacity(writes),
        missing: 0,
        before_answer: 0,
        write: Vec::with_capacity(writes),
    };
    // Eight-digit `n` like every other phase's, so events keep the floor's size.
    const BASE: u64 = 50_000_000;
    for i in 0..(warmup + writes) as u64 {
        let sent = Instant::now();
        anyhow::ensure!(
            create(&mut conn, coll, a.id, BASE + i).await?,
            "create on A failed"
        );
        let answered = Instant::now();
        let seen = sub.wait_for(BASE + i, Duration::from_secs(10)).await;
        if i < warmup as u64 {
            continue;
        }
        out.write.push(answered - sent);
        match seen {
            Some(at) if at < answered => {
                out.before_answer += 1;
                out.samples.push(Duration::ZERO);
            }
            Some(at) => out.samples.push(at - answered),
            None => out.missing += 1,
        }
    }
    out.samples.sort();
    out.write.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Sustained throughput

/// How the rate search runs.
#[derive(Clone)]
pub struct SustainOptions {
    pub start_rate: f64,
    pub factor: f64,
    pub max_steps: usize,
    /// Bisection steps between the last sustained and the first unsustained rate.
    pub refine: usize,
    pub secs: f64,
    /// Writer connections per node.
    pub conns: usize,
    pub sample: Duration,
    /// The NATS servers' process ids, for the CPU split.
    pub nats_pids: Vec<u32>,
}

/// One offered rate held for a while.
#[derive(Debug, Clone)]
pub struct Step {
    pub offered: f64,
    /// Creates answered 200 per second (all nodes).
    pub accepted: f64,
    pub errors: u64,
    /// Stream sequence numbers folded per second, per node, over the measured window.
    pub applied: Vec<f64>,
    /// Slope of the cluster's lag over the measured window, events/s.
    pub lag_growth: f64,
    pub lag_max: u64,
    /// Time for the cluster to fold everything once writers stopped (`None`: it did not).
    pub drain: Option<Duration>,
    pub sustained: bool,
    /// Why not, when not.
    pub limit: &'static str,
    /// CPU ms per accepted write over the window: the three nodes, the three NATS servers,
    /// and this bench's writers and samplers.
    pub cpu_ms: [f64; 3],
}

/// Steps the offered rate up from `start_rate` (×`factor`) until a step is not sustained,
/// then bisects; returns every step in the order run.
pub async fn search(nodes: &[&Node], coll: &str, opts: &SustainOptions) -> Result<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = opts.start_rate;
    let mut first_fail = None;
    for _ in 0..opts.max_steps {
        let s = step(nodes, coll, rate, opts).await?;
        print_step(&s);
        let (ok, drained) = (s.sustained, s.drain.is_some());
        steps.push(s);
        if !ok {
            first_fail = Some(rate);
        }
        if !ok || !drained {
            break;
        }
        rate *= opts.factor;
    }
    let mut lo = best(&steps).map(|s| s.offered);
    let mut hi = first_fail;
    for _ in 0..opts.refine {
        let (Some(l), Some(h)) = (lo, hi) else { break };
        let mid = (l * h).sqrt();
        let s = step(nodes, coll, mid, opts).await?;
        print_step(&s);
        if s.sustained {
            lo = Some(mid);
        } else {
            hi = Some(mid);
        }
        let drained = s.drain.is_some();
        steps.push(s);
        if !drained {
            break;
        }
    }
    // And as fast as the writers get answers: what the nodes accept at most, and whether
    // replication keeps up with that.
    let s = step(nodes, coll, 0.0, opts).await?;
    print_step(&s);
    steps.push(s);
    Ok(steps)
}

/// The sustained step with the most writes accepted.
pub fn best(steps: &[Step]) -> Option<&Step> {
    steps
        .iter()
        .filter(|s| s.sustained)
        .max_by(|a, b| a.accepted.total_cmp(&b.accepted))
}

impl Step {
    pub fn offered_label(&self) -> String {
        if self.offered > 0.0 {
            format!("{:.0}/s", self.offered)
        } else {
            "unpaced".to_owned()
        }
    }
}

/// Whether a step was sustained: every write accepted at the offered rate (or, unpaced, at the
/// rate achieved) and the lag flat; otherwise what gave.
fn judge(offered: f64, accepted: f64, errors: u64, lag_growth: f64, drained: bool) -> &'static str {
    let target = if offered > 0.0 { offered } else { accepted };
    if errors > 0 {
        "write errors"
    } else if !drained {
        "backlog did not drain"
    } else if accepted < 0.95 * target {
        "nodes did not accept the offered writes"
    } else if lag_growth > 0.05 * target {
        "replication lag grows"
    } else {
        SUSTAINED
    }
}

const SUSTAINED: &str = "sustained";

fn print_step(s: &Step) {
    let applied: Vec<String> = s.applied.iter().map(|r| format!("{r:.0}")).collect();
    let drain = s.drain.map_or("NOT within 60 s".to_owned(), |d| {
        format!("{:.2} s", d.as_secs_f64())
    });
    println!(
        "  offered {:>8}: accepted {:>6.0}/s ({} errors), applied/s per node [{}], lag growth \
         {:>+6.0}/s, max lag {:>6}, drained in {drain}; CPU ms/write: nodes {:.2}, nats {:.2}, \
         bench {:.2} -> {}",
        s.offered_label(),
        s.accepted,
        s.errors,
        applied.join(", "),
        s.lag_growth,
        s.lag_max,
        s.cpu_ms[0],
        s.cpu_ms[1],
        s.cpu_ms[2],
        s.limit,
    );
}

/// Offers `rate` creates/s in total (a third on each node, paced open-loop over
/// `opts.conns` connections per node; `rate` 0: each connection writes again as soon as it is
/// answered) for `opts.secs`, sampling every node's status. Writes not yet sent when the
/// window closes are dropped, so what is left after it is replication's backlog alone.
async fn step(nodes: &[&Node], coll: &str, rate: f64, opts: &SustainOptions) -> Result<Step> {
    quiesce(nodes, Duration::from_secs(60)).await?;
    let interval = if rate > 0.0 {
        Duration::from_secs_f64(nodes.len() as f64 / rate)
    } else {
        Duration::ZERO
    };
    let window = Duration::from_secs_f64(opts.secs);
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + window;
    let mut writers = tokio::task::JoinSet::new();
    for (k, node) in nodes.iter().enumerate() {
        let tickets = Arc::new(AtomicU64::new(0));
        for _ in 0..opts.conns {
            let (tickets, ok, errors) = (tickets.clone(), ok.clone(), errors.clone());
            let (addr, id, coll) = (node.addr, node.id, coll.to_owned());
            // Eight-digit `n` like every other phase's, so events keep the floor's size.
            let base = 60_000_000 + k as u64 * 1_000_000;
            writers.spawn(async move {
                let mut conn = Conn::connect(addr).await?;
                loop {
                    let t = tickets.fetch_add(1, Ordering::Relaxed);
                    let due = start + interval * t as u32;
                    if due >= end || tokio::time::Instant::now() >= end {
                        return anyhow::Ok(());
                    }
                    // The schedule of an open-loop load, not synchronisation.
                    tokio::time::sleep_until(due).await;
                    let created = create(&mut conn, &coll, id, base + t % 1_000_000).await?;
                    // Only answers within the window count as accepted.
                    if tokio::time::Instant::now() <= end {
                        let counter = if created { &ok } else { &errors };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }

    let cpu = |nodes: &[&Node]| -> Result<[f64; 3]> {
        let mut nodes_cpu = 0.0;
        for n in nodes {
            nodes_cpu += n.cpu_seconds()?;
        }
        let mut nats = 0.0;
        for pid in &opts.nats_pids {
            nats += cpu_seconds(*pid)?;
        }
        Ok([nodes_cpu, nats, cpu_seconds(std::process::id())?])
    };
    // Samples until the writers are done: (seconds since start, every node's status).
    let mut samples: Vec<(f64, Vec<Status>)> = Vec::new();
    tokio::time::sleep_until(start).await;
    let cpu0 = cpu(nodes)?;
    while tokio::time::Instant::now() < end {
        let at = start.elapsed().as_secs_f64();
        let all: Result<Vec<Status>> = join_all(nodes.iter().map(|n| n.status()))
            .await
            .into_iter()
            .collect();
        samples.push((at, all?));
        tokio::time::sleep(opts.sample).await; // sampling interval of a timed window
    }
    let cpu1 = cpu(nodes)?;
    while let Some(res) = writers.join_next().await {
        res??;
    }
    let written = Instant::now();
    let drain = quiesce(nodes, Duration::from_secs(60))
        .await
        .ok()
        .map(|_| written.elapsed());

    // The first quarter warms up (connections, pacing, the first batches in flight).
    let measured: Vec<&(f64, Vec<Status>)> = samples
        .iter()
        .filter(|(t, _)| *t >= opts.secs / 4.0)
        .collect();
    let lag = |s: &[Status]| -> u64 {
        let stream = s.iter().map(|s| s.stream_seq).max().unwrap_or(0);
        let slowest = s.iter().map(|s| s.applied_seq).min().unwrap_or(0);
        s.iter().map(|s| s.outbox_backlog).sum::<u64>() + stream.saturating_sub(slowest)
    };
    let points: Vec<(f64, f64)> = measured.iter().map(|(t, s)| (*t, lag(s) as f64)).collect();
    let lag_growth = slope(&points);
    let applied = match (measured.first(), measured.last()) {
        (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => s0
            .iter()
            .zip(s1)
            .map(|(a, b)| (b.applied_seq - a.applied_seq) as f64 / (t1 - t0))
            .collect(),
        _ => vec![0.0; nodes.len()],
    };
    let accepted = ok.load(Ordering::Relaxed) as f64 / opts.secs;
    let writes = ok.load(Ordering::Relaxed).max(1) as f64;
    let cpu_ms = [0, 1, 2].map(|i| (cpu1[i] - cpu0[i]) * 1e3 / writes);
    let errors = errors.load(Ordering::Relaxed);
    let limit = judge(rate, accepted, errors, lag_growth, drain.is_some());
    Ok(Step {
        offered: rate,
        accepted,
        errors,
        applied,
        lag_growth,
        lag_max: samples.iter().map(|(_, s)| lag(s)).max().unwrap_or(0),
        drain,
        sustained: limit == SUSTAINED,
        limit,
        cpu_ms,
    })
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}
