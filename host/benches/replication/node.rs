//! One `syncbase serve` process of the benchmark's cluster: started on a data dir with
//! `--nats URL --node-id X --cluster bench`, stopped with SIGTERM, restarted on the same dir;
//! its replication status; and the waits on the cluster's state the phases need.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hyper::Method;
use serde_json::Value;

use crate::support::{
    Conn, SHUTDOWN_DEADLINE, SUPERUSER_EMAIL, SUPERUSER_PASSWORD, cpu_seconds, superuser_token,
    wait_healthy,
};

/// The `--cluster` every node is started with (stream `SYNCBASE_bench`).
pub const CLUSTER: &str = "bench";

/// A node process and what it takes to restart it.
pub struct Node {
    pub id: &'static str,
    bin: PathBuf,
    dir: PathBuf,
    nats_url: String,
    pub addr: SocketAddr,
    pub token: String,
    child: Option<Child>,
}

/// The replication figures of `GET /api/sync/status` the bench reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    pub applied_seq: u64,
    pub stream_seq: u64,
    pub outbox_backlog: u64,
    pub pending_overlay: u64,
    pub dead_letters: u64,
}

impl Node {
    /// Creates the bench superuser in `root/<id>` and starts the node there.
    async fn create_inner(
        bin: &Path,
        root: &Path,
        id: &'static str,
        nats_url: String,
    ) -> Result<Node> {
        let dir = root.join(id);
        let status = tokio::process::Command::new(bin)
            .args(["superuser", "upsert", SUPERUSER_EMAIL, SUPERUSER_PASSWORD])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", bin.display()))?;
        ensure!(
            status.success(),
            "superuser upsert on node {id} failed: {status}"
        );
        let mut node = Node {
            id,
            bin: bin.to_owned(),
            dir,
            nats_url,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            child: None,
        };
        node.start().await?;
        Ok(node)
    }

    /// [`Node::create`], returning once the node serves HTTP, before its log is open or
    /// caught up (a bench timing a bootstrap watches `/api/sync/ready` itself).
    pub async fn create_serving(
        bin: &Path,
        root: &Path,
        id: &'static str,
        nats_url: String,
    ) -> Result<Node> {
        Self::create_inner(bin, root, id, nats_url).await
    }

    /// Creates the node's data directory with the bench superuser, starts it, and returns
    /// once `/api/sync/ready` answers 200: a fresh node serves before its log is open
    /// (creating an R3 stream takes an election) and before it caught up.
    pub async fn create(
        bin: &Path,
        root: &Path,
        id: &'static str,
        nats_url: String,
    ) -> Result<Node> {
        let node = Self::create_inner(bin, root, id, nats_url).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while node
            .call(Method::GET, "/api/sync/ready", None)
            .await
            .is_err()
        {
            ensure!(Instant::now() < deadline, "node {id} not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await; // polling readiness
        }
        Ok(node)
    }

    /// Starts (or restarts) the process on its data dir and a fresh port; returns once it
    /// answers `/api/health` and a superuser token is in hand.
    pub async fn start(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "node {} is already running", self.id);
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))?;
        let child = Command::new(&self.bin)
            .args(["serve", "--http", &self.addr.to_string(), "--dir"])
            .arg(&self.dir)
            .args(["--nats", &self.nats_url, "--node-id", self.id])
            .args(["--cluster", CLUSTER])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting node {}", self.id))?;
        self.child = Some(child);
        if let Err(e) = wait_healthy(self.addr).await {
            let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
            bail!("node {}: {e}; stderr:\n{log}", self.id);
        }
        self.token = superuser_token(self.addr).await?;
        Ok(())
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within the deadline.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_raw(child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // polling an exit
        }
        eprintln!(
            "node {} ignored SIGTERM for {SHUTDOWN_DEADLINE:?}; killing",
            self.id
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// User plus system CPU seconds the running process has used.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.child.as_ref().context("node not running")?.id())
    }

    /// The node's replication status.
    pub async fn status(&self) -> Result<Status> {
        let mut conn = Conn::connect(self.addr).await?;
        let s = conn
            .json(Method::GET, "/api/sync/status", Some(&self.token), None)
            .await
            .with_context(|| format!("status of node {}", self.id))?;
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        Ok(Status {
            applied_seq: n("appliedSeq"),
            stream_seq: n("streamSeq"),
            outbox_backlog: n("outboxBacklog"),
            pending_overlay: n("pendingOverlay"),
            dead_letters: n("deadLetters"),
        })
    }

    /// A counter or gauge from `GET /metrics` (e.g. `apply_batches_total`).
    pub async fn metric(&self, name: &str) -> Result<u64> {
        let mut conn = Conn::connect(self.addr).await?;
        let (status, body) = conn.send(Method::GET, "/metrics", None, None).await?;
        ensure!(
            status.is_success(),
            "GET /metrics on node {} -> {status}",
            self.id
        );
        let text = String::from_utf8_lossy(&body);
        let prefix = format!("syncbase_{name}{{");
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in node {}'s /metrics", self.id))
    }

    /// Sends JSON as the superuser, expects 200, returns the answer.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut conn = Conn::connect(self.addr).await?;
        conn.json(method, path, Some(&self.token), body)
            .await
            .with_context(|| format!("on node {}", self.id))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until every given node has published its outbox and folded the whole stream (and
/// they agree on its end); returns that last sequence.
pub async fn quiesce(nodes: &[&Node], deadline: Duration) -> Result<u64> {
    let until = Instant::now() + deadline;
    loop {
        let mut all = Vec::with_capacity(nodes.len());
        for n in nodes {
            all.push(n.status().await?);
        }
        let end = all.iter().map(|s| s.stream_seq).max().unwrap_or(0);
        if all.iter().all(|s| {
            s.outbox_backlog == 0
                && s.pending_overlay == 0
                && s.applied_seq == end
                && s.stream_seq == end
        }) {
            return Ok(end);
        }
        if Instant::now() > until {
            let ids: Vec<&str> = nodes.iter().map(|n| n.id).collect();
            bail!("nodes {ids:?} did not quiesce within {deadline:?}: {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval of a bounded wait
    }
}

/// Waits until `node` has the collection `name` (schema changes replicate through the log).
pub async fn wait_collection(node: &Node, name: &str, deadline: Duration) -> Result<()> {
    let until = Instant::now() + deadline;
    let path = format!("/api/collections/{name}");
    while node.call(Method::GET, &path, None).await.is_err() {
        if Instant::now() > until {
            bail!("collection {name} never reached node {}", node.id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval of a bounded wait
    }
    Ok(())
}
