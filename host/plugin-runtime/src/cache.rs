//! The on-disk compile cache: compiled components keyed by (component sha256,
//! engine compatibility hash), so a restart or a rebind does not recompile.
//!
//! This file holds the crate's only `unsafe`: `Component::deserialize` trusts
//! that its input was produced by `Component::serialize` on a compatible
//! engine. We uphold that by (1) only reading files we wrote, named after the
//! engine's compatibility hash (and wasmtime re-checks its own header), and
//! (2) storing the sha256 of every artifact beside it and refusing any file
//! whose digest differs, so truncation or corruption leads to a recompile, not
//! to loading bad code. Whoever can write our data directory could equally
//! replace the binary, so the check does not need to resist an attacker there.

use std::fs;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::PluginError;
use crate::registry::{sha256_hex, write_atomic};

/// Where a component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Loaded from the on-disk cache.
    Cache,
    /// Compiled now (and written to the cache).
    Source,
}

pub(crate) struct CompileCache {
    dir: PathBuf,
    compatibility: String,
}

impl CompileCache {
    pub fn new(dir: &Path, compatibility: String) -> CompileCache {
        CompileCache {
            dir: dir.to_path_buf(),
            compatibility,
        }
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", self.compatibility))
    }

    /// Loads the compiled component for `sha256`, compiling `source()` (and
    /// caching the result) when there is no valid cached artifact.
    pub fn load(
        &self,
        engine: &Engine,
        sha256: &str,
        source: impl FnOnce() -> Result<Vec<u8>, PluginError>,
    ) -> Result<(Component, CompiledFrom), PluginError> {
        if let Some(component) = self.load_cached(engine, sha256) {
            return Ok((component, CompiledFrom::Cache));
        }
        let bytes = source()?;
        let component =
            Component::new(engine, &bytes).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        self.store(sha256, &component);
        Ok((component, CompiledFrom::Source))
    }

    /// Writes a compiled component to the cache. A failure only costs a
    /// recompile later, so it is logged, not returned.
    pub fn store(&self, sha256: &str, component: &Component) {
        let path = self.artifact_path(sha256);
        let result = component
            .serialize()
            .map_err(|e| PluginError::Compile(format!("{e:#}")))
            .and_then(|bytes| {
                write_atomic(&digest_path(&path), sha256_hex(&bytes).as_bytes())?;
                write_atomic(&path, &bytes)
            });
        if let Err(error) = result {
            tracing::warn!(%error, sha256, "cannot write the plugin compile cache");
        }
    }

    /// Removes every cached artifact of `sha256` (for any engine).
    pub fn remove(&self, sha256: &str) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(sha256) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The cached compiled component for `sha256`, if there is a valid one.
    pub(crate) fn load_cached(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256);
        let bytes = fs::read(&path).ok()?;
        let expected = fs::read_to_string(digest_path(&path)).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!(path = %path.display(), "corrupt compile cache entry; recompiling");
            return None;
        }
        // SAFETY: see the module docs: these bytes are exactly what
        // `Component::serialize` wrote for an engine with this compatibility
        // hash (verified by digest), and wasmtime checks the header again.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "unusable compile cache entry; recompiling");
                None
            }
        }
    }
}

fn digest_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.sha256")
}
