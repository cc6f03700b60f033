//! Lenient value coercions that mirror how PocketBase (Go, `spf13/cast`) reads client input.
//!
//! PocketBase rarely rejects a value for having the wrong JSON type: a number sent to a text
//! field becomes its decimal text, a non-numeric string sent to a number field becomes `0`, an
//! unparsable date becomes empty. These helpers reproduce those conversions so that the same
//! request stores the same values here; the validation rules then run on the converted values.
//! Pure functions only.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};
use rand::Rng;
use serde_json::{Map, Number, Value};

/// The stored date layout: UTC with milliseconds, as PocketBase serves it.
const DATE_LAYOUT: &str = "%Y-%m-%d %H:%M:%S%.3fZ";

/// A value as text (`cast.ToString`): strings as they are, numbers in plain decimal notation,
/// booleans as `true`/`false`, anything else (null, arrays, objects) as "".
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => format_float(n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A float in Go's `strconv.FormatFloat(f, 'f', -1, 64)` form: the shortest digits that
/// round-trip, never in exponent notation. Rust's `Display` for `f64` has the same contract.
pub fn format_float(f: f64) -> String {
    format!("{f}")
}

/// A value as a float (`cast.ToFloat64`): unparsable or non-scalar input is `0`.
pub fn to_float(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => parse_go_float(s).unwrap_or(0.0),
        Value::Bool(true) => 1.0,
        _ => 0.0,
    }
}

/// Go's `strconv.ParseFloat`: like Rust's parser, except that an out-of-range literal such as
/// `1e400` is an error rather than infinity (only the spelled-out `inf`/`infinity` parse to it).
fn parse_go_float(s: &str) -> Option<f64> {
    let f: f64 = s.parse().ok()?;
    if f.is_infinite() {
        let word = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
        if word != "inf" && word != "infinity" {
            return None;
        }
    }
    Some(f)
}

/// A value as a bool (`cast.ToBool`): strings by Go's `strconv.ParseBool` ("1", "t", "true",
/// "TRUE", "True"; anything unrecognised is false), numbers by being non-zero.
pub fn to_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"),
        _ => false,
    }
}

/// A stored number: integral values within the exactly-representable range as JSON integers,
/// the rest as floats. Non-finite values (which JSON cannot hold) become `0`.
pub fn number_value(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.fract() == 0.0 && f.abs() <= EXACT {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::from(0), Value::Number)
}

/// A geoPoint input as `(lon, lat)`, read as PocketBase's `GeoPoint.Scan` reads it: an object
/// (or JSON text of one) with numeric `lon`/`lat` keys; missing or null keys are 0, other keys
/// are ignored. Anything else (an array, a number, a key that is not a number) is the zero
/// point, which PocketBase keeps after its scan fails.
pub fn geo_point(raw: &Value) -> (f64, f64) {
    let parsed;
    let obj = match raw {
        Value::Object(m) => m,
        Value::String(s) if !s.is_empty() => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                parsed = m;
                &parsed
            }
            _ => return (0.0, 0.0),
        },
        _ => return (0.0, 0.0),
    };
    let coord = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Some(0.0),
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => None,
    };
    match (coord("lon"), coord("lat")) {
        (Some(lon), Some(lat)) => (lon, lat),
        _ => (0.0, 0.0),
    }
}

/// A geoPoint as stored and served: `{"lon": x, "lat": y}` (in that order, as PocketBase).
pub fn geo_value(lon: f64, lat: f64) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("lon".into(), number_value(lon));
    m.insert("lat".into(), number_value(lat));
    Value::Object(m)
}

/// A value as a list of distinct non-empty strings (PocketBase's `list.ToUniqueStringSlice`),
/// the shape select and relation values are read in. A string is one item unless it holds a
/// JSON array of strings (how multipart clients send lists); array items are read as text.
pub fn to_string_list(v: &Value) -> Vec<String> {
    let items: Vec<String> = match v {
        Value::Null | Value::Object(_) => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) if s.contains('[') => {
            match serde_json::from_str::<Vec<Option<String>>>(s) {
                Ok(list) => list.into_iter().map(Option::unwrap_or_default).collect(),
                Err(_) => vec![s.clone()],
            }
        }
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(to_text).collect(),
        Value::Number(_) | Value::Bool(_) => vec![to_text(v)],
    };
    unique_nonempty(items)
}

/// The distinct non-empty strings of `items`, first occurrence kept.
pub fn unique_nonempty(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !item.is_empty() && !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Reads a multipart text value the way PocketBase infers it before field conversion: "true"
/// and "false" become booleans and a numeric string becomes a number only when that number
/// prints back as exactly the same text ("1.50", "007", "1e3" stay strings).
pub fn infer_multipart(raw: &str) -> Value {
    match raw {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let numeric_chars = raw
        .bytes()
        .all(|b| b == b'-' || b == b'.' || b.is_ascii_digit());
    let starts_ok = raw.starts_with('-') || raw.starts_with(|c: char| c.is_ascii_digit());
    if numeric_chars
        && starts_ok
        && let Some(f) = parse_go_float(raw)
        && format_float(f) == raw
    {
        return number_value(f);
    }
    Value::String(raw.to_string())
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Parses a client date. Accepts the stored layout, RFC 3339 (with `T` or a space, any fraction,
/// `Z` or an offset), naive date-times (read as UTC), `YYYY-MM-DD`, RFC 2822 and `02 Jan 2006`.
/// Anything else, and any non-string, is `None`; PocketBase stores those as an empty date.
pub fn parse_date(v: &Value) -> Option<DateTime<Utc>> {
    let s = match v {
        Value::String(s) => s.as_str(),
        _ => return None,
    };
    let dt = parse_date_str(s)?;
    // Go's zero time (0001-01-01 00:00:00 UTC) means "no date".
    let zero = NaiveDate::from_ymd_opt(1, 1, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    (dt != zero).then_some(dt)
}

fn parse_date_str(s: &str) -> Option<DateTime<Utc>> {
    if s.is_empty() || s.trim() != s {
        return None;
    }
    if iso_date_prefix(s) {
        // A trailing "Z" is the UTC offset; give it numeric form so one pattern reads both.
        let zoned = match s.strip_suffix('Z') {
            Some(rest) => format!("{rest}+00:00"),
            None => s.to_string(),
        };
        const ZONED: [&str; 5] = [
            "%Y-%m-%dT%H:%M:%S%.f%:z",
            "%Y-%m-%d %H:%M:%S%.f%:z",
            "%Y-%m-%dT%H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M:%S%.f %:z",
            "%Y-%m-%d %H:%M:%S%.f %z",
        ];
        for layout in ZONED {
            if let Ok(dt) = DateTime::parse_from_str(&zoned, layout) {
                return Some(dt.with_timezone(&Utc));
            }
        }
        for layout in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(dt) = NaiveDateTime::parse_from_str(s, layout) {
                return Some(dt.and_utc());
            }
        }
        if s.len() == 10 {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
        }
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
        return Some(dt.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(s, "%d %b %Y").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

/// True when `s` starts with a strict `YYYY-MM-DD` (Go's layouts need two-digit fields).
fn iso_date_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// A date in the stored layout, `YYYY-MM-DD HH:MM:SS.mmmZ` (fraction truncated, as Go does).
pub fn format_date(dt: &DateTime<Utc>) -> String {
    dt.format(DATE_LAYOUT).to_string()
}

/// A client date normalized to the stored layout, or "" when it is not a date.
pub fn date_text(v: &Value) -> String {
    parse_date(v).map(|dt| format_date(&dt)).unwrap_or_default()
}

/// The fraction of a second as Go prints it: "" when zero, else "." and the digits without
/// trailing zeros.
fn go_fraction(dt: &DateTime<Utc>) -> String {
    let nanos = dt.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return String::new();
    }
    let digits = format!("{nanos:09}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// Go's `time.Time.String()` for a UTC time, used in date-range messages:
/// `2020-01-01 10:00:00.5 +0000 UTC`.
pub fn go_time_string(dt: &DateTime<Utc>) -> String {
    format!(
        "{}{} +0000 UTC",
        dt.format("%Y-%m-%d %H:%M:%S"),
        go_fraction(dt)
    )
}

/// Go's JSON form of a UTC time (RFC 3339 with trimmed nanoseconds): `2020-01-01T10:00:00.5Z`.
pub fn go_time_json(dt: &DateTime<Utc>) -> String {
    format!("{}{}Z", dt.format("%Y-%m-%dT%H:%M:%S"), go_fraction(dt))
}

// ---------------------------------------------------------------------------------------------
// JSON field values

/// A json field value as read from input, with the facts validation needs about its raw text.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonInput {
    pub value: Value,
    /// Length in bytes of the value's JSON text (what `maxSize` limits).
    pub size: usize,
    /// True for the values `required` rejects: null, "", [] and {}.
    pub blank: bool,
}

/// Reads a json field value. Strings are interpreted as PocketBase does so that multipart and
/// JSON bodies behave alike: "" stays an empty string; "null", "true", "false" and strings that
/// start like a number, string, array or object and are valid JSON are parsed (keeping their
/// own key order); any other string is stored as a JSON string. Other values are stored with
/// object keys sorted and integral floats as integers, which is how Go re-serializes them.
pub fn json_input(raw: &Value) -> JsonInput {
    if let Value::String(s) = raw {
        let looks_json = matches!(s.as_str(), "null" | "true" | "false")
            || s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '"' | '[' | '{'));
        if looks_json && let Ok(value) = serde_json::from_str::<Value>(s) {
            let trimmed = s.trim();
            let blank = matches!(trimmed, "null" | "\"\"" | "[]" | "{}" | "");
            return JsonInput {
                value,
                size: s.len(),
                blank,
            };
        }
    }
    let value = match raw {
        Value::String(_) => raw.clone(),
        other => canonical_json(other),
    };
    json_stored(value)
}

/// Size and blankness of an already stored json value.
pub fn json_stored(value: Value) -> JsonInput {
    let text = serde_json::to_string(&value).unwrap_or_default();
    let blank = matches!(text.as_str(), "null" | "\"\"" | "[]" | "{}" | "");
    JsonInput {
        value,
        size: text.len(),
        blank,
    }
}

/// Object keys sorted (recursively) and integral floats turned into integers.
fn canonical_json(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(map.len());
            for k in keys {
                if let Some(inner) = map.get(k) {
                    out.insert(k.clone(), canonical_json(inner));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_json).collect()),
        Value::Number(n) if n.is_f64() => number_value(n.as_f64().unwrap_or(0.0)),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Autogenerated text

/// A random string matching a simple generator pattern: a sequence of literal characters and
/// `[...]` classes (with ranges), each optionally followed by `{n}`, `{n,m}`, `?`, `+` or `*`;
/// `^`/`$` anchors are ignored. That covers PocketBase's defaults (`[a-z0-9]{15}`,
/// `[a-zA-Z0-9]{50}`) and common slugs such as `post-[a-z]{6}`. `None` for anything richer.
pub fn random_from_pattern(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut rng = rand::rng();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let (alphabet, next) = match chars[i] {
            '^' | '$' => {
                i += 1;
                continue;
            }
            '[' => parse_class(&chars, i + 1)?,
            '\\' => (vec![*chars.get(i + 1)?], i + 2),
            '(' | ')' | '|' | '.' | '{' | '}' | '?' | '+' | '*' => return None,
            c => (vec![c], i + 1),
        };
        let (min, max, after) = parse_quantifier(&chars, next)?;
        let count = if min == max {
            min
        } else {
            rng.random_range(min..=max)
        };
        for _ in 0..count {
            out.push(alphabet[rng.random_range(0..alphabet.len())]);
        }
        i = after;
    }
    Some(out)
}

/// Reads a character class body starting after `[`; returns its characters and the index after
/// the closing `]`. Negated classes are not supported.
fn parse_class(chars: &[char], mut i: usize) -> Option<(Vec<char>, usize)> {
    if chars.get(i) == Some(&'^') {
        return None;
    }
    let mut set = Vec::new();
    while let Some(&c) = chars.get(i) {
        if c == ']' {
            return (!set.is_empty()).then_some((set, i + 1));
        }
        let c = if c == '\\' {
            i += 1;
            *chars.get(i)?
        } else {
            c
        };
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            let end = *chars.get(i + 2)?;
            if end < c {
                return None;
            }
            set.extend(c..=end);
            i += 3;
        } else {
            set.push(c);
            i += 1;
        }
    }
    None
}

/// Reads an optional quantifier at `i`; returns (min, max, index after it).
fn parse_quantifier(chars: &[char], i: usize) -> Option<(usize, usize, usize)> {
    match chars.get(i) {
        Some('?') => Some((0, 1, i + 1)),
        Some('+') => Some((1, 10, i + 1)),
        Some('*') => Some((0, 10, i + 1)),
        Some('{') => {
            let close = i + chars[i..].iter().position(|&c| c == '}')?;
            let body: String = chars[i + 1..close].iter().collect();
            let (min, max) = match body.split_once(',') {
                Some((a, "")) => {
                    let a = a.trim().parse().ok()?;
                    (a, a + 10)
                }
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let n = body.trim().parse().ok()?;
                    (n, n)
                }
            };
            (min <= max && max <= 10_000).then_some((min, max, close + 1))
        }
        _ => Some((1, 1, i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_casts_follow_go() {
        // Checked against PocketBase 0.40.6: 123 -> "123", true -> "true", 1e20 -> 21 digits,
        // arrays/objects/null -> "".
        assert_eq!(to_text(&json!(123)), "123");
        assert_eq!(to_text(&json!(1.5)), "1.5");
        assert_eq!(to_text(&json!(1e20)), "100000000000000000000");
        assert_eq!(to_text(&json!(true)), "true");
        assert_eq!(to_text(&json!(["abc"])), "");
        assert_eq!(to_text(&json!({"a": 1})), "");
        assert_eq!(to_text(&Value::Null), "");
    }

    #[test]
    fn float_casts_follow_go() {
        // Checked against PocketBase 0.40.6: "abc" -> 0, "+5" -> 5, ".5e1" -> 5, "5." -> 5,
        // " 7 " -> 0, "0x10" -> 0, true -> 1, [1] -> 0.
        assert_eq!(to_float(&json!("abc")), 0.0);
        assert_eq!(to_float(&json!("+5")), 5.0);
        assert_eq!(to_float(&json!(".5e1")), 5.0);
        assert_eq!(to_float(&json!("5.")), 5.0);
        assert_eq!(to_float(&json!(" 7 ")), 0.0);
        assert_eq!(to_float(&json!("0x10")), 0.0);
        assert_eq!(to_float(&json!("1e400")), 0.0);
        assert_eq!(to_float(&json!(true)), 1.0);
        assert_eq!(to_float(&json!([1])), 0.0);
        assert!(to_float(&json!("NaN")).is_nan());
        assert!(to_float(&json!("-Inf")).is_infinite());
    }

    #[test]
    fn bool_casts_follow_go() {
        // Checked against PocketBase 0.40.6: "on" and "yes" are false, "T" and 2 are true.
        for t in [
            json!("true"),
            json!("1"),
            json!("T"),
            json!("TRUE"),
            json!(2),
            json!(0.5),
        ] {
            assert!(to_bool(&t), "{t}");
        }
        for f in [
            json!("on"),
            json!("yes"),
            json!(" true"),
            json!([true]),
            json!(0),
            json!(null),
        ] {
            assert!(!to_bool(&f), "{f}");
        }
    }

    #[test]
    fn string_lists_parse_json_arrays_and_dedupe() {
        assert_eq!(to_string_list(&json!("a")), vec!["a"]);
        assert_eq!(
            to_string_list(&json!("[\"a\",\"b\",\"a\"]")),
            vec!["a", "b"]
        );
        assert_eq!(to_string_list(&json!("a,b")), vec!["a,b"]);
        assert_eq!(to_string_list(&json!("[oops")), vec!["[oops"]);
        assert_eq!(to_string_list(&json!(["", "a", 1, null])), vec!["a", "1"]);
        assert_eq!(to_string_list(&json!({"a": 1})), Vec::<String>::new());
        assert_eq!(to_string_list(&json!(5)), vec!["5"]);
    }

    #[test]
    fn multipart_inference_only_takes_exact_numbers() {
        assert_eq!(infer_multipart("12"), json!(12));
        assert_eq!(infer_multipart("-1.5"), json!(-1.5));
        assert_eq!(infer_multipart("1.50"), json!("1.50"));
        assert_eq!(infer_multipart("007"), json!("007"));
        assert_eq!(infer_multipart("1e3"), json!("1e3"));
        assert_eq!(infer_multipart("true"), json!(true));
        assert_eq!(infer_multipart(""), json!(""));
    }

    #[test]
    fn dates_normalize_to_stored_layout() {
        // Checked against PocketBase 0.40.6.
        let cases = [
            ("2024-01-02", "2024-01-02 00:00:00.000Z"),
            ("2024-01-02T03:04:05Z", "2024-01-02 03:04:05.000Z"),
            ("2024-01-02T03:04:05+02:00", "2024-01-02 01:04:05.000Z"),
            ("2024-01-02 03:04:05Z", "2024-01-02 03:04:05.000Z"),
            ("2024-01-02 03:04:05", "2024-01-02 03:04:05.000Z"),
            ("2024-01-02T03:04:05", "2024-01-02 03:04:05.000Z"),
            ("2024-01-02 03:04:05.123456Z", "2024-01-02 03:04:05.123Z"),
            ("2024-01-02T03:04:05.1Z", "2024-01-02 03:04:05.100Z"),
            ("2024-01-02 03:04:05.999Z", "2024-01-02 03:04:05.999Z"),
            (
                "Tue, 02 Jan 2024 03:04:05 +0000",
                "2024-01-02 03:04:05.000Z",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(date_text(&json!(input)), want, "{input}");
        }
        for bad in [
            "garbage",
            "2024-13-01",
            "2024-01-02 03:04",
            " 2024-01-02",
            "2024-1-2",
            "",
        ] {
            assert_eq!(date_text(&json!(bad)), "", "{bad}");
        }
        assert_eq!(date_text(&json!(1_700_000_000)), "");
        assert_eq!(date_text(&json!(true)), "");
    }

    #[test]
    fn go_time_forms() {
        let dt = parse_date(&json!("2020-01-01 10:00:00.500Z")).expect("date");
        assert_eq!(go_time_string(&dt), "2020-01-01 10:00:00.5 +0000 UTC");
        assert_eq!(go_time_json(&dt), "2020-01-01T10:00:00.5Z");
        let whole = parse_date(&json!("2020-01-01")).expect("date");
        assert_eq!(go_time_string(&whole), "2020-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time_json(&whole), "2020-01-01T00:00:00Z");
    }

    #[test]
    fn json_inputs_follow_pocketbase_string_rules() {
        // Checked against PocketBase 0.40.6.
        assert_eq!(json_input(&json!("hello")).value, json!("hello"));
        assert_eq!(json_input(&json!("[1,2")).value, json!("[1,2"));
        assert_eq!(json_input(&json!("[1, 2]")).value, json!([1, 2]));
        assert_eq!(json_input(&json!("-5")).value, json!(-5));
        assert_eq!(json_input(&json!("12abc")).value, json!("12abc"));
        assert_eq!(json_input(&json!("\"q\"")).value, json!("q"));
        assert_eq!(json_input(&json!("true")).value, json!(true));
        assert_eq!(json_input(&json!("0012")).value, json!("0012"));
        let sorted = json_input(&json!({"b": 2, "a": {"d": 1, "c": 1.0}}));
        assert_eq!(
            serde_json::to_string(&sorted.value).ok(),
            Some(r#"{"a":{"c":1,"d":1},"b":2}"#.into())
        );
        let kept = json_input(&json!(r#"{"b":1,"a":2}"#));
        assert_eq!(
            serde_json::to_string(&kept.value).ok(),
            Some(r#"{"b":1,"a":2}"#.into())
        );
        for blank in [
            json!(null),
            json!(""),
            json!([]),
            json!({}),
            json!("null"),
            json!("[]"),
        ] {
            assert!(json_input(&blank).blank, "{blank}");
        }
        for filled in [json!(false), json!(0), json!(" "), json!("x")] {
            assert!(!json_input(&filled).blank, "{filled}");
        }
        assert_eq!(json_input(&json!([1, 2, 3])).size, 7);
    }

    #[test]
    fn generated_values_match_their_pattern() {
        for pattern in [
            "[a-z0-9]{15}",
            "[a-zA-Z0-9]{50}",
            "^post-[a-z]{6}$",
            "x[0-9]{2,4}",
        ] {
            let value = random_from_pattern(pattern).expect("generate");
            let re = regex::Regex::new(&format!("^{}$", pattern.trim_matches(['^', '$'])))
                .expect("regex");
            assert!(re.is_match(&value), "{pattern} -> {value}");
        }
        assert_eq!(
            random_from_pattern("[a-z0-9]{15}").map(|s| s.len()),
            Some(15)
        );
        assert_eq!(random_from_pattern("(a|b)"), None);
        assert_eq!(random_from_pattern("[^a]{3}"), None);
    }
}
