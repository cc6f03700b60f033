//! Process lifecycle: health, superuser upsert, clean shutdown on SIGTERM, data kept across
//! restarts.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn health_answers_like_pocketbase() {
    let node = Node::start().await;
    let (s, body) = node.get("/api/health").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        json!({"message": "API is healthy.", "code": 200, "data": {}})
    );
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_data_survives_a_restart() {
    let mut node = Node::start().await;
    node.create_collection(posts_def()).await;
    for i in 0..20 {
        node.create_record("posts", json!({"title": format!("r{i}")}))
            .await;
    }
    let dir = node.dir().to_path_buf();
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    // The WAL was checkpointed into the database file on the way out.
    let wal = dir.join("data.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL not checkpointed");

    let again = Node::spawn(&dir, &[]).await;
    assert!(!again.token.is_empty(), "superuser still logs in");
    assert_eq!(again.ids("posts", "perPage=100").await.len(), 20);
}

#[tokio::test]
async fn superuser_upsert_creates_then_changes_the_password() {
    let node = Node::start().await;
    let dir = node.dir().to_path_buf();
    upsert_superuser(&dir, EMAIL, "another-password");
    let (s, _) = node
        .call_as(
            "",
            reqwest::Method::POST,
            "/api/collections/_superusers/auth-with-password",
            Some(json!({"identity": EMAIL, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "old password no longer works");
    let (s, _) = node
        .call_as(
            "",
            reqwest::Method::POST,
            "/api/collections/_superusers/auth-with-password",
            Some(json!({"identity": EMAIL, "password": "another-password"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The old token was signed with the old tokenKey: it is revoked.
    let (s, _) = node.get("/api/collections").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[test]
fn help_explains_every_flag() {
    let out = std::process::Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--http",
        "--dir",
        "--body-limit",
        "SYNCBASE_HTTP",
        "SYNCBASE_DIR",
    ] {
        assert!(text.contains(flag), "help lacks {flag}:\n{text}");
    }
}
