//! A node's clients of one room, behind one connection to the room's owner: in process when
//! this node owns the room, a node-to-node link otherwise. The owner sends each frame once
//! per hub; the hub hands it to each of its clients' bounded queues. A client whose queue is
//! full is dropped (close 4008) rather than buffered or waited for. When the owner or the link
//! ends, every client is told to reconnect (close 4000); when the last client leaves, the hub
//! lets go of the owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};

use super::claim::{self, Claim};
use super::owner::{self, OwnerHandle, PortId};
use super::protocol::{Down, Up, close};
use super::{RoomError, RoomKey, Rooms, link};

/// How a hub reaches the owner.
#[derive(Clone)]
enum Upstream {
    Local { owner: OwnerHandle, port: PortId },
    Link { tx: mpsc::Sender<Up> },
}

/// Where a hub stands.
#[derive(Clone)]
enum Ready {
    Connecting,
    Up,
    /// Gone (closed, or never connected): callers may build a new hub.
    Gone(Option<RoomError>),
}

/// Tells a client's writer to close its socket.
#[derive(Default)]
pub struct Kick {
    reason: Mutex<Option<(u16, String)>>,
    pub notify: Notify,
}

impl Kick {
    pub fn kick(&self, code: u16, reason: &str) {
        let mut r = self.reason.lock();
        if r.is_none() {
            *r = Some((code, reason.to_string()));
        }
        drop(r);
        self.notify.notify_one();
    }

    pub fn reason(&self) -> Option<(u16, String)> {
        self.reason.lock().clone()
    }
}

/// A client as its hub sees it: its frame queue and its kick switch.
pub struct Member {
    pub tx: mpsc::Sender<Utf8Bytes>,
    pub kick: Arc<Kick>,
    live: bool,
}

impl Member {
    pub fn new(tx: mpsc::Sender<Utf8Bytes>, kick: Arc<Kick>) -> Member {
        Member {
            tx,
            kick,
            live: false,
        }
    }
}

struct State {
    members: HashMap<Arc<str>, Member>,
    up: Option<Upstream>,
    closed: bool,
}

pub struct Hub {
    key: RoomKey,
    rooms: Rooms,
    state: Mutex<State>,
    ready: watch::Sender<Ready>,
}

/// The member could not be added: the hub closed meanwhile; take a new one.
pub struct Closed;

impl Hub {
    /// A new hub that starts looking for the room's owner at once.
    fn spawn(rooms: &Rooms, key: &RoomKey, collection: &str) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            key: key.clone(),
            rooms: rooms.clone(),
            state: Mutex::new(State {
                members: HashMap::new(),
                up: None,
                closed: false,
            }),
            ready: watch::channel(Ready::Connecting).0,
        });
        tokio::spawn(hub.clone().connect(collection.to_string()));
        hub
    }

    /// (clients, whether the owner is on another node).
    pub fn census(&self) -> (usize, bool) {
        let st = self.state.lock();
        (
            st.members.len(),
            matches!(st.up, Some(Upstream::Link { .. })),
        )
    }

    /// Finds the owner (claiming the room, or linking to the node that holds it) until the
    /// join deadline, then pumps its frames to the clients until it ends.
    async fn connect(self: Arc<Self>, collection: String) {
        let rooms = self.rooms.clone();
        let deadline = Instant::now() + rooms.join_wait();
        let mut backoff = Duration::from_millis(50);
        let mut last_err = None;
        loop {
            if self.state.lock().closed {
                return;
            }
            let attempt = match claim::claim(&rooms, &self.key, &collection).await {
                Ok(Claim::Mine(owner)) => {
                    let (tx, rx) = mpsc::channel(port_capacity(&rooms));
                    owner
                        .attach(tx, false)
                        .await
                        .map(|port| (Upstream::Local { owner, port }, rx))
                }
                Ok(Claim::Theirs { node, url }) => {
                    match link::connect(&rooms, &url, &self.key).await {
                        Ok((tx, rx)) => Some((Upstream::Link { tx }, rx)),
                        Err(e) => {
                            tracing::debug!(room = %self.key.token(), owner = %node, %url, error = %e, "owner not reachable yet");
                            None
                        }
                    }
                }
                Ok(Claim::Retry) => None,
                Err(e) => {
                    tracing::debug!(room = %self.key.token(), error = %e, "room owner lookup failed");
                    last_err = Some(e);
                    None
                }
            };
            if let Some((up, down)) = attempt {
                {
                    let mut st = self.state.lock();
                    if st.closed {
                        drop(st);
                        release(up);
                        return;
                    }
                    st.up = Some(up);
                }
                self.ready.send_replace(Ready::Up);
                self.pump(down).await;
                let code = if rooms.inner.shutdown.is_cancelled() {
                    close::GOING_AWAY
                } else {
                    owner::PORT_GONE
                };
                self.close(code, "The room's owner changed; reconnect.");
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(room = %self.key.token(), "no owner reachable for a room");
                self.fail(last_err.unwrap_or(RoomError::Unavailable));
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Waits until the hub is connected; `Err(None)` when it closed (take a new one).
    pub async fn wait_ready(&self) -> Result<(), Option<RoomError>> {
        let mut rx = self.ready.subscribe();
        loop {
            match rx.borrow_and_update().clone() {
                Ready::Up => return Ok(()),
                Ready::Gone(e) => return Err(e),
                Ready::Connecting => {}
            }
            if rx.changed().await.is_err() {
                return Err(None);
            }
        }
    }

    pub fn add(&self, cid: Arc<str>, member: Member) -> Result<(), Closed> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(Closed);
        }
        st.members.insert(cid, member);
        Ok(())
    }

    /// Sends a client's request to the owner; false when the hub is gone.
    pub async fn up(&self, up: Up) -> bool {
        let Some(upstream) = self.state.lock().up.clone() else {
            return false;
        };
        match upstream {
            Upstream::Local { owner, port } => owner.send(port, up).await,
            Upstream::Link { tx } => tx.send(up).await.is_ok(),
        }
    }

    /// A client left: the owner is told, and the last one out closes the hub.
    pub async fn leave(self: &Arc<Self>, cid: &str) {
        let (was, empty) = {
            let mut st = self.state.lock();
            let was = st.members.remove(cid).is_some();
            (was, st.members.is_empty())
        };
        if was {
            self.up(Up::Leave {
                cid: cid.to_string(),
            })
            .await;
        }
        if empty {
            self.close(close::RECONNECT, "The room closed; reconnect.");
        }
    }

    /// Delivers the owner's frames until it ends.
    async fn pump(&self, mut down: mpsc::Receiver<Down>) {
        while let Some(d) = down.recv().await {
            let mut slow: Vec<Arc<str>> = Vec::new();
            {
                let mut st = self.state.lock();
                match d {
                    Down::Joined { cid, frame } => {
                        if let Some(m) = st.members.get_mut(&cid) {
                            m.live = true;
                            offer(&cid, m, frame.as_ref().into(), &mut slow);
                        }
                    }
                    Down::To { cid, frame } => {
                        if let Some(m) = st.members.get(&cid) {
                            offer(&cid, m, frame.as_ref().into(), &mut slow);
                        }
                    }
                    Down::Broadcast(frame) => {
                        // One copy per hub; each client's queue holds a reference.
                        let bytes: Utf8Bytes = frame.as_ref().into();
                        for (cid, m) in st.members.iter().filter(|(_, m)| m.live) {
                            offer(cid, m, bytes.clone(), &mut slow);
                        }
                    }
                    Down::Kick { cid, code, reason } => {
                        if let Some(m) = st.members.remove(&cid) {
                            m.kick.kick(code, &reason);
                        }
                    }
                }
                for cid in &slow {
                    st.members.remove(cid);
                }
            }
            if !slow.is_empty() {
                tracing::info!(room = %self.key.token(), dropped = slow.len(), "room clients too slow; dropped");
                self.rooms.count_slow(slow.len());
            }
            for cid in slow {
                self.up(Up::Leave {
                    cid: cid.to_string(),
                })
                .await;
            }
        }
    }

    /// Closes every client with `code` and lets go of the owner.
    pub fn close(self: &Arc<Self>, code: u16, reason: &str) {
        let up = {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            // Kicked before the lock is let go: a session that finds the hub without an
            // owner has already been given this code.
            for m in st.members.values() {
                m.kick.kick(code, reason);
            }
            st.members.clear();
            st.up.take()
        };
        self.forget();
        self.ready.send_replace(Ready::Gone(None));
        if let Some(up) = up {
            release(up);
        }
    }

    fn fail(self: &Arc<Self>, e: RoomError) {
        self.state.lock().closed = true;
        self.forget();
        self.ready.send_replace(Ready::Gone(Some(e)));
    }

    /// Removes this hub from the node's map (if it is still the one there).
    fn forget(self: &Arc<Self>) {
        let mut hubs = self.rooms.inner.hubs.lock();
        if hubs.get(&self.key).is_some_and(|h| Arc::ptr_eq(h, self)) {
            hubs.remove(&self.key);
        }
    }
}

/// Queues a frame for a client; a full queue marks it slow (dropped with 4008).
fn offer(cid: &Arc<str>, m: &Member, frame: Utf8Bytes, slow: &mut Vec<Arc<str>>) {
    match m.tx.try_send(frame) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            m.kick.kick(
                close::TOO_SLOW,
                "You did not read your frames fast enough; reconnect.",
            );
            slow.push(cid.clone());
        }
        // The session already ended; it leaves by itself.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

fn release(up: Upstream) {
    match up {
        Upstream::Local { owner, port } => {
            tokio::spawn(async move { owner.detach(port).await });
        }
        // Dropping the sender ends the link's writer, which closes the socket.
        Upstream::Link { tx } => drop(tx),
    }
}

/// Frames queued from the owner to one hub or link before it is dropped as too slow.
pub fn port_capacity(rooms: &Rooms) -> usize {
    rooms.inner.opts.client_buffer * 4 + 1024
}

impl Rooms {
    /// Adds a client to this node's hub of `key` (creating it, and finding the owner, as
    /// needed), waiting up to the join deadline for an owner.
    pub(super) async fn attach(
        &self,
        key: &RoomKey,
        collection: &str,
        cid: &Arc<str>,
        member: impl Fn() -> Member,
    ) -> Result<Arc<Hub>, RoomError> {
        let deadline = Instant::now() + self.join_wait() + Duration::from_secs(1);
        loop {
            let hub = {
                let mut hubs = self.inner.hubs.lock();
                hubs.entry(key.clone())
                    .or_insert_with(|| Hub::spawn(self, key, collection))
                    .clone()
            };
            let ready = tokio::time::timeout_at(deadline.into(), hub.wait_ready()).await;
            match ready {
                Ok(Ok(())) => {
                    if hub.add(cid.clone(), member()).is_ok() {
                        return Ok(hub);
                    }
                }
                Ok(Err(Some(e))) => return Err(e),
                // The hub closed as we came (its owner just ended): a moment for the room to
                // settle before looking again, rather than spinning.
                Ok(Err(None)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => return Err(RoomError::Unavailable),
            }
            if Instant::now() >= deadline {
                return Err(RoomError::Unavailable);
            }
        }
    }

    /// A running owner of `key` on this node.
    pub(super) fn owned(&self, key: &RoomKey) -> Option<OwnerHandle> {
        self.inner
            .owned
            .lock()
            .get(key)
            .filter(|h| h.alive())
            .cloned()
    }

    pub(super) fn count_slow(&self, n: usize) {
        self.inner
            .stats
            .slow_dropped
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}
