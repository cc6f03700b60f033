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

/// Writes the archive of `db` with `header` to `out`; returns its size. Blocking.
pub fn write(db: &Path, header: &Header, out: &Path) -> Result<u64, SnapshotError> {
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
    let mut text = Vec::new();
    entry
        .by_ref()
        .take(64 << 20)
        .read_to_end(&mut text)
        .map_err(io_err)?;
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
    mut progress: impl FnMut(u64),
) -> Result<Extracted, SnapshotError> {
    use sha2::{Digest, Sha256};
    let mut zip = open(archive)?;
    let header = header_of(&mut zip)?;
    let mut entry = zip
        .by_name(DB_NAME)
        .map_err(|_| SnapshotError::Format(format!("the archive has no {DB_NAME}")))?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(db_out).map_err(io_err)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    let mut done = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| SnapshotError::Corrupt(format!("decompressing {DB_NAME}: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err)?;
        done += n as u64;
        progress(done);
    }
    let f = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    f.sync_all().map_err(io_err)?;
    Ok(Extracted {
        header,
        db_sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        db_bytes: done,
    })
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

    /// A format 1 archive (tables hashed in id order) still verifies; the same hashes under
    /// format 2 (row sums) do not.
    #[tokio::test]
    async fn format_1_snapshots_are_verified_with_the_hashes_they_were_taken_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("node"), &StoreOptions::default()).expect("open");
        let pinned = store.pin().await.expect("pin");
        let db = dir.path().join("copy.db");
        let contents = tokio::task::spawn_blocking({
            let db = db.clone();
            move || copy(pinned, &db, CopyKind::Whole)
        })
        .await
        .expect("join")
        .expect("copy");
        let old = inspect(&db, HashScheme::IdOrdered).expect("inspect");
        assert_ne!(old.table_hashes, contents.table_hashes);
        let mut header = Header::new(Kind::Backup, None, "n1", contents);
        header.format = 1;
        header.contents.table_hashes = old.table_hashes;
        let check = |header: &Header, name: &str| {
            let archive = dir.path().join(name);
            write(&db, header, &archive).expect("write");
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
        write(&db, &header, &archive).expect("write");
        assert!(matches!(
            read_header(&archive),
            Err(SnapshotError::Format(_))
        ));
    }
}
