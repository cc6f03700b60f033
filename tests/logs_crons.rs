//! Request logs and the cron jobs that look after them, on the real binary: the log cleanup
//! job deletes entries older than `logs.maxDays` (run on demand through `/api/crons`), logs
//! survive a restart in `auxiliary.db`, the `logs.*` settings shape what is stored, and the
//! stats group entries by hour; the `backups.cron` setting schedules automatic backups.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Node;

/// The node's log entries matching `filter` (the filter language over `_logs`).
async fn logs(node: &Node, filter: &str) -> Vec<Value> {
    let f: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let (code, body) = node
        .get(&format!("/api/logs?perPage=100&sort=created&filter={f}"))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until `filter` matches exactly `n` entries.
async fn wait_logs(node: &Node, filter: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = logs(node, filter).await;
        if found.len() == n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{filter}: {} entries, want {n}: {found:?}",
            found.len()
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes an entry into the node's `auxiliary.db` directly, as a node running for days
/// would have written it.
fn insert_old_entry(node: &Node, id: &str, created: &str) {
    let conn = rusqlite::Connection::open(node.dir().join("auxiliary.db")).expect("open");
    conn.busy_timeout(Duration::from_secs(10)).expect("timeout");
    conn.execute(
        "INSERT INTO _logs (id, level, message, data, created) VALUES (?1, 0, 'GET /old', ?2, ?3)",
        rusqlite::params![id, r#"{"url":"/old","status":200}"#, created],
    )
    .expect("insert");
}

#[tokio::test]
async fn the_cleanup_job_deletes_what_is_older_than_max_days_and_logs_survive_restarts() {
    let mut node = Node::start().await;
    let (code, _) = node.raw_get("/api/health?m=fresh-entry").await;
    assert_eq!(code, StatusCode::OK);
    wait_logs(&node, "data.url ~ 'fresh-entry'", 1).await;
    insert_old_entry(&node, "oldentry0000001", "2000-01-01 00:00:00.000Z");
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d %H:%M:%S%.3fZ")
        .to_string();
    insert_old_entry(&node, "recententry0001", &yesterday);
    assert_eq!(logs(&node, "data.url = '/old'").await.len(), 2);

    let (code, jobs) = node.get("/api/crons").await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        jobs.as_array()
            .expect("jobs")
            .contains(&json!({"id": "__pbLogsCleanup__", "expression": "0 */6 * * *"})),
        "{jobs}"
    );
    let (code, _) = node.post("/api/crons/__pbLogsCleanup__", json!({})).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    // The job runs in the background: the 2000 entry goes, yesterday's stays (maxDays 5).
    let kept = wait_logs(&node, "data.url = '/old'", 1).await;
    assert_eq!(kept[0]["id"], "recententry0001");

    // The entries are in auxiliary.db: a restart keeps them.
    let dir = node.dir().to_path_buf();
    assert!(node.terminate().success());
    let node = Node::spawn(&dir, &[]).await;
    assert_eq!(logs(&node, "data.url ~ 'fresh-entry'").await.len(), 1);
    let (code, one) = node.get("/api/logs/recententry0001").await;
    assert_eq!(code, StatusCode::OK, "{one}");
    assert_eq!(one["message"], "GET /old");
}

#[tokio::test]
async fn settings_decide_what_each_entry_holds() {
    let node = Node::start().await;
    // minLevel 8 keeps errors only; logAuthId adds the caller's id; logIP off drops the IPs.
    let (code, body) = node
        .patch(
            "/api/settings",
            json!({"logs": {"minLevel": 8, "logAuthId": true, "logIP": false}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = node.get("/api/collections/posts-missing/records").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = node.raw_get("/api/health?m=info-entry").await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = node
        .post(
            "/api/collections",
            json!({"name": "bad name!", "fields": []}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let failed = wait_logs(&node, "data.url ~ 'posts-missing'", 1).await;
    let data = &failed[0]["data"];
    assert_eq!(failed[0]["level"], 8);
    assert_eq!(data["auth"], "_superusers");
    assert!(
        data["authId"].as_str().is_some_and(|id| id.len() == 15),
        "{data}"
    );
    assert!(
        data.get("userIP").is_none() && data.get("remoteIP").is_none(),
        "{data}"
    );
    // A validation failure carries its details.
    let invalid = wait_logs(
        &node,
        "data.url = '/api/collections' && data.status = 400",
        1,
    )
    .await;
    assert_eq!(
        invalid[0]["data"]["details"]["name"]["code"], "validation_match_invalid",
        "{invalid:?}"
    );
    assert!(
        logs(&node, "data.url ~ 'info-entry'").await.is_empty(),
        "below minLevel"
    );

    let (code, stats) = node.get("/api/logs/stats?filter=level%3D8").await;
    assert_eq!(code, StatusCode::OK, "{stats}");
    let total: i64 = stats
        .as_array()
        .expect("stats")
        .iter()
        .map(|s| s["total"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 2);
    let (code, body) = node.get("/api/logs/stats?filter=nope%3D1").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");

    // DELETE /api/logs empties them, the retention setting unchanged.
    let (code, _) = node.delete("/api/logs").await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert!(logs(&node, "").await.is_empty());
    let (_, settings) = node.get("/api/settings").await;
    assert_eq!(settings["logs"]["maxDays"], 5);
}

/// The automatic backups a node has, newest first by name.
async fn auto_backups(node: &Node) -> Vec<String> {
    let (code, list) = node.get("/api/backups").await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let mut keys: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|b| b["key"].as_str())
        .filter(|k| k.starts_with("@auto_pb_backup_"))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.reverse();
    keys
}

/// Runs the backup job now and waits until its backup is listed (it runs in the background).
async fn run_auto_backup(node: &Node, before: &[String]) -> Vec<String> {
    let (code, body) = node.post("/api/crons/__pbAutoBackup__", json!({})).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = auto_backups(node).await;
        if now.iter().any(|k| !before.contains(k)) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no new automatic backup: {now:?}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn backups_cron_schedules_automatic_backups_that_keep_cron_max_keep() {
    let node = Node::start().await;
    let (code, jobs) = node.get("/api/crons").await;
    assert_eq!(code, StatusCode::OK);
    assert!(!jobs.to_string().contains("__pbAutoBackup__"), "{jobs}");
    let (code, body) = node
        .patch(
            "/api/settings",
            json!({"backups": {"cron": "0 3 * * *", "cronMaxKeep": 2}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (_, jobs) = node.get("/api/crons").await;
    assert!(
        jobs.as_array()
            .expect("jobs")
            .contains(&json!({"id": "__pbAutoBackup__", "expression": "0 3 * * *"})),
        "{jobs}"
    );
    node.create_collection(json!({"name": "notes", "fields": [{"name": "t", "type": "text"}]}))
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let now = run_auto_backup(&node, &seen).await;
        let new: Vec<String> = now.into_iter().filter(|k| !seen.contains(k)).collect();
        seen.extend(new);
    }
    // Three runs, two kept: the oldest automatic backup is deleted after the third is made.
    let deadline = Instant::now() + Duration::from_secs(30);
    let kept = loop {
        let kept = auto_backups(&node).await;
        if kept.len() <= 2 {
            break kept;
        }
        assert!(Instant::now() < deadline, "never pruned: {kept:?}");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        !kept.contains(&seen[0]),
        "the oldest went: {kept:?} of {seen:?}"
    );
    // An automatic backup downloads and deletes like any other.
    let (code, _) = node.delete(&format!("/api/backups/{}", kept[0])).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(auto_backups(&node).await, vec![kept[1].clone()]);
    // An empty expression removes the job.
    let (code, _) = node
        .patch("/api/settings", json!({"backups": {"cron": ""}}))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (_, jobs) = node.get("/api/crons").await;
    assert!(!jobs.to_string().contains("__pbAutoBackup__"), "{jobs}");
}
