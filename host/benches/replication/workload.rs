//! The writes the phases make, through PocketBase's own API: single creates, `/api/batch`
//! creates and updates, and a realtime SSE subscriber that stamps when each record shows up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::node::Node;
use crate::support::Conn;

const NOTE: &str = "the quick brown fox jumps over the lazy dog";

/// The body of every record the bench writes: `n` identifies it (and is how the subscriber
/// knows which write it sees), `title` names the writing node.
pub fn record_body(node: &str, n: u64) -> Value {
    json!({"title": format!("{node} #{n}"), "n": n, "note": NOTE})
}

/// A collection everyone may read and write (writers carry no token), with autodates as a
/// typical PocketBase collection has.
pub fn collection_def(name: &str) -> Value {
    json!({
        "name": name,
        "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "note", "type": "text"},
            {"name": "created", "type": "autodate", "onCreate": true},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
        ],
    })
}

/// One create; `Ok(false)` for an answer other than 200.
pub async fn create(conn: &mut Conn, coll: &str, node: &str, n: u64) -> Result<bool> {
    let path = format!("/api/collections/{coll}/records");
    let body = Bytes::from(record_body(node, n).to_string());
    let (status, _) = conn.send(Method::POST, &path, None, Some(body)).await?;
    Ok(status == StatusCode::OK)
}

/// Creates `count` records on `node` through `/api/batch`, `batch` per request, `clients`
/// requests at a time; `n` runs from `first_n`. Returns the record ids.
pub async fn batch_create(
    node: &Node,
    coll: &str,
    first_n: u64,
    count: usize,
    batch: usize,
    clients: usize,
) -> Result<Vec<String>> {
    let chunks: Vec<Vec<Value>> = (0..count as u64)
        .map(|i| {
            json!({
                "method": "POST",
                "url": format!("/api/collections/{coll}/records"),
                "body": record_body(node.id, first_n + i),
            })
        })
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(<[Value]>::to_vec)
        .collect();
    let answers = run_batches(node, chunks, clients).await?;
    let mut ids = Vec::with_capacity(count);
    for answer in answers {
        for r in answer.as_array().context("batch answer is not a list")? {
            let id = r["body"]["id"]
                .as_str()
                .context("batch create without id")?;
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// `count` updates on `node` through `/api/batch`, cycling through `ids` in order (`n` from
/// `first_n`), `batch` per request, one request at a time so the node writes the records in
/// the same order as a peer doing the same.
pub async fn batch_update(
    node: &Node,
    coll: &str,
    ids: &[String],
    first_n: u64,
    count: usize,
    batch: usize,
) -> Result<()> {
    let chunks: Vec<Vec<Value>> = (0..count)
        .map(|i| {
            json!({
                "method": "PATCH",
                "url": format!("/api/collections/{coll}/records/{}", ids[i % ids.len()]),
                "body": record_body(node.id, first_n + i as u64),
            })
        })
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(<[Value]>::to_vec)
        .collect();
    run_batches(node, chunks, 1).await?;
    Ok(())
}

/// Sends the batches, `clients` at a time, and returns their answers in order.
async fn run_batches(node: &Node, chunks: Vec<Vec<Value>>, clients: usize) -> Result<Vec<Value>> {
    let addr = node.addr;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(
        chunks
            .into_iter()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let queue = queue.clone();
        tasks.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut out = Vec::new();
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .pop_front();
                let Some((i, requests)) = next else { break };
                let body = json!({ "requests": requests });
                let answer = conn
                    .json(Method::POST, "/api/batch", None, Some(body))
                    .await?;
                out.push((i, answer));
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Vec::new();
    while let Some(res) = tasks.join_next().await {
        all.extend(res??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, a)| a).collect())
}

// ---------------------------------------------------------------------------------------------
// Realtime

/// A realtime SSE client subscribed to `<coll>/*`: a task stamps each event's `n` with the
/// instant it arrived and sends the pair down a channel.
pub struct Subscriber {
    pub seen: tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// `GET /api/realtime`, the client id from `PB_CONNECT`, then `POST /api/realtime`.
    pub async fn connect(addr: SocketAddr, coll: &str) -> Result<Subscriber> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get("/api/realtime")
            .header("host", addr.to_string())
            .header("accept", "text/event-stream")
            .body(Empty::<Bytes>::new())?;
        let res = sender.send_request(req).await?;
        ensure!(
            res.status() == StatusCode::OK,
            "GET /api/realtime -> {}",
            res.status()
        );
        let mut body = res.into_body();
        let mut buf = BytesMut::new();
        let client_id = loop {
            if let Some((event, id, _)) = next_event(&mut buf) {
                if event == "PB_CONNECT" {
                    break id;
                }
                continue;
            }
            let frame = body
                .frame()
                .await
                .context("stream ended before PB_CONNECT")??;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
        };
        let topic = format!("{coll}/*");
        let mut conn = Conn::connect(addr).await?;
        let sub = json!({"clientId": client_id, "subscriptions": [topic]});
        let (status, answer) = conn
            .send(
                Method::POST,
                "/api/realtime",
                None,
                Some(Bytes::from(sub.to_string())),
            )
            .await?;
        ensure!(
            status == StatusCode::NO_CONTENT,
            "POST /api/realtime -> {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let _driver = AbortOnDrop(driver);
            loop {
                while let Some((event, _, data)) = next_event(&mut buf) {
                    if event == topic
                        && let Some(n) = field_n(&data)
                        && tx.send((n, Instant::now())).is_err()
                    {
                        return;
                    }
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    _ => return,
                }
            }
        });
        Ok(Subscriber { seen, reader })
    }

    /// Waits (at most `deadline`) for the event of record `n`; earlier ones are skipped.
    pub async fn wait_for(&mut self, n: u64, deadline: Duration) -> Option<Instant> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.seen.recv()).await {
                Ok(Some((m, at))) if m == n => return Some(at),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next complete SSE event in `buf` as (event, id, data), removed from it.
fn next_event(buf: &mut BytesMut) -> Option<(String, String, String)> {
    loop {
        let end = buf.windows(2).position(|w| w == b"\n\n")?;
        let block = buf.split_to(end + 2);
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        for line in String::from_utf8_lossy(&block).lines() {
            let line = line.trim_end_matches('\r');
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match key {
                "event" => event = value,
                "id" => id = value,
                "data" => data = value,
                _ => {} // comments (keep-alives) and retry
            }
        }
        if !event.is_empty() || !data.is_empty() {
            return Some((event, id, data));
        }
    }
}

/// The record's `n` in an event's data.
fn field_n(data: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(data).ok()?;
    v["record"]["n"].as_f64().map(|n| n as u64)
}
