//! Secrets never leave the server: password hashes, tokenKeys and hidden fields are absent
//! from every endpoint that returns record data (outbound log, sync status, batch, realtime,
//! expand, errors, dry-run resolve), and `_superusers` changes never enter the outbound log.
//! Each test drives the real binary and looks at the raw answers for the secrets themselves.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

/// Every bcrypt hash starts with this; no answer may contain one.
const BCRYPT: &str = "$2";

/// A collection with a hidden field, readable and writable by anyone.
fn notes_def() -> Value {
    json!({"name": "notes", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
           "fields": [{"name": "text", "type": "text"},
                      {"name": "secret", "type": "text", "hidden": true}]})
}

/// The token keys of every `users` record and superuser, read as a superuser would never see
/// them: straight from the SQLite file (the test process is allowed to).
fn stored_token_keys(node: &Node) -> Vec<String> {
    let conn = rusqlite::Connection::open(node.dir().join("data.db")).expect("open data.db");
    let mut keys = Vec::new();
    for table in ["users", "_superusers"] {
        let mut stmt = conn
            .prepare(&format!("SELECT tokenKey FROM `{table}`"))
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("query");
        keys.extend(rows.map(|r| r.expect("row")));
    }
    assert!(!keys.is_empty());
    keys
}

/// Fails when `text` holds a bcrypt hash, a stored tokenKey or the hidden note value.
fn assert_no_secrets(what: &str, text: &str, token_keys: &[String]) {
    assert!(
        !text.contains(BCRYPT),
        "{what} shows a password hash: {text}"
    );
    for k in token_keys {
        assert!(
            !text.contains(k.as_str()),
            "{what} shows a tokenKey: {text}"
        );
    }
    assert!(
        !text.contains("hidden-value"),
        "{what} shows a hidden field: {text}"
    );
}

/// Polls the outbound log until `done` holds for its items (the single-node outbound stage
/// reads the change feed after the write answered: there is no event to await).
async fn outbound_until(node: &Node, done: impl Fn(&[Value]) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, log) = node.get("/api/plugins/outbound").await;
        assert_eq!(s, StatusCode::OK, "{log}");
        if done(log["items"].as_array().map(Vec::as_slice).unwrap_or(&[])) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "outbound log never settled: {log}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes to users, `_superusers` and a collection with a hidden field, then checks the
/// outbound log: the users record is there without password or tokenKey, the note without its
/// hidden field, and no superuser change at all.
async fn outbound_log_keeps_no_secrets(node: &Node) {
    node.create_collection(notes_def()).await;
    let (user_id, _) = user(node, "ann@example.com").await;
    let note = node
        .create_record("notes", json!({"text": "t", "secret": "hidden-value"}))
        .await;
    let su = node
        .create_record(
            "_superusers",
            json!({"email": "second@example.com", "password": "a-long-password",
                   "passwordConfirm": "a-long-password"}),
        )
        .await;
    let (s, body) = node
        .patch(
            &format!(
                "/api/collections/_superusers/records/{}",
                su["id"].as_str().expect("id")
            ),
            json!({"password": "another-password", "passwordConfirm": "another-password"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // The note was written after the user and before the superusers: once it shows, every
    // earlier change has passed the stage; the marker written last proves the superuser
    // changes had their chance to appear.
    let marker = node.create_record("notes", json!({"text": "marker"})).await;
    let log = outbound_until(node, |items| items.iter().any(|i| i["id"] == marker["id"])).await;
    let items = log["items"].as_array().expect("items");
    let find = |id: &Value| items.iter().find(|i| &i["id"] == id).cloned();
    let u = find(&json!(user_id)).unwrap_or_else(|| panic!("user create not in the log: {log}"));
    assert_eq!(u["data"]["email"], "ann@example.com", "{u}");
    assert!(u["data"].get("password").is_none(), "{u}");
    assert!(u["data"].get("tokenKey").is_none(), "{u}");
    let n = find(&note["id"]).unwrap_or_else(|| panic!("note not in the log: {log}"));
    assert_eq!(n["data"]["text"], "t");
    assert!(n["data"].get("secret").is_none(), "{n}");
    assert!(
        items.iter().all(|i| i["collection"] != "_superusers"),
        "superuser changes entered the outbound log: {log}"
    );
    assert_no_secrets(
        "the outbound log",
        &log.to_string(),
        &stored_token_keys(node),
    );
}

#[tokio::test]
async fn the_outbound_log_shows_no_secrets_and_no_superusers() {
    let node = Node::start().await;
    outbound_log_keeps_no_secrets(&node).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// On a replicating node the outbound log is written where changes are captured for the log;
/// the status document (dead letters, bindings) shows no record data either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicating_node_shows_no_secrets_in_its_outbound_log_or_status() {
    let listen = format!("127.0.0.1:{}", free_port());
    let node = Node::start_with(&["--sync", "--node-id", "sec", "--nats-listen", &listen]).await;
    outbound_log_keeps_no_secrets(&node).await;
    let (s, status) = node.get("/api/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["mode"], "embedded", "{status}");
    assert_no_secrets(
        "sync status",
        &status.to_string(),
        &stored_token_keys(&node),
    );
}

/// Batch answers, expanded relations and error answers show auth records without their
/// password hash and tokenKey; hidden fields only to superusers (PocketBase's rule).
#[tokio::test]
async fn batch_expand_and_errors_show_no_secrets() {
    let node = Node::start().await;
    let (s, _) = node
        .patch("/api/settings", json!({"batch": {"enabled": true}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, users) = node.get("/api/collections/users").await;
    // Users may be viewed by anyone here, so expansions reach them.
    let (s, body) = node
        .patch(
            "/api/collections/users",
            json!({"listRule": "", "viewRule": ""}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    node.create_collection(json!({
        "name": "posts", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [{"name": "title", "type": "text"},
                   {"name": "secret", "type": "text", "hidden": true},
                   {"name": "owner", "type": "relation", "collectionId": users["id"], "maxSelect": 1}]
    }))
    .await;
    let (s, batch) = node
        .post(
            "/api/batch",
            json!({"requests": [{"method": "POST", "url": "/api/collections/users/records",
                "body": {"email": "bob@example.com", "emailVisibility": true,
                         "password": "secret123", "passwordConfirm": "secret123"}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{batch}");
    let bob = batch[0]["body"].clone();
    assert_eq!(bob["email"], "bob@example.com");
    let keys = stored_token_keys(&node);
    assert_no_secrets("a batch answer", &batch.to_string(), &keys);
    // A failing batch request (the email is taken) names the failure, not the row it hit.
    let (s, failed) = node
        .post(
            "/api/batch",
            json!({"requests": [{"method": "POST", "url": "/api/collections/users/records",
                "body": {"email": "bob@example.com", "password": "secret123", "passwordConfirm": "secret123"}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{failed}");
    assert_no_secrets("a batch error", &failed.to_string(), &keys);
    let (s, dup) = node
        .post(
            "/api/collections/users/records",
            json!({"email": "bob@example.com", "password": "secret123", "passwordConfirm": "secret123"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{dup}");
    assert_no_secrets("a validation error", &dup.to_string(), &keys);
    node.create_record(
        "posts",
        json!({"title": "p", "secret": "hidden-value", "owner": bob["id"]}),
    )
    .await;
    let path = "/api/collections/posts/records?expand=owner";
    for token in ["", node.token.as_str()] {
        let (s, list) = node.call_as(token, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        let owner = &list["items"][0]["expand"]["owner"];
        assert_eq!(owner["email"], "bob@example.com", "{list}");
        assert!(owner.get("password").is_none() && owner.get("tokenKey").is_none());
        assert_no_secrets(
            "an expanded list",
            &list.to_string().replace("hidden-value", ""),
            &keys,
        );
    }
    let (_, guest) = node.call_as("", Method::GET, path, None).await;
    assert_no_secrets("a guest's list", &guest.to_string(), &keys);
}

/// Realtime deliveries: auth records without their secrets, and expanded relations only
/// where the subscriber passes the related collection's view rule (as the record API does).
#[tokio::test]
async fn realtime_deliveries_show_no_secrets_and_respect_expanded_view_rules() {
    let node = Node::start().await;
    let (_, users) = node.get("/api/collections/users").await;
    node.create_collection(json!({
        "name": "posts", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [{"name": "title", "type": "text"},
                   {"name": "owner", "type": "relation", "collectionId": users["id"], "maxSelect": 1}]
    }))
    .await;
    let mut su = Sse::connect(&node).await;
    let token = node.token.clone();
    assert_eq!(
        su.subscribe(&node, &token, &["users/*"]).await,
        StatusCode::NO_CONTENT
    );
    let (ann, _) = user(&node, "ann@example.com").await;
    let ev = su.next().await.expect("user create");
    assert_eq!(ev.data["record"]["email"], "ann@example.com");
    assert!(ev.data["record"].get("password").is_none(), "{:?}", ev.data);
    assert!(ev.data["record"].get("tokenKey").is_none(), "{:?}", ev.data);
    assert_no_secrets(
        "a realtime delivery",
        &ev.data.to_string(),
        &stored_token_keys(&node),
    );
    // A guest subscribes to posts with the owner expanded; users' view rule
    // (`id = @request.auth.id`) hides Ann from guests.
    let mut guest = Sse::connect(&node).await;
    let opts = json!({"query": {"expand": "owner"}}).to_string();
    let topic = format!(
        "posts/*?options={}",
        url::form_urlencoded::byte_serialize(opts.as_bytes()).collect::<String>()
    );
    assert_eq!(
        guest.subscribe(&node, "", &[&topic]).await,
        StatusCode::NO_CONTENT
    );
    node.create_record("posts", json!({"title": "p", "owner": ann}))
        .await;
    let ev = guest.next().await.expect("post create");
    assert_eq!(ev.data["record"]["title"], "p");
    assert!(
        ev.data["record"]["expand"].get("owner").is_none(),
        "a guest received an expanded user it may not view: {:?}",
        ev.data
    );
    // The record API agrees.
    let (_, list) = node
        .call_as(
            "",
            Method::GET,
            "/api/collections/posts/records?expand=owner",
            None,
        )
        .await;
    assert!(list["items"][0]["expand"].get("owner").is_none(), "{list}");
}

/// The dry-run resolver works on the versions it is given and reads nothing stored: its answer
/// for a key that exists carries none of the stored record's secrets.
#[tokio::test]
async fn the_dry_run_resolver_reads_no_stored_secrets() {
    let node = Node::start().await;
    let (id, _) = user(&node, "ann@example.com").await;
    let (s, _) = node
        .raw(
            Method::POST,
            "/api/plugins?name=field-merge",
            "application/wasm",
            std::fs::read(shipped_component("field-merge")).expect("read"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let version = |hlc: u64, name: &str| json!({"data": {"id": id, "name": name}, "hlc": hlc, "origin": "n1"});
    let mut incoming = version(20, "new");
    incoming["op"] = json!("update");
    incoming["collection"] = json!("users");
    incoming["id"] = json!(id);
    incoming["before"] = json!({"name": "old"});
    let (s, body) = node
        .post(
            "/api/plugins/field-merge/resolve",
            json!({"current": version(10, "old"), "incoming": incoming}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_no_secrets(
        "a dry-run resolution",
        &body.to_string(),
        &stored_token_keys(&node),
    );
}
