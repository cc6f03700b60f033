//! File bytes in a JetStream Object Store bucket, addressed by their sha256: how an upload on
//! one node reaches the others. A record event names its files by name and sha256; a node
//! applying it fetches the objects it lacks from here first. Objects stream in chunks both
//! ways (a large file never sits whole in memory) and are checked against their name on the
//! way in.

use std::path::Path;
use std::time::SystemTime;

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::log::{Log, LogError};

/// The cluster's file bucket.
#[derive(Clone)]
pub struct FileObjects {
    store: ObjectStore,
    bucket: String,
}

fn err(what: &str, sha: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Objects(format!("{what} {sha}: {e}"))
}

fn check_digest(sha256: &str) -> Result<(), LogError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(LogError::Objects(format!(
            "{sha256:?} is not a lowercase hex sha256"
        )))
    }
}

impl FileObjects {
    /// Opens (creating when missing) the cluster's file bucket `SYNCBASE_<cluster>_FILES`.
    pub async fn open(log: &Log) -> Result<FileObjects, LogError> {
        let bucket = format!("SYNCBASE_{}_FILES", log.cluster());
        let js = log.jetstream();
        let store = match js.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("Syncbase record files by sha256".into()),
                    storage: StorageType::File,
                    num_replicas: log.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| LogError::Objects(format!("creating bucket {bucket}: {e}")))?,
        };
        Ok(FileObjects { store, bucket })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether the bucket holds the object.
    pub async fn has(&self, sha256: &str) -> Result<bool, LogError> {
        check_digest(sha256)?;
        match self.store.info(sha256).await {
            Ok(info) => Ok(!info.deleted),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(err("info", sha256, e)),
        }
    }

    /// When the object was (last) put, if the bucket holds it.
    pub async fn uploaded_at(&self, sha256: &str) -> Result<Option<SystemTime>, LogError> {
        check_digest(sha256)?;
        match self.store.info(sha256).await {
            Ok(info) if info.deleted => Ok(None),
            Ok(info) => Ok(Some(
                info.modified
                    .map(SystemTime::from)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            )),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("info", sha256, e)),
        }
    }

    /// Stores the bytes read from `reader` under `sha256` (the caller computed it when the
    /// bytes arrived).
    pub async fn put(
        &self,
        sha256: &str,
        reader: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> Result<(), LogError> {
        check_digest(sha256)?;
        self.store
            .put(sha256, reader)
            .await
            .map(|_| ())
            .map_err(|e| err("put", sha256, e))
    }

    /// Stores the file at `path` under `sha256`, unless the bucket has it already.
    pub async fn put_file_if_absent(&self, sha256: &str, path: &Path) -> Result<(), LogError> {
        if self.has(sha256).await? {
            return Ok(());
        }
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| err("open", sha256, e))?;
        self.put(sha256, &mut f).await
    }

    /// Streams the object into a new file at `dest`, checking its digest. `Ok(false)` when the
    /// bucket does not have it; a mismatching digest is an error and leaves no file.
    pub async fn get_to_file(&self, sha256: &str, dest: &Path) -> Result<bool, LogError> {
        if !self.has(sha256).await? {
            return Ok(false);
        }
        let mut object = match self.store.get(sha256).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(err("get", sha256, e)),
        };
        let result = async {
            let mut out = tokio::fs::File::create(dest)
                .await
                .map_err(|e| err("create", sha256, e))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = object
                    .read(&mut buf)
                    .await
                    .map_err(|e| err("reading", sha256, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .await
                    .map_err(|e| err("writing", sha256, e))?;
            }
            out.flush().await.map_err(|e| err("writing", sha256, e))?;
            let actual: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if actual != sha256 {
                return Err(LogError::Objects(format!(
                    "object {sha256} holds bytes hashing to {actual}"
                )));
            }
            Ok(true)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    /// Deletes an object; a missing one is fine.
    pub async fn delete(&self, sha256: &str) -> Result<(), LogError> {
        check_digest(sha256)?;
        match self.store.delete(sha256).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("delete", sha256, e)),
        }
    }

    /// Every object (not deleted) with its upload time.
    pub async fn list(&self) -> Result<Vec<(String, SystemTime)>, LogError> {
        let mut list = self
            .store
            .list()
            .await
            .map_err(|e| LogError::Objects(format!("list {}: {e}", self.bucket)))?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| LogError::Objects(format!("list {}: {e}", self.bucket)))?;
            if info.deleted {
                continue;
            }
            let at = info
                .modified
                .map(SystemTime::from)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((info.name, at));
        }
        Ok(out)
    }
}
