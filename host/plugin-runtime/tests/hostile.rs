//! Bad input, each a real hostile component: refused at upload with a typed
//! error, or (when it only misbehaves at run time) failing every call the same
//! way while the built-in default is applied and the node keeps serving.

mod support;

use support::{
    change, hostile_resolver, logs::WarnCounter, plugin, record_json, runtime_with, version,
};
use syncbase_plugin_runtime::types::{Op, Resolution};
use syncbase_plugin_runtime::{
    CallFailure, DecidedBy, ErrorKind, PluginError, PluginRuntime, RuntimeConfig, Target,
};

fn small_runtime() -> (tempfile::TempDir, PluginRuntime) {
    runtime_with(RuntimeConfig {
        fuel_per_call: 2_000_000,
        memory_cap: 16 << 20,
        ..RuntimeConfig::default()
    })
}

/// A runtime with `lww` bound to `posts`, to check failures leave it alone.
fn serving_runtime() -> (tempfile::TempDir, PluginRuntime) {
    let (dir, rt) = small_runtime();
    rt.upload("lww", plugin("lww")).expect("upload lww");
    rt.bind(Target::Resolver("posts".into()), "lww", None, "")
        .expect("bind lww");
    (dir, rt)
}

fn assert_still_serving(rt: &PluginRuntime) {
    let current = version(Some(record_json("a", 1)), 1, "n1");
    let incoming = change(Op::Update, Some(record_json("b", 1)), None, 2, "n1");
    let out = rt.resolve("posts", &current, &incoming);
    assert_eq!(out.value, Resolution::TakeIncoming);
    assert!(matches!(out.decided_by, DecidedBy::Plugin(ref p) if p.name == "lww"));
    assert_eq!(rt.list().len(), 1, "a failed upload stores nothing");
}

#[test]
fn not_wasm_is_refused() {
    let (_dir, rt) = serving_runtime();
    let err = rt
        .upload("bad", b"#!/bin/sh\necho hi\n")
        .expect_err("refused");
    assert!(matches!(err, PluginError::NotWasm(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_still_serving(&rt);
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let (_dir, rt) = serving_runtime();
    let core = wat::parse_str(r#"(module (func (export "resolve")))"#).expect("wat");
    let err = rt.upload("bad", &core).expect_err("refused");
    assert!(matches!(err, PluginError::CoreModule), "{err}");
    assert!(err.to_string().contains("not a component"), "{err}");
    assert_still_serving(&rt);
}

#[test]
fn a_component_of_another_world_is_refused() {
    let (_dir, rt) = serving_runtime();
    let other = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "hello") (canon lift (core func $i "f"))))"#,
    )
    .expect("wat");
    let err = rt.upload("bad", &other).expect_err("refused");
    assert!(
        matches!(err, PluginError::WrongWorld(ref m) if m.contains("hello")),
        "{err}"
    );
    // Right names, wrong types: `resolve` takes nothing here.
    let mistyped = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "configure") (canon lift (core func $i "f")))
            (func (export "resolve") (canon lift (core func $i "f"))))"#,
    )
    .expect("wat");
    let err = rt.upload("bad", &mistyped).expect_err("refused");
    assert!(
        matches!(err, PluginError::WrongWorld(ref m) if m.contains("resolver")),
        "{err}"
    );
    assert_still_serving(&rt);
}

#[test]
fn a_component_importing_wasi_is_refused_naming_the_import() {
    let (_dir, rt) = serving_runtime();
    let wasi = wat::parse_str(
        r#"(component
            (import "wasi:clocks/wall-clock@0.2.0" (instance $clock
                (export "now" (func (result u64)))))
            (import "wasi:random/random@0.2.0" (instance $random
                (export "get-random-u64" (func (result u64))))))"#,
    )
    .expect("wat");
    let err = rt.upload("bad", &wasi).expect_err("refused");
    match &err {
        PluginError::ForbiddenImport { import, all, .. } => {
            assert_eq!(import, "wasi:clocks/wall-clock@0.2.0");
            assert_eq!(all.len(), 2);
        }
        other => panic!("expected ForbiddenImport, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("wasi:clocks/wall-clock@0.2.0"),
        "{message}"
    );
    assert!(message.contains("--stub-wasi"), "{message}");
    assert_still_serving(&rt);
}

/// Uploads and binds a hostile resolver to `posts`, calls it `calls` times,
/// and checks every call fell back to last-writer-wins with `expected`.
fn assert_fails_with(resolve_body: &str, extra: &str, expected: fn(&CallFailure) -> bool) {
    let (_dir, rt) = small_runtime();
    rt.upload("hostile", &hostile_resolver(resolve_body, extra))
        .expect("upload: it is a valid component");
    rt.bind(Target::Resolver("posts".into()), "hostile", None, "")
        .expect("bind");
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    let earlier = change(Op::Update, Some(record_json("b", 1)), None, 9, "n2");
    let counter = WarnCounter::default();
    tracing::subscriber::with_default(counter.clone(), || {
        for (incoming, lww) in [
            (&later, Resolution::TakeIncoming),
            (&earlier, Resolution::KeepCurrent),
            (&later, Resolution::TakeIncoming),
        ] {
            let out = rt.resolve("posts", &current, incoming);
            assert_eq!(out.value, lww, "the built-in default applies");
            let failure = out.failure().expect("decided by fallback");
            assert!(expected(failure), "unexpected failure {failure:?}");
        }
    });
    let m = rt.metrics("hostile", 1).expect("metrics");
    assert_eq!((m.calls, m.failures), (3, 3), "{m:?}");
    // Each failing call discarded its instance: one per call, the first
    // being the instance configured at bind time.
    assert_eq!(m.instantiations, 3, "{m:?}");
    assert_eq!(
        counter.warnings.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "logged once per plugin version, not per call"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    assert_fails_with("(loop $l (br $l)) (unreachable)", "", |f| {
        *f == CallFailure::OutOfFuel
    });
}

#[test]
fn unbounded_memory_growth_hits_the_cap() {
    assert_fails_with(
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (unreachable)",
        "",
        |f| matches!(f, CallFailure::MemoryCap { cap, .. } if *cap == 16 << 20),
    );
}

#[test]
fn a_trap_is_a_failure() {
    assert_fails_with(
        "(unreachable)",
        "",
        |f| matches!(f, CallFailure::Trap(t) if t.contains("unreachable")),
    );
}

#[test]
fn endless_recursion_overflows_the_stack() {
    assert_fails_with(
        "(call $down (i32.const 0))",
        "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))",
        |f| *f == CallFailure::StackOverflow,
    );
}

#[test]
fn a_malformed_merged_record_is_rejected() {
    // Answer `ok(merged("{\"broken\": "))`: the result at 32 (case 0 = ok), the
    // resolution at 36 (case 2, then the string's pointer and length), the text at 64.
    assert_fails_with(
        "(i32.const 32)",
        r#"(data (i32.const 32) "\00\00\00\00\02\00\00\00\40\00\00\00\0b\00\00\00")
           (data (i32.const 64) "{\"broken\": ")"#,
        |f| matches!(f, CallFailure::Malformed(m) if m.contains("merged record")),
    );
}

#[test]
fn an_error_the_plugin_returns_is_its_message() {
    // Answer `err("no such field")`: the result at 32 (case 1, then the string's pointer
    // and length), the text at 64. An error leaves a usable instance, so this resolver's
    // one instance serves all three calls.
    let (_dir, rt) = small_runtime();
    rt.upload(
        "hostile",
        &hostile_resolver(
            "(i32.const 32)",
            r#"(data (i32.const 32) "\01\00\00\00\40\00\00\00\0d\00\00\00")
               (data (i32.const 64) "no such field")"#,
        ),
    )
    .expect("upload");
    rt.bind(Target::Resolver("posts".into()), "hostile", None, "")
        .expect("bind");
    let current = version(Some(record_json("a", 1)), 10, "n1");
    for hlc in [11, 9, 12] {
        let incoming = change(Op::Update, Some(record_json("b", 1)), None, hlc, "n2");
        let out = rt.resolve("posts", &current, &incoming);
        assert_eq!(
            out.failure(),
            Some(&CallFailure::Raised("no such field".into()))
        );
        let lww = if hlc > 10 {
            Resolution::TakeIncoming
        } else {
            Resolution::KeepCurrent
        };
        assert_eq!(out.value, lww, "the built-in default applies");
    }
    let m = rt.metrics("hostile", 1).expect("metrics");
    assert_eq!((m.calls, m.raised, m.instantiations), (3, 3, 1), "{m:?}");
    assert_eq!(
        CallFailure::Raised("no such field".into()).to_string(),
        "raised an error: no such field"
    );
}
