//! Errors a plugin author can act on. A Python or JavaScript plugin that raises shows its
//! exception — message and traceback — in `syncbase plugin test`, in the dry run (API and
//! `syncbase plugin resolve`) and in the node's log, instead of `wasm trap: unreachable`. The
//! guest SDKs return the exception as the export's error (`result<_, string>`); the plugins
//! get no host import for it. The plugins here are written by the test and built with the
//! real toolchains.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::*;
use syncbase_plugin_build::Lang;

const PY_RESOLVER: &str = r#"import wit_world
from wit_world.imports import types

import syncbase


def ratio(fields):
    return fields["likes"].value // fields["views"].value


class WitWorld(wit_world.WitWorld):
    def configure(self, config: str) -> None:
        pass

    def resolve(self, current: types.Version, incoming: types.Change) -> types.Resolution:
        fields = syncbase.parse_object(incoming.data)
        return types.Resolution_Merged(syncbase.dump({"ratio": ratio(fields)}))
"#;

const JS_RESOLVER: &str = r#"export function configure(config) {}

export function resolve(current, incoming) {
  const data = JSON.parse(incoming.data);
  return { tag: "merged", val: JSON.stringify({ name: data.profile.name }) };
}
"#;

const JS_FILTER: &str = r#"export function configure(config) {}

export function filter(direction, change) {
  throw new RangeError("no filter for record " + change.id);
}
"#;

/// One case whose incoming record has `views: 0` and no `profile`.
const VECTORS: &str = r#"{
 "world": "resolver",
 "configs": [{"config": "", "ok": true}],
 "cases": [{
   "name": "a conflict",
   "current": {"data": "{\"likes\":1,\"views\":0}", "hlc": 20, "origin": "n1"},
   "incoming": {"op": "update", "data": "{\"likes\":2,\"views\":0}", "before": "{\"likes\":1}", "hlc": 30, "origin": "n2"},
   "expect": "take-incoming"
 }]
}"#;

fn plugin_test(component: &Path, vectors: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .args(["plugin", "test"])
        .arg(component)
        .arg(vectors)
        .output()
        .expect("run syncbase plugin test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn raising(lang: Lang) -> PathBuf {
    match lang {
        Lang::Python => foreign_plugin(lang, "ratio", "resolver", &[("plugin.py", PY_RESOLVER)]),
        _ => foreign_plugin(lang, "ratio", "resolver", &[("plugin.js", JS_RESOLVER)]),
    }
}

#[test]
fn plugin_test_shows_the_exception_a_python_or_javascript_resolver_raised() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vectors = tmp.path().join("vectors.json");
    std::fs::write(&vectors, VECTORS).expect("vectors");
    for (lang, expected) in [
        (
            Lang::Python,
            [
                "ZeroDivisionError: division by zero",
                "line 8, in ratio",
                "return fields[\"likes\"].value // fields[\"views\"].value",
            ],
        ),
        (
            Lang::Js,
            [
                "TypeError: cannot read property 'name' of undefined",
                "at resolve",
                "plugin.js",
            ],
        ),
    ] {
        let (ok, out) = plugin_test(&raising(lang), &vectors);
        assert!(!ok, "{lang}: the case fails:\n{out}");
        assert!(out.contains("raised an error"), "{lang}:\n{out}");
        for needle in expected {
            assert!(out.contains(needle), "{lang}: {needle:?} not in:\n{out}");
        }
        assert!(!out.contains("unreachable"), "{lang}:\n{out}");
    }
}

#[tokio::test]
async fn the_dry_run_and_the_node_log_show_the_exception() {
    let node = Node::start_logged(&[]).await;
    node.create_collection(
        json!({"name": "profiles", "fields": [{"name": "name", "type": "text"}]}),
    )
    .await;
    let push = |file: PathBuf, name: &str| {
        let out = Command::new(bin())
            .args(["plugin", "push"])
            .arg(&file)
            .args(["--name", name, "--url", &node.url, "--token", &node.token])
            .output()
            .expect("push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    push(raising(Lang::Python), "ratio");

    // The dry run, through the API and the CLI.
    let current = json!({"data": {"likes": 1, "views": 0}, "hlc": 20, "origin": "n1"});
    let incoming = json!({"op": "update", "collection": "profiles", "id": "r1", "hlc": 30,
                          "origin": "n2", "data": {"likes": 2, "views": 0}});
    let (s, body) = node
        .post(
            "/api/plugins/ratio/resolve",
            json!({"current": current, "incoming": incoming}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["decidedBy"]["failure"], "raised", "{body}");
    let detail = body["decidedBy"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("ZeroDivisionError") && detail.contains("in ratio"),
        "{detail}"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cur, inc) = (tmp.path().join("c.json"), tmp.path().join("i.json"));
    std::fs::write(&cur, current.to_string()).expect("write");
    std::fs::write(&inc, incoming.to_string()).expect("write");
    let out = Command::new(bin())
        .args(["plugin", "resolve", "ratio", "--current"])
        .arg(&cur)
        .arg("--incoming")
        .arg(&inc)
        .args(["--url", &node.url, "--token", &node.token])
        .output()
        .expect("resolve");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("ZeroDivisionError") && text.contains("take-incoming"),
        "{text}"
    );

    // A bound filter that raises: the node's log shows the exception (once per version).
    push(
        foreign_plugin(Lang::Js, "refuser", "filter", &[("plugin.js", JS_FILTER)]),
        "refuser",
    );
    let (s, body) = node
        .post(
            "/api/plugins/refuser/bind",
            json!({"collection": "profiles", "as": "outbound-filter"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{body}");
    let rec = node.create_record("profiles", json!({"name": "Ann"})).await;
    let id = rec["id"].as_str().expect("id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let line = loop {
        let log = node.log();
        if let Some(line) = log.lines().find(|l| l.contains("no filter for record")) {
            break line.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "not logged:\n{log}");
        // Poll interval of a deadline-bounded wait for the node to write its log.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        line.contains(&format!("RangeError: no filter for record {id}")),
        "{line}"
    );
    assert!(line.contains("plugin=refuser"), "{line}");
    // No colour codes: the log is a file, not a terminal.
    assert!(!node.log().contains('\u{1b}'), "ANSI escapes in a log file");
}

#[tokio::test]
async fn logs_can_be_json_lines() {
    let node = Node::start_logged(&["--log-format", "json"]).await;
    // Something to log at info level: a plugin upload.
    let push = Command::new(bin())
        .args(["plugin", "push"])
        .arg(support::shipped_component("lww"))
        .args(["--url", &node.url, "--token", &node.token])
        .output()
        .expect("push");
    assert!(push.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = node.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.iter().any(|l| l.contains("plugin uploaded")) {
            for line in lines {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
            }
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing logged:\n{log}"
        );
        // Poll interval of a deadline-bounded wait for the node to write its log.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
