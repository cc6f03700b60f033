//! `syncbase plugin new` in every language and world, followed by the project's own README,
//! as a user with nothing but the installed `syncbase` binary runs it: the binary is copied
//! out of the build tree, `PATH` holds it and the system's tools only (no Syncbase checkout,
//! none of its scripts), and componentize-py / componentize-qjs come from a tools directory
//! of the user's choosing (`SYNCBASE_TOOLS`). The README's build (`syncbase plugin build`,
//! the real toolchains: cargo, clang, componentize-py, componentize-qjs) and test commands
//! (`cargo test` for Rust, and `syncbase plugin test` of the built component against the
//! project's `vectors.json`) run as written. Then the component loads into the real plugin
//! runtime as its world and its first call does what the README says; a second build has the
//! same canonical content (pushing it is "unchanged"). (Pushing and binding need a node: the
//! guide's test, `plugin_guide.rs`, runs those.)
//!
//! One test per language, each scaffolding its three worlds into a temporary directory outside
//! the checkout. The Rust projects' `target/` links to one directory kept under the test
//! target dir, so their dependencies are compiled once, on the first run.

#[path = "support/readme.rs"]
mod readme;

use std::path::{Path, PathBuf};

use readme::{run_sh, sh_blocks};

/// A user's machine: `syncbase` installed alone in a directory, `PATH` = that directory and
/// the system's tool directories, and a tools directory holding componentize-py and
/// componentize-qjs (installed there from PyPI and npm by `.ci/run`, linked here: what
/// `syncbase plugin build --install-tools` would have put there).
struct Machine {
    _tmp: tempfile::TempDir,
    path: String,
    tools: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::fs::copy(env!("CARGO_BIN_EXE_syncbase"), bin.join("syncbase")).expect("install");
        let cargo = std::env::var("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|_| "cargo".into());
        let mut dirs = vec![bin];
        if let Some(d) = cargo.parent().filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(d.to_path_buf());
        }
        dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
        let path = std::env::join_paths(&dirs).expect("PATH");
        let tools = tmp.path().join("tools");
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::create_dir_all(tools.join("js")).expect("tools dir");
        std::os::unix::fs::symlink(repo.join("target/tools/pip"), tools.join("pip"))
            .expect("link pip");
        std::os::unix::fs::symlink(
            repo.join("plugins/js/node_modules"),
            tools.join("js/node_modules"),
        )
        .expect("link node_modules");
        Machine {
            path: path.to_string_lossy().into_owned(),
            tools,
            _tmp: tmp,
        }
    }

    fn env(&self) -> [(&str, &str); 2] {
        [
            ("PATH", &self.path),
            ("SYNCBASE_TOOLS", self.tools.to_str().expect("utf-8")),
        ]
    }
}
use syncbase_plugin_build::{Lang, World, scaffold};
use syncbase_plugin_runtime::types::{
    Change, Decision, Direction, Op, Resolution, Stats, Verdict, Version,
};
use syncbase_plugin_runtime::{DecidedBy, Outcome, PluginRuntime, RuntimeConfig, Target};

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

/// Scaffolds `lang` × `world` into `root/NAME` and runs its README's commands (all but the
/// push to a node); returns the name and the component they built.
fn scaffold_and_follow_readme(
    machine: &Machine,
    root: &Path,
    lang: Lang,
    world: World,
) -> (String, Vec<u8>, Vec<u8>) {
    let name = format!("new-{lang}-{world}");
    let dir = root.join(&name);
    scaffold(&name, lang, world, &dir).unwrap_or_else(|e| panic!("scaffolding {name}: {e}"));
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("the project's README");
    let (push, local): (Vec<String>, Vec<String>) = sh_blocks(&readme)
        .into_iter()
        .partition(|b| b.contains("syncbase plugin push"));
    assert_eq!(push.len(), 1, "{name}'s README pushes once:\n{readme}");
    if lang == Lang::Rust {
        // The three Rust projects' `target/` is one directory, so their common dependencies
        // are compiled once (and only on the first run).
        let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-rust-target");
        std::fs::create_dir_all(&shared).expect("shared target dir");
        std::os::unix::fs::symlink(&shared, dir.join("target")).expect("link target/");
    }
    let out = run_sh(&dir, &local.concat(), &machine.env());

    // `syncbase plugin test` passed every configuration and case of vectors.json.
    let summary = format!("{name} ({world}): ");
    let line = out
        .lines()
        .find(|l| l.starts_with(&summary))
        .unwrap_or_else(|| panic!("no vectors summary in:\n{out}"));
    assert!(line.ends_with(" passed, 0 failed"), "{out}");
    let passed: usize = line[summary.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 8, "{out}");
    if lang == Lang::Rust {
        // `cargo test` ran the unit tests (the doc-tests' "0 passed" does not count).
        let unit: usize = out
            .lines()
            .filter_map(|l| l.strip_prefix("test result: ok. "))
            .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
            .sum();
        assert!(unit >= 2, "{out}");
    }

    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("checkout");
    assert!(
        readme.contains("syncbase plugin build")
            && !readme.contains(checkout.to_str().expect("utf-8"))
            && !readme.contains("scripts/"),
        "the README needs no Syncbase checkout:\n{readme}"
    );

    let component = match lang {
        Lang::Rust => dir.join("target/plugins"),
        _ => dir.join("build"),
    }
    .join(format!("{name}.wasm"));
    let bytes = std::fs::read(&component)
        .unwrap_or_else(|e| panic!("the README's build wrote no {}: {e}", component.display()));
    // The same sources built again: byte for byte the same for Rust and C; for Python and
    // JavaScript (whose toolchains snapshot an interpreter) the same recorded sources.
    run_sh(&dir, "syncbase plugin build", &machine.env());
    let again = std::fs::read(&component).expect("rebuilt component");
    if matches!(lang, Lang::Rust | Lang::C) {
        assert!(bytes == again, "{name}: two builds differ");
    }
    if lang == Lang::Rust {
        // The shared target dir keeps dependencies, not the projects of every past run.
        let cleaned =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["clean", "--quiet", "-p", &name, "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .expect("run cargo clean");
        assert!(cleaned.success(), "cargo clean -p {name}");
    }
    (name, bytes, again)
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
                data: Some(r#"{"title":"t1","body":"b0"}"#.into()),
                hlc: 20,
                origin: "n1".into(),
            };
            let incoming = Change {
                op: Op::Update,
                collection: "posts".into(),
                id: "r1".into(),
                data: Some(r#"{"title":"t0","body":"b2"}"#.into()),
                hlc: 10,
                origin: "n2".into(),
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
                content_bytes: 1 << 20,
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

/// Scaffolds, builds and tests (by the README), loads and calls the three worlds of `lang`.
fn check_language(lang: Lang) {
    let machine = Machine::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(&tmp.path().join("node"));
    // Outside the checkout (the guide's test covers a project inside it).
    let projects = tmp.path().join("projects");
    for world in World::ALL {
        let (name, bytes, again) = scaffold_and_follow_readme(&machine, &projects, lang, world);
        let meta = rt
            .upload(&name, &bytes)
            .unwrap_or_else(|e| panic!("the runtime refuses {name}: {e}"));
        assert_eq!(meta.world.name(), world.wit_name(), "{name}");
        let pushed = rt.push(&name, &again).expect("push the rebuild");
        assert!(
            pushed.unchanged,
            "{name}: a rebuild of the same sources is a new version"
        );
        assert_eq!(pushed.version.version, meta.version);
        first_call_does_what_the_readme_says(&rt, &name, world);
    }
}

#[test]
fn rust_projects_build_test_and_run_as_their_readme_says() {
    check_language(Lang::Rust);
}

#[test]
fn c_projects_build_test_and_run_as_their_readme_says() {
    check_language(Lang::C);
}

#[test]
fn python_projects_build_test_and_run_as_their_readme_says() {
    check_language(Lang::Python);
}

#[test]
fn a_missing_toolchain_says_how_to_install_it_and_what_that_costs() {
    let machine = Machine::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    scaffold("p", Lang::Python, World::Resolver, &dir).expect("scaffold");
    let empty = tmp.path().join("no-tools");
    let out = std::process::Command::new("sh")
        .args(["-c", "syncbase plugin build"])
        .current_dir(&dir)
        .env("PATH", &machine.path)
        .env("SYNCBASE_TOOLS", &empty)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for needle in [
        "the python toolchain is not installed",
        "--install-tools",
        "componentize-py==0.25.1 from PyPI",
        empty.join("pip").to_str().expect("utf-8"),
        "about a minute",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(!dir.join("build").exists(), "nothing built");
}

#[test]
fn javascript_projects_build_test_and_run_as_their_readme_says() {
    check_language(Lang::Js);
}
