//! The toolchain each language builds with, found where the user keeps it or installed where
//! the user chooses.
//!
//! | language | toolchain | found in | installed by `install` |
//! |---|---|---|---|
//! | Rust | cargo, the `wasm32-unknown-unknown` target | `PATH` (rustup) | `rustup target add` |
//! | C | clang, lld, wasi-libc | `PATH` (Debian packages) | no: needs the system's package manager |
//! | Python | componentize-py | `PATH`, then `<tools>/pip` | `pip install --target <tools>/pip` (PyPI) |
//! | JavaScript | componentize-qjs | `node_modules/.bin` above the project, then `<tools>/js` | `npm install --prefix <tools>/js` (npm) |
//!
//! The tools directory is `--tools`, else `SYNCBASE_TOOLS`, else `$XDG_CACHE_HOME/syncbase/tools`
//! (`~/.cache/syncbase/tools`). Nothing here refers to a Syncbase source checkout: an
//! installed `syncbase` binary builds plugins on its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, Lang};

/// The pinned componentize-py (its output is what the runtime and the conformance suite
/// were checked with).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The pinned componentize-qjs.
pub const COMPONENTIZE_QJS: &str = "componentize-qjs@0.4.5";

/// The default tools directory (see the module docs).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SYNCBASE_TOOLS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("syncbase").join("tools")
}

fn runs(mut command: Command) -> bool {
    command.output().is_ok_and(|o| o.status.success())
}

/// componentize-py: on `PATH`, or `pip install --target`ed into `<dir>/pip` of one of `dirs`.
pub fn componentize_py(dirs: &[PathBuf]) -> Option<Command> {
    let mut on_path = Command::new("componentize-py");
    on_path.arg("--version");
    if runs(on_path) {
        return Some(Command::new("componentize-py"));
    }
    dirs.iter()
        .map(|d| d.join("pip"))
        .find(|pip| pip.join("componentize_py").is_dir())
        .map(|pip| {
            let path = match std::env::var_os("PYTHONPATH") {
                Some(p) if !p.is_empty() => {
                    let mut all = pip.into_os_string();
                    all.push(":");
                    all.push(p);
                    all
                }
                _ => pip.into_os_string(),
            };
            let mut command = Command::new("python3");
            command.env("PYTHONPATH", path).args([
                "-c",
                "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; script()",
            ]);
            command
        })
}

/// componentize-qjs: in a `node_modules/.bin` at or above `project`, or in `<dir>/js` or
/// `<dir>` of one of `dirs`, or on `PATH`.
pub fn componentize_qjs(project: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
    let bin = Path::new("node_modules/.bin/componentize-qjs");
    let abs = std::path::absolute(project).unwrap_or_else(|_| project.to_path_buf());
    let found = abs
        .ancestors()
        .map(Path::to_path_buf)
        .chain(dirs.iter().flat_map(|d| [d.join("js"), d.clone()]))
        .map(|d| d.join(bin))
        .find(|p| p.is_file());
    if found.is_some() {
        return found;
    }
    let mut on_path = Command::new("componentize-qjs");
    on_path.arg("--version");
    runs(on_path).then(|| PathBuf::from("componentize-qjs"))
}

/// What `install` would do for `lang` in `dir`, and roughly what it costs, for people.
pub fn install_plan(lang: Lang, dir: &Path) -> String {
    match lang {
        Lang::Python => format!(
            "installs {COMPONENTIZE_PY} from PyPI into {} (about 40 MB, once; needs python3 \
             with pip). A first build then takes about a minute, later ones 10-20 s",
            dir.join("pip").display()
        ),
        Lang::Js => format!(
            "installs {COMPONENTIZE_QJS} from npm into {} (about 40 MB, once; needs node >= 20 \
             and npm). A build then takes a few seconds",
            dir.join("js").display()
        ),
        Lang::Rust => "adds the wasm32-unknown-unknown target with rustup (once). A first build \
                       then compiles the SDK's dependencies (about a minute), later ones take \
                       seconds"
            .into(),
        Lang::C => "cannot install clang, lld and wasi-libc: they come from the system's package \
                    manager (Debian/Ubuntu: apt-get install clang lld wasi-libc \
                    libclang-rt-dev-wasm32)"
            .into(),
    }
}

/// Installs the toolchain of `lang` into `dir` (see the module docs). Returns what it did.
pub fn install(lang: Lang, dir: &Path) -> Result<String, BuildError> {
    let run = |mut command: Command, tool: &str| -> Result<(), BuildError> {
        let shown = format!("{command:?}");
        let output = command.output().map_err(|source| BuildError::Spawn {
            command: shown.clone(),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        Err(BuildError::Tool {
            command: format!("{shown} (installing {tool})"),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    };
    let mkdir = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    match lang {
        Lang::Python => {
            let pip = dir.join("pip");
            mkdir(&pip)?;
            let mut command = Command::new("python3");
            command
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("--target")
                .arg(&pip)
                .arg(COMPONENTIZE_PY);
            run(command, COMPONENTIZE_PY)?;
            Ok(format!(
                "installed {COMPONENTIZE_PY} into {}",
                pip.display()
            ))
        }
        Lang::Js => {
            let js = dir.join("js");
            mkdir(&js)?;
            let mut command = Command::new("npm");
            command
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&js)
                .arg(COMPONENTIZE_QJS);
            run(command, COMPONENTIZE_QJS)?;
            Ok(format!(
                "installed {COMPONENTIZE_QJS} into {}",
                js.display()
            ))
        }
        Lang::Rust => {
            let mut command = Command::new("rustup");
            command.args(["target", "add", "wasm32-unknown-unknown"]);
            run(command, "the wasm32-unknown-unknown target")?;
            Ok("added the wasm32-unknown-unknown target".into())
        }
        Lang::C => Err(BuildError::MissingTool {
            tool: "clang with lld and wasi-libc".into(),
            install: "apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32".into(),
        }),
    }
}

/// Whether the toolchain of `lang` is here (for Rust and C: whether their compilers run).
pub fn available(lang: Lang, project: &Path, dirs: &[PathBuf]) -> bool {
    match lang {
        Lang::Python => componentize_py(dirs).is_some(),
        Lang::Js => componentize_qjs(project, dirs).is_some(),
        Lang::Rust => {
            let mut c = Command::new("rustup");
            c.args(["target", "list", "--installed"]);
            match c.output() {
                Ok(o) if o.status.success() => {
                    String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown")
                }
                // No rustup: a toolchain installed otherwise may still have the target.
                _ => {
                    let mut cargo = Command::new("cargo");
                    cargo.arg("--version");
                    runs(cargo)
                }
            }
        }
        Lang::C => {
            let mut clang =
                Command::new(std::env::var("CC_WASM").unwrap_or_else(|_| "clang".into()));
            clang.arg("--version");
            runs(clang)
        }
    }
}

/// A short identification of the toolchain that builds `lang` (its version line), which
/// goes into the build's source digest: another toolchain version is another build.
pub fn toolchain_id(lang: Lang, project: &Path, dirs: &[PathBuf]) -> String {
    let first_line = |command: Option<Command>| {
        command
            .and_then(|mut c| c.arg("--version").output().ok())
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    match lang {
        Lang::Python => first_line(componentize_py(dirs)),
        Lang::Js => first_line(componentize_qjs(project, dirs).map(Command::new)),
        Lang::Rust => first_line(Some(Command::new("rustc"))),
        Lang::C => first_line(Some(Command::new(
            std::env::var("CC_WASM").unwrap_or_else(|_| "clang".into()),
        ))),
    }
}
