//! The plugin registry: component bytes stored content-addressed (sha256) in a
//! directory, and the metadata of every named version.
//!
//! Layout under the runtime's directory:
//!
//! ```text
//! blobs/<sha256>.wasm               the component, exactly as uploaded
//! versions/<name>/<version>.json    a PluginVersion
//! cache/                            compiled code (see cache.rs)
//! bindings.json                     the binding table (see binding.rs)
//! ```
//!
//! Files are written to a temporary name and renamed, so a crash never leaves
//! a half-written blob or metadata file. The registry knows nothing of wasmtime.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PluginError;
use crate::world::World;

/// One uploaded version of a named plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    /// The plugin's name (unique in the registry).
    pub name: String,
    /// 1 for the first upload under this name, then 2, 3, ...
    pub version: u32,
    /// Lowercase hex sha256 of the component bytes.
    pub sha256: String,
    /// The world the component implements.
    pub world: World,
    /// Component size in bytes.
    pub size: u64,
    /// When it was uploaded, in milliseconds since the Unix epoch.
    pub uploaded_at_ms: u64,
    /// The component's exported functions.
    pub exports: Vec<String>,
    /// Bytes outside custom sections (0 in metadata written before it was recorded).
    #[serde(default)]
    pub code_size: u64,
    /// The canonical content digest (see `content.rs`; empty in older metadata).
    #[serde(default)]
    pub canonical: String,
}

impl PluginVersion {
    /// The size that decides the default limits: the code, not custom sections.
    pub fn code_bytes(&self) -> u64 {
        if self.code_size > 0 {
            self.code_size
        } else {
            self.size
        }
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Checks a plugin name: 1 to 64 of `a-z 0-9 - _`, not starting with `-`/`_`.
pub fn validate_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(PluginError::InvalidName(name.to_string()))
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| PluginError::io(path, e))
}

/// The registry's in-memory index over its directory.
pub(crate) struct Registry {
    dir: PathBuf,
    versions: BTreeMap<String, BTreeMap<u32, Arc<PluginVersion>>>,
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir` and reads its index.
    pub fn open(dir: &Path) -> Result<Registry, PluginError> {
        for sub in ["blobs", "versions", "cache"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| PluginError::io(&path, e))?;
        }
        let mut registry = Registry {
            dir: dir.to_path_buf(),
            versions: BTreeMap::new(),
        };
        let versions_dir = dir.join("versions");
        for name_dir in read_dir(&versions_dir)? {
            for file in read_dir(&name_dir)? {
                if file.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let text = fs::read(&file).map_err(|e| PluginError::io(&file, e))?;
                let meta: PluginVersion =
                    serde_json::from_slice(&text).map_err(|e| PluginError::Corrupt {
                        path: file.clone(),
                        detail: e.to_string(),
                    })?;
                registry
                    .versions
                    .entry(meta.name.clone())
                    .or_default()
                    .insert(meta.version, Arc::new(meta));
            }
        }
        Ok(registry)
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.wasm"))
    }

    fn meta_path(&self, name: &str, version: u32) -> PathBuf {
        self.dir
            .join("versions")
            .join(name)
            .join(format!("{version}.json"))
    }

    /// True when the component with this digest is stored.
    pub fn has_blob(&self, sha256: &str) -> bool {
        is_sha256_hex(sha256) && self.blob_path(sha256).is_file()
    }

    /// The stored component bytes.
    pub fn read_blob(&self, sha256: &str) -> Result<Vec<u8>, PluginError> {
        if !is_sha256_hex(sha256) {
            return Err(PluginError::MissingBlob(sha256.to_string()));
        }
        let path = self.blob_path(sha256);
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(PluginError::MissingBlob(sha256.to_string()))
            }
            Err(e) => Err(PluginError::io(&path, e)),
        }
    }

    /// A version of `name` (the latest when `version` is `None`).
    pub fn get(&self, name: &str, version: Option<u32>) -> Option<Arc<PluginVersion>> {
        let versions = self.versions.get(name)?;
        match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        }
    }

    /// Every version of every plugin, by name then version.
    pub fn list(&self) -> Vec<Arc<PluginVersion>> {
        self.versions
            .values()
            .flat_map(|versions| versions.values().cloned())
            .collect()
    }

    /// Every version of `name`.
    pub fn versions_of(&self, name: &str) -> Vec<Arc<PluginVersion>> {
        self.versions
            .get(name)
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The version number the next upload under `name` gets.
    pub fn next_version(&self, name: &str) -> u32 {
        self.versions
            .get(name)
            .and_then(|v| v.keys().next_back())
            .map_or(1, |v| v.saturating_add(1))
    }

    /// Stores the component bytes (if new) and the version's metadata.
    pub fn insert(
        &mut self,
        meta: PluginVersion,
        bytes: &[u8],
    ) -> Result<Arc<PluginVersion>, PluginError> {
        validate_name(&meta.name)?;
        self.insert_blob(&meta.sha256, bytes)?;
        self.insert_meta(meta)
    }

    /// Stores component bytes under their digest (if new).
    pub fn insert_blob(&mut self, sha256: &str, bytes: &[u8]) -> Result<(), PluginError> {
        if !is_sha256_hex(sha256) {
            return Err(PluginError::MissingBlob(sha256.to_string()));
        }
        if !self.has_blob(sha256) {
            write_atomic(&self.blob_path(sha256), bytes)?;
        }
        Ok(())
    }

    /// Removes bytes no version refers to; true if there were such bytes.
    pub fn remove_orphan_blob(&mut self, sha256: &str) -> Result<bool, PluginError> {
        if !self.has_blob(sha256) || self.list().iter().any(|m| m.sha256 == sha256) {
            return Ok(false);
        }
        let blob = self.blob_path(sha256);
        fs::remove_file(&blob).map_err(|e| PluginError::io(&blob, e))?;
        Ok(true)
    }

    /// Stores a version's metadata (its bytes may come later: see `has_blob`).
    pub fn insert_meta(&mut self, meta: PluginVersion) -> Result<Arc<PluginVersion>, PluginError> {
        validate_name(&meta.name)?;
        let path = self.meta_path(&meta.name, meta.version);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| PluginError::io(parent, e))?;
        }
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| PluginError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
        let meta = Arc::new(meta);
        self.versions
            .entry(meta.name.clone())
            .or_default()
            .insert(meta.version, meta.clone());
        Ok(meta)
    }

    /// Removes one version's metadata, and its bytes when no other version
    /// shares them. Returns the digests whose bytes were removed.
    pub fn remove(&mut self, name: &str, version: u32) -> Result<Vec<String>, PluginError> {
        let Some(meta) = self.versions.get_mut(name).and_then(|v| v.remove(&version)) else {
            return Err(PluginError::NotFound {
                name: name.to_string(),
                version: Some(version),
            });
        };
        if self.versions.get(name).is_some_and(|v| v.is_empty()) {
            self.versions.remove(name);
        }
        let path = self.meta_path(name, version);
        fs::remove_file(&path).map_err(|e| PluginError::io(&path, e))?;
        if let Some(parent) = path.parent() {
            // Only succeeds when the name has no versions left.
            let _ = fs::remove_dir(parent);
        }
        let still_used = self.list().iter().any(|m| m.sha256 == meta.sha256);
        if still_used {
            return Ok(Vec::new());
        }
        let blob = self.blob_path(&meta.sha256);
        match fs::remove_file(&blob) {
            Ok(()) => {}
            // Metadata registered from the log whose bytes never arrived here.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PluginError::io(&blob, e)),
        }
        Ok(vec![meta.sha256.clone()])
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = fs::read_dir(dir).map_err(|e| PluginError::io(dir, e))?;
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PluginError::io(dir, e))?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, version: u32, bytes: &[u8]) -> PluginVersion {
        PluginVersion {
            name: name.into(),
            version,
            sha256: sha256_hex(bytes),
            world: World::Resolver,
            size: bytes.len() as u64,
            uploaded_at_ms: 1,
            exports: vec!["resolve".into()],
            code_size: bytes.len() as u64,
            canonical: sha256_hex(bytes),
        }
    }

    #[test]
    fn names_are_checked() {
        for good in ["lww", "field-merge", "a_1", "9x"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Upper", "a/b", "../x", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_survive_reopening_and_shared_bytes_outlive_one_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = Registry::open(dir.path()).expect("open");
        assert_eq!(reg.next_version("p"), 1);
        reg.insert(meta("p", 1, b"one"), b"one").expect("insert");
        reg.insert(meta("p", 2, b"two"), b"two").expect("insert");
        reg.insert(meta("q", 1, b"two"), b"two").expect("insert");
        let reg = Registry::open(dir.path()).expect("reopen");
        let mut reg = reg;
        assert_eq!(reg.next_version("p"), 3);
        assert_eq!(reg.get("p", None).map(|m| m.version), Some(2));
        assert_eq!(reg.read_blob(&sha256_hex(b"one")).expect("blob"), b"one");
        // "two" is shared by p@2 and q@1: removing p@2 keeps the bytes.
        assert_eq!(reg.remove("p", 2).expect("remove"), Vec::<String>::new());
        assert!(reg.has_blob(&sha256_hex(b"two")));
        assert_eq!(
            reg.remove("q", 1).expect("remove"),
            vec![sha256_hex(b"two")]
        );
        assert!(!reg.has_blob(&sha256_hex(b"two")));
        assert!(matches!(
            reg.remove("q", 1),
            Err(PluginError::NotFound { .. })
        ));
    }
}
