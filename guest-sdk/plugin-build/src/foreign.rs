//! Builds plugins written in C, Python and JavaScript into components.
//!
//! A plugin directory holds `plugin.json` (`{"name": "field-merge", "world":
//! "resolver"}`) and its source: `*.c` for C, `plugin.py` (plus any other
//! modules) for Python, `plugin.js` for JavaScript. Each language's toolchain
//! comes from its registry (Debian's clang/lld/wasi-libc, PyPI's
//! componentize-py, npm's componentize-qjs); this module only drives it, with
//! the WIT package and the language's small Syncbase helper library (canonical
//! JSON, last-writer-wins, field merging — `plugins/<lang>/sdk/`) written into
//! a work directory, so a plugin directory anywhere builds the same way.
//!
//! Every build is import-free: C links no WASI function, and Python and
//! JavaScript are built with their toolchain's WASI stub flag.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{BuildError, Built, C_SDK, JS_SDK, Lang, PY_SDK, WIT_FILES, World, componentize};

/// The module componentize-py builds: the plugin's `WitWorld` with its exports
/// turning uncaught exceptions into errors with tracebacks.
const PY_ENTRY: &str = include_str!("entry/entry.py");
/// The same for JavaScript.
const JS_ENTRY: &str = include_str!("entry/entry.js");

/// The exports of `world` (each world also exports `configure`).
fn world_exports(world: World) -> [&'static str; 2] {
    ["configure", world.entry_point()]
}

/// The Python entry module for `world`.
fn python_entry(world: World) -> String {
    let names: Vec<String> = world_exports(world)
        .iter()
        .map(|n| format!("{n:?}"))
        .collect();
    PY_ENTRY.replace("{{exports}}", &format!("({},)", names.join(", ")))
}

/// The JavaScript entry module for `world`: one guarded function per export.
fn js_entry(world: World) -> String {
    let params = match world {
        World::Resolver => "current, incoming",
        World::Filter => "direction, change",
        World::SnapshotPolicy => "stats",
    };
    let exports = r#"export function configure(config) {
  try {
    if (plugin.configure) plugin.configure(config);
  } catch (e) {
    throw message(e);
  }
}

export function ENTRY(PARAMS) {
  try {
    return plugin.ENTRY(PARAMS);
  } catch (e) {
    throw message(e);
  }
}
"#
    .replace("ENTRY", world.entry_point())
    .replace("PARAMS", params);
    JS_ENTRY.replace("{{exports}}", &exports)
}

/// How to install each toolchain, as the error for a missing one says it.
pub const C_INSTALL: &str =
    "apt-get update && apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32";
pub const PYTHON_INSTALL: &str = "syncbase plugin build --install-tools (it installs \
     componentize-py==0.25.1 from PyPI into the tools directory, --tools DIR, default \
     ~/.cache/syncbase/tools), or python3 -m pip install componentize-py==0.25.1";
pub const JS_INSTALL: &str = "syncbase plugin build --install-tools (it installs \
     componentize-qjs@0.4.5 from npm into the tools directory, --tools DIR, default \
     ~/.cache/syncbase/tools), or npm install componentize-qjs@0.4.5 beside the plugin";

/// One C, Python or JavaScript plugin to build.
#[derive(Debug, Clone)]
pub struct ForeignBuild {
    pub lang: Lang,
    /// The plugin directory (with `plugin.json`).
    pub dir: PathBuf,
    /// Where the component goes as `<name>.wasm`; defaults to `<dir>/build`.
    pub out_dir: Option<PathBuf>,
    /// Build Python and JavaScript with their WASI stub flag. Always on,
    /// except to show what the runtime says about a component without it.
    pub stub_wasi: bool,
    /// Tools directories to look for componentize-py and componentize-qjs in (see
    /// `tools.rs`), after `PATH` (and, for JavaScript, `node_modules` above the plugin).
    pub tools: Vec<PathBuf>,
}

impl ForeignBuild {
    /// A build that also finds the toolchains where this repository's `.ci/run` installs
    /// them (`target/tools/pip`, `plugins/js/node_modules`): for the repository's own
    /// scripts and tests. The `syncbase` CLI sets `tools` to the user's directory instead.
    pub fn new(lang: Lang, dir: impl Into<PathBuf>) -> ForeignBuild {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        ForeignBuild {
            lang,
            dir: dir.into(),
            out_dir: None,
            stub_wasi: true,
            tools: vec![repo.join("target/tools"), repo.join("plugins/js")],
        }
    }
}

/// A plugin directory's `plugin.json`.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub world: World,
}

/// Reads `<dir>/plugin.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BuildError> {
    let path = dir.join("plugin.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io {
        path: path.clone(),
        source,
    })?;
    let bad = |detail: String| BuildError::Manifest {
        path: path.clone(),
        detail,
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let name = json["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("needs a \"name\"".into()))?
        .to_string();
    let world = json["world"]
        .as_str()
        .and_then(World::from_wit_name)
        .ok_or_else(|| bad("needs a \"world\": resolver, filter or snapshot-policy".into()))?;
    Ok(Manifest { name, world })
}

/// Builds one C, Python or JavaScript plugin into `<out dir>/<name>.wasm`.
pub fn build_foreign(build: &ForeignBuild) -> Result<Built, BuildError> {
    let manifest = read_manifest(&build.dir)?;
    let out_dir = build
        .out_dir
        .clone()
        .unwrap_or_else(|| build.dir.join("build"));
    let work = out_dir.join(format!("{}.{}-work", manifest.name, build.lang));
    let _ = std::fs::remove_dir_all(&work);
    mkdir(&work)?;
    let wit = work.join("wit");
    mkdir(&wit)?;
    for (name, text) in WIT_FILES.iter().filter(|(n, _)| n.ends_with(".wit")) {
        write(&wit.join(name), text.as_bytes())?;
    }
    let out = out_dir.join(format!("{}.wasm", manifest.name));
    let _ = std::fs::remove_file(&out);
    match build.lang {
        Lang::C => build_c(&build.dir, &work, manifest.world, &out)?,
        Lang::Python => build_python(build, &work, &wit, manifest.world, &out)?,
        Lang::Js => build_js(build, &work, &wit, manifest.world, &out)?,
        Lang::Rust => return Err(BuildError::WrongLang(build.dir.clone())),
    }
    let sdk: &[(&str, &str)] = match build.lang {
        Lang::C => &C_SDK,
        Lang::Python => &[PY_SDK],
        _ => &[JS_SDK],
    };
    let toolchain = crate::tools::toolchain_id(build.lang, &build.dir, &build.tools);
    let digest = crate::source::digest(&build.dir, build.lang, manifest.world, &toolchain, sdk)?;
    let mut component = std::fs::read(&out).map_err(|source| BuildError::Io {
        path: out.clone(),
        source,
    })?;
    crate::source::stamp(&mut component, &digest);
    write(&out, &component)?;
    let size = std::fs::metadata(&out)
        .map_err(|source| BuildError::Io {
            path: out.clone(),
            source,
        })?
        .len();
    Ok(Built {
        name: manifest.name,
        world: manifest.world,
        component: out,
        size,
    })
}

fn mkdir(path: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(path).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    std::fs::write(path, bytes).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs a toolchain command; a missing program is reported with how to install it.
fn run(mut command: Command, tool: &str, install: &str) -> Result<(), BuildError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BuildError::MissingTool {
                tool: tool.to_string(),
                install: install.to_string(),
            }
        } else {
            BuildError::Spawn {
                command: shown.clone(),
                source,
            }
        }
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let missing = [
        "No module named 'componentize_py'",
        "wasm-ld: not found",
        "unable to execute command",
        "'stdlib.h' file not found",
        "'string.h' file not found",
        "cannot find -lc",
        "libclang_rt.builtins-wasm32.a",
        "unable to find library -lc",
    ];
    if missing.iter().any(|m| stderr.contains(m)) {
        return Err(BuildError::MissingTool {
            tool: format!("{tool} ({})", stderr.lines().last().unwrap_or_default()),
            install: install.to_string(),
        });
    }
    Err(BuildError::Tool {
        command: shown,
        output: format!("{stdout}{stderr}"),
    })
}

/// C: wit-bindgen's C bindings (generated here) and the helper library,
/// compiled with clang against wasi-libc into a core module, then made a
/// component by [`componentize`].
fn build_c(dir: &Path, work: &Path, world: World, out: &Path) -> Result<(), BuildError> {
    let gen_dir = work.join("include");
    mkdir(&gen_dir)?;
    for (name, bytes) in c_bindings(world)? {
        write(&gen_dir.join(name), &bytes)?;
    }
    for (name, text) in C_SDK {
        write(&gen_dir.join(name), text.as_bytes())?;
    }
    // The bindings reference a symbol of the component-type object file
    // wit-bindgen would write; the world is embedded by `componentize`
    // instead, so define the symbol.
    let world_c = c_world_name(world);
    let link = gen_dir.join("force_link.c");
    write(
        &link,
        format!("void __component_type_object_force_link_{world_c}(void) {{}}\n").as_bytes(),
    )?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| BuildError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        return Err(BuildError::Manifest {
            path: dir.join("plugin.json"),
            detail: "no .c files beside it".into(),
        });
    }
    let core = work.join("core.wasm");
    let mut command = Command::new(std::env::var("CC_WASM").unwrap_or_else(|_| "clang".into()));
    command
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-std=c11",
            "-Wall",
            "-Werror",
            "-Wno-unused-parameter",
            "-fuse-ld=lld",
            // A library, not a program: no `_start`, no crt1 (which would
            // pull in WASI's args and environment).
            "-nostartfiles",
            "-Wl,--no-entry",
            "-Wl,--strip-debug",
        ])
        .arg("-I")
        .arg(&gen_dir)
        .args(&sources)
        .arg(gen_dir.join(format!("{world_c}.c")))
        .arg(gen_dir.join("syncbase.c"))
        .arg(gen_dir.join("nowasi.c"))
        .arg(&link)
        .arg("-o")
        .arg(&core);
    run(command, "clang (with lld and wasi-libc)", C_INSTALL)?;
    let core_bytes = std::fs::read(&core).map_err(|source| BuildError::Io {
        path: core.clone(),
        source,
    })?;
    let (component, _) = componentize(&core_bytes, Some(world))?;
    write(out, &component)
}

/// The C identifier prefix wit-bindgen uses for a world.
fn c_world_name(world: World) -> String {
    world.wit_name().replace('-', "_")
}

/// Generates wit-bindgen's C bindings of one world: `<world>.h` and `<world>.c`.
pub fn c_bindings(world: World) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
    use wit_bindgen_core::wit_parser::{Resolve, SourceMap};
    let mut map = SourceMap::new();
    for (name, text) in WIT_FILES.iter().filter(|(n, _)| n.ends_with(".wit")) {
        map.push_str(name, *text);
    }
    let group = map
        .parse()
        .map_err(|(_, e)| BuildError::Wit(format!("{e}")))?;
    let mut resolve = Resolve::new();
    let package = resolve
        .push_group(group)
        .map_err(|e| BuildError::Wit(format!("{e}")))?;
    let world_id = resolve
        .select_world(&[package], Some(world.wit_name()))
        .map_err(|e| BuildError::Wit(format!("{e:#}")))?;
    let opts = wit_bindgen_c::Opts {
        no_object_file: true,
        ..Default::default()
    };
    let mut files = wit_bindgen_core::Files::default();
    opts.build()
        .generate(&mut resolve, world_id, &mut files)
        .map_err(|e| BuildError::Wit(format!("C bindings: {e:#}")))?;
    Ok(files
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect())
}

/// Python: componentize-py with `--stub-wasi`; the plugin is `plugin.py`.
fn build_python(
    build: &ForeignBuild,
    work: &Path,
    wit: &Path,
    world: World,
    out: &Path,
) -> Result<(), BuildError> {
    let sdk = work.join("sdk");
    mkdir(&sdk)?;
    write(&sdk.join(PY_SDK.0), PY_SDK.1.as_bytes())?;
    write(
        &sdk.join("_syncbase_entry.py"),
        python_entry(world).as_bytes(),
    )?;
    let mut command =
        crate::tools::componentize_py(&build.tools).ok_or_else(|| BuildError::MissingTool {
            tool: "componentize-py".into(),
            install: PYTHON_INSTALL.into(),
        })?;
    command
        .arg("-d")
        .arg(wit)
        .args(["-w", world.wit_name(), "componentize", "_syncbase_entry"])
        .arg("-p")
        .arg(&build.dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(out);
    if build.stub_wasi {
        command.arg("--stub-wasi");
    }
    // Keep the plugin directory free of __pycache__.
    command.env("PYTHONDONTWRITEBYTECODE", "1");
    run(command, "componentize-py", PYTHON_INSTALL)
}

/// JavaScript: jco's QuickJS path (`componentize-qjs`) with `--stub-wasi` and
/// the synchronous runtime; the plugin is `plugin.js`, which may import
/// `./syncbase.js`.
fn build_js(
    build: &ForeignBuild,
    work: &Path,
    wit: &Path,
    world: World,
    out: &Path,
) -> Result<(), BuildError> {
    let src = work.join("js");
    mkdir(&src)?;
    let entry = build.dir.join("plugin.js");
    let text = std::fs::read(&entry).map_err(|source| BuildError::Io {
        path: entry.clone(),
        source,
    })?;
    write(&src.join("plugin.js"), &text)?;
    write(&src.join(JS_SDK.0), JS_SDK.1.as_bytes())?;
    write(&src.join("_syncbase_entry.js"), js_entry(world).as_bytes())?;
    let qjs = crate::tools::componentize_qjs(&build.dir, &build.tools).ok_or_else(|| {
        BuildError::MissingTool {
            tool: "componentize-qjs".into(),
            install: JS_INSTALL.into(),
        }
    })?;
    let mut command = Command::new(qjs);
    command
        .arg("--wit")
        .arg(wit)
        .args(["--world", world.wit_name(), "--sync"])
        .arg("--js")
        .arg(src.join("_syncbase_entry.js"))
        .arg("--module-root")
        .arg(&src)
        .arg("--output")
        .arg(out);
    if build.stub_wasi {
        command.arg("--stub-wasi");
    }
    run(command, "componentize-qjs", JS_INSTALL)
}
