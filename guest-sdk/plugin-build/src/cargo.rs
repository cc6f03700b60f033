//! Runs `cargo build` for plugin crates and componentizes what it produced.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{BuildError, World, componentize};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// What to build and where.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Plugin crate directories (each holding a `Cargo.toml`). When several
    /// are given they must belong to one Cargo workspace.
    pub plugin_dirs: Vec<PathBuf>,
    /// Cargo target directory; defaults to the workspace's.
    pub target_dir: Option<PathBuf>,
    /// Where components go; defaults to `<target dir>/plugins`.
    pub out_dir: Option<PathBuf>,
    /// Force the world instead of detecting it from the exports.
    pub world: Option<World>,
}

/// One built plugin.
#[derive(Debug, Clone)]
pub struct Built {
    /// Plugin name: the package name without a `syncbase-plugin-` prefix.
    pub name: String,
    pub world: World,
    /// Path of the component file.
    pub component: PathBuf,
    /// Size of the component in bytes.
    pub size: u64,
}

struct Package {
    name: String,
    lib_name: String,
    target_dir: PathBuf,
}

/// Builds each plugin crate with one `cargo build` invocation, then turns each
/// core module into a component named `<out dir>/<name>.wasm`.
pub fn build_plugins(options: &BuildOptions) -> Result<Vec<Built>, BuildError> {
    let packages = options
        .plugin_dirs
        .iter()
        .map(|dir| package(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = options.plugin_dirs.first() else {
        return Ok(Vec::new());
    };
    let target_dir = match (&options.target_dir, packages.first()) {
        (Some(dir), _) => dir.clone(),
        (None, Some(p)) => p.target_dir.clone(),
        (None, None) => return Ok(Vec::new()),
    };
    cargo_build(first, &packages, &target_dir)?;
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir.join("plugins"));
    std::fs::create_dir_all(&out_dir).map_err(|source| BuildError::Io {
        path: out_dir.clone(),
        source,
    })?;
    let toolchain = crate::tools::toolchain_id(crate::Lang::Rust, first, &[]);
    packages
        .iter()
        .zip(&options.plugin_dirs)
        .map(|(p, dir)| {
            let core_path = target_dir
                .join(WASM_TARGET)
                .join("release")
                .join(format!("{}.wasm", p.lib_name));
            let core = read(&core_path)?;
            let (mut component, world) = componentize(&core, options.world)?;
            let digest = crate::source::digest(dir, crate::Lang::Rust, world, &toolchain, &[])?;
            crate::source::stamp(&mut component, &digest);
            let name = p
                .name
                .strip_prefix("syncbase-plugin-")
                .unwrap_or(&p.name)
                .to_string();
            let path = out_dir.join(format!("{name}.wasm"));
            std::fs::write(&path, &component).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(Built {
                name,
                world,
                component: path,
                size: component.len() as u64,
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Reads the package name, its library's name and the target directory.
fn package(dir: &Path) -> Result<Package, BuildError> {
    let manifest = dir.join("Cargo.toml");
    let fail = |detail: String| BuildError::Metadata {
        dir: dir.to_path_buf(),
        detail,
    };
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|source| BuildError::Spawn {
            command: "cargo metadata".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(fail(String::from_utf8_lossy(&output.stderr).into_owned()));
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| fail(e.to_string()))?;
    let manifest = manifest.canonicalize().map_err(|e| fail(e.to_string()))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let package = packages
        .iter()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .and_then(|m| Path::new(m).canonicalize().ok())
                .is_some_and(|m| m == manifest)
        })
        .ok_or_else(|| fail("no package with this manifest".into()))?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let lib_name = package["targets"]
        .as_array()
        .and_then(|targets| {
            targets.iter().find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
        })
        .and_then(|t| t["name"].as_str())
        .map(|n| n.replace('-', "_"))
        .ok_or_else(|| {
            fail(format!(
                "{name} has no cdylib target: add [lib] crate-type = [\"cdylib\", \"rlib\"]"
            ))
        })?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| fail("no target_directory".into()))?;
    Ok(Package {
        name,
        lib_name,
        target_dir,
    })
}

fn cargo_build(dir: &Path, packages: &[Package], target_dir: &Path) -> Result<(), BuildError> {
    let mut command = Command::new(cargo());
    command
        .args(["build", "--release", "--lib", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        command.args(["-p", &p.name]);
    }
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| BuildError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains("may not be installed")
        || stderr.contains("can't find crate for `core`")
    {
        format!(
            ": the {WASM_TARGET} target is missing; run `rustup target add {WASM_TARGET}`\n{stderr}"
        )
    } else {
        format!(":\n{stderr}")
    };
    Err(BuildError::Cargo {
        command: shown,
        hint,
    })
}
