//! Test harness for NATS: real `nats-server` processes, supervised by `syncbase::nats`, on
//! free ports in temp dirs. One server, or a cluster clustered by routes.
#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use syncbase::nats::{ClusterOptions, EmbeddedNats, EmbeddedOptions};
use syncbase::replication::{ConnectOptions, Log, StreamOptions};

/// A port nobody in this process was handed before, free at the time of asking.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        let mut given = GIVEN.lock().expect("port set");
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Options for one server of a test cluster.
pub fn options(
    dir: PathBuf,
    node: &str,
    client: u16,
    cluster: Option<ClusterOptions>,
) -> EmbeddedOptions {
    let mut o = EmbeddedOptions::new(dir, node, addr(client));
    o.cluster = cluster;
    o.restart_backoff = Duration::from_millis(50);
    o.max_restart_backoff = Duration::from_millis(500);
    o
}

/// N supervised servers clustered by routes (or one standalone server when `n == 1`).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub opts: Vec<EmbeddedOptions>,
    pub servers: Vec<Option<EmbeddedNats>>,
    pub name: String,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let name = "t".to_string();
        let opts: Vec<EmbeddedOptions> = (0..n)
            .map(|i| {
                let cluster = (n > 1).then(|| ClusterOptions {
                    name: name.clone(),
                    listen: addr(route_ports[i]),
                    join: (0..n)
                        .filter(|j| *j != i)
                        .map(|j| format!("127.0.0.1:{}", route_ports[j]))
                        .collect(),
                });
                options(
                    dir.path().join(format!("n{i}")),
                    &format!("n{i}"),
                    client_ports[i],
                    cluster,
                )
            })
            .collect();
        let started =
            futures::future::join_all(opts.iter().cloned().map(EmbeddedNats::start)).await;
        let servers = started
            .into_iter()
            .map(|r| Some(r.expect("start nats-server")))
            .collect();
        Cluster {
            dir,
            opts,
            servers,
            name,
        }
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.opts[i].client_listen)
    }

    pub fn urls(&self) -> Vec<String> {
        (0..self.opts.len()).map(|i| self.url(i)).collect()
    }

    pub fn server(&self, i: usize) -> &EmbeddedNats {
        self.servers[i].as_ref().expect("server running")
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            s.stop().await.expect("stop nats-server");
        }
    }

    pub async fn restart(&mut self, i: usize) {
        self.stop(i).await;
        let s = EmbeddedNats::start(self.opts[i].clone())
            .await
            .expect("restart nats-server");
        self.servers[i] = Some(s);
    }

    /// A log connection through the given servers (the first is tried first).
    pub async fn log(&self, via: &[usize], replicas: usize) -> Log {
        let conn = ConnectOptions {
            urls: via.iter().map(|i| self.url(*i)).collect(),
            name: Some("syncbase-test".into()),
            ..Default::default()
        };
        let mut stream = StreamOptions::new(self.name.clone());
        stream.replicas = Some(replicas);
        stream.ready_timeout = Duration::from_secs(60);
        within(90, "the log to open", Log::connect(&conn, &stream))
            .await
            .expect("open log")
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.servers.len() {
            self.stop(i).await;
        }
    }
}

/// A `nats-server` started from a config file with JetStream and the given extra
/// configuration (TLS, authorization, accounts), killed on drop.
pub struct ConfiguredServer {
    url_port: u16,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl ConfiguredServer {
    pub async fn start(extra: &str) -> ConfiguredServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let q = |p: &std::path::Path| serde_json::Value::from(p.to_string_lossy()).to_string();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {} }}\n{extra}\n",
            q(&dir.path().join("js"))
        );
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, config).expect("config");
        let bin = syncbase::nats::binary::find(None).expect("nats-server on PATH");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                panic!("nats-server exited ({st}): {}", tail.join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
            // Poll interval of the deadline-bounded start-up wait.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ConfiguredServer {
            url_port: port,
            _child: child,
            _dir: dir,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.url_port)
    }
}

/// Connects to `url` as user `a` (password `pw-for-a`, as the tests' limited accounts define
/// it) and takes a durable consumer on `stream`, so an account limited to that many consumers
/// has none left for a node. Returns the stream.
pub async fn hold_a_consumer(url: &str, stream: &str) -> async_nats::jetstream::stream::Stream {
    let nats = async_nats::ConnectOptions::with_user_and_password("a".into(), "pw-for-a".into())
        .connect(url)
        .await
        .expect("connect");
    let stream = async_nats::jetstream::new(nats)
        .get_stream(stream)
        .await
        .expect("stream");
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("held_by_the_test".into()),
            ..Default::default()
        })
        .await
        .expect("the test's consumer");
    stream
}
