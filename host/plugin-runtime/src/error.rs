//! The plugin runtime's one error type, for every management operation
//! (upload, bind, delete, ...). Failures of plugin *calls* are not errors: they
//! are [`CallFailure`](crate::CallFailure) values inside an
//! [`Outcome`](crate::Outcome), because the caller always gets an answer.

use std::path::PathBuf;

use crate::binding::Target;
use crate::outcome::CallFailure;
use crate::world::World;

/// How an API should report a [`PluginError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong (bad component, bad name, bad configuration): 400.
    BadRequest,
    /// No such plugin or version: 404.
    NotFound,
    /// The request conflicts with current state (in use, nothing to roll back): 409.
    Conflict,
    /// Our fault (disk, engine): 500.
    Internal,
    /// This node lacks the resources right now (no free instance slot): 503.
    Unavailable,
}

/// Why a plugin management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    #[error(
        "this is a core WebAssembly module, not a component: build plugins with \
         `scripts/build-plugin` (it wraps the module with wit-component)"
    )]
    CoreModule,
    #[error("the component is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    #[error(
        "the component imports `{import}`; a plugin may import nothing outside \
         syncbase:plugin@0.2.0 (no WASI: no clock, randomness or I/O){hint}"
    )]
    ForbiddenImport {
        /// The first forbidden import.
        import: String,
        /// Every forbidden import.
        all: Vec<String>,
        /// How to fix it with common toolchains.
        hint: &'static str,
    },
    #[error("the component does not implement a syncbase:plugin world: {0}")]
    WrongWorld(String),
    #[error(
        "invalid plugin name `{0}`: use 1 to 64 characters from a-z, 0-9, '-' and '_', \
         starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("no plugin `{name}`{}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound { name: String, version: Option<u32> },
    #[error("no plugin with sha256 {0} in the registry")]
    MissingBlob(String),
    #[error("plugin `{plugin}` implements the {world} world and cannot be bound as {target}")]
    WorldMismatch {
        plugin: String,
        world: World,
        target: Target,
    },
    #[error("plugin `{plugin}` refused its configuration: {message}")]
    Config { plugin: String, message: String },
    #[error("plugin `{plugin}` failed while configuring: {failure}")]
    ConfigureFailed {
        plugin: String,
        failure: CallFailure,
    },
    #[error("plugin `{plugin}` version {version} is bound ({targets}); unbind it first")]
    InUse {
        plugin: String,
        version: u32,
        targets: String,
    },
    #[error("{0} has no previous binding to roll back to")]
    NothingToRollBack(Target),
    #[error(
        "unknown binding target `{0}`: use resolver, inbound-filter, outbound-filter or snapshot-policy"
    )]
    UnknownTarget(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot compile plugin: {0}")]
    Compile(String),
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
}

impl PluginError {
    /// How an API should report this error.
    pub fn kind(&self) -> ErrorKind {
        use PluginError::*;
        match self {
            ConfigureFailed { failure, .. } if failure.is_node_fault() => ErrorKind::Unavailable,
            NotWasm(_)
            | CoreModule
            | TooLarge { .. }
            | InvalidComponent(_)
            | ForbiddenImport { .. }
            | WrongWorld(_)
            | InvalidName(_)
            | WorldMismatch { .. }
            | Config { .. }
            | ConfigureFailed { .. }
            | UnknownTarget(_) => ErrorKind::BadRequest,
            NotFound { .. } | MissingBlob(_) => ErrorKind::NotFound,
            InUse { .. } | NothingToRollBack(_) => ErrorKind::Conflict,
            Io { .. } | Corrupt { .. } | Compile(_) | Engine(_) => ErrorKind::Internal,
        }
    }

    /// Whether the error comes from this node's resources, not from the plugin or
    /// the request: the same operation may succeed later or on another node.
    pub fn is_node_fault(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PluginError::Io {
            path: path.into(),
            source,
        }
    }
}
