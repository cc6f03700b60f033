//! The auth flows on a cluster: three real `syncbase` nodes on a 3-server `nats-server` cluster
//! the test starts, every node's mail settings pointing at one local SMTP server. A password
//! reset requested on A is mailed once (by A) and confirmed on C; an OTP requested on A signs in
//! on C; an MFA session opened by a password on A is completed by an OTP on C; a verification
//! requested on B is mailed once and confirmed on A.

mod nats_support;
mod replication_support;
mod support;

use std::time::{Duration, Instant};

use nats_support::Cluster;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::Node;
use support::smtp::Sink;

use replication_support::*;

async fn guest(node: &Node, path: &str, body: Value) -> (StatusCode, Value) {
    node.call_as("", Method::POST, path, Some(body)).await
}

/// Waits until `node` answers a sign-in with this password.
async fn signs_in(node: &Node, email: &str, password: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, body) = guest(
            node,
            "/api/collections/users/auth-with-password",
            json!({"identity": email, "password": password}),
        )
        .await;
        if s == StatusCode::OK {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{email} never signed in on {}: {body}",
            node.url
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until record `id` of `coll` is on `node` (as the superuser sees it).
async fn arrived(node: &Node, coll: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, body) = node
            .get(&format!("/api/collections/{coll}/records/{id}"))
            .await;
        if s == StatusCode::OK {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{coll}/{id} never reached {}",
            node.url
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no node has a mail left to send.
async fn outboxes_empty(nodes: &[&Node]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in nodes {
        loop {
            let (_, body) = node.get("/api/mails").await;
            if body["pending"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "outbox of {} never empty: {body}",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_otps_and_verifications_cross_nodes_and_each_mail_leaves_once() {
    let cluster = Cluster::start(3).await;
    let a = external_node(&cluster, 0, "a").await;
    let b = external_node(&cluster, 1, "b").await;
    let c = external_node(&cluster, 2, "c").await;
    // Nodes that start together may each put their bootstrap `users` in the log, and the first
    // in the log wins everywhere: a token signed before a node folded it would die with it.
    quiesce(&[&a, &b, &c], 30).await;
    let sink = Sink::start(0).await;
    for node in [&a, &b, &c] {
        // Settings are per node: every node could send, so a duplicate would show.
        let (s, body) = node
            .patch(
                "/api/settings",
                json!({"smtp": {"enabled": true, "host": "127.0.0.1", "port": sink.port},
                       "meta": {"senderAddress": "support@acme.test"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (s, ann) = guest(
        &a,
        "/api/collections/users/records",
        json!({"email": "ann@example.com", "password": "first-pass-1", "passwordConfirm": "first-pass-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{ann}");
    let ann_id = ann["id"].as_str().expect("id").to_string();
    arrived(&c, "users", &ann_id).await;
    arrived(&b, "users", &ann_id).await;

    // A password reset requested on A, confirmed on C.
    let (s, _) = guest(
        &a,
        "/api/collections/users/request-password-reset",
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mail = sink.wait_for("ann@example.com", 1, 30).await;
    let token = mail.token("confirm-password-reset").expect("reset link");
    let (s, body) = guest(
        &c,
        "/api/collections/users/confirm-password-reset",
        json!({"token": token, "password": "second-pass-2", "passwordConfirm": "second-pass-2"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    // The new password replicates: A and B accept it, and nobody accepts the old one.
    signs_in(&a, "ann@example.com", "second-pass-2").await;
    signs_in(&b, "ann@example.com", "second-pass-2").await;
    let (s, _) = guest(
        &c,
        "/api/collections/users/auth-with-password",
        json!({"identity": "ann@example.com", "password": "first-pass-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // An OTP requested on A signs in on C (the `_otps` record replicated; the mail did not).
    let (s, body) = a
        .patch("/api/collections/users", json!({"otp": {"enabled": true}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get("/api/collections/users").await.1["otp"]["enabled"] != true {
        assert!(Instant::now() < deadline, "the OTP option never reached C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, otp) = guest(
        &a,
        "/api/collections/users/request-otp",
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{otp}");
    let otp_id = otp["otpId"].as_str().expect("otpId").to_string();
    let mail = sink.wait_for("ann@example.com", 2, 30).await;
    let text = mail.decoded();
    let code: String = text
        .split("<strong>")
        .nth(1)
        .expect("the code in the mail")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    arrived(&c, "_otps", &otp_id).await;
    let (s, body) = guest(
        &c,
        "/api/collections/users/auth-with-otp",
        json!({"otpId": otp_id, "password": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["record"]["id"], ann_id.as_str());

    // MFA across nodes: the password on A opens an MFA session, an OTP on C completes it.
    let (s, body) = a
        .patch("/api/collections/users", json!({"mfa": {"enabled": true}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get("/api/collections/users").await.1["mfa"]["enabled"] != true {
        assert!(Instant::now() < deadline, "the MFA option never reached C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, first) = guest(
        &a,
        "/api/collections/users/auth-with-password",
        json!({"identity": "ann@example.com", "password": "second-pass-2"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{first}");
    let mfa_id = first["mfaId"].as_str().expect("mfaId").to_string();
    arrived(&c, "_mfas", &mfa_id).await;
    let (s, otp) = guest(
        &c,
        "/api/collections/users/request-otp",
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{otp}");
    let mail = sink.wait_for("ann@example.com", 3, 30).await;
    let code: String = mail
        .decoded()
        .split("<strong>")
        .nth(1)
        .expect("the code in the mail")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (s, body) = guest(
        &c,
        "/api/collections/users/auth-with-otp",
        json!({"otpId": otp["otpId"], "password": code, "mfaId": mfa_id}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));

    // A verification requested on B, confirmed on A.
    let (s, bob) = guest(
        &b,
        "/api/collections/users/records",
        json!({"email": "bob@example.com", "password": "bobs-pass-1", "passwordConfirm": "bobs-pass-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{bob}");
    let bob_id = bob["id"].as_str().expect("id").to_string();
    let (s, _) = guest(
        &b,
        "/api/collections/users/request-verification",
        json!({"email": "bob@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mail = sink.wait_for("bob@example.com", 1, 30).await;
    let token = mail
        .token("confirm-verification")
        .expect("verification link");
    arrived(&a, "users", &bob_id).await;
    let (s, body) = guest(
        &a,
        "/api/collections/users/confirm-verification",
        json!({"token": token}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .get(&format!("/api/collections/users/records/{bob_id}"))
        .await
        .1["verified"]
        != true
    {
        assert!(
            Instant::now() < deadline,
            "bob's verified state never reached C"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Exactly one mail per request, though all three nodes could send.
    outboxes_empty(&[&a, &b, &c]).await;
    quiesce(&[&a, &b, &c], 30).await;
    assert_eq!(
        sink.to("ann@example.com").len(),
        3,
        "the reset and two OTPs, once each"
    );
    assert_eq!(
        sink.to("bob@example.com").len(),
        1,
        "the verification, once"
    );
    assert_eq!(sink.mails().len(), 4);
}
