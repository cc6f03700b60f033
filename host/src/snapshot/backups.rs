//! PocketBase's backups (`/api/backups`) on snapshot files.
//!
//! A backup is a snapshot file (`format.rs`) of kind `backup`, named as PocketBase names them
//! (`^[a-z0-9_-]+\.zip$`, at most 150 characters; default `pb_backup_<app>_<UTC time>.zip`).
//! - On a node without replication it is a consistent copy of the whole database (a pinned
//!   read copied with SQLite's backup API: writes go on meanwhile) and of the files its rows
//!   name in local storage (`storage/<key>` entries, as PocketBase's backups hold
//!   `pb_data/storage`), kept in `<dir>/backups`. Restoring one puts its files back, then
//!   replaces the database as PocketBase does (its superusers and settings included), in place,
//!   without a restart: the store swaps the file between two writes; stored files the restored
//!   rows do not name go to the janitor.
//! - On a replicating node it is the cluster's canonical state (as a snapshot), kept in the
//!   cluster's snapshot bucket under `backup/<name>`, so every node lists, serves and deletes
//!   the same backups. Restoring one into the running cluster is refused: every node would
//!   have to install it at the same log position. A backup seeds a node without replication
//!   (upload and restore it, or `syncbase snapshot restore NAME --to DIR`), or a node of the
//!   same cluster while the log still continues after it.
//!
//! One backup or restore runs at a time per node, as in PocketBase.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use parking_lot::Mutex;
use tokio::io::AsyncRead;

use super::{Kind, SnapshotError, Snapshots};
use crate::replication::Progress;
use crate::replication::snapshots::BACKUP_PREFIX;
use crate::store::Store;
use crate::store::snapshot::{CopyKind, InstallMode};

/// A backup as `GET /api/backups` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupInfo {
    pub key: String,
    pub size: u64,
    /// PocketBase's date format: `2006-01-02 15:04:05.000Z`.
    pub modified: String,
}

/// Where backups live, and the one backup or restore running.
pub struct Backups {
    store: Store,
    /// The node's file storage: a single node's backup carries the files of local storage.
    files: crate::files::Files,
    node: String,
    /// The cluster's snapshot service on a replicating node; `None`: backups in `dir`.
    cluster: Option<Snapshots>,
    dir: PathBuf,
    active: Mutex<Option<String>>,
}

/// Releases the node's backup slot when dropped.
pub struct Active<'a>(&'a Backups);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        *self.0.active.lock() = None;
    }
}

/// Whether `name` is a name PocketBase accepts for a backup.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 150
        && name.strip_suffix(".zip").is_some_and(|stem| {
            !stem.is_empty()
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// Whether `key` names a stored backup: a name PocketBase accepts, or an automatic backup's
/// (`@auto_pb_backup_...`, which only the backup cron makes).
fn valid_key(key: &str) -> bool {
    valid_name(key.strip_prefix('@').unwrap_or(key))
}

/// The prefix of the backups the `backups.cron` setting makes (PocketBase's).
pub const AUTO_PREFIX: &str = "@auto_pb_backup_";

/// An automatic backup's name: `@auto_pb_backup_<app name in snake case>_<UTC time>.zip`.
pub fn auto_name(app_name: &str) -> String {
    format!("@auto_{}", default_name(app_name))
}

/// PocketBase's default name: `pb_backup_<app name in snake case>_<UTC yyyymmddhhmmss>.zip`.
pub fn default_name(app_name: &str) -> String {
    let mut snake = String::new();
    for (i, ch) in app_name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 && !snake.ends_with('_') {
                snake.push('_');
            }
            snake.push(ch.to_ascii_lowercase());
        } else if ch.is_ascii_alphanumeric() {
            snake.push(ch);
        } else if !snake.ends_with('_') && !snake.is_empty() {
            snake.push('_');
        }
    }
    let snake: String = snake.trim_matches('_').chars().take(50).collect();
    format!(
        "pb_backup_{snake}_{}.zip",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    )
}

fn io(e: std::io::Error) -> SnapshotError {
    SnapshotError::Io(e.to_string())
}

fn pb_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

impl Backups {
    pub fn new(
        store: Store,
        files: crate::files::Files,
        node: String,
        cluster: Option<Snapshots>,
    ) -> Backups {
        let data = store
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Backups {
            store,
            files,
            node,
            cluster,
            dir: data.join("backups"),
            active: Mutex::new(None),
        }
    }

    /// Whether backups live in the cluster's bucket.
    pub fn replicated(&self) -> bool {
        self.cluster.is_some()
    }

    /// Takes the node's backup slot for `name`.
    pub fn begin(&self, name: &str) -> Result<Active<'_>, SnapshotError> {
        let mut active = self.active.lock();
        if active.is_some() {
            return Err(SnapshotError::Busy(
                "Try again later - another backup/restore process has already been started.".into(),
            ));
        }
        *active = Some(name.to_string());
        Ok(Active(self))
    }

    /// The backup being created or restored, if any.
    pub fn active(&self) -> Option<String> {
        self.active.lock().clone()
    }

    fn bucket(&self) -> Result<crate::replication::SnapshotStore, SnapshotError> {
        self.cluster
            .as_ref()
            .and_then(Snapshots::bucket_now)
            .ok_or_else(|| SnapshotError::Busy("The cluster's log is not reachable yet.".into()))
    }

    /// A directory for temporary files next to the database (renames stay on one device).
    fn work(&self) -> Result<PathBuf, SnapshotError> {
        let data = self.store.path().parent().unwrap_or(Path::new("."));
        super::work_dir(data)
    }

    fn local(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        if !valid_key(key) {
            return Err(SnapshotError::NotFound(format!("backup {key:?}")));
        }
        Ok(self.dir.join(key))
    }

    pub async fn list(&self) -> Result<Vec<BackupInfo>, SnapshotError> {
        if self.cluster.is_some() {
            let list = self.bucket()?.list().await?;
            return Ok(list
                .into_iter()
                .filter_map(|s| {
                    let key = s.name.strip_prefix(BACKUP_PREFIX)?.to_string();
                    let modified = chrono::DateTime::parse_from_rfc3339(&s.created)
                        .map(|t| pb_date(t.with_timezone(&chrono::Utc)))
                        .unwrap_or_default();
                    Some(BackupInfo {
                        key,
                        size: s.size,
                        modified,
                    })
                })
                .collect());
        }
        let mut out = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let key = entry.file_name().to_string_lossy().to_string();
            if !valid_key(&key) {
                continue;
            }
            let meta = entry.metadata().await.map_err(io)?;
            let modified = meta
                .modified()
                .map(|t| pb_date(t.into()))
                .unwrap_or_default();
            out.push(BackupInfo {
                key,
                size: meta.len(),
                modified,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, SnapshotError> {
        if !valid_key(key) {
            return Ok(false);
        }
        if self.cluster.is_some() {
            return Ok(self
                .bucket()?
                .info(&format!("{BACKUP_PREFIX}{key}"))
                .await?
                .is_some());
        }
        Ok(tokio::fs::try_exists(self.local(key)?)
            .await
            .unwrap_or(false))
    }

    /// Creates backup `name`: a consistent copy taken now (the caller holds the slot).
    pub async fn create(&self, name: &str) -> Result<(), SnapshotError> {
        let work = self.work()?;
        let pinned = self.store.pin().await?;
        let (copy_kind, cluster) = match &self.cluster {
            Some(s) => (CopyKind::Canonical, Some(s.cluster().to_string())),
            None => (CopyKind::Whole, None),
        };
        // As PocketBase: a backup holds the uploaded files of local storage (files on S3 stay
        // there); a cluster's backup names its files in the cluster's file bucket.
        let storage = match (&self.cluster, self.files.storage()) {
            (None, crate::files::Storage::Local(root)) => Some(root),
            _ => None,
        };
        let stem = format!("backup-{}", crate::replication::EventId::random());
        let taken = super::take(
            pinned,
            super::Take {
                kind: Kind::Backup,
                copy_kind,
                cluster,
                node: self.node.clone(),
                storage,
            },
            work,
            stem,
        )
        .await?;
        let result = self.keep(name, &taken.archive, Some(&taken)).await;
        let _ = tokio::fs::remove_file(&taken.archive).await;
        result
    }

    /// Adds an uploaded file as backup `name` after checking it is a readable backup.
    pub async fn upload(&self, name: &str, file: &Path) -> Result<(), SnapshotError> {
        let f = file.to_path_buf();
        tokio::task::spawn_blocking(move || super::format::read_header(&f))
            .await
            .map_err(|e| SnapshotError::Io(e.to_string()))??;
        self.keep(name, file, None).await
    }

    /// Stores an archive as backup `name` (moved into the backups directory, or uploaded).
    async fn keep(
        &self,
        name: &str,
        archive: &Path,
        taken: Option<&super::Taken>,
    ) -> Result<(), SnapshotError> {
        if self.cluster.is_some() {
            let bucket = self.bucket()?;
            let stored = match taken {
                Some(t) => t.stored(format!("{BACKUP_PREFIX}{name}")),
                None => {
                    let a = archive.to_path_buf();
                    let (header, (sha256, size)) = tokio::task::spawn_blocking(move || {
                        Ok::<_, SnapshotError>((
                            super::format::read_header(&a)?,
                            super::format::sha256_file(&a)?,
                        ))
                    })
                    .await
                    .map_err(|e| SnapshotError::Io(e.to_string()))??;
                    super::Taken {
                        archive: archive.to_path_buf(),
                        header,
                        sha256,
                        size,
                    }
                    .stored(format!("{BACKUP_PREFIX}{name}"))
                }
            };
            bucket.put(&stored, archive, &Progress::new()).await?;
            return Ok(());
        }
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        let dest = self.local(name)?;
        if tokio::fs::rename(archive, &dest).await.is_err() {
            tokio::fs::copy(archive, &dest).await.map_err(io)?;
        }
        Ok(())
    }

    /// The bytes of a backup, with its size.
    pub async fn open(
        &self,
        key: &str,
    ) -> Result<(u64, Pin<Box<dyn AsyncRead + Send>>), SnapshotError> {
        let missing = || SnapshotError::NotFound(format!("backup {key:?}"));
        if self.cluster.is_some() {
            if !valid_key(key) {
                return Err(missing());
            }
            return self
                .bucket()?
                .reader(&format!("{BACKUP_PREFIX}{key}"))
                .await?
                .ok_or_else(missing);
        }
        let path = self.local(key)?;
        let f = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
        let size = f.metadata().await.map_err(io)?.len();
        Ok((size, Box::pin(f)))
    }

    pub async fn delete(&self, key: &str) -> Result<(), SnapshotError> {
        if !self.exists(key).await? {
            return Err(SnapshotError::NotFound(format!("backup {key:?}")));
        }
        if self.cluster.is_some() {
            return Ok(self
                .bucket()?
                .delete(&format!("{BACKUP_PREFIX}{key}"))
                .await?);
        }
        tokio::fs::remove_file(self.local(key)?).await.map_err(io)
    }

    /// Why restoring into this node is refused, if it is.
    pub fn restore_refused(&self) -> Option<&'static str> {
        self.cluster.is_some().then_some(
            "Restoring a backup into a running cluster is not supported: every node would have \
             to install it at the same log position. Restore it on a node without replication \
             (`syncbase snapshot restore NAME --to DIR`, then `syncbase serve --dir DIR`).",
        )
    }

    /// Restores backup `key` in place of the database (the caller holds the slot): the file
    /// is checked completely (rows against the header's table hashes) before anything changes.
    pub async fn restore(&self, key: &str) -> Result<(), SnapshotError> {
        if let Some(reason) = self.restore_refused() {
            return Err(SnapshotError::Invalid(reason.into()));
        }
        let archive = self.local(key)?;
        let work = self.work()?;
        let id = crate::replication::EventId::random();
        let db = work.join(format!("restore-{id}.db"));
        let unpacked = work.join(format!("restore-{id}-files"));
        let (d, u) = (db.clone(), unpacked.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let x = super::format::extract(&archive, &d, |_| {})?;
            super::format::verify(&d, &x)?;
            let keys = if x.header.storage {
                super::format::extract_files(&archive, &u)?
            } else {
                Vec::new()
            };
            Ok::<_, SnapshotError>((x.header, keys))
        })
        .await
        .map_err(|e| SnapshotError::Io(e.to_string()));
        let result = async {
            let (header, keys) = checked??;
            tracing::info!(
                backup = key,
                seq = header.contents.seq,
                files = keys.len(),
                "restoring a backup"
            );
            // The files first: a row the restore brings back finds its bytes there.
            let storage = self.files.storage();
            for k in &keys {
                storage
                    .put_file(k, &unpacked.join(k), "application/octet-stream")
                    .await
                    .map_err(|e| SnapshotError::Io(format!("restoring file {k}: {e}")))?;
            }
            let mode = if header.storage {
                InstallMode::ReplaceWithFiles
            } else {
                InstallMode::Replace
            };
            self.store
                .install(&db, mode)
                .await
                .map(|_| ())
                .map_err(SnapshotError::from)
        }
        .await;
        let _ = tokio::fs::remove_file(&db).await;
        let _ = tokio::fs::remove_dir_all(&unpacked).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_pocketbase() {
        for ok in ["a.zip", "pb_backup_x_20240101.zip", "a-b_c9.zip"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".zip",
            "A.zip",
            "a.tar",
            "../a.zip",
            "a/b.zip",
            "a b.zip",
            &format!("{}.zip", "a".repeat(147)),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        let name = default_name("Syncbase App");
        assert!(name.starts_with("pb_backup_syncbase_app_"), "{name}");
        assert!(valid_name(&name), "{name}");
    }
}
