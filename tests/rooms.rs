//! Websocket rooms on one node (no NATS): real `syncbase` binaries, real websocket clients.
//! Ordering, acks and presence; the view and update rules; bad input; recovery by position;
//! slow consumers; moderation by a filter plugin; status and metrics. The cluster (leases,
//! proxying, failover) is in `rooms_cluster.rs`.

mod rooms_support;
mod support;

use reqwest::{Method, StatusCode};
use rooms_support::*;
use serde_json::{Value, json};
use support::Node;

/// A node with the `docs` collection and one record in it; returns (node, record id).
async fn node_with_doc(flags: &[&str]) -> (Node, String) {
    let node = Node::start_with(flags).await;
    node.create_collection(docs_def()).await;
    let doc = node.create_record("docs", json!({"title": "plan"})).await;
    (node, doc["id"].as_str().expect("id").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_stamped_in_one_order_acknowledged_and_presence_is_shared() {
    let (node, doc) = node_with_doc(&[]).await;
    let (alice_id, alice) = support::user(&node, "alice@example.com").await;
    let (_, bob) = support::user(&node, "bob@example.com").await;

    let mut a = RoomClient::join(
        &node,
        "docs",
        &doc,
        json!({"token": alice, "presence": {"cursor": 1}}),
    )
    .await;
    assert_eq!(a.joined["offset"], 0);
    assert_eq!(a.joined["recovering"], false);
    assert_eq!(a.joined["room"], json!({"collection": "docs", "id": doc}));
    let sync = a.next_type("presence").await;
    assert_eq!(sync["action"], "sync");
    assert_eq!(sync["members"], json!([]), "nobody else was there");
    let me = a.next_type("presence").await;
    assert_eq!(
        (me["action"].clone(), me["member"]["userId"].clone()),
        (json!("join"), json!(alice_id))
    );
    assert_eq!(me["member"]["state"], json!({"cursor": 1}));

    // The collection can be named by id too; a token may also come as ?token=.
    let (_, coll) = node.get("/api/collections/docs").await;
    let cid = coll["id"].as_str().expect("collection id");
    let mut b = {
        let url = format!("{}?token={bob}", room_url(&node, cid, &doc));
        let mut c = RoomClient::open(&url).await;
        c.send_raw(r#"{"type":"join"}"#).await;
        c.joined = c.next_type("joined").await;
        c.client_id = c.joined["clientId"].as_str().expect("clientId").into();
        c
    };
    let mut guest = RoomClient::join(&node, "docs", &doc, json!({})).await;
    let b_sync = b.next_type("presence").await;
    assert_eq!(
        b_sync["members"].as_array().map(Vec::len),
        Some(1),
        "{b_sync}"
    );
    assert_eq!(b_sync["members"][0]["state"], json!({"cursor": 1}));

    // Interleaved sends from two users: one order for everyone, offsets 1..=10, and each
    // sender gets an ack (with its ref) naming the offset its message got.
    for i in 0..5 {
        a.send(json!({"from": "a", "i": i}), format!("a{i}")).await;
        b.send(json!({"from": "b", "i": i}), i).await;
    }
    for c in [&mut a, &mut b, &mut guest] {
        c.until_messages(10).await;
    }
    assert_eq!(offsets(&a.messages), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        a.messages, b.messages,
        "every client sees the same messages"
    );
    assert_eq!(a.messages, guest.messages);
    let epoch = a.messages[0]["epoch"].clone();
    assert!(a.messages.iter().all(|m| m["epoch"] == epoch));
    for (who, c) in [("a", &a), ("b", &b)] {
        let mine: Vec<&Value> = c
            .messages
            .iter()
            .filter(|m| m["payload"]["from"] == who)
            .collect();
        assert_eq!(mine.len(), 5);
        assert_eq!(mine[0]["sender"]["clientId"], json!(c.client_id));
    }
    let from_a = a
        .messages
        .iter()
        .find(|m| m["payload"]["from"] == "a")
        .expect("a message from a");
    assert_eq!(from_a["sender"]["userId"], json!(alice_id));
    assert_eq!(from_a["sender"]["collectionName"], "users");
    let mut acks = Vec::new();
    while acks.len() < 5 {
        acks.push(a.next_type("ack").await);
    }
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["ref"], json!(format!("a{i}")));
        let stamped = a
            .messages
            .iter()
            .find(|m| m["offset"] == ack["offset"])
            .expect("acked offset");
        assert_eq!(stamped["payload"], json!({"from": "a", "i": i}));
    }

    // The guest may join (view rule "") but not send (update rule needs a user).
    guest.send(json!({"x": 1}), "g").await;
    let refused = guest.next_type("error").await;
    assert_eq!(
        (refused["code"].clone(), refused["ref"].clone()),
        (json!("forbidden"), json!("g"))
    );

    // Presence: state changes and leaves reach everyone.
    b.send_raw(r#"{"type":"presence.set","state":{"cursor":42}}"#)
        .await;
    let seen = a
        .next_where("b's state", |v| {
            v["type"] == "presence" && v["action"] == "state"
        })
        .await;
    assert_eq!(seen["member"]["state"], json!({"cursor": 42}));
    guest.send_raw(r#"{"type":"leave"}"#).await;
    assert_eq!(guest.closed().await, Some(1000));
    let left = a
        .next_where("the guest's leave", |v| {
            v["type"] == "presence" && v["action"] == "leave"
        })
        .await;
    assert_eq!(left["member"]["userId"], Value::Null);

    let status = rooms_status(&node).await;
    assert_eq!(
        (status["owned"].clone(), status["clients"].clone()),
        (json!(1), json!(2)),
        "{status}"
    );
    assert_eq!(status["messages"], 10);
    let (_, metrics) = node.raw_get("/metrics").await;
    assert!(
        metrics.contains("syncbase_rooms_messages_total{node=\"n1\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("syncbase_rooms_clients{node=\"n1\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_needs_the_view_rule_and_sending_the_update_rule() {
    let node = Node::start_with(&["--room-recheck", "1"]).await;
    let (alice_id, alice) = support::user(&node, "alice@example.com").await;
    let (_, bob) = support::user(&node, "bob@example.com").await;
    node.create_collection(json!({
        "name": "notes",
        "viewRule": "owner = @request.auth.id || public = true",
        "updateRule": "owner = @request.auth.id",
        "fields": [
            {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
            {"name": "public", "type": "bool"}
        ]
    }))
    .await;
    let (_, users) = node.get("/api/collections/users").await;
    assert_eq!(
        users["id"], "_pb_users_auth_",
        "the bootstrap users collection id"
    );
    let private = node
        .create_record("notes", json!({"owner": alice_id}))
        .await;
    let public = node
        .create_record("notes", json!({"owner": alice_id, "public": true}))
        .await;
    let (private, public) = (
        private["id"].as_str().expect("id"),
        public["id"].as_str().expect("id"),
    );
    // Superusers only: null rules.
    node.create_collection(json!({"name": "vault", "fields": [{"name": "t", "type": "text"}]}))
        .await;
    let vault = node.create_record("vault", json!({"t": "x"})).await;
    let vault = vault["id"].as_str().expect("id");

    // Bob may not view Alice's private note: refused with 4403, after an error frame.
    let mut c = RoomClient::try_join(&node, "notes", private, json!({"token": bob})).await;
    assert_eq!(c.joined["code"], "forbidden", "{}", c.joined);
    assert_eq!(c.closed().await, Some(4403));
    // The public note: Bob joins, but its update rule only lets Alice send.
    let mut b = RoomClient::join(&node, "notes", public, json!({"token": bob})).await;
    let mut a = RoomClient::join(&node, "notes", public, json!({"token": alice})).await;
    b.send(json!({"t": "hi"}), 1).await;
    assert_eq!(b.next_type("error").await["code"], "forbidden");
    a.send(json!({"t": "hello"}), 2).await;
    assert_eq!(
        b.next_type("message").await["payload"],
        json!({"t": "hello"})
    );
    assert_eq!(
        b.messages.len(),
        1,
        "Bob's refused message was never stamped"
    );
    assert_eq!(b.messages[0]["offset"], 1);

    // Alice makes the note private: Bob, who may no longer view it, is removed (the view rule
    // is checked again every --room-recheck seconds); Alice stays.
    let (code, body) = node
        .patch(
            &format!("/api/collections/notes/records/{public}"),
            json!({"public": false}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(b.next_type("error").await["code"], "forbidden");
    assert_eq!(b.closed().await, Some(4403));
    a.send(json!({"t": "still here"}), 3).await;
    a.next_where("the ack of ref 3", |v| v["type"] == "ack" && v["ref"] == 3)
        .await;
    // The record is deleted: its room's members are told it is gone.
    let (code, _) = node
        .delete(&format!("/api/collections/notes/records/{public}"))
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(a.closed().await, Some(4404));

    // Superusers always: the vault's null rules refuse users, not them.
    let mut c = RoomClient::try_join(&node, "vault", vault, json!({"token": alice})).await;
    assert_eq!(c.closed().await, Some(4403));
    let mut su = RoomClient::join(&node, "vault", vault, json!({"token": node.token})).await;
    su.send(json!({"t": "root"}), 1).await;
    assert_eq!(
        su.next_type("message").await["sender"]["collectionName"],
        "_superusers"
    );

    // A bad token, a missing record, a missing collection.
    let mut c = RoomClient::try_join(&node, "notes", public, json!({"token": "not.a.token"})).await;
    assert_eq!(c.joined["code"], "unauthorized");
    assert_eq!(c.closed().await, Some(4401));
    let mut c =
        RoomClient::try_join(&node, "notes", "missing00000000", json!({"token": alice})).await;
    assert_eq!(c.joined["code"], "not_found");
    assert_eq!(c.closed().await, Some(4404));
    let mut c = RoomClient::try_join(&node, "nothing", public, json!({})).await;
    assert_eq!(c.closed().await, Some(4404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_oversized_payloads_are_refused_and_lose_nothing() {
    let (node, doc) = node_with_doc(&["--room-max-payload", "1024"]).await;
    let (_, token) = support::user(&node, "u@example.com").await;

    // Before joining: anything but a join frame closes with 4400, after an error frame.
    for first in [
        "not json",
        r#"{"type":"send","payload":{}}"#,
        r#"{"type":"join","presence":"x"}"#,
    ] {
        let mut c = RoomClient::open(&room_url(&node, "docs", &doc)).await;
        c.send_raw(first).await;
        let Event::Frame(err) = c.next().await else {
            panic!("no error frame for {first}")
        };
        assert_eq!(err["code"], "bad_frame", "{first}: {err}");
        assert_eq!(c.closed().await, Some(4400), "{first}");
    }

    let mut c = RoomClient::join(&node, "docs", &doc, json!({"token": token})).await;
    let cases = [
        ("garbage", "bad_frame"),
        (r#"[1,2]"#, "bad_frame"),
        (r#"{"no":"type"}"#, "bad_frame"),
        (r#"{"type":"dance"}"#, "bad_frame"),
        (r#"{"type":"send","ref":"r1"}"#, "bad_frame"),
        (
            r#"{"type":"send","payload":"text","ref":"r2"}"#,
            "bad_frame",
        ),
        (r#"{"type":"presence.set","state":[1]}"#, "bad_frame"),
        (r#"{"type":"join"}"#, "bad_frame"),
    ];
    for (frame, code) in cases {
        c.send_raw(frame).await;
        let e = c.next_type("error").await;
        assert_eq!(e["code"], code, "{frame}: {e}");
        assert!(!e["message"].as_str().unwrap_or_default().is_empty());
    }
    let state = json!({"type": "presence.set", "state": {"name": "n".repeat(2000)}});
    c.send_raw(&state.to_string()).await;
    assert_eq!(c.next_type("error").await["code"], "payload_too_large");
    // Over --room-max-payload, under the frame limit: refused with its ref, socket kept.
    let big = "x".repeat(2000);
    c.send(json!({"text": big}), "big").await;
    let e = c.next_type("error").await;
    assert_eq!(
        (e["code"].clone(), e["ref"].clone()),
        (json!("payload_too_large"), json!("big"))
    );
    assert!(
        e["message"].as_str().unwrap_or_default().contains("1024"),
        "{e}"
    );
    // Nothing was lost or stamped for the refused frames: the next message is offset 1.
    c.send(json!({"text": "ok"}), "ok").await;
    let m = c.next_type("message").await;
    assert_eq!(
        (m["offset"].clone(), m["payload"].clone()),
        (json!(1), json!({"text": "ok"}))
    );
    // A pretty-printed payload is stored compactly (frames are single lines between nodes).
    c.send_raw("{\"type\":\"send\",\"payload\":{\n  \"a\": [1, 2],\n  \"b\": \"x y\"\n}}")
        .await;
    assert_eq!(
        c.next_type("message").await["payload"],
        json!({"a": [1, 2], "b": "x y"})
    );

    // A frame far beyond the limit is not read at all: the socket closes with 1009.
    c.send(json!({"text": "y".repeat(200_000)}), "huge").await;
    assert_eq!(c.closed().await, Some(1009));

    // Not a websocket: a PocketBase-style JSON error. Links must be signed.
    let (code, body) = node.get(&format!("/api/rooms/docs/{doc}")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("websocket"),
        "{body}"
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/api/rooms/docs/{doc}/link", node.url))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("x-syncbase-node", "intruder")
        .header("x-syncbase-link", "0.00")
        .send()
        .await
        .expect("link request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Room flags are checked before anything starts.
    for (flags, says) in [
        (
            ["--room-lease-ms", "200"],
            "--room-lease-ms must be at least 1000",
        ),
        (
            ["--advertise-url", "ftp://example.com"],
            "is not an http:// URL",
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(support::bin())
            .args(["serve", "--http", "127.0.0.1:0", "--dir"])
            .arg(tmp.path())
            .args(flags)
            .output()
            .expect("run syncbase");
        assert!(!out.status.success(), "{flags:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_recovers_exactly_what_it_missed_or_is_told_it_cannot() {
    let (node, doc) = node_with_doc(&["--room-history", "5"]).await;
    let (_, token) = support::user(&node, "u@example.com").await;
    let mut a = RoomClient::join(&node, "docs", &doc, json!({"token": token})).await;
    let mut b = RoomClient::join(&node, "docs", &doc, json!({"token": token})).await;
    for i in 1..=3 {
        a.send(json!({"i": i}), i).await;
    }
    b.until_messages(3).await;
    let (offset, epoch) = b.position();
    assert_eq!(offset, 3);
    b.close().await;
    for i in 4..=6 {
        a.send(json!({"i": i}), i).await;
    }
    a.until_messages(6).await;

    // Back from {3, epoch}: exactly 4, 5, 6, then live traffic, nothing twice.
    let mut b = RoomClient::join(
        &node,
        "docs",
        &doc,
        json!({"token": token, "offset": offset, "epoch": epoch}),
    )
    .await;
    assert_eq!(
        (
            b.joined["recovering"].clone(),
            b.joined["recovered"].clone(),
            b.joined["missed"].clone()
        ),
        (json!(true), json!(true), json!(3)),
        "{}",
        b.joined
    );
    a.send(json!({"i": 7}), 7).await;
    b.until_messages(4).await;
    assert_eq!(offsets(&b.messages), vec![4, 5, 6, 7]);
    assert_eq!(
        payloads(&b.messages, "i"),
        vec![json!(4), json!(5), json!(6), json!(7)]
    );

    // Positions the room cannot honour are reported, never papered over: a wrong epoch,
    // an offset beyond the top, and one the history (5 messages) no longer reaches.
    for (offset, epoch) in [
        (3, "other".to_string()),
        (99, epoch.clone()),
        (1, epoch.clone()),
    ] {
        let c = RoomClient::join(
            &node,
            "docs",
            &doc,
            json!({"token": token, "offset": offset, "epoch": epoch}),
        )
        .await;
        assert_eq!(
            (c.joined["recovered"].clone(), c.joined["missed"].clone()),
            (json!(false), json!(0)),
            "{offset}"
        );
        assert_eq!(c.joined["offset"], 7, "the client learns where the room is");
    }
    // From the start while the history still starts at 1 would work; here 1 and 2 are gone.
    let c = RoomClient::join(&node, "docs", &doc, json!({"token": token, "offset": 0})).await;
    assert_eq!(c.joined["recovered"], false);

    // A graceful stop closes room sockets with 1001 ("going away": reconnect).
    let mut node = node;
    assert!(node.terminate().success());
    assert_eq!(a.closed().await, Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_and_the_server_memory_stays_bounded() {
    // A long write timeout keeps the dropped client's close frame waiting for it to read,
    // so this test can see the code; the drop itself does not wait for anything.
    let (node, doc) =
        node_with_doc(&["--room-client-buffer", "32", "--room-write-timeout", "120"]).await;
    let (_, token) = support::user(&node, "u@example.com").await;
    // The slow client joins and then does not read at all.
    let (mut slow, _) = tokio_tungstenite::connect_async(room_url(&node, "docs", &doc))
        .await
        .expect("connect");
    use futures::SinkExt;
    slow.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "join", "token": token}).to_string().into(),
    ))
    .await
    .expect("join");
    let mut fast = RoomClient::join(&node, "docs", &doc, json!({"token": token})).await;
    eventually(10, "both joined", || async {
        (rooms_status(&node).await["clients"] == 2).then_some(())
    })
    .await;
    let rss = |pid: u32| {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
    };
    let pid = node.pid().expect("pid");
    let before = rss(pid);
    // ~48 MB of messages: far more than the kernel's socket buffers (a few MB) and the slow
    // client's queue (32 frames); buffered without bound, they would show in the RSS.
    const N: usize = 1500;
    let text = "z".repeat(32 * 1024);
    for i in 0..N {
        fast.send(json!({"i": i, "text": text}), i).await;
        // Paced like a client that waits for its messages: the fast one keeps up.
        fast.until_messages(i.saturating_sub(8)).await;
    }
    fast.until_messages(N).await;
    assert_eq!(
        offsets(&fast.messages),
        (1..=N as u64).collect::<Vec<_>>(),
        "the fast client lost nothing"
    );
    let grown_mb = rss(pid).saturating_sub(before) / 1024;
    assert!(
        grown_mb < 24,
        "server grew by {grown_mb} MB while a client did not read"
    );
    let status = eventually(10, "the slow client dropped", || async {
        let s = rooms_status(&node).await;
        (s["slowDropped"] == 1 && s["clients"] == 1).then_some(s)
    })
    .await;
    assert_eq!(status["messages"], N);
    // When it finally reads, the slow client finds what its buffers held, then 4008.
    let mut got = 0;
    let code = loop {
        use futures::StreamExt;
        match tokio::time::timeout(std::time::Duration::from_secs(30), slow.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                got += usize::from(t.contains(r#""type":"message""#));
            }
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(c)))) => {
                break c.map(|c| u16::from(c.code));
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("slow client: {other:?}"),
        }
    };
    assert_eq!(code, Some(4008));
    assert!(
        got < N,
        "a dropped client cannot have had everything ({got})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_filter_plugin_moderates_room_messages() {
    let (node, doc) = node_with_doc(&[]).await;
    node.create_collection(json!({
        "name": "muted", "viewRule": "", "updateRule": "", "fields": [{"name": "t", "type": "text"}]
    }))
    .await;
    let muted = node.create_record("muted", json!({"t": "x"})).await;
    let muted = muted["id"].as_str().expect("id");
    for (plugin, body) in [
        (
            "redact",
            json!({"as": "inbound-filter", "collection": "docs", "config": "{\"fields\":[\"secret\"]}"}),
        ),
        (
            "local-only",
            json!({"as": "inbound-filter", "collection": "muted"}),
        ),
    ] {
        let bytes = std::fs::read(support::shipped_component(plugin)).expect("component");
        let (code, body2) = node
            .raw(
                Method::POST,
                &format!("/api/plugins?name={plugin}"),
                "application/wasm",
                bytes,
            )
            .await;
        assert!(code.is_success(), "{body2}");
        let (code, out) = node
            .post(&format!("/api/plugins/{plugin}/bind"), body)
            .await;
        assert_eq!(code, StatusCode::OK, "{out}");
    }
    let (_, token) = support::user(&node, "u@example.com").await;
    let mut a = RoomClient::join(&node, "docs", &doc, json!({"token": token})).await;
    let mut b = RoomClient::join(&node, "docs", &doc, json!({})).await;
    a.send(json!({"text": "hi", "secret": "s3cret"}), 1).await;
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.next_type("message").await["payload"],
            json!({"text": "hi"}),
            "redacted for everyone"
        );
    }
    // `local-only` drops everything: the sender is told, nothing is stamped.
    let mut m = RoomClient::join(&node, "muted", muted, json!({"token": token})).await;
    m.send(json!({"t": "hello"}), "x").await;
    let e = m.next_type("error").await;
    assert_eq!(
        (e["code"].clone(), e["ref"].clone()),
        (json!("rejected"), json!("x"))
    );
    assert_eq!(m.joined["offset"], 0);
    let again = RoomClient::join(&node, "muted", muted, json!({})).await;
    assert_eq!(
        again.joined["offset"], 0,
        "a dropped message takes no offset"
    );
}
