//! Fault injection for the chaos harness (`tests/chaos_support`), off unless
//! `--test-faults FILE` (`SYNCBASE_TEST_FAULTS`) names a control file.
//!
//! The harness cannot reach into a running node's process, so it writes a small JSON file that
//! the node polls: `{"clockOffsetMs": -5000, "maxPageSlack": 20}`. `clockOffsetMs` shifts the
//! wall clock under this node's hybrid logical clock (skew between nodes: HLC must still order
//! causally related writes); `maxPageSlack` caps the database at its current size plus that
//! many pages (a full disk: SQLite answers `SQLITE_FULL`), `null` lifts the cap. A missing or
//! unreadable file means "no faults". Nothing here runs on a node started without the flag.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::replication::hlc::{WallClock, system_ms};
use crate::store::Store;

/// The offset added to the wall clock of this process's HLC, in milliseconds.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// How often the control file is looked at.
const POLL: Duration = Duration::from_millis(100);

/// The control file's contents.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    pub clock_offset_ms: i64,
    pub max_page_slack: Option<u64>,
}

/// The wall clock a replicating node's HLC runs on: the system clock plus the injected skew
/// (zero unless the chaos harness set one).
pub fn wall_clock() -> WallClock {
    Arc::new(|| {
        let offset = CLOCK_OFFSET_MS.load(Ordering::Relaxed);
        system_ms().saturating_add_signed(offset)
    })
}

/// Polls `path` and applies what it says until the process exits.
pub fn spawn(path: PathBuf, store: Store) {
    tracing::warn!(path = %path.display(), "test fault injection is on (--test-faults)");
    tokio::spawn(async move {
        let mut seen: Option<(SystemTime, Faults)> = None;
        loop {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if let Some(modified) = modified
                && seen.as_ref().is_none_or(|(t, _)| *t != modified)
            {
                let faults = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Faults>(&text).ok())
                    .unwrap_or_default();
                let before = seen.take().map(|(_, f)| f).unwrap_or_default();
                apply(&store, &before, &faults).await;
                seen = Some((modified, faults));
            }
            tokio::time::sleep(POLL).await;
        }
    });
}

async fn apply(store: &Store, before: &Faults, now: &Faults) {
    if before.clock_offset_ms != now.clock_offset_ms {
        tracing::warn!(offset_ms = now.clock_offset_ms, "test fault: clock skew");
        CLOCK_OFFSET_MS.store(now.clock_offset_ms, Ordering::Relaxed);
    }
    if before.max_page_slack != now.max_page_slack {
        tracing::warn!(slack = ?now.max_page_slack, "test fault: database size cap");
        if let Err(e) = store.cap_pages(now.max_page_slack).await {
            tracing::error!(error = %e, "test fault: capping the database failed");
        }
    }
}
