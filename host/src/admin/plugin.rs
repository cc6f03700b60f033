//! The `syncbase plugin` commands that reach a node: push, bind, unbind, rollback, ls,
//! delete, and the dry-run `resolve`. Each renders the node's answer for a person.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::{AdminError, Conn};
use crate::config::PluginCommand;

fn target_body(collection: &Option<String>, role: &str) -> Value {
    json!({"collection": collection, "as": role})
}

pub(super) async fn remote_command(conn: &Conn, cmd: &PluginCommand) -> Result<String, AdminError> {
    match cmd {
        PluginCommand::New { .. } | PluginCommand::Test { .. } | PluginCommand::Build { .. } => {
            Err(AdminError::Refused(
                "`plugin new`, `build` and `test` work locally, not on a node".into(),
            ))
        }
        PluginCommand::Push { file, name, .. } => push(conn, file, name.as_deref()).await,
        PluginCommand::Bind {
            name,
            collection,
            role,
            version,
            config,
            ..
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
        PluginCommand::Unbind {
            collection, role, ..
        } => {
            conn.call(
                Method::POST,
                "/api/plugins/unbind",
                Some(target_body(collection, role)),
            )
            .await?;
            Ok(format!("unbound {}", describe(collection, role)))
        }
        PluginCommand::Rollback {
            collection, role, ..
        } => {
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
        PluginCommand::Ls { .. } => {
            let v = conn.call(Method::GET, "/api/plugins", None).await?;
            Ok(render_list(&v))
        }
        PluginCommand::Delete { name, version, .. } => {
            let path = match version {
                Some(v) => format!("/api/plugins/{}?version={v}", urlencode(name)),
                None => format!("/api/plugins/{}", urlencode(name)),
            };
            conn.call(Method::DELETE, &path, None).await?;
            Ok(match version {
                Some(v) => format!("deleted {name} version {v}"),
                None => format!("deleted {name}"),
            })
        }
        PluginCommand::Resolve {
            name,
            current,
            incoming,
            version,
            config,
            ..
        } => {
            let body = json!({
                "current": read_json(current)?,
                "incoming": read_json(incoming)?,
                "version": version,
                "config": config,
            });
            let v = conn
                .call(
                    Method::POST,
                    &format!("/api/plugins/{}/resolve", urlencode(name)),
                    Some(body),
                )
                .await?;
            render_resolution(&v)
        }
    }
}

async fn push(conn: &Conn, file: &Path, name: Option<&str>) -> Result<String, AdminError> {
    let bytes = std::fs::read(file).map_err(|source| AdminError::File {
        path: file.display().to_string(),
        source,
    })?;
    let name = name.map_or_else(|| stem(file), str::to_string);
    let url = format!("{}/api/plugins?name={}", conn.url, urlencode(&name));
    let req = conn
        .client
        .post(url)
        .header("Authorization", &conn.token)
        .header("Content-Type", "application/wasm")
        .body(bytes);
    let v = conn.send(req).await?;
    if v["unchanged"] == true {
        return Ok(format!(
            "unchanged: {} version {} already has this content (sha256 {}); nothing uploaded",
            v["name"].as_str().unwrap_or_default(),
            v["version"],
            v["sha256"].as_str().unwrap_or_default()
        ));
    }
    Ok(format!(
        "pushed {} version {} ({}, {} bytes, sha256 {})",
        v["name"].as_str().unwrap_or_default(),
        v["version"],
        v["world"].as_str().unwrap_or_default(),
        v["size"],
        v["sha256"].as_str().unwrap_or_default()
    ))
}

/// `plugin ls`: one row per version, columns as wide as their widest cell.
fn render_list(v: &Value) -> String {
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let cluster = items.iter().any(|p| p.get("nodes").is_some());
    let mut header = vec!["NAME", "VER", "WORLD", "SIZE", "SHA256", "BOUND AS"];
    if cluster {
        header.push("COMPILED ON");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for p in &items {
        let bound: Vec<String> = p["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let t = &b["target"];
                let place = t["collectionName"]
                    .as_str()
                    .or_else(|| t["collection"].as_str())
                    .unwrap_or("node");
                format!(
                    "{}:{} ({})",
                    t["role"].as_str().unwrap_or(""),
                    place,
                    b["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        let mut row = vec![
            p["name"].as_str().unwrap_or_default().to_string(),
            p["version"].to_string(),
            p["world"].as_str().unwrap_or_default().to_string(),
            p["size"].to_string(),
            p["sha256"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect(),
            if bound.is_empty() {
                "-".into()
            } else {
                bound.join(", ")
            },
        ];
        if cluster {
            let nodes: Vec<&str> = p["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            row.push(if nodes.is_empty() {
                "-".into()
            } else {
                nodes.join(",")
            });
        }
        rows.push(row);
    }
    table(&rows, &[1, 3])
}

/// Lays `rows` out in columns separated by two spaces; columns in `right` are right-aligned
/// (numbers), the last column is not padded.
fn table(rows: &[Vec<String>], right: &[usize]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if right.contains(&c) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else if c + 1 < row.len() {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// `plugin resolve`: the answer, or the failure with its detail (a Python or JavaScript
/// traceback) and the default that applied. A failure is an error exit.
fn render_resolution(v: &Value) -> Result<String, AdminError> {
    let resolution = match &v["resolution"] {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.contains_key("merged") => format!(
            "merged {}",
            serde_json::to_string_pretty(&m["merged"]).unwrap_or_default()
        ),
        other => other.to_string(),
    };
    let by = &v["decidedBy"];
    let who = format!(
        "{} version {}",
        by["plugin"].as_str().unwrap_or("?"),
        by["version"]
    );
    match by["by"].as_str() {
        Some("fallback") => Err(AdminError::Vectors(format!(
            "{who} failed ({}):\n{}\nthe built-in default would apply: {resolution}",
            by["failure"].as_str().unwrap_or("?"),
            by["detail"].as_str().unwrap_or_default()
        ))),
        _ => Ok(format!("{who} answered: {resolution}")),
    }
}

fn read_json(path: &Path) -> Result<Value, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::File {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| AdminError::Refused(format!("{} is not JSON: {e}", path.display())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_columns_line_up_whatever_the_cell_widths() {
        let v = json!({"items": [
            {"name": "a-very-long-plugin-name", "version": 12, "world": "resolver", "size": 18000000,
             "sha256": "ab".repeat(32), "bindings": []},
            {"name": "lww", "version": 1, "world": "filter", "size": 900, "sha256": "cd".repeat(32),
             "bindings": [{"target": {"role": "resolver", "collection": "pbc_1", "collectionName": "posts"}, "state": "active"}]},
        ]});
        let out = render_list(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let col = |needle: &str, line: &str| line.find(needle).expect(needle);
        // Every column starts where its header does; numbers end where theirs does.
        assert_eq!(col("WORLD", lines[0]), col("resolver", lines[1]));
        assert_eq!(col("WORLD", lines[0]), col("filter", lines[2]));
        assert_eq!(col("SHA256", lines[0]), col("abab", lines[1]));
        assert_eq!(
            col("SIZE", lines[0]) + 4,
            col("18000000", lines[1]) + 8,
            "{out}"
        );
        assert!(lines[2].ends_with("resolver:posts (active)"), "{out}");
    }
}
