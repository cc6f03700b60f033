//! Websocket rooms: ordered, ephemeral messages and presence for one record
//! (`GET /api/rooms/{collection}/{recordId}`), with one owner node per room.
//!
//! ```text
//! client ──ws──▶ session (entry node: token, view rule to join, update rule per send)
//!                  │
//!                  ▼
//!                hub (one per room per node: this node's clients of the room)
//!                  │ in process, when this node owns the room
//!                  │ node-to-node websocket (link.rs), when another node does
//!                  ▼
//!                owner (one per room in the cluster, holding its lease): stamps offsets,
//!                appends to the history, keeps presence, renders every frame once
//! ```
//!
//! * One total order per room: only the owner stamps, and (replicating) every stamp is an
//!   append to the room's JetStream subject that names the previous entry's sequence, so a
//!   paused owner that lost its lease is refused by the server even if its clock misleads it.
//! * A message is delivered and acknowledged only after its append was acknowledged: what a
//!   sender saw acknowledged survives the owner's death, and reconnecting clients get it
//!   once, by position (`history.rs`).
//! * Slow consumers are dropped (close 4008), never buffered without bound: per-client queues,
//!   per-port queues at the owner, write timeouts on every socket.
//! * Single node (no NATS): this node owns every room; history lives in the owner's memory
//!   (the last `--room-history` messages) and is lost when the room is idle for `--room-idle`
//!   or the process stops: clients are then told `recovered: false`.
//!
//! Never reaches into `api/`; rules come from `access/`, NATS from `replication/`.

mod claim;
mod filter;
mod history;
mod hub;
mod link;
mod owner;
pub mod protocol;
mod rules;
mod session;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::access::AuthCache;
use crate::plugins::Plugins;
use crate::replication::{Log, RoomLog, RoomLogOptions};
use crate::store::Store;

pub use link::{LinkRefused, serve_link};
pub use session::serve as serve_client;

/// Tuning from the config.
#[derive(Debug, Clone)]
pub struct RoomOptions {
    /// Messages of history kept per room.
    pub history: usize,
    /// Largest payload of a `send`, in bytes of JSON (presence states: `protocol::MAX_PRESENCE`).
    pub max_payload: usize,
    /// Frames queued per client before it is dropped as too slow.
    pub client_buffer: usize,
    /// How long a lease lives without renewal (replicating nodes).
    pub lease_ttl: Duration,
    /// An owner keeps a room with nobody in it this long, then gives it up.
    pub idle: Duration,
    /// Longest a write to a socket may take before the peer is dropped.
    pub write_timeout: Duration,
    /// How often a member's view rule is checked again (access withdrawn → removed).
    pub recheck: Duration,
    /// The URL other nodes reach this node's HTTP server at (advertised in leases).
    pub advertise_url: Option<String>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        RoomOptions {
            history: 100,
            max_payload: 64 * 1024,
            client_buffer: 256,
            lease_ttl: Duration::from_secs(5),
            idle: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            recheck: Duration::from_secs(30),
            advertise_url: None,
        }
    }
}

/// Why a room cannot be served right now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RoomError {
    #[error("no owner for this room could be reached in time")]
    Unavailable,
    #[error("room replication is not connected yet")]
    NotReady,
    #[error("{0}")]
    Log(String),
}

/// A room: a record of a collection, by ids (a renamed collection keeps its rooms).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub collection: String,
    pub record: String,
}

impl RoomKey {
    /// The room's name in NATS (a KV key and a subject suffix): `collection.record`, each
    /// part kept as is when it is safe there, hex-encoded behind `=` otherwise.
    pub fn token(&self) -> String {
        fn part(s: &str) -> String {
            let safe = !s.is_empty()
                && !s.starts_with('=')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if safe {
                return s.to_string();
            }
            let mut out = String::from("=");
            for b in s.bytes() {
                let _ = write!(out, "{b:02x}");
            }
            out
        }
        format!("{}.{}", part(&self.collection), part(&self.record))
    }
}

/// The node's rooms; cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    advertise: String,
    opts: RoomOptions,
    store: Store,
    auth_cache: Arc<AuthCache>,
    plugins: Plugins,
    /// `None` on a single node; otherwise the room log once NATS is reachable.
    cluster: Option<watch::Receiver<Option<Arc<Cluster>>>>,
    hubs: Mutex<HashMap<RoomKey, Arc<hub::Hub>>>,
    owned: Mutex<HashMap<RoomKey, owner::OwnerHandle>>,
    /// Signalled whenever an owner ends (shutdown waits for leases to be released).
    owner_gone: Notify,
    stats: Stats,
    shutdown: CancellationToken,
}

/// What a replicating node needs for rooms.
pub(crate) struct Cluster {
    log: RoomLog,
    /// Signs node-to-node links.
    secret: Vec<u8>,
    /// The lease TTL the bucket enforces.
    ttl: Duration,
}

impl Rooms {
    /// Rooms of a node; `log` is the replication log as it becomes available (`None` on a
    /// single node). `bound` is the HTTP address, the default advertised URL.
    pub fn new(
        opts: RoomOptions,
        node_id: &str,
        bound: std::net::SocketAddr,
        store: Store,
        auth_cache: Arc<AuthCache>,
        plugins: Plugins,
        log: Option<watch::Receiver<Option<Log>>>,
    ) -> Rooms {
        let advertise = opts.advertise_url.clone().unwrap_or_else(|| {
            let host = if bound.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            };
            format!("http://{}", std::net::SocketAddr::new(host, bound.port()))
        });
        let shutdown = CancellationToken::new();
        let cluster = log.map(|log| {
            let (tx, rx) = watch::channel(None);
            tokio::spawn(open_cluster(log, opts.clone(), tx, shutdown.clone()));
            rx
        });
        Rooms {
            inner: Arc::new(Inner {
                node_id: node_id.to_string(),
                advertise,
                opts,
                store,
                auth_cache,
                plugins,
                cluster,
                hubs: Mutex::new(HashMap::new()),
                owned: Mutex::new(HashMap::new()),
                owner_gone: Notify::new(),
                stats: Stats::default(),
                shutdown,
            }),
        }
    }

    pub fn options(&self) -> &RoomOptions {
        &self.inner.opts
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The URL this node advertises to the others.
    pub fn advertise_url(&self) -> &str {
        &self.inner.advertise
    }

    /// The room log, if this node replicates and it is open; `Err(NotReady)` while NATS is
    /// not reachable yet.
    fn cluster(&self) -> Result<Option<Arc<Cluster>>, RoomError> {
        match &self.inner.cluster {
            None => Ok(None),
            Some(rx) => rx.borrow().clone().map(Some).ok_or(RoomError::NotReady),
        }
    }

    /// How long a client's join may wait for an owner: a dead owner's lease must expire first.
    fn join_wait(&self) -> Duration {
        match &self.inner.cluster {
            None => Duration::from_secs(5),
            Some(rx) => {
                let ttl = rx
                    .borrow()
                    .as_ref()
                    .map_or(self.inner.opts.lease_ttl, |c| c.ttl);
                ttl * 2 + Duration::from_secs(2)
            }
        }
    }

    /// Closes every room socket (1001) and gives up the leases this node holds, waiting up
    /// to `grace` for owners to release them, so other nodes take over at once.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        let hubs: Vec<Arc<hub::Hub>> = self.inner.hubs.lock().values().cloned().collect();
        for h in hubs {
            h.close(protocol::close::GOING_AWAY, "The server is shutting down.");
        }
        let deadline = Instant::now() + grace;
        loop {
            let gone = self.inner.owner_gone.notified();
            if self.inner.owned.lock().is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), gone)
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Status figures (`/api/sync/status`'s `rooms`).
    pub fn status_json(&self) -> Value {
        let s = &self.inner.stats;
        let (clients, proxied) = self.client_counts();
        json!({
            "mode": if self.inner.cluster.is_some() { "cluster" } else { "single" },
            "ready": self.cluster().is_ok(),
            "advertiseUrl": self.inner.advertise,
            "owned": self.inner.owned.lock().len(),
            "clients": clients,
            "proxiedClients": proxied,
            "linksIn": s.links_in.load(Ordering::Relaxed),
            "messages": s.messages.load(Ordering::Relaxed),
            "messagesPerSecond": s.rate.lock().per_second(Instant::now()),
            "slowDropped": s.slow_dropped.load(Ordering::Relaxed),
            "takeovers": s.takeovers.load(Ordering::Relaxed),
        })
    }

    /// Prometheus lines for `/metrics`.
    pub fn metrics_text(&self) -> String {
        let s = &self.inner.stats;
        let (clients, proxied) = self.client_counts();
        let node = &self.inner.node_id;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP syncbase_rooms_{name} {help}");
            let _ = writeln!(out, "# TYPE syncbase_rooms_{name} {kind}");
            let _ = writeln!(out, "syncbase_rooms_{name}{{node=\"{node}\"}} {value}");
        };
        let owned = self.inner.owned.lock().len();
        metric("owned", "gauge", "Rooms this node owns.", owned as f64);
        metric(
            "clients",
            "gauge",
            "Room clients connected here.",
            clients as f64,
        );
        metric(
            "proxied_clients",
            "gauge",
            "Room clients connected here whose room another node owns.",
            proxied as f64,
        );
        metric(
            "links_in",
            "gauge",
            "Links from other nodes to rooms owned here.",
            s.links_in.load(Ordering::Relaxed) as f64,
        );
        metric(
            "messages_total",
            "counter",
            "Messages stamped by this node.",
            s.messages.load(Ordering::Relaxed) as f64,
        );
        metric(
            "messages_per_second",
            "gauge",
            "Messages stamped by this node per second, over the last 10 s.",
            s.rate.lock().per_second(Instant::now()),
        );
        metric(
            "slow_dropped_total",
            "counter",
            "Room clients dropped for not reading fast enough.",
            s.slow_dropped.load(Ordering::Relaxed) as f64,
        );
        metric(
            "takeovers_total",
            "counter",
            "Rooms this node became the owner of.",
            s.takeovers.load(Ordering::Relaxed) as f64,
        );
        out
    }

    fn client_counts(&self) -> (usize, usize) {
        let hubs: Vec<Arc<hub::Hub>> = self.inner.hubs.lock().values().cloned().collect();
        hubs.iter().fold((0, 0), |(all, proxied), h| {
            let (n, remote) = h.census();
            (all + n, proxied + if remote { n } else { 0 })
        })
    }
}

/// Opens the room log once the replication log is connected, retrying until it works.
async fn open_cluster(
    mut log: watch::Receiver<Option<Log>>,
    opts: RoomOptions,
    tx: watch::Sender<Option<Arc<Cluster>>>,
    stop: CancellationToken,
) {
    let log = loop {
        if let Some(l) = log.borrow_and_update().clone() {
            break l;
        }
        tokio::select! {
            r = log.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    };
    let log_opts = RoomLogOptions {
        lease_ttl: opts.lease_ttl,
        history: opts.history,
        max_entry_bytes: owner::MAX_ENTRY_BYTES,
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let opened = async {
            let room_log = RoomLog::open(&log, &log_opts).await?;
            let secret = room_log.link_secret().await?;
            let ttl = room_log.lease_ttl().await?;
            Ok::<_, crate::replication::LogError>(Cluster {
                log: room_log,
                secret,
                ttl,
            })
        }
        .await;
        match opened {
            Ok(c) => {
                if c.ttl != opts.lease_ttl {
                    tracing::warn!(
                        bucket_ttl_ms = c.ttl.as_millis() as u64,
                        flag_ttl_ms = opts.lease_ttl.as_millis() as u64,
                        "the room lease bucket exists with another TTL; using the bucket's"
                    );
                }
                tracing::info!(ttl_ms = c.ttl.as_millis() as u64, "room leases ready");
                tx.send_replace(Some(Arc::new(c)));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "room buckets not reachable yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Counters for status and metrics.
#[derive(Default)]
struct Stats {
    messages: AtomicU64,
    slow_dropped: AtomicU64,
    takeovers: AtomicU64,
    links_in: AtomicU64,
    rate: Mutex<Rate>,
}

/// Messages per second over the last ten whole seconds.
#[derive(Default)]
struct Rate {
    start: Option<Instant>,
    /// (second since `start`, count) for the last ten seconds and the current one.
    slots: [(u64, u64); 11],
}

impl Rate {
    const WINDOW: u64 = 10;

    fn add(&mut self, now: Instant, n: u64) {
        let start = *self.start.get_or_insert(now);
        let sec = now.duration_since(start).as_secs();
        let slot = &mut self.slots[(sec % (Self::WINDOW + 1)) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += n;
    }

    fn per_second(&self, now: Instant) -> f64 {
        let Some(start) = self.start else { return 0.0 };
        let sec = now.duration_since(start).as_secs();
        // The current second is still filling: average the ten before it.
        let total: u64 = self
            .slots
            .iter()
            .filter(|(s, _)| *s < sec && s + Self::WINDOW >= sec)
            .map(|(_, n)| n)
            .sum();
        total as f64 / Self::WINDOW as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_tokens_are_safe_nats_names() {
        let k = |c: &str, r: &str| {
            RoomKey {
                collection: c.into(),
                record: r.into(),
            }
            .token()
        };
        assert_eq!(k("pbc_123", "abc"), "pbc_123.abc");
        assert_eq!(k("c", "a.b"), "c.=612e62");
        assert_eq!(k("c", "=x"), "c.=3d78");
        assert_ne!(k("c", "a b"), k("c", "a_b"));
    }

    #[test]
    fn the_rate_counts_the_last_ten_whole_seconds() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.add(t0, 0);
        for s in 0..20u64 {
            r.add(t0 + Duration::from_secs(s), 5);
        }
        let now = t0 + Duration::from_millis(19_500);
        assert!(
            (r.per_second(now) - 5.0).abs() < 1e-9,
            "{}",
            r.per_second(now)
        );
        assert_eq!(r.per_second(t0 + Duration::from_secs(60)), 0.0);
    }
}
