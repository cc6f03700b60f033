//! Plugin figures per collection for `/metrics`: calls, fallbacks (a failed call answered by
//! the built-in default) and traps from each binding's counters in the runtime, and the
//! fold's conflicts (calls to a resolver) and rejected merges, counted here.
//!
//! Counters are per node and per process: statistics, not state. They are keyed by
//! collection id (bindings are) and labelled with the collection's current name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

use super::{PluginRuntime, Target};
use crate::store::Schema;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    conflicts: u64,
    invalid_merges: u64,
}

/// What the fold counts per collection.
#[derive(Default)]
pub struct PolicyCounters {
    by_collection: Mutex<BTreeMap<String, Counts>>,
}

impl PolicyCounters {
    /// A conflict the collection's resolver (or the built-in rule) decided.
    pub fn conflict(&self, collection: &str) {
        self.by_collection
            .lock()
            .entry(collection.to_string())
            .or_default()
            .conflicts += 1;
    }

    /// A merged record the schema check refused; true for the collection's first one.
    pub fn invalid_merge(&self, collection: &str) -> bool {
        let mut map = self.by_collection.lock();
        let counts = map.entry(collection.to_string()).or_default();
        counts.invalid_merges += 1;
        counts.invalid_merges == 1
    }

    /// Forgets a deleted collection.
    pub fn forget(&self, collection: &str) {
        self.by_collection.lock().remove(collection);
    }

    fn snapshot(&self) -> BTreeMap<String, Counts> {
        self.by_collection.lock().clone()
    }
}

fn role(target: &Target) -> &'static str {
    target.role()
}

/// The Prometheus text of the per-collection plugin figures.
pub fn render(
    runtime: &PluginRuntime,
    counters: &PolicyCounters,
    schema: &Schema,
    node: &str,
) -> String {
    let name_of = |id: &str| {
        schema
            .get(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut out = String::new();
    let bindings = runtime.binding_metrics();
    let header = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP syncbase_{name} {help}");
        let _ = writeln!(out, "# TYPE syncbase_{name} counter");
    };
    type Pick = fn(&syncbase_plugin_runtime::MetricsSnapshot) -> u64;
    let series: [(&str, &str, Pick); 4] = [
        ("plugin_calls_total", "Plugin calls by binding.", |m| {
            m.calls
        }),
        (
            "plugin_fallbacks_total",
            "Plugin calls answered by the built-in default because the plugin failed.",
            |m| m.failures,
        ),
        (
            "plugin_traps_total",
            "Plugin calls that trapped (panics included; fuel, memory and stack have their own counters in the plugin list).",
            |m| m.traps,
        ),
        (
            "plugin_errors_total",
            "Plugin calls that returned an error (an uncaught exception in Python or JavaScript).",
            |m| m.raised,
        ),
    ];
    for (name, help, pick) in series {
        header(&mut out, name, help);
        for b in &bindings {
            let collection = b.target.collection().map(name_of).unwrap_or_default();
            let _ = writeln!(
                out,
                "syncbase_{name}{{node=\"{node}\",collection=\"{collection}\",role=\"{}\",plugin=\"{}\",version=\"{}\",state=\"{}\"}} {}",
                role(&b.target),
                b.binding.plugin,
                b.binding.version,
                if b.active { "active" } else { "previous" },
                pick(&b.metrics)
            );
        }
    }
    let counts = counters.snapshot();
    for (name, help, pick) in [
        (
            "conflicts_total",
            "Concurrent writes the collection's resolver (or the built-in rule) decided.",
            (|c: &Counts| c.conflicts) as fn(&Counts) -> u64,
        ),
        (
            "invalid_merges_total",
            "Merged records that did not fit the collection's schema (the built-in default applied).",
            |c: &Counts| c.invalid_merges,
        ),
    ] {
        header(&mut out, name, help);
        for (id, c) in &counts {
            let _ = writeln!(
                out,
                "syncbase_{name}{{node=\"{node}\",collection=\"{}\"}} {}",
                name_of(id),
                pick(c)
            );
        }
    }
    out
}
