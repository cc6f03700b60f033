//! Resolver cost: C's catch-up of a conflicting workload (A and B updating the same records at
//! once while C is down) under the built-in last-writer-wins and under the shipped `lww`
//! plugin bound as the collection's resolver — the same policy, so only the plugin call
//! differs. The two alternate (A B B A ...) for `RESOLVER_ROUNDS` rounds, switched by binding
//! and unbinding (log events, so C switches at the same position as everyone), and the
//! stream is read back to count the events that went to the resolver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::Method;
use serde_json::json;

use crate::catchup::{CatchUp, around_outage, conflicts};
use crate::nats_support::Cluster;
use crate::node::{Node, quiesce, wait_collection};
use crate::stream::{RangeFacts, read_back};
use crate::workload::{batch_create, collection_def};
use crate::{CONFLICT_COLL, Config};

/// One conflicting catch-up.
pub struct Run {
    pub plugin: bool,
    pub catchup: CatchUp,
    pub facts: RangeFacts,
}

/// Median of the runs with (`plugin`) or without the plugin, by `key`.
pub fn median(runs: &[Run], plugin: bool, key: impl Fn(&Run) -> f64) -> Option<f64> {
    let mut v: Vec<f64> = runs
        .iter()
        .filter(|r| r.plugin == plugin)
        .map(key)
        .collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| {
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    })
}

pub async fn phase(
    config: &Config,
    cluster: &Cluster,
    a: &Node,
    b: &Node,
    c: &mut Node,
) -> Result<Vec<Run>> {
    println!(
        "\n[resolver] C stopped; A and B update the same {} records at once ({} updates), \
         built-in LWW and the lww plugin alternating, {} round(s)",
        config.conflict_records, config.conflict_events, config.resolver_rounds
    );
    let component = tokio::task::spawn_blocking(build_lww).await??;
    upload(a, &component).await?;
    let from = quiesce(&[a, b, &*c], Duration::from_secs(60)).await?;
    a.call(
        Method::POST,
        "/api/collections",
        Some(collection_def(CONFLICT_COLL)),
    )
    .await?;
    for n in [b, &*c] {
        wait_collection(n, CONFLICT_COLL, Duration::from_secs(60)).await?;
    }
    let ids = batch_create(
        a,
        CONFLICT_COLL,
        0,
        config.conflict_records,
        config.batch,
        1,
    )
    .await?;
    let mut runs = Vec::new();
    let mut bound = false;
    for round in 1..=config.resolver_rounds.max(1) {
        // A B, B A, A B, ...: a drift over the phase (tables growing, other load) falls on
        // both policies alike.
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for plugin in order {
            // Switch with C up, so its catch-up below is all conflict events.
            quiesce(&[a, b, &*c], Duration::from_secs(120)).await?;
            if plugin != bound {
                let target = json!({"as": "resolver", "collection": CONFLICT_COLL});
                let path = if plugin {
                    "/api/plugins/lww/bind"
                } else {
                    "/api/plugins/unbind"
                };
                a.call(Method::POST, path, Some(target)).await?;
                bound = plugin;
            }
            let label = format!(
                "{} #{round}",
                if plugin { "lww plugin" } else { "built-in LWW" }
            );
            let (count, batch, ids) = (config.conflict_events, config.batch / 2, &ids);
            let catchup = around_outage(a, b, c, &label, async || {
                conflicts(a, b, CONFLICT_COLL, ids, count, batch).await
            })
            .await?;
            runs.push((plugin, catchup));
        }
    }
    let ranges: Vec<(u64, u64)> = runs.iter().map(|(_, r)| r.range).collect();
    let facts = read_back(&cluster.url(2), from, &ranges).await?;
    let runs: Vec<Run> = runs
        .into_iter()
        .zip(facts)
        .map(|((plugin, catchup), facts)| Run {
            plugin,
            catchup,
            facts,
        })
        .collect();
    for r in &runs {
        println!(
            "  {}: {} of {} events went to the resolver ({} kept the current version); median \
             event {} B",
            r.catchup.label,
            r.facts.resolved,
            r.facts.events,
            r.facts.kept,
            r.facts.median_size()
        );
    }
    Ok(runs)
}

/// Builds the shipped `lww` plugin (as `tests/replication.rs` builds `counter`).
pub fn build_lww() -> Result<PathBuf> {
    use syncbase_plugin_build::{BuildOptions, build_plugins};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let options = BuildOptions {
        plugin_dirs: vec![root.join("plugins").join("lww")],
        target_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-plugin-build")),
        out_dir: None,
        world: None,
    };
    let built = build_plugins(&options).map_err(|e| anyhow::anyhow!("building lww: {e}"))?;
    built
        .into_iter()
        .find(|b| b.name == "lww")
        .map(|b| b.component)
        .context("lww not built")
}

/// Uploads the component to `node` as `lww` (the bytes reach the others through the
/// cluster's object store when a binding needs them).
async fn upload(node: &Node, component: &Path) -> Result<()> {
    let bytes = std::fs::read(component)?;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/plugins?name=lww", node.addr))
        .header("Authorization", &node.token)
        .header("Content-Type", "application/wasm")
        .body(bytes)
        .send()
        .await?;
    let status = resp.status();
    anyhow::ensure!(
        status.is_success(),
        "upload lww: {status}: {}",
        resp.text().await?
    );
    Ok(())
}
