//! The conformance suite: the test vectors of `plugins/conformance/*.json`,
//! run through the real runtime against the Rust, C, Python and JavaScript
//! plugin of each policy, built from source. Every answer must be the
//! expected one byte for byte (a merged record's or a rewritten change's JSON
//! text included), and must come from the plugin (not from a fallback).
//!
//! A vector file holds the policy, its configurations (accepted or refused:
//! refusal messages are free text and may differ between languages) and its
//! cases (inputs and the expected answer). See plugins/conformance/README.md.

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::{POLICIES, component};
use syncbase_plugin_build::Lang;
use syncbase_plugin_runtime::types::{
    Change, Decision, Direction, Op, Resolution, Stats, Verdict, Version,
};
use syncbase_plugin_runtime::{DecidedBy, Outcome, PluginRuntime, RuntimeConfig, Target};

fn vectors(policy: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/conformance")
        .join(format!("{policy}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn version(v: &Value) -> Version {
    Version {
        data: text(&v["data"]),
        hlc: v["hlc"].as_u64().unwrap_or(1),
        origin: v["origin"].as_str().unwrap_or("n1").into(),
    }
}

fn change(v: &Value) -> Change {
    Change {
        op: match v["op"].as_str() {
            Some("create") => Op::Create,
            Some("delete") => Op::Delete,
            _ => Op::Update,
        },
        collection: "posts".into(),
        id: "r1".into(),
        data: text(&v["data"]),
        hlc: v["hlc"].as_u64().unwrap_or(1),
        origin: v["origin"].as_str().unwrap_or("n2").into(),
        before: text(&v["before"]),
    }
}

fn stats(v: &Value) -> Stats {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Stats {
        events_since: n("events-since"),
        bytes_since: n("bytes-since"),
        ms_since: n("ms-since"),
        stream_seq: n("stream-seq"),
        content_bytes: n("content-bytes"),
        snapshots: n("snapshots") as u32,
    }
}

/// An answer as vector data: `"keep-current"`, `{"merged": "<json text>"}`,
/// `"keep"`, `{"replace": {"data": ..., "before": ...}}`, `{"take":, "keep":}`.
fn resolution_json(r: &Resolution) -> Value {
    match r {
        Resolution::KeepCurrent => json!("keep-current"),
        Resolution::TakeIncoming => json!("take-incoming"),
        Resolution::Merged(m) => json!({ "merged": m }),
    }
}

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Keep => json!("keep"),
        Verdict::Drop => json!("drop"),
        Verdict::Replace(c) => json!({ "replace": { "data": c.data, "before": c.before } }),
    }
}

fn decision_json(d: &Decision) -> Value {
    json!({ "take": d.take, "keep": d.keep })
}

/// The plugin must have answered, not the fallback.
fn answered<T>(out: Outcome<T>) -> Result<T, String> {
    match out.decided_by {
        DecidedBy::Plugin(_) => Ok(out.value),
        other => Err(format!("the plugin did not answer: {other:?}")),
    }
}

fn target(world: &str, direction: &str) -> Target {
    match (world, direction) {
        ("resolver", _) => Target::Resolver("posts".into()),
        ("filter", "inbound") => Target::InboundFilter("posts".into()),
        ("filter", _) => Target::OutboundFilter("posts".into()),
        _ => Target::SnapshotPolicy,
    }
}

/// Runs one policy's vectors against one language's plugin; returns failures.
fn run(rt: &PluginRuntime, lang: Lang, policy: &str, vectors: &Value) -> Vec<String> {
    let name = format!("{policy}-{lang}");
    rt.upload(&name, component(lang, policy))
        .unwrap_or_else(|e| panic!("upload {name}: {e}"));
    let world = vectors["world"].as_str().unwrap_or_default();
    let mut failures = Vec::new();
    for c in vectors["configs"].as_array().into_iter().flatten() {
        let config = c["config"].as_str().unwrap_or_default();
        let ok = rt
            .bind(target(world, "outbound"), &name, None, config)
            .is_ok();
        if ok != c["ok"].as_bool().unwrap_or(false) {
            failures.push(format!(
                "{name}: configuration {config:?} was {}",
                if ok { "accepted" } else { "refused" }
            ));
        }
    }
    for case in vectors["cases"].as_array().into_iter().flatten() {
        let label = case["name"].as_str().unwrap_or("?");
        let config = case["config"].as_str().unwrap_or_default();
        let direction = case["direction"].as_str().unwrap_or("outbound");
        let slot = target(world, direction);
        if let Err(e) = rt.bind(slot, &name, None, config) {
            failures.push(format!("{name}: {label}: bind: {e}"));
            continue;
        }
        let got = match world {
            "resolver" => answered(rt.resolve(
                "posts",
                &version(&case["current"]),
                &change(&case["incoming"]),
            ))
            .map(|r| resolution_json(&r)),
            "filter" => {
                let dir = if direction == "inbound" {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                };
                let original = change(&case["change"]);
                answered(rt.filter("posts", dir, &original)).map(|v| verdict_json(&v))
            }
            _ => answered(rt.decide(stats(&case["stats"]))).map(|d| decision_json(&d)),
        };
        match got {
            Ok(got) if got == case["expect"] => {}
            Ok(got) => failures.push(format!(
                "{name}: {label}:\n    expected {}\n    got      {}",
                case["expect"], got
            )),
            Err(e) => failures.push(format!("{name}: {label}: {e}")),
        }
    }
    failures
}

#[test]
fn every_language_gives_the_same_answers_byte_for_byte() {
    // The runtime's defaults must run every shipped plugin, heavy ones included.
    // Compiled code is cached across runs (a debug build of cranelift takes
    // minutes over an 18 MB Python component): the runtime's cache directory
    // is kept in the target dir, keyed by sha256 and engine as always.
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance-compile-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("runtime dir");
    std::os::unix::fs::symlink(&cache, dir.path().join("plugins/cache")).expect("symlink cache");
    let rt = PluginRuntime::open(
        dir.path().join("plugins"),
        RuntimeConfig {
            persist_bindings: false,
            ..RuntimeConfig::default()
        },
    )
    .expect("open runtime");
    let mut failures = Vec::new();
    let mut table = String::from("policy        rust  c     python js\n");
    for policy in POLICIES {
        let vectors = vectors(policy);
        let cases = vectors["cases"].as_array().map_or(0, Vec::len);
        assert!(cases > 0, "{policy}: no cases");
        table.push_str(&format!("{policy:<14}"));
        for lang in Lang::ALL {
            let f = run(&rt, lang, policy, &vectors);
            table.push_str(&format!("{:<6}", if f.is_empty() { "ok" } else { "FAIL" }));
            failures.extend(f);
        }
        table.push('\n');
    }
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{table}\n{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_javascript_plugin_built_without_the_stub_flag_is_refused_naming_the_flag() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("without-stub-wasi");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/js/redact");
    let built = syncbase_plugin_build::build_foreign(&syncbase_plugin_build::ForeignBuild {
        out_dir: Some(out),
        stub_wasi: false,
        ..syncbase_plugin_build::ForeignBuild::new(Lang::Js, dir)
    })
    .unwrap_or_else(|e| panic!("building the JS redact plugin without --stub-wasi: {e}"));
    let bytes = std::fs::read(&built.component).expect("read component");
    let (_dir, rt) = support::runtime();
    let err = rt
        .upload("redact-js-wasi", &bytes)
        .err()
        .map(|e| e.to_string());
    let err = err.unwrap_or_else(|| panic!("a component importing WASI was accepted"));
    assert!(err.contains("imports `wasi:"), "{err}");
    assert!(err.contains("`--stub-wasi` to componentize-qjs"), "{err}");
    assert!(err.contains("`--stub-wasi` to componentize-py"), "{err}");
}
