//! The check every merged record from a resolver passes before it is stored: the fold runs
//! it at the event's log position, and the dry run (`POST /api/plugins/{name}/resolve`) runs
//! the same function, so both show the same answer.
//!
//! A merged record is a plugin's output, not a client's input: nothing is coerced. It must
//! name only the collection's fields, keep the record's id, give each field a value of the
//! field's stored type (a number for a number field, a string for text, an array of strings
//! for a multi-select or multi-relation, ...) within the field's size limits. The record
//! stored is the one read back: absent and `null` fields become the field's empty value. A
//! record that fails is not stored; the fold applies the built-in default instead and counts
//! it (see `sync::policy`).
//!
//! Pure: no connection, only the collection definition.

use serde_json::Value;

use super::records::Record;
use super::schema::{Collection, FieldKind};
use super::values::{from_sql, to_sql};

/// Text fields without a `max` are limited to this many characters (as client writes are).
const DEFAULT_TEXT_MAX: i64 = 5000;
/// Editor fields without a `maxSize`: 5 MiB.
const DEFAULT_EDITOR_MAX_SIZE: i64 = 5 << 20;
/// JSON fields without a `maxSize`: 1 MiB.
const DEFAULT_JSON_MAX_SIZE: i64 = 1 << 20;

fn or_default(limit: i64, default: i64) -> i64 {
    if limit > 0 { limit } else { default }
}

/// Checks a merged record for the record `rid` of `c`; returns the record as it will be
/// stored (and read back), or why it cannot be.
pub fn check(c: &Collection, rid: &str, merged: &Record) -> Result<Record, String> {
    if let Some(unknown) = merged.keys().find(|k| c.field(k).is_none()) {
        return Err(format!(
            "field {unknown:?} is not in collection {:?}",
            c.name
        ));
    }
    match merged.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id == rid => {}
        Some(other) => {
            return Err(format!("it changes the record's id ({rid:?} to {other})"));
        }
    }
    for (name, value) in merged {
        if name == "id" || value.is_null() {
            continue;
        }
        let Some(field) = c.field(name) else { continue };
        check_value(&field.kind, field.is_multiple(), value)
            .map_err(|why| format!("field {name:?}: {why}"))?;
    }
    let mut stored = Record::new();
    for field in &c.fields {
        let value = if field.name == "id" {
            Value::String(rid.to_string())
        } else {
            let raw = merged.get(&field.name).unwrap_or(&Value::Null);
            read_back(field, raw)
        };
        stored.insert(field.name.clone(), value);
    }
    Ok(stored)
}

/// The value a field reads back after storing `v` (what a client will see).
fn read_back(field: &super::schema::Field, v: &Value) -> Value {
    use rusqlite::types::ValueRef;
    let sql = to_sql(field, v);
    let r: ValueRef<'_> = (&sql).into();
    from_sql(field, r)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_value(kind: &FieldKind, multiple: bool, v: &Value) -> Result<(), String> {
    if multiple {
        let Value::Array(items) = v else {
            return Err(format!(
                "expected an array of strings, got {}",
                kind_name(v)
            ));
        };
        if let Some(bad) = items.iter().find(|i| !i.is_string()) {
            return Err(format!(
                "expected an array of strings, it holds {}",
                kind_name(bad)
            ));
        }
        let (max, values) = match kind {
            FieldKind::Select(o) => (o.max_select, Some(&o.values)),
            FieldKind::Relation(o) => (o.max_select, None),
            _ => (i64::MAX, None),
        };
        if items.len() as i64 > max {
            return Err(format!("{} values, over the {max} allowed", items.len()));
        }
        if let Some(values) = values
            && let Some(bad) = items
                .iter()
                .filter_map(Value::as_str)
                .find(|s| !values.iter().any(|v| v == s))
        {
            return Err(format!("{bad:?} is not one of its values"));
        }
        return Ok(());
    }
    let wrong = |expected: &str| Err(format!("expected {expected}, got {}", kind_name(v)));
    match kind {
        FieldKind::Number(o) => match v {
            Value::Number(n) => {
                if o.only_int && n.as_i64().is_none() && n.as_u64().is_none() {
                    return Err(format!("{n} is not an integer"));
                }
                Ok(())
            }
            _ => wrong("a number"),
        },
        FieldKind::Bool(_) => match v {
            Value::Bool(_) => Ok(()),
            _ => wrong("a boolean"),
        },
        FieldKind::Json(o) => {
            let size = v.to_string().len() as i64;
            let max = or_default(o.max_size, DEFAULT_JSON_MAX_SIZE);
            if size > max {
                return Err(format!("{size} bytes of JSON, over the {max}-byte limit"));
            }
            Ok(())
        }
        other => {
            let Value::String(s) = v else {
                return wrong("a string");
            };
            match other {
                FieldKind::Text(o) => {
                    let max = or_default(o.max, DEFAULT_TEXT_MAX);
                    let chars = s.chars().count() as i64;
                    if chars > max {
                        return Err(format!("{chars} characters, over the {max} allowed"));
                    }
                }
                FieldKind::Editor(o) => {
                    let max = or_default(o.max_size, DEFAULT_EDITOR_MAX_SIZE);
                    if s.len() as i64 > max {
                        return Err(format!("{} bytes, over the {max}-byte limit", s.len()));
                    }
                }
                FieldKind::Select(o) if !s.is_empty() && !o.values.iter().any(|x| x == s) => {
                    return Err(format!("{s:?} is not one of its values"));
                }
                _ => {}
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn posts() -> Collection {
        serde_json::from_value(json!({
            "id": "pbc_posts", "name": "posts", "type": "base",
            "fields": [
                {"name": "id", "type": "text", "primaryKey": true, "max": 15, "system": true},
                {"name": "title", "type": "text", "max": 10},
                {"name": "views", "type": "number", "onlyInt": true},
                {"name": "done", "type": "bool"},
                {"name": "tags", "type": "select", "values": ["a", "b"], "maxSelect": 2},
                {"name": "meta", "type": "json", "maxSize": 20}
            ]
        }))
        .expect("collection")
    }

    fn record(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            _ => Record::new(),
        }
    }

    #[test]
    fn a_valid_merge_is_stored_as_read_back() {
        let c = posts();
        let stored = check(&c, "r1", &record(json!({"title": "hi", "views": 2}))).expect("ok");
        assert_eq!(
            Value::Object(stored),
            json!({"id": "r1", "title": "hi", "views": 2, "done": false, "tags": [], "meta": null})
        );
    }

    #[test]
    fn each_broken_rule_is_named() {
        let c = posts();
        for (merged, why) in [
            (json!({"nope": 1}), "\"nope\" is not in collection"),
            (json!({"id": "r2"}), "changes the record's id"),
            (
                json!({"views": "abc"}),
                "field \"views\": expected a number, got a string",
            ),
            (json!({"views": 1.5}), "1.5 is not an integer"),
            (json!({"done": 1}), "expected a boolean, got a number"),
            (json!({"title": 5}), "expected a string, got a number"),
            (
                json!({"title": "x".repeat(11)}),
                "11 characters, over the 10",
            ),
            (json!({"tags": "a"}), "expected an array of strings"),
            (
                json!({"tags": ["a", "c"]}),
                "\"c\" is not one of its values",
            ),
            (json!({"tags": ["a", "b", "a"]}), "3 values, over the 2"),
            (
                json!({"meta": {"long": "x".repeat(20)}}),
                "over the 20-byte limit",
            ),
        ] {
            let err = check(&c, "r1", &record(merged.clone())).expect_err("refused");
            assert!(err.contains(why), "{merged}: {err}");
        }
    }
}
