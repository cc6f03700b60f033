//! `counter`: numeric counter fields add concurrent deltas instead of
//! overwriting each other.
//!
//! For a counter field the incoming change modified, the result is
//! `current + (incoming - before)`: two nodes that each added 1 to `likes`
//! concurrently end with `likes` 2 higher. Every other field follows the
//! per-field rule of `field-merge`. Deletes, tombstones and changes without
//! `before` fall back to last-writer-wins.
//!
//! Configuration: `{"fields": ["likes", "views"]}` names the counter fields;
//! empty (the default) treats every field whose three values are numbers as a
//! counter.

use serde::Deserialize;
use syncbase_guest::{
    Change, Op, Resolution, Resolver, Version, apply_delta, incoming_wins, last_writer_wins,
    merge_fields, parse_config,
};

/// The counter plugin's configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Counter fields; empty means "every numeric field".
    #[serde(default)]
    pub fields: Vec<String>,
}

/// The counter resolver.
pub struct Counter {
    config: Config,
}

impl Counter {
    fn is_counter(&self, field: &str) -> bool {
        self.config.fields.is_empty() || self.config.fields.iter().any(|f| f == field)
    }
}

impl Resolver for Counter {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        Ok(Counter { config })
    }

    fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {
        if incoming.op == Op::Delete || current.is_deleted() {
            return last_writer_wins(current, incoming);
        }
        let (Some(cur), Some(inc), Some(before)) = (
            current.fields(),
            incoming.fields(),
            incoming.before_fields(),
        ) else {
            return last_writer_wins(current, incoming);
        };
        let mut merged = merge_fields(&cur, &inc, &before, incoming_wins(current, incoming));
        for (field, old) in &before {
            if !self.is_counter(field) {
                continue;
            }
            let (Some(now), Some(new)) = (cur.get(field), inc.get(field)) else {
                continue;
            };
            if let Some(sum) = apply_delta(now, old, new) {
                merged.insert(field.clone(), sum);
            }
        }
        Resolution::Merged(merged)
    }
}

syncbase_guest::export_resolver!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::{Value, json};

    fn current(data: Value) -> Version {
        Version {
            data: Some(data.to_string()),
            hlc: 20,
            origin: "n1".into(),
        }
    }

    fn update(data: Value, before: Value) -> Change {
        Change {
            op: Op::Update,
            collection: "posts".into(),
            id: "r1".into(),
            data: Some(data.to_string()),
            hlc: 10,
            origin: "n2".into(),
            before: Some(before.to_string()),
        }
    }

    fn merged(r: Resolution) -> Value {
        match r {
            Resolution::Merged(m) => Value::Object(m),
            other => panic!("expected a merged record, got {other:?}"),
        }
    }

    #[test]
    fn concurrent_increments_add_up() {
        let p = Counter::configure(r#"{"fields":["likes"]}"#).expect("valid config");
        // Base likes = 5; current added 2 (-> 7), incoming added 3 (-> 8).
        let cur = current(json!({"likes": 7, "title": "a"}));
        let inc = update(json!({"likes": 8, "title": "a"}), json!({"likes": 5}));
        assert_eq!(
            merged(p.resolve(&cur, &inc)),
            json!({"likes": 10, "title": "a"})
        );
    }

    #[test]
    fn non_counter_fields_merge_per_field() {
        let p = Counter::configure(r#"{"fields":["likes"]}"#).expect("valid config");
        // `score` is numeric but not configured: per-field LWW, and the
        // incoming write is older, so the current score stays.
        let cur = current(json!({"likes": 1, "score": 50}));
        let inc = update(
            json!({"likes": 2, "score": 70}),
            json!({"likes": 1, "score": 40}),
        );
        assert_eq!(
            merged(p.resolve(&cur, &inc)),
            json!({"likes": 2, "score": 50})
        );
    }

    #[test]
    fn default_config_counts_every_numeric_field() {
        let p = Counter::configure("").expect("defaults are valid");
        let cur = current(json!({"a": 1.5, "b": "text"}));
        let inc = update(
            json!({"a": 2.0, "b": "other"}),
            json!({"a": 1.0, "b": "orig"}),
        );
        // b: both changed, incoming is older -> current "text" stays.
        assert_eq!(
            merged(p.resolve(&cur, &inc)),
            json!({"a": 2.5, "b": "text"})
        );
    }

    #[test]
    fn unknown_configuration_is_refused() {
        assert!(Counter::configure(r#"{"feilds":["x"]}"#).is_err());
    }
}
