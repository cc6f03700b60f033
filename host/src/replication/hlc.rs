//! Hybrid logical clock: wall-clock milliseconds with a logical counter, packed in a `u64`.
//!
//! `(physical_ms << 16) | logical`. Timestamps from one clock strictly increase, even when the
//! wall clock steps backwards, and a node that has seen a remote timestamp never issues a
//! smaller one, so "later by HLC" respects causality across nodes. Last-writer-wins compares
//! these values (ties broken by node id), and a resolver plugin gets its notion of time from
//! the event's HLC, never from a clock of its own.
//!
//! When the counter overflows 16 bits within one millisecond the carry moves the physical part
//! ahead by one millisecond; at 65 536 timestamps per millisecond this only happens under
//! synthetic load, and monotonicity is kept either way.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// One HLC timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(pub u64);

impl Hlc {
    pub fn new(physical_ms: u64, logical: u16) -> Hlc {
        Hlc((physical_ms << LOGICAL_BITS) | u64::from(logical))
    }

    /// Milliseconds since the Unix epoch.
    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

/// The source of physical time, injectable so tests can move the wall clock backwards.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A thread-safe hybrid logical clock. Lock-free: `now` and `observe` are one CAS loop.
pub struct Clock {
    last: AtomicU64,
    wall: WallClock,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock").field("last", &self.last()).finish()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock on the system wall clock.
    pub fn new() -> Clock {
        Clock::with_wall(Arc::new(system_ms))
    }

    pub fn with_wall(wall: WallClock) -> Clock {
        Clock {
            last: AtomicU64::new(0),
            wall,
        }
    }

    /// Seeds the clock with the largest timestamp issued or seen before a restart (e.g. the
    /// newest HLC in the applied log), so a clock that went back while the node was down
    /// still never repeats one.
    pub fn resume(&self, at_least: Hlc) {
        self.last.fetch_max(at_least.0, Ordering::AcqRel);
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        Hlc(self.last.load(Ordering::Acquire))
    }

    /// A new timestamp, greater than every timestamp this clock issued or observed.
    pub fn now(&self) -> Hlc {
        self.advance(0)
    }

    /// Merges a timestamp received from another node and returns a new local timestamp
    /// greater than both it and everything this clock issued before.
    pub fn observe(&self, remote: Hlc) -> Hlc {
        self.advance(remote.0)
    }

    fn advance(&self, remote: u64) -> Hlc {
        let physical = (self.wall)() << LOGICAL_BITS;
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            // `max(wall, last + 1, remote + 1)`: the wall clock wins when it is ahead (logical
            // resets to 0); otherwise the counter of the larger timestamp ticks.
            let next = physical
                .max(last.saturating_add(1))
                .max(remote.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Hlc(next),
                Err(current) => last = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual(start: u64) -> (Clock, Arc<AtomicU64>) {
        let wall = Arc::new(AtomicU64::new(start));
        let w = wall.clone();
        (
            Clock::with_wall(Arc::new(move || w.load(Ordering::SeqCst))),
            wall,
        )
    }

    #[test]
    fn packs_physical_and_logical() {
        let h = Hlc::new(1_700_000_000_123, 7);
        assert_eq!(h.physical_ms(), 1_700_000_000_123);
        assert_eq!(h.logical(), 7);
        assert!(Hlc::new(5, 65_535) < Hlc::new(6, 0));
        assert_eq!(h.to_string(), "1700000000123.7");
    }

    #[test]
    fn follows_the_wall_clock_and_counts_within_a_millisecond() {
        let (clock, wall) = manual(1_000);
        assert_eq!(clock.now(), Hlc::new(1_000, 0));
        assert_eq!(clock.now(), Hlc::new(1_000, 1));
        assert_eq!(clock.now(), Hlc::new(1_000, 2));
        wall.store(1_005, Ordering::SeqCst);
        assert_eq!(clock.now(), Hlc::new(1_005, 0));
    }

    #[test]
    fn stays_monotonic_when_the_wall_clock_goes_back() {
        let (clock, wall) = manual(10_000);
        let a = clock.now();
        wall.store(9_000, Ordering::SeqCst); // NTP step back by a second
        let b = clock.now();
        let c = clock.now();
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(
            b.physical_ms(),
            10_000,
            "physical part holds at the high-water mark"
        );
        wall.store(10_001, Ordering::SeqCst);
        assert_eq!(
            clock.now(),
            Hlc::new(10_001, 0),
            "wall clock takes over again"
        );
    }

    #[test]
    fn observe_moves_past_remote_timestamps() {
        let (clock, _wall) = manual(1_000);
        let remote = Hlc::new(5_000, 3); // a peer whose clock is ahead
        let merged = clock.observe(remote);
        assert!(merged > remote);
        assert!(clock.now() > merged);
        // An older remote timestamp does not pull the clock back.
        let before = clock.last();
        let after = clock.observe(Hlc::new(10, 0));
        assert!(after > before);
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let (clock, _wall) = manual(1);
        clock.resume(Hlc::new(1, u16::MAX));
        let next = clock.now();
        assert_eq!(next, Hlc::new(2, 0));
    }

    #[test]
    fn resume_never_goes_back() {
        let (clock, _wall) = manual(100);
        clock.resume(Hlc::new(200, 4));
        assert_eq!(clock.now(), Hlc::new(200, 5));
        clock.resume(Hlc::new(150, 0));
        assert_eq!(clock.now(), Hlc::new(200, 6));
    }

    #[test]
    fn unique_and_increasing_across_threads() {
        let (clock, wall) = manual(42);
        let clock = Arc::new(clock);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let clock = clock.clone();
                let wall = wall.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::with_capacity(10_000);
                    for i in 0..10_000u64 {
                        if t == 0 && i % 1000 == 0 {
                            // One thread jiggles the wall clock back and forth.
                            wall.store(42 + (i / 1000) % 3, Ordering::SeqCst);
                        }
                        let h = if i % 7 == 0 {
                            clock.observe(Hlc::new(40, (i % 100) as u16))
                        } else {
                            clock.now()
                        };
                        seen.push(h);
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            let seen = t.join().expect("thread");
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "per-thread order");
            all.extend(seen);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "no timestamp issued twice");
    }
}
