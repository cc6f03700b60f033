//! The one wasmtime `Engine` every plugin runs on, and the limits it enforces.
//!
//! Everything that makes a plugin deterministic and sandboxed is decided here:
//! component model without async (`concurrency_support(false)`), NaN
//! canonicalisation, deterministic relaxed SIMD, no threads, fuel metering, a
//! wasm stack limit, and the pooling allocator whose per-memory maximum is the
//! memory cap. No WASI or other host functions are ever linked.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::PluginError;

/// How instances serve calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceReuse {
    /// A fresh instance (from the pre-instantiated component) for every call.
    /// Nothing survives between calls; costs one instantiation per call.
    PerCall,
    /// Warm instances kept in a pool per binding and reused across calls. An
    /// instance that failed is discarded, and one that served `max_calls` is
    /// recycled. The benchmark shows this is several times faster for `resolve`.
    Warm {
        /// Idle instances kept per binding.
        max_idle: usize,
        /// Calls an instance serves before it is replaced by a fresh one.
        max_calls: u64,
    },
}

/// Per-plugin overrides of the call limits (see [`RuntimeConfig::plugin_limits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginLimits {
    /// Memory cap of each linear memory, in bytes.
    pub memory_cap: Option<usize>,
    /// Fuel per call.
    pub fuel_per_call: Option<u64>,
}

/// The largest memory cap a binding may carry: a wasm32 memory cannot grow past 4 GiB.
pub const MAX_MEMORY_CAP: u64 = 1 << 32;

/// Limits and tuning of the plugin runtime.
///
/// The call limits (`fuel_per_call`, `memory_cap` and their heavy variants) are the
/// *defaults of new bindings*: a binding records the limits it was made with (on a
/// replicating node the binding event carries them), so nodes configured differently, or a
/// node restarted with other flags, still run a bound plugin under the same limits and decide
/// the same way. A component with up to `heavy_component_bytes` of code (a Rust or C plugin:
/// tens of kilobytes) gets `memory_cap` and `fuel_per_call`; a larger one (Python and
/// JavaScript components carry their interpreter: megabytes) gets `heavy_memory_cap` and
/// `heavy_fuel_per_call`; `plugin_limits` overrides either by plugin name. Custom sections do
/// not count as code (see `content.rs`), so padding does not make a plugin heavy. The
/// defaults run every shipped plugin in every language.
///
/// `memory_budget` is the node's own capacity: the linear memory of every live instance
/// together. It never changes a decision: a call that would exceed it first drops idle
/// instances, then fails as [`CallFailure::Unavailable`](crate::CallFailure), which
/// deterministic callers retry rather than answer.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Fuel (roughly, wasm instructions) one call may use before it fails.
    pub fuel_per_call: u64,
    /// Maximum size of each linear memory of a plugin instance, in bytes.
    pub memory_cap: usize,
    /// Components with more code than this many bytes are heavy guests.
    pub heavy_component_bytes: usize,
    /// `memory_cap` for heavy guests.
    pub heavy_memory_cap: usize,
    /// `fuel_per_call` for heavy guests (also covers instantiation and
    /// `configure`, where an interpreter sets itself up).
    pub heavy_fuel_per_call: u64,
    /// Limits by plugin name, overriding the above.
    pub plugin_limits: BTreeMap<String, PluginLimits>,
    /// Linear memory of all live plugin instances together, in bytes.
    pub memory_budget: usize,
    /// Maximum wasm stack a call may use, in bytes.
    pub max_stack: usize,
    /// Maximum number of plugin instances alive at once (pooling allocator slots).
    pub max_instances: u32,
    /// Maximum elements of a table (function pointers); large guests need more.
    pub max_table_elements: usize,
    /// Largest accepted component, in bytes.
    pub max_component_bytes: usize,
    /// How instances serve calls.
    pub reuse: InstanceReuse,
    /// Whether the runtime saves the binding table to `bindings.json` in its
    /// directory. Turn off when the host persists bindings itself.
    pub persist_bindings: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            fuel_per_call: 20_000_000,
            memory_cap: 64 << 20,
            heavy_component_bytes: 1 << 20,
            heavy_memory_cap: 256 << 20,
            heavy_fuel_per_call: 1_000_000_000,
            plugin_limits: BTreeMap::new(),
            memory_budget: 1 << 30,
            max_stack: 512 << 10,
            max_instances: 128,
            max_table_elements: 100_000,
            max_component_bytes: 64 << 20,
            reuse: InstanceReuse::Warm {
                max_idle: 8,
                max_calls: 100_000,
            },
            persist_bindings: true,
        }
    }
}

impl RuntimeConfig {
    /// The default (memory cap, fuel per call) of a new binding of a plugin of this name with
    /// `code_bytes` of code (its size without custom sections).
    pub fn limits_for(&self, plugin: &str, code_bytes: u64) -> (usize, u64) {
        let heavy = code_bytes > self.heavy_component_bytes as u64;
        let (memory, fuel) = if heavy {
            (self.heavy_memory_cap, self.heavy_fuel_per_call)
        } else {
            (self.memory_cap, self.fuel_per_call)
        };
        let o = self.plugin_limits.get(plugin).copied().unwrap_or_default();
        (
            o.memory_cap.unwrap_or(memory),
            o.fuel_per_call.unwrap_or(fuel),
        )
    }
}

/// Core module instances one component instance may create.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Builds the engine. Fails only if wasmtime rejects the configuration.
pub(crate) fn build_engine(config: &RuntimeConfig) -> Result<Engine, PluginError> {
    let mut pool = PoolingAllocationConfig::new();
    let instances = config.max_instances.max(1);
    // Core instances are host allocations counted against the limit, so every component
    // instance may have its maximum (a Python guest is ~40: CPython, its libraries and
    // shims). Memories and tables reserve address space per slot, so they get what the
    // shipped guests use.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        // Caps are enforced by each store's limiter (a deterministic trap at the binding's
        // cap), never by the pool: a binding made on another node may carry a larger cap
        // than this node's defaults, and a pool refusing growth would change what the
        // plugin sees (memory.grow returning -1) on this node only.
        .max_memory_size(MAX_MEMORY_CAP as usize)
        .table_elements(config.max_table_elements)
        // Keeping a little of each memory resident makes re-instantiation a
        // memset instead of a page fault storm.
        .linear_memory_keep_resident(64 << 10);

    // Threads (shared memory, atomics across agents) are not even compiled in:
    // wasmtime's `threads` feature is off, so such modules fail validation.
    let mut c = Config::new();
    c.wasm_component_model(true)
        .concurrency_support(false)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .consume_fuel(true)
        .max_wasm_stack(config.max_stack)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).map_err(|e| PluginError::Engine(format!("{e:#}")))
}

/// A stable hex digest of everything that makes compiled code compatible with
/// this engine (wasmtime version, target, settings). Compiled artifacts are
/// cached under it, so an upgrade or a setting change recompiles.
pub(crate) fn compatibility_hash(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
