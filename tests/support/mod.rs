//! Test harness: starts the real `syncbase` binary on a free port in a temp dir, with a
//! superuser, and drives it over HTTP. Every test reads like the scenario it checks.
#![allow(dead_code)]

pub mod smtp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "password123";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_syncbase")
}

/// A running node: the real binary, its data dir, and a superuser token.
pub struct Node {
    pub url: String,
    pub token: String,
    pub client: reqwest::Client,
    child: Option<Child>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a fresh node with a superuser.
    pub async fn start() -> Node {
        Node::start_with(&[]).await
    }

    /// Starts a fresh node with extra `serve` flags.
    pub async fn start_with(flags: &[&str]) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        upsert_superuser(&dir, EMAIL, PASSWORD);
        let mut node = Node::spawn(&dir, flags).await;
        node._tmp = Some(tmp);
        node
    }

    /// Starts a fresh node with extra `serve` flags whose log (info level, no colours) goes
    /// to a file, read back with [`Node::log`].
    pub async fn start_logged(flags: &[&str]) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        upsert_superuser(&dir, EMAIL, PASSWORD);
        let log = std::fs::File::create(dir.join("node.log")).expect("log file");
        let mut node =
            Node::spawn_command(Command::new(bin()), &dir, flags, Stdio::from(log), "info").await;
        node._tmp = Some(tmp);
        node
    }

    /// What a node started with [`Node::start_logged`] logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Starts a node on an existing data directory.
    pub async fn spawn(dir: &Path, flags: &[&str]) -> Node {
        Node::spawn_command(Command::new(bin()), dir, flags, Stdio::inherit(), "warn").await
    }

    /// Starts a node on an existing data directory, its log (info level, appended) going to
    /// `<dir>/node.log`, read back with [`Node::log`].
    pub async fn spawn_logged(dir: &Path, flags: &[&str]) -> Node {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("log file");
        Node::spawn_command(Command::new(bin()), dir, flags, Stdio::from(log), "info").await
    }

    /// Starts a fresh node whose soft open-file limit starts at `soft` (the hard limit is
    /// left as it is), as a service manager with a low default would start it.
    pub async fn start_with_soft_nofile(soft: u64, flags: &[&str]) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        upsert_superuser(&dir, EMAIL, PASSWORD);
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
            bin(),
        ]);
        let mut node = Node::spawn_command(cmd, &dir, flags, Stdio::inherit(), "warn").await;
        node._tmp = Some(tmp);
        node
    }

    async fn spawn_command(
        mut cmd: Command,
        dir: &Path,
        flags: &[&str],
        stderr: Stdio,
        level: &str,
    ) -> Node {
        cmd.args(["serve", "--http", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(flags)
            .env("SYNCBASE_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn syncbase");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read startup line");
        let url = line
            .trim()
            .strip_prefix("Server started at ")
            .unwrap_or_else(|| panic!("unexpected startup line: {line:?}"))
            .to_string();
        let client = reqwest::Client::new();
        let mut node = Node {
            url,
            token: String::new(),
            client,
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
        };
        let (status, body) = node
            .call(
                Method::POST,
                "/api/collections/_superusers/auth-with-password",
                Some(json!({"identity": EMAIL, "password": PASSWORD})),
            )
            .await;
        if status == StatusCode::OK {
            node.token = body["token"].as_str().unwrap_or_default().to_string();
        }
        node
    }

    /// A handle on a node this harness did not start (no process, no data dir of its own),
    /// calling it with `token`.
    pub fn attach(url: &str, token: &str) -> Node {
        Node {
            url: url.to_string(),
            token: token.to_string(),
            client: reqwest::Client::new(),
            child: None,
            dir: PathBuf::new(),
            _tmp: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the server process. `STOP` returns once every
    /// thread of it is stopped: the kernel stops a process's threads one by one, when the
    /// thread that takes the signal gets to run, and on a busy machine the others can go on
    /// serving (reading a socket, stamping a message) for some milliseconds after `kill`
    /// returns.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("running");
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {pid} failed");
        if sig == "STOP" {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !all_threads_stopped(pid) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "process {pid} did not stop within 10 s"
                );
                std::thread::yield_now();
            }
        }
    }

    /// Sends a request as the superuser.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token.clone(), method, path, body).await
    }

    /// Sends a request with the given token ("" for a guest).
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if !token.is_empty() {
            req = req.header("Authorization", token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        read(resp).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends a raw body with a content type, as the superuser.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .header("Authorization", &self.token)
            .header("Content-Type", ctype)
            .body(body)
            .send()
            .await
            .expect("request");
        read(resp).await
    }

    /// Sends a multipart body as the superuser: `text` fields, then `files` as
    /// `(field, file name, bytes)` parts (a record create or update with uploads).
    pub async fn multipart(
        &self,
        method: Method,
        path: &str,
        text: &[(&str, &str)],
        files: &[(&str, &str, Vec<u8>)],
    ) -> (StatusCode, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in text {
            form = form.text(k.to_string(), v.to_string());
        }
        for (k, name, b) in files {
            form = form.part(
                k.to_string(),
                reqwest::multipart::Part::bytes(b.clone()).file_name(name.to_string()),
            );
        }
        let resp = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .header("Authorization", &self.token)
            .multipart(form)
            .send()
            .await
            .expect("request");
        read(resp).await
    }

    /// Creates a collection, panicking with the server's answer if it fails.
    pub async fn create_collection(&self, def: Value) -> Value {
        let (s, body) = self.post("/api/collections", def).await;
        assert_eq!(s, StatusCode::OK, "create collection: {body}");
        body
    }

    /// Creates a record, panicking with the server's answer if it fails.
    pub async fn create_record(&self, coll: &str, rec: Value) -> Value {
        let (s, body) = self
            .post(&format!("/api/collections/{coll}/records"), rec)
            .await;
        assert_eq!(s, StatusCode::OK, "create record in {coll}: {body}");
        body
    }

    /// Lists records with a raw query string, returning the ids in order.
    pub async fn ids(&self, coll: &str, query: &str) -> Vec<String> {
        let (s, body) = self
            .get(&format!("/api/collections/{coll}/records?{query}"))
            .await;
        assert_eq!(s, StatusCode::OK, "list {coll}?{query}: {body}");
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Kills the process hard (SIGKILL): no shutdown, no checkpoint.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// GETs a path without auth and returns the body as text.
    pub async fn raw_get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .client
            .get(format!("{}{}", self.url, path))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    /// Sends SIGTERM and waits for the process to exit, returning its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
            // Poll interval of the deadline-bounded wait for the process to exit.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn upsert_superuser(dir: &Path, email: &str, password: &str) {
    let out = Command::new(bin())
        .args(["superuser", "upsert", email, password, "--dir"])
        .arg(dir)
        .env("SYNCBASE_LOG", "warn")
        .output()
        .expect("run superuser upsert");
    assert!(
        out.status.success(),
        "superuser upsert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// A standard "posts" collection used by many tests.
pub fn posts_def() -> Value {
    json!({
        "name": "posts",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text", "required": true},
            {"name": "n", "type": "number"},
            {"name": "active", "type": "bool"},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "meta", "type": "json"},
            {"name": "created", "type": "autodate", "onCreate": true},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
        ]
    })
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A realtime client reading `GET /api/realtime` as the JS SDK does.
pub struct Sse {
    pub client_id: String,
    rx: tokio::sync::mpsc::UnboundedReceiver<Option<SseEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sse {
    /// Connects and waits for `PB_CONNECT`.
    pub async fn connect(node: &Node) -> Sse {
        use futures::StreamExt;
        let resp = node
            .client
            .get(format!("{}/api/realtime", node.url))
            .send()
            .await
            .expect("sse connect");
        assert_eq!(resp.status(), StatusCode::OK);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else { break };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    let mut ev = SseEvent {
                        id: String::new(),
                        event: String::new(),
                        data: Value::Null,
                    };
                    let mut data = String::new();
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            ev.id = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            ev.event = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if ev.event.is_empty() && data.is_empty() {
                        continue; // keep-alive comment
                    }
                    ev.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    if tx.send(Some(ev)).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(None);
        });
        let mut sse = Sse {
            client_id: String::new(),
            rx,
            task,
        };
        let first = sse.next().await.expect("PB_CONNECT");
        assert_eq!(first.event, "PB_CONNECT");
        sse.client_id = first.data["clientId"]
            .as_str()
            .expect("clientId")
            .to_string();
        assert_eq!(first.id, sse.client_id, "every frame carries the client id");
        sse
    }

    /// The next event, or `None` when the stream ended. Panics after 20 s.
    pub async fn next(&mut self) -> Option<SseEvent> {
        match tokio::time::timeout(Duration::from_secs(20), self.rx.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => None,
            Err(_) => panic!("no realtime event within 20 s"),
        }
    }

    /// Sets this client's subscriptions with the given token.
    pub async fn subscribe(&self, node: &Node, token: &str, topics: &[&str]) -> StatusCode {
        let (s, _) = node
            .call_as(
                token,
                Method::POST,
                "/api/realtime",
                Some(json!({"clientId": self.client_id, "subscriptions": topics})),
            )
            .await;
        s
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Signs up a user in `users` and logs in, returning (id, token).
pub async fn user(node: &Node, email: &str) -> (String, String) {
    let rec = node
        .create_record(
            "users",
            json!({"email": email, "password": "secret123", "passwordConfirm": "secret123"}),
        )
        .await;
    // A replicating node answers 503 until it has folded the cluster's users collection.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (s, auth) = loop {
        let (s, auth) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/users/auth-with-password",
                Some(json!({"identity": email, "password": "secret123"})),
            )
            .await;
        if s != StatusCode::SERVICE_UNAVAILABLE || Instant::now() >= deadline {
            break (s, auth);
        }
        // Poll interval of the deadline-bounded wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s, StatusCode::OK, "{auth}");
    (
        rec["id"].as_str().expect("id").to_string(),
        auth["token"].as_str().expect("token").to_string(),
    )
}

/// A shipped plugin (`plugins/<name>`) built into a component file, once per test binary:
/// every plugin the HTTP-level tests bind, built together into one shared target directory.
pub fn shipped_component(name: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let options = syncbase_plugin_build::BuildOptions {
                plugin_dirs: [
                    "lww",
                    "field-merge",
                    "counter",
                    "redact",
                    "local-only",
                    "every-n",
                    "proportional",
                ]
                .iter()
                .map(|p| root.join("plugins").join(p))
                .collect(),
                target_dir: Some(
                    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-plugin-build"),
                ),
                out_dir: None,
                world: None,
            };
            syncbase_plugin_build::build_plugins(&options)
                .unwrap_or_else(|e| panic!("building plugins: {e}"))
                .into_iter()
                .map(|b| (b.name, b.component))
                .collect()
        })
        .get(name)
        .unwrap_or_else(|| panic!("plugin {name} not built"))
        .clone()
}

/// A C, Python or JavaScript plugin written by a test (`files` beside a `plugin.json` naming
/// it and its world), built with the real toolchain into a component file.
pub fn foreign_plugin(
    lang: syncbase_plugin_build::Lang,
    name: &str,
    world: &str,
    files: &[(&str, &str)],
) -> PathBuf {
    // A directory of its own per call: tests running at once may build the same plugin, and
    // one clearing the directory would pull the files from under the other's build.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("test-plugins")
        .join(format!("{name}-{lang}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::write(
        dir.join("plugin.json"),
        json!({"name": name, "world": world}).to_string(),
    )
    .expect("plugin.json");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("plugin source");
    }
    let built =
        syncbase_plugin_build::build_foreign(&syncbase_plugin_build::ForeignBuild::new(lang, &dir))
            .unwrap_or_else(|e| panic!("building the {lang} plugin {name}: {e}"));
    built.component
}

/// Whether every thread of `pid` is in the stopped state (`T` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    })
}
