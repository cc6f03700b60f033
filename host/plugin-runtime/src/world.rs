//! The worlds of the `syncbase:plugin@0.2.0` package, as the host sees them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Resolver,
    Filter,
    SnapshotPolicy,
}

impl World {
    pub const ALL: [World; 3] = [World::Resolver, World::Filter, World::SnapshotPolicy];

    /// The world's name in WIT.
    pub fn name(self) -> &'static str {
        match self {
            World::Resolver => "resolver",
            World::Filter => "filter",
            World::SnapshotPolicy => "snapshot-policy",
        }
    }

    /// The export that identifies the world (each world also exports `configure`).
    pub(crate) fn entry_point(self) -> &'static str {
        match self {
            World::Resolver => "resolve",
            World::Filter => "filter",
            World::SnapshotPolicy => "decide",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
