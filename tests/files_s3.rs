//! File storage on S3 (PocketBase's `s3` settings), against a real S3-compatible server the
//! test starts: moto in server mode (PyPI `moto[server]`, installed by `scripts/tools.sh`
//! into `target/tools/moto`). Uploads land in the bucket under PocketBase's keys, download
//! (whole, ranges, thumbs) from it, and replaced or deleted files leave it.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Node;

/// A moto S3 server on a free port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("SYNCBASE_MOTO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("tools").join("moto"))
}

async fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dir = moto_dir();
    assert!(
        dir.join("moto").exists(),
        "moto is not installed in {} (scripts/tools.sh ensure_moto installs it)",
        dir.display()
    );
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("PYTHONPATH", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if client.get(format!("{url}/")).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Moto { child, url }
}

/// Whether the bucket holds `key`, asked with signed requests: moto refuses anonymous reads
/// of objects written without a public ACL (403), as S3 does.
async fn object(moto: &Moto, key: &str) -> StatusCode {
    use object_store::ObjectStore;
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("files")
        .with_region("us-east-1")
        .with_access_key_id("key")
        .with_secret_access_key("secret")
        .with_endpoint(&moto.url)
        .with_allow_http(true)
        .build()
        .expect("s3 client");
    match s3.head(&object_store::path::Path::from(key)).await {
        Ok(_) => StatusCode::OK,
        Err(object_store::Error::NotFound { .. }) => StatusCode::NOT_FOUND,
        Err(e) => panic!("asking the bucket for {key}: {e}"),
    }
}

async fn upload(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let (code, body) = node
        .multipart(method, path, &[], &[("doc", name, bytes)])
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_live_in_the_s3_bucket_when_s3_is_enabled() {
    let moto = start_moto().await;
    let created = reqwest::Client::new()
        .put(format!("{}/files", moto.url))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());

    let node = Node::start().await;
    let (code, body) = node
        .patch(
            "/api/settings",
            json!({"s3": {"enabled": true, "bucket": "files", "region": "us-east-1",
                "endpoint": moto.url, "accessKey": "key", "secret": "secret",
                "forcePathStyle": true}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(
        body["s3"].get("secret").is_none(),
        "the secret is never served"
    );
    node.create_collection(json!({
        "name": "docs", "listRule": "", "viewRule": "",
        "fields": [{"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 30_000_000}]
    }))
    .await;

    // Over the client's part size: goes up as a multipart upload.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let rec = upload(
        &node,
        reqwest::Method::POST,
        "/api/collections/docs/records",
        "big.bin",
        big.clone(),
    )
    .await;
    let (coll, id) = (
        rec["collectionId"].as_str().expect("c"),
        rec["id"].as_str().expect("id"),
    );
    let name = rec["doc"].as_str().expect("doc").to_string();
    let key = format!("{coll}/{id}/{name}");
    assert_eq!(
        object(&moto, &key).await,
        StatusCode::OK,
        "in the bucket under PocketBase's key"
    );
    assert!(
        !node.dir().join("storage").join(coll).exists(),
        "nothing stored locally"
    );

    let file_url = format!("{}/api/files/{coll}/{id}/{name}", node.url);
    let got = node.client.get(&file_url).send().await.expect("download");
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().await.expect("bytes") == big, "the same bytes");
    let part = node
        .client
        .get(&file_url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.expect("bytes").as_ref(), &big[100..200]);

    // Replaced: the old object leaves the bucket.
    let newer = upload(
        &node,
        reqwest::Method::PATCH,
        &format!("/api/collections/docs/records/{id}"),
        "small.txt",
        b"small".to_vec(),
    )
    .await;
    let new_key = format!("{coll}/{id}/{}", newer["doc"].as_str().expect("doc"));
    assert_eq!(object(&moto, &new_key).await, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(20);
    while object(&moto, &key).await != StatusCode::NOT_FOUND {
        assert!(
            Instant::now() < deadline,
            "the replaced object is still in the bucket"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = node
        .delete(&format!("/api/collections/docs/records/{id}"))
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while object(&moto, &new_key).await != StatusCode::NOT_FOUND {
        assert!(
            Instant::now() < deadline,
            "the deleted record's object is still in the bucket"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
