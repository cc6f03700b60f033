//! The fold's deterministic functions, backed by the node's plugin runtime: each collection's
//! resolver and filters (or the built-in defaults), and plugin binding events.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use syncbase_plugin_runtime::types::{
    Change as WitChange, Direction, Op as WitOp, Resolution, Stats, Verdict, Version,
};

use crate::plugins::{Binding, DecidedBy, OutboundEvent, Plugins, Target};
use crate::replication::{Event, EventKind};
use crate::store::StoreError;
use crate::store::records::Record;
use crate::store::snapshot::stats::{SnapshotDecision, SnapshotStats, builtin_decision};
use crate::store::sync::{Current, Filtered, Policy, Resolved, json_text};
use crate::store::{Collection, Schema};

/// Resolvers and filters from the plugin runtime.
pub struct PluginPolicy {
    plugins: Plugins,
}

impl PluginPolicy {
    pub fn new(plugins: Plugins) -> PluginPolicy {
        PluginPolicy { plugins }
    }

    fn filter(
        &self,
        c: &Collection,
        direction: Direction,
        event: &Event,
    ) -> Result<Filtered, StoreError> {
        // Most collections have no filter: no WIT conversion (a JSON encoding of the record).
        if !self.plugins.runtime.has_filter(&c.id, direction) {
            return Ok(Filtered::Keep);
        }
        let change = wit_change(c, event);
        let out = self.plugins.runtime.filter(&c.id, direction, &change);
        node_fault(&out.decided_by)?;
        if direction == Direction::Outbound && out.failure().is_some() {
            self.plugins
                .outbound
                .failures
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(match out.value {
            Verdict::Keep => Filtered::Keep,
            Verdict::Drop => Filtered::Drop,
            Verdict::Replace(ch) => match ch.data.as_deref().map(serde_json::from_str::<Record>) {
                Some(Ok(rec)) => Filtered::Replace(rec),
                _ => Filtered::Keep,
            },
        })
    }
}

/// A plugin that failed because of this node (no instance slot), not because of its input:
/// the default it fell back to is not what the other nodes decide, so it is not used.
fn node_fault(d: &DecidedBy) -> Result<(), StoreError> {
    match d {
        DecidedBy::Fallback { plugin, failure } if failure.is_node_fault() => {
            Err(StoreError::Unavailable(format!(
                "plugin {}@{} {failure}",
                plugin.name, plugin.version
            )))
        }
        _ => Ok(()),
    }
}

/// The change a plugin sees: the collection by its current name (bindings follow the id, so
/// a renamed collection's plugins see the new name).
fn wit_change(c: &Collection, event: &Event) -> WitChange {
    WitChange {
        op: match event.kind {
            EventKind::RecordCreate => WitOp::Create,
            EventKind::RecordDelete => WitOp::Delete,
            _ => WitOp::Update,
        },
        collection: c.name.clone(),
        id: event.record_id.clone().unwrap_or_default(),
        data: (event.kind != EventKind::RecordDelete)
            .then(|| event.data.as_ref().map(json_text))
            .flatten(),
        hlc: event.hlc.0,
        origin: event.origin.clone(),
        before: event.before.as_ref().map(json_text),
    }
}

fn label(d: &DecidedBy) -> String {
    match d {
        DecidedBy::Default => "default".into(),
        DecidedBy::Plugin(p) => format!("plugin {}@{}", p.name, p.version),
        DecidedBy::Fallback { plugin, failure } => format!(
            "default after plugin {}@{} failed: {}",
            plugin.name,
            plugin.version,
            failure.label()
        ),
    }
}

impl Policy for PluginPolicy {
    fn outbound(&self, c: &Collection, event: &Event) -> Result<Filtered, StoreError> {
        let filtered = self.filter(c, Direction::Outbound, event)?;
        let deleted = event.kind == EventKind::RecordDelete;
        let (verdict, data) = match &filtered {
            Filtered::Keep => ("keep", event.data.as_ref().filter(|_| !deleted)),
            Filtered::Drop => ("drop", None),
            Filtered::Replace(rec) => ("replace", Some(rec).filter(|_| !deleted)),
        };
        let op = match event.kind {
            EventKind::RecordCreate => "create",
            EventKind::RecordDelete => "delete",
            _ => "update",
        };
        self.plugins.outbound.record(OutboundEvent::new(
            c,
            event.id.as_str().to_string(),
            op,
            event.record_id.clone().unwrap_or_default(),
            data,
            verdict,
            self.plugins.outbound.max_bytes(),
        ));
        Ok(filtered)
    }

    fn inbound(&self, c: &Collection, event: &Event) -> Result<Filtered, StoreError> {
        self.filter(c, Direction::Inbound, event)
    }

    fn resolve(
        &self,
        c: &Collection,
        current: &Current,
        incoming: &Event,
    ) -> Result<(Resolved, String), StoreError> {
        let version = Version {
            data: current.data.as_ref().map(json_text),
            hlc: current.hlc,
            origin: current.origin.clone(),
        };
        self.plugins.counters.conflict(&c.id);
        let out = self
            .plugins
            .runtime
            .resolve(&c.id, &version, &wit_change(c, incoming));
        node_fault(&out.decided_by)?;
        let by = label(&out.decided_by);
        let resolved = match out.value {
            Resolution::KeepCurrent => Resolved::KeepCurrent,
            Resolution::TakeIncoming => Resolved::TakeIncoming,
            Resolution::Merged(text) => match serde_json::from_str::<Record>(&text) {
                Ok(rec) => Resolved::Merged(rec),
                // The runtime checked it is an object; anything else is the built-in rule.
                Err(_) => {
                    return Ok((
                        crate::store::sync::last_writer_wins(current, incoming),
                        format!("{by}; merged text unreadable"),
                    ));
                }
            },
        };
        Ok((resolved, by))
    }

    fn bindings(&self) -> String {
        self.plugins.runtime.bindings().to_json()
    }

    fn decide(&self, stats: &SnapshotStats) -> Result<SnapshotDecision, StoreError> {
        let out = self.plugins.runtime.decide(Stats {
            events_since: stats.events_since,
            bytes_since: stats.bytes_since,
            ms_since: stats.ms_since,
            stream_seq: stats.stream_seq,
            content_bytes: stats.content_bytes,
            snapshots: stats.snapshots,
        });
        // No policy bound to the cluster: the built-in one.
        if matches!(out.decided_by, DecidedBy::Default) {
            return Ok(builtin_decision(stats));
        }
        node_fault(&out.decided_by)?;
        Ok(SnapshotDecision {
            take: out.value.take,
            keep: out.value.keep,
            by: label(&out.decided_by),
        })
    }

    fn bind(&self, event: &Event, schema: &Schema) -> Result<Result<(), String>, StoreError> {
        let Some(data) = event.data.as_ref() else {
            return Ok(Err("binding event without data".into()));
        };
        let target: Target =
            match serde_json::from_value(data.get("target").cloned().unwrap_or_default()) {
                Ok(t) => t,
                Err(e) => return Ok(Err(format!("invalid binding target: {e}"))),
            };
        // Bindings name collections by id; events written before that named them by name.
        let target = match target.collection() {
            None => target,
            Some(c) => match schema.get(c) {
                Some(found) => target.with_collection(&found.id),
                None => return Ok(Err(format!("no collection {c:?} at this point of the log"))),
            },
        };
        let rt = &self.plugins.runtime;
        let done = match binding_of(event) {
            None => rt.unbind(&target).map(|_| ()),
            Some(mut binding) => {
                let Some(version) = rt
                    .list()
                    .into_iter()
                    .filter(|p| {
                        p.version.sha256 == binding.sha256 && p.version.name == binding.plugin
                    })
                    .map(|p| p.version.version)
                    .max()
                else {
                    return Ok(Err(format!(
                        "plugin {} ({}) is not loadable on this node",
                        binding.plugin, binding.sha256
                    )));
                };
                binding.version = version;
                rt.bind_exact(target, binding).map(|_| ())
            }
        };
        match done {
            Ok(()) => Ok(Ok(())),
            Err(e) if e.is_node_fault() => Err(StoreError::Unavailable(e.to_string())),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    fn plugin_in_use(&self, name: &str, version: u32) -> Option<String> {
        let table = self.plugins.runtime.bindings();
        let used: Vec<String> = table
            .slots
            .iter()
            .flat_map(|(target, slot)| {
                [
                    (&slot.active, "active"),
                    (&slot.previous, "kept for rollback"),
                ]
                .into_iter()
                .filter(|(b, _)| {
                    b.as_ref()
                        .is_some_and(|b| b.plugin == name && b.version == version)
                })
                .map(move |(_, state)| format!("{target}, {state}"))
            })
            .collect();
        (!used.is_empty()).then(|| used.join("; "))
    }

    fn registered(&self, meta: &Value) {
        match serde_json::from_value::<crate::plugins::PluginVersion>(meta.clone()) {
            Ok(meta) => {
                if let Err(e) = self.plugins.runtime.register(meta) {
                    tracing::warn!(error = %e, "registering a folded plugin version failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "a folded plugin version has unreadable metadata"),
        }
    }

    fn rejected_merge(&self, c: &Collection, reason: &str) {
        if self.plugins.counters.invalid_merge(&c.id) {
            tracing::warn!(
                collection = %c.name,
                reason,
                "a resolver's merged record does not fit the collection; the built-in default \
                 applied (further ones are counted in /metrics, not logged)"
            );
        }
    }

    fn drop_collection(&self, id: &str) -> Result<bool, StoreError> {
        self.plugins.counters.forget(id);
        match self.plugins.runtime.unbind_collection(id) {
            Ok(gone) => Ok(!gone.is_empty()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

/// The plugin a binding event binds: `(name, sha256)`; `None` for an unbind.
pub fn binding_plugin(event: &Event) -> Option<(&str, String)> {
    let data = event.data.as_ref()?;
    let name = data.get("plugin").and_then(Value::as_str)?;
    let sha = data.get("sha256").and_then(Value::as_str)?;
    Some((name, sha.to_string()))
}

/// The binding a binding event makes (version to be matched locally by name and sha256);
/// `None` for an unbind. Limits are the event's: every node runs the plugin under them.
fn binding_of(event: &Event) -> Option<Binding> {
    let data = event.data.as_ref()?;
    let (name, sha256) = binding_plugin(event)?;
    Some(Binding {
        plugin: name.to_string(),
        version: data.get("version").and_then(Value::as_u64).unwrap_or(0) as u32,
        sha256,
        config: data
            .get("config")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        fuel: data.get("fuel").and_then(Value::as_u64),
        memory_cap: data.get("memoryCap").and_then(Value::as_u64),
    })
}

/// The `data` of a binding event: bind `binding` (by content, with its configuration and
/// limits) to `target`, or unbind.
pub fn binding_data(target: &Target, binding: Option<&Binding>) -> Value {
    match binding {
        Some(b) => {
            let mut data = json!({
                "target": target, "plugin": b.plugin, "version": b.version,
                "sha256": b.sha256, "config": b.config,
            });
            if let Some(fuel) = b.fuel {
                data["fuel"] = json!(fuel);
            }
            if let Some(memory) = b.memory_cap {
                data["memoryCap"] = json!(memory);
            }
            data
        }
        None => json!({"target": target}),
    }
}
