//! The cluster's plugin registry as canonical state: `_sync_plugins`, one row per plugin
//! version, written only by the fold from `plugin-registry` events. The fold numbers the
//! versions (the next one of the name, unless the latest already has the same content), so
//! every node lists the same versions with the same numbers, whichever node took the upload.
//! Deleting a version a binding uses (active or kept for rollback) is refused at the event's
//! position, on every node alike.
//!
//! Rows hold metadata only; the bytes are in the Object Store by sha256, and each node's
//! plugin runtime keeps its own copy and compiled code (`sync::plugins` brings them there). A
//! deleted version keeps its row, marked deleted: its number is never given again, and nodes
//! know to drop it (and only it: versions a node uploaded before it joined a cluster stay).

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::super::StoreError;
use crate::replication::Event;

pub(crate) fn create_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sync_plugins (
             name    TEXT NOT NULL,
             version INTEGER NOT NULL,
             sha256  TEXT NOT NULL,
             meta    TEXT NOT NULL,
             deleted INTEGER NOT NULL DEFAULT 0,
             PRIMARY KEY (name, version)
         ) WITHOUT ROWID;",
    )?;
    Ok(())
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn sha_ok(sha: &str) -> bool {
    sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The latest version of `name` not deleted: `(version, sha256, canonical digest)`.
fn latest(conn: &Connection, name: &str) -> Result<Option<(u32, String, String)>, StoreError> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT version, sha256, meta FROM _sync_plugins WHERE name = ?1 AND deleted = 0
             ORDER BY version DESC LIMIT 1",
        )?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(row.map(|(v, sha, meta)| {
        let canonical = serde_json::from_str::<Value>(&meta)
            .ok()
            .and_then(|m| m["canonical"].as_str().map(str::to_string))
            .unwrap_or_default();
        (v as u32, sha, canonical)
    }))
}

/// What folding a `plugin-registry` event did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Applied {
    /// The latest version already had this content.
    Unchanged,
    /// A new version, with its metadata (a `PluginVersion` as JSON).
    Registered(Value),
    /// Versions deleted.
    Deleted,
}

/// Folds one `plugin-registry` event. `in_use(name, version)` names the bindings that use a
/// version (`None` when unused). `Ok(Err(reason))` refuses the event (a dead letter on every
/// node).
pub(crate) fn apply(
    conn: &Connection,
    event: &Event,
    in_use: &dyn Fn(&str, u32) -> Option<String>,
) -> Result<Result<Applied, String>, StoreError> {
    let Some(data) = event.data.as_ref() else {
        return Ok(Err("plugin registry event without data".into()));
    };
    let name = data.get("name").and_then(Value::as_str).unwrap_or_default();
    if !name_ok(name) {
        return Ok(Err(format!("invalid plugin name {name:?}")));
    }
    match data.get("op").and_then(Value::as_str) {
        Some("upload") => upload(conn, name, data),
        Some("delete") => delete(conn, name, data, in_use),
        other => Ok(Err(format!("unknown plugin registry operation {other:?}"))),
    }
}

fn upload(
    conn: &Connection,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Result<Applied, String>, StoreError> {
    let sha = data
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !sha_ok(sha) {
        return Ok(Err(format!("invalid sha256 {sha:?}")));
    }
    let canonical = data
        .get("canonical")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some((_, s, c)) = latest(conn, name)?
        && (s == sha || (!c.is_empty() && c == canonical))
    {
        // The same content again (e.g. two nodes took the same push): nothing new.
        return Ok(Ok(Applied::Unchanged));
    }
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(version) FROM _sync_plugins WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?;
    let next = last.map_or(1, |v| v as u32 + 1);
    let mut meta = data.clone();
    meta.remove("op");
    meta.insert("version".into(), Value::from(next));
    conn.prepare_cached(
        "INSERT INTO _sync_plugins (name, version, sha256, meta) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        name,
        next,
        sha,
        Value::Object(meta.clone()).to_string()
    ])?;
    Ok(Ok(Applied::Registered(Value::Object(meta))))
}

fn delete(
    conn: &Connection,
    name: &str,
    data: &Map<String, Value>,
    in_use: &dyn Fn(&str, u32) -> Option<String>,
) -> Result<Result<Applied, String>, StoreError> {
    let only = data.get("version").and_then(Value::as_u64);
    let versions: Vec<u32> = {
        let mut stmt = conn
            .prepare_cached("SELECT version FROM _sync_plugins WHERE name = ?1 ORDER BY version")?;
        let rows = stmt.query_map([name], |r| r.get::<_, i64>(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|v| v as u32)
            .filter(|v| only.is_none_or(|o| o == u64::from(*v)))
            .collect()
    };
    if versions.is_empty() {
        return Ok(Err(match only {
            Some(v) => format!("no plugin {name:?} version {v}"),
            None => format!("no plugin {name:?}"),
        }));
    }
    for v in &versions {
        if let Some(targets) = in_use(name, *v) {
            return Ok(Err(format!(
                "plugin {name:?} version {v} is bound ({targets}); unbind it first"
            )));
        }
    }
    for v in versions {
        conn.prepare_cached(
            "UPDATE _sync_plugins SET deleted = 1 WHERE name = ?1 AND version = ?2",
        )?
        .execute(params![name, v])?;
    }
    Ok(Ok(Applied::Deleted))
}

/// The versions deleted by the log: `(name, version)`.
pub fn deleted(conn: &Connection) -> Result<Vec<(String, u32)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, version FROM _sync_plugins WHERE deleted = 1")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(n, v)| (n, v as u32))
        .collect())
}

/// Every registered version's metadata (a `PluginVersion` as JSON), by name then version.
pub fn registry(conn: &Connection) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT meta FROM _sync_plugins WHERE deleted = 0 ORDER BY name, version",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for text in rows {
        if let Ok(v) = serde_json::from_str(&text?) {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::replication::{CollectionRef, EventId, EventKind, Hlc};

    fn event(data: Value) -> Event {
        let Value::Object(data) = data else {
            panic!("object")
        };
        Event {
            id: EventId::random(),
            origin: "n1".into(),
            hlc: Hlc::new(1_000, 0),
            kind: EventKind::PluginRegistry,
            collection: CollectionRef::default(),
            record_id: None,
            data: Some(data),
            before: None,
            base: None,
            schema_version: 0,
            plugin_version: 0,
            files: Vec::new(),
        }
    }

    fn upload_event(sha: &str, canonical: &str) -> Event {
        event(
            json!({"op": "upload", "name": "fm", "sha256": sha, "canonical": canonical,
                     "world": "resolver", "size": 10, "code_size": 10, "exports": [],
                     "uploaded_at_ms": 1}),
        )
    }

    #[test]
    fn the_fold_numbers_versions_and_refuses_deleting_a_bound_one() {
        let conn = Connection::open_in_memory().expect("sqlite");
        create_table(&conn).expect("table");
        let unused = |_: &str, _: u32| None;
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let registered = |r: Result<Applied, String>| matches!(r, Ok(Applied::Registered(_)));
        assert!(registered(
            apply(&conn, &upload_event(&a, "c1"), &unused).expect("db")
        ));
        // Same content (another build of the same sources): no new version.
        assert_eq!(
            apply(&conn, &upload_event(&b, "c1"), &unused).expect("db"),
            Ok(Applied::Unchanged)
        );
        assert!(registered(
            apply(&conn, &upload_event(&b, "c2"), &unused).expect("db")
        ));
        let versions: Vec<u64> = registry(&conn)
            .expect("rows")
            .iter()
            .map(|m| m["version"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(versions, [1, 2]);

        let bound = |_: &str, v: u32| (v == 1).then(|| "resolver of posts".to_string());
        let refused = apply(&conn, &event(json!({"op": "delete", "name": "fm"})), &bound)
            .expect("db")
            .expect_err("bound");
        assert!(refused.contains("version 1 is bound"), "{refused}");
        assert_eq!(registry(&conn).expect("rows").len(), 2, "nothing deleted");
        let one = event(json!({"op": "delete", "name": "fm", "version": 2}));
        assert_eq!(
            apply(&conn, &one, &bound).expect("db"),
            Ok(Applied::Deleted)
        );
        assert_eq!(registry(&conn).expect("rows").len(), 1);
        let bad = apply(
            &conn,
            &event(json!({"op": "upload", "name": "Bad Name"})),
            &unused,
        );
        assert!(bad.expect("db").is_err());
    }
}
