//! Compiled plugins and the calls into them.
//!
//! A [`LoadedPlugin`] is one compiled component version with its
//! pre-instantiated form (`InstancePre`, type-checked against its world once).
//! A [`BoundPlugin`] is a loaded plugin plus the configuration of one binding:
//! it owns the instances that serve that binding's calls, each configured
//! once. Every call runs with a fresh fuel budget in a store whose memory
//! growth is capped; a call that fails discards its instance (a trapped store
//! is poisoned) and yields the built-in default as a typed [`Outcome`].
//!
//! Every store's linear memory is charged to the runtime's [`Budget`] (a
//! node-wide cap on plugin memory). A growth the budget cannot cover first
//! drops every binding's idle instances; if that is not enough the call fails
//! as [`CallFailure::Unavailable`], a fault of the node rather than of the
//! plugin. A binding kept only for rollback is *parked*: it keeps its compiled
//! code, but no instance.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, PoolConcurrencyLimitError, ResourceLimiter, Store, Trap};

use crate::binding::Binding;
use crate::bindings::filter::{Filter, FilterPre};
use crate::bindings::resolver::{Resolver, ResolverPre};
use crate::bindings::snapshot_policy::{SnapshotPolicy, SnapshotPolicyPre};
use crate::engine::{InstanceReuse, RuntimeConfig};
use crate::error::PluginError;
use crate::metrics::Metrics;
use crate::outcome::{
    CallFailure, DecidedBy, Outcome, check_resolution, check_verdict, default_decision,
    default_resolution, default_verdict,
};
use crate::registry::PluginVersion;
use crate::types::{Change, Decision, Direction, Resolution, Stats, Verdict, Version};
use crate::world::World;

/// The data of every plugin store: only the resource limiter. Plugins get no
/// host functions, so there is nothing else.
pub(crate) struct HostState {
    limiter: Limiter,
}

/// The node-wide budget of plugin linear memory, shared by every store.
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Whose idle instances to drop when the budget runs short.
    idle: Arc<IdleInstances>,
}

impl Budget {
    pub fn new(limit: usize, idle: Arc<IdleInstances>) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            idle,
        }
    }

    /// Bytes of linear memory held by live instances right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Reserves `bytes`, dropping idle instances first if that is what it takes.
    fn reserve(&self, bytes: usize) -> bool {
        if bytes == 0 || self.try_reserve(bytes) {
            return true;
        }
        self.idle.drop_all();
        self.try_reserve(bytes)
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

struct Limiter {
    memory_cap: usize,
    table_elements: usize,
    budget: Arc<Budget>,
    /// Bytes this store holds in the budget (released when the store is dropped).
    held: usize,
    /// The last growth reserved, released again if the growth then fails.
    last: usize,
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

/// The error a store reports when a memory tries to grow past the cap.
#[derive(Debug, thiserror::Error)]
#[error("memory would grow to {desired} bytes, over the {cap}-byte cap")]
struct MemoryCapExceeded {
    desired: usize,
    cap: usize,
}

/// The error a store reports when the node's plugin memory budget is spent.
#[derive(Debug, thiserror::Error)]
#[error(
    "the node's plugin memory budget ({limit} bytes) is spent by other instances; \
     growing a memory to {desired} bytes must wait"
)]
struct BudgetExceeded {
    desired: usize,
    limit: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                desired,
                cap: self.memory_cap,
            }));
        }
        let delta = desired.saturating_sub(current);
        if !self.budget.reserve(delta) {
            return Err(wasmtime::Error::new(BudgetExceeded {
                desired,
                limit: self.budget.limit,
            }));
        }
        self.held += delta;
        self.last = delta;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.budget.release(self.last);
        self.held -= self.last;
        self.last = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }
}

/// A linker with nothing in it but the (type-only) `types` interface.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let mut linker = Linker::new(engine);
    linker
        .instance("syncbase:plugin/types@0.2.0")
        .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
    Ok(linker)
}

/// Classifies a wasmtime error from instantiating or calling a plugin.
fn classify(error: &wasmtime::Error) -> CallFailure {
    if let Some(spent) = error.downcast_ref::<BudgetExceeded>() {
        return CallFailure::Unavailable(spent.to_string());
    }
    if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        return CallFailure::MemoryCap {
            desired: cap.desired as u64,
            cap: cap.cap as u64,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallFailure::OutOfFuel,
        Some(Trap::StackOverflow) => CallFailure::StackOverflow,
        Some(trap) => CallFailure::Trap(trap.to_string()),
        None => CallFailure::Trap(format!("{error:#}")),
    }
}

/// The pre-instantiated component, typed by world.
enum Pre {
    Resolver(ResolverPre<HostState>),
    Filter(FilterPre<HostState>),
    SnapshotPolicy(SnapshotPolicyPre<HostState>),
}

/// The typed exports of one live instance.
enum Exports {
    Resolver(Resolver),
    Filter(Filter),
    SnapshotPolicy(SnapshotPolicy),
}

/// Limits every call of one binding runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    fuel: u64,
    memory_cap: usize,
    table_elements: usize,
    reuse: InstanceReuse,
}

impl Limits {
    /// The limits a binding records, or (for a binding made before bindings recorded them)
    /// this node's defaults for the plugin.
    pub fn for_binding(config: &RuntimeConfig, meta: &PluginVersion, binding: &Binding) -> Limits {
        let (memory_cap, fuel) = config.limits_for(&meta.name, meta.code_bytes());
        Limits {
            fuel: binding.fuel.unwrap_or(fuel),
            memory_cap: binding
                .memory_cap
                .map_or(memory_cap, |m| usize::try_from(m).unwrap_or(usize::MAX)),
            table_elements: config.max_table_elements,
            reuse: config.reuse,
        }
    }
}

/// One compiled plugin version, ready to instantiate.
pub(crate) struct LoadedPlugin {
    pub meta: Arc<PluginVersion>,
    pub component: Component,
    pre: Pre,
    pub metrics: Metrics,
    failure_logged: AtomicBool,
}

impl LoadedPlugin {
    /// Type-checks `component` against `world` and pre-instantiates it.
    pub fn new(
        linker: &Linker<HostState>,
        component: Component,
        meta: Arc<PluginVersion>,
    ) -> Result<LoadedPlugin, PluginError> {
        let pre = pre_instantiate(linker, &component, meta.world)?;
        Ok(LoadedPlugin {
            meta,
            component,
            pre,
            metrics: Metrics::default(),
            failure_logged: AtomicBool::new(false),
        })
    }

    /// Logs the first failure of this plugin version; later ones are only counted.
    fn note_failure(&self, failure: &CallFailure) {
        self.metrics.failure(failure);
        if !self.failure_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                plugin = %self.meta.name,
                version = self.meta.version,
                sha256 = %self.meta.sha256,
                %failure,
                "plugin call failed; the built-in default was applied (further failures of \
                 this version are counted, and logged at debug level)"
            );
        } else {
            tracing::debug!(
                plugin = %self.meta.name,
                version = self.meta.version,
                %failure,
                "plugin call failed; the built-in default was applied"
            );
        }
    }
}

/// Type-checks a component's exports against `world`.
pub(crate) fn type_check(
    linker: &Linker<HostState>,
    component: &Component,
    world: World,
) -> Result<(), PluginError> {
    pre_instantiate(linker, component, world).map(|_| ())
}

/// Type-checks a component's exports against `world` and pre-instantiates it.
fn pre_instantiate(
    linker: &Linker<HostState>,
    component: &Component,
    world: World,
) -> Result<Pre, PluginError> {
    let wrong = |e: wasmtime::Error| {
        PluginError::WrongWorld(format!("its exports do not match the {world} world: {e:#}"))
    };
    let instance_pre = linker.instantiate_pre(component).map_err(wrong)?;
    Ok(match world {
        World::Resolver => Pre::Resolver(ResolverPre::new(instance_pre).map_err(wrong)?),
        World::Filter => Pre::Filter(FilterPre::new(instance_pre).map_err(wrong)?),
        World::SnapshotPolicy => {
            Pre::SnapshotPolicy(SnapshotPolicyPre::new(instance_pre).map_err(wrong)?)
        }
    })
}

/// A live, configured instance.
struct Instance {
    store: Store<HostState>,
    exports: Exports,
    calls: u64,
}

/// Every bound plugin of a runtime, so that idle instances can be dropped when
/// the engine's pool runs out of slots: idle instances of one binding must not
/// keep another binding from getting an instance.
#[derive(Default)]
pub(crate) struct IdleInstances {
    bound: Mutex<Vec<Weak<BoundPlugin>>>,
}

impl IdleInstances {
    pub fn register(&self, bound: &Arc<BoundPlugin>) {
        let mut list = self.bound.lock();
        list.retain(|b| b.strong_count() > 0);
        list.push(Arc::downgrade(bound));
    }

    /// Drops every idle instance of every bound plugin, freeing their slots.
    fn drop_all(&self) {
        let live: Vec<Arc<BoundPlugin>> =
            self.bound.lock().iter().filter_map(Weak::upgrade).collect();
        for bound in live {
            let idle = std::mem::take(&mut *bound.idle.lock());
            drop(idle);
        }
    }
}

/// Why [`BoundPlugin::try_instantiate`] gave no instance.
enum Slots {
    /// The engine's pool has no free slot of some kind (instances, memories, tables).
    Full(String),
    /// Anything else: the plugin's own failure.
    Failed(CallFailure),
}

/// A loaded plugin with one binding's configuration; serves that binding's calls.
pub(crate) struct BoundPlugin {
    pub plugin: Arc<LoadedPlugin>,
    pub binding: Binding,
    /// This binding's counters (the plugin version's are in `plugin.metrics`).
    pub metrics: Metrics,
    limits: Limits,
    idle: Mutex<Vec<Instance>>,
    /// Kept only for rollback: instances are not kept.
    parked: AtomicBool,
    others: Arc<IdleInstances>,
    budget: Arc<Budget>,
}

impl BoundPlugin {
    /// Binds `plugin` with `binding.config`, creating and configuring a first
    /// instance so that a configuration the plugin refuses fails the bind.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        binding: Binding,
        limits: Limits,
        budget: Arc<Budget>,
    ) -> Result<BoundPlugin, PluginError> {
        let bound = BoundPlugin {
            plugin,
            binding,
            metrics: Metrics::default(),
            limits,
            idle: Mutex::new(Vec::new()),
            parked: AtomicBool::new(false),
            others: budget.idle.clone(),
            budget,
        };
        match bound.instantiate() {
            Ok(instance) => bound.checkin(instance),
            Err(CallFailure::Configure(message)) => {
                return Err(PluginError::Config {
                    plugin: bound.plugin.meta.name.clone(),
                    message,
                });
            }
            Err(failure) => {
                return Err(PluginError::ConfigureFailed {
                    plugin: bound.plugin.meta.name.clone(),
                    failure,
                });
            }
        }
        Ok(bound)
    }

    /// A fresh, configured instance. When the engine's pool has no free slot,
    /// every idle instance of the runtime is dropped and instantiation is tried
    /// once more; if that fails too, the failure is [`CallFailure::Unavailable`].
    fn instantiate(&self) -> Result<Instance, CallFailure> {
        match self.try_instantiate() {
            Err(Slots::Full(_)) => {
                self.others.drop_all();
                self.try_instantiate().map_err(|e| match e {
                    Slots::Full(m) => CallFailure::Unavailable(m),
                    Slots::Failed(f) => f,
                })
            }
            Err(Slots::Failed(f)) => Err(f),
            Ok(instance) => Ok(instance),
        }
    }

    fn try_instantiate(&self) -> Result<Instance, Slots> {
        let engine = self.plugin.component.engine();
        let mut store = Store::new(
            engine,
            HostState {
                limiter: Limiter {
                    memory_cap: self.limits.memory_cap,
                    table_elements: self.limits.table_elements,
                    budget: self.budget.clone(),
                    held: 0,
                    last: 0,
                },
            },
        );
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| Slots::Failed(CallFailure::Instantiate(format!("{e:#}"))))?;
        self.plugin.metrics.instantiated();
        let instantiated = match &self.plugin.pre {
            Pre::Resolver(pre) => pre.instantiate(&mut store).map(Exports::Resolver),
            Pre::Filter(pre) => pre.instantiate(&mut store).map(Exports::Filter),
            Pre::SnapshotPolicy(pre) => pre.instantiate(&mut store).map(Exports::SnapshotPolicy),
        };
        let exports = instantiated.map_err(|e| {
            if e.chain().any(|c| c.is::<PoolConcurrencyLimitError>()) {
                return Slots::Full(format!("{e:#}"));
            }
            Slots::Failed(match classify(&e) {
                CallFailure::Trap(_) => CallFailure::Instantiate(format!("{e:#}")),
                other => other,
            })
        })?;
        let config = self.binding.config.as_str();
        let configured = match &exports {
            Exports::Resolver(r) => r.call_configure(&mut store, config),
            Exports::Filter(f) => f.call_configure(&mut store, config),
            Exports::SnapshotPolicy(s) => s.call_configure(&mut store, config),
        };
        match configured {
            Ok(Ok(())) => Ok(Instance {
                store,
                exports,
                calls: 0,
            }),
            Ok(Err(message)) => Err(Slots::Failed(CallFailure::Configure(message))),
            Err(e) => Err(Slots::Failed(classify(&e))),
        }
    }

    fn checkout(&self) -> Result<Instance, CallFailure> {
        if let InstanceReuse::Warm { .. } = self.limits.reuse
            && let Some(instance) = self.idle.lock().pop()
        {
            return Ok(instance);
        }
        self.instantiate()
    }

    fn checkin(&self, instance: Instance) {
        if let InstanceReuse::Warm {
            max_idle,
            max_calls,
        } = self.limits.reuse
            && instance.calls < max_calls
            && !self.parked.load(Ordering::Acquire)
        {
            let mut idle = self.idle.lock();
            if idle.len() < max_idle {
                idle.push(instance);
            }
        }
    }

    /// Parks the binding (it is kept only for rollback): its idle instances
    /// are dropped and no more are kept, so only its compiled code stays.
    pub fn park(&self) {
        self.parked.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.idle.lock());
        drop(idle);
    }

    /// Makes a parked binding active again: instances are kept as usual.
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Release);
    }

    /// Runs one call on an instance with a fresh fuel budget, checks the
    /// answer, and returns the instance to the pool unless it trapped (an
    /// error the plugin returned leaves a usable instance).
    fn call<T>(
        &self,
        run: impl FnOnce(&Exports, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
        check: impl FnOnce(&T) -> Result<(), CallFailure>,
        default: impl FnOnce() -> T,
    ) -> Outcome<T> {
        let _in_flight = self.plugin.metrics.start_call();
        let result = self.checkout().and_then(|mut instance| {
            instance
                .store
                .set_fuel(self.limits.fuel)
                .map_err(|e| CallFailure::Instantiate(format!("{e:#}")))?;
            let answer = run(&instance.exports, &mut instance.store);
            let left = instance.store.get_fuel().unwrap_or(0);
            let used = self.limits.fuel.saturating_sub(left);
            self.plugin.metrics.call(used);
            self.metrics.call(used);
            let answer = answer.map_err(|e| classify(&e))?;
            instance.calls += 1;
            let value = match answer {
                Ok(value) => value,
                Err(message) => {
                    self.checkin(instance);
                    return Err(CallFailure::Raised(bounded(message)));
                }
            };
            check(&value)?;
            self.checkin(instance);
            Ok(value)
        });
        match result {
            Ok(value) => Outcome {
                value,
                decided_by: DecidedBy::Plugin(self.plugin.meta.clone()),
            },
            Err(failure) => {
                self.metrics.failure(&failure);
                self.plugin.note_failure(&failure);
                Outcome {
                    value: default(),
                    decided_by: DecidedBy::Fallback {
                        plugin: self.plugin.meta.clone(),
                        failure,
                    },
                }
            }
        }
    }

    pub fn resolve(&self, current: &Version, incoming: &Change) -> Outcome<Resolution> {
        self.call(
            |exports, store| match exports {
                Exports::Resolver(r) => r.call_resolve(store, current, incoming),
                _ => Err(wasmtime::Error::msg("not a resolver")),
            },
            check_resolution,
            || default_resolution(current, incoming),
        )
    }

    pub fn filter(&self, direction: Direction, change: &Change) -> Outcome<Verdict> {
        self.call(
            |exports, store| match exports {
                Exports::Filter(f) => f.call_filter(store, direction, change),
                _ => Err(wasmtime::Error::msg("not a filter")),
            },
            |verdict| check_verdict(change, verdict),
            default_verdict,
        )
    }

    pub fn decide(&self, stats: Stats) -> Outcome<Decision> {
        self.call(
            |exports, store| match exports {
                Exports::SnapshotPolicy(s) => s.call_decide(store, stats),
                _ => Err(wasmtime::Error::msg("not a snapshot policy")),
            },
            |_| Ok(()),
            default_decision,
        )
    }
}

/// The longest error message kept from a plugin: a traceback is a few kilobytes,
/// and the message goes into logs and API answers.
const MAX_MESSAGE: usize = 16 << 10;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (truncated)");
    }
    message
}
