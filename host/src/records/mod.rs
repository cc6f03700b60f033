//! Records: turning client input into stored record values.
//!
//! `validate` is the entry point (create/update input -> normalized record or field errors);
//! `coerce`, `checks` and `formats` are its private helpers. Nothing here touches SQLite.

mod checks;
mod coerce;
pub mod formats;
pub mod validate;
pub use coerce::{geo_point, geo_value};
