//! `field-merge`: per-field last-writer-wins.
//!
//! Concurrent edits to different fields of one record both survive; when both
//! writes changed the same field, the later write (HLC, then origin node id)
//! decides that field. It relies on the incoming change's `before` (the old
//! values of the fields it changed); without it, or when either side is a
//! delete, the whole record falls back to last-writer-wins.

use syncbase_guest::{
    Change, Op, Resolution, Resolver, Version, incoming_wins, last_writer_wins, merge_fields_owned,
    no_config,
};

/// The per-field merge resolver. Takes no configuration.
pub struct FieldMerge;

impl Resolver for FieldMerge {
    fn configure(config: &str) -> Result<Self, String> {
        no_config(config).map(|()| FieldMerge)
    }

    fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {
        if incoming.op == Op::Delete || current.is_deleted() {
            return last_writer_wins(current, incoming);
        }
        match (
            current.fields(),
            incoming.fields(),
            incoming.before_fields(),
        ) {
            (Some(cur), Some(inc), Some(before)) => Resolution::Merged(merge_fields_owned(
                cur,
                inc,
                &before,
                incoming_wins(current, incoming),
            )),
            _ => last_writer_wins(current, incoming),
        }
    }
}

syncbase_guest::export_resolver!(FieldMerge);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::{Value, json};

    fn current(data: Option<Value>, hlc: u64) -> Version {
        Version {
            data: data.map(|d| d.to_string()),
            hlc,
            origin: "n1".into(),
        }
    }

    fn update(data: Value, before: Option<Value>, hlc: u64) -> Change {
        Change {
            op: Op::Update,
            collection: "posts".into(),
            id: "r1".into(),
            data: Some(data.to_string()),
            hlc,
            origin: "n2".into(),
            before: before.map(|b| b.to_string()),
        }
    }

    fn merged(r: Resolution) -> Value {
        match r {
            Resolution::Merged(m) => Value::Object(m),
            other => panic!("expected a merged record, got {other:?}"),
        }
    }

    #[test]
    fn edits_to_different_fields_both_survive_whatever_the_order() {
        let p = FieldMerge;
        // Base: {title: "t0", body: "b0"}. n1 changed the title (current),
        // n2 changed the body (incoming), concurrently.
        let cur = current(Some(json!({"title": "t1", "body": "b0"})), 20);
        for hlc in [10, 30] {
            let inc = update(
                json!({"title": "t0", "body": "b2"}),
                Some(json!({"body": "b0"})),
                hlc,
            );
            assert_eq!(
                merged(p.resolve(&cur, &inc)),
                json!({"title": "t1", "body": "b2"})
            );
        }
    }

    #[test]
    fn the_same_field_goes_to_the_later_write() {
        let p = FieldMerge;
        let cur = current(Some(json!({"title": "t1"})), 20);
        let later = update(json!({"title": "t2"}), Some(json!({"title": "t0"})), 30);
        let earlier = update(json!({"title": "t2"}), Some(json!({"title": "t0"})), 10);
        assert_eq!(merged(p.resolve(&cur, &later)), json!({"title": "t2"}));
        assert_eq!(merged(p.resolve(&cur, &earlier)), json!({"title": "t1"}));
    }

    #[test]
    fn deletes_and_unknown_changed_fields_fall_back_to_last_writer_wins() {
        let p = FieldMerge;
        let tombstone = current(None, 20);
        let inc = update(json!({"title": "t2"}), Some(json!({"title": "t0"})), 30);
        assert_eq!(p.resolve(&tombstone, &inc), Resolution::TakeIncoming);
        let live = current(Some(json!({"title": "t1"})), 20);
        let no_before = update(json!({"title": "t2"}), None, 10);
        assert_eq!(p.resolve(&live, &no_before), Resolution::KeepCurrent);
    }
}
