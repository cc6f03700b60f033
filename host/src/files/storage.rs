//! Where a node keeps file bytes: a directory under `--dir` (default) or an S3-compatible
//! bucket (PocketBase's `s3` settings). Keys are PocketBase's: `<collectionId>/<recordId>/<name>`
//! for a file, `<collectionId>/<recordId>/thumbs_<name>/<size>_<name>` for its thumbs, so a
//! storage directory or bucket is laid out exactly as PocketBase lays it out.
//!
//! Bytes always stream: uploads arrive as local temporary files and are moved (locally) or
//! sent in parts (S3); downloads are read in chunks, ranges included.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::FileError;

/// A stream of a file's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// PocketBase's `s3` settings section.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct S3Settings {
    pub enabled: bool,
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub access_key: String,
    pub secret: String,
    pub force_path_style: bool,
}

/// Size and modification time of a stored object.
#[derive(Debug, Clone, Copy)]
pub struct Attrs {
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// One storage backend.
#[derive(Clone)]
pub enum Storage {
    Local(PathBuf),
    S3(Arc<dyn ObjectStore>),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Local(p) => write!(f, "Local({})", p.display()),
            Storage::S3(s) => write!(f, "S3({s})"),
        }
    }
}

/// A key is a relative path of plain segments; anything else is refused before it reaches a
/// file system or a bucket.
fn check_key(key: &str) -> Result<(), FileError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'));
    if ok {
        Ok(())
    } else {
        Err(FileError::Invalid(format!("invalid file key {key:?}")))
    }
}

fn s3_error(e: object_store::Error) -> FileError {
    match e {
        object_store::Error::NotFound { .. } => FileError::NotFound,
        other => FileError::Storage(other.to_string()),
    }
}

impl Storage {
    /// The S3 backend for `s3` settings (checked by building the client, no request made).
    pub fn s3(s: &S3Settings) -> Result<Storage, FileError> {
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(if s.region.is_empty() {
                "us-east-1"
            } else {
                &s.region
            })
            .with_access_key_id(&s.access_key)
            .with_secret_access_key(&s.secret)
            .with_virtual_hosted_style_request(!s.force_path_style);
        if !s.endpoint.is_empty() {
            let endpoint = if s.endpoint.contains("://") {
                s.endpoint.clone()
            } else {
                format!("https://{}", s.endpoint)
            };
            b = b
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let store = b.build().map_err(|e| FileError::Storage(e.to_string()))?;
        Ok(Storage::S3(Arc::new(store)))
    }

    /// Where `key` lives under a local storage root (the key checked first).
    pub(crate) fn local_path(root: &Path, key: &str) -> Result<PathBuf, FileError> {
        check_key(key)?;
        Ok(root.join(key))
    }

    /// Moves a finished upload (a temporary file of this node) to `key`, replacing what is
    /// there. Locally a rename (the temporary directory is on the same file system); on S3 a
    /// streamed multipart upload, after which the temporary file is removed.
    pub async fn put_file(
        &self,
        key: &str,
        tmp: &Path,
        content_type: &str,
    ) -> Result<(), FileError> {
        match self {
            Storage::Local(root) => {
                let dest = Self::local_path(root, key)?;
                if let Some(parent) = dest.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::rename(tmp, &dest).await?;
                Ok(())
            }
            Storage::S3(store) => {
                check_key(key)?;
                let result = Self::s3_put_file(store, key, tmp, content_type).await;
                let _ = tokio::fs::remove_file(tmp).await;
                result
            }
        }
    }

    async fn s3_put_file(
        store: &Arc<dyn ObjectStore>,
        key: &str,
        tmp: &Path,
        content_type: &str,
    ) -> Result<(), FileError> {
        use tokio::io::AsyncWriteExt;
        let attrs = object_store::Attributes::from_iter([(
            object_store::Attribute::ContentType,
            object_store::AttributeValue::from(content_type.to_string()),
        )]);
        let mut w = object_store::buffered::BufWriter::new(store.clone(), ObjectPath::from(key))
            .with_attributes(attrs);
        let mut f = tokio::fs::File::open(tmp).await?;
        let copied = tokio::io::copy(&mut f, &mut w).await;
        match copied {
            Ok(_) => w.shutdown().await.map_err(FileError::from),
            Err(e) => {
                let _ = w.abort().await;
                Err(e.into())
            }
        }
    }

    /// Writes small generated content (thumbs) to `key`.
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), FileError> {
        match self {
            Storage::Local(root) => {
                let dest = Self::local_path(root, key)?;
                if let Some(parent) = dest.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                // Written aside and renamed, so a reader never sees half a file.
                let tmp = dest.with_extension(format!("part{}", rand::random::<u32>()));
                tokio::fs::write(&tmp, &bytes).await?;
                tokio::fs::rename(&tmp, &dest).await?;
                Ok(())
            }
            Storage::S3(store) => {
                check_key(key)?;
                let attrs = object_store::Attributes::from_iter([(
                    object_store::Attribute::ContentType,
                    object_store::AttributeValue::from(content_type.to_string()),
                )]);
                store
                    .put_opts(
                        &ObjectPath::from(key),
                        bytes.into(),
                        object_store::PutOptions {
                            attributes: attrs,
                            ..Default::default()
                        },
                    )
                    .await
                    .map(|_| ())
                    .map_err(s3_error)
            }
        }
    }

    /// Size and modification time, `None` when absent.
    pub async fn attrs(&self, key: &str) -> Result<Option<Attrs>, FileError> {
        match self {
            Storage::Local(root) => {
                let path = Self::local_path(root, key)?;
                match tokio::fs::metadata(&path).await {
                    Ok(m) if m.is_file() => Ok(Some(Attrs {
                        size: m.len(),
                        modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    })),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Storage::S3(store) => {
                check_key(key)?;
                match store.head(&ObjectPath::from(key)).await {
                    Ok(meta) => Ok(Some(Attrs {
                        size: meta.size,
                        modified: meta.last_modified.into(),
                    })),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(s3_error(e)),
                }
            }
        }
    }

    /// The bytes of `key` in `range` (the whole object when `None`).
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, FileError> {
        match self {
            Storage::Local(root) => {
                let path = Self::local_path(root, key)?;
                let mut f = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(FileError::NotFound);
                    }
                    Err(e) => return Err(e.into()),
                };
                let (reader, len): (Pin<Box<dyn tokio::io::AsyncRead + Send>>, u64) = match range {
                    Some(r) => {
                        f.seek(std::io::SeekFrom::Start(r.start)).await?;
                        let len = r.end - r.start;
                        (Box::pin(f.take(len)), len)
                    }
                    None => {
                        let len = f.metadata().await?.len();
                        (Box::pin(f), len)
                    }
                };
                // Each read is a trip to tokio's blocking pool: large chunks make a 10 MB
                // download ~20 trips instead of ~160, and a small file allocates no more
                // than its size.
                let chunk = usize::try_from(len)
                    .unwrap_or(usize::MAX)
                    .clamp(8 * 1024, 512 * 1024);
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    reader, chunk,
                )))
            }
            Storage::S3(store) => {
                check_key(key)?;
                let opts = object_store::GetOptions {
                    range: range.map(object_store::GetRange::Bounded),
                    ..Default::default()
                };
                let got = store
                    .get_opts(&ObjectPath::from(key), opts)
                    .await
                    .map_err(s3_error)?;
                Ok(Box::pin(
                    got.into_stream()
                        .map_err(|e| std::io::Error::other(e.to_string())),
                ))
            }
        }
    }

    /// Reads a whole (small) object into memory: images for thumbs.
    pub async fn read_all(&self, key: &str, limit: u64) -> Result<Vec<u8>, FileError> {
        let mut stream = self.read(key, None).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
            if out.len() as u64 > limit {
                return Err(FileError::Invalid(
                    "the file is too large to read whole".into(),
                ));
            }
        }
        Ok(out)
    }

    /// Deletes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), FileError> {
        match self {
            Storage::Local(root) => {
                let path = Self::local_path(root, key)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                // Empty record and collection directories go too, as PocketBase leaves none.
                let mut dir = path.parent().map(Path::to_path_buf);
                while let Some(d) = dir {
                    if d == *root || tokio::fs::remove_dir(&d).await.is_err() {
                        break;
                    }
                    dir = d.parent().map(Path::to_path_buf);
                }
                Ok(())
            }
            Storage::S3(store) => {
                check_key(key)?;
                match store.delete(&ObjectPath::from(key)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(s3_error(e)),
                }
            }
        }
    }

    /// Deletes everything under `prefix/` (a file's thumbs).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), FileError> {
        match self {
            Storage::Local(root) => {
                let path = Self::local_path(root, prefix)?;
                match tokio::fs::remove_dir_all(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            }
            Storage::S3(store) => {
                check_key(prefix)?;
                let prefix = ObjectPath::from(prefix);
                let keys: Vec<_> = store
                    .list(Some(&prefix))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .map_err(s3_error)?;
                for k in keys {
                    match store.delete(&k).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(s3_error(e)),
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_leave_the_storage_root() {
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/..", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_key("pbc_1/abc/file_x.txt").is_ok());
    }

    #[tokio::test]
    async fn local_storage_moves_reads_ranges_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("storage");
        let s = Storage::Local(root.clone());
        let tmp = dir.path().join("upload");
        tokio::fs::write(&tmp, b"0123456789").await.expect("write");
        s.put_file("c/r/f.txt", &tmp, "text/plain")
            .await
            .expect("put");
        assert!(!tmp.exists(), "the temporary file was moved");
        assert_eq!(
            s.attrs("c/r/f.txt").await.expect("attrs").map(|a| a.size),
            Some(10)
        );
        let mut part = Vec::new();
        let mut st = s.read("c/r/f.txt", Some(2..5)).await.expect("read");
        while let Some(c) = st.next().await {
            part.extend_from_slice(&c.expect("chunk"));
        }
        assert_eq!(part, b"234");
        s.delete("c/r/f.txt").await.expect("delete");
        assert!(s.attrs("c/r/f.txt").await.expect("attrs").is_none());
        assert!(!root.join("c").exists(), "empty directories are removed");
        s.delete("c/r/f.txt").await.expect("deleting twice is fine");
    }
}
