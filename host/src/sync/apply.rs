//! The applier: folds the stream into SQLite in order (`apply_loop`), batch by batch in
//! writer jobs (`fold`), bootstrapping from a snapshot first when the node needs one and again
//! when the stream turns out to have been compacted past its position; and the `users` seed
//! every node folds once.

use super::*;

/// How a fold of one batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folded {
    Done,
    /// The batch does not continue this node's position: the stream was compacted past it.
    Gap,
}

impl Sync {
    /// Folds the stream into SQLite, in order, forever. Before consuming, and again whenever
    /// the stream turns out to have been compacted past this node's position, the node
    /// bootstraps from a snapshot if it needs one (`sync/snapshots.rs`).
    pub(super) async fn apply_loop(&self) {
        let log = self.log().await;
        let store = &self.inner.store;
        if let Ok(peers) = store.read_raw(crate::store::sync::peers_seen).await {
            self.inner.peers.lock().extend(peers);
        }
        loop {
            self.ensure_bootstrapped().await;
            let mut consumer = loop {
                let resume = match store.read_raw(crate::store::sync::applied_seq).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the applied sequence failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                self.inner
                    .counters
                    .applied_seq
                    .store(resume, Ordering::Relaxed);
                let opts = ConsumerOptions {
                    resume_after: Some(resume),
                    batch: self.inner.config.apply_batch.max(1),
                    ..Default::default()
                };
                match log.consumer(&self.inner.config.node_id, opts).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "opening the consumer failed; retrying");
                        self.set_error(Part::Consume, &e);
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            };
            consumer.follow_tip(self.inner.tip.subscribe());
            self.inner.health.watch_consumer(consumer.state());
            self.consuming();
            let max = self.inner.config.apply_batch.max(1);
            // Two batches in the pipeline: while one folds on the writer thread, the next is
            // collected from the consumer (a node catching up would otherwise leave both the
            // writer and the network idle in turn). Folds still run one at a time, in order.
            let mut folding: Option<Pin<Box<dyn Future<Output = Folded> + Send + '_>>> = None;
            loop {
                let (folded, batch) = match folding.take() {
                    Some(fold) => tokio::join!(fold, self.next_batch(&mut consumer, max)),
                    None => (Folded::Done, self.next_batch(&mut consumer, max).await),
                };
                if folded == Folded::Gap {
                    // Events this node never folded were purged: re-bootstrap, then consume
                    // again from the snapshot's position (the batch read meanwhile with it).
                    break;
                }
                let Some(batch) = batch else { continue };
                self.prepare_plugins(&batch).await;
                let fetched = self.prepare_files(&batch).await;
                let files = self.inner.files.clone();
                let schema = self.inner.store.schema();
                let trashed = batch.iter().any(|d| {
                    d.event.as_ref().is_ok_and(|e| {
                        !e.kind.is_record()
                            || schema.get(&e.collection.id).is_some_and(|c| c.has_files())
                    })
                });
                folding = Some(Box::pin(async move {
                    let folded = self.fold(batch).await;
                    // Committed: the fetched files are referenced (or trashed) now.
                    drop(fetched);
                    if trashed {
                        files.trashed();
                    }
                    folded
                }));
            }
        }
    }

    /// The next batch: what has already arrived, plus, while the stream still holds more for
    /// this node (catching up), what is on its way. A lone write folds at once (no timer in
    /// its latency); a node that is behind folds full batches. `None` after a consumer error.
    async fn next_batch(&self, consumer: &mut EventConsumer, max: usize) -> Option<Vec<Delivery>> {
        let first = match consumer.next().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error; repositioning");
                self.set_error(Part::Consume, &e);
                if let Some(log) = self.inner.log.borrow().clone() {
                    if consumer.take_server_behind() && self.inner.health.should_leave_behind() {
                        tracing::warn!(
                            after = consumer.last_seq(),
                            "this server's copy of the stream is behind while the consumer cannot be positioned; reading through another"
                        );
                        tokio::spawn(async move { log.switch_server().await });
                    } else {
                        self.switch_server_if_stuck(&log);
                    }
                }
                return None;
            }
        };
        self.inner.health.ok(Part::Consume);
        let mut batch = vec![first];
        while batch.len() < max {
            let next = match consumer.try_next() {
                Some(r) => Some(r),
                None if batch.last().is_some_and(|d| d.pending() > 0) => consumer
                    .next_timeout(Duration::from_millis(20))
                    .await
                    .transpose(),
                None => None,
            };
            match next {
                Some(Ok(d)) => batch.push(d),
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error inside a batch");
                    break;
                }
            }
        }
        Some(batch)
    }

    /// After publishing or consuming kept failing for a few seconds, moves the connection to
    /// another server (in the background): the current one may be cut off from the stream.
    pub(super) fn switch_server_if_stuck(&self, log: &Log) {
        if self.inner.health.should_switch() {
            tracing::warn!("JetStream keeps failing through this server; trying another");
            let log = log.clone();
            tokio::spawn(async move { log.switch_server().await });
        }
    }

    /// Whether this node has folded the cluster's `users` seed. Until it has, its `users`
    /// collection carries a token secret of its own, which the seed replaces: a token signed
    /// with it would stop working, so logins to `users` wait for this.
    pub async fn users_seeded(&self) -> bool {
        if self.inner.users_seeded.load(Ordering::Acquire) {
            return true;
        }
        let seeded = self
            .inner
            .store
            .read_raw(crate::store::sync::users_seeded)
            .await
            .unwrap_or(false);
        if seeded {
            self.inner.users_seeded.store(true, Ordering::Release);
        }
        seeded
    }

    /// Puts this node's bootstrap `users` collection in the log, as the first event of its
    /// outbox, unless it has done so before or has already folded a seed: the first seed in the
    /// log wins on every node (its token secret among it) and later ones are no-ops, so every
    /// node converges on one definition. Runs before the node serves, so nothing this node
    /// writes can precede its seed in the log (a node whose first writes wait for NATS in the
    /// outbox still seeds the cluster, ahead of them). A node joining a running cluster adds
    /// one no-op seed on its first start.
    pub async fn seed_users(store: &Store) -> Result<(), crate::store::StoreError> {
        store
            .write(|ctx| {
                if !crate::store::sync::claim_seed(ctx.conn)? {
                    return Ok(());
                }
                let Some(users) = ctx.schema.get(crate::store::BOOTSTRAP_USERS_ID).cloned() else {
                    return Ok(());
                };
                let hooks = ctx
                    .sync_hooks()
                    .ok_or_else(|| crate::store::StoreError::Internal("no hooks".into()))?;
                let mut data = serde_json::to_value(&*users)
                    .map_err(|e| crate::store::StoreError::Internal(e.to_string()))?;
                if let Some(obj) = data.as_object_mut() {
                    obj.insert(crate::store::sync::SEED_MARK.into(), true.into());
                }
                let event = crate::store::sync::schema_event(
                    hooks,
                    crate::replication::EventKind::CollectionUpdate,
                    crate::replication::CollectionRef {
                        id: users.id.clone(),
                        name: users.name.clone(),
                    },
                    data,
                );
                ctx.enqueue(&event).map(|_| ())
            })
            .await
    }

    async fn fold(&self, mut batch: Vec<Delivery>) -> Folded {
        let applied = self.inner.counters.applied_seq.load(Ordering::Relaxed);
        if let Some(first) = batch.first()
            && first.seq > applied + 1
        {
            tracing::warn!(
                applied,
                next = first.seq,
                "the stream no longer holds the events after this node's position"
            );
            return Folded::Gap;
        }
        // The events move to the writer (the deliveries stay here for their acks); the batch
        // is shared, not copied, with each attempt.
        let delivered: Arc<Vec<Delivered>> = Arc::new(
            batch
                .iter_mut()
                .map(|d| Delivered {
                    seq: d.seq,
                    event: std::mem::replace(
                        &mut d.event,
                        Err(crate::replication::DecodeError::Empty),
                    )
                    .map_err(|e| e.to_string()),
                    payload: d.payload_bytes(),
                })
                .collect(),
        );
        for d in delivered.iter() {
            if let Ok(e) = &d.event {
                let mut peers = self.inner.peers.lock();
                if !peers.contains(&e.origin) {
                    peers.insert(e.origin.clone());
                }
            }
        }
        // The fold ends a batch early where a snapshot is due: the rest folds in a next part,
        // after a read of exactly that state is pinned.
        let mut start = 0;
        while start < delivered.len() {
            let report = self.fold_part(&delivered, start).await;
            start += report.consumed.max(1);
            if report.registry_changed {
                // Before anyone waiting for this fold is answered: the runtime lists what the
                // log registered (and forgets what it deleted); the prefetch task fetches the
                // bytes.
                self.sync_registry().await;
                self.plugins_changed();
            }
            self.inner.health.ok(Part::Apply);
            let c = &self.inner.counters;
            c.applied.fetch_add(report.applied, Ordering::Relaxed);
            c.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
            c.dead.fetch_add(report.dead, Ordering::Relaxed);
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.applied_seq.fetch_max(report.last_seq, Ordering::Relaxed);
            c.stream_last_seq
                .fetch_max(report.last_seq, Ordering::Relaxed);
            if let Some(own) = report.own_upto {
                self.inner.applied_own.send_modify(|p| *p = (*p).max(own));
            }
            if let Some(due) = report.snapshot {
                self.snapshot_due(due).await;
            }
        }
        let read = batch.iter().filter(|d| d.read_from_stream()).count() as u64;
        self.inner
            .counters
            .read_from_stream
            .fetch_add(read, Ordering::Relaxed);
        // Acknowledge only after the commit: a crash before this redelivers, and the
        // consumer skips what applied_seq already covers. Acks are cumulative: the batch's
        // last delivery acks the whole batch.
        if let Some(d) = batch.last()
            && let Err(e) = d.ack().await
        {
            tracing::debug!(error = %e, "ack failed (the consumer skips it on redelivery)");
        }
        Folded::Done
    }

    /// Folds `delivered[start..]` (up to the first snapshot decision), retrying on database
    /// failures.
    async fn fold_part(
        &self,
        delivered: &Arc<Vec<Delivered>>,
        start: usize,
    ) -> crate::store::sync::ApplyReport {
        let mut delay = Duration::from_millis(100);
        loop {
            match self
                .inner
                .store
                .apply_events(self.inner.hooks.clone(), delivered.clone(), start)
                .await
            {
                Ok(r) => return r,
                Err(crate::store::StoreError::Closed) => {
                    self.inner.stop.notify_waiters();
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    // Not an event's fault (those become dead letters): the database itself
                    // failed. Nothing was committed; try the same batch again, from the
                    // committed binding table (a binding event folded in the failed attempt
                    // must not decide the retry's earlier events).
                    tracing::error!(error = %e, "apply transaction failed; retrying the batch");
                    self.set_error(Part::Apply, &e);
                    if let Err(e) =
                        Self::restore_bindings(&self.inner.store, &self.inner.plugins).await
                    {
                        tracing::error!(error = %e, "restoring the committed plugin bindings failed");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
