//! The server's side of plugins: the one `PluginRuntime` of the node, async wrappers that keep
//! compilation and calls off the async runtime, conversions between records and the WIT types,
//! and the outbound stage that runs outbound filters over the change feed.
//!
//! wasmtime stays inside `syncbase-plugin-runtime`; this module only sees its typed API. It
//! must not reach into SQLite or HTTP.

mod outbound;
pub mod vectors;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

pub use outbound::{OUTBOUND_BYTES, OUTBOUND_ENTRIES, OutboundEvent, OutboundLog, run_outbound};
use syncbase_plugin_runtime::types::{
    Change as WitChange, Direction, Op as WitOp, Resolution, Version,
};
pub use syncbase_plugin_runtime::{
    Binding, BindingTable, CallFailure, DecidedBy, ErrorKind, Outcome, PluginError, PluginInfo,
    PluginRuntime, PluginVersion, RuntimeConfig, Target,
};

use crate::store::{Change, Op};

/// The node's plugins: runtime plus what the outbound stage has seen.
#[derive(Clone)]
pub struct Plugins {
    pub runtime: Arc<PluginRuntime>,
    pub outbound: Arc<OutboundLog>,
    node_id: Arc<str>,
}

impl Plugins {
    /// Opens the runtime in `<dir>/plugins` (registry, compile cache, bindings).
    pub fn open(dir: &Path, config: RuntimeConfig, node_id: &str) -> Result<Plugins, PluginError> {
        let runtime = PluginRuntime::open(dir.join("plugins"), config)?;
        Ok(Plugins {
            runtime: Arc::new(runtime),
            outbound: Arc::new(OutboundLog::new(OUTBOUND_ENTRIES, OUTBOUND_BYTES)),
            node_id: node_id.into(),
        })
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

/// Reads a record version from dry-run JSON: `{data, hlc, origin}` (`hlc` required). The
/// record's key is the incoming change's; `collection`, `id` and `eventId` (accepted before
/// the contract was slimmed) are ignored.
pub fn version_from_json(v: &Value) -> Result<Version, String> {
    Ok(Version {
        data: data_of(v)?,
        hlc: v
            .get("hlc")
            .and_then(Value::as_u64)
            .ok_or("`hlc` is required")?,
        origin: v
            .get("origin")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

/// Reads a change from dry-run JSON: `{op, collection, id, data, hlc, origin, before}`.
/// `eventId` and `base` (accepted before the contract was slimmed) are ignored.
pub fn change_from_json(v: &Value) -> Result<WitChange, String> {
    let op = match v.get("op").and_then(Value::as_str).unwrap_or("update") {
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
        hlc: v.get("hlc").and_then(Value::as_u64).unwrap_or(0),
        origin: v
            .get("origin")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        before: match v.get("before") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        },
    })
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| format!("`{key}` is required"))
}

/// `data` may be given as an object (or null for a tombstone).
fn data_of(v: &Value) -> Result<Option<String>, String> {
    match v.get("data") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => Ok(v.get("data").map(Value::to_string)),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err("`data` must be a JSON object or null".into()),
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
