//! Syncbase's collection definitions → PocketBase's `_collections` rows and tables. Pure.
//!
//! Syncbase keeps collections in PocketBase's JSON shapes, so a definition goes across as it
//! is: fields (ids and options), indexes, rules, and for auth collections the options with
//! their token secrets. Tables get PocketBase's column types (Syncbase's match them, except
//! that PocketBase gives the primary key a random default) with columns in PocketBase's
//! order. PocketBase's own collections that Syncbase lacks are added empty.

use serde_json::{Map, Value, json};

use crate::store::pocketbase::{PbCollection, PbTablePlan};
use crate::store::schema::{Collection, CollectionType, Field, FieldKind};

/// `_authOrigins` as PocketBase 0.40 defines it (the devices each auth record signed in from,
/// for its new-device login alerts). Syncbase has no such collection; PocketBase needs it.
fn auth_origins(now: &str) -> PbTablePlan {
    let owner = "@request.auth.id != '' && recordRef = @request.auth.id && collectionRef = @request.auth.collectionId";
    let text = |id: &str, name: &str| {
        json!({"autogeneratePattern": "", "help": "", "hidden": false, "id": id, "max": 0,
               "min": 0, "name": name, "pattern": "", "presentable": false, "primaryKey": false,
               "required": true, "system": true, "type": "text"})
    };
    let fields = json!([
        {"autogeneratePattern": "[a-z0-9]{15}", "help": "", "hidden": false, "id": "text3208210256",
         "max": 15, "min": 15, "name": "id", "pattern": "^[a-z0-9]+$", "presentable": false,
         "primaryKey": true, "required": true, "system": true, "type": "text"},
        text("text455797646", "collectionRef"),
        text("text127846527", "recordRef"),
        text("text4228609354", "fingerprint"),
        {"hidden": false, "id": "autodate2990389176", "name": "created", "onCreate": true,
         "onUpdate": false, "presentable": false, "system": true, "type": "autodate"},
        {"hidden": false, "id": "autodate3332085495", "name": "updated", "onCreate": true,
         "onUpdate": true, "presentable": false, "system": true, "type": "autodate"}
    ]);
    let index = "CREATE UNIQUE INDEX `idx_authOrigins_unique_pairs` ON `_authOrigins` (collectionRef, recordRef, fingerprint)";
    let plain = "TEXT DEFAULT '' NOT NULL";
    let columns = [
        "collectionRef",
        "created",
        "fingerprint",
        "recordRef",
        "updated",
    ]
    .into_iter()
    .map(|c| (c.to_string(), plain.to_string()))
    .chain([("id".to_string(), PRIMARY_KEY.to_string())]);
    let mut columns: Vec<(String, String)> = columns.collect();
    columns.sort();
    PbTablePlan {
        collection: PbCollection {
            id: "pbc_4275539003".into(),
            name: "_authOrigins".into(),
            kind: "base".into(),
            system: true,
            fields: fields.to_string(),
            indexes: json!([index]).to_string(),
            list_rule: Some(owner.into()),
            view_rule: Some(owner.into()),
            create_rule: None,
            update_rule: None,
            delete_rule: Some(owner.into()),
            options: "{}".into(),
            created: now.into(),
            updated: now.into(),
        },
        columns,
        indexes: vec![index.into()],
        copy_from: None,
    }
}

/// PocketBase's primary key column (`TextField.ColumnType` with `PrimaryKey`).
const PRIMARY_KEY: &str = "TEXT PRIMARY KEY DEFAULT ('r'||lower(hex(randomblob(7)))) NOT NULL";

/// The column type PocketBase gives a field.
pub fn pocketbase_column(f: &Field) -> &'static str {
    match &f.kind {
        FieldKind::Text(o) if o.primary_key => PRIMARY_KEY,
        _ => f.column_def(),
    }
}

/// A collection's `_collections` row and table for PocketBase.
pub fn export_collection(c: &Collection) -> PbTablePlan {
    let options = match (&c.kind, &c.auth) {
        (CollectionType::Auth, Some(auth)) => {
            serde_json::to_value(auth).unwrap_or_else(|_| Value::Object(Map::new()))
        }
        _ => Value::Object(Map::new()),
    };
    let kind = match c.kind {
        CollectionType::Base => "base",
        CollectionType::Auth => "auth",
        // Not reached: `export_collections` leaves views out (and the report names them).
        CollectionType::View => "view",
    };
    // PocketBase creates a table's columns sorted by name.
    let mut columns: Vec<(String, String)> = c
        .fields
        .iter()
        .map(|f| (f.name.clone(), pocketbase_column(f).to_string()))
        .collect();
    columns.sort();
    PbTablePlan {
        collection: PbCollection {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: kind.into(),
            system: c.system,
            fields: serde_json::to_string(&c.fields).unwrap_or_else(|_| "[]".into()),
            indexes: serde_json::to_string(&c.indexes).unwrap_or_else(|_| "[]".into()),
            list_rule: c.list_rule.clone(),
            view_rule: c.view_rule.clone(),
            create_rule: c.create_rule.clone(),
            update_rule: c.update_rule.clone(),
            delete_rule: c.delete_rule.clone(),
            options: options.to_string(),
            created: c.created.clone(),
            updated: c.updated.clone(),
        },
        columns,
        indexes: c.indexes.clone(),
        copy_from: Some(c.name.clone()),
    }
}

/// Every base and auth collection, plus PocketBase's own that Syncbase lacks. View
/// collections are left out (the export does not write views yet; the report names them).
pub fn export_collections(
    collections: &[std::sync::Arc<Collection>],
    now: &str,
) -> Vec<PbTablePlan> {
    let mut out: Vec<PbTablePlan> = collections
        .iter()
        .filter(|c| !c.is_view())
        .map(|c| export_collection(c))
        .collect();
    if !collections.iter().any(|c| c.name == "_authOrigins") {
        out.push(auth_origins(now));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{RelationOptions, SelectOptions};

    #[test]
    fn tables_get_pocketbase_column_types_in_its_order() {
        let mut fields = vec![Field::primary_id()];
        fields.push(Field::new(
            "tags",
            FieldKind::Select(SelectOptions {
                values: vec!["a".into()],
                max_select: 2,
            }),
        ));
        fields.push(Field::new(
            "owner",
            FieldKind::Relation(RelationOptions {
                collection_id: "_pb_users_auth_".into(),
                max_select: 1,
                ..Default::default()
            }),
        ));
        let c = Collection {
            id: "pbc_1".into(),
            name: "posts".into(),
            kind: CollectionType::Base,
            system: false,
            fields,
            indexes: vec!["CREATE INDEX idx_o ON posts (owner)".into()],
            list_rule: Some(String::new()),
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            auth: None,
            view_query: None,
            created: "c".into(),
            updated: "u".into(),
            sql: Default::default(),
        };
        let t = export_collection(&c);
        assert_eq!(
            t.columns,
            [
                ("id".to_string(), PRIMARY_KEY.to_string()),
                ("owner".to_string(), "TEXT DEFAULT '' NOT NULL".to_string()),
                ("tags".to_string(), "JSON DEFAULT '[]' NOT NULL".to_string()),
            ]
        );
        assert_eq!(t.collection.options, "{}");
        assert_eq!(t.collection.list_rule.as_deref(), Some(""));
        let fields: Vec<Value> = serde_json::from_str(&t.collection.fields).expect("fields");
        assert_eq!(fields[1]["maxSelect"], 2);
        assert_eq!(fields[2]["collectionId"], "_pb_users_auth_");
    }

    #[test]
    fn pocketbase_gets_its_auth_origins_collection() {
        let all = export_collections(&[], "now");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].collection.name, "_authOrigins");
        assert!(all[0].copy_from.is_none());
        assert_eq!(all[0].columns.len(), 6);
    }
}
