//! The glue between the generated bindings and the traits: conversions between
//! generated and idiomatic types, and the per-instance plugin state.
//!
//! Only compiled for `wasm32`, where plugins become components; natively a
//! plugin is an ordinary library whose trait impl is unit-tested directly.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::arena;
use crate::bindings::types as wit;
use crate::types::{Change, Decision, Direction, Op, Resolution, Stats, Verdict, Version};
use crate::worlds::{Filter, Resolver, SnapshotPolicy};

/// Per-instance plugin state, set by `configure`.
pub type State<T> = LocalKey<RefCell<Option<T>>>;

/// Configures the plugin. Its state outlives the call, so it is allocated
/// outside the per-call arena (see `arena.rs`).
fn configure_with<T>(
    state: &'static State<T>,
    make: impl FnOnce() -> Result<T, String>,
) -> Result<(), String> {
    let plugin = arena::persistent(make)?;
    state.with_borrow_mut(|slot| *slot = Some(plugin));
    Ok(())
}

/// Runs `call` with the configured plugin, configuring it with the defaults
/// first if the host never called `configure` (it always does).
fn with_plugin<T, R>(
    state: &'static State<T>,
    make: impl FnOnce() -> Result<T, String>,
    call: impl FnOnce(&T) -> R,
) -> R {
    state.with_borrow_mut(|slot| {
        if slot.is_none() {
            match arena::persistent(make) {
                Ok(plugin) => *slot = Some(plugin),
                Err(e) => panic!("plugin cannot run with its default configuration: {e}"),
            }
        }
        match slot.as_ref() {
            Some(plugin) => call(plugin),
            None => unreachable!("the plugin slot was just filled"),
        }
    })
}

fn op_from(op: wit::Op) -> Op {
    match op {
        wit::Op::Create => Op::Create,
        wit::Op::Update => Op::Update,
        wit::Op::Delete => Op::Delete,
    }
}

fn op_to(op: Op) -> wit::Op {
    match op {
        Op::Create => wit::Op::Create,
        Op::Update => wit::Op::Update,
        Op::Delete => wit::Op::Delete,
    }
}

fn version_from(v: wit::Version) -> Version {
    Version {
        data: v.data,
        hlc: v.hlc,
        origin: v.origin,
    }
}

fn change_from(c: wit::Change) -> Change {
    Change {
        op: op_from(c.op),
        collection: c.collection,
        id: c.id,
        data: c.data,
        hlc: c.hlc,
        origin: c.origin,
        before: c.before,
    }
}

fn change_to(c: Change) -> wit::Change {
    wit::Change {
        op: op_to(c.op),
        collection: c.collection,
        id: c.id,
        data: c.data,
        hlc: c.hlc,
        origin: c.origin,
        before: c.before,
    }
}

pub fn resolver_configure<T: Resolver>(
    state: &'static State<T>,
    config: &str,
) -> Result<(), String> {
    configure_with(state, || T::configure(config))
}

pub fn resolver_resolve<T: Resolver>(
    state: &'static State<T>,
    current: wit::Version,
    incoming: wit::Change,
) -> wit::Resolution {
    let (current, incoming) = (version_from(current), change_from(incoming));
    let resolution = with_plugin(
        state,
        || T::configure(""),
        |p| p.resolve(&current, &incoming),
    );
    match resolution {
        Resolution::KeepCurrent => wit::Resolution::KeepCurrent,
        Resolution::TakeIncoming => wit::Resolution::TakeIncoming,
        Resolution::Merged(fields) => {
            wit::Resolution::Merged(serde_json::Value::Object(fields).to_string())
        }
        Resolution::MergedJson(text) => wit::Resolution::Merged(text),
    }
}

pub fn filter_configure<T: Filter>(state: &'static State<T>, config: &str) -> Result<(), String> {
    configure_with(state, || T::configure(config))
}

pub fn filter_filter<T: Filter>(
    state: &'static State<T>,
    direction: wit::Direction,
    change: wit::Change,
) -> wit::Verdict {
    let direction = match direction {
        wit::Direction::Outbound => Direction::Outbound,
        wit::Direction::Inbound => Direction::Inbound,
    };
    let change = change_from(change);
    match with_plugin(state, || T::configure(""), |p| p.filter(direction, change)) {
        Verdict::Keep => wit::Verdict::Keep,
        Verdict::Drop => wit::Verdict::Drop,
        Verdict::Replace(c) => wit::Verdict::Replace(change_to(c)),
    }
}

pub fn snapshot_configure<T: SnapshotPolicy>(
    state: &'static State<T>,
    config: &str,
) -> Result<(), String> {
    configure_with(state, || T::configure(config))
}

pub fn snapshot_decide<T: SnapshotPolicy>(
    state: &'static State<T>,
    stats: wit::Stats,
) -> wit::Decision {
    let stats = Stats {
        events_since: stats.events_since,
        bytes_since: stats.bytes_since,
        ms_since: stats.ms_since,
        stream_seq: stats.stream_seq,
        content_bytes: stats.content_bytes,
        snapshots: stats.snapshots,
    };
    let Decision { take, keep } = with_plugin(state, || T::configure(""), |p| p.decide(&stats));
    wit::Decision { take, keep }
}
