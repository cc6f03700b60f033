//! The first-run installer superuser, as PocketBase has it: while a node has no superuser of
//! its own, it keeps a placeholder superuser (`__pbinstaller@example.com`, random password
//! nobody knows) whose short-lived token goes into the install link printed on start. The
//! dashboard's first-run form creates the real superuser with that token through the ordinary
//! records API; creating any other superuser deletes the placeholder in the same transaction,
//! which revokes the link (its token names a record that no longer exists).
//!
//! `_superusers` never replicates, so each node has its own placeholder and link.

use std::sync::Arc;

use serde_json::{Value, json};

use super::records::{self, ListQuery, Record};
use super::schema::{ALNUM, new_record_id, random_string};
use super::{Collection, Schema, StoreError, WriteCtx};
use crate::filter::SqlParam;

/// PocketBase's address for the placeholder (`core.DefaultInstallerEmail`).
pub const INSTALLER_EMAIL: &str = "__pbinstaller@example.com";
const SUPERUSERS: &str = "_superusers";

fn find(
    conn: &rusqlite::Connection,
    c: &Collection,
    installer: bool,
) -> Result<Option<Record>, StoreError> {
    let q = ListQuery {
        where_sql: if installer {
            "`email` = ?".into()
        } else {
            "`email` != ?".into()
        },
        params: vec![SqlParam::Text(INSTALLER_EMAIL.into())],
        limit: 1,
        ..Default::default()
    };
    Ok(records::list(conn, c, &q)?.0.pop())
}

fn superusers(schema: &Schema) -> Result<Arc<Collection>, StoreError> {
    schema.get(SUPERUSERS).cloned().ok_or(StoreError::NotFound)
}

/// True when the node has a superuser other than the installer placeholder.
pub fn has_real_superuser(
    conn: &rusqlite::Connection,
    schema: &Schema,
) -> Result<bool, StoreError> {
    let c = superusers(schema)?;
    Ok(find(conn, &c, false)?.is_some())
}

/// The installer placeholder, created if missing; `None` when a real superuser exists (no
/// install link is due then).
pub fn find_or_create(ctx: &mut WriteCtx) -> Result<Option<Record>, StoreError> {
    let c = superusers(&ctx.schema)?;
    if find(ctx.conn, &c, false)?.is_some() {
        return Ok(None);
    }
    if let Some(rec) = find(ctx.conn, &c, true)? {
        return Ok(Some(rec));
    }
    // The password is random and never shown: nobody signs in as the placeholder; only the
    // token printed in the install link speaks for it.
    let hash = crate::auth::password::hash_with_cost(&random_string(40, ALNUM), 4);
    let now = crate::records::validate::now_string();
    let Value::Object(rec) = json!({
        "id": new_record_id(), "password": hash, "tokenKey": random_string(50, ALNUM),
        "email": INSTALLER_EMAIL, "emailVisibility": false, "verified": true,
        "created": now, "updated": now,
    }) else {
        return Err(StoreError::Internal("installer record".into()));
    };
    records::put_raw(ctx, SUPERUSERS, &rec)?;
    Ok(Some(rec))
}

/// Deletes the placeholder, if any, once a real superuser exists (called in the transaction
/// that creates one).
pub fn remove(ctx: &mut WriteCtx) -> Result<(), StoreError> {
    let c = superusers(&ctx.schema)?;
    if let Some(rec) = find(ctx.conn, &c, true)?
        && let Some(id) = rec.get("id").and_then(Value::as_str)
    {
        records::delete(ctx, SUPERUSERS, id)?;
    }
    Ok(())
}
