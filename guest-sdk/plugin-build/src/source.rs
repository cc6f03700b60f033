//! The source digest every build records in its component, as a custom section named
//! `syncbase:source`: a sha256 over everything the build read (the project's files, the
//! Syncbase SDK and WIT compiled into this builder, the toolchain's version line).
//!
//! Rust and C builds are byte-for-byte reproducible anyway. Python and JavaScript are not:
//! componentize-py and componentize-qjs snapshot an initialised interpreter, and the snapshot
//! differs between builds of the same sources. The digest says "same sources, same
//! toolchain": the plugin runtime takes it as the component's canonical content digest, so
//! pushing a rebuild of unchanged sources answers "unchanged" instead of adding a version.
//! A custom section never runs, and the runtime ignores custom sections when it sizes a
//! plugin, so the stamp changes nothing else.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{BuildError, Lang, WIT_FILES, World};

/// The section's name (the runtime reads it: `syncbase_plugin_runtime::SOURCE_SECTION`).
pub const SECTION: &str = "syncbase:source";

/// Directories a build writes or that are not the plugin's sources.
const SKIP_DIRS: [&str; 5] = [
    "build",
    "target",
    "node_modules",
    "__pycache__",
    ".syncbase",
];

fn files(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> Result<(), BuildError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Through a symbolic link (a `target/` shared between projects is one): what it
        // points at decides.
        let Ok(kind) = std::fs::metadata(&path).map(|m| m.file_type()) else {
            continue;
        };
        if kind.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                files(&path, root, out)?;
            }
        } else if !name.ends_with(".wasm")
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// The digest of a build of `project` (see the module docs). `sdk` is the Syncbase helper
/// source the build adds for `lang`.
pub fn digest(
    project: &Path,
    lang: Lang,
    world: World,
    toolchain: &str,
    sdk: &[(&str, &str)],
) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"syncbase-plugin-build source digest v1");
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(lang.name().as_bytes());
    field(world.wit_name().as_bytes());
    field(toolchain.as_bytes());
    for (name, text) in WIT_FILES.iter().chain(sdk.iter()) {
        field(name.as_bytes());
        field(text.as_bytes());
    }
    let mut paths = Vec::new();
    files(project, project, &mut paths)?;
    paths.sort();
    for rel in paths {
        let path = project.join(&rel);
        let bytes = std::fs::read(&path).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
        field(rel.to_string_lossy().as_bytes());
        field(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Appends the `syncbase:source` section holding `digest` to a component (a custom section
/// may follow the last section of a component).
pub fn stamp(component: &mut Vec<u8>, digest: &str) {
    let mut payload = Vec::new();
    leb(&mut payload, SECTION.len() as u64);
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(digest.as_bytes());
    component.push(0);
    leb(component, payload.len() as u64);
    component.extend_from_slice(&payload);
}

fn leb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_sources_but_not_build_outputs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::write(dir.join("plugin.py"), "x = 1\n").expect("write");
        let d = || {
            digest(
                dir,
                Lang::Python,
                World::Resolver,
                "componentize-py 0.25.1",
                &[],
            )
        };
        let first = d().expect("digest");
        std::fs::create_dir_all(dir.join("build")).expect("mkdir");
        std::fs::write(dir.join("build/p.wasm"), "out").expect("write");
        std::fs::write(dir.join("README.md"), "").expect("write");
        let with_readme = d().expect("digest");
        assert_ne!(first, with_readme, "every source file counts");
        std::fs::write(dir.join("build/p.wasm"), "other output").expect("write");
        assert_eq!(with_readme, d().expect("digest"), "build outputs do not");
        std::fs::write(dir.join("plugin.py"), "x = 2\n").expect("write");
        assert_ne!(with_readme, d().expect("digest"));
        let other_toolchain = digest(
            dir,
            Lang::Python,
            World::Resolver,
            "componentize-py 0.26",
            &[],
        );
        assert_ne!(d().expect("digest"), other_toolchain.expect("digest"));
    }

    #[test]
    fn a_linked_build_directory_is_skipped_like_a_real_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dir, shared) = (tmp.path().join("p"), tmp.path().join("shared"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::create_dir_all(&shared).expect("mkdir");
        std::fs::write(dir.join("lib.rs"), "fn f() {}\n").expect("write");
        std::os::unix::fs::symlink(&shared, dir.join("target")).expect("link");
        let d = || digest(&dir, Lang::Rust, World::Resolver, "rustc", &[]).expect("digest");
        let first = d();
        std::fs::write(shared.join("out.rlib"), "artefact").expect("write");
        assert_eq!(first, d(), "what a linked target/ holds does not count");
    }

    #[test]
    fn a_stamped_component_still_parses_and_carries_the_section() {
        let mut component = wat::parse_str("(component)").expect("wat");
        stamp(&mut component, "abc");
        let mut found = None;
        for payload in wasmparser::Parser::new(0).parse_all(&component) {
            if let wasmparser::Payload::CustomSection(s) = payload.expect("parses") {
                found = Some((s.name().to_string(), s.data().to_vec()));
            }
        }
        assert_eq!(found, Some((SECTION.to_string(), b"abc".to_vec())));
    }
}
