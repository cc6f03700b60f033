//! End-to-end tests: filters are translated and executed against real SQLite tables built
//! from `Collection`s. Expected ids were checked against PocketBase 0.40.6 with the same data.

mod filters;
mod fuzz;
mod list_rules;
mod output;
mod rules;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;
use rusqlite::types::Value as DbValue;
use serde_json::{Value, json};

use super::*;
use crate::store::schema::{
    AuthOptions, CollectionType, DateOptions, Empty, Field, FieldKind, JsonOptions, NumberOptions,
    PasswordOptions, RelationOptions, SelectOptions, TextOptions, quote_ident,
};

fn text(name: &str) -> Field {
    Field::new(name, FieldKind::Text(TextOptions::default()))
}

fn number(name: &str) -> Field {
    Field::new(name, FieldKind::Number(NumberOptions::default()))
}

fn boolean(name: &str) -> Field {
    Field::new(name, FieldKind::Bool(Empty {}))
}

fn select(name: &str, values: &[&str], max_select: i64) -> Field {
    let values = values.iter().map(|v| v.to_string()).collect();
    Field::new(
        name,
        FieldKind::Select(SelectOptions { values, max_select }),
    )
}

fn relation(name: &str, collection_id: &str, max_select: i64) -> Field {
    Field::new(
        name,
        FieldKind::Relation(RelationOptions {
            collection_id: collection_id.into(),
            max_select,
            ..Default::default()
        }),
    )
}

fn hidden(mut f: Field) -> Field {
    f.hidden = true;
    f
}

fn collection(id: &str, name: &str, kind: CollectionType, fields: Vec<Field>) -> Collection {
    let mut all = vec![Field::primary_id()];
    all.extend(fields);
    Collection {
        id: id.into(),
        name: name.into(),
        kind,
        system: false,
        fields: all,
        indexes: Vec::new(),
        list_rule: None,
        view_rule: None,
        create_rule: None,
        update_rule: None,
        delete_rule: None,
        auth: (kind == CollectionType::Auth).then(AuthOptions::default),
        created: String::new(),
        updated: String::new(),
        view_query: None,
        sql: Default::default(),
    }
}

struct Fixture {
    colls: Vec<Collection>,
    conn: Connection,
    now: DateTime<Utc>,
}

impl CollectionLookup for Fixture {
    fn collection(&self, name_or_id: &str) -> Option<&Collection> {
        self.colls
            .iter()
            .find(|c| c.name == name_or_id || c.id == name_or_id)
    }
}

fn to_db(v: &Value) -> DbValue {
    match v {
        Value::Null => DbValue::Null,
        Value::Bool(b) => DbValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => DbValue::Integer(i),
            None => DbValue::Real(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => DbValue::Text(s.clone()),
        other => DbValue::Text(other.to_string()),
    }
}

fn param_to_db(p: &SqlParam) -> DbValue {
    match p {
        SqlParam::Null => DbValue::Null,
        SqlParam::Int(i) => DbValue::Integer(*i),
        SqlParam::Real(f) => DbValue::Real(*f),
        SqlParam::Text(s) => DbValue::Text(s.clone()),
    }
}

/// Who is asking: a superuser's own filter, a non-superuser's own filter, or a rule.
#[derive(Clone, Copy)]
enum Caller<'u> {
    Superuser,
    Client,
    /// A signed-in non-superuser's own filter.
    User(&'u str),
    Rule {
        auth: Option<&'u str>,
        body: &'u Value,
    },
}

const NULL_BODY: &Value = &Value::Null;

impl Fixture {
    fn new() -> Fixture {
        let teams = collection(
            "pbc_teams",
            "teams",
            CollectionType::Base,
            vec![text("name")],
        );
        let mut users = collection(
            "_pb_users_auth_",
            "users",
            CollectionType::Auth,
            vec![
                hidden(Field::new(
                    "password",
                    FieldKind::Password(PasswordOptions::default()),
                )),
                hidden(text("tokenKey")),
                Field::new("email", FieldKind::Email(Default::default())),
                boolean("emailVisibility"),
                boolean("verified"),
                text("name"),
                number("age"),
                select("roles", &["admin", "editor", "viewer"], 3),
                hidden(text("secret")),
                relation("team", "pbc_teams", 1),
            ],
        );
        users
            .indexes
            .push("CREATE UNIQUE INDEX `idx_email` ON `users` (`email`)".into());
        let posts = collection(
            "pbc_posts",
            "posts",
            CollectionType::Base,
            vec![
                text("title"),
                text("subtitle"),
                number("views"),
                boolean("published"),
                Field::new("pubdate", FieldKind::Date(DateOptions::default())),
                select("tags", &["a", "b", "c", "d"], 4),
                select("status", &["draft", "live"], 1),
                relation("author", "_pb_users_auth_", 1),
                relation("editors", "_pb_users_auth_", 5),
                Field::new("meta", FieldKind::Json(JsonOptions::default())),
                hidden(text("hid")),
            ],
        );
        let comments = collection(
            "pbc_comments",
            "comments",
            CollectionType::Base,
            vec![
                text("message"),
                relation("post", "pbc_posts", 1),
                relation("user", "_pb_users_auth_", 1),
            ],
        );
        let conn = Connection::open_in_memory().expect("open");
        let mut colls = vec![teams, users, posts, comments];
        // Everyone may list everything unless a test says otherwise (a `None` listRule would
        // refuse non-superusers' joins outright).
        for c in &mut colls {
            c.list_rule = Some(String::new());
        }
        for c in &colls {
            let cols: Vec<String> = c
                .fields
                .iter()
                .map(|f| format!("{} {}", quote_ident(&f.name), f.column_def()))
                .collect();
            conn.execute(
                &format!("CREATE TABLE {} ({})", c.table(), cols.join(", ")),
                [],
            )
            .expect("create");
        }
        let fx = Fixture {
            colls,
            conn,
            now: Utc
                .with_ymd_and_hms(2026, 11, 25, 15, 23, 50)
                .single()
                .expect("now"),
        };
        fx.insert("teams", json!({"id": "red", "name": "Red"}));
        fx.insert("teams", json!({"id": "blue", "name": "Blue"}));
        for (name, age, roles, secret, visible, team) in [
            ("alice", 30, json!(["admin"]), "s1", true, "red"),
            ("bob", 20, json!(["editor", "viewer"]), "s2", false, "blue"),
            ("carol", 40, json!([]), "", true, ""),
            ("dave", 0, json!(["viewer"]), "s4", true, "red"),
        ] {
            fx.insert(
                "users",
                json!({"id": name, "email": format!("{name}@x.io"), "emailVisibility": visible,
                       "verified": name == "alice", "name": name, "age": age, "roles": roles,
                       "secret": secret, "team": team, "password": "$2a$hash", "tokenKey": "k"}),
            );
        }
        for p in [
            json!({"id": "p1", "title": "p1", "subtitle": "p1", "views": 10, "published": true,
                   "pubdate": "2024-01-15 10:00:00.000Z", "tags": ["a", "b"], "status": "live",
                   "author": "alice", "editors": ["alice", "bob"], "meta": {"x": 1, "s": "hi"}, "hid": "h1"}),
            json!({"id": "p2", "title": "p2", "subtitle": "", "views": 0, "published": false,
                   "pubdate": "", "tags": [], "status": "", "author": "", "editors": [], "meta": null, "hid": ""}),
            json!({"id": "p3", "title": "p3 100% _x_", "subtitle": "other", "views": 5.5, "published": true,
                   "pubdate": "2025-06-01 00:00:00.000Z", "tags": ["c"], "status": "draft",
                   "author": "bob", "editors": ["carol"], "meta": [1, 2], "hid": "h3"}),
            json!({"id": "p4", "title": "P4 Hello", "subtitle": "x", "views": -3, "published": false,
                   "pubdate": "2023-12-31 23:59:59.999Z", "tags": ["c", "d"], "status": "live",
                   "author": "carol", "editors": ["bob", "carol", "dave"], "meta": "str", "hid": "h4"}),
            json!({"id": "p5", "title": "", "subtitle": "", "views": 100, "published": true,
                   "pubdate": "2030-01-01 00:00:00.000Z", "tags": ["a", "b", "c", "d"], "status": "draft",
                   "author": "dave", "editors": ["dave"], "meta": {"x": 2}, "hid": ""}),
        ] {
            fx.insert("posts", p);
        }
        for (id, post, user) in [
            ("c1", "p1", "alice"),
            ("c2", "p1", "bob"),
            ("c3", "p3", "alice"),
            ("c4", "p4", "carol"),
            ("c5", "p3", "carol"),
        ] {
            fx.insert(
                "comments",
                json!({"id": id, "message": id, "post": post, "user": user}),
            );
        }
        fx
    }

    fn insert(&self, table: &str, row: Value) {
        let Value::Object(m) = row else {
            panic!("row must be an object")
        };
        let cols: Vec<String> = m.keys().map(|k| quote_ident(k)).collect();
        let marks = vec!["?"; m.len()].join(", ");
        let vals: Vec<DbValue> = m
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                // The JSON column stores JSON text (or NULL).
                ("meta", Value::Null) => DbValue::Null,
                ("meta", v) => DbValue::Text(v.to_string()),
                (_, v) => to_db(v),
            })
            .collect();
        self.conn
            .execute(
                &format!(
                    "INSERT INTO {} ({}) VALUES ({marks})",
                    quote_ident(table),
                    cols.join(", ")
                ),
                rusqlite::params_from_iter(vals),
            )
            .expect("insert");
    }

    fn coll(&self, name: &str) -> &Collection {
        self.collection(name).expect("collection")
    }

    fn set_list_rule(&mut self, coll: &str, rule: Option<&str>) {
        let c = self
            .colls
            .iter_mut()
            .find(|c| c.name == coll)
            .expect("collection");
        c.list_rule = rule.map(String::from);
    }

    /// The full auth record JSON, as the API would pass it.
    fn auth_json(&self, id: &str) -> Value {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM `users` WHERE id = ?")
            .expect("prepare");
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let users = self.coll("users");
        stmt.query_row([id], |row| {
            let mut m = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                let v: DbValue = row.get(i)?;
                let kind = &users.field(n).expect("field").kind;
                let j = match (v, kind) {
                    (DbValue::Integer(i), FieldKind::Bool(_)) => json!(i != 0),
                    (DbValue::Integer(i), _) => json!(i),
                    (DbValue::Real(f), _) => json!(f),
                    (DbValue::Text(s), FieldKind::Select(_)) => {
                        serde_json::from_str(&s).expect("json")
                    }
                    (DbValue::Text(s), _) => json!(s),
                    _ => Value::Null,
                };
                m.insert(n.clone(), j);
            }
            m.insert("collectionId".into(), json!(users.id));
            m.insert("collectionName".into(), json!("users"));
            Ok(Value::Object(m))
        })
        .expect("auth row")
    }

    fn query<'a>(&'a self, coll: &str, caller: Caller, request: Option<&'a Value>) -> Query<'a> {
        let (refs, hidden) = match caller {
            Caller::Superuser => (true, true),
            Caller::Client | Caller::User(_) => (false, false),
            Caller::Rule { .. } => (true, true),
        };
        Query {
            lookup: self,
            collection: self.coll(coll),
            request,
            allow_request_refs: refs,
            allow_hidden: hidden,
            now: self.now,
        }
    }

    fn request(&self, caller: Caller) -> Value {
        let (auth, body) = match caller {
            Caller::Rule { auth, body } => (auth.map(|a| self.auth_json(a)), body.clone()),
            Caller::User(id) => (Some(self.auth_json(id)), Value::Null),
            _ => (None, Value::Null),
        };
        json!({"auth": auth, "body": body, "query": {"page": "2", "perPage": "500"},
               "headers": {"x_token": "tok", "User-Agent": "Tester/1"}, "method": "GET", "context": "default"})
    }

    /// Ids of `coll` matching `filter`, comma-separated, or the error.
    fn run(&self, coll: &str, filter: &str, caller: Caller) -> Result<String, FilterError> {
        let request = self.request(caller);
        let q = self.query(coll, caller, Some(&request));
        let (sql, params) = filter_sql(filter, &q)?;
        let full = format!(
            "SELECT id FROM {} WHERE {sql} ORDER BY id",
            quote_ident(coll)
        );
        let mut stmt = self
            .conn
            .prepare(&full)
            .unwrap_or_else(|e| panic!("{filter}: {e}\n{full}"));
        let ids: Vec<String> = stmt
            .query_map(
                rusqlite::params_from_iter(params.iter().map(param_to_db)),
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("{filter}: {e}\n{full}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{filter}: {e}\n{full}"));
        Ok(ids.join(","))
    }

    /// Posts matching a superuser's filter.
    fn posts(&self, filter: &str) -> String {
        self.run("posts", filter, Caller::Superuser)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
    }

    /// Posts matching a rule for the given auth record and body.
    fn rule(&self, filter: &str, auth: Option<&str>, body: &Value) -> String {
        self.run("posts", filter, Caller::Rule { auth, body })
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
    }

    fn sorted(&self, coll: &str, sort: &str) -> Result<String, FilterError> {
        let q = self.query(coll, Caller::Superuser, None);
        let (order, params) = sort_sql(sort, &q)?;
        assert!(params.is_empty(), "a superuser's sort binds nothing");
        let order = if order.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {order}")
        };
        let full = format!("SELECT id FROM {}{order}", quote_ident(coll));
        let mut stmt = self
            .conn
            .prepare(&full)
            .unwrap_or_else(|e| panic!("{sort}: {e}\n{full}"));
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        Ok(ids.join(","))
    }
}

const ALL: &str = "p1,p2,p3,p4,p5";

fn check(fx: &Fixture, cases: &[(&str, &str)]) {
    for (filter, want) in cases {
        assert_eq!(fx.posts(filter), *want, "filter {filter:?}");
    }
}
