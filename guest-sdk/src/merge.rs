//! Helpers every convergence policy needs: ordering writes by HLC and merging
//! JSON records field by field.
//!
//! All of them are deterministic: they depend only on their arguments, and
//! iterate maps in key order.

use serde_json::{Number, Value};

use crate::types::{Change, Fields, Resolution, Version};

/// True when `incoming` is a later write than `current`: larger HLC, or equal
/// HLC and larger origin node id. This is the built-in default's rule.
pub fn incoming_wins(current: &Version, incoming: &Change) -> bool {
    incoming.stamp() > current.stamp()
}

/// Whole-record last-writer-wins, identical to the host's built-in default.
pub fn last_writer_wins(current: &Version, incoming: &Change) -> Resolution {
    if incoming_wins(current, incoming) {
        Resolution::TakeIncoming
    } else {
        Resolution::KeepCurrent
    }
}

/// Three-way, per-field merge of concurrent writes to one record.
///
/// `before` holds, for each field the incoming write changed, the value it had
/// in the version that write started from. For each such field:
/// - if the current version still has that old value, only the incoming write
///   touched the field, so the incoming value is taken;
/// - otherwise both writes changed it, and the later write (`incoming_wins`)
///   decides.
///
/// Fields the incoming write did not change keep their current values, so
/// concurrent edits to different fields both survive. A field absent from a
/// record counts as `null`; an incoming write that removed a field removes it.
pub fn merge_fields(
    current: &Fields,
    incoming: &Fields,
    before: &Fields,
    incoming_wins: bool,
) -> Fields {
    let mut merged = current.clone();
    for (field, old) in before {
        let untouched_here = current.get(field).unwrap_or(&Value::Null) == old;
        if untouched_here || incoming_wins {
            match incoming.get(field) {
                Some(value) => {
                    merged.insert(field.clone(), value.clone());
                }
                None => {
                    merged.remove(field);
                }
            }
        }
    }
    merged
}

/// [`merge_fields`] on records the caller owns (e.g. just parsed for this call): values move
/// into the answer instead of being copied. Same result, byte for byte.
pub fn merge_fields_owned(
    mut current: Fields,
    mut incoming: Fields,
    before: &Fields,
    incoming_wins: bool,
) -> Fields {
    for (field, old) in before {
        let untouched_here = current.get(field).unwrap_or(&Value::Null) == old;
        if untouched_here || incoming_wins {
            match incoming.remove(field) {
                Some(value) => {
                    current.insert(field.clone(), value);
                }
                None => {
                    current.remove(field);
                }
            }
        }
    }
    current
}

/// The counter rule for one field: `current + (incoming - before)`.
///
/// Integers stay integers (with checked arithmetic); any float makes the result
/// a float. Returns `None` when a value is not a number (or on overflow), so
/// the caller can fall back to another rule. A missing `before` counts as 0.
pub fn apply_delta(current: &Value, before: &Value, incoming: &Value) -> Option<Value> {
    let before = if before.is_null() {
        &Value::Number(Number::from(0))
    } else {
        before
    };
    let (c, b, i) = (
        current.as_number()?,
        before.as_number()?,
        incoming.as_number()?,
    );
    if let (Some(c), Some(b), Some(i)) = (c.as_i64(), b.as_i64(), i.as_i64()) {
        return i
            .checked_sub(b)
            .and_then(|delta| c.checked_add(delta))
            .map(|n| Value::Number(Number::from(n)));
    }
    let sum = c.as_f64()? + (i.as_f64()? - b.as_f64()?);
    Number::from_f64(sum).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test fixture must be an object"),
        }
    }

    fn version(hlc: u64, origin: &str) -> Version {
        Version {
            hlc,
            origin: origin.into(),
            ..Version::default()
        }
    }

    fn change(hlc: u64, origin: &str) -> Change {
        Change {
            op: crate::Op::Update,
            collection: String::new(),
            id: String::new(),
            data: None,
            hlc,
            origin: origin.into(),
            before: None,
        }
    }

    #[test]
    fn later_hlc_wins_and_origin_breaks_ties() {
        assert!(incoming_wins(&version(1, "b"), &change(2, "a")));
        assert!(!incoming_wins(&version(2, "a"), &change(1, "z")));
        assert!(incoming_wins(&version(5, "a"), &change(5, "b")));
        assert!(!incoming_wins(&version(5, "b"), &change(5, "a")));
        assert_eq!(
            last_writer_wins(&version(5, "b"), &change(5, "b")),
            Resolution::KeepCurrent
        );
    }

    #[test]
    fn concurrent_edits_to_different_fields_both_survive() {
        let current = fields(json!({"title": "new title", "body": "old body"}));
        let incoming = fields(json!({"title": "old title", "body": "new body"}));
        let before = fields(json!({"body": "old body"}));
        let merged = merge_fields(&current, &incoming, &before, false);
        assert_eq!(
            Value::Object(merged),
            json!({"title": "new title", "body": "new body"})
        );
    }

    #[test]
    fn same_field_edited_twice_goes_to_the_later_write() {
        let current = fields(json!({"title": "A"}));
        let incoming = fields(json!({"title": "B"}));
        let before = fields(json!({"title": "0"}));
        let later = merge_fields(&current, &incoming, &before, true);
        let earlier = merge_fields(&current, &incoming, &before, false);
        assert_eq!(later["title"], "B");
        assert_eq!(earlier["title"], "A");
    }

    #[test]
    fn removed_and_added_fields_follow_the_incoming_write() {
        let current = fields(json!({"a": 1, "b": 2}));
        let incoming = fields(json!({"a": 1, "c": 3}));
        let before = fields(json!({"b": 2, "c": null}));
        let merged = merge_fields(&current, &incoming, &before, false);
        assert_eq!(Value::Object(merged), json!({"a": 1, "c": 3}));
    }

    #[test]
    fn the_owned_merge_answers_like_the_borrowing_one() {
        let cases = [
            (
                json!({"title": "new", "body": "old"}),
                json!({"title": "old", "body": "new"}),
                json!({"body": "old"}),
            ),
            (
                json!({"title": "A"}),
                json!({"title": "B"}),
                json!({"title": "0"}),
            ),
            (
                json!({"a": 1, "b": 2}),
                json!({"a": 1, "c": 3}),
                json!({"b": 2, "c": null}),
            ),
        ];
        for (current, incoming, before) in cases {
            let (current, incoming, before) = (fields(current), fields(incoming), fields(before));
            for wins in [false, true] {
                assert_eq!(
                    merge_fields_owned(current.clone(), incoming.clone(), &before, wins),
                    merge_fields(&current, &incoming, &before, wins)
                );
            }
        }
    }

    #[test]
    fn deltas_add_up() {
        assert_eq!(
            apply_delta(&json!(10), &json!(3), &json!(5)),
            Some(json!(12))
        );
        assert_eq!(
            apply_delta(&json!(10), &Value::Null, &json!(5)),
            Some(json!(15))
        );
        assert_eq!(
            apply_delta(&json!(1.5), &json!(1), &json!(2)),
            Some(json!(2.5))
        );
        assert_eq!(apply_delta(&json!("x"), &json!(1), &json!(2)), None);
        assert_eq!(apply_delta(&json!(i64::MAX), &json!(0), &json!(1)), None);
    }
}
