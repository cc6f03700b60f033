//! Snapshots in JetStream: the snapshot files in an Object Store bucket per cluster
//! (`SYNCBASE_<cluster>_SNAPSHOTS`), claims on who takes the snapshot due at a position in a
//! KV bucket (`SYNCBASE_<cluster>_SNAPCLAIMS`), and compaction of the log below a snapshot.
//!
//! * **Objects.** Policy and manual snapshots are named `snapshot-<seq, 20 digits>` (names sort
//!   by position), backups `backup/<name>`. Each carries metadata (kind, seq, size, sha256 of
//!   the file, taking node, time): listing needs no download. Files stream both ways, in
//!   512 KiB chunks; a download computes the sha256 as it goes and the caller compares it with
//!   the metadata's (the bucket's own digest only proves the chunks are the ones put).
//! * **Claims.** Every node reaches the same decision at the same position; one takes it: the
//!   first to create the key `s<seq>` (create-if-absent). The claimant refreshes the key while
//!   it works; the bucket's `max_age` (the claim TTL) expires the key of a claimant that died,
//!   and a node still waiting for that snapshot can then create the key itself. A finished
//!   snapshot's key is left to expire: deleting it would let a late node claim it again.
//! * **Compaction.** [`SnapshotStore::purge_below`] drops the stream's events up to and
//!   including a kept snapshot's position: a node bootstrapping from it consumes after it.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{kv, object_store};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::log::{Log, LogError};

/// Object chunk size: below NATS's default 1 MiB payload limit, large enough that a
/// gigabyte is two thousand round trips, not eight.
const CHUNK: usize = 512 * 1024;
/// Prefix of policy and manual snapshots' object names.
pub const SNAPSHOT_PREFIX: &str = "snapshot-";
/// Prefix of backups' object names.
pub const BACKUP_PREFIX: &str = "backup/";

/// Bytes moved so far of a transfer, and its total: read by status and progress bars.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    pub fn start(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }
}

/// One stored snapshot or backup, from its object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// Object name.
    pub name: String,
    /// `snapshot` or `backup`.
    pub kind: String,
    /// Stream sequence of the state it holds.
    pub seq: u64,
    pub size: u64,
    /// sha256 (lowercase hex) of the whole file.
    pub sha256: String,
    /// The node that took it.
    pub node: String,
    /// When it was stored (RFC 3339).
    pub created: String,
    /// A digest of its per-table content hashes: equal for two snapshots with equal rows,
    /// whoever took them.
    pub content: String,
}

impl Stored {
    /// What to store with an object.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            ("kind".to_string(), self.kind.clone()),
            ("seq".to_string(), self.seq.to_string()),
            ("size".to_string(), self.size.to_string()),
            ("sha256".to_string(), self.sha256.clone()),
            ("node".to_string(), self.node.clone()),
            ("created".to_string(), self.created.clone()),
            ("content".to_string(), self.content.clone()),
        ])
    }

    fn from_info(info: &object_store::ObjectInfo) -> Stored {
        let m = &info.metadata;
        let get = |k: &str| m.get(k).cloned().unwrap_or_default();
        Stored {
            name: info.name.clone(),
            kind: get("kind"),
            seq: get("seq").parse().unwrap_or(0),
            size: info.size as u64,
            sha256: get("sha256"),
            node: get("node"),
            created: get("created"),
            content: get("content"),
        }
    }
}

/// The object name of a snapshot at `seq` taken by `node` (two nodes may both take one at the
/// same position; neither overwrites the other).
pub fn snapshot_name(seq: u64, node: &str) -> String {
    format!("{SNAPSHOT_PREFIX}{seq:020}-{node}")
}

/// The stream's extent and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamUsage {
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// The cluster's snapshot bucket and claims.
#[derive(Clone)]
pub struct SnapshotStore {
    log: Log,
    objects: object_store::ObjectStore,
    claims: kv::Store,
    bucket: String,
}

fn objects_err(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Objects(format!("{what}: {e}"))
}

impl SnapshotStore {
    /// Opens (creating if missing) the buckets. `claim_ttl` is used when the claims bucket is
    /// created; an existing bucket keeps its own.
    pub async fn open(log: &Log, claim_ttl: Duration) -> Result<SnapshotStore, LogError> {
        let js = log.jetstream();
        let (objects, bucket) =
            super::objects::open_bucket(log, "SNAPSHOTS", "Syncbase snapshots and backups").await?;
        let claims_bucket = format!("SYNCBASE_{}_SNAPCLAIMS", log.cluster());
        let claims = match js.get_key_value(&claims_bucket).await {
            Ok(s) => s,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: claims_bucket.clone(),
                    description: "Syncbase: who takes the snapshot due at a position".into(),
                    history: 1,
                    max_age: claim_ttl,
                    storage: StorageType::File,
                    num_replicas: log.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| objects_err(&format!("creating bucket {claims_bucket}"), e))?,
        };
        Ok(SnapshotStore {
            log: log.clone(),
            objects,
            claims,
            bucket,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Every stored snapshot and backup.
    pub async fn list(&self) -> Result<Vec<Stored>, LogError> {
        let mut list = self
            .objects
            .list()
            .await
            .map_err(|e| objects_err("listing", e))?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| objects_err("listing", e))?;
            out.push(Stored::from_info(&info));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Policy and manual snapshots, newest (highest sequence) first.
    pub async fn snapshots(&self) -> Result<Vec<Stored>, LogError> {
        let mut v: Vec<Stored> = self
            .list()
            .await?
            .into_iter()
            .filter(|s| s.name.starts_with(SNAPSHOT_PREFIX))
            .collect();
        v.sort_by(|a, b| b.seq.cmp(&a.seq).then_with(|| b.name.cmp(&a.name)));
        Ok(v)
    }

    /// One stored object's metadata, `None` if absent.
    pub async fn info(&self, name: &str) -> Result<Option<Stored>, LogError> {
        match self.objects.info(name).await {
            Ok(info) if !info.deleted => Ok(Some(Stored::from_info(&info))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(objects_err(&format!("info {name}"), e)),
        }
    }

    /// Uploads `file` as `meta.name` with `meta`'s metadata (its `size` and `sha256` must be
    /// the file's), streaming it.
    pub async fn put(
        &self,
        meta: &Stored,
        file: &Path,
        progress: &Arc<Progress>,
    ) -> Result<(), LogError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| objects_err(&format!("opening {}", file.display()), e))?;
        progress.start(meta.size);
        let mut reader = Counting {
            inner: tokio::io::BufReader::with_capacity(CHUNK, f),
            progress: progress.clone(),
        };
        self.objects
            .put(
                object_store::ObjectMetadata {
                    name: meta.name.clone(),
                    description: Some(format!("{} at sequence {}", meta.kind, meta.seq)),
                    chunk_size: Some(CHUNK),
                    metadata: meta.metadata(),
                    headers: None,
                },
                &mut reader,
            )
            .await
            .map_err(|e| objects_err(&format!("put {}", meta.name), e))?;
        Ok(())
    }

    /// Downloads `name` into `to`, returning the sha256 (lowercase hex) and size of what
    /// arrived. `Ok(None)`: no such object.
    pub async fn get(
        &self,
        name: &str,
        to: &Path,
        progress: &Arc<Progress>,
    ) -> Result<Option<(String, u64)>, LogError> {
        let mut object = match self.objects.get(name).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(objects_err(&format!("get {name}"), e)),
        };
        progress.start(object.info().size as u64);
        let mut out = tokio::fs::File::create(to)
            .await
            .map_err(|e| objects_err(&format!("creating {}", to.display()), e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = object
                .read(&mut buf)
                .await
                .map_err(|e| objects_err(&format!("reading {name}"), e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .map_err(|e| objects_err(&format!("writing {}", to.display()), e))?;
            total += n as u64;
            progress.done.store(total, Ordering::Relaxed);
        }
        out.sync_all()
            .await
            .map_err(|e| objects_err(&format!("writing {}", to.display()), e))?;
        let sha = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some((sha, total)))
    }

    /// A stored object as a byte stream, with its size (for serving a download as it
    /// arrives). `Ok(None)`: no such object.
    pub async fn reader(
        &self,
        name: &str,
    ) -> Result<Option<(u64, Pin<Box<dyn AsyncRead + Send>>)>, LogError> {
        match self.objects.get(name).await {
            Ok(o) => Ok(Some((o.info().size as u64, Box::pin(o)))),
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => Ok(None),
            Err(e) => Err(objects_err(&format!("get {name}"), e)),
        }
    }

    /// Deletes a stored object (its chunks go with it).
    pub async fn delete(&self, name: &str) -> Result<(), LogError> {
        self.objects
            .delete(name)
            .await
            .map_err(|e| objects_err(&format!("delete {name}"), e))
    }

    /// Claims the snapshot due at `seq` for `node`: `None` when another node holds the claim.
    pub async fn claim(&self, seq: u64, node: &str) -> Result<Option<Claim>, LogError> {
        let key = format!("s{seq}");
        match self.claims.create(&key, node.to_string().into()).await {
            Ok(revision) => Ok(Some(Claim {
                claims: self.claims.clone(),
                key,
                node: node.to_string(),
                revision,
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(objects_err(&format!("claiming {key}"), e)),
        }
    }

    /// Drops the stream's events at or below `seq` (they are inside a kept snapshot); returns
    /// how many went.
    pub async fn purge_through(&self, seq: u64) -> Result<u64, LogError> {
        let stream = self
            .log
            .jetstream()
            .get_stream(self.log.stream_name())
            .await
            .map_err(|e| LogError::Stream {
                stream: self.log.stream_name().to_string(),
                message: e.to_string(),
            })?;
        let r = stream
            .purge()
            .sequence(seq + 1)
            .await
            .map_err(|e| LogError::Stream {
                stream: self.log.stream_name().to_string(),
                message: format!("purge below {}: {e}", seq + 1),
            })?;
        Ok(r.purged)
    }

    /// The stream's first and last sequence, message count and bytes.
    pub async fn usage(&self) -> Result<StreamUsage, LogError> {
        stream_usage(&self.log).await
    }
}

/// The stream's first and last sequence, message count and bytes.
pub async fn stream_usage(log: &Log) -> Result<StreamUsage, LogError> {
    let fail = |e: &dyn std::fmt::Display| LogError::Stream {
        stream: log.stream_name().to_string(),
        message: e.to_string(),
    };
    let mut s = log
        .jetstream()
        .get_stream(log.stream_name())
        .await
        .map_err(|e| fail(&e))?;
    let info = s.info().await.map_err(|e| fail(&e))?;
    Ok(StreamUsage {
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
        messages: info.state.messages,
        bytes: info.state.bytes,
    })
}

/// A held claim.
pub struct Claim {
    claims: kv::Store,
    key: String,
    node: String,
    revision: u64,
}

impl Claim {
    /// Renews the claim (before the claim TTL runs out). An error means the claim was lost
    /// (expired and taken by another node): stop working on it.
    pub async fn refresh(&mut self) -> Result<(), LogError> {
        self.revision = self
            .claims
            .update(&self.key, self.node.clone().into(), self.revision)
            .await
            .map_err(|e| objects_err(&format!("renewing claim {}", self.key), e))?;
        Ok(())
    }
}

/// An `AsyncRead` that counts what passes into a [`Progress`].
struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.progress.done.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_sort_by_position() {
        let mut names = vec![
            snapshot_name(1_000, "a"),
            snapshot_name(99, "b"),
            snapshot_name(100_000, "a"),
        ];
        names.sort();
        assert_eq!(
            names,
            [
                snapshot_name(99, "b"),
                snapshot_name(1_000, "a"),
                snapshot_name(100_000, "a")
            ]
        );
        let meta = Stored {
            name: snapshot_name(7, "n1"),
            kind: "snapshot".into(),
            seq: 7,
            size: 10,
            sha256: "ab".into(),
            node: "n1".into(),
            created: "now".into(),
            content: "cd".into(),
        };
        let info = object_store::ObjectInfo {
            name: meta.name.clone(),
            description: None,
            metadata: meta.metadata(),
            headers: None,
            options: None,
            bucket: "b".into(),
            nuid: "x".into(),
            size: 10,
            chunks: 1,
            modified: None,
            digest: None,
            deleted: false,
        };
        assert_eq!(Stored::from_info(&info), meta);
    }
}
