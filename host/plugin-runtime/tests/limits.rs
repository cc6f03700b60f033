//! Limits that must not depend on anything but the binding: the limits a binding was made
//! with (not the node's current flags), the code that runs (not custom sections padding a
//! component), and the node's memory budget (which may make a call wait, never decide).

mod support;

use support::{change, hostile_resolver, record_json, runtime_with, version};
use syncbase_plugin_runtime::types::{Op, Resolution};
use syncbase_plugin_runtime::{CallFailure, DecidedBy, PluginRuntime, RuntimeConfig, Target};

/// A resolver that counts to `n`, then answers keep-current (about 4 fuel per count).
fn counting(n: u32) -> Vec<u8> {
    hostile_resolver(
        &format!(
            "(global.set $n (i32.const 0))
             (loop $l
                (global.set $n (i32.add (global.get $n) (i32.const 1)))
                (br_if $l (i32.lt_u (global.get $n) (i32.const {n}))))
             (i32.const 48)"
        ),
        "(global $n (mut i32) (i32.const 0))",
    )
}

/// A resolver that grows its memory by `pages` (64 KiB each) on every call, then answers
/// keep-current.
fn growing(pages: u32) -> Vec<u8> {
    hostile_resolver(
        &format!(
            "(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then (unreachable)))
             (i32.const 48)"
        ),
        "",
    )
}

/// `component` with a custom section of `bytes` bytes appended (custom sections may appear
/// anywhere in a component).
fn padded(mut component: Vec<u8>, bytes: usize) -> Vec<u8> {
    let name = b"padding";
    let size = 1 + name.len() + bytes;
    component.push(0);
    let mut n = size;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            component.push(byte);
            break;
        }
        component.push(byte | 0x80);
    }
    component.push(name.len() as u8);
    component.extend_from_slice(name);
    component.resize(component.len() + bytes, b'x');
    component
}

fn call(
    rt: &PluginRuntime,
    collection: &str,
    hlc: u64,
) -> syncbase_plugin_runtime::Outcome<Resolution> {
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let incoming = change(Op::Update, Some(record_json("b", 1)), None, hlc, "n2");
    rt.resolve(collection, &current, &incoming)
}

fn answered_by_plugin(out: &syncbase_plugin_runtime::Outcome<Resolution>) -> bool {
    matches!(out.decided_by, DecidedBy::Plugin(_)) && out.value == Resolution::KeepCurrent
}

#[test]
fn padding_a_plugin_with_a_custom_section_does_not_earn_the_heavy_limits() {
    let (_dir, rt) = runtime_with(RuntimeConfig {
        fuel_per_call: 2_000_000,
        heavy_fuel_per_call: 4_000_000_000,
        heavy_component_bytes: 1 << 20,
        ..RuntimeConfig::default()
    });
    let big = padded(counting(5_000_000), 2 << 20);
    let meta = rt.upload("padded", &big).expect("upload");
    assert!(meta.size > 2 << 20, "{meta:?}");
    assert!(meta.code_size < 64 << 10, "{meta:?}");
    let binding = rt
        .bind(Target::Resolver("posts".into()), "padded", None, "")
        .expect("bind");
    assert_eq!(binding.fuel, Some(2_000_000), "the light fuel budget");
    let out = call(&rt, "posts", 11);
    assert_eq!(out.failure(), Some(&CallFailure::OutOfFuel), "{out:?}");
}

#[test]
fn a_binding_keeps_the_limits_it_was_made_with_whatever_the_node_is_configured_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plugins");
    let generous = RuntimeConfig {
        fuel_per_call: 100_000_000,
        ..RuntimeConfig::default()
    };
    let frugal = RuntimeConfig {
        fuel_per_call: 2_000_000,
        ..RuntimeConfig::default()
    };
    let target = Target::Resolver("posts".into());
    {
        let rt = PluginRuntime::open(&path, generous).expect("open");
        rt.upload("slow", &counting(5_000_000)).expect("upload");
        let binding = rt.bind(target.clone(), "slow", None, "").expect("bind");
        assert_eq!(binding.fuel, Some(100_000_000));
        assert!(answered_by_plugin(&call(&rt, "posts", 11)));
    }
    // The same binding on a node whose own default is too small for it (a restart with
    // other flags, or another node applying the same binding event).
    let rt = PluginRuntime::open(&path, frugal).expect("reopen");
    let out = call(&rt, "posts", 11);
    assert!(answered_by_plugin(&out), "{out:?}");
    // A new binding takes the node's defaults.
    let fresh = rt
        .dry_run_resolve(
            "slow",
            None,
            "",
            &version(Some(record_json("a", 1)), 10, "n1"),
            &change(Op::Update, Some(record_json("b", 1)), None, 11, "n2"),
        )
        .expect("dry run");
    assert_eq!(fresh.failure(), Some(&CallFailure::OutOfFuel));
}

#[test]
fn a_binding_kept_for_rollback_keeps_its_code_but_not_its_instances() {
    let (_dir, rt) = runtime_with(RuntimeConfig::default());
    let target = Target::Resolver("posts".into());
    rt.upload("big", &growing(128)).expect("upload big");
    rt.upload("small", &hostile_resolver("(i32.const 48)", ""))
        .expect("upload small");
    rt.bind(target.clone(), "big", None, "").expect("bind big");
    assert!(answered_by_plugin(&call(&rt, "posts", 11)));
    let held = rt.stats().instance_memory;
    assert!(held >= 8 << 20, "a warm 8 MiB instance: {held}");

    rt.bind(target.clone(), "small", None, "")
        .expect("bind small");
    assert!(answered_by_plugin(&call(&rt, "posts", 11)));
    let after = rt.stats().instance_memory;
    assert!(after < 1 << 20, "only the small plugin's instance: {after}");
    let slot = rt.bindings().slots[&target].clone();
    assert_eq!(slot.previous.map(|b| b.plugin), Some("big".into()));

    // Rolling back needs no upload and no compilation: the code stayed loaded.
    let compiled = rt.stats().compiled;
    rt.rollback(&target).expect("rollback");
    let out = call(&rt, "posts", 11);
    assert!(
        matches!(&out.decided_by, DecidedBy::Plugin(p) if p.name == "big"),
        "{out:?}"
    );
    assert_eq!(rt.stats().compiled, compiled);
}

#[test]
fn the_node_memory_budget_drops_idle_instances_and_never_decides_a_call() {
    let (_dir, rt) = runtime_with(RuntimeConfig {
        memory_cap: 32 << 20,
        memory_budget: 12 << 20,
        ..RuntimeConfig::default()
    });
    rt.upload("grow8", &growing(128)).expect("upload");
    rt.upload("grow16", &growing(256)).expect("upload");
    for c in ["posts", "tags"] {
        rt.bind(Target::Resolver(c.into()), "grow8", None, "")
            .expect("bind");
    }
    rt.bind(Target::Resolver("notes".into()), "grow16", None, "")
        .expect("bind");
    // Each 8 MiB instance fits alone; the second one fits once the first, idle, is dropped.
    assert!(answered_by_plugin(&call(&rt, "posts", 11)));
    assert!(answered_by_plugin(&call(&rt, "tags", 11)));
    assert!(answered_by_plugin(&call(&rt, "posts", 11)));
    assert!(rt.stats().instance_memory <= 12 << 20);

    // 16 MiB is within the plugin's cap but over the node's budget: not the plugin's
    // failure (another node would answer), so no default is decided for it.
    let out = call(&rt, "notes", 11);
    let failure = out.failure().expect("no instance memory");
    assert!(
        matches!(failure, CallFailure::Unavailable(m) if m.contains("budget")),
        "{failure:?}"
    );
    assert!(failure.is_node_fault());
    assert!(rt.stats().instance_memory <= 12 << 20);
}
