//! What must hold after the faults: every node caught up with the log, identical tables, no
//! acknowledged write missing from the log, counters equal to their acknowledged increments,
//! identical dead letters and bindings, and HLC causality in the log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::Value;
use syncbase::replication::{Event, EventKind};

use super::cluster::{CLUSTER, Cluster};
use super::workload::{Kind, Outcome, Write, hot_id};

/// The harness's own connection to the log, straight to the servers (past the proxies).
#[derive(Clone)]
pub struct LogView {
    js: jetstream::Context,
    stream: String,
}

impl LogView {
    pub async fn connect(urls: &[String]) -> LogView {
        let addrs: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|u| u.parse().expect("server url"))
            .collect();
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(2)))
            .retry_on_initial_connect()
            .connect(addrs)
            .await
            .expect("harness connects to NATS");
        LogView {
            js: jetstream::new(client),
            stream: format!("SYNCBASE_{CLUSTER}"),
        }
    }

    /// Creates the stream with three replicas before any node starts (the nodes then find it).
    pub async fn create_stream(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let config = jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("syncbase.{CLUSTER}.events")],
                storage: jetstream::stream::StorageType::File,
                num_replicas: 3,
                duplicate_window: Duration::from_secs(120),
                deny_delete: true,
                allow_direct: true,
                ..Default::default()
            };
            match self.js.get_or_create_stream(config).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(format!("the stream was never created: {e}"));
                    }
                    // Retry interval while the servers elect a meta leader.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The stream's last sequence, if JetStream answers.
    pub async fn last_seq(&self) -> Option<u64> {
        let stream = self.js.get_stream(&self.stream).await.ok()?;
        Some(stream.cached_info().state.last_sequence)
    }

    /// Whether the JetStream API answers (the cluster has a meta leader): an account info
    /// request succeeds within half a second.
    pub async fn api_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_millis(500), self.js.query_account()).await,
            Ok(Ok(_))
        )
    }

    /// Whether the stream has a leader and every other replica is current with it (no lag).
    pub async fn replicas_current(&self) -> bool {
        let Ok(mut stream) = self.js.get_stream(&self.stream).await else {
            return false;
        };
        let Ok(info) = stream.info().await else {
            return false;
        };
        info.cluster.as_ref().is_some_and(|c| {
            c.leader.is_some()
                && c.replicas.len() + 1 >= 3
                && c.replicas
                    .iter()
                    .all(|r| r.current && !r.offline && r.lag.unwrap_or(0) == 0)
        })
    }

    /// The index of the server holding the stream's leader (servers are named `s<i>`).
    pub async fn leader(&self) -> Option<usize> {
        let stream = self.js.get_stream(&self.stream).await.ok()?;
        let name = stream.cached_info().cluster.as_ref()?.leader.clone()?;
        name.strip_prefix('s')?.parse().ok()
    }

    /// Every event in the log, in order (retrying while the stream is unavailable).
    pub async fn events(&self) -> Result<Vec<(u64, Event)>, String> {
        self.events_through(0).await
    }

    /// Every event in the log, in order, through at least sequence `min`. Right after a
    /// partition heals, a server deposed while cut off may still answer for the stream with
    /// its shorter log: such an answer is retried, not taken for the log (and a stream that
    /// keeps answering below `min` is reported as one that lost events the nodes folded).
    pub async fn events_through(&self, min: u64) -> Result<Vec<(u64, Event)>, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_events(min).await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() >= deadline => return Err(e),
                // Retry interval while the stream recovers.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Every event through `last`, each read by its sequence from the stream leader (a
    /// message get), and the stream's replica state: a second opinion when the ordered
    /// consumer's read (which reads one replica) lacks acknowledged writes.
    pub async fn events_from_leader(
        &self,
        last: u64,
    ) -> Result<(Vec<(u64, Event)>, String), String> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let replicas = format!("{:?}", stream.cached_info().cluster);
        let mut out = Vec::new();
        for seq in 1..=last {
            match stream.get_raw_message(seq).await {
                Ok(m) => {
                    let event = Event::decode(&m.payload).map_err(|e| format!("seq {seq}: {e}"))?;
                    out.push((seq, event));
                }
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(format!("seq {seq}: {e}")),
            }
        }
        Ok((out, replicas))
    }

    async fn try_events(&self, min: u64) -> Result<Vec<(u64, Event)>, String> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let info = stream.cached_info();
        let last = info.state.last_sequence;
        if last < min {
            return Err(format!(
                "the stream answers last sequence {last}, below the {min} the nodes folded (cluster {:?})",
                info.cluster
            ));
        }
        let mut out = Vec::new();
        if last == 0 {
            return Ok(out);
        }
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        {
            let m = m.map_err(|e| e.to_string())?;
            let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
            let event = Event::decode(&m.payload).map_err(|e| format!("seq {seq}: {e}"))?;
            out.push((seq, event));
            if seq >= last {
                return Ok(out);
            }
        }
        Err(format!("read {} of {last} events", out.len()))
    }
}

/// Whether every node is up, connected, has published its outbox and folded the whole log.
pub async fn caught_up(cluster: &Cluster, log: &LogView) -> Result<(), String> {
    let Some(last) = log.last_seq().await else {
        return Err("the stream does not answer".into());
    };
    for n in &cluster.nodes {
        let Some(s) = n.status().await else {
            return Err(format!("{} does not answer", n.id));
        };
        let quiet = s["nats"]["connected"] == true
            && s["outboxBacklog"] == 0
            && s["pendingOverlay"] == 0
            && s["appliedSeq"] == last;
        if !quiet {
            return Err(format!(
                "{} not caught up with stream seq {last}: applied {}, outbox {}, overlay {}, connected {}, last error {}",
                n.id,
                s["appliedSeq"],
                s["outboxBacklog"],
                s["pendingOverlay"],
                s["nats"]["connected"],
                s["nats"]["lastError"]
            ));
        }
    }
    // The stream may have moved on while the nodes were asked.
    match log.last_seq().await {
        Some(again) if again == last => Ok(()),
        other => Err(format!("stream moved from {last} to {other:?}")),
    }
}

/// Waits for [`caught_up`]; returns how long it took.
pub async fn wait_caught_up(
    cluster: &Cluster,
    log: &LogView,
    limit: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        match caught_up(cluster, log).await {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() >= limit => {
                return Err(format!("not caught up after {limit:?}: {e}"));
            }
            // Poll interval of the deadline-bounded wait.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Writes acknowledged after `?sync=published` by a node killed right after: each must be in
/// the log before that node restarts.
#[derive(Debug, Default)]
pub struct Extra {
    pub published_before_kill: Vec<String>,
}

/// The end-of-run checks, after [`wait_caught_up`]. Returns every violation found.
pub async fn final_checks(cluster: &Cluster, log: &LogView, writes: &[Write]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut statuses = Vec::new();
    for n in &cluster.nodes {
        // Hashing reads every row: on a loaded machine that takes more than a status poll's 3 s
        // (seed 3043 failed on "does not answer" while the nodes had converged).
        match n
            .get_within("/api/sync/status?hashes=1", Duration::from_secs(30))
            .await
        {
            Some(s) => statuses.push(s),
            None => {
                failures.push(format!("{} does not answer status", n.id));
                return failures;
            }
        }
    }
    let first = &statuses[0];
    for (i, s) in statuses.iter().enumerate().skip(1) {
        if s["tableHashes"] != first["tableHashes"] {
            failures.push(format!(
                "table hashes of n{i} differ from n0: {} vs {}",
                s["tableHashes"], first["tableHashes"]
            ));
        }
        let dead = |s: &Value| {
            let list: Vec<Value> = s["recentDeadLetters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|d| {
                    serde_json::json!({"seq": d["seq"], "eventId": d["eventId"], "reason": d["reason"]})
                })
                .collect();
            (s["deadLetters"].clone(), list)
        };
        if dead(s) != dead(first) {
            failures.push(format!(
                "dead letters of n{i} differ from n0: {:?} vs {:?}",
                dead(s),
                dead(first)
            ));
        }
        if s["plugins"] != first["plugins"] {
            failures.push(format!(
                "plugin bindings of n{i} differ from n0: {} vs {}",
                s["plugins"], first["plugins"]
            ));
        }
    }
    let folded = statuses
        .iter()
        .filter_map(|s| s["appliedSeq"].as_u64())
        .max()
        .unwrap_or(0);
    let events = match log.events_through(folded).await {
        Ok(e) => e,
        Err(e) => {
            failures.push(format!("could not read the log: {e}"));
            return failures;
        }
    };
    let lost = acked_writes_in_log(&events, writes);
    if !lost.is_empty() {
        // Which replica lacks them? Read the log again through the stream leader.
        let last = events.last().map_or(0, |(seq, _)| *seq).max(folded);
        match log.events_from_leader(last).await {
            Ok((again, replicas)) => failures.push(format!(
                "{} acknowledged writes are missing from the log read through an ordered consumer \
                 (through seq {}); read again by sequence from the stream leader, {} are \
                 missing (through seq {}); replicas: {replicas}",
                lost.len(),
                events.last().map_or(0, |(seq, _)| *seq),
                acked_writes_in_log(&again, writes).len(),
                again.last().map_or(0, |(seq, _)| *seq),
            )),
            Err(e) => failures.push(format!("reading the log from the stream leader: {e}")),
        }
    }
    failures.extend(lost);
    failures.extend(hlc_causality(&events));
    failures.extend(counters(cluster, writes).await);
    failures.extend(acked_creates_exist(cluster, writes).await);
    failures
}

/// Every acknowledged write is an event in the log: creates, updates and increments by their
/// token, deletes by their record.
fn acked_writes_in_log(events: &[(u64, Event)], writes: &[Write]) -> Vec<String> {
    let mut tokens: HashSet<&str> = HashSet::new();
    let mut deletes: HashSet<(&str, &str)> = HashSet::new();
    for (_, e) in events {
        if e.kind == EventKind::RecordDelete {
            if let Some(id) = &e.record_id {
                deletes.insert((e.collection.name.as_str(), id.as_str()));
            }
            continue;
        }
        if let Some(data) = &e.data {
            for field in ["v", "a", "b", "c", "last"] {
                if let Some(t) = data.get(field).and_then(Value::as_str) {
                    tokens.insert(t);
                }
            }
        }
    }
    let mut failures = Vec::new();
    for w in writes.iter().filter(|w| w.outcome == Outcome::Acked) {
        let found = match w.kind {
            Kind::Delete => deletes.contains(&(w.coll, w.id.as_str())),
            _ => tokens.contains(w.token.as_str()),
        };
        if !found {
            failures.push(format!(
                "acknowledged write lost: {:?} {} {} on n{} (sync={:?}, status {:?}, token {})",
                w.kind, w.coll, w.id, w.node, w.concern, w.status, w.token
            ));
        }
    }
    failures
}

/// An event based on a version the log holds was written by a node that had folded that
/// version, so its hybrid logical clock had observed it: the event's HLC must be larger, however
/// skewed the writer's wall clock was.
fn hlc_causality(events: &[(u64, Event)]) -> Vec<String> {
    let hlc: HashMap<String, u64> = events
        .iter()
        .map(|(_, e)| (e.id.to_string(), e.hlc.0))
        .collect();
    let mut failures = Vec::new();
    for (seq, e) in events {
        let Some(base) = &e.base else { continue };
        if let Some(&before) = hlc.get(&base.to_string())
            && e.hlc.0 <= before
        {
            failures.push(format!(
                "HLC causality broken at seq {seq}: event {} from {} has HLC {} <= its base's {}",
                e.id,
                e.origin,
                e.hlc,
                syncbase::replication::Hlc(before)
            ));
        }
    }
    failures
}

/// Each counter ends between its acknowledged increments and those plus the ones whose outcome
/// is unknown.
async fn counters(cluster: &Cluster, writes: &[Write]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut bounds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for w in writes.iter().filter(|w| w.kind == Kind::Increment) {
        let b = bounds.entry(w.id.as_str()).or_default();
        match w.outcome {
            Outcome::Acked => b.0 += 1,
            Outcome::Unknown => b.1 += 1,
            Outcome::Refused => {}
        }
    }
    for i in 0..super::workload::HOT_COUNTERS {
        let id = hot_id("k", i);
        let (acked, unknown) = bounds.get(id.as_str()).copied().unwrap_or_default();
        let Some(rec) = cluster.nodes[0]
            .get(&format!("/api/collections/counters/records/{id}"))
            .await
        else {
            failures.push(format!("counter {id} unreadable"));
            continue;
        };
        let likes = rec["likes"].as_u64().unwrap_or(u64::MAX);
        if likes < acked || likes > acked + unknown {
            failures.push(format!(
                "counter {id} is {likes}, but {acked} increments were acknowledged and {unknown} unknown"
            ));
        }
    }
    failures
}

/// Records created with an acknowledgement and never targeted by a delete exist.
async fn acked_creates_exist(cluster: &Cluster, writes: &[Write]) -> Vec<String> {
    let deleted: HashSet<&str> = writes
        .iter()
        .filter(|w| w.kind == Kind::Delete)
        .map(|w| w.id.as_str())
        .collect();
    let mut failures = Vec::new();
    let mut present: HashSet<String> = HashSet::new();
    let mut page = 1;
    loop {
        let Some(body) = cluster.nodes[0]
            .get(&format!(
                "/api/collections/lww/records?perPage=500&page={page}&fields=id&skipTotal=1"
            ))
            .await
        else {
            failures.push("listing lww failed".into());
            return failures;
        };
        let items = body["items"].as_array().cloned().unwrap_or_default();
        present.extend(
            items
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string)),
        );
        if items.len() < 500 {
            break;
        }
        page += 1;
    }
    for w in writes.iter().filter(|w| {
        w.kind == Kind::Create && w.outcome == Outcome::Acked && !deleted.contains(w.id.as_str())
    }) {
        if !present.contains(&w.id) {
            failures.push(format!(
                "acknowledged create {} from n{} is missing",
                w.id, w.node
            ));
        }
    }
    failures
}
