//! `proportional`: take a snapshot once the log folded since the last one weighs a share of
//! the canonical content (so a joining node replays at most that much after installing the
//! newest snapshot), or once the last one is too old in log time; keep the newest K.
//!
//! Configuration: `{"percent": 50, "minBytes": 1048576, "maxAgeMs": 86400000, "keep": 2}`;
//! every key is optional and those are the defaults. `maxAgeMs: 0` disables the age trigger;
//! `keep` must be at least 1.

use serde::Deserialize;
use syncbase_guest::{Decision, SnapshotPolicy, Stats, parse_config};

/// The proportional policy's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    /// Share of the content (in percent) the log since the last snapshot may weigh.
    pub percent: u64,
    /// Never snapshot for less log than this many bytes.
    pub min_bytes: u64,
    /// Snapshot once the last one is this old in log time (0: never by age).
    pub max_age_ms: u64,
    /// Snapshots to keep.
    pub keep: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            percent: 50,
            min_bytes: 1 << 20,
            max_age_ms: 24 * 60 * 60 * 1000,
            keep: 2,
        }
    }
}

/// The proportional snapshot policy.
pub struct Proportional {
    config: Config,
}

impl SnapshotPolicy for Proportional {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        if config.keep == 0 {
            return Err("proportional: keep must be at least 1".into());
        }
        Ok(Proportional { config })
    }

    fn decide(&self, stats: &Stats) -> Decision {
        let c = &self.config;
        let share = stats.content_bytes.saturating_mul(c.percent) / 100;
        let by_size = stats.bytes_since >= share.max(c.min_bytes);
        let by_age = c.max_age_ms > 0 && stats.ms_since >= c.max_age_ms;
        Decision {
            take: stats.events_since > 0 && (by_size || by_age),
            keep: c.keep,
        }
    }
}

syncbase_guest::export_snapshot_policy!(Proportional);

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(bytes_since: u64, content_bytes: u64, ms_since: u64) -> Stats {
        Stats {
            events_since: 1,
            bytes_since,
            content_bytes,
            ms_since,
            ..Stats::default()
        }
    }

    #[test]
    fn takes_one_when_the_log_outweighs_its_share_of_the_content() {
        let p = Proportional::configure(r#"{"percent":25,"minBytes":100,"maxAgeMs":0}"#)
            .expect("valid");
        // 25% of 10,000 bytes of content.
        assert!(!p.decide(&stats(2_499, 10_000, 0)).take);
        assert!(p.decide(&stats(2_500, 10_000, 0)).take);
        // Little content: the floor holds.
        assert!(!p.decide(&stats(99, 0, 0)).take);
        assert!(p.decide(&stats(100, 0, 0)).take);
        assert_eq!(p.decide(&stats(100, 0, 0)).keep, 2);
    }

    #[test]
    fn takes_one_when_the_last_is_old_but_never_for_nothing() {
        let p = Proportional::configure(r#"{"maxAgeMs":60000,"keep":3}"#).expect("valid");
        assert!(!p.decide(&stats(10, 1 << 30, 59_999)).take);
        let old = p.decide(&stats(10, 1 << 30, 60_000));
        assert_eq!(
            old,
            Decision {
                take: true,
                keep: 3
            }
        );
        let idle = Stats {
            events_since: 0,
            ms_since: u64::MAX,
            ..Stats::default()
        };
        assert!(!p.decide(&idle).take, "nothing happened since the last one");
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(Proportional::configure("").is_ok());
        assert!(Proportional::configure(r#"{"keep":0}"#).is_err());
        assert!(Proportional::configure(r#"{"ratio":0.5}"#).is_err());
        assert!(Proportional::configure(r#"{"percent":-1}"#).is_err());
    }
}
