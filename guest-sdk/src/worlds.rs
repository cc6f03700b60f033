//! One trait per WIT world. Implement one of them for your plugin type and
//! export it with the matching macro (`export_resolver!`, `export_filter!`,
//! `export_snapshot_policy!`).
//!
//! Each trait's `configure` builds the plugin from its bind-time configuration
//! (see [`crate::parse_config`]); the other methods have defaults equal to the
//! host's built-in behaviour, so a plugin overrides only what it changes.

use crate::merge::last_writer_wins;
use crate::types::{Change, Decision, Direction, Resolution, Stats, Verdict, Version};

/// The `resolver` world: decides conflicts between concurrent writes.
pub trait Resolver: Sized {
    /// Builds the plugin from the configuration string given at bind time.
    fn configure(config: &str) -> Result<Self, String>;

    /// Decides a conflict. Default: last writer wins (the built-in rule).
    fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {
        last_writer_wins(current, incoming)
    }
}

/// The `filter` world: keeps, drops or rewrites a change.
pub trait Filter: Sized {
    /// Builds the plugin from the configuration string given at bind time.
    fn configure(config: &str) -> Result<Self, String>;

    /// Decides what happens to `change`. Default: keep it.
    fn filter(&self, direction: Direction, change: Change) -> Verdict {
        let _ = (direction, change);
        Verdict::Keep
    }
}

/// The `snapshot-policy` world: decides when to snapshot and what to keep.
pub trait SnapshotPolicy: Sized {
    /// Builds the plugin from the configuration string given at bind time.
    fn configure(config: &str) -> Result<Self, String>;

    /// Decides from the statistics. Default: take none, delete none.
    fn decide(&self, stats: &Stats) -> Decision {
        let _ = stats;
        Decision::default()
    }
}
