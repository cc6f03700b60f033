//! PocketBase's collection definitions → Syncbase's, and everything that does not survive the
//! trip, as notes. Pure: works on the `_collections` rows the store read.
//!
//! A definition is carried as faithfully as Syncbase can hold it: ids, names, fields with their
//! ids and options, rules, indexes, auth options with their token secrets. What Syncbase lacks
//! is left out and named (a field type, an option, a view, an OAuth2 provider, a rule or index
//! that names a field left out), so the result is a schema Syncbase accepts as it stands and
//! would accept again when the collection is next saved.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use super::report::Note;
use crate::filter;
use crate::store::pocketbase::{ImportTable, PbCollection, PbTable};
use crate::store::schema::{Collection, CollectionType, Field, FieldKind};
use crate::store::{EXTERNAL_AUTHS, MFAS, OTPS, Schema};

/// The collections to create, the source columns left behind (collection, column) and the notes.
#[derive(Debug, Default)]
pub struct ImportedSchema {
    pub collections: Vec<ImportTable>,
    pub left_behind: Vec<(String, String)>,
    pub notes: Vec<Note>,
}

/// The definitions Syncbase creates itself, with PocketBase's ids and shapes, identically on
/// every node: their rows are imported into those, not into PocketBase's definitions.
fn own_definition(id: &str) -> Option<Collection> {
    if ![OTPS, MFAS, EXTERNAL_AUTHS].contains(&id) {
        return None;
    }
    let now = crate::records::validate::now_string();
    crate::store::auth_system_collections(&now)
        .into_iter()
        .find(|c| c.id == id)
}

/// Converts PocketBase's collections (with their tables' columns and row counts).
pub fn import_collections(
    rows: &[PbCollection],
    tables: &BTreeMap<String, PbTable>,
) -> ImportedSchema {
    let mut out = ImportedSchema::default();
    // Relation fields can only point at collections that come along.
    let carried: HashSet<&str> = rows
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "base" | "auth") && r.name != "_authOrigins")
        .map(|r| r.id.as_str())
        .collect();
    let mut converted = Vec::new();
    for row in rows {
        let rows_of = |name: &str| tables.get(name).map_or(0, |t| t.rows);
        match row.kind.as_str() {
            "base" | "auth" => {}
            "view" => {
                let query = serde_json::from_str::<Value>(&row.options)
                    .ok()
                    .and_then(|o| o.get("viewQuery").and_then(Value::as_str).map(String::from))
                    .unwrap_or_default();
                out.notes.push(Note::new(
                    &row.name,
                    format!("view collection not carried: the import does not create views yet; recreate it in Syncbase with its query: {query}"),
                ));
                continue;
            }
            other => {
                out.notes.push(Note::new(
                    &row.name,
                    format!("collection of unknown type {other:?} not carried"),
                ));
                continue;
            }
        }
        if row.name == "_authOrigins" {
            out.notes.push(Note::new(
                "_authOrigins",
                format!(
                    "{} remembered sign-in devices not carried: Syncbase sends no new-device login alerts",
                    rows_of("_authOrigins")
                ),
            ));
            continue;
        }
        if let Some(own) = own_definition(&row.id) {
            converted.push(own);
            continue;
        }
        match convert(row, &carried, &mut out) {
            Ok(c) => converted.push(c),
            Err(reason) => out.notes.push(Note::new(
                &row.name,
                format!(
                    "collection not carried ({} records): {reason}",
                    rows_of(&row.name)
                ),
            )),
        }
    }
    let schema = Schema::from_collections(converted.clone());
    for mut c in converted {
        check_rules(&schema, &mut c, &mut out.notes);
        let columns = match tables.get(&c.name) {
            Some(t) => {
                for f in c.fields.iter().filter(|f| !t.columns.contains(&f.name)) {
                    out.notes.push(Note::new(
                        &format!("{}.{}", c.name, f.name),
                        "PocketBase's table had no such column: records get the field's empty value"
                            .into(),
                    ));
                }
                c.fields
                    .iter()
                    .map(|f| f.name.clone())
                    .filter(|n| t.columns.contains(n))
                    .collect()
            }
            None => Vec::new(),
        };
        out.collections.push(ImportTable {
            collection: c,
            columns,
        });
    }
    out
}

/// One base or auth collection; fields, indexes and options Syncbase cannot hold are left out
/// with a note. Fails only when the definition cannot be read at all.
fn convert(
    row: &PbCollection,
    carried: &HashSet<&str>,
    out: &mut ImportedSchema,
) -> Result<Collection, String> {
    let fields: Vec<Value> =
        serde_json::from_str(&row.fields).map_err(|e| format!("unreadable fields: {e}"))?;
    let indexes: Vec<String> =
        serde_json::from_str(&row.indexes).map_err(|e| format!("unreadable indexes: {e}"))?;
    let mut kept = Vec::new();
    for f in &fields {
        if let Some(field) = convert_field(&row.name, f, carried, out) {
            kept.push(field);
        }
    }
    let mut c = json!({
        "id": row.id, "name": row.name, "type": row.kind, "system": row.system,
        "fields": kept, "indexes": [],
        "listRule": row.list_rule, "viewRule": row.view_rule, "createRule": row.create_rule,
        "updateRule": row.update_rule, "deleteRule": row.delete_rule,
        "created": row.created, "updated": row.updated,
    });
    let options: Map<String, Value> = match serde_json::from_str(&row.options) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if row.kind == "auth" {
        let mut options = options.clone();
        drop_unknown_providers(&row.name, &mut options, &mut out.notes);
        if let (Value::Object(target), Value::Object(opts)) = (&mut c, Value::Object(options)) {
            target.extend(opts);
        }
    } else if !options.is_empty() {
        out.notes.push(Note::new(
            &row.name,
            format!(
                "collection options not carried: {}",
                Value::Object(options.clone())
            ),
        ));
    }
    let mut collection: Collection =
        serde_json::from_value(c).map_err(|e| format!("unreadable definition: {e}"))?;
    if collection.kind != CollectionType::Auth {
        collection.auth = None;
    }
    if let Some(auth) = &collection.auth {
        let ours = serde_json::to_value(auth).unwrap_or(Value::Null);
        let mut theirs = options.clone();
        // Providers left out were noted on their own.
        if let Some(Value::Object(o)) = theirs.get_mut("oauth2") {
            o.remove("providers");
        }
        let mut ours = ours;
        if let Some(Value::Object(o)) = ours.get_mut("oauth2") {
            o.remove("providers");
        }
        for (path, value) in lost(&Value::Object(theirs), &ours, "") {
            out.notes.push(Note::new(
                &row.name,
                format!("auth option {path} = {value} not carried"),
            ));
        }
        if auth.auth_alert.enabled {
            out.notes.push(Note::new(
                &row.name,
                "new-device login alerts are enabled: Syncbase keeps the setting but sends no alert mails".into(),
            ));
        }
        for (key, error) in auth.validate(crate::oauth2::known) {
            out.notes.push(Note::new(
                &row.name,
                format!("auth option {key} is refused by Syncbase's checks ({error}): it must be fixed before the collection can be saved again"),
            ));
        }
    }
    for sql in indexes {
        let names_fields = crate::store::parse_index(&sql).is_some_and(|info| {
            info.columns
                .iter()
                .all(|col| collection.field(col).is_some())
        });
        if names_fields {
            collection.indexes.push(sql);
        } else {
            out.notes.push(Note::new(
                &row.name,
                format!("index not carried (Syncbase only indexes plain columns of carried fields): {sql}"),
            ));
        }
    }
    Ok(collection)
}

/// A field, or `None` (noted, its column left behind) when Syncbase cannot hold it.
fn convert_field(
    coll: &str,
    f: &Value,
    carried: &HashSet<&str>,
    out: &mut ImportedSchema,
) -> Option<Field> {
    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
    let kind = f.get("type").and_then(Value::as_str).unwrap_or_default();
    let subject = format!("{coll}.{name}");
    let leave = |out: &mut ImportedSchema, why: String| {
        out.notes.push(Note::new(&subject, why));
        out.left_behind.push((coll.to_string(), name.to_string()));
        None
    };
    if !syncbase_has_type(kind) {
        return leave(
            out,
            format!("{kind} field not carried: Syncbase has no such field type"),
        );
    }
    let mut obj = f.as_object().cloned().unwrap_or_default();
    // Null options mean "unset", as when a collection is saved through the API.
    obj.retain(|_, v| !v.is_null());
    let field: Field = match serde_json::from_value(Value::Object(obj)) {
        Ok(field) => field,
        Err(e) => {
            return leave(
                out,
                format!("{kind} field not carried: unreadable options ({e})"),
            );
        }
    };
    if let FieldKind::Relation(r) = &field.kind
        && !carried.contains(r.collection_id.as_str())
    {
        return leave(
            out,
            format!(
                "relation field not carried: the collection it points at ({}) is not carried",
                r.collection_id
            ),
        );
    }
    let ours = serde_json::to_value(&field).unwrap_or(Value::Null);
    for (path, value) in lost(f, &ours, "") {
        out.notes.push(Note::new(
            &subject,
            format!("field option {path} = {value} not carried"),
        ));
    }
    Some(field)
}

/// Whether Syncbase has a field type of this name.
fn syncbase_has_type(kind: &str) -> bool {
    serde_json::from_value::<FieldKind>(json!({ "type": kind })).is_ok()
}

/// Leaves out the OAuth2 providers Syncbase has no implementation for, with a note each.
fn drop_unknown_providers(coll: &str, options: &mut Map<String, Value>, notes: &mut Vec<Note>) {
    let Some(Value::Array(providers)) = options
        .get_mut("oauth2")
        .and_then(|o| o.get_mut("providers"))
    else {
        return;
    };
    providers.retain(|p| {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let known = crate::oauth2::known(name);
        if !known {
            notes.push(Note::new(
                coll,
                format!("OAuth2 provider {name:?} not carried: Syncbase does not implement it"),
            ));
        }
        known
    });
}

/// Rules, the auth and manage rules and the MFA rule that Syncbase cannot evaluate (they name
/// a field left out, or use what Syncbase's filter language lacks) become superusers-only
/// (the MFA rule: MFA for everyone), never wider than they were.
fn check_rules(schema: &Schema, c: &mut Collection, notes: &mut Vec<Note>) {
    let probe = c.clone();
    let valid = |rule: &str| {
        let q = filter::Query {
            lookup: schema,
            collection: &probe,
            request: None,
            allow_request_refs: true,
            allow_hidden: true,
            now: chrono::Utc::now(),
        };
        filter::filter_sql(rule, &q).err()
    };
    let name = c.name.clone();
    let check = |key: &str, rule: &mut Option<String>, notes: &mut Vec<Note>| {
        if let Some(text) = rule.as_deref()
            && let Some(e) = valid(text)
        {
            notes.push(Note::new(
                &name,
                format!("{key} {text:?} cannot be evaluated by Syncbase ({e}): it becomes superusers-only (null)"),
            ));
            *rule = None;
        }
    };
    check("listRule", &mut c.list_rule, notes);
    check("viewRule", &mut c.view_rule, notes);
    check("createRule", &mut c.create_rule, notes);
    check("updateRule", &mut c.update_rule, notes);
    check("deleteRule", &mut c.delete_rule, notes);
    if let Some(auth) = c.auth.as_mut() {
        check("authRule", &mut auth.auth_rule, notes);
        check("manageRule", &mut auth.manage_rule, notes);
        let mfa = auth.mfa.rule.clone();
        if !mfa.trim().is_empty()
            && let Some(e) = valid(&mfa)
        {
            notes.push(Note::new(
                &name,
                format!("MFA rule {mfa:?} cannot be evaluated by Syncbase ({e}): MFA applies to every record instead"),
            ));
            auth.mfa.rule = String::new();
        }
    }
}

/// The values of `theirs` that `ours` does not hold, as (dotted path, value); empty values
/// (null, false, 0, "", [] and {}) count as held, and numbers compare by value.
fn lost(theirs: &Value, ours: &Value, path: &str) -> Vec<(String, Value)> {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => t
            .iter()
            .flat_map(|(k, v)| match o.get(k) {
                Some(ov) => lost(v, ov, &at(k)),
                None if is_empty(v) => Vec::new(),
                None => vec![(at(k), v.clone())],
            })
            .collect(),
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Vec::new(),
        (t, o) if t == o || (is_empty(t) && is_empty(o)) => Vec::new(),
        (t, _) => vec![(path.to_string(), t.clone())],
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, fields: Value, indexes: Value, options: Value) -> PbCollection {
        PbCollection {
            id: crate::store::schema::collection_id(
                if kind == "auth" {
                    CollectionType::Auth
                } else {
                    CollectionType::Base
                },
                name,
            ),
            name: name.into(),
            kind: kind.into(),
            system: false,
            fields: fields.to_string(),
            indexes: indexes.to_string(),
            list_rule: Some(String::new()),
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            options: options.to_string(),
            created: "2024-01-01 00:00:00.000Z".into(),
            updated: "2024-01-01 00:00:00.000Z".into(),
        }
    }

    fn id_field() -> Value {
        json!({"autogeneratePattern": "[a-z0-9]{15}", "help": "", "hidden": false,
               "id": "text3208210256", "max": 15, "min": 15, "name": "id", "pattern": "^[a-z0-9]+$",
               "presentable": false, "primaryKey": true, "required": true, "system": true,
               "type": "text"})
    }

    fn table(columns: &[&str], rows: u64) -> PbTable {
        PbTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        }
    }

    #[test]
    fn every_supported_field_keeps_its_id_and_options() {
        let fields = json!([id_field(),
            {"id": "number1", "name": "views", "type": "number", "min": 0, "max": null, "onlyInt": true,
             "required": false, "system": false, "hidden": false, "presentable": false, "help": ""},
            {"id": "select1", "name": "tags", "type": "select", "values": ["a", "b"], "maxSelect": 2,
             "help": "pick", "hidden": false, "presentable": true, "required": false, "system": false},
            {"id": "geo1", "name": "at", "type": "geoPoint", "hidden": false, "presentable": false,
             "required": false, "system": false, "help": ""}]);
        let rows = vec![row(
            "posts",
            "base",
            fields,
            json!(["CREATE INDEX idx_v ON posts (views)"]),
            json!({}),
        )];
        let tables = BTreeMap::from([(
            "posts".to_string(),
            table(&["id", "views", "tags", "at"], 3),
        )]);
        let out = import_collections(&rows, &tables);
        assert!(out.notes.is_empty(), "{:?}", out.notes);
        let c = &out.collections[0].collection;
        assert_eq!(c.id, rows[0].id);
        assert_eq!(
            c.fields.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["text3208210256", "number1", "select1", "geo1"]
        );
        assert!(c.fields[2].is_multiple() && c.fields[2].presentable);
        assert_eq!(c.fields[2].help, "pick");
        assert_eq!(c.indexes, ["CREATE INDEX idx_v ON posts (views)"]);
        assert_eq!(out.collections[0].columns, ["id", "views", "tags", "at"]);
    }

    #[test]
    fn what_syncbase_lacks_is_named_and_nothing_depends_on_it() {
        let fields = json!([id_field(),
            {"id": "vec1", "name": "cover", "type": "vector", "dimensions": 3},
            {"id": "rel1", "name": "v", "type": "relation", "collectionId": "pbc_view", "maxSelect": 1},
            {"id": "text1", "name": "title", "type": "text", "futureOption": 5}]);
        let mut posts = row(
            "posts",
            "base",
            fields,
            json!([
                "CREATE INDEX idx_c ON posts (cover)",
                "CREATE INDEX idx_l ON posts (lower(title))",
                "CREATE INDEX idx_t ON posts (title)"
            ]),
            json!({}),
        );
        posts.view_rule = Some("cover != ''".into());
        posts.update_rule = Some("title != ''".into());
        let mut view = row(
            "v",
            "view",
            json!([]),
            json!([]),
            json!({"viewQuery": "SELECT id FROM posts"}),
        );
        view.id = "pbc_view".into();
        let tables = BTreeMap::from([(
            "posts".to_string(),
            table(&["id", "cover", "v", "title"], 2),
        )]);
        let out = import_collections(&[posts, view], &tables);
        let c = &out.collections[0].collection;
        assert_eq!(
            c.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["id", "title"]
        );
        assert_eq!(c.indexes, ["CREATE INDEX idx_t ON posts (title)"]);
        assert_eq!(c.view_rule, None, "a rule naming a dropped field closes");
        assert_eq!(c.update_rule.as_deref(), Some("title != ''"));
        assert_eq!(
            out.left_behind,
            [
                ("posts".into(), "cover".into()),
                ("posts".into(), "v".into())
            ]
        );
        let text: Vec<String> = out.notes.iter().map(|n| n.to_string()).collect();
        for expected in [
            "posts.cover: vector field not carried: Syncbase has no such field type",
            "posts.v: relation field not carried",
            "posts.title: field option futureOption = 5 not carried",
            "posts: index not carried (Syncbase only indexes plain columns of carried fields): CREATE INDEX idx_c",
            "posts: index not carried (Syncbase only indexes plain columns of carried fields): CREATE INDEX idx_l",
            "v: view collection not carried",
            "posts: viewRule \"cover != ''\" cannot be evaluated",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(expected)),
                "{expected} in {text:#?}"
            );
        }
    }

    #[test]
    fn file_fields_keep_their_options() {
        let fields = json!([id_field(),
            {"id": "file1", "name": "cover", "type": "file", "maxSelect": 1, "maxSize": 1000,
             "mimeTypes": ["image/png"], "thumbs": ["50x50"], "protected": false,
             "hidden": false, "presentable": false, "required": false, "system": false},
            {"id": "file2", "name": "docs", "type": "file", "maxSelect": 5, "maxSize": 0,
             "mimeTypes": [], "thumbs": [], "protected": true,
             "hidden": false, "presentable": false, "required": false, "system": false}]);
        let rows = vec![row(
            "posts",
            "base",
            fields,
            json!(["CREATE INDEX idx_c ON posts (cover)"]),
            json!({}),
        )];
        let tables = BTreeMap::from([("posts".to_string(), table(&["id", "cover", "docs"], 1))]);
        let out = import_collections(&rows, &tables);
        assert!(out.notes.is_empty(), "{:?}", out.notes);
        assert!(out.left_behind.is_empty());
        let c = &out.collections[0].collection;
        let files: Vec<_> = c
            .file_fields()
            .map(|(f, o)| (f.name.as_str(), o.clone()))
            .collect();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].1.max_size, 1000);
        assert_eq!(files[0].1.mime_types, ["image/png"]);
        assert_eq!(files[0].1.thumbs, ["50x50"]);
        assert!(!files[0].1.protected && files[1].1.protected);
        assert!(c.fields[2].is_multiple());
        assert_eq!(c.indexes, ["CREATE INDEX idx_c ON posts (cover)"]);
        assert_eq!(out.collections[0].columns, ["id", "cover", "docs"]);
    }

    #[test]
    fn auth_collections_keep_their_secrets_and_drop_unknown_providers() {
        let options = json!({
            "authRule": "verified = true", "manageRule": null,
            "authAlert": {"enabled": false, "emailTemplate": {"subject": "s", "body": "b"}},
            "oauth2": {"enabled": true, "mappedFields": {"id": "", "name": "", "username": "", "avatarURL": ""},
                       "providers": [{"name": "google", "clientId": "g", "clientSecret": "gs"},
                                     {"name": "apple", "clientId": "a", "clientSecret": "as"}]},
            "passwordAuth": {"enabled": true, "identityFields": ["email"]},
            "mfa": {"enabled": false, "duration": 600, "rule": ""},
            "otp": {"enabled": false, "duration": 180, "length": 8, "emailTemplate": {"subject": "o", "body": "o"}},
            "authToken": {"secret": "S".repeat(50), "duration": 1209600},
            "passwordResetToken": {"secret": "R".repeat(50), "duration": 1800},
            "emailChangeToken": {"secret": "E".repeat(50), "duration": 1800},
            "verificationToken": {"secret": "V".repeat(50), "duration": 86400},
            "fileToken": {"secret": "F".repeat(50), "duration": 180},
            "verificationTemplate": {"subject": "v", "body": "v"},
            "resetPasswordTemplate": {"subject": "r", "body": "r"},
            "confirmEmailChangeTemplate": {"subject": "c", "body": "c"},
        });
        let mut fields = crate::store::schema::Field::primary_id();
        fields.system = true;
        let verified = json!({"id": "bool1", "name": "verified", "type": "bool", "system": true});
        let rows = vec![row(
            "members",
            "auth",
            json!([id_field(), verified]),
            json!([]),
            options,
        )];
        let out = import_collections(&rows, &BTreeMap::new());
        let auth = out.collections[0].collection.auth.clone().expect("auth");
        assert_eq!(auth.auth_token.secret, "S".repeat(50));
        assert_eq!(auth.auth_token.duration, 1_209_600);
        assert_eq!(
            auth.secret(crate::store::schema::TokenKind::Verification),
            "V".repeat(50)
        );
        assert_eq!(auth.auth_rule.as_deref(), Some("verified = true"));
        assert_eq!(
            auth.oauth2
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["google"]
        );
        assert_eq!(auth.oauth2.providers[0].client_secret, "gs");
        let text: Vec<String> = out.notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            ["members: OAuth2 provider \"apple\" not carried: Syncbase does not implement it"]
        );
    }

    #[test]
    fn syncbase_keeps_its_own_definitions_of_the_auth_system_collections() {
        let otps = PbCollection {
            id: OTPS.into(),
            system: true,
            ..row("_otps", "base", json!([id_field()]), json!([]), json!({}))
        };
        let tables = BTreeMap::from([(
            "_otps".to_string(),
            table(
                &[
                    "id",
                    "collectionRef",
                    "recordRef",
                    "password",
                    "created",
                    "updated",
                ],
                1,
            ),
        )]);
        let out = import_collections(&[otps], &tables);
        let planned = &out.collections[0];
        assert_eq!(planned.collection.id, OTPS);
        assert!(planned.collection.field("sentTo").is_some());
        // An older PocketBase's table without `sentTo`: its rows come along without it.
        assert!(!planned.columns.contains(&"sentTo".to_string()));
        assert!(
            out.notes[0]
                .to_string()
                .starts_with("_otps.sentTo: PocketBase's table had no such column")
        );
    }

    #[test]
    fn lost_values_ignore_empty_ones_and_number_spelling() {
        let theirs = json!({"a": 0, "b": null, "c": [], "d": 1, "e": {"f": "x", "g": ""}, "h": 2});
        let ours = json!({"d": 1.0, "e": {"f": "y"}, "h": 2});
        assert_eq!(
            lost(&theirs, &ours, ""),
            vec![("e.f".to_string(), json!("x"))]
        );
    }
}
