//! Websocket rooms across nodes: real `syncbase` binaries on a real 3-server NATS cluster,
//! real websocket clients spread over the nodes. One owner per room, clients on other nodes
//! proxied to it; the owner killed with -9 under load; the owner paused with SIGSTOP while
//! another node takes over.

mod nats_support;
mod replication_support;
mod rooms_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nats_support::Cluster;
use reqwest::StatusCode;
use rooms_support::*;
use serde_json::{Value, json};
use support::Node;

/// Lease TTL of the test nodes: failover within about this long.
const LEASE_MS: u64 = 2000;

async fn node(cluster: &Cluster, via: usize, id: &str) -> Node {
    let url = cluster.url(via);
    let lease = LEASE_MS.to_string();
    Node::start_with(&[
        "--nats",
        &url,
        "--node-id",
        id,
        "--cluster",
        "t",
        "--room-lease-ms",
        &lease,
        "--room-history",
        "1000",
    ])
    .await
}

/// Three nodes with the `docs` collection and one record, present everywhere.
async fn three(cluster: &Cluster) -> (Node, Node, Node, String) {
    let a = node(cluster, 0, "a").await;
    let b = node(cluster, 1, "b").await;
    let c = node(cluster, 2, "c").await;
    let (code, body) = a.post("/api/collections", docs_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, doc) = a
        .post(
            "/api/collections/docs/records?sync=applied",
            json!({"title": "plan"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{doc}");
    let id = doc["id"].as_str().expect("id").to_string();
    for n in [&b, &c] {
        let path = format!("/api/collections/docs/records/{id}");
        eventually(30, "the record on every node", || async {
            (n.get(&path).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }
    // Rooms need the node's room buckets, opened once NATS is reachable.
    for n in [&a, &b, &c] {
        eventually(30, "rooms ready", || async {
            (rooms_status(n).await["ready"] == true).then_some(())
        })
        .await;
    }
    (a, b, c, id)
}

/// Asserts that `seqs` (each a client's messages, in arrival order) are all the same single
/// order: offsets 1..=n without gaps or repeats.
fn one_order(seqs: &[&[Value]]) -> usize {
    let first = seqs[0];
    let n = first.len();
    assert_eq!(
        offsets(first),
        (1..=n as u64).collect::<Vec<_>>(),
        "contiguous offsets"
    );
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, first, "client {i} saw another order");
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_see_one_order_and_one_presence() {
    let cluster = Cluster::start(3).await;
    let (a, b, c, doc) = three(&cluster).await;
    let (_, token) = support::user(&a, "u@example.com").await;
    eventually(30, "the user everywhere", || async {
        let (code, _) = c
            .call_as(
                "",
                reqwest::Method::POST,
                "/api/collections/users/auth-with-password",
                Some(json!({"identity": "u@example.com", "password": "secret123"})),
            )
            .await;
        (code == StatusCode::OK).then_some(())
    })
    .await;

    // The first client arrives on B: B owns the room. A and C proxy theirs to it.
    let mut clients = vec![RoomClient::join(&b, "docs", &doc, json!({"token": token})).await];
    for n in [&a, &c, &a, &b, &c] {
        clients.push(RoomClient::join(n, "docs", &doc, json!({"token": token})).await);
    }
    assert_eq!(rooms_status(&b).await["owned"], 1);
    for n in [&a, &c] {
        let s = rooms_status(n).await;
        assert_eq!(
            (s["owned"].clone(), s["proxiedClients"].clone()),
            (json!(0), json!(2)),
            "{s}"
        );
    }
    assert_eq!(rooms_status(&b).await["linksIn"], 2);

    // Presence is the same everywhere: six members, then five after one leaves.
    let ids: std::collections::BTreeSet<String> =
        clients.iter().map(|c| c.client_id.clone()).collect();
    for cl in clients.iter_mut() {
        cl.until_present("six members", |p| *p == ids).await;
    }

    // A quiet room stays joined: links are kept alive by pings, not by traffic (a link
    // silent for a lease TTL counts as dead and would send everyone reconnecting).
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    assert_eq!(
        rooms_status(&b).await["linksIn"],
        2,
        "the links outlived a quiet spell"
    );

    // Every client sends ten messages, interleaved: one order, seen by all six.
    for i in 0..10 {
        for (k, cl) in clients.iter_mut().enumerate() {
            cl.send(json!({"k": k, "i": i}), format!("{k}-{i}")).await;
        }
    }
    for cl in clients.iter_mut() {
        cl.until_messages(60).await;
    }
    let seqs: Vec<&[Value]> = clients.iter().map(|c| c.messages.as_slice()).collect();
    assert_eq!(one_order(&seqs), 60);
    for (k, cl) in clients.iter().enumerate() {
        let mine: Vec<i64> = cl
            .messages
            .iter()
            .filter(|m| m["payload"]["k"] == k)
            .map(|m| m["payload"]["i"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(
            mine,
            (0..10).collect::<Vec<_>>(),
            "client {k}'s messages in its order"
        );
    }
    for (k, cl) in clients.iter_mut().enumerate() {
        for i in 0..10 {
            let r = json!(format!("{k}-{i}"));
            let ack = cl
                .next_where("ack", |v| v["type"] == "ack" && v["ref"] == r)
                .await;
            let m = cl
                .messages
                .iter()
                .find(|m| m["offset"] == ack["offset"])
                .expect("acked");
            assert_eq!(m["payload"], json!({"k": k, "i": i}));
        }
    }

    // A guest on a proxying node may join but not send: rules are checked where it connects.
    let mut guest = RoomClient::join(&c, "docs", &doc, json!({})).await;
    guest.send(json!({"x": 1}), "g").await;
    assert_eq!(guest.next_type("error").await["code"], "forbidden");
    let leaving = clients.pop().expect("a client");
    let gone = leaving.client_id.clone();
    leaving.close().await;
    for cl in clients.iter_mut() {
        cl.until_present("the leave", |p| !p.contains(&gone) && p.len() == 6)
            .await;
    }
    let (_, metrics) = b.raw_get("/metrics").await;
    assert!(
        metrics.contains("syncbase_rooms_messages_total{node=\"b\"} 60"),
        "{metrics}"
    );
    assert!(
        metrics.contains("syncbase_rooms_owned{node=\"b\"} 1"),
        "{metrics}"
    );
}

/// A client that reconnects by itself (to `nodes[at]`, moving on when that node is gone) and
/// keeps every message it saw across connections.
struct Member<'a> {
    nodes: &'a [&'a Node],
    at: usize,
    doc: String,
    token: String,
    client: RoomClient,
    seen: Vec<Value>,
    joins: Vec<Value>,
}

impl<'a> Member<'a> {
    async fn join(nodes: &'a [&'a Node], at: usize, doc: &str, token: &str) -> Member<'a> {
        let client = RoomClient::join(nodes[at], "docs", doc, json!({"token": token})).await;
        Member {
            nodes,
            at,
            doc: doc.into(),
            token: token.into(),
            joins: vec![client.joined.clone()],
            client,
            seen: Vec::new(),
        }
    }

    /// Rejoins from the last position seen, retrying until an owner answers.
    async fn reconnect(&mut self) {
        self.seen.append(&mut self.client.messages);
        let (offset, epoch) = match self.seen.last() {
            Some(m) => (m["offset"].clone(), m["epoch"].clone()),
            None => (
                self.joins[0]["offset"].clone(),
                self.joins[0]["epoch"].clone(),
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let join = json!({"token": self.token, "offset": offset, "epoch": epoch});
            let c = RoomClient::try_join(self.nodes[self.at], "docs", &self.doc, join).await;
            if c.joined["type"] == "joined" {
                self.joins.push(c.joined.clone());
                self.client = c;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no owner within 30 s: {}",
                c.joined
            );
        }
    }

    fn all(&self) -> Vec<Value> {
        let mut v = self.seen.clone();
        v.extend(self.client.messages.iter().cloned());
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_moves_the_room_without_losing_acknowledged_messages() {
    let cluster = Cluster::start(3).await;
    let (a, mut b, c, doc) = three(&cluster).await;
    let token = b.token.clone();
    let (ta, tc) = (a.token.clone(), c.token.clone());
    // B owns the room (its client came first); senders on A and C, watchers everywhere.
    let owner_watch = RoomClient::join(&b, "docs", &doc, json!({"token": token})).await;
    let nodes_a: Vec<&Node> = vec![&a];
    let nodes_c: Vec<&Node> = vec![&c];
    let mut senders = [
        Member::join(&nodes_a, 0, &doc, &ta).await,
        Member::join(&nodes_c, 0, &doc, &tc).await,
    ];
    let mut watchers = [
        Member::join(&nodes_a, 0, &doc, &ta).await,
        Member::join(&nodes_c, 0, &doc, &tc).await,
    ];
    drop(owner_watch);

    // Senders send one message at a time, waiting for its answer; after 20 acks in all,
    // B is killed; they carry on (reconnecting) until 40 more were acknowledged.
    let mut acked: BTreeMap<u64, Value> = BTreeMap::new();
    let mut epochs: Vec<Value> = Vec::new();
    let mut killed_at: Option<Instant> = None;
    let mut first_after_kill: Option<Duration> = None;
    let mut i = 0u64;
    while acked.len() < 60 {
        if acked.len() >= 20 && killed_at.is_none() {
            b.kill();
            killed_at = Some(Instant::now());
        }
        let s = &mut senders[(i % 2) as usize];
        let payload = json!({"s": i % 2, "i": i});
        s.client.send(payload.clone(), i).await;
        let r = json!(i);
        match s
            .client
            .wait_for(|v| (v["type"] == "ack" || v["type"] == "error") && v["ref"] == r)
            .await
        {
            Ok(v) if v["type"] == "ack" => {
                let offset = v["offset"].as_u64().expect("offset");
                assert!(
                    acked.insert(offset, payload).is_none(),
                    "offset {offset} acked twice"
                );
                if !epochs.contains(&v["epoch"]) {
                    epochs.push(v["epoch"].clone());
                }
                if let (Some(k), None) = (killed_at, first_after_kill)
                    && epochs.len() > 1
                {
                    first_after_kill = Some(k.elapsed());
                }
            }
            // Not stored ("unavailable"): the owner changed under it; send the next one.
            Ok(_) => {}
            Err(code) => {
                assert_eq!(code, Some(4000), "the owner's loss means: reconnect");
                s.reconnect().await;
            }
        }
        i += 1;
    }
    let took = first_after_kill.expect("a message accepted by the new owner");
    let lease = Duration::from_millis(LEASE_MS);
    assert!(
        took <= lease + Duration::from_secs(3),
        "failover took {took:?} (lease {lease:?})"
    );
    assert_eq!(epochs.len(), 2, "one epoch per owner: {epochs:?}");

    // Watchers were told to reconnect too, and recovered by position.
    for w in watchers.iter_mut() {
        assert_eq!(w.client.closed().await, Some(4000));
        w.reconnect().await;
        let j = w.joins.last().expect("rejoined").clone();
        assert_eq!(j["recovered"], true, "{j}");
    }
    let top = *acked.keys().last().expect("acks");
    let mut everyone: Vec<Vec<Value>> = Vec::new();
    for m in senders.iter_mut().chain(watchers.iter_mut()) {
        m.client
            .until_messages((top as usize).saturating_sub(m.seen.len()))
            .await;
        everyone.push(m.all());
    }
    for seq in &everyone {
        // Exactly once, in one order, every acknowledged message with its payload.
        let offs = offsets(seq);
        assert_eq!(
            offs,
            (1..=offs.len() as u64).collect::<Vec<_>>(),
            "contiguous, no repeats"
        );
        for (offset, payload) in &acked {
            let m = &seq[*offset as usize - 1];
            assert_eq!(&m["payload"], payload, "offset {offset}");
        }
    }
    let shortest = everyone.iter().map(Vec::len).min().unwrap_or(0);
    for seq in &everyone {
        assert_eq!(
            seq[..shortest],
            everyone[0][..shortest],
            "one order everywhere"
        );
    }
    let new_owner = if rooms_status(&a).await["owned"] == 1 {
        &a
    } else {
        &c
    };
    assert_eq!(rooms_status(new_owner).await["takeovers"], 1);

    // A client whose position the history (1000 messages) cannot reach is told so.
    let far = RoomClient::join(
        &a,
        "docs",
        &doc,
        json!({"token": ta, "offset": top + 500, "epoch": epochs[0]}),
    )
    .await;
    assert_eq!(far.joined["recovered"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_resumes_after_losing_its_lease_and_stamps_nothing() {
    let cluster = Cluster::start(3).await;
    let (a, b, c, doc) = three(&cluster).await;
    let (ta, tb, tc) = (a.token.clone(), b.token.clone(), c.token.clone());
    let mut on_owner = RoomClient::join(&b, "docs", &doc, json!({"token": tb})).await;
    let nodes_a: Vec<&Node> = vec![&a];
    let mut x = Member::join(&nodes_a, 0, &doc, &ta).await;
    let mut y = RoomClient::join(&c, "docs", &doc, json!({"token": tc})).await;
    for i in 0..3 {
        x.client.send(json!({"i": i}), i).await;
        x.client.next_type("ack").await;
    }
    on_owner.until_messages(3).await;
    y.until_messages(3).await;

    b.signal("STOP");
    // Sent to the paused owner: sits in its socket until it wakes up.
    on_owner
        .send(json!({"text": "from-paused"}), "paused")
        .await;
    // A and C hear nothing from B for a lease TTL: their clients are told to reconnect, and
    // one of them takes the room once B's lease expires.
    assert_eq!(x.client.closed().await, Some(4000));
    assert_eq!(y.closed().await, Some(4000));
    let epoch = x.client.position().1;
    x.reconnect().await;
    let joined = x.joins.last().expect("rejoined").clone();
    if joined["offset"] != json!(3) {
        // Seen once in CI (offset 4, missed 1): show what was stamped while B was paused.
        let missed = joined["missed"].as_u64().unwrap_or(0) as usize;
        x.client.until_messages(missed).await;
        panic!(
            "the room moved past offset 3 while its owner was paused: {joined}\nmissed: {:#?}",
            x.client.messages
        );
    }
    assert_eq!(joined["recovered"], true, "{joined}");
    x.client.send(json!({"text": "after-takeover"}), "t").await;
    let ack = x.client.next_type("ack").await;
    assert_eq!(ack["offset"], 4);
    assert_ne!(ack["epoch"], json!(epoch), "a takeover starts a new epoch");

    // B wakes up: it finds its lease gone before stamping anything, and steps down.
    b.signal("CONT");
    let answer = on_owner
        .wait_for(|v| v["ref"] == "paused" || v["type"] == "message" && v["offset"] == 4)
        .await;
    match answer {
        Ok(v) => assert_eq!(v["type"], "error", "the paused owner answered {v}"),
        Err(code) => assert_eq!(code, Some(4000)),
    }
    eventually(10, "B owns nothing", || async {
        (rooms_status(&b).await["owned"] == 0).then_some(())
    })
    .await;

    // The room's history, read from the start on any node, never had B's late message.
    for n in [&a, &b, &c] {
        let mut fresh =
            RoomClient::join(n, "docs", &doc, json!({"token": n.token, "offset": 0})).await;
        assert_eq!(fresh.joined["missed"], 4, "{}", fresh.joined);
        fresh.until_messages(4).await;
        assert_eq!(offsets(&fresh.messages), vec![1, 2, 3, 4]);
        assert!(
            fresh
                .messages
                .iter()
                .all(|m| m["payload"]["text"] != "from-paused")
        );
    }
    x.client.send(json!({"text": "later"}), "l").await;
    assert_eq!(x.client.next_type("ack").await["offset"], 5);
}
