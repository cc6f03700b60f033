//! The plugin author's guide (`guest-sdk/README.md`) works as written: every ```sh block, in
//! order, run by `sh -e` against a real node — scaffold, native tests, build, vectors, push,
//! bind, a second version, rollback — with the outcomes a plugin author would see.
//!
//! The guide's commands run from the root of a Syncbase checkout. Here they run in a scratch
//! directory whose `scripts` is a symlink to the checkout's, so the scaffolded project lands
//! outside the source tree and the guide's `scripts/build-plugin` is the real script. The
//! directory is kept between runs (except the project's sources) so that the project's
//! `target/` caches its dependencies. Between the blocks of step 7 and step 8 the test edits
//! the plugin as the guide tells the author to ("Change the policy").

#[path = "support/readme.rs"]
mod readme;
mod support;

use std::path::{Path, PathBuf};

use readme::{run_sh, sh_blocks};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{EMAIL, Node, PASSWORD, posts_def};

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch "checkout root": `scripts` links to the real one; old project sources are
/// removed, the project's `target/` is kept.
fn workdir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-guide");
    std::fs::create_dir_all(&dir).expect("workdir");
    for entry in std::fs::read_dir(&dir).expect("list workdir").flatten() {
        let path = entry.path();
        if entry.file_name() == "my-merge" {
            for inner in std::fs::read_dir(&path).expect("list project").flatten() {
                if inner.file_name() != "target" {
                    remove(&inner.path());
                }
            }
        } else {
            remove(&path);
        }
    }
    std::os::unix::fs::symlink(checkout().join("scripts"), dir.join("scripts"))
        .expect("link scripts/");
    dir
}

fn remove(path: &Path) {
    let result = if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
}

/// Runs the guide's commands against the node.
fn sh(dir: &Path, node_url: &str, script: &str) -> String {
    run_sh(
        dir,
        script,
        &[
            ("SYNCBASE_URL", node_url),
            ("SYNCBASE_EMAIL", EMAIL),
            ("SYNCBASE_PASSWORD", PASSWORD),
        ],
    )
}

/// Asks the node's dry-run resolver what version `version` of my-merge answers.
async fn dry_run(node: &Node, version: u32) -> Value {
    let current = json!({"collection": "posts", "id": "r1", "hlc": 20, "origin": "n1",
        "eventId": "e1", "data": {"title": "t1", "body": "b0"}});
    let incoming = json!({"op": "update", "collection": "posts", "id": "r1", "hlc": 10,
        "origin": "n2", "eventId": "e2", "base": "e0", "data": {"title": "t0", "body": "b2"},
        "before": {"body": "b0"}});
    let (s, body) = node
        .post(
            "/api/plugins/my-merge/resolve",
            json!({"version": version, "current": current, "incoming": incoming}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["decidedBy"]["by"], "plugin", "{body}");
    body["resolution"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_guide_works_as_written() {
    let guide = std::fs::read_to_string(checkout().join("guest-sdk/README.md")).expect("guide");
    let blocks = sh_blocks(&guide);
    let second_version = blocks
        .iter()
        .position(|b| b.contains("syncbase plugin rollback"))
        .expect("the guide rolls back");
    let (first, second) = blocks.split_at(second_version);
    assert!(first.len() >= 5, "the guide's steps: {first:#?}");

    let node = Node::start().await;
    // The dry runs below merge `title` and `body`: merged records are checked against the
    // collection's fields, so `posts` has both.
    let mut posts = posts_def();
    posts["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({"name": "body", "type": "text"}));
    node.create_collection(posts).await;
    let dir = workdir();
    let (url, d) = (node.url.clone(), dir.clone());
    let script = first.concat();
    let out = tokio::task::spawn_blocking(move || sh(&d, &url, &script))
        .await
        .expect("steps 2-7");
    for said in [
        "created the rust resolver plugin my-merge",
        "my-merge (resolver): 8 passed, 0 failed",
        "pushed my-merge version 1 (resolver",
        "bound my-merge version 1 as resolver of posts",
        "resolver:posts (active)",
    ] {
        assert!(out.contains(said), "expected {said:?} in:\n{out}");
    }
    // The answer is the record as the fold would store it (checked against the fields).
    let v1 = dry_run(&node, 1).await;
    assert_eq!(
        (
            &v1["merged"]["title"],
            &v1["merged"]["body"],
            &v1["merged"]["id"]
        ),
        (&json!("t1"), &json!("b2"), &json!("r1")),
        "version 1 merges field by field: {v1}"
    );

    // "Change the policy": version 2 keeps the current version whatever comes in.
    let lib = dir.join("my-merge/src/lib.rs");
    let code = std::fs::read_to_string(&lib).expect("read src/lib.rs");
    let anchor = "fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {\n";
    assert!(
        code.contains(anchor),
        "the template's resolve changed:\n{code}"
    );
    let edited = code.replace(
        anchor,
        &format!("{anchor}        if incoming.hlc > 0 {{\n            return Resolution::KeepCurrent;\n        }}\n"),
    );
    std::fs::write(&lib, edited).expect("edit src/lib.rs");

    let (url, d) = (node.url.clone(), dir.clone());
    let script = second.concat();
    let out = tokio::task::spawn_blocking(move || sh(&d, &url, &script))
        .await
        .expect("step 8");
    for said in [
        "pushed my-merge version 2 (resolver",
        "bound my-merge version 2 as resolver of posts",
        "resolver of posts is now my-merge version 1",
    ] {
        assert!(out.contains(said), "expected {said:?} in:\n{out}");
    }
    assert_eq!(
        dry_run(&node, 2).await,
        json!("keep-current"),
        "version 2 is the edit"
    );
    let (s, bindings) = node.get("/api/plugins/bindings").await;
    assert_eq!(s, StatusCode::OK);
    let posts = bindings
        .as_array()
        .and_then(|b| b.iter().find(|e| e["collectionName"] == "posts"))
        .unwrap_or_else(|| panic!("no binding for posts: {bindings}"));
    assert_eq!(posts["active"]["version"], 1, "{bindings}");
    assert_eq!(posts["previous"]["version"], 2, "{bindings}");
}
