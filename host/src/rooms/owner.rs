//! The owner of a room: one task per owned room that alone stamps offsets, appends them to
//! the history, keeps presence, and renders every frame once for all the ports (this node's
//! hub, and a link per other node with clients in the room).
//!
//! Claiming (finding or taking the lease) is in `claim.rs`.
//!
//! Stamping happens in groups: sends that queued while the previous group was being appended
//! go out together as one history entry (one round trip to JetStream for many messages).
//! Before each group the owner makes sure its lease is fresh — renewing it first if a renewal
//! is due, which is exactly what happens after a pause (SIGSTOP, a long GC-like stall): the
//! revision check fails if another node took the room meanwhile, and this owner steps down
//! without stamping. The append itself names the previous entry's sequence, so even an owner
//! whose renewal somehow succeeded late cannot append behind a newer owner's back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::claim::{Lease, lease_bytes};
use super::filter::{self, Verdict};
use super::history::{Entry, Stamped, Tail, encode_entry};
use super::protocol::{Down, Position, Up, Who, close, error_frame};
use super::{Cluster, RoomKey, Rooms};
use crate::replication::Appended;

/// Largest history entry (a group of messages stamped together), in bytes; below NATS's
/// default 1 MiB message limit.
pub const MAX_ENTRY_BYTES: usize = 512 * 1024;
/// Most messages stamped in one group.
const MAX_GROUP: usize = 256;
/// Commands handled per turn of the loop.
const MAX_TURN: usize = 1024;

pub type PortId = u64;

/// What the owner task is asked.
pub enum Cmd {
    /// A hub (local) or a link (another node) wants the room's frames on `tx`.
    Attach {
        port: PortId,
        tx: mpsc::Sender<Down>,
        link: bool,
    },
    /// The port is gone: its clients leave.
    Detach { port: PortId },
    /// A client's request, through its port.
    Up { port: PortId, up: Up },
}

/// A handle on a running owner.
#[derive(Clone)]
pub struct OwnerHandle {
    tx: mpsc::Sender<Cmd>,
    ports: Arc<AtomicU64>,
    /// Names this owner's term; unique per takeover.
    pub epoch: Arc<str>,
}

impl OwnerHandle {
    pub fn alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Attaches a port; `None` when the owner has ended.
    pub async fn attach(&self, tx: mpsc::Sender<Down>, link: bool) -> Option<PortId> {
        let port = self.ports.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Cmd::Attach { port, tx, link })
            .await
            .ok()
            .map(|_| port)
    }

    /// Forwards a client's request; false when the owner has ended.
    pub async fn send(&self, port: PortId, up: Up) -> bool {
        self.tx.send(Cmd::Up { port, up }).await.is_ok()
    }

    pub async fn detach(&self, port: PortId) {
        let _ = self.tx.send(Cmd::Detach { port }).await;
    }
}

/// Starts the owner task of `key` and registers it as this node's owner of the room.
pub(super) fn spawn(
    rooms: &Rooms,
    key: &RoomKey,
    collection: &str,
    cluster: Option<(Arc<Cluster>, Lease)>,
    tail: Tail,
    last_seq: u64,
    epoch: Arc<str>,
) -> OwnerHandle {
    let (tx, rx) = mpsc::channel(MAX_TURN);
    let handle = OwnerHandle {
        tx,
        ports: Arc::new(AtomicU64::new(1)),
        epoch: epoch.clone(),
    };
    rooms.inner.owned.lock().insert(key.clone(), handle.clone());
    let owner = Owner {
        rooms: rooms.clone(),
        key: key.clone(),
        token: key.token(),
        collection: collection.to_string(),
        epoch,
        cluster,
        tail,
        last_seq,
        ports: HashMap::new(),
        members: BTreeMap::new(),
        rx,
        empty_since: Instant::now(),
        dead: Vec::new(),
    };
    tokio::spawn(owner.run());
    handle
}

/// Why an owner ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Nobody in the room for `--room-idle`.
    Idle,
    Shutdown,
    /// The lease changed hands.
    Lost,
    /// Another owner appended to the history.
    Fenced,
    /// The lease could not be renewed, or an append confirmed, before the deadline.
    Unreachable,
}

struct Port {
    tx: mpsc::Sender<Down>,
    link: bool,
}

struct Member {
    port: PortId,
    who: Who,
    state: Option<Box<RawValue>>,
}

/// A send waiting to be stamped.
struct Pending {
    port: PortId,
    cid: Arc<str>,
    who: Who,
    payload: Box<RawValue>,
    reference: Option<Box<RawValue>>,
}

struct Owner {
    rooms: Rooms,
    key: RoomKey,
    token: String,
    collection: String,
    epoch: Arc<str>,
    cluster: Option<(Arc<Cluster>, Lease)>,
    tail: Tail,
    /// Stream sequence of the room's last history entry (0: none).
    last_seq: u64,
    ports: HashMap<PortId, Port>,
    members: BTreeMap<Arc<str>, Member>,
    rx: mpsc::Receiver<Cmd>,
    empty_since: Instant,
    /// Ports whose queue was full or closed, dropped at the end of the turn.
    dead: Vec<PortId>,
}

impl Owner {
    async fn run(mut self) {
        let stop = self.rooms.inner.shutdown.clone();
        let idle = self.rooms.inner.opts.idle;
        let renew_every = self
            .cluster
            .as_ref()
            .map_or(Duration::from_secs(3600), |(c, _)| c.ttl / 3);
        let mut renew = tokio::time::interval(renew_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            let idle_at = self.ports.is_empty().then(|| self.empty_since + idle);
            tokio::select! {
                _ = stop.cancelled() => break Stop::Shutdown,
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break Stop::Shutdown };
                    let mut cmds = vec![cmd];
                    while cmds.len() < MAX_TURN {
                        match self.rx.try_recv() {
                            Ok(c) => cmds.push(c),
                            Err(_) => break,
                        }
                    }
                    if let Err(why) = self.turn(cmds).await {
                        break why;
                    }
                }
                _ = renew.tick(), if self.cluster.is_some() => {
                    if let Err(why) = self.renew().await {
                        break why;
                    }
                }
                _ = sleep_until(idle_at), if idle_at.is_some() => break Stop::Idle,
            }
        };
        self.stop(why).await;
    }

    /// Handles commands in order; consecutive sends are stamped as one group.
    async fn turn(&mut self, cmds: Vec<Cmd>) -> Result<(), Stop> {
        let mut group: Vec<Pending> = Vec::new();
        let mut group_bytes = 0;
        for cmd in cmds {
            match cmd {
                Cmd::Up {
                    port,
                    up:
                        Up::Send {
                            cid,
                            payload,
                            reference,
                        },
                } => {
                    let Some(m) = self.members.get(cid.as_str()) else {
                        let e = error_frame(
                            "not_joined",
                            "Join the room before sending.",
                            reference.as_deref(),
                        );
                        self.to(port, &Arc::from(cid), e);
                        continue;
                    };
                    group_bytes += payload.get().len() + 256;
                    group.push(Pending {
                        port,
                        cid: Arc::from(cid),
                        who: m.who.clone(),
                        payload,
                        reference,
                    });
                    if group.len() >= MAX_GROUP || group_bytes >= MAX_ENTRY_BYTES / 2 {
                        self.stamp(std::mem::take(&mut group)).await?;
                        group_bytes = 0;
                    }
                }
                other => {
                    self.stamp(std::mem::take(&mut group)).await?;
                    group_bytes = 0;
                    self.handle(other);
                }
            }
        }
        self.stamp(group).await?;
        self.reap();
        Ok(())
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Attach { port, tx, link } => {
                if link {
                    self.rooms
                        .inner
                        .stats
                        .links_in
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.ports.insert(port, Port { tx, link });
            }
            Cmd::Detach { port } => self.drop_port(port),
            Cmd::Up { port, up } => match up {
                Up::Join { who, since, state } => self.join(port, who, since, state),
                Up::State { cid, state } => {
                    if let Some(m) = self.members.get_mut(cid.as_str()) {
                        m.state = Some(state);
                        let frame = presence_frame("state", m);
                        self.broadcast(frame);
                    }
                }
                Up::Leave { cid } => self.leave(&cid),
                Up::Send { .. } => {}
            },
        }
    }

    fn join(
        &mut self,
        port: PortId,
        who: Who,
        since: Option<Position>,
        state: Option<Box<RawValue>>,
    ) {
        let cid: Arc<str> = Arc::from(who.client_id.as_str());
        let missed = since
            .as_ref()
            .and_then(|p| self.tail.recover(p.offset, &p.epoch));
        let (top, top_epoch) = self.tail.top();
        let joined = json!({
            "type": "joined",
            "clientId": &*cid,
            "room": {"collection": self.collection, "id": self.key.record},
            "offset": top,
            "epoch": &**top_epoch,
            "recovering": since.is_some(),
            "recovered": missed.is_some(),
            "missed": missed.as_ref().map_or(0, Vec::len),
        });
        self.send_port(
            port,
            Down::Joined {
                cid: cid.clone(),
                frame: Arc::from(joined.to_string()),
            },
        );
        for frame in missed.unwrap_or_default() {
            self.to(port, &cid, frame);
        }
        let others: Vec<serde_json::Value> = self.members.values().map(member_json).collect();
        let sync = json!({"type": "presence", "action": "sync", "members": others});
        self.to(port, &cid, Arc::from(sync.to_string()));
        let member = Member { port, who, state };
        let frame = presence_frame("join", &member);
        self.members.insert(cid, member);
        self.broadcast(frame);
    }

    fn leave(&mut self, cid: &str) {
        if let Some(m) = self.members.remove(cid) {
            let frame = presence_frame("leave", &m);
            self.broadcast(frame);
        }
    }

    fn drop_port(&mut self, port: PortId) {
        let Some(p) = self.ports.remove(&port) else {
            return;
        };
        if p.link {
            self.rooms
                .inner
                .stats
                .links_in
                .fetch_sub(1, Ordering::Relaxed);
        }
        let gone: Vec<Arc<str>> = self
            .members
            .iter()
            .filter(|(_, m)| m.port == port)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in gone {
            self.leave(&cid);
        }
        if self.ports.is_empty() {
            self.empty_since = Instant::now();
        }
    }

    /// Drops ports that could not take a frame (a peer too slow to keep up, or gone): their
    /// clients are told to reconnect by the port's end, and leave the room here.
    fn reap(&mut self) {
        while let Some(port) = self.dead.pop() {
            if self.ports.contains_key(&port) {
                tracing::info!(room = %self.token, port, "room port too slow or gone; dropping it");
                self.drop_port(port);
            }
        }
    }

    fn send_port(&mut self, port: PortId, d: Down) {
        if let Some(p) = self.ports.get(&port)
            && p.tx.try_send(d).is_err()
        {
            self.dead.push(port);
        }
    }

    fn to(&mut self, port: PortId, cid: &Arc<str>, frame: Arc<str>) {
        self.send_port(
            port,
            Down::To {
                cid: cid.clone(),
                frame,
            },
        );
    }

    fn broadcast(&mut self, frame: Arc<str>) {
        for (id, p) in &self.ports {
            if p.tx.try_send(Down::Broadcast(frame.clone())).is_err() {
                self.dead.push(*id);
            }
        }
    }

    /// Stamps a group of sends: lease check, filter, one history append, then delivery and
    /// acks. Nothing is delivered or acknowledged unless the append was.
    async fn stamp(&mut self, group: Vec<Pending>) -> Result<(), Stop> {
        if group.is_empty() {
            return Ok(());
        }
        if let Err(why) = self.check_lease().await {
            self.refuse(&group);
            return Err(why);
        }
        let group = self.filter(group).await;
        if group.is_empty() {
            return Ok(());
        }
        let (top, top_epoch) = self.tail.top();
        let (first, prev_epoch) = (top + 1, top_epoch.clone());
        let time = chrono::Utc::now().timestamp_millis();
        let frames: Vec<Arc<str>> = group
            .iter()
            .enumerate()
            .map(|(i, p)| message_frame(first + i as u64, &self.epoch, &p.who, &p.payload, time))
            .collect();
        if self.cluster.is_some() {
            let entry = encode_entry(&self.epoch, &prev_epoch, first, &frames);
            match self.append(entry, first).await {
                Ok(seq) => self.last_seq = seq,
                Err(why) => {
                    self.refuse(&group);
                    return Err(why);
                }
            }
        }
        for (i, frame) in frames.into_iter().enumerate() {
            self.tail.push(Stamped {
                offset: first + i as u64,
                epoch: self.epoch.clone(),
                frame: frame.clone(),
            });
            self.broadcast(frame);
        }
        for (i, p) in group.iter().enumerate() {
            let mut ack = json!({"type": "ack", "offset": first + i as u64, "epoch": &*self.epoch});
            if let Some(r) = &p.reference
                && let Ok(r) = serde_json::from_str::<serde_json::Value>(r.get())
            {
                ack["ref"] = r;
            }
            self.to(p.port, &p.cid, Arc::from(ack.to_string()));
        }
        let stats = &self.rooms.inner.stats;
        stats
            .messages
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        stats.rate.lock().add(Instant::now(), group.len() as u64);
        Ok(())
    }

    /// Runs the collection's inbound filter (if one is bound) over the group; senders of
    /// dropped or refused messages get an error frame.
    async fn filter(&mut self, group: Vec<Pending>) -> Vec<Pending> {
        let plugins = &self.rooms.inner.plugins;
        // Bindings are keyed by collection id; the plugin sees the collection's name.
        let Some((id, name)) = self
            .rooms
            .inner
            .store
            .schema()
            .get(&self.collection)
            .map(|c| (c.id.clone(), c.name.clone()))
        else {
            return group;
        };
        if !filter::bound(plugins, &id) {
            return group;
        }
        let items = group
            .iter()
            .map(|p| (p.who.clone(), p.payload.get().to_string()))
            .collect();
        let verdicts = filter::run(plugins, &id, &name, &self.key.record, items).await;
        let mut kept = Vec::with_capacity(group.len());
        for (mut p, v) in group.into_iter().zip(verdicts) {
            match v {
                Verdict::Keep => kept.push(p),
                Verdict::Replace(payload) => {
                    p.payload = payload;
                    kept.push(p);
                }
                Verdict::Drop => {
                    let e = error_frame(
                        "rejected",
                        "The room's filter dropped this message.",
                        p.reference.as_deref(),
                    );
                    self.to(p.port, &p.cid, e);
                }
                Verdict::Unavailable(why) => {
                    let e = error_frame(
                        "unavailable",
                        &format!("The room's filter could not run here ({why}); send again."),
                        p.reference.as_deref(),
                    );
                    self.to(p.port, &p.cid, e);
                }
            }
        }
        kept
    }

    /// Tells the senders of a group that was not stamped.
    fn refuse(&mut self, group: &[Pending]) {
        for p in group {
            let e = error_frame(
                "unavailable",
                "The room's owner changed before this message was stored; reconnect and send again.",
                p.reference.as_deref(),
            );
            self.to(p.port, &p.cid, e);
        }
    }

    /// Makes sure the lease is ours before stamping: renews first when a renewal is due
    /// (always the case after a pause), and refuses past the deadline.
    async fn check_lease(&mut self) -> Result<(), Stop> {
        let due = match &self.cluster {
            None => return Ok(()),
            Some((_, lease)) => Instant::now() >= lease.renew_at,
        };
        if due {
            self.renew().await?;
        }
        match &self.cluster {
            Some((_, lease)) if Instant::now() >= lease.deadline => Err(Stop::Unreachable),
            _ => Ok(()),
        }
    }

    async fn renew(&mut self) -> Result<(), Stop> {
        let value = lease_bytes(&self.rooms, &self.epoch);
        let Some((cluster, lease)) = &mut self.cluster else {
            return Ok(());
        };
        let sent = Instant::now();
        match cluster.log.renew(&self.token, value, lease.revision).await {
            Ok(Some(rev)) => {
                *lease = Lease::fresh(rev, sent, cluster.ttl);
                Ok(())
            }
            Ok(None) => {
                tracing::warn!(room = %self.token, epoch = %self.epoch, "room lease lost to another node; stepping down");
                Err(Stop::Lost)
            }
            Err(e) if Instant::now() < lease.deadline => {
                tracing::warn!(room = %self.token, error = %e, "room lease renewal failed; retrying");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(room = %self.token, error = %e, "room lease could not be renewed in time; stepping down");
                Err(Stop::Unreachable)
            }
        }
    }

    /// Appends a group's entry after the room's last one. A retry after a lost answer is
    /// recognised (same message id, same content), so it lands once.
    async fn append(&mut self, entry: Vec<u8>, first: u64) -> Result<u64, Stop> {
        let Some((cluster, lease)) = &self.cluster else {
            return Ok(0);
        };
        let payload = Bytes::from(entry);
        let msg_id = format!("{}:{}:{first}", self.token, self.epoch);
        let epoch = self.epoch.clone();
        for attempt in 0..3 {
            if Instant::now() >= lease.deadline {
                break;
            }
            let is_ours = |b: &[u8]| Entry::is(b, &epoch, first);
            match cluster
                .log
                .append(
                    &self.token,
                    &msg_id,
                    payload.clone(),
                    self.last_seq,
                    is_ours,
                )
                .await
            {
                Ok(Appended::At(seq)) => return Ok(seq),
                Ok(Appended::Fenced) => {
                    tracing::warn!(room = %self.token, epoch = %self.epoch, "another owner appended to the room; stepping down");
                    return Err(Stop::Fenced);
                }
                Err(e) => {
                    tracing::warn!(room = %self.token, attempt, error = %e, "room history append failed");
                }
            }
        }
        Err(Stop::Unreachable)
    }

    async fn stop(mut self, why: Stop) {
        self.rx.close();
        {
            let mut owned = self.rooms.inner.owned.lock();
            if owned.get(&self.key).is_some_and(|h| h.epoch == self.epoch) {
                owned.remove(&self.key);
            }
        }
        // Ports end with the owner: each hub tells its clients to reconnect.
        let links = self.ports.values().filter(|p| p.link).count() as u64;
        self.rooms
            .inner
            .stats
            .links_in
            .fetch_sub(links, Ordering::Relaxed);
        self.ports.clear();
        if matches!(why, Stop::Idle | Stop::Shutdown | Stop::Unreachable)
            && let Some((cluster, lease)) = &self.cluster
            && let Err(e) = cluster.log.release(&self.token, lease.revision).await
        {
            tracing::debug!(room = %self.token, error = %e, "releasing a room lease failed");
        }
        tracing::info!(room = %self.token, epoch = %self.epoch, reason = ?why, "room owner ended");
        self.rooms.inner.owner_gone.notify_waiters();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn member_json(m: &Member) -> serde_json::Value {
    let state = m
        .state
        .as_ref()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s.get()).ok())
        .unwrap_or(serde_json::Value::Null);
    json!({
        "clientId": m.who.client_id,
        "userId": m.who.user_id,
        "collectionName": m.who.collection,
        "state": state,
    })
}

fn presence_frame(action: &str, m: &Member) -> Arc<str> {
    Arc::from(json!({"type": "presence", "action": action, "member": member_json(m)}).to_string())
}

/// A `message` frame, with the payload embedded as sent (no re-encoding).
fn message_frame(offset: u64, epoch: &str, who: &Who, payload: &RawValue, time: i64) -> Arc<str> {
    let sender = serde_json::to_string(who).unwrap_or_else(|_| "null".into());
    let epoch = serde_json::Value::from(epoch).to_string();
    Arc::from(format!(
        r#"{{"type":"message","offset":{offset},"epoch":{epoch},"sender":{sender},"payload":{},"time":{time}}}"#,
        payload.get()
    ))
}

/// Close code a hub gives its clients when its owner or link ends.
pub const PORT_GONE: u16 = close::RECONNECT;
