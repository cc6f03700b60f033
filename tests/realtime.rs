//! Realtime over SSE and websocket against the real binary: delivery after commit, rule checks
//! per subscriber, delete payloads, subscription errors, slow consumers, idle timeout.

mod support;

use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn create_update_delete_are_delivered_with_the_topic_as_event_name() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let mut sse = Sse::connect(&node).await;
    assert_eq!(
        sse.subscribe(&node, "", &["posts/*"]).await,
        StatusCode::NO_CONTENT
    );
    let rec = node.create_record("posts", json!({"title": "hello"})).await;
    let id = rec["id"].as_str().expect("id");
    let ev = sse.next().await.expect("create event");
    assert_eq!(ev.event, "posts/*");
    assert_eq!(ev.id, sse.client_id);
    assert_eq!(ev.data["action"], "create");
    assert_eq!(ev.data["record"], rec);
    node.patch(
        &format!("/api/collections/posts/records/{id}"),
        json!({"title": "changed"}),
    )
    .await;
    let ev = sse.next().await.expect("update event");
    assert_eq!(
        (
            ev.data["action"].clone(),
            ev.data["record"]["title"].clone()
        ),
        (json!("update"), json!("changed"))
    );
    node.delete(&format!("/api/collections/posts/records/{id}"))
        .await;
    let ev = sse.next().await.expect("delete event");
    assert_eq!(ev.data["action"], "delete");
    assert_eq!(
        ev.data["record"]["title"], "changed",
        "deletes carry the record as it was"
    );
}

#[tokio::test]
async fn a_rule_hides_records_from_subscribers_who_may_not_see_them() {
    let node = Node::start().await;
    let (_, users) = node.get("/api/collections/users").await;
    node.create_collection(json!({
        "name": "notes",
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": "", "updateRule": "",
        "fields": [
            {"name": "text", "type": "text"},
            {"name": "secret", "type": "text", "hidden": true},
            {"name": "owner", "type": "relation", "collectionId": users["id"], "maxSelect": 1}
        ]
    }))
    .await;
    let (ann, ann_t) = user(&node, "ann@example.com").await;
    let (bob, bob_t) = user(&node, "bob@example.com").await;
    let mut ann_sse = Sse::connect(&node).await;
    let mut bob_sse = Sse::connect(&node).await;
    assert_eq!(
        ann_sse.subscribe(&node, &ann_t, &["notes/*"]).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        bob_sse.subscribe(&node, &bob_t, &["notes/*"]).await,
        StatusCode::NO_CONTENT
    );

    node.create_record(
        "notes",
        json!({"text": "for ann", "secret": "s", "owner": ann}),
    )
    .await;
    node.create_record("notes", json!({"text": "for bob", "owner": bob}))
        .await;
    let a = ann_sse.next().await.expect("ann's event");
    assert_eq!(a.data["record"]["text"], "for ann");
    assert!(
        a.data["record"].get("secret").is_none(),
        "hidden fields are removed: {}",
        a.data
    );
    // Bob's first event is his own note: ann's was never sent to him.
    let b = bob_sse.next().await.expect("bob's event");
    assert_eq!(b.data["record"]["text"], "for bob");

    // A record topic uses the view rule, and a superuser sees everything.
    let mut su = Sse::connect(&node).await;
    su.subscribe(&node, &node.token, &["notes/*"]).await;
    node.create_record(
        "notes",
        json!({"text": "third", "secret": "s3", "owner": bob}),
    )
    .await;
    let ev = su.next().await.expect("superuser event");
    assert_eq!(ev.data["record"]["secret"], "s3");
}

#[tokio::test]
async fn subscription_requests_are_validated() {
    let node = Node::start().await;
    let (s, body) = node
        .post(
            "/api/realtime",
            json!({"clientId": "nope", "subscriptions": ["posts/*"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let sse = Sse::connect(&node).await;
    let many: Vec<String> = (0..1001).map(|i| format!("posts/{i}")).collect();
    let (s, _) = node
        .post(
            "/api/realtime",
            json!({"clientId": sse.client_id, "subscriptions": many}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A client bound to one user cannot be taken over by another.
    let (_, ann_t) = user(&node, "ann@example.com").await;
    let (_, bob_t) = user(&node, "bob@example.com").await;
    assert_eq!(
        sse.subscribe(&node, &ann_t, &["users/*"]).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sse.subscribe(&node, &bob_t, &["users/*"]).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn options_filter_fields_and_expand_shape_deliveries() {
    let node = Node::start().await;
    let authors = node.create_collection(json!({"name": "authors", "viewRule": "", "fields": [{"name": "name", "type": "text"}]})).await;
    node.create_collection(
        json!({"name": "posts", "listRule": "", "viewRule": "", "fields": [
            {"name": "title", "type": "text"}, {"name": "n", "type": "number"},
            {"name": "author", "type": "relation", "collectionId": authors["id"], "maxSelect": 1}
        ]}),
    )
    .await;
    let a = node.create_record("authors", json!({"name": "Ann"})).await;
    let mut sse = Sse::connect(&node).await;
    let opts = json!({"query": {"filter": "n > 5", "expand": "author", "fields": "title,expand.author.name"}}).to_string();
    let topic = format!("posts/*?options={}", urlencode(&opts));
    assert_eq!(
        sse.subscribe(&node, "", &[&topic]).await,
        StatusCode::NO_CONTENT
    );
    node.create_record(
        "posts",
        json!({"title": "small", "n": 1, "author": a["id"]}),
    )
    .await;
    node.create_record("posts", json!({"title": "big", "n": 9, "author": a["id"]}))
        .await;
    let ev = sse.next().await.expect("event");
    assert_eq!(ev.event, topic);
    assert_eq!(
        ev.data["record"],
        json!({"title": "big", "expand": {"author": {"name": "Ann"}}})
    );
}

/// A client's subscriptions have a bounded cost: a thousand two-condition filters are refused
/// with an error that says why, and the client keeps its previous subscriptions.
#[tokio::test]
async fn subscriptions_over_the_cost_limit_are_refused_clearly() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let mut sse = Sse::connect(&node).await;
    assert_eq!(
        sse.subscribe(&node, "", &["posts/*"]).await,
        StatusCode::NO_CONTENT
    );
    let heavy: Vec<String> = (0..1000)
        .map(|i| {
            let opts = json!({"query": {"filter": format!("n > {i} && n < 5000")}}).to_string();
            format!("posts/*?options={}", urlencode(&opts))
        })
        .collect();
    let (s, body) = node
        .call_as(
            "",
            Method::POST,
            "/api/realtime",
            Some(json!({"clientId": sse.client_id, "subscriptions": heavy})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cost 3000") && message.contains("limit of 2000"),
        "{message}"
    );
    // Still subscribed as before.
    let rec = node
        .create_record("posts", json!({"title": "still here"}))
        .await;
    let ev = sse.next().await.expect("event");
    assert_eq!(ev.data["record"]["id"], rec["id"]);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_without_blocking_writers_or_others() {
    let node = Node::start_with(&["--realtime-buffer", "8"]).await;
    node.create_collection(posts_def()).await;
    // The slow client subscribes but never reads: its socket and buffer fill up.
    let slow = node
        .client
        .get(format!("{}/api/realtime", node.url))
        .send()
        .await
        .expect("connect");
    let mut slow_stream = slow.bytes_stream();
    let first = slow_stream.next().await.expect("frame").expect("bytes");
    let text = String::from_utf8_lossy(&first);
    let slow_id = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .expect("id")
        .trim()
        .to_string();
    let (s, _) = node
        .post(
            "/api/realtime",
            json!({"clientId": slow_id, "subscriptions": ["posts/*"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mut fast = Sse::connect(&node).await;
    fast.subscribe(&node, "", &["posts/*"]).await;

    let big = "x".repeat(64 * 1024);
    let total = 200;
    for i in 0..total {
        node.create_record(
            "posts",
            json!({"title": format!("{i}"), "meta": {"blob": big}}),
        )
        .await;
    }
    for i in 0..total {
        let ev = fast.next().await.expect("fast subscriber gets every event");
        assert_eq!(ev.data["record"]["title"], format!("{i}"));
    }
    // The slow client was cut off: its stream ends before all events arrived.
    let mut received = 0usize;
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(std::time::Duration::from_secs(20), slow_stream.next()).await
    {
        received += String::from_utf8_lossy(&chunk)
            .matches("event:posts/*")
            .count();
    }
    assert!(received < total, "slow client got {received} of {total}");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let node = Node::start_with(&["--realtime-idle", "1"]).await;
    let mut sse = Sse::connect(&node).await;
    assert!(
        sse.next().await.is_none(),
        "the stream ends after the idle timeout"
    );
    let (s, _) = node
        .post(
            "/api/realtime",
            json!({"clientId": sse.client_id, "subscriptions": []}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the closed client is forgotten");
}

#[tokio::test]
async fn websocket_clients_get_the_same_deliveries() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let ws_url = node.url.replacen("http://", "ws://", 1) + "/api/realtime/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connect");
    let hello = ws_next(&mut ws).await;
    assert_eq!(hello["event"], "PB_CONNECT");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"subscriptions": ["posts/*"], "token": node.token})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    assert_eq!(ws_next(&mut ws).await["event"], "PB_SUBSCRIBED");
    node.create_record("posts", json!({"title": "via ws"}))
        .await;
    let ev = ws_next(&mut ws).await;
    assert_eq!(ev["event"], "posts/*");
    assert_eq!(ev["data"]["record"]["title"], "via ws");
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"subscriptions": ["x/*"], "token": "forged"})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    assert_eq!(ws_next(&mut ws).await["data"]["status"], 401);
    let _ = Method::GET;
}

async fn ws_next<S>(ws: &mut S) -> Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    let msg = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next())
        .await
        .expect("ws frame in time");
    let msg = msg.expect("open").expect("frame");
    serde_json::from_str::<Value>(msg.to_text().expect("text")).expect("json")
}
