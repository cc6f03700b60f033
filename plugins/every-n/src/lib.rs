//! `every-n`: take a snapshot every N events or every M bytes of events,
//! whichever comes first, and keep the newest K snapshots.
//!
//! Configuration: `{"events": 10000, "bytes": 67108864, "keep": 3}`; every key
//! is optional and those are the defaults. `0` disables the events or bytes
//! trigger; `keep` must be at least 1.

use serde::Deserialize;
use syncbase_guest::{Decision, SnapshotPolicy, Stats, parse_config};

/// The every-n policy's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Take a snapshot once this many events were applied since the last (0: never).
    pub events: u64,
    /// Take a snapshot once this many event bytes were applied since the last (0: never).
    pub bytes: u64,
    /// Snapshots to keep.
    pub keep: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            events: 10_000,
            bytes: 64 << 20,
            keep: 3,
        }
    }
}

/// The every-n snapshot policy.
pub struct EveryN {
    config: Config,
}

impl SnapshotPolicy for EveryN {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        if config.keep == 0 {
            return Err("every-n: keep must be at least 1".into());
        }
        Ok(EveryN { config })
    }

    fn decide(&self, stats: &Stats) -> Decision {
        let Config {
            events,
            bytes,
            keep,
        } = self.config;
        let by_events = events > 0 && stats.events_since >= events;
        let by_bytes = bytes > 0 && stats.bytes_since >= bytes;
        Decision {
            take: by_events || by_bytes,
            keep,
        }
    }
}

syncbase_guest::export_snapshot_policy!(EveryN);

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(events_since: u64, bytes_since: u64) -> Stats {
        Stats {
            events_since,
            bytes_since,
            ..Stats::default()
        }
    }

    #[test]
    fn takes_a_snapshot_at_n_events_or_m_bytes() {
        let p = EveryN::configure(r#"{"events":100,"bytes":1000,"keep":2}"#).expect("valid");
        assert_eq!(
            p.decide(&stats(99, 999)),
            Decision {
                take: false,
                keep: 2
            }
        );
        assert_eq!(
            p.decide(&stats(100, 0)),
            Decision {
                take: true,
                keep: 2
            }
        );
        assert_eq!(
            p.decide(&stats(1, 1000)),
            Decision {
                take: true,
                keep: 2
            }
        );
    }

    #[test]
    fn defaults_and_disabled_triggers() {
        let p = EveryN::configure("").expect("defaults are valid");
        assert_eq!(
            p.decide(&stats(10_000, 0)),
            Decision {
                take: true,
                keep: 3
            }
        );
        let bytes_only = EveryN::configure(r#"{"events":0}"#).expect("valid");
        assert!(!bytes_only.decide(&stats(u64::MAX, 0)).take);
        assert!(EveryN::configure(r#"{"keep":0}"#).is_err());
    }
}
