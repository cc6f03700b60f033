//! System tables, connection setup and bootstrap of a fresh data directory: the `_collections`
//! table holding every collection's JSON, `_params` for node-wide settings, and the default
//! `_superusers` and `users` auth collections.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, params};

use super::schema::*;
use super::{StoreError, ddl};
use crate::filter::CollectionLookup;

/// Every collection, by name and by id. Immutable: a schema change builds a new one.
#[derive(Debug, Default, Clone)]
pub struct Schema {
    by_name: HashMap<String, Arc<Collection>>,
    by_id: HashMap<String, Arc<Collection>>,
}

impl Schema {
    pub fn from_collections(list: Vec<Collection>) -> Schema {
        let mut s = Schema::default();
        for c in list {
            s.insert(c);
        }
        s
    }

    /// Looks a collection up by id or name (names case-insensitively, as PocketBase does).
    pub fn get(&self, id_or_name: &str) -> Option<&Arc<Collection>> {
        self.by_id
            .get(id_or_name)
            .or_else(|| self.by_name.get(&id_or_name.to_lowercase()))
    }

    pub fn insert(&mut self, c: Collection) {
        self.insert_arc(Arc::new(c));
    }

    pub fn insert_arc(&mut self, c: Arc<Collection>) {
        self.by_name.insert(c.name.to_lowercase(), c.clone());
        self.by_id.insert(c.id.clone(), c);
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(c) = self.by_id.remove(id) {
            self.by_name.remove(&c.name.to_lowercase());
        }
    }

    /// All collections, system ones first, then by creation time and name.
    pub fn all(&self) -> Vec<Arc<Collection>> {
        let mut v: Vec<_> = self.by_id.values().cloned().collect();
        v.sort_by(|a, b| (!a.system, &a.created, &a.name).cmp(&(!b.system, &b.created, &b.name)));
        v
    }

    /// Collections with a relation field pointing at `target_id`, with those fields.
    pub fn referencing(&self, target_id: &str) -> Vec<(Arc<Collection>, Vec<Field>)> {
        let mut out = Vec::new();
        for c in self.by_id.values() {
            let fields: Vec<Field> = c
                .fields
                .iter()
                .filter(
                    |f| matches!(&f.kind, FieldKind::Relation(o) if o.collection_id == target_id),
                )
                .cloned()
                .collect();
            if !fields.is_empty() {
                out.push((c.clone(), fields));
            }
        }
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        out
    }
}

impl CollectionLookup for Schema {
    fn collection(&self, name_or_id: &str) -> Option<&Collection> {
        self.get(name_or_id).map(|c| c.as_ref())
    }
}

/// Opens a connection with the pragmas every connection uses.
pub fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::default()
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -32000;
         PRAGMA journal_size_limit = 200000000;",
    )?;
    // Readers sort and build temporary indexes in memory. The writer must not: with
    // `temp_store = MEMORY` SQLite keeps the statement sub-journal in memory, in 1 KiB chunks,
    // and every savepoint RELEASE walks that list from the start to truncate it. A batch that
    // nests a savepoint per job or per folded event (the writer and the replication fold do)
    // then costs time quadratic in its size (most of a 1000-event fold went there). A file
    // sub-journal is spilled after 64 KiB and never walked.
    conn.execute_batch(if read_only {
        "PRAGMA temp_store = MEMORY;"
    } else {
        "PRAGMA temp_store = FILE;"
    })?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Creates the `_collections` and `_params` tables if missing.
pub fn create_system_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _collections (
             id      TEXT PRIMARY KEY NOT NULL,
             name    TEXT NOT NULL UNIQUE COLLATE NOCASE,
             data    JSON NOT NULL,
             created TEXT NOT NULL DEFAULT '',
             updated TEXT NOT NULL DEFAULT ''
         );
         CREATE TABLE IF NOT EXISTS _params (
             key   TEXT PRIMARY KEY NOT NULL,
             value JSON
         );",
    )?;
    Ok(())
}

/// Creates the system tables and default collections if missing, and loads the schema.
pub fn bootstrap(conn: &Connection) -> Result<Schema, StoreError> {
    create_system_tables(conn)?;
    let mut schema = load_schema(conn)?;
    if schema.get("_superusers").is_none() {
        // A fresh database gets `users` too; a snapshot installed here (which never carries
        // the node-local `_superusers`) keeps the collections it has.
        let fresh = schema.all().is_empty();
        let tx = conn.unchecked_transaction()?;
        let now = crate::records::validate::now_string();
        let mut defaults = vec![default_superusers(&now)];
        if fresh {
            defaults.push(default_users(&now));
        }
        for c in defaults {
            ddl::create_table(&tx, &c)?;
            save_collection(&tx, &c)?;
        }
        tx.commit()?;
        schema = load_schema(conn)?;
    }
    let missing: Vec<Collection> = auth_system_collections(&crate::records::validate::now_string())
        .into_iter()
        .filter(|c| schema.get(&c.id).is_none())
        .collect();
    if !missing.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for c in &missing {
            ddl::create_table(&tx, c)?;
            save_collection(&tx, c)?;
        }
        tx.commit()?;
        schema = load_schema(conn)?;
    }
    Ok(schema)
}

/// `_otps`: one-time passwords (PocketBase's fixed collection id).
pub const OTPS: &str = "pbc_1638494021";
/// `_mfas`: first factors awaiting a second.
pub const MFAS: &str = "pbc_2279338944";
/// `_externalAuths`: OAuth2 identities linked to auth records.
pub const EXTERNAL_AUTHS: &str = "pbc_2281828961";

/// The system collections of the auth flows, as PocketBase defines them (ids, fields, rules,
/// indexes): `_otps` (one-time passwords, hashed), `_mfas` (first factors awaiting a second)
/// and `_externalAuths` (OAuth2 links). Every node creates the same ones at bootstrap, so
/// their records replicate like any other collection's (an OTP requested on one node can be
/// used on another), while the definitions never need to travel through the log.
pub fn auth_system_collections(now: &str) -> Vec<Collection> {
    let owner = "@request.auth.id != '' && recordRef = @request.auth.id && collectionRef = @request.auth.collectionId";
    let text = |name: &str, hidden: bool| {
        let mut f = Field::new(name, FieldKind::Text(TextOptions::default()));
        f.system = true;
        f.hidden = hidden;
        f.required = name != "sentTo";
        f
    };
    let mut autodates = autodate_fields();
    for f in &mut autodates {
        f.system = true;
    }
    let collection =
        |id: &str, name: &str, mut fields: Vec<Field>, delete: bool, indexes: Vec<String>| {
            fields.insert(0, Field::primary_id());
            fields.extend(autodates.clone());
            Collection {
                id: id.into(),
                name: name.into(),
                kind: CollectionType::Base,
                system: true,
                fields,
                indexes,
                list_rule: Some(owner.into()),
                view_rule: Some(owner.into()),
                create_rule: None,
                update_rule: None,
                delete_rule: delete.then(|| owner.into()),
                auth: None,
                view_query: None,
                created: now.into(),
                updated: now.into(),
                sql: Default::default(),
            }
        };
    let mut otp_password = Field::new(
        "password",
        FieldKind::Password(PasswordOptions {
            min: 0,
            max: 0,
            pattern: String::new(),
            cost: 8,
        }),
    );
    otp_password.system = true;
    otp_password.hidden = true;
    otp_password.required = true;
    vec![
        collection(
            OTPS,
            "_otps",
            vec![text("collectionRef", false), text("recordRef", false), otp_password, text("sentTo", true)],
            false,
            vec!["CREATE INDEX `idx_otps_collectionRef_recordRef` ON `_otps` (collectionRef, recordRef)".into()],
        ),
        collection(
            MFAS,
            "_mfas",
            vec![text("collectionRef", false), text("recordRef", false), text("method", false)],
            false,
            vec!["CREATE INDEX `idx_mfas_collectionRef_recordRef` ON `_mfas` (collectionRef,recordRef)".into()],
        ),
        collection(
            EXTERNAL_AUTHS,
            "_externalAuths",
            vec![
                text("collectionRef", false),
                text("recordRef", false),
                text("provider", false),
                text("providerId", false),
            ],
            true,
            vec![
                "CREATE UNIQUE INDEX `idx_externalAuths_record_provider` ON `_externalAuths` (collectionRef, recordRef, provider)".into(),
                "CREATE UNIQUE INDEX `idx_externalAuths_collection_provider` ON `_externalAuths` (collectionRef, provider, providerId)".into(),
            ],
        ),
    ]
}

pub fn load_schema(conn: &Connection) -> Result<Schema, StoreError> {
    load_schema_in(conn, "main")
}

/// The schema stored in attached database `db` (`main` for the connection's own).
pub fn load_schema_in(conn: &Connection, db: &str) -> Result<Schema, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT data FROM {db}._collections"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut list = Vec::new();
    for row in rows {
        let text = row?;
        let c: Collection = serde_json::from_str(&text)
            .map_err(|e| StoreError::Internal(format!("corrupt collection row: {e}")))?;
        list.push(c);
    }
    Ok(Schema::from_collections(list))
}

pub fn save_collection(conn: &Connection, c: &Collection) -> Result<(), StoreError> {
    let data =
        serde_json::to_string(c).map_err(|e| StoreError::Internal(format!("serialize: {e}")))?;
    conn.execute(
        "INSERT INTO _collections (id, name, data, created, updated) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data,
             updated = excluded.updated",
        params![c.id, c.name, data, c.created, c.updated],
    )?;
    Ok(())
}

pub fn delete_collection_row(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM _collections WHERE id = ?1", params![id])?;
    Ok(())
}

/// The fields every auth collection has, in PocketBase's order.
pub fn auth_system_fields() -> Vec<Field> {
    let mut password = Field::new(
        "password",
        FieldKind::Password(PasswordOptions {
            min: 8,
            max: 0,
            pattern: String::new(),
            cost: 0,
        }),
    );
    password.system = true;
    password.hidden = true;
    password.required = true;
    let mut token_key = Field::new(
        "tokenKey",
        FieldKind::Text(TextOptions {
            min: 30,
            max: 60,
            pattern: String::new(),
            autogenerate_pattern: "[a-zA-Z0-9]{50}".into(),
            primary_key: false,
        }),
    );
    token_key.system = true;
    token_key.hidden = true;
    token_key.required = true;
    let mut email = Field::new("email", FieldKind::Email(DomainOptions::default()));
    email.system = true;
    email.required = true;
    let mut email_visibility = Field::new("emailVisibility", FieldKind::Bool(Empty {}));
    email_visibility.system = true;
    let mut verified = Field::new("verified", FieldKind::Bool(Empty {}));
    verified.system = true;
    vec![
        Field::primary_id(),
        password,
        token_key,
        email,
        email_visibility,
        verified,
    ]
}

/// The `created` / `updated` autodate pair.
pub fn autodate_fields() -> Vec<Field> {
    vec![
        Field::new(
            "created",
            FieldKind::Autodate(AutodateOptions {
                on_create: true,
                on_update: false,
            }),
        ),
        Field::new(
            "updated",
            FieldKind::Autodate(AutodateOptions {
                on_create: true,
                on_update: true,
            }),
        ),
    ]
}

/// Indexes every auth collection needs, named after the collection id as PocketBase does.
pub fn auth_indexes(id: &str, name: &str) -> Vec<String> {
    vec![
        format!("CREATE UNIQUE INDEX `idx_tokenKey_{id}` ON `{name}` (`tokenKey`)"),
        format!("CREATE UNIQUE INDEX `idx_email_{id}` ON `{name}` (`email`) WHERE `email` != ''"),
    ]
}

pub(crate) fn default_superusers(now: &str) -> Collection {
    let id = "pbc_3142635823".to_string();
    let mut fields = auth_system_fields();
    fields.extend(autodate_fields());
    Collection {
        indexes: auth_indexes(&id, "_superusers"),
        id,
        name: "_superusers".into(),
        kind: CollectionType::Auth,
        system: true,
        fields,
        list_rule: None,
        view_rule: None,
        create_rule: None,
        update_rule: None,
        delete_rule: None,
        auth: Some(AuthOptions {
            auth_rule: Some(String::new()),
            ..AuthOptions::default()
        }),
        created: now.into(),
        updated: now.into(),
        view_query: None,
        sql: Default::default(),
    }
}

/// The id of the `users` collection every node bootstraps (PocketBase's).
pub const BOOTSTRAP_USERS_ID: &str = "_pb_users_auth_";

fn default_users(now: &str) -> Collection {
    let id = BOOTSTRAP_USERS_ID.to_string();
    let mut fields = auth_system_fields();
    fields.push(Field::new(
        "name",
        FieldKind::Text(TextOptions {
            max: 255,
            ..TextOptions::default()
        }),
    ));
    fields.extend(autodate_fields());
    let owner = Some("id = @request.auth.id".to_string());
    Collection {
        indexes: auth_indexes(&id, "users"),
        id,
        name: "users".into(),
        kind: CollectionType::Auth,
        system: false,
        fields,
        list_rule: owner.clone(),
        view_rule: owner.clone(),
        create_rule: Some(String::new()),
        update_rule: owner.clone(),
        delete_rule: owner,
        auth: Some({
            // As PocketBase's `users`: an OAuth2 sign-up fills `name` from the provider.
            let mut opts = AuthOptions::default();
            opts.oauth2.mapped_fields.name = "name".into();
            opts
        }),
        created: now.into(),
        updated: now.into(),
        view_query: None,
        sql: Default::default(),
    }
}
