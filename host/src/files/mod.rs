//! File bytes on this node: uploads received to temporary files (streamed, hashed and sniffed
//! as they arrive), the storage they live in (`storage.rs`: `--dir`/storage or S3), names
//! (`name.rs`), types (`sniff.rs`), thumbs made once and kept (`thumbs.rs`), and the janitor
//! that deletes bytes nothing references any more (`janitor.rs`).
//!
//! What is referenced is the store's business (`store::files`: the `_files` table of every
//! name this node must keep, and `_files_trash` of what it may delete); this module never
//! opens SQLite and knows nothing of NATS: replication moves bytes through `replication::`
//! and writes them here.

pub mod janitor;
pub mod name;
pub mod sniff;
pub mod storage;
pub mod thumbs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use name::{ThumbMode, ThumbSize};
pub use storage::{S3Settings, Storage};

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Invalid(String),
    #[error("image: {0}")]
    Image(String),
}

/// One uploaded file, received whole into a temporary file of this node.
#[derive(Debug)]
pub struct Upload {
    /// The form key it came under (`avatar`, `avatar+`, `+avatar`).
    pub key: String,
    /// The client's name, reduced to its last path element.
    pub original_name: String,
    /// The stored name (PocketBase's scheme: cleaned stem, random suffix, extension).
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Detected from the content.
    pub mime: String,
    tmp: PathBuf,
}

impl Upload {
    /// The temporary file holding the bytes.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Moved into storage: gone already. Otherwise the upload was refused.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Receives one file's bytes: written to a temporary file as they arrive, hashed, and the
/// first bytes kept for type detection. Memory use is one chunk, whatever the file's size.
pub struct UploadWriter {
    file: tokio::fs::File,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl UploadWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        if self.head.len() < sniff::SNIFF_LEN {
            let take = (sniff::SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Completes the file received under form `key` with the client's `declared` name.
    pub async fn finish(mut self, key: String, declared: &str) -> Result<Upload, FileError> {
        self.file.flush().await?;
        drop(self.file);
        let detected = sniff::detect(&self.head);
        let original_name = name::base_name(declared);
        let stored = name::normalize(&original_name, &detected.ext);
        Ok(Upload {
            key,
            original_name,
            name: stored,
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
            mime: detected.mime,
            tmp: self.tmp,
        })
    }
}

/// The local storage directory of the data directory `dir` (laid out as PocketBase's
/// `pb_data/storage`).
pub fn local_root(dir: &Path) -> PathBuf {
    dir.join("storage")
}

/// A file copied between local storage directories by [`copy_local`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub size: u64,
    pub sha256: String,
    /// Detected from the content, as for an upload.
    pub mime: String,
}

/// Copies the file at `key` under the local storage directory `from` (a PocketBase
/// `pb_data/storage`, or a Syncbase one being exported) to `key` under `to`, for the offline
/// import and export. Streamed in fixed chunks, so a file of any size costs one
/// buffer of memory; hashed and sniffed while copying; written beside its destination and
/// renamed into place, so a failed copy never leaves half a file under the key.
/// `FileError::NotFound` when there is no such file under `from`.
pub fn copy_local(from: &Path, to: &Path, key: &str) -> Result<Copied, FileError> {
    use std::io::{Read, Write};
    let src = Storage::local_path(from, key)?;
    let dest = Storage::local_path(to, key)?;
    let mut from = match std::fs::File::open(&src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::NotFound),
        Err(e) => return Err(e.into()),
    };
    if !from.metadata()?.is_file() {
        return Err(FileError::NotFound);
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let part = dest.with_extension(format!("part{}", rand::random::<u32>()));
    let copied = (|| -> Result<Copied, FileError> {
        let mut to = std::io::BufWriter::with_capacity(256 << 10, std::fs::File::create(&part)?);
        let mut buf = vec![0u8; 256 << 10];
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut size = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let chunk = &buf[..n];
            if head.len() < sniff::SNIFF_LEN {
                let take = (sniff::SNIFF_LEN - head.len()).min(n);
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(chunk);
            size += n as u64;
            to.write_all(chunk)?;
        }
        // No fsync per file: an offline copy is re-run if the machine dies, as the database.
        to.flush()?;
        Ok(Copied {
            size,
            sha256: hex(&hasher.finalize()),
            mime: sniff::detect(&head).mime,
        })
    })();
    match copied {
        Ok(c) => {
            std::fs::rename(&part, &dest)?;
            Ok(c)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The storage key of a record's file.
pub fn file_key(collection_id: &str, record_id: &str, name: &str) -> String {
    format!("{collection_id}/{record_id}/{name}")
}

/// Where a file's thumbs live (deleted with it).
pub fn thumbs_prefix(collection_id: &str, record_id: &str, name: &str) -> String {
    format!("{collection_id}/{record_id}/thumbs_{name}")
}

/// The storage key of one thumb of a file.
pub fn thumb_key(collection_id: &str, record_id: &str, name: &str, size: &str) -> String {
    format!(
        "{}/{size}_{name}",
        thumbs_prefix(collection_id, record_id, name)
    )
}

/// The node's file storage; cheap to clone.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    local_root: PathBuf,
    tmp: PathBuf,
    /// The storage in use and the `s3` settings it was made from.
    storage: ArcSwap<(S3Settings, Storage)>,
    /// Keys being written and not yet referenced by a committed row: the janitor leaves them.
    protected: tokio::sync::Mutex<HashMap<String, usize>>,
    /// Wakes the janitor (after a commit that trashed files).
    pub(crate) wake: tokio::sync::Notify,
    /// One thumb generation per key at a time, and at most a few at once.
    thumb_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    thumb_slots: tokio::sync::Semaphore,
    /// The body limit of requests without files (`--body-limit`).
    body_limit: usize,
}

impl Files {
    /// Files under `dir/storage` (temporary uploads in `dir/files_tmp`, emptied now: whatever
    /// is there belonged to requests that died with the last process).
    pub fn open(dir: &Path, body_limit: usize) -> Result<Files, FileError> {
        let local_root = local_root(dir);
        let tmp = dir.join("files_tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(&local_root)?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) + 2;
        Ok(Files {
            inner: Arc::new(Inner {
                storage: ArcSwap::from_pointee((
                    S3Settings::default(),
                    Storage::Local(local_root.clone()),
                )),
                local_root,
                tmp,
                protected: Default::default(),
                wake: tokio::sync::Notify::new(),
                thumb_locks: Default::default(),
                thumb_slots: tokio::sync::Semaphore::new(workers),
                body_limit,
            }),
        })
    }

    /// Follows the settings' `s3` section: S3 when enabled, else the local directory. Files
    /// already stored are not moved (as in PocketBase).
    pub fn configure(&self, settings: &serde_json::Value) -> Result<(), FileError> {
        let s3: S3Settings = settings
            .get("s3")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        if self.inner.storage.load().0 == s3 {
            return Ok(());
        }
        let storage = if s3.enabled {
            Storage::s3(&s3)?
        } else {
            Storage::Local(self.inner.local_root.clone())
        };
        tracing::info!(?storage, "file storage");
        self.inner.storage.store(Arc::new((s3, storage)));
        Ok(())
    }

    /// The storage in use now.
    pub fn storage(&self) -> Storage {
        self.inner.storage.load().1.clone()
    }

    /// The body limit of requests without files.
    pub fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    /// Starts receiving an upload.
    pub async fn begin_upload(&self) -> Result<UploadWriter, FileError> {
        let tmp = self.inner.tmp.join(crate::store::schema::random_string(
            24,
            crate::store::schema::LOWER_ALNUM,
        ));
        let file = tokio::fs::File::create(&tmp).await?;
        Ok(UploadWriter {
            file,
            tmp,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
        })
    }

    /// A temporary file path for bytes arriving from elsewhere (replication).
    pub fn tmp_path(&self) -> PathBuf {
        self.inner.tmp.join(crate::store::schema::random_string(
            24,
            crate::store::schema::LOWER_ALNUM,
        ))
    }

    /// Stores an upload at `key` and returns the key protected from the janitor until the
    /// guard drops (after the row that references it commits).
    pub async fn store_upload(&self, upload: &Upload, key: &str) -> Result<(), FileError> {
        self.storage()
            .put_file(key, &upload.tmp, &upload.mime)
            .await
    }

    /// Keeps the janitor off `keys` while the guard lives: bytes written for a row that has
    /// not committed yet look unreferenced.
    pub async fn protect(&self, keys: Vec<String>) -> Protected {
        let mut p = self.inner.protected.lock().await;
        for k in &keys {
            *p.entry(k.clone()).or_default() += 1;
        }
        Protected {
            files: self.clone(),
            keys,
        }
    }

    /// Wakes the janitor.
    pub fn trashed(&self) {
        self.inner.wake.notify_one();
    }

    /// The thumb of a stored image at `size`, made once and kept in storage (one generation
    /// per thumb at a time; a few at once). Returns its key and content type.
    pub async fn thumb(
        &self,
        original: &str,
        thumb: &str,
        mime: &str,
        size: ThumbSize,
    ) -> Result<&'static str, FileError> {
        let thumb_type = match mime.split(';').next().unwrap_or("").trim() {
            "image/jpeg" | "image/jpg" => "image/jpeg",
            "image/gif" => "image/gif",
            _ => "image/png",
        };
        let storage = self.storage();
        if storage.attrs(thumb).await?.is_some() {
            return Ok(thumb_type);
        }
        let lock = self
            .inner
            .thumb_locks
            .lock()
            .entry(thumb.to_string())
            .or_default()
            .clone();
        let _one = lock.lock().await;
        let result = async {
            if storage.attrs(thumb).await?.is_some() {
                return Ok(thumb_type);
            }
            let _slot = self
                .inner
                .thumb_slots
                .acquire()
                .await
                .map_err(|e| FileError::Invalid(e.to_string()))?;
            // Images big enough to matter are rare; decoding needs them whole anyway.
            let bytes = storage.read_all(original, 256 << 20).await?;
            let mime = mime.to_string();
            let (thumb_bytes, ct) =
                tokio::task::spawn_blocking(move || thumbs::generate(&bytes, &mime, size))
                    .await
                    .map_err(|e| FileError::Image(e.to_string()))??;
            storage
                .put_bytes(thumb, Bytes::from(thumb_bytes), ct)
                .await?;
            Ok(ct)
        }
        .await;
        self.inner.thumb_locks.lock().remove(thumb);
        result
    }
}

/// Keys kept from the janitor until dropped.
pub struct Protected {
    files: Files,
    keys: Vec<String>,
}

impl Drop for Protected {
    fn drop(&mut self) {
        let files = self.files.clone();
        let keys = std::mem::take(&mut self.keys);
        if keys.is_empty() {
            return;
        }
        let release = async move {
            let mut p = files.inner.protected.lock().await;
            for k in keys {
                if let Some(n) = p.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        p.remove(&k);
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(release);
            }
            Err(_) => {
                if let Ok(mut p) = self.files.inner.protected.try_lock() {
                    p.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_local_keeps_the_key_and_hashes_and_sniffs_on_the_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let key = file_key("pbc_1", "rec1", "big_abc.bin");
        std::fs::create_dir_all(from.join("pbc_1/rec1")).expect("mkdir");
        // Several copy buffers long, so the hash spans chunks.
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend((0..1_000_000u32).map(|i| (i % 251) as u8));
        std::fs::write(from.join(&key), &bytes).expect("write");
        let copied = copy_local(&from, &to, &key).expect("copy");
        assert_eq!(std::fs::read(to.join(&key)).expect("read"), bytes);
        assert_eq!(copied.size, bytes.len() as u64);
        assert_eq!(copied.sha256, hex(&Sha256::digest(&bytes)));
        assert_eq!(copied.mime, "image/png");
        let left: Vec<_> = std::fs::read_dir(to.join("pbc_1/rec1"))
            .expect("dir")
            .collect();
        assert_eq!(left.len(), 1, "no partial file is left beside it");

        assert!(matches!(
            copy_local(&from, &to, &file_key("pbc_1", "rec1", "gone.txt")),
            Err(FileError::NotFound)
        ));
        assert!(matches!(
            copy_local(&from, &to, "pbc_1/../../etc/passwd"),
            Err(FileError::Invalid(_))
        ));
    }
}
