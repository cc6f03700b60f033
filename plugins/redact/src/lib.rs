//! `redact`: removes configured fields from changes, so they never leave this
//! node (outbound) or are never stored here (inbound).
//!
//! Both the record data and the change's `before` lose the fields, so the old
//! values do not leak either. A change without any of the fields passes
//! through untouched.
//!
//! Configuration (required): `{"fields": ["email", "phone"]}`, optionally with
//! `"direction": "outbound" | "inbound" | "both"` (default `"both"`: the filter
//! acts in whichever direction it is bound).

use serde::Deserialize;
use syncbase_guest::{Change, Direction, Fields, Filter, Verdict, parse_config, parse_fields};

/// Directions the filter acts in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acts {
    Outbound,
    Inbound,
    #[default]
    Both,
}

/// The redact plugin's configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fields to remove.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub direction: Acts,
}

/// The redacting filter.
pub struct Redact {
    config: Config,
}

impl Redact {
    fn acts_on(&self, direction: Direction) -> bool {
        matches!(
            (self.config.direction, direction),
            (Acts::Both, _)
                | (Acts::Outbound, Direction::Outbound)
                | (Acts::Inbound, Direction::Inbound)
        )
    }

    /// Removes the configured fields; `true` when any was present.
    fn strip(&self, fields: &mut Fields) -> bool {
        let mut removed = false;
        for field in &self.config.fields {
            removed |= fields.remove(field).is_some();
        }
        removed
    }

    /// Redacts JSON object text in place; `true` when it changed.
    fn strip_text(&self, text: &mut Option<String>) -> bool {
        let Some(mut fields) = text.as_deref().and_then(parse_fields) else {
            return false;
        };
        if !self.strip(&mut fields) {
            return false;
        }
        *text = Some(syncbase_guest::Value::Object(fields).to_string());
        true
    }
}

impl Filter for Redact {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        if config.fields.is_empty() {
            return Err(r#"redact needs the fields to remove, e.g. {"fields": ["email"]}"#.into());
        }
        Ok(Redact { config })
    }

    fn filter(&self, direction: Direction, mut change: Change) -> Verdict {
        if !self.acts_on(direction) {
            return Verdict::Keep;
        }
        let data_changed = self.strip_text(&mut change.data);
        let before_changed = self.strip_text(&mut change.before);
        if data_changed || before_changed {
            Verdict::Replace(change)
        } else {
            Verdict::Keep
        }
    }
}

syncbase_guest::export_filter!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::{Op, Value, json};

    fn change(data: Value, before: Option<Value>) -> Change {
        Change {
            op: Op::Update,
            collection: "users".into(),
            id: "u1".into(),
            data: Some(data.to_string()),
            hlc: 1,
            origin: "n1".into(),
            before: before.map(|b| b.to_string()),
        }
    }

    fn json_of(text: &Option<String>) -> Value {
        syncbase_guest::serde_json::from_str(text.as_deref().unwrap_or("null")).expect("valid JSON")
    }

    #[test]
    fn configured_fields_are_removed_from_data_and_before() {
        let p = Redact::configure(r#"{"fields":["email"]}"#).expect("valid config");
        let c = change(
            json!({"name": "Ann", "email": "ann@example.com"}),
            Some(json!({"email": "old@example.com"})),
        );
        let Verdict::Replace(out) = p.filter(Direction::Outbound, c.clone()) else {
            panic!("expected a rewritten change");
        };
        assert_eq!(json_of(&out.data), json!({"name": "Ann"}));
        assert_eq!(json_of(&out.before), json!({}));
        assert_eq!((out.id, out.origin, out.hlc), (c.id, c.origin, c.hlc));
    }

    #[test]
    fn changes_without_the_fields_pass_untouched() {
        let p = Redact::configure(r#"{"fields":["email"]}"#).expect("valid config");
        let c = change(json!({"name": "Ann"}), None);
        assert_eq!(p.filter(Direction::Outbound, c), Verdict::Keep);
    }

    #[test]
    fn direction_can_be_restricted() {
        let p = Redact::configure(r#"{"fields":["email"],"direction":"outbound"}"#)
            .expect("valid config");
        let c = change(json!({"email": "x"}), None);
        assert_eq!(p.filter(Direction::Inbound, c), Verdict::Keep);
    }

    #[test]
    fn a_configuration_without_fields_is_refused() {
        let err = Redact::configure("").err().unwrap_or_default();
        assert!(err.contains("fields"), "{err}");
    }
}
