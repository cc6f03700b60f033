//! NATS security end to end: nodes replicate through a `nats-server` that requires TLS with
//! client certificates (certificates made here with rcgen), a user and password, or a creds
//! file (operator mode: operator, account and user JWTs signed here with nkeys); and a node
//! given a wrong certificate or credential refuses to start, saying what to check.

mod nats_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use nats_support::ConfiguredServer as Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Node, posts_def};

/// Node flags for `--nats` plus the given security flags.
fn flags<'a>(url: &'a str, id: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut f = vec!["--nats", url, "--node-id", id, "--cluster", "sec"];
    f.extend_from_slice(extra);
    f
}

/// Two nodes with these settings replicate a collection and a record.
async fn replicate(url: &str, extra: &[&str]) {
    let a = Node::start_with(&flags(url, "a", extra)).await;
    let b = Node::start_with(&flags(url, "b", extra)).await;
    let (code, body) = a.post("/api/collections", posts_def()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, rec) = a
        .post(
            "/api/collections/posts/records?sync=applied",
            json!({"title": "over a secured link"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{rec}");
    let path = format!(
        "/api/collections/posts/records/{}",
        rec["id"].as_str().expect("id")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, got) = b.get(&path).await;
        if code == StatusCode::OK {
            assert_eq!(got["title"], "over a secured link");
            break;
        }
        assert!(Instant::now() < deadline, "the record never reached B");
        // Poll interval of the deadline-bounded wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, status) = b.get("/api/sync/status").await;
    assert_eq!(status["nats"]["connected"], true, "{status}");
}

/// `syncbase serve` with these settings must exit non-zero, its error containing every one
/// of `expect`. Returns the error text.
async fn refuses_to_start(url: &str, extra: &[&str], expect: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(support::bin())
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .args(flags(url, "bad", extra))
        .env("SYNCBASE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn syncbase");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        stderr.read_to_string(&mut err).await.expect("stderr");
    }
    let Ok(status) = status else {
        panic!("a node with {extra:?} kept running instead of refusing:\n{err}");
    };
    let status = status.expect("wait");
    assert!(!status.success(), "{extra:?} started: {err}");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in the error:\n{err}");
    }
    err
}

/// A CA and certificates it signs, as PEM files in a directory.
struct Pki {
    dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca_cert = params.self_signed(&ca_key).expect("CA");
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca_cert,
            ca_key,
        };
        std::fs::write(pki.path(&format!("{name}-ca.pem")), pki.ca_cert.pem()).expect("write");
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Signs a certificate for `names` with the given purpose; writes `<file>.pem` and
    /// `<file>-key.pem`.
    fn issue(&self, file: &str, names: &[&str], purpose: rcgen::ExtendedKeyUsagePurpose) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.extended_key_usages = vec![purpose];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, file);
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign");
        std::fs::write(self.path(&format!("{file}.pem")), cert.pem()).expect("write");
        std::fs::write(self.path(&format!("{file}-key.pem")), key.serialize_pem()).expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_replicates_and_wrong_certificates_refuse_to_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path(), "good");
    pki.issue(
        "server",
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    pki.issue(
        "client",
        &["node"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let rogue = Pki::new(tmp.path(), "rogue");
    rogue.issue(
        "rogue-client",
        &["node"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let q = |f: &str| serde_json::Value::from(pki.path(f).to_string_lossy()).to_string();
    let server = Server::start(&format!(
        "tls {{ cert_file: {}, key_file: {}, ca_file: {}, verify: true, timeout: 2 }}",
        q("server.pem"),
        q("server-key.pem"),
        q("good-ca.pem"),
    ))
    .await;
    let url = server.url("tls");
    let s = |f: &str| pki.path(f).to_string_lossy().into_owned();
    let (ca, cert, key) = (s("good-ca.pem"), s("client.pem"), s("client-key.pem"));
    let good = [
        "--nats-tls-ca",
        ca.as_str(),
        "--nats-tls-cert",
        cert.as_str(),
        "--nats-tls-key",
        key.as_str(),
    ];
    replicate(&url, &good).await;

    // Trusting another CA: the server's certificate does not verify.
    let rogue_ca = s("rogue-ca.pem");
    refuses_to_start(
        &url,
        &[
            "--nats-tls-ca",
            rogue_ca.as_str(),
            "--nats-tls-cert",
            cert.as_str(),
            "--nats-tls-key",
            key.as_str(),
        ],
        &["refused", "--nats-tls-ca"],
    )
    .await;
    // A client certificate the server's CA did not sign.
    let (rcert, rkey) = (s("rogue-client.pem"), s("rogue-client-key.pem"));
    refuses_to_start(
        &url,
        &[
            "--nats-tls-ca",
            ca.as_str(),
            "--nats-tls-cert",
            rcert.as_str(),
            "--nats-tls-key",
            rkey.as_str(),
        ],
        &["refused"],
    )
    .await;
    // No client certificate at all.
    refuses_to_start(&url, &["--nats-tls-ca", ca.as_str()], &["refused"]).await;
    // A certificate file that is not there.
    refuses_to_start(
        &url,
        &["--nats-tls-ca", "/nonexistent/ca.pem"],
        &["--nats-tls-ca", "/nonexistent/ca.pem"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_replicate_and_a_wrong_password_refuses_to_start() {
    let server = Server::start(r#"authorization { user: "sync", password: "s3cret-pass" }"#).await;
    let url = server.url("nats");
    replicate(
        &url,
        &["--nats-user", "sync", "--nats-password", "s3cret-pass"],
    )
    .await;
    refuses_to_start(
        &url,
        &["--nats-user", "sync", "--nats-password", "wrong"],
        &["authorization violation", "--nats-user/--nats-password"],
    )
    .await;
    refuses_to_start(&url, &[], &["authorization violation"]).await;
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A NATS JWT (`ed25519-nkey`) with the given `nats` claims, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = b64(json!({"typ": "JWT", "alg": "ed25519-nkey"})
        .to_string()
        .as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "jti": format!("{}{now}", name.to_uppercase()),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = b64(claims.to_string().as_bytes());
    let sig = issuer
        .sign(format!("{header}.{body}").as_bytes())
        .expect("sign");
    format!("{header}.{body}.{}", b64(&sig))
}

/// A user of `account` in a creds file: the user JWT and the user's seed.
fn creds(dir: &Path, file: &str, account: &nkeys::KeyPair) -> PathBuf {
    let user = nkeys::KeyPair::new_user();
    let user_jwt = jwt(
        account,
        &user.public_key(),
        file,
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
    );
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().expect("seed")
    );
    let path = dir.join(format!("{file}.creds"));
    std::fs::write(&path, text).expect("write creds");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_replicates_and_unknown_credentials_refuse_to_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let op_jwt = jwt(
        &operator,
        &operator.public_key(),
        "op",
        json!({"type": "operator", "version": 2}),
    );
    let limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let acc_jwt = jwt(
        &operator,
        &account.public_key(),
        "app",
        json!({"limits": limits, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2}),
    );
    // JetStream in operator mode needs a system account.
    let system = nkeys::KeyPair::new_account();
    let sys_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        json!({"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}, "type": "account", "version": 2}),
    );
    let server = Server::start(&format!(
        "operator: \"{op_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{ {acc}: \"{acc_jwt}\", {sys}: \"{sys_jwt}\" }}",
        acc = account.public_key(),
        sys = system.public_key(),
    ))
    .await;
    let url = server.url("nats");
    let good = creds(tmp.path(), "node", &account);
    let good = good.to_string_lossy().into_owned();
    replicate(&url, &["--nats-creds", good.as_str()]).await;

    // A user signed by an account the server does not know.
    let stranger = nkeys::KeyPair::new_account();
    let bad = creds(tmp.path(), "stranger", &stranger);
    let bad = bad.to_string_lossy().into_owned();
    refuses_to_start(
        &url,
        &["--nats-creds", bad.as_str()],
        &["refused", "--nats-creds"],
    )
    .await;
    // A creds file that is not there.
    refuses_to_start(
        &url,
        &["--nats-creds", "/nonexistent/node.creds"],
        &["--nats-creds", "/nonexistent/node.creds"],
    )
    .await;
}
