//! Node-to-node links: an entry node's hub reaches the room's owner on another node over a
//! websocket (tokio-tungstenite) to `GET /api/rooms/{collectionId}/{recordId}/link` at the
//! owner's advertised URL. Both directions carry lines of text (`protocol::Up` /
//! `protocol::Down`), several per websocket message when they queue up.
//!
//! * Auth: the entry node has already checked the client's token and rules (superusers are
//!   per node, so the owner could not); the link itself is signed with the cluster's link
//!   secret (HMAC-SHA256 over node, room and a timestamp, accepted within two minutes).
//! * Liveness: the entry node pings every third of the lease TTL; a side that hears nothing
//!   for a whole TTL (an owner stopped by SIGSTOP, a dead peer) ends the link, and the hub's
//!   clients reconnect. Connecting gives up after half a TTL (a stopped process still
//!   completes TCP handshakes, but never the upgrade).
//! * Backpressure: every write has a timeout, and the owner drops a link whose queue is full,
//!   so a stalled peer costs bounded memory.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use super::hub::port_capacity;
use super::owner::OwnerHandle;
use super::protocol::{Down, Up, close};
use super::{RoomKey, Rooms};

/// Header naming the calling node.
pub const NODE_HEADER: &str = "x-syncbase-node";
/// Header with `<unix seconds>.<hex hmac>`.
pub const SIGNATURE_HEADER: &str = "x-syncbase-link";
/// Largest batch of lines in one websocket message.
const MAX_BATCH: usize = 256 * 1024;
/// How far a link signature's clock may be from ours.
const MAX_SKEW_SECS: i64 = 120;

/// Why a link was not accepted (the HTTP answer: 401 or 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefused {
    /// Not signed with the cluster's secret (or this node does not replicate).
    Unauthorized,
    /// This node does not own the room (any more): look it up again.
    NotOwner,
}

/// Why an entry node could not link to an owner.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this node has no room log")]
    NoCluster,
    #[error("bad owner URL {0:?}")]
    BadUrl(String),
    #[error("the node there does not own the room")]
    NotOwner,
    #[error("connecting timed out")]
    Timeout,
    #[error("{0}")]
    Connect(String),
}

fn timings(rooms: &Rooms) -> (Duration, Duration) {
    let ttl = rooms
        .cluster()
        .ok()
        .flatten()
        .map_or(rooms.inner.opts.lease_ttl, |c| c.ttl);
    // (ping every, silent for this long = dead)
    ((ttl / 3).max(Duration::from_millis(100)), ttl)
}

fn signature(secret: &[u8], node: &str, key: &RoomKey, ts: i64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(format!("{node}\n{}\n{}\n{ts}", key.collection, key.record).as_bytes());
    Some(mac)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Opens a link to the owner at `base_url` for `key`: a sender for the hub's requests and a
/// receiver of the owner's frames (which ends when the link does).
pub async fn connect(
    rooms: &Rooms,
    base_url: &str,
    key: &RoomKey,
) -> Result<(mpsc::Sender<Up>, mpsc::Receiver<Down>), LinkError> {
    let cluster = rooms.cluster().ok().flatten().ok_or(LinkError::NoCluster)?;
    let mut url = url::Url::parse(base_url).map_err(|_| LinkError::BadUrl(base_url.into()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(LinkError::BadUrl(base_url.into())),
    };
    url.set_scheme(scheme)
        .map_err(|_| LinkError::BadUrl(base_url.into()))?;
    url.path_segments_mut()
        .map_err(|_| LinkError::BadUrl(base_url.into()))?
        .pop_if_empty()
        .extend(["api", "rooms", &key.collection, &key.record, "link"]);
    let ts = chrono::Utc::now().timestamp();
    let node = rooms.node_id();
    let mac = signature(&cluster.secret, node, key, ts).ok_or(LinkError::NoCluster)?;
    let sig = format!("{ts}.{}", hex(&mac.finalize().into_bytes()));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let headers = req.headers_mut();
    for (name, value) in [(NODE_HEADER, node), (SIGNATURE_HEADER, sig.as_str())] {
        let value = value
            .parse()
            .map_err(|_| LinkError::Connect(format!("bad {name} header")))?;
        headers.insert(name, value);
    }
    let (ping_every, dead_after) = timings(rooms);
    let connecting = tokio_tungstenite::connect_async_with_config(req, None, true);
    let (ws, _) = match tokio::time::timeout(dead_after / 2, connecting).await {
        Err(_) => return Err(LinkError::Timeout),
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status() == 409 => {
            return Err(LinkError::NotOwner);
        }
        Ok(Err(e)) => return Err(LinkError::Connect(e.to_string())),
        Ok(Ok(ok)) => ok,
    };
    let (up_tx, up_rx) = mpsc::channel(port_capacity(rooms));
    let (down_tx, down_rx) = mpsc::channel(port_capacity(rooms));
    let (sink, stream) = ws.split();
    let done = CancellationToken::new();
    let write_timeout = rooms.inner.opts.write_timeout;
    tokio::spawn(write_ups(
        sink,
        up_rx,
        ping_every,
        write_timeout,
        done.clone(),
    ));
    tokio::spawn(read_downs(stream, down_tx, dead_after, done));
    Ok((up_tx, down_rx))
}

type ClientSink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tungstenite::Message,
>;
type ClientStream = futures::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

/// Entry side: the hub's requests to the owner, and keepalive pings.
async fn write_ups(
    mut sink: ClientSink,
    mut rx: mpsc::Receiver<Up>,
    ping_every: Duration,
    write_timeout: Duration,
    done: CancellationToken,
) {
    let mut ping = tokio::time::interval(ping_every);
    loop {
        let msg = tokio::select! {
            _ = done.cancelled() => break,
            up = rx.recv() => {
                let Some(up) = up else { break };
                let mut text = String::new();
                up.encode(&mut text);
                while text.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(up) => up.encode(&mut text),
                        Err(_) => break,
                    }
                }
                tungstenite::Message::Text(text.into())
            }
            _ = ping.tick() => tungstenite::Message::Ping(Default::default()),
        };
        match tokio::time::timeout(write_timeout, sink.send(msg)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    done.cancel();
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

/// Entry side: the owner's frames to the hub, until the link closes or falls silent.
async fn read_downs(
    mut stream: ClientStream,
    tx: mpsc::Sender<Down>,
    dead_after: Duration,
    done: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = done.cancelled() => break,
            n = tokio::time::timeout(dead_after, stream.next()) => n,
        };
        match next {
            Err(_) => {
                tracing::warn!(
                    silent_ms = dead_after.as_millis() as u64,
                    "room owner link silent; closing it"
                );
                break;
            }
            Ok(Some(Ok(tungstenite::Message::Text(text)))) => {
                for line in text.lines() {
                    match Down::decode(line) {
                        Ok(d) => {
                            if tx.send(d).await.is_err() {
                                done.cancel();
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "bad line from a room owner; closing the link");
                            done.cancel();
                            return;
                        }
                    }
                }
            }
            Ok(Some(Ok(tungstenite::Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    done.cancel();
}

impl Rooms {
    /// Checks a link request: signed by a node of this cluster, for a room this node owns.
    pub fn accept_link(
        &self,
        collection: &str,
        record: &str,
        headers: &HeaderMap,
    ) -> Result<(OwnerHandle, RoomKey), LinkRefused> {
        let cluster = self
            .cluster()
            .ok()
            .flatten()
            .ok_or(LinkRefused::Unauthorized)?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let node = header(NODE_HEADER).ok_or(LinkRefused::Unauthorized)?;
        let (ts, sig) = header(SIGNATURE_HEADER)
            .and_then(|s| s.split_once('.'))
            .ok_or(LinkRefused::Unauthorized)?;
        let ts: i64 = ts.parse().map_err(|_| LinkRefused::Unauthorized)?;
        if (chrono::Utc::now().timestamp() - ts).abs() > MAX_SKEW_SECS {
            return Err(LinkRefused::Unauthorized);
        }
        let key = RoomKey {
            collection: collection.to_string(),
            record: record.to_string(),
        };
        let sig = unhex(sig).ok_or(LinkRefused::Unauthorized)?;
        signature(&cluster.secret, node, &key, ts)
            .ok_or(LinkRefused::Unauthorized)?
            .verify_slice(&sig)
            .map_err(|_| LinkRefused::Unauthorized)?;
        let owner = self.owned(&key).ok_or(LinkRefused::NotOwner)?;
        Ok((owner, key))
    }
}

/// Owner side of a link: the entry node's requests in, the room's frames out.
pub async fn serve_link(rooms: Rooms, owner: OwnerHandle, key: RoomKey, socket: WebSocket) {
    let (tx, rx) = mpsc::channel(port_capacity(&rooms));
    let (mut sink, stream) = socket.split();
    let Some(port) = owner.attach(tx, true).await else {
        let _ = sink
            .send(close_msg(
                close::RECONNECT,
                "This node no longer owns the room.",
            ))
            .await;
        return;
    };
    tracing::debug!(room = %key.token(), port, "room link attached");
    let (_, dead_after) = timings(&rooms);
    let write_timeout = rooms.inner.opts.write_timeout;
    let done = CancellationToken::new();
    let writer = tokio::spawn(write_downs(sink, rx, write_timeout, done.clone()));
    read_ups(stream, &owner, port, dead_after, done.clone()).await;
    done.cancel();
    owner.detach(port).await;
    let _ = writer.await;
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Owner side: the room's frames to the entry node, several lines per message.
async fn write_downs(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Down>,
    write_timeout: Duration,
    done: CancellationToken,
) {
    let mut text = String::new();
    loop {
        let first = tokio::select! {
            _ = done.cancelled() => break,
            d = rx.recv() => d,
        };
        let Some(first) = first else {
            // The owner dropped this port (it ended, or the link fell behind).
            let _ = tokio::time::timeout(
                write_timeout,
                sink.send(close_msg(
                    close::RECONNECT,
                    "The room's owner changed; reconnect.",
                )),
            )
            .await;
            break;
        };
        text.clear();
        first.encode(&mut text);
        while text.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(d) => d.encode(&mut text),
                Err(_) => break,
            }
        }
        let msg = Message::Text(text.as_str().into());
        match tokio::time::timeout(write_timeout, sink.send(msg)).await {
            Ok(Ok(())) => {}
            _ => {
                tracing::info!("room link write failed or timed out; dropping the link");
                break;
            }
        }
    }
    done.cancel();
}

/// Owner side: the entry node's requests, until the link closes or falls silent.
async fn read_ups(
    mut stream: futures::stream::SplitStream<WebSocket>,
    owner: &OwnerHandle,
    port: u64,
    dead_after: Duration,
    done: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = done.cancelled() => return,
            n = tokio::time::timeout(dead_after, stream.next()) => n,
        };
        match next {
            Err(_) => {
                tracing::warn!("room link from an entry node silent; closing it");
                return;
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                for line in text.lines() {
                    match Up::decode(line) {
                        Ok(up) => {
                            if !owner.send(port, up).await {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "bad line on a room link; closing it");
                            return;
                        }
                    }
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A signature header value, as a node makes it.
#[cfg(test)]
fn sign_for_tests(secret: &[u8], node: &str, key: &RoomKey, ts: i64) -> Option<String> {
    signature(secret, node, key, ts).map(|m| format!("{ts}.{}", hex(&m.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_node_room_and_time() {
        let key = RoomKey {
            collection: "c".into(),
            record: "r".into(),
        };
        let sig = sign_for_tests(b"0123456789abcdef", "n1", &key, 100).expect("sign");
        let (ts, hexsig) = sig.split_once('.').expect("ts.sig");
        assert_eq!(ts, "100");
        let raw = unhex(hexsig).expect("hex");
        let ok = |node: &str, record: &str, ts: i64| {
            let k = RoomKey {
                collection: "c".into(),
                record: record.into(),
            };
            signature(b"0123456789abcdef", node, &k, ts)
                .expect("mac")
                .verify_slice(&raw)
                .is_ok()
        };
        assert!(ok("n1", "r", 100));
        assert!(!ok("n2", "r", 100));
        assert!(!ok("n1", "s", 100));
        assert!(!ok("n1", "r", 101));
        assert_eq!(unhex("zz"), None);
    }
}
