//! [`PluginRuntime`]: the one handle the host holds. Upload and validate
//! components, list and show them, bind/unbind/roll back, and call the bound
//! plugins (`resolve`, `filter`, `decide`) from any thread.
//!
//! Calls read the live bindings through an `ArcSwap` and hold an `Arc` of the
//! bound plugin for the duration of the call, so a bind, unbind or rollback
//! takes effect for the next call while calls in flight finish on the version
//! they started with. Management operations are serialized by one mutex; calls
//! never take it. Binding management and the calls are in `live.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::binding::{Binding, BindingTable, LiveSet, Target};
use crate::cache::{CompileCache, CompiledFrom};
use crate::content::inspect;
use crate::engine::{RuntimeConfig, build_engine, compatibility_hash};
use crate::error::PluginError;
use crate::metrics::MetricsSnapshot;
use crate::plugin::{BoundPlugin, Budget, HostState, IdleInstances, Limits, LoadedPlugin, linker};
use crate::registry::{PluginVersion, Registry, sha256_hex, validate_name};
use crate::validate::{Validated, validate};
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
    /// Bytes outside custom sections.
    #[serde(rename = "codeSize")]
    pub code_size: u64,
    /// The canonical content digest (see [`inspect`](crate::inspect)).
    pub canonical: String,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub version: PluginVersion,
    /// The latest version of the name already had this content (same canonical digest, e.g.
    /// a rebuild of unchanged sources): it is returned and nothing was stored.
    pub unchanged: bool,
}

/// Counters of the runtime itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeStats {
    /// Components compiled from source by this process.
    pub compiled: u64,
    /// Components loaded from the on-disk compile cache.
    pub loaded_from_cache: u64,
    /// Bytes of linear memory held by live instances (see `RuntimeConfig::memory_budget`).
    pub instance_memory: u64,
}

/// The plugin runtime. Cheap to share (`Arc<PluginRuntime>`); every method
/// takes `&self` and is safe to call from many threads.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    pub(crate) config: RuntimeConfig,
    dir: PathBuf,
    registry: Mutex<Registry>,
    cache: CompileCache,
    /// Loaded plugin versions, by (name, version).
    loaded: Mutex<HashMap<(String, u32), Arc<LoadedPlugin>>>,
    /// Compiled components, by sha256 (shared by versions with the same bytes).
    components: Mutex<HashMap<String, Component>>,
    pub(crate) live: ArcSwap<LiveSet>,
    pub(crate) admin: Mutex<()>,
    /// Every bound plugin's idle instances, dropped when the pool runs out of slots.
    idle: Arc<IdleInstances>,
    /// The node-wide budget of instance memory.
    budget: Arc<Budget>,
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
        let idle: Arc<IdleInstances> = Arc::default();
        let budget = Arc::new(Budget::new(config.memory_budget, idle.clone()));
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
            idle,
            budget,
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

    pub(crate) fn bindings_path(&self) -> PathBuf {
        self.dir.join("bindings.json")
    }

    // ----- upload and registry -------------------------------------------

    /// Validates a component without storing it.
    pub fn validate(&self, bytes: &[u8]) -> Result<ValidationReport, PluginError> {
        let validated = validate(&self.engine, bytes, self.config.max_component_bytes, None)?;
        crate::plugin::type_check(&self.linker, &validated.component, validated.world)?;
        report(bytes, validated)
    }

    /// Validates and compiles a component and keeps its bytes and compiled code (in the
    /// compile cache and in memory) without naming it: on a replicating node the log gives
    /// it a name and version later ([`import`](Self::import)), and binding it then costs no
    /// compilation. Storing the same bytes again is cheap (the compiled code is reused).
    pub fn prepare(&self, bytes: &[u8]) -> Result<ValidationReport, PluginError> {
        let sha256 = sha256_hex(bytes);
        let _admin = self.admin.lock();
        let cached = self.compiled(&sha256);
        let fresh = cached.is_none();
        let validated = validate(&self.engine, bytes, self.config.max_component_bytes, cached)?;
        crate::plugin::type_check(&self.linker, &validated.component, validated.world)?;
        self.registry.lock().insert_blob(&sha256, bytes)?;
        if fresh {
            self.cache.store(&sha256, &validated.component);
            self.stats.lock().compiled += 1;
        }
        self.components
            .lock()
            .insert(sha256, validated.component.clone());
        report(bytes, validated)
    }

    /// Validates, compiles and stores a component as the next version of
    /// `name`. Uploading the content of the latest version again (the same
    /// canonical digest: the same bytes, or a rebuild of the same sources)
    /// returns that version instead of creating a new one. A failed upload
    /// changes nothing.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<PluginVersion, PluginError> {
        self.push(name, bytes).map(|u| u.version)
    }

    /// [`upload`](Self::upload), saying whether the content was unchanged.
    pub fn push(&self, name: &str, bytes: &[u8]) -> Result<Uploaded, PluginError> {
        validate_name(name)?;
        let report = self.prepare(bytes)?;
        let _admin = self.admin.lock();
        let mut registry = self.registry.lock();
        if let Some(latest) = registry.get(name, None)
            && same_content(&latest, &report)
        {
            if latest.sha256 != report.sha256 && registry.remove_orphan_blob(&report.sha256)? {
                self.cache.remove(&report.sha256);
                self.components.lock().remove(&report.sha256);
            }
            return Ok(Uploaded {
                version: (*latest).clone(),
                unchanged: true,
            });
        }
        let meta = PluginVersion {
            name: name.to_string(),
            version: registry.next_version(name),
            sha256: report.sha256,
            world: report.world,
            size: report.size,
            uploaded_at_ms: now_ms(),
            exports: report.exports,
            code_size: report.code_size,
            canonical: report.canonical,
        };
        let meta = registry.insert(meta, bytes)?;
        drop(registry);
        tracing::info!(plugin = %meta.name, version = meta.version, sha256 = %meta.sha256, world = %meta.world, "plugin uploaded");
        Ok(Uploaded {
            version: (*meta).clone(),
            unchanged: false,
        })
    }

    /// Whether the latest stored version has this content: metadata written
    /// before canonical digests were recorded compares by sha256.
    pub fn is_unchanged(latest: &PluginVersion, sha256: &str, canonical: &str) -> bool {
        latest.sha256 == sha256 || (!latest.canonical.is_empty() && latest.canonical == canonical)
    }

    /// Stores a version with metadata decided elsewhere (e.g. replicated from
    /// another node), after checking the bytes match its digest and world. The
    /// metadata may already be registered without its bytes
    /// ([`register`](Self::register)); metadata of the same name and version
    /// with other bytes is replaced (the log decides versions on a replicating
    /// node).
    pub fn import(&self, meta: PluginVersion, bytes: &[u8]) -> Result<PluginVersion, PluginError> {
        validate_name(&meta.name)?;
        if sha256_hex(bytes) != meta.sha256 {
            return Err(PluginError::Corrupt {
                path: self.dir.join("blobs").join(&meta.sha256),
                detail: "the bytes do not match the sha256".into(),
            });
        }
        let report = self.prepare(bytes)?;
        if report.world != meta.world {
            return Err(PluginError::WrongWorld(format!(
                "it implements {}, but its metadata says {}",
                report.world, meta.world
            )));
        }
        self.register(meta)
    }

    /// Registers a version's metadata, whether or not its bytes are here yet
    /// (see [`has_blob`](Self::has_blob)): the listing shows it at once, and
    /// binding it waits for the bytes. Same name and version with other bytes
    /// replaces the metadata.
    pub fn register(&self, meta: PluginVersion) -> Result<PluginVersion, PluginError> {
        validate_name(&meta.name)?;
        let _admin = self.admin.lock();
        let mut registry = self.registry.lock();
        if let Some(existing) = registry.get(&meta.name, Some(meta.version))
            && existing.sha256 == meta.sha256
        {
            return Ok((*existing).clone());
        }
        self.loaded
            .lock()
            .remove(&(meta.name.clone(), meta.version));
        Ok((*registry.insert_meta(meta)?).clone())
    }

    /// The compiled component for `sha256` if it is in memory or in the compile cache.
    fn compiled(&self, sha256: &str) -> Option<Component> {
        if let Some(c) = self.components.lock().get(sha256) {
            return Some(c.clone());
        }
        let c = self.cache.load_cached(&self.engine, sha256)?;
        self.stats.lock().loaded_from_cache += 1;
        self.components.lock().insert(sha256.to_string(), c.clone());
        Some(c)
    }

    /// Makes sure the component `sha256` is compiled and in memory (compiling
    /// the stored bytes if needed), so that binding it costs no compilation.
    /// Fails when its bytes are not stored here.
    pub fn precompile(&self, sha256: &str) -> Result<(), PluginError> {
        if self.compiled(sha256).is_some() {
            return Ok(());
        }
        let bytes = self.registry.lock().read_blob(sha256)?;
        self.prepare(&bytes).map(|_| ())
    }

    /// Whether the component `sha256` is compiled in memory right now.
    pub fn is_compiled(&self, sha256: &str) -> bool {
        self.components.lock().contains_key(sha256)
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
        let mut stats = *self.stats.lock();
        stats.instance_memory = self.budget.used() as u64;
        stats
    }

    // ----- loading -------------------------------------------------------

    pub(crate) fn find(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Arc<PluginVersion>, PluginError> {
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
        let component = match self.compiled(&meta.sha256) {
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
    pub(crate) fn bind_plugin(
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
        let limits = Limits::for_binding(&self.config, &meta, &binding);
        let bound = Arc::new(BoundPlugin::new(
            plugin,
            binding,
            limits,
            self.budget.clone(),
        )?);
        self.idle.register(&bound);
        Ok(bound)
    }

    /// The binding a new bind of this version gets: this node's default limits for it.
    pub fn new_binding(
        &self,
        name: &str,
        version: Option<u32>,
        config: &str,
    ) -> Result<Binding, PluginError> {
        let meta = self.find(name, version)?;
        let (memory_cap, fuel) = self.config.limits_for(&meta.name, meta.code_bytes());
        Ok(Binding {
            plugin: meta.name.clone(),
            version: meta.version,
            sha256: meta.sha256.clone(),
            config: config.to_string(),
            fuel: Some(fuel),
            memory_cap: Some(memory_cap as u64),
        })
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

fn report(bytes: &[u8], validated: Validated) -> Result<ValidationReport, PluginError> {
    let content = inspect(bytes).map_err(PluginError::InvalidComponent)?;
    Ok(ValidationReport {
        world: validated.world,
        exports: validated.exports,
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
        code_size: content.code_size,
        canonical: content.canonical,
    })
}

fn same_content(latest: &PluginVersion, report: &ValidationReport) -> bool {
    PluginRuntime::is_unchanged(latest, &report.sha256, &report.canonical)
}
