//! The `syncbase plugin` commands that need no node: `new` scaffolds a project, `build` builds
//! one into a component with the language's toolchain (found, or installed where the user
//! chooses), `test` runs test vectors against a component in a private runtime.

use std::path::{Path, PathBuf};

use syncbase_plugin_build::{
    BuildOptions, ForeignBuild, Lang, World, build_foreign, build_plugins, tools,
};

use super::AdminError;

/// `syncbase plugin new`: scaffolds a project and says what to do next.
pub(super) fn new_project(
    name: &str,
    lang: Lang,
    world: World,
    dir: Option<&Path>,
) -> Result<String, AdminError> {
    let dest = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let dest = syncbase_plugin_build::scaffold(name, lang, world, &dest)
        .map_err(|e| AdminError::Scaffold(e.to_string()))?;
    Ok(format!(
        "created the {lang} {world} plugin {name} in {dir}\n\
         next: {dir}/README.md (build, test, push, bind)",
        dir = dest.display()
    ))
}

/// `syncbase plugin test`: runs a vectors file against a component; any failed case fails.
pub(super) async fn test_vectors(file: &Path, vectors: &Path) -> Result<String, AdminError> {
    let (file, vectors) = (file.to_path_buf(), vectors.to_path_buf());
    let report =
        tokio::task::spawn_blocking(move || crate::plugins::vectors::test_files(&file, &vectors))
            .await
            .map_err(|e| AdminError::Vectors(format!("the test run panicked: {e}")))?
            .map_err(|e| AdminError::Vectors(e.to_string()))?;
    if report.failures() == 0 {
        Ok(report.render())
    } else {
        Err(AdminError::Vectors(report.render()))
    }
}

/// The language of the project in `dir`, from its files.
fn detect(dir: &Path) -> Result<Lang, AdminError> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(Lang::Rust);
    }
    if dir.join("plugin.json").is_file() {
        if dir.join("plugin.py").is_file() {
            return Ok(Lang::Python);
        }
        if dir.join("plugin.js").is_file() {
            return Ok(Lang::Js);
        }
        let has_c = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "c"));
        if has_c {
            return Ok(Lang::C);
        }
    }
    Err(AdminError::Build(format!(
        "{} holds no plugin project: expected a Cargo.toml (Rust), or a plugin.json beside \
         plugin.py, plugin.js or *.c files (`syncbase plugin new` writes one), or give --lang",
        dir.display()
    )))
}

/// `syncbase plugin build`: builds the project in `dir` (see the module docs). Progress and
/// what a missing toolchain costs go to stderr; the built component's path is the output.
pub(super) async fn build(
    dir: &Path,
    lang: Option<Lang>,
    out_dir: Option<&Path>,
    tools_dir: Option<&Path>,
    install: bool,
) -> Result<String, AdminError> {
    let dir = dir.to_path_buf();
    let out_dir = out_dir.map(Path::to_path_buf);
    let tools_dir = tools_dir.map_or_else(tools::default_dir, Path::to_path_buf);
    tokio::task::spawn_blocking(move || build_blocking(&dir, lang, out_dir, &tools_dir, install))
        .await
        .map_err(|e| AdminError::Build(format!("the build panicked: {e}")))?
}

fn build_blocking(
    dir: &Path,
    lang: Option<Lang>,
    out_dir: Option<PathBuf>,
    tools_dir: &Path,
    install: bool,
) -> Result<String, AdminError> {
    let lang = match lang {
        Some(l) => l,
        None => detect(dir)?,
    };
    let dirs = vec![tools_dir.to_path_buf()];
    if !tools::available(lang, dir, &dirs) {
        let plan = tools::install_plan(lang, tools_dir);
        if !install {
            return Err(AdminError::Build(format!(
                "the {lang} toolchain is not installed. `syncbase plugin build --install-tools` \
                 {plan}."
            )));
        }
        eprintln!("syncbase plugin build: the {lang} toolchain is missing; this {plan}.");
        let done = tools::install(lang, tools_dir).map_err(|e| AdminError::Build(e.to_string()))?;
        eprintln!("syncbase plugin build: {done}");
    }
    let fail = |e: syncbase_plugin_build::BuildError| AdminError::Build(e.to_string());
    let built = match lang {
        Lang::Rust => {
            // The SDK crate the project depends on, matching this binary.
            syncbase_plugin_build::vendor(dir, lang, None).map_err(fail)?;
            build_plugins(&BuildOptions {
                plugin_dirs: vec![dir.to_path_buf()],
                target_dir: None,
                out_dir,
                world: None,
            })
            .map_err(fail)?
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::Build("cargo built nothing".into()))?
        }
        other => {
            let manifest = syncbase_plugin_build::read_manifest(dir).map_err(fail)?;
            syncbase_plugin_build::vendor(dir, other, Some(manifest.world)).map_err(fail)?;
            build_foreign(&ForeignBuild {
                out_dir,
                tools: dirs,
                ..ForeignBuild::new(other, dir)
            })
            .map_err(fail)?
        }
    };
    Ok(format!(
        "built {} ({}, {}, {} bytes): {}",
        built.name,
        lang,
        built.world,
        built.size,
        built.component.display()
    ))
}
