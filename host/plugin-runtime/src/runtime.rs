//! [`PluginRuntime`]: the one handle the host holds. Upload and validate
//! components, list and show them, bind/unbind/roll back, and call the bound
//! plugins (`resolve`, `filter`, `decide`) from any thread.
//!
//! Calls read the live bindings through an `ArcSwap` and hold an `Arc` of the
//! bound plugin for the duration of the call, so a bind, unbind or rollback
//! takes effect for the next call while calls in flight finish on the version
//! they started with. Management operations are serialized by one mutex; calls
//! never take it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::binding::{Binding, BindingTable, LiveSet, LiveSlot, Target};
use crate::cache::{CompileCache, CompiledFrom};
use crate::engine::{RuntimeConfig, build_engine, compatibility_hash};
use crate::error::PluginError;
use crate::metrics::MetricsSnapshot;
use crate::outcome::{Outcome, default_decision, default_resolution, default_verdict};
use crate::plugin::{BoundPlugin, HostState, IdleInstances, Limits, LoadedPlugin, linker};
use crate::registry::{PluginVersion, Registry, sha256_hex, validate_name, write_atomic};
use crate::types::{Change, Decision, Direction, Resolution, Stats, Verdict, Version};
use crate::validate::validate;
use crate::world::World;

/// Whether a binding is the active one or kept for rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindingState {
    Active,
    Previous,
}

/// Where a plugin version is bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundAs {
    pub target: Target,
    pub state: BindingState,
    pub config: String,
}

/// A plugin version with its bindings and counters (for list/show).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    #[serde(flatten)]
    pub version: PluginVersion,
    pub bindings: Vec<BoundAs>,
    /// Counters since this process loaded the version (zero if never loaded).
    pub metrics: MetricsSnapshot,
}

/// What validating a component without storing it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    pub world: World,
    pub exports: Vec<String>,
    pub sha256: String,
    pub size: u64,
}

/// Counters of the runtime itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeStats {
    /// Components compiled from source by this process.
    pub compiled: u64,
    /// Components loaded from the on-disk compile cache.
    pub loaded_from_cache: u64,
}

/// The plugin runtime. Cheap to share (`Arc<PluginRuntime>`); every method
/// takes `&self` and is safe to call from many threads.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    dir: PathBuf,
    registry: Mutex<Registry>,
    cache: CompileCache,
    /// Loaded plugin versions, by (name, version).
    loaded: Mutex<HashMap<(String, u32), Arc<LoadedPlugin>>>,
    /// Compiled components, by sha256 (shared by versions with the same bytes).
    components: Mutex<HashMap<String, Component>>,
    live: ArcSwap<LiveSet>,
    admin: Mutex<()>,
    /// Every bound plugin's idle instances, dropped when the pool runs out of slots.
    idle: Arc<IdleInstances>,
    stats: Mutex<RuntimeStats>,
}

impl PluginRuntime {
    /// Opens the runtime on `dir` (created if missing): reads the registry and,
    /// when `config.persist_bindings` is set, restores `bindings.json`.
    pub fn open(dir: impl Into<PathBuf>, config: RuntimeConfig) -> Result<Self, PluginError> {
        let dir = dir.into();
        let engine = build_engine(&config)?;
        let linker = linker(&engine)?;
        let registry = Registry::open(&dir)?;
        let cache = CompileCache::new(&dir.join("cache"), compatibility_hash(&engine));
        let runtime = PluginRuntime {
            engine,
            linker,
            config,
            registry: Mutex::new(registry),
            cache,
            loaded: Mutex::new(HashMap::new()),
            components: Mutex::new(HashMap::new()),
            live: ArcSwap::from_pointee(LiveSet::default()),
            admin: Mutex::new(()),
            idle: Arc::default(),
            stats: Mutex::new(RuntimeStats::default()),
            dir,
        };
        if runtime.config.persist_bindings {
            let path = runtime.bindings_path();
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let table =
                        BindingTable::from_json(&text).map_err(|e| PluginError::Corrupt {
                            path: path.clone(),
                            detail: e.to_string(),
                        })?;
                    runtime.apply_bindings(table)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PluginError::io(&path, e)),
            }
        }
        Ok(runtime)
    }

    /// The runtime's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn bindings_path(&self) -> PathBuf {
        self.dir.join("bindings.json")
    }

    // ----- upload and registry -------------------------------------------

    /// Validates a component without storing it.
    pub fn validate(&self, bytes: &[u8]) -> Result<ValidationReport, PluginError> {
        let validated = validate(&self.engine, bytes, self.config.max_component_bytes, None)?;
        crate::plugin::type_check(&self.linker, &validated.component, validated.world)?;
        Ok(ValidationReport {
            world: validated.world,
            exports: validated.exports,
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        })
    }

    /// Validates, compiles and stores a component as the next version of
    /// `name`. Uploading the bytes of the latest version again returns that
    /// version instead of creating a new one. A failed upload changes nothing.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<PluginVersion, PluginError> {
        validate_name(name)?;
        let sha256 = sha256_hex(bytes);
        let _admin = self.admin.lock();
        if let Some(latest) = self.registry.lock().get(name, None)
            && latest.sha256 == sha256
        {
            return Ok((*latest).clone());
        }
        let cached = self.cache.load_cached(&self.engine, &sha256);
        let validated = validate(&self.engine, bytes, self.config.max_component_bytes, cached)?;
        crate::plugin::type_check(&self.linker, &validated.component, validated.world)?;
        let mut registry = self.registry.lock();
        let meta = PluginVersion {
            name: name.to_string(),
            version: registry.next_version(name),
            sha256: sha256.clone(),
            world: validated.world,
            size: bytes.len() as u64,
            uploaded_at_ms: now_ms(),
            exports: validated.exports,
        };
        let meta = registry.insert(meta, bytes)?;
        drop(registry);
        self.cache.store(&sha256, &validated.component);
        self.components.lock().insert(sha256, validated.component);
        self.stats.lock().compiled += 1;
        tracing::info!(plugin = %meta.name, version = meta.version, sha256 = %meta.sha256, world = %meta.world, "plugin uploaded");
        Ok((*meta).clone())
    }

    /// Stores a version with metadata decided elsewhere (e.g. replicated from
    /// another node), after checking the bytes match its digest and world.
    pub fn import(&self, meta: PluginVersion, bytes: &[u8]) -> Result<PluginVersion, PluginError> {
        validate_name(&meta.name)?;
        if sha256_hex(bytes) != meta.sha256 {
            return Err(PluginError::Corrupt {
                path: self.dir.join("blobs").join(&meta.sha256),
                detail: "the bytes do not match the sha256".into(),
            });
        }
        let _admin = self.admin.lock();
        if let Some(existing) = self.registry.lock().get(&meta.name, Some(meta.version)) {
            return Ok((*existing).clone());
        }
        let cached = self.cache.load_cached(&self.engine, &meta.sha256);
        let validated = validate(&self.engine, bytes, self.config.max_component_bytes, cached)?;
        if validated.world != meta.world {
            return Err(PluginError::WrongWorld(format!(
                "it implements {}, but its metadata says {}",
                validated.world, meta.world
            )));
        }
        let meta = self.registry.lock().insert(meta, bytes)?;
        self.cache.store(&meta.sha256, &validated.component);
        self.components
            .lock()
            .insert(meta.sha256.clone(), validated.component);
        Ok((*meta).clone())
    }

    /// True when the component with this digest is stored here.
    pub fn has_blob(&self, sha256: &str) -> bool {
        self.registry.lock().has_blob(sha256)
    }

    /// The stored bytes of a component (e.g. to publish them for other nodes).
    pub fn blob(&self, sha256: &str) -> Result<Vec<u8>, PluginError> {
        self.registry.lock().read_blob(sha256)
    }

    /// Every version of every plugin, by name then version.
    pub fn list(&self) -> Vec<PluginInfo> {
        let versions = self.registry.lock().list();
        self.infos(versions)
    }

    /// Every version of one plugin.
    pub fn show(&self, name: &str) -> Result<Vec<PluginInfo>, PluginError> {
        let versions = self.registry.lock().versions_of(name);
        if versions.is_empty() {
            return Err(PluginError::NotFound {
                name: name.to_string(),
                version: None,
            });
        }
        Ok(self.infos(versions))
    }

    fn infos(&self, versions: Vec<Arc<PluginVersion>>) -> Vec<PluginInfo> {
        let table = self.bindings();
        let loaded = self.loaded.lock();
        versions
            .into_iter()
            .map(|v| {
                let bindings = bound_as(&table, &v.name, v.version);
                let metrics = loaded
                    .get(&(v.name.clone(), v.version))
                    .map(|p| p.metrics.snapshot())
                    .unwrap_or_default();
                PluginInfo {
                    version: (*v).clone(),
                    bindings,
                    metrics,
                }
            })
            .collect()
    }

    /// Deletes one version (or, with `None`, every version) of a plugin. A
    /// version that is bound, even only as a rollback target, is refused.
    pub fn delete(&self, name: &str, version: Option<u32>) -> Result<(), PluginError> {
        let _admin = self.admin.lock();
        let versions: Vec<u32> = {
            let registry = self.registry.lock();
            match version {
                Some(v) => registry
                    .get(name, Some(v))
                    .map(|m| m.version)
                    .into_iter()
                    .collect(),
                None => registry
                    .versions_of(name)
                    .iter()
                    .map(|m| m.version)
                    .collect(),
            }
        };
        if versions.is_empty() {
            return Err(PluginError::NotFound {
                name: name.to_string(),
                version,
            });
        }
        let table = self.live.load().table();
        for &v in &versions {
            let used = bound_as(&table, name, v);
            if !used.is_empty() {
                let targets = used
                    .iter()
                    .map(|b| format!("{} ({:?})", b.target, b.state).to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(PluginError::InUse {
                    plugin: name.to_string(),
                    version: v,
                    targets,
                });
            }
        }
        for v in versions {
            let removed = self.registry.lock().remove(name, v)?;
            self.loaded.lock().remove(&(name.to_string(), v));
            for sha in removed {
                self.cache.remove(&sha);
                self.components.lock().remove(&sha);
            }
        }
        Ok(())
    }

    /// Counters of one plugin version, if this process loaded it.
    pub fn metrics(&self, name: &str, version: u32) -> Option<MetricsSnapshot> {
        self.loaded
            .lock()
            .get(&(name.to_string(), version))
            .map(|p| p.metrics.snapshot())
    }

    /// Counters of the runtime itself.
    pub fn stats(&self) -> RuntimeStats {
        *self.stats.lock()
    }

    // ----- loading -------------------------------------------------------

    fn find(&self, name: &str, version: Option<u32>) -> Result<Arc<PluginVersion>, PluginError> {
        self.registry
            .lock()
            .get(name, version)
            .ok_or_else(|| PluginError::NotFound {
                name: name.to_string(),
                version,
            })
    }

    /// The loaded form of a version: from memory, the compile cache, or compiled now.
    fn load(&self, meta: &Arc<PluginVersion>) -> Result<Arc<LoadedPlugin>, PluginError> {
        let key = (meta.name.clone(), meta.version);
        if let Some(plugin) = self.loaded.lock().get(&key) {
            return Ok(plugin.clone());
        }
        let cached = self.components.lock().get(&meta.sha256).cloned();
        let component = match cached {
            Some(c) => c,
            None => {
                let (component, from) = self.cache.load(&self.engine, &meta.sha256, || {
                    self.registry.lock().read_blob(&meta.sha256)
                })?;
                let mut stats = self.stats.lock();
                match from {
                    CompiledFrom::Cache => stats.loaded_from_cache += 1,
                    CompiledFrom::Source => stats.compiled += 1,
                }
                drop(stats);
                self.components
                    .lock()
                    .insert(meta.sha256.clone(), component.clone());
                component
            }
        };
        let plugin = Arc::new(LoadedPlugin::new(&self.linker, component, meta.clone())?);
        self.loaded.lock().insert(key, plugin.clone());
        Ok(plugin)
    }

    /// A bound plugin for `binding`, checked against `target`'s world.
    fn bind_plugin(
        &self,
        target: &Target,
        binding: Binding,
    ) -> Result<Arc<BoundPlugin>, PluginError> {
        let meta = self.find(&binding.plugin, Some(binding.version))?;
        if meta.sha256 != binding.sha256 {
            return Err(PluginError::MissingBlob(binding.sha256));
        }
        if meta.world != target.world() {
            return Err(PluginError::WorldMismatch {
                plugin: meta.name.clone(),
                world: meta.world,
                target: target.clone(),
            });
        }
        let plugin = self.load(&meta)?;
        let limits = Limits::for_plugin(&self.config, &meta);
        let bound = Arc::new(BoundPlugin::new(
            plugin,
            binding,
            limits,
            self.idle.clone(),
        )?);
        self.idle.register(&bound);
        Ok(bound)
    }

    // ----- bindings ------------------------------------------------------

    /// Binds a version of `name` (the latest when `version` is `None`) to
    /// `target` with `config`. The plugin is configured before the swap, so a
    /// configuration it refuses fails here and the previous binding stays.
    /// The version it replaces is kept loaded for [`rollback`](Self::rollback).
    pub fn bind(
        &self,
        target: Target,
        name: &str,
        version: Option<u32>,
        config: &str,
    ) -> Result<Binding, PluginError> {
        let _admin = self.admin.lock();
        let meta = self.find(name, version)?;
        let binding = Binding {
            plugin: meta.name.clone(),
            version: meta.version,
            sha256: meta.sha256.clone(),
            config: config.to_string(),
        };
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
        next.set(target, change(&old));
        self.persist(&next.table())?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    /// The current bindings as plain data.
    pub fn bindings(&self) -> BindingTable {
        self.live.load().table()
    }

    /// Replaces every binding with `table` at once (at startup, or when a
    /// replicated binding event is applied). Bindings already live are reused
    /// with their warm instances. On error nothing changes; a binding whose
    /// bytes are not stored here yields [`PluginError::MissingBlob`] or
    /// [`PluginError::NotFound`], so the caller can fetch them and retry.
    pub fn apply_bindings(&self, table: BindingTable) -> Result<(), PluginError> {
        let _admin = self.admin.lock();
        let current = self.live.load_full();
        let mut existing: HashMap<&Binding, Arc<BoundPlugin>> = HashMap::new();
        for (_, slot) in current.slots() {
            for bound in slot.active.iter().chain(slot.previous.iter()) {
                existing.insert(&bound.binding, bound.clone());
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
                    let bound = match existing.get(binding) {
                        Some(b) if b.binding == *binding => b.clone(),
                        _ => self.bind_plugin(target, binding.clone())?,
                    };
                    *to = Some(bound);
                }
            }
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

    // ----- calls ---------------------------------------------------------

    fn active(&self, pick: impl FnOnce(&LiveSet) -> Option<&LiveSlot>) -> Option<Arc<BoundPlugin>> {
        let live = self.live.load();
        pick(&live).and_then(|slot| slot.active.clone())
    }

    /// Resolves a conflict in `collection` with its bound resolver (or the
    /// built-in last-writer-wins when none is bound or the plugin fails).
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

    /// Runs `collection`'s filter for `direction` (or keeps the change when
    /// none is bound or the plugin fails).
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

    /// Asks the node's snapshot policy (or answers "no" when none is bound or
    /// the plugin fails).
    pub fn decide(&self, stats: Stats) -> Outcome<Decision> {
        match self.active(|live| Some(&live.snapshot)) {
            Some(bound) => bound.decide(stats),
            None => Outcome::by_default(default_decision()),
        }
    }

    /// True when `collection` has an active filter for `direction` (lets the
    /// caller skip building a `Change` when nothing would look at it).
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
        let meta = self.find(name, version)?;
        let binding = Binding {
            plugin: meta.name.clone(),
            version: meta.version,
            sha256: meta.sha256.clone(),
            config: config.to_string(),
        };
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

fn bound_as(table: &BindingTable, name: &str, version: u32) -> Vec<BoundAs> {
    let mut out = Vec::new();
    for (target, slot) in &table.slots {
        for (binding, state) in [
            (&slot.active, BindingState::Active),
            (&slot.previous, BindingState::Previous),
        ] {
            if let Some(b) = binding
                && b.plugin == name
                && b.version == version
            {
                out.push(BoundAs {
                    target: target.clone(),
                    state,
                    config: b.config.clone(),
                });
            }
        }
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
