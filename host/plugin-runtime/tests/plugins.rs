//! The shipped plugins, built from `plugins/` into real components, uploaded,
//! bound and called through the runtime.

mod support;

use serde_json::{Value, json};
use support::{change, plugin, record_json, runtime, runtime_with, version};
use syncbase_plugin_build::Lang;
use syncbase_plugin_runtime::types::{Decision, Direction, Op, Resolution, Stats, Verdict};
use syncbase_plugin_runtime::{
    DecidedBy, InstanceReuse, PluginError, RuntimeConfig, Target, World,
};

fn merged(r: &Resolution) -> Value {
    match r {
        Resolution::Merged(text) => serde_json::from_str(text).expect("merged record is JSON"),
        other => panic!("expected a merged record, got {other:?}"),
    }
}

#[test]
fn every_shipped_plugin_uploads_as_its_world() {
    let (_dir, rt) = runtime();
    let expected = [
        ("lww", World::Resolver),
        ("field-merge", World::Resolver),
        ("counter", World::Resolver),
        ("redact", World::Filter),
        ("local-only", World::Filter),
        ("every-n", World::SnapshotPolicy),
        ("proportional", World::SnapshotPolicy),
    ];
    for (name, world) in expected {
        let v = rt.upload(name, plugin(name)).expect("upload");
        assert_eq!((v.name.as_str(), v.version, v.world), (name, 1, world));
        assert!(
            v.exports.contains(&"configure".to_string()),
            "{:?}",
            v.exports
        );
        // The same bytes again are the same version, not a new one.
        assert_eq!(rt.upload(name, plugin(name)).expect("re-upload").version, 1);
    }
    let listed: Vec<_> = rt.list().into_iter().map(|i| i.version.name).collect();
    assert_eq!(listed.len(), 7);
}

#[test]
fn unbound_collections_use_the_builtin_last_writer_wins() {
    let (_dir, rt) = runtime();
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    let out = rt.resolve("posts", &current, &later);
    assert_eq!(out.value, Resolution::TakeIncoming);
    assert_eq!(out.decided_by, DecidedBy::Default);
}

#[test]
fn lww_resolves_by_hlc_then_origin() {
    let (_dir, rt) = runtime();
    rt.upload("lww", plugin("lww")).expect("upload");
    rt.bind(Target::Resolver("posts".into()), "lww", None, "")
        .expect("bind");
    let current = version(Some(record_json("a", 1)), 10, "n2");
    let tie_lower = change(Op::Update, Some(record_json("b", 1)), None, 10, "n1");
    let tie_higher = change(Op::Update, Some(record_json("b", 1)), None, 10, "n3");
    let out = rt.resolve("posts", &current, &tie_lower);
    assert_eq!(out.value, Resolution::KeepCurrent);
    assert!(matches!(out.decided_by, DecidedBy::Plugin(ref p) if p.name == "lww"));
    assert_eq!(
        rt.resolve("posts", &current, &tie_higher).value,
        Resolution::TakeIncoming
    );
    let m = rt.metrics("lww", 1).expect("metrics");
    assert_eq!((m.calls, m.failures), (2, 0));
}

#[test]
fn field_merge_keeps_concurrent_edits_to_different_fields() {
    let (_dir, rt) = runtime();
    rt.upload("field-merge", plugin("field-merge"))
        .expect("upload");
    rt.bind(Target::Resolver("posts".into()), "field-merge", None, "")
        .expect("bind");
    // Base: title "t0", likes 1. n1 changed the title; n2 (older HLC) the likes.
    let current = version(Some(record_json("t1", 1)), 20, "n1");
    let incoming = change(
        Op::Update,
        Some(record_json("t0", 5)),
        Some(json!({"likes": 1}).to_string()),
        10,
        "n2",
    );
    let out = rt.resolve("posts", &current, &incoming);
    let record = merged(&out.value);
    assert_eq!(
        (record["title"].clone(), record["likes"].clone()),
        (json!("t1"), json!(5))
    );
}

#[test]
fn counter_adds_concurrent_increments() {
    let (_dir, rt) = runtime();
    rt.upload("counter", plugin("counter")).expect("upload");
    rt.bind(
        Target::Resolver("posts".into()),
        "counter",
        None,
        r#"{"fields":["likes"]}"#,
    )
    .expect("bind");
    // Base likes 10; current added 3 (13), incoming added 4 (14).
    let current = version(Some(record_json("t", 13)), 20, "n1");
    let incoming = change(
        Op::Update,
        Some(record_json("t", 14)),
        Some(json!({"likes": 10}).to_string()),
        30,
        "n2",
    );
    let record = merged(&rt.resolve("posts", &current, &incoming).value);
    assert_eq!(record["likes"], json!(17));
}

/// The guest SDK's per-call arena reuses memory between calls and grows when
/// a call outgrows it: a warm instance must answer exactly like a fresh one,
/// whatever sizes of records it served before, and keep its configuration.
#[test]
fn a_warm_instance_answers_like_a_fresh_one_whatever_it_served_before() {
    let bound = |reuse| {
        let (dir, rt) = runtime_with(RuntimeConfig {
            reuse,
            ..RuntimeConfig::default()
        });
        rt.upload("counter", plugin("counter")).expect("upload");
        rt.bind(
            Target::Resolver("posts".into()),
            "counter",
            None,
            r#"{"fields":["likes"]}"#,
        )
        .expect("bind");
        (dir, rt)
    };
    let (_warm_dir, warm) = bound(InstanceReuse::Warm {
        max_idle: 1,
        max_calls: u64::MAX,
    });
    let (_fresh_dir, fresh) = bound(InstanceReuse::PerCall);
    // Bodies from a few bytes to well past the arena's first chunks (16 KiB,
    // doubling), within the default fuel budget.
    for (i, body) in [10, 300_000, 10, 70_000, 400_000, 500, 150_000, 10]
        .into_iter()
        .enumerate()
    {
        let likes = i as i64;
        let record = |title: &str, likes: i64| {
            json!({"title": title, "likes": likes, "body": "x".repeat(body)}).to_string()
        };
        let current = version(Some(record("now", 13 + likes)), 20, "n1");
        let incoming = change(
            Op::Update,
            Some(record("before", 14 + likes)),
            Some(json!({"likes": 10 + likes}).to_string()),
            30,
            "n2",
        );
        let (a, b) = (
            warm.resolve("posts", &current, &incoming),
            fresh.resolve("posts", &current, &incoming),
        );
        assert!(matches!(a.decided_by, DecidedBy::Plugin(_)), "{a:?}");
        assert_eq!(a.value, b.value, "call {i} with a {body}-byte body");
        assert_eq!(merged(&a.value)["likes"], json!(17 + likes));
    }
    assert_eq!(
        warm.list()[0].metrics.instantiations,
        1,
        "one instance served every call"
    );
}

#[test]
fn redact_rewrites_outbound_changes_and_needs_a_configuration() {
    let (_dir, rt) = runtime();
    rt.upload("redact", plugin("redact")).expect("upload");
    let target = Target::OutboundFilter("users".into());
    let refused = rt.bind(target.clone(), "redact", None, "");
    assert!(
        matches!(refused, Err(PluginError::Config { ref message, .. }) if message.contains("fields")),
        "{refused:?}"
    );
    assert!(
        rt.bindings().slots.is_empty(),
        "a refused bind binds nothing"
    );
    rt.bind(target, "redact", None, r#"{"fields":["email"]}"#)
        .expect("bind");
    let mut c = change(
        Op::Update,
        Some(json!({"name": "Ann", "email": "ann@example.com"}).to_string()),
        Some(json!({"email": "old@example.com"}).to_string()),
        1,
        "n1",
    );
    c.collection = "users".into();
    let out = rt.filter("users", Direction::Outbound, &c);
    let Verdict::Replace(redacted) = out.value else {
        panic!("expected a rewritten change, got {:?}", out.value);
    };
    let data: Value = serde_json::from_str(redacted.data.as_deref().unwrap_or("")).expect("json");
    assert_eq!(data, json!({"name": "Ann"}));
    assert_eq!(redacted.before.as_deref(), Some("{}"));
    // Inbound has no filter bound: kept by default.
    assert_eq!(
        rt.filter("users", Direction::Inbound, &c).value,
        Verdict::Keep
    );
}

#[test]
fn local_only_drops_listed_collections() {
    let (_dir, rt) = runtime();
    rt.upload("local-only", plugin("local-only"))
        .expect("upload");
    rt.bind(
        Target::OutboundFilter("drafts".into()),
        "local-only",
        None,
        "",
    )
    .expect("bind");
    let mut c = change(Op::Create, Some("{}".into()), None, 1, "n1");
    c.collection = "drafts".into();
    assert!(rt.has_filter("drafts", Direction::Outbound));
    assert_eq!(
        rt.filter("drafts", Direction::Outbound, &c).value,
        Verdict::Drop
    );
    assert_eq!(
        rt.filter("posts", Direction::Outbound, &c).value,
        Verdict::Keep
    );
}

#[test]
fn every_n_decides_snapshots_and_binds_to_the_node_only() {
    let (_dir, rt) = runtime();
    rt.upload("every-n", plugin("every-n")).expect("upload");
    let wrong = rt.bind(Target::Resolver("posts".into()), "every-n", None, "");
    assert!(
        matches!(wrong, Err(PluginError::WorldMismatch { .. })),
        "{wrong:?}"
    );
    rt.bind(
        Target::SnapshotPolicy,
        "every-n",
        None,
        r#"{"events":100,"keep":2}"#,
    )
    .expect("bind");
    let stats = |events_since| Stats {
        events_since,
        bytes_since: 0,
        ms_since: 0,
        stream_seq: 1000,
        content_bytes: 1 << 20,
        snapshots: 1,
    };
    assert_eq!(
        rt.decide(stats(99)).value,
        Decision {
            take: false,
            keep: 2
        }
    );
    assert_eq!(
        rt.decide(stats(100)).value,
        Decision {
            take: true,
            keep: 2
        }
    );
}

#[test]
fn a_dry_run_calls_an_unbound_resolver() {
    let (_dir, rt) = runtime();
    rt.upload("field-merge", plugin("field-merge"))
        .expect("upload");
    let current = version(Some(record_json("t1", 1)), 20, "n1");
    let incoming = change(
        Op::Update,
        Some(record_json("t0", 2)),
        Some(json!({"likes": 1}).to_string()),
        10,
        "n2",
    );
    let out = rt
        .dry_run_resolve("field-merge", None, "", &current, &incoming)
        .expect("dry run");
    assert_eq!(merged(&out.value)["likes"], json!(2));
    assert!(rt.bindings().slots.is_empty());
    assert!(matches!(
        rt.dry_run_resolve("nope", None, "", &current, &incoming),
        Err(PluginError::NotFound { .. })
    ));
}

/// Each binding keeps warm instances, and each instance holds slots of the engine's pool.
/// With more bindings than slots, a binding that needs an instance gets one: idle
/// instances of the others give way instead of the call falling back to the default
/// (which would make this node decide differently from a node with more slots).
#[test]
fn more_bindings_than_instance_slots_all_get_their_plugin() {
    let (_dir, rt) = runtime_with(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    });
    rt.upload("lww", plugin("lww")).expect("upload");
    let collections: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    for c in &collections {
        rt.bind(Target::Resolver(c.clone()), "lww", None, "")
            .unwrap_or_else(|e| panic!("bind {c}: {e}"));
    }
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    for round in 0..3 {
        for c in &collections {
            let out = rt.resolve(c, &current, &later);
            assert!(
                matches!(out.decided_by, DecidedBy::Plugin(_)),
                "round {round}, {c}: {:?}",
                out.decided_by
            );
            assert_eq!(out.value, Resolution::TakeIncoming);
        }
    }
}

/// A Python instance is dozens of core instances (CPython and its libraries): the default
/// pool keeps a warm one for every binding of many Python plugins, without dropping and
/// re-creating instances (1-3 ms each) between calls.
#[test]
fn the_default_pool_keeps_many_python_bindings_warm() {
    let (_dir, rt) = runtime();
    rt.upload("fm-py", support::component(Lang::Python, "field-merge"))
        .expect("upload");
    let bindings = 20;
    for i in 0..bindings {
        rt.bind(Target::Resolver(format!("c{i}")), "fm-py", None, "")
            .unwrap_or_else(|e| panic!("bind c{i}: {e}"));
    }
    let current = version(Some(record_json("a", 1)), 10, "n1");
    let later = change(Op::Update, Some(record_json("b", 1)), None, 11, "n2");
    for i in 0..bindings {
        let out = rt.resolve(&format!("c{i}"), &current, &later);
        assert!(
            matches!(out.decided_by, DecidedBy::Plugin(_)),
            "c{i}: {:?}",
            out.decided_by
        );
    }
    assert_eq!(
        rt.list()[0].metrics.instantiations,
        bindings,
        "one instance per binding, each kept warm"
    );
}
