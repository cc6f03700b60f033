//! Snapshots on the SQLite side: a consistent copy of the database at one fold position, made
//! canonical (nothing node-local in it), with the figures its header carries; and installing
//! such a copy in place of the live database.
//!
//! Taking one ([`Store::pin`], then [`copy`] on a blocking thread):
//! 1. a read transaction is opened on a connection of its own and the applied sequence read in
//!    it ([`Pinned`]): the state and its position come from the same moment. The fold ends its
//!    batch at a position where a snapshot is due and the replication loop pins before the next
//!    batch can commit, so a pinned snapshot sits exactly at the decided position;
//! 2. SQLite's online backup API copies every page of that read transaction into a new file in
//!    one step (the source's open transaction is used, so nothing written meanwhile shows, and
//!    the writer never waits: WAL);
//! 3. in the copy, every overlay (a local write whose event has not come back) is replaced by
//!    its canonical shadow, and what is node-local goes: the outbox, pending writes, shadows,
//!    the `_superusers` collection and rows, and node settings (`_params`). Freed pages are
//!    zeroed (`secure_delete`), so they compress to nothing;
//! 4. row counts and per-table content hashes (the ones `/api/sync/status?hashes=1` shows) are
//!    computed from the copy, with the sha256 of the file.
//!
//! Content identity between nodes is asserted by those table hashes, not by file bytes (page
//! layout depends on each node's write history).
//!
//! Installing one is `install.rs`.

mod install;
pub mod stats;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::sync::LOCAL_ONLY;
use super::{Store, StoreError, system};

pub use install::{InstallMode, InstallReport};

/// Tables whose rows belong to one node: never part of a snapshot.
/// `_mail_outbox` holds the mails this node still has to send: a node installing the snapshot
/// must not send them again.
pub const NODE_LOCAL_TABLES: &[&str] = &[
    "_sync_outbox",
    "_sync_pending",
    "_sync_shadow",
    "_params",
    "_mail_outbox",
];

/// A read transaction open at the fold position `seq`.
pub struct Pinned {
    conn: Connection,
    pub seq: u64,
    /// Held while the read transaction is open: the database file is not swapped under it.
    _guard: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").field("seq", &self.seq).finish()
    }
}

/// What a copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// A cluster snapshot: canonical state only.
    Canonical,
    /// A single node's backup: the whole database, superusers and settings included.
    Whole,
}

/// The figures of a finished copy, for its header.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Contents {
    /// The applied stream sequence of the copy.
    pub seq: u64,
    /// The largest HLC folded up to `seq`.
    pub hlc: u64,
    /// Every collection, as stored in `_collections`.
    pub schema: Vec<serde_json::Value>,
    /// The plugin binding table the fold last stored (`None`: no binding event yet).
    pub bindings: Option<String>,
    pub row_counts: BTreeMap<String, u64>,
    pub table_hashes: BTreeMap<String, String>,
    pub stats: stats::SnapshotStats,
    /// sha256 (lowercase hex) and size of the SQLite file.
    pub db_sha256: String,
    pub db_bytes: u64,
}

impl Store {
    /// Opens a read transaction at the current fold position on a connection of its own.
    pub async fn pin(&self) -> Result<Pinned, StoreError> {
        let guard = self.inner.file_lock.clone().read_owned().await;
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let conn = system::open_connection(&path, true)?;
            conn.execute_batch("BEGIN")?;
            // The first read starts the transaction: from here on it sees this state only.
            let seq = super::sync::applied_seq(&conn)?;
            Ok(Pinned {
                conn,
                seq,
                _guard: guard,
            })
        })
        .await
        .map_err(|e| StoreError::Internal(format!("pin task failed: {e}")))?
    }
}

/// Copies the pinned state into `dest` (a new file) and prepares it as `kind`. Blocking: run it
/// on a blocking thread. The read transaction ends as soon as the pages are copied.
pub fn copy(pinned: Pinned, dest: &Path, kind: CopyKind) -> Result<Contents, StoreError> {
    let _ = std::fs::remove_file(dest);
    let seq = pinned.seq;
    {
        let mut dst = Connection::open(dest)?;
        dst.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
        let backup = rusqlite::backup::Backup::new(&pinned.conn, &mut dst)?;
        // One step: the whole database under the pinned read transaction.
        backup.step(-1)?;
    }
    drop(pinned);
    let conn = Connection::open(dest)?;
    // The copied header still says WAL; the copy is one plain file.
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA secure_delete = ON;",
    )?;
    let copied = super::sync::applied_seq(&conn)?;
    if copied != seq {
        return Err(StoreError::Internal(format!(
            "the copy holds sequence {copied}, the pin {seq}"
        )));
    }
    if kind == CopyKind::Canonical {
        canonicalize(&conn)?;
    }
    let contents = figures(&conn, None)?;
    drop(conn);
    let (db_sha256, db_bytes) = file_sha256(dest)?;
    Ok(Contents {
        db_sha256,
        db_bytes,
        ..contents
    })
}

/// Replaces overlays by their canonical shadows and removes everything node-local.
fn canonicalize(conn: &Connection) -> Result<(), StoreError> {
    let schema = system::load_schema(conn)?;
    let tx = conn.unchecked_transaction()?;
    let shadowed: Vec<String> = {
        let mut st = conn.prepare("SELECT DISTINCT coll FROM _sync_shadow")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for coll in shadowed {
        let Some(c) = schema.get(&coll) else { continue };
        let rows: Vec<(String, Option<String>)> = {
            let mut st = conn.prepare("SELECT rid, data FROM _sync_shadow WHERE coll = ?1")?;
            let it = st.query_map([&coll], |r| Ok((r.get(0)?, r.get(1)?)))?;
            it.collect::<Result<_, _>>()?
        };
        // Overlay rows out first, then the canonical rows back: they cannot collide.
        for (rid, _) in &rows {
            super::records::write_raw(conn, c, rid, None)?;
        }
        for (rid, data) in rows {
            if let Some(text) = data {
                let row: super::Record = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Internal(format!("corrupt shadow row: {e}")))?;
                super::records::write_raw(conn, c, &rid, Some(&row))?;
            }
        }
    }
    for table in NODE_LOCAL_TABLES {
        conn.execute_batch(&format!("DELETE FROM {table}"))?;
    }
    super::files::canonicalize(conn, &schema)?;
    conn.execute(
        "DELETE FROM sqlite_sequence WHERE name IN ('_sync_outbox', '_mail_outbox')",
        [],
    )?;
    // Whether this node has put its own `users` seed in its outbox (`users_seeded`, set by
    // the fold, is canonical and stays).
    // So is a genesis not claimed yet (`sync::genesis`).
    conn.execute(
        "DELETE FROM _sync_state WHERE key IN ('seed_enqueued', 'genesis_pending')",
        [],
    )?;
    if let Some(su) = schema.get(LOCAL_ONLY) {
        super::ddl::drop_table(conn, su)?;
        system::delete_collection_row(conn, &su.id)?;
    }
    tx.commit()?;
    Ok(())
}

/// Row counts, table hashes, schema, bindings and stats of a prepared copy. `hashes`, when
/// given, are the tables' (hash, count) computed elsewhere.
fn figures(
    conn: &Connection,
    hashes: Option<BTreeMap<String, (String, u64)>>,
) -> Result<Contents, StoreError> {
    let schema = system::load_schema(conn)?;
    let hashes = match hashes {
        Some(h) => h,
        None => {
            let mut h = BTreeMap::new();
            for c in schema.all() {
                if c.name != LOCAL_ONLY {
                    h.insert(c.name.clone(), super::sync::hash_table(conn, &c)?);
                }
            }
            h
        }
    };
    let collections: Vec<serde_json::Value> = {
        let mut st = conn.prepare("SELECT data FROM _collections ORDER BY id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|t| Ok(serde_json::from_str(&t?).unwrap_or_default()))
            .collect::<Result<_, rusqlite::Error>>()?
    };
    let tracker = stats::Tracker::load(conn)?;
    let seq = super::sync::applied_seq(conn)?;
    Ok(Contents {
        seq,
        hlc: tracker.last_hlc,
        schema: collections,
        bindings: super::sync::folded_bindings(conn)?,
        row_counts: hashes.iter().map(|(k, v)| (k.clone(), v.1)).collect(),
        table_hashes: hashes.into_iter().map(|(k, v)| (k, v.0)).collect(),
        stats: tracker.stats(seq),
        db_sha256: String::new(),
        db_bytes: 0,
    })
}

fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Memory-mapped reads: hashing a snapshot reads every page once, and through mmap SQLite
    // skips copying each of them into its page cache.
    conn.execute_batch("PRAGMA cache_size = -32000; PRAGMA mmap_size = 2147418112;")?;
    Ok(conn)
}

/// A table's name with its content hash and row count.
type TableHash = (String, (String, u64));

/// Opens a snapshot's SQLite file read-only and recomputes its figures (row counts and table
/// hashes, each table on a thread of its own) to check them against a header. The file's
/// sha256 is not computed here (the extraction hashes what it writes). Blocking.
pub fn inspect(path: &Path, scheme: super::sync::HashScheme) -> Result<Contents, StoreError> {
    let conn = open_read_only(path)?;
    let schema = system::load_schema(&conn)?;
    let tables: Vec<_> = schema
        .all()
        .into_iter()
        .filter(|c| c.name != LOCAL_ONLY)
        .collect();
    let hashed: Vec<Result<TableHash, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = tables
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let conn = open_read_only(path)?;
                    Ok((
                        c.name.clone(),
                        super::sync::hash_table_with(&conn, c, scheme)?,
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Internal("hashing thread panicked".into())))
            })
            .collect()
    });
    let hashes = hashed.into_iter().collect::<Result<BTreeMap<_, _>, _>>()?;
    figures(&conn, Some(hashes))
}

/// The storage keys of the files a copied database's rows reference. Blocking.
pub fn stored_file_keys(path: &Path) -> Result<Vec<String>, StoreError> {
    super::files::stored_keys(&open_read_only(path)?)
}

/// Whether any collection holds a row that is neither canonical (folded from the log) nor a
/// pending local write: data a snapshot installed over this database would drop.
pub fn holds_unlogged_data(conn: &Connection, schema: &system::Schema) -> Result<bool, StoreError> {
    for c in schema.all() {
        if c.name == LOCAL_ONLY {
            continue;
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE `id` NOT IN
               (SELECT rid FROM _sync_versions WHERE coll = ?1
                UNION SELECT rid FROM _sync_pending WHERE coll = ?1))",
            c.table()
        );
        let any: bool = conn.query_row(&sql, [&c.id], |r| r.get(0))?;
        if any {
            return Ok(true);
        }
    }
    Ok(false)
}

/// sha256 (lowercase hex) and size of a file, read in 1 MiB steps.
pub fn file_sha256(path: &Path) -> Result<(String, u64), StoreError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| StoreError::Io(e.to_string()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((
        h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        total,
    ))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
