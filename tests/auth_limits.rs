//! Logins under attack and the settings that govern them, against the real binary:
//! PocketBase's rate limits (settings `rateLimits`) answer 429, a flood of wrong passwords
//! does not keep a legitimate login waiting, and `PATCH /api/settings` keeps PocketBase's
//! settings model only.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

const LOGIN: &str = "/api/collections/users/auth-with-password";

async fn login(node: &Node, email: &str, password: &str) -> (StatusCode, Value) {
    node.call_as(
        "",
        Method::POST,
        LOGIN,
        Some(json!({"identity": email, "password": password})),
    )
    .await
}

fn too_many() -> Value {
    json!({"status": 429, "message": "Too Many Requests.", "data": {}})
}

#[tokio::test]
async fn pocketbases_rate_limits_answer_429() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let (s, body) = node
        .patch(
            "/api/settings",
            json!({"batch": {"enabled": true}, "rateLimits": {"enabled": true, "rules": [
                {"label": "*:auth", "maxRequests": 2, "duration": 3600},
                {"label": "posts:create", "maxRequests": 1, "duration": 3600, "audience": "@guest"},
                {"label": "/api/", "maxRequests": 10000, "duration": 3600}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // The third login attempt from this client within the window is refused unseen.
    assert_eq!(
        login(&node, "nobody@example.com", "wrong-one").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        login(&node, "nobody@example.com", "wrong-two").await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, body) = login(&node, "nobody@example.com", "wrong-three").await;
    assert_eq!((s, body), (StatusCode::TOO_MANY_REQUESTS, too_many()));
    // A guest may create one post per window; a superuser is never limited.
    let post = |token: &'static str| {
        let node = &node;
        async move {
            node.call_as(
                if token.is_empty() { "" } else { &node.token },
                Method::POST,
                "/api/collections/posts/records",
                Some(json!({"title": "t"})),
            )
            .await
        }
    };
    assert_eq!(post("").await.0, StatusCode::OK);
    assert_eq!(post("").await, (StatusCode::TOO_MANY_REQUESTS, too_many()));
    assert_eq!(post("su").await.0, StatusCode::OK);
    // A batch's requests count one by one.
    let (s, body) = node
        .call_as(
            "",
            Method::POST,
            "/api/batch",
            Some(
                json!({"requests": [{"method": "POST", "url": "/api/collections/posts/records",
                                      "body": {"title": "b"}}]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["data"]["requests"]["0"]["response"]["status"], 429,
        "{body}"
    );
    // Excluded addresses are never limited (and new rules start new windows).
    let (s, body) = node
        .patch(
            "/api/settings",
            json!({"rateLimits": {"excludedIPs": ["127.0.0.0/8"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for _ in 0..3 {
        assert_eq!(post("").await.0, StatusCode::OK);
    }
    assert_eq!(node.ids("posts", "perPage=100").await.len(), 5);
}

/// Sixty wrong-password attempts for one account arrive at once; a legitimate login for
/// another account made while they are in flight succeeds without waiting for them: when it
/// answers, attempts of the flood are still being checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legitimate_login_succeeds_while_wrong_passwords_flood_in() {
    let node = Node::start().await;
    user(&node, "victim@example.com").await;
    user(&node, "alice@example.com").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..60 {
        let (client, url, tx) = (node.client.clone(), node.url.clone(), tx.clone());
        tokio::spawn(async move {
            let resp = client
                .post(format!("{url}{LOGIN}"))
                .json(&json!({"identity": "victim@example.com", "password": format!("guess-{i}")}))
                .send()
                .await;
            let _ = tx.send(resp.map(|r| r.status()).ok());
        });
    }
    drop(tx);
    // The first refusal proves the victim's attempts fill their share of the gate.
    let mut answered = Vec::new();
    while !answered.contains(&Some(StatusCode::TOO_MANY_REQUESTS)) {
        let r = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the flood answered nothing within 60 s")
            .expect("a flood answer");
        answered.push(r);
    }
    let legit = {
        let node = &node;
        async move { login(node, "alice@example.com", "secret123").await }
    };
    tokio::pin!(legit);
    let (status, checked_before) = loop {
        tokio::select! {
            (s, body) = &mut legit => {
                assert_eq!(s, StatusCode::OK, "{body}");
                let checked = answered.iter().filter(|r| **r == Some(StatusCode::BAD_REQUEST)).count();
                break (s, checked);
            }
            r = rx.recv() => match r {
                Some(r) => answered.push(r),
                None => panic!("the whole flood answered before the legitimate login"),
            },
        }
    };
    assert_eq!(status, StatusCode::OK);
    while let Some(r) = rx.recv().await {
        answered.push(r);
    }
    let checked = answered
        .iter()
        .filter(|r| **r == Some(StatusCode::BAD_REQUEST))
        .count();
    let refused = answered
        .iter()
        .filter(|r| **r == Some(StatusCode::TOO_MANY_REQUESTS))
        .count();
    assert_eq!(checked + refused, 60, "{answered:?}");
    assert!(
        checked_before < checked,
        "the legitimate login waited for all {checked} checked attempts of the flood"
    );
}

/// The stored settings document, straight from SQLite.
fn stored_settings(node: &Node) -> String {
    let conn = rusqlite::Connection::open(node.dir().join("data.db")).expect("open");
    conn.query_row(
        "SELECT value FROM _params WHERE key = 'settings'",
        [],
        |r| r.get::<_, String>(0),
    )
    .expect("settings row")
}

#[tokio::test]
async fn settings_keep_pocketbases_model_only() {
    let node = Node::start().await;
    let junk = "j".repeat(5 << 20);
    let (s, body) = node
        .patch(
            "/api/settings",
            json!({"junk": junk, "meta": {"appName": "Mine", "extra": junk},
                   "smtp": {"password": "smtp-secret", "host": "mail.example.com"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", body.to_string().len());
    assert_eq!(body["meta"]["appName"], "Mine");
    assert!(body.get("junk").is_none() && body["meta"].get("extra").is_none());
    assert!(
        body["smtp"].get("password").is_none(),
        "the SMTP password is shown"
    );
    let stored = stored_settings(&node);
    assert!(stored.len() < 4096, "{} bytes stored", stored.len());
    assert!(!stored.contains("jjj"), "junk was stored");
    assert!(
        stored.contains("smtp-secret"),
        "the SMTP password is kept for sending mail"
    );
    let (_, got) = node.get("/api/settings").await;
    assert_eq!(got, body);
    // A value of the wrong type refuses the whole body; nothing changes.
    for bad in [
        json!({"meta": {"appName": 5}}),
        json!({"batch": {"maxRequests": "50"}}),
        json!({"batch": {"maxRequests": 1.5}}),
    ] {
        let (s, err) = node.patch("/api/settings", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            err,
            json!({"status": 400, "message": "An error occurred while loading the submitted data.", "data": {}})
        );
    }
    let (s, err) = node
        .raw(
            Method::PATCH,
            "/api/settings",
            "application/json",
            b"[]".to_vec(),
        )
        .await;
    assert_eq!(
        (s, err["status"].clone()),
        (StatusCode::BAD_REQUEST, json!(400))
    );
    // Invalid values answer with PocketBase's nested validation errors; nothing changes.
    let (s, err) = node
        .patch(
            "/api/settings",
            json!({"meta": {"appName": ""}, "rateLimits": {"rules": [{"label": "x y z", "maxRequests": 1, "duration": 1}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err["message"],
        "An error occurred while saving the new settings."
    );
    assert_eq!(
        err["data"]["meta"]["appName"]["code"],
        "validation_required"
    );
    assert_eq!(
        err["data"]["rateLimits"]["rules"]["0"]["label"]["code"],
        "validation_match_invalid"
    );
    let (_, after) = node.get("/api/settings").await;
    assert_eq!(after, got);
    // Guests and users may not read or change settings.
    let (_, token) = user(&node, "u@example.com").await;
    assert_eq!(
        node.call_as(&token, Method::GET, "/api/settings", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        node.call_as("", Method::PATCH, "/api/settings", Some(json!({})))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
