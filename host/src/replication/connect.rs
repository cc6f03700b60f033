//! Connecting to NATS: the URLs, credentials and TLS settings a node is given, how it reconnects
//! (quickly, and to another server than the one it leaves: `servers.rs`), and clear errors for
//! a wrong credential or certificate.

use std::path::PathBuf;
use std::time::Duration;

use super::log::LogError;
use super::servers::ServerChoice;

/// How to reach NATS: `--nats URL,...` and its credential and TLS flags, or the embedded
/// server's URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub urls: Vec<String>,
    /// The connection name servers show in monitoring (e.g. `syncbase n1`).
    pub name: Option<String>,
    pub creds_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Per-request timeout for JetStream API calls and publish acks (default 5 s).
    pub request_timeout: Option<Duration>,
}
/// Connects to NATS with the given credentials and TLS settings.
pub async fn connect(opts: &ConnectOptions) -> Result<async_nats::Client, LogError> {
    connect_choosing(opts).await.map(|(client, _)| client)
}

/// [`connect`], and the reconnect choice a [`Log`] needs to move the node off a server
/// ([`Log::with_servers`]).
pub async fn connect_choosing(
    opts: &ConnectOptions,
) -> Result<(async_nats::Client, ServerChoice), LogError> {
    let urls = opts.urls.join(",");
    let fail = |message: String| LogError::Connect {
        urls: urls.clone(),
        message,
    };
    let refused = |message: String| LogError::Refused {
        urls: urls.clone(),
        message,
    };
    let mut o = async_nats::ConnectOptions::new();
    if let Some(path) = &opts.creds_file {
        o = o.credentials_file(path).await.map_err(|e| {
            refused(format!(
                "cannot read the credentials file {} (--nats-creds): {e}",
                path.display()
            ))
        })?;
    }
    for (flag, file) in [
        ("--nats-tls-ca", &opts.tls_ca),
        ("--nats-tls-cert", &opts.tls_cert),
        ("--nats-tls-key", &opts.tls_key),
    ] {
        if let Some(path) = file
            && let Err(e) = std::fs::metadata(path)
        {
            return Err(refused(format!(
                "cannot read {flag} {}: {e}",
                path.display()
            )));
        }
    }
    if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
        o = o.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &opts.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
        o = o
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if let Some(name) = &opts.name {
        o = o.name(name);
    }
    if let Some(t) = opts.request_timeout {
        o = o.request_timeout(Some(t));
    }
    // Reconnect quickly: attempts go round the server list, so a dead server costs one
    // refused dial, and a node should be back within a fraction of a second of a server's
    // return (the default backs off to 4 s).
    o = o.reconnect_delay_callback(|attempts| {
        Duration::from_millis((25u64 << attempts.min(4)).min(250))
    });
    // A reconnect goes to another server than the one the node leaves (`servers.rs`).
    let servers = ServerChoice::default();
    let choice = servers.clone();
    o = o.reconnect_to_server_callback(move |pool, _info| {
        let pick = choice.pick(&pool);
        async move { pick }
    });
    // A server that stopped answering (paused, partitioned) is noticed by pings within ~15 s
    // rather than the default two minutes; JetStream trouble moves the node sooner
    // (`Log::switch_server`).
    o = o.ping_interval(Duration::from_secs(5));
    let addrs = opts
        .urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refused(format!("invalid server URL: {e}")))?;
    let client = o.connect(addrs).await.map_err(|e| {
        use async_nats::ConnectErrorKind as K;
        const TLS_HINT: &str =
            "check --nats-tls-ca (the servers' CA) and --nats-tls-cert/--nats-tls-key";
        let hint = match e.kind() {
            K::AuthorizationViolation | K::Authentication => {
                "check --nats-user/--nats-password or --nats-creds"
            }
            K::Tls => TLS_HINT,
            // A failed TLS handshake (an unknown CA, a refused client certificate) reaches us
            // as an I/O error carrying the TLS library's message.
            K::Io if is_tls_failure(&e) => TLS_HINT,
            _ => return fail(e.to_string()),
        };
        refused(format!("{e} ({hint})"))
    })?;
    Ok((client, servers))
}

/// Whether an error (or one it wraps) is a TLS handshake or certificate failure.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string().to_ascii_lowercase();
        if ["certificate", "handshake", "tls", "alert"]
            .iter()
            .any(|w| text.contains(w))
        {
            return true;
        }
        next = err.source();
    }
    false
}
