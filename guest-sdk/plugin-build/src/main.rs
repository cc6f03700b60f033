//! `syncbase-plugin-build`: builds plugins into components.
//!
//! ```text
//! syncbase-plugin-build plugins/lww plugins/redact          # Rust -> target/plugins/{lww,redact}.wasm
//! syncbase-plugin-build --lang c plugins/c/field-merge      # -> plugins/c/field-merge/build/field-merge.wasm
//! syncbase-plugin-build c-bindings --world resolver --out include/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use syncbase_plugin_build::{
    BuildError, BuildOptions, Built, ForeignBuild, Lang, World, build_foreign, build_plugins,
    c_bindings,
};

/// Build Syncbase plugins (Rust, C, Python, JavaScript) into WebAssembly
/// components.
#[derive(Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Plugin directories: Rust crates (with a Cargo.toml), or with --lang
    /// c|python|js directories with a plugin.json.
    #[arg(required = true)]
    plugins: Vec<PathBuf>,
    /// Language of the plugins: rust, c, python or js.
    #[arg(long, default_value = "rust", value_parser = parse_lang)]
    lang: Lang,
    /// Directory for the components [default: Rust: <cargo target dir>/plugins;
    /// other languages: <plugin dir>/build].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Cargo target directory (Rust only) [default: the plugin workspace's].
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// World to build (Rust only: resolver, filter, snapshot-policy) [default: detected].
    #[arg(long, value_parser = parse_world)]
    world: Option<World>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write wit-bindgen's C bindings of a world (to read the generated header).
    CBindings {
        #[arg(long, value_parser = parse_world)]
        world: World,
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_world(name: &str) -> Result<World, String> {
    World::from_wit_name(name)
        .ok_or_else(|| format!("unknown world `{name}` (resolver, filter, snapshot-policy)"))
}

fn parse_lang(name: &str) -> Result<Lang, String> {
    Lang::from_name(name).ok_or_else(|| format!("unknown language `{name}` (rust, c, python, js)"))
}

fn build(args: Args) -> Result<Vec<Built>, BuildError> {
    if args.lang == Lang::Rust {
        return build_plugins(&BuildOptions {
            plugin_dirs: args.plugins,
            target_dir: args.target_dir,
            out_dir: args.out_dir,
            world: args.world,
        });
    }
    args.plugins
        .into_iter()
        .map(|dir| {
            build_foreign(&ForeignBuild {
                out_dir: args.out_dir.clone(),
                ..ForeignBuild::new(args.lang, dir)
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let result = match args.command.take() {
        Some(Cmd::CBindings { world, out }) => c_bindings(world).and_then(|files| {
            std::fs::create_dir_all(&out).map_err(|source| BuildError::Io {
                path: out.clone(),
                source,
            })?;
            for (name, bytes) in files {
                let path = out.join(name);
                std::fs::write(&path, bytes).map_err(|source| BuildError::Io {
                    path: path.clone(),
                    source,
                })?;
                println!("{}", path.display());
            }
            Ok(())
        }),
        None => build(args).map(|built| {
            for b in built {
                println!(
                    "{}\t{}\t{} bytes\t{}",
                    b.name,
                    b.world,
                    b.size,
                    b.component.display()
                );
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
