//! Convergence under faults: seeded runs of the chaos harness (`chaos_support`) against real
//! `syncbase` and `nats-server` processes with partitions, kills, pauses, latency, a full disk
//! and clock skew. CI runs the regression seeds and then fresh seeds until the time budget
//! (`SYNCBASE_CHAOS_BUDGET` seconds, default 300) is spent; `SYNCBASE_CHAOS_SEED=N` replays one
//! seed; `scripts/chaos --seeds N` is the long mode.

mod chaos_support;
mod support;

use std::time::{Duration, Instant};

use chaos_support::checks::{LogView, wait_caught_up};
use chaos_support::cluster::Cluster;
use chaos_support::faults::Kind;
use chaos_support::proxy::Proxy;
use chaos_support::workload;
use chaos_support::{Options, SeedReport, Summary, replay_command, run_seed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seeds that once found a bug, with the fault count they ran with; each stays as a
/// regression test of its fix.
/// - 2044: after a paused server resumed, a node's consumer reused the server-side consumer
///   on the word of a leader that had been cut off, and waited 60 s for a redelivery
///   (`replication/consumer.rs`: recreate after trouble; probe the stream when a pull is idle).
/// - 4197: a node whose clock was set back restarted before its own published write was
///   folded, and gave its next write on that record an HLC below the write it replaced
///   (`store/sync/mod.rs`: pending writes keep their HLC; a write observes its base's).
/// - 6171: a node restarted while the stream's group had no leader was answered by a replica
///   behind, took the shorter log for another cluster's and stopped (`snapshot/bootstrap.rs`:
///   a stream that ends before the node's position is believed only when that lasts 20 s).
const REGRESSION_SEEDS: &[(u64, usize)] = &[(2044, 4), (4197, 4), (6171, 4)];

fn options() -> Options {
    Options {
        // A copy of the binary can run a long campaign while the tree is rebuilt.
        syncbase_bin: std::env::var_os("SYNCBASE_CHAOS_BIN")
            .map(Into::into)
            .unwrap_or_else(|| support::bin().into()),
        nats_bin: syncbase::nats::binary::find(None).expect("nats-server on PATH"),
        components: ["lww", "field-merge", "counter"]
            .into_iter()
            .map(|name| (name, support::shipped_component(name)))
            .collect(),
        faults: env_or("SYNCBASE_CHAOS_FAULTS", 3) as usize,
        kinds: std::env::var("SYNCBASE_CHAOS_KINDS")
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.is_empty())
            .map(|k| Kind::from_name(k).unwrap_or_else(|| panic!("unknown fault kind {k}")))
            .collect(),
        catch_up_limit: Duration::from_secs(60),
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(report: &SeedReport) {
    eprintln!(
        "chaos seed {}: {} in {:.1} s, {} writes ({} acked, {} unknown), faults: {}; caught up after {}; writable -> folded after {}",
        report.seed,
        if report.passed() { "passed" } else { "FAILED" },
        report.elapsed.as_secs_f64(),
        report.writes,
        report.acked,
        report.unknown,
        report
            .faults
            .iter()
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        report
            .recoveries
            .iter()
            .map(|(_, d)| format!("{:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        report
            .resumes
            .iter()
            .map(|(k, d)| format!("{} {:.2} s", k.name(), d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for slow in &report.slow_folds {
        eprintln!("chaos seed {}: slow fold: {slow}", report.seed);
    }
}

fn fail(report: &SeedReport, opts: &Options) -> ! {
    panic!(
        "chaos seed {} failed:\n  {}\n{}\nreplay: {}",
        report.seed,
        report.failures.join("\n  "),
        report.logs,
        replay_command(report.seed, opts)
    );
}

fn write_summary(summary: &Summary) {
    if let Ok(path) = std::env::var("SYNCBASE_CHAOS_SUMMARY") {
        std::fs::write(&path, summary.render()).expect("write the summary");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_converge_without_losing_acknowledged_writes() {
    let opts = options();
    if let Ok(seed) = std::env::var("SYNCBASE_CHAOS_SEED") {
        let report = run_seed(
            seed.parse().expect("SYNCBASE_CHAOS_SEED is a number"),
            &opts,
        )
        .await;
        print(&report);
        let mut summary = Summary::default();
        summary.add(&report);
        write_summary(&summary);
        if !report.passed() {
            fail(&report, &opts);
        }
        return;
    }
    let budget = Duration::from_secs(env_or("SYNCBASE_CHAOS_BUDGET", 300));
    let count = std::env::var("SYNCBASE_CHAOS_SEEDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let first = env_or(
        "SYNCBASE_CHAOS_FIRST",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    );
    let start = Instant::now();
    let mut summary = Summary::default();
    let seeds = REGRESSION_SEEDS
        .iter()
        .map(|&(seed, faults)| (seed, faults))
        .chain((first..).map(|seed| (seed, opts.faults)));
    for (i, (seed, faults)) in seeds.enumerate() {
        let done = match count {
            Some(n) => i as u64 >= n + REGRESSION_SEEDS.len() as u64,
            // Stop when another seed would likely overrun the budget.
            None => {
                let per_seed = start.elapsed() / (i.max(1) as u32);
                i >= REGRESSION_SEEDS.len() && start.elapsed() + per_seed > budget
            }
        };
        if done {
            break;
        }
        let seed_opts = Options {
            faults,
            ..opts.clone()
        };
        let report = run_seed(seed, &seed_opts).await;
        print(&report);
        summary.add(&report);
        write_summary(&summary);
        if !report.passed() {
            eprintln!("{}", summary.render());
            fail(&report, &seed_opts);
        }
    }
    eprintln!("{}", summary.render());
    assert!(!summary.seeds.is_empty(), "no seed ran");
}

/// The proxy itself: bytes pass, a cut direction holds them until healed (in order), a delay
/// adds latency, and a refused link closes connections.
#[tokio::test]
async fn the_proxy_cuts_delays_heals_and_refuses() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(upstream).await;
    let mut conn = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    conn.write_all(b"hello").await.expect("write");
    conn.read_exact(&mut buf[..5]).await.expect("echo");
    assert_eq!(&buf[..5], b"hello");

    // Cut the way back: the echo is held, not lost.
    proxy.set(|s| s.back.cut = true);
    conn.write_all(b"held").await.expect("write");
    let held = tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await;
    assert!(held.is_err(), "a cut direction must deliver nothing");
    proxy.heal();
    conn.read_exact(&mut buf[..4])
        .await
        .expect("delivered after heal");
    assert_eq!(&buf[..4], b"held");

    // A delay holds each chunk at least that long.
    proxy.set(|s| s.out.delay = Duration::from_millis(200));
    let sent = Instant::now();
    conn.write_all(b"slow").await.expect("write");
    conn.read_exact(&mut buf[..4]).await.expect("echo");
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "{:?}",
        sent.elapsed()
    );
    proxy.heal();

    // Refusing closes the open connection and turns new ones away.
    proxy.set(|s| s.refused = true);
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("closed promptly");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let mut again = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    let n = tokio::time::timeout(Duration::from_secs(5), again.read(&mut buf))
        .await
        .expect("closed promptly");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

/// A node attached to a server that is cut off from its peers (a minority of one) moves to
/// another server and publishes while the cut lasts, and never goes back to the cut-off server:
/// the server's own "JetStream unavailable" answers move it within a second or two
/// (`sync/health.rs`), and a reconnect avoids the server it leaves (`replication/servers.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_server_cut_off_from_its_peers_moves_away_and_publishes_meanwhile() {
    let (cluster, _log) = caught_up_cluster().await;
    let node = &cluster.nodes[0];
    let server_of = || async {
        node.status().await.expect("status")["nats"]["server"]
            .as_str()
            .expect("the connected server's name")
            .to_string()
    };
    let on = server_of().await;
    let cut = cluster
        .servers
        .iter()
        .position(|s| s.name == on)
        .expect("a server of the cluster");
    let cut_link = format!("127.0.0.1:{}", cluster.link(0, cut).addr().port());
    let moves_before = node.log_count(RECONNECT_LINE);
    for other in (0..cluster.servers.len()).filter(|o| *o != cut) {
        for p in cluster.routes_between(cut, other) {
            p.set(|st| {
                st.out.cut = true;
                st.back.cut = true;
            });
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, body) = publish(node, "cut", &format!("w{attempt}")).await;
        if status.is_some_and(|s| s < 300) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write was published within 30 s of {on} being cut off: {status:?} {body}"
        );
        // Retry interval while the node is still on the cut-off server.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now_on = server_of().await;
    assert_ne!(now_on, on, "the write was published, so the node left {on}");
    let back: Vec<String> = node
        .log_lines(RECONNECT_LINE)
        .into_iter()
        .skip(moves_before)
        .filter(|l| l.contains(&format!("to=nats://{cut_link}")))
        .collect();
    assert!(
        back.is_empty(),
        "the node went back to the cut-off server {on}: {back:?}"
    );
    cluster.heal_network();
}

/// A node that is behind folds the log while no NATS server can reach another: every
/// JetStream API call (consumer create, message get) is then refused as "temporarily
/// unavailable" (no meta leader), the same answer a whole cluster gives for seconds after a
/// paused meta leader returns, and the node reads the events from its server's replica of the
/// stream (a direct get; `replication/consumer.rs::read_next`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_folds_from_a_replica_while_no_server_can_reach_another() {
    let (cluster, log) = caught_up_cluster().await;
    let servers = cluster.servers.len();
    // n2 loses NATS; n0 writes on.
    for s in 0..servers {
        cluster.link(2, s).set(|st| st.refused = true);
    }
    let n0 = &cluster.nodes[0];
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, body) = publish(n0, "behind", &format!("w{i}")).await;
        assert!(status.is_some_and(|s| s < 300), "{status:?} {body}");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    let target = log.last_seq().await.expect("the stream's last sequence");
    // Every replica holds the writes before the servers lose each other.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.replicas_current().await {
        assert!(Instant::now() < deadline, "the replicas never caught up");
        // Poll interval of the bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for a in 0..servers {
        for b in (0..servers).filter(|b| *b != a) {
            cluster.route(a, b).set(|st| {
                st.out.cut = true;
                st.back.cut = true;
            });
        }
    }
    for s in 0..servers {
        cluster.link(2, s).heal();
    }
    let n2 = &cluster.nodes[2];
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let applied = n2
            .status()
            .await
            .and_then(|s| s["appliedSeq"].as_u64())
            .unwrap_or(0);
        if applied >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 folded through {applied} of {target} while the servers were cut apart"
        );
        // Poll interval of the bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = n2.status().await.expect("status");
    assert!(
        status["readFromStream"].as_u64().unwrap_or(0) > 0,
        "the events were read from the stream: {status}"
    );
    for id in &ids {
        let (_, code, body) = workload::send(
            &n2.client,
            &format!("{}/api/collections/lww/records/{id}", n2.url),
            &n2.token,
            reqwest::Method::GET,
            None,
        )
        .await;
        assert_eq!(code, Some(200), "n2 serves {id}: {body}");
    }
    cluster.heal_network();
}

/// A fresh cluster of the chaos harness (three servers, three nodes, the workload's collections
/// and plugins), every node caught up, and the harness's own view of the log.
async fn caught_up_cluster() -> (Cluster, LogView) {
    let opts = options();
    let mut cluster = Cluster::new(&opts.syncbase_bin, &opts.nats_bin).await;
    let log = LogView::connect(&cluster.direct_urls()).await;
    log.create_stream().await.expect("the stream");
    cluster.start_nodes().await;
    if let Err(e) = workload::setup(&cluster, &opts.components).await {
        panic!("{e}\n{}", cluster.logs());
    }
    wait_caught_up(&cluster, &log, Duration::from_secs(60))
        .await
        .expect("the cluster caught up");
    (cluster, log)
}

/// Creates an `lww` record through `node` with `?sync=published`: the status and the body.
async fn publish(
    node: &chaos_support::cluster::Node,
    k: &str,
    v: &str,
) -> (Option<u16>, serde_json::Value) {
    let (_, status, body) = workload::send(
        &node.client,
        &format!("{}/api/collections/lww/records?sync=published", node.url),
        &node.token,
        reqwest::Method::POST,
        Some(serde_json::json!({"k": k, "v": v})),
    )
    .await;
    (status, body)
}

/// What a node logs when it reconnects to a server of its choosing.
const RECONNECT_LINE: &str = "reconnecting to another server";

/// The harness's full disk (`--test-faults`, `maxPageSlack`) makes writes fail with a server
/// error and keeps what was written; lifting it lets writes succeed again.
#[tokio::test]
async fn the_test_fault_hook_fills_the_disk_and_lifting_it_heals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = tmp.path().join("faults.json");
    let faults_arg = faults.to_string_lossy().into_owned();
    let node = support::Node::start_with(&["--test-faults", &faults_arg]).await;
    node.create_collection(support::posts_def()).await;
    let write = |n: usize| {
        let node = &node;
        async move {
            node.post(
                "/api/collections/posts/records",
                serde_json::json!({"title": "x".repeat(2000), "n": n}),
            )
            .await
            .0
        }
    };
    assert!(write(0).await.is_success());
    std::fs::write(&faults, r#"{"maxPageSlack": 0}"#).expect("write faults");
    // The node polls the file: wait until a write fails (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 1;
    loop {
        let status = write(n).await;
        n += 1;
        if status.is_server_error() {
            break;
        }
        assert!(Instant::now() < deadline, "the disk never filled");
        // Poll interval of the bounded wait for the node to read its fault file.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = node.ids("posts", "perPage=500").await.len();
    std::fs::write(&faults, r#"{"maxPageSlack": null}"#).expect("write faults");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !write(n).await.is_success() {
        assert!(Instant::now() < deadline, "the disk never emptied");
        // Poll interval of the bounded wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        node.ids("posts", "perPage=500").await.len() > before,
        "writes succeed again"
    );
}
