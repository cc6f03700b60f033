//! `{{name}}`: a Syncbase resolver, scaffolded by `syncbase plugin new`.
//!
//! Called when two nodes wrote the same record concurrently: `current` is the
//! record as this node has it, `incoming` the other write. Answer
//! `KeepCurrent`, `TakeIncoming`, or a merged record. Every node asks the same
//! question and must get the same answer: no clock, randomness or I/O, and no
//! state beyond what `configure` builds.
//!
//! What it does now: merges concurrent edits field by field. Edits to
//! different fields both survive; when both writes changed a field, the later
//! write (HLC, then node id) wins it. A delete, or a change without `before`,
//! falls back to last-writer-wins for the whole record. It takes no
//! configuration.

use syncbase_guest::{
    Change, Resolution, Resolver, Version, incoming_wins, last_writer_wins, merge_fields,
    no_config,
};

/// The plugin: built once per instance by `configure`.
pub struct Plugin;

impl Resolver for Plugin {
    fn configure(config: &str) -> Result<Self, String> {
        no_config(config).map(|()| Plugin)
    }

    fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {
        match (current.fields(), incoming.fields(), incoming.before_fields()) {
            (Some(cur), Some(inc), Some(before)) => Resolution::Merged(merge_fields(
                &cur,
                &inc,
                &before,
                incoming_wins(current, incoming),
            )),
            _ => last_writer_wins(current, incoming),
        }
    }
}

syncbase_guest::export_resolver!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::{Op, Value, json};

    fn current(data: &str, hlc: u64) -> Version {
        Version {
            data: Some(data.into()),
            hlc,
            origin: "n1".into(),
        }
    }

    fn merged(answer: Resolution) -> Value {
        match answer {
            Resolution::Merged(fields) => Value::Object(fields),
            other => panic!("expected a merged record, got {other:?}"),
        }
    }

    fn update(data: &str, before: &str, hlc: u64) -> Change {
        Change {
            op: Op::Update,
            collection: "posts".into(),
            id: "r1".into(),
            data: Some(data.into()),
            hlc,
            origin: "n2".into(),
            before: Some(before.into()),
        }
    }

    #[test]
    fn edits_to_different_fields_both_survive() {
        let plugin = Plugin::configure("").expect("no configuration is valid");
        let answer = plugin.resolve(
            &current(r#"{"title":"t1","body":"b0"}"#, 20),
            &update(r#"{"title":"t0","body":"b2"}"#, r#"{"body":"b0"}"#, 10),
        );
        assert_eq!(merged(answer), json!({"title": "t1", "body": "b2"}));
    }

    #[test]
    fn the_later_write_wins_a_field_both_changed() {
        let plugin = Plugin::configure("{}").expect("{} is valid");
        let answer = plugin.resolve(
            &current(r#"{"title":"mine"}"#, 20),
            &update(r#"{"title":"theirs"}"#, r#"{"title":"old"}"#, 30),
        );
        assert_eq!(merged(answer), json!({"title": "theirs"}));
    }

    #[test]
    fn a_configuration_is_refused() {
        assert!(Plugin::configure(r#"{"x":1}"#).is_err());
    }
}
