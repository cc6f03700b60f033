//! The Syncbase plugin runtime: the only code that touches wasmtime.
//!
//! Plugins are WebAssembly components implementing a world of the
//! `syncbase:plugin@0.2.0` WIT package (`wit/`): `resolver` (conflict
//! resolution), `filter` (outbound/inbound change filters) or
//! `snapshot-policy`. This crate:
//!
//! - runs them on one engine configured for determinism and isolation (no
//!   WASI, no imports at all outside the package, NaN canonicalisation,
//!   deterministic relaxed SIMD, fuel, memory cap, stack limit, pooling
//!   allocator) — see [`RuntimeConfig`];
//! - validates uploads, each kind of bad input with its own [`PluginError`];
//! - stores them content-addressed with name/version metadata, and caches
//!   their compiled code on disk keyed by (sha256, engine compatibility);
//! - binds them to collections (resolver, inbound filter, outbound filter) or
//!   to the node (snapshot policy), swapping atomically while serving calls,
//!   keeping the previous version loaded for instant rollback;
//! - calls them: [`PluginRuntime::resolve`], [`PluginRuntime::filter`],
//!   [`PluginRuntime::decide`] always return an [`Outcome`]. A plugin that
//!   traps, runs out of fuel, hits its memory cap or answers garbage yields
//!   the built-in default (last-writer-wins / keep / no snapshot) and a typed
//!   [`CallFailure`], counted per plugin version and logged once per version.
//!
//! It must not: give plugins any host function, clock or randomness; block on
//! anything but its own short mutexes; know about HTTP, SQLite or NATS.

mod binding;
mod bindings;
mod cache;
mod content;
mod engine;
mod error;
mod live;
mod metrics;
mod outcome;
mod plugin;
mod registry;
mod runtime;
mod validate;
mod world;

/// The WIT record and variant types, as generated from `wit/` (shared by all
/// worlds). Record data fields hold JSON object text.
pub mod types {
    pub use crate::bindings::types::{
        Change, Decision, Direction, Op, Resolution, Stats, Verdict, Version,
    };
}

pub use binding::{Binding, BindingTable, Slot, Target};
pub use cache::CompiledFrom;
pub use content::{Content, SOURCE_SECTION, inspect};
pub use engine::{InstanceReuse, MAX_MEMORY_CAP, PluginLimits, RuntimeConfig};
pub use error::{ErrorKind, PluginError};
pub use live::BindingMetrics;
pub use metrics::MetricsSnapshot;
pub use outcome::{
    CallFailure, DecidedBy, Outcome, default_decision, default_resolution, default_verdict,
};
pub use registry::{PluginVersion, sha256_hex, validate_name};
pub use runtime::{
    BindingState, BoundAs, PluginInfo, PluginRuntime, RuntimeStats, Uploaded, ValidationReport,
};
pub use world::World;
