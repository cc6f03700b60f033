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
async fn a_busy_server_checkpoints_its_wal_while_it_runs() {
    // 6,000 records of 4 KB: about 24 MB, some 6,000 WAL pages: six times the background
    // checkpoint's threshold and more than the size at which the writer restarts the WAL.
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let title = "x".repeat(4000);
    let writers = (0..8).map(|w| {
        let (node, title) = (&node, &title);
        async move {
            for i in 0..750 {
                node.create_record("posts", json!({"title": format!("{w}-{i}-{title}")}))
                    .await;
            }
        }
    });
    futures::future::join_all(writers).await;
    let written = 6000 * 4000;
    // The writer's WAL hook replaces SQLite's auto-checkpoint; without the checkpoint thread the
    // WAL would hold every write until shutdown. It runs on its own thread and tells nobody
    // when it is done, so the test polls the file size (the outcome itself) until a deadline.
    let db = node.dir().join("data.db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let len = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        if len > written / 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "database file still {len} bytes after {written} bytes were written: no checkpoint"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The WAL restarts from its first page once checkpointed, so it never held everything.
    let wal = std::fs::metadata(node.dir().join("data.db-wal")).map_or(0, |m| m.len());
    assert!(
        wal < written,
        "WAL grew to {wal} bytes for {written} bytes of writes"
    );
    assert_eq!(node.ids("posts", "perPage=1&skipTotal=1").await.len(), 1);
    let (s, body) = node.get("/api/collections/posts/records?perPage=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["totalItems"], 6000);
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
