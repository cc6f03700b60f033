//! A node's durable pull consumer: the log's events, strictly in stream order, each once.
//!
//! The durable consumer (`node_<id>`, cumulative acks, deliver all) lets the servers track each
//! node's progress, but the truth about what a node applied is its SQLite `applied_seq`, stored
//! in the same transaction as the rows. JetStream alone would not keep strict order across
//! hiccups: after a crash the consumer still holds unacknowledged deliveries and redelivers
//! them *after* newer messages once `ack_wait` expires. So this wrapper keeps the order itself:
//!
//! * On open (and whenever order might break) the consumer is *positioned*: reused as-is only
//!   if it has nothing pending and its ack floor is exactly where this node resumes; otherwise
//!   it is deleted and recreated to start at `resume_after + 1`.
//! * Deliveries at or below the last yielded sequence (redeliveries) are skipped.
//! * A gap in the consumer's delivery sequence means a delivery was lost on the way (a slow
//!   client's buffer, a reconnect): the consumer is repositioned after the last yielded event,
//!   exactly like an ordered consumer resets itself.
//!
//! Callers ack after the transaction that applied a delivery has committed. Acks are
//! cumulative (`AckPolicy::All`): acking a delivery acks every one before it, so the apply path
//! acks once per batch, not once per event. An unacknowledged window of `max_ack_pending`
//! deliveries is the apply path's backpressure.
//!
//! Availability: a pull request waiting at a consumer leader that died is never answered, and
//! nothing tells the client. Three things bound how long the fold can stall on one: the idle
//! heartbeat (1 s, so a dead pull is noticed within 2 s), a *tip* the caller feeds with stream
//! sequences it knows exist (its own publish acks): when the tip is ahead and nothing arrives
//! for [`STALL`], the consumer repositions at once; and every JetStream API call of positioning
//! is bounded ([`INFO_TIMEOUT`], [`API_TIMEOUT`]) and retried every 50-200 ms, so a consumer whose leader is
//! being elected resumes within a fraction of a second of the election, not after a request
//! timeout or a long backoff.
//!
//! While the consumer cannot be positioned at all (its own Raft leader is being elected, or the
//! server refuses to create it) the stream itself may already be readable: the stream and each
//! consumer elect their leaders separately, and a consumer's election can end seconds after the
//! stream's. Meanwhile `next` reads the next sequences straight from the stream (a message get,
//! answered by the stream's leader), in order, one at a time, and tries to position the
//! consumer again at least every [`READ_SPELL`]; once it can, the consumer starts after the
//! last event read. The fold never waits for a consumer election it does not need.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream::Stream as JsStream};
use futures::StreamExt;
use tokio::sync::watch;

use super::event::{DecodeError, Event};
use super::log::{Log, LogError, check_name};

/// With the tip ahead of the last delivery, how long without a delivery counts as a stalled pull.
pub const STALL: Duration = Duration::from_millis(400);

/// How long without a delivery before the consumer asks the stream whether it moved on.
pub const PROBE: Duration = Duration::from_secs(2);

/// The first probe's wait right after the consumer was repositioned because of trouble (it
/// doubles up to [`PROBE`]): around a leader change a new pull may be parked at a leader that
/// is about to step down, and a node that publishes nothing itself has no tip to notice it by.
pub const FIRST_PROBE_AFTER_TROUBLE: Duration = Duration::from_millis(250);

/// How long after such a repositioning the probes start short.
pub const SETTLING: Duration = Duration::from_secs(10);

/// The longest one JetStream API call of positioning may take before it is retried.
pub const API_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumer info request that starts every positioning: a consumer whose leader is being
/// elected does not answer at all, so this bounds how late a retry notices the new leader.
pub const INFO_TIMEOUT: Duration = Duration::from_millis(750);

/// While the consumer cannot be positioned, how long `next` reads the stream directly before it
/// tries to position the consumer again.
pub const READ_SPELL: Duration = Duration::from_secs(1);

/// Direct reads in a row that find nothing at a sequence the tip says exists: the replica that
/// answers them (the connected server's own, when it has one) is behind, so the node should
/// read through another server ([`EventConsumer::take_server_behind`]).
pub const BEHIND_MISSES: u32 = 2;

/// How often one direct read asks again when a replica answers "not found" for an event the
/// tip says exists (another replica may answer the next request).
pub const DIRECT_TRIES: u32 = 3;

/// Bounds a JetStream API call by [`API_TIMEOUT`].
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {API_TIMEOUT:?}")),
    }
}

/// How this node's consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The last stream sequence this node applied (from SQLite). `None` trusts the server's
    /// ack floor instead — fine for tools, not for the apply path.
    pub resume_after: Option<u64>,
    /// Deliveries not acked within this are redelivered (and then skipped here); keep it well
    /// above the longest apply batch.
    pub ack_wait: Duration,
    /// Unacked deliveries the server lets out before it waits for acks.
    pub max_ack_pending: i64,
    /// Messages requested per pull.
    pub batch: usize,
    /// Idle heartbeat of a pull; missing heartbeats surface as errors from `next`.
    pub heartbeat: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            resume_after: None,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            batch: 1_000,
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// One event as delivered: its position and the decoded event (or why it did not decode: an
/// event this node cannot read is still a position in the fold, to be dead-lettered).
pub struct Delivery {
    pub seq: u64,
    pub event: Result<Event, DecodeError>,
    source: Source,
}

/// Where a delivery came from.
enum Source {
    /// Pulled through the consumer (acked through it).
    Pulled(Box<jetstream::Message>),
    /// Read straight from the stream while the consumer could not deliver (nothing to ack:
    /// the consumer is recreated after the last event read).
    Read(bytes::Bytes),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.seq)
            .field("event", &self.event)
            .finish()
    }
}

impl Delivery {
    /// How many more messages the stream held for this consumer when this one was delivered
    /// (0 when it was the last): whether the node is catching up.
    /// A delivery read from the stream reports 1: the stream may hold more, and the caller's
    /// batch asks for them (a read that finds nothing ends the batch).
    pub fn pending(&self) -> u64 {
        match &self.source {
            Source::Pulled(m) => m.info().map_or(0, |i| i.pending),
            Source::Read(_) => 1,
        }
    }

    /// The raw payload, shared (no copy).
    pub fn payload_bytes(&self) -> bytes::Bytes {
        match &self.source {
            Source::Pulled(m) => m.payload.clone(),
            Source::Read(p) => p.clone(),
        }
    }

    /// The raw payload, for dead-lettering an event that did not decode.
    pub fn payload(&self) -> &[u8] {
        match &self.source {
            Source::Pulled(m) => &m.payload,
            Source::Read(p) => p,
        }
    }

    /// Whether this delivery was read straight from the stream (see the module's text).
    pub fn read_from_stream(&self) -> bool {
        matches!(self.source, Source::Read(_))
    }

    /// Acknowledges the delivery and every one before it. Call only after the apply
    /// transaction has committed. A delivery read from the stream has nothing to ack.
    pub async fn ack(&self) -> Result<(), LogError> {
        let Source::Pulled(message) = &self.source else {
            return Ok(());
        };
        message.ack().await.map_err(|e| LogError::Consumer {
            consumer: message
                .info()
                .map(|i| i.consumer.to_string())
                .unwrap_or_default(),
            message: format!("ack of {}: {e}", self.seq),
        })
    }
}

/// The ordered, deduplicated view of this node's durable consumer.
pub struct EventConsumer {
    stream: JsStream,
    /// The same stream, shared with the stall probe.
    probe: Arc<JsStream>,
    name: String,
    opts: ConsumerOptions,
    messages: Option<pull::Stream>,
    /// The last stream sequence yielded (or resumed after).
    last_seq: u64,
    /// The consumer sequence of the last delivery seen since positioning.
    last_cseq: u64,
    repositions: u64,
    /// Consecutive failures to reach the consumer: paces retries while a server restarts.
    failures: u32,
    /// The highest stream sequence known to exist (see [`EventConsumer::follow_tip`]).
    tip: Option<watch::Receiver<u64>>,
    /// `Some(error)` while the consumer cannot deliver, `None` once it can again.
    state: watch::Sender<Option<String>>,
    /// Set after a gap, an error or a stall: the server's view of the consumer cannot be
    /// trusted (a leader that was cut off may answer with a stale state), so the next
    /// positioning recreates it instead of reusing it.
    recreate: bool,
    /// Set while the consumer cannot be positioned: until then `next` reads the stream
    /// directly instead of trying again.
    reading_until: Option<tokio::time::Instant>,
    /// Events read straight from the stream (a health figure).
    read_direct: u64,
    /// Direct reads in a row that found nothing where the tip says an event is.
    behind_misses: u32,
    /// Until when a pull that delivers nothing is probed sooner ([`SETTLING`]).
    settling_until: Option<tokio::time::Instant>,
}

impl EventConsumer {
    pub(crate) async fn open(
        log: &Log,
        node_id: &str,
        opts: ConsumerOptions,
    ) -> Result<EventConsumer, LogError> {
        check_name("node id", node_id)?;
        let name = format!("node_{node_id}");
        let stream = log
            .jetstream()
            .get_stream(log.stream_name())
            .await
            .map_err(|e| LogError::Consumer {
                consumer: name.clone(),
                message: e.to_string(),
            })?;
        let mut consumer = EventConsumer {
            probe: Arc::new(stream.clone()),
            stream,
            name,
            last_seq: 0,
            last_cseq: 0,
            opts,
            messages: None,
            repositions: 0,
            failures: 0,
            tip: None,
            state: watch::channel(None).0,
            recreate: false,
            reading_until: None,
            read_direct: 0,
            behind_misses: 0,
            settling_until: None,
        };
        consumer.last_seq = match consumer.opts.resume_after {
            Some(seq) => seq,
            None => consumer
                .info()
                .await?
                .map_or(0, |i| i.ack_floor.stream_sequence),
        };
        if let Err(e) = consumer.position().await {
            // A tool trusting the server's ack floor needs the consumer; the apply path
            // (which knows where it resumes) can read the stream until the consumer works.
            if consumer.opts.resume_after.is_none() {
                return Err(e);
            }
            consumer.failures = 1;
            consumer.recreate = true;
            consumer.set_state(Some(&e));
        }
        Ok(consumer)
    }

    /// The consumer's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last sequence yielded by [`EventConsumer::next`] (or resumed after).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// How often the consumer was recreated to keep order (a health figure).
    pub fn repositions(&self) -> u64 {
        self.repositions
    }

    /// How many events were read straight from the stream while the consumer could not
    /// deliver (a health figure).
    pub fn read_direct(&self) -> u64 {
        self.read_direct
    }

    /// Whether the consumer works: `Some(error)` after a failure, `None` once it is positioned
    /// or delivers again (for status: an error that is over is not shown).
    pub fn state(&self) -> watch::Receiver<Option<String>> {
        self.state.subscribe()
    }

    fn set_state(&self, error: Option<&LogError>) {
        self.state.send_if_modified(|s| {
            let new = error.map(ToString::to_string);
            let changed = *s != new;
            *s = new;
            changed
        });
    }

    /// Whether the stream is being read directly and the replica answering has kept missing
    /// events the tip says exist ([`BEHIND_MISSES`]): typically the connected server has just
    /// returned from a pause or a partition and is still catching up, while the cluster (its
    /// meta leader deposed by that return) cannot position the consumer. Another server's
    /// replica has them. Answers `true` once per such spell.
    pub fn take_server_behind(&mut self) -> bool {
        if self.behind_misses >= BEHIND_MISSES {
            self.behind_misses = 0;
            return true;
        }
        false
    }

    /// Follows `tip`, the highest stream sequence the caller knows exists (e.g. its publish
    /// acks): a pull that delivers nothing for [`STALL`] while the tip is ahead is dead (its
    /// consumer leader is gone) and is replaced at once.
    pub fn follow_tip(&mut self, tip: watch::Receiver<u64>) {
        self.tip = Some(tip);
    }

    /// Resolves once the stream is known to hold events after `after` and [`STALL`] more has
    /// passed (the caller races it against the next delivery): known from the tip (this
    /// node's publish acks, and other nodes' announcements: `tip.rs`) and confirmed by the
    /// stream, or from asking the stream at the probe's pace without a delivery (first after
    /// `first_probe`, doubling to [`PROBE`]) — the last resort against a pull the servers
    /// silently stopped serving.
    async fn stalled(
        stream: Arc<JsStream>,
        tip: Option<watch::Receiver<u64>>,
        after: u64,
        first_probe: Duration,
    ) {
        let ahead = |stream: Arc<JsStream>| async move {
            match tokio::time::timeout(INFO_TIMEOUT, stream.get_info()).await {
                Ok(Ok(info)) => Some(info.state.last_sequence > after),
                _ => None,
            }
        };
        let tip_ahead = async move {
            let Some(mut tip) = tip else {
                return std::future::pending().await;
            };
            if tip.wait_for(|t| *t > after).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let probe = {
            let stream = stream.clone();
            async move {
                let mut wait = first_probe;
                loop {
                    tokio::time::sleep(wait).await;
                    if ahead(stream.clone()).await == Some(true) {
                        return;
                    }
                    wait = next_probe(wait);
                }
            }
        };
        tokio::pin!(probe);
        let by_tip = tokio::select! {
            _ = tip_ahead => true,
            _ = &mut probe => false,
        };
        tokio::time::sleep(STALL).await;
        // A tip is a hint: the stream itself must say it moved on (no answer at all, while
        // its leader is elected, leaves the tip's word standing).
        if by_tip && ahead(stream).await == Some(false) {
            (&mut probe).await;
            tokio::time::sleep(STALL).await;
        }
    }

    /// The next event after the last one yielded, waiting for it to be published. An `Err`
    /// is transient (server restart, missed heartbeats): call again and the consumer
    /// repositions itself after the last yielded event.
    pub async fn next(&mut self) -> Result<Delivery, LogError> {
        loop {
            if self.messages.is_none() {
                if let Some(until) = self.reading_until {
                    if tokio::time::Instant::now() < until
                        && let Some(d) = self.read_next().await
                    {
                        return Ok(d);
                    }
                    // Nothing more to read (or the spell is over): try the consumer again.
                    self.reading_until = None;
                }
                if self.failures > 0 {
                    // Back off between attempts (50 ms doubling to 200 ms) so a caller retrying
                    // `next` through a server restart does not spin, yet resumes soon after.
                    let ms = 50u64 << self.failures.min(2);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                if let Err(e) = self.position().await {
                    self.failures += 1;
                    self.set_state(Some(&e));
                    // The stream may be readable while the consumer is not (see the module's
                    // text): read on from it for a while.
                    self.reading_until = Some(tokio::time::Instant::now() + READ_SPELL);
                    if let Some(d) = self.read_next().await {
                        if self.failures == 1 {
                            tracing::info!(consumer = %self.name, seq = d.seq, error = %e,
                                "the consumer cannot be positioned; reading the stream directly meanwhile");
                        }
                        return Ok(d);
                    }
                    return Err(e);
                }
                self.set_state(None);
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            // What has arrived is taken at once; only an empty pull is watched for a stall
            // (no timers in the catch-up path).
            let next = match futures::FutureExt::now_or_never(messages.next()) {
                Some(next) => next,
                None => {
                    let first_probe = match self.settling_until {
                        Some(until) if tokio::time::Instant::now() < until => {
                            FIRST_PROBE_AFTER_TROUBLE
                        }
                        _ => PROBE,
                    };
                    let stalled = Self::stalled(
                        self.probe.clone(),
                        self.tip.clone(),
                        self.last_seq,
                        first_probe,
                    );
                    tokio::select! {
                        next = messages.next() => next,
                        _ = stalled => {
                            tracing::warn!(consumer = %self.name, after = self.last_seq,
                                "the stream holds newer events but the pull delivers none; recreating the consumer");
                            self.messages = None;
                            self.recreate = true;
                            self.repositions += 1;
                            continue;
                        }
                    }
                }
            };
            let message = match next {
                Some(Ok(m)) => {
                    self.failures = 0;
                    m
                }
                Some(Err(e)) => {
                    self.messages = None;
                    self.recreate = true;
                    self.failures += 1;
                    let e = self.err(format!("receiving: {e}"));
                    self.set_state(Some(&e));
                    return Err(e);
                }
                None => {
                    self.messages = None;
                    continue;
                }
            };
            let (seq, cseq) = match message.info() {
                Ok(info) => (info.stream_sequence, info.consumer_sequence),
                Err(e) => {
                    self.messages = None;
                    return Err(self.err(format!("delivery without JetStream metadata: {e}")));
                }
            };
            if cseq != self.last_cseq + 1 {
                tracing::warn!(consumer = %self.name, expected = self.last_cseq + 1, got = cseq, after = self.last_seq,
                    "delivery gap; repositioning the consumer to keep order");
                self.messages = None;
                self.recreate = true;
                self.repositions += 1;
                continue;
            }
            self.last_cseq = cseq;
            if seq <= self.last_seq {
                // A redelivery of something already yielded; its ack comes from the caller.
                continue;
            }
            self.last_seq = seq;
            let event = Event::decode(&message.payload);
            return Ok(Delivery {
                seq,
                event,
                source: Source::Pulled(Box::new(message)),
            });
        }
    }

    /// The next event if it has already arrived, without waiting (not even for a timer tick:
    /// tokio's timers round up to a millisecond, too long for the apply path's batching).
    pub fn try_next(&mut self) -> Option<Result<Delivery, LogError>> {
        use futures::FutureExt;
        // `next` is safe to drop while pending: positioning restarts on the next call, and
        // the pull stream loses nothing when its `next` is dropped.
        self.next().now_or_never()
    }

    /// Like [`EventConsumer::next`] but gives up after `timeout` with `Ok(None)`.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, LogError> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Reads the event after the last one yielded straight from the stream, or `None` when the
    /// stream does not hold it (yet) or cannot be reached. The consumer is recreated after it
    /// before it is used again.
    ///
    /// The read goes to the stream's leader (a message get). While the cluster's meta leader is
    /// being elected every server refuses that, as every JetStream API call ("temporarily
    /// unavailable"), for seconds after a paused or cut-off server returns; the stream itself
    /// still takes writes. The read then asks the stream's replicas directly (a direct get):
    /// a message at a sequence is one the stream's group committed and never changes, so any
    /// replica that holds it gives the same event, and one that does not yet answers "not
    /// found", which is retried.
    async fn read_next(&mut self) -> Option<Delivery> {
        let seq = self.last_seq + 1;
        let read = tokio::time::timeout(INFO_TIMEOUT, self.stream.get_raw_message(seq)).await;
        let message = match read {
            Ok(Ok(message)) => message,
            read => {
                let tip = self.tip.as_ref().map_or(0, |t| *t.borrow());
                let mut tries = 0;
                loop {
                    tries += 1;
                    let direct =
                        tokio::time::timeout(INFO_TIMEOUT, self.stream.direct_get(seq)).await;
                    let missing = matches!(&direct, Ok(Err(e))
                        if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound);
                    match direct {
                        Ok(Ok(message)) => break message,
                        // A replica that is behind answered for an event the tip says exists;
                        // the stream's replicas share the request, so asking again usually
                        // reaches one that has it.
                        _ if missing && tip >= seq && tries < DIRECT_TRIES => continue,
                        direct => {
                            if missing && tip >= seq {
                                self.behind_misses += 1;
                            } else {
                                self.behind_misses = 0;
                            }
                            tracing::debug!(consumer = %self.name, seq, tip, tries,
                                read = %outcome(&read), direct = %outcome(&direct),
                                "reading the stream directly found nothing");
                            return None;
                        }
                    }
                }
            }
        };
        if message.sequence != seq {
            return None;
        }
        self.last_seq = seq;
        self.recreate = true;
        self.read_direct += 1;
        self.behind_misses = 0;
        Some(Delivery {
            seq,
            event: Event::decode(&message.payload),
            source: Source::Read(message.payload),
        })
    }

    fn err(&self, message: String) -> LogError {
        LogError::Consumer {
            consumer: self.name.clone(),
            message,
        }
    }

    async fn info(&self) -> Result<Option<jetstream::consumer::Info>, LogError> {
        match tokio::time::timeout(INFO_TIMEOUT, self.stream.consumer_info(&self.name)).await {
            Ok(Ok(info)) => Ok(Some(info)),
            Ok(Err(e)) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
                Ok(None)
            }
            Ok(Err(e)) => Err(self.err(format!("info: {e}"))),
            Err(_) => Err(self.err(format!("info: no answer within {INFO_TIMEOUT:?}"))),
        }
    }

    /// Makes the server-side consumer deliver `last_seq + 1` next, with nothing pending.
    async fn position(&mut self) -> Result<(), LogError> {
        let after = self.last_seq;
        let after_trouble = self.recreate || self.failures > 0;
        let info = self.info().await?;
        // Reuse only on a clean (re)start: after trouble the answer may come from a leader
        // that was cut off and does not know what its successor delivered (seed 2044 of the
        // chaos suite: a reused consumer whose real leader held two deliveries pending waited
        // out ack_wait before redelivering them).
        let reusable = !self.recreate
            && info.as_ref().is_some_and(|i| {
                i.num_ack_pending == 0
                    && i.config.ack_policy == jetstream::consumer::AckPolicy::All
                    && i.ack_floor.stream_sequence == after
                    && i.delivered.stream_sequence == after
            });
        let consumer: jetstream::consumer::PullConsumer =
            if let (true, Some(info)) = (reusable, &info) {
                self.last_cseq = info.delivered.consumer_sequence;
                bounded("get", self.stream.get_consumer(&self.name))
                    .await
                    .map_err(|e| self.err(e))?
            } else {
                if info.is_some() {
                    match bounded("delete", self.stream.delete_consumer(&self.name)).await {
                        Ok(_) => {}
                        // The info came from a server with a stale view (one just back from a
                        // partition) and the cluster has no such consumer: it is gone, as
                        // wanted (retrying would loop on the two views).
                        Err(e) if gone(&e) => {}
                        Err(e) => return Err(self.err(e)),
                    }
                }
                self.last_cseq = 0;
                let deliver_policy = if after == 0 {
                    jetstream::consumer::DeliverPolicy::All
                } else {
                    jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: after + 1,
                    }
                };
                let config = pull::Config {
                    durable_name: Some(self.name.clone()),
                    description: Some("Syncbase apply path of one node".into()),
                    deliver_policy,
                    ack_policy: jetstream::consumer::AckPolicy::All,
                    ack_wait: self.opts.ack_wait,
                    max_ack_pending: self.opts.max_ack_pending,
                    replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                    ..Default::default()
                };
                bounded("create", self.stream.create_consumer(config))
                    .await
                    .map_err(|e| self.err(e))?
            };
        let pull = consumer
            .stream()
            .max_messages_per_batch(self.opts.batch)
            .heartbeat(self.opts.heartbeat)
            .expires(self.opts.heartbeat * 6)
            .messages();
        let messages = bounded("pull", pull).await.map_err(|e| self.err(e))?;
        self.messages = Some(messages);
        self.recreate = false;
        self.behind_misses = 0;
        if after_trouble {
            self.settling_until = Some(tokio::time::Instant::now() + SETTLING);
        }
        Ok(())
    }
}

/// Whether a delete failed because the consumer does not exist (JetStream error code 10014).
fn gone(error: &str) -> bool {
    error.contains("error code 10014")
}

/// How a bounded read ended, for the log.
fn outcome<T, E: std::fmt::Display>(
    read: &Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> String {
    match read {
        Ok(Ok(_)) => "read".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {INFO_TIMEOUT:?}"),
    }
}

/// The wait before the next stall probe: doubling, up to [`PROBE`].
fn next_probe(wait: Duration) -> Duration {
    (wait * 2).min(PROBE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_of_a_consumer_the_cluster_does_not_have_counts_as_done() {
        assert!(gone(
            "delete: JetStream error: consumer not found (code 404, error code 10014)"
        ));
        for other in [
            "delete: JetStream error: JetStream system temporarily unavailable (code 503, error code 10008)",
            "delete: no answer within 2s",
        ] {
            assert!(!gone(other), "{other}");
        }
    }

    #[test]
    fn probes_after_trouble_start_short_and_slow_down_to_the_idle_pace() {
        let mut wait = FIRST_PROBE_AFTER_TROUBLE;
        let mut waits = vec![wait];
        for _ in 0..5 {
            wait = next_probe(wait);
            waits.push(wait);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 2000, 2000]);
        // An idle consumer that had no trouble probes at the idle pace from the start.
        assert_eq!(next_probe(PROBE), PROBE);
    }
}
