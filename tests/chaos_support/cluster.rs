//! The system under test: three clustered `nats-server` processes and three `syncbase` nodes
//! on loopback, every node↔server and server↔server connection running through a [`Proxy`]
//! the harness controls, and the process-level faults (kill -9 and restart, SIGSTOP/SIGCONT).
//!
//! Servers advertise neither their client URLs (`no_advertise`) nor a reachable route address
//! (`advertise` points at a closed port), so nobody learns a direct address by gossip and every
//! byte between two processes crosses a proxy. Each ordered server pair has its own proxy
//! (server *i* dials server *j* through `route(i, j)`); either dialing side may carry the
//! route, so a partition between two servers cuts both. Each node is given the addresses of
//! its own three proxies, one per server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::proxy::Proxy;

pub const SERVERS: usize = 3;
pub const NODES: usize = 3;
pub const CLUSTER: &str = "chaos";
pub const EMAIL: &str = "chaos@example.com";
pub const PASSWORD: &str = "chaos-password";

/// A free loopback port, held (bound) until the process that will listen on it starts: the
/// harness's own proxies bind ephemeral ports too, and must not be handed one of these.
fn hold_port() -> (SocketAddr, std::net::TcpListener) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    (l.local_addr().expect("port"), l)
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// One `nats-server` of the cluster.
pub struct Server {
    pub name: String,
    pub client: SocketAddr,
    pub route: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
    /// The ports, held until the first start.
    holds: Vec<std::net::TcpListener>,
}

impl Server {
    fn config(&self, routes: &[SocketAddr]) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let routes: Vec<String> = routes
            .iter()
            .map(|a| q(&format!("nats-route://{a}")))
            .collect();
        format!(
            "server_name: {name}\nlisten: {client}\n\
             # Fast failure detection: a held link is noticed in seconds, not minutes.\n\
             ping_interval: \"1s\"\nping_max: 3\n\
             jetstream {{ store_dir: {store} }}\n\
             cluster {{\n  name: {cluster}\n  listen: {route}\n  no_advertise: true\n  \
             advertise: \"127.0.0.1:1\"\n  routes: [{routes}]\n}}\n",
            name = q(&self.name),
            client = q(&self.client.to_string()),
            store = q(&self.dir.join("jetstream").to_string_lossy()),
            cluster = q(CLUSTER),
            route = q(&self.route.to_string()),
            routes = routes.join(", "),
        )
    }

    fn start(&mut self, nats_bin: &Path) {
        self.holds.clear();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let child = Command::new(nats_bin)
            .arg("-c")
            .arg(self.dir.join("server.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until the client port greets with this server's INFO (a port taken by another
    /// process, or a server that exited, fails the run with its log).
    async fn wait_ready(&mut self) {
        use tokio::io::AsyncBufReadExt;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited at startup ({status}):\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            if let Ok(stream) = tokio::net::TcpStream::connect(self.client).await {
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(stream);
                let read = reader.read_line(&mut line);
                if tokio::time::timeout(Duration::from_secs(1), read)
                    .await
                    .is_ok()
                    && line.contains(&format!("\"server_name\":\"{}\"", self.name))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never served:\n{}",
                self.name,
                self.log_tail(20)
            );
            // Poll interval of the deadline-bounded readiness wait.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The server log's last lines (for failure reports).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("server.log"), lines)
    }
}

/// One `syncbase` node.
pub struct Node {
    pub id: String,
    pub http: SocketAddr,
    pub url: String,
    pub token: String,
    dir: PathBuf,
    nats: Vec<SocketAddr>,
    faults_file: PathBuf,
    child: Option<Child>,
    pub client: reqwest::Client,
    /// The HTTP port, held until the first start.
    hold: Option<std::net::TcpListener>,
}

impl Node {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Writes the node's fault control file (`syncbase::testhooks`).
    pub fn set_faults(&self, faults: Value) {
        let tmp = self.faults_file.with_extension("tmp");
        std::fs::write(&tmp, faults.to_string()).expect("write faults");
        std::fs::rename(&tmp, &self.faults_file).expect("move faults");
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("node.log"), lines)
    }

    /// How many lines of the node's log (all its runs) contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_lines(needle).len()
    }

    /// The lines of the node's log (all its runs) that contain `needle`, oldest first.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("node.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    async fn start(&mut self, bin: &Path) {
        self.hold = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .expect("node log");
        let urls: Vec<String> = self.nats.iter().map(|a| format!("nats://{a}")).collect();
        let mut child = Command::new(bin)
            .args(["serve", "--http", &self.http.to_string(), "--dir"])
            .arg(&self.dir)
            .args(["--nats", &urls.join(","), "--node-id", &self.id])
            .args(["--cluster", CLUSTER, "--sync-timeout", "5"])
            .env("SYNCBASE_TEST_FAULTS", &self.faults_file)
            .env(
                "SYNCBASE_LOG",
                std::env::var("SYNCBASE_CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start syncbase");
        // Ready when it answers HTTP; a node that exits early is a failure of the run.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "node {} exited at startup ({status}):\n{}",
                    self.id,
                    self.log_tail(30)
                );
            }
            let health = self
                .client
                .get(format!("{}/api/health", self.url))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "node {} never answered", self.id);
            // Poll interval of the deadline-bounded readiness wait.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.child = Some(child);
        if self.token.is_empty() {
            self.token = self.login().await;
        }
    }

    async fn login(&self) -> String {
        let resp = self
            .client
            .post(format!(
                "{}/api/collections/_superusers/auth-with-password",
                self.url
            ))
            .json(&json!({"identity": EMAIL, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), StatusCode::OK, "superuser login");
        let body: Value = resp.json().await.expect("login body");
        body["token"].as_str().expect("token").to_string()
    }

    /// GET as the superuser, with a short timeout (a paused node must not hang the harness).
    pub async fn get(&self, path: &str) -> Option<Value> {
        self.get_within(path, Duration::from_secs(3)).await
    }

    /// GET as the superuser with the given timeout (table hashes read every row).
    pub async fn get_within(&self, path: &str, timeout: Duration) -> Option<Value> {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .header("Authorization", &self.token)
            .timeout(timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    pub async fn status(&self) -> Option<Value> {
        self.get("/api/sync/status").await
    }
}

/// Three servers, three nodes and the proxies between them.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub servers: Vec<Server>,
    pub nodes: Vec<Node>,
    /// `routes[(i, j)]`: server `i` dials server `j` through it.
    routes: BTreeMap<(usize, usize), Proxy>,
    /// `links[(n, s)]`: node `n` reaches server `s` through it.
    links: BTreeMap<(usize, usize), Proxy>,
    nats_bin: PathBuf,
    syncbase_bin: PathBuf,
}

impl Cluster {
    /// Starts the servers and prepares the nodes' data directories (with a superuser); the
    /// nodes start with [`Cluster::start_nodes`].
    pub async fn new(syncbase_bin: &Path, nats_bin: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut servers: Vec<Server> = (0..SERVERS)
            .map(|i| {
                let sdir = dir.path().join(format!("s{i}"));
                std::fs::create_dir_all(&sdir).expect("server dir");
                let (client, client_hold) = hold_port();
                let (route, route_hold) = hold_port();
                Server {
                    name: format!("s{i}"),
                    client,
                    route,
                    dir: sdir,
                    child: None,
                    holds: vec![client_hold, route_hold],
                }
            })
            .collect();
        let mut routes = BTreeMap::new();
        for i in 0..SERVERS {
            for (j, to) in servers.iter().enumerate() {
                if i != j {
                    routes.insert((i, j), Proxy::start(to.route).await);
                }
            }
        }
        let mut links = BTreeMap::new();
        for n in 0..NODES {
            for (s, server) in servers.iter().enumerate() {
                links.insert((n, s), Proxy::start(server.client).await);
            }
        }
        for (i, server) in servers.iter_mut().enumerate() {
            let via: Vec<SocketAddr> = (0..SERVERS)
                .filter(|j| *j != i)
                .map(|j| routes[&(i, j)].addr())
                .collect();
            std::fs::write(server.dir.join("server.conf"), server.config(&via))
                .expect("server config");
            server.start(nats_bin);
        }
        for server in &mut servers {
            server.wait_ready().await;
        }
        let nodes = (0..NODES)
            .map(|n| {
                let ndir = dir.path().join(format!("n{n}"));
                std::fs::create_dir_all(&ndir).expect("node dir");
                let (http, hold) = hold_port();
                Node {
                    id: format!("n{n}"),
                    http,
                    url: format!("http://{http}"),
                    token: String::new(),
                    faults_file: ndir.join("faults.json"),
                    dir: ndir,
                    nats: (0..SERVERS).map(|s| links[&(n, s)].addr()).collect(),
                    child: None,
                    client: reqwest::Client::new(),
                    hold: Some(hold),
                }
            })
            .collect();
        let cluster = Cluster {
            dir,
            servers,
            nodes,
            routes,
            links,
            nats_bin: nats_bin.to_path_buf(),
            syncbase_bin: syncbase_bin.to_path_buf(),
        };
        for n in &cluster.nodes {
            let out = std::process::Command::new(syncbase_bin)
                .args(["superuser", "upsert", EMAIL, PASSWORD, "--dir"])
                .arg(&n.dir)
                .env("SYNCBASE_LOG", "warn")
                .output()
                .expect("superuser upsert");
            assert!(out.status.success(), "superuser upsert failed");
        }
        cluster
    }

    pub async fn start_nodes(&mut self) {
        let bin = self.syncbase_bin.clone();
        futures::future::join_all(self.nodes.iter_mut().map(|n| n.start(&bin))).await;
    }

    /// Keeps the run's directory (logs, data) after the cluster is dropped.
    pub fn keep(&mut self) -> PathBuf {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = std::mem::replace(&mut self.dir, dir).keep();
        // The processes still use the kept paths; the new (empty) dir is only a placeholder.
        kept
    }

    /// The servers' real client URLs (the harness's own view of the log, past the proxies).
    pub fn direct_urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://{}", s.client))
            .collect()
    }

    pub fn route(&self, from: usize, to: usize) -> &Proxy {
        &self.routes[&(from, to)]
    }

    pub fn link(&self, node: usize, server: usize) -> &Proxy {
        &self.links[&(node, server)]
    }

    /// Both proxies that may carry the route between servers `a` and `b`.
    pub fn routes_between(&self, a: usize, b: usize) -> [&Proxy; 2] {
        [self.route(a, b), self.route(b, a)]
    }

    pub fn all_proxies(&self) -> impl Iterator<Item = &Proxy> {
        self.routes.values().chain(self.links.values())
    }

    pub fn heal_network(&self) {
        for p in self.all_proxies() {
            p.heal();
        }
    }

    pub async fn start_node(&mut self, n: usize) {
        let bin = self.syncbase_bin.clone();
        self.nodes[n].start(&bin).await;
    }

    /// kill -9: no shutdown, no checkpoint.
    pub async fn kill_node(&mut self, n: usize) {
        if let Some(mut child) = self.nodes[n].child.take() {
            let _ = child.kill().await;
        }
    }

    pub async fn kill_server(&mut self, s: usize) {
        if let Some(mut child) = self.servers[s].child.take() {
            let _ = child.kill().await;
        }
    }

    pub fn start_server(&mut self, s: usize) {
        let bin = self.nats_bin.clone();
        self.servers[s].start(&bin);
    }

    pub fn pause_node(&self, n: usize, stop: bool) {
        if let Some(pid) = self.nodes[n].pid() {
            signal(pid, pause_signal(stop));
        }
    }

    pub fn pause_server(&self, s: usize, stop: bool) {
        if let Some(pid) = self.servers[s].pid() {
            signal(pid, pause_signal(stop));
        }
    }

    /// Appends a timestamped line to the run's `harness.log` (the same clock and format as the
    /// nodes' logs), so a kept run's faults can be lined up with what the nodes logged.
    pub fn note(&self, what: &str) {
        use std::io::Write;
        let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("harness.log"))
        {
            let _ = writeln!(f, "{at} {what}");
        }
    }

    /// Every node's and server's log tail, for a failure report.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("--- node {} log\n{}\n", n.id, n.log_tail(25)));
        }
        for s in &self.servers {
            out.push_str(&format!("--- server {} log\n{}\n", s.name, s.log_tail(15)));
        }
        out
    }
}

fn pause_signal(stop: bool) -> rustix::process::Signal {
    if stop {
        rustix::process::Signal::STOP
    } else {
        rustix::process::Signal::CONT
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
