//! Who owns a room: a node without an owner for it reads the lease. Absent → this node
//! creates it (the first node to get a client takes the room) and loads the history tail;
//! held by this node id but run by no task here (an earlier process of this node) → rewritten
//! under a new epoch (revision-checked); held by another node → the caller links to that
//! node's advertised URL; unreadable → treated like a dead owner's, left to expire.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::history::{Entry, Tail};
use super::owner::{self, OwnerHandle};
use super::{Cluster, RoomError, RoomKey, Rooms};
use crate::store::schema::{ALNUM, random_string};

/// What a lease holds: who owns the room, where to reach it, and its term.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseValue {
    pub node: String,
    pub url: String,
    pub epoch: String,
}

/// The outcome of trying to own a room.
pub enum Claim {
    /// This node owns it.
    Mine(OwnerHandle),
    /// Another node does: link to it.
    Theirs { node: String, url: String },
    /// The lease changed hands while we looked: look again.
    Retry,
}

/// Finds or takes the owner of `key`; see the module docs.
pub async fn claim(rooms: &Rooms, key: &RoomKey, collection: &str) -> Result<Claim, RoomError> {
    if let Some(h) = rooms.owned(key) {
        return Ok(Claim::Mine(h));
    }
    let cap = rooms.inner.opts.history;
    let Some(cluster) = rooms.cluster()? else {
        return Ok(Claim::Mine(start(
            rooms,
            key,
            collection,
            None,
            Tail::new(cap),
            0,
        )));
    };
    let token = key.token();
    let epoch = random_string(10, ALNUM);
    let value = lease_bytes(rooms, &epoch);
    let log_err = |e: crate::replication::LogError| RoomError::Log(e.to_string());
    let began = Instant::now();
    let revision = match cluster.log.lease(&token).await.map_err(log_err)? {
        None => match cluster.log.acquire(&token, value).await.map_err(log_err)? {
            Some(rev) => rev,
            None => return Ok(Claim::Retry),
        },
        Some(held) => match serde_json::from_slice::<LeaseValue>(&held.value) {
            // A lease this node id holds but no task here runs: left by an earlier process
            // of this node. Take it over under a new epoch (revision-checked).
            Ok(v) if v.node == rooms.inner.node_id => {
                match cluster
                    .log
                    .renew(&token, value, held.revision)
                    .await
                    .map_err(log_err)?
                {
                    Some(rev) => rev,
                    None => return Ok(Claim::Retry),
                }
            }
            Ok(v) => {
                return Ok(Claim::Theirs {
                    node: v.node,
                    url: v.url,
                });
            }
            // Unreadable (another version, or garbage): nobody can be reached through it,
            // so wait for it to expire like a dead owner's.
            Err(e) => {
                tracing::warn!(room = %token, error = %e, "unreadable room lease; waiting for it to expire");
                return Ok(Claim::Retry);
            }
        },
    };
    let lease = Lease::fresh(revision, began, cluster.ttl);
    let entries = match cluster.log.history(&token).await {
        Ok(e) => e,
        Err(e) => {
            let _ = cluster.log.release(&token, revision).await;
            return Err(log_err(e));
        }
    };
    let last_seq = entries.last().map_or(0, |e| e.seq);
    let decoded: Vec<Entry> = entries
        .iter()
        .filter_map(|e| match Entry::decode(&e.payload) {
            Ok(d) => Some(d),
            Err(err) => {
                tracing::warn!(room = %token, seq = e.seq, error = %err, "unreadable room history entry skipped");
                None
            }
        })
        .collect();
    let tail = Tail::load(cap, &decoded);
    tracing::info!(room = %token, epoch = %epoch, top = tail.top().0, "took over room");
    rooms.inner.stats.takeovers.fetch_add(1, Ordering::Relaxed);
    Ok(Claim::Mine(owner::spawn(
        rooms,
        key,
        collection,
        Some((cluster, lease)),
        tail,
        last_seq,
        Arc::from(epoch),
    )))
}

pub(super) fn lease_bytes(rooms: &Rooms, epoch: &str) -> Bytes {
    let v = LeaseValue {
        node: rooms.inner.node_id.clone(),
        url: rooms.inner.advertise.clone(),
        epoch: epoch.to_string(),
    };
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn start(
    rooms: &Rooms,
    key: &RoomKey,
    collection: &str,
    cluster: Option<(Arc<Cluster>, Lease)>,
    tail: Tail,
    last_seq: u64,
) -> OwnerHandle {
    let epoch = Arc::from(random_string(10, ALNUM));
    owner::spawn(rooms, key, collection, cluster, tail, last_seq, epoch)
}

/// The lease as the owner counts it: renew from `renew_at`, stamp only before `deadline`.
/// Both are measured from when the request that created or renewed it was sent, so they
/// fall before the server's own expiry.
pub(super) struct Lease {
    pub revision: u64,
    pub renew_at: Instant,
    pub deadline: Instant,
}

impl Lease {
    pub fn fresh(revision: u64, sent: Instant, ttl: Duration) -> Lease {
        Lease {
            revision,
            renew_at: sent + ttl / 3,
            deadline: sent + ttl * 3 / 4,
        }
    }
}
