//! Supervision of an embedded `nats-server` child process.
//!
//! This module owns the NATS *process*: finding the binary, writing its config under
//! `<dir>/nats/`, starting it, waiting until it accepts client connections, restarting it
//! with backoff when it dies, and stopping it (SIGTERM, then SIGKILL after a timeout). It
//! never speaks JetStream: `replication/` connects to [`EmbeddedNats::client_url`] like it
//! would to any external cluster, so both modes share one code path above this line.
//!
//! A clustered server's JetStream needs a quorum of the peers it knows about: the first node
//! of a cluster serves clients at once, but streams become available once a peer has joined.

pub mod binary;
mod config;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use binary::{INSTALL_HINT, MIN_VERSION, parse_version};
pub use config::{ClusterOptions, EmbeddedOptions};

/// A server that stayed up this long has its restart backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("no nats-server binary found ({looked}); {hint}", hint = INSTALL_HINT)]
    NotFound { looked: String },
    #[error("could not read the version of {binary}: {output:?}")]
    Version { binary: PathBuf, output: String },
    #[error(
        "{binary} is nats-server {found}, but Syncbase needs {}.{} or newer; {hint}",
        MIN_VERSION.0, MIN_VERSION.1, hint = INSTALL_HINT
    )]
    TooOld { binary: PathBuf, found: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("nats-server exited during startup ({status}); log tail:\n{log_tail}")]
    Exited {
        status: ExitStatus,
        log_tail: String,
    },
    #[error(
        "nats-server did not accept connections on {addr} within {timeout:?}; log tail:\n{log_tail}"
    )]
    StartTimeout {
        addr: SocketAddr,
        timeout: Duration,
        log_tail: String,
    },
    #[error("the nats-server supervisor task failed: {0}")]
    Supervisor(String),
}

/// A running, supervised `nats-server` child. Dropping it stops the child too (gracefully,
/// in the background); call [`EmbeddedNats::stop`] to wait for that.
pub struct EmbeddedNats {
    opts: Arc<EmbeddedOptions>,
    pid: Arc<AtomicU32>,
    restarts: watch::Receiver<u64>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), NatsError>>>,
}

impl EmbeddedNats {
    /// Finds and checks the binary, writes the config, starts the server and returns once it
    /// accepts client connections.
    pub async fn start(opts: EmbeddedOptions) -> Result<EmbeddedNats, NatsError> {
        let binary = binary::find(opts.binary.as_deref())?;
        binary::check_version(&binary).await?;
        let nats_dir = opts.nats_dir();
        let store_dir = opts.store_dir();
        for dir in [&nats_dir, &store_dir] {
            std::fs::create_dir_all(dir).map_err(|source| NatsError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let config_path = opts.config_path();
        std::fs::write(&config_path, config::render(&opts)).map_err(|source| NatsError::Io {
            context: format!("writing {}", config_path.display()),
            source,
        })?;
        stop_leftover(&opts).await;
        let opts = Arc::new(opts);
        let child = spawn_ready(&binary, &opts).await?;
        let pid = Arc::new(AtomicU32::new(child.id().unwrap_or(0)));
        let (restarts_tx, restarts) = watch::channel(0);
        let (stop_tx, stop_rx) = oneshot::channel();
        tracing::info!(node = %opts.node_id, url = %client_url(&opts), pid = pid.load(Ordering::Relaxed), "nats-server started");
        let task = tokio::spawn(supervise(
            child,
            binary,
            opts.clone(),
            pid.clone(),
            restarts_tx,
            stop_rx,
        ));
        Ok(EmbeddedNats {
            opts,
            pid,
            restarts,
            stop_tx: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The URL clients connect to (`nats://host:port`; an unspecified listen address becomes
    /// loopback).
    pub fn client_url(&self) -> String {
        client_url(&self.opts)
    }

    /// How many times the child was restarted after dying unexpectedly.
    pub fn restarts(&self) -> u64 {
        *self.restarts.borrow()
    }

    /// Changes whenever a restart completes: lets callers wait for one without polling.
    pub fn watch_restarts(&self) -> watch::Receiver<u64> {
        self.restarts.clone()
    }

    /// The current child's pid, `None` while it is down between restarts.
    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub fn options(&self) -> &EmbeddedOptions {
        &self.opts
    }

    pub fn log_path(&self) -> PathBuf {
        self.opts.log_path()
    }

    /// Stops the child gracefully (SIGTERM, SIGKILL after `stop_timeout`) and waits for it.
    pub async fn stop(mut self) -> Result<(), NatsError> {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| NatsError::Supervisor(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        // Dropping the sender wakes the supervisor, which stops the child gracefully; if the
        // runtime is gone too, `kill_on_drop` still reaps it.
        self.stop_tx.take();
    }
}

fn client_url(opts: &EmbeddedOptions) -> String {
    let mut addr = opts.client_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("nats://{addr}")
}

/// Owns the child: restarts it when it dies, stops it when asked.
async fn supervise(
    mut child: Child,
    binary: PathBuf,
    opts: Arc<EmbeddedOptions>,
    pid: Arc<AtomicU32>,
    restarts: watch::Sender<u64>,
    mut stop_rx: oneshot::Receiver<()>,
) -> Result<(), NatsError> {
    let mut backoff = opts.restart_backoff;
    let mut started = Instant::now();
    loop {
        tokio::select! {
            // A sent stop and a dropped handle both mean "stop".
            _ = &mut stop_rx => {
                let result = terminate(&mut child, opts.stop_timeout).await;
                pid.store(0, Ordering::Relaxed);
                return result;
            }
            status = child.wait() => {
                pid.store(0, Ordering::Relaxed);
                let status = status.map_err(|e| e.to_string());
                tracing::warn!(node = %opts.node_id, status = ?status, "nats-server exited unexpectedly; restarting");
                if started.elapsed() >= STABLE_AFTER {
                    backoff = opts.restart_backoff;
                }
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(opts.max_restart_backoff);
                    let attempt = tokio::select! {
                        _ = &mut stop_rx => return Ok(()),
                        r = spawn_ready(&binary, &opts) => r,
                    };
                    match attempt {
                        Ok(new_child) => {
                            child = new_child;
                            pid.store(child.id().unwrap_or(0), Ordering::Relaxed);
                            started = Instant::now();
                            restarts.send_modify(|n| *n += 1);
                            tracing::warn!(node = %opts.node_id, restarts = *restarts.borrow(), "nats-server restarted");
                            break;
                        }
                        Err(e) => tracing::warn!(node = %opts.node_id, error = %e, "nats-server restart failed"),
                    }
                }
            }
        }
    }
}

/// A node killed with SIGKILL cannot stop its child: the server keeps running, holding the
/// ports and the JetStream store. At the next start, a live process whose pid is in our pid
/// file and whose command line names our config file is that server: stop it first.
async fn stop_leftover(opts: &EmbeddedOptions) {
    let Ok(text) = std::fs::read_to_string(opts.pid_path()) else {
        return;
    };
    let Ok(raw) = text.trim().parse::<i32>() else {
        return;
    };
    let config = opts.config_path().to_string_lossy().into_owned();
    let ours = std::fs::read(format!("/proc/{raw}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&config))
        .unwrap_or(false);
    let Some(pid) = rustix::process::Pid::from_raw(raw).filter(|_| ours) else {
        return;
    };
    tracing::warn!(
        pid = raw,
        "stopping a nats-server left running by a previous run of this node"
    );
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + opts.stop_timeout;
    while std::path::Path::new(&format!("/proc/{raw}")).exists() {
        if Instant::now() >= deadline {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            break;
        }
        // Poll interval of the deadline-bounded wait for a process we did not spawn.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, then SIGKILL if the child has not exited within `timeout`.
async fn terminate(child: &mut Child, timeout: Duration) -> Result<(), NatsError> {
    if let Some(raw) = child.id()
        && let Some(pid) = rustix::process::Pid::from_raw(raw as i32)
    {
        // The child may already be gone (ESRCH): then `wait` below returns at once.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(NatsError::Io {
            context: "waiting for nats-server to exit".into(),
            source,
        }),
        Err(_) => {
            tracing::warn!(?timeout, "nats-server ignored SIGTERM; killing it");
            child.kill().await.map_err(|source| NatsError::Io {
                context: "killing nats-server".into(),
                source,
            })
        }
    }
}

/// Starts the child and waits until its client port answers with this server's INFO.
async fn spawn_ready(binary: &Path, opts: &EmbeddedOptions) -> Result<Child, NatsError> {
    let log_path = opts.log_path();
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| NatsError::Io {
                context: format!("opening {}", log_path.display()),
                source,
            })
    };
    let (stdout, stderr) = (open_log()?, open_log()?);
    let mut command = match &opts.exec_wrapper {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.args([
                "nats-exec",
                "--parent",
                &std::process::id().to_string(),
                "--",
            ])
            .arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let mut child = command
        .arg("-c")
        .arg(opts.config_path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NatsError::Io {
            context: format!("starting {}", binary.display()),
            source,
        })?;
    let deadline = Instant::now() + opts.start_timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|source| NatsError::Io {
            context: "checking on nats-server".into(),
            source,
        })? {
            return Err(NatsError::Exited {
                status,
                log_tail: log_tail(&log_path),
            });
        }
        if answers_as(opts.client_listen, &opts.node_id).await {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(NatsError::StartTimeout {
                addr: opts.client_listen,
                timeout: opts.start_timeout,
                log_tail: log_tail(&log_path),
            });
        }
        // A short poll interval against a deadline, not a guess at how long startup takes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `syncbase nats-exec --parent PID -- PROGRAM ARGS...`: asks the kernel to send this process
/// SIGTERM when its parent dies (`PR_SET_PDEATHSIG`, kept across `exec`), then becomes
/// `PROGRAM`. The node starts its `nats-server` this way, so the child stops with the node even
/// when the node is killed with -9 and cannot stop it itself. Returns only on failure.
pub fn exec_with_parent_death(parent: u32, program: &[std::ffi::OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let Some((bin, args)) = program.split_first() else {
        return std::io::Error::other("nats-exec: no program given");
    };
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
    {
        return std::io::Error::other(format!("nats-exec: PR_SET_PDEATHSIG failed: {e}"));
    }
    // The parent may have died before the signal was armed: then nobody would stop us.
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if ppid != parent {
        return std::io::Error::other(format!(
            "nats-exec: parent {parent} is gone (now {ppid}); not starting {}",
            std::path::Path::new(bin).display()
        ));
    }
    std::process::Command::new(bin).args(args).exec()
}

/// Whether the server on `addr` greets with an INFO naming `server_name`: a port held by some
/// other process must not pass for ours.
async fn answers_as(addr: SocketAddr, server_name: &str) -> bool {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        let info: serde_json::Value = serde_json::from_str(line.strip_prefix("INFO ")?).ok()?;
        Some(info.get("server_name")?.as_str()? == server_name)
    };
    tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The last lines of the log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
