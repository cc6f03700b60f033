//! Hot swap, rollback, persistence, the compile cache and deletion rules.

mod support;

use std::time::{Duration, Instant};

use support::{change, hostile_resolver, plugin, record_json, runtime_with, version};
use syncbase_plugin_runtime::types::{Op, Resolution};
use syncbase_plugin_runtime::{
    Binding, BindingTable, DecidedBy, InstanceReuse, PluginError, PluginRuntime, RuntimeConfig,
    Slot, Target,
};

/// A resolver that counts to 100 million, then answers keep-current.
fn slow_keep_current() -> Vec<u8> {
    hostile_resolver(
        "(global.set $n (i32.const 0))
         (loop $l
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (br_if $l (i32.lt_u (global.get $n) (i32.const 100000000))))
         (i32.const 48)",
        "(global $n (mut i32) (i32.const 0))",
    )
}

fn decided_by(out: &DecidedBy) -> Option<(String, u32)> {
    match out {
        DecidedBy::Plugin(p) => Some((p.name.clone(), p.version)),
        _ => None,
    }
}

/// Waits for `condition`, failing after a generous deadline.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_swap_applies_to_the_next_call_while_a_call_in_flight_finishes_on_the_old_version() {
    let (_dir, rt) = runtime_with(RuntimeConfig {
        fuel_per_call: 4_000_000_000,
        ..RuntimeConfig::default()
    });
    let target = Target::Resolver("posts".into());
    assert_eq!(
        rt.upload("policy", &slow_keep_current())
            .expect("v1")
            .version,
        1
    );
    assert_eq!(rt.upload("policy", plugin("lww")).expect("v2").version, 2);
    rt.bind(target.clone(), "policy", Some(1), "")
        .expect("bind v1");

    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    std::thread::scope(|s| {
        let in_flight = s.spawn(|| rt.resolve("posts", &current, &later));
        wait_for("the v1 call to start", || {
            rt.metrics("policy", 1).is_some_and(|m| m.in_flight == 1)
        });
        rt.bind(target.clone(), "policy", Some(2), "")
            .expect("bind v2");
        let next = rt.resolve("posts", &current, &later);
        assert_eq!(next.value, Resolution::TakeIncoming);
        assert_eq!(decided_by(&next.decided_by), Some(("policy".into(), 2)));

        let old = in_flight.join().expect("the in-flight call completes");
        assert_eq!(old.value, Resolution::KeepCurrent, "v1's answer, not v2's");
        assert_eq!(decided_by(&old.decided_by), Some(("policy".into(), 1)));
    });

    let slot = rt.bindings().slots[&target].clone();
    assert_eq!(slot.active.map(|b| b.version), Some(2));
    assert_eq!(slot.previous.map(|b| b.version), Some(1));

    // Rollback is instant: v1's code is still loaded (its instances were freed while it was
    // only kept for rollback, so its first call makes one).
    let instances_before = rt.metrics("policy", 1).expect("v1 metrics").instantiations;
    let compiled_before = rt.stats().compiled;
    assert_eq!(rt.rollback(&target).expect("rollback").version, 1);
    let out = rt.resolve("posts", &current, &later);
    assert_eq!(decided_by(&out.decided_by), Some(("policy".into(), 1)));
    assert_eq!(
        rt.metrics("policy", 1).expect("v1 metrics").instantiations,
        instances_before + 1,
        "one fresh instance, from the loaded code"
    );
    assert_eq!(rt.stats().compiled, compiled_before, "nothing recompiled");
    // And forward again.
    assert_eq!(rt.rollback(&target).expect("roll forward").version, 2);
}

#[test]
fn unbinding_restores_the_default_and_can_be_rolled_back() {
    let (_dir, rt) = runtime_with(RuntimeConfig::default());
    let target = Target::Resolver("posts".into());
    rt.upload("keep", &hostile_resolver("(i32.const 48)", ""))
        .expect("upload");
    assert!(matches!(
        rt.rollback(&target),
        Err(PluginError::NothingToRollBack(_))
    ));
    rt.bind(target.clone(), "keep", None, "").expect("bind");
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    assert_eq!(
        rt.resolve("posts", &current, &later).value,
        Resolution::KeepCurrent
    );

    let unbound = rt.unbind(&target).expect("unbind");
    assert_eq!(unbound.map(|b| b.plugin), Some("keep".to_string()));
    let out = rt.resolve("posts", &current, &later);
    assert_eq!(
        (out.value, out.decided_by),
        (Resolution::TakeIncoming, DecidedBy::Default)
    );

    rt.rollback(&target).expect("rollback re-binds");
    assert_eq!(
        rt.resolve("posts", &current, &later).value,
        Resolution::KeepCurrent
    );
}

#[test]
fn bindings_and_compiled_code_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plugins");
    let table = {
        let rt = PluginRuntime::open(&path, RuntimeConfig::default()).expect("open");
        rt.upload("field-merge", plugin("field-merge"))
            .expect("upload");
        rt.upload("redact", plugin("redact")).expect("upload");
        rt.bind(Target::Resolver("posts".into()), "field-merge", None, "")
            .expect("bind");
        rt.bind(
            Target::OutboundFilter("users".into()),
            "redact",
            None,
            r#"{"fields":["email"]}"#,
        )
        .expect("bind");
        assert_eq!(rt.stats().compiled, 2);
        rt.bindings()
    };

    let rt = PluginRuntime::open(&path, RuntimeConfig::default()).expect("reopen");
    assert_eq!(rt.bindings(), table);
    let stats = rt.stats();
    assert_eq!(
        (stats.compiled, stats.loaded_from_cache),
        (0, 2),
        "{stats:?}"
    );
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    let out = rt.resolve("posts", &current, &later);
    assert_eq!(decided_by(&out.decided_by), Some(("field-merge".into(), 1)));
    drop(rt);

    // A damaged cache entry is detected and recompiled, not loaded.
    for entry in std::fs::read_dir(path.join("cache"))
        .expect("cache dir")
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "cwasm") {
            let bytes = std::fs::read(entry.path()).expect("read");
            std::fs::write(entry.path(), &bytes[..bytes.len() / 2]).expect("truncate");
        }
    }
    let rt = PluginRuntime::open(&path, RuntimeConfig::default()).expect("reopen");
    let stats = rt.stats();
    assert_eq!(
        (stats.compiled, stats.loaded_from_cache),
        (2, 0),
        "{stats:?}"
    );
    assert_eq!(rt.bindings(), table);
}

#[test]
fn only_unbound_versions_can_be_deleted() {
    let (_dir, rt) = runtime_with(RuntimeConfig::default());
    let target = Target::Resolver("posts".into());
    rt.upload("p", plugin("lww")).expect("v1");
    rt.upload("p", plugin("field-merge")).expect("v2");
    rt.bind(target.clone(), "p", Some(1), "").expect("bind v1");
    rt.bind(target.clone(), "p", Some(2), "").expect("bind v2");
    for v in [1, 2] {
        let err = rt.delete("p", Some(v)).expect_err("bound");
        assert!(
            matches!(err, PluginError::InUse { version, .. } if version == v),
            "{err}"
        );
    }
    rt.unbind(&target).expect("unbind");
    // v2 is now the rollback target; v1 is free.
    rt.delete("p", Some(1)).expect("delete v1");
    assert!(matches!(
        rt.delete("p", None),
        Err(PluginError::InUse { .. })
    ));
    assert!(matches!(
        rt.delete("p", Some(1)),
        Err(PluginError::NotFound { .. })
    ));
    let info = rt.show("p").expect("show");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].bindings.len(), 1, "{:?}", info[0].bindings);
}

#[test]
fn a_binding_table_naming_unknown_bytes_changes_nothing() {
    let (_dir, rt) = runtime_with(RuntimeConfig::default());
    rt.upload("lww", plugin("lww")).expect("upload");
    rt.bind(Target::Resolver("posts".into()), "lww", None, "")
        .expect("bind");
    let before = rt.bindings();
    let mut table = BindingTable::default();
    table.slots.insert(
        Target::Resolver("other".into()),
        Slot {
            active: Some(Binding {
                plugin: "elsewhere".into(),
                version: 1,
                sha256: "00".repeat(32),
                config: String::new(),
                fuel: None,
                memory_cap: None,
            }),
            previous: None,
        },
    );
    let err = rt.apply_bindings(table).expect_err("unknown plugin");
    assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
    assert_eq!(rt.bindings(), before);
    // Applying the current table again keeps the live, warm bindings.
    let instances = rt.metrics("lww", 1).expect("metrics").instantiations;
    rt.apply_bindings(before.clone()).expect("same table");
    assert_eq!(
        rt.metrics("lww", 1).expect("metrics").instantiations,
        instances
    );
}

#[test]
fn warm_instances_are_reused_and_per_call_instances_are_not() {
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    for (reuse, expected_instances) in [
        (
            InstanceReuse::Warm {
                max_idle: 4,
                max_calls: 1000,
            },
            1,
        ),
        (InstanceReuse::PerCall, 4),
    ] {
        let (_dir, rt) = runtime_with(RuntimeConfig {
            reuse,
            ..RuntimeConfig::default()
        });
        rt.upload("lww", plugin("lww")).expect("upload");
        rt.bind(Target::Resolver("posts".into()), "lww", None, "")
            .expect("bind");
        for _ in 0..3 {
            assert_eq!(
                rt.resolve("posts", &current, &later).value,
                Resolution::TakeIncoming
            );
        }
        let m = rt.metrics("lww", 1).expect("metrics");
        assert_eq!(
            (m.calls, m.instantiations),
            (3, expected_instances),
            "{reuse:?}"
        );
    }
}
