//! Node settings (`/api/settings`): one JSON document in `_params` (node-local, not
//! replicated), holding PocketBase's settings model (`crate::settings`) and nothing else.
//! `load` returns the whole document, secrets included, for server-side readers
//! (`settings["smtp"]["host"]`); the API shows `Settings::to_public_json` instead.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::StoreError;
use crate::settings::{Bind, Settings, validate};

const KEY: &str = "settings";

/// A fresh install's settings document.
pub fn defaults() -> Value {
    Settings::defaults().to_json()
}

/// The current settings, typed.
pub fn load_settings(conn: &Connection) -> Result<Settings, StoreError> {
    load_settings_in(conn, "main")
}

/// The settings stored in attached database `db` (`main` for the connection's own), typed.
pub fn load_settings_in(conn: &Connection, db: &str) -> Result<Settings, StoreError> {
    let stored: Option<String> = conn
        .query_row(
            &format!("SELECT value FROM {db}._params WHERE key = ?1"),
            params![KEY],
            |r| r.get(0),
        )
        .optional()?;
    let doc = stored.and_then(|text| serde_json::from_str::<Value>(&text).ok());
    Ok(Settings::from_stored(doc.as_ref()))
}

/// The current settings document (secrets included: never hand it to a client as is).
pub fn load(conn: &Connection) -> Result<Value, StoreError> {
    Ok(load_settings(conn)?.to_json())
}

/// The settings document stored in attached database `db` (secrets included).
pub fn load_in(conn: &Connection, db: &str) -> Result<Value, StoreError> {
    Ok(load_settings_in(conn, db)?.to_json())
}

/// Binds a patch onto the current settings as PocketBase does, validates and stores the
/// result, returning it. A value of the wrong type or an invalid result stores nothing.
pub fn update(conn: &Connection, patch: &Value) -> Result<Settings, StoreError> {
    let mut s = load_settings(conn)?;
    s.bind(patch, true).map_err(|e| StoreError::Invalid {
        message: e.to_string(),
        data: Value::Object(Default::default()),
    })?;
    validate(&s).map_err(|data| StoreError::Invalid {
        message: "An error occurred while saving the new settings.".into(),
        data,
    })?;
    conn.execute(
        "INSERT INTO _params (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![KEY, s.to_json().to_string()],
    )?;
    Ok(s)
}
