//! The admin CLI (`syncbase plugin ...`, `syncbase sync ...`): talks to a running node over
//! its HTTP API as a superuser, and prints results for people (`plugin.rs`: the plugin
//! commands that reach a node). Two commands need no node: `new` scaffolds a
//! plugin project (`syncbase-plugin-build`'s templates) and `test` runs test vectors against
//! a component in a private runtime (`plugins::vectors`).

mod local;
mod plugin;

use reqwest::{Client, Method};
use serde_json::{Value, json};

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
    #[error("{0}")]
    Build(String),
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
                b["collectionName"]
                    .as_str()
                    .or(b["collection"].as_str())
                    .unwrap_or(""),
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

/// Runs one `syncbase plugin` command, returning what to print. `new`, `build` and `test`
/// work on local files; the others talk to the node.
pub async fn plugin(cmd: &PluginCommand) -> Result<String, AdminError> {
    match cmd {
        PluginCommand::New {
            name,
            lang,
            world,
            dir,
        } => local::new_project(name, *lang, *world, dir.as_deref()),
        PluginCommand::Test { file, vectors } => local::test_vectors(file, vectors).await,
        PluginCommand::Build {
            dir,
            lang,
            out_dir,
            tools,
            install_tools,
        } => {
            local::build(
                dir,
                *lang,
                out_dir.as_deref(),
                tools.as_deref(),
                *install_tools,
            )
            .await
        }
        PluginCommand::Push { remote, .. }
        | PluginCommand::Bind { remote, .. }
        | PluginCommand::Unbind { remote, .. }
        | PluginCommand::Rollback { remote, .. }
        | PluginCommand::Ls { remote }
        | PluginCommand::Delete { remote, .. }
        | PluginCommand::Resolve { remote, .. } => {
            plugin::remote_command(&Conn::open(remote).await?, cmd).await
        }
    }
}
