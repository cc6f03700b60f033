//! Scaffolds a new plugin project (`syncbase plugin new`): a buildable
//! resolver, filter or snapshot policy in Rust, C, Python or JavaScript, with
//! its README (build, test, push, bind) and its test.
//!
//! The templates live in `templates/` and are compiled in, so the command
//! works from any directory. Each template has a small default behaviour, the
//! same in every language, which `vectors.json` (conformance-vector format,
//! checked by `syncbase plugin test`) pins down; a Rust project also carries
//! unit tests. Projects need nothing but the `syncbase` binary: every README
//! builds with `syncbase plugin build`, and what a project uses from Syncbase
//! (the WIT contract, the language's helper library, the Rust SDK crate) is
//! compiled into the binary and written to the project's `.syncbase/`
//! ([`vendor`]), by `plugin new` and again by every `plugin build`, so it
//! always matches the binary that builds and runs the plugin.
//!
//! Scaffolding only writes files: it never builds or runs anything.

use std::path::{Path, PathBuf};

use crate::{BuildError, Lang, World};

/// One file of a template: where it goes in the project, and its text.
type File = (&'static str, &'static str);

const RUST_CARGO: &str = include_str!("../templates/rust/Cargo.toml");
const RUST_README: &str = include_str!("../templates/rust/README.md");
const C_README: &str = include_str!("../templates/c/README.md");
const PYTHON_README: &str = include_str!("../templates/python/README.md");
const JS_README: &str = include_str!("../templates/js/README.md");

/// The source file of each language and world.
fn source(lang: Lang, world: World) -> File {
    match (lang, world) {
        (Lang::Rust, World::Resolver) => (
            "src/lib.rs",
            include_str!("../templates/rust/resolver/lib.rs"),
        ),
        (Lang::Rust, World::Filter) => (
            "src/lib.rs",
            include_str!("../templates/rust/filter/lib.rs"),
        ),
        (Lang::Rust, World::SnapshotPolicy) => (
            "src/lib.rs",
            include_str!("../templates/rust/snapshot-policy/lib.rs"),
        ),
        (Lang::C, World::Resolver) => {
            ("plugin.c", include_str!("../templates/c/resolver/plugin.c"))
        }
        (Lang::C, World::Filter) => ("plugin.c", include_str!("../templates/c/filter/plugin.c")),
        (Lang::C, World::SnapshotPolicy) => (
            "plugin.c",
            include_str!("../templates/c/snapshot-policy/plugin.c"),
        ),
        (Lang::Python, World::Resolver) => (
            "plugin.py",
            include_str!("../templates/python/resolver/plugin.py"),
        ),
        (Lang::Python, World::Filter) => (
            "plugin.py",
            include_str!("../templates/python/filter/plugin.py"),
        ),
        (Lang::Python, World::SnapshotPolicy) => (
            "plugin.py",
            include_str!("../templates/python/snapshot-policy/plugin.py"),
        ),
        (Lang::Js, World::Resolver) => (
            "plugin.js",
            include_str!("../templates/js/resolver/plugin.js"),
        ),
        (Lang::Js, World::Filter) => (
            "plugin.js",
            include_str!("../templates/js/filter/plugin.js"),
        ),
        (Lang::Js, World::SnapshotPolicy) => (
            "plugin.js",
            include_str!("../templates/js/snapshot-policy/plugin.js"),
        ),
    }
}

/// The test vectors of each world's template (the same in every language).
fn vectors(world: World) -> &'static str {
    match world {
        World::Resolver => include_str!("../templates/vectors/resolver.json"),
        World::Filter => include_str!("../templates/vectors/filter.json"),
        World::SnapshotPolicy => include_str!("../templates/vectors/snapshot-policy.json"),
    }
}

/// What each world's template does, for the README.
fn behaviour(world: World) -> &'static str {
    match world {
        World::Resolver => include_str!("../templates/behaviour/resolver.md"),
        World::Filter => include_str!("../templates/behaviour/filter.md"),
        World::SnapshotPolicy => include_str!("../templates/behaviour/snapshot-policy.md"),
    }
}

/// The `syncbase plugin bind` and `rollback` commands the README shows.
fn bind_commands(name: &str, world: World) -> (String, String) {
    match world {
        World::Resolver => (
            format!("syncbase plugin bind {name} --collection posts --as resolver"),
            "syncbase plugin rollback --collection posts --as resolver".into(),
        ),
        World::Filter => (
            format!(
                "syncbase plugin bind {name} --collection users --as outbound-filter \
                 --config '{{\"fields\": [\"secret\"]}}'"
            ),
            "syncbase plugin rollback --collection users --as outbound-filter".into(),
        ),
        World::SnapshotPolicy => (
            format!("syncbase plugin bind {name} --as snapshot-policy"),
            "syncbase plugin rollback --as snapshot-policy".into(),
        ),
    }
}

/// Checks a plugin name: lowercase letters, digits and `-`, starting with a
/// letter, at most 64 bytes. It names the crate or `plugin.json`, the
/// component file and the plugin once pushed.
pub fn validate_plugin_name(name: &str) -> Result<(), BuildError> {
    let ok = name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BuildError::Scaffold(format!(
            "invalid plugin name {name:?}: use lowercase letters, digits and '-', starting \
             with a letter (at most 64)"
        )))
    }
}

/// The files of a new project, with every placeholder filled in.
pub fn render(name: &str, lang: Lang, world: World) -> Vec<(PathBuf, String)> {
    let (bind, rollback) = bind_commands(name, world);
    let header = format!("{}.h", world.wit_name().replace('-', "_"));
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{world}}", world.wit_name())
            .replace("{{behaviour}}", behaviour(world).trim_end())
            .replace("{{bind}}", &bind)
            .replace("{{rollback}}", &rollback)
            .replace("{{header}}", &header)
    };
    let (path, text) = source(lang, world);
    let mut files = vec![
        (PathBuf::from(path), fill(text)),
        (PathBuf::from("vectors.json"), vectors(world).to_string()),
    ];
    let readme = match lang {
        Lang::Rust => RUST_README,
        Lang::C => C_README,
        Lang::Python => PYTHON_README,
        Lang::Js => JS_README,
    };
    files.push((PathBuf::from("README.md"), fill(readme)));
    match lang {
        Lang::Rust => {
            files.push((PathBuf::from("Cargo.toml"), fill(RUST_CARGO)));
            files.push((PathBuf::from(".gitignore"), "/target\n/.syncbase\n".into()));
        }
        _ => {
            let manifest = serde_json::json!({"name": name, "world": world.wit_name()});
            files.push((PathBuf::from("plugin.json"), format!("{manifest}\n")));
            files.push((
                PathBuf::from(".gitignore"),
                "/build\n/.syncbase\n__pycache__/\n".into(),
            ));
        }
    }
    files
}

/// Writes a new `world` plugin project in `lang` named `name` into `dest`
/// (created if missing). Refuses to overwrite any file, and checks that
/// before writing anything. Returns `dest`.
pub fn scaffold(name: &str, lang: Lang, world: World, dest: &Path) -> Result<PathBuf, BuildError> {
    validate_plugin_name(name)?;
    let files = render(name, lang, world);
    if let Some((path, _)) = files.iter().find(|(path, _)| dest.join(path).exists()) {
        return Err(BuildError::Scaffold(format!(
            "{} already exists; scaffold into a new directory (--dir)",
            dest.join(path).display()
        )));
    }
    for (path, text) in &files {
        write_file(&dest.join(path), text.as_bytes())?;
    }
    vendor(dest, lang, Some(world))?;
    Ok(dest.to_path_buf())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The Rust guest SDK's sources, compiled in.
const GUEST_SDK: [(&str, &str); 9] = [
    ("src/arena.rs", include_str!("../../src/arena.rs")),
    ("src/bindings.rs", include_str!("../../src/bindings.rs")),
    ("src/config.rs", include_str!("../../src/config.rs")),
    ("src/export.rs", include_str!("../../src/export.rs")),
    ("src/lib.rs", include_str!("../../src/lib.rs")),
    ("src/macros.rs", include_str!("../../src/macros.rs")),
    ("src/merge.rs", include_str!("../../src/merge.rs")),
    ("src/types.rs", include_str!("../../src/types.rs")),
    ("src/worlds.rs", include_str!("../../src/worlds.rs")),
];

/// The SDK's manifest with the workspace's inherited settings written out: in a project it
/// is a crate of its own.
fn guest_manifest() -> String {
    include_str!("../../Cargo.toml")
        .replace("edition.workspace = true", "edition = \"2024\"")
        .replace("rust-version.workspace = true", "rust-version = \"1.95\"")
        .replace("license.workspace = true", "license = \"MIT\"")
        .replace(
            "version.workspace = true",
            &format!(
                "version = \"{}\"\npublish = false",
                env!("CARGO_PKG_VERSION")
            ),
        )
}

/// Writes what a project of `lang` uses from Syncbase into `<project>/.syncbase/`: the WIT
/// package and its README, the conformance-vector format, the language's helper library
/// (for C also the world's generated bindings, when this crate can generate them), and for
/// Rust the guest SDK crate (`world` only matters for C). Overwrites what is there (it is
/// generated).
pub fn vendor(project: &Path, lang: Lang, world: Option<World>) -> Result<(), BuildError> {
    let root = project.join(".syncbase");
    for (name, text) in crate::WIT_FILES {
        write_file(&root.join("wit").join(name), text.as_bytes())?;
    }
    write_file(
        &root.join("conformance.md"),
        include_str!("../../../plugins/conformance/README.md").as_bytes(),
    )?;
    match lang {
        Lang::Rust => {
            let sdk = root.join("guest-sdk");
            write_file(&sdk.join("Cargo.toml"), guest_manifest().as_bytes())?;
            for (path, text) in GUEST_SDK {
                write_file(&sdk.join(path), text.as_bytes())?;
            }
        }
        Lang::Python => write_file(&root.join(crate::PY_SDK.0), crate::PY_SDK.1.as_bytes())?,
        Lang::Js => write_file(&root.join(crate::JS_SDK.0), crate::JS_SDK.1.as_bytes())?,
        Lang::C => {
            for (name, text) in crate::C_SDK {
                write_file(&root.join("include").join(name), text.as_bytes())?;
            }
            #[cfg(feature = "build")]
            if let Some(world) = world {
                for (name, bytes) in crate::c_bindings(world)? {
                    write_file(&root.join("include").join(name), &bytes)?;
                }
            }
        }
    }
    let _ = world;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_filled_in_completely() {
        for lang in Lang::ALL {
            for world in World::ALL {
                for (path, text) in render("my-plugin", lang, world) {
                    assert!(
                        !text.contains("{{"),
                        "{lang} {world} {}: a placeholder is left:\n{text}",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn vectors_are_conformance_files_of_their_world() {
        for world in World::ALL {
            let v: serde_json::Value =
                serde_json::from_str(vectors(world)).expect("vectors are JSON");
            assert_eq!(v["world"], world.wit_name());
            assert!(v["cases"].as_array().is_some_and(|c| !c.is_empty()));
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_plugin_name("my-merge2").is_ok());
        for bad in ["", "My", "2x", "a_b", "a b", &"x".repeat(65)] {
            assert!(validate_plugin_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_rust_project_carries_the_sdk_and_the_contract() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("p");
        scaffold("p", Lang::Rust, World::Resolver, &dir).expect("scaffold");
        let manifest =
            std::fs::read_to_string(dir.join(".syncbase/guest-sdk/Cargo.toml")).expect("sdk");
        assert!(!manifest.contains(".workspace"), "{manifest}");
        assert!(dir.join(".syncbase/guest-sdk/src/lib.rs").is_file());
        assert!(dir.join(".syncbase/wit/resolver.wit").is_file());
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(cargo.contains(r#"path = ".syncbase/guest-sdk""#), "{cargo}");
    }

    #[test]
    fn projects_ignore_what_builds_and_python_write() {
        for lang in Lang::ALL {
            let files = render("p", lang, World::Filter);
            let ignore = files
                .iter()
                .find(|(p, _)| p == Path::new(".gitignore"))
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            assert!(ignore.contains("/.syncbase"), "{lang}: {ignore}");
            if lang == Lang::Python {
                assert!(ignore.contains("__pycache__/"), "{ignore}");
            }
        }
    }

    #[test]
    fn scaffolding_never_overwrites_a_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("twice");
        scaffold("twice", Lang::C, World::Filter, &dir).expect("first scaffold");
        let before = std::fs::read_to_string(dir.join("plugin.c")).expect("plugin.c");
        let err = scaffold("twice", Lang::Js, World::Filter, &dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("already exists"), "{err}");
        assert!(!dir.join("plugin.js").exists(), "wrote before refusing");
        let after = std::fs::read_to_string(dir.join("plugin.c")).expect("plugin.c");
        assert_eq!(before, after);
    }
}
