//! Replication's side of snapshots: bootstrapping before the log is consumed, handing a due
//! snapshot (pinned at its position) to the snapshot service, and the node's phase, which
//! `GET /api/sync/ready` and status report.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::Sync;
use crate::snapshot::{Bootstrap, BootstrapError, BootstrapOutcome, Snapshots};
use crate::store::snapshot::stats::Due;

/// A node is ready when it folded the stream up to at most this many events behind its end.
pub const READY_LAG: u64 = 1000;

/// Where a replicating node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The log is not reachable yet.
    Connecting,
    /// Installing a snapshot: `step` is `download`, `verify` or `install`.
    Bootstrapping {
        step: &'static str,
        snapshot: String,
    },
    /// Consuming the log (ready once the lag is small).
    Consuming,
    /// The node cannot go on; the message says why.
    Failed(String),
}

impl Sync {
    pub fn snapshots(&self) -> &Snapshots {
        &self.inner.snapshots
    }

    /// Fires with the reason when the node must stop (see [`Phase::Failed`]).
    pub fn fatal(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.inner.fatal.subscribe()
    }

    /// The last snapshot this node bootstrapped from since it started, if any.
    pub fn last_bootstrap(&self) -> Option<Value> {
        self.inner.last_bootstrap.lock().clone()
    }

    pub(super) fn consuming(&self) {
        *self.inner.phase.lock() = Phase::Consuming;
    }

    /// Installs a snapshot first if this node needs one; retries while JetStream does not
    /// answer; on a fatal condition reports it and never returns.
    pub(super) async fn ensure_bootstrapped(&self) {
        let log = self.log().await;
        if let Err(reason) = self.ensure_genesis().await {
            self.fail(reason).await;
        }
        self.wait_for_the_clusters_start(&log).await;
        self.inner.may_publish.send_replace(true);
        let step = |step: &'static str, snapshot: &str| {
            *self.inner.phase.lock() = Phase::Bootstrapping {
                step,
                snapshot: snapshot.to_string(),
            };
        };
        let boot = Bootstrap {
            snapshots: &self.inner.snapshots,
            plugins: &self.inner.plugins,
            log: &log,
            plugin_objects: self.inner.objects.subscribe(),
            optional_wait: self.inner.config.wait_timeout,
            progress: self.inner.boot_progress.clone(),
            step: &step,
        };
        let mut delay = Duration::from_millis(200);
        let mut stream_behind = crate::snapshot::StreamBehind::default();
        loop {
            let outcome = boot.run().await;
            if !matches!(outcome, Err(BootstrapError::StreamEndsBefore(_))) {
                stream_behind.reset();
            }
            match outcome {
                Ok(BootstrapOutcome::NotNeeded) => return,
                Ok(BootstrapOutcome::Installed {
                    snapshot,
                    report,
                    rejected,
                }) => {
                    *self.inner.last_bootstrap.lock() = Some(json!({
                        "snapshot": snapshot.name,
                        "seq": snapshot.seq,
                        "rejected": rejected,
                        "outboxKept": report.outbox_kept,
                        "pendingKept": report.pending_kept,
                        "filesTrashed": report.files_trashed,
                    }));
                    tracing::info!(
                        snapshot = %snapshot.name,
                        applied_seq = report.applied_seq,
                        outbox_kept = report.outbox_kept,
                        pending_kept = report.pending_kept,
                        "bootstrapped from a snapshot; consuming the log after it"
                    );
                    self.inner
                        .counters
                        .applied_seq
                        .store(report.applied_seq, Ordering::Relaxed);
                    if let Some(own) = report.own_applied {
                        self.inner.applied_own.send_modify(|p| *p = (*p).max(own));
                    }
                    // The snapshot's `_files` rows name bytes this node may never have had:
                    // fetch them from the file bucket before consuming on.
                    match self.fetch_missing_files().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(files = n, "fetched the files the snapshot names"),
                        Err(e) => {
                            tracing::warn!(error = %e, "fetching the files the snapshot names failed")
                        }
                    }
                    // The snapshot's plugin registry (`_sync_plugins`) replaced this node's:
                    // the runtime follows it, and the prefetch fetches what it lacks.
                    self.sync_registry().await;
                    self.plugins_changed();
                    return;
                }
                Err(BootstrapError::Retry(e)) => {
                    tracing::warn!(error = %e, "bootstrap check failed; retrying");
                    self.set_error(super::Part::Consume, &e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(BootstrapError::Fatal(reason)) => self.fail(reason).await,
                Err(BootstrapError::StreamEndsBefore(reason)) => {
                    if stream_behind.persists(std::time::Instant::now()) {
                        self.fail(reason).await;
                    }
                    // A replica behind may be answering for a stream without a leader.
                    tracing::warn!(%reason, "the stream answers that it ends before this node's position; asking again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The node cannot go on: reports why and never returns.
    async fn fail(&self, reason: String) -> ! {
        tracing::error!(%reason, "this node cannot join the cluster's log");
        *self.inner.phase.lock() = Phase::Failed(reason.clone());
        self.inner.fatal.send_replace(Some(reason));
        std::future::pending::<()>().await;
        unreachable!("pending never resolves")
    }

    /// The fold decided a snapshot is due at `due.seq`: pins a read of exactly that state
    /// before the next fold can commit, and hands both to the snapshot service.
    pub(super) async fn snapshot_due(&self, due: Due) {
        if self.inner.snapshots.bucket_now().is_none() {
            // A pinned read waiting on a bucket that may never open would hold SQLite's WAL
            // back; the policy asks again at its next position.
            tracing::warn!(
                due = due.seq,
                "a snapshot is due but the snapshot bucket is not open; skipped"
            );
            return;
        }
        let pinned = match self.inner.store.pin().await {
            Ok(p) if p.seq == due.seq => Some(p),
            Ok(p) => {
                tracing::warn!(
                    due = due.seq,
                    pinned = p.seq,
                    "pinned past the due position"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not pin the snapshot's state");
                None
            }
        };
        self.inner.snapshots.due(due, pinned);
    }

    /// Whether the node is caught up, and its phase with bytes done and total.
    pub async fn readiness(&self) -> (bool, Value) {
        let stream = self.stream_last_seq().await;
        self.readiness_at(stream)
    }

    /// [`Sync::readiness`] against a stream end the caller asked for already.
    pub fn readiness_at(&self, stream: u64) -> (bool, Value) {
        let phase = self.inner.phase.lock().clone();
        let applied = self.inner.counters.applied_seq.load(Ordering::Relaxed);
        let (done, total) = self.inner.boot_progress.get();
        match phase {
            Phase::Connecting => (false, json!({"phase": "connecting"})),
            Phase::Failed(reason) => (false, json!({"phase": "failed", "error": reason})),
            Phase::Bootstrapping { step, snapshot } => (
                false,
                json!({"phase": "bootstrapping", "step": step, "snapshot": snapshot,
                       "bytesDone": done, "bytesTotal": total}),
            ),
            Phase::Consuming => {
                let lag = stream.saturating_sub(applied);
                let ready = self.connected() && lag <= READY_LAG;
                (
                    ready,
                    json!({"phase": if ready { "ready" } else { "catching-up" },
                           "appliedSeq": applied, "streamSeq": stream, "lag": lag}),
                )
            }
        }
    }
}
