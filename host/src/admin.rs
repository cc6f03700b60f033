//! The admin CLI (`syncbase plugin ...`): talks to a running node over its HTTP API as a
//! superuser, and prints results for people. Two commands need no node: `new` scaffolds a
//! plugin project (`syncbase-plugin-build`'s templates) and `test` runs test vectors against
//! a component in a private runtime (`plugins::vectors`).

use std::path::{Path, PathBuf};

use reqwest::{Client, Method};
use serde_json::{Value, json};
use syncbase_plugin_build::{Lang, World};

use crate::config::{PluginCommand, Remote, SyncCommand};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    Refused(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "give --token, or --email and --password (or SYNCBASE_TOKEN / SYNCBASE_EMAIL / SYNCBASE_PASSWORD)"
    )]
    NoCredentials,
    #[error("{0}")]
    Scaffold(String),
    #[error("{0}")]
    Vectors(String),
}

/// A superuser's connection to a running node.
pub(crate) struct Conn {
    client: Client,
    url: String,
    token: String,
}

impl Conn {
    pub(crate) async fn open(remote: &Remote) -> Result<Conn, AdminError> {
        let client = Client::new();
        let url = remote.url.trim_end_matches('/').to_string();
        let token = match (&remote.token, &remote.email, &remote.password) {
            (Some(t), _, _) => t.clone(),
            (None, Some(email), Some(password)) => {
                let c = Conn {
                    client: client.clone(),
                    url: url.clone(),
                    token: String::new(),
                };
                let body = json!({"identity": email, "password": password});
                let v = c
                    .call(
                        Method::POST,
                        "/api/collections/_superusers/auth-with-password",
                        Some(body),
                    )
                    .await?;
                v["token"].as_str().unwrap_or_default().to_string()
            }
            _ => return Err(AdminError::NoCredentials),
        };
        Ok(Conn { client, url, token })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, AdminError> {
        let resp = req.send().await.map_err(|source| AdminError::Unreachable {
            url: self.url.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            let msg = v["message"].as_str().map(String::from).unwrap_or(text);
            Err(AdminError::Refused(format!("{status}: {msg}")))
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if !self.token.is_empty() {
            req = req.header("Authorization", &self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }
}

/// Runs one `syncbase sync` command, returning what to print.
pub async fn sync(remote: &Remote, cmd: &SyncCommand) -> Result<String, AdminError> {
    let SyncCommand::Status { json, hashes } = cmd;
    let conn = Conn::open(remote).await?;
    let path = if *hashes {
        "/api/sync/status?hashes=1"
    } else {
        "/api/sync/status"
    };
    let v = conn.call(Method::GET, path, None).await?;
    if *json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    if v["mode"] == "single" {
        return Ok(format!(
            "node {}: single node, no replication (start it with --nats or --sync)",
            v["nodeId"].as_str().unwrap_or("?")
        ));
    }
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let mut out = format!(
        "node {} ({} NATS, cluster {}): {}\n",
        v["nodeId"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("?"),
        v["cluster"].as_str().unwrap_or("?"),
        if v["nats"]["connected"] == true {
            "connected".to_string()
        } else {
            format!(
                "NOT connected ({})",
                v["nats"]["lastError"].as_str().unwrap_or("no error yet")
            )
        },
    );
    if v["nats"]["connected"] == true
        && let Some(e) = v["nats"]["lastError"].as_str()
    {
        out += &format!(
            "last error ({}, at {}): {e}\n",
            v["nats"]["lastErrorIn"].as_str().unwrap_or("?"),
            v["nats"]["lastErrorAt"].as_str().unwrap_or("?")
        );
    }
    out += &format!(
        "stream seq {}  applied {}  lag {}  outbox backlog {}  pending overlay {}  dead letters {}\n",
        n("streamSeq"),
        n("appliedSeq"),
        n("lag"),
        n("outboxBacklog"),
        n("pendingOverlay"),
        n("deadLetters"),
    );
    out += &format!(
        "stream first seq {}  messages {}  bytes {}\n",
        v["stream"]["firstSeq"].as_u64().unwrap_or(0),
        v["stream"]["messages"].as_u64().unwrap_or(0),
        v["stream"]["bytes"].as_u64().unwrap_or(0),
    );
    if let Some(kept) = v["snapshots"]["kept"].as_array() {
        let names: Vec<String> = kept
            .iter()
            .map(|s| format!("{} (seq {})", s["name"].as_str().unwrap_or("?"), s["seq"]))
            .collect();
        out += &format!("snapshots kept: {}\n", names.join(", "));
    }
    let peers: Vec<&str> = v["peersSeen"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out += &format!("peers seen: {}\n", peers.join(", "));
    if let Some(list) = v["plugins"].as_array() {
        for b in list {
            out += &format!(
                "plugin {} {}: {}\n",
                b["role"].as_str().unwrap_or("?"),
                b["collection"].as_str().unwrap_or(""),
                b["active"]["plugin"].as_str().unwrap_or("(built-in)"),
            );
        }
    }
    if let Some(h) = v["tableHashes"].as_object() {
        for (table, hash) in h {
            out += &format!("table {table}: {}\n", hash.as_str().unwrap_or(""));
        }
    }
    Ok(out.trim_end().to_string())
}

fn target_body(collection: &Option<String>, role: &str) -> Value {
    json!({"collection": collection, "as": role})
}

/// Runs one `syncbase plugin` command, returning what to print. `new` and `test` work on
/// local files; the others talk to the node.
pub async fn plugin(remote: &Remote, cmd: &PluginCommand) -> Result<String, AdminError> {
    match cmd {
        PluginCommand::New {
            name,
            lang,
            world,
            dir,
        } => new_project(name, *lang, *world, dir.as_deref()),
        PluginCommand::Test { file, vectors } => test_vectors(file, vectors).await,
        _ => remote_command(&Conn::open(remote).await?, cmd).await,
    }
}

/// `syncbase plugin new`: scaffolds a project and says what to do next.
fn new_project(
    name: &str,
    lang: Lang,
    world: World,
    dir: Option<&Path>,
) -> Result<String, AdminError> {
    let dest = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let dest = syncbase_plugin_build::scaffold(name, lang, world, &dest)
        .map_err(|e| AdminError::Scaffold(e.to_string()))?;
    Ok(format!(
        "created the {lang} {world} plugin {name} in {dir}\n\
         next: {dir}/README.md (build, test, push, bind)",
        dir = dest.display()
    ))
}

/// `syncbase plugin test`: runs a vectors file against a component; any failed case fails.
async fn test_vectors(file: &Path, vectors: &Path) -> Result<String, AdminError> {
    let (file, vectors) = (file.to_path_buf(), vectors.to_path_buf());
    let report =
        tokio::task::spawn_blocking(move || crate::plugins::vectors::test_files(&file, &vectors))
            .await
            .map_err(|e| AdminError::Vectors(format!("the test run panicked: {e}")))?
            .map_err(|e| AdminError::Vectors(e.to_string()))?;
    if report.failures() == 0 {
        Ok(report.render())
    } else {
        Err(AdminError::Vectors(report.render()))
    }
}

async fn remote_command(conn: &Conn, cmd: &PluginCommand) -> Result<String, AdminError> {
    match cmd {
        PluginCommand::New { .. } | PluginCommand::Test { .. } => Err(AdminError::Refused(
            "`plugin new` and `plugin test` work locally, not on a node".into(),
        )),
        PluginCommand::Push { file, name } => {
            let bytes = std::fs::read(file).map_err(|source| AdminError::File {
                path: file.display().to_string(),
                source,
            })?;
            let name = name.clone().unwrap_or_else(|| stem(file));
            let url = format!("{}/api/plugins?name={}", conn.url, urlencode(&name));
            let req = conn
                .client
                .post(url)
                .header("Authorization", &conn.token)
                .header("Content-Type", "application/wasm")
                .body(bytes);
            let v = conn.send(req).await?;
            Ok(format!(
                "pushed {} version {} ({}, {} bytes, sha256 {})",
                v["name"].as_str().unwrap_or_default(),
                v["version"],
                v["world"].as_str().unwrap_or_default(),
                v["size"],
                v["sha256"].as_str().unwrap_or_default()
            ))
        }
        PluginCommand::Bind {
            name,
            collection,
            role,
            version,
            config,
        } => {
            let mut body = target_body(collection, role);
            body["version"] = json!(version);
            body["config"] = json!(config);
            let v = conn
                .call(
                    Method::POST,
                    &format!("/api/plugins/{}/bind", urlencode(name)),
                    Some(body),
                )
                .await?;
            Ok(format!(
                "bound {} version {} as {}",
                name,
                v["binding"]["version"],
                describe(collection, role)
            ))
        }
        PluginCommand::Unbind { collection, role } => {
            conn.call(
                Method::POST,
                "/api/plugins/unbind",
                Some(target_body(collection, role)),
            )
            .await?;
            Ok(format!("unbound {}", describe(collection, role)))
        }
        PluginCommand::Rollback { collection, role } => {
            let v = conn
                .call(
                    Method::POST,
                    "/api/plugins/rollback",
                    Some(target_body(collection, role)),
                )
                .await?;
            Ok(format!(
                "{} is now {} version {}",
                describe(collection, role),
                v["binding"]["plugin"].as_str().unwrap_or_default(),
                v["binding"]["version"]
            ))
        }
        PluginCommand::Ls => {
            let v = conn.call(Method::GET, "/api/plugins", None).await?;
            let mut out = format!(
                "{:<20} {:>3}  {:<16} {:>9}  {:<12} {}\n",
                "NAME", "VER", "WORLD", "SIZE", "SHA256", "BOUND AS"
            );
            for p in v["items"].as_array().cloned().unwrap_or_default() {
                let bound: Vec<String> = p["bindings"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|b| {
                        let t = &b["target"];
                        format!(
                            "{}:{} ({})",
                            t["role"].as_str().unwrap_or(""),
                            t["collection"].as_str().unwrap_or("node"),
                            b["state"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "{:<20} {:>3}  {:<16} {:>9}  {:<12} {}\n",
                    p["name"].as_str().unwrap_or_default(),
                    p["version"],
                    p["world"].as_str().unwrap_or_default(),
                    p["size"],
                    p["sha256"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(12)
                        .collect::<String>(),
                    bound.join(", ")
                ));
            }
            Ok(out.trim_end().to_string())
        }
    }
}

fn describe(collection: &Option<String>, role: &str) -> String {
    match collection {
        Some(c) => format!("{role} of {c}"),
        None => role.to_string(),
    }
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .replace('_', "-")
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
