//! The snapshot policy's view of the log, kept by the fold.
//!
//! Every node must agree, at the same stream position, that a snapshot is due, so the policy is
//! asked after every folded event (every stream position: applied, duplicate or dead letter)
//! with figures derived from the log alone: events and payload bytes since the last decision to
//! take one, HLC milliseconds since it (log time), and `content_bytes`, the payload size of the
//! event that wrote each live record's current version (kept per key in `_sync_versions.bytes`).
//! None depends on fold batch boundaries, local file sizes or clocks.
//!
//! The figures live in `_sync_snapstate` (one row, read at the start of a fold batch, written at
//! its end, in the fold's transaction) and every decision to take one in `_sync_snapdue`. Both
//! are canonical state: they travel in the snapshot, so a node bootstrapped from a snapshot at
//! S continues them exactly where every other node has them at S.

use rusqlite::{Connection, OptionalExtension, params};

use super::super::StoreError;

/// What the policy is told (the WIT `stats` record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStats {
    pub events_since: u64,
    pub bytes_since: u64,
    pub ms_since: u64,
    pub stream_seq: u64,
    pub content_bytes: u64,
    pub snapshots: u32,
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDecision {
    pub take: bool,
    /// Snapshots to keep counting this one (0: all).
    pub keep: u32,
    /// Who decided (for status and the decision log).
    pub by: String,
}

/// The built-in policy when none is bound: a snapshot every 100,000 events, keep 2.
pub const BUILTIN_EVERY: u64 = 100_000;
pub const BUILTIN_KEEP: u32 = 2;

pub fn builtin_decision(stats: &SnapshotStats) -> SnapshotDecision {
    SnapshotDecision {
        take: stats.events_since >= BUILTIN_EVERY,
        keep: BUILTIN_KEEP,
        by: "built-in".into(),
    }
}

/// A decision to take a snapshot at `seq`, as the fold records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Due {
    pub seq: u64,
    /// The largest HLC folded up to `seq` (log time of the snapshot).
    pub hlc: u64,
    pub keep: u32,
    pub by: String,
}

pub(crate) fn create_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_snapstate (
             id            INTEGER PRIMARY KEY CHECK (id = 1),
             events_since  INTEGER NOT NULL,
             bytes_since   INTEGER NOT NULL,
             take_hlc      INTEGER NOT NULL,
             last_hlc      INTEGER NOT NULL,
             content_bytes INTEGER NOT NULL,
             snapshots     INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS _sync_snapdue (
             seq   INTEGER PRIMARY KEY,
             hlc   INTEGER NOT NULL,
             keep  INTEGER NOT NULL,
             by    TEXT NOT NULL
         );",
    )?;
    // Databases from before snapshots: the per-key content size starts at 0 for their rows.
    let has_bytes: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('_sync_versions') WHERE name = 'bytes'")?
        .exists([])?;
    if !has_bytes {
        conn.execute_batch(
            "ALTER TABLE _sync_versions ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

/// The running figures, as the fold carries them through a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracker {
    pub events_since: u64,
    pub bytes_since: u64,
    /// HLC of the last decision to take a snapshot (0: none yet; the first event sets it).
    pub take_hlc: u64,
    /// The largest HLC folded.
    pub last_hlc: u64,
    pub content_bytes: i64,
    pub snapshots: u32,
}

impl Tracker {
    pub fn load(conn: &Connection) -> Result<Tracker, StoreError> {
        Ok(conn
            .prepare_cached(
                "SELECT events_since, bytes_since, take_hlc, last_hlc, content_bytes, snapshots
                 FROM _sync_snapstate WHERE id = 1",
            )?
            .query_row([], |r| {
                Ok(Tracker {
                    events_since: r.get::<_, i64>(0)? as u64,
                    bytes_since: r.get::<_, i64>(1)? as u64,
                    take_hlc: r.get::<_, i64>(2)? as u64,
                    last_hlc: r.get::<_, i64>(3)? as u64,
                    content_bytes: r.get(4)?,
                    snapshots: r.get::<_, i64>(5)? as u32,
                })
            })
            .optional()?
            .unwrap_or_default())
    }

    pub fn store(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO _sync_snapstate
               (id, events_since, bytes_since, take_hlc, last_hlc, content_bytes, snapshots)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET events_since = excluded.events_since,
               bytes_since = excluded.bytes_since, take_hlc = excluded.take_hlc,
               last_hlc = excluded.last_hlc, content_bytes = excluded.content_bytes,
               snapshots = excluded.snapshots",
        )?
        .execute(params![
            self.events_since as i64,
            self.bytes_since as i64,
            self.take_hlc as i64,
            self.last_hlc as i64,
            self.content_bytes,
            self.snapshots as i64
        ])?;
        Ok(())
    }

    /// Counts one stream position: its payload size and (for events that decode) its HLC.
    pub fn step(&mut self, payload_len: usize, hlc: Option<u64>) {
        self.events_since += 1;
        self.bytes_since += payload_len as u64;
        if let Some(h) = hlc {
            self.last_hlc = self.last_hlc.max(h);
            if self.take_hlc == 0 {
                self.take_hlc = h;
            }
        }
    }

    /// The figures the policy sees at `seq`.
    pub fn stats(&self, seq: u64) -> SnapshotStats {
        let ms = |h: u64| h >> 16;
        SnapshotStats {
            events_since: self.events_since,
            bytes_since: self.bytes_since,
            ms_since: ms(self.last_hlc).saturating_sub(ms(self.take_hlc)),
            stream_seq: seq,
            content_bytes: self.content_bytes.max(0) as u64,
            snapshots: self.snapshots,
        }
    }

    /// A decision to take a snapshot at `seq` was made: the counters restart and the count of
    /// kept snapshots follows the decision's `keep`.
    pub fn taken(
        &mut self,
        conn: &Connection,
        seq: u64,
        d: &SnapshotDecision,
    ) -> Result<Due, StoreError> {
        let due = Due {
            seq,
            hlc: self.last_hlc,
            keep: d.keep,
            by: d.by.clone(),
        };
        self.events_since = 0;
        self.bytes_since = 0;
        self.take_hlc = self.last_hlc;
        self.snapshots = match d.keep {
            0 => self.snapshots.saturating_add(1),
            k => self.snapshots.saturating_add(1).min(k),
        };
        conn.prepare_cached(
            "INSERT OR REPLACE INTO _sync_snapdue (seq, hlc, keep, by) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![seq as i64, due.hlc as i64, d.keep as i64, d.by])?;
        // The decision log is for status; a hundred decisions are plenty.
        conn.prepare_cached(
            "DELETE FROM _sync_snapdue WHERE seq < (SELECT min(seq) FROM
               (SELECT seq FROM _sync_snapdue ORDER BY seq DESC LIMIT 100))",
        )?
        .execute([])?;
        Ok(due)
    }
}

/// The decisions recorded so far, newest first.
pub fn decisions(conn: &Connection, limit: usize) -> Result<Vec<Due>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, hlc, keep, by FROM _sync_snapdue ORDER BY seq DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(Due {
            seq: r.get::<_, i64>(0)? as u64,
            hlc: r.get::<_, i64>(1)? as u64,
            keep: r.get::<_, i64>(2)? as u32,
            by: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The figures as they stand after the last folded event (for status).
pub fn current(conn: &Connection) -> Result<SnapshotStats, StoreError> {
    let applied = super::super::sync::applied_seq(conn)?;
    Ok(Tracker::load(conn)?.stats(applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_restart_at_each_decision_and_the_kept_count_follows_keep() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE _sync_versions (coll TEXT, rid TEXT, event_id TEXT, hlc INTEGER,
               origin TEXT, deleted INTEGER, verdict TEXT, seq INTEGER)",
        )
        .expect("versions");
        create_tables(&conn).expect("tables");
        let mut t = Tracker::load(&conn).expect("load");
        let ms = |m: u64| m << 16;
        t.step(100, Some(ms(1_000)));
        t.step(50, Some(ms(3_500)));
        t.step(7, None);
        let s = t.stats(3);
        assert_eq!((s.events_since, s.bytes_since, s.ms_since), (3, 157, 2_500));
        let take = SnapshotDecision {
            take: true,
            keep: 2,
            by: "test".into(),
        };
        for seq in [3, 4, 5] {
            t.taken(&conn, seq, &take).expect("taken");
        }
        assert_eq!(t.snapshots, 2, "keep 2 caps the count");
        let s = t.stats(5);
        assert_eq!((s.events_since, s.bytes_since, s.ms_since), (0, 0, 0));
        t.store(&conn).expect("store");
        assert_eq!(Tracker::load(&conn).expect("reload"), t);
        let d = decisions(&conn, 10).expect("decisions");
        assert_eq!(d.iter().map(|d| d.seq).collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!(d[0].hlc, ms(3_500));
    }
}
