//! Joining and falling behind: installing the newest usable snapshot before consuming the log.
//!
//! A node needs one when it has no state yet (applied sequence 0) and the cluster has a
//! snapshot, or when its applied sequence fell below the stream's first sequence (the events
//! after it were compacted away while it was down). Candidates are tried newest first: each is
//! downloaded and its sha256 checked against the bucket's metadata, its database extracted and
//! checked against the header (file sha256, row counts, table hashes), the plugins its bindings
//! name fetched, and then installed in place of the live database, keeping every write the node
//! acknowledged but had not published (`store::snapshot` install). A corrupt or missing
//! snapshot falls back to the previous one. With none usable, a node that cannot replay the log
//! from its start refuses to start, with a clear error; it never serves an empty database as if
//! it were the cluster's.
//!
//! A node whose tables hold rows that never came from the log (a former single node) is never
//! bootstrapped over: it became the cluster's genesis or was refused (`sync::genesis`) before.
//! A fresh node whose log starts with a genesis marker must install a snapshot: the genesis
//! rows are in no event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{SnapshotError, Snapshots};
use crate::plugins::Plugins;
use crate::replication::{Log, PluginObjects, Progress, SnapshotStore, Stored};
use crate::store::snapshot::{InstallMode, InstallReport};

/// What bootstrapping did.
#[derive(Debug)]
pub enum BootstrapOutcome {
    /// The node's state continues the log: consume from its applied sequence.
    NotNeeded,
    /// A snapshot was installed.
    Installed {
        snapshot: Box<Stored>,
        report: InstallReport,
        /// Newer snapshots tried first and refused, with why.
        rejected: Vec<String>,
    },
}

/// Why bootstrapping did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The node cannot start: it would serve state that is not the cluster's.
    #[error("{0}")]
    Fatal(String),
    /// JetStream is not answering; try again.
    #[error("{0}")]
    Retry(SnapshotError),
    /// The stream answered that it ends before this node's position. Fatal only when it
    /// lasts ([`StreamBehind`]): while a stream's group has no leader, nats-server lets every
    /// member answer `STREAM.INFO` from its own replica, and one that is behind answers
    /// with a shorter log.
    #[error("{0}")]
    StreamEndsBefore(String),
}

/// How long a stream must keep answering that it ends before a node's position before the
/// node takes it for another cluster's (or a reset) log: longer than the leader elections
/// (4-9 s in nats-server) during which a replica that is behind may answer.
pub const STREAM_BEHIND_FATAL_AFTER: Duration = Duration::from_secs(20);

/// Whether a stream that answers it ends before this node's position has done so for long
/// enough to be believed.
#[derive(Debug, Default)]
pub struct StreamBehind {
    since: Option<Instant>,
}

impl StreamBehind {
    /// One more such answer at `now`: `true` once they have lasted
    /// [`STREAM_BEHIND_FATAL_AFTER`].
    pub fn persists(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        now.duration_since(since) >= STREAM_BEHIND_FATAL_AFTER
    }

    /// Any other answer: the next shortfall starts the wait again.
    pub fn reset(&mut self) {
        self.since = None;
    }
}

/// One bootstrap attempt's inputs.
pub struct Bootstrap<'a> {
    pub snapshots: &'a Snapshots,
    pub plugins: &'a Plugins,
    /// The stream: whether a snapshot is needed at all is read from it alone.
    pub log: &'a Log,
    /// The plugin bucket as it opens (a snapshot's bindings may name plugins to fetch).
    pub plugin_objects: watch::Receiver<Option<PluginObjects>>,
    /// How long a node that could replay the whole log waits for the snapshot and plugin
    /// buckets before replaying it instead (a node that must install a snapshot waits on).
    pub optional_wait: Duration,
    /// Bytes done and total of the current step.
    pub progress: Arc<Progress>,
    /// Told each step: `download`, `verify`, `install`, with the snapshot's name.
    pub step: &'a (dyn Fn(&'static str, &str) + Send + Sync),
}

impl Bootstrap<'_> {
    pub async fn run(&self) -> Result<BootstrapOutcome, BootstrapError> {
        let store = self.snapshots.store();
        let applied = store
            .read_raw(crate::store::sync::applied_seq)
            .await
            .map_err(|e| BootstrapError::Retry(e.into()))?;
        let usage = crate::replication::snapshots::stream_usage(self.log)
            .await
            .map_err(|e| BootstrapError::Retry(e.into()))?;
        let fresh = applied == 0;
        if applied > usage.last_seq {
            // Folding would wait for positions this stream will reach with other events.
            return Err(BootstrapError::StreamEndsBefore(format!(
                "this data directory stands at sequence {applied} of a log, but the cluster's \
                 stream ends at {}: it comes from another cluster, or the stream was reset. \
                 Start this node on an empty --dir to join the cluster, or without replication \
                 to serve this data alone",
                usage.last_seq
            )));
        }
        let behind = applied + 1 < usage.first_seq;
        if !fresh && !behind {
            return Ok(BootstrapOutcome::NotNeeded);
        }
        let whole_log = usage.first_seq <= 1;
        // A cluster started from a node's data (`sync::genesis`): the log starts with a marker
        // and the rows are in the genesis snapshot only, so replaying the log cannot do.
        let genesis = fresh
            && whole_log
            && usage.last_seq >= 1
            && self
                .log
                .event_at(1)
                .await
                .map_err(|e| BootstrapError::Retry(e.into()))?
                .is_some_and(|e| crate::sync::genesis_of(&e).is_some());
        // Whether the log alone cannot bring this node up to date.
        let needed = behind || genesis;
        if fresh {
            // `sync::genesis` made such a node the cluster's first snapshot, or refused it,
            // before this point; installing over its rows would drop them.
            let unlogged = store
                .read(crate::store::snapshot::holds_unlogged_data)
                .await
                .map_err(|e| BootstrapError::Retry(e.into()))?;
            if unlogged {
                return Err(BootstrapError::Fatal(
                    "this data directory holds records that never went through the cluster's \
                     log: installing a snapshot or replaying the log would mix two histories. \
                     Start this node on an empty --dir to join the cluster"
                        .to_string(),
                ));
            }
        }
        // Past this point a snapshot helps (a fresh node) or is the only way on (a node
        // behind the stream's start). The first only waits so long for the buckets: the
        // log works without them (an account may allow one stream, NATS may be recovering).
        let Some((bucket, objects)) = self.buckets(whole_log && !needed).await else {
            tracing::warn!(
                wait_ms = self.optional_wait.as_millis() as u64,
                "the snapshot or plugin bucket is not open; replaying the whole log instead"
            );
            return Ok(BootstrapOutcome::NotNeeded);
        };
        let candidates: Vec<Stored> = bucket
            .snapshots()
            .await
            .map_err(|e| BootstrapError::Retry(e.into()))?
            .into_iter()
            // Usable only if the log continues right after it, and it is ahead of this node.
            .filter(|s| s.seq + 1 >= usage.first_seq && s.seq > applied)
            .collect();
        if candidates.is_empty() && genesis {
            return Err(BootstrapError::Retry(SnapshotError::Busy(
                "the log starts from a genesis snapshot the bucket does not list (yet)".into(),
            )));
        }
        if candidates.is_empty() && !behind {
            return Ok(BootstrapOutcome::NotNeeded);
        }
        let mut reasons = Vec::new();
        let mut vanished = false;
        for s in candidates {
            if behind && !fresh {
                tracing::warn!(
                    applied,
                    first_seq = usage.first_seq,
                    snapshot = %s.name,
                    "the log was compacted past this node's position: re-bootstrapping from a snapshot"
                );
            } else {
                tracing::info!(snapshot = %s.name, seq = s.seq, "joining from a snapshot");
            }
            match self.install(&bucket, &objects, &s).await {
                Ok(report) => {
                    return Ok(BootstrapOutcome::Installed {
                        snapshot: Box::new(s),
                        report,
                        rejected: reasons,
                    });
                }
                Err(e) => {
                    tracing::error!(snapshot = %s.name, error = %e, "snapshot unusable; trying an older one");
                    // Deleted by a newer snapshot's compaction while it was being fetched.
                    vanished |= matches!(e, SnapshotError::NotFound(_));
                    reasons.push(format!("{}: {e}", s.name));
                }
            }
        }
        if vanished {
            return Err(BootstrapError::Retry(SnapshotError::Busy(format!(
                "snapshots went away while being fetched ({}); choosing again",
                reasons.join("; ")
            ))));
        }
        if whole_log && !needed {
            tracing::warn!(
                "no usable snapshot ({}); replaying the whole log instead",
                reasons.join("; ")
            );
            return Ok(BootstrapOutcome::NotNeeded);
        }
        let position = if fresh {
            "this node has no state yet".to_string()
        } else {
            format!("this node has applied the log up to sequence {applied}")
        };
        Err(BootstrapError::Fatal(format!(
            "{position}, the stream now starts at {} (earlier events were compacted into \
             snapshots), and no usable snapshot can fill the gap{}",
            usage.first_seq,
            if reasons.is_empty() {
                " (the bucket holds none that continues the log)".to_string()
            } else {
                format!(": {}", reasons.join("; "))
            }
        )))
    }

    /// The snapshot and plugin buckets; within `optional_wait` if `optional`, else as long as
    /// they take.
    async fn buckets(&self, optional: bool) -> Option<(SnapshotStore, PluginObjects)> {
        let both = async {
            let bucket = self.snapshots.bucket().await;
            let objects = crate::sync::wait_some(self.plugin_objects.clone()).await;
            (bucket, objects)
        };
        if optional {
            tokio::time::timeout(self.optional_wait, both).await.ok()
        } else {
            Some(both.await)
        }
    }

    async fn install(
        &self,
        bucket: &SnapshotStore,
        objects: &PluginObjects,
        s: &Stored,
    ) -> Result<InstallReport, SnapshotError> {
        let work = self.snapshots.work();
        // The plugins the snapshot's bindings name are fetched and compiled while the rest
        // of it downloads (their bytes are checked by sha256 on their own); the install below
        // finds them loaded, or fetches them itself and reports what failed.
        let (named, plugins) = tokio::sync::oneshot::channel::<Vec<super::format::PluginRef>>();
        let prefetch = async {
            let Ok(plugins) = plugins.await else { return };
            for p in &plugins {
                if let Err(e) = self.fetch_plugin(objects, &p.name, &p.sha256).await {
                    tracing::debug!(plugin = %p.name, error = %e, "prefetching a plugin failed");
                }
            }
        };
        let fetch = super::fetch_verified(
            bucket,
            s,
            work,
            &self.progress,
            |step| (self.step)(step, &s.name),
            move |h| {
                let _ = named.send(h.plugins.clone());
            },
        );
        let (fetched, ()) = tokio::join!(fetch, prefetch);
        let (header, db) = fetched?;
        let result = async {
            if header.cluster.as_deref() != Some(self.snapshots.cluster()) {
                return Err(SnapshotError::Corrupt(format!(
                    "taken in cluster {:?}, not {:?}",
                    header.cluster,
                    self.snapshots.cluster()
                )));
            }
            (self.step)("install", &s.name);
            self.progress.start(0);
            for p in &header.plugins {
                self.fetch_plugin(objects, &p.name, &p.sha256).await?;
            }
            let report = self
                .snapshots
                .store()
                .install(&db, InstallMode::KeepLocal)
                .await?;
            crate::sync::Sync::restore_bindings(self.snapshots.store(), self.plugins)
                .await
                .map_err(|e| SnapshotError::Invalid(format!("restoring plugin bindings: {e}")))?;
            Ok(report)
        }
        .await;
        let _ = tokio::fs::remove_file(&db).await;
        result
    }

    /// Puts a plugin the snapshot's bindings name into the local registry.
    async fn fetch_plugin(
        &self,
        objects: &PluginObjects,
        name: &str,
        sha: &str,
    ) -> Result<(), SnapshotError> {
        let rt = &self.plugins.runtime;
        if rt
            .list()
            .iter()
            .any(|p| p.version.sha256 == sha && p.version.name == name)
        {
            return Ok(());
        }
        let bytes = objects
            .get(sha)
            .await?
            .ok_or_else(|| SnapshotError::NotFound(format!("plugin {name} ({sha})")))?;
        let name = name.to_string();
        self.plugins
            .blocking(move |rt| rt.upload(&name, &bytes))
            .await
            .map_err(|e| SnapshotError::Invalid(format!("plugin {sha} does not load: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_behind_this_node_is_believed_only_when_it_lasts() {
        let start = Instant::now();
        let mut behind = StreamBehind::default();
        // A replica behind answers for a leaderless stream during an election.
        assert!(!behind.persists(start));
        assert!(!behind.persists(start + Duration::from_secs(9)));
        // The elected leader answers with the whole log: the wait starts over.
        behind.reset();
        assert!(!behind.persists(start + Duration::from_secs(15)));
        assert!(!behind.persists(start + Duration::from_secs(30)));
        // Another cluster's log keeps answering short: refused.
        assert!(behind.persists(start + Duration::from_secs(35)));
    }
}
