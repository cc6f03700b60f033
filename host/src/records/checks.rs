//! Per-field-type validation of normalized values: each function returns the first rule the
//! value breaks as PocketBase 0.40 reports it (code, message, params), or `None`.
//!
//! Values arrive already converted (see `coerce`); these functions never convert and never
//! look outside the one field. Checks that need the database (uniqueness, relation existence)
//! are not here.

use std::collections::HashMap;
use std::sync::LazyLock;

use parking_lot::RwLock;
use regex::Regex;
use serde_json::json;

use super::coerce::{JsonInput, go_time_json, go_time_string, parse_date};
use super::formats::{email_domain, is_email, is_url, url_host};
use super::validate::FieldError;
use crate::store::schema::{
    DateOptions, DomainOptions, EditorOptions, JsonOptions, NumberOptions, PasswordOptions,
    RelationOptions, SelectOptions, TextOptions,
};

/// Text fields without a `max` are limited to this many characters.
const DEFAULT_TEXT_MAX: i64 = 5000;
/// Editor fields without a `maxSize` are limited to this many bytes (5 MiB).
const DEFAULT_EDITOR_MAX_SIZE: i64 = 5 << 20;
/// JSON fields without a `maxSize` are limited to this many bytes (1 MiB).
const DEFAULT_JSON_MAX_SIZE: i64 = 1 << 20;
/// Passwords without a `max` are limited to this many characters.
const DEFAULT_PASSWORD_MAX: i64 = 71;
/// bcrypt refuses passwords longer than this many bytes.
const BCRYPT_MAX_BYTES: usize = 72;

/// Characters never allowed in a new primary key, whatever its pattern says, because ids end
/// up in file paths.
const FORBIDDEN_PK_CHARS: [char; 2] = ['/', '\\'];

pub fn required() -> FieldError {
    FieldError::new("validation_required", "Cannot be blank.")
}

fn invalid_format() -> FieldError {
    FieldError::new("validation_invalid_format", "Invalid value format.")
}

/// True when `value` matches `pattern`; a pattern that does not compile matches nothing, as in
/// PocketBase (which ignores the compile error and reports a format error).
///
/// Compiled patterns are kept: compiling costs tens of microseconds, far more than matching, and
/// every create checks at least the id field's pattern.
fn matches_pattern(pattern: &str, value: &str) -> bool {
    // Match under the read lock: a cloned `Regex` would start with an empty match cache.
    if let Some(re) = PATTERNS.read().get(pattern) {
        return re.as_ref().is_some_and(|re| re.is_match(value));
    }
    let re = Regex::new(pattern).ok();
    let matched = re.as_ref().is_some_and(|re| re.is_match(value));
    let mut cache = PATTERNS.write();
    if cache.len() >= PATTERN_CACHE_MAX {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), re);
    matched
}

/// Patterns compiled so far (`None` for one that does not compile). Patterns come from collection
/// schemas, so the set is small; it is emptied if it ever grows past `PATTERN_CACHE_MAX`.
static PATTERNS: LazyLock<RwLock<HashMap<String, Option<Regex>>>> = LazyLock::new(Default::default);
const PATTERN_CACHE_MAX: usize = 4096;

/// The text rules: required, then (for non-empty values) min/max characters and pattern.
pub fn check_text(opts: &TextOptions, required_: bool, value: &str) -> Option<FieldError> {
    if value.is_empty() {
        return (required_ || opts.primary_key).then(required);
    }
    let length = value.chars().count() as i64;
    if opts.min > 0 && length < opts.min {
        return Some(
            FieldError::new(
                "validation_min_text_constraint",
                format!("Must be at least {} character(s).", opts.min),
            )
            .with_params(json!({ "min": opts.min })),
        );
    }
    let max = if opts.max == 0 {
        DEFAULT_TEXT_MAX
    } else {
        opts.max
    };
    if max > 0 && length > max {
        return Some(
            FieldError::new(
                "validation_max_text_constraint",
                format!("Must be no more than {max} character(s)."),
            )
            .with_params(json!({ "max": max })),
        );
    }
    if !opts.pattern.is_empty() && !matches_pattern(&opts.pattern, value) {
        return Some(invalid_format());
    }
    None
}

/// The primary key rules. On update the key may not change, and an unchanged non-empty key is
/// not re-validated (it may predate the current options). On create the text rules apply, then
/// the forbidden-character check.
pub fn check_primary_key(
    opts: &TextOptions,
    value: &str,
    original: Option<&str>,
) -> Option<FieldError> {
    if let Some(old) = original {
        if old != value {
            return Some(FieldError::new(
                "validation_pk_change",
                "The record primary key cannot be changed.",
            ));
        }
        if !old.is_empty() {
            return None;
        }
    }
    if let Some(err) = check_text(opts, true, value) {
        return Some(err);
    }
    let forbidden = FORBIDDEN_PK_CHARS.iter().find(|&&c| value.contains(c))?;
    Some(
        FieldError::new(
            "validation_pk_forbidden",
            "The record primary key contains forbidden characters.",
        )
        .with_params(json!({ "forbidden": forbidden.to_string() })),
    )
}

/// The number rules. Zero is the empty value: it only fails `required` and skips the rest.
pub fn check_number(opts: &NumberOptions, required_: bool, value: f64) -> Option<FieldError> {
    if !value.is_finite() {
        return Some(FieldError::new(
            "validation_not_a_number",
            "The submitted number is not properly formatted.",
        ));
    }
    if value == 0.0 {
        return required_.then(required);
    }
    if opts.only_int && value.fract() != 0.0 {
        return Some(FieldError::new(
            "validation_only_int_constraint",
            "Decimal numbers are not allowed.",
        ));
    }
    if let Some(min) = opts.min.filter(|&min| value < min) {
        return Some(
            FieldError::new(
                "validation_min_number_constraint",
                format!("Must be greater or equal than {min}."),
            )
            .with_params(json!({ "min": super::coerce::number_value(min) })),
        );
    }
    if let Some(max) = opts.max.filter(|&max| value > max) {
        return Some(
            FieldError::new(
                "validation_max_number_constraint",
                format!("Must be less or equal than {max}."),
            )
            .with_params(json!({ "max": super::coerce::number_value(max) })),
        );
    }
    None
}

/// A required bool must be true.
pub fn check_bool(required_: bool, value: bool) -> Option<FieldError> {
    (required_ && !value).then(required)
}

fn domain_allowed(opts: &DomainOptions, domain: &str) -> bool {
    let only = opts.only_domains.is_empty() || opts.only_domains.iter().any(|d| d == domain);
    let except = opts.except_domains.iter().any(|d| d == domain);
    only && !except
}

/// The email rules: format, then the domain lists (exact, case-sensitive match).
pub fn check_email(opts: &DomainOptions, required_: bool, value: &str) -> Option<FieldError> {
    if value.is_empty() {
        return required_.then(required);
    }
    if !is_email(value) {
        return Some(FieldError::new(
            "validation_is_email",
            "Must be a valid email address.",
        ));
    }
    if !domain_allowed(opts, email_domain(value)) {
        return Some(FieldError::new(
            "validation_email_domain_not_allowed",
            "Email domain is not allowed.",
        ));
    }
    None
}

/// The URL rules: format, then the domain lists against the URL's host (port included).
pub fn check_url(opts: &DomainOptions, required_: bool, value: &str) -> Option<FieldError> {
    if value.is_empty() {
        return required_.then(required);
    }
    if !is_url(value) {
        return Some(FieldError::new(
            "validation_invalid_url",
            "Must be a valid url.",
        ));
    }
    if !domain_allowed(opts, url_host(value)) {
        return Some(FieldError::new(
            "validation_url_domain_not_allowed",
            "Url domain is not allowed.",
        ));
    }
    None
}

/// The editor rules: required, then the size limit in bytes.
pub fn check_editor(opts: &EditorOptions, required_: bool, value: &str) -> Option<FieldError> {
    if value.is_empty() {
        return required_.then(required);
    }
    let max = if opts.max_size <= 0 {
        DEFAULT_EDITOR_MAX_SIZE
    } else {
        opts.max_size
    };
    if value.len() as i64 > max {
        return Some(
            FieldError::new(
                "validation_content_size_limit",
                format!("The maximum allowed content size is {max} bytes."),
            )
            .with_params(json!({ "maxSize": max })),
        );
    }
    None
}

/// The date rules on a normalized date: required, then the min/max bounds (inclusive).
pub fn check_date(opts: &DateOptions, required_: bool, value: &str) -> Option<FieldError> {
    let Some(date) = parse_date(&json!(value)) else {
        return required_.then(required);
    };
    if let Some(min) = parse_date(&json!(opts.min)).filter(|min| date < *min) {
        return Some(
            FieldError::new(
                "validation_min_greater_equal_than_required",
                format!("Must be no less than {}.", go_time_string(&min)),
            )
            .with_params(json!({ "threshold": go_time_json(&min) })),
        );
    }
    if let Some(max) = parse_date(&json!(opts.max)).filter(|max| date > *max) {
        return Some(
            FieldError::new(
                "validation_max_less_equal_than_required",
                format!("Must be no greater than {}.", go_time_string(&max)),
            )
            .with_params(json!({ "threshold": go_time_json(&max) })),
        );
    }
    None
}

fn too_many(max_select: i64) -> FieldError {
    FieldError::new(
        "validation_too_many_values",
        format!("Select no more than {max_select}."),
    )
    .with_params(json!({ "maxSelect": max_select }))
}

/// The select rules: required, then the count limit, then every value must be an option.
pub fn check_select(
    opts: &SelectOptions,
    required_: bool,
    values: &[String],
) -> Option<FieldError> {
    if values.is_empty() {
        return required_.then(required);
    }
    let max_select = opts.max_select.max(1);
    if values.len() as i64 > max_select {
        return Some(too_many(max_select));
    }
    let unknown = values.iter().find(|v| !opts.values.contains(v))?;
    Some(
        FieldError::new(
            "validation_invalid_value",
            format!("Invalid value {unknown}."),
        )
        .with_params(json!({ "value": unknown })),
    )
}

/// The relation rules this module can check: required and the count limits. Whether the ids
/// exist is the caller's check (`validation_missing_rel_records`).
pub fn check_relation(
    opts: &RelationOptions,
    required_: bool,
    ids: &[String],
) -> Option<FieldError> {
    if ids.is_empty() {
        return required_.then(required);
    }
    if opts.min_select > 0 && (ids.len() as i64) < opts.min_select {
        return Some(
            FieldError::new(
                "validation_not_enough_values",
                format!("Select at least {}.", opts.min_select),
            )
            .with_params(json!({ "minSelect": opts.min_select })),
        );
    }
    let max_select = opts.max_select.max(1);
    if ids.len() as i64 > max_select {
        return Some(too_many(max_select));
    }
    None
}

/// The json rules: size limit in bytes, then required (null, "", [] and {} are blank).
pub fn check_json(opts: &JsonOptions, required_: bool, input: &JsonInput) -> Option<FieldError> {
    let max = if opts.max_size <= 0 {
        DEFAULT_JSON_MAX_SIZE
    } else {
        opts.max_size
    };
    if input.size as i64 > max {
        return Some(
            FieldError::new(
                "validation_json_size_limit",
                format!("The maximum allowed JSON size is {max} bytes."),
            )
            .with_params(json!({ "maxSize": max })),
        );
    }
    (required_ && input.blank).then(required)
}

/// The password rules. `plain` is the new plain-text password when the input sets one;
/// otherwise only `required` is checked, against the current hash.
pub fn check_password(
    opts: &PasswordOptions,
    required_: bool,
    plain: Option<&str>,
    current_hash: &str,
) -> Option<FieldError> {
    let Some(plain) = plain else {
        return (required_ && current_hash.is_empty()).then(required);
    };
    if plain.len() > BCRYPT_MAX_BYTES {
        // PocketBase surfaces bcrypt's own refusal here, before the length rules.
        return Some(FieldError::new(
            "validation_invalid_value",
            "Invalid value.",
        ));
    }
    if plain.is_empty() {
        return required_.then(required);
    }
    let length = plain.chars().count() as i64;
    if length < opts.min {
        return Some(FieldError::new(
            "validation_min_text_constraint",
            format!("Must be at least {} character(s).", opts.min),
        ));
    }
    let max = if opts.max <= 0 {
        DEFAULT_PASSWORD_MAX
    } else {
        opts.max
    };
    if length > max {
        return Some(FieldError::new(
            "validation_max_text_constraint",
            format!("Must be less than {max} character(s)."),
        ));
    }
    if !opts.pattern.is_empty() && !matches_pattern(&opts.pattern, plain) {
        return Some(invalid_format());
    }
    None
}

/// The geoPoint rules: the zero point ("Null Island") is blank; otherwise latitude within
/// ±90 and longitude within ±180, latitude checked first.
pub fn check_geo_point(required_: bool, lon: f64, lat: f64) -> Option<FieldError> {
    if lon == 0.0 && lat == 0.0 {
        return required_.then(required);
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Some(FieldError::new(
            "validation_invalid_latitude",
            "Latitude must be between -90 and 90 degrees.",
        ));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Some(FieldError::new(
            "validation_invalid_longitude",
            "Longitude must be between -180 and 180 degrees.",
        ));
    }
    None
}
