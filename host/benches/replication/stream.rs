//! Reading the log back after the phases: what they actually wrote (event sizes), and which
//! events C's fold had to hand to the resolver, by replaying the fold's conflict test.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use syncbase::replication::{ConnectOptions, ConsumerOptions, Event, Log, StreamOptions};

use crate::node::CLUSTER;

/// What the stream holds in a range, as C's fold saw it.
#[derive(Debug, Default, Clone)]
pub struct RangeFacts {
    pub events: u64,
    /// Record events whose base was not the canonical version: the fold asked the resolver.
    pub resolved: u64,
    /// Of those, the ones the resolver kept the current version for (no row written).
    pub kept: u64,
    /// Encoded sizes of the record events, sorted.
    pub sizes: Vec<usize>,
}

impl RangeFacts {
    pub fn median_size(&self) -> usize {
        self.sizes.get(self.sizes.len() / 2).copied().unwrap_or(0)
    }
}

/// Reads the stream through `nats_url` from `from + 1` to `ranges`' last end and replays the
/// fold's conflict test (base == canonical version, else the resolver, which is LWW either
/// way here) for every record event; returns the facts of each `(after, upto]` range.
pub async fn read_back(
    nats_url: &str,
    from: u64,
    ranges: &[(u64, u64)],
) -> Result<Vec<RangeFacts>> {
    let end = ranges.iter().map(|r| r.1).max().unwrap_or(from);
    let conn = ConnectOptions {
        urls: vec![nats_url.to_owned()],
        name: Some("syncbase-bench-reader".into()),
        ..Default::default()
    };
    let log = Log::connect(&conn, &StreamOptions::new(CLUSTER)).await?;
    let opts = ConsumerOptions {
        resume_after: Some(from),
        ..Default::default()
    };
    let mut consumer = log.consumer("benchreader", opts).await?;
    // The canonical version of every key: (event id, hlc, origin).
    let mut versions: HashMap<(String, String), (String, u64, String)> = HashMap::new();
    let mut facts = vec![RangeFacts::default(); ranges.len()];
    let (mut seq, mut errors) = (from, 0);
    while seq < end {
        let d = match consumer.next_timeout(Duration::from_secs(30)).await {
            Ok(Some(d)) => d,
            Ok(None) => bail!("stream read stalled at {seq} of {end}"),
            // Transient (e.g. "no responders" while the consumer settles): the consumer
            // repositions itself on the next call.
            Err(e) if errors < 10 => {
                errors += 1;
                eprintln!("  reading the stream back: {e}; retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        seq = d.seq;
        let size = d.payload().len();
        let verdict = d
            .event
            .as_ref()
            .ok()
            .and_then(|e| fold_step(&mut versions, e));
        for (f, (lo, hi)) in facts.iter_mut().zip(ranges) {
            if seq > *lo && seq <= *hi {
                f.events += 1;
                if let Some(v) = verdict {
                    f.sizes.push(size);
                    f.resolved += u64::from(v != Verdict::InOrder);
                    f.kept += u64::from(v == Verdict::Kept);
                }
            }
        }
        let _ = d.ack().await;
    }
    for f in &mut facts {
        f.sizes.sort_unstable();
    }
    Ok(facts)
}

/// How the fold treats a record event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Its base is the canonical version: taken without asking the resolver.
    InOrder,
    /// The resolver took it.
    Taken,
    /// The resolver kept the current version.
    Kept,
}

/// One record event through the fold's decision (`None` for other events).
fn fold_step(
    versions: &mut HashMap<(String, String), (String, u64, String)>,
    e: &Event,
) -> Option<Verdict> {
    if !e.kind.is_record() {
        return None;
    }
    let key = (
        e.collection.id.clone(),
        e.record_id.clone().unwrap_or_default(),
    );
    let current = versions.get(&key);
    let in_order = e.base.as_ref().map(|b| b.as_str()) == current.map(|v| v.0.as_str());
    // The resolver is last-writer-wins whichever way it is bound here.
    let later = current
        .is_none_or(|(_, hlc, origin)| (e.hlc.0, e.origin.as_str()) > (*hlc, origin.as_str()));
    let verdict = match (in_order, later) {
        (true, _) => Verdict::InOrder,
        (false, true) => Verdict::Taken,
        (false, false) => Verdict::Kept,
    };
    if verdict != Verdict::Kept {
        versions.insert(key, (e.id.to_string(), e.hlc.0, e.origin.clone()));
    }
    Some(verdict)
}
