//! Replication benchmark (issue 6): Syncbase's replication against the raw JetStream floor,
//! on one machine, in one process.
//!
//! 1. **Floor.** A fresh 3-server NATS cluster (R3 stream), through `replication::log`: one
//!    message at a time publish→delivered latency, and pipelined async publish throughput,
//!    each message the size of an encoded Syncbase create event of this workload
//!    (`support/floor.rs`, the same code as `--bench jetstream`).
//! 2. **Syncbase.** Another fresh 3-server cluster and three release `syncbase serve`
//!    processes a, b, c (`--nats <server i> --node-id a|b|c --cluster bench`), each with its
//!    own superuser; the collection is created on A and replicates. Then:
//!    * latency — sequential creates on A; each timed from A's HTTP answer to C's realtime
//!      SSE event for it (`GET/POST /api/realtime`, subscription `bench/*`);
//!    * sustained throughput — paced creates on all three nodes at offered rates stepped up
//!      (×`RATE_FACTOR`) until one is not sustained, one bisection step, then one unpaced
//!      step (each connection writes again on its answer); every node's `/api/sync/status`
//!      is sampled. A rate is sustained when the nodes accept it and the lag (outbox backlogs
//!      + stream end − slowest `appliedSeq`) does not grow (slope ≤ 5% of the rate);
//!    * catch-up — C stopped (SIGTERM), `CATCHUP_EVENTS` creates on A and B via `/api/batch`,
//!      A and B settle, C restarted on its dir and timed until `appliedSeq` reaches the
//!      stream's end;
//!    * resolver cost — the same catch-up with A and B updating the same records at once, so
//!      C's fold hands most events to the resolver: built-in LWW and the shipped `lww` plugin
//!      bound as the collection's resolver, alternating (`resolver.rs`). Wall rate and C's CPU
//!      time per event are both reported (CPU is what other load on a shared machine cannot
//!      blur), as medians per policy.
//!
//! Env knobs: `FLOOR_LATENCY_MSGS` (1000), `FLOOR_MSGS` (50000), `FLOOR_INFLIGHT` (1024),
//! `LATENCY_WRITES` (500), `RATE_START` (300 writes/s), `RATE_FACTOR` (1.5), `RATE_STEPS` (8),
//! `RATE_REFINE` (1), `STEP_SECS` (6), `WRITER_CONNS` (8 per node), `CATCHUP_EVENTS` (100000),
//! `BATCH` (1000 requests per /api/batch), `CONFLICT_RECORDS` (1000), `CONFLICT_EVENTS`
//! (30000 per run), `RESOLVER_ROUNDS` (4), `PHASES` (`latency,sustain,catchup,resolver`), `SYNCBASE_BIN`. The nodes inherit
//! the environment, so `SYNCBASE_APPLY_BATCH` and friends reach them.

#[path = "../../../tests/nats_support/mod.rs"]
mod nats_support;

#[path = "../support/floor.rs"]
mod floor;

#[path = "../support/mod.rs"]
mod support;

mod catchup;
mod load;
// Shared with the snapshot and plugin-swap benches, which use parts this one does not.
#[allow(dead_code)]
mod node;
mod report;
mod resolver;
mod stream;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Map, Value, json};
use syncbase::replication::hlc::system_ms;
use syncbase::replication::{CollectionRef, Event, EventId, EventKind, Hlc};

use catchup::CatchUp;
use floor::{Floor, FloorOptions};
use load::{Latency, Step, SustainOptions};
use nats_support::Cluster;
use node::{Node, quiesce, wait_collection};
use stream::RangeFacts;

const COLL: &str = "bench";
pub const CONFLICT_COLL: &str = "bench_conflict";

pub struct Config {
    floor_latency_msgs: usize,
    floor_msgs: usize,
    floor_in_flight: usize,
    latency_writes: usize,
    sustain: SustainOptions,
    catchup_events: usize,
    batch: usize,
    conflict_records: usize,
    conflict_events: usize,
    resolver_rounds: usize,
    phases: Vec<String>,
    bin: PathBuf,
}

impl Config {
    fn from_env() -> Result<Config> {
        fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .ok()
                    .with_context(|| format!("{name}={v} is not a number")),
                Err(_) => Ok(default),
            }
        }
        Ok(Config {
            floor_latency_msgs: num("FLOOR_LATENCY_MSGS", 1000)?,
            floor_msgs: num("FLOOR_MSGS", 50_000)?,
            floor_in_flight: num("FLOOR_INFLIGHT", 1024)?,
            latency_writes: num::<usize>("LATENCY_WRITES", 500)?.max(1),
            sustain: SustainOptions {
                start_rate: num::<f64>("RATE_START", 300.0)?.max(3.0),
                factor: num::<f64>("RATE_FACTOR", 1.5)?.max(1.05),
                max_steps: num("RATE_STEPS", 8)?,
                refine: num("RATE_REFINE", 1)?,
                secs: num::<f64>("STEP_SECS", 6.0)?.max(1.0),
                conns: num::<usize>("WRITER_CONNS", 8)?.max(1),
                sample: Duration::from_millis(200),
                nats_pids: Vec::new(),
            },
            catchup_events: num("CATCHUP_EVENTS", 100_000)?,
            batch: num::<usize>("BATCH", 1000)?.max(1),
            conflict_records: num::<usize>("CONFLICT_RECORDS", 1000)?.max(1),
            conflict_events: num("CONFLICT_EVENTS", 30_000)?,
            resolver_rounds: num("RESOLVER_ROUNDS", 4)?,
            phases: std::env::var("PHASES")
                .unwrap_or_else(|_| "latency,sustain,catchup,resolver".into())
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
            bin: std::env::var_os("SYNCBASE_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
                PathBuf::from,
            ),
        })
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// Everything measured, for the report.
#[derive(Default)]
pub struct Results {
    pub floor_size: usize,
    pub floor: Option<Floor>,
    pub latency: Option<Latency>,
    pub steps: Vec<Step>,
    pub catchup: Option<CatchUp>,
    pub resolver: Vec<resolver::Run>,
    /// What the latency phase's creates look like in the stream.
    pub create_facts: Option<RangeFacts>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_env()?;
    let payload = representative_event().encode();
    let mut results = Results {
        floor_size: payload.len(),
        ..Default::default()
    };
    println!(
        "Replication bench: 3 NATS servers (R3) and 3 Syncbase nodes on this machine ({} CPUs); \
         {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.bin.display()
    );

    println!(
        "\n[floor] {} B messages (an encoded create event), R3",
        payload.len()
    );
    let cluster = Cluster::start(3).await;
    let opts = FloorOptions {
        payload: Bytes::from(payload),
        latency_msgs: config.floor_latency_msgs,
        msgs: config.floor_msgs,
        in_flight: config.floor_in_flight,
        replicas: 3,
    };
    let floor = floor::measure(&cluster, &opts).await;
    cluster.shutdown().await;
    println!(
        "  publish->delivered p50 {:.3} ms, p99 {:.3} ms; async publish {:.0} msgs/s ({} in \
         flight); publish+deliver {:.0} msgs/s",
        ms(floor.latency(0.5)),
        ms(floor.latency(0.99)),
        floor.publish_rate,
        opts.in_flight,
        floor.drain_rate
    );
    results.floor = Some(floor);

    let cluster = Cluster::start(3).await;
    let root = tempfile::Builder::new()
        .prefix("sb-bench-repl-")
        .tempdir()?;
    let outcome = run_syncbase(&config, &cluster, root.path(), &mut results).await;
    cluster.shutdown().await;
    drop(root);
    outcome?;
    report::print(&config, &results);
    Ok(())
}

/// The Syncbase phases on a running cluster; nodes live in `root`.
async fn run_syncbase(
    config: &Config,
    cluster: &Cluster,
    root: &std::path::Path,
    results: &mut Results,
) -> Result<()> {
    let mut a = Node::create(&config.bin, root, "a", cluster.url(0)).await?;
    let mut b = Node::create(&config.bin, root, "b", cluster.url(1)).await?;
    let mut c = Node::create(&config.bin, root, "c", cluster.url(2)).await?;
    let outcome = phases(config, cluster, &a, &b, &mut c, results).await;
    for n in [&mut a, &mut b, &mut c] {
        n.stop().await;
    }
    outcome
}

async fn phases(
    config: &Config,
    cluster: &Cluster,
    a: &Node,
    b: &Node,
    c: &mut Node,
    results: &mut Results,
) -> Result<()> {
    let settings = json!({"batch": {"enabled": true, "maxRequests": config.batch}});
    for n in [a, b, &*c] {
        n.call(Method::PATCH, "/api/settings", Some(settings.clone()))
            .await?;
    }
    a.call(
        Method::POST,
        "/api/collections",
        Some(workload::collection_def(COLL)),
    )
    .await?;
    for n in [b, &*c] {
        wait_collection(n, COLL, Duration::from_secs(60)).await?;
    }
    let mut reads: Vec<(u64, u64)> = Vec::new();

    if config.runs("latency") {
        println!(
            "\n[latency] {} sequential creates on A, each until C's realtime shows it",
            config.latency_writes
        );
        let from = quiesce(&[a, b, &*c], Duration::from_secs(60)).await?;
        let l = load::latency(a, c, COLL, 20, config.latency_writes).await?;
        let upto = quiesce(&[a, b, &*c], Duration::from_secs(60)).await?;
        reads.push((from, upto));
        println!(
            "  A answered p50 {:.2} ms; C showed it p50 {:.2} ms, p99 {:.2} ms later ({} missing)",
            ms(floor::pct(&l.write, 0.5)),
            ms(floor::pct(&l.samples, 0.5)),
            ms(floor::pct(&l.samples, 0.99)),
            l.missing
        );
        results.latency = Some(l);
    }

    if config.runs("sustain") {
        println!(
            "\n[sustained] paced creates on a, b and c ({} connections each), {} s per rate",
            config.sustain.conns, config.sustain.secs
        );
        let mut sustain = config.sustain.clone();
        sustain.nats_pids = (0..3).filter_map(|i| cluster.server(i).pid()).collect();
        results.steps = load::search(&[a, b, &*c], COLL, &sustain).await?;
    }

    if config.runs("catchup") && config.catchup_events > 0 {
        println!(
            "\n[catch-up] C stopped; {} creates on A and B via /api/batch",
            config.catchup_events
        );
        let count = config.catchup_events;
        let r = catchup::around_outage(a, b, c, "creates", async || {
            catchup::creates(a, b, COLL, count, config.batch).await
        })
        .await?;
        results.catchup = Some(r);
    }

    if config.runs("resolver") && config.conflict_events > 0 {
        results.resolver = resolver::phase(config, cluster, a, b, c).await?;
    }

    if let Some(&range) = reads.first() {
        let facts = stream::read_back(&cluster.url(2), range.0, &[range]).await?;
        results.create_facts = facts.into_iter().next();
    }
    Ok(())
}

/// A create event shaped like the ones the phases write: the record as stored (id, the
/// workload's fields, two autodates), a PocketBase collection id, a node id, no base.
fn representative_event() -> Event {
    let rid = "k3v9q2m8x1c7b4n";
    let mut data = Map::new();
    data.insert("id".into(), Value::String(rid.into()));
    if let Value::Object(body) = workload::record_body("a", 10_012_345) {
        data.extend(body);
    }
    let now = "2026-11-25 18:55:28.123Z";
    data.insert("created".into(), Value::String(now.into()));
    data.insert("updated".into(), Value::String(now.into()));
    Event {
        id: EventId::random(),
        origin: "a".into(),
        hlc: Hlc::new(system_ms(), 0),
        kind: EventKind::RecordCreate,
        collection: CollectionRef {
            id: "pbc_3142635823".into(),
            name: COLL.into(),
        },
        record_id: Some(rid.into()),
        data: Some(data),
        before: None,
        base: None,
        schema_version: 0,
        plugin_version: 0,
        files: Vec::new(),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
