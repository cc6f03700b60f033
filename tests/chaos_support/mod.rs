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
    /// The kinds to draw from (all when empty).
    pub kinds: Vec<Kind>,
    /// How long the cluster may take to catch up after a heal before the seed fails.
    pub catch_up_limit: Duration,
}

/// A fold that resumes later than this after the stream is writable is explained in the report.
const SLOW_FOLD: Duration = Duration::from_secs(2);

/// What a node logs when it moves to another server after JetStream kept failing.
const SWITCH_LINE: &str = "trying another";

/// How one seed went.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub seed: u64,
    pub faults: Vec<(Kind, String)>,
    /// Heal → every node caught up, per fault.
    pub recoveries: Vec<(Kind, Duration)>,
    /// After a fault of the NATS side: heal → a `?sync=published` write is acknowledged (the
    /// stream accepts writes again: Raft elections are in here).
    pub writable: Vec<(Kind, Duration)>,
    /// ... → every node folded it (how long the fold stays stalled after the stream recovers).
    pub resumes: Vec<(Kind, Duration)>,
    /// The later of that write's acknowledgement and the JetStream API answering again (the
    /// cluster has a meta leader: consumers can be created, messages read through the stream
    /// leader) → every node folded it. A server that returns from a pause or a partition can
    /// leave the whole cluster without a meta leader for seconds while the stream already takes
    /// writes; no node can position its consumer meanwhile.
    pub resumes_after_api: Vec<(Kind, Duration)>,
    /// For each of those over [`SLOW_FOLD`]: the last node to fold, and how often it moved to
    /// another server meanwhile.
    pub slow_folds: Vec<String>,
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

/// The one-line command that replays a seed with the same fault count and menu.
pub fn replay_command(seed: u64, opts: &Options) -> String {
    let mut cmd = format!("scripts/chaos --seed {seed} --faults {}", opts.faults);
    if !opts.kinds.is_empty() {
        let kinds: Vec<&str> = opts.kinds.iter().map(|k| k.name()).collect();
        cmd.push_str(&format!(" --kinds {}", kinds.join(",")));
    }
    cmd
}

/// Runs one seed start to finish.
pub async fn run_seed(seed: u64, opts: &Options) -> SeedReport {
    let start = Instant::now();
    let mut report = SeedReport {
        seed,
        ..Default::default()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let faults: Vec<Fault> = (0..opts.faults)
        .map(|_| Fault::pick(&mut rng, &opts.kinds))
        .collect();
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
    if let Err(e) = workload::setup(&cluster, &opts.components).await {
        report.failures.push(e);
        report.logs = cluster.logs();
        return report;
    }
    if let Err(e) = wait_caught_up(&cluster, &log, Duration::from_secs(60)).await {
        report.failures.push(format!("setup: {e}"));
        report.logs = cluster.logs();
        return report;
    }

    let ledger = Ledger::default();
    let clients = Clients::start(&cluster, seed, &ledger);
    let mut skews = [0i64; NODES];
    for (round, mut fault) in faults.into_iter().enumerate() {
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
        let leader = if fault.kind == Kind::KillLeader {
            log.leader().await
        } else {
            None
        };
        cluster.note(&format!("inject {}", fault.describe()));
        fault.inject(&mut cluster, &mut skews, leader).await;
        tokio::time::sleep(fault.hold).await;
        if let Some(token) = &published {
            // The node is still dead: the write must already be in the log. A server behind
            // may answer for the stream while its group has no leader (see `events_through`):
            // a read that lacks the write is tried again for a few seconds.
            let deadline = Instant::now() + Duration::from_secs(10);
            let read = loop {
                let read = log.events().await;
                let found =
                    matches!(&read, Ok(events) if events.iter().any(|(_, e)| has_token(e, token)));
                if found || Instant::now() >= deadline {
                    break read;
                }
                // Retry interval while a leader is elected.
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            match read {
                Ok(events) if events.iter().any(|(_, e)| has_token(e, token)) => {}
                Ok(_) => report.failures.push(format!(
                    "a ?sync=published write ({token}) acknowledged by n{} is not in the log after the node was killed",
                    fault.node
                )),
                Err(e) => report.failures.push(format!("reading the log: {e}")),
            }
        }
        fault.heal(&mut cluster, &skews).await;
        cluster.note(&format!("healed {}", fault.describe()));
        let switches_before: Vec<usize> = cluster
            .nodes
            .iter()
            .map(|n| n.log_count(SWITCH_LINE))
            .collect();
        let probe = fault.kind.hits_the_stream().then(|| {
            let writer = rng.random_range(0..NODES);
            tokio::spawn(fold_resume(
                probe_targets(&cluster),
                writer,
                log.clone(),
                format!("t{seed}-probe-{round}"),
                ledger.clone(),
            ))
        });
        clients.pause(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        let caught_up = wait_caught_up(&cluster, &log, opts.catch_up_limit).await;
        if let Some(probe) = probe
            && let Ok(Some(ProbeResult {
                writable,
                folded,
                folded_after_api,
                last,
                nodes,
            })) = probe.await
        {
            let each: Vec<String> = nodes
                .iter()
                .enumerate()
                .map(|(i, (at, missed))| {
                    format!("n{i} {:.2} s ({missed} polls unanswered)", at.as_secs_f64())
                })
                .collect();
            cluster.note(&format!(
                "probe: writable {:.2} s after the heal, then all folded {:.2} s later, {:.2} s after the JetStream API answered (n{last} last; {})",
                writable.as_secs_f64(),
                folded.as_secs_f64(),
                folded_after_api.as_secs_f64(),
                each.join(", ")
            ));
            report.writable.push((fault.kind, writable));
            report.resumes.push((fault.kind, folded));
            report
                .resumes_after_api
                .push((fault.kind, folded_after_api));
            if folded > SLOW_FOLD {
                let moves = cluster.nodes[last].log_count(SWITCH_LINE) - switches_before[last];
                report.slow_folds.push(format!(
                    "{} {:.2} s ({:.2} s after the JetStream API answered): n{last} folded last, after moving to another server {moves} times",
                    fault.kind.name(),
                    folded.as_secs_f64(),
                    folded_after_api.as_secs_f64()
                ));
            }
        }
        match caught_up {
            Ok(took) => {
                cluster.note(&format!(
                    "caught up {:.2} s after the heal",
                    took.as_secs_f64()
                ));
                report.recoveries.push((fault.kind, took))
            }
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
    if std::env::var_os("SYNCBASE_CHAOS_KEEP").is_some() {
        eprintln!("chaos seed {seed}: keeping {}", cluster.keep().display());
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

type Target = (String, String, reqwest::Client);

fn probe_targets(cluster: &Cluster) -> Vec<Target> {
    cluster
        .nodes
        .iter()
        .map(|n| (n.url.clone(), n.token.clone(), n.client.clone()))
        .collect()
}

/// What [`fold_resume`] measured.
struct ProbeResult {
    /// Start → the probe write acknowledged.
    writable: Duration,
    /// Acknowledged → folded everywhere.
    folded: Duration,
    /// The later of the acknowledgement and the JetStream API answering → folded everywhere
    /// (zero when every node folded before the API answered).
    folded_after_api: Duration,
    /// The last node to fold.
    last: usize,
    /// Per node: acknowledged → seen folded, and how many status polls went unanswered
    /// meanwhile (a node that does not answer cannot be seen to fold).
    nodes: Vec<(Duration, u32)>,
}

/// Writes with `?sync=published` through node `writer` until one is acknowledged (the stream
/// accepts writes again), then measures how long until every node has folded the stream up to
/// it, and when the JetStream API answered again meanwhile. `None` when no write got through
/// (or not every node folded it) within 30 s.
async fn fold_resume(
    nodes: Vec<Target>,
    writer: usize,
    log: LogView,
    token: String,
    ledger: Ledger,
) -> Option<ProbeResult> {
    let started = Instant::now();
    let give_up = started + Duration::from_secs(30);
    let (url, auth, client) = &nodes[writer];
    let mut attempt = 0;
    let acked_at = loop {
        attempt += 1;
        let id = format!("q{writer}{attempt:0>13}");
        let token = format!("{token}-{attempt}");
        let (outcome, status, _) = workload::send(
            client,
            &format!("{url}/api/collections/lww/records?sync=published"),
            auth,
            Method::POST,
            Some(json!({"id": id, "k": "probe", "v": token})),
        )
        .await;
        ledger.push(workload::Write {
            node: writer,
            coll: "lww",
            id,
            kind: workload::Kind::Create,
            token,
            concern: "published",
            outcome,
            status,
        });
        if status.is_some_and(|s| s < 300) {
            break Instant::now();
        }
        if Instant::now() >= give_up {
            return None;
        }
        // Probe interval while the stream is down.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let api = {
        let log = log.clone();
        tokio::spawn(async move {
            while !log.api_answers().await {
                // Poll interval while the cluster has no meta leader.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Instant::now()
        })
    };
    // The stream may not answer at once (its cluster electing a meta leader): asked again.
    let target = loop {
        if let Some(seq) = log.last_seq().await {
            break seq;
        }
        if Instant::now() >= give_up {
            api.abort();
            return None;
        }
        // Retry interval while JetStream does not answer.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every node is polled on its own, a request every 20 ms without waiting for the last
    // answer: a status answer can take half a second while JetStream does not answer (its
    // stream-state part waits that long), and polling the nodes one after another, each
    // waiting for its answer, added those half seconds up (n0 seen at 0.5 s, n1 at 1.0 s, n2
    // at 1.5 s). A node counts as folded at the time the first request that saw it folded
    // was sent: status reads `appliedSeq` from SQLite as it starts, so that is within a poll
    // interval of when the fold happened.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant, Option<u64>)>();
    let pollers: Vec<_> = nodes
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, (url, auth, client))| {
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let (url, auth, client, tx) =
                        (url.clone(), auth.clone(), client.clone(), tx.clone());
                    let sent = Instant::now();
                    tokio::spawn(async move {
                        let status = client
                            .get(format!("{url}/api/sync/status"))
                            .header("Authorization", auth)
                            .timeout(Duration::from_secs(2))
                            .send()
                            .await;
                        let applied = match status {
                            Ok(resp) => resp.json::<Value>().await.ok(),
                            Err(_) => None,
                        }
                        .and_then(|v| v["appliedSeq"].as_u64());
                        let _ = tx.send((i, sent, applied));
                    });
                    // Poll interval of the deadline-bounded wait.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    drop(tx);
    let stop = |pollers: Vec<tokio::task::JoinHandle<()>>| {
        for p in pollers {
            p.abort();
        }
    };
    let mut folded_at: Vec<Option<Instant>> = vec![None; nodes.len()];
    let mut missed = vec![0u32; nodes.len()];
    while folded_at.iter().any(Option::is_none) {
        let Ok(Some((i, sent, applied))) = tokio::time::timeout_at(give_up.into(), rx.recv()).await
        else {
            stop(pollers);
            api.abort();
            return None;
        };
        match applied {
            None => missed[i] += 1,
            Some(a) if a >= target => {
                folded_at[i] = Some(folded_at[i].map_or(sent, |t| t.min(sent)));
            }
            Some(_) => {}
        }
    }
    stop(pollers);
    let at: Vec<Instant> = folded_at
        .into_iter()
        .map(|t| t.unwrap_or(acked_at))
        .collect();
    let (last, folded_at) = at
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|(_, t)| *t)
        .unwrap_or((0, acked_at));
    let api_at = if api.is_finished() {
        api.await.ok()
    } else {
        api.abort();
        None
    };
    let from = api_at.map_or(folded_at, |a| a.max(acked_at));
    Some(ProbeResult {
        writable: acked_at - started,
        folded: folded_at.saturating_duration_since(acked_at),
        folded_after_api: folded_at.saturating_duration_since(from),
        last,
        nodes: at
            .iter()
            .zip(missed)
            .map(|(t, m)| (t.saturating_duration_since(acked_at), m))
            .collect(),
    })
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
    pub writable: BTreeMap<&'static str, Vec<Duration>>,
    pub resumes: BTreeMap<&'static str, Vec<Duration>>,
    pub resumes_after_api: BTreeMap<&'static str, Vec<Duration>>,
    pub writes: usize,
    pub acked: usize,
    pub unknown: usize,
    pub elapsed: Duration,
}

/// Nearest-rank percentiles of a list of durations, in seconds (NaN when empty).
fn percentiles(list: Option<&Vec<Duration>>) -> impl Fn(f64) -> f64 {
    let mut d = list.cloned().unwrap_or_default();
    d.sort();
    move |p: f64| {
        let rank = ((d.len() as f64 * p).ceil() as usize).clamp(1, d.len().max(1));
        d.get(rank - 1).map_or(f64::NAN, Duration::as_secs_f64)
    }
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
        for (k, d) in &r.resumes {
            self.resumes.entry(k.name()).or_default().push(*d);
        }
        for (k, d) in &r.resumes_after_api {
            self.resumes_after_api.entry(k.name()).or_default().push(*d);
        }
        for (k, d) in &r.writable {
            self.writable.entry(k.name()).or_default().push(*d);
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
        out.push_str(
            "seconds, p50 / p90 / max:\n\
             fault kind           injected  heal->all caught up    heal->stream writable  \
             writable->all folded   writable+API->all folded\n",
        );
        for (kind, n) in &self.faults {
            let cols = [
                self.recoveries.get(kind),
                self.writable.get(kind),
                self.resumes.get(kind),
                self.resumes_after_api.get(kind),
            ]
            .map(|list| {
                let p = percentiles(list);
                if p(0.5).is_nan() {
                    format!("{:>21}", "-")
                } else {
                    format!("{:>5.2} / {:>5.2} / {:>5.2}", p(0.5), p(0.9), p(1.0))
                }
            });
            out.push_str(&format!(
                "{kind:<20} {n:>9}  {}  {}  {}  {}\n",
                cols[0], cols[1], cols[2], cols[3]
            ));
        }
        out
    }
}
