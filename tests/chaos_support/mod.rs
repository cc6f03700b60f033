//! The chaos harness: real `syncbase` and `nats-server` processes, every connection between
//! them through a proxy the harness controls, a seeded workload, seeded faults, and the checks
//! that must hold once everything has healed.
//!
//! One seed is one run: a fresh cluster (3 servers, 3 nodes), the collections and plugins of
//! the workload, then `faults` rounds of "write, inject a fault, hold it, heal it, measure how
//! long until every node caught up", a schema change and a plugin swap somewhere in between, and
//! the final checks ([`checks::final_checks`]). The seed fixes every operation, every fault and
//! every parameter; the interleaving is the machine's, which is the point of running many.
//!
//! `tests/chaos.rs` runs as many seeds as fit a time budget; `scripts/chaos --seeds N` is the
//! long mode and writes a summary.

#![allow(dead_code)]

pub mod checks;
pub mod cluster;
pub mod faults;
pub mod proxy;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use checks::{LogView, wait_caught_up};
use cluster::{Cluster, NODES};
use faults::{Fault, Kind};
use workload::{Clients, Ledger, Outcome};

/// What a run needs from outside.
#[derive(Clone)]
pub struct Options {
    pub syncbase_bin: PathBuf,
    pub nats_bin: PathBuf,
    /// The shipped plugins the workload binds: (name, component file).
    pub components: Vec<(&'static str, PathBuf)>,
    /// Fault rounds per seed.
    pub faults: usize,
    /// How long the cluster may take to catch up after a heal before the seed fails.
    pub catch_up_limit: Duration,
}

/// How one seed went.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub seed: u64,
    pub faults: Vec<(Kind, String)>,
    /// Heal → every node caught up, per fault.
    pub recoveries: Vec<(Kind, Duration)>,
    pub writes: usize,
    pub acked: usize,
    pub unknown: usize,
    pub failures: Vec<String>,
    pub elapsed: Duration,
    /// Log tails of every process when the seed failed.
    pub logs: String,
}

impl SeedReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The one-line command that replays a seed.
pub fn replay_command(seed: u64) -> String {
    format!("scripts/chaos --seed {seed}")
}

/// Runs one seed start to finish.
pub async fn run_seed(seed: u64, opts: &Options) -> SeedReport {
    let start = Instant::now();
    let mut report = SeedReport {
        seed,
        ..Default::default()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let faults: Vec<Fault> = (0..opts.faults).map(|_| Fault::pick(&mut rng)).collect();
    let schema_round = rng.random_range(0..opts.faults);
    let swap_round = rng.random_range(0..opts.faults);

    let mut cluster = Cluster::new(&opts.syncbase_bin, &opts.nats_bin).await;
    let log = LogView::connect(&cluster.direct_urls()).await;
    if let Err(e) = log.create_stream().await {
        report.failures.push(format!("setup: {e}"));
        report.logs = cluster.logs();
        return report;
    }
    cluster.start_nodes().await;
    workload::setup(&cluster, &opts.components).await;
    if let Err(e) = wait_caught_up(&cluster, &log, Duration::from_secs(60)).await {
        report.failures.push(format!("setup: {e}"));
        report.logs = cluster.logs();
        return report;
    }

    let ledger = Ledger::default();
    let clients = Clients::start(&cluster, seed, &ledger);
    let mut skews = [0i64; NODES];
    for (round, fault) in faults.iter().enumerate() {
        report.faults.push((fault.kind, fault.describe()));
        // Writes without a fault first.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_200))).await;
        let admin = if round == schema_round {
            Some(tokio::spawn(schema_change(
                admin_target(&cluster, &mut rng),
                round,
            )))
        } else if round == swap_round {
            Some(tokio::spawn(plugin_swap(admin_target(&cluster, &mut rng))))
        } else {
            None
        };
        let published = if fault.kind == Kind::PublishedThenKill {
            published_write(&cluster, fault.node, seed, round, &ledger).await
        } else {
            None
        };
        fault.inject(&mut cluster, &mut skews).await;
        tokio::time::sleep(fault.hold).await;
        if let Some(token) = &published {
            // The node is still dead: the write must already be in the log.
            match log.events().await {
                Ok(events) if events.iter().any(|(_, e)| has_token(e, token)) => {}
                Ok(_) => report.failures.push(format!(
                    "a ?sync=published write ({token}) acknowledged by n{} is not in the log after the node was killed",
                    fault.node
                )),
                Err(e) => report.failures.push(format!("reading the log: {e}")),
            }
        }
        fault.heal(&mut cluster, &skews).await;
        clients.pause(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        match wait_caught_up(&cluster, &log, opts.catch_up_limit).await {
            Ok(took) => report.recoveries.push((fault.kind, took)),
            Err(e) => {
                report
                    .failures
                    .push(format!("after {}: {e}", fault.describe()));
                break;
            }
        }
        clients.pause(false);
    }
    clients.finish().await;
    cluster.heal_network();
    if report.failures.is_empty() {
        match wait_caught_up(&cluster, &log, opts.catch_up_limit).await {
            Ok(_) => {
                let writes = ledger.snapshot();
                report.failures = checks::final_checks(&cluster, &log, &writes).await;
                report.failures.extend(same_schema(&cluster).await);
            }
            Err(e) => report.failures.push(format!("at the end: {e}")),
        }
    }
    let writes = ledger.snapshot();
    report.writes = writes.len();
    report.acked = writes
        .iter()
        .filter(|w| w.outcome == Outcome::Acked)
        .count();
    report.unknown = writes
        .iter()
        .filter(|w| w.outcome == Outcome::Unknown)
        .count();
    if !report.failures.is_empty() {
        report.logs = cluster.logs();
    }
    report.elapsed = start.elapsed();
    report
}

fn has_token(e: &syncbase::replication::Event, token: &str) -> bool {
    e.data
        .as_ref()
        .and_then(|d| d.get("v"))
        .and_then(Value::as_str)
        == Some(token)
}

/// An admin operation goes to a random node that is up.
fn admin_target(cluster: &Cluster, rng: &mut StdRng) -> (String, String, reqwest::Client) {
    let n = &cluster.nodes[rng.random_range(0..NODES)];
    (n.url.clone(), n.token.clone(), n.client.clone())
}

/// Adds a text field to `lww` (a schema event in the middle of the writes).
async fn schema_change((url, token, client): (String, String, reqwest::Client), round: usize) {
    let Ok(resp) = client
        .get(format!("{url}/api/collections/lww"))
        .header("Authorization", &token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return;
    };
    let Ok(mut def) = resp.json::<Value>().await else {
        return;
    };
    if let Some(fields) = def["fields"].as_array_mut() {
        fields.push(json!({"name": format!("x{round}"), "type": "text"}));
    }
    let body = json!({"fields": def["fields"]});
    let _ = workload::send(
        &client,
        &format!("{url}/api/collections/lww"),
        &token,
        Method::PATCH,
        Some(body),
    )
    .await;
}

/// Swaps `merge`'s resolver for the `lww` plugin, then rolls it back.
async fn plugin_swap((url, token, client): (String, String, reqwest::Client)) {
    let (outcome, _, _) = workload::send(
        &client,
        &format!("{url}/api/plugins/lww/bind"),
        &token,
        Method::POST,
        Some(json!({"as": "resolver", "collection": "merge"})),
    )
    .await;
    if outcome == Outcome::Acked {
        let _ = workload::send(
            &client,
            &format!("{url}/api/plugins/rollback"),
            &token,
            Method::POST,
            Some(json!({"as": "resolver", "collection": "merge"})),
        )
        .await;
    }
}

/// A create with `?sync=published` on `node`, recorded in the ledger; its token if acknowledged.
async fn published_write(
    cluster: &Cluster,
    node: usize,
    seed: u64,
    round: usize,
    ledger: &Ledger,
) -> Option<String> {
    let n = &cluster.nodes[node];
    let id = format!("p{node}{round:0>13}");
    let token = format!("t{seed}-published-{round}");
    let (outcome, status, _) = workload::send(
        &n.client,
        &format!("{}/api/collections/lww/records?sync=published", n.url),
        &n.token,
        Method::POST,
        Some(json!({"id": id, "k": "published", "v": token})),
    )
    .await;
    ledger.push(workload::Write {
        node,
        coll: "lww",
        id,
        kind: workload::Kind::Create,
        token: token.clone(),
        concern: "published",
        outcome,
        status,
    });
    (outcome == Outcome::Acked && status.is_some_and(|s| s < 300)).then_some(token)
}

/// Every node has the same fields in `lww` (schema changes replicated).
async fn same_schema(cluster: &Cluster) -> Vec<String> {
    let mut seen: Vec<Value> = Vec::new();
    for n in &cluster.nodes {
        let fields = n
            .get("/api/collections/lww")
            .await
            .map(|c| c["fields"].clone())
            .unwrap_or(Value::Null);
        seen.push(fields);
    }
    seen.iter()
        .enumerate()
        .skip(1)
        .filter(|(_, f)| **f != seen[0])
        .map(|(i, f)| format!("lww's fields on n{i} differ from n0: {f} vs {}", seen[0]))
        .collect()
}

/// Figures over many seeds: the long mode's summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub seeds: Vec<u64>,
    pub failed: Vec<u64>,
    pub faults: BTreeMap<&'static str, usize>,
    pub recoveries: BTreeMap<&'static str, Vec<Duration>>,
    pub writes: usize,
    pub acked: usize,
    pub unknown: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn add(&mut self, r: &SeedReport) {
        self.seeds.push(r.seed);
        if !r.passed() {
            self.failed.push(r.seed);
        }
        for (k, _) in &r.faults {
            *self.faults.entry(k.name()).or_default() += 1;
        }
        for (k, d) in &r.recoveries {
            self.recoveries.entry(k.name()).or_default().push(*d);
        }
        self.writes += r.writes;
        self.acked += r.acked;
        self.unknown += r.unknown;
        self.elapsed += r.elapsed;
    }

    /// A human-readable summary with recovery percentiles per fault kind.
    pub fn render(&self) -> String {
        let mut out = format!(
            "chaos: {} seeds, {} passed, {} failed {:?}; {} writes ({} acknowledged, {} unknown); {:.0} s\n",
            self.seeds.len(),
            self.seeds.len() - self.failed.len(),
            self.failed.len(),
            self.failed,
            self.writes,
            self.acked,
            self.unknown,
            self.elapsed.as_secs_f64()
        );
        out.push_str("fault kind            injected  heal->caught-up p50 / p90 / max (s)\n");
        for (kind, n) in &self.faults {
            let mut d = self.recoveries.get(kind).cloned().unwrap_or_default();
            d.sort();
            let pct = |p: f64| {
                d.get(((d.len() as f64 - 1.0) * p).round() as usize)
                    .map_or(f64::NAN, Duration::as_secs_f64)
            };
            out.push_str(&format!(
                "{kind:<21} {n:>8}  {:.2} / {:.2} / {:.2}\n",
                pct(0.5),
                pct(0.9),
                pct(1.0)
            ));
        }
        out
    }
}
