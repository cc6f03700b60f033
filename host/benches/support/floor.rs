//! The raw JetStream floor that replication figures are measured against, shared by the
//! `jetstream` and `replication` benches: on a running cluster, through `replication::log`
//! (one `Nats-Msg-Id` per message, dedup on, as Syncbase publishes), it times
//!
//! * publish→delivered latency: one message at a time, from the publish call to its arrival
//!   at a durable consumer on another connection (through the servers in reverse order);
//! * async publish throughput: `msgs` messages with `in_flight` acks outstanding, and the
//!   time until the consumer has them all.
//!
//! Included by path next to `tests/nats_support` (as `crate::nats_support`), not through
//! `support/mod.rs`: the HTTP benches have no NATS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use syncbase::replication::{ConsumerOptions, EventId, Outgoing};

use crate::nats_support::Cluster;

/// What to send.
pub struct FloorOptions {
    /// Every message carries these bytes (its size is the figure's message size).
    pub payload: Bytes,
    pub latency_msgs: usize,
    pub msgs: usize,
    pub in_flight: usize,
    /// Stream replicas (at most the cluster's size).
    pub replicas: usize,
}

/// The floor's figures.
pub struct Floor {
    /// Publish→delivered latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Async publish throughput, messages/s.
    pub publish_rate: f64,
    /// Publish plus delivery of everything to one durable consumer, messages/s.
    pub drain_rate: f64,
}

impl Floor {
    pub fn latency(&self, p: f64) -> Duration {
        pct(&self.latencies, p)
    }
}

/// The `p` quantile of sorted durations (zero for none).
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Measures the floor on `cluster` (its stream is created on first use).
pub async fn measure(cluster: &Cluster, opts: &FloorOptions) -> Floor {
    let all: Vec<usize> = (0..cluster.opts.len()).collect();
    let publisher = cluster.log(&all, opts.replicas).await;
    let reader_via: Vec<usize> = all.iter().rev().copied().collect();
    let reader = cluster.log(&reader_via, opts.replicas).await;
    let outgoing = || Outgoing {
        id: EventId::random(),
        payload: opts.payload.clone(),
    };

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
            .publish_outgoing(outgoing())
            .await
            .expect("warm-up publish");
        while rx.recv().await.expect("delivery").0 < ack.seq {}
    }
    let mut latencies = Vec::with_capacity(opts.latency_msgs);
    for _ in 0..opts.latency_msgs {
        let start = Instant::now();
        let ack = publisher
            .publish_outgoing(outgoing())
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
    let batch: Vec<Outgoing> = (0..opts.msgs).map(|_| outgoing()).collect();
    let start = Instant::now();
    let acks = publisher
        .publish_pipelined(batch, opts.in_flight)
        .await
        .expect("pipelined publish");
    let publish_elapsed = start.elapsed();
    let last = acks.last().map(|p| p.seq).unwrap_or(0);
    // And until the consumer has everything: end-to-end drain rate.
    while rx.recv().await.expect("delivery").0 < last {}
    let drain_elapsed = start.elapsed();
    consume.abort();
    Floor {
        latencies,
        publish_rate: opts.msgs as f64 / publish_elapsed.as_secs_f64(),
        drain_rate: opts.msgs as f64 / drain_elapsed.as_secs_f64(),
    }
}
