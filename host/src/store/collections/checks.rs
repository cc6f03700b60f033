//! Validating a submitted collection with PocketBase's error codes: its name, id, fields,
//! rules and options, after its ids, system fields and timestamps are filled in.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use serde_json::{Map, Value, json};

use super::super::schema::*;
use super::super::system::{self, Schema};
use super::super::{StoreError, ddl, views};
use super::{err, invalid};
use crate::filter;

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
pub(super) fn normalize_and_validate(
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
            FieldKind::File(o) => {
                if let Some(e) = file_options_error(o) {
                    field_errors.insert(key, e);
                }
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

/// PocketBase's checks of a file field's options: sizes and counts not negative, thumbs in a
/// format it can generate (`WxH`, `WxHt`, `WxHb`, `WxHf`, with one side possibly 0).
fn file_options_error(o: &super::super::schema::FileOptions) -> Option<Value> {
    let min = |name: &str| {
        json!({name: {"code": "validation_min_greater_equal_than_required",
            "message": "Must be no less than 0.", "params": {"threshold": 0}}})
    };
    if o.max_select < 0 {
        return Some(min("maxSelect"));
    }
    if o.max_size < 0 {
        return Some(min("maxSize"));
    }
    let mut thumbs = Map::new();
    for (i, t) in o.thumbs.iter().enumerate() {
        let e = match crate::files::ThumbSize::parse(t) {
            None => {
                json!({"code": "validation_match_invalid", "message": "Must be in a valid format."})
            }
            Some(size) if size.width == 0 && size.height == 0 => {
                json!({"code": "validation_not_in_invalid", "message": "Must not be in list."})
            }
            Some(_) => continue,
        };
        thumbs.insert(i.to_string(), e);
    }
    (!thumbs.is_empty()).then(|| json!({ "thumbs": thumbs }))
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
