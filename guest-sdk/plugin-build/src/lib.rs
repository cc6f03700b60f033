//! Builds Syncbase plugins into WebAssembly components.
//!
//! Rust plugin crates: see below. C, Python and JavaScript plugins:
//! [`build_foreign`] drives each language's registry toolchain (see
//! `foreign.rs`).
//!
//! `cargo build --target wasm32-unknown-unknown --release` produces a core
//! module; [`componentize`] wraps it into a component of one
//! `syncbase:plugin@0.2.0` world. [`build_plugins`] does both for one or more
//! plugin crates. The `syncbase-plugin-build` binary (and `scripts/build-plugin`)
//! is the command-line face of this crate; the `syncbase` CLI will reuse it.
//!
//! [`scaffold`] writes a new plugin project from the templates in
//! `templates/` (`syncbase plugin new`). It is all the host needs of this
//! crate, so everything else sits behind the default `build` feature.
//!
//! This crate only builds: it never loads or runs a component (that is the
//! plugin runtime's job).

#[cfg(feature = "build")]
mod cargo;
#[cfg(feature = "build")]
mod componentize;
#[cfg(feature = "build")]
mod foreign;
mod scaffold;
#[cfg(feature = "build")]
mod source;
#[cfg(feature = "build")]
pub mod tools;

/// The WIT package, compiled in so the builder and the scaffolder work outside the
/// repository (and are always the contract this binary speaks).
pub(crate) const WIT_FILES: [(&str, &str); 5] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("resolver.wit", include_str!("../../../wit/resolver.wit")),
    ("filter.wit", include_str!("../../../wit/filter.wit")),
    (
        "snapshot-policy.wit",
        include_str!("../../../wit/snapshot-policy.wit"),
    ),
    ("README.md", include_str!("../../../wit/README.md")),
];

/// The C helper library every C plugin is compiled with.
pub(crate) const C_SDK: [(&str, &str); 3] = [
    (
        "syncbase.h",
        include_str!("../../../plugins/c/sdk/syncbase.h"),
    ),
    (
        "syncbase.c",
        include_str!("../../../plugins/c/sdk/syncbase.c"),
    ),
    ("nowasi.c", include_str!("../../../plugins/c/sdk/nowasi.c")),
];
/// The Python helper module, importable as `syncbase`.
pub(crate) const PY_SDK: (&str, &str) = (
    "syncbase.py",
    include_str!("../../../plugins/python/sdk/syncbase.py"),
);
/// The JavaScript helper module, importable as `./syncbase.js`.
pub(crate) const JS_SDK: (&str, &str) = (
    "syncbase.js",
    include_str!("../../../plugins/js/sdk/syncbase.js"),
);

use std::fmt;
use std::path::PathBuf;

#[cfg(feature = "build")]
pub use cargo::{BuildOptions, Built, build_plugins};
#[cfg(feature = "build")]
pub use componentize::{componentize, wit_package};
#[cfg(feature = "build")]
pub use foreign::{
    C_INSTALL, ForeignBuild, JS_INSTALL, Manifest, PYTHON_INSTALL, build_foreign, c_bindings,
    read_manifest,
};
pub use scaffold::{render, scaffold, validate_plugin_name, vendor};

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Rust,
    C,
    Python,
    Js,
}

impl Lang {
    /// Every language.
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::C, Lang::Python, Lang::Js];

    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// Parses `rust`, `c`, `python` or `js`.
    pub fn from_name(name: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The worlds of the `syncbase:plugin@0.2.0` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    Resolver,
    Filter,
    SnapshotPolicy,
}

impl World {
    /// Every world.
    pub const ALL: [World; 3] = [World::Resolver, World::Filter, World::SnapshotPolicy];

    /// The world's name in the WIT package.
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Resolver => "resolver",
            World::Filter => "filter",
            World::SnapshotPolicy => "snapshot-policy",
        }
    }

    /// The function that marks a module as implementing this world.
    #[cfg(feature = "build")]
    pub(crate) fn entry_point(self) -> &'static str {
        match self {
            World::Resolver => "resolve",
            World::Filter => "filter",
            World::SnapshotPolicy => "decide",
        }
    }

    /// Parses a world name as written in WIT.
    pub fn from_wit_name(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.wit_name() == name)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wit_name())
    }
}

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed{hint}")]
    Cargo { command: String, hint: String },
    #[error("cannot read cargo metadata for {dir}: {detail}")]
    Metadata { dir: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    #[error("already a component: build the plugin crate, not a component")]
    AlreadyComponent,
    #[error(
        "the module exports none of `resolve`, `filter`, `decide`, so it implements no \
         syncbase:plugin world (did you invoke syncbase_guest::export_resolver! or similar?); \
         it exports: {exports}"
    )]
    NoWorld { exports: String },
    #[error("the module exports the functions of several worlds ({0}); a plugin implements one")]
    SeveralWorlds(String),
    #[error("the syncbase:plugin WIT package does not parse: {0}")]
    Wit(String),
    #[error("cannot make a component: {0}")]
    Componentize(String),
    #[error("{tool} is not installed: run `{install}`")]
    MissingTool { tool: String, install: String },
    #[error("`{command}` failed:\n{output}")]
    Tool { command: String, output: String },
    #[error("{path}: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("{0} is a Rust plugin crate: build it without --lang (or with --lang rust)")]
    WrongLang(PathBuf),
    #[error("{0}")]
    Scaffold(String),
}
