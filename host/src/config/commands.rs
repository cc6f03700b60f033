//! The CLI's subcommands other than `serve`: superusers, import/export, and the clients of
//! a running node (`sync`, `snapshot`, `plugin`), with the flags that name that node.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use syncbase_plugin_build::{Lang, World};

#[derive(Debug, Subcommand)]
pub enum SuperuserCommand {
    /// Create a superuser, or set the password of an existing one.
    Upsert {
        /// The superuser's email address.
        email: String,
        /// The password (at least 8 characters).
        password: String,
        /// Data directory holding the SQLite database.
        #[arg(long, env = "SYNCBASE_DIR", default_value = "./sb_data")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a PocketBase (0.23 or newer) data directory: collections, records, users with
    /// their passwords and tokens, settings. PocketBase's files are only read. Run it while
    /// PocketBase is stopped (or it reads one consistent moment of it). What cannot be carried
    /// is listed at the end.
    Pocketbase {
        /// PocketBase's data directory (the pb_data folder holding data.db).
        pb_data: PathBuf,
        /// The Syncbase data directory to create.
        #[arg(long, env = "SYNCBASE_DIR", default_value = "./sb_data")]
        dir: PathBuf,
        /// Replace the database of a data directory that is not empty.
        #[arg(long)]
        force: bool,
        /// The environment variable holding the key PocketBase's settings were encrypted with
        /// (as given to PocketBase's --encryptionEnv).
        #[arg(long)]
        encryption_env: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export as a PocketBase 0.40 data directory (serve it with `pocketbase serve --dir OUT`).
    /// What PocketBase cannot represent is listed at the end.
    Pocketbase {
        /// The PocketBase data directory to create (a pb_data folder).
        out: PathBuf,
        /// The Syncbase data directory to export (only read).
        #[arg(long, env = "SYNCBASE_DIR", default_value = "./sb_data")]
        dir: PathBuf,
        /// Replace the database of an output directory that is not empty.
        #[arg(long)]
        force: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How the admin CLI reaches and authenticates with a running node.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Base URL of the node.
    #[arg(
        long,
        env = "SYNCBASE_URL",
        default_value = "http://127.0.0.1:8090",
        global = true,
        help_heading = "Node"
    )]
    pub url: String,
    /// A superuser token (instead of email and password).
    #[arg(long, env = "SYNCBASE_TOKEN", global = true, help_heading = "Node")]
    pub token: Option<String>,
    /// Superuser email, used with --password to log in.
    #[arg(long, env = "SYNCBASE_EMAIL", global = true, help_heading = "Node")]
    pub email: Option<String>,
    /// Superuser password, used with --email.
    #[arg(
        long,
        env = "SYNCBASE_PASSWORD",
        global = true,
        help_heading = "Node",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub action: SyncCommand,
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Node id, mode, NATS connection, stream and applied sequence, lag, outbox backlog, dead
    /// letters, bound plugins and peers (GET /api/sync/status).
    Status {
        /// Print the raw JSON document instead of a summary.
        #[arg(long)]
        json: bool,
        /// Also print a content hash of every replicated table (reads every row).
        #[arg(long)]
        hashes: bool,
    },
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Reach the cluster's NATS directly instead of a node (comma-separated URLs).
    #[arg(long, env = "SYNCBASE_NATS", value_delimiter = ',', global = true)]
    pub nats: Vec<String>,
    /// The cluster (stream SYNCBASE_<name>, bucket SYNCBASE_<name>_SNAPSHOTS) with --nats.
    #[arg(
        long,
        env = "SYNCBASE_CLUSTER",
        default_value = "syncbase",
        global = true
    )]
    pub cluster: String,
    /// NATS credentials file (.creds) for --nats.
    #[arg(long, env = "SYNCBASE_NATS_CREDS", global = true)]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name for --nats (with --nats-password).
    #[arg(long, env = "SYNCBASE_NATS_USER", global = true)]
    pub nats_user: Option<String>,
    /// NATS password for --nats-user.
    #[arg(long, env = "SYNCBASE_NATS_PASSWORD", global = true)]
    pub nats_password: Option<String>,
    #[command(subcommand)]
    pub action: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot now on a running node (--url) and store it in the cluster's bucket.
    Create,
    /// List the cluster's snapshots (newest first) and backups.
    List {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a snapshot and check it completely: its sha256, then its rows against the
    /// header's table hashes [default: the newest].
    Verify {
        /// A snapshot's name, a backup's name, or a local snapshot file.
        name: Option<String>,
    },
    /// Seed a data directory offline from a snapshot, a backup, or a local snapshot file
    /// [default: the newest snapshot], with the plugins its bindings name. Start a node on it
    /// to join the cluster from there, or alone.
    Restore {
        /// A snapshot's name, a backup's name, or a local snapshot file.
        name: Option<String>,
        /// The data directory to create (the node's --dir).
        #[arg(long)]
        to: PathBuf,
        /// Replace a database already in the directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub action: PluginCommand,
}

/// `syncbase plugin ...`: the commands that talk to a node take `Remote`'s flags; `new`,
/// `build` and `test` work on local files and take none (so their help lists none).
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a component (a new version if the name exists; the same content again, e.g. a
    /// rebuild of unchanged sources, is reported unchanged).
    Push {
        /// The component file (.wasm).
        file: PathBuf,
        /// Plugin name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Bind a plugin to a collection (or the node, for snapshot policies).
    Bind {
        /// Plugin name.
        name: String,
        /// Collection to bind to, by name or id (not for snapshot-policy).
        #[arg(long)]
        collection: Option<String>,
        /// Role: resolver, inbound-filter, outbound-filter or snapshot-policy.
        #[arg(long = "as")]
        role: String,
        /// Version to bind (default: the newest).
        #[arg(long)]
        version: Option<u32>,
        /// Configuration passed to the plugin (JSON text by convention).
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Unbind whatever is bound to a collection role (kept for rollback).
    Unbind {
        #[arg(long)]
        collection: Option<String>,
        #[arg(long = "as")]
        role: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Swap a binding back to the previous plugin version.
    Rollback {
        #[arg(long)]
        collection: Option<String>,
        #[arg(long = "as")]
        role: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List plugins with their versions, bindings and (on a cluster) the nodes that have them
    /// compiled.
    Ls {
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a plugin (every version, or one): refused while a binding uses it.
    Delete {
        /// Plugin name.
        name: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a resolver on a node without binding it (a dry run): prints its answer, or the
    /// error it raised (with the traceback, for Python and JavaScript) and the default that
    /// would apply instead.
    Resolve {
        /// Plugin name.
        name: String,
        /// The record's current version: a JSON file `{"data": {...}, "hlc": N, "origin": "n1"}`.
        #[arg(long)]
        current: PathBuf,
        /// The incoming change: a JSON file `{"op": "update", "collection": "posts", "id":
        /// "...", "data": {...}, "hlc": N, "origin": "n2", "before": {...}}`.
        #[arg(long)]
        incoming: PathBuf,
        /// Version to run (default: the newest).
        #[arg(long)]
        version: Option<u32>,
        /// Configuration passed to the plugin.
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Scaffold a new plugin project: source, README, test vectors (works offline).
    New {
        /// Plugin name: lowercase letters, digits and '-', starting with a letter.
        name: String,
        /// Language: rust, c, python or js.
        #[arg(long, default_value = "rust", value_parser = parse_lang)]
        lang: Lang,
        /// World: resolver, filter or snapshot-policy.
        #[arg(long, value_parser = parse_world)]
        world: World,
        /// Directory to create the project in [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the plugin project in a directory into a component (works offline, with only
    /// this binary and the language's toolchain: see --install-tools).
    Build {
        /// The project directory (a scaffolded one: Cargo.toml, or plugin.json beside
        /// plugin.py, plugin.js or *.c).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Language: rust, c, python or js [default: detected from the project's files].
        #[arg(long, value_parser = parse_lang)]
        lang: Option<Lang>,
        /// Directory for the component [default: Rust: target/plugins; others: build].
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Where toolchains are looked for and installed [default: $SYNCBASE_TOOLS, else
        /// ~/.cache/syncbase/tools].
        #[arg(long)]
        tools: Option<PathBuf>,
        /// Install the language's toolchain into the tools directory first if it is missing
        /// (componentize-py from PyPI, componentize-qjs from npm, the Rust wasm target).
        #[arg(long)]
        install_tools: bool,
    },
    /// Run test vectors (conformance format) against a component, in a private runtime
    /// (works offline).
    Test {
        /// The component file (.wasm).
        file: PathBuf,
        /// The vectors file (.json), e.g. the vectors.json of a scaffolded project.
        vectors: PathBuf,
    },
}

fn parse_lang(name: &str) -> Result<Lang, String> {
    Lang::from_name(name).ok_or_else(|| format!("unknown language `{name}` (rust, c, python, js)"))
}

fn parse_world(name: &str) -> Result<World, String> {
    World::from_wit_name(name)
        .ok_or_else(|| format!("unknown world `{name}` (resolver, filter, snapshot-policy)"))
}
