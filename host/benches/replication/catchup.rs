//! Catch-up: node C stopped while A and B write, then restarted on its data dir and timed
//! until it has folded the stream's end. The writes: plain creates, or a conflicting workload
//! (A and B updating the same records at once).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::node::{Node, quiesce};
use crate::workload::{batch_create, batch_update};

/// How a restarted node caught up.
#[derive(Debug, Clone)]
pub struct CatchUp {
    pub label: String,
    /// Stream events C had to fold.
    pub events: u64,
    /// From the restart to the first status that showed progress.
    pub startup: Duration,
    /// From the restart to the stream's end folded.
    pub total: Duration,
    /// Events per second from the first progress seen to the end.
    pub rate: f64,
    /// C's CPU time per event over the same stretch, µs: what the fold costs, whatever else
    /// runs on the machine.
    pub cpu_us: f64,
    pub dead_letters: u64,
    /// The stream range C folded.
    pub range: (u64, u64),
    /// Fold transactions C committed for it.
    pub batches: u64,
}

/// Restarts `c` and times it until its applied sequence reaches `target`.
pub async fn time_restart(c: &mut Node, label: &str, from: u64, target: u64) -> Result<CatchUp> {
    let started = Instant::now();
    c.start().await?;
    let deadline = started + Duration::from_secs(600);
    // The first status that showed progress: (when, applied sequence, C's CPU seconds).
    let mut first: Option<(Instant, u64, f64)> = None;
    loop {
        let s = c.status().await?;
        let (now, cpu) = (Instant::now(), c.cpu_seconds()?);
        if first.is_none() && s.applied_seq > from {
            first = Some((now, s.applied_seq, cpu));
        }
        if s.applied_seq >= target {
            let total = started.elapsed();
            let (rate, cpu_us) = match first {
                Some((t1, s1, cpu1)) if target > s1 && now > t1 => (
                    (target - s1) as f64 / (now - t1).as_secs_f64(),
                    (cpu - cpu1) * 1e6 / (target - s1) as f64,
                ),
                // Progress seen only at the end: the whole fold took at most the wall time.
                _ => (
                    (target - from) as f64 / total.as_secs_f64(),
                    cpu * 1e6 / (target - from) as f64,
                ),
            };
            let batches = c.metric("apply_batches_total").await?;
            return Ok(CatchUp {
                batches,
                label: label.to_owned(),
                events: target - from,
                startup: first.map_or(total, |f| f.0 - started),
                total,
                rate,
                cpu_us,
                dead_letters: s.dead_letters,
                range: (from, target),
            });
        }
        if Instant::now() > deadline {
            bail!("node {} stuck at {} of {target}", c.id, s.applied_seq);
        }
        // Poll interval of a bounded wait. A status costs C three count(*) queries of small
        // tables; the rate is timed between two polls, so a coarse interval would blur folds
        // that take a few hundred milliseconds.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops C, lets `write` run on A and B, waits for A and B to fold it all, then times C's
/// catch-up.
pub async fn around_outage<F>(
    a: &Node,
    b: &Node,
    c: &mut Node,
    label: &str,
    write: F,
) -> Result<CatchUp>
where
    F: AsyncFnOnce() -> Result<()>,
{
    let from = quiesce(&[a, b, &*c], Duration::from_secs(120)).await?;
    c.stop().await;
    let writing = Instant::now();
    write().await?;
    let target = quiesce(&[a, b], Duration::from_secs(600)).await?;
    println!(
        "  {label}: {} events written on A and B and folded there in {:.1} s; restarting C",
        target - from,
        writing.elapsed().as_secs_f64()
    );
    let r = time_restart(c, label, from, target).await?;
    println!(
        "  {label}: C folded {} events in {} transactions: {:.0} events/s, {:.1} µs CPU/event \
         (startup {:.2} s, wall {:.2} s)",
        r.events,
        r.batches,
        r.rate,
        r.cpu_us,
        r.startup.as_secs_f64(),
        r.total.as_secs_f64()
    );
    Ok(r)
}

/// `count` creates split between A and B (`/api/batch`, two clients each).
pub async fn creates(a: &Node, b: &Node, coll: &str, count: usize, batch: usize) -> Result<()> {
    let half = count / 2;
    let (ra, rb) = tokio::join!(
        batch_create(a, coll, 10_000_000, half, batch, 2),
        batch_create(b, coll, 20_000_000, count - half, batch, 2),
    );
    ra?;
    rb?;
    Ok(())
}

/// `count` updates split between A and B, both cycling through the same records in the same
/// order at the same time: most events' base is a version the other node has replaced.
pub async fn conflicts(
    a: &Node,
    b: &Node,
    coll: &str,
    ids: &[String],
    count: usize,
    batch: usize,
) -> Result<()> {
    let half = count / 2;
    let (ra, rb) = tokio::join!(
        batch_update(a, coll, ids, 30_000_000, half, batch),
        batch_update(b, coll, ids, 40_000_000, count - half, batch),
    );
    ra?;
    rb?;
    Ok(())
}
