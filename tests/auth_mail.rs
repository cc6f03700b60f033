//! Mail delivery on one node, against a local SMTP server the test runs: a mail the SMTP
//! server cannot take stays in the outbox with its error and is sent once the server is back
//! (never lost, sent once); requests for unknown addresses queue nothing; the settings' test
//! email reports a failing server's reason. The SDK-level flows are in `tests/js`.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::Node;
use support::smtp::Sink;

/// A port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn use_smtp(node: &Node, port: u16) {
    let (s, body) = node
        .patch(
            "/api/settings",
            json!({"smtp": {"enabled": true, "host": "127.0.0.1", "port": port},
                   "meta": {"senderAddress": "support@acme.test"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// Waits until the outbox answers `pred`, returning it.
async fn outbox_until(node: &Node, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = node.get("/api/mails").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "outbox never {what}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_mail_the_server_cannot_take_waits_in_the_outbox_and_goes_out_once_it_is_back() {
    let node = Node::start().await;
    let port = unused_port();
    use_smtp(&node, port).await;
    support::user(&node, "ann@example.com").await;

    let (s, _) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/request-password-reset",
            Some(json!({"email": "ann@example.com"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "the request succeeds: the mail is queued"
    );
    let failing = outbox_until(&node, "recorded a failed attempt", |o| {
        o["items"][0]["attempts"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(failing["pending"], 1, "{failing}");
    assert_eq!(failing["items"][0]["kind"], "password-reset");
    assert_eq!(failing["items"][0]["recipient"], "ann@example.com");
    assert!(
        failing["items"][0]["lastError"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "the reason is kept: {failing}"
    );
    // Only superusers see the outbox.
    let (s, _) = node.call_as("", Method::GET, "/api/mails", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The server comes back; saving the mail settings retries at once.
    let sink = Sink::start(port).await;
    use_smtp(&node, port).await;
    let mail = sink.wait_for("ann@example.com", 1, 20).await;
    assert_eq!(mail.from, "support@acme.test");
    outbox_until(&node, "emptied", |o| o["pending"] == 0 && o["failed"] == 0).await;
    assert_eq!(sink.to("ann@example.com").len(), 1, "sent once");

    // The mailed link works.
    let token = mail.token("confirm-password-reset").expect("reset link");
    let (s, body) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/confirm-password-reset",
            Some(json!({"token": token, "password": "brand-new-pass", "passwordConfirm": "brand-new-pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, _) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "ann@example.com", "password": "brand-new-pass"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn requests_for_unknown_addresses_and_repeats_queue_nothing() {
    let node = Node::start().await;
    let sink = Sink::start(0).await;
    use_smtp(&node, sink.port).await;
    support::user(&node, "bob@example.com").await;
    for email in ["nobody@example.com", "bob@example.com", "bob@example.com"] {
        let (s, _) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/users/request-verification",
                Some(json!({"email": email})),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "always 204: {email}");
    }
    sink.wait_for("bob@example.com", 1, 20).await;
    outbox_until(&node, "emptied", |o| o["pending"] == 0).await;
    assert_eq!(
        sink.mails().len(),
        1,
        "one mail: none for the unknown address, no repeat"
    );
    // Bad input: a malformed address is refused, nothing queued.
    let (s, body) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/request-verification",
            Some(json!({"email": "bob at example"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["data"]["email"]["code"], "validation_is_email");
}

#[tokio::test]
async fn the_test_email_reports_why_the_server_refused() {
    let node = Node::start().await;
    use_smtp(&node, unused_port()).await;
    let send =
        json!({"email": "ops@example.com", "template": "verification", "collection": "users"});
    let (s, body) = node.post("/api/settings/test/email", send.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Failed to send the test email. Raw error:")),
        "{body}"
    );
    let sink = Sink::start(0).await;
    use_smtp(&node, sink.port).await;
    let (s, body) = node.post("/api/settings/test/email", send).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let mail = sink.wait_for("ops@example.com", 1, 10).await;
    assert!(mail.decoded().contains("Verify your"), "{}", mail.data);
    // The SMTP password is write-only.
    node.patch("/api/settings", json!({"smtp": {"password": "hunter2"}}))
        .await;
    let (_, settings) = node.get("/api/settings").await;
    assert!(settings["smtp"].get("password").is_none(), "{settings}");
}
