//! Scaffolds a new plugin project (`syncbase plugin new`): a buildable
//! resolver, filter or snapshot policy in Rust, C, Python or JavaScript, with
//! its README (build, test, push, bind) and its test.
//!
//! The templates live in `templates/` and are compiled in, so the command
//! works from any directory. Each template has a small default behaviour, the
//! same in every language, which `vectors.json` (conformance-vector format,
//! checked by `syncbase plugin test`) pins down; a Rust project also carries
//! unit tests. The projects point at the Syncbase checkout this crate was
//! built from: a Rust project depends on its `guest-sdk` by path, and every
//! README builds with its `scripts/build-plugin`. Inside that checkout the
//! paths are relative (the project can be committed there); elsewhere they are
//! absolute.
//!
//! Scaffolding only writes files: it never builds or runs anything.

use std::path::{Component, Path, PathBuf};

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

/// The Syncbase checkout this crate was built from (its `guest-sdk` and `scripts`).
pub fn checkout_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
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

/// The files of a new project, with every placeholder filled in. `checkout`
/// is how the project refers to the Syncbase checkout (a relative or an
/// absolute path).
pub fn render(name: &str, lang: Lang, world: World, checkout: &str) -> Vec<(PathBuf, String)> {
    let (bind, rollback) = bind_commands(name, world);
    let header = format!("{}.h", world.wit_name().replace('-', "_"));
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{world}}", world.wit_name())
            .replace("{{checkout}}", checkout)
            .replace("{{guest_sdk}}", &format!("{checkout}/guest-sdk"))
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
            files.push((PathBuf::from(".gitignore"), "/target\n".into()));
        }
        _ => {
            let manifest = serde_json::json!({"name": name, "world": world.wit_name()});
            files.push((PathBuf::from("plugin.json"), format!("{manifest}\n")));
            files.push((PathBuf::from(".gitignore"), "/build\n".into()));
        }
    }
    files
}

/// Writes a new `world` plugin project in `lang` named `name` into `dest`
/// (created if missing). Refuses to overwrite any file, and checks that
/// before writing anything. Returns `dest`.
pub fn scaffold(name: &str, lang: Lang, world: World, dest: &Path) -> Result<PathBuf, BuildError> {
    validate_plugin_name(name)?;
    let checkout = checkout_dir();
    if lang == Lang::Rust && !checkout.join("guest-sdk/Cargo.toml").is_file() {
        return Err(BuildError::Scaffold(format!(
            "a Rust plugin depends on the Syncbase guest SDK, expected at {} (the checkout \
             this syncbase was built from)",
            checkout.join("guest-sdk").display()
        )));
    }
    std::fs::create_dir_all(dest).map_err(|source| BuildError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let abs = dest.canonicalize().map_err(|source| BuildError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let files = render(name, lang, world, &path_from(&abs, &checkout));
    if let Some((path, _)) = files.iter().find(|(path, _)| dest.join(path).exists()) {
        return Err(BuildError::Scaffold(format!(
            "{} already exists; scaffold into a new directory (--dir)",
            dest.join(path).display()
        )));
    }
    for (path, text) in &files {
        let path = dest.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dest.to_path_buf())
}

/// `to` as seen from `from` (both canonical): relative when `from` is inside
/// `to`, absolute otherwise.
fn path_from(from: &Path, to: &Path) -> String {
    match from.strip_prefix(to) {
        Ok(inner) => {
            let ups = inner
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count();
            if ups == 0 {
                ".".to_string()
            } else {
                vec![".."; ups].join("/")
            }
        }
        Err(_) => to.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_filled_in_completely() {
        for lang in Lang::ALL {
            for world in World::ALL {
                for (path, text) in render("my-plugin", lang, world, "/checkout") {
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
    fn the_checkout_is_relative_from_inside_and_absolute_from_outside() {
        let root = Path::new("/src/syncbase");
        assert_eq!(path_from(Path::new("/src/syncbase/my-merge"), root), "..");
        assert_eq!(
            path_from(Path::new("/src/syncbase/plugins/my-merge"), root),
            "../.."
        );
        assert_eq!(path_from(Path::new("/home/me/p"), root), "/src/syncbase");
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
