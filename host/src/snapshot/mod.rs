//! Snapshots of canonical state, joining nodes, log compaction and backups: what runs between
//! the store (`store::snapshot`: the SQLite copy, the install), the log (`replication::
//! snapshots`: the bucket, claims, purge) and the HTTP API.
//!
//! ```text
//! fold (writer)        policy says "due at S" → the batch ends at S
//!   │
//! sync::fold           pins a read transaction at S before the next batch commits
//!   │ Due(S, pinned)
//! service.rs           claim S (KV create) ─ lost ─▶ drop the pin, watch S; take over at the
//!   │ won                                             node's own later position if the
//!   ▼                                                 claimant's key expires unfulfilled
//! take: copy → canonical → hashes → zip(zstd) → upload → read back, sha256 → compact:
//!       delete snapshots beyond `keep`, purge the stream through the oldest kept
//!
//! bootstrap.rs         a node with no state, or whose position fell below the stream's first
//!                      sequence: newest usable snapshot → download, sha256 → extract, verify
//!                      table hashes → plugin bytes → install (keeping its own writes) →
//!                      consume from S+1
//! backups.rs           PocketBase's /api/backups on the same snapshot files
//! ```

pub mod backups;
mod bootstrap;
pub mod cli;
pub mod format;
mod service;

use std::path::{Path, PathBuf};

use crate::replication::{LogError, Stored};
use crate::store::StoreError;
use crate::store::snapshot::{CopyKind, Pinned};

pub use bootstrap::{Bootstrap, BootstrapError, BootstrapOutcome};
pub use format::{Header, Kind};
pub use service::{ServiceStatus, Snapshots};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("io: {0}")]
    Io(String),
    /// Not a snapshot file, or one this build cannot read.
    #[error("{0}")]
    Format(String),
    /// The bytes or rows are not what the header or the bucket's metadata say.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0} not found")]
    NotFound(String),
    /// Another snapshot, backup or restore is running.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Invalid(String),
    /// A newer snapshot's compaction removed this one before it was read back: nothing is
    /// missing, the newer one covers its position.
    #[error("superseded by the snapshot at {0} before it was read back")]
    Superseded(u64),
}

/// A snapshot taken into local files.
#[derive(Debug)]
pub struct Taken {
    /// The archive file.
    pub archive: PathBuf,
    pub header: Header,
    /// sha256 (lowercase hex) and size of the archive.
    pub sha256: String,
    pub size: u64,
}

impl Taken {
    /// The bucket metadata for storing this snapshot under `name`.
    pub fn stored(&self, name: String) -> Stored {
        Stored {
            name,
            kind: match self.header.kind {
                Kind::Snapshot => "snapshot",
                Kind::Backup => "backup",
            }
            .into(),
            seq: self.header.contents.seq,
            size: self.size,
            sha256: self.sha256.clone(),
            node: self.header.node.clone(),
            created: self.header.created.clone(),
            content: content_digest(&self.header),
        }
    }
}

/// A digest of a header's per-table content hashes: equal for equal rows.
pub fn content_digest(h: &Header) -> String {
    let text = serde_json::to_string(&h.contents.table_hashes).unwrap_or_default();
    crate::replication::sha256_hex(text.as_bytes())
}

/// The directory for a node's snapshot work files (`<dir>/snapshots`), created if missing.
pub fn work_dir(data_dir: &Path) -> Result<PathBuf, SnapshotError> {
    let dir = data_dir.join("snapshots");
    std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::Io(e.to_string()))?;
    Ok(dir)
}

/// Copies a pinned read into an archive under `work` (named after `stem`): the database copy,
/// its header, the zip. The copy of the database is removed once archived.
pub async fn take(
    pinned: Pinned,
    kind: Kind,
    copy_kind: CopyKind,
    cluster: Option<String>,
    node: String,
    work: PathBuf,
    stem: String,
) -> Result<Taken, SnapshotError> {
    tokio::task::spawn_blocking(move || {
        let db = work.join(format!("{stem}.db"));
        let archive = work.join(format!("{stem}.zip"));
        let result = (|| {
            let contents = crate::store::snapshot::copy(pinned, &db, copy_kind)?;
            let header = Header::new(kind, cluster.as_deref(), &node, contents);
            format::write(&db, &header, &archive)?;
            let (sha256, size) = format::sha256_file(&archive)?;
            Ok(Taken {
                archive: archive.clone(),
                header,
                sha256,
                size,
            })
        })();
        let _ = std::fs::remove_file(&db);
        if result.is_err() {
            let _ = std::fs::remove_file(&archive);
        }
        result
    })
    .await
    .map_err(|e| SnapshotError::Io(format!("snapshot task failed: {e}")))?
}

/// Downloads a stored snapshot and checks it completely: the file's sha256 against the
/// bucket's metadata, then the database against its header (file sha256, row counts, table
/// hashes). Returns the header and the paths of the archive and extracted database (in `work`,
/// for the caller to use or remove).
pub async fn fetch_verified(
    bucket: &crate::replication::SnapshotStore,
    stored: &Stored,
    work: &Path,
    progress: &std::sync::Arc<crate::replication::Progress>,
    mut phase: impl FnMut(&'static str),
) -> Result<(Header, PathBuf, PathBuf), SnapshotError> {
    let archive = work.join("incoming.zip");
    let db = work.join("incoming.db");
    phase("download");
    let got = bucket
        .get(&stored.name, &archive, progress)
        .await?
        .ok_or_else(|| SnapshotError::NotFound(format!("snapshot {}", stored.name)))?;
    phase("verify");
    if got.0 != stored.sha256 {
        let _ = std::fs::remove_file(&archive);
        return Err(SnapshotError::Corrupt(format!(
            "{} hashes to {}, not {} as stored",
            stored.name, got.0, stored.sha256
        )));
    }
    let (a, d) = (archive.clone(), db.clone());
    let p = progress.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let total = format::read_header(&a)?.contents.db_bytes;
        p.start(total);
        let x = format::extract(&a, &d, |n| {
            p.done.store(n, std::sync::atomic::Ordering::Relaxed)
        })?;
        format::verify(&d, &x)?;
        Ok::<_, SnapshotError>(x.header)
    })
    .await
    .map_err(|e| SnapshotError::Io(format!("verify task failed: {e}")))?;
    match checked {
        Ok(header) if header.contents.seq != stored.seq => {
            let _ = std::fs::remove_file(&archive);
            let _ = std::fs::remove_file(&db);
            Err(SnapshotError::Corrupt(format!(
                "{} holds sequence {}, its metadata says {}",
                stored.name, header.contents.seq, stored.seq
            )))
        }
        Ok(header) => Ok((header, archive, db)),
        Err(e) => {
            let _ = std::fs::remove_file(&archive);
            let _ = std::fs::remove_file(&db);
            Err(e)
        }
    }
}
