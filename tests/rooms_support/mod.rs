//! Helpers of the room tests (`tests/rooms.rs`, `tests/rooms_cluster.rs`): a real websocket
//! client of `GET /api/rooms/{collection}/{id}` that records every frame and the close code,
//! and tracks its position in the room the way the JS helper does.

#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::Node;

/// What a room socket received.
#[derive(Debug, Clone)]
pub enum Event {
    Frame(Value),
    /// The socket closed, with the server's code and reason when it sent one.
    Closed(Option<(u16, String)>),
}

type Sink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// A room client: frames arrive on a channel, read by a task as fast as they come.
pub struct RoomClient {
    sink: Sink,
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
    /// Frames received while waiting for others, still to be consumed.
    backlog: VecDeque<Event>,
    /// Every `message` frame received, in order.
    pub messages: Vec<Value>,
    /// The `joined` frame.
    pub joined: Value,
    /// Client ids present in the room, as this client's presence frames say.
    pub present: BTreeSet<String>,
    pub client_id: String,
}

/// The websocket URL of a room on a node.
pub fn room_url(node: &Node, collection: &str, id: &str) -> String {
    format!(
        "{}/api/rooms/{collection}/{id}",
        node.url.replacen("http://", "ws://", 1)
    )
}

impl RoomClient {
    /// Opens the socket (no join yet).
    pub async fn open(url: &str) -> RoomClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                match m {
                    Ok(Message::Text(t)) => {
                        let v = serde_json::from_str(&t).unwrap_or(Value::String(t.to_string()));
                        if tx.send(Event::Frame(v)).is_err() {
                            return;
                        }
                    }
                    Ok(Message::Close(c)) => {
                        let _ = tx.send(Event::Closed(
                            c.map(|c| (u16::from(c.code), c.reason.to_string())),
                        ));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(Event::Closed(None));
        });
        RoomClient {
            sink,
            rx,
            task,
            backlog: VecDeque::new(),
            messages: Vec::new(),
            present: BTreeSet::new(),
            joined: Value::Null,
            client_id: String::new(),
        }
    }

    /// Opens a socket to `node`'s room and joins with `join` (fields of the join frame:
    /// token, offset, epoch, presence). Panics unless the join is accepted.
    pub async fn join(node: &Node, collection: &str, id: &str, join: Value) -> RoomClient {
        let mut c = RoomClient::try_join(node, collection, id, join).await;
        assert!(c.joined["type"] == "joined", "join refused: {:?}", c.joined);
        c.client_id = c.joined["clientId"].as_str().unwrap_or_default().into();
        c
    }

    /// Like `join`, but returns whatever came first (`joined`, or an `error` frame, or a
    /// close as `{"closed": code}`).
    pub async fn try_join(node: &Node, collection: &str, id: &str, join: Value) -> RoomClient {
        let mut c = RoomClient::open(&room_url(node, collection, id)).await;
        let mut frame = json!({"type": "join"});
        if let (Some(f), Some(extra)) = (frame.as_object_mut(), join.as_object()) {
            f.extend(extra.clone());
        }
        c.send_raw(&frame.to_string()).await;
        c.joined = match c.next().await {
            Event::Frame(v) => v,
            Event::Closed(code) => json!({"closed": code.map(|c| c.0)}),
        };
        c
    }

    pub async fn send_raw(&mut self, text: &str) {
        let _ = self.sink.send(Message::Text(text.into())).await;
    }

    /// Sends a message with a `ref`.
    pub async fn send(&mut self, payload: Value, reference: impl Into<Value>) {
        let f = json!({"type": "send", "payload": payload, "ref": reference.into()});
        self.send_raw(&f.to_string()).await;
    }

    /// The next event off the socket; panics after 30 s. `message` frames are also kept in
    /// `messages`.
    async fn recv(&mut self) -> Event {
        let e = match tokio::time::timeout(Duration::from_secs(30), self.rx.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => Event::Closed(None),
            Err(_) => panic!("no room frame within 30 s"),
        };
        if let Event::Frame(v) = &e {
            let id = |m: &Value| m["clientId"].as_str().unwrap_or_default().to_string();
            match (v["type"].as_str(), v["action"].as_str()) {
                (Some("message"), _) => self.messages.push(v.clone()),
                (Some("presence"), Some("sync")) => {
                    self.present = v["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(id)
                        .collect();
                }
                (Some("presence"), Some("join")) => {
                    self.present.insert(id(&v["member"]));
                }
                (Some("presence"), Some("leave")) => {
                    self.present.remove(&id(&v["member"]));
                }
                _ => {}
            }
        }
        e
    }

    /// Reads until the presence this client sees satisfies `pred`.
    pub async fn until_present(&mut self, what: &str, pred: impl Fn(&BTreeSet<String>) -> bool) {
        while !pred(&self.present) {
            match self.recv().await {
                Event::Closed(c) => panic!("socket closed ({c:?}) while waiting for {what}"),
                Event::Frame(v) if v["type"] == "presence" || v["type"] == "message" => {}
                other => self.backlog.push_back(other),
            }
        }
    }

    /// The next event not consumed yet.
    pub async fn next(&mut self) -> Event {
        match self.backlog.pop_front() {
            Some(e) => e,
            None => self.recv().await,
        }
    }

    /// The first unconsumed frame matching `pred`; frames before it stay unconsumed. Panics
    /// if the socket closes first.
    pub async fn next_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = self
            .backlog
            .iter()
            .position(|e| matches!(e, Event::Frame(v) if pred(v)));
        if let Some(Event::Frame(v)) = found.and_then(|i| self.backlog.remove(i)) {
            return v;
        }
        loop {
            match self.recv().await {
                Event::Frame(v) if pred(&v) => return v,
                Event::Closed(c) => panic!("socket closed ({c:?}) while waiting for {what}"),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// Like `next_where`, but a close is an answer too: `Err(code)`.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Result<Value, Option<u16>> {
        let found = self
            .backlog
            .iter()
            .position(|e| matches!(e, Event::Frame(v) if pred(v)));
        if let Some(Event::Frame(v)) = found.and_then(|i| self.backlog.remove(i)) {
            return Ok(v);
        }
        loop {
            match self.recv().await {
                Event::Frame(v) if pred(&v) => return Ok(v),
                Event::Closed(c) => return Err(c.map(|c| c.0)),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// The next frame of `type`.
    pub async fn next_type(&mut self, kind: &str) -> Value {
        self.next_where(kind, |v| v["type"] == kind).await
    }

    /// Reads until the socket closes; the close code (None: no close frame).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Event::Closed(c) = self.next().await {
                return c.map(|c| c.0);
            }
        }
    }

    /// Reads until `n` messages in total were received (other frames stay unconsumed).
    pub async fn until_messages(&mut self, n: usize) {
        while self.messages.len() < n {
            match self.recv().await {
                Event::Closed(c) => panic!(
                    "socket closed ({c:?}) after {} of {n} messages",
                    self.messages.len()
                ),
                Event::Frame(v) if v["type"] == "message" => {}
                other => self.backlog.push_back(other),
            }
        }
    }

    /// `{offset, epoch}` of the last message seen (or of the join when none was).
    pub fn position(&self) -> (u64, String) {
        match self.messages.last() {
            Some(m) => (
                m["offset"].as_u64().unwrap_or(0),
                m["epoch"].as_str().unwrap_or_default().into(),
            ),
            None => (
                self.joined["offset"].as_u64().unwrap_or(0),
                self.joined["epoch"].as_str().unwrap_or_default().into(),
            ),
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .sink
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                },
            )))
            .await;
        self.task.abort();
    }
}

impl Drop for RoomClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Offsets of message frames.
pub fn offsets(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["offset"].as_u64().unwrap_or(0))
        .collect()
}

/// Payload field `k` of each message.
pub fn payloads(msgs: &[Value], k: &str) -> Vec<Value> {
    msgs.iter().map(|m| m["payload"][k].clone()).collect()
}

/// A collection of rooms: anyone may join, only signed-in users may send, and rows are
/// created by the tests as superuser.
pub fn docs_def() -> Value {
    json!({
        "name": "docs",
        "listRule": "", "viewRule": "", "createRule": "", "deleteRule": "",
        "updateRule": "@request.auth.id != ''",
        "fields": [{"name": "title", "type": "text"}]
    })
}

/// Polls `f` until it returns `Some`, failing after `secs` with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node's rooms status (`/api/sync/status` → `rooms`).
pub async fn rooms_status(node: &Node) -> Value {
    let (code, body) = node.get("/api/sync/status").await;
    assert_eq!(code, reqwest::StatusCode::OK, "{body}");
    body["rooms"].clone()
}
