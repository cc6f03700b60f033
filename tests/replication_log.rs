//! The JetStream log against real nats-server processes: one total order, dedup by
//! `Nats-Msg-Id`, a durable consumer that resumes where the node left off, an R3 stream that
//! outlives a server, and the plugin object store.

mod nats_support;

use std::collections::{HashMap, HashSet};

use nats_support::{Cluster, within};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use syncbase::replication::{
    CollectionRef, ConsumerOptions, Event, EventConsumer, EventId, EventKind, Hlc, Log, Outgoing,
};

fn seed() -> u64 {
    std::env::var("SYNCBASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

fn event(origin: &str, n: u64) -> Event {
    Event {
        id: EventId::random(),
        origin: origin.into(),
        hlc: Hlc::new(1_700_000_000_000 + n, 0),
        kind: EventKind::RecordUpdate,
        collection: CollectionRef {
            id: "pbc_posts".into(),
            name: "posts".into(),
        },
        record_id: Some(format!("rec{n:011}")),
        data: serde_json::json!({"id": format!("rec{n:011}"), "n": n, "title": "x".repeat(40)})
            .as_object()
            .cloned(),
        before: None,
        base: None,
        schema_version: 1,
        plugin_version: 0,
        files: Vec::new(),
    }
}

/// Reads `n` deliveries, acking each, and returns (seq, event) in delivery order.
async fn read(consumer: &mut EventConsumer, n: usize) -> Vec<(u64, Event)> {
    let mut out = Vec::with_capacity(n);
    let mut transient = 0;
    while out.len() < n {
        // `next` reports a transient failure (a server restarting, no responders yet) as an
        // `Err` and repositions on the next call: retry those, a bounded number of times.
        let d = match within(60, "the next delivery", consumer.next()).await {
            Ok(d) => d,
            Err(e) => {
                transient += 1;
                assert!(transient < 50, "consumer keeps failing: {e}");
                continue;
            }
        };
        d.ack().await.expect("ack");
        out.push((d.seq, d.event.expect("decodes")));
    }
    out
}

/// Publishes `batch`, retrying the unacknowledged rest after a failure; returns id → seq.
async fn publish_retrying(log: &Log, batch: &[Event]) -> HashMap<String, u64> {
    let mut acks = HashMap::new();
    let mut rest = batch;
    while !rest.is_empty() {
        match log
            .publish_pipelined(rest.iter().map(Outgoing::from_event), 16)
            .await
        {
            Ok(done) => {
                for (e, p) in rest.iter().zip(done) {
                    acks.insert(e.id.to_string(), p.seq);
                }
                rest = &[];
            }
            Err(failed) => {
                eprintln!("publish failed, retrying the rest: {failed}");
                for (e, p) in rest.iter().zip(&failed.acked) {
                    acks.insert(e.id.to_string(), p.seq);
                }
                rest = &rest[failed.acked.len()..];
                // Retry pacing while the cluster elects a new leader.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    acks
}

fn consumer_opts(resume_after: Option<u64>) -> ConsumerOptions {
    ConsumerOptions {
        resume_after,
        ..Default::default()
    }
}

/// Two clients publish concurrently (one ack at a time, one pipelined); a third node's
/// consumer must see every event once, in one gap-free order that matches the acks.
async fn total_order_from_two_clients(a: Log, b: Log, reader: Log, per_client: u64) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let events_a: Vec<Event> = (0..per_client).map(|n| event("na", n)).collect();
    let events_b: Vec<Event> = (0..per_client).map(|n| event("nb", n)).collect();
    let in_flight = rng.random_range(1..64);
    let pub_a = async {
        let mut acks = Vec::new();
        for e in &events_a {
            acks.push(a.publish(e).await.expect("publish a"));
        }
        acks
    };
    let pub_b = async {
        b.publish_pipelined(events_b.iter().map(Outgoing::from_event), in_flight)
            .await
            .expect("pipelined publish b")
    };
    let (acks_a, acks_b) = within(120, "publishing", futures::future::join(pub_a, pub_b)).await;
    let mut acked: HashMap<String, u64> = HashMap::new();
    for (e, ack) in events_a
        .iter()
        .zip(&acks_a)
        .chain(events_b.iter().zip(&acks_b))
    {
        assert!(!ack.duplicate, "seed {seed}");
        acked.insert(e.id.to_string(), ack.seq);
    }

    let total = (2 * per_client) as usize;
    let mut consumer = reader
        .consumer("reader", consumer_opts(Some(0)))
        .await
        .expect("consumer");
    let got = read(&mut consumer, total).await;
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "seed {seed}: gap-free total order"
    );
    let mut seen = HashSet::new();
    for (seq, e) in &got {
        assert!(
            seen.insert(e.id.clone()),
            "seed {seed}: {} delivered twice",
            e.id
        );
        assert_eq!(
            acked.get(e.id.as_str()),
            Some(seq),
            "seed {seed}: delivery matches the ack"
        );
    }
    // Each client's own events keep their publish order inside the total order.
    for origin in ["na", "nb"] {
        let ns: Vec<u64> = got
            .iter()
            .filter(|(_, e)| e.origin == origin)
            .map(|(_, e)| e.hlc.physical_ms())
            .collect();
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: {origin} out of order"
        );
        assert_eq!(ns.len() as u64, per_client);
    }
    let state = reader.state().await.expect("state");
    assert_eq!(state.last_seq, total as u64);
}

#[tokio::test]
async fn one_server_two_clients_one_total_order() {
    let cluster = Cluster::start(1).await;
    let (a, b, r) = (
        cluster.log(&[0], 1).await,
        cluster.log(&[0], 1).await,
        cluster.log(&[0], 1).await,
    );
    total_order_from_two_clients(a, b, r, 500).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn same_msg_id_twice_is_stored_once() {
    let cluster = Cluster::start(1).await;
    let log = cluster.log(&[0], 1).await;
    let e = event("n1", 1);
    let first = log.publish(&e).await.expect("publish");
    let again = log.publish(&e).await.expect("republish");
    assert!(!first.duplicate);
    assert!(
        again.duplicate,
        "second publish must be flagged as a duplicate"
    );
    assert_eq!(again.seq, first.seq);
    // A pipelined retry of a batch that had partly landed dedupes the same way.
    let batch: Vec<Event> = (2..6).map(|n| event("n1", n)).collect();
    let half: Vec<Outgoing> = batch[..2].iter().map(Outgoing::from_event).collect();
    log.publish_pipelined(half, 8).await.expect("half");
    let retry = log
        .publish_pipelined(batch.iter().map(Outgoing::from_event), 8)
        .await
        .expect("retry");
    assert_eq!(retry.iter().filter(|p| p.duplicate).count(), 2);
    let sentinel = event("n1", 99);
    log.publish(&sentinel).await.expect("sentinel");

    let mut consumer = log
        .consumer("n1", consumer_opts(Some(0)))
        .await
        .expect("consumer");
    let got = read(&mut consumer, 6).await;
    let ids: Vec<&EventId> = got.iter().map(|(_, e)| &e.id).collect();
    let want: Vec<&EventId> = std::iter::once(&e.id)
        .chain(batch.iter().map(|e| &e.id))
        .chain(std::iter::once(&sentinel.id))
        .collect();
    assert_eq!(ids, want, "each event once; the sentinel right after");
    assert_eq!(log.state().await.expect("state").messages, 6);
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_durable_consumer_resumes_where_the_node_left_off() {
    let mut cluster = Cluster::start(1).await;
    let log = cluster.log(&[0], 1).await;
    let events: Vec<Event> = (0..20).map(|n| event("n1", n)).collect();
    log.publish_pipelined(events.iter().map(Outgoing::from_event), 16)
        .await
        .expect("publish");

    // Apply (ack) 1..=4, take 5 without acking it, then "crash".
    let mut c = log
        .consumer("n1", consumer_opts(None))
        .await
        .expect("consumer");
    let got = read(&mut c, 4).await;
    assert_eq!(got.last().map(|(s, _)| *s), Some(4));
    let unacked = within(30, "delivery 5", c.next()).await.expect("delivery");
    assert_eq!(unacked.seq, 5);
    drop((unacked, c));

    // Trusting the server: resume at its ack floor, so 5 comes first again, then in order.
    let mut c = log
        .consumer("n1", consumer_opts(None))
        .await
        .expect("reopen");
    let got = read(&mut c, 3).await;
    assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(got[0].1, events[4]);
    drop(c);

    // The server restarts: the consumer's state is durable too.
    drop(log);
    cluster.restart(0).await;
    let log = cluster.log(&[0], 1).await;
    let mut c = log
        .consumer("n1", consumer_opts(None))
        .await
        .expect("after restart");
    assert_eq!(c.last_seq(), 7);
    let got = read(&mut c, 1).await;
    assert_eq!(got[0].0, 8);
    drop(c);

    // SQLite is the truth: a node that had applied through 15 resumes at 16, whatever the
    // server's ack floor says (here it is behind).
    let mut c = log
        .consumer("n1", consumer_opts(Some(15)))
        .await
        .expect("resume 15");
    let got = read(&mut c, 5).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [16, 17, 18, 19, 20]
    );
    assert_eq!(got[4].1, events[19]);
    // New events keep arriving on the open consumer.
    let late = event("n2", 100);
    log.publish(&late).await.expect("late publish");
    let got = read(&mut c, 1).await;
    assert_eq!((got[0].0, &got[0].1), (21, &late));
    cluster.shutdown().await;
}

#[tokio::test]
async fn plugin_bytes_round_trip_through_the_object_store() {
    let cluster = Cluster::start(1).await;
    let log = cluster.log(&[0], 1).await;
    let objects = log.plugin_objects().await.expect("bucket");
    // Bigger than one 128 KiB chunk, so chunking is exercised.
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = objects.put(&bytes).await.expect("put");
    assert_eq!(sha, syncbase::replication::sha256_hex(&bytes));
    assert!(objects.has(&sha).await.expect("has"));
    assert_eq!(
        objects.get(&sha).await.expect("get").as_deref(),
        Some(&bytes[..])
    );
    assert_eq!(objects.put(&bytes).await.expect("put again"), sha);

    let absent = syncbase::replication::sha256_hex(b"never stored");
    assert!(!objects.has(&absent).await.expect("has absent"));
    assert_eq!(objects.get(&absent).await.expect("get absent"), None);
    assert!(objects.get("not-a-digest").await.is_err());

    // Another connection sees the same bucket.
    let other = cluster
        .log(&[0], 1)
        .await
        .plugin_objects()
        .await
        .expect("bucket");
    assert_eq!(
        other.get(&sha).await.expect("get").as_deref(),
        Some(&bytes[..])
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn three_servers_r3_one_order_and_survives_a_server_restart() {
    let mut cluster = Cluster::start(3).await;
    // Clients on different servers; the reader on the third.
    let a = cluster.log(&[0, 1, 2], 3).await;
    let b = cluster.log(&[1, 2, 0], 3).await;
    let r = cluster.log(&[2, 0, 1], 3).await;
    assert_eq!(r.state().await.expect("state").replicas, 3);
    total_order_from_two_clients(a.clone(), b.clone(), r.clone(), 200).await;

    // Discovery: with the cluster formed, a log opened without a replica count asks for 3.
    let conn = syncbase::replication::ConnectOptions {
        urls: cluster.urls(),
        ..Default::default()
    };
    let mut opts = syncbase::replication::StreamOptions::new(cluster.name.clone());
    opts.replicas = None;
    let discovered = Log::connect(&conn, &opts).await.expect("discover");
    assert_eq!(discovered.replicas(), 3, "min(3, servers)");

    // One server goes down: R3 keeps quorum, publishing and consuming go on.
    let mut c = r
        .consumer("survivor", consumer_opts(Some(400)))
        .await
        .expect("consumer");
    for down in [0usize, 1, 2] {
        cluster.stop(down).await;
        let up = (down + 1) % 3;
        let log = cluster.log(&[up], 3).await;
        let batch: Vec<Event> = (0..50).map(|n| event(&format!("down{down}"), n)).collect();
        // While the stream's leader moves, publishes can fail for a moment: retry the
        // unacknowledged rest like the outbox publisher does; dedup keeps it exactly-once.
        let acks = within(
            120,
            "publishing with one server down",
            publish_retrying(&log, &batch),
        )
        .await;
        assert_eq!(acks.len(), 50);
        cluster.restart(down).await;
        // The reader's connection may have been on the stopped server: it reconnects and the
        // consumer repositions; either way every event arrives once and in order.
        let mut got = Vec::new();
        while got.len() < 50 {
            match within(120, "deliveries after a restart", c.next()).await {
                Ok(d) => {
                    d.ack().await.ok();
                    got.push((d.seq, d.event.expect("decodes")));
                }
                Err(e) => eprintln!("transient consumer error (retrying): {e}"),
            }
        }
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "stream order");
        let delivered: HashMap<String, u64> =
            got.iter().map(|(s, e)| (e.id.to_string(), *s)).collect();
        assert_eq!(delivered, acks, "every event once, where its ack said");
    }
    let state = r.state().await.expect("state");
    assert_eq!((state.last_seq, state.replicas), (550, 3));
    cluster.shutdown().await;
}

/// A node that publishes nothing still learns where the stream ends: every publisher
/// announces the sequence its acks reached, and every node hears it (`replication/tip.rs`).
#[tokio::test]
async fn every_node_hears_where_another_nodes_acks_reached() {
    let cluster = Cluster::start(1).await;
    let (writer, reader) = (cluster.log(&[0], 1).await, cluster.log(&[0], 1).await);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    reader
        .follow_tips(move |seq| {
            let _ = tx.send(seq);
        })
        .await
        .expect("follow tips");
    let acks = writer
        .publish_pipelined(
            [event("w", 1), event("w", 2)]
                .iter()
                .map(Outgoing::from_event),
            16,
        )
        .await
        .expect("published");
    let top = acks.iter().map(|p| p.seq).max().expect("acks");
    writer.announce_tip(top).await;
    let heard = within(10, "the writer's tip", rx.recv())
        .await
        .expect("a tip");
    assert_eq!(heard, top);
    // Anything else on the subject is ignored, not taken for a sequence.
    writer
        .client()
        .publish(
            format!("syncbase.{}.tip", cluster.name),
            "not a number".into(),
        )
        .await
        .expect("publish");
    writer.announce_tip(top + 1).await;
    let next = within(10, "the next tip", rx.recv()).await.expect("a tip");
    assert_eq!(next, top + 1);
    cluster.shutdown().await;
}

/// A node whose consumer cannot be positioned reads the stream directly. When the replica that
/// answers keeps missing events the tip says exist, it is behind (a server just back from a
/// pause or a partition): the consumer says so, once per spell, and the apply loop moves the
/// node to another server on it. Events past the tip are not "missing", and reading on works.
#[tokio::test]
async fn direct_reads_that_keep_missing_known_events_say_the_server_is_behind() {
    let server = nats_support::ConfiguredServer::start(
        r#"accounts { APP: { jetstream: { max_consumers: 1 }, users: [{ user: "a", password: "pw-for-a" }] } }"#,
    )
    .await;
    let conn = syncbase::replication::ConnectOptions {
        urls: vec![server.url("nats")],
        user: Some("a".into()),
        password: Some("pw-for-a".into()),
        ..Default::default()
    };
    let log = Log::connect(&conn, &syncbase::replication::StreamOptions::new("t"))
        .await
        .expect("log");
    log.publish_pipelined((1..=3).map(|n| Outgoing::from_event(&event("w", n))), 16)
        .await
        .expect("published");
    // The account's one consumer goes to the test: the node's cannot be created.
    nats_support::hold_a_consumer(&server.url("nats"), log.stream_name()).await;
    let mut consumer = log
        .consumer("n1", consumer_opts(Some(3)))
        .await
        .expect("consumer");
    let (tip, rx) = tokio::sync::watch::channel(3u64);
    consumer.follow_tip(rx);
    // Caught up with what is known to exist: reading finds nothing, and nothing is behind.
    for _ in 0..3 {
        let next = within(10, "a read", consumer.next()).await;
        assert!(next.is_err(), "nothing to read yet");
    }
    assert!(!consumer.take_server_behind(), "seq 4 is past the tip");
    // The tip says seq 5 exists, and this server has nothing after 3.
    tip.send_replace(5);
    for _ in 0..syncbase::replication::consumer::BEHIND_MISSES {
        let next = within(10, "a read", consumer.next()).await;
        assert!(next.is_err(), "seq 4 is not on this server");
    }
    assert!(consumer.take_server_behind(), "the server is behind");
    assert!(!consumer.take_server_behind(), "said once per spell");
    // Once the event is there, the direct read delivers it.
    log.publish_pipelined([Outgoing::from_event(&event("w", 4))].into_iter(), 16)
        .await
        .expect("published");
    let d = within(10, "seq 4", consumer.next())
        .await
        .expect("read directly");
    assert_eq!(d.seq, 4);
    assert!(!d.event.expect("decodes").id.to_string().is_empty());
    assert!(!consumer.take_server_behind());
}
