//! `syncbase import pocketbase` and `syncbase export pocketbase`: a PocketBase data directory
//! (`pb_data`, PocketBase 0.23 or newer) becomes a Syncbase data directory, and back.
//!
//! This module decides what is carried and reports the rest; the SQLite work is
//! `store::pocketbase` (the source is only ever attached read-only). Both directions write a new
//! database file beside the target and rename it into place only once it is complete, so a
//! failed or interrupted run leaves the target as it was. A target that already holds
//! something is refused unless `--force`, which replaces only the database.
//!
//! Runs on the calling thread (the CLI calls it through `spawn_blocking`), never inside a
//! server: it is an offline tool, to run while neither server uses the directories.

mod collections;
mod export_schema;
mod files;
pub mod report;
pub mod settings;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

pub use report::{Note, Report, Written};
pub use settings::EncryptionKey;

use crate::store::StoreError;
use crate::store::pocketbase::{
    CopyProgress, ExportPlan, ImportPlan, POCKETBASE_MIGRATIONS, PbFormat, PbSource, SbSource,
};

/// Why an import or export did not happen. Nothing was written to the target when it fails.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0} has no data.db: give PocketBase's data directory (the pb_data folder)")]
    NoPocketBaseDatabase(PathBuf),
    #[error("{0} has no data.db: give a Syncbase data directory (--dir)")]
    NoSyncbaseDatabase(PathBuf),
    #[error("{0} is not a PocketBase database: it has no _collections table")]
    NotPocketBase(PathBuf),
    #[error(
        "{0} comes from PocketBase older than 0.23, which stored collections differently: start \
         PocketBase 0.23 or newer on it once (it upgrades the data in place; keep a copy), then \
         import it"
    )]
    Legacy(PathBuf),
    #[error(
        "{dir} is not empty (it holds {found}): importing would replace its data; pass --force \
         to replace its database"
    )]
    NotEmpty { dir: PathBuf, found: String },
    #[error("{0}")]
    Settings(#[from] settings::SettingsError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not copy the file {key}: {source}")]
    File {
        key: String,
        source: crate::files::FileError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `syncbase import pocketbase PB_DATA --dir DIR`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub pb_data: PathBuf,
    pub dir: PathBuf,
    pub force: bool,
    /// The key PocketBase's settings were encrypted with, if they were.
    pub encryption: Option<EncryptionKey>,
    /// Draw a progress bar on stderr (only shown on a terminal).
    pub progress: bool,
}

/// `syncbase export pocketbase --dir DIR OUT`.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub force: bool,
    pub progress: bool,
}

/// Imports a PocketBase data directory into a new Syncbase data directory.
pub fn import(opts: &ImportOptions) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let source = opts.pb_data.join("data.db");
    if !opts.pb_data.is_dir() {
        return Err(MigrateError::Missing(opts.pb_data.clone()));
    }
    if !source.is_file() {
        return Err(MigrateError::NoPocketBaseDatabase(opts.pb_data.clone()));
    }
    let notes_fs = source_files(&opts.pb_data);
    let mut notes = Vec::new();
    let key = opts.encryption.clone();
    let pb_data = opts.pb_data.clone();
    let bar = progress_bar(opts.progress);
    let storage = crate::files::local_root(&opts.dir);
    let fresh_storage = !storage.exists();
    let mut copier = files::Copier::new(
        "pb_data/storage",
        pb_data.join("storage"),
        storage.clone(),
        bar.clone(),
    );
    let outcome = replace_database(&opts.dir, opts.force, "import", |tmp| {
        crate::store::pocketbase::import_pocketbase(
            &source,
            tmp,
            |src: &PbSource| plan_import(src, &pb_data, key.as_ref(), &mut notes),
            &mut |p| show(&bar, p),
            &mut |c, rid, name| copier.import(c, rid, name),
        )
    });
    bar.finish_and_clear();
    if outcome.is_err() && fresh_storage {
        // The files copied before the failure belong to no database.
        let _ = std::fs::remove_dir_all(&storage);
    }
    let (outcome, leftovers) = outcome.map_err(|e| match e {
        MigrateError::Store(e) if e.is_not_a_database() => {
            MigrateError::NotPocketBase(source.clone())
        }
        other => other,
    })?;
    for (coll, column, filled) in &outcome.left_behind {
        if *filled > 0 {
            notes.push(Note::new(
                &format!("{coll}.{column}"),
                format!("{filled} records had a value there, not carried"),
            ));
        }
    }
    for (coll, sql, why) in &outcome.failed_indexes {
        notes.push(Note::new(
            coll,
            format!("index not carried, SQLite refused it over the imported rows ({why}): {sql}"),
        ));
    }
    notes.extend(notes_fs);
    notes.extend(copier.notes(&pb_data.join("storage")));
    if let Some(found) = leftovers {
        notes.push(Note::new(
            &opts.dir.display().to_string(),
            format!("--force replaced only the database; it still holds {found}"),
        ));
    }
    let mut r = report(
        "import",
        &opts.pb_data,
        &opts.dir,
        outcome.records,
        started,
        notes,
    );
    (r.files, r.file_bytes) = (outcome.files, outcome.file_bytes);
    Ok(r)
}

/// Exports a Syncbase data directory as a new PocketBase data directory.
pub fn export(opts: &ExportOptions) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let source = opts.dir.join("data.db");
    if !opts.dir.is_dir() {
        return Err(MigrateError::Missing(opts.dir.clone()));
    }
    if !source.is_file() {
        return Err(MigrateError::NoSyncbaseDatabase(opts.dir.clone()));
    }
    let mut notes = plugin_notes(&opts.dir);
    let bar = progress_bar(opts.progress);
    let storage = opts.out.join("storage");
    let fresh_storage = !storage.exists();
    let mut copier = files::Copier::new(
        "storage",
        crate::files::local_root(&opts.dir),
        storage.clone(),
        bar.clone(),
    );
    let outcome = replace_database(&opts.out, opts.force, "export", |tmp| {
        crate::store::pocketbase::export_pocketbase(
            &source,
            tmp,
            |src: &SbSource| Ok::<_, MigrateError>(plan_export(src, &mut notes)),
            &mut |p| show(&bar, p),
            &mut |c, rid, name| copier.export(c, rid, name),
        )
    });
    bar.finish_and_clear();
    if outcome.is_err() && fresh_storage {
        let _ = std::fs::remove_dir_all(&storage);
    }
    let (outcome, leftovers) = outcome?;
    notes.extend(copier.missing_notes());
    if let Some(found) = leftovers {
        notes.push(Note::new(
            &opts.out.display().to_string(),
            format!("--force replaced only the database; it still holds {found}"),
        ));
    }
    let mut r = report(
        "export",
        &opts.dir,
        &opts.out,
        outcome.records,
        started,
        notes,
    );
    (r.files, r.file_bytes) = (copier.copied, copier.bytes);
    Ok(r)
}

fn plan_import(
    src: &PbSource,
    pb_data: &Path,
    key: Option<&EncryptionKey>,
    notes: &mut Vec<Note>,
) -> Result<ImportPlan, MigrateError> {
    match src.format {
        PbFormat::Current => {}
        PbFormat::Legacy => return Err(MigrateError::Legacy(pb_data.to_path_buf())),
        PbFormat::NotPocketBase => {
            return Err(MigrateError::NotPocketBase(pb_data.join("data.db")));
        }
    }
    let schema = collections::import_collections(&src.collections, &src.tables);
    let (settings, settings_notes) = settings::read(src.settings.as_deref(), key)?;
    notes.extend(schema.notes);
    notes.extend(settings_notes);
    let in_s3 = files::s3_enabled(settings.as_ref());
    if in_s3 && schema.collections.iter().any(|t| t.collection.has_files()) {
        notes.push(Note::new(
            "pb_data/storage",
            "PocketBase keeps its files in S3 (settings s3.enabled), not in pb_data: no file \
             bytes were copied, so Syncbase serves none of the files the records name (the \
             records keep the names)"
                .into(),
        ));
    }
    let app_migrations: Vec<&String> = src
        .migrations
        .iter()
        .filter(|m| !POCKETBASE_MIGRATIONS.contains(&m.as_str()))
        .collect();
    if !app_migrations.is_empty() {
        notes.push(Note::new(
            "_migrations",
            format!(
                "{} app migrations had been applied ({}): Syncbase imports the schema they built \
                 and does not run migrations",
                app_migrations.len(),
                list(&app_migrations)
            ),
        ));
    }
    for table in &src.other_tables {
        notes.push(Note::new(
            table,
            "table not carried: it belongs to no collection".into(),
        ));
    }
    Ok(ImportPlan {
        collections: schema.collections,
        settings,
        left_behind: schema.left_behind,
        copy_files: !in_s3,
    })
}

fn plan_export(src: &SbSource, notes: &mut Vec<Note>) -> ExportPlan {
    let now = crate::records::validate::now_string();
    let bookkeeping = [
        (
            src.versions,
            "replication",
            "records' log versions are Syncbase's: PocketBase gets the rows as this node holds them",
        ),
        (
            src.pending,
            "replication",
            "local writes not yet confirmed by the cluster are exported as this node holds them",
        ),
        (
            src.outbox,
            "replication",
            "events not yet published to the cluster are not exported as events (their rows are)",
        ),
        (
            src.dead_letters,
            "replication",
            "dead letters (events the cluster refused) are not exported",
        ),
        (
            src.mails_queued,
            "mail outbox",
            "queued mails are not exported: PocketBase sends mail at once and keeps no queue",
        ),
    ];
    for c in src.collections.iter().filter(|c| c.is_view()) {
        let query = c.view_query.as_deref().unwrap_or_default();
        notes.push(Note::new(
            &c.name,
            format!(
                "view collection not exported: the export does not write views yet; recreate it \
                 in PocketBase with its query: {query}"
            ),
        ));
    }
    for (n, subject, why) in bookkeeping {
        if n > 0 {
            notes.push(Note::new(subject, format!("{n}: {why}")));
        }
    }
    let in_s3 = files::s3_enabled(Some(&src.settings));
    if in_s3 && src.collections.iter().any(|c| c.has_files()) {
        notes.push(Note::new(
            "storage",
            "this node keeps its files in S3 (settings s3.enabled), not under --dir: no file \
             bytes were copied; PocketBase reads the same bucket with the exported settings"
                .into(),
        ));
    }
    ExportPlan {
        tables: export_schema::export_collections(&src.collections, &now),
        settings: Some(src.settings.clone()),
        applied_at: chrono::Utc::now().timestamp_micros(),
        copy_files: !in_s3,
    }
}

/// Writes a new database with `write` to a temporary file in `dir` and renames it to
/// `dir/data.db`. Refuses a directory that holds anything unless `force`; with `force`,
/// replaces the database (and its WAL files) only, and says what else is there.
fn replace_database<R>(
    dir: &Path,
    force: bool,
    what: &str,
    write: impl FnOnce(&Path) -> Result<R, MigrateError>,
) -> Result<(R, Option<String>), MigrateError> {
    let held = entries(dir)?;
    if !held.is_empty() && !force {
        return Err(MigrateError::NotEmpty {
            dir: dir.to_path_buf(),
            found: list(&held),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| MigrateError::Io {
        what: "could not create",
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = dir.join(format!(".data.db.{what}-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = write(&tmp).and_then(|r| {
        for suffix in ["-wal", "-shm", ""] {
            let path = dir.join(format!("data.db{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(MigrateError::Io {
                        what: "could not replace",
                        path,
                        source,
                    });
                }
            }
        }
        let dest = dir.join("data.db");
        std::fs::rename(&tmp, &dest).map_err(|source| MigrateError::Io {
            what: "could not write",
            path: dest,
            source,
        })?;
        Ok(r)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let others: Vec<String> = held
        .into_iter()
        .filter(|e| !e.starts_with("data.db"))
        .collect();
    result.map(|r| (r, (!others.is_empty()).then(|| list(&others))))
}

/// The names in `dir` (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>, MigrateError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(MigrateError::Io {
                what: "could not read",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names: Vec<String> = read
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// At most five names, then how many more.
fn list<S: AsRef<str>>(names: &[S]) -> String {
    let mut out: Vec<&str> = names.iter().take(5).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(5);
    let more_text = format!("and {more} more");
    if more > 0 {
        out.push(&more_text);
    }
    out.join(", ")
}

/// What lies beside PocketBase's database and is not carried: hooks,
/// migrations, logs, backups.
fn source_files(pb_data: &Path) -> Vec<Note> {
    let mut notes = Vec::new();
    let (backups, bytes) = count_files(&pb_data.join("backups"));
    if backups > 0 {
        notes.push(Note::new(
            "pb_data/backups",
            format!(
                "{backups} PocketBase backups ({}) not carried",
                human_bytes(bytes)
            ),
        ));
    }
    if pb_data.join("auxiliary.db").is_file() {
        notes.push(Note::new(
            "pb_data/auxiliary.db",
            "PocketBase's request logs are not carried".into(),
        ));
    }
    let parent = pb_data
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(parent) = parent {
        for (dir, what) in [
            ("pb_hooks", "JavaScript hooks are not run by Syncbase"),
            (
                "pb_migrations",
                "migrations are not run by Syncbase (the schema they built is imported)",
            ),
            ("pb_public", "static files are not served by Syncbase"),
        ] {
            let names = entries(&parent.join(dir)).unwrap_or_default();
            if !names.is_empty() {
                notes.push(Note::new(
                    dir,
                    format!("{} files ({}): {what}", names.len(), list(&names)),
                ));
            }
        }
    }
    notes
}

/// Files (PocketBase's `.attrs` metadata files aside) under `dir`, and their bytes.
fn count_files(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.filter_map(Result::ok) {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if !e.file_name().to_string_lossy().ends_with(".attrs") {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Plugins in a Syncbase data directory have no PocketBase equivalent.
fn plugin_notes(dir: &Path) -> Vec<Note> {
    let names = entries(&dir.join("plugins").join("versions")).unwrap_or_default();
    if names.is_empty() {
        return Vec::new();
    }
    vec![Note::new(
        "plugins",
        format!(
            "{} plugins ({}) and their bindings have no PocketBase equivalent",
            names.len(),
            list(&names)
        ),
    )]
}

fn report(
    action: &'static str,
    from: &Path,
    to: &Path,
    records: Vec<(String, u64)>,
    started: Instant,
    not_carried: Vec<Note>,
) -> Report {
    let collections: Vec<Written> = records
        .into_iter()
        .map(|(collection, records)| Written {
            collection,
            records,
        })
        .collect();
    Report {
        action,
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        records: collections.iter().map(|w| w.records).sum(),
        collections,
        files: 0,
        file_bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
        not_carried,
    }
}

fn progress_bar(enabled: bool) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    // Drawn on stderr, and only when it is a terminal.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:24!} [{bar:40}] {human_pos}/{human_len} records ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn show(bar: &indicatif::ProgressBar, p: CopyProgress<'_>) {
    if bar.length() != Some(p.total) {
        bar.set_length(p.total);
    }
    if bar.message() != p.table {
        bar.set_message(p.table.to_string());
    }
    bar.set_position(p.done);
}

/// The report as JSON (`--json`).
pub fn report_json(r: &Report) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pocketbase::PbCollection;
    use serde_json::json;

    fn source(settings: Value) -> PbSource {
        let fields = json!([
            {"id": "text3208210256", "name": "id", "type": "text", "primaryKey": true,
             "required": true, "system": true, "autogeneratePattern": "[a-z0-9]{15}",
             "pattern": "^[a-z0-9]+$", "min": 15, "max": 15},
            {"id": "file1", "name": "doc", "type": "file", "maxSelect": 1}
        ]);
        PbSource {
            format: PbFormat::Current,
            collections: vec![PbCollection {
                id: "pbc_docs".into(),
                name: "docs".into(),
                kind: "base".into(),
                system: false,
                fields: fields.to_string(),
                indexes: "[]".into(),
                list_rule: None,
                view_rule: None,
                create_rule: None,
                update_rule: None,
                delete_rule: None,
                options: "{}".into(),
                created: String::new(),
                updated: String::new(),
            }],
            settings: Some(settings.to_string()),
            migrations: Vec::new(),
            tables: Default::default(),
            other_tables: Vec::new(),
        }
    }

    #[test]
    fn files_kept_in_s3_are_reported_and_not_copied() {
        let mut notes = Vec::new();
        let plan = plan_import(
            &source(json!({"s3": {"enabled": true, "bucket": "b"}})),
            Path::new("pb_data"),
            None,
            &mut notes,
        )
        .expect("plan");
        assert!(!plan.copy_files);
        assert!(plan.collections[0].collection.has_files());
        assert!(
            notes.iter().any(|n| n.subject == "pb_data/storage"
                && n.reason.contains("S3")
                && n.reason.contains("no file bytes were copied")),
            "{notes:?}"
        );

        let mut notes = Vec::new();
        let plan = plan_import(
            &source(json!({"s3": {"enabled": false}})),
            Path::new("pb_data"),
            None,
            &mut notes,
        )
        .expect("plan");
        assert!(plan.copy_files);
        assert!(notes.is_empty(), "{notes:?}");
    }
}
