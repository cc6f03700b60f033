//! PocketBase's validation of its settings model, with its error codes, messages and nesting
//! (`{"meta": {"appName": {"code", "message"}}}`, list items keyed by index). As in its
//! validation library, rules other than "required" skip empty values.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use super::*;
use crate::records::formats::{is_email, is_url};

/// Largest integer JSON represents exactly; PocketBase's upper bound for log figures.
const MAX_SAFE_JSON_INT: i64 = 9_007_199_254_740_991;

fn error(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

fn required() -> Value {
    error("validation_required", "Cannot be blank.")
}

fn min_error(threshold: i64) -> Value {
    json!({"code": "validation_min_greater_equal_than_required",
           "message": format!("Must be no less than {threshold}."), "params": {"threshold": threshold}})
}

fn max_error(threshold: i64) -> Value {
    json!({"code": "validation_max_less_equal_than_required",
           "message": format!("Must be no greater than {threshold}."), "params": {"threshold": threshold}})
}

/// Errors of one object, by field name.
#[derive(Default)]
struct Errors(Map<String, Value>);

impl Errors {
    fn add(&mut self, field: &str, e: Option<Value>) {
        if let Some(e) = e {
            self.0.entry(field.to_string()).or_insert(e);
        }
    }

    fn nested(&mut self, field: &str, inner: Errors) {
        if !inner.0.is_empty() {
            self.0.insert(field.to_string(), Value::Object(inner.0));
        }
    }

    fn into_value(self) -> Option<Value> {
        (!self.0.is_empty()).then_some(Value::Object(self.0))
    }
}

/// `rules` in order; the first that fails is the field's error.
fn first(rules: &[&dyn Fn() -> Option<Value>]) -> Option<Value> {
    rules.iter().find_map(|r| r())
}

fn req_str(s: &str) -> Option<Value> {
    s.is_empty().then(required)
}

fn req_int(n: i64) -> Option<Value> {
    (n == 0).then(required)
}

fn length(s: &str, min: usize, max: usize) -> Option<Value> {
    let n = s.chars().count();
    if s.is_empty() || (min..=max).contains(&n) {
        return None;
    }
    Some(if min == max {
        json!({"code": "validation_length_invalid",
               "message": format!("The length must be exactly {min}."), "params": {"max": max, "min": min}})
    } else {
        json!({"code": "validation_length_out_of_range",
               "message": format!("The length must be between {min} and {max}."), "params": {"max": max, "min": min}})
    })
}

fn min(n: i64, threshold: i64) -> Option<Value> {
    (n != 0 && n < threshold).then(|| min_error(threshold))
}

fn max(n: i64, threshold: i64) -> Option<Value> {
    (n != 0 && n > threshold).then(|| max_error(threshold))
}

fn url(s: &str) -> Option<Value> {
    (!s.is_empty() && !is_url(s)).then(|| error("validation_is_url", "Must be a valid URL."))
}

fn email(s: &str) -> Option<Value> {
    (!s.is_empty() && !is_email(s))
        .then(|| error("validation_is_email", "Must be a valid email address."))
}

fn one_of(s: &str, allowed: &[&str]) -> Option<Value> {
    (!s.is_empty() && !allowed.contains(&s))
        .then(|| error("validation_in_invalid", "Must be a valid value."))
}

/// An IP address or a DNS name, as govalidator's `IsHost` accepts them.
fn host(s: &str) -> Option<Value> {
    static DNS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$")
            .expect("a valid pattern")
    });
    let ok = s.parse::<IpAddr>().is_ok() || (s.len() <= 255 && DNS.is_match(s));
    (!s.is_empty() && !ok).then(|| {
        error(
            "validation_is_host",
            "Must be a valid IP address or DNS name.",
        )
    })
}

fn hex_color(s: &str) -> Option<Value> {
    let hex = s.strip_prefix('#').unwrap_or(s);
    let ok = matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    (!s.is_empty() && !ok).then(|| {
        error(
            "validation_is_hex_color",
            "Must be a valid hexadecimal color code.",
        )
    })
}

fn ip_or_subnet(s: &str) -> Option<Value> {
    if s.is_empty() {
        return Some(required());
    }
    let ok = match s.split_once('/') {
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
        None => s.parse::<IpAddr>().is_ok(),
    };
    (!ok).then(|| {
        error(
            "validation_invlaid_ip_or_subnet",
            "Invalid IP or CIDR subnet.",
        )
    })
}

/// Each item of a list of IPs or subnets, errors keyed by index.
fn each_ip(items: &[String]) -> Option<Value> {
    let mut errs = Errors::default();
    for (i, ip) in items.iter().enumerate() {
        errs.add(&i.to_string(), ip_or_subnet(ip));
    }
    errs.into_value()
}

/// A 5-field cron expression or a macro, as PocketBase's scheduler parses them.
fn cron(s: &str) -> Option<Value> {
    if s.is_empty() {
        return None;
    }
    let macros = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if macros.contains(&s) {
        return None;
    }
    let invalid = |m: &str| Some(error("validation_invalid_cron", m));
    let segments: Vec<&str> = s.split_whitespace().collect();
    if segments.len() != 5 {
        return invalid(
            "Invalid cron expression - must be a valid macro or to have exactly 5 space separated segments.",
        );
    }
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
    for (seg, (lo, hi)) in segments.iter().zip(ranges) {
        if !cron_segment_ok(seg, lo, hi) {
            return invalid(&format!("Invalid cron segment {seg:?}."));
        }
    }
    None
}

fn cron_segment_ok(seg: &str, lo: u32, hi: u32) -> bool {
    seg.split(',').all(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => match st.parse::<u32>() {
                Ok(st) if st >= 1 => (r, Some(st)),
                _ => return false,
            },
            None => (part, None),
        };
        let in_range = |v: &str| v.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n));
        let range_ok = match range {
            "*" => true,
            r => match r.split_once('-') {
                Some((a, b)) => {
                    in_range(a) && in_range(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok()
                }
                None => in_range(r),
            },
        };
        range_ok && step.is_none_or(|st| st <= hi.max(1))
    })
}

fn s3(c: &S3Config) -> Errors {
    let on = c.enabled;
    let mut e = Errors::default();
    e.add(
        "endpoint",
        first(&[&|| url(&c.endpoint), &|| {
            on.then(|| req_str(&c.endpoint)).flatten()
        }]),
    );
    e.add("bucket", on.then(|| req_str(&c.bucket)).flatten());
    e.add("region", on.then(|| req_str(&c.region)).flatten());
    e.add("accessKey", on.then(|| req_str(&c.access_key)).flatten());
    e.add("secret", on.then(|| req_str(&c.secret)).flatten());
    e
}

fn meta(c: &MetaConfig) -> Errors {
    let mut e = Errors::default();
    e.add(
        "accentColor",
        first(&[&|| length(&c.accent_color, 7, 7), &|| {
            hex_color(&c.accent_color)
        }]),
    );
    e.add(
        "appName",
        first(&[&|| req_str(&c.app_name), &|| length(&c.app_name, 1, 255)]),
    );
    e.add(
        "appURL",
        first(&[&|| req_str(&c.app_url), &|| url(&c.app_url)]),
    );
    e.add(
        "senderName",
        first(&[&|| req_str(&c.sender_name), &|| {
            length(&c.sender_name, 1, 255)
        }]),
    );
    e.add(
        "senderAddress",
        first(&[&|| email(&c.sender_address), &|| req_str(&c.sender_address)]),
    );
    e
}

fn smtp(c: &SmtpConfig) -> Errors {
    let on = c.enabled;
    let mut e = Errors::default();
    e.add(
        "host",
        first(&[&|| on.then(|| req_str(&c.host)).flatten(), &|| {
            host(&c.host)
        }]),
    );
    e.add(
        "port",
        first(&[&|| on.then(|| req_int(c.port)).flatten(), &|| {
            min(c.port, 0)
        }]),
    );
    e.add("authMethod", one_of(&c.auth_method, &["LOGIN", "PLAIN"]));
    e.add("localName", host(&c.local_name));
    e
}

fn backups(c: &BackupsConfig) -> Errors {
    let mut e = Errors::default();
    e.nested("s3", s3(&c.s3));
    e.add("cron", cron(&c.cron));
    e.add(
        "cronMaxKeep",
        first(&[
            &|| {
                (!c.cron.is_empty())
                    .then(|| req_int(c.cron_max_keep))
                    .flatten()
            },
            &|| min(c.cron_max_keep, 1),
        ]),
    );
    e
}

fn batch(c: &BatchConfig) -> Errors {
    let on = c.enabled;
    let mut e = Errors::default();
    e.add(
        "maxRequests",
        first(&[&|| on.then(|| req_int(c.max_requests)).flatten(), &|| {
            min(c.max_requests, 0)
        }]),
    );
    e.add(
        "timeout",
        first(&[&|| on.then(|| req_int(c.timeout)).flatten(), &|| {
            min(c.timeout, 0)
        }]),
    );
    e.add("maxBodySize", min(c.max_body_size, 0));
    e
}

fn logs(c: &LogsConfig) -> Errors {
    let mut e = Errors::default();
    e.add(
        "maxDataSize",
        first(&[&|| min(c.max_data_size, 0), &|| {
            max(c.max_data_size, MAX_SAFE_JSON_INT)
        }]),
    );
    e.add(
        "maxDays",
        first(&[&|| min(c.max_days, 0), &|| {
            max(c.max_days, MAX_SAFE_JSON_INT)
        }]),
    );
    e.add("minLevel", max(c.min_level, MAX_SAFE_JSON_INT));
    e
}

/// A tag (`users:create`, `*:auth`, `tag`), a path or path prefix (`/api/`), optionally after a
/// method (`POST /api/collections/`).
static RULE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\w+ /[\w/-]*|/[\w/-]*|\w+:\w+|\*:\w+|\w+)$").expect("a valid pattern")
});

fn rule(r: &RateLimitRule) -> Errors {
    let mut e = Errors::default();
    e.add(
        "label",
        first(&[&|| req_str(&r.label), &|| {
            (!r.label.is_empty() && !RULE_LABEL.is_match(&r.label))
                .then(|| error("validation_match_invalid", "Must be in a valid format."))
        }]),
    );
    e.add(
        "maxRequests",
        first(&[&|| req_int(r.max_requests), &|| min(r.max_requests, 1)]),
    );
    e.add(
        "duration",
        first(&[&|| req_int(r.duration), &|| min(r.duration, 1)]),
    );
    e.add("audience", one_of(&r.audience, &["@guest", "@auth"]));
    e
}

fn rate_limits(c: &RateLimitsConfig) -> Errors {
    let mut e = Errors::default();
    if c.enabled && c.rules.is_empty() {
        e.add("rules", Some(required()));
    } else {
        let mut items = Errors::default();
        for (i, r) in c.rules.iter().enumerate() {
            items.nested(&i.to_string(), rule(r));
        }
        if let Some(v) = items.into_value() {
            e.0.insert("rules".into(), v);
        } else if let Some(conflict) = conflicting_rule(&c.rules) {
            e.0.insert("rules".into(), conflict);
        }
    }
    e.add("excludedIPs", each_ip(&c.excluded_ips));
    e
}

/// The first rule whose label and audience repeat (or prefix) an earlier one's.
fn conflicting_rule(rules: &[RateLimitRule]) -> Option<Value> {
    let mut seen: Vec<String> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let key = format!("{}@@{}", r.label, r.audience);
        if seen
            .iter()
            .any(|k| k.starts_with(&key) || key.starts_with(k.as_str()))
        {
            return Some(json!({i.to_string(): {"label": {
                "code": "validation_conflicting_rate_limit_rule",
                "message": format!("Rate limit rule configuration with label {} already exists or conflicts with another rule.", r.label),
                "params": {"label": r.label},
            }}}));
        }
        seen.push(key);
    }
    None
}

/// PocketBase's validation of the whole settings model: `Err(data)` with its nested errors.
pub fn validate(s: &Settings) -> Result<(), Value> {
    let mut e = Errors::default();
    e.add(
        "superuserIPs",
        each_ip(&s.superuser_ips).filter(|_| !s.superuser_ips.is_empty()),
    );
    e.nested("meta", meta(&s.meta));
    e.nested("logs", logs(&s.logs));
    e.nested("smtp", smtp(&s.smtp));
    e.nested("s3", s3(&s.s3));
    e.nested("backups", backups(&s.backups));
    e.nested("batch", batch(&s.batch));
    e.nested("rateLimits", rate_limits(&s.rate_limits));
    match e.into_value() {
        None => Ok(()),
        Some(v) => Err(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binds `patch` onto the defaults and validates, as `PATCH /api/settings` does.
    fn check(patch: Value) -> Result<(), Value> {
        let mut s = Settings::defaults();
        s.bind(&patch, true).expect("bind");
        validate(&s)
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(validate(&Settings::defaults()), Ok(()));
    }

    /// Answers recorded from PocketBase 0.40.6 for the same patches.
    #[test]
    fn errors_have_pocketbases_codes_and_nesting() {
        let cases = [
            (
                json!({"meta": {"appName": ""}}),
                json!({"meta": {"appName": {"code": "validation_required", "message": "Cannot be blank."}}}),
            ),
            (
                json!({"meta": {"accentColor": "#12"}}),
                json!({"meta": {"accentColor": {"code": "validation_length_invalid", "message": "The length must be exactly 7.", "params": {"max": 7, "min": 7}}}}),
            ),
            (
                json!({"meta": {"senderAddress": "nope"}}),
                json!({"meta": {"senderAddress": {"code": "validation_is_email", "message": "Must be a valid email address."}}}),
            ),
            (
                json!({"smtp": {"port": -1}}),
                json!({"smtp": {"port": {"code": "validation_min_greater_equal_than_required", "message": "Must be no less than 0.", "params": {"threshold": 0}}}}),
            ),
            (
                json!({"smtp": {"localName": "bad host!", "authMethod": "X"}}),
                json!({"smtp": {"authMethod": {"code": "validation_in_invalid", "message": "Must be a valid value."},
                                "localName": {"code": "validation_is_host", "message": "Must be a valid IP address or DNS name."}}}),
            ),
            (
                json!({"batch": {"enabled": true, "maxRequests": 0}}),
                json!({"batch": {"maxRequests": {"code": "validation_required", "message": "Cannot be blank."}}}),
            ),
            (
                json!({"rateLimits": {"rules": [{"label": "bad label!", "maxRequests": 0, "duration": 1}]}}),
                json!({"rateLimits": {"rules": {"0": {
                    "label": {"code": "validation_match_invalid", "message": "Must be in a valid format."},
                    "maxRequests": {"code": "validation_required", "message": "Cannot be blank."}}}}}),
            ),
            (
                json!({"rateLimits": {"rules": [{"label": "*:auth", "maxRequests": 2, "duration": 3},
                                                 {"label": "*:auth", "maxRequests": 2, "duration": 3}]}}),
                json!({"rateLimits": {"rules": {"1": {"label": {"code": "validation_conflicting_rate_limit_rule",
                    "message": "Rate limit rule configuration with label *:auth already exists or conflicts with another rule.",
                    "params": {"label": "*:auth"}}}}}}),
            ),
            (
                json!({"rateLimits": {"enabled": true, "rules": []}}),
                json!({"rateLimits": {"rules": {"code": "validation_required", "message": "Cannot be blank."}}}),
            ),
            (
                json!({"superuserIPs": ["nope", ""]}),
                json!({"superuserIPs": {"0": {"code": "validation_invlaid_ip_or_subnet", "message": "Invalid IP or CIDR subnet."},
                                        "1": {"code": "validation_required", "message": "Cannot be blank."}}}),
            ),
            (
                json!({"backups": {"cron": "* * * * *", "cronMaxKeep": 0}}),
                json!({"backups": {"cronMaxKeep": {"code": "validation_required", "message": "Cannot be blank."}}}),
            ),
            (
                json!({"logs": {"minLevel": 99_999_999_999_999_999i64}}),
                json!({"logs": {"minLevel": {"code": "validation_max_less_equal_than_required", "message": "Must be no greater than 9007199254740991.", "params": {"threshold": 9_007_199_254_740_991i64}}}}),
            ),
        ];
        for (patch, want) in cases {
            assert_eq!(check(patch.clone()), Err(want), "{patch}");
        }
        for ok in [
            json!({"meta": {"appURL": "localhost:8090"}}),
            json!({"meta": {"appURL": "ftp://x"}}),
            json!({"rateLimits": {"excludedIPs": ["1.2.3.4", "10.0.0.0/8", "::1"]}}),
            json!({"backups": {"cron": "*/5 1-3 * * 0,6", "cronMaxKeep": 2}}),
            json!({"rateLimits": {"rules": [{"label": "/api/", "maxRequests": 2, "duration": 3},
                                            {"label": "POST /api/collections/", "maxRequests": 2, "duration": 3, "audience": "@guest"}]}}),
        ] {
            assert_eq!(check(ok.clone()), Ok(()), "{ok}");
        }
    }
}
