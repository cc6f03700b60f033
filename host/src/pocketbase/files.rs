//! The bytes of the files records name, carried between PocketBase's `pb_data/storage` and a
//! Syncbase data directory's storage. Both lay files out the same way
//! (`<collectionId>/<recordId>/<name>`, see `files::storage`), so a file keeps its key; the
//! copy itself (streamed, hashed and sniffed on the way) is `files::copy_local`.
//!
//! The store calls the copier once per file a carried record names, after the rows are in;
//! for an import the reference it returns becomes the name's `_files` row. A file a record
//! names but the source storage lacks is reported and the copy goes on: the record keeps the
//! name, as it had it. Thumbs (`thumbs_<name>/` folders) are not copied: both servers make
//! them again on the first request.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::MigrateError;
use super::report::Note;
use crate::files::{Copied, FileError};
use crate::store::files::FileRef;
use crate::store::schema::Collection;

/// Missing files named one by one in the report; past that, one line says how many more.
const NAMED_MISSING: usize = 20;

/// Copies files from one storage directory to another, counting and noting as it goes.
pub struct Copier {
    /// How the source storage is called in notes (`pb_data/storage`, `storage`).
    label: &'static str,
    from: PathBuf,
    to: PathBuf,
    bar: indicatif::ProgressBar,
    /// Files copied, and their bytes.
    pub copied: u64,
    pub bytes: u64,
    missing: Vec<Note>,
    missing_more: u64,
    started: bool,
}

impl Copier {
    pub fn new(
        label: &'static str,
        from: PathBuf,
        to: PathBuf,
        bar: indicatif::ProgressBar,
    ) -> Copier {
        Copier {
            label,
            from,
            to,
            bar,
            copied: 0,
            bytes: 0,
            missing: Vec::new(),
            missing_more: 0,
            started: false,
        }
    }

    /// Copies one file of an imported record and returns its `_files` reference (`None`
    /// when the source lacks it: noted).
    pub fn import(
        &mut self,
        c: &Collection,
        rid: &str,
        name: &str,
    ) -> Result<Option<FileRef>, MigrateError> {
        Ok(self.copy(c, rid, name)?.map(|copied| FileRef {
            name: name.to_string(),
            sha256: copied.sha256,
            size: copied.size,
            mime: copied.mime,
        }))
    }

    /// Copies one file of an exported record (noted when this node lacks it), with the
    /// `.attrs` side file PocketBase keeps beside each file: without it PocketBase serves the
    /// file as `application/octet-stream`, as a download, and makes no thumbs of it.
    pub fn export(&mut self, c: &Collection, rid: &str, name: &str) -> Result<(), MigrateError> {
        let Some(copied) = self.copy(c, rid, name)? else {
            return Ok(());
        };
        let key = crate::files::file_key(&c.id, rid, name);
        let attrs = serde_json::json!({
            "user.cache_control": "",
            "user.content_disposition": "",
            "user.content_encoding": "",
            "user.content_language": "",
            "user.content_type": copied.mime,
            "user.metadata": {"original-filename": name},
            "md5": null,
        });
        crate::files::Storage::local_path(&self.to, &key)
            .map_err(|source| MigrateError::File {
                key: key.clone(),
                source,
            })
            .and_then(|path| {
                let mut path = path.into_os_string();
                path.push(".attrs");
                std::fs::write(&path, format!("{attrs}\n")).map_err(|e| MigrateError::File {
                    key: key.clone(),
                    source: e.into(),
                })
            })
    }

    fn copy(
        &mut self,
        c: &Collection,
        rid: &str,
        name: &str,
    ) -> Result<Option<Copied>, MigrateError> {
        if !self.started {
            self.started = true;
            self.start_bar();
        }
        let key = crate::files::file_key(&c.id, rid, name);
        match crate::files::copy_local(&self.from, &self.to, &key) {
            Ok(copied) => {
                self.copied += 1;
                self.bytes += copied.size;
                self.bar.inc(1);
                Ok(Some(copied))
            }
            Err(FileError::NotFound) => {
                self.miss(
                    c,
                    rid,
                    format!(
                        "file {name:?} is named by the record but is not in {}: the record keeps \
                         the name, and downloading it answers 404",
                        self.label
                    ),
                );
                Ok(None)
            }
            Err(FileError::Invalid(why)) => {
                self.miss(c, rid, format!("file {name:?} not copied: {why}"));
                Ok(None)
            }
            Err(source) => Err(MigrateError::File { key, source }),
        }
    }

    fn miss(&mut self, c: &Collection, rid: &str, reason: String) {
        tracing::warn!(collection = %c.name, record = rid, %reason, "file not copied");
        if self.missing.len() < NAMED_MISSING {
            self.missing
                .push(Note::new(&format!("{}/{rid}", c.name), reason));
        } else {
            self.missing_more += 1;
        }
    }

    /// The bar switches from records to files (sized by the files in the source storage,
    /// counted only when the bar is shown).
    fn start_bar(&self) {
        if self.bar.is_hidden() {
            return;
        }
        let (files, _, _) = walk(&self.from);
        self.bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:24!} [{bar:40}] {human_pos}/{human_len} files ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_message("files");
        self.bar.set_length(files);
        self.bar.set_position(0);
    }

    /// The files not copied because the source lacked them (or named them oddly).
    pub fn missing_notes(&mut self) -> Vec<Note> {
        let mut notes = std::mem::take(&mut self.missing);
        if self.missing_more > 0 {
            notes.push(Note::new(
                self.label,
                format!(
                    "{} more files named by records are not in it (not copied)",
                    self.missing_more
                ),
            ));
        }
        notes
    }

    /// After an import: the missing files, then what `storage` held that was not copied
    /// (thumbs, and files no imported record names).
    pub fn notes(&mut self, storage: &Path) -> Vec<Note> {
        let mut notes = self.missing_notes();
        let (files, bytes, thumbs) = walk(storage);
        if thumbs > 0 {
            notes.push(Note::new(
                self.label,
                format!(
                    "{thumbs} thumbnails not copied: Syncbase makes them again on the first request"
                ),
            ));
        }
        let left = files.saturating_sub(self.copied);
        if left > 0 {
            notes.push(Note::new(
                self.label,
                format!(
                    "{left} of its {files} files ({} in all) are named by no imported record \
                     (their collection or field was not carried, or nothing names them): not copied",
                    super::human_bytes(bytes.saturating_sub(self.bytes))
                ),
            ));
        }
        notes
    }
}

/// Whether settings put files in S3.
pub fn s3_enabled(settings: Option<&Value>) -> bool {
    settings
        .and_then(|s| s.pointer("/s3/enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Files under a storage directory (thumbs and PocketBase's `.attrs` metadata aside), their
/// bytes, and the thumbs.
fn walk(dir: &Path) -> (u64, u64, u64) {
    let (mut files, mut bytes, mut thumbs) = (0, 0, 0);
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, in_thumbs)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.filter_map(Result::ok) {
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push((e.path(), in_thumbs || name.starts_with("thumbs_")));
            } else if in_thumbs {
                thumbs += u64::from(!name.ends_with(".attrs"));
            } else if !name.ends_with(".attrs") {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes, thumbs)
}
