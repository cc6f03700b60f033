//! The options of an embedded `nats-server` and the config file written from them.
//!
//! The file is regenerated on every start from the options alone, so the user never edits NATS
//! configuration by hand and a changed `--join` list takes effect on the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What an embedded `nats-server` child should look like.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// `--nats-server-bin`; `None` searches `PATH`.
    pub binary: Option<PathBuf>,
    /// The node's data directory; NATS keeps its config, log and JetStream store in
    /// `<dir>/nats/`.
    pub dir: PathBuf,
    /// The node id, used as the NATS `server_name` (JetStream peers are named by it).
    pub node_id: String,
    /// Where clients (this node's replication, and peers' if they want) connect.
    pub client_listen: SocketAddr,
    /// `None` runs a standalone JetStream server (a single node); `Some` clusters it by routes.
    pub cluster: Option<ClusterOptions>,
    /// How long to wait for the server to accept connections after each (re)start.
    pub start_timeout: Duration,
    /// How long a graceful stop (SIGTERM) may take before the child is killed.
    pub stop_timeout: Duration,
    /// Delay before the first restart after an unexpected exit; doubled per consecutive
    /// failure up to `max_restart_backoff`, reset after the server has run for a minute.
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
    /// The `syncbase` binary, to start the child through `syncbase nats-exec` so that it dies
    /// with this process even on kill -9 (see [`crate::nats::exec_with_parent_death`]);
    /// `None` starts it directly (library use, tests).
    pub exec_wrapper: Option<PathBuf>,
}

/// Clustering by routes: the NATS half of "add to sync chain".
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The NATS cluster name; every peer must use the same one.
    pub name: String,
    /// Where peers' routes connect to this server.
    pub listen: SocketAddr,
    /// Peers' cluster addresses (`host:port`, from `--join`). Routes are gossiped, so listing
    /// one running peer is enough; listing all of them survives any one being down.
    pub join: Vec<String>,
}

impl EmbeddedOptions {
    /// Options with the defaults the CLI uses, for a standalone server.
    pub fn new(
        dir: impl Into<PathBuf>,
        node_id: impl Into<String>,
        client_listen: SocketAddr,
    ) -> Self {
        EmbeddedOptions {
            binary: None,
            dir: dir.into(),
            node_id: node_id.into(),
            client_listen,
            cluster: None,
            start_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
            restart_backoff: Duration::from_millis(200),
            max_restart_backoff: Duration::from_secs(10),
            exec_wrapper: None,
        }
    }

    /// `<dir>/nats/`: everything the child writes lives here.
    pub fn nats_dir(&self) -> PathBuf {
        self.dir.join("nats")
    }

    pub fn config_path(&self) -> PathBuf {
        self.nats_dir().join("nats-server.conf")
    }

    /// The child's stdout and stderr (NATS logs to stderr when no `log_file` is set).
    /// Where the running server writes its pid (to find one a killed node left behind).
    pub fn pid_path(&self) -> PathBuf {
        self.nats_dir().join("nats-server.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.nats_dir().join("nats-server.log")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.nats_dir().join("jetstream")
    }
}

/// Renders the config file. Strings are written as JSON strings, which the NATS config
/// parser reads with the same escapes, so paths and names with quotes or backslashes are safe.
pub fn render(opts: &EmbeddedOptions) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let path = |p: &Path| q(&p.to_string_lossy());
    let mut out = String::new();
    out.push_str("# Written by syncbase on every start; edits are overwritten.\n");
    out.push_str(&format!("server_name: {}\n", q(&opts.node_id)));
    out.push_str(&format!("listen: {}\n", q(&opts.client_listen.to_string())));
    out.push_str(&format!("pid_file: {}\n", path(&opts.pid_path())));
    out.push_str("jetstream {\n");
    out.push_str(&format!("  store_dir: {}\n", path(&opts.store_dir())));
    out.push_str("}\n");
    if let Some(cluster) = &opts.cluster {
        out.push_str("cluster {\n");
        out.push_str(&format!("  name: {}\n", q(&cluster.name)));
        out.push_str(&format!("  listen: {}\n", q(&cluster.listen.to_string())));
        // A clustered JetStream server refuses to start without routes. The first node of a
        // cluster has no peers yet, so it routes to itself; NATS drops self-routes ("Duplicate
        // Route") and the routes of joining peers are gossiped back to it.
        let mut routes: Vec<String> = cluster.join.iter().map(|h| route_url(h)).collect();
        if routes.is_empty() {
            routes.push(route_url(&cluster.listen.to_string()));
        }
        out.push_str("  routes: [\n");
        for route in routes {
            out.push_str(&format!("    {}\n", q(&route)));
        }
        out.push_str("  ]\n");
        out.push_str("}\n");
    }
    out
}

fn route_url(host_port: &str) -> String {
    if host_port.contains("://") {
        host_port.to_string()
    } else {
        format!("nats-route://{host_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> EmbeddedOptions {
        EmbeddedOptions::new(
            "/data/sb \"x\"",
            "n1",
            "127.0.0.1:4222".parse().expect("addr"),
        )
    }

    #[test]
    fn standalone_has_jetstream_under_the_data_dir_and_no_cluster() {
        let text = render(&opts());
        assert!(text.contains("server_name: \"n1\"\n"), "{text}");
        assert!(text.contains("listen: \"127.0.0.1:4222\"\n"), "{text}");
        assert!(
            text.contains("store_dir: \"/data/sb \\\"x\\\"/nats/jetstream\"\n"),
            "{text}"
        );
        assert!(!text.contains("cluster"), "{text}");
    }

    #[test]
    fn cluster_routes_come_from_join_or_point_at_itself() {
        let mut o = opts();
        o.cluster = Some(ClusterOptions {
            name: "prod".into(),
            listen: "127.0.0.1:6222".parse().expect("addr"),
            join: vec!["10.0.0.2:6222".into(), "nats-route://10.0.0.3:6222".into()],
        });
        let text = render(&o);
        assert!(text.contains("name: \"prod\""), "{text}");
        assert!(text.contains("\"nats-route://10.0.0.2:6222\""), "{text}");
        assert!(text.contains("\"nats-route://10.0.0.3:6222\""), "{text}");

        if let Some(c) = o.cluster.as_mut() {
            c.join.clear();
        }
        let text = render(&o);
        assert!(text.contains("\"nats-route://127.0.0.1:6222\""), "{text}");
    }
}
