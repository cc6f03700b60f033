//! The dashboard's server side against the real binary: `/_/` serves the embedded pages with a
//! policy that keeps them on the node, a node without superuser prints a first-run link whose
//! token creates exactly one superuser, and the draft check the rule editor uses.
//! (The pages themselves are driven in Chromium by tests/dashboard/*.test.mjs.)

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{EMAIL, Node, PASSWORD, bin, upsert_superuser};

/// Starts `syncbase serve` on a data dir without superuser and reads its output up to the
/// install link: returns the process, its URL and the link.
fn serve_reading_link(dir: &std::path::Path) -> (Running, String, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .env("SYNCBASE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn syncbase");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut url = String::new();
    for line in lines {
        let line = line.expect("line");
        if let Some(u) = line.strip_prefix("Server started at ") {
            url = u.to_string();
        }
        if line.contains("/pbinstall/") {
            return (Running(child), url, line.trim().to_string());
        }
        seen.push(line);
    }
    drop(Running(child));
    panic!("the node printed no install link: {seen:?}");
}

/// Kills the node when the test ends, however it ends (a failed assertion included).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_and_kept_on_the_node() {
    let node = Node::start().await;
    let resp = node
        .client
        .get(format!("{}/_/", node.url))
        .send()
        .await
        .expect("get /_/");
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("text/html")
    );
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"));
    let page = resp.text().await.expect("body");
    assert!(page.contains(r#"<script type="module" src="js/app.js">"#));

    let (s, js) = node.raw_get("/_/js/app.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(js.contains("import"));
    let (s, _) = node.raw_get("/_/js/nope.js").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // `/_` leads to `/_/`, as in PocketBase.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirects
        .get(format!("{}/_", node.url))
        .send()
        .await
        .expect("get /_");
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers()["location"], "/_/");
}

#[tokio::test]
async fn a_node_without_superuser_prints_a_link_whose_token_creates_the_first_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (child, url, link) = serve_reading_link(tmp.path());
    assert!(link.starts_with(&format!("{url}/_/#/pbinstall/")), "{link}");
    let token = link.rsplit('/').next().expect("token").to_string();
    let node = Node::attach(&url, &token);

    // The token speaks for the placeholder only long enough to create a real superuser.
    let (s, body) = node
        .post(
            "/api/collections/_superusers/records",
            json!({"email": EMAIL, "password": PASSWORD, "passwordConfirm": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = node.get("/api/collections").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the link must die with its first use"
    );
    let (s, body) = node
        .post(
            "/api/collections/_superusers/records",
            json!({"email": "other@example.com", "password": PASSWORD, "passwordConfirm": PASSWORD}),
        )
        .await;
    // As in PocketBase, a token that no longer verifies leaves the request a guest's.
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // The new superuser signs in, and is the only one.
    let (s, auth) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/_superusers/auth-with-password",
            Some(json!({"identity": EMAIL, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{auth}");
    let admin = auth["token"].as_str().expect("token");
    let (_, list) = node
        .call_as(
            admin,
            Method::GET,
            "/api/collections/_superusers/records",
            None,
        )
        .await;
    let emails: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["email"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(emails, [EMAIL]);
    drop(child);

    // Restarted with a superuser, the node makes no placeholder (and so prints no link).
    let node = Node::spawn(tmp.path(), &[]).await;
    let (_, list) = node.get("/api/collections/_superusers/records").await;
    assert_eq!(list["totalItems"], 1, "{list}");
}

#[tokio::test]
async fn a_superuser_made_with_the_cli_also_retires_the_install_link() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (child, _, link) = serve_reading_link(tmp.path());
    drop(child);
    upsert_superuser(tmp.path(), EMAIL, PASSWORD);
    let node = Node::spawn(tmp.path(), &[]).await;
    let (s, _) = node
        .call_as(
            link.rsplit('/').next().expect("token"),
            Method::GET,
            "/api/collections",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, list) = node.get("/api/collections/_superusers/records").await;
    assert_eq!(list["totalItems"], 1, "{list}");
}

#[tokio::test]
async fn a_draft_collection_is_checked_without_being_written() {
    let node = Node::start().await;
    let draft = json!({
        "name": "drafts",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "title = 'x' &&",
        "viewRule": "nope = 1",
    });
    let (s, body) = node.post("/api/collections/meta/validate", draft).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["data"]["listRule"]["code"], "validation_invalid_rule");
    assert_eq!(body["data"]["viewRule"]["code"], "validation_invalid_rule");

    let good = json!({
        "name": "drafts",
        "fields": [{"name": "title", "type": "text"}],
        "listRule": "title = 'x'",
    });
    let (s, body) = node.post("/api/collections/meta/validate", good).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, _) = node.get("/api/collections/drafts").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a check writes nothing");

    // A draft with an existing id is checked as an update of that collection: its own name
    // is not a clash, a rule may use its stored fields.
    let users = node.get("/api/collections/users").await.1;
    let mut edit = users.clone();
    edit["listRule"] = Value::String("verified = true && email != ''".into());
    let (s, body) = node.post("/api/collections/meta/validate", edit).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (_, after) = node.get("/api/collections/users").await;
    assert_eq!(after["listRule"], users["listRule"]);

    let (s, _) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/meta/validate",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
