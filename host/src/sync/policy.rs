//! The fold's deterministic functions, backed by the node's plugin runtime: each collection's
//! resolver and filters (or the built-in defaults), and plugin binding events.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use syncbase_plugin_runtime::types::{
    Change as WitChange, Direction, Op as WitOp, Resolution, Stats, Verdict, Version,
};

use crate::plugins::{DecidedBy, OutboundEvent, Plugins, Target};
use crate::replication::{Event, EventKind};
use crate::store::Collection;
use crate::store::StoreError;
use crate::store::records::Record;
use crate::store::snapshot::stats::{SnapshotDecision, SnapshotStats, builtin_decision};
use crate::store::sync::{Current, Filtered, Policy, Resolved, json_text};

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
        if !self.plugins.runtime.has_filter(&c.name, direction) {
            return Ok(Filtered::Keep);
        }
        let change = wit_change(event);
        let out = self.plugins.runtime.filter(&c.name, direction, &change);
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

fn wit_change(event: &Event) -> WitChange {
    WitChange {
        op: match event.kind {
            EventKind::RecordCreate => WitOp::Create,
            EventKind::RecordDelete => WitOp::Delete,
            _ => WitOp::Update,
        },
        collection: event.collection.name.clone(),
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
        let out = self
            .plugins
            .runtime
            .resolve(&c.name, &version, &wit_change(incoming));
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

    fn bind(&self, event: &Event) -> Result<Result<(), String>, StoreError> {
        let Some(data) = event.data.as_ref() else {
            return Ok(Err("binding event without data".into()));
        };
        let target: Target =
            match serde_json::from_value(data.get("target").cloned().unwrap_or_default()) {
                Ok(t) => t,
                Err(e) => return Ok(Err(format!("invalid binding target: {e}"))),
            };
        let rt = &self.plugins.runtime;
        let done = match binding_plugin(event) {
            None => rt.unbind(&target).map(|_| ()),
            Some((name, sha)) => {
                let config = data.get("config").and_then(Value::as_str).unwrap_or("");
                let Some(version) = rt
                    .list()
                    .into_iter()
                    .find(|p| p.version.sha256 == sha && p.version.name == name)
                    .map(|p| p.version.version)
                else {
                    return Ok(Err(format!(
                        "plugin {name} ({sha}) is not loadable on this node"
                    )));
                };
                rt.bind(target, name, Some(version), config).map(|_| ())
            }
        };
        match done {
            Ok(()) => Ok(Ok(())),
            Err(e) if e.is_node_fault() => Err(StoreError::Unavailable(e.to_string())),
            Err(e) => Ok(Err(e.to_string())),
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

/// The `data` of a binding event: bind `plugin` (by content) to `target`, or unbind.
pub fn binding_data(target: &Target, plugin: Option<(&str, &str, &str)>) -> Value {
    match plugin {
        Some((name, sha, config)) => {
            json!({"target": target, "plugin": name, "sha256": sha, "config": config})
        }
        None => json!({"target": target}),
    }
}
