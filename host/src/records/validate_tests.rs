//! End-to-end tests of `validate`. Unless noted otherwise, every expectation here was checked
//! against PocketBase 0.40.6 by sending the same input over its API (as a superuser) and
//! reading the response.

use super::*;
use serde_json::json;

const NOW: &str = "2025-01-02 03:04:05.678Z";

fn collection(kind: &str, fields: Value) -> Collection {
    let mut all = vec![json!({
        "name": "id", "type": "text", "system": true, "required": true, "primaryKey": true,
        "min": 15, "max": 15, "pattern": "^[a-z0-9]+$", "autogeneratePattern": "[a-z0-9]{15}"
    })];
    all.extend(fields.as_array().cloned().unwrap_or_default());
    all.push(json!({"name": "created", "type": "autodate", "onCreate": true}));
    all.push(json!({"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}));
    serde_json::from_value(json!({
        "id": "pbc_1", "name": "t", "type": kind, "fields": all,
        "listRule": null, "viewRule": null, "createRule": null, "updateRule": null,
        "deleteRule": null
    }))
    .expect("collection json")
}

/// The collection used against PocketBase while writing this module.
fn posts() -> Collection {
    collection(
        "base",
        json!([
            {"name": "title", "type": "text", "min": 3, "max": 10, "pattern": "^[a-z]+$"},
            {"name": "code", "type": "text", "autogeneratePattern": "[a-z0-9]{8}"},
            {"name": "plain", "type": "text"},
            {"name": "n", "type": "number", "min": 1, "max": 100, "onlyInt": true},
            {"name": "f", "type": "number"},
            {"name": "b", "type": "bool"},
            {"name": "e", "type": "email", "onlyDomains": ["x.com"]},
            {"name": "e2", "type": "email", "exceptDomains": ["bad.com"]},
            {"name": "u", "type": "url", "onlyDomains": ["x.com"]},
            {"name": "u2", "type": "url"},
            {"name": "ed", "type": "editor", "maxSize": 20},
            {"name": "d", "type": "date", "min": "2020-01-01 00:00:00.000Z",
             "max": "2030-01-01 00:00:00.000Z"},
            {"name": "d2", "type": "date"},
            {"name": "s", "type": "select", "values": ["a", "b", "c"], "maxSelect": 1},
            {"name": "tags", "type": "select", "values": ["a", "b", "c", "d"], "maxSelect": 3},
            {"name": "j", "type": "json", "maxSize": 30},
            {"name": "j2", "type": "json"},
            {"name": "r", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
            {"name": "rs", "type": "relation", "collectionId": "_pb_users_auth_",
             "maxSelect": 3, "minSelect": 2}
        ]),
    )
}

fn input(v: Value) -> Record {
    match v {
        Value::Object(map) => map,
        _ => Record::new(),
    }
}

fn create(coll: &Collection, v: Value) -> Result<Prepared, FieldErrors> {
    prepare_create(coll, &input(v), NOW)
}

fn created(coll: &Collection, v: Value) -> Record {
    create(coll, v).expect("create should pass").record
}

/// The error JSON of a failed create, as the API would put it under `data`.
fn errors(coll: &Collection, v: Value) -> Value {
    match create(coll, v) {
        Ok(p) => panic!("create should fail, got {:?}", p.record),
        Err(errs) => serde_json::to_value(errs).expect("serialize"),
    }
}

fn update(coll: &Collection, current: &Record, v: Value) -> Result<Prepared, FieldErrors> {
    prepare_update(coll, current, &input(v), "2025-06-01 00:00:00.000Z")
}

#[test]
fn empty_create_fills_every_field() {
    let rec = created(&posts(), json!({}));
    assert!(schema::is_valid_record_id(rec["id"].as_str().unwrap_or("")));
    assert_eq!(rec["code"].as_str().map(str::len), Some(8));
    let expected = json!({
        "title": "", "plain": "", "n": 0, "f": 0, "b": false, "e": "", "e2": "", "u": "",
        "u2": "", "ed": "", "d": "", "d2": "", "s": "", "tags": [], "j": null, "j2": null,
        "r": "", "rs": [], "created": NOW, "updated": NOW
    });
    for (k, v) in expected.as_object().into_iter().flatten() {
        assert_eq!(&rec[k], v, "{k}");
    }
    assert_eq!(rec.len(), posts().fields.len());
}

#[test]
fn unknown_keys_and_autodates_from_clients_are_ignored() {
    let rec = created(
        &posts(),
        json!({"nope": 1, "collectionId": "x", "created": "2020-01-01", "updated": "x"}),
    );
    assert!(!rec.contains_key("nope"));
    assert_eq!(rec["created"], NOW);
    assert_eq!(rec["updated"], NOW);
}

#[test]
fn text_rules() {
    let c = posts();
    assert_eq!(
        errors(&c, json!({"title": "ab"}))["title"],
        json!({"code": "validation_min_text_constraint",
               "message": "Must be at least 3 character(s).", "params": {"min": 3}})
    );
    assert_eq!(
        errors(&c, json!({"title": "abcdefghijk"}))["title"],
        json!({"code": "validation_max_text_constraint",
               "message": "Must be no more than 10 character(s).", "params": {"max": 10}})
    );
    assert_eq!(
        errors(&c, json!({"title": "ABC"}))["title"],
        json!({"code": "validation_invalid_format", "message": "Invalid value format."})
    );
    // Numbers become their decimal text before the rules run; 1e20 has 21 digits.
    assert_eq!(
        errors(&c, json!({"title": 123}))["title"]["code"],
        "validation_invalid_format"
    );
    assert_eq!(
        errors(&c, json!({"title": 1e20}))["title"]["params"],
        json!({"max": 10})
    );
    assert_eq!(created(&c, json!({"title": true}))["title"], "true");
    for empty in [json!(["abc"]), json!({"a": 1}), json!(null)] {
        assert_eq!(created(&c, json!({"title": empty}))["title"], "");
    }
    // No trimming: leading spaces break the pattern, and a blank-looking value is kept.
    assert_eq!(
        errors(&c, json!({"title": " abc "}))["title"]["code"],
        "validation_invalid_format"
    );
    // Without max, text is limited to 5000 characters (counted as characters).
    let long = "é".repeat(5001);
    assert_eq!(
        errors(&c, json!({"plain": long}))["plain"]["params"],
        json!({"max": 5000})
    );
    assert_eq!(
        created(&c, json!({"plain": "é".repeat(5000)}))["plain"]
            .as_str()
            .map(|s| s.chars().count()),
        Some(5000)
    );
}

#[test]
fn autogenerate_patterns() {
    let c = posts();
    assert_eq!(created(&c, json!({"code": "x"}))["code"], "x");
    assert_eq!(
        created(&c, json!({"code": ""}))["code"]
            .as_str()
            .map(str::len),
        Some(8)
    );
    // The `field:autogenerate` setter appends a generated value (PocketBase's documented
    // setter; not checked over the API).
    let rec = created(&c, json!({"code:autogenerate": "pre-"}));
    let code = rec["code"].as_str().unwrap_or("");
    assert!(code.starts_with("pre-") && code.len() == 12, "{code}");
    // Updates never autogenerate.
    let mut current = created(&c, json!({}));
    current.insert("code".into(), json!(""));
    assert_eq!(
        update(&c, &current, json!({})).expect("update").record["code"],
        ""
    );
}

#[test]
fn id_rules() {
    let c = posts();
    let min = json!({"code": "validation_min_text_constraint",
                     "message": "Must be at least 15 character(s).", "params": {"min": 15}});
    assert_eq!(errors(&c, json!({"id": "BAD"}))["id"], min);
    assert_eq!(errors(&c, json!({"id": 123}))["id"], min);
    assert_eq!(
        errors(&c, json!({"id": "ABCDEFGHIJKLMNO"}))["id"]["code"],
        "validation_invalid_format"
    );
    assert_eq!(
        errors(&c, json!({"id": "abc/efghijklmno"}))["id"]["code"],
        "validation_invalid_format"
    );
    assert_eq!(
        errors(&c, json!({"id": "abcdefghijklmnop"}))["id"],
        json!({"code": "validation_max_text_constraint",
               "message": "Must be no more than 15 character(s).", "params": {"max": 15}})
    );
    assert_eq!(
        created(&c, json!({"id": "abcdefghijklmno"}))["id"],
        "abcdefghijklmno"
    );
    let generated = created(&c, json!({"id": ""}));
    assert!(schema::is_valid_record_id(
        generated["id"].as_str().unwrap_or("")
    ));

    let current = created(&c, json!({"id": "abcdefghijklmno"}));
    let err = update(&c, &current, json!({"id": "abcdefghijklmn2"})).expect_err("pk change");
    assert_eq!(
        serde_json::to_value(&err["id"]).ok(),
        Some(json!({"code": "validation_pk_change",
                    "message": "The record primary key cannot be changed."}))
    );
    assert!(update(&c, &current, json!({"id": "abcdefghijklmno"})).is_ok());
}

#[test]
fn primary_keys_never_hold_path_separators() {
    // From PocketBase's source: checked after the text rules, whatever the pattern allows.
    let mut c = posts();
    if let Some(FieldKind::Text(opts)) = c.fields.first_mut().map(|f| &mut f.kind) {
        opts.pattern = String::new();
    }
    assert_eq!(
        errors(&c, json!({"id": "abc/efghijklmno"}))["id"],
        json!({"code": "validation_pk_forbidden",
               "message": "The record primary key contains forbidden characters.",
               "params": {"forbidden": "/"}})
    );
}

#[test]
fn number_rules_and_coercion() {
    let c = posts();
    assert_eq!(created(&c, json!({"n": "abc"}))["n"], 0);
    assert_eq!(created(&c, json!({"n": "5"}))["n"], 5);
    assert_eq!(created(&c, json!({"n": true}))["n"], 1);
    assert_eq!(created(&c, json!({"n": [7, 8]}))["n"], 0);
    assert_eq!(created(&c, json!({"f": "1e3"}))["f"], 1000);
    assert_eq!(created(&c, json!({"f": 2.50}))["f"], 2.5);
    assert_eq!(created(&c, json!({"f": 5.0}))["f"], json!(5));
    assert_eq!(
        errors(&c, json!({"n": 1.5}))["n"],
        json!({"code": "validation_only_int_constraint",
               "message": "Decimal numbers are not allowed."})
    );
    assert_eq!(
        errors(&c, json!({"n": -3}))["n"],
        json!({"code": "validation_min_number_constraint",
               "message": "Must be greater or equal than 1.", "params": {"min": 1}})
    );
    assert_eq!(
        errors(&c, json!({"n": 101}))["n"],
        json!({"code": "validation_max_number_constraint",
               "message": "Must be less or equal than 100.", "params": {"max": 100}})
    );
    for bad in ["NaN", "Inf"] {
        assert_eq!(
            errors(&c, json!({"f": bad}))["f"],
            json!({"code": "validation_not_a_number",
                   "message": "The submitted number is not properly formatted."})
        );
    }
    // Zero is "empty": min does not apply to it.
    assert_eq!(created(&c, json!({"n": 0}))["n"], 0);
    let fractional = collection(
        "base",
        json!([{"name": "n", "type": "number", "min": 1.5, "max": 2.25}]),
    );
    assert_eq!(
        errors(&fractional, json!({"n": 1}))["n"],
        json!({"code": "validation_min_number_constraint",
               "message": "Must be greater or equal than 1.5.", "params": {"min": 1.5}})
    );
    assert_eq!(
        errors(&fractional, json!({"n": 3}))["n"]["message"],
        "Must be less or equal than 2.25."
    );
}

#[test]
fn bool_coercion() {
    let c = posts();
    for (raw, want) in [
        (json!("true"), true),
        (json!("1"), true),
        (json!("t"), true),
        (json!("TRUE"), true),
        (json!(2), true),
        (json!("on"), false),
        (json!("yes"), false),
        (json!("false"), false),
        (json!("abc"), false),
        (json!([true]), false),
    ] {
        assert_eq!(created(&c, json!({"b": raw.clone()}))["b"], want, "{raw}");
    }
}

#[test]
fn required_blank_values_per_type() {
    let c = collection(
        "base",
        json!([
            {"name": "rq", "type": "number", "required": true},
            {"name": "bq", "type": "bool", "required": true},
            {"name": "dq", "type": "date", "required": true},
            {"name": "jq", "type": "json", "required": true},
            {"name": "tq", "type": "text", "required": true},
            {"name": "sq", "type": "select", "values": ["a", "b"], "maxSelect": 2, "required": true},
            {"name": "rl", "type": "relation", "collectionId": "x", "maxSelect": 1, "required": true},
            {"name": "eq", "type": "email", "required": true}
        ]),
    );
    let blank = json!({"code": "validation_required", "message": "Cannot be blank."});
    let all = errors(
        &c,
        json!({"rq": 0, "bq": false, "dq": "garbage", "jq": null, "tq": "", "sq": []}),
    );
    for name in ["rq", "bq", "dq", "jq", "tq", "sq", "rl", "eq"] {
        assert_eq!(all[name], blank, "{name}");
    }
    for empty_json in [json!(""), json!([]), json!({}), json!("null")] {
        assert_eq!(errors(&c, json!({"jq": empty_json}))["jq"], blank);
    }
    let filled = json!({"rq": 1, "bq": true, "dq": "2024-01-01", "jq": false, "tq": " ",
                        "sq": "a", "rl": "abc", "eq": "a@b.co"});
    let rec = created(&c, filled);
    assert_eq!(rec["tq"], " ");
    assert_eq!(rec["jq"], false);
    assert_eq!(rec["sq"], json!(["a"]));
    assert!(
        created(
            &c,
            json!({"rq": 1, "bq": true, "dq": "2024-01-01", "jq": 0, "tq": "x",
                               "sq": "a", "rl": "abc", "eq": "a@b.co"})
        )["jq"]
            == 0
    );
}

#[test]
fn email_rules() {
    let c = posts();
    assert_eq!(created(&c, json!({"e": "a@x.com"}))["e"], "a@x.com");
    let not_allowed = json!({"code": "validation_email_domain_not_allowed",
                             "message": "Email domain is not allowed."});
    assert_eq!(errors(&c, json!({"e": "a@y.com"}))["e"], not_allowed);
    assert_eq!(errors(&c, json!({"e": "A@X.COM"}))["e"], not_allowed);
    assert_eq!(errors(&c, json!({"e2": "a@bad.com"}))["e2"], not_allowed);
    assert_eq!(created(&c, json!({"e2": "a@BAD.com"}))["e2"], "a@BAD.com");
    assert_eq!(
        created(&c, json!({"e2": "a@sub.bad.com"}))["e2"],
        "a@sub.bad.com"
    );
    assert_eq!(
        errors(&c, json!({"e": "bad"}))["e"],
        json!({"code": "validation_is_email", "message": "Must be a valid email address."})
    );
    assert_eq!(
        errors(&c, json!({"e2": 123}))["e2"]["code"],
        "validation_is_email"
    );
    // Both fields report at once.
    let both = errors(&c, json!({"e": "bad@y.com", "e2": "a@bad.com"}));
    assert_eq!(both.as_object().map(|m| m.len()), Some(2));
}

#[test]
fn url_rules() {
    let c = posts();
    assert_eq!(
        created(&c, json!({"u": "https://x.com"}))["u"],
        "https://x.com"
    );
    assert_eq!(
        created(&c, json!({"u": "https://a@x.com/p"}))["u"],
        "https://a@x.com/p"
    );
    for host_mismatch in [
        "x.com",
        "https://x.com:8080",
        "https://X.COM",
        "https://sub.x.com",
    ] {
        assert_eq!(
            errors(&c, json!({"u": host_mismatch}))["u"],
            json!({"code": "validation_url_domain_not_allowed",
                   "message": "Url domain is not allowed."}),
            "{host_mismatch}"
        );
    }
    assert_eq!(
        errors(&c, json!({"u2": "localhost"}))["u2"],
        json!({"code": "validation_invalid_url", "message": "Must be a valid url."})
    );
    assert_eq!(
        created(&c, json!({"u2": "mailto:a@b.com"}))["u2"],
        "mailto:a@b.com"
    );
}

#[test]
fn editor_size_limits() {
    let c = posts();
    let limit = json!({"code": "validation_content_size_limit",
                       "message": "The maximum allowed content size is 20 bytes.",
                       "params": {"maxSize": 20}});
    assert_eq!(
        errors(&c, json!({"ed": "123456789012345678901"}))["ed"],
        limit
    );
    // Bytes, not characters.
    assert_eq!(errors(&c, json!({"ed": "ééééééééééé"}))["ed"], limit);
    assert_eq!(
        created(&c, json!({"ed": "12345678901234567890"}))["ed"],
        "12345678901234567890"
    );
    assert_eq!(created(&c, json!({"ed": 5}))["ed"], "5");
    let default = collection("base", json!([{"name": "ed", "type": "editor"}]));
    let big = "x".repeat((5 << 20) + 10);
    assert_eq!(
        errors(&default, json!({"ed": big}))["ed"]["params"],
        json!({"maxSize": 5_242_880})
    );
    assert!(create(&default, json!({"ed": "x".repeat((1 << 20) + 10)})).is_ok());
}

#[test]
fn dates_normalize_and_invalid_ones_become_empty() {
    let c = posts();
    assert_eq!(
        created(&c, json!({"d2": "2024-01-02T03:04:05+02:00"}))["d2"],
        "2024-01-02 01:04:05.000Z"
    );
    assert_eq!(
        created(&c, json!({"d2": "2024-01-02"}))["d2"],
        "2024-01-02 00:00:00.000Z"
    );
    // PocketBase has no "invalid date" error: unparsable input is stored as an empty date.
    for bad in [
        json!("garbage"),
        json!(1_700_000_000),
        json!("2024-13-01"),
        json!(null),
    ] {
        assert_eq!(created(&c, json!({"d2": bad}))["d2"], "");
    }
    assert_eq!(
        errors(&c, json!({"d": "2019-12-31"}))["d"],
        json!({"code": "validation_min_greater_equal_than_required",
               "message": "Must be no less than 2020-01-01 00:00:00 +0000 UTC.",
               "params": {"threshold": "2020-01-01T00:00:00Z"}})
    );
    assert_eq!(
        errors(&c, json!({"d": "2031-01-01"}))["d"],
        json!({"code": "validation_max_less_equal_than_required",
               "message": "Must be no greater than 2030-01-01 00:00:00 +0000 UTC.",
               "params": {"threshold": "2030-01-01T00:00:00Z"}})
    );
    assert_eq!(
        created(&c, json!({"d": "2020-01-01 00:00:00.000Z"}))["d"],
        "2020-01-01 00:00:00.000Z"
    );
    let fine = collection(
        "base",
        json!([{"name": "d", "type": "date", "min": "2020-01-01 10:00:00.500Z"}]),
    );
    assert_eq!(
        errors(&fine, json!({"d": "2020-01-01"}))["d"]["params"],
        json!({"threshold": "2020-01-01T10:00:00.5Z"})
    );
}

#[test]
fn select_single_and_multi() {
    let c = posts();
    assert_eq!(created(&c, json!({"s": "a"}))["s"], "a");
    // A single select given several values keeps the last one.
    assert_eq!(created(&c, json!({"s": ["a", "b"]}))["s"], "b");
    assert_eq!(created(&c, json!({"s": ["z", "a"]}))["s"], "a");
    assert_eq!(created(&c, json!({"s": []}))["s"], "");
    assert_eq!(
        errors(&c, json!({"s": "z"}))["s"],
        json!({"code": "validation_invalid_value", "message": "Invalid value z.",
               "params": {"value": "z"}})
    );
    assert_eq!(
        errors(&c, json!({"s": 1}))["s"]["params"],
        json!({"value": "1"})
    );
    // A multi select given one string stores a one-item list; duplicates and "" drop out.
    assert_eq!(created(&c, json!({"tags": "a"}))["tags"], json!(["a"]));
    assert_eq!(
        created(&c, json!({"tags": ["a", "b", "a"]}))["tags"],
        json!(["a", "b"])
    );
    assert_eq!(
        created(&c, json!({"tags": ["", "a"]}))["tags"],
        json!(["a"])
    );
    assert_eq!(
        created(&c, json!({"tags": "[\"a\",\"b\"]"}))["tags"],
        json!(["a", "b"])
    );
    assert_eq!(created(&c, json!({"tags": null}))["tags"], json!([]));
    assert_eq!(created(&c, json!({"tags": {"a": 1}}))["tags"], json!([]));
    assert_eq!(
        errors(&c, json!({"tags": "a,b"}))["tags"]["params"],
        json!({"value": "a,b"})
    );
    let too_many = json!({"code": "validation_too_many_values",
                          "message": "Select no more than 3.", "params": {"maxSelect": 3}});
    assert_eq!(
        errors(&c, json!({"tags": ["a", "b", "c", "d"]}))["tags"],
        too_many
    );
    // The count is checked before the values.
    assert_eq!(
        errors(&c, json!({"tags": ["z", "y", "x", "w"]}))["tags"],
        too_many
    );
    assert_eq!(
        errors(&c, json!({"tags": ["a", "z"]}))["tags"]["params"],
        json!({"value": "z"})
    );
}

#[test]
fn json_values() {
    let c = posts();
    assert_eq!(created(&c, json!({"j2": "hello"}))["j2"], "hello");
    assert_eq!(created(&c, json!({"j2": "[1, 2]"}))["j2"], json!([1, 2]));
    assert_eq!(created(&c, json!({"j2": "-5"}))["j2"], -5);
    assert_eq!(created(&c, json!({"j2": "\"q\""}))["j2"], "q");
    assert_eq!(created(&c, json!({"j2": ""}))["j2"], "");
    assert_eq!(created(&c, json!({"j2": 1.0}))["j2"], json!(1));
    let sorted = created(&c, json!({"j2": {"b": 2, "a": 1}}));
    assert_eq!(
        serde_json::to_string(&sorted["j2"]).ok().as_deref(),
        Some(r#"{"a":1,"b":2}"#)
    );
    assert_eq!(
        errors(
            &c,
            json!({"j": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]})
        )["j"],
        json!({"code": "validation_json_size_limit",
               "message": "The maximum allowed JSON size is 30 bytes.",
               "params": {"maxSize": 30}})
    );
    // HTML characters are not escaped when measuring.
    assert!(create(&c, json!({"j": {"a": "<<<<<<<<<"}})).is_ok());
    let near = "x".repeat((1 << 20) - 2);
    assert!(create(&c, json!({"j2": near})).is_ok());
    let over = "x".repeat((1 << 20) + 10);
    assert_eq!(
        errors(&c, json!({"j2": over}))["j2"]["params"],
        json!({"maxSize": 1_048_576})
    );
}

#[test]
fn relations_counts_and_caller_checks() {
    let c = posts();
    let (u1, u2) = ("0bpvczkq7ndfqxm", "m5lx1jlzkaqw21n");
    assert_eq!(
        errors(&c, json!({"rs": [u1]}))["rs"],
        json!({"code": "validation_not_enough_values", "message": "Select at least 2.",
               "params": {"minSelect": 2}})
    );
    // Duplicates collapse before counting.
    assert_eq!(
        errors(&c, json!({"rs": [u1, u1]}))["rs"]["code"],
        "validation_not_enough_values"
    );
    assert_eq!(
        errors(&c, json!({"rs": ["a", "b", "c", "d"]}))["rs"],
        json!({"code": "validation_too_many_values", "message": "Select no more than 3.",
               "params": {"maxSelect": 3}})
    );
    let p = create(&c, json!({"r": [u1, u2], "rs": [u1, u2]})).expect("create");
    assert_eq!(p.record["r"], u2);
    assert_eq!(p.record["rs"], json!([u1, u2]));
    assert_eq!(
        p.relations,
        vec![
            (
                "r".to_string(),
                "_pb_users_auth_".to_string(),
                vec![u2.to_string()]
            ),
            (
                "rs".to_string(),
                "_pb_users_auth_".to_string(),
                vec![u1.to_string(), u2.to_string()]
            ),
        ]
    );
    assert!(create(&c, json!({})).expect("create").relations.is_empty());
}

#[test]
fn number_modifiers() {
    let c = posts();
    let current = created(&c, json!({"n": 5, "f": 1.5}));
    let after = |v: Value| update(&c, &current, v).map(|p| p.record);
    assert_eq!(after(json!({"n+": 3})).expect("n+")["n"], 8);
    assert_eq!(after(json!({"f+": "2.5"})).expect("f+")["f"], 4);
    assert_eq!(after(json!({"f+": "abc"})).expect("f+ abc")["f"], 1.5);
    // Plain values apply before modifiers, whatever the key order.
    assert_eq!(after(json!({"n+": 2, "n": 10})).expect("order")["n"], 12);
    assert_eq!(after(json!({"n": 10, "n+": 2})).expect("order")["n"], 12);
    let err = after(json!({"n-": 10})).expect_err("below min");
    assert_eq!(err["n"].code, "validation_min_number_constraint");
    // On create the modifier applies to the empty value.
    assert_eq!(created(&c, json!({"n+": 5}))["n"], 5);
}

#[test]
fn list_modifiers() {
    let c = posts();
    let current = created(&c, json!({"tags": ["a", "b"], "s": "a"}));
    let tags = |v: Value| update(&c, &current, v).map(|p| p.record["tags"].clone());
    assert_eq!(
        tags(json!({"tags+": "c"})).expect("append"),
        json!(["a", "b", "c"])
    );
    assert_eq!(
        tags(json!({"+tags": "c"})).expect("prepend"),
        json!(["c", "a", "b"])
    );
    assert_eq!(
        tags(json!({"+tags": ["d", "a"]})).expect("prepend"),
        json!(["d", "a", "b"])
    );
    assert_eq!(tags(json!({"tags-": "a"})).expect("remove"), json!(["b"]));
    assert_eq!(
        tags(json!({"tags-": ["a", "b"]})).expect("remove"),
        json!([])
    );
    assert_eq!(
        tags(json!({"tags": ["c"], "tags+": "d"})).expect("set+append"),
        json!(["c", "d"])
    );
    assert_eq!(
        tags(json!({"tags+": "c", "tags": ["d"]})).expect("set+append"),
        json!(["d", "c"])
    );
    assert_eq!(
        tags(json!({"tags-": "a", "tags": ["a", "c"]})).expect("set-remove"),
        json!(["c"])
    );
    // Modifiers run in input order.
    assert_eq!(
        tags(json!({"tags+": "c", "tags-": "c"})).expect("order"),
        json!(["a", "b"])
    );
    assert_eq!(
        tags(json!({"tags-": "c", "tags+": "c"})).expect("order"),
        json!(["a", "b", "c"])
    );
    let err = tags(json!({"tags+": ["c", "d"]})).expect_err("too many");
    assert_eq!(err["tags"].params, Some(json!({"maxSelect": 3})));
    assert_eq!(
        tags(json!({"tags+": "z"})).expect_err("invalid")["tags"].code,
        "validation_invalid_value"
    );
    // Single selects: append keeps the new last value, prepend keeps the old one.
    let single = |v: Value| update(&c, &current, v).map(|p| p.record["s"].clone());
    assert_eq!(single(json!({"s+": "b"})).expect("s+"), "b");
    assert_eq!(single(json!({"+s": "b"})).expect("+s"), "a");
    assert_eq!(single(json!({"s-": "a"})).expect("s-"), "");
    assert_eq!(
        created(&c, json!({"tags+": "a", "+tags": "b"}))["tags"],
        json!(["b", "a"])
    );
    // Text fields have no such modifiers.
    assert_eq!(created(&c, json!({"title+": "abc"}))["title"], "");
}

#[test]
fn autodates_on_update() {
    let c = posts();
    let current = created(&c, json!({}));
    let rec = update(&c, &current, json!({"created": "2020-01-01"}))
        .expect("update")
        .record;
    assert_eq!(rec["created"], NOW);
    assert_eq!(rec["updated"], "2025-06-01 00:00:00.000Z");
    assert_eq!(rec["id"], current["id"]);
}

#[test]
fn update_validates_unchanged_fields_too() {
    let c = posts();
    let mut current = created(&c, json!({}));
    current.insert("title".into(), json!("TOOLONGANDUPPER"));
    let err = update(&c, &current, json!({"plain": "x"})).expect_err("stale value");
    assert_eq!(err["title"].code, "validation_max_text_constraint");
}

#[test]
fn multipart_values_behave_like_json() {
    let c = posts();
    let form = |pairs: &[(&str, &[&str])]| -> Record {
        pairs
            .iter()
            .map(|(k, vs)| {
                let owned: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                (k.to_string(), multipart_value(&owned))
            })
            .collect()
    };
    let rec = prepare_create(
        &c,
        &form(&[
            ("plain", &["1.50"]),
            ("n", &["7"]),
            ("b", &["true"]),
            ("tags", &["a", "b"]),
            ("j2", &["1", "2"]),
            ("f", &["1e3"]),
        ]),
        NOW,
    )
    .expect("create")
    .record;
    assert_eq!(rec["plain"], "1.50");
    assert_eq!(rec["n"], 7);
    assert_eq!(rec["b"], true);
    assert_eq!(rec["tags"], json!(["a", "b"]));
    assert_eq!(rec["j2"], json!([1, 2]));
    assert_eq!(rec["f"], 1000);
    let strings = prepare_create(
        &c,
        &form(&[("j2", &["a", "b"]), ("plain", &["12", "13"])]),
        NOW,
    )
    .expect("create")
    .record;
    assert_eq!(strings["j2"], json!(["a", "b"]));
    // Several values for a single-valued text field: PocketBase stores "".
    assert_eq!(strings["plain"], "");
    let obj = prepare_create(
        &c,
        &form(&[("j2", &["{\"a\":1}"]), ("tags", &["[\"a\",\"c\"]"])]),
        NOW,
    )
    .expect("create")
    .record;
    assert_eq!(obj["j2"], json!({"a": 1}));
    assert_eq!(obj["tags"], json!(["a", "c"]));
}

#[test]
fn helpers() {
    let now = now_string();
    assert_eq!(now.len(), 24);
    assert!(now.ends_with('Z'));
    assert_eq!(super::super::coerce::date_text(&json!(now.clone())), now);
    let c = posts();
    let by_name = |n: &str| c.field(n).map(empty_value);
    assert_eq!(by_name("tags"), Some(json!([])));
    assert_eq!(by_name("s"), Some(json!("")));
    assert_eq!(by_name("j"), Some(Value::Null));
    assert_eq!(by_name("n"), Some(json!(0)));
    assert_eq!(by_name("b"), Some(json!(false)));
    let plain = serde_json::to_value(FieldError::new("validation_required", "Cannot be blank."));
    assert_eq!(
        plain.ok(),
        Some(json!({"code": "validation_required", "message": "Cannot be blank."}))
    );
    assert_eq!(
        missing_relation_records().code,
        "validation_missing_rel_records"
    );
}

/// Auth collections: the create form, password changes, managers and regular clients.
#[path = "validate_auth_tests.rs"]
mod auth;
