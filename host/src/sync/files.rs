//! File bytes between nodes. A record event names its files by name and sha256
//! (`Event::files`); the bytes travel through the cluster's file bucket
//! (`replication::FileObjects`), never inside the log:
//!
//! - **Publishing** an event that references files first puts any of them the bucket lacks,
//!   streamed from this node's storage, so an event in the log never names bytes the bucket
//!   never had.
//! - **Applying**: before a batch folds, every file its events name that this node does not
//!   hold is fetched (waiting while the bucket lacks it, as plugin bytes are waited for) and
//!   written to storage, so the fold never makes a record visible without its files. The
//!   keys stay protected from the janitor until the fold commits. This node's own events are
//!   the repair path: their bytes are put again if the bucket lost them.
//! - **Bucket GC**: a sha256 that no row of this node references since stream position S is
//!   deleted from the bucket once S is below the stream's first sequence (every event that
//!   referenced it compacted away: no node can replay it, and snapshots after S do not name
//!   it) and the object is older than a grace period (a fresh upload of the same bytes may be
//!   on its way).

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;

use super::Sync;
use crate::files::{Protected, file_key};
use crate::replication::{Delivery, Event, EventKind, FileObjects, FileRef, Outgoing};

/// How often the bucket is checked for unreferenced objects at most (the grace,
/// `--file-gc-grace`, is in the sync config).
const GC_EVERY: Duration = Duration::from_secs(60);

fn age(at: SystemTime) -> Duration {
    SystemTime::now().duration_since(at).unwrap_or_default()
}

impl Sync {
    /// The file bucket, waiting for the log.
    pub async fn file_objects(&self) -> FileObjects {
        super::wait_some(self.inner.file_objects.subscribe()).await
    }

    /// Puts the bytes of one stored file into the bucket unless it has them. An object older
    /// than half the GC grace is put again when this node's copy is new (the same bytes
    /// uploaded again): it may have no referencing row on other nodes, and a GC round there
    /// must see it as fresh until they fold the event that names it again.
    pub(super) async fn push_one(
        &self,
        objects: &FileObjects,
        key: &str,
        f: &FileRef,
    ) -> Result<(), String> {
        let at = objects
            .uploaded_at(&f.sha256)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(at) = at {
            let half = self.inner.config.file_gc_grace / 2;
            if age(at) < half {
                return Ok(());
            }
            let ours = self
                .inner
                .files
                .storage()
                .attrs(key)
                .await
                .map_err(|e| e.to_string())?;
            if ours.is_none_or(|a| age(a.modified) >= half) {
                return Ok(());
            }
        }
        let stream = match self.inner.files.storage().read(key, None).await {
            Ok(s) => s,
            Err(crate::files::FileError::NotFound) => {
                // Cannot happen while the invariants hold (an unfolded write keeps its files);
                // holding the whole outbox back for it would be worse than the receivers
                // waiting for these bytes.
                tracing::error!(key, sha = %f.sha256, "a published file is missing from this node's storage");
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
        objects
            .put(&f.sha256, &mut reader)
            .await
            .map_err(|e| e.to_string())
    }

    /// Before events are published: the bucket gets the bytes of every file they name.
    pub(super) async fn push_files(&self, outgoing: &[Outgoing]) -> Result<(), String> {
        let with_files: Vec<Event> = outgoing
            .iter()
            .filter(|o| o.payload.first() == Some(&crate::replication::event::FILES_FORMAT_VERSION))
            .filter_map(|o| Event::decode(&o.payload).ok())
            .collect();
        if with_files.is_empty() {
            return Ok(());
        }
        let objects = self.file_objects().await;
        for e in &with_files {
            let rid = e.record_id.as_deref().unwrap_or_default();
            for f in &e.files {
                self.push_one(&objects, &file_key(&e.collection.id, rid, &f.name), f)
                    .await?;
            }
        }
        Ok(())
    }

    /// Before a batch folds: fetches the files its events name that this node lacks. The
    /// returned guards keep them from the janitor until the fold committed.
    pub(super) async fn prepare_files(&self, batch: &[Delivery]) -> Vec<Protected> {
        let wanted: Vec<(String, String, FileRef, bool)> = batch
            .iter()
            .filter_map(|d| d.event.as_ref().ok())
            .filter(|e| {
                matches!(e.kind, EventKind::RecordCreate | EventKind::RecordUpdate)
                    && !e.files.is_empty()
            })
            .flat_map(|e| {
                let own = e.origin == self.inner.config.node_id;
                let rid = e.record_id.clone().unwrap_or_default();
                e.files
                    .iter()
                    .map(move |f| (e.collection.id.clone(), rid.clone(), f.clone(), own))
            })
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let check = wanted.clone();
        let held = loop {
            let check = check.clone();
            match self
                .inner
                .store
                .read_raw(move |c| {
                    check
                        .iter()
                        .map(|(coll, rid, f, _)| {
                            Ok(crate::store::files::get(c, coll, rid, &f.name)?
                                .is_some_and(|h| h.sha256 == f.sha256))
                        })
                        .collect::<Result<Vec<bool>, crate::store::StoreError>>()
                })
                .await
            {
                Ok(h) => break h,
                Err(e) => {
                    tracing::error!(error = %e, "reading which files this node holds failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let objects = self.file_objects().await;
        let mut guards = Vec::new();
        for ((coll, rid, f, own), have) in wanted.into_iter().zip(held) {
            let key = file_key(&coll, &rid, &f.name);
            if have {
                if own {
                    // The repair path: an object deleted from the bucket while this node's
                    // event was on its way is put back before others wait for it long.
                    if let Err(e) = self.push_one(&objects, &key, &f).await {
                        tracing::warn!(error = %e, key, "could not re-put a file of this node");
                    }
                }
                continue;
            }
            guards.push(self.inner.files.protect(vec![key.clone()]).await);
            self.fetch(&objects, &key, &f).await;
        }
        guards
    }

    /// Fetches one object into storage at `key`, waiting (with backoff) while the bucket does
    /// not have it: the fold must not pass an event whose files this node cannot serve.
    async fn fetch(&self, objects: &FileObjects, key: &str, f: &FileRef) {
        let mut delay = Duration::from_millis(50);
        loop {
            let tmp = self.inner.files.tmp_path();
            let result = match objects.get_to_file(&f.sha256, &tmp).await {
                Ok(true) => self
                    .inner
                    .files
                    .storage()
                    .put_file(key, &tmp, &f.mime)
                    .await
                    .map_err(|e| e.to_string()),
                Ok(false) => Err("not in the bucket yet".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = tokio::fs::remove_file(&tmp).await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, key, sha = %f.sha256, "file bytes not fetched yet; waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Deletes objects nothing can need any more from the bucket, every tenth of the grace
    /// (at most every minute).
    pub(super) async fn gc_loop(&self) {
        let grace = self.inner.config.file_gc_grace;
        let every = (grace / 10).clamp(Duration::from_secs(1), GC_EVERY);
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.gc_round(grace).await {
                tracing::warn!(error = %e, "file bucket GC round failed");
            }
        }
    }

    /// One GC round; returns how many objects it deleted.
    pub async fn gc_round(&self, grace: Duration) -> Result<usize, String> {
        let log = self.log().await;
        let state = log.state().await.map_err(|e| e.to_string())?;
        let first = state.first_seq;
        let orphans = self
            .inner
            .store
            .read_raw(move |c| crate::store::files::orphans_before(c, first))
            .await
            .map_err(|e| e.to_string())?;
        if orphans.is_empty() {
            return Ok(0);
        }
        let objects = self.file_objects().await;
        let listed: std::collections::HashMap<String, SystemTime> = objects
            .list()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let now = SystemTime::now();
        let mut deleted = Vec::new();
        for sha in orphans {
            let old_enough = listed
                .get(&sha)
                .is_none_or(|at| now.duration_since(*at).unwrap_or_default() >= grace);
            if !old_enough {
                continue;
            }
            objects.delete(&sha).await.map_err(|e| e.to_string())?;
            deleted.push(sha);
        }
        let n = deleted.len();
        if n > 0 {
            tracing::info!(objects = n, "unreferenced files deleted from the bucket");
            self.inner
                .store
                .write(move |ctx| crate::store::files::forget_orphans(ctx.conn, &deleted))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

impl Sync {
    /// Fetches every file the rows of this node reference that its storage lacks (after a
    /// snapshot or backup from another node was installed: its `_files` rows name bytes this
    /// node never had). Returns how many were fetched.
    pub async fn fetch_missing_files(&self) -> Result<usize, String> {
        let all = self
            .inner
            .store
            .read(crate::store::files::referenced_all)
            .await
            .map_err(|e| e.to_string())?;
        let storage = self.inner.files.storage();
        let objects = self.file_objects().await;
        let mut n = 0;
        for (coll, rid, name, found) in all {
            let key = file_key(&coll, &rid, &name);
            let Some(f) = found else {
                tracing::warn!(key, "a record names a file no sha256 is known for");
                continue;
            };
            if storage
                .attrs(&key)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                continue;
            }
            let _guard = self.inner.files.protect(vec![key.clone()]).await;
            self.fetch(&objects, &key, &f).await;
            n += 1;
        }
        Ok(n)
    }
}
