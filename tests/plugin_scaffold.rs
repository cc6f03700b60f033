//! `syncbase plugin new` in every language and world: the scaffolded project builds with the
//! real toolchain (cargo, clang, componentize-py, componentize-qjs) into a component the real
//! plugin runtime accepts as that world, and the component does what its README says on a
//! first call and on every case of the project's own `vectors.json` (which `syncbase plugin
//! test` runs, through the same code). A Rust project's own unit tests pass too.
//!
//! One test per language, each scaffolding and building its three worlds. The Rust projects'
//! cargo target directories live under the test target dir, so only the first run compiles
//! their dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use syncbase::plugins::vectors;
use syncbase_plugin_build::{
    BuildOptions, ForeignBuild, Lang, World, build_foreign, build_plugins, scaffold,
};
use syncbase_plugin_runtime::types::{
    Change, Decision, Direction, Op, Resolution, Stats, Verdict, Version,
};
use syncbase_plugin_runtime::{DecidedBy, Outcome, PluginRuntime, RuntimeConfig, Target};

/// A directory kept between runs (cargo's build cache), under the test target dir.
fn kept(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

/// A runtime in `dir`. Its compile cache is not kept between runs: componentize-py's output
/// differs from build to build, so a kept cache would only grow.
fn runtime(dir: &Path) -> PluginRuntime {
    PluginRuntime::open(
        dir.join("plugins"),
        RuntimeConfig {
            persist_bindings: false,
            ..RuntimeConfig::default()
        },
    )
    .expect("open runtime")
}

/// Scaffolds `lang` × `world` into `root/NAME` (afresh) and builds it; returns the name and
/// component.
fn scaffold_and_build(root: &Path, lang: Lang, world: World) -> (String, Vec<u8>) {
    let name = format!("new-{lang}-{world}");
    if root.join(&name).exists() {
        std::fs::remove_dir_all(root.join(&name)).expect("remove the last run's project");
    }
    let dir = scaffold(&name, lang, world, &root.join(&name))
        .unwrap_or_else(|e| panic!("scaffolding {name}: {e}"));
    for file in ["README.md", "vectors.json"] {
        assert!(dir.join(file).is_file(), "{name} has no {file}");
    }
    let built = match lang {
        Lang::Rust => build_plugins(&BuildOptions {
            plugin_dirs: vec![dir.clone()],
            target_dir: Some(kept("scaffold-rust-wasm")),
            out_dir: None,
            world: None,
        })
        .map(|mut b| b.remove(0)),
        _ => build_foreign(&ForeignBuild::new(lang, &dir)),
    }
    .unwrap_or_else(|e| panic!("building the scaffolded {name}: {e}"));
    assert_eq!(built.name, name);
    assert_eq!(built.world, world);
    let bytes = std::fs::read(&built.component).expect("read the component");
    (name, bytes)
}

/// The plugin answered (no fallback to the built-in default).
fn answered<T: std::fmt::Debug>(name: &str, out: Outcome<T>) -> T {
    match out.decided_by {
        DecidedBy::Plugin(_) => out.value,
        other => panic!("{name}: the plugin did not answer: {other:?}"),
    }
}

/// One call with the default configuration, checked against what the README promises.
fn first_call_does_what_the_readme_says(rt: &PluginRuntime, name: &str, world: World) {
    match world {
        World::Resolver => {
            rt.bind(Target::Resolver("posts".into()), name, None, "")
                .unwrap_or_else(|e| panic!("bind {name}: {e}"));
            let current = Version {
                collection: "posts".into(),
                id: "r1".into(),
                data: Some(r#"{"title":"t1","body":"b0"}"#.into()),
                hlc: 20,
                origin: "n1".into(),
                event_id: "e1".into(),
            };
            let incoming = Change {
                op: Op::Update,
                collection: "posts".into(),
                id: "r1".into(),
                data: Some(r#"{"title":"t0","body":"b2"}"#.into()),
                hlc: 10,
                origin: "n2".into(),
                event_id: "e2".into(),
                base: Some("e0".into()),
                before: Some(r#"{"body":"b0"}"#.into()),
            };
            // Concurrent edits to different fields both survive.
            assert_eq!(
                answered(name, rt.resolve("posts", &current, &incoming)),
                Resolution::Merged(r#"{"body":"b2","title":"t1"}"#.into()),
                "{name}"
            );
        }
        World::Filter => {
            rt.bind(Target::OutboundFilter("users".into()), name, None, "")
                .unwrap_or_else(|e| panic!("bind {name}: {e}"));
            let change = Change {
                op: Op::Create,
                collection: "users".into(),
                id: "u1".into(),
                data: Some(r#"{"name":"Ann","secret":"s3"}"#.into()),
                hlc: 5,
                origin: "n1".into(),
                event_id: "e5".into(),
                base: None,
                before: None,
            };
            // The `secret` field does not leave the node.
            let verdict = answered(name, rt.filter("users", Direction::Outbound, &change));
            assert_eq!(
                verdict,
                Verdict::Replace(Change {
                    data: Some(r#"{"name":"Ann"}"#.into()),
                    ..change
                }),
                "{name}"
            );
        }
        World::SnapshotPolicy => {
            rt.bind(Target::SnapshotPolicy, name, None, "")
                .unwrap_or_else(|e| panic!("bind {name}: {e}"));
            let stats = Stats {
                events_since: 1000,
                bytes_since: 0,
                ms_since: 0,
                stream_seq: 5000,
                db_bytes: 1 << 20,
                snapshots: 1,
            };
            // A snapshot every 1000 events, keeping 2.
            assert_eq!(
                answered(name, rt.decide(stats)),
                Decision {
                    take: true,
                    keep: 2
                },
                "{name}"
            );
        }
    }
}

/// Scaffolds, builds, loads and calls the three worlds of `lang`.
fn check_language(lang: Lang) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(&tmp.path().join("node"));
    // Projects at fixed paths, so cargo replaces their artefacts run after run.
    let projects = kept("scaffold-projects");
    for world in World::ALL {
        let (name, bytes) = scaffold_and_build(&projects, lang, world);
        let report = rt
            .validate(&bytes)
            .unwrap_or_else(|e| panic!("the runtime refuses {name}: {e}"));
        assert_eq!(report.world.name(), world.wit_name(), "{name}");
        rt.upload(&name, &bytes)
            .unwrap_or_else(|e| panic!("upload {name}: {e}"));
        first_call_does_what_the_readme_says(&rt, &name, world);
        let text = std::fs::read_to_string(projects.join(&name).join("vectors.json"))
            .expect("read vectors.json");
        let v: Value = serde_json::from_str(&text).expect("vectors.json is JSON");
        let report = vectors::run(&rt, &name, &bytes, &v)
            .unwrap_or_else(|e| panic!("running {name}'s vectors: {e}"));
        assert!(report.results.len() >= 7, "{}", report.render());
        assert_eq!(report.failures(), 0, "{}", report.render());
        if lang == Lang::Rust {
            own_unit_tests_pass(&projects.join(&name));
        }
    }
}

/// `cargo test` in a scaffolded Rust project, as its README says.
fn own_unit_tests_pass(dir: &Path) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .arg("test")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(kept("scaffold-rust-native"))
        .output()
        .expect("run cargo test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo test in {}:\n{stdout}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The unit tests ran (the doc-tests' "0 passed" does not count).
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 2, "{stdout}");
}

#[test]
fn rust_projects_build_run_and_pass_their_tests() {
    check_language(Lang::Rust);
}

#[test]
fn c_projects_build_and_run() {
    check_language(Lang::C);
}

#[test]
fn python_projects_build_and_run() {
    check_language(Lang::Python);
}

#[test]
fn javascript_projects_build_and_run() {
    check_language(Lang::Js);
}
