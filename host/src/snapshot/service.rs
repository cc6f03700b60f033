//! A replicating node's snapshot service: the snapshots the policy decides (claimed, taken,
//! uploaded, read back, then compaction), manual snapshots, and taking over a snapshot whose
//! claimant died.
//!
//! Who takes a snapshot due at S: every node reaches the decision at S (the fold ends its batch
//! there and pins a read of exactly that state), and each tries to create the claim key for S.
//! The winner copies its pinned state; the others drop their pins at once (a pinned read holds
//! back the WAL's checkpoint) and watch S. If no snapshot at S or later appears and the claim
//! key expired (the claimant died: it no longer refreshes it), a watcher claims S itself and
//! takes the snapshot at its own current position S' ≥ S. Any fold position is a valid
//! canonical state, and the header says where it stands, so nothing is lost but exactness of S.
//! The watch list lives in memory: a node that restarts forgets it, and the next decision
//! takes the next snapshot.
//!
//! Compaction after a verified upload: snapshots beyond the decision's `keep` (newest first)
//! are deleted, and the stream is purged through the oldest kept snapshot's position. Plugin
//! bytes are never deleted from their bucket, so every kept snapshot's plugins stay available.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Kind, SnapshotError, Taken};
use crate::replication::snapshots::snapshot_name;
use crate::replication::{Progress, SnapshotStore, Stored};
use crate::store::Store;
use crate::store::snapshot::stats::Due;
use crate::store::snapshot::{CopyKind, Pinned};

enum Job {
    Due(Due, Box<Option<Pinned>>),
    Create(oneshot::Sender<Result<Stored, SnapshotError>>),
}

/// What the service is doing and has done, for status.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `idle`, `claiming`, `copying`, `uploading`, `verifying`, `compacting`.
    pub phase: &'static str,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The last snapshot this node took.
    pub last_taken: Option<Stored>,
    /// Snapshots this node took since it started.
    pub taken: u64,
    /// Positions whose snapshot another node claimed and this node waits for.
    pub watching: Vec<u64>,
    /// Events the last compaction purged from the stream.
    pub last_purged: u64,
    pub last_error: Option<String>,
}

/// The node's snapshot service; cheap to clone.
#[derive(Clone)]
pub struct Snapshots {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    node: String,
    cluster: String,
    work: PathBuf,
    claim_ttl: Duration,
    bucket: watch::Sender<Option<SnapshotStore>>,
    jobs: mpsc::UnboundedSender<Job>,
    status: Mutex<ServiceStatus>,
    progress: Arc<Progress>,
    /// The bucket's snapshots as last listed, and when.
    kept: Mutex<Option<(Instant, Vec<Stored>)>>,
}

impl Snapshots {
    /// Starts the service; it waits for [`Snapshots::connected`] before doing anything.
    pub fn start(store: Store, node: String, cluster: String, claim_ttl: Duration) -> Snapshots {
        let data_dir = store.path().parent().unwrap_or(std::path::Path::new("."));
        let work = super::work_dir(data_dir).unwrap_or_else(|e| {
            tracing::error!(error = %e, "no snapshot work directory; snapshots will fail");
            data_dir.join("snapshots")
        });
        // Nothing in it outlives the process that made it: what is there was left by a crash.
        if let Ok(entries) = std::fs::read_dir(&work) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        let (jobs, rx) = mpsc::unbounded_channel();
        let s = Snapshots {
            inner: Arc::new(Inner {
                store,
                node,
                cluster,
                work,
                claim_ttl,
                bucket: watch::channel(None).0,
                jobs,
                status: Mutex::new(ServiceStatus {
                    phase: "idle",
                    ..Default::default()
                }),
                progress: Progress::new(),
                kept: Mutex::new(None),
            }),
        };
        let service = s.clone();
        tokio::spawn(async move { service.run(rx).await });
        s
    }

    /// The cluster's bucket is open: work can start.
    pub fn connected(&self, bucket: SnapshotStore) {
        self.inner.bucket.send_replace(Some(bucket));
    }

    /// The bucket, waiting for it.
    pub async fn bucket(&self) -> SnapshotStore {
        crate::sync::wait_some(self.inner.bucket.subscribe()).await
    }

    /// The bucket if connected.
    pub fn bucket_now(&self) -> Option<SnapshotStore> {
        self.inner.bucket.borrow().clone()
    }

    pub fn claim_ttl(&self) -> Duration {
        self.inner.claim_ttl
    }

    pub fn work(&self) -> &std::path::Path {
        &self.inner.work
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The fold decided a snapshot is due at `due.seq`, and `pinned` is a read of exactly that
    /// state (`None` if the pin failed).
    pub fn due(&self, due: Due, pinned: Option<Pinned>) {
        let _ = self.inner.jobs.send(Job::Due(due, Box::new(pinned)));
    }

    /// Takes a snapshot now, at this node's current position, outside the policy.
    pub async fn create(&self) -> Result<Stored, SnapshotError> {
        if self.bucket_now().is_none() {
            return Err(SnapshotError::Busy(
                "the snapshot bucket is not open yet (see the status's last NATS error)".into(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(Job::Create(tx))
            .map_err(|_| SnapshotError::Busy("the snapshot service stopped".into()))?;
        rx.await
            .map_err(|_| SnapshotError::Busy("the snapshot service stopped".into()))?
    }

    pub fn status(&self) -> ServiceStatus {
        let mut s = self.inner.status.lock().clone();
        if s.phase != "idle" {
            (s.bytes_done, s.bytes_total) = self.inner.progress.get();
        }
        s
    }

    fn set_phase(&self, phase: &'static str) {
        self.inner.status.lock().phase = phase;
    }

    fn failed(&self, what: &str, e: &SnapshotError) {
        tracing::warn!(error = %e, "{what}");
        self.inner.status.lock().last_error = Some(format!("{what}: {e}"));
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let bucket = self.bucket().await;
        // Positions another node claimed, with when to look again.
        let mut watched: BTreeMap<u64, (Due, Instant)> = BTreeMap::new();
        let tick = (self.inner.claim_ttl / 2).max(Duration::from_millis(250));
        loop {
            let job = tokio::select! {
                j = rx.recv() => match j {
                    Some(j) => Some(j),
                    None => return,
                },
                _ = tokio::time::sleep(tick) => None,
            };
            match job {
                Some(Job::Due(mut due, mut pinned)) => {
                    // Dues that queued up behind a long snapshot: the newest supersedes them
                    // (a snapshot at or after a position fulfils it).
                    let mut later = Vec::new();
                    while let Ok(j) = rx.try_recv() {
                        match j {
                            Job::Due(d, p) => (due, pinned) = (d, p),
                            other => later.push(other),
                        }
                    }
                    self.on_due(&bucket, due, *pinned, &mut watched).await;
                    for j in later {
                        if let Job::Create(reply) = j {
                            let _ = reply.send(self.take_manual(&bucket).await);
                        }
                    }
                }
                Some(Job::Create(reply)) => {
                    let _ = reply.send(self.take_manual(&bucket).await);
                }
                None => {}
            }
            self.look_at_watched(&bucket, &mut watched).await;
            self.inner.status.lock().watching = watched.keys().copied().collect();
        }
    }

    async fn on_due(
        &self,
        bucket: &SnapshotStore,
        due: Due,
        pinned: Option<Pinned>,
        watched: &mut BTreeMap<u64, (Due, Instant)>,
    ) {
        self.set_phase("claiming");
        // A node catching up reaches decisions the cluster fulfilled long ago.
        if let Ok(Some(newest)) = bucket.snapshots().await.map(|l| l.into_iter().next())
            && newest.seq >= due.seq
        {
            tracing::debug!(
                seq = due.seq,
                newest = newest.seq,
                "snapshot due: already taken"
            );
            self.set_phase("idle");
            return;
        }
        let claim = tokio::time::timeout(
            Duration::from_secs(5),
            bucket.claim(due.seq, &self.inner.node),
        )
        .await;
        match claim {
            Ok(Ok(Some(claim))) => {
                tracing::info!(seq = due.seq, keep = due.keep, by = %due.by, "snapshot due: claimed");
                if let Err(e) = self.take_claimed(bucket, claim, &due, pinned).await {
                    self.failed(&format!("snapshot at {}", due.seq), &e);
                    // Another node takes it over once the claim expires; so may this one.
                    watched.insert(
                        due.seq,
                        (due.clone(), Instant::now() + self.inner.claim_ttl),
                    );
                }
            }
            Ok(Ok(None)) => {
                drop(pinned);
                tracing::debug!(seq = due.seq, "snapshot due: another node claimed it");
                watched.insert(
                    due.seq,
                    (due.clone(), Instant::now() + self.inner.claim_ttl),
                );
            }
            Ok(Err(e)) => {
                drop(pinned);
                self.failed(&format!("claiming the snapshot at {}", due.seq), &e.into());
                watched.insert(
                    due.seq,
                    (due.clone(), Instant::now() + self.inner.claim_ttl),
                );
            }
            Err(_) => {
                drop(pinned);
                self.failed(
                    &format!("claiming the snapshot at {}", due.seq),
                    &SnapshotError::Busy("no answer from JetStream within 5 s".into()),
                );
                watched.insert(
                    due.seq,
                    (due.clone(), Instant::now() + self.inner.claim_ttl),
                );
            }
        }
        self.set_phase("idle");
    }

    /// Drops watched positions a snapshot now covers; claims the others whose claim expired.
    async fn look_at_watched(
        &self,
        bucket: &SnapshotStore,
        watched: &mut BTreeMap<u64, (Due, Instant)>,
    ) {
        let now = Instant::now();
        if !watched.values().any(|(_, at)| *at <= now) {
            return;
        }
        let newest = match bucket.snapshots().await {
            Ok(list) => list.first().map(|s| s.seq).unwrap_or(0),
            Err(e) => {
                self.failed("listing snapshots", &e.into());
                return;
            }
        };
        watched.retain(|seq, _| *seq > newest);
        let Some((&seq, (due, at))) = watched.iter().next_back() else {
            return;
        };
        if *at > now {
            return;
        }
        let due = due.clone();
        match bucket.claim(seq, &self.inner.node).await {
            Ok(Some(claim)) => {
                tracing::warn!(
                    seq,
                    "the snapshot claimed by another node never appeared: taking it over here"
                );
                match self.take_claimed(bucket, claim, &due, None).await {
                    // Every older watched position is covered too.
                    Ok(_) => watched.clear(),
                    Err(e) => {
                        self.failed(&format!("taking over the snapshot at {seq}"), &e);
                        if let Some(w) = watched.get_mut(&seq) {
                            w.1 = Instant::now() + self.inner.claim_ttl;
                        }
                    }
                }
                self.set_phase("idle");
            }
            Ok(None) => {
                if let Some(w) = watched.get_mut(&seq) {
                    w.1 = Instant::now() + self.inner.claim_ttl / 2;
                }
            }
            Err(e) => self.failed(&format!("claiming the snapshot at {seq}"), &e.into()),
        }
    }

    /// Takes, uploads and verifies a claimed snapshot (from `pinned`, or at the current
    /// position), keeping the claim alive meanwhile; then compacts.
    async fn take_claimed(
        &self,
        bucket: &SnapshotStore,
        mut claim: crate::replication::snapshots::Claim,
        due: &Due,
        pinned: Option<Pinned>,
    ) -> Result<Stored, SnapshotError> {
        let every = (self.inner.claim_ttl / 3).max(Duration::from_millis(100));
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = claim.refresh().await {
                    tracing::warn!(error = %e, "the snapshot claim could not be renewed");
                }
            }
        });
        let taken = async {
            let pinned = match pinned {
                Some(p) => p,
                None => self.inner.store.pin().await?,
            };
            self.take_and_store(bucket, pinned).await
        }
        .await;
        keepalive.abort();
        let stored = taken?;
        self.compact(bucket, due.keep).await?;
        Ok(stored)
    }

    async fn take_manual(&self, bucket: &SnapshotStore) -> Result<Stored, SnapshotError> {
        let result = async {
            let pinned = self.inner.store.pin().await?;
            self.take_and_store(bucket, pinned).await
        }
        .await;
        self.set_phase("idle");
        if let Err(e) = &result {
            self.failed("manual snapshot", e);
        }
        result
    }

    /// Copies, archives, uploads and reads back one snapshot.
    async fn take_and_store(
        &self,
        bucket: &SnapshotStore,
        pinned: Pinned,
    ) -> Result<Stored, SnapshotError> {
        let started = Instant::now();
        self.set_phase("copying");
        self.inner.progress.start(0);
        let seq = pinned.seq;
        let taken: Taken = super::take(
            pinned,
            super::Take {
                kind: Kind::Snapshot,
                copy_kind: CopyKind::Canonical,
                cluster: Some(self.inner.cluster.clone()),
                node: self.inner.node.clone(),
                storage: None,
            },
            self.inner.work.clone(),
            format!("take-{seq}"),
        )
        .await?;
        let copied = started.elapsed();
        let stored = taken.stored(snapshot_name(seq, &self.inner.node));
        let result = async {
            self.set_phase("uploading");
            bucket
                .put(&stored, &taken.archive, &self.inner.progress)
                .await?;
            // Read it back: only bytes that come back whole count as a snapshot.
            self.set_phase("verifying");
            let back = self.inner.work.join(format!("readback-{seq}.zip"));
            let got = bucket.get(&stored.name, &back, &self.inner.progress).await;
            let _ = tokio::fs::remove_file(&back).await;
            match got? {
                Some((sha, size)) if sha == stored.sha256 && size == stored.size => Ok(()),
                Some((sha, size)) => Err(SnapshotError::Corrupt(format!(
                    "{} read back as {sha} ({size} bytes), uploaded as {} ({} bytes)",
                    stored.name, stored.sha256, stored.size
                ))),
                None => Err(SnapshotError::NotFound(stored.name.clone())),
            }
        }
        .await;
        let _ = tokio::fs::remove_file(&taken.archive).await;
        if let Err(e) = result {
            // An object that cannot be read back whole must not be used by anyone.
            let _ = bucket.delete(&stored.name).await;
            return Err(e);
        }
        tracing::info!(
            seq,
            name = %stored.name,
            bytes = stored.size,
            db_bytes = taken.header.contents.db_bytes,
            copy_ms = copied.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot taken and stored"
        );
        self.relist();
        let mut st = self.inner.status.lock();
        st.last_taken = Some(stored.clone());
        st.taken += 1;
        Ok(stored)
    }

    /// Keeps the newest `keep` snapshots (0: all), deletes the rest, and purges the stream
    /// through the oldest kept one.
    async fn compact(&self, bucket: &SnapshotStore, keep: u32) -> Result<(), SnapshotError> {
        self.set_phase("compacting");
        let snapshots = bucket.snapshots().await?;
        let keep = if keep == 0 {
            snapshots.len()
        } else {
            keep as usize
        };
        for old in snapshots.iter().skip(keep) {
            bucket.delete(&old.name).await?;
            tracing::info!(name = %old.name, "old snapshot deleted");
        }
        self.relist();
        if let Some(oldest) = snapshots[..keep.min(snapshots.len())].last() {
            let purged = bucket.purge_through(oldest.seq).await?;
            tracing::info!(through = oldest.seq, purged, "log compacted");
            self.inner.status.lock().last_purged = purged;
        }
        Ok(())
    }

    /// The cluster's snapshots (newest first). With `cached`, a list at most a second old may
    /// answer, and JetStream gets half a second rather than two (status is polled, also
    /// through outages).
    pub async fn kept(&self, cached: bool) -> Result<Vec<Stored>, SnapshotError> {
        if cached {
            let cached = self.inner.kept.lock();
            if let Some((at, list)) = cached.as_ref()
                && at.elapsed() < Duration::from_secs(1)
            {
                return Ok(list.clone());
            }
        }
        let bucket = self
            .bucket_now()
            .ok_or_else(|| SnapshotError::Busy("the log is not reachable yet".into()))?;
        let wait = if cached {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        let list = tokio::time::timeout(wait, bucket.snapshots())
            .await
            .map_err(|_| {
                SnapshotError::Busy(format!("no answer from JetStream within {wait:?}"))
            })??;
        *self.inner.kept.lock() = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// Forgets the cached list (after this node changed the bucket).
    fn relist(&self) {
        *self.inner.kept.lock() = None;
    }

    /// The service's status with the bucket's snapshots (`cached`: see [`Snapshots::kept`]).
    pub async fn status_json(&self, cached: bool) -> Value {
        json!({
            "service": self.status(),
            "kept": match self.kept(cached).await {
                Ok(l) => json!(l),
                Err(e) => json!({"error": e.to_string()}),
            },
        })
    }

    /// Downloads a stored snapshot and checks it completely; returns its header.
    pub async fn verify(&self, name: &str) -> Result<super::Header, SnapshotError> {
        let bucket = self
            .bucket_now()
            .ok_or_else(|| SnapshotError::Busy("the log is not reachable yet".into()))?;
        let stored = bucket
            .info(name)
            .await?
            .ok_or_else(|| SnapshotError::NotFound(format!("snapshot {name}")))?;
        let work = self
            .inner
            .work
            .join(format!("verify-{}", crate::replication::EventId::random()));
        tokio::fs::create_dir_all(&work)
            .await
            .map_err(|e| SnapshotError::Io(e.to_string()))?;
        let result =
            super::fetch_verified(&bucket, &stored, &work, &Progress::new(), |_| {}, |_| {}).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        Ok(result?.0)
    }
}
