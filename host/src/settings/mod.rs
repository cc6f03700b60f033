//! The node's settings (`/api/settings`) as PocketBase's settings model: only its keys, its
//! types, its defaults and its validation. A PATCH body is bound onto the current settings the
//! way PocketBase's Go JSON decoder does it (objects merge field by field, keys match without
//! regard to case, arrays and scalars replace, `null` resets to the zero value, unknown keys
//! are dropped, a value of the wrong type refuses the whole body), then validated
//! (`validate.rs`). Secrets (SMTP password, S3 secrets) are stored but never shown.
//!
//! Pure: storage is `store::settings` (one JSON document in `_params`, so code that reads
//! `settings["smtp"]["host"]` from it keeps working).

mod validate;

use serde::Serialize;
use serde_json::Value;

pub use validate::validate;

/// Why a body could not be bound: a value of the wrong type somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("An error occurred while loading the submitted data.")]
pub struct BindError;

/// Binding JSON onto a value in place, as Go's decoder does.
pub trait Bind {
    /// Binds `v` onto `self`. `strict`: a type mismatch is an error; otherwise the current
    /// value is kept (reading a stored document written by an older version).
    fn bind(&mut self, v: &Value, strict: bool) -> Result<(), BindError>;
}

fn mismatch(strict: bool) -> Result<(), BindError> {
    if strict { Err(BindError) } else { Ok(()) }
}

impl Bind for String {
    fn bind(&mut self, v: &Value, strict: bool) -> Result<(), BindError> {
        match v {
            Value::String(s) => *self = s.clone(),
            Value::Null => self.clear(),
            _ => return mismatch(strict),
        }
        Ok(())
    }
}

impl Bind for i64 {
    fn bind(&mut self, v: &Value, strict: bool) -> Result<(), BindError> {
        match v {
            // Integers only: Go refuses `1.0` and `1e2` for an int field too.
            Value::Number(n) => match n.as_i64() {
                Some(i) => *self = i,
                None => return mismatch(strict),
            },
            Value::Null => *self = 0,
            _ => return mismatch(strict),
        }
        Ok(())
    }
}

impl Bind for bool {
    fn bind(&mut self, v: &Value, strict: bool) -> Result<(), BindError> {
        match v {
            Value::Bool(b) => *self = *b,
            Value::Null => *self = false,
            _ => return mismatch(strict),
        }
        Ok(())
    }
}

impl<T: Bind + Default> Bind for Vec<T> {
    fn bind(&mut self, v: &Value, strict: bool) -> Result<(), BindError> {
        match v {
            // A new array replaces the old one; its elements start from zero values.
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let mut t = T::default();
                    t.bind(item, strict)?;
                    out.push(t);
                }
                *self = out;
            }
            Value::Null => self.clear(),
            _ => return mismatch(strict),
        }
        Ok(())
    }
}

/// Implements [`Bind`] for a struct from its fields' JSON names: an object binds key by key
/// (names compared without case, as Go does), `null` resets the struct to its zero value.
macro_rules! bind_struct {
    ($ty:ty { $($field:ident : $name:literal),* $(,)? }) => {
        impl Bind for $ty {
            fn bind(&mut self, v: &Value, strict: bool) -> Result<(), BindError> {
                match v {
                    Value::Object(m) => {
                        for (k, val) in m {
                            $(if k.eq_ignore_ascii_case($name) {
                                self.$field.bind(val, strict)?;
                                continue;
                            })*
                        }
                        Ok(())
                    }
                    Value::Null => {
                        *self = <$ty>::default();
                        Ok(())
                    }
                    _ => mismatch(strict),
                }
            }
        }
    };
}

/// PocketBase's settings, fields in its order. `Default` is Go's zero value (what `null`
/// resets to); [`Settings::defaults`] is a fresh install's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    #[serde(rename = "superuserIPs")]
    pub superuser_ips: Vec<String>,
    pub smtp: SmtpConfig,
    pub backups: BackupsConfig,
    pub s3: S3Config,
    pub meta: MetaConfig,
    pub rate_limits: RateLimitsConfig,
    pub trusted_proxy: TrustedProxyConfig,
    pub batch: BatchConfig,
    pub logs: LogsConfig,
}

bind_struct!(Settings {
    superuser_ips: "superuserIPs",
    smtp: "smtp",
    backups: "backups",
    s3: "s3",
    meta: "meta",
    rate_limits: "rateLimits",
    trusted_proxy: "trustedProxy",
    batch: "batch",
    logs: "logs",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmtpConfig {
    pub enabled: bool,
    pub port: i64,
    pub host: String,
    pub username: String,
    pub password: String,
    /// `PLAIN` (default when empty) or `LOGIN`.
    pub auth_method: String,
    pub tls: bool,
    pub local_name: String,
}

bind_struct!(SmtpConfig {
    enabled: "enabled",
    port: "port",
    host: "host",
    username: "username",
    password: "password",
    auth_method: "authMethod",
    tls: "tls",
    local_name: "localName",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Config {
    pub enabled: bool,
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub access_key: String,
    pub secret: String,
    pub force_path_style: bool,
}

bind_struct!(S3Config {
    enabled: "enabled",
    bucket: "bucket",
    region: "region",
    endpoint: "endpoint",
    access_key: "accessKey",
    secret: "secret",
    force_path_style: "forcePathStyle",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupsConfig {
    /// Cron expression of automatic backups; empty: none.
    pub cron: String,
    pub cron_max_keep: i64,
    pub s3: S3Config,
}

bind_struct!(BackupsConfig {
    cron: "cron",
    cron_max_keep: "cronMaxKeep",
    s3: "s3"
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaConfig {
    pub accent_color: String,
    pub app_name: String,
    #[serde(rename = "appURL")]
    pub app_url: String,
    pub sender_name: String,
    pub sender_address: String,
    pub hide_controls: bool,
}

bind_struct!(MetaConfig {
    accent_color: "accentColor",
    app_name: "appName",
    app_url: "appURL",
    sender_name: "senderName",
    sender_address: "senderAddress",
    hide_controls: "hideControls",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsConfig {
    pub rules: Vec<RateLimitRule>,
    #[serde(rename = "excludedIPs")]
    pub excluded_ips: Vec<String>,
    pub enabled: bool,
}

bind_struct!(RateLimitsConfig {
    rules: "rules",
    excluded_ips: "excludedIPs",
    enabled: "enabled"
});

/// One rate limit rule. `label`: a tag (`users:create`, `*:auth`), a path (`/api/batch`), a
/// path prefix ending in `/` (`/api/`), optionally after a method (`POST /api/collections/`).
/// `audience`: `""` (everyone), `@guest` or `@auth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    pub label: String,
    pub audience: String,
    /// Seconds per window.
    pub duration: i64,
    pub max_requests: i64,
}

bind_struct!(RateLimitRule {
    label: "label",
    audience: "audience",
    duration: "duration",
    max_requests: "maxRequests",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedProxyConfig {
    /// Headers holding the client IP, set by a proxy in front of the node.
    pub headers: Vec<String>,
    #[serde(rename = "useLeftmostIP")]
    pub use_leftmost_ip: bool,
}

bind_struct!(TrustedProxyConfig {
    headers: "headers",
    use_leftmost_ip: "useLeftmostIP"
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchConfig {
    pub enabled: bool,
    pub max_requests: i64,
    /// Seconds.
    pub timeout: i64,
    pub max_body_size: i64,
}

bind_struct!(BatchConfig {
    enabled: "enabled",
    max_requests: "maxRequests",
    timeout: "timeout",
    max_body_size: "maxBodySize",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsConfig {
    pub max_data_size: i64,
    pub max_days: i64,
    pub min_level: i64,
    #[serde(rename = "logIP")]
    pub log_ip: bool,
    pub log_auth_id: bool,
}

bind_struct!(LogsConfig {
    max_data_size: "maxDataSize",
    max_days: "maxDays",
    min_level: "minLevel",
    log_ip: "logIP",
    log_auth_id: "logAuthId",
});

impl Settings {
    /// A fresh install's settings: PocketBase 0.40's, with Syncbase's name.
    pub fn defaults() -> Settings {
        let rule = |label: &str, max_requests: i64, duration: i64| RateLimitRule {
            label: label.into(),
            audience: String::new(),
            duration,
            max_requests,
        };
        Settings {
            superuser_ips: Vec::new(),
            smtp: SmtpConfig {
                port: 587,
                host: "smtp.example.com".into(),
                ..Default::default()
            },
            backups: BackupsConfig {
                cron_max_keep: 3,
                ..Default::default()
            },
            s3: S3Config::default(),
            meta: MetaConfig {
                accent_color: "#1055c9".into(),
                app_name: "Syncbase".into(),
                app_url: "http://localhost:8090".into(),
                sender_name: "Support".into(),
                sender_address: "support@example.com".into(),
                hide_controls: false,
            },
            rate_limits: RateLimitsConfig {
                // PocketBase's rules, off by default as in PocketBase.
                rules: vec![
                    rule("*:auth", 2, 3),
                    rule("*:create", 20, 5),
                    rule("/api/batch", 3, 1),
                    rule("/api/", 300, 10),
                ],
                excluded_ips: Vec::new(),
                enabled: false,
            },
            trusted_proxy: TrustedProxyConfig::default(),
            batch: BatchConfig {
                enabled: false,
                max_requests: 50,
                timeout: 3,
                max_body_size: 0,
            },
            logs: LogsConfig {
                max_days: 5,
                log_ip: true,
                ..Default::default()
            },
        }
    }

    /// The settings as stored, from the document in `_params` (absent: the defaults). Keys
    /// that are not PocketBase's and values of the wrong type are ignored.
    pub fn from_stored(stored: Option<&Value>) -> Settings {
        let mut s = Settings::defaults();
        if let Some(v) = stored {
            // Lenient: never fails.
            let _ = s.bind(v, false);
        }
        s
    }

    /// The whole document, secrets included: what is stored, and what server-side code reads.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The document as the API shows it: secrets left out, as PocketBase does.
    pub fn to_public_json(&self) -> Value {
        let mut v = self.to_json();
        for path in ["/smtp", "/s3", "/backups/s3"] {
            if let Some(Value::Object(m)) = v.pointer_mut(path) {
                m.remove("password");
                m.remove("secret");
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_binds_like_gos_decoder() {
        let mut s = Settings::defaults();
        s.bind(
            &json!({"junk": 1, "META": {"appName": "X", "x": 2}, "batch": {"maxRequests": 9},
                    "smtp": {"port": null}, "rateLimits": {"rules": [{"label": "a:auth"}]}}),
            true,
        )
        .expect("bind");
        assert_eq!(s.meta.app_name, "X", "keys match without case");
        assert_eq!(
            s.meta.sender_name, "Support",
            "objects merge field by field"
        );
        assert_eq!((s.batch.max_requests, s.batch.timeout), (9, 3));
        assert_eq!(s.smtp.port, 0, "null resets to the zero value");
        assert_eq!(
            s.rate_limits.rules,
            vec![RateLimitRule {
                label: "a:auth".into(),
                ..Default::default()
            }],
            "arrays replace, their elements start from zero"
        );
        let doc = s.to_json();
        assert!(doc.get("junk").is_none() && doc["meta"].get("x").is_none());
        s.bind(&json!({"meta": null}), true).expect("bind");
        assert_eq!(s.meta, MetaConfig::default());
    }

    #[test]
    fn values_of_the_wrong_type_refuse_the_body_or_are_skipped_when_reading() {
        for bad in [
            json!({"meta": {"appName": 5}}),
            json!({"batch": {"maxRequests": "x"}}),
            json!({"batch": {"maxRequests": 1.0}}),
            json!({"batch": {"maxRequests": 1e2}}),
            json!({"batch": {"enabled": "true"}}),
            json!({"meta": []}),
            json!({"superuserIPs": "1.2.3.4"}),
            json!({"batch": {"maxRequests": 9223372036854775808u64}}),
            json!([]),
        ] {
            let mut s = Settings::defaults();
            assert_eq!(s.bind(&bad, true), Err(BindError), "{bad}");
        }
        let stored =
            json!({"meta": {"appName": 5, "senderName": "Kept"}, "batch": {"enabled": true}});
        let s = Settings::from_stored(Some(&stored));
        assert_eq!(s.meta.app_name, "Syncbase");
        assert_eq!(s.meta.sender_name, "Kept");
        assert!(s.batch.enabled);
    }

    #[test]
    fn secrets_are_stored_but_not_shown() {
        let mut s = Settings::defaults();
        s.bind(
            &json!({"smtp": {"password": "p"}, "s3": {"secret": "s"}, "backups": {"s3": {"secret": "b"}}}),
            true,
        )
        .expect("bind");
        assert_eq!(s.to_json()["smtp"]["password"], "p");
        let public = s.to_public_json();
        assert!(public["smtp"].get("password").is_none());
        assert!(public["s3"].get("secret").is_none());
        assert!(public["backups"]["s3"].get("secret").is_none());
        assert_eq!(public["smtp"]["host"], "smtp.example.com");
    }
}
