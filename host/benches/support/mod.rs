//! The harness the PocketBase-against-Syncbase benches share: a server process in a temp dir,
//! its health wait and superuser token, and a raw keep-alive HTTP/1.1 connection.
//!
//! Each bench is its own crate and uses only part of this, hence `dead_code` is allowed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

pub const SUPERUSER_EMAIL: &str = "bench@example.com";
pub const SUPERUSER_PASSWORD: &str = "bench-password-123";
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Servers

/// A running server process in a temp dir; killed when dropped.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Creates the bench superuser in a fresh temp dir (named `{dir_prefix}...`), starts `bin
    /// serve` there on a free 127.0.0.1 port and returns once `/api/health` answers 200.
    pub async fn start(bin: &Path, dir_prefix: &str) -> Result<Self> {
        Server::start_with(bin, dir_prefix, &[]).await
    }

    /// Like `start`, with extra `serve` flags.
    pub async fn start_with(bin: &Path, dir_prefix: &str, flags: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(dir_prefix).tempdir()?;
        let data = dir.path().join("data");
        let status = tokio::process::Command::new(bin)
            .args([
                "superuser",
                "upsert",
                SUPERUSER_EMAIL,
                SUPERUSER_PASSWORD,
                "--dir",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", bin.display()))?;
        ensure!(status.success(), "superuser upsert failed: {status}");

        // Both servers get a port picked here: PocketBase echoes ":0" instead of the bound port.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let stderr_path = dir.path().join("stderr.log");
        let mut child = Command::new(bin)
            .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(&data)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Self {
            child,
            pid,
            addr,
            _dir: dir,
        };

        // A thread drains stdout for the server's whole life so a chatty server never blocks on
        // a full pipe; it reports the start line and ends when the process closes stdout.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Server started at") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = tokio::time::timeout(STARTUP_DEADLINE, rx.recv())
            .await
            .ok()
            .flatten();
        let Some(line) = line else {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            bail!(
                "no \"Server started at\" line from {}; stderr:\n{log}",
                bin.display()
            );
        };
        // Normally the port asked for; a server that reports another (non-zero) one is taken
        // at its word.
        let reported = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse::<u16>().ok());
        if let Some(p) = reported.filter(|&p| p != 0) {
            server.addr.set_port(p);
        }
        wait_healthy(server.addr).await?;
        Ok(server)
    }

    /// Peak resident set size so far, from `/proc/PID/status`.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .context("no VmHWM in /proc/PID/status")?;
        let kib = line.split_whitespace().nth(1).context("malformed VmHWM")?;
        Ok(kib.parse()?)
    }

    /// Resident set size now, from `/proc/PID/status`.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS in /proc/PID/status")?;
        let kib = line.split_whitespace().nth(1).context("malformed VmRSS")?;
        Ok(kib.parse()?)
    }

    /// SIGTERM, then SIGKILL (in `drop`) if it has not exited within the deadline.
    pub async fn stop(mut self) {
        let pid = self.pid.to_string();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // polling an exit
        }
        eprintln!("   pid {pid} ignored SIGTERM for {SHUTDOWN_DEADLINE:?}; killing");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Polls `GET /api/health` until it answers 200, for at most `STARTUP_DEADLINE`.
pub async fn wait_healthy(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        let status = match Conn::connect(addr).await {
            Ok(mut conn) => conn
                .send(Method::GET, "/api/health", None, None)
                .await
                .ok()
                .map(|r| r.0),
            Err(_) => None,
        };
        match status {
            Some(StatusCode::OK) => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("http://{addr}/api/health not healthy within {STARTUP_DEADLINE:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await, // poll interval
        }
    }
}

/// Signs in as the superuser `Server::start` created and returns the auth token.
pub async fn superuser_token(addr: SocketAddr) -> Result<String> {
    let mut conn = Conn::connect(addr).await?;
    let body = json!({"identity": SUPERUSER_EMAIL, "password": SUPERUSER_PASSWORD});
    let path = "/api/collections/_superusers/auth-with-password";
    let auth = conn.json(Method::POST, path, None, Some(body)).await?;
    auth["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in auth response")
}

// ---------------------------------------------------------------------------------------------
// Client

/// One keep-alive HTTP/1.1 connection. Raw hyper, so the client costs as little CPU as possible
/// on a machine it shares with the server under test.
pub struct Conn {
    host: String,
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task is owned by this Conn and aborted when it is dropped.
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            host: addr.to_string(),
            sender,
            driver,
        })
    }

    /// Sends one request (`body`, if any, as JSON; `token`, if any, as `authorization`) and
    /// returns the status and the whole answer, whatever the status.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Some(token) = token {
            req = req.header("authorization", token);
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let res = self.sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends JSON (an empty body if `None`, still labelled JSON), expects 200, and parses the
    /// JSON answer.
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let (status, bytes) = self.send(method.clone(), path, token, Some(body)).await?;
        ensure!(
            status == StatusCode::OK,
            "{method} {path} -> {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(serde_json::from_slice(&bytes)?)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// User plus system CPU seconds process `pid` has used (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("no utime")?.parse::<f64>()?
        + fields.get(12).context("no stime")?.parse::<f64>()?;
    // USER_HZ is 100 on every Linux configuration this runs on.
    Ok(ticks / 100.0)
}
