//! The raw JetStream floor that replication benchmarks are measured against: a 3-server
//! cluster (embedded supervisors, routes, R3 file stream) on this machine, 256-byte messages
//! with a `Nats-Msg-Id` each, through `replication::log`.
//!
//! `cargo bench -p syncbase --bench jetstream` prints:
//! * publish→delivered latency (p50/p99): one message at a time, timed from the publish call
//!   to its arrival at a durable consumer on another connection;
//! * async publish throughput: N messages with `in_flight` acks outstanding.
//!
//! Env: `JS_BENCH_MSGS` (default 50000), `JS_BENCH_LATENCY_MSGS` (2000), `JS_BENCH_INFLIGHT`
//! (1024), `JS_BENCH_SERVERS` (3).

#[path = "../../tests/nats_support/mod.rs"]
mod nats_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use nats_support::Cluster;
use syncbase::replication::{ConsumerOptions, EventId, Outgoing};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload() -> Bytes {
    Bytes::from(vec![b'x'; 256])
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let servers = env("JS_BENCH_SERVERS", 3);
    let msgs = env("JS_BENCH_MSGS", 50_000);
    let latency_msgs = env("JS_BENCH_LATENCY_MSGS", 2_000);
    let in_flight = env("JS_BENCH_INFLIGHT", 1024);
    let replicas = servers.min(3);
    let cluster = Cluster::start(servers).await;
    let all: Vec<usize> = (0..servers).collect();
    let publisher = cluster.log(&all, replicas).await;
    let reader_via: Vec<usize> = all.iter().rev().copied().collect();
    let reader = cluster.log(&reader_via, replicas).await;

    // Latency: the consumer task stamps each arrival; the publisher sends one at a time.
    let mut consumer = reader
        .consumer("bench", ConsumerOptions::default())
        .await
        .expect("consumer");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let consume = tokio::spawn(async move {
        loop {
            match consumer.next().await {
                Ok(d) => {
                    let now = Instant::now();
                    let _ = d.ack().await;
                    if tx.send((d.seq, now)).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("consumer: {e}"),
            }
        }
    });
    // Warm-up: the stream leader and consumer are in place, connections are hot.
    for _ in 0..200 {
        let ack = publisher
            .publish_outgoing(Outgoing {
                id: EventId::random(),
                payload: payload(),
            })
            .await
            .expect("warm-up publish");
        while rx.recv().await.expect("delivery").0 < ack.seq {}
    }
    let mut latencies = Vec::with_capacity(latency_msgs);
    for _ in 0..latency_msgs {
        let start = Instant::now();
        let ack = publisher
            .publish_outgoing(Outgoing {
                id: EventId::random(),
                payload: payload(),
            })
            .await
            .expect("publish");
        loop {
            let (seq, at) = rx.recv().await.expect("delivery");
            if seq == ack.seq {
                latencies.push(at - start);
                break;
            }
        }
    }
    latencies.sort();

    // Throughput: pipelined publishes with unique msg ids (dedup on, as in Syncbase).
    let batch: Vec<Outgoing> = (0..msgs)
        .map(|_| Outgoing {
            id: EventId::random(),
            payload: payload(),
        })
        .collect();
    let start = Instant::now();
    let acks = publisher
        .publish_pipelined(batch, in_flight)
        .await
        .expect("pipelined publish");
    let publish_elapsed = start.elapsed();
    let last = acks.last().map(|p| p.seq).unwrap_or(0);
    // And until the consumer has everything: end-to-end drain rate.
    while rx.recv().await.expect("delivery").0 < last {}
    let drain_elapsed = start.elapsed();
    consume.abort();

    println!(
        "jetstream floor: {servers} server(s), R{replicas}, 256 B messages, Nats-Msg-Id on each"
    );
    println!(
        "  publish->delivered latency ({} msgs, one at a time): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        pct(&latencies, 0.50).as_secs_f64() * 1e3,
        pct(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "  async publish throughput ({msgs} msgs, {in_flight} acks in flight): {:.0} msgs/s",
        msgs as f64 / publish_elapsed.as_secs_f64()
    );
    println!(
        "  publish+deliver to one durable consumer: {:.0} msgs/s",
        msgs as f64 / drain_elapsed.as_secs_f64()
    );
    cluster.shutdown().await;
}
