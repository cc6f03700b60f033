//! Command-line flags (clap derive, each with a `SYNCBASE_*` env var) and the validated
//! `Config` the server runs with. Raw flags are parsed once, here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plugins::RuntimeConfig;
use crate::realtime::RealtimeOptions;
use crate::rooms::RoomOptions;
use crate::store::StoreOptions;

mod commands;
pub use commands::*;

/// Syncbase: PocketBase's API over SQLite, built to replicate across nodes.
#[derive(Debug, Parser)]
#[command(name = "syncbase", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text (coloured only on a terminal) or as JSON objects, one per line.
    #[arg(
        long,
        env = "SYNCBASE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Manage plugins on a running node over HTTP.
    Plugin(PluginArgs),
    /// Inspect replication on a running node over HTTP.
    Sync(SyncArgs),
    /// Cluster snapshots: take one on a running node, list, verify, or seed a data directory
    /// from one (through a node's HTTP API, or the cluster's NATS with --nats).
    Snapshot(SnapshotArgs),
    /// Manage superusers (works on the data directory directly; the server may be stopped).
    Superuser {
        #[command(subcommand)]
        action: SuperuserCommand,
    },
    /// Import another server's data directory into a new Syncbase data directory.
    Import {
        #[command(subcommand)]
        source: ImportCommand,
    },
    /// Export a Syncbase data directory for another server.
    Export {
        #[command(subcommand)]
        target: ExportCommand,
    },
    /// Internal: runs PROGRAM so that it receives SIGTERM when process PARENT dies (how a node
    /// starts its embedded nats-server).
    #[command(hide = true)]
    NatsExec {
        #[arg(long)]
        parent: u32,
        #[arg(last = true, required = true)]
        program: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve HTTP on (port 0 picks a free port).
    #[arg(long, env = "SYNCBASE_HTTP", default_value = "127.0.0.1:8090")]
    pub http: String,
    /// Data directory holding the SQLite database (created if missing).
    #[arg(long, env = "SYNCBASE_DIR", default_value = "./sb_data")]
    pub dir: PathBuf,
    /// Largest accepted request body, in bytes; larger requests get 413.
    #[arg(long, env = "SYNCBASE_BODY_LIMIT", default_value_t = 32 * 1024 * 1024)]
    pub body_limit: usize,
    /// Number of SQLite reader connections.
    #[arg(long, env = "SYNCBASE_READERS", default_value_t = 4)]
    pub readers: usize,
    /// Capacity of the writer's job queue (requests waiting to write).
    #[arg(long, env = "SYNCBASE_WRITE_QUEUE", default_value_t = 1024)]
    pub write_queue: usize,
    /// Request log entries queued for the log writer; when it falls this far behind, entries
    /// are dropped instead of slowing requests.
    #[arg(long, env = "SYNCBASE_LOG_QUEUE", default_value_t = 8192)]
    pub log_queue: usize,
    /// Realtime messages buffered per client before a slow client is dropped.
    #[arg(long, env = "SYNCBASE_REALTIME_BUFFER", default_value_t = 512)]
    pub realtime_buffer: usize,
    /// Seconds without a message after which a realtime connection is closed (clients reconnect).
    #[arg(long, env = "SYNCBASE_REALTIME_IDLE", default_value_t = 300)]
    pub realtime_idle: u64,
    /// This node's id (used as the origin of its changes).
    #[arg(long, env = "SYNCBASE_NODE_ID", default_value = "n1")]
    pub node_id: String,
    /// Fuel (about one per wasm instruction) a single plugin call may burn before it fails.
    #[arg(long, env = "SYNCBASE_PLUGIN_FUEL", default_value_t = 20_000_000)]
    pub plugin_fuel: u64,
    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, env = "SYNCBASE_PLUGIN_MEMORY_MB", default_value_t = 64)]
    pub plugin_memory_mb: usize,
    /// Memory all plugin instances of this node may hold together, in MiB. Past it idle
    /// instances are dropped, then calls wait (a write answers 503, the fold retries).
    #[arg(long, env = "SYNCBASE_PLUGIN_MEMORY_BUDGET_MB", default_value_t = 1024)]
    pub plugin_memory_budget_mb: usize,
    /// Seconds a bind on a replicating node waits for every node to have the plugin compiled
    /// before it answers 503 naming the nodes that are not ready.
    #[arg(long, env = "SYNCBASE_PLUGIN_READY_TIMEOUT", default_value_t = 120)]
    pub plugin_ready_timeout: u64,
    /// Seconds that in-flight requests get to finish on shutdown.
    #[arg(long, env = "SYNCBASE_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Messages of history each websocket room keeps (clients recover missed ones from it).
    #[arg(
        long,
        env = "SYNCBASE_ROOM_HISTORY",
        default_value_t = 100,
        help_heading = "Rooms"
    )]
    pub room_history: usize,
    /// Largest room message payload, in bytes of JSON (a presence state: at most 4096).
    #[arg(long, env = "SYNCBASE_ROOM_MAX_PAYLOAD", default_value_t = 64 * 1024, help_heading = "Rooms")]
    pub room_max_payload: usize,
    /// Frames queued per room client before it is dropped as too slow (close 4008).
    #[arg(
        long,
        env = "SYNCBASE_ROOM_CLIENT_BUFFER",
        default_value_t = 256,
        help_heading = "Rooms"
    )]
    pub room_client_buffer: usize,
    /// Milliseconds a room owner's lease lives without renewal (replicating nodes). A dead
    /// owner's rooms move to another node after about this long.
    #[arg(
        long,
        env = "SYNCBASE_ROOM_LEASE_MS",
        default_value_t = 5000,
        help_heading = "Rooms"
    )]
    pub room_lease_ms: u64,
    /// Seconds an owner keeps a room nobody is in (and, on a single node, its history).
    #[arg(
        long,
        env = "SYNCBASE_ROOM_IDLE",
        default_value_t = 60,
        help_heading = "Rooms"
    )]
    pub room_idle: u64,
    /// Seconds a write to a room socket may take before the peer is dropped.
    #[arg(
        long,
        env = "SYNCBASE_ROOM_WRITE_TIMEOUT",
        default_value_t = 10,
        help_heading = "Rooms"
    )]
    pub room_write_timeout: u64,
    /// Seconds between checks of a room member's view rule: a member whose access was
    /// withdrawn (or whose record was deleted) is removed within this long.
    #[arg(
        long,
        env = "SYNCBASE_ROOM_RECHECK",
        default_value_t = 30,
        help_heading = "Rooms"
    )]
    pub room_recheck: u64,
    /// URL other nodes reach this node's HTTP server at, for room links
    /// [default: http://<--http address>, 127.0.0.1 when that is 0.0.0.0].
    #[arg(long, env = "SYNCBASE_ADVERTISE_URL", help_heading = "Rooms")]
    pub advertise_url: Option<String>,

    /// Replicate through an existing NATS cluster: comma-separated server URLs
    /// (e.g. nats://h1:4222,nats://h2:4222). Without --nats or --sync the node runs alone.
    #[arg(
        long,
        env = "SYNCBASE_NATS",
        value_delimiter = ',',
        help_heading = "Replication"
    )]
    pub nats: Vec<String>,
    /// NATS credentials file (.creds) for --nats.
    #[arg(long, env = "SYNCBASE_NATS_CREDS", help_heading = "Replication")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name for --nats (with --nats-password).
    #[arg(long, env = "SYNCBASE_NATS_USER", help_heading = "Replication")]
    pub nats_user: Option<String>,
    /// NATS password for --nats-user.
    #[arg(long, env = "SYNCBASE_NATS_PASSWORD", help_heading = "Replication")]
    pub nats_password: Option<String>,
    /// CA certificate (PEM) to verify the NATS servers; turns TLS on.
    #[arg(long, env = "SYNCBASE_NATS_TLS_CA", help_heading = "Replication")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS mutual TLS (with --nats-tls-key).
    #[arg(long, env = "SYNCBASE_NATS_TLS_CERT", help_heading = "Replication")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for --nats-tls-cert.
    #[arg(long, env = "SYNCBASE_NATS_TLS_KEY", help_heading = "Replication")]
    pub nats_tls_key: Option<PathBuf>,
    /// Replicate with an embedded nats-server that this node starts and supervises
    /// (data under --dir/nats). Cluster it with peers using --cluster-listen and --join.
    #[arg(long, env = "SYNCBASE_SYNC", help_heading = "Replication")]
    pub sync: bool,
    /// Client address of the embedded nats-server (--sync).
    #[arg(
        long,
        env = "SYNCBASE_NATS_LISTEN",
        default_value = "127.0.0.1:4222",
        help_heading = "Replication"
    )]
    pub nats_listen: String,
    /// Route address of the embedded nats-server, where peers connect (--sync). Without it
    /// the embedded server runs alone.
    #[arg(long, env = "SYNCBASE_CLUSTER_LISTEN", help_heading = "Replication")]
    pub cluster_listen: Option<String>,
    /// Peers' --cluster-listen addresses (host:port, comma-separated) to join (--sync).
    #[arg(
        long,
        env = "SYNCBASE_JOIN",
        value_delimiter = ',',
        help_heading = "Replication"
    )]
    pub join: Vec<String>,
    /// The nats-server binary for --sync [default: nats-server on PATH].
    #[arg(long, env = "SYNCBASE_NATS_SERVER_BIN", help_heading = "Replication")]
    pub nats_server_bin: Option<PathBuf>,
    /// Cluster name: nodes with the same name share one log (stream SYNCBASE_<name>).
    #[arg(
        long,
        env = "SYNCBASE_CLUSTER",
        default_value = "syncbase",
        help_heading = "Replication"
    )]
    pub cluster: String,
    /// Largest number of replicated events applied in one SQLite transaction. Batches only
    /// grow while a node catches up; larger ones catch up faster (fewer pages rewritten per
    /// event) but hold local writes back longer (about 40 µs per event).
    #[arg(
        long,
        env = "SYNCBASE_APPLY_BATCH",
        default_value_t = 5000,
        help_heading = "Replication"
    )]
    pub apply_batch: usize,
    /// Seconds a write with ?sync=published or ?sync=applied waits before answering 504.
    #[arg(
        long,
        env = "SYNCBASE_SYNC_TIMEOUT",
        default_value_t = 10,
        help_heading = "Replication"
    )]
    pub sync_timeout: u64,
    /// Seconds a node's claim on taking a due snapshot lives without renewal; when its
    /// claimant dies, another node takes the snapshot over after this long. Read when the
    /// cluster's claims bucket is created.
    #[arg(
        long,
        env = "SYNCBASE_SNAPSHOT_CLAIM_TTL",
        default_value_t = 30,
        help_heading = "Replication"
    )]
    pub snapshot_claim_ttl: u64,
    /// Seconds a file object no record references stays in the cluster's file bucket at
    /// least (after the log compacted every event that named it) before a node deletes it:
    /// the same bytes uploaded again meanwhile keep it. Unreferenced objects are looked for
    /// every tenth of this (at most every minute).
    #[arg(
        long,
        env = "SYNCBASE_FILE_GC_GRACE",
        default_value_t = 600,
        help_heading = "Replication"
    )]
    pub file_gc_grace: u64,
    /// Test hook for the chaos harness: a JSON file polled for injected faults (clock skew,
    /// a full disk). Never set it in production.
    #[arg(long, env = "SYNCBASE_TEST_FAULTS", hide = true)]
    pub test_faults: Option<PathBuf>,
}

/// Bounds on what one client can make a node hold (see README "Security").
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Concurrent HTTP connections served; beyond, requests get 503 (health checks still
    /// answer). Lowered at start to fit the open-file limit.
    #[arg(long, env = "SYNCBASE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a write may wait for a client that does not read (e.g. a stuck realtime
    /// consumer) before its connection is closed.
    #[arg(long, env = "SYNCBASE_WRITE_TIMEOUT", default_value_t = 30)]
    pub write_timeout: u64,
    /// Bytes of record data the outbound log (`GET /api/plugins/outbound`) keeps at most.
    #[arg(long, env = "SYNCBASE_OUTBOUND_LOG_BYTES", default_value_t = crate::plugins::OUTBOUND_BYTES)]
    pub outbound_log_bytes: usize,
    /// Cost one realtime client's subscriptions may add up to: each topic costs 1, plus the
    /// terms of its filter and its expand paths. Beyond, the subscription request fails.
    #[arg(long, env = "SYNCBASE_REALTIME_CLIENT_COST", default_value_t = crate::realtime::CLIENT_COST)]
    pub realtime_client_cost: usize,
}

/// The validated configuration of a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: SocketAddr,
    pub dir: PathBuf,
    pub body_limit: usize,
    pub store: StoreOptions,
    /// Capacity of the request log queue (`store::logs`).
    pub log_queue: usize,
    pub shutdown_grace: std::time::Duration,
    pub realtime: RealtimeOptions,
    pub node_id: String,
    pub plugins: RuntimeConfig,
    /// Replication, when --nats or --sync is given.
    pub sync: Option<crate::sync::SyncConfig>,
    /// The chaos harness's fault control file (`crate::testhooks`).
    pub test_faults: Option<PathBuf>,
    /// Connection cap and write timeout of the HTTP listener.
    pub net: crate::net::NetOptions,
    /// Byte bound of the outbound log.
    pub outbound_log_bytes: usize,
    /// Websocket rooms.
    pub rooms: RoomOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--http {0:?} is not an address like 127.0.0.1:8090 or :8090")]
    BadAddress(String),
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    #[error("--{flag} {value:?} is not an address like 127.0.0.1:4222 or :4222")]
    BadListen { flag: &'static str, value: String },
    #[error("--nats and --sync are exclusive: join an existing NATS cluster, or embed one")]
    BothModes,
    #[error("--node-id {0:?} must be 1-64 characters of letters, digits, '-' and '_'")]
    BadNodeId(String),
    #[error("--cluster {0:?} must be 1-32 characters of letters, digits, '-' and '_'")]
    BadCluster(String),
    #[error("{0} needs --sync")]
    NeedsSync(&'static str),
    #[error("--room-lease-ms must be at least 1000")]
    LeaseTooShort,
    #[error("--advertise-url {0:?} is not an http:// URL")]
    BadAdvertiseUrl(String),
}

/// Parses a listen address the way PocketBase (Go's `net.Listen`) reads `--http`: `host:port`,
/// or `:port` for every interface; `localhost` is loopback.
pub fn parse_listen(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    if let Some(port) = value.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)));
    }
    if let Some(port) = value.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    }
    value.parse().ok()
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn sync_config(a: &ServeArgs) -> Result<Option<crate::sync::SyncConfig>, ConfigError> {
    use crate::nats::{ClusterOptions, EmbeddedOptions};
    use crate::replication::ConnectOptions;
    use crate::sync::{Source, SyncConfig};
    let embedded = a.sync;
    let external = !a.nats.is_empty();
    if embedded && external {
        return Err(ConfigError::BothModes);
    }
    if !embedded {
        if a.cluster_listen.is_some() {
            return Err(ConfigError::NeedsSync("--cluster-listen"));
        }
        if !a.join.is_empty() {
            return Err(ConfigError::NeedsSync("--join"));
        }
    }
    if !embedded && !external {
        return Ok(None);
    }
    if !name_ok(&a.node_id, 64) {
        return Err(ConfigError::BadNodeId(a.node_id.clone()));
    }
    if !name_ok(&a.cluster, 32) {
        return Err(ConfigError::BadCluster(a.cluster.clone()));
    }
    let listen = |flag: &'static str, v: &str| -> Result<SocketAddr, ConfigError> {
        parse_listen(v).ok_or_else(|| ConfigError::BadListen {
            flag,
            value: v.to_string(),
        })
    };
    let source = if embedded {
        let mut opts = EmbeddedOptions::new(
            a.dir.clone(),
            a.node_id.clone(),
            listen("nats-listen", &a.nats_listen)?,
        );
        opts.binary = a.nats_server_bin.clone();
        // The child dies with this process (kill -9 included) when started through our own
        // binary's `nats-exec`.
        opts.exec_wrapper = std::env::current_exe().ok();
        if let Some(cl) = &a.cluster_listen {
            opts.cluster = Some(ClusterOptions {
                name: a.cluster.clone(),
                listen: listen("cluster-listen", cl)?,
                join: a.join.iter().filter(|j| !j.is_empty()).cloned().collect(),
            });
        }
        Source::Embedded(opts)
    } else {
        Source::External(ConnectOptions {
            urls: a.nats.clone(),
            name: Some(format!("syncbase-{}", a.node_id)),
            creds_file: a.nats_creds.clone(),
            user: a.nats_user.clone(),
            password: a.nats_password.clone(),
            tls_ca: a.nats_tls_ca.clone(),
            tls_cert: a.nats_tls_cert.clone(),
            tls_key: a.nats_tls_key.clone(),
            ..Default::default()
        })
    };
    Ok(Some(SyncConfig {
        node_id: a.node_id.clone(),
        cluster: a.cluster.clone(),
        source,
        apply_batch: a.apply_batch.max(1),
        wait_timeout: std::time::Duration::from_secs(a.sync_timeout.max(1)),
        plugin_ready_timeout: std::time::Duration::from_secs(a.plugin_ready_timeout),
        claim_ttl: std::time::Duration::from_secs(a.snapshot_claim_ttl.max(1)),
        file_gc_grace: std::time::Duration::from_secs(a.file_gc_grace),
    }))
}

impl Config {
    pub fn from_args(a: &ServeArgs) -> Result<Config, ConfigError> {
        let http = parse_listen(&a.http).ok_or_else(|| ConfigError::BadAddress(a.http.clone()))?;
        if a.readers == 0 {
            return Err(ConfigError::Zero("readers"));
        }
        if a.write_queue == 0 {
            return Err(ConfigError::Zero("write-queue"));
        }
        let sync = sync_config(a)?;
        let rooms = room_options(a)?;
        Ok(Config {
            rooms,
            sync,
            http,
            dir: a.dir.clone(),
            body_limit: a.body_limit,
            log_queue: a.log_queue.max(1),
            store: StoreOptions {
                readers: a.readers,
                write_queue: a.write_queue,
                ..StoreOptions::default()
            },
            shutdown_grace: std::time::Duration::from_secs(a.shutdown_grace),
            realtime: RealtimeOptions {
                client_buffer: a.realtime_buffer.max(1),
                idle_timeout: std::time::Duration::from_secs(a.realtime_idle.max(1)),
                client_cost: a.limits.realtime_client_cost.max(1),
            },
            node_id: a.node_id.clone(),
            test_faults: a.test_faults.clone(),
            plugins: RuntimeConfig {
                fuel_per_call: a.plugin_fuel.max(1),
                memory_cap: a.plugin_memory_mb.max(1) << 20,
                memory_budget: a.plugin_memory_budget_mb.max(1) << 20,
                ..RuntimeConfig::default()
            },
            net: crate::net::NetOptions {
                max_connections: a.limits.max_connections.max(1),
                write_timeout: std::time::Duration::from_secs(a.limits.write_timeout.max(1)),
            },
            outbound_log_bytes: a.limits.outbound_log_bytes,
        })
    }

    /// A config for tests and embedding: the given directory, a free port on loopback.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.into(),
            body_limit: 32 * 1024 * 1024,
            log_queue: 8192,
            store: StoreOptions::default(),
            shutdown_grace: std::time::Duration::from_secs(10),
            realtime: RealtimeOptions::default(),
            node_id: "n1".into(),
            plugins: RuntimeConfig::default(),
            sync: None,
            test_faults: None,
            net: crate::net::NetOptions::default(),
            outbound_log_bytes: crate::plugins::OUTBOUND_BYTES,
            rooms: RoomOptions::default(),
        }
    }
}

fn room_options(a: &ServeArgs) -> Result<RoomOptions, ConfigError> {
    if a.room_lease_ms < 1000 {
        return Err(ConfigError::LeaseTooShort);
    }
    if let Some(u) = &a.advertise_url {
        let ok = url::Url::parse(u).is_ok_and(|p| p.scheme() == "http" && p.host().is_some());
        if !ok {
            return Err(ConfigError::BadAdvertiseUrl(u.clone()));
        }
    }
    Ok(RoomOptions {
        history: a.room_history,
        max_payload: a.room_max_payload.max(16),
        client_buffer: a.room_client_buffer.max(1),
        lease_ttl: std::time::Duration::from_millis(a.room_lease_ms),
        idle: std::time::Duration::from_secs(a.room_idle.max(1)),
        write_timeout: std::time::Duration::from_secs(a.room_write_timeout.max(1)),
        recheck: std::time::Duration::from_secs(a.room_recheck.max(1)),
        advertise_url: a
            .advertise_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_read_like_pocketbase() {
        let at = |s: &str| parse_listen(s).map(|a| a.to_string());
        assert_eq!(at(":8091").as_deref(), Some("0.0.0.0:8091"));
        assert_eq!(at("127.0.0.1:8090").as_deref(), Some("127.0.0.1:8090"));
        assert_eq!(at("localhost:8092").as_deref(), Some("127.0.0.1:8092"));
        assert_eq!(at("[::1]:8093").as_deref(), Some("[::1]:8093"));
        for bad in ["", ":", ":http", "8090", "host:8090", ":99999"] {
            assert_eq!(parse_listen(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_http_address_names_both_accepted_forms() {
        let cli = Cli::parse_from(["syncbase", "serve", "--http", "nope"]);
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let err = Config::from_args(&args).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1:8090") && text.contains(":8090"),
            "{text}"
        );
    }
}
