//! Bindings: which plugin version (and configuration) serves which role.
//!
//! [`BindingTable`] is plain data the host can store anywhere (the runtime
//! keeps it in `bindings.json` by default; replication will carry it in the
//! log). The live form, with loaded plugins and warm instances, is
//! [`LiveSet`], swapped atomically as a whole on every change.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::PluginError;
use crate::plugin::BoundPlugin;
use crate::world::World;

/// What a plugin is bound as.
///
/// A collection target names the collection by its **id**, which a rename keeps: the host
/// resolves names to ids before binding and calls with the id, so a renamed collection keeps
/// its plugins, and a new collection that reuses a deleted one's name starts with none (the
/// host removes a deleted collection's bindings, see
/// [`PluginRuntime::unbind_collection`](crate::PluginRuntime::unbind_collection)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "role", content = "collection", rename_all = "kebab-case")]
pub enum Target {
    /// The conflict resolver of a collection (by id).
    Resolver(String),
    /// The filter applied to a collection's events before this node applies them.
    InboundFilter(String),
    /// The filter applied to a collection's local changes before they are published.
    OutboundFilter(String),
    /// The snapshot policy (of the node, or of the cluster on a replicating node).
    SnapshotPolicy,
}

impl Target {
    /// Parses a role name (`resolver`, `inbound-filter`, `outbound-filter`,
    /// `snapshot-policy`) with its collection, as the API and CLI spell them.
    pub fn parse(role: &str, collection: Option<&str>) -> Result<Target, PluginError> {
        let collection = || collection.unwrap_or_default().to_string();
        match role {
            "resolver" => Ok(Target::Resolver(collection())),
            "inbound-filter" => Ok(Target::InboundFilter(collection())),
            "outbound-filter" => Ok(Target::OutboundFilter(collection())),
            "snapshot-policy" => Ok(Target::SnapshotPolicy),
            other => Err(PluginError::UnknownTarget(other.to_string())),
        }
    }

    /// The world a plugin needs to be bound here.
    pub fn world(&self) -> World {
        match self {
            Target::Resolver(_) => World::Resolver,
            Target::InboundFilter(_) | Target::OutboundFilter(_) => World::Filter,
            Target::SnapshotPolicy => World::SnapshotPolicy,
        }
    }

    /// The role name, as `parse` accepts it.
    pub fn role(&self) -> &'static str {
        match self {
            Target::Resolver(_) => "resolver",
            Target::InboundFilter(_) => "inbound-filter",
            Target::OutboundFilter(_) => "outbound-filter",
            Target::SnapshotPolicy => "snapshot-policy",
        }
    }

    /// The same role for another collection (snapshot policies have none).
    pub fn with_collection(&self, collection: &str) -> Target {
        let c = collection.to_string();
        match self {
            Target::Resolver(_) => Target::Resolver(c),
            Target::InboundFilter(_) => Target::InboundFilter(c),
            Target::OutboundFilter(_) => Target::OutboundFilter(c),
            Target::SnapshotPolicy => Target::SnapshotPolicy,
        }
    }

    /// The collection, for collection targets.
    pub fn collection(&self) -> Option<&str> {
        match self {
            Target::Resolver(c) | Target::InboundFilter(c) | Target::OutboundFilter(c) => Some(c),
            Target::SnapshotPolicy => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.collection() {
            Some(c) => write!(f, "{} of collection `{c}`", self.role()),
            None => f.write_str("the node's snapshot policy"),
        }
    }
}

/// One plugin version bound with a configuration and the limits its calls run under.
///
/// The limits are part of the binding, not of the node: they are fixed when the binding is
/// made (from the binding node's defaults, see `RuntimeConfig::limits_for`) and travel with
/// it (in the binding event on a replicating node), so every node runs the plugin under the
/// same fuel and memory cap whatever its own flags. `None` only in bindings made before
/// limits were recorded; those run under the node's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    pub plugin: String,
    pub version: u32,
    /// The component's digest: the binding names exact bytes.
    pub sha256: String,
    /// The configuration string passed to the plugin's `configure`.
    #[serde(default)]
    pub config: String,
    /// Fuel per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Memory cap of each linear memory, in bytes.
    #[serde(default, rename = "memoryCap", skip_serializing_if = "Option::is_none")]
    pub memory_cap: Option<u64>,
}

/// A binding slot: what is active, and what was active before (for rollback).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Binding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Binding>,
}

impl Slot {
    pub fn is_empty(&self) -> bool {
        self.active.is_none() && self.previous.is_none()
    }
}

/// Every binding of a node, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingTable {
    /// Slots by target.
    #[serde(default)]
    pub slots: BTreeMap<Target, Slot>,
}

impl BindingTable {
    /// Serializes the table as JSON (a list, since targets are not strings).
    pub fn to_json(&self) -> String {
        let entries: Vec<TableEntry> = self
            .slots
            .iter()
            .filter(|(_, slot)| !slot.is_empty())
            .map(|(target, slot)| TableEntry {
                target: target.clone(),
                slot: slot.clone(),
            })
            .collect();
        serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into())
    }

    /// Parses what `to_json` wrote.
    pub fn from_json(text: &str) -> Result<BindingTable, serde_json::Error> {
        let entries: Vec<TableEntry> = serde_json::from_str(text)?;
        Ok(BindingTable {
            slots: entries.into_iter().map(|e| (e.target, e.slot)).collect(),
        })
    }

    /// Every binding (active or previous) with its target.
    pub fn all(&self) -> impl Iterator<Item = (&Target, &Binding)> {
        self.slots.iter().flat_map(|(target, slot)| {
            slot.active
                .iter()
                .chain(slot.previous.iter())
                .map(move |b| (target, b))
        })
    }
}

#[derive(Serialize, Deserialize)]
struct TableEntry {
    #[serde(flatten)]
    target: Target,
    #[serde(flatten)]
    slot: Slot,
}

/// A slot with its plugins loaded.
#[derive(Clone, Default)]
pub(crate) struct LiveSlot {
    pub active: Option<Arc<BoundPlugin>>,
    pub previous: Option<Arc<BoundPlugin>>,
}

/// The live bindings. Read on every call, replaced as a whole on every change.
#[derive(Clone, Default)]
pub(crate) struct LiveSet {
    pub resolvers: HashMap<String, LiveSlot>,
    pub inbound: HashMap<String, LiveSlot>,
    pub outbound: HashMap<String, LiveSlot>,
    pub snapshot: LiveSlot,
}

impl LiveSet {
    pub fn slot(&self, target: &Target) -> Option<&LiveSlot> {
        match target {
            Target::Resolver(c) => self.resolvers.get(c),
            Target::InboundFilter(c) => self.inbound.get(c),
            Target::OutboundFilter(c) => self.outbound.get(c),
            Target::SnapshotPolicy => Some(&self.snapshot),
        }
    }

    pub fn set(&mut self, target: &Target, slot: LiveSlot) {
        let empty = slot.active.is_none() && slot.previous.is_none();
        let map = match target {
            Target::Resolver(_) => &mut self.resolvers,
            Target::InboundFilter(_) => &mut self.inbound,
            Target::OutboundFilter(_) => &mut self.outbound,
            Target::SnapshotPolicy => {
                self.snapshot = slot;
                return;
            }
        };
        let key = target.collection().unwrap_or_default().to_string();
        if empty {
            map.remove(&key);
        } else {
            map.insert(key, slot);
        }
    }

    /// Every slot with its target.
    pub fn slots(&self) -> Vec<(Target, &LiveSlot)> {
        let mut out = Vec::new();
        let collections = [
            (&self.resolvers, Target::Resolver as fn(String) -> Target),
            (&self.inbound, Target::InboundFilter),
            (&self.outbound, Target::OutboundFilter),
        ];
        for (map, make) in collections {
            for (collection, slot) in map {
                out.push((make(collection.clone()), slot));
            }
        }
        out.push((Target::SnapshotPolicy, &self.snapshot));
        out
    }

    /// The plain-data view.
    pub fn table(&self) -> BindingTable {
        let binding = |b: &Option<Arc<BoundPlugin>>| b.as_ref().map(|b| b.binding.clone());
        BindingTable {
            slots: self
                .slots()
                .into_iter()
                .map(|(target, slot)| {
                    (
                        target,
                        Slot {
                            active: binding(&slot.active),
                            previous: binding(&slot.previous),
                        },
                    )
                })
                .filter(|(_, slot)| !slot.is_empty())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_round_trips_through_json() {
        let binding = |v| Binding {
            plugin: "p".into(),
            version: v,
            sha256: "ab".repeat(32),
            config: r#"{"fields":["x"]}"#.into(),
            fuel: Some(1_000),
            memory_cap: Some(1 << 20),
        };
        let mut table = BindingTable::default();
        table.slots.insert(
            Target::Resolver("posts".into()),
            Slot {
                active: Some(binding(2)),
                previous: Some(binding(1)),
            },
        );
        table.slots.insert(
            Target::SnapshotPolicy,
            Slot {
                active: Some(binding(1)),
                previous: None,
            },
        );
        let json = table.to_json();
        assert!(json.contains(r#""role": "resolver""#), "{json}");
        assert_eq!(BindingTable::from_json(&json).expect("parses"), table);
    }

    #[test]
    fn targets_parse_from_role_names() {
        assert_eq!(
            Target::parse("outbound-filter", Some("users")).expect("valid"),
            Target::OutboundFilter("users".into())
        );
        assert_eq!(
            Target::parse("snapshot-policy", None).expect("valid"),
            Target::SnapshotPolicy
        );
        assert!(Target::parse("resolve", Some("x")).is_err());
        assert_eq!(Target::InboundFilter("a".into()).world(), World::Filter);
    }
}
