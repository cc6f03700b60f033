//! Snapshot benchmark (issue 12), on one machine, in one process:
//!
//! 1. **Load.** A fresh 3-server NATS cluster (R3) and three release `syncbase serve`
//!    processes a, b, c; two indexed collections; `RECORDS` records of about 300 bytes written
//!    through `/api/batch` on A and B, with the `every-n` snapshot policy bound
//!    (`{"events": POLICY_EVENTS, "keep": 2}`): snapshots are taken and the log compacted while
//!    the data grows. Reported: the stream's bytes and messages held after compaction beside
//!    what the whole history weighs.
//! 2. **Writer during a snapshot.** `LOAD_CONNS` connections creating records one at a time on
//!    B for `LOAD_SECS` (create latency p50/p99), then the same load while B takes a manual
//!    snapshot of the whole data set (`POST /api/sync/snapshots`), measured while it runs.
//! 3. **Floors.** The snapshot file is fetched here from the cluster's object store (timed); the
//!    floor of installing it is copying that file and decompressing its database (zstd), plus
//!    one sha256 pass over the database for a checked floor, and the fetch for the floor
//!    through the object store. Node A's own fetch-and-check of the same snapshot
//!    (`POST /api/sync/snapshots/{name}/verify`: download, decompress, sha256 and table hashes,
//!    the work the issue asks a joining node to do) is timed too.
//! 4. **Bootstrap.** A fourth node D starts on an empty directory and is timed from spawn to
//!    `GET /api/sync/ready` answering 200, split by the phases it reports (download, verify,
//!    install, catch-up), beside the floor.
//!
//! Env knobs: `RECORDS` (1000000), `BATCH` (1000 per /api/batch), `BATCH_CLIENTS` (2 per
//! node), `POLICY_EVENTS` (400000), `LOAD_CONNS` (8), `LOAD_SECS` (8), `SYNCBASE_BIN`.

#[path = "../../../tests/nats_support/mod.rs"]
mod nats_support;

#[path = "../support/mod.rs"]
mod support;

#[path = "../replication/node.rs"]
#[allow(dead_code)]
mod node;

mod phases;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use nats_support::Cluster;
use node::Node;

pub struct Config {
    records: usize,
    batch: usize,
    batch_clients: usize,
    policy_events: u64,
    load_conns: usize,
    load_secs: f64,
    bin: PathBuf,
}

impl Config {
    fn from_env() -> Result<Config> {
        fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .ok()
                    .with_context(|| format!("{name}={v} is not a number")),
                Err(_) => Ok(default),
            }
        }
        Ok(Config {
            records: num("RECORDS", 1_000_000)?,
            batch: num::<usize>("BATCH", 1000)?.max(1),
            batch_clients: num::<usize>("BATCH_CLIENTS", 2)?.max(1),
            policy_events: num("POLICY_EVENTS", 400_000)?,
            load_conns: num::<usize>("LOAD_CONNS", 8)?.max(1),
            load_secs: num::<f64>("LOAD_SECS", 8.0)?.max(1.0),
            bin: std::env::var_os("SYNCBASE_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_syncbase")),
                PathBuf::from,
            ),
        })
    }
}

/// The two indexed collections the records go to.
pub const COLLECTIONS: [&str; 2] = ["items", "orders"];

pub fn collection_def(name: &str) -> Value {
    json!({
        "name": name,
        "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "tag", "type": "text"},
            {"name": "body", "type": "text"},
            {"name": "created", "type": "autodate", "onCreate": true},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
        ],
        "indexes": [
            format!("CREATE INDEX idx_{name}_n ON {name} (n)"),
            format!("CREATE INDEX idx_{name}_tag ON {name} (tag)"),
        ],
    })
}

/// A record of about 300 bytes as stored.
pub fn record(node: &str, n: u64) -> Value {
    const BODY: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
        tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis \
        nostrud exercitation ullamco laboris";
    json!({"title": format!("{node} record {n}"), "n": n, "tag": format!("t{}", n % 997),
           "body": BODY})
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_env()?;
    println!(
        "Snapshot bench: 3 NATS servers (R3), 3 Syncbase nodes + 1 joining, on this machine ({} \
         CPUs); {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.bin.display()
    );
    let cluster = Cluster::start(3).await;
    let root = tempfile::Builder::new()
        .prefix("sb-bench-snap-")
        .tempdir()?;
    let mut a = Node::create(&config.bin, root.path(), "a", cluster.url(0)).await?;
    let mut b = Node::create(&config.bin, root.path(), "b", cluster.url(1)).await?;
    let mut c = Node::create(&config.bin, root.path(), "c", cluster.url(2)).await?;
    let outcome = phases::run(&config, &cluster, root.path(), &a, &b, &c).await;
    for n in [&mut a, &mut b, &mut c] {
        n.stop().await;
    }
    cluster.shutdown().await;
    let results = outcome?;
    results.print(&config);
    Ok(())
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
