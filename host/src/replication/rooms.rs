//! Rooms in JetStream: the lease of each room's owner (a KV bucket whose entries expire after
//! the lease TTL), each room's history (one stream, one subject per room, the last N entries
//! kept), and the secret nodes sign their node-to-node links with.
//!
//! Correctness rests on two server-side checks, never on clocks alone:
//! * a lease is taken with create-if-absent and renewed with a revision-checked update, so
//!   two nodes never both renew one lease; an owner that stops renewing loses it when the
//!   entry expires (the bucket's `max_age`);
//! * every history append names the sequence of the room's previous entry
//!   (`Nats-Expected-Last-Subject-Sequence`), so an owner that was paused and missed a takeover
//!   cannot append after the new owner did: its append is refused (`Appended::Fenced`).
//!
//! What a lease or an entry contains is the caller's business (`rooms/`): bytes here.

use std::time::Duration;

use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use bytes::Bytes;

use super::log::{Log, LogError};

/// Sizes of the room buckets and stream.
#[derive(Debug, Clone)]
pub struct RoomLogOptions {
    /// A lease not renewed for this long expires.
    pub lease_ttl: Duration,
    /// Entries kept per room in the history stream.
    pub history: usize,
    /// Largest entry (a group of messages stamped together), in bytes.
    pub max_entry_bytes: usize,
}

/// A lease as read from the bucket.
#[derive(Debug, Clone)]
pub struct LeaseEntry {
    pub value: Bytes,
    pub revision: u64,
}

/// One history entry of a room, with its stream sequence.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: u64,
    pub payload: Bytes,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this stream sequence.
    At(u64),
    /// The room's last entry is not the one the caller named: someone else appended.
    Fenced,
}

/// The cluster's room leases and histories.
#[derive(Clone)]
pub struct RoomLog {
    js: Context,
    leases: kv::Store,
    meta: kv::Store,
    stream: stream::Stream,
    subject_prefix: String,
}

/// Header a history entry is deduplicated by (retries of one append land once).
const MSG_ID: &str = "Nats-Msg-Id";

fn fail(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Stream {
        stream: "rooms".into(),
        message: format!("{what}: {e}"),
    }
}

impl RoomLog {
    /// Opens (creating when missing) the lease bucket `SYNCBASE_<cluster>_ROOMLEASES`, the
    /// metadata bucket `SYNCBASE_<cluster>_ROOMMETA` and the history stream
    /// `SYNCBASE_<cluster>_ROOMS` (subjects `syncbase.<cluster>.room.>`).
    pub async fn open(log: &Log, opts: &RoomLogOptions) -> Result<RoomLog, LogError> {
        let js = log.jetstream().clone();
        let cluster = log.cluster();
        let replicas = log.replicas();
        let leases = bucket(
            &js,
            kv::Config {
                bucket: format!("SYNCBASE_{cluster}_ROOMLEASES"),
                description: "Syncbase room owners (entries expire unless renewed)".into(),
                history: 1,
                max_age: opts.lease_ttl,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let meta = bucket(
            &js,
            kv::Config {
                bucket: format!("SYNCBASE_{cluster}_ROOMMETA"),
                description: "Syncbase rooms: the node-to-node link secret".into(),
                history: 1,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let name = format!("SYNCBASE_{cluster}_ROOMS");
        let subject_prefix = format!("syncbase.{cluster}.room");
        let stream = match js.get_stream(&name).await {
            Ok(s) => s,
            Err(_) => js
                .get_or_create_stream(stream::Config {
                    name: name.clone(),
                    description: Some(format!("Syncbase room histories of cluster {cluster}")),
                    subjects: vec![format!("{subject_prefix}.>")],
                    storage: stream::StorageType::File,
                    retention: stream::RetentionPolicy::Limits,
                    discard: stream::DiscardPolicy::Old,
                    max_messages_per_subject: opts.history.max(1) as i64,
                    max_message_size: i32::try_from(opts.max_entry_bytes + 4096)
                        .unwrap_or(i32::MAX),
                    num_replicas: replicas,
                    duplicate_window: Duration::from_secs(120),
                    allow_direct: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| fail(&format!("creating stream {name}"), e))?,
        };
        Ok(RoomLog {
            js,
            leases,
            meta,
            stream,
            subject_prefix,
        })
    }

    /// The TTL the lease bucket really has: the first node to create it chose it, and an owner
    /// must count its lease's life by what the server enforces, not by its own flag.
    pub async fn lease_ttl(&self) -> Result<Duration, LogError> {
        self.leases
            .status()
            .await
            .map(|s| s.max_age())
            .map_err(|e| fail("reading the lease bucket", e))
    }

    /// The cluster's link secret: created by the first node that asks, read by the others.
    pub async fn link_secret(&self) -> Result<Vec<u8>, LogError> {
        let fresh: [u8; 32] = rand::random();
        match self
            .meta
            .create("link-secret", Bytes::copy_from_slice(&fresh))
            .await
        {
            Ok(_) => return Ok(fresh.to_vec()),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail("creating the link secret", e)),
        }
        match self.meta.get("link-secret").await {
            Ok(Some(v)) if v.len() >= 16 => Ok(v.to_vec()),
            Ok(_) => Err(fail("reading the link secret", "missing or too short")),
            Err(e) => Err(fail("reading the link secret", e)),
        }
    }

    /// The lease of `key`, if one is held.
    pub async fn lease(&self, key: &str) -> Result<Option<LeaseEntry>, LogError> {
        match self.leases.entry(key).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some(LeaseEntry {
                value: e.value,
                revision: e.revision,
            })),
            Ok(_) => Ok(None),
            Err(e) => Err(fail("reading a lease", e)),
        }
    }

    /// Takes the lease of `key` if nobody holds it: its revision, or `None` when held.
    pub async fn acquire(&self, key: &str, value: Bytes) -> Result<Option<u64>, LogError> {
        match self.leases.create(key, value).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(fail("taking a lease", e)),
        }
    }

    /// Renews (or rewrites) the lease at `revision`: its new revision, or `None` when the
    /// lease changed hands (or expired) since.
    pub async fn renew(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, LogError> {
        match self.leases.update(key, value, revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(fail("renewing a lease", e)),
        }
    }

    /// Gives the lease at `revision` up (a no-op when it already changed hands).
    pub async fn release(&self, key: &str, revision: u64) -> Result<(), LogError> {
        match self
            .leases
            .delete_expect_revision(key, Some(revision))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(fail("releasing a lease", e)),
        }
    }

    fn subject(&self, key: &str) -> String {
        format!("{}.{key}", self.subject_prefix)
    }

    /// Appends an entry to the room `key`, provided the room's last entry is at
    /// `expected_last` (0: the room has none). `msg_id` names the entry, so retrying an
    /// append whose answer was lost stores it once; `is_ours` recognises the entry when a
    /// retry finds it already stored.
    pub async fn append(
        &self,
        key: &str,
        msg_id: &str,
        payload: Bytes,
        expected_last: u64,
        is_ours: impl Fn(&[u8]) -> bool,
    ) -> Result<Appended, LogError> {
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload)
            .header(MSG_ID, msg_id)
            .expected_last_subject_sequence(expected_last);
        let outcome = match self.js.send_publish(self.subject(key), msg).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(ack) => Ok(Appended::At(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                // Either another owner appended, or an earlier try of this very append landed
                // and only its answer was lost: the room's last entry tells which.
                match self.last(key).await? {
                    Some(last) if is_ours(&last.payload) => Ok(Appended::At(last.seq)),
                    _ => Ok(Appended::Fenced),
                }
            }
            Err(e) => Err(fail("appending to a room's history", e)),
        }
    }

    /// The room's last entry, read from the stream leader.
    pub async fn last(&self, key: &str) -> Result<Option<HistoryEntry>, LogError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject(key))
            .await
        {
            Ok(m) => Ok(Some(HistoryEntry {
                seq: m.sequence,
                payload: m.payload,
            })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(fail("reading a room's last entry", e)),
        }
    }

    /// Every entry the stream keeps for room `key`, oldest first, read from the stream leader.
    pub async fn history(&self, key: &str) -> Result<Vec<HistoryEntry>, LogError> {
        let subject = self.subject(key);
        let mut out = Vec::new();
        let mut next = 1;
        loop {
            let got = self
                .stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(subject.clone())
                .send()
                .await;
            match got {
                Ok(m) => {
                    next = m.sequence + 1;
                    out.push(HistoryEntry {
                        seq: m.sequence,
                        payload: m.payload,
                    });
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(out),
                Err(e) => return Err(fail("reading a room's history", e)),
            }
        }
    }
}

async fn bucket(js: &Context, config: kv::Config) -> Result<kv::Store, LogError> {
    let name = config.bucket.clone();
    match js.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(config)
            .await
            .map_err(|e| fail(&format!("creating bucket {name}"), e)),
    }
}
