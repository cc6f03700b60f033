//! Collection writes (create, update, delete, import) as writer jobs: validation with
//! PocketBase's error codes, normalization of the submitted JSON, DDL, and the `_collections`
//! row, all in the job's savepoint so a failure leaves the schema untouched.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use rusqlite::Connection;

use super::schema::*;
use super::system::{self, Schema};
use super::{StoreError, WriteCtx, ddl, views};

mod checks;
use checks::normalize_and_validate;

fn invalid(message: &str, data: Value) -> StoreError {
    StoreError::Invalid {
        message: message.to_string(),
        data,
    }
}

/// A schema change SQLite refused after validation passed: a 400 naming SQLite's reason, as
/// PocketBase answers (validation errors from the DDL, such as a bad index, pass through).
fn raw_db_error(action: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Sql(e) => invalid(&format!("{action} Raw error: {e}."), json!({})),
        other => other,
    }
}

fn err(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// Builds a collection from submitted JSON: `base` is the current collection for updates
/// (submitted keys override it) or `None` for creates.
pub fn from_input(
    input: &Value,
    base: Option<&Collection>,
    action: &str,
) -> Result<Collection, StoreError> {
    let bad_format = || {
        invalid(
            "Failed to load the submitted data due to invalid formatting.",
            json!({}),
        )
    };
    let Value::Object(input) = input else {
        return Err(bad_format());
    };
    let mut merged: Map<String, Value> = match base {
        Some(c) => match serde_json::to_value(c) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        },
        None => Map::new(),
    };
    for (k, v) in input {
        if k == "id" && base.is_some() {
            continue;
        }
        match merged.get_mut(k) {
            // Option objects (`oauth2`, `otp`, a template…) merge key by key, as PocketBase
            // decodes a body into the stored collection: `{"otp": {"enabled": true}}` keeps
            // the OTP duration and template, `{"oauth2": {...}}` the mapped fields.
            Some(current @ Value::Object(_)) if v.is_object() => merge_objects(current, v),
            _ => {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    let kind = merged
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("base")
        .to_string();
    merged.entry("type").or_insert(json!("base"));
    merged.entry("fields").or_insert(json!([]));
    for rule in [
        "listRule",
        "viewRule",
        "createRule",
        "updateRule",
        "deleteRule",
    ] {
        merged.entry(rule).or_insert(Value::Null);
    }
    if kind == "auth" {
        let defaults = serde_json::to_value(AuthOptions::default()).unwrap_or(json!({}));
        if let Value::Object(d) = defaults {
            for (k, v) in d {
                match (merged.get_mut(&k), v) {
                    (Some(Value::Object(cur)), Value::Object(def)) => {
                        for (dk, dv) in def {
                            cur.entry(dk).or_insert(dv);
                        }
                    }
                    (None, v) => {
                        merged.insert(k, v);
                    }
                    _ => {}
                }
            }
        }
        // Clients never see the stored secrets, so they never send them back: keep them.
        if let Some(b) = base.and_then(|b| b.auth.as_ref()) {
            let kinds = [
                ("authToken", TokenKind::Auth),
                ("passwordResetToken", TokenKind::PasswordReset),
                ("emailChangeToken", TokenKind::EmailChange),
                ("verificationToken", TokenKind::Verification),
                ("fileToken", TokenKind::File),
            ];
            for (key, kind) in kinds {
                if let Some(Value::Object(tok)) = merged.get_mut(key) {
                    let sent = tok.get("secret").and_then(Value::as_str).unwrap_or("");
                    if sent.is_empty() || kind == TokenKind::Auth {
                        tok.insert("secret".into(), json!(b.secret(kind)));
                    }
                }
            }
        }
    }
    // Null field options mean "unset": drop them so every type's defaults apply (a field whose
    // type changed still carries the old type's options, which must not fail parsing).
    if let Some(Value::Array(fields)) = merged.get_mut("fields") {
        for f in fields.iter_mut() {
            if let Value::Object(m) = f {
                m.retain(|_, v| !v.is_null());
            }
        }
    }
    let mut c: Collection = serde_json::from_value(Value::Object(merged)).map_err(|e| {
        tracing::debug!(error = %e, action, "collection payload rejected");
        bad_format()
    })?;
    if c.kind != CollectionType::Auth {
        c.auth = None;
    }
    if let (Some(opts), Some(old)) = (c.auth.as_mut(), base.and_then(|b| b.auth.as_ref())) {
        opts.keep_secrets_of(old);
    }
    if c.kind != CollectionType::View {
        c.view_query = None;
    }
    Ok(c)
}

/// Deep-merges object `patch` into object `base` (anything but an object replaces).
fn merge_objects(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing @ Value::Object(_)) if v.is_object() => {
                        merge_objects(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// A new, unsaved collection of `kind` with its defaults (`GET /api/collections/meta/scaffolds`):
/// no id or name, the type's system fields, an auth collection's default options and indexes
/// (named after `index_id`), a view's empty query.
pub fn scaffold(kind: CollectionType, index_id: &str) -> Collection {
    let mut c = Collection {
        id: String::new(),
        name: String::new(),
        kind,
        system: false,
        fields: Vec::new(),
        indexes: Vec::new(),
        list_rule: None,
        view_rule: None,
        create_rule: None,
        update_rule: None,
        delete_rule: None,
        auth: None,
        view_query: None,
        created: String::new(),
        updated: String::new(),
        sql: Default::default(),
    };
    match kind {
        CollectionType::Base => c.fields = vec![Field::primary_id()],
        CollectionType::Auth => {
            c.fields = system::auth_system_fields();
            c.indexes = system::auth_indexes(index_id, "");
            c.auth = Some(AuthOptions::default());
        }
        CollectionType::View => c.view_query = Some(String::new()),
    }
    c
}

/// Creates a collection and its table.
pub fn create(ctx: &mut WriteCtx, input: &Value) -> Result<Arc<Collection>, StoreError> {
    let mut c = from_input(input, None, "create")?;
    let now = crate::records::validate::now_string();
    let has_table = |name: &str| ddl::table_exists(ctx.conn, name);
    normalize_and_validate(ctx.conn, &ctx.schema, None, &mut c, &now, &has_table)?;
    ddl::create_table(ctx.conn, &c).map_err(|e| raw_db_error("Failed to create collection.", e))?;
    system::save_collection(ctx.conn, &c)?;
    Ok(install(ctx, c))
}

/// Updates a collection, altering its table to the new field set.
pub fn update(
    ctx: &mut WriteCtx,
    id_or_name: &str,
    input: &Value,
) -> Result<Arc<Collection>, StoreError> {
    let old = ctx
        .schema
        .get(id_or_name)
        .cloned()
        .ok_or(StoreError::NotFound)?;
    let mut c = from_input(input, Some(&old), "update")?;
    let now = crate::records::validate::now_string();
    let has_table = |name: &str| ddl::table_exists(ctx.conn, name);
    normalize_and_validate(ctx.conn, &ctx.schema, Some(&old), &mut c, &now, &has_table)?;
    ddl::alter_table(ctx.conn, &old, &c)
        .map_err(|e| raw_db_error("Failed to update collection.", e))?;
    system::save_collection(ctx.conn, &c)?;
    // A removed file field (or fewer files allowed) leaves files no row references.
    super::files::sweep_collection(ctx.conn, &c, None)?;
    let c = install(ctx, c);
    refresh_views(ctx, &c)?;
    Ok(c)
}

/// Re-infers the fields of every other view after `changed` was saved, and saves those whose
/// fields differ (PocketBase re-saves them too). A view whose query broke is left as it is,
/// with a warning, as PocketBase does, so its query can be fixed afterwards. Deterministic:
/// the replication fold calls it at the event's position, and the views take `changed`'s
/// timestamp rather than this node's clock.
pub(crate) fn refresh_views(ctx: &mut WriteCtx, changed: &Collection) -> Result<(), StoreError> {
    if !ctx
        .schema
        .all()
        .iter()
        .any(|c| c.is_view() && c.id != changed.id)
    {
        return Ok(());
    }
    match views::stale_views(ctx.conn, &ctx.schema, &changed.id) {
        Ok(stale) => {
            for mut view in stale {
                let old = ctx
                    .schema
                    .get(&view.id)
                    .cloned()
                    .ok_or(StoreError::NotFound)?;
                view.updated = changed.updated.clone();
                ddl::alter_table(ctx.conn, &old, &view)?;
                system::save_collection(ctx.conn, &view)?;
                install(ctx, view);
            }
        }
        Err(e) => tracing::warn!(
            collection = %changed.name,
            error = %e,
            "a view collection may need its query updated after this change"
        ),
    }
    Ok(())
}

/// Refuses a schema without `gone` when a view still reads it (the caller's savepoint undoes
/// the drop).
pub(crate) fn check_views_after_delete(
    conn: &Connection,
    schema: &Schema,
    gone: &Collection,
) -> Result<(), StoreError> {
    for view in schema.all().iter().filter(|c| c.is_view()) {
        if let Err(e) = views::check(conn, view) {
            tracing::debug!(error = %e, "view broken by a collection delete");
            return Err(StoreError::BadRequest(format!(
                "Failed to delete collection {:?}: the view collection {:?} depends on it.",
                gone.name, view.name
            )));
        }
    }
    Ok(())
}

/// Validates a draft collection against `schema` without writing anything: as an update of
/// the collection its `id` names, else as a create. The dashboard's live check of rules,
/// fields and indexes while a collection is edited; runs on a reader (no DDL; a view's query is
/// only prepared), so it is cheap enough to run on every pause in typing.
pub fn check(conn: &Connection, schema: &Schema, input: &Value) -> Result<Collection, StoreError> {
    let old = input
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| schema.get(id).filter(|c| c.id == id))
        .cloned();
    let action = if old.is_some() { "update" } else { "create" };
    let mut c = from_input(input, old.as_deref(), action)?;
    let now = crate::records::validate::now_string();
    let has_table = |name: &str| ddl::table_exists(conn, name);
    normalize_and_validate(conn, schema, old.as_deref(), &mut c, &now, &has_table)?;
    Ok(c)
}

/// Deletes a collection and its table; refused for system collections and collections that
/// other collections' relation fields point at.
pub fn delete(ctx: &mut WriteCtx, id_or_name: &str) -> Result<Arc<Collection>, StoreError> {
    let c = ctx
        .schema
        .get(id_or_name)
        .cloned()
        .ok_or(StoreError::NotFound)?;
    if c.system {
        return Err(StoreError::BadRequest(
            "Failed to delete collection.".into(),
        ));
    }
    let refs: Vec<String> = ctx
        .schema
        .referencing(&c.id)
        .into_iter()
        // A view's relation fields only describe its columns; views are checked below.
        .filter(|(rc, _)| rc.id != c.id && !rc.is_view())
        .map(|(rc, _)| rc.name.clone())
        .collect();
    if !refs.is_empty() {
        return Err(StoreError::BadRequest(format!(
            "The collection is referenced by relation fields in: {}.",
            refs.join(", ")
        )));
    }
    ddl::drop_table(ctx.conn, &c)?;
    system::delete_collection_row(ctx.conn, &c.id)?;
    super::files::drop_collection(ctx.conn, &c.id, None)?;
    let mut s = (*ctx.schema).clone();
    s.remove(&c.id);
    ctx.schema = Arc::new(s);
    check_views_after_delete(ctx.conn, &ctx.schema, &c)?;
    Ok(c)
}

/// Imports a list of collections: each is created or updated (matched by id, then name);
/// with `delete_missing`, non-system collections absent from the list are deleted.
pub fn import(ctx: &mut WriteCtx, list: &[Value], delete_missing: bool) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    // Collections may reference each other in any order: retry those that failed while others
    // still make progress, then report the first remaining failure.
    let mut pending: Vec<&Value> = list.iter().collect();
    loop {
        let mut failed = Vec::new();
        let mut last_err = None;
        for item in pending.iter().copied() {
            let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
            let existing = ctx.schema.get(id).or_else(|| ctx.schema.get(name)).cloned();
            let result = match existing {
                Some(old) => update(ctx, &old.id, item),
                None => create(ctx, item),
            };
            match result {
                Ok(c) => {
                    seen.insert(c.id.clone());
                }
                Err(e) => {
                    failed.push(item);
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            None => break,
            Some(e) if failed.len() == pending.len() => return Err(e),
            Some(_) => pending = failed,
        }
    }
    if delete_missing {
        let missing: Vec<String> = ctx
            .schema
            .all()
            .iter()
            .filter(|c| !c.system && !seen.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        for id in missing {
            delete(ctx, &id)?;
        }
    }
    Ok(())
}

pub(crate) fn install(ctx: &mut WriteCtx, c: Collection) -> Arc<Collection> {
    let c = Arc::new(c);
    let mut s = (*ctx.schema).clone();
    s.remove(&c.id);
    s.insert_arc(c.clone());
    ctx.schema = Arc::new(s);
    c
}
