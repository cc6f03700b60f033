//! The raw JetStream floor that replication benchmarks are measured against: a 3-server
//! cluster (embedded supervisors, routes, R3 file stream) on this machine, 256-byte messages
//! with a `Nats-Msg-Id` each, through `replication::log`.
//!
//! `cargo bench -p syncbase --bench jetstream` prints:
//! * publish→delivered latency (p50/p99): one message at a time, timed from the publish call
//!   to its arrival at a durable consumer on another connection;
//! * async publish throughput: N messages with `in_flight` acks outstanding.
//!
//! The measurement itself is `support/floor.rs`, which the `replication` bench runs too (with
//! the size of a Syncbase event).
//!
//! Env: `JS_BENCH_MSGS` (default 50000), `JS_BENCH_LATENCY_MSGS` (2000), `JS_BENCH_INFLIGHT`
//! (1024), `JS_BENCH_SERVERS` (3), `JS_BENCH_SIZE` (256 bytes).

#[path = "../../tests/nats_support/mod.rs"]
mod nats_support;

#[path = "support/floor.rs"]
mod floor;

use bytes::Bytes;
use floor::FloorOptions;
use nats_support::Cluster;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let servers = env("JS_BENCH_SERVERS", 3);
    let size = env("JS_BENCH_SIZE", 256);
    let opts = FloorOptions {
        payload: Bytes::from(vec![b'x'; size]),
        latency_msgs: env("JS_BENCH_LATENCY_MSGS", 2_000),
        msgs: env("JS_BENCH_MSGS", 50_000),
        in_flight: env("JS_BENCH_INFLIGHT", 1024),
        replicas: servers.min(3),
    };
    let cluster = Cluster::start(servers).await;
    let floor = floor::measure(&cluster, &opts).await;
    cluster.shutdown().await;

    println!(
        "jetstream floor: {servers} server(s), R{}, {size} B messages, Nats-Msg-Id on each",
        opts.replicas
    );
    println!(
        "  publish->delivered latency ({} msgs, one at a time): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        floor.latencies.len(),
        floor.latency(0.50).as_secs_f64() * 1e3,
        floor.latency(0.99).as_secs_f64() * 1e3,
        floor.latency(1.0).as_secs_f64() * 1e3,
    );
    println!(
        "  async publish throughput ({} msgs, {} acks in flight): {:.0} msgs/s",
        opts.msgs, opts.in_flight, floor.publish_rate
    );
    println!(
        "  publish+deliver to one durable consumer: {:.0} msgs/s",
        floor.drain_rate
    );
}
