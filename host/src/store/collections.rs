//! Collection writes (create, update, delete, import) as writer jobs: validation with
//! PocketBase's error codes, normalization of the submitted JSON, DDL, and the `_collections`
//! row, all in the job's savepoint so a failure leaves the schema untouched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use rusqlite::Connection;

use super::schema::*;
use super::system::{self, Schema};
use super::{StoreError, WriteCtx, ddl, views};
use crate::filter;

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

/// Most columns SQLite allows in a table (its default `SQLITE_MAX_COLUMN`): one per field.
const MAX_FIELDS: usize = 2000;

/// Field names that would clash with the record JSON or the filter language.
const RESERVED_FIELD_NAMES: [&str; 7] = [
    "null",
    "true",
    "false",
    "_rowid_",
    "collectionId",
    "collectionName",
    "expand",
];

/// Names no collection may take although no collection has them: SQLite reserves `sqlite_*`,
/// and `_sync_*` is replication's (tables may appear there on any node, in any version).
fn reserved_table_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("sqlite_") || lower.starts_with("_sync_")
}

/// The id a new collection gets: PocketBase's `pbc_<crc32(type + name)>`, with `2`, `3`, ...
/// appended while that id is taken.
fn new_collection_id(schema: &Schema, c: &Collection) -> String {
    let base = collection_id(c.kind, &c.name);
    let taken = |id: &str| schema.get(id).is_some_and(|other| other.id == id);
    let mut id = base.clone();
    for n in 2..1000 {
        if !taken(&id) {
            break;
        }
        id = format!("{base}{n}");
    }
    id
}

/// A field name's first problem, with PocketBase's code.
fn field_name_error(name: &str) -> Option<Value> {
    if name.is_empty() {
        return Some(err("validation_required", "Cannot be blank."));
    }
    if name.len() > 100 {
        return Some(err(
            "validation_length_out_of_range",
            "The length must be between 1 and 100.",
        ));
    }
    if !is_valid_name(name, 100) {
        return Some(err(
            "validation_match_invalid",
            "Must be in a valid format.",
        ));
    }
    if RESERVED_FIELD_NAMES.contains(&name) {
        return Some(err("validation_not_in_invalid", "Must not be in list."));
    }
    if name.to_ascii_lowercase().contains("_via_") {
        return Some(err(
            "validation_found_via",
            "The value cannot contain \"_via_\".",
        ));
    }
    None
}

/// Fills ids, system fields and timestamps (a view's fields from its query), then validates
/// `c` against `schema`. `has_table`
/// tells whether a table or view of that name exists in the database (internal tables too).
fn normalize_and_validate(
    conn: &Connection,
    schema: &Schema,
    old: Option<&Collection>,
    c: &mut Collection,
    now: &str,
    has_table: &dyn Fn(&str) -> bool,
) -> Result<(), StoreError> {
    let action = if old.is_some() {
        "Failed to update collection."
    } else {
        "Failed to create collection."
    };
    let mut errors = Map::new();
    c.name = c.name.trim().to_string();
    if c.id.is_empty() {
        c.id = new_collection_id(schema, c);
    }
    let renamed = old.is_none_or(|o| o.name != c.name);
    if c.name.is_empty() {
        errors.insert(
            "name".into(),
            err("validation_required", "Cannot be blank."),
        );
    } else if c.name.len() > 255 {
        errors.insert(
            "name".into(),
            err(
                "validation_length_out_of_range",
                "The length must be between 1 and 255.",
            ),
        );
    } else if c.name.to_ascii_lowercase().contains("_via_") {
        errors.insert(
            "name".into(),
            err(
                "validation_found_via",
                "The value cannot contain \"_via_\".",
            ),
        );
    } else if !is_valid_name(&c.name, 255) {
        errors.insert(
            "name".into(),
            err("validation_match_invalid", "Must be in a valid format."),
        );
    } else if let Some(other) = schema.get(&c.name)
        && other.id != c.id
    {
        let (code, message) = if other.id == c.name {
            (
                "validation_collection_name_id_duplicate",
                "The name must not match an existing collection id.",
            )
        } else {
            (
                "validation_collection_name_exists",
                "Collection name must be unique (case insensitive).",
            )
        };
        errors.insert("name".into(), err(code, message));
    } else if renamed && (reserved_table_name(&c.name) || has_table(&c.name)) {
        errors.insert(
            "name".into(),
            err(
                "validation_collection_name_invalid",
                "The name shouldn't match with an existing internal table.",
            ),
        );
    }
    if let Some(old) = old {
        if old.kind != c.kind {
            errors.insert(
                "type".into(),
                err(
                    "validation_collection_type_change",
                    "Collection type cannot be changed.",
                ),
            );
        }
        if old.system && old.name != c.name {
            errors.insert(
                "name".into(),
                err(
                    "validation_collection_system_name_change",
                    "System collection name cannot be changed.",
                ),
            );
        }
        c.system = old.system;
        c.created = old.created.clone();
    } else {
        c.system = false;
        c.created = now.to_string();
    }
    c.updated = now.to_string();
    if c.is_view() {
        views::validate(conn, schema, c, &mut errors);
    } else {
        complete_fields(c, old);
    }
    if let Some(field_errors) = validate_fields(schema, old, c) {
        errors.insert("fields".into(), field_errors);
    }
    let mut index_errors = Map::new();
    // A view's indexes are refused whole by `views::validate`.
    for (i, sql) in c.indexes.iter().enumerate().filter(|_| !c.is_view()) {
        let ok = ddl::parse_index(sql)
            .is_some_and(|info| info.columns.iter().all(|col| c.field(col).is_some()));
        if !ok {
            index_errors.insert(
                i.to_string(),
                err(
                    "validation_invalid_index_expression",
                    "Invalid CREATE INDEX expression.",
                ),
            );
        }
    }
    if !index_errors.is_empty() {
        errors.insert("indexes".into(), Value::Object(index_errors));
    }
    if let Some(opts) = &c.auth {
        errors.extend(opts.validate(crate::oauth2::known));
    }
    if errors.is_empty() {
        validate_rules(schema, c, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(action, Value::Object(errors)))
    }
}

/// The `fields` errors, PocketBase's way: a duplicated name is reported alone (the first one);
/// otherwise more fields than SQLite allows columns, a changed type, or each field's own
/// problems (name, options).
fn validate_fields(schema: &Schema, old: Option<&Collection>, c: &Collection) -> Option<Value> {
    let mut seen = HashSet::new();
    for (i, f) in c.fields.iter().enumerate() {
        if !seen.insert(f.name.to_lowercase()) {
            return Some(
                json!({i.to_string(): {"name": {"code": "validation_duplicated_field_name",
                "message": format!("Duplicated or invalid field name {}.", f.name),
                "params": {"fieldName": f.name}}}}),
            );
        }
    }
    if c.fields.len() > MAX_FIELDS {
        return Some(err(
            "validation_too_many_fields",
            &format!("A collection can have at most {MAX_FIELDS} fields (SQLite's column limit)."),
        ));
    }
    let old_fields: HashMap<&str, &Field> = old
        .map(|o| o.fields.iter().map(|f| (f.id.as_str(), f)).collect())
        .unwrap_or_default();
    let mut field_errors = Map::new();
    for (i, f) in c.fields.iter().enumerate() {
        if let Some(o) = old_fields.get(f.id.as_str())
            && o.kind.type_name() != f.kind.type_name()
            && !c.is_view()
        {
            field_errors.insert(
                i.to_string(),
                err(
                    "validation_field_type_change",
                    "Field type cannot be changed.",
                ),
            );
        }
    }
    if !field_errors.is_empty() {
        return Some(Value::Object(field_errors));
    }
    for (i, f) in c.fields.iter().enumerate() {
        let key = i.to_string();
        if c.is_auth() && matches!(f.name.as_str(), "passwordConfirm" | "oldPassword") {
            field_errors.insert(
                key,
                json!({"name": {"code": "validation_reserved_field_name",
                    "message": "The field name is reserved and cannot be used."}}),
            );
            continue;
        }
        if let Some(e) = field_name_error(&f.name) {
            field_errors.insert(key, json!({ "name": e }));
            continue;
        }
        match &f.kind {
            FieldKind::Relation(r) => {
                // By id only: PocketBase refuses a collection name here.
                let target = schema
                    .get(&r.collection_id)
                    .filter(|t| t.id == r.collection_id);
                if target.is_none() && r.collection_id != c.id {
                    field_errors.insert(
                        key,
                        json!({"collectionId": {"code": "validation_field_relation_missing_collection",
                            "message": "The relation collection doesn't exist."}}),
                    );
                } else if !c.is_view() && target.is_some_and(|t| t.is_view()) {
                    field_errors.insert(
                        key,
                        json!({"collectionId": {"code": "validation_relation_field_non_view_base_collection",
                            "message": "Only view collections are allowed to have relations to other views."}}),
                    );
                }
            }
            FieldKind::Select(s) if s.values.is_empty() => {
                field_errors.insert(key, json!({"values": {"code": "validation_required", "message": "Cannot be blank."}}));
            }
            // System collections keep theirs (`_otps` is a base collection with a password),
            // so an exported schema imports back unchanged; a view may show an auth
            // collection's (hidden) password column, as in PocketBase.
            FieldKind::Password(_) if !c.is_auth() && !c.system && !c.is_view() => {
                field_errors.insert(
                    key,
                    err(
                        "validation_field_password_auth_only",
                        "Password fields are allowed only in auth collections.",
                    ),
                );
            }
            _ => {}
        }
    }
    (!field_errors.is_empty()).then_some(Value::Object(field_errors))
}

/// Gives every field an id, keeps the `id` field first and an auth collection's system fields.
/// A field submitted without an id under a name already used earlier in the list replaces that
/// earlier definition (PocketBase merges such duplicates; the later one wins).
fn complete_fields(c: &mut Collection, old: Option<&Collection>) {
    let mut merged: Vec<Field> = Vec::with_capacity(c.fields.len());
    for f in std::mem::take(&mut c.fields) {
        let earlier = merged
            .iter()
            .position(|m| m.name.eq_ignore_ascii_case(&f.name));
        match earlier {
            Some(i) if f.id.is_empty() => {
                let id = std::mem::take(&mut merged[i].id);
                merged[i] = Field { id, ..f };
            }
            _ => merged.push(f),
        }
    }
    c.fields = merged;
    let mut used: HashSet<String> = HashSet::new();
    for f in c.fields.iter_mut() {
        if f.id.is_empty() {
            // A field submitted without id keeps the id of an existing field with its name.
            f.id = old
                .and_then(|o| o.field(&f.name))
                .filter(|o| o.kind.type_name() == f.kind.type_name())
                .map(|o| o.id.clone())
                .unwrap_or_else(|| f.default_id());
        }
        // A clash gets PocketBase's suffixes: `text123`, `text1232`, `text1233`, ...
        let base = f.id.clone();
        let mut n = 2;
        while !used.insert(f.id.clone()) {
            f.id = format!("{base}{n}");
            n += 1;
        }
    }
    let mut required = vec![Field::primary_id()];
    if c.is_auth() {
        required = system::auth_system_fields();
    }
    // Missing system fields are added as PocketBase adds them: `id` first, an auth
    // collection's others after the submitted fields.
    for sys in required {
        match c.fields.iter().position(|f| f.name == sys.name) {
            Some(i) => {
                let f = &mut c.fields[i];
                f.system = true;
                if sys.name == "id" {
                    // The primary key's shape is fixed; only its options may be tuned.
                    if let (FieldKind::Text(o), FieldKind::Text(s)) = (&mut f.kind, &sys.kind) {
                        o.primary_key = true;
                        if o.pattern.is_empty() {
                            o.pattern = s.pattern.clone();
                        }
                    }
                    f.required = true;
                    f.id = sys.id.clone();
                }
            }
            None if sys.name == "id" => c.fields.insert(0, sys),
            None => c.fields.push(sys),
        }
    }
    if c.is_auth() {
        for idx in system::auth_indexes(&c.id, &c.name) {
            let name = ddl::parse_index(&idx).map(|i| i.name);
            let present = c
                .indexes
                .iter()
                .any(|s| ddl::parse_index(s).map(|i| i.name) == name);
            if !present {
                c.indexes.push(idx);
            }
        }
    }
}

fn validate_rules(schema: &Schema, c: &Collection, errors: &mut Map<String, Value>) {
    let mut lookup = schema.clone();
    lookup.insert(c.clone());
    let rules = [
        ("listRule", &c.list_rule),
        ("viewRule", &c.view_rule),
        ("createRule", &c.create_rule),
        ("updateRule", &c.update_rule),
        ("deleteRule", &c.delete_rule),
    ];
    let mfa_rule = c
        .auth
        .as_ref()
        .map(|a| a.mfa.rule.clone())
        .filter(|r| !r.trim().is_empty());
    for (key, rule) in rules.into_iter().chain([("mfa", &mfa_rule)]) {
        let Some(rule) = rule else { continue };
        let q = filter::Query {
            lookup: &lookup,
            collection: c,
            request: None,
            allow_request_refs: true,
            allow_hidden: true,
            now: chrono::Utc::now(),
        };
        if let Err(e) = filter::filter_sql(rule, &q) {
            let e = err(
                "validation_invalid_rule",
                &format!("Invalid rule. Raw error: {e}."),
            );
            // The MFA rule lives inside the `mfa` options.
            let e = if key == "mfa" { json!({"rule": e}) } else { e };
            errors.insert(key.into(), e);
        }
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
