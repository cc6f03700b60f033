//! Write Syncbase plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing one world of the
//! `syncbase:plugin@0.2.0` WIT package (`wit/` in the Syncbase repository):
//! a conflict **resolver**, a change **filter**, or a **snapshot policy**.
//! With this crate you implement a trait ([`Resolver`], [`Filter`],
//! [`SnapshotPolicy`]) on ordinary Rust types, export it with a macro, and
//! unit-test it natively with `cargo test`.
//!
//! ```
//! use syncbase_guest::{Change, Resolution, Resolver, Version, merge_fields, incoming_wins};
//!
//! /// Concurrent edits to different fields both survive.
//! pub struct FieldMerge;
//!
//! impl Resolver for FieldMerge {
//!     fn configure(config: &str) -> Result<Self, String> {
//!         syncbase_guest::no_config(config).map(|()| FieldMerge)
//!     }
//!
//!     fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {
//!         match (current.fields(), incoming.fields(), incoming.before_fields()) {
//!             (Some(cur), Some(inc), Some(before)) => Resolution::Merged(merge_fields(
//!                 &cur, &inc, &before, incoming_wins(current, incoming),
//!             )),
//!             _ => syncbase_guest::last_writer_wins(current, incoming),
//!         }
//!     }
//! }
//!
//! syncbase_guest::export_resolver!(FieldMerge);
//! ```
//!
//! Build the crate into a component from the repository root with
//! `scripts/build-plugin path/to/plugin` (see `guest-sdk/README.md`).
//!
//! Plugins must be deterministic: the answer may depend only on the arguments
//! and the configuration. There is no clock, no randomness and no I/O; an
//! instance may serve many calls, so keep no state across calls.
//!
//! On `wasm32` this crate is the plugin's global allocator: a bump arena that
//! is reused once everything a call allocated is freed, which makes copying
//! the arguments in nearly free. So a plugin crate must not declare its own
//! `#[global_allocator]`, and anything meant to outlive a call belongs in the
//! value `configure` returns (it is allocated outside the arena); memory kept
//! past a call any other way is safe but stops the arena's reuse.

// Natively the arena is only exercised by its tests; on wasm32 it is the
// global allocator and the export glue uses it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod arena;
mod config;
mod macros;
mod merge;
mod types;
mod worlds;

#[cfg(target_arch = "wasm32")]
pub mod bindings;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __export {
    pub use crate::export::*;
}
#[cfg(target_arch = "wasm32")]
mod export;

pub use config::{no_config, parse_config};
pub use merge::{apply_delta, incoming_wins, last_writer_wins, merge_fields, merge_fields_owned};
pub use serde_json::{self, Map, Value, json};
pub use types::{
    Change, Decision, Direction, Fields, Op, Resolution, Stamp, Stats, Verdict, Version,
    parse_fields,
};
pub use worlds::{Filter, Resolver, SnapshotPolicy};
