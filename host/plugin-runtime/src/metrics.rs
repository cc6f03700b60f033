//! Per-plugin-version (and per-binding) counters: calls, failures by kind, instantiations, fuel.
//! Lock-free (relaxed atomics): they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::outcome::CallFailure;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    calls: AtomicU64,
    out_of_fuel: AtomicU64,
    memory_cap: AtomicU64,
    stack_overflow: AtomicU64,
    traps: AtomicU64,
    malformed: AtomicU64,
    raised: AtomicU64,
    configure: AtomicU64,
    instantiate: AtomicU64,
    unavailable: AtomicU64,
    instantiations: AtomicU64,
    fuel_used: AtomicU64,
    in_flight: AtomicU64,
}

/// Counts a call as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A copy of one plugin version's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Calls made (successful or not).
    pub calls: u64,
    /// Calls that failed, for any reason (the default was applied).
    pub failures: u64,
    pub out_of_fuel: u64,
    pub memory_cap: u64,
    pub stack_overflow: u64,
    /// Traps other than fuel, memory and stack (panics included).
    pub traps: u64,
    pub malformed: u64,
    /// Calls that returned an error (an uncaught exception, in Python or JavaScript).
    pub raised: u64,
    pub configure: u64,
    pub instantiate: u64,
    /// Calls this node could not serve (no instance slot free).
    pub unavailable: u64,
    /// Instances created (each runs `configure` once).
    pub instantiations: u64,
    /// Fuel used by all calls.
    pub fuel_used: u64,
    /// Calls executing right now.
    pub in_flight: u64,
}

impl Metrics {
    pub fn start_call(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(&self.in_flight)
    }

    pub fn call(&self, fuel_used: u64) {
        self.calls.fetch_add(1, Relaxed);
        self.fuel_used.fetch_add(fuel_used, Relaxed);
    }

    pub fn instantiated(&self) {
        self.instantiations.fetch_add(1, Relaxed);
    }

    pub fn failure(&self, failure: &CallFailure) {
        let counter = match failure {
            CallFailure::OutOfFuel => &self.out_of_fuel,
            CallFailure::MemoryCap { .. } => &self.memory_cap,
            CallFailure::StackOverflow => &self.stack_overflow,
            CallFailure::Trap(_) => &self.traps,
            CallFailure::Malformed(_) => &self.malformed,
            CallFailure::Raised(_) => &self.raised,
            CallFailure::Configure(_) => &self.configure,
            CallFailure::Instantiate(_) => &self.instantiate,
            CallFailure::Unavailable(_) => &self.unavailable,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let mut s = MetricsSnapshot {
            calls: get(&self.calls),
            failures: 0,
            out_of_fuel: get(&self.out_of_fuel),
            memory_cap: get(&self.memory_cap),
            stack_overflow: get(&self.stack_overflow),
            traps: get(&self.traps),
            malformed: get(&self.malformed),
            raised: get(&self.raised),
            configure: get(&self.configure),
            instantiate: get(&self.instantiate),
            unavailable: get(&self.unavailable),
            instantiations: get(&self.instantiations),
            fuel_used: get(&self.fuel_used),
            in_flight: get(&self.in_flight),
        };
        s.failures = s.out_of_fuel
            + s.memory_cap
            + s.stack_overflow
            + s.traps
            + s.malformed
            + s.raised
            + s.configure
            + s.unavailable
            + s.instantiate;
        s
    }
}
