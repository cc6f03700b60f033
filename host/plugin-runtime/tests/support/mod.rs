//! Shared test harness: real components built from `plugins/`, hostile
//! components built from WAT, fresh runtimes in temp dirs, and records.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use syncbase_plugin_build::{
    BuildOptions, ForeignBuild, Lang, World as BuildWorld, build_foreign, build_plugins,
    componentize,
};
use syncbase_plugin_runtime::types::{Change, Op, Version};
use syncbase_plugin_runtime::{PluginRuntime, RuntimeConfig};
use tempfile::TempDir;

pub const SHIPPED: [&str; 7] = [
    "lww",
    "field-merge",
    "counter",
    "redact",
    "local-only",
    "every-n",
    "proportional",
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every shipped plugin built into a component (once per test binary), by name.
/// Uses the same builder as `scripts/build-plugin`, in its own target dir so it
/// never waits on the lock of the cargo running the tests.
pub fn shipped() -> &'static HashMap<String, Vec<u8>> {
    static BUILT: OnceLock<HashMap<String, Vec<u8>>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-build");
        let options = BuildOptions {
            plugin_dirs: SHIPPED
                .iter()
                .map(|p| workspace().join("plugins").join(p))
                .collect(),
            target_dir: Some(target),
            out_dir: None,
            world: None,
        };
        let built = build_plugins(&options).unwrap_or_else(|e| panic!("building plugins: {e}"));
        built
            .into_iter()
            .map(|b| {
                let bytes = std::fs::read(&b.component).expect("read built component");
                (b.name, bytes)
            })
            .collect()
    })
}

pub fn plugin(name: &str) -> &'static [u8] {
    shipped()
        .get(name)
        .unwrap_or_else(|| panic!("no plugin {name}"))
}

pub fn runtime_with(config: RuntimeConfig) -> (TempDir, PluginRuntime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::open(dir.path().join("plugins"), config).expect("open runtime");
    (dir, runtime)
}

pub fn runtime() -> (TempDir, PluginRuntime) {
    runtime_with(RuntimeConfig::default())
}

/// A ~1 KB record body.
pub fn record_json(title: &str, likes: i64) -> String {
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(12);
    serde_json::json!({
        "id": "r1234567890abcd",
        "collectionId": "pbc_1234567890",
        "collectionName": "posts",
        "title": title,
        "body": body,
        "likes": likes,
        "tags": ["a", "b", "c"],
        "author": "u1234567890abcd",
        "published": true,
        "created": "2025-01-01 00:00:00.000Z",
        "updated": "2025-01-02 00:00:00.000Z"
    })
    .to_string()
}

pub fn version(data: Option<String>, hlc: u64, origin: &str) -> Version {
    Version {
        data,
        hlc,
        origin: origin.into(),
    }
}

pub fn change(
    op: Op,
    data: Option<String>,
    before: Option<String>,
    hlc: u64,
    origin: &str,
) -> Change {
    Change {
        op,
        collection: "posts".into(),
        id: "r1234567890abcd".into(),
        data,
        hlc,
        origin: origin.into(),
        before,
    }
}

/// A resolver core module in WAT with the canonical-ABI plumbing (memory, a
/// bump allocator, `configure` answering ok) around `resolve_body`, turned
/// into a real component by the plugin builder.
pub fn hostile_resolver(resolve_body: &str, extra: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
            (memory (export "memory") 4)
            (global $heap (mut i32) (i32.const 4096))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                (local $p i32)
                (local.set $p
                    (i32.and
                        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                        (i32.sub (i32.const 0) (local.get 2))))
                (global.set $heap (i32.add (local.get $p) (local.get 3)))
                (local.get $p))
            (func (export "configure") (param i32 i32) (result i32)
                (global.set $heap (i32.const 4096))
                (i32.const 16))
            (func (export "resolve") (param i32) (result i32)
                (global.set $heap (i32.const 4096))
                {resolve_body})
            {extra}
        )"#
    );
    let core = wat::parse_str(&wat).expect("valid WAT");
    let (component, world) =
        componentize(&core, Some(BuildWorld::Resolver)).expect("componentize hostile resolver");
    assert_eq!(world, BuildWorld::Resolver);
    component
}

/// Counts `WARN` events, to check failures are logged once per version.
pub mod logs {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct WarnCounter {
        pub warnings: Arc<AtomicUsize>,
        next_id: Arc<AtomicU64>,
    }

    impl Subscriber for WarnCounter {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if *event.metadata().level() == Level::WARN {
                self.warnings.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

/// The policies shipped in every language (besides Rust), by directory name.
pub const POLICIES: [&str; 3] = ["field-merge", "redact", "every-n"];

/// The C, Python and JavaScript plugins of `plugins/<lang>/`, built from
/// source with the same builder as `scripts/build-plugin --lang`, once per
/// test binary, by name. A missing toolchain fails with the install command.
pub fn foreign(lang: Lang) -> &'static HashMap<String, Vec<u8>> {
    static BUILT: OnceLock<HashMap<Lang, HashMap<String, Vec<u8>>>> = OnceLock::new();
    let all = BUILT.get_or_init(|| {
        // Python builds take seconds each: build everything in parallel.
        std::thread::scope(|s| {
            let jobs: Vec<_> = [Lang::C, Lang::Python, Lang::Js]
                .into_iter()
                .flat_map(|lang| POLICIES.into_iter().map(move |p| (lang, p)))
                .map(|(lang, policy)| {
                    s.spawn(move || {
                        let dir = workspace().join("plugins").join(lang.name()).join(policy);
                        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                            .join("foreign-plugins")
                            .join(lang.name());
                        let built = build_foreign(&ForeignBuild {
                            out_dir: Some(out),
                            ..ForeignBuild::new(lang, dir)
                        })
                        .unwrap_or_else(|e| panic!("building the {lang} plugin {policy}: {e}"));
                        let bytes = std::fs::read(&built.component).expect("read component");
                        (lang, built.name, bytes)
                    })
                })
                .collect();
            let mut all: HashMap<Lang, HashMap<String, Vec<u8>>> = HashMap::new();
            for job in jobs {
                let (lang, name, bytes) =
                    job.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                all.entry(lang).or_default().insert(name, bytes);
            }
            all
        })
    });
    &all[&lang]
}

/// One policy's component in one language.
pub fn component(lang: Lang, policy: &str) -> &'static [u8] {
    match lang {
        Lang::Rust => plugin(policy),
        other => foreign(other)
            .get(policy)
            .unwrap_or_else(|| panic!("no {other} plugin {policy}")),
    }
}
