//! Test vectors for a plugin (`syncbase plugin test COMPONENT VECTORS`): a
//! file in the conformance format of `plugins/conformance/README.md`
//! (configurations that must be accepted or refused, and cases with the
//! expected answer), run through a private, throwaway plugin runtime — the
//! same runtime, engine and limits a node uses — so a plugin author checks a
//! component before pushing it.
//!
//! An answer must match byte for byte and must come from the plugin: a call
//! that failed and fell back to the built-in default fails its case, even
//! when the default happens to be the expected answer.
//!
//! Omitted inputs take fixed defaults: collection `posts`, record `r1` (the
//! change's key, which is also the current version's), HLC 1, origin `n1` for
//! the current version and `n2` for a change, and the op `update`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use syncbase_plugin_runtime::types::{
    Change, Decision, Direction, Op, Resolution, Stats, Verdict, Version,
};
use syncbase_plugin_runtime::{
    DecidedBy, Outcome, PluginError, PluginRuntime, RuntimeConfig, Target, World,
};

/// Why the vectors could not be run (a failing case is not an error: see [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a vectors file: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error("the component is refused: {0}")]
    Plugin(#[from] PluginError),
    #[error("the component implements the {component} world, the vectors are for {vectors}")]
    WrongWorld { component: World, vectors: String },
    #[error("cannot make a scratch directory for the runtime: {0}")]
    Scratch(std::io::Error),
}

/// The outcome of one configuration or case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed; otherwise what went wrong.
    pub failure: String,
}

/// Every configuration and case of a vectors file, in order.
#[derive(Debug, Clone)]
pub struct Report {
    pub plugin: String,
    pub world: World,
    pub results: Vec<CaseResult>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.results
            .iter()
            .filter(|r| !r.failure.is_empty())
            .count()
    }

    /// One line per configuration or case, failures with their details, then a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in &self.results {
            if r.failure.is_empty() {
                out.push_str(&format!("ok    {}\n", r.name));
            } else {
                // A failure may be a traceback: every line of it is indented.
                let detail = r.failure.replace('\n', "\n      ");
                out.push_str(&format!("FAIL  {}\n      {detail}\n", r.name));
            }
        }
        out.push_str(&format!(
            "{} ({}): {} passed, {} failed",
            self.plugin,
            self.world,
            self.results.len() - self.failures(),
            self.failures()
        ));
        out
    }
}

/// Runs the vectors file at `vectors` against the component file at `component`.
pub fn test_files(component: &Path, vectors: &Path) -> Result<Report, VectorError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| VectorError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let bytes = read(component)?;
    let text = read(vectors)?;
    let format = |detail: String| VectorError::Format {
        path: vectors.to_path_buf(),
        detail,
    };
    let vectors: Value = serde_json::from_slice(&text).map_err(|e| format(e.to_string()))?;
    if !vectors["cases"].is_array() && !vectors["configs"].is_array() {
        return Err(format("it has neither \"configs\" nor \"cases\"".into()));
    }
    let name = component
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .replace('_', "-");
    let scratch = Scratch::new()?;
    let runtime = PluginRuntime::open(
        scratch.0.join("plugins"),
        RuntimeConfig {
            persist_bindings: false,
            ..RuntimeConfig::default()
        },
    )?;
    run(&runtime, &name, &bytes, &vectors)
}

/// Uploads `bytes` as `name` into `runtime` and runs `vectors` against it.
pub fn run(
    runtime: &PluginRuntime,
    name: &str,
    bytes: &[u8],
    vectors: &Value,
) -> Result<Report, VectorError> {
    let meta = runtime.upload(name, bytes)?;
    let world = vectors["world"].as_str().unwrap_or(meta.world.name());
    if world != meta.world.name() {
        return Err(VectorError::WrongWorld {
            component: meta.world,
            vectors: world.to_string(),
        });
    }
    let mut results = Vec::new();
    for c in vectors["configs"].as_array().into_iter().flatten() {
        let config = c["config"].as_str().unwrap_or_default();
        let want = c["ok"].as_bool().unwrap_or(false);
        let got = runtime.bind(target(meta.world, "outbound"), name, None, config);
        let failure = match (want, got) {
            (true, Ok(_)) | (false, Err(PluginError::Config { .. })) => String::new(),
            (true, Err(e)) => format!("refused: {e}"),
            (false, Ok(_)) => "accepted, expected a refusal".to_string(),
            (false, Err(e)) => format!("failed instead of refusing: {e}"),
        };
        results.push(CaseResult {
            name: format!(
                "config {config:?} {}",
                if want { "accepted" } else { "refused" }
            ),
            failure,
        });
    }
    for case in vectors["cases"].as_array().into_iter().flatten() {
        let label = case["name"]
            .as_str()
            .unwrap_or("(unnamed case)")
            .to_string();
        results.push(CaseResult {
            failure: run_case(runtime, name, meta.world, case)
                .err()
                .unwrap_or_default(),
            name: label,
        });
    }
    Ok(Report {
        plugin: name.to_string(),
        world: meta.world,
        results,
    })
}

/// Runs one case: binds with its configuration, calls, compares.
fn run_case(rt: &PluginRuntime, name: &str, world: World, case: &Value) -> Result<(), String> {
    let config = case["config"].as_str().unwrap_or_default();
    let direction = case["direction"].as_str().unwrap_or("outbound");
    rt.bind(target(world, direction), name, None, config)
        .map_err(|e| format!("bind with {config:?}: {e}"))?;
    let got = match world {
        World::Resolver => answered(rt.resolve(
            "posts",
            &version(&case["current"]),
            &change(&case["incoming"]),
        ))
        .map(|r| resolution_json(&r)),
        World::Filter => {
            let dir = if direction == "inbound" {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            answered(rt.filter("posts", dir, &change(&case["change"]))).map(|v| verdict_json(&v))
        }
        World::SnapshotPolicy => {
            answered(rt.decide(stats(&case["stats"]))).map(|d| decision_json(&d))
        }
    }?;
    if got == case["expect"] {
        Ok(())
    } else {
        Err(format!("expected {}, got {got}", case["expect"]))
    }
}

fn target(world: World, direction: &str) -> Target {
    match (world, direction) {
        (World::Resolver, _) => Target::Resolver("posts".into()),
        (World::Filter, "inbound") => Target::InboundFilter("posts".into()),
        (World::Filter, _) => Target::OutboundFilter("posts".into()),
        (World::SnapshotPolicy, _) => Target::SnapshotPolicy,
    }
}

/// The plugin's answer; a fallback to the built-in default is a failure.
fn answered<T>(out: Outcome<T>) -> Result<T, String> {
    match out.decided_by {
        DecidedBy::Plugin(_) => Ok(out.value),
        DecidedBy::Fallback { failure, .. } => Err(format!(
            "the call failed and the built-in default applied: {failure}"
        )),
        DecidedBy::Default => Err("no plugin was bound".to_string()),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn version(v: &Value) -> Version {
    Version {
        data: text(&v["data"]),
        hlc: v["hlc"].as_u64().unwrap_or(1),
        origin: v["origin"].as_str().unwrap_or("n1").into(),
    }
}

fn change(v: &Value) -> Change {
    Change {
        op: match v["op"].as_str() {
            Some("create") => Op::Create,
            Some("delete") => Op::Delete,
            _ => Op::Update,
        },
        collection: "posts".into(),
        id: "r1".into(),
        data: text(&v["data"]),
        hlc: v["hlc"].as_u64().unwrap_or(1),
        origin: v["origin"].as_str().unwrap_or("n2").into(),
        before: text(&v["before"]),
    }
}

fn stats(v: &Value) -> Stats {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Stats {
        events_since: n("events-since"),
        bytes_since: n("bytes-since"),
        ms_since: n("ms-since"),
        stream_seq: n("stream-seq"),
        content_bytes: n("content-bytes"),
        snapshots: u32::try_from(n("snapshots")).unwrap_or(u32::MAX),
    }
}

/// Answers as vector data: `"keep-current"`, `{"merged": "<json text>"}`, ...
fn resolution_json(r: &Resolution) -> Value {
    match r {
        Resolution::KeepCurrent => json!("keep-current"),
        Resolution::TakeIncoming => json!("take-incoming"),
        Resolution::Merged(m) => json!({ "merged": m }),
    }
}

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Keep => json!("keep"),
        Verdict::Drop => json!("drop"),
        Verdict::Replace(c) => json!({ "replace": { "data": c.data, "before": c.before } }),
    }
}

fn decision_json(d: &Decision) -> Value {
    json!({ "take": d.take, "keep": d.keep })
}

/// A scratch directory for the throwaway runtime, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, VectorError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "syncbase-plugin-test-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(VectorError::Scratch)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
