//! One client's room socket on the node it connected to: the `join` handshake (token, view
//! rule), then its frames to the room's owner (each `send` checked against the update rule
//! here, with the client's own auth) and the owner's frames back through the node's hub.
//!
//! The socket's writer runs apart from its reader, draining a bounded queue with a write
//! timeout; the hub drops a client whose queue is full, and the writer then closes the socket
//! with 4008. Nothing about one client can block the hub, the owner, or other clients.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::hub::{Hub, Kick, Member};
use super::protocol::{ClientFrame, Up, Who, close, error_frame};
use super::rules::{self, Refusal};
use super::{RoomError, RoomKey, Rooms};
use crate::access::{Auth, authenticate};
use crate::store::schema::{ALNUM, random_string};

/// How long a new socket may take to send its `join`.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// Idle sockets are pinged this often (a dead peer then fails a write).
const PING_EVERY: Duration = Duration::from_secs(25);

type Sink = SplitSink<WebSocket, Message>;

/// Serves a client socket of room `collection`/`record`; `token` is the one the upgrade
/// request carried (`Authorization` header or `?token=`), if any.
pub async fn serve(
    rooms: Rooms,
    socket: WebSocket,
    collection: String,
    record: String,
    token: Option<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let max = rooms.inner.opts.max_payload;
    let first = match tokio::time::timeout(JOIN_WAIT, next_text(&mut stream)).await {
        Ok(Ok(text)) => ClientFrame::parse(&text, max),
        Ok(Err(Ended::TooBig)) => {
            refuse(
                &mut sink,
                CLOSE_TOO_BIG,
                "payload_too_large",
                "The frame is too large.",
            )
            .await;
            return;
        }
        _ => {
            refuse(
                &mut sink,
                close::BAD_REQUEST,
                "bad_frame",
                "Send a join frame first.",
            )
            .await;
            return;
        }
    };
    let (since, presence, token) = match first {
        Ok(ClientFrame::Join {
            token: t,
            since,
            presence,
        }) => (since, presence, t.or(token)),
        Ok(_) => {
            refuse(
                &mut sink,
                close::BAD_REQUEST,
                "bad_frame",
                "The first frame must be a join.",
            )
            .await;
            return;
        }
        Err(e) => {
            refuse(&mut sink, close::BAD_REQUEST, e.code, &e.message).await;
            return;
        }
    };
    let auth = match token {
        None => Auth::Guest,
        Some(t) => match authenticate(&rooms.inner.store, &rooms.inner.auth_cache, &t).await {
            Some(a) => a,
            None => {
                refuse(
                    &mut sink,
                    close::UNAUTHORIZED,
                    "unauthorized",
                    "Invalid or expired token.",
                )
                .await;
                return;
            }
        },
    };
    let (key, c) = match rules::view(&rooms.inner.store, &auth, &collection, &record).await {
        Ok(ok) => ok,
        Err(Refusal {
            code,
            error,
            message,
        }) => {
            refuse(&mut sink, code, error, &message).await;
            return;
        }
    };
    let cid: Arc<str> = Arc::from(random_string(20, ALNUM));
    let (tx, rx) = mpsc::channel(rooms.inner.opts.client_buffer.max(1));
    let kick = Arc::new(Kick::default());
    let hub = match rooms
        .attach(&key, &c.name, &cid, || {
            Member::new(tx.clone(), kick.clone())
        })
        .await
    {
        Ok(hub) => hub,
        Err(e) => {
            let message = match e {
                RoomError::NotReady => "Rooms are not connected to the cluster yet; retry.",
                _ => "No owner for this room could be reached; retry.",
            };
            refuse(&mut sink, close::UNAVAILABLE, "unavailable", message).await;
            return;
        }
    };
    let who = Who {
        client_id: cid.to_string(),
        user_id: auth.id().map(String::from),
        collection: match &auth {
            Auth::Guest => None,
            Auth::Record { collection, .. } => Some(collection.name.clone()),
        },
    };
    let write_timeout = rooms.inner.opts.write_timeout;
    let mut writer = tokio::spawn(write(sink, rx, kick.clone(), write_timeout));
    hub.up(Up::Join {
        who,
        since,
        state: presence,
    })
    .await;
    let client = Client {
        rooms: &rooms,
        hub: &hub,
        key: &key,
        auth: &auth,
        cid: &cid,
        tx: &tx,
    };
    let (writer_ended, end) = tokio::select! {
        end = client.read(&mut stream) => (false, end),
        _ = &mut writer => (true, Ended::Closed),
    };
    hub.leave(&cid).await;
    if !writer_ended {
        // A client that left by itself gets a normal close; a kicked one already got its code.
        match end {
            Ended::TooBig => kick.kick(CLOSE_TOO_BIG, "The frame is too large."),
            Ended::OwnerGone => kick.kick(close::RECONNECT, "The room's owner changed; reconnect."),
            Ended::Refused(code) => kick.kick(code, "You may no longer view this room's record."),
            Ended::Closed => kick.kick(1000, ""),
        }
        let _ = writer.await;
    }
}

/// The joined client's side of the loop.
struct Client<'a> {
    rooms: &'a Rooms,
    hub: &'a Arc<Hub>,
    key: &'a RoomKey,
    auth: &'a Auth,
    cid: &'a Arc<str>,
    tx: &'a mpsc::Sender<Utf8Bytes>,
}

impl Client<'_> {
    /// Reads the client's frames until it leaves or its socket ends.
    async fn read(&self, stream: &mut SplitStream<WebSocket>) -> Ended {
        let max = self.rooms.inner.opts.max_payload;
        // The view rule is checked again now and then: a member whose access was withdrawn
        // (or whose record was deleted) is removed within this period.
        let mut recheck = tokio::time::interval(self.rooms.inner.opts.recheck);
        recheck.reset();
        loop {
            let text = tokio::select! {
                t = next_text(stream) => match t {
                    Ok(t) => t,
                    Err(end) => return end,
                },
                _ = recheck.tick() => match self.still_allowed().await {
                    Some(refused) => return refused,
                    None => continue,
                },
            };
            match ClientFrame::parse(&text, max) {
                Ok(ClientFrame::Send { payload, reference }) => {
                    match rules::send(&self.rooms.inner.store, self.auth, self.key, &payload).await
                    {
                        Ok(()) => {
                            let up = Up::Send {
                                cid: self.cid.to_string(),
                                payload,
                                reference,
                            };
                            if !self.hub.up(up).await {
                                return Ended::OwnerGone;
                            }
                        }
                        Err(r) => self.tell(error_frame(r.error, &r.message, reference.as_deref())),
                    }
                }
                Ok(ClientFrame::PresenceSet { state }) => {
                    let up = Up::State {
                        cid: self.cid.to_string(),
                        state,
                    };
                    if !self.hub.up(up).await {
                        return Ended::OwnerGone;
                    }
                }
                Ok(ClientFrame::Leave) => return Ended::Closed,
                Ok(ClientFrame::Join { .. }) => self.tell(error_frame(
                    "bad_frame",
                    "Already joined; open another socket to join again.",
                    None,
                )),
                Err(e) => self.tell(error_frame(e.code, &e.message, e.reference.as_deref())),
            }
        }
    }

    /// `None` while the view rule still lets this client in; otherwise how the socket ends
    /// (after an error frame saying why). A failed check (database busy) is not a refusal.
    async fn still_allowed(&self) -> Option<Ended> {
        let store = &self.rooms.inner.store;
        match rules::view(store, self.auth, &self.key.collection, &self.key.record).await {
            Ok(_) => None,
            Err(r) if r.code == close::UNAVAILABLE => None,
            Err(r) => {
                tracing::info!(room = %self.key.token(), code = r.code, "room member no longer allowed; removing it");
                self.tell(error_frame(r.error, &r.message, None));
                Some(Ended::Refused(r.code))
            }
        }
    }

    /// Queues a frame of the session's own (an error); a client too slow to take it is
    /// being dropped anyway.
    fn tell(&self, frame: Arc<str>) {
        let _ = self.tx.try_send(frame.as_ref().into());
    }
}

/// Close code for a frame over the size limit ("message too big").
const CLOSE_TOO_BIG: u16 = 1009;

/// Why a client's socket stopped being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Closed, failed, or the client left.
    Closed,
    /// A frame over the size limit: not read, the socket closes with 1009.
    TooBig,
    /// The room's owner went away under a request: the client should reconnect.
    OwnerGone,
    /// The view rule no longer lets the client in (or the record is gone): this code.
    Refused(u16),
}

/// The next text frame, skipping pings.
async fn next_text(stream: &mut SplitStream<WebSocket>) -> Result<String, Ended> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Binary(b))) => return Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Close(_))) | None => return Err(Ended::Closed),
            Some(Err(e)) => {
                let too_big = e
                    .into_inner()
                    .downcast::<tokio_tungstenite::tungstenite::Error>()
                    .is_ok_and(|e| {
                        matches!(*e, tokio_tungstenite::tungstenite::Error::Capacity(_))
                    });
                return Err(if too_big {
                    Ended::TooBig
                } else {
                    Ended::Closed
                });
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Sends an error frame and closes with `code`.
async fn refuse(sink: &mut Sink, code: u16, error: &str, message: &str) {
    let frame = error_frame(error, message, None);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        sink.send(Message::Text(frame.as_ref().into())).await?;
        sink.send(close_msg(code, message)).await
    })
    .await;
}

fn close_msg(code: u16, reason: &str) -> Message {
    // A close reason is at most 123 bytes.
    let mut cut = reason.len().min(120);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..cut].into(),
    }))
}

/// Writes queued frames (several per flush when they queued up) until kicked or the queue
/// closes; every write must finish within `write_timeout`.
async fn write(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    kick: Arc<Kick>,
    write_timeout: Duration,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            biased;
            _ = kick.notify.notified() => break,
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                let ok = tokio::time::timeout(write_timeout, async {
                    sink.feed(Message::Text(frame)).await?;
                    for _ in 0..64 {
                        match rx.try_recv() {
                            Ok(f) => sink.feed(Message::Text(f)).await?,
                            Err(_) => break,
                        }
                    }
                    sink.flush().await
                })
                .await;
                if !matches!(ok, Ok(Ok(()))) {
                    return;
                }
            }
            _ = ping.tick() => {
                let sent = tokio::time::timeout(write_timeout, sink.send(Message::Ping(Default::default()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
    let (code, reason) = kick.reason().unwrap_or((1000, String::new()));
    let _ = tokio::time::timeout(write_timeout, sink.send(close_msg(code, &reason))).await;
}
