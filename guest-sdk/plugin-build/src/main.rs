//! `syncbase-plugin-build`: builds plugin crates into components.
//!
//! ```text
//! syncbase-plugin-build plugins/lww plugins/redact      # -> target/plugins/{lww,redact}.wasm
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use syncbase_plugin_build::{BuildOptions, World, build_plugins};

/// Build Syncbase plugin crates (Rust) into WebAssembly components.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Plugin crate directories (each with a Cargo.toml).
    #[arg(required = true)]
    plugins: Vec<PathBuf>,
    /// Directory for the components [default: <cargo target dir>/plugins].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Cargo target directory [default: the plugin workspace's].
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// World to build (resolver, filter, snapshot-policy) [default: detected].
    #[arg(long, value_parser = parse_world)]
    world: Option<World>,
}

fn parse_world(name: &str) -> Result<World, String> {
    World::from_wit_name(name)
        .ok_or_else(|| format!("unknown world `{name}` (resolver, filter, snapshot-policy)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = BuildOptions {
        plugin_dirs: args.plugins,
        target_dir: args.target_dir,
        out_dir: args.out_dir,
        world: args.world,
    };
    match build_plugins(&options) {
        Ok(built) => {
            for b in built {
                println!(
                    "{}\t{}\t{} bytes\t{}",
                    b.name,
                    b.world,
                    b.size,
                    b.component.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
