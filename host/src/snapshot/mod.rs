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

pub use bootstrap::{Bootstrap, BootstrapError, BootstrapOutcome, StreamBehind};
use format::Streamed;
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

/// What `take` makes of a pinned read.
pub struct Take {
    pub kind: Kind,
    pub copy_kind: CopyKind,
    /// The cluster it belongs to (`None`: a node without replication).
    pub cluster: Option<String>,
    /// The taking node.
    pub node: String,
    /// A local storage root whose files the rows name are archived too (single-node backups).
    pub storage: Option<PathBuf>,
}

/// Copies a pinned read into an archive under `work` (named after `stem`): the database copy,
/// its header, the zip. The copy of the database is removed once archived.
pub async fn take(
    pinned: Pinned,
    what: Take,
    work: PathBuf,
    stem: String,
) -> Result<Taken, SnapshotError> {
    let Take {
        kind,
        copy_kind,
        cluster,
        node,
        storage,
    } = what;
    tokio::task::spawn_blocking(move || {
        let db = work.join(format!("{stem}.db"));
        let archive = work.join(format!("{stem}.zip"));
        let result = (|| {
            let contents = crate::store::snapshot::copy(pinned, &db, copy_kind)?;
            let mut header = Header::new(kind, cluster.as_deref(), &node, contents);
            let files = match &storage {
                Some(root) => {
                    header.storage = true;
                    stored_files(&db, root)?
                }
                None => Vec::new(),
            };
            format::write(&db, &header, &archive, &files)?;
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

/// The files a copied database's rows reference, with their paths under a local storage
/// `root`. A file deleted since the copy was pinned (its record deleted meanwhile, the janitor
/// quicker) is left out with a warning: the copy names it, but nothing can bring it back.
fn stored_files(db: &Path, root: &Path) -> Result<Vec<(String, PathBuf)>, SnapshotError> {
    let keys = crate::store::snapshot::stored_file_keys(db)?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let path = root.join(&key);
        if path.is_file() {
            out.push((key, path));
        } else {
            tracing::warn!(
                key,
                "a file the backup's rows name is gone from the storage; left out"
            );
        }
    }
    Ok(out)
}

/// Downloads a stored snapshot and checks it completely: the archive's sha256 against the
/// bucket's metadata, then the database against its header (file sha256, row counts, table
/// hashes). The archive is decompressed as it arrives (`format::extract_stream`) and never
/// written down: downloading and decompressing overlap. `on_header` gets the header as soon as
/// it arrives, before anything is verified. Returns the header and the path of the
/// extracted database (in `work`, for the caller to install or remove).
pub async fn fetch_verified(
    bucket: &crate::replication::SnapshotStore,
    stored: &Stored,
    work: &Path,
    progress: &std::sync::Arc<crate::replication::Progress>,
    mut phase: impl FnMut(&'static str),
    on_header: impl FnOnce(&Header) + Send + 'static,
) -> Result<(Header, PathBuf), SnapshotError> {
    let db = work.join("incoming.db");
    phase("download");
    let (size, reader) = bucket
        .reader(&stored.name)
        .await?
        .ok_or_else(|| SnapshotError::NotFound(format!("snapshot {}", stored.name)))?;
    progress.start(size);
    // Blocking reads of the async object stream, on the blocking thread that decompresses.
    let src = std::io::BufReader::with_capacity(1 << 20, tokio_util::io::SyncIoBridge::new(reader));
    let (d, p) = (db.clone(), progress.clone());
    let streamed = tokio::task::spawn_blocking(move || {
        format::extract_stream(
            src,
            &d,
            |n| p.done.store(n, std::sync::atomic::Ordering::Relaxed),
            on_header,
        )
    })
    .await
    .map_err(|e| SnapshotError::Io(format!("download task failed: {e}")));
    let checked = match streamed {
        Ok(Ok(s)) if s.archive_sha256 != stored.sha256 => Err(SnapshotError::Corrupt(format!(
            "{} hashes to {}, not {} as stored",
            stored.name, s.archive_sha256, stored.sha256
        ))),
        // Read to its end with the right sha256, yet not a readable snapshot: not ours.
        Ok(Ok(Streamed {
            extracted: Err(SnapshotError::Format(e)),
            ..
        })) => Err(SnapshotError::Corrupt(e)),
        Ok(Ok(Streamed {
            extracted: Err(e), ..
        })) => Err(e),
        Ok(Ok(Streamed {
            extracted: Ok(x), ..
        })) => {
            phase("verify");
            progress.start(0);
            let d = db.clone();
            let verify = tokio::task::spawn_blocking(move || {
                format::verify(&d, &x)?;
                Ok::<_, SnapshotError>(x.header)
            });
            // The database reaches the disk while its rows are checked: the install's commit
            // syncs it anyway, and would otherwise wait for all of it then.
            let d = db.clone();
            let sync = tokio::task::spawn_blocking(move || {
                std::fs::File::open(&d).and_then(|f| f.sync_all())
            });
            let (verified, synced) = tokio::join!(verify, sync);
            let verified = verified
                .map_err(|e| SnapshotError::Io(format!("verify task failed: {e}")))
                .and_then(|r| r);
            match synced {
                Ok(Ok(())) => verified,
                Ok(Err(e)) => verified.and(Err(SnapshotError::Io(format!(
                    "syncing the snapshot's database: {e}"
                )))),
                Err(e) => verified.and(Err(SnapshotError::Io(format!("sync task failed: {e}")))),
            }
        }
        Ok(Err(e)) | Err(e) => Err(e),
    };
    match checked {
        Ok(header) if header.contents.seq != stored.seq => {
            let _ = std::fs::remove_file(&db);
            Err(SnapshotError::Corrupt(format!(
                "{} holds sequence {}, its metadata says {}",
                stored.name, header.contents.seq, stored.seq
            )))
        }
        Ok(header) => Ok((header, db)),
        Err(e) => {
            let _ = std::fs::remove_file(&db);
            Err(e)
        }
    }
}
