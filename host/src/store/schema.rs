//! The collection schema model: collections, their fields and each field type's options.
//!
//! These are the JSON shapes PocketBase serves at `/api/collections` (v0.23+), and the rows of
//! the `_collections` system table. This module owns the model and its pure helpers (id
//! generation, column types); it never touches SQLite.

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use super::auth_options::*;

/// Kind of collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CollectionType {
    #[default]
    Base,
    Auth,
    /// Read-only records computed by an SQL `SELECT` (`viewQuery`) over other collections.
    View,
}

/// A collection as PocketBase serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Collection {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: CollectionType,
    #[serde(default)]
    pub system: bool,
    pub fields: Vec<Field>,
    #[serde(default)]
    pub indexes: Vec<String>,
    pub list_rule: Option<String>,
    pub view_rule: Option<String>,
    pub create_rule: Option<String>,
    pub update_rule: Option<String>,
    pub delete_rule: Option<String>,
    /// Auth-only options (token secret, identity fields, durations).
    #[serde(default, skip_serializing_if = "Option::is_none", flatten)]
    pub auth: Option<AuthOptions>,
    /// The `SELECT` of a view collection (`None` for other types).
    #[serde(default, rename = "viewQuery", skip_serializing_if = "Option::is_none")]
    pub view_query: Option<String>,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub updated: String,
    /// Statements derived from this shape, built on first use.
    #[serde(skip)]
    pub sql: SqlMemo,
}

/// SQL text that depends only on a collection's shape, built once per `Collection` value
/// instead of once per row on the fold's and the writer's hot paths. A clone starts empty:
/// a changed collection is always a modified clone, so it can never see its old shape's SQL.
#[derive(Default)]
pub struct SqlMemo {
    by_id: std::sync::OnceLock<String>,
    upsert: std::sync::OnceLock<String>,
}

impl Clone for SqlMemo {
    fn clone(&self) -> Self {
        SqlMemo::default()
    }
}

impl std::fmt::Debug for SqlMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqlMemo")
    }
}

impl SqlMemo {
    /// `text`, built by `build` the first time.
    pub fn by_id(&self, build: impl FnOnce() -> String) -> &str {
        self.by_id.get_or_init(build)
    }

    pub fn upsert(&self, build: impl FnOnce() -> String) -> &str {
        self.upsert.get_or_init(build)
    }
}

/// One field of a collection: the options common to all types plus the type's own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Field {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub presentable: bool,
    #[serde(default)]
    pub required: bool,
    /// Help text shown to editors (PocketBase serves `""` when unset).
    #[serde(default)]
    pub help: String,
    #[serde(flatten)]
    pub kind: FieldKind,
}

/// A field's type with that type's options, tagged by PocketBase's `type` string.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FieldKind {
    Text(TextOptions),
    Number(NumberOptions),
    Bool(Empty),
    Email(DomainOptions),
    Url(DomainOptions),
    Editor(EditorOptions),
    Date(DateOptions),
    Autodate(AutodateOptions),
    Select(SelectOptions),
    Json(JsonOptions),
    Relation(RelationOptions),
    Password(PasswordOptions),
    /// GPS coordinates, stored as the JSON object `{"lon": x, "lat": y}`.
    #[serde(rename = "geoPoint")]
    GeoPoint(Empty),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Empty {}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TextOptions {
    pub min: i64,
    pub max: i64,
    pub pattern: String,
    pub autogenerate_pattern: String,
    pub primary_key: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NumberOptions {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub only_int: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DomainOptions {
    pub except_domains: Vec<String>,
    pub only_domains: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EditorOptions {
    pub max_size: i64,
    #[serde(rename = "convertURLs")]
    pub convert_urls: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DateOptions {
    pub min: String,
    pub max: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AutodateOptions {
    pub on_create: bool,
    pub on_update: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SelectOptions {
    pub values: Vec<String>,
    pub max_select: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JsonOptions {
    pub max_size: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RelationOptions {
    pub collection_id: String,
    pub cascade_delete: bool,
    pub min_select: i64,
    pub max_select: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PasswordOptions {
    pub min: i64,
    pub max: i64,
    pub pattern: String,
    pub cost: i64,
}

impl FieldKind {
    /// PocketBase's type name, as in the JSON `type` key.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldKind::Text(_) => "text",
            FieldKind::Number(_) => "number",
            FieldKind::Bool(_) => "bool",
            FieldKind::Email(_) => "email",
            FieldKind::Url(_) => "url",
            FieldKind::Editor(_) => "editor",
            FieldKind::Date(_) => "date",
            FieldKind::Autodate(_) => "autodate",
            FieldKind::Select(_) => "select",
            FieldKind::Json(_) => "json",
            FieldKind::Relation(_) => "relation",
            FieldKind::Password(_) => "password",
            FieldKind::GeoPoint(_) => "geoPoint",
        }
    }
}

impl Field {
    /// True when the field stores a JSON array of values (multi select / multi relation).
    pub fn is_multiple(&self) -> bool {
        match &self.kind {
            FieldKind::Select(o) => o.max_select > 1,
            FieldKind::Relation(o) => o.max_select > 1,
            _ => false,
        }
    }

    /// The SQLite column definition (type, constraint and default) for this field.
    pub fn column_def(&self) -> &'static str {
        if self.is_multiple() {
            return "JSON DEFAULT '[]' NOT NULL";
        }
        match &self.kind {
            FieldKind::Number(_) => "NUMERIC DEFAULT 0 NOT NULL",
            FieldKind::Bool(_) => "BOOLEAN DEFAULT FALSE NOT NULL",
            FieldKind::Json(_) => "JSON DEFAULT NULL",
            FieldKind::GeoPoint(_) => r#"JSON DEFAULT '{"lon":0,"lat":0}' NOT NULL"#,
            FieldKind::Text(o) if o.primary_key => "TEXT PRIMARY KEY DEFAULT '' NOT NULL",
            _ => "TEXT DEFAULT '' NOT NULL",
        }
    }

    /// Field ids follow PocketBase: the type name followed by the CRC-32 of the field name,
    /// so the same schema gets the same ids on every node.
    pub fn default_id(&self) -> String {
        format!("{}{}", self.kind.type_name(), crc32(self.name.as_bytes()))
    }

    pub fn new(name: &str, kind: FieldKind) -> Field {
        let mut f = Field {
            id: String::new(),
            name: name.to_string(),
            system: false,
            hidden: false,
            presentable: false,
            required: false,
            help: String::new(),
            kind,
        };
        f.id = f.default_id();
        f
    }

    /// The primary key field every collection starts with.
    pub fn primary_id() -> Field {
        let mut f = Field::new(
            "id",
            FieldKind::Text(TextOptions {
                min: 15,
                max: 15,
                pattern: "^[a-z0-9]+$".into(),
                autogenerate_pattern: "[a-z0-9]{15}".into(),
                primary_key: true,
            }),
        );
        f.system = true;
        f.required = true;
        f
    }
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn is_auth(&self) -> bool {
        self.kind == CollectionType::Auth
    }

    /// A view collection: its table is an SQL view, its records read-only.
    pub fn is_view(&self) -> bool {
        self.kind == CollectionType::View
    }

    /// The SQL identifier of the collection's table, quoted.
    pub fn table(&self) -> String {
        quote_ident(&self.name)
    }
}

/// Quotes an SQL identifier with backticks, doubling any embedded backtick.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends `name` quoted as by [`quote_ident`], without allocating on its own.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('`');
    for ch in name.chars() {
        if ch == '`' {
            out.push('`');
        }
        out.push(ch);
    }
    out.push('`');
}

pub const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A random string of `len` characters drawn from `alphabet`.
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A new record id: 15 characters of `[a-z0-9]`.
pub fn new_record_id() -> String {
    random_string(15, LOWER_ALNUM)
}

/// A new collection's id as PocketBase derives it: `pbc_` and the CRC-32 of its type and name
/// (`"base"` + `"posts"`). Derived, not random, so a collection created the same way has the
/// same id everywhere; when the id is taken, `2`, `3`, ... is appended (see
/// `store::collections`).
pub fn collection_id(kind: CollectionType, name: &str) -> String {
    let kind = match kind {
        CollectionType::Base => "base",
        CollectionType::Auth => "auth",
        CollectionType::View => "view",
    };
    format!("pbc_{}", crc32(format!("{kind}{name}").as_bytes()))
}

/// True for a valid record id: 15 characters of `[a-z0-9]`.
pub fn is_valid_record_id(id: &str) -> bool {
    id.len() == 15
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// True for a valid collection or field name: word characters only (`^\w+$`, a leading
/// digit included, as in PocketBase) and at most `max` bytes.
pub fn is_valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// CRC-32 (IEEE), as Go's `crc32.ChecksumIEEE`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloned_collection_builds_its_own_sql() {
        let memo = SqlMemo::default();
        assert_eq!(memo.by_id(|| "old shape".into()), "old shape");
        assert_eq!(memo.by_id(|| "rebuilt".into()), "old shape", "built once");
        // Schema changes edit a clone: it must not inherit the old shape's statements.
        let changed = memo.clone();
        assert_eq!(changed.by_id(|| "new shape".into()), "new shape");
        assert_eq!(changed.upsert(|| "new upsert".into()), "new upsert");
    }

    #[test]
    fn collection_ids_match_pocketbase() {
        // Ids PocketBase 0.40.6 gave these collections.
        assert_eq!(collection_id(CollectionType::Base, "zz"), "pbc_37379816");
        assert_eq!(collection_id(CollectionType::Auth, "aa1"), "pbc_2108647029");
        assert_eq!(
            collection_id(CollectionType::Base, "ex_c"),
            "pbc_3117152012"
        );
    }

    #[test]
    fn field_ids_match_pocketbase() {
        assert_eq!(Field::primary_id().id, "text3208210256");
        let f = Field::new("created", FieldKind::Autodate(AutodateOptions::default()));
        assert_eq!(f.id, "autodate2990389176");
    }

    #[test]
    fn field_json_round_trips_with_type_tag() {
        let json = r#"{"name":"tags","type":"select","values":["a","b"],"maxSelect":2}"#;
        let f: Field = serde_json::from_str(json).expect("parse");
        assert!(f.is_multiple());
        let back = serde_json::to_value(&f).expect("ser");
        assert_eq!(back["type"], "select");
        assert_eq!(back["maxSelect"], 2);
    }

    #[test]
    fn record_ids_are_validated() {
        assert!(is_valid_record_id(&new_record_id()));
        assert!(!is_valid_record_id("ABCDEFGHIJKLMNO"));
        assert!(!is_valid_record_id("short"));
    }
}
