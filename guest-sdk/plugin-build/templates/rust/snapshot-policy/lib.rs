//! `{{name}}`: a Syncbase snapshot policy, scaffolded by `syncbase plugin new`.
//!
//! Called after the node applied events: say whether to take a snapshot now
//! and how many to keep. No clock, randomness or I/O (time since the last
//! snapshot comes in `Stats`), and no state beyond what `configure` builds.
//!
//! What it does now: takes a snapshot once 1000 events were applied since the
//! last one and keeps the newest 2; `{"events": N, "keep": K}` changes either
//! (both at least 1).

use serde::Deserialize;
use syncbase_guest::{Decision, SnapshotPolicy, Stats, parse_config};

/// The configuration given at bind time (JSON; blank for the defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Take a snapshot once this many events were applied since the last one.
    pub events: u64,
    /// How many snapshots to keep.
    pub keep: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            events: 1000,
            keep: 2,
        }
    }
}

/// The plugin: built once per instance by `configure`.
pub struct Plugin {
    config: Config,
}

impl SnapshotPolicy for Plugin {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        if config.events == 0 || config.keep == 0 {
            return Err("events and keep must be at least 1".into());
        }
        Ok(Plugin { config })
    }

    fn decide(&self, stats: &Stats) -> Decision {
        Decision {
            take: stats.events_since >= self.config.events,
            keep: self.config.keep,
        }
    }
}

syncbase_guest::export_snapshot_policy!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn after(events_since: u64) -> Stats {
        Stats {
            events_since,
            ..Stats::default()
        }
    }

    #[test]
    fn a_snapshot_every_1000_events_keeping_2() {
        let plugin = Plugin::configure("").expect("the defaults are valid");
        assert_eq!(plugin.decide(&after(999)), Decision { take: false, keep: 2 });
        assert_eq!(plugin.decide(&after(1000)), Decision { take: true, keep: 2 });
    }

    #[test]
    fn configured_and_refused() {
        let plugin = Plugin::configure(r#"{"events":10,"keep":5}"#).expect("valid");
        assert_eq!(plugin.decide(&after(10)), Decision { take: true, keep: 5 });
        assert!(Plugin::configure(r#"{"keep":0}"#).is_err());
        assert!(Plugin::configure(r#"{"events":1.5}"#).is_err());
    }
}
