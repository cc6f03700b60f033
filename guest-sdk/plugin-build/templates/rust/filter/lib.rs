//! `{{name}}`: a Syncbase filter, scaffolded by `syncbase plugin new`.
//!
//! Called for every local change before it leaves this node (bound as
//! `outbound-filter`) and for every change from another node before it is
//! applied here (`inbound-filter`). Answer `Keep`, `Drop`, or `Replace` with
//! the change rewritten (only `data` and `before` may differ). No clock,
//! randomness or I/O, and no state beyond what `configure` builds.
//!
//! What it does now: removes private fields from changes — `secret` by
//! default, or those named by `{"fields": ["ssn", "token"]}` — from the record
//! (`data`) and from the old values (`before`). A change without any of them
//! is kept as it is.

use serde::Deserialize;
use syncbase_guest::{Change, Direction, Filter, Value, Verdict, parse_config, parse_fields};

/// The configuration given at bind time (JSON; blank for the defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The fields to remove.
    pub fields: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fields: vec!["secret".into()],
        }
    }
}

/// The plugin: built once per instance by `configure`.
pub struct Plugin {
    config: Config,
}

impl Plugin {
    /// The JSON object text without the configured fields; `None` when it had none.
    fn strip(&self, text: Option<&str>) -> Option<String> {
        let mut fields = parse_fields(text?)?;
        let before = fields.len();
        fields.retain(|name, _| !self.config.fields.contains(name));
        (fields.len() != before).then(|| Value::Object(fields).to_string())
    }
}

impl Filter for Plugin {
    fn configure(config: &str) -> Result<Self, String> {
        Ok(Plugin {
            config: parse_config(config)?,
        })
    }

    fn filter(&self, _direction: Direction, change: Change) -> Verdict {
        let data = self.strip(change.data.as_deref());
        let before = self.strip(change.before.as_deref());
        if data.is_none() && before.is_none() {
            return Verdict::Keep;
        }
        Verdict::Replace(Change {
            data: data.or(change.data),
            before: before.or(change.before),
            ..change
        })
    }
}

syncbase_guest::export_filter!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::Op;

    fn change(data: &str) -> Change {
        Change {
            op: Op::Create,
            collection: "users".into(),
            id: "r1".into(),
            data: Some(data.into()),
            hlc: 1,
            origin: "n1".into(),
            before: None,
        }
    }

    #[test]
    fn removes_the_secret_field_by_default() {
        let plugin = Plugin::configure("").expect("the defaults are valid");
        let verdict = plugin.filter(
            Direction::Outbound,
            change(r#"{"name":"Ann","secret":"s3"}"#),
        );
        assert_eq!(
            verdict,
            Verdict::Replace(change(r#"{"name":"Ann"}"#)),
        );
        let untouched = plugin.filter(Direction::Inbound, change(r#"{"name":"Ann"}"#));
        assert_eq!(untouched, Verdict::Keep);
    }

    #[test]
    fn configured_fields_replace_the_default() {
        let plugin = Plugin::configure(r#"{"fields":["ssn"]}"#).expect("valid");
        let verdict = plugin.filter(
            Direction::Outbound,
            change(r#"{"secret":"s","ssn":"1"}"#),
        );
        assert_eq!(verdict, Verdict::Replace(change(r#"{"secret":"s"}"#)));
        assert!(Plugin::configure(r#"{"fields":"ssn"}"#).is_err());
    }
}
