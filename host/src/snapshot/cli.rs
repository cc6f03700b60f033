//! `syncbase snapshot create|list|verify|restore`: through a running node's HTTP API (`--url`
//! and superuser credentials), or straight to the cluster's NATS (`--nats`, `--cluster`), with
//! a progress bar on transfers. `restore --to DIR` seeds a data directory offline, plugins
//! included: a node started on it bootstraps nothing and consumes the log after the snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{SnapshotError, format};
use crate::admin::{AdminError, Conn};
use crate::config::{SnapshotArgs, SnapshotCommand};
use crate::replication::snapshots::BACKUP_PREFIX;
use crate::replication::{
    ConnectOptions, Log, LogError, Progress, SnapshotStore, Stored, StreamOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}")]
    Usage(String),
}

/// Runs one `syncbase snapshot` command, returning what to print.
pub async fn run(args: &SnapshotArgs) -> Result<String, CliError> {
    match &args.action {
        SnapshotCommand::Create => {
            let conn = Conn::open(&args.remote).await?;
            let s = conn
                .call(Method::POST, "/api/sync/snapshots", Some(json!({})))
                .await?;
            Ok(format!(
                "snapshot {} taken at sequence {} ({} bytes)",
                s["name"].as_str().unwrap_or("?"),
                s["seq"],
                s["size"]
            ))
        }
        SnapshotCommand::List { json } => {
            let list: Vec<Value> = if args.nats.is_empty() {
                let conn = Conn::open(&args.remote).await?;
                let v = conn.call(Method::GET, "/api/sync/snapshots", None).await?;
                let mut all = v["kept"].as_array().cloned().unwrap_or_default();
                let backups = conn.call(Method::GET, "/api/backups", None).await?;
                all.extend(backups.as_array().cloned().unwrap_or_default().into_iter().map(
                    |b| json!({"name": format!("{BACKUP_PREFIX}{}", b["key"].as_str().unwrap_or("")),
                               "kind": "backup", "size": b["size"], "created": b["modified"]}),
                ));
                all
            } else {
                let bucket = bucket(args).await?;
                let mut snaps = bucket.snapshots().await?;
                snaps.extend(
                    bucket
                        .list()
                        .await?
                        .into_iter()
                        .filter(|s| s.name.starts_with(BACKUP_PREFIX)),
                );
                snaps.into_iter().map(|s| json!(s)).collect()
            };
            if *json {
                return Ok(serde_json::to_string_pretty(&list).unwrap_or_default());
            }
            if list.is_empty() {
                return Ok("no snapshots or backups".into());
            }
            let lines: Vec<String> = list
                .iter()
                .map(|s| {
                    format!(
                        "{:<48} {:>8} {:>12} bytes  {} {}",
                        s["name"].as_str().unwrap_or("?"),
                        s["seq"].as_u64().map(|n| n.to_string()).unwrap_or_default(),
                        s["size"].as_u64().unwrap_or(0),
                        s["node"].as_str().unwrap_or(""),
                        s["created"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            Ok(lines.join("\n"))
        }
        SnapshotCommand::Verify { name } => {
            if args.nats.is_empty() && !name.as_deref().is_some_and(|n| Path::new(n).is_file()) {
                let conn = Conn::open(&args.remote).await?;
                let name = match name {
                    Some(n) => n.clone(),
                    None => {
                        let v = conn.call(Method::GET, "/api/sync/snapshots", None).await?;
                        v["kept"][0]["name"]
                            .as_str()
                            .ok_or_else(|| CliError::Usage("the cluster has no snapshot".into()))?
                            .to_string()
                    }
                };
                conn.call(
                    Method::POST,
                    &format!("/api/sync/snapshots/{name}/verify"),
                    Some(json!({})),
                )
                .await?;
                return Ok(format!("{name}: ok (sha256 and table hashes match)"));
            }
            let tmp = tempdir_near(Path::new("."))?;
            let (header, _db) = fetch(args, name.as_deref(), &tmp).await;
            let _ = std::fs::remove_dir_all(&tmp);
            let header = header?;
            Ok(format!(
                "{}: ok at sequence {} ({} tables, {} rows; sha256 and table hashes match)",
                name.as_deref().unwrap_or("newest snapshot"),
                header.contents.seq,
                header.contents.table_hashes.len(),
                header.contents.row_counts.values().sum::<u64>()
            ))
        }
        SnapshotCommand::Restore { name, to, force } => {
            restore(args, name.as_deref(), to, *force).await
        }
    }
}

async fn connect(args: &SnapshotArgs) -> Result<Log, CliError> {
    let conn = ConnectOptions {
        urls: args.nats.clone(),
        name: Some("syncbase-snapshot-cli".into()),
        creds_file: args.nats_creds.clone(),
        user: args.nats_user.clone(),
        password: args.nats_password.clone(),
        ..Default::default()
    };
    let mut stream = StreamOptions::new(args.cluster.clone());
    stream.ready_timeout = Duration::from_secs(10);
    Ok(Log::connect(&conn, &stream).await?)
}

async fn bucket(args: &SnapshotArgs) -> Result<SnapshotStore, CliError> {
    let log = connect(args).await?;
    Ok(SnapshotStore::open(&log, Duration::from_secs(30)).await?)
}

fn tempdir_near(dir: &Path) -> Result<PathBuf, CliError> {
    let tmp = dir.join(format!(".syncbase-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| SnapshotError::Io(e.to_string()))?;
    Ok(tmp)
}

/// Shows `progress` as a bar labelled `label` while `work` runs.
async fn with_bar<T>(
    label: &str,
    progress: &Arc<Progress>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let p = progress.clone();
    let b = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let (done, total) = p.get();
            b.set_length(total.max(done));
            b.set_position(done);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = work.await;
    ticker.abort();
    let (done, total) = progress.get();
    bar.set_length(total.max(done));
    bar.set_position(done);
    bar.finish();
    out
}

/// Resolves `name` in the bucket: an object name, a backup's name, or (none) the newest snapshot.
async fn resolve(bucket: &SnapshotStore, name: Option<&str>) -> Result<Stored, CliError> {
    let Some(name) = name else {
        return bucket
            .snapshots()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Usage("the cluster has no snapshot".into()));
    };
    for candidate in [name.to_string(), format!("{BACKUP_PREFIX}{name}")] {
        if let Some(s) = bucket.info(&candidate).await? {
            return Ok(s);
        }
    }
    Err(SnapshotError::NotFound(format!("snapshot or backup {name:?}")).into())
}

/// Gets a snapshot file (a local file, or from the bucket with a progress bar), extracts and
/// verifies it under `work`. Returns the header and the extracted database's path.
async fn fetch(
    args: &SnapshotArgs,
    name: Option<&str>,
    work: &Path,
) -> (Result<format::Header, CliError>, PathBuf) {
    let db = work.join("incoming.db");
    let result = async {
        let archive = match name.map(Path::new).filter(|p| p.is_file()) {
            Some(local) => local.to_path_buf(),
            None => {
                if args.nats.is_empty() {
                    return Err(CliError::Usage(
                        "give --nats (and --cluster) to reach the cluster's snapshots, or a local \
                         snapshot file"
                            .into(),
                    ));
                }
                let bucket = bucket(args).await?;
                let stored = resolve(&bucket, name).await?;
                let progress = Progress::new();
                let archive = work.join("incoming.zip");
                let got = with_bar(
                    "download",
                    &progress,
                    bucket.get(&stored.name, &archive, &progress),
                )
                .await?
                .ok_or_else(|| SnapshotError::NotFound(stored.name.clone()))?;
                if got.0 != stored.sha256 {
                    return Err(SnapshotError::Corrupt(format!(
                        "{} hashes to {}, not {} as stored",
                        stored.name, got.0, stored.sha256
                    ))
                    .into());
                }
                archive
            }
        };
        let progress = Progress::new();
        let (a, d, p) = (archive.clone(), db.clone(), progress.clone());
        let extracted = with_bar(
            "verify",
            &progress,
            tokio::task::spawn_blocking(move || {
                p.start(format::read_header(&a)?.contents.db_bytes);
                let x = format::extract(&a, &d, |n| {
                    p.done.store(n, std::sync::atomic::Ordering::Relaxed)
                })?;
                format::verify(&d, &x)?;
                Ok::<_, SnapshotError>(x.header)
            }),
        )
        .await
        .map_err(|e| SnapshotError::Io(e.to_string()))??;
        Ok(extracted)
    }
    .await;
    (result, db)
}

async fn restore(
    args: &SnapshotArgs,
    name: Option<&str>,
    to: &Path,
    force: bool,
) -> Result<String, CliError> {
    let target = to.join("data.db");
    if target.exists() && !force {
        return Err(CliError::Usage(format!(
            "{} already holds a database; give --force to replace it",
            to.display()
        )));
    }
    std::fs::create_dir_all(to).map_err(|e| SnapshotError::Io(e.to_string()))?;
    let work = tempdir_near(to)?;
    let (header, db) = fetch(args, name, &work).await;
    let result = async {
        let header = header?;
        if !header.plugins.is_empty() {
            if args.nats.is_empty() {
                return Err(CliError::Usage(format!(
                    "the snapshot's plugin bindings name {} plugin(s); give --nats to fetch them \
                     from the cluster",
                    header.plugins.len()
                )));
            }
            let log = connect(args).await?;
            let objects = log.plugin_objects().await?;
            let runtime = crate::plugins::PluginRuntime::open(
                to.join("plugins"),
                crate::plugins::RuntimeConfig::default(),
            )
            .map_err(|e| CliError::Usage(format!("opening {}/plugins: {e}", to.display())))?;
            for p in &header.plugins {
                let bytes = objects.get(&p.sha256).await?.ok_or_else(|| {
                    SnapshotError::NotFound(format!("plugin {} ({})", p.name, p.sha256))
                })?;
                runtime
                    .upload(&p.name, &bytes)
                    .map_err(|e| CliError::Usage(format!("plugin {}: {e}", p.name)))?;
            }
        }
        for suffix in ["-wal", "-shm"] {
            let mut p = target.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        std::fs::rename(&db, &target).map_err(|e| SnapshotError::Io(e.to_string()))?;
        Ok(format!(
            "{} seeded from sequence {} of cluster {} ({} rows); start a node on it with --dir {}",
            to.display(),
            header.contents.seq,
            header
                .cluster
                .as_deref()
                .unwrap_or("(none: a single node's backup)"),
            header.contents.row_counts.values().sum::<u64>(),
            to.display()
        ))
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result
}
