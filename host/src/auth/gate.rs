//! Fair, bounded bcrypt work. Every password verification and hash (logins, password changes,
//! sign-ups) passes this gate: at most one per CPU runs at a time, and waiting work is served
//! round-robin by key (client IP + identity), so a flood of wrong passwords for one account
//! takes one turn per round instead of the whole queue: a legitimate login waits for about one
//! bcrypt per other active key, not for the flood. One key may have at most `per_key`
//! attempts waiting or running, and at most `max_waiting` attempts wait in all; more are
//! refused at once (429) rather than queued, so a flood costs neither memory nor time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Refused: this client already has as many attempts in flight as it may, or the node as
/// many waiting as it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in flight")]
pub struct Busy;

/// Most attempts one key (client IP + identity) may have waiting or running.
pub const PER_KEY: usize = 8;
/// Most attempts waiting on one node.
pub const MAX_WAITING: usize = 1024;

type Key = (String, String);

#[derive(Default)]
struct State {
    running: usize,
    /// Keys with waiting work, in the order they are served.
    ring: VecDeque<Key>,
    waiting: HashMap<Key, VecDeque<oneshot::Sender<()>>>,
    /// Attempts waiting or running, per key.
    in_flight: HashMap<Key, usize>,
    waiting_total: usize,
}

/// The gate (one per node).
pub struct PasswordGate {
    workers: usize,
    per_key: usize,
    max_waiting: usize,
    state: Mutex<State>,
}

impl PasswordGate {
    /// A gate running `workers` bcrypt computations at once (at least one).
    pub fn new(workers: usize, per_key: usize, max_waiting: usize) -> Arc<PasswordGate> {
        Arc::new(PasswordGate {
            workers: workers.max(1),
            per_key: per_key.max(1),
            max_waiting,
            state: Mutex::new(State::default()),
        })
    }

    /// One worker per available CPU.
    pub fn for_this_machine() -> Arc<PasswordGate> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        PasswordGate::new(cpus, PER_KEY, MAX_WAITING)
    }

    /// Waits for a turn for `identity` from `ip`; the returned permit is one running bcrypt
    /// until dropped.
    pub async fn enter(self: &Arc<Self>, ip: &str, identity: &str) -> Result<Permit, Busy> {
        let key: Key = (ip.to_string(), identity.to_lowercase());
        let rx = {
            let mut st = self.state.lock();
            let fast = st.running < self.workers && st.ring.is_empty();
            if !fast && st.waiting_total >= self.max_waiting {
                return Err(Busy);
            }
            let n = st.in_flight.entry(key.clone()).or_insert(0);
            if *n >= self.per_key {
                return Err(Busy);
            }
            *n += 1;
            if fast {
                st.running += 1;
                return Ok(Permit {
                    gate: self.clone(),
                    key,
                });
            }
            let (tx, rx) = oneshot::channel();
            let queue = st.waiting.entry(key.clone()).or_default();
            let new_key = queue.is_empty();
            queue.push_back(tx);
            if new_key {
                st.ring.push_back(key.clone());
            }
            st.waiting_total += 1;
            rx
        };
        let mut ticket = Ticket {
            gate: self.clone(),
            key: Some(key),
            rx: Some(rx),
        };
        let admitted = match ticket.rx.as_mut() {
            Some(rx) => rx.await.is_ok(),
            None => false,
        };
        // Settled here: nothing for the ticket to undo.
        ticket.rx = None;
        let key = ticket.key.take().unwrap_or_default();
        if admitted {
            Ok(Permit {
                gate: self.clone(),
                key,
            })
        } else {
            // The gate dropped the turn (cannot happen while it lives); give the slot back.
            self.leave(&key);
            Err(Busy)
        }
    }

    /// One attempt of `key` is over.
    fn leave(&self, key: &Key) {
        let mut st = self.state.lock();
        leave_key(&mut st, key);
    }

    /// Ends `key`'s running attempt and hands the turn to the next waiting key, round-robin.
    fn release(&self, key: &Key) {
        let mut st = self.state.lock();
        leave_key(&mut st, key);
        while let Some(next_key) = st.ring.pop_front() {
            let Some(queue) = st.waiting.get_mut(&next_key) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                st.waiting.remove(&next_key);
            } else {
                st.ring.push_back(next_key);
            }
            st.waiting_total -= 1;
            // A waiter that gave up has dropped its receiver: try the next one.
            if let Some(tx) = next
                && tx.send(()).is_ok()
            {
                return;
            }
        }
        st.running -= 1;
    }

    /// (running, waiting) now, for tests and figures.
    pub fn load(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.running, st.waiting_total)
    }
}

fn leave_key(st: &mut State, key: &Key) {
    if let Some(n) = st.in_flight.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            st.in_flight.remove(key);
        }
    }
}

/// A running turn: dropping it lets the next waiter in.
pub struct Permit {
    gate: Arc<PasswordGate>,
    key: Key,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(&self.key);
    }
}

/// A waiting turn whose future was dropped (the client went away): its key's slot is given
/// back, and a turn handed to it in the meantime is passed on. (Its sender stays queued and
/// is skipped when its turn comes.)
struct Ticket {
    gate: Arc<PasswordGate>,
    key: Option<Key>,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let (Some(mut rx), Some(key)) = (self.rx.take(), self.key.take()) else {
            return;
        };
        rx.close();
        if rx.try_recv().is_ok() {
            self.gate.release(&key);
        } else {
            self.gate.leave(&key);
        }
    }
}

/// Runs `f` (bcrypt) on a blocking thread once the gate lets it in.
pub async fn run<R: Send + 'static>(
    gate: &Arc<PasswordGate>,
    ip: &str,
    identity: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Busy> {
    let permit = gate.enter(ip, identity).await?;
    // The permit moves into the blocking job: the turn ends when the hashing does, even if
    // the request that asked for it is gone.
    tokio::task::spawn_blocking(move || {
        let out = f();
        drop(permit);
        out
    })
    .await
    .map_err(|_| Busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One worker, a flood of 20 attempts for one account queued, then a login for another:
    /// the other login is served after at most one attempt of the flood.
    #[tokio::test]
    async fn a_flood_on_one_key_takes_one_turn_per_round() {
        let gate = PasswordGate::new(1, 100, 100);
        let first = gate.enter("1.1.1.1", "victim").await.expect("first");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (g, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = g.enter("1.1.1.1", "victim").await.expect("flood");
                order.lock().push(format!("flood{i}"));
            }));
            // Queue in a known order: wait until this attempt is waiting.
            while gate.load().1 < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        let (g, o) = (gate.clone(), order.clone());
        let legit = tokio::spawn(async move {
            let _p = g.enter("2.2.2.2", "alice").await.expect("legit");
            o.lock().push("legit".to_string());
        });
        while gate.load().1 < 21 {
            tokio::task::yield_now().await;
        }
        drop(first);
        legit.await.expect("legit task");
        for t in tasks {
            t.await.expect("flood task");
        }
        let order = order.lock().clone();
        let at = order.iter().position(|s| s == "legit").expect("legit ran");
        assert!(
            at <= 1,
            "the legit login waited for {at} flood attempts: {order:?}"
        );
        assert_eq!(gate.load(), (0, 0));
    }

    #[tokio::test]
    async fn one_key_may_not_queue_more_than_its_share_nor_the_node_more_than_its_bound() {
        let gate = PasswordGate::new(1, 2, 2);
        let a = gate.enter("1.1.1.1", "x").await.expect("a");
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter("1.1.1.1", "x").await.map(drop) });
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            gate.enter("1.1.1.1", "X").await.err(),
            Some(Busy),
            "per key"
        );
        // Another key is not affected, up to the node's bound on waiting attempts.
        let g = gate.clone();
        let other = tokio::spawn(async move { g.enter("1.1.1.1", "y").await.map(drop) });
        while gate.load().1 < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            gate.enter("2.2.2.2", "z").await.err(),
            Some(Busy),
            "node bound"
        );
        drop(a);
        assert_eq!(waiting.await.expect("task"), Ok(()));
        assert_eq!(other.await.expect("task"), Ok(()));
        assert_eq!(gate.load(), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_frees_its_slot_and_its_turn() {
        let gate = PasswordGate::new(1, 2, 10);
        let a = gate.enter("1.1.1.1", "x").await.expect("a");
        let g = gate.clone();
        let gone = tokio::spawn(async move { g.enter("1.1.1.1", "x").await.map(drop) });
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(a);
        assert_eq!(gate.load(), (0, 0), "the abandoned turn was not passed on");
        let b = gate.enter("1.1.1.1", "x").await.expect("slot given back");
        assert_eq!(gate.load(), (1, 0));
        drop(b);
    }
}
