//! Plugin bytes in a JetStream Object Store bucket, addressed by their sha256.
//!
//! A binding event names a plugin by digest; a node fetches the bytes from here before it
//! applies the binding, and waits (rather than resolving with a policy it lacks) while they
//! are missing. Content addressing makes `put` idempotent and `get` self-verifying.

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::log::{Log, LogError};

/// The cluster's plugin bucket.
#[derive(Clone)]
pub struct PluginObjects {
    store: ObjectStore,
    bucket: String,
}

/// The lowercase hex sha256 of `bytes`: the object's name.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn check_digest(sha256: &str) -> Result<(), LogError> {
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

/// Opens the cluster's object store `SYNCBASE_<cluster>_<suffix>`, creating it when missing
/// (file storage, the stream's replicas); returns it with its name.
///
/// The bucket's reads go to its stream leader. An object store is created with direct gets
/// on, which lets any replica answer `info` and `get`, and a replica that is behind answers
/// "not found" for an object whose upload was already acknowledged: a node reading back the
/// snapshot it just stored, or fetching a file another node's event names, would see it
/// missing. Turning direct gets off makes a read see every acknowledged upload.
pub(crate) async fn open_bucket(
    log: &Log,
    suffix: &str,
    description: &str,
) -> Result<(ObjectStore, String), LogError> {
    let bucket = format!("SYNCBASE_{}_{suffix}", log.cluster());
    let js = log.jetstream();
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        LogError::Objects(format!("{what} bucket {bucket}: {e}"))
    };
    if js.get_object_store(&bucket).await.is_err() {
        let created = js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                description: Some(description.into()),
                storage: StorageType::File,
                num_replicas: log.replicas(),
                ..Default::default()
            })
            .await;
        // Another node may have created it (and turned direct gets off) meanwhile.
        if let Err(e) = created
            && js.get_object_store(&bucket).await.is_err()
        {
            return Err(failed("creating", &e));
        }
    }
    let stream = format!("OBJ_{bucket}");
    let mut handle = js
        .get_stream(&stream)
        .await
        .map_err(|e| failed("opening", &e))?;
    let info = handle.info().await.map_err(|e| failed("reading", &e))?;
    if info.config.allow_direct {
        let mut config = info.config.clone();
        config.allow_direct = false;
        js.update_stream(config)
            .await
            .map_err(|e| failed("configuring", &e))?;
    }
    // Opened again, always: a handle remembers whether the stream allowed direct gets when it
    // was opened, and a node that opened the bucket just before another node turned them off
    // would read through direct gets nobody answers any more ("no responders").
    let store = js
        .get_object_store(&bucket)
        .await
        .map_err(|e| failed("opening", &e))?;
    Ok((store, bucket))
}

impl PluginObjects {
    pub(crate) async fn open(log: &Log) -> Result<PluginObjects, LogError> {
        let (store, bucket) =
            open_bucket(log, "PLUGINS", "Syncbase plugin components by sha256").await?;
        Ok(PluginObjects { store, bucket })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stores `bytes` under their sha256 and returns it. Storing the same bytes again is a
    /// no-op.
    pub async fn put(&self, bytes: &[u8]) -> Result<String, LogError> {
        let sha = sha256_hex(bytes);
        if self.has(&sha).await? {
            return Ok(sha);
        }
        let mut reader = bytes;
        self.store
            .put(sha.as_str(), &mut reader)
            .await
            .map_err(|e| LogError::Objects(format!("put {sha}: {e}")))?;
        Ok(sha)
    }

    /// Whether the bucket holds the object.
    pub async fn has(&self, sha256: &str) -> Result<bool, LogError> {
        check_digest(sha256)?;
        match self.store.info(sha256).await {
            Ok(info) => Ok(!info.deleted),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(LogError::Objects(format!("info {sha256}: {e}"))),
        }
    }

    /// The object's bytes, `None` if absent; bytes that do not hash to the name are an error.
    pub async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, LogError> {
        if !self.has(sha256).await? {
            return Ok(None);
        }
        let mut object = self
            .store
            .get(sha256)
            .await
            .map_err(|e| LogError::Objects(format!("get {sha256}: {e}")))?;
        let mut bytes = Vec::with_capacity(object.info().size);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| LogError::Objects(format!("reading {sha256}: {e}")))?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(LogError::Objects(format!(
                "object {sha256} holds bytes hashing to {actual}"
            )));
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(check_digest(&sha256_hex(b"")).is_ok());
        assert!(check_digest("ABC").is_err());
        assert!(check_digest(&"g".repeat(64)).is_err());
    }
}
