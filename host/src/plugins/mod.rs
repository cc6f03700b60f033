//! The server's side of plugins: the one `PluginRuntime` of the node, async wrappers that keep
//! compilation and calls off the async runtime, conversions between records and the WIT types,
//! and the outbound stage that runs outbound filters over the change feed.
//!
//! wasmtime stays inside `syncbase-plugin-runtime`; this module only sees its typed API. It
//! must not reach into SQLite or HTTP.

pub mod metrics;
mod outbound;
pub mod vectors;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

pub use metrics::PolicyCounters;
pub use outbound::{OUTBOUND_BYTES, OUTBOUND_ENTRIES, OutboundEvent, OutboundLog, run_outbound};
pub use syncbase_plugin_runtime::default_resolution;
pub use syncbase_plugin_runtime::types::Resolution;
use syncbase_plugin_runtime::types::{Change as WitChange, Direction, Op as WitOp, Version};
pub use syncbase_plugin_runtime::{
    Binding, BindingTable, CallFailure, DecidedBy, ErrorKind, Outcome, PluginError, PluginInfo,
    PluginRuntime, PluginVersion, RuntimeConfig, Slot, Target, Uploaded, ValidationReport,
    validate_name,
};

use crate::store::{Change, Op, Schema};

/// The node's plugins: runtime plus what the outbound stage has seen.
#[derive(Clone)]
pub struct Plugins {
    pub runtime: Arc<PluginRuntime>,
    pub outbound: Arc<OutboundLog>,
    /// What the fold counts per collection (conflicts, rejected merges).
    pub counters: Arc<PolicyCounters>,
    node_id: Arc<str>,
}

impl Plugins {
    /// Opens the runtime in `<dir>/plugins` (registry, compile cache, bindings).
    pub fn open(dir: &Path, config: RuntimeConfig, node_id: &str) -> Result<Plugins, PluginError> {
        let runtime = PluginRuntime::open(dir.join("plugins"), config)?;
        Ok(Plugins {
            runtime: Arc::new(runtime),
            outbound: Arc::new(OutboundLog::new(OUTBOUND_ENTRIES, OUTBOUND_BYTES)),
            counters: Arc::default(),
            node_id: node_id.into(),
        })
    }

    /// Re-keys the runtime's bindings by collection id and drops those of deleted
    /// collections (see [`reconcile_bindings`]). On a single node this runs at startup and
    /// after every collection delete; a replicating node does it in the fold.
    pub async fn reconcile(&self, schema: Arc<Schema>) -> Result<(), PluginError> {
        self.blocking(move |rt| {
            let (table, changed) = reconcile_bindings(rt.bindings(), &schema);
            if changed {
                rt.apply_bindings(table)?;
            }
            Ok(())
        })
        .await
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Runs blocking runtime work (compilation, plugin calls) on a blocking thread.
    pub async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&PluginRuntime) -> R + Send + 'static,
    ) -> R {
        let rt = self.runtime.clone();
        match tokio::task::spawn_blocking(move || f(&rt)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The WIT change for a committed local change. On a single node the HLC is the wall
    /// clock in PocketBase-free HLC form (ms << 16); replication will carry real HLCs.
    pub fn wit_change(&self, change: &Change, hlc: u64) -> WitChange {
        WitChange {
            op: match change.op {
                Op::Create => WitOp::Create,
                Op::Update => WitOp::Update,
                Op::Delete => WitOp::Delete,
            },
            collection: change.collection.name.clone(),
            id: change
                .record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            data: (change.op != Op::Delete).then(|| crate::store::sync::json_text(&change.record)),
            hlc,
            origin: self.node_id.to_string(),
            before: None,
        }
    }
}

/// `table` with every collection target named by the collection's id: bindings written
/// before they were keyed by id named the collection, and a binding of a collection that no
/// longer exists is dropped (a new collection of the same name must not inherit it).
/// Returns the table and whether anything changed.
pub fn reconcile_bindings(table: BindingTable, schema: &Schema) -> (BindingTable, bool) {
    let mut out = BindingTable::default();
    let mut changed = false;
    for (target, slot) in table.slots {
        let Some(c) = target.collection() else {
            out.slots.insert(target, slot);
            continue;
        };
        match schema.get(c) {
            Some(found) => {
                let by_id = target.with_collection(&found.id);
                changed |= by_id != target;
                out.slots.insert(by_id, slot);
            }
            None => changed = true,
        }
    }
    (out, changed)
}

/// Describes a JSON value's type for error messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An unsigned integer field: absent → `None`; present but not one → the error names the
/// problem (`"hlc": "5"` is a wrong type, not a missing field).
fn uint_of(v: &Value, key: &str) -> Result<Option<u64>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(n @ Value::Number(_)) => n.as_u64().map(Some).ok_or_else(|| {
            format!("`{key}` must be an unsigned integer (a hybrid logical clock), got {n}")
        }),
        Some(other) => Err(format!(
            "`{key}` has the wrong type: expected an unsigned integer, got {}",
            json_type(other)
        )),
    }
}

fn string_of(v: &Value, key: &str) -> Result<Option<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "`{key}` has the wrong type: expected a string, got {}",
            json_type(other)
        )),
    }
}

fn object_of(v: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("expected an object, got {}", json_type(v)))
}

/// Reads a record version from dry-run JSON: `{data, hlc, origin}` (`hlc` required). The
/// record's key is the incoming change's; `collection`, `id` and `eventId` (accepted before
/// the contract was slimmed) are ignored.
pub fn version_from_json(v: &Value) -> Result<Version, String> {
    object_of(v)?;
    Ok(Version {
        data: data_of(v)?,
        hlc: uint_of(v, "hlc")?.ok_or("`hlc` is required")?,
        origin: string_of(v, "origin")?.unwrap_or_default(),
    })
}

/// Reads a change from dry-run JSON: `{op, collection, id, data, hlc, origin, before}`.
/// `eventId` and `base` (accepted before the contract was slimmed) are ignored.
pub fn change_from_json(v: &Value) -> Result<WitChange, String> {
    object_of(v)?;
    let op = match string_of(v, "op")?.as_deref().unwrap_or("update") {
        "create" => WitOp::Create,
        "update" => WitOp::Update,
        "delete" => WitOp::Delete,
        other => return Err(format!("unknown op {other:?} (create, update or delete)")),
    };
    Ok(WitChange {
        op,
        collection: text(v, "collection")?,
        id: text(v, "id")?,
        data: data_of(v)?,
        hlc: uint_of(v, "hlc")?.unwrap_or(0),
        origin: string_of(v, "origin")?.unwrap_or_default(),
        before: match v.get("before") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(o @ Value::Object(_)) => Some(o.to_string()),
            Some(other) => {
                return Err(format!(
                    "`before` has the wrong type: expected an object or null, got {}",
                    json_type(other)
                ));
            }
        },
    })
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    string_of(v, key)?.ok_or_else(|| format!("`{key}` is required"))
}

/// `data` may be given as an object (or null for a tombstone).
fn data_of(v: &Value) -> Result<Option<String>, String> {
    match v.get("data") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => Ok(v.get("data").map(Value::to_string)),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "`data` has the wrong type: expected an object or null, got {}",
            json_type(other)
        )),
    }
}

/// A resolution as JSON: `"keep-current"`, `"take-incoming"` or `{"merged": {...}}`.
pub fn resolution_json(r: &Resolution) -> Value {
    match r {
        Resolution::KeepCurrent => json!("keep-current"),
        Resolution::TakeIncoming => json!("take-incoming"),
        Resolution::Merged(text) => {
            json!({"merged": serde_json::from_str::<Value>(text).unwrap_or(Value::String(text.clone()))})
        }
    }
}

/// Who decided an outcome, as JSON.
pub fn decided_by_json(d: &DecidedBy) -> Value {
    match d {
        DecidedBy::Default => json!({"by": "default"}),
        DecidedBy::Plugin(p) => json!({"by": "plugin", "plugin": p.name, "version": p.version}),
        DecidedBy::Fallback { plugin, failure } => json!({
            "by": "fallback", "plugin": plugin.name, "version": plugin.version,
            "failure": failure.label(), "detail": failure.to_string(),
        }),
    }
}

/// The outbound direction, re-exported for callers that filter.
pub const OUTBOUND: Direction = Direction::Outbound;
