//! Plugins on one node through the real binary: the CLI pushes and binds real components built
//! from `plugins/`, the admin API shows and swaps them, the dry-run resolver answers, outbound
//! filters rewrite and drop change events, and bad uploads are refused while serving goes on.

mod support;

use std::path::PathBuf;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

fn component(name: &str) -> PathBuf {
    support::shipped_component(name)
}

/// Runs `syncbase plugin ...` against the node, returning (success, stdout + stderr).
fn cli(node: &Node, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .arg("plugin")
        .args(args)
        .args(["--url", &node.url, "--token", &node.token])
        .output()
        .expect("run syncbase plugin");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn push_bind_list_show_and_roll_back_through_the_cli_and_api() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let lww = component("lww");
    let (ok, out) = cli(
        &node,
        &["push", lww.to_str().expect("path"), "--name", "lww"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("lww version 1") && out.contains("resolver"),
        "{out}"
    );
    let (ok, out) = cli(
        &node,
        &["bind", "lww", "--collection", "posts", "--as", "resolver"],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&node, &["ls"]);
    assert!(
        ok && out.contains("lww") && out.contains("resolver:posts (active)"),
        "{out}"
    );

    let (s, shown) = node.get("/api/plugins/lww").await;
    assert_eq!(s, StatusCode::OK);
    let v = &shown["versions"][0];
    assert_eq!(v["world"], "resolver");
    assert_eq!(v["sha256"].as_str().expect("sha").len(), 64);
    assert!(
        v["exports"].as_array().is_some_and(|e| !e.is_empty()),
        "{v}"
    );
    assert_eq!(v["bindings"][0]["state"], "active");

    // A second plugin on the same target; rollback brings the first back at once.
    let fm = component("field-merge");
    assert!(cli(&node, &["push", fm.to_str().expect("path")]).0);
    assert!(
        cli(
            &node,
            &[
                "bind",
                "field-merge",
                "--collection",
                "posts",
                "--as",
                "resolver"
            ]
        )
        .0
    );
    let (_, table) = node.get("/api/plugins/bindings").await;
    assert!(table.to_string().contains("field-merge"), "{table}");
    let (ok, out) = cli(
        &node,
        &["rollback", "--collection", "posts", "--as", "resolver"],
    );
    assert!(ok && out.contains("lww"), "{out}");

    // A bound plugin cannot be deleted; the CLI reports the server's reason.
    let (s, body) = node.delete("/api/plugins/lww").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (ok, out) = cli(
        &node,
        &["bind", "lww", "--collection", "nope", "--as", "resolver"],
    );
    assert!(!ok && out.contains("404"), "{out}");
}

#[tokio::test]
async fn the_dry_run_resolver_answers_without_binding() {
    let node = Node::start().await;
    let (s, _) = node
        .raw(
            Method::POST,
            "/api/plugins?name=lww",
            "application/wasm",
            std::fs::read(component("lww")).expect("read"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The current version carries no key: it is the incoming change's record.
    let version = |hlc: u64, origin: &str, title: &str| json!({"data": {"id": "r1", "title": title}, "hlc": hlc, "origin": origin});
    let mut incoming = version(20, "n2", "newer");
    incoming["op"] = json!("update");
    incoming["collection"] = json!("posts");
    incoming["id"] = json!("r1");
    let (s, body) = node
        .post(
            "/api/plugins/lww/resolve",
            json!({"current": version(10, "n1", "older"), "incoming": incoming}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["resolution"], "take-incoming");
    assert_eq!(body["decidedBy"]["by"], "plugin");
    // The fields of the contract before it was slimmed are still accepted, and ignored.
    let mut old_current = version(10, "n1", "older");
    old_current["collection"] = json!("posts");
    old_current["id"] = json!("r1");
    old_current["eventId"] = json!("e1");
    let mut old_incoming = incoming.clone();
    old_incoming["eventId"] = json!("e2");
    old_incoming["base"] = json!("e0");
    let (s, body) = node
        .post(
            "/api/plugins/lww/resolve",
            json!({"current": old_current, "incoming": old_incoming}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["resolution"], "take-incoming");
    let (s, body) = node
        .post(
            "/api/plugins/lww/resolve",
            json!({"current": version(30, "n1", "newest"), "incoming": incoming}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["resolution"], "keep-current");
    let (s, body) = node
        .post(
            "/api/plugins/lww/resolve",
            json!({"current": {}, "incoming": incoming}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("hlc"), "{body}");
    assert_eq!(
        node.post(
            "/api/plugins/nope/resolve",
            json!({"current": version(1, "a", "x"), "incoming": incoming})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn outbound_filters_rewrite_and_drop_change_events() {
    let node = Node::start().await;
    node.create_collection(json!({"name": "profiles", "fields": [{"name": "name", "type": "text"}, {"name": "ssn", "type": "text"}]})).await;
    node.create_collection(json!({"name": "drafts", "fields": [{"name": "text", "type": "text"}]}))
        .await;
    for (name, file) in [
        ("redact", component("redact")),
        ("local-only", component("local-only")),
    ] {
        let (ok, out) = cli(
            &node,
            &["push", file.to_str().expect("path"), "--name", name],
        );
        assert!(ok, "{out}");
    }
    let (ok, out) = cli(
        &node,
        &[
            "bind",
            "redact",
            "--collection",
            "profiles",
            "--as",
            "outbound-filter",
            "--config",
            r#"{"fields":["ssn"]}"#,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &node,
        &[
            "bind",
            "local-only",
            "--collection",
            "drafts",
            "--as",
            "outbound-filter",
            "--config",
            r#"{"collections":["drafts"]}"#,
        ],
    );
    assert!(ok, "{out}");

    let p = node
        .create_record("profiles", json!({"name": "Ann", "ssn": "123-45-6789"}))
        .await;
    let d = node
        .create_record("drafts", json!({"text": "private"}))
        .await;
    // The record itself is stored whole: filters act on what leaves the node.
    let (_, stored) = node
        .get(&format!(
            "/api/collections/profiles/records/{}",
            p["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(stored["ssn"], "123-45-6789");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let (_, log) = node.get("/api/plugins/outbound").await;
        if log["rewritten"].as_u64() == Some(1) && log["dropped"].as_u64() == Some(1) {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbound stage never saw both changes: {log}"
        );
        // Poll interval of a deadline-bounded wait: the outbound log has no event to await.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let items = log["items"].as_array().expect("items");
    let profile = items
        .iter()
        .find(|i| i["collection"] == "profiles")
        .expect("profile event");
    assert_eq!(profile["data"]["name"], "Ann");
    assert!(profile["data"].get("ssn").is_none(), "redacted: {profile}");
    assert!(
        !items.iter().any(|i| i["id"] == d["id"]),
        "the draft never left the node: {log}"
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_and_the_binding_stays() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    assert!(
        cli(
            &node,
            &[
                "push",
                component("lww").to_str().expect("path"),
                "--name",
                "lww"
            ]
        )
        .0
    );
    assert!(
        cli(
            &node,
            &["bind", "lww", "--collection", "posts", "--as", "resolver"]
        )
        .0
    );

    let (s, body) = node
        .raw(
            Method::POST,
            "/api/plugins?name=bad",
            "application/wasm",
            b"not wasm at all".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .expect("msg")
            .contains("not a WebAssembly binary"),
        "{body}"
    );
    // An empty core module: valid wasm, but not a component.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let (s, body) = node
        .raw(
            Method::POST,
            "/api/plugins?name=lww",
            "application/wasm",
            core,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .expect("msg")
            .contains("core WebAssembly module"),
        "{body}"
    );
    let (s, _) = node
        .raw(
            Method::POST,
            "/api/plugins",
            "application/wasm",
            b"\0asm".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a name is required");
    let (s, _) = node.call_as("", Method::GET, "/api/plugins", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The same component again, as a multipart upload: same bytes, same version.
    let wasm = std::fs::read(component("lww")).expect("read");
    let (code, again) = node
        .multipart(
            Method::POST,
            "/api/plugins",
            &[("name", "lww")],
            &[("file", "lww.wasm", wasm)],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["version"], 1);

    let (_, shown) = node.get("/api/plugins/lww").await;
    assert_eq!(
        shown["versions"].as_array().expect("versions").len(),
        1,
        "no new version from a bad upload"
    );
    assert_eq!(shown["versions"][0]["bindings"][0]["state"], "active");
    let (s, _) = node.get("/api/health").await;
    assert_eq!(s, StatusCode::OK);
    let _: Value = shown;
}

/// Waits until the outbound log's item for record `id` appears, and returns it.
async fn outbound_item(node: &Node, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, log) = node.get("/api/plugins/outbound").await;
        if let Some(item) = log["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["id"] == id))
        {
            return item.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbound stage never saw {id}: {log}"
        );
        // Poll interval of a deadline-bounded wait: the outbound log has no event to await.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bindings_follow_the_collection_through_a_rename_and_die_with_it() {
    let node = Node::start().await;
    let def = json!({"name": "notes", "fields": [{"name": "text", "type": "text"}, {"name": "secret", "type": "text"}]});
    let notes = node.create_collection(def.clone()).await;
    let redact = component("redact");
    assert!(cli(&node, &["push", redact.to_str().expect("path")]).0);
    let (ok, out) = cli(
        &node,
        &[
            "bind",
            "redact",
            "--collection",
            "notes",
            "--as",
            "outbound-filter",
            "--config",
            r#"{"fields":["secret"]}"#,
        ],
    );
    assert!(ok, "{out}");

    // Renamed, the collection keeps its filter (bindings follow its id).
    let (s, body) = node
        .patch(
            &format!("/api/collections/{}", notes["id"].as_str().expect("id")),
            json!({"name": "memos"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let r = node
        .create_record("memos", json!({"text": "hi", "secret": "s3"}))
        .await;
    let item = outbound_item(&node, r["id"].as_str().expect("id")).await;
    assert_eq!(item["verdict"], "replace", "{item}");
    assert!(item["data"].get("secret").is_none(), "{item}");
    let (_, table) = node.get("/api/plugins/bindings").await;
    assert_eq!(table[0]["collection"], notes["id"], "{table}");
    assert_eq!(table[0]["collectionName"], "memos", "{table}");
    let (ok, out) = cli(&node, &["ls"]);
    assert!(
        ok && out.contains("outbound-filter:memos (active)"),
        "{out}"
    );

    // Deleted, its bindings go; a new collection of the old name starts with none.
    assert_eq!(
        node.delete("/api/collections/memos").await.0,
        StatusCode::NO_CONTENT
    );
    let (_, table) = node.get("/api/plugins/bindings").await;
    assert_eq!(
        table,
        json!([]),
        "bindings of a deleted collection: {table}"
    );
    let mut again = def.clone();
    again["name"] = json!("memos");
    node.create_collection(again).await;
    let r = node
        .create_record("memos", json!({"text": "hi", "secret": "s4"}))
        .await;
    let item = outbound_item(&node, r["id"].as_str().expect("id")).await;
    assert_eq!(item["verdict"], "keep", "{item}");
    assert_eq!(item["data"]["secret"], "s4", "{item}");
    // The plugin itself is unused now, and can go.
    assert_eq!(
        node.delete("/api/plugins/redact").await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_dry_run_names_the_real_input_problem_and_checks_a_merge_against_the_schema() {
    let node = Node::start().await;
    node.create_collection(json!({"name": "posts", "fields": [
        {"name": "title", "type": "text"}, {"name": "views", "type": "number"}]}))
        .await;
    let fm = component("field-merge");
    assert!(cli(&node, &["push", fm.to_str().expect("path")]).0);

    // An unknown plugin is a 404 whatever the body holds.
    let (s, body) = node
        .post("/api/plugins/nope/resolve", json!({"current": "garbage"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"),
        "{body}"
    );

    let current =
        json!({"data": {"id": "r1", "title": "a", "views": 1}, "hlc": 10, "origin": "n1"});
    let incoming = |views: Value| {
        json!({"op": "update", "collection": "posts", "id": "r1", "hlc": 20, "origin": "n2",
               "data": {"id": "r1", "title": "a", "views": views}, "before": {"views": 1}})
    };
    // A wrong type is called a wrong type, not a missing field.
    for (bad, needle) in [
        (
            json!({"current": {"hlc": "10"}, "incoming": incoming(json!(2))}),
            "current: `hlc` has the wrong type",
        ),
        (
            json!({"current": current, "incoming": {"collection": "posts", "id": 5}}),
            "incoming: `id` has the wrong type",
        ),
        (
            json!({"incoming": incoming(json!(2))}),
            "`current` is required",
        ),
        (
            json!({"current": current, "incoming": incoming(json!(2)), "version": "x"}),
            "`version` must be",
        ),
    ] {
        let (s, body) = node.post("/api/plugins/field-merge/resolve", bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }

    // A merge that fits is shown as it would be stored.
    let (s, body) = node
        .post(
            "/api/plugins/field-merge/resolve",
            json!({"current": current, "incoming": incoming(json!(2))}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["resolution"]["merged"]["views"], 2, "{body}");
    assert_eq!(body["schemaChecked"], true);
    // A merged record with a string in a number field is what a real conflict refuses too:
    // the built-in default answers, and the dry run says why.
    let (s, body) = node
        .post(
            "/api/plugins/field-merge/resolve",
            json!({"current": current, "incoming": incoming(json!("many"))}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["resolution"], "take-incoming", "{body}");
    assert_eq!(body["decidedBy"]["failure"], "invalid-merge", "{body}");
    let detail = body["decidedBy"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"views\": expected a number, got a string"),
        "{detail}"
    );

    // The same from the CLI, with the versions in files.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cur, inc) = (
        dir.path().join("current.json"),
        dir.path().join("incoming.json"),
    );
    std::fs::write(&cur, current.to_string()).expect("write");
    std::fs::write(&inc, incoming(json!(3)).to_string()).expect("write");
    let args = [
        "resolve",
        "field-merge",
        "--current",
        cur.to_str().expect("path"),
        "--incoming",
        inc.to_str().expect("path"),
    ];
    let (ok, out) = cli(&node, &args);
    assert!(
        ok && out.contains("field-merge version 1 answered: merged")
            && out.contains("\"views\": 3"),
        "{out}"
    );
    std::fs::write(&inc, incoming(json!("many")).to_string()).expect("write");
    let (ok, out) = cli(&node, &args);
    assert!(
        !ok && out.contains("invalid-merge") && out.contains("take-incoming"),
        "{out}"
    );
}

#[test]
fn only_the_commands_that_reach_a_node_list_the_node_flags() {
    let help = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("plugin")
            .args(args)
            .arg("--help")
            .output()
            .expect("help");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for offline in ["new", "build", "test"] {
        let text = help(&[offline]);
        for flag in ["--url", "--token", "--email", "--password"] {
            assert!(
                !text.contains(flag),
                "plugin {offline} --help lists {flag}:\n{text}"
            );
        }
    }
    for online in ["push", "bind", "ls", "resolve", "delete"] {
        let text = help(&[online]);
        assert!(
            text.contains("--url") && text.contains("--token"),
            "plugin {online}:\n{text}"
        );
    }
}
