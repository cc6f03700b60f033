//! What `GET /api/sync/status`, `syncbase sync status` and `GET /metrics` report.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Source, Sync};
use crate::store::sync::{LocalStatus, dead_letters, local_status};

async fn local(sync: &Sync) -> LocalStatus {
    sync.store()
        .read_raw(local_status)
        .await
        .unwrap_or_default()
}

/// Content hashes of the replicated tables (see `store::sync::table_hashes`).
pub async fn hashes(sync: &Sync) -> Value {
    let store = sync.store().clone();
    let schema = store.schema();
    match store
        .read_raw(move |c| crate::store::sync::table_hashes(c, &schema))
        .await
    {
        Ok(h) => json!(h),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Snapshots as status shows them: the bucket's, this node's service, the policy's figures
/// at the node's position and its latest decisions.
pub async fn snapshots_json(sync: &Sync, cached: bool) -> Value {
    use crate::store::snapshot::stats;
    let mut out = sync.snapshots().status_json(cached).await;
    let store = sync.store();
    out["stats"] = match store.read_raw(stats::current).await {
        Ok(s) => json!(s),
        Err(e) => json!({"error": e.to_string()}),
    };
    out["decisions"] = match store.read_raw(|c| stats::decisions(c, 10)).await {
        Ok(d) => json!(d),
        Err(e) => json!({"error": e.to_string()}),
    };
    out["bootstrap"] = json!(sync.last_bootstrap());
    out
}

/// The status document (superuser only). What it asks JetStream it asks at once, each part
/// bounded to half a second, so it answers within about that while JetStream does not (the
/// dashboard and the chaos suite poll it through outages).
pub async fn status_json(sync: &Sync) -> Value {
    let (local, state, positions, snapshots) = tokio::join!(
        local(sync),
        sync.stream_state(),
        node_positions(sync),
        snapshots_json(sync, true)
    );
    // The state just asked (or, when JetStream did not answer, the last sequence seen).
    let stream_seq = sync.counters().stream_last_seq.load(Ordering::Relaxed);
    let nodes = node_positions_json(positions, state.as_ref().map(|s| s.last_seq));
    let stream = state.as_ref().map(|s| {
        json!({
            "name": format!("SYNCBASE_{}", sync.config().cluster),
            "firstSeq": s.first_seq,
            "lastSeq": s.last_seq,
            "messages": s.messages,
            "bytes": s.bytes,
            "replicas": s.replicas,
            "leader": s.leader,
            "servers": s.servers.iter().map(|p| json!({"name": p.name, "current": p.current})).collect::<Vec<_>>(),
        })
    });
    let dead = sync
        .store()
        .read_raw(|c| dead_letters(c, 100))
        .await
        .unwrap_or_default();
    // A list of {target, active, previous}: targets are not strings, so not map keys.
    let bindings: Value =
        serde_json::from_str(&sync.plugins().runtime.bindings().to_json()).unwrap_or_default();
    let c = sync.counters();
    let last_error = sync.last_error();
    json!({
        "nodeId": sync.node_id(),
        "mode": sync.mode(),
        "cluster": sync.config().cluster,
        "nats": {
            "connected": sync.connected(),
            "server": sync.server_name(),
            "lastError": last_error.as_ref().map(|e| e.message.clone()),
            "lastErrorAt": last_error.as_ref().map(|e| {
                chrono::DateTime::<chrono::Utc>::from(e.at)
                    .format("%Y-%m-%d %H:%M:%S%.3fZ")
                    .to_string()
            }),
            "lastErrorIn": last_error.as_ref().map(|e| e.part.name()),
        },
        "streamSeq": stream_seq,
        "stream": stream,
        "appliedSeq": local.applied_seq,
        "lag": stream_seq.saturating_sub(local.applied_seq),
        "outboxBacklog": local.outbox_backlog,
        "pendingOverlay": local.pending_overlay,
        "deadLetters": local.dead_letters,
        "recentDeadLetters": dead,
        "plugins": bindings,
        "pluginFoldWaits": sync.plugin_fold_waits(),
        "peersSeen": sync.peers(),
        "published": c.published.load(Ordering::Relaxed),
        "applied": c.applied.load(Ordering::Relaxed),
        "duplicates": c.duplicates.load(Ordering::Relaxed),
        "readFromStream": c.read_from_stream.load(Ordering::Relaxed),
        "uptimeSeconds": sync.uptime().as_secs(),
        "nodes": nodes,
        "join": join_info(sync),
        "phase": sync.readiness_at(stream_seq).1,
        "snapshots": snapshots,
    })
}

/// Each node's position in the log, from its durable consumer (`null` while JetStream does
/// not answer within half a second: the page polling this must not hang on an outage).
async fn node_positions(sync: &Sync) -> Option<Vec<crate::replication::NodePosition>> {
    let log = sync.inner.log.borrow().clone()?;
    let wait = std::time::Duration::from_millis(500);
    tokio::time::timeout(wait, log.node_positions())
        .await
        .ok()?
        .ok()
}

/// [`node_positions`] as status shows them, with each node's lag behind `last`.
fn node_positions_json(
    positions: Option<Vec<crate::replication::NodePosition>>,
    last: Option<u64>,
) -> Value {
    match positions {
        Some(list) => Value::Array(
            list.into_iter()
                .map(|n| {
                    json!({
                        "nodeId": n.node_id,
                        "appliedSeq": n.acked_seq,
                        "lag": last.map(|l| l.saturating_sub(n.acked_seq)),
                        "pending": n.pending,
                        "connected": n.waiting > 0,
                    })
                })
                .collect(),
        ),
        None => Value::Null,
    }
}

/// What another node needs to join this one's cluster: the addresses it must be given
/// (`syncbase serve` flags), never credentials. The dashboard's "Add a node" builds the
/// command from this.
fn join_info(sync: &Sync) -> Value {
    let cfg = sync.config();
    match &cfg.source {
        Source::Embedded(opts) => json!({
            "mode": "embedded",
            "cluster": cfg.cluster,
            "natsListen": opts.client_listen.to_string(),
            "clusterListen": opts.cluster.as_ref().map(|c| c.listen.to_string()),
            "routes": opts.cluster.as_ref().map(|c| c.join.clone()).unwrap_or_default(),
        }),
        Source::External(opts) => json!({
            "mode": "external",
            "cluster": cfg.cluster,
            "natsUrls": opts.urls,
            "credsFile": opts.creds_file.is_some(),
            "user": opts.user.is_some(),
            "tls": opts.tls_ca.is_some() || opts.tls_cert.is_some(),
        }),
    }
}

/// Prometheus text exposition of the same figures.
pub async fn metrics_text(sync: &Sync) -> String {
    let local = local(sync).await;
    let stream_seq = sync.stream_last_seq().await;
    let c = sync.counters();
    let node = sync.node_id();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP syncbase_{name} {help}");
        let _ = writeln!(out, "# TYPE syncbase_{name} {kind}");
        let _ = writeln!(out, "syncbase_{name}{{node=\"{node}\"}} {value}");
    };
    metric(
        "nats_connected",
        "gauge",
        "1 when the node holds a NATS connection.",
        u64::from(sync.connected()),
    );
    metric(
        "stream_seq",
        "gauge",
        "Last sequence of the replication stream.",
        stream_seq,
    );
    metric(
        "applied_seq",
        "gauge",
        "Last stream sequence folded into SQLite.",
        local.applied_seq,
    );
    metric(
        "lag_events",
        "gauge",
        "Stream events not yet folded here.",
        stream_seq.saturating_sub(local.applied_seq),
    );
    metric(
        "outbox_backlog",
        "gauge",
        "Local events waiting to be published.",
        local.outbox_backlog,
    );
    metric(
        "pending_overlay",
        "gauge",
        "Local writes shown before their event came back.",
        local.pending_overlay,
    );
    metric(
        "dead_letters",
        "gauge",
        "Events this node could not apply.",
        local.dead_letters,
    );
    metric(
        "published_total",
        "counter",
        "Events published by this node.",
        c.published.load(Ordering::Relaxed),
    );
    metric(
        "publish_errors_total",
        "counter",
        "Failed publish rounds.",
        c.publish_errors.load(Ordering::Relaxed),
    );
    metric(
        "applied_total",
        "counter",
        "Events folded by this node.",
        c.applied.load(Ordering::Relaxed),
    );
    metric(
        "duplicates_total",
        "counter",
        "Republished events recognised and skipped.",
        c.duplicates.load(Ordering::Relaxed),
    );
    metric(
        "events_read_from_stream_total",
        "counter",
        "Events read straight from the stream while this node's consumer could not deliver.",
        c.read_from_stream.load(Ordering::Relaxed),
    );
    metric(
        "plugin_fold_waits_total",
        "counter",
        "Times the fold waited to fetch or compile a plugin it had not prepared.",
        sync.plugin_fold_waits(),
    );
    metric(
        "apply_batches_total",
        "counter",
        "Fold transactions.",
        c.batches.load(Ordering::Relaxed),
    );
    let snapshots = sync.snapshots().status();
    metric(
        "snapshots_taken_total",
        "counter",
        "Snapshots this node took and stored.",
        snapshots.taken,
    );
    metric(
        "ready",
        "gauge",
        "1 when the node has folded the log to within a small lag of its end.",
        u64::from(sync.readiness().await.0),
    );
    if let Some(bucket) = sync.snapshots().bucket_now()
        && let Ok(Ok(u)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), bucket.usage()).await
    {
        metric(
            "stream_first_seq",
            "gauge",
            "First sequence the stream holds (earlier ones were compacted into snapshots).",
            u.first_seq,
        );
        metric("stream_bytes", "gauge", "Bytes the stream holds.", u.bytes);
    }
    out
}
