//! Plugin languages benchmark: the same policy written in Rust, C, Python and
//! JavaScript (`plugins/field-merge` and `plugins/{c,python,js}/field-merge`;
//! `redact` likewise), each built from source and called through the real host
//! path (`PluginRuntime::resolve` / `filter`, ~1 KB records, default limits).
//!
//! Run: `cargo bench -p syncbase-plugin-runtime --bench languages`
//! (env `BENCH_MS`: measuring time per figure, default 1000; `BENCH_INSTANCES`:
//! instances for the memory figure, default 8).
//!
//! Prints one table per policy, every figure with its ratio to the Rust plugin:
//! - ns/call and calls/s: warm instances (the runtime's default reuse);
//! - compile: `upload` into an empty runtime (validation, cranelift
//!   compilation, storing); the compile cache is empty;
//! - instantiate: a fresh instance per call (`InstanceReuse::PerCall`) minus
//!   the warm call, so instantiation plus `configure`;
//! - component: size of the `.wasm`;
//! - RSS/instance: growth of this process's resident set (`/proc/self/statm`)
//!   over N more warm instances (N bindings of the plugin, each configured and
//!   called once), divided by N: the instances' touched linear memory, stack
//!   and host-side state. Compiled code is shared by all instances and is not
//!   in it.
//!
//! Every answer is checked: it must come from the plugin and be the same
//! bytes in every language. Goal: every language under 10 µs per resolve call.
//!
//! Then each language's floor: a resolver that answers keep-current without
//! reading its arguments (written here, built with the same toolchains; for
//! Rust, the WAT component of the `resolve` bench), called with the same
//! records. It is what a call costs in that language before the policy does
//! any work: the arguments lifted into the guest's values and the answer back.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{change, component, record_json, runtime_with, version};
use syncbase_plugin_build::Lang;
use syncbase_plugin_runtime::types::{Change, Direction, Op, Version};
use syncbase_plugin_runtime::{DecidedBy, InstanceReuse, PluginRuntime, RuntimeConfig, Target};

/// Runs `f` for about `budget` (at least `min_calls` times) and returns ns per call.
fn measure(budget: Duration, min_calls: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut calls: u64 = 0;
    let mut batch: u64 = 1;
    let start = Instant::now();
    while start.elapsed() < budget || calls < min_calls {
        for _ in 0..batch {
            f();
        }
        calls += batch;
        batch = (batch * 2).min(1 << 16);
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Calls the plugin bound at a collection; returns the answer as text, or why
/// the plugin did not answer.
type Call = Box<dyn Fn(&PluginRuntime, &str) -> Result<String, String>>;

/// One policy: how to bind it and call it once.
struct Policy {
    name: &'static str,
    config: &'static str,
    target: fn(&str) -> Target,
    call: Call,
}

fn from_plugin<T: std::fmt::Debug>(decided_by: &DecidedBy, value: T) -> Result<String, String> {
    match decided_by {
        DecidedBy::Plugin(_) => Ok(format!("{value:?}")),
        other => Err(format!("the plugin did not answer: {other:?}")),
    }
}

struct Row {
    lang: Lang,
    ns: f64,
    compile_ms: f64,
    instantiate_us: f64,
    component: u64,
    rss_per_instance: f64,
}

/// A runtime in `dir` that shares `cache` (compiled code) with others.
fn runtime_sharing_cache(dir: &Path, cache: &Path, reuse: InstanceReuse) -> PluginRuntime {
    std::fs::create_dir_all(dir.join("plugins")).expect("runtime dir");
    std::os::unix::fs::symlink(cache, dir.join("plugins/cache")).expect("link cache");
    PluginRuntime::open(
        dir.join("plugins"),
        RuntimeConfig {
            reuse,
            persist_bindings: false,
            ..RuntimeConfig::default()
        },
    )
    .expect("open runtime")
}

fn bench_language(policy: &Policy, lang: Lang, budget: Duration, instances: usize) -> Row {
    let bytes = component(lang, policy.name);
    let name = format!("{}-{lang}", policy.name);
    let (dir, rt) = runtime_with(RuntimeConfig {
        persist_bindings: false,
        ..RuntimeConfig::default()
    });
    let start = Instant::now();
    rt.upload(&name, bytes).expect("upload");
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;

    // Memory first, while the process has not yet run calls of this plugin.
    let before = rss();
    for i in 0..instances {
        let collection = format!("m{i}");
        rt.bind((policy.target)(&collection), &name, None, policy.config)
            .expect("bind");
        (policy.call)(&rt, &collection).expect("answer");
    }
    let rss_per_instance = rss().saturating_sub(before) as f64 / instances as f64;

    rt.bind((policy.target)("posts"), &name, None, policy.config)
        .expect("bind");
    let ns = measure(budget, 100, || {
        black_box((policy.call)(&rt, "posts").is_ok());
    });

    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = runtime_sharing_cache(
        fresh_dir.path(),
        &dir.path().join("plugins/cache"),
        InstanceReuse::PerCall,
    );
    fresh.upload(&name, bytes).expect("upload (cached)");
    fresh
        .bind((policy.target)("posts"), &name, None, policy.config)
        .expect("bind");
    let per_call_ns = measure(budget, 20, || {
        black_box((policy.call)(&fresh, "posts").is_ok());
    });
    Row {
        lang,
        ns,
        compile_ms,
        instantiate_us: (per_call_ns - ns).max(0.0) / 1e3,
        component: bytes.len() as u64,
        rss_per_instance,
    }
}

fn cell(value: f64, rust: f64, digits: usize) -> String {
    format!("{value:.digits$} ({:.1}x)", value / rust)
}

fn print_table(policy: &Policy, rows: &[Row]) {
    let rust = rows
        .iter()
        .find(|r| r.lang == Lang::Rust)
        .expect("a Rust row");
    println!(
        "\n{} ({}), ratios to Rust in parentheses",
        policy.name,
        if policy.config.is_empty() {
            "no configuration".to_string()
        } else {
            format!("config {}", policy.config)
        }
    );
    println!(
        "| {:<6} | {:>16} | {:>18} | {:>16} | {:>18} | {:>22} | {:>20} |",
        "lang",
        "ns/call",
        "calls/s",
        "compile ms",
        "instantiate µs",
        "component bytes",
        "RSS/instance KiB"
    );
    println!(
        "|{:-<8}|{:->18}|{:->20}|{:->18}|{:->20}|{:->24}|{:->22}|",
        "", "", "", "", "", "", ""
    );
    for r in rows {
        println!(
            "| {:<6} | {:>16} | {:>18} | {:>16} | {:>18} | {:>22} | {:>20} |",
            r.lang.name(),
            cell(r.ns, rust.ns, 0),
            cell(1e9 / r.ns, 1e9 / rust.ns, 0),
            cell(r.compile_ms, rust.compile_ms, 1),
            cell(r.instantiate_us, rust.instantiate_us, 1),
            cell(r.component as f64, rust.component as f64, 0),
            cell(
                r.rss_per_instance / 1024.0,
                rust.rss_per_instance / 1024.0,
                0
            ),
        );
    }
}

/// Keep-current resolvers that never read their arguments, per language.
const FLOOR_C: &str = r#"#include "resolver.h"
bool exports_resolver_configure(resolver_string_t *config, resolver_string_t *err) {
  resolver_string_free(config);
  return true;
}
void exports_resolver_resolve(resolver_version_t *current, resolver_change_t *incoming,
                              resolver_resolution_t *ret) {
  ret->tag = SYNCBASE_PLUGIN_TYPES_RESOLUTION_KEEP_CURRENT;
  resolver_version_free(current);
  resolver_change_free(incoming);
}
"#;
const FLOOR_PYTHON: &str = r#"import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def configure(self, config: str) -> None:
        pass

    def resolve(self, current: types.Version, incoming: types.Change) -> types.Resolution:
        return types.Resolution_KeepCurrent()
"#;
const FLOOR_JS: &str = r#"export function configure(config) {}
export function resolve(current, incoming) {
  return { tag: "keep-current" };
}
"#;

/// Each language's floor, in ns per call: see the module comment.
fn floors(current: &Version, incoming: &Change, budget: Duration) -> Vec<(Lang, f64)> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut out = Vec::new();
    for lang in Lang::ALL {
        let bytes = match lang {
            Lang::Rust => support::hostile_resolver("(i32.const 48)", ""),
            _ => {
                let (file, source) = match lang {
                    Lang::C => ("plugin.c", FLOOR_C),
                    Lang::Python => ("plugin.py", FLOOR_PYTHON),
                    _ => ("plugin.js", FLOOR_JS),
                };
                let dir = tmp.path().join(lang.name());
                std::fs::create_dir_all(&dir).expect("floor dir");
                std::fs::write(dir.join(file), source).expect("floor source");
                std::fs::write(
                    dir.join("plugin.json"),
                    r#"{"name": "floor", "world": "resolver"}"#,
                )
                .expect("plugin.json");
                let built = syncbase_plugin_build::build_foreign(
                    &syncbase_plugin_build::ForeignBuild::new(lang, &dir),
                )
                .unwrap_or_else(|e| panic!("building the {lang} floor: {e}"));
                std::fs::read(&built.component).expect("floor component")
            }
        };
        let (_dir, rt) = runtime_with(RuntimeConfig {
            persist_bindings: false,
            ..RuntimeConfig::default()
        });
        rt.upload("floor", &bytes).expect("upload floor");
        rt.bind(Target::Resolver("posts".into()), "floor", None, "")
            .expect("bind floor");
        let out_ = rt.resolve("posts", current, incoming);
        assert!(
            matches!(out_.decided_by, DecidedBy::Plugin(_)),
            "{lang} floor: {:?}",
            out_.decided_by
        );
        let ns = measure(budget, 100, || {
            black_box(rt.resolve("posts", current, incoming));
        });
        out.push((lang, ns));
    }
    out
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let instances: usize = std::env::var("BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .max(1);

    let current: Version = version(Some(record_json("title now", 13)), 20, "n1");
    let incoming: Change = change(
        Op::Update,
        Some(record_json("title before", 14)),
        Some(json!({"likes": 10}).to_string()),
        30,
        "n2",
    );
    let outbound: Change = {
        let mut c = incoming.clone();
        c.collection = "users".into();
        c.data = Some(
            json!({"name": "Ann", "email": "ann@example.com", "bio": "x".repeat(900)}).to_string(),
        );
        c.before = Some(json!({"email": "old@example.com"}).to_string());
        c
    };
    eprintln!(
        "records: current {} B, incoming {} B, outbound {} B; {} ms per figure, {instances} \
         instances for memory; building the plugins...",
        current.data.as_deref().map_or(0, str::len),
        incoming.data.as_deref().map_or(0, str::len),
        outbound.data.as_deref().map_or(0, str::len),
        budget.as_millis(),
    );

    let floor_args = (current.clone(), incoming.clone());
    let policies = [
        Policy {
            name: "field-merge",
            config: "",
            target: |c| Target::Resolver(c.into()),
            call: Box::new(move |rt, collection| {
                let out = rt.resolve(collection, &current, &incoming);
                from_plugin(&out.decided_by, out.value)
            }),
        },
        Policy {
            name: "redact",
            config: r#"{"fields":["email"]}"#,
            target: |c| Target::OutboundFilter(c.into()),
            call: Box::new(move |rt, collection| {
                let out = rt.filter(collection, Direction::Outbound, &outbound);
                from_plugin(&out.decided_by, out.value)
            }),
        },
    ];

    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load().trim());
    let mut goal = Vec::new();
    for policy in &policies {
        // Same answer, byte for byte, from every language.
        let answers: Vec<String> = Lang::ALL
            .into_iter()
            .map(|lang| {
                let (_dir, rt) = runtime_with(RuntimeConfig::default());
                let name = format!("{}-{lang}", policy.name);
                rt.upload(&name, component(lang, policy.name))
                    .expect("upload");
                rt.bind((policy.target)("posts"), &name, None, policy.config)
                    .expect("bind");
                (policy.call)(&rt, "posts").unwrap_or_else(|e| panic!("{name}: {e}"))
            })
            .collect();
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "{}: the languages disagree: {answers:#?}",
            policy.name
        );
        let rows: Vec<Row> = Lang::ALL
            .into_iter()
            .map(|lang| bench_language(policy, lang, budget, instances))
            .collect();
        print_table(policy, &rows);
        if policy.name == "field-merge" {
            goal = rows.iter().map(|r| (r.lang, r.ns)).collect();
        }
    }
    let floors = floors(&floor_args.0, &floor_args.1, budget);
    println!(
        "\nfloor: a resolver answering keep-current without reading its arguments, same records"
    );
    println!(
        "| {:<6} | {:>10} | {:>22} |",
        "lang", "ns/call", "field-merge - floor ns"
    );
    println!("|{:-<8}|{:->12}|{:->24}|", "", "", "");
    for (lang, ns) in &floors {
        let merge = goal.iter().find(|(l, _)| l == lang).map_or(0.0, |g| g.1);
        println!(
            "| {:<6} | {:>10.0} | {:>22.0} |",
            lang.name(),
            ns,
            merge - ns
        );
    }
    println!("\nload average at end: {}", load().trim());
    for (lang, ns) in goal {
        println!(
            "goal (< 10 µs per resolve call) {:<6} {}: {:.2} µs",
            lang.name(),
            if ns < 10_000.0 { "MET" } else { "MISSED" },
            ns / 1e3
        );
    }
}
