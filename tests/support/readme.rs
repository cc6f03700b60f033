//! Runs the commands of a Markdown document as written: its ```sh blocks, by `sh -e`, with the
//! `syncbase` binary under test first on `PATH`.

use std::path::Path;
use std::process::Command;

/// The ```sh blocks of a Markdown text, in order, each as the text between its fences.
pub fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs `script` with `sh -e -x` in `dir` as a reader would: `syncbase` on `PATH` and cargo's
/// defaults (no inherited `CARGO_TARGET_DIR`, so a project builds into its own `target/`),
/// then `env`. Panics with both outputs unless it succeeds; returns stdout.
pub fn run_sh(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_syncbase"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let out = Command::new("sh")
        .args(["-e", "-x", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("SYNCBASE_LOG", "warn")
        .env_remove("CARGO_TARGET_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "these commands failed in {}:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
