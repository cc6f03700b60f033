//! The seeded workload: what the cluster holds before the faults start, the clients that write
//! while they happen, and the ledger of every write and what its client was told.
//!
//! Three collections, one per shipped resolver: `lww` (the built-in last-writer-wins), `merge`
//! (the `field-merge` plugin, swapped for the `lww` plugin and back during the run) and
//! `counters` (the `counter` plugin on `likes`). Each has a hot set of records that every
//! client writes to, so writes conflict; `lww` also gets creates and deletes of cold records.
//! Writes use each write concern. Every write carries a unique token, so the checks can find
//! it in the log. A client's sequence of operations comes from the seed alone; how they
//! interleave with each other and with the faults is up to the machine.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::cluster::{Cluster, NODES};

pub const HOT_LWW: usize = 3;
pub const HOT_MERGE: usize = 2;
pub const HOT_COUNTERS: usize = 2;

pub fn hot_id(prefix: &str, i: usize) -> String {
    // PocketBase ids: 15 characters of [a-z0-9].
    format!("{prefix}{i:0>width$}", width = 15 - prefix.len())
}

/// What the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, or a write concern that timed out after the local commit: the write must survive.
    Acked,
    /// No answer, or an error that does not say whether it committed.
    Unknown,
    /// Refused before committing (4xx, connection refused).
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Update,
    Increment,
    Delete,
}

/// One write a client made.
#[derive(Debug, Clone)]
pub struct Write {
    pub node: usize,
    pub coll: &'static str,
    pub id: String,
    pub kind: Kind,
    pub token: String,
    pub concern: &'static str,
    pub outcome: Outcome,
    pub status: Option<u16>,
}

/// Every write of the run, shared by the clients.
#[derive(Default, Clone)]
pub struct Ledger {
    pub writes: Arc<Mutex<Vec<Write>>>,
}

impl Ledger {
    pub fn push(&self, w: Write) {
        self.writes.lock().push(w);
    }

    pub fn snapshot(&self) -> Vec<Write> {
        self.writes.lock().clone()
    }
}

/// Sends one request and classifies the answer.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    method: Method,
    body: Option<Value>,
) -> (Outcome, Option<u16>, Value) {
    send_within(client, url, token, method, body, Duration::from_secs(8)).await
}

/// [`send`] with its own timeout.
pub async fn send_within(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    method: Method,
    body: Option<Value>,
    timeout: Duration,
) -> (Outcome, Option<u16>, Value) {
    let mut req = client
        .request(method, url)
        .header("Authorization", token)
        .timeout(timeout);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Err(e) if e.is_connect() => (Outcome::Refused, None, Value::Null),
        Err(_) => (Outcome::Unknown, None, Value::Null),
        Ok(resp) => {
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let committed = body["message"]
                .as_str()
                .is_some_and(|m| m.contains("committed on this node"));
            let outcome = if status.is_success() || committed {
                Outcome::Acked
            } else if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT {
                Outcome::Refused
            } else {
                Outcome::Unknown
            };
            (outcome, Some(status.as_u16()), body)
        }
    }
}

fn text(name: &str) -> Value {
    json!({"name": name, "type": "text"})
}

fn open_rules(name: &str, fields: Vec<Value>) -> Value {
    json!({
        "name": name,
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": fields,
    })
}

/// Collections, plugins and hot records, made on node 0 before any fault. A step that fails
/// fails the seed (with every process's log), naming the step.
pub async fn setup(
    cluster: &Cluster,
    components: &[(&str, std::path::PathBuf)],
) -> Result<(), String> {
    let n0 = &cluster.nodes[0];
    let call = |method: Method, path: String, body: Value| {
        let url = format!("{}{path}", n0.url);
        async move {
            // Before any fault, on a fresh cluster: a plugin bind compiles its component on
            // every node, which a busy machine can stretch well past a workload write's 8 s.
            let (outcome, status, body) = send_within(
                &n0.client,
                &url,
                &n0.token,
                method,
                Some(body),
                Duration::from_secs(60),
            )
            .await;
            if outcome == Outcome::Acked {
                Ok(body)
            } else {
                Err(format!("setup {path}: {outcome:?} {status:?} {body}"))
            }
        }
    };
    for def in [
        open_rules(
            "lww",
            vec![text("k"), text("v"), json!({"name": "n", "type": "number"})],
        ),
        open_rules("merge", vec![text("a"), text("b"), text("c")]),
        open_rules(
            "counters",
            vec![json!({"name": "likes", "type": "number"}), text("last")],
        ),
    ] {
        call(Method::POST, "/api/collections".into(), def).await?;
    }
    for (name, path) in components {
        let bytes = std::fs::read(path).expect("read component");
        // A cluster this young may still be electing its plugin bucket's leader: the upload
        // then answers 503 (nothing stored), which a client retries.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let resp = n0
                .client
                .post(format!("{}/api/plugins?name={name}", n0.url))
                .header("Authorization", &n0.token)
                .header("Content-Type", "application/wasm")
                .body(bytes.clone())
                .send()
                .await
                .map_err(|e| format!("setup: uploading {name}: {e}"))?;
            let status = resp.status();
            if status == StatusCode::SERVICE_UNAVAILABLE && tokio::time::Instant::now() < deadline {
                // Poll interval of a deadline-bounded retry, not a wait for an event.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!("setup: uploading {name}: {status} {body}"));
            }
            break;
        }
    }
    call(
        Method::POST,
        "/api/plugins/field-merge/bind".into(),
        json!({"as": "resolver", "collection": "merge"}),
    )
    .await?;
    call(
        Method::POST,
        "/api/plugins/counter/bind".into(),
        json!({"as": "resolver", "collection": "counters", "config": "{\"fields\":[\"likes\"]}"}),
    )
    .await?;
    for i in 0..HOT_LWW {
        let body = json!({"id": hot_id("h", i), "k": "hot", "v": "init", "n": 0});
        call(
            Method::POST,
            "/api/collections/lww/records?sync=applied".into(),
            body,
        )
        .await?;
    }
    for i in 0..HOT_MERGE {
        let body = json!({"id": hot_id("m", i), "a": "init", "b": "init", "c": "init"});
        call(
            Method::POST,
            "/api/collections/merge/records?sync=applied".into(),
            body,
        )
        .await?;
    }
    for i in 0..HOT_COUNTERS {
        let body = json!({"id": hot_id("k", i), "likes": 0, "last": "init"});
        call(
            Method::POST,
            "/api/collections/counters/records?sync=applied".into(),
            body,
        )
        .await?;
    }
    Ok(())
}

/// One client writing to one node until `stop`, pausing while `running` is false.
pub struct Client {
    pub node: usize,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
    pub rng: StdRng,
    pub seed: u64,
    pub ledger: Ledger,
    created: Vec<String>,
    n: u64,
}

impl Client {
    pub fn new(cluster: &Cluster, node: usize, seed: u64, ledger: Ledger) -> Client {
        let n = &cluster.nodes[node];
        Client {
            node,
            url: n.url.clone(),
            token: n.token.clone(),
            http: n.client.clone(),
            rng: StdRng::seed_from_u64(
                seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(node as u64 + 1)),
            ),
            seed,
            ledger,
            created: Vec::new(),
            n: 0,
        }
    }

    /// Writes until `stop` turns true.
    pub async fn run(mut self, mut running: watch::Receiver<bool>, stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            if !*running.borrow_and_update() {
                tokio::select! {
                    _ = running.changed() => {}
                    // Re-check `stop` now and then while paused.
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            self.step().await;
            // Pacing: three clients at ~40 writes/s each leave the 2-core machine room for
            // six servers' worth of recovery work.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn step(&mut self) {
        self.n += 1;
        let token = format!("t{}-{}-{}", self.seed, self.node, self.n);
        let concern = match self.rng.random_range(0..100) {
            0..80 => "",
            80..92 => "published",
            _ => "applied",
        };
        let mut roll = self.rng.random_range(0..100);
        if roll >= 85 && self.created.is_empty() {
            roll = 70;
        }
        let (coll, id, kind, method, body) = match roll {
            0..35 => {
                let id = hot_id("h", self.rng.random_range(0..HOT_LWW));
                let n = self.rng.random_range(0..1000);
                (
                    "lww",
                    id,
                    Kind::Update,
                    Method::PATCH,
                    Some(json!({"v": token, "n": n})),
                )
            }
            35..50 => {
                let id = hot_id("m", self.rng.random_range(0..HOT_MERGE));
                let field = ["a", "b", "c"][self.rng.random_range(0..3)];
                (
                    "merge",
                    id,
                    Kind::Update,
                    Method::PATCH,
                    Some(json!({field: token})),
                )
            }
            50..70 => {
                let id = hot_id("k", self.rng.random_range(0..HOT_COUNTERS));
                let body = json!({"likes+": 1, "last": token});
                ("counters", id, Kind::Increment, Method::PATCH, Some(body))
            }
            70..85 => {
                let id = format!("c{}{:0>13}", self.node, self.n);
                self.created.push(id.clone());
                let body = json!({"id": id, "k": "cold", "v": token});
                ("lww", id, Kind::Create, Method::POST, Some(body))
            }
            85..95 => {
                let id = self.created[self.rng.random_range(0..self.created.len())].clone();
                (
                    "lww",
                    id,
                    Kind::Update,
                    Method::PATCH,
                    Some(json!({"v": token})),
                )
            }
            _ => {
                let id = self.created[self.rng.random_range(0..self.created.len())].clone();
                ("lww", id, Kind::Delete, Method::DELETE, None)
            }
        };
        let path = match kind {
            Kind::Create => format!("/api/collections/{coll}/records"),
            _ => format!("/api/collections/{coll}/records/{id}"),
        };
        let query = if concern.is_empty() {
            String::new()
        } else {
            format!("?sync={concern}")
        };
        let url = format!("{}{path}{query}", self.url);
        let (outcome, status, _) = send(&self.http, &url, &self.token, method, body).await;
        self.ledger.push(Write {
            node: self.node,
            coll,
            id,
            kind,
            token,
            concern,
            outcome,
            status,
        });
    }
}

/// Starts one client per node; returns the handles and the switches.
pub struct Clients {
    pub running: watch::Sender<bool>,
    pub stop: watch::Sender<bool>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    pub fn start(cluster: &Cluster, seed: u64, ledger: &Ledger) -> Clients {
        let (running, _) = watch::channel(true);
        let (stop, _) = watch::channel(false);
        let tasks = (0..NODES)
            .map(|n| {
                let client = Client::new(cluster, n, seed, ledger.clone());
                tokio::spawn(client.run(running.subscribe(), stop.subscribe()))
            })
            .collect();
        Clients {
            running,
            stop,
            tasks,
        }
    }

    pub fn pause(&self, paused: bool) {
        self.running.send_replace(!paused);
    }

    pub async fn finish(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
