//! Node settings (`/api/settings`): one JSON document in `_params`, merged over PocketBase's
//! defaults so every section is always present.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::StoreError;

const KEY: &str = "settings";

/// PocketBase 0.40's default settings (the sections Syncbase honours: `meta` and `batch`;
/// the rest are kept so clients that read them find the shapes they expect).
pub fn defaults() -> Value {
    json!({
        "meta": {"appName": "Syncbase", "appURL": "http://localhost:8090", "senderName": "Support",
                 "senderAddress": "support@example.com", "hideControls": false},
        "batch": {"enabled": false, "maxRequests": 50, "timeout": 3, "maxBodySize": 0},
        "logs": {"maxDays": 5, "minLevel": 0, "logIP": true, "logAuthId": false},
        "smtp": {"enabled": false, "port": 587, "host": "smtp.example.com", "username": "", "authMethod": "", "tls": false, "localName": ""},
        "backups": {"cron": "", "cronMaxKeep": 3},
        "s3": {"enabled": false, "bucket": "", "region": "", "endpoint": "", "accessKey": "", "forcePathStyle": false},
        "rateLimits": {"enabled": false, "rules": []},
        "trustedProxy": {"headers": [], "useLeftmostIP": false},
        "superuserIPs": []
    })
}

/// Deep-merges `patch` into `base`: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The current settings.
pub fn load(conn: &Connection) -> Result<Value, StoreError> {
    load_in(conn, "main")
}

/// The settings stored in attached database `db` (`main` for the connection's own).
pub fn load_in(conn: &Connection, db: &str) -> Result<Value, StoreError> {
    let stored: Option<String> = conn
        .query_row(
            &format!("SELECT value FROM {db}._params WHERE key = ?1"),
            params![KEY],
            |r| r.get(0),
        )
        .optional()?;
    let mut s = defaults();
    if let Some(text) = stored
        && let Ok(v) = serde_json::from_str::<Value>(&text)
    {
        merge(&mut s, &v);
    }
    Ok(s)
}

/// Applies a patch and stores the result, returning it.
pub fn update(conn: &Connection, patch: &Value) -> Result<Value, StoreError> {
    let mut s = load(conn)?;
    merge(&mut s, patch);
    conn.execute(
        "INSERT INTO _params (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![KEY, s.to_string()],
    )?;
    Ok(s)
}
