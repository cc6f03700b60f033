//! Whether the log is usable right now, the last replication error (with when it happened, and
//! gone once the part that failed works again), and the write-concern waits that depend on it.
//!
//! A `?sync=published|applied` write waits for the publisher or the fold; while the log is
//! unavailable (no connection yet, connection lost, or the publisher's last attempt failed:
//! the stream has no leader) it does not wait out `--sync-timeout`: after [`GRACE`] of
//! unavailability it answers 503, saying the write is committed on this node and will be
//! published when NATS is back. The exception is a node that has not opened the log since it
//! started: a fresh cluster elects its stream's leader for a second or more after its nodes
//! answer `/api/health`, so such a write waits up to `--sync-timeout` for the log to open
//! (and answers the same 503 if it never does), instead of failing the first writes of a
//! cluster that is merely starting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Sync, WaitError};

/// How long the log may stay unavailable during a write-concern wait before it answers 503
/// (a reconnect or a publish retry usually succeeds well within it).
pub const GRACE: Duration = Duration::from_secs(1);

/// Where in replication an error happened; a success there clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Connect,
    Publish,
    Consume,
    Apply,
    Objects,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Connect => "connect",
            Part::Publish => "publish",
            Part::Consume => "consume",
            Part::Apply => "apply",
            Part::Objects => "objects",
        }
    }
}

/// The last replication error.
#[derive(Debug, Clone)]
pub struct LastError {
    pub part: Part,
    pub message: String,
    pub at: SystemTime,
}

/// The node's view of its log's health.
#[derive(Default)]
pub(super) struct Health {
    last_error: Mutex<Option<LastError>>,
    /// The publisher's last attempt failed (cleared by its next success).
    publish_failing: AtomicBool,
    /// The consumer's own state: `Some(error)` while it cannot deliver.
    consumer: Mutex<Option<watch::Receiver<Option<String>>>>,
    /// Since when publishing or consuming has kept failing, and how.
    trouble: Mutex<Trouble>,
}

#[derive(Default)]
struct Trouble {
    since: Option<Instant>,
    /// When the node last switched servers because of it.
    switched: Option<Instant>,
    /// How often it switched during this trouble: each switch that did not end it doubles
    /// the wait for the next (up to 8 times), since the trouble is then likely the whole
    /// cluster's (a meta leader being elected), which no server can escape.
    switches: u32,
    /// The last failure was the server saying it cannot reach JetStream ([`cut_off`]).
    cut_off: bool,
}

impl Trouble {
    /// Records a move at `now` if the last one was at least `base` ago, doubled for each move
    /// already made in this spell (up to 8 times); whether it did.
    fn move_if_quiet(&mut self, now: Instant, base: Duration) -> bool {
        let quiet = self
            .switched
            .is_none_or(|last| now.duration_since(last) >= base * (1 << self.switches.min(3)));
        if quiet {
            self.switched = Some(now);
            self.switches += 1;
        }
        quiet
    }
}

/// JetStream failing this long on one server makes the node try another one: long enough to
/// ride out a stream leader's election, which every server waits for alike.
pub const SWITCH_AFTER: Duration = Duration::from_secs(4);

/// The same when the server itself says it cannot reach JetStream ([`cut_off`]): it is cut off
/// from its peers (a minority partition, lost routes), and another server may well not be.
pub const CUT_OFF_SWITCH_AFTER: Duration = Duration::from_secs(1);

/// How long after its last move the node counts a new move as a new spell of trouble.
const SPELL_OVER: Duration = Duration::from_secs(30);

/// Whether a JetStream error is the connected server saying it cannot reach JetStream at all,
/// rather than a request that went unanswered: it has no meta leader ("JetStream system
/// temporarily unavailable", error code 10008), or nothing behind it serves the stream's subject
/// or API (no responders). A server cut off from its peers answers these at once, for as long
/// as the cut lasts; a healthy one only while the whole cluster elects a leader.
pub fn cut_off(message: &str) -> bool {
    message.contains("error code 10008")
        || message.contains("no responders")
        || message.contains("no stream found for given subject")
}

impl Health {
    pub fn fail(&self, part: Part, e: impl ToString) {
        let message = e.to_string();
        if part == Part::Publish {
            self.publish_failing.store(true, Ordering::Release);
        }
        if matches!(part, Part::Publish | Part::Consume) {
            self.trouble.lock().cut_off = cut_off(&message);
        }
        *self.last_error.lock() = Some(LastError {
            part,
            message,
            at: SystemTime::now(),
        });
    }

    /// Publishing or consuming failed: whether it has failed for [`SWITCH_AFTER`] (or
    /// [`CUT_OFF_SWITCH_AFTER`], when the server says it is cut off) without a success and
    /// without a switch in that time, so the node should try another server.
    pub fn should_switch(&self) -> bool {
        self.should_switch_at(Instant::now())
    }

    fn should_switch_at(&self, now: Instant) -> bool {
        let mut t = self.trouble.lock();
        let base = if t.cut_off {
            CUT_OFF_SWITCH_AFTER
        } else {
            SWITCH_AFTER
        };
        if t.since.is_none() {
            t.since = Some(now);
            t.switches = 0;
        }
        let since = t.since.unwrap_or(now);
        now.duration_since(since) >= base && t.move_if_quiet(now, base)
    }

    /// The consumer reads the stream directly and the connected server's replica keeps
    /// missing events that exist (`EventConsumer::take_server_behind`): whether to move now.
    /// Publishing may work meanwhile (so the trouble clock of [`Health::should_switch`] keeps
    /// restarting); moves for this are paced like cut-off ones, doubling while they go on.
    pub fn should_leave_behind(&self) -> bool {
        self.should_leave_behind_at(Instant::now())
    }

    fn should_leave_behind_at(&self, now: Instant) -> bool {
        let mut t = self.trouble.lock();
        // A spell of moves long over does not slow this one down.
        if t.switched
            .is_some_and(|last| now.duration_since(last) >= SPELL_OVER)
        {
            t.switches = 0;
        }
        t.move_if_quiet(now, CUT_OFF_SWITCH_AFTER)
    }

    /// `part` works again: its error, if it is the last one, is cleared.
    pub fn ok(&self, part: Part) {
        if matches!(part, Part::Publish | Part::Consume) {
            self.trouble.lock().since = None;
        }
        if part == Part::Publish {
            self.publish_failing.store(false, Ordering::Release);
        }
        let mut last = self.last_error.lock();
        if last.as_ref().is_some_and(|e| e.part == part) {
            *last = None;
        }
    }

    pub fn watch_consumer(&self, state: watch::Receiver<Option<String>>) {
        *self.consumer.lock() = Some(state);
    }

    pub fn last_error(&self) -> Option<LastError> {
        let last = self.last_error.lock().clone()?;
        // A consumer error is over once the consumer delivers (or is positioned) again.
        if last.part == Part::Consume
            && let Some(state) = self.consumer.lock().as_ref()
            && state.borrow().is_none()
        {
            return None;
        }
        Some(last)
    }

    pub fn publish_failing(&self) -> bool {
        self.publish_failing.load(Ordering::Acquire)
    }
}

impl Sync {
    /// Why the log cannot take writes right now, or `None` when it can.
    pub fn unavailable(&self) -> Option<String> {
        let last = || {
            self.inner
                .health
                .last_error()
                .map(|e| e.message)
                .unwrap_or_else(|| "not connected to NATS yet".into())
        };
        let log = self.inner.log.borrow().clone();
        match log {
            None => Some(last()),
            Some(log) if !log.connected() => Some("the NATS connection is lost".into()),
            Some(_) if self.inner.health.publish_failing() => Some(last()),
            Some(_) => None,
        }
    }

    /// Waits until JetStream acknowledged the outbox sequence `seq`.
    pub async fn wait_published(&self, seq: u64) -> Result<(), WaitError> {
        self.wait(&self.inner.published, seq, "published").await
    }

    /// Waits until this node folded its own event `seq` (outbox sequence) and reports a dead
    /// letter as a refusal.
    pub async fn wait_applied(&self, seq: u64, event_id: Option<String>) -> Result<(), WaitError> {
        self.wait(&self.inner.applied_own, seq, "applied").await?;
        if let Some(id) = event_id {
            let failure = self
                .inner
                .store
                .read_raw(move |c| crate::store::sync::own_failure(c, &id))
                .await
                .map_err(|e| WaitError::Refused(e.to_string()))?;
            if let Some(reason) = failure {
                return Err(WaitError::Refused(reason));
            }
        }
        Ok(())
    }

    async fn wait(
        &self,
        tx: &watch::Sender<u64>,
        seq: u64,
        what: &'static str,
    ) -> Result<(), WaitError> {
        let mut rx = tx.subscribe();
        let timeout = self.inner.config.wait_timeout;
        let deadline = Instant::now() + timeout;
        let mut down_since: Option<Instant> = None;
        loop {
            // Availability is a local flag: look at it every 100 ms while waiting.
            let tick = Instant::now() + Duration::from_millis(100);
            tokio::select! {
                r = rx.wait_for(|v| *v >= seq) => {
                    return r.map(|_| ()).map_err(|_| WaitError::Stopped);
                }
                _ = tokio::time::sleep_until(tick.min(deadline).into()) => {}
            }
            let now = Instant::now();
            // Not opened since this process started: wait for it, up to the deadline.
            let starting = self.inner.log.borrow().is_none();
            match self.unavailable() {
                Some(reason) => {
                    let since = *down_since.get_or_insert(now);
                    if (!starting && now.duration_since(since) >= GRACE) || now >= deadline {
                        return Err(WaitError::Unavailable { what, reason });
                    }
                }
                None => down_since = None,
            }
            if now >= deadline {
                return Err(WaitError::Timeout {
                    what,
                    secs: timeout.as_secs(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_cleared_only_by_a_success_of_the_part_that_failed() {
        let h = Health::default();
        h.fail(Part::Publish, "no ack");
        assert!(h.publish_failing());
        h.ok(Part::Apply);
        let e = h.last_error().expect("still there");
        assert_eq!((e.part, e.message.as_str()), (Part::Publish, "no ack"));
        assert!(e.at <= SystemTime::now());
        h.ok(Part::Publish);
        assert!(h.last_error().is_none());
        assert!(!h.publish_failing());
    }

    #[test]
    fn a_consumer_error_is_over_once_the_consumer_works_again() {
        let h = Health::default();
        let (state, rx) = watch::channel(Some("missed heartbeat".to_string()));
        h.watch_consumer(rx);
        h.fail(Part::Consume, "missed heartbeat");
        assert!(h.last_error().is_some());
        state.send_replace(None);
        assert!(
            h.last_error().is_none(),
            "positioned again: nothing to show"
        );
    }

    #[test]
    fn switching_servers_waits_for_lasting_trouble_and_then_for_the_last_switch() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(!h.should_switch_at(t0), "a first failure is not enough");
        assert!(!h.should_switch_at(t0 + SWITCH_AFTER / 2));
        assert!(h.should_switch_at(t0 + SWITCH_AFTER));
        assert!(
            !h.should_switch_at(t0 + SWITCH_AFTER * 3 / 2),
            "just switched"
        );
        // The trouble outlasted a switch: the next one waits twice as long.
        assert!(!h.should_switch_at(t0 + SWITCH_AFTER * 2));
        assert!(h.should_switch_at(t0 + SWITCH_AFTER * 3));
        // A success ends the trouble: it has to last again.
        h.ok(Part::Publish);
        let t1 = t0 + SWITCH_AFTER * 5;
        assert!(!h.should_switch_at(t1));
        assert!(h.should_switch_at(t1 + SWITCH_AFTER));
    }

    #[test]
    fn a_server_that_says_it_is_cut_off_is_left_sooner() {
        let h = Health::default();
        h.fail(
            Part::Consume,
            "consumer node_n1: info: jetstream error: JetStream system temporarily unavailable (code 503, error code 10008)",
        );
        let t0 = Instant::now();
        assert!(!h.should_switch_at(t0));
        assert!(!h.should_switch_at(t0 + CUT_OFF_SWITCH_AFTER / 2));
        assert!(h.should_switch_at(t0 + CUT_OFF_SWITCH_AFTER));
        // Every server says so (the cluster elects a meta leader): the switches slow down.
        assert!(!h.should_switch_at(t0 + CUT_OFF_SWITCH_AFTER * 2));
        assert!(h.should_switch_at(t0 + CUT_OFF_SWITCH_AFTER * 3));
        assert!(!h.should_switch_at(t0 + CUT_OFF_SWITCH_AFTER * 6));
        assert!(h.should_switch_at(t0 + CUT_OFF_SWITCH_AFTER * 7));
        // A request that went unanswered (a leader being elected) waits the long way.
        h.fail(
            Part::Publish,
            "publishing event x: timed out: didn't receive ack in time",
        );
        h.ok(Part::Consume);
        let t1 = t0 + SWITCH_AFTER * 3;
        assert!(!h.should_switch_at(t1));
        assert!(!h.should_switch_at(t1 + CUT_OFF_SWITCH_AFTER * 2));
        assert!(h.should_switch_at(t1 + SWITCH_AFTER));
    }

    #[test]
    fn leaving_a_server_whose_replica_is_behind_is_paced_even_while_publishing_works() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(h.should_leave_behind_at(t0), "the first time: at once");
        // Publishing works meanwhile: it does not reset the pace.
        h.ok(Part::Publish);
        assert!(!h.should_leave_behind_at(t0 + CUT_OFF_SWITCH_AFTER / 2));
        assert!(!h.should_leave_behind_at(t0 + CUT_OFF_SWITCH_AFTER));
        assert!(h.should_leave_behind_at(t0 + CUT_OFF_SWITCH_AFTER * 2));
        assert!(!h.should_leave_behind_at(t0 + CUT_OFF_SWITCH_AFTER * 5));
        assert!(h.should_leave_behind_at(t0 + CUT_OFF_SWITCH_AFTER * 6));
        // Long after the last move, a new spell starts at the short pace again.
        let t1 = t0 + CUT_OFF_SWITCH_AFTER * 6 + SPELL_OVER;
        assert!(h.should_leave_behind_at(t1));
        assert!(!h.should_leave_behind_at(t1 + CUT_OFF_SWITCH_AFTER));
        assert!(h.should_leave_behind_at(t1 + CUT_OFF_SWITCH_AFTER * 2));
    }

    #[test]
    fn the_errors_of_a_server_cut_off_from_jetstream_are_told_apart_from_timeouts() {
        for cut in [
            "info: jetstream error: JetStream system temporarily unavailable (code 503, error code 10008)",
            "consumer node_n1: receiving: no responders",
            "publishing event 0m: no stream found for given subject",
        ] {
            assert!(cut_off(cut), "{cut}");
        }
        for other in [
            "publishing event 0m: timed out: didn't receive ack in time",
            "consumer node_n1: info: no answer within 750ms",
            "consumer node_n1: receiving: missed idle heartbeat",
            "publish failed: duplicate message id is in process (code 409, error code 10158)",
        ] {
            assert!(!cut_off(other), "{other}");
        }
    }
}
