//! The live side of [`PluginRuntime`]: binding, unbinding and rolling back
//! (each an atomic swap of the whole [`LiveSet`]), and the calls that read it.
//!
//! A binding that stops being active (replaced, unbound, rolled back from) is
//! kept in its slot's `previous` for an instant rollback, *parked*: its
//! compiled code stays loaded, its instances are dropped, so an old Python
//! resolver does not keep hundreds of megabytes of warm interpreters.

use std::collections::HashMap;
use std::sync::Arc;

use crate::binding::{Binding, BindingTable, LiveSet, LiveSlot, Target};
use crate::error::PluginError;
use crate::metrics::MetricsSnapshot;
use crate::outcome::{Outcome, default_decision, default_resolution, default_verdict};
use crate::plugin::BoundPlugin;
use crate::registry::write_atomic;
use crate::runtime::PluginRuntime;
use crate::types::{Change, Decision, Direction, Resolution, Stats, Verdict, Version};

/// One binding's counters (for per-collection metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct BindingMetrics {
    pub target: Target,
    pub binding: Binding,
    /// Whether it is the slot's active binding (otherwise kept for rollback).
    pub active: bool,
    pub metrics: MetricsSnapshot,
}

impl PluginRuntime {
    /// Binds a version of `name` (the latest when `version` is `None`) to
    /// `target` with `config`, under this node's default limits for it (the
    /// binding records them: see [`Binding`]). The plugin is configured before
    /// the swap, so a configuration it refuses fails here and the previous
    /// binding stays. The version it replaces is kept for
    /// [`rollback`](Self::rollback).
    pub fn bind(
        &self,
        target: Target,
        name: &str,
        version: Option<u32>,
        config: &str,
    ) -> Result<Binding, PluginError> {
        let binding = self.new_binding(name, version, config)?;
        self.bind_exact(target, binding)
    }

    /// Binds exactly `binding` (plugin version, configuration and limits, e.g. as a
    /// replicated binding event carries them) to `target`.
    pub fn bind_exact(&self, target: Target, binding: Binding) -> Result<Binding, PluginError> {
        if binding
            .memory_cap
            .is_some_and(|m| m > crate::engine::MAX_MEMORY_CAP)
        {
            return Err(PluginError::Config {
                plugin: binding.plugin.clone(),
                message: format!(
                    "a memory cap of {} bytes is over the 4 GiB a wasm32 memory can reach",
                    binding.memory_cap.unwrap_or_default()
                ),
            });
        }
        let _admin = self.admin.lock();
        let bound = self.bind_plugin(&target, binding.clone())?;
        self.swap_slot(&target, |old| LiveSlot {
            previous: old.active.clone().or_else(|| old.previous.clone()),
            active: Some(bound),
        })?;
        tracing::info!(%target, plugin = %binding.plugin, version = binding.version, "plugin bound");
        Ok(binding)
    }

    /// Unbinds `target` (the built-in default applies again). The unbound
    /// version is kept for [`rollback`](Self::rollback). Returns it, if any.
    pub fn unbind(&self, target: &Target) -> Result<Option<Binding>, PluginError> {
        let _admin = self.admin.lock();
        let mut unbound = None;
        self.swap_slot(target, |old| {
            unbound = old.active.as_ref().map(|b| b.binding.clone());
            LiveSlot {
                previous: old.active.clone().or_else(|| old.previous.clone()),
                active: None,
            }
        })?;
        Ok(unbound)
    }

    /// Removes every binding of a collection (active and kept for rollback), when the
    /// collection is deleted: their instances are freed, and a new collection is never
    /// served by them. Returns the targets that had bindings.
    pub fn unbind_collection(&self, collection: &str) -> Result<Vec<Target>, PluginError> {
        let _admin = self.admin.lock();
        let mut next = (**self.live.load()).clone();
        let gone: Vec<Target> = next
            .slots()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t.collection() == Some(collection))
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        for target in &gone {
            next.set(target, LiveSlot::default());
        }
        self.persist(&next.table())?;
        self.live.store(Arc::new(next));
        tracing::info!(
            collection,
            targets = gone.len(),
            "a deleted collection's plugin bindings removed"
        );
        Ok(gone)
    }

    /// Swaps `target`'s active and previous bindings: instant, since the
    /// previous version is still loaded. Returns the now-active binding.
    pub fn rollback(&self, target: &Target) -> Result<Binding, PluginError> {
        let _admin = self.admin.lock();
        let live = self.live.load();
        let old = live.slot(target).cloned().unwrap_or_default();
        let Some(previous) = old.previous.clone() else {
            return Err(PluginError::NothingToRollBack(target.clone()));
        };
        self.swap_slot(target, |old| LiveSlot {
            active: old.previous.clone(),
            previous: old.active.clone(),
        })?;
        tracing::info!(%target, plugin = %previous.binding.plugin, version = previous.binding.version, "plugin binding rolled back");
        Ok(previous.binding.clone())
    }

    fn swap_slot(
        &self,
        target: &Target,
        change: impl FnOnce(&LiveSlot) -> LiveSlot,
    ) -> Result<(), PluginError> {
        let mut next = (**self.live.load()).clone();
        let old = next.slot(target).cloned().unwrap_or_default();
        let slot = change(&old);
        park(&slot);
        next.set(target, slot);
        self.persist(&next.table())?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    /// The current bindings as plain data.
    pub fn bindings(&self) -> BindingTable {
        self.live.load().table()
    }

    /// Replaces every binding with `table` at once (at startup, or when a
    /// replicated binding event is applied). Bindings already live for the same
    /// target are reused with their warm instances. On error nothing changes; a
    /// binding whose bytes are not stored here yields
    /// [`PluginError::MissingBlob`] or [`PluginError::NotFound`], so the caller
    /// can fetch them and retry.
    pub fn apply_bindings(&self, table: BindingTable) -> Result<(), PluginError> {
        let _admin = self.admin.lock();
        let current = self.live.load_full();
        let mut existing: HashMap<(Target, &Binding), Arc<BoundPlugin>> = HashMap::new();
        for (target, slot) in current.slots() {
            for bound in slot.active.iter().chain(slot.previous.iter()) {
                existing.insert((target.clone(), &bound.binding), bound.clone());
            }
        }
        let mut next = LiveSet::default();
        for (target, slot) in &table.slots {
            let mut live = LiveSlot::default();
            for (from, to) in [
                (&slot.active, &mut live.active),
                (&slot.previous, &mut live.previous),
            ] {
                if let Some(binding) = from {
                    let bound = match existing.get(&(target.clone(), binding)) {
                        Some(b) => b.clone(),
                        None => self.bind_plugin(target, binding.clone())?,
                    };
                    *to = Some(bound);
                }
            }
            park(&live);
            next.set(target, live);
        }
        drop(existing);
        self.persist(&next.table())?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    fn persist(&self, table: &BindingTable) -> Result<(), PluginError> {
        if self.config.persist_bindings {
            write_atomic(&self.bindings_path(), table.to_json().as_bytes())?;
        }
        Ok(())
    }

    /// Every binding's counters, active and kept for rollback.
    pub fn binding_metrics(&self) -> Vec<BindingMetrics> {
        let live = self.live.load();
        let mut out = Vec::new();
        for (target, slot) in live.slots() {
            for (bound, active) in [(&slot.active, true), (&slot.previous, false)] {
                if let Some(b) = bound {
                    out.push(BindingMetrics {
                        target: target.clone(),
                        binding: b.binding.clone(),
                        active,
                        metrics: b.metrics.snapshot(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.target, !a.active).cmp(&(&b.target, !b.active)));
        out
    }

    // ----- calls ---------------------------------------------------------

    fn active(&self, pick: impl FnOnce(&LiveSet) -> Option<&LiveSlot>) -> Option<Arc<BoundPlugin>> {
        let live = self.live.load();
        pick(&live).and_then(|slot| slot.active.clone())
    }

    /// Resolves a conflict in `collection` (its id) with its bound resolver (or
    /// the built-in last-writer-wins when none is bound or the plugin fails).
    pub fn resolve(
        &self,
        collection: &str,
        current: &Version,
        incoming: &Change,
    ) -> Outcome<Resolution> {
        match self.active(|live| live.resolvers.get(collection)) {
            Some(bound) => bound.resolve(current, incoming),
            None => Outcome::by_default(default_resolution(current, incoming)),
        }
    }

    /// Runs `collection`'s (by id) filter for `direction` (or keeps the change
    /// when none is bound or the plugin fails).
    pub fn filter(
        &self,
        collection: &str,
        direction: Direction,
        change: &Change,
    ) -> Outcome<Verdict> {
        let bound = self.active(|live| match direction {
            Direction::Outbound => live.outbound.get(collection),
            Direction::Inbound => live.inbound.get(collection),
        });
        match bound {
            Some(bound) => bound.filter(direction, change),
            None => Outcome::by_default(default_verdict()),
        }
    }

    /// Asks the snapshot policy (or answers "no" when none is bound or the
    /// plugin fails).
    pub fn decide(&self, stats: Stats) -> Outcome<Decision> {
        match self.active(|live| Some(&live.snapshot)) {
            Some(bound) => bound.decide(stats),
            None => Outcome::by_default(default_decision()),
        }
    }

    /// True when `collection` (by id) has an active filter for `direction`
    /// (lets the caller skip building a `Change` when nothing would look at it).
    pub fn has_filter(&self, collection: &str, direction: Direction) -> bool {
        let live = self.live.load();
        let map = match direction {
            Direction::Outbound => &live.outbound,
            Direction::Inbound => &live.inbound,
        };
        map.get(collection).is_some_and(|s| s.active.is_some())
    }

    // ----- dry runs --------------------------------------------------------

    fn dry_run_plugin(
        &self,
        name: &str,
        version: Option<u32>,
        config: &str,
        target: Target,
    ) -> Result<Arc<BoundPlugin>, PluginError> {
        let binding = self.new_binding(name, version, config)?;
        self.bind_plugin(&target, binding)
    }

    /// Runs a resolver that need not be bound (`POST /api/plugins/{name}/resolve`).
    pub fn dry_run_resolve(
        &self,
        name: &str,
        version: Option<u32>,
        config: &str,
        current: &Version,
        incoming: &Change,
    ) -> Result<Outcome<Resolution>, PluginError> {
        let target = Target::Resolver(incoming.collection.clone());
        let bound = self.dry_run_plugin(name, version, config, target)?;
        Ok(bound.resolve(current, incoming))
    }

    /// Runs a filter that need not be bound.
    pub fn dry_run_filter(
        &self,
        name: &str,
        version: Option<u32>,
        config: &str,
        direction: Direction,
        change: &Change,
    ) -> Result<Outcome<Verdict>, PluginError> {
        let target = match direction {
            Direction::Outbound => Target::OutboundFilter(change.collection.clone()),
            Direction::Inbound => Target::InboundFilter(change.collection.clone()),
        };
        let bound = self.dry_run_plugin(name, version, config, target)?;
        Ok(bound.filter(direction, change))
    }

    /// Runs a snapshot policy that need not be bound.
    pub fn dry_run_decide(
        &self,
        name: &str,
        version: Option<u32>,
        config: &str,
        stats: Stats,
    ) -> Result<Outcome<Decision>, PluginError> {
        let bound = self.dry_run_plugin(name, version, config, Target::SnapshotPolicy)?;
        Ok(bound.decide(stats))
    }
}

/// The slot's active binding keeps instances; the one kept for rollback does not.
fn park(slot: &LiveSlot) {
    if let Some(active) = &slot.active {
        active.unpark();
    }
    if let Some(previous) = &slot.previous
        && !slot
            .active
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, previous))
    {
        previous.park();
    }
}
