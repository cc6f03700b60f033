//! The snapshot file: a zip archive, so a backup is what its `.zip` name says.
//!
//! ```text
//! syncbase-snapshot.json   the header (stored uncompressed, first)
//! data.db                  the SQLite database, zstd-compressed (zip method 93), zip64
//! ```
//!
//! The header (format 2) says what the database holds and how to check it: kind (`snapshot`
//! of a cluster, or `backup`), cluster, stream sequence `seq` and the HLC at it, the node that
//! took it and when (wall clock, for people), every collection and the plugin binding table at
//! `seq` (plugin bytes stay in the cluster's plugin bucket, named by sha256 in `plugins`), the
//! snapshot policy's figures at `seq`, row counts and per-table content hashes (as
//! `/api/sync/status?hashes=1` computes them), and the sha256 and size of `data.db`. The sha256
//! of the whole archive cannot be inside it: it is kept beside it (object metadata in the
//! cluster's bucket) and checked on every download.
//!
//! Both directions stream through the file system: a 10 GB database never sits in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SnapshotError;
use crate::store::snapshot::Contents;
use crate::store::sync::HashScheme;

pub const HEADER_NAME: &str = "syncbase-snapshot.json";
pub const DB_NAME: &str = "data.db";
/// Where stored files sit in an archive that carries them: `storage/<collection>/<record>/<name>`.
pub const STORAGE_PREFIX: &str = "storage/";
pub const FORMAT: u32 = 2;
/// The oldest format this build reads. Format 1 hashed tables in id order
/// ([`HashScheme::IdOrdered`]); format 2 sums row hashes in storage order
/// ([`HashScheme::RowSum`]), what `/api/sync/status?hashes=1` shows now.
pub const OLDEST_FORMAT: u32 = 1;
/// zstd level: fast enough not to dominate taking a snapshot, 3-5x smaller than the database.
const ZSTD_LEVEL: i64 = 3;

/// What a snapshot file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Canonical state of a cluster at a stream position (policy or manual).
    Snapshot,
    /// A backup (`/api/backups`): a single node's whole database, or a cluster's canonical
    /// state.
    Backup,
}

/// A plugin the bindings name, by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    pub sha256: String,
}

/// The header of a snapshot file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: u32,
    pub kind: Kind,
    /// The cluster it was taken in (`None`: a node without replication).
    pub cluster: Option<String>,
    /// The node that took it.
    pub node: String,
    /// When it was taken (RFC 3339, wall clock of the taking node: informational).
    pub created: String,
    pub plugins: Vec<PluginRef>,
    /// Whether the archive carries the node's stored files (`storage/<key>` entries after
    /// the database): a single node's backup of local storage does, as PocketBase's backups
    /// hold `pb_data/storage`. Cluster snapshots do not (their files are in the cluster's
    /// file bucket, by sha256).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub storage: bool,
    #[serde(flatten)]
    pub contents: Contents,
}

impl Header {
    pub fn new(kind: Kind, cluster: Option<&str>, node: &str, contents: Contents) -> Header {
        let plugins = contents
            .bindings
            .as_deref()
            .map(plugin_refs)
            .unwrap_or_default();
        Header {
            format: FORMAT,
            kind,
            cluster: cluster.map(String::from),
            node: node.to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            plugins,
            storage: false,
            contents,
        }
    }
}

/// The plugins a binding table (as the fold stores it) names.
pub fn plugin_refs(bindings: &str) -> Vec<PluginRef> {
    let Ok(table) = crate::plugins::BindingTable::from_json(bindings) else {
        return Vec::new();
    };
    let mut out: Vec<PluginRef> = table
        .all()
        .map(|(_, b)| PluginRef {
            name: b.plugin.clone(),
            sha256: b.sha256.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    out.dedup();
    out
}

fn zip_err(e: zip::result::ZipError) -> SnapshotError {
    SnapshotError::Format(e.to_string())
}

fn io_err(e: std::io::Error) -> SnapshotError {
    SnapshotError::Io(e.to_string())
}

/// Writes the archive of `db` with `header` to `out`, and after the database each of
/// `files` (storage key, path) stored as it is (uploads are mostly compressed already);
/// returns the archive's size. Blocking.
pub fn write(
    db: &Path,
    header: &Header,
    out: &Path,
    files: &[(String, std::path::PathBuf)],
) -> Result<u64, SnapshotError> {
    use zip::CompressionMethod;
    use zip::write::SimpleFileOptions;
    let file = File::create(out).map_err(io_err)?;
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let json =
        serde_json::to_vec_pretty(header).map_err(|e| SnapshotError::Format(e.to_string()))?;
    zip.start_file(
        HEADER_NAME,
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    )
    .map_err(zip_err)?;
    zip.write_all(&json).map_err(io_err)?;
    zip.start_file(
        DB_NAME,
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Zstd)
            .compression_level(Some(ZSTD_LEVEL))
            .large_file(true),
    )
    .map_err(zip_err)?;
    let mut src = BufReader::with_capacity(1 << 20, File::open(db).map_err(io_err)?);
    std::io::copy(&mut src, &mut zip).map_err(io_err)?;
    for (key, path) in files {
        zip.start_file(
            format!("{STORAGE_PREFIX}{key}"),
            SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .large_file(true),
        )
        .map_err(zip_err)?;
        let mut src = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err)?);
        std::io::copy(&mut src, &mut zip).map_err(io_err)?;
    }
    let mut w = zip.finish().map_err(zip_err)?;
    w.flush().map_err(io_err)?;
    let f = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    f.sync_all().map_err(io_err)?;
    Ok(f.metadata().map_err(io_err)?.len())
}

fn open(archive: &Path) -> Result<zip::ZipArchive<BufReader<File>>, SnapshotError> {
    let f = File::open(archive).map_err(io_err)?;
    zip::ZipArchive::new(BufReader::new(f)).map_err(|e| {
        SnapshotError::Format(format!(
            "{} is not a Syncbase snapshot or backup (not a readable zip archive: {e})",
            archive.display()
        ))
    })
}

fn header_of(zip: &mut zip::ZipArchive<BufReader<File>>) -> Result<Header, SnapshotError> {
    let mut entry = zip.by_name(HEADER_NAME).map_err(|_| {
        SnapshotError::Format(format!(
            "the archive has no {HEADER_NAME}: not a Syncbase snapshot or backup"
        ))
    })?;
    parse_header(&mut entry)
}

/// Reads and checks a header entry (at most 64 MiB of it).
fn parse_header(entry: &mut impl Read) -> Result<Header, SnapshotError> {
    let mut text = Vec::new();
    entry
        .take(64 << 20)
        .read_to_end(&mut text)
        .map_err(|e| SnapshotError::Corrupt(format!("reading {HEADER_NAME}: {e}")))?;
    let header: Header = serde_json::from_slice(&text)
        .map_err(|e| SnapshotError::Format(format!("unreadable {HEADER_NAME}: {e}")))?;
    if !(OLDEST_FORMAT..=FORMAT).contains(&header.format) {
        return Err(SnapshotError::Format(format!(
            "snapshot format {} is not supported (this build reads formats {OLDEST_FORMAT} to {FORMAT})",
            header.format
        )));
    }
    Ok(header)
}

/// Reads the header of an archive. Blocking.
pub fn read_header(archive: &Path) -> Result<Header, SnapshotError> {
    header_of(&mut open(archive)?)
}

/// What an extraction wrote: the header, and the sha256 and size of the database file.
pub struct Extracted {
    pub header: Header,
    pub db_sha256: String,
    pub db_bytes: u64,
}

/// Decompresses the database of an archive into `db_out`, hashing it as it is written and
/// reporting bytes written. Blocking.
pub fn extract(
    archive: &Path,
    db_out: &Path,
    progress: impl FnMut(u64),
) -> Result<Extracted, SnapshotError> {
    let mut zip = open(archive)?;
    let header = header_of(&mut zip)?;
    let mut entry = zip
        .by_name(DB_NAME)
        .map_err(|_| SnapshotError::Format(format!("the archive has no {DB_NAME}")))?;
    let (db_sha256, db_bytes) = write_hashed(&mut entry, db_out, progress)?;
    let f = File::open(db_out).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    Ok(Extracted {
        header,
        db_sha256,
        db_bytes,
    })
}

/// Writes the stored files an archive carries (`storage/<key>`) under `root`, at their keys;
/// returns the keys. A key that would leave `root` is refused. Blocking.
pub fn extract_files(archive: &Path, root: &Path) -> Result<Vec<String>, SnapshotError> {
    let mut zip = open(archive)?;
    let mut keys = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err)?;
        let name = entry_name(&entry);
        let Some(key) = name.strip_prefix(STORAGE_PREFIX) else {
            continue;
        };
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\'))
        {
            return Err(SnapshotError::Format(format!(
                "the archive names a stored file outside the storage: {name}"
            )));
        }
        let dest = root.join(key);
        std::fs::create_dir_all(dest.parent().unwrap_or(root)).map_err(io_err)?;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&dest).map_err(io_err)?);
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| SnapshotError::Corrupt(format!("reading {name}: {e}")))?;
        out.flush().map_err(io_err)?;
        keys.push(key.to_string());
    }
    Ok(keys)
}

/// An archive read as it arrives (`extract_stream`): what it held (or why it could not be
/// read), and the sha256 and size of the whole archive (to compare with what its bucket
/// recorded, first).
pub struct Streamed {
    pub extracted: Result<Extracted, SnapshotError>,
    pub archive_sha256: String,
    pub archive_bytes: u64,
}

/// Reads an archive as it arrives, without seeking and without keeping it: the header (the
/// first entry, as `write` puts it), then the database, decompressed into `db_out` and hashed
/// while the rest of the archive is still arriving; the archive's own sha256 is computed over
/// every byte read. `progress` gets the archive bytes read so far; `on_header` the header as
/// soon as it is read (the caller can fetch what it names meanwhile). The database file is not
/// synced: installing it commits a transaction into it, which syncs it. Blocking.
pub fn extract_stream(
    src: impl Read,
    db_out: &Path,
    progress: impl FnMut(u64),
    on_header: impl FnOnce(&Header),
) -> Result<Streamed, SnapshotError> {
    use sha2::{Digest, Sha256};
    let mut src = Hashing {
        inner: src,
        h: Sha256::new(),
        n: 0,
        progress,
    };
    let extracted = read_entries(&mut src, db_out, on_header);
    // The rest (the central directory, or all that follows a damaged part) is hashed too: a
    // damaged archive is then reported by its sha256, the check that decides.
    if let Err(e) = std::io::copy(&mut src, &mut std::io::sink()) {
        return Err(extracted
            .err()
            .unwrap_or_else(|| SnapshotError::Io(format!("reading the archive: {e}"))));
    }
    Ok(Streamed {
        extracted,
        archive_sha256: hex(&src.h.finalize()),
        archive_bytes: src.n,
    })
}

/// The header and the database of an archive read as a stream.
fn read_entries(
    src: &mut impl Read,
    db_out: &Path,
    on_header: impl FnOnce(&Header),
) -> Result<Extracted, SnapshotError> {
    let not_ours = |what: &str| {
        SnapshotError::Format(format!(
            "not a Syncbase snapshot or backup: {what} (the archive must start with {HEADER_NAME})"
        ))
    };
    let header = {
        let mut entry = zip::read::read_zipfile_from_stream(src)
            .map_err(|e| not_ours(&e.to_string()))?
            .ok_or_else(|| not_ours("an empty archive"))?;
        let name = entry_name(&entry);
        if name != HEADER_NAME {
            return Err(not_ours(&format!("its first entry is {name}")));
        }
        parse_header(&mut entry)?
    };
    on_header(&header);
    let mut entry = zip::read::read_zipfile_from_stream(src)
        .map_err(|e| SnapshotError::Corrupt(format!("reading {DB_NAME}: {e}")))?
        .ok_or_else(|| SnapshotError::Format(format!("the archive has no {DB_NAME}")))?;
    let name = entry_name(&entry);
    if name != DB_NAME {
        return Err(SnapshotError::Format(format!(
            "the archive's second entry is {name}, not {DB_NAME}"
        )));
    }
    let (db_sha256, db_bytes) = write_hashed(&mut entry, db_out, |_| {})?;
    Ok(Extracted {
        header,
        db_sha256,
        db_bytes,
    })
}

fn entry_name<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> String {
    entry
        .name()
        .map(|n| n.into_owned())
        .unwrap_or_else(|_| "an entry with an unreadable name".into())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R, F> {
    inner: R,
    h: sha2::Sha256,
    n: u64,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> Read for Hashing<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        (self.progress)(self.n);
        Ok(n)
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `src` (a decompressing entry) to a new file `out`, returning the sha256 and size of
/// what it wrote, and reporting bytes written.
fn write_hashed(
    src: &mut impl Read,
    out: &Path,
    mut progress: impl FnMut(u64),
) -> Result<(String, u64), SnapshotError> {
    use sha2::{Digest, Sha256};
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out).map_err(io_err)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    let mut done = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| SnapshotError::Corrupt(format!("decompressing {DB_NAME}: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(io_err)?;
        done += n as u64;
        progress(done);
    }
    w.flush().map_err(io_err)?;
    Ok((hex(&h.finalize()), done))
}

/// Checks an extracted database against its header: the file's sha256 and size (from the
/// extraction), then row counts and table hashes recomputed from the rows. Blocking.
pub fn verify(db: &Path, x: &Extracted) -> Result<(), SnapshotError> {
    let want = &x.header.contents;
    if x.db_sha256 != want.db_sha256 || x.db_bytes != want.db_bytes {
        return Err(SnapshotError::Corrupt(format!(
            "data.db hashes to {} ({} bytes); the header says {} ({} bytes)",
            x.db_sha256, x.db_bytes, want.db_sha256, want.db_bytes
        )));
    }
    let scheme = if x.header.format < 2 {
        HashScheme::IdOrdered
    } else {
        HashScheme::RowSum
    };
    let found = crate::store::snapshot::inspect(db, scheme)
        .map_err(|e| SnapshotError::Corrupt(format!("reading the database: {e}")))?;
    if found.seq != want.seq {
        return Err(SnapshotError::Corrupt(format!(
            "data.db stands at sequence {}; the header says {}",
            found.seq, want.seq
        )));
    }
    if found.row_counts != want.row_counts || found.table_hashes != want.table_hashes {
        return Err(SnapshotError::Corrupt(
            "the rows do not match the header's row counts and table hashes".into(),
        ));
    }
    Ok(())
}

/// sha256 (lowercase hex) and size of a file. Blocking.
pub fn sha256_file(path: &Path) -> Result<(String, u64), SnapshotError> {
    crate::store::snapshot::file_sha256(path).map_err(|e| SnapshotError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::snapshot::{CopyKind, copy, inspect};
    use crate::store::{Store, StoreOptions};

    /// A fresh node's database under `dir`, copied as a backup copies it: the copy's path and
    /// its figures.
    async fn fresh_copy(dir: &Path) -> (std::path::PathBuf, Contents) {
        let store = Store::open(&dir.join("node"), &StoreOptions::default()).expect("open");
        let pinned = store.pin().await.expect("pin");
        let db = dir.join("copy.db");
        let contents = tokio::task::spawn_blocking({
            let db = db.clone();
            move || copy(pinned, &db, CopyKind::Whole)
        })
        .await
        .expect("join")
        .expect("copy");
        (db, contents)
    }

    /// An archive read as a stream extracts the same database as one read from its file, and
    /// reports the archive's own sha256; a flipped byte shows as a different sha256 or an
    /// unreadable archive, never as a good one.
    #[tokio::test]
    async fn a_streamed_archive_extracts_what_the_file_holds_and_hashes_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, contents) = fresh_copy(dir.path()).await;
        let archive = dir.path().join("a.zip");
        let header = Header::new(Kind::Backup, None, "n1", contents);
        write(&db, &header, &archive, &[]).expect("write");
        let (sha, size) = sha256_file(&archive).expect("sha");

        let from_file = extract(&archive, &dir.path().join("f.db"), |_| {}).expect("extract");
        let mut seen = 0;
        let out = dir.path().join("s.db");
        let file = std::fs::File::open(&archive).expect("open");
        let streamed = extract_stream(file, &out, |n| seen = n, |_| {}).expect("stream");
        assert_eq!(
            (streamed.archive_sha256.as_str(), streamed.archive_bytes),
            (sha.as_str(), size)
        );
        assert_eq!(seen, size, "progress reached the archive's size");
        let extracted = streamed.extracted.expect("extracted");
        assert_eq!(extracted.db_sha256, from_file.db_sha256);
        assert_eq!(
            extracted.header.contents.table_hashes,
            header.contents.table_hashes
        );
        verify(&out, &extracted).expect("the streamed database verifies");

        let mut bytes = std::fs::read(&archive).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        // A damaged archive reads to its end: its sha256 tells, whatever the damage broke.
        let bad = extract_stream(&bytes[..], &dir.path().join("bad.db"), |_| {}, |_| {})
            .expect("read to the end");
        assert_ne!(bad.archive_sha256, sha);
        assert_eq!(bad.archive_bytes, size);
        // Not a snapshot at all.
        let err = extract_stream(
            &b"just some text"[..],
            &dir.path().join("x.db"),
            |_| {},
            |_| {},
        )
        .expect("read to the end")
        .extracted
        .err()
        .expect("refused");
        assert!(err.to_string().contains("not a Syncbase snapshot"), "{err}");
    }

    /// Stored files travel after the database and come out at their keys; an archive naming
    /// a file outside the storage is refused before anything is written there.
    #[tokio::test]
    async fn stored_files_come_back_at_their_keys_and_never_outside_the_storage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, contents) = fresh_copy(dir.path()).await;
        let mut header = Header::new(Kind::Backup, None, "n1", contents);
        header.storage = true;
        let upload = dir.path().join("upload");
        std::fs::write(&upload, vec![7u8; 70_000]).expect("upload");
        let archive = dir.path().join("a.zip");
        write(
            &db,
            &header,
            &archive,
            &[("c1/r1/f_abc.bin".into(), upload)],
        )
        .expect("write");
        assert!(read_header(&archive).expect("header").storage);
        let root = dir.path().join("restored");
        let keys = extract_files(&archive, &root).expect("files");
        assert_eq!(keys, ["c1/r1/f_abc.bin"]);
        assert_eq!(
            std::fs::read(root.join("c1/r1/f_abc.bin")).expect("read"),
            vec![7u8; 70_000]
        );

        let hostile = dir.path().join("hostile.zip");
        let mut zip = zip::ZipWriter::new(File::create(&hostile).expect("create"));
        zip.start_file(
            "storage/../../escape.txt",
            zip::write::SimpleFileOptions::default(),
        )
        .expect("entry");
        zip.write_all(b"x").expect("write");
        zip.finish().expect("finish");
        let err = extract_files(&hostile, &root).expect_err("refused");
        assert!(err.to_string().contains("outside the storage"), "{err}");
        assert!(!dir.path().join("escape.txt").exists());
    }

    /// A format 1 archive (tables hashed in id order) still verifies; the same hashes under
    /// format 2 (row sums) do not.
    #[tokio::test]
    async fn format_1_snapshots_are_verified_with_the_hashes_they_were_taken_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, contents) = fresh_copy(dir.path()).await;
        let old = inspect(&db, HashScheme::IdOrdered).expect("inspect");
        assert_ne!(old.table_hashes, contents.table_hashes);
        let mut header = Header::new(Kind::Backup, None, "n1", contents);
        header.format = 1;
        header.contents.table_hashes = old.table_hashes;
        let check = |header: &Header, name: &str| {
            let archive = dir.path().join(name);
            write(&db, header, &archive, &[]).expect("write");
            let out = dir.path().join(format!("{name}.db"));
            let x = extract(&archive, &out, |_| {}).expect("extract");
            verify(&out, &x)
        };
        check(&header, "v1.zip").expect("a format 1 snapshot verifies");
        header.format = FORMAT;
        assert!(matches!(
            check(&header, "v2.zip"),
            Err(SnapshotError::Corrupt(_))
        ));
        header.format = FORMAT + 1;
        let archive = dir.path().join("v3.zip");
        write(&db, &header, &archive, &[]).expect("write");
        assert!(matches!(
            read_header(&archive),
            Err(SnapshotError::Format(_))
        ));
    }
}
