//! Bounded resources: a client cannot make a node hold unbounded memory, connections or
//! stuck sockets. Real binary, real sockets: oversized uploads are refused up front, the
//! outbound log stays under its byte bound, connections beyond the cap get a clear 503 while
//! health checks answer, the open-file limit is raised at start, and a consumer that never
//! reads is disconnected after the write timeout.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this test process's own soft open-file limit (it opens many sockets).
fn raise_own_nofile() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if let Some(hard) = now.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
}

fn addr(node: &Node) -> String {
    node.url.trim_start_matches("http://").to_string()
}

/// Sends a raw request on a new connection and returns it with what came back first: the
/// status line's code and everything read until `until` appeared (or the peer closed).
async fn raw_request(node: &Node, request: &str, until: &str) -> (TcpStream, u16, String) {
    let mut s = TcpStream::connect(addr(node)).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut text = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text.contains(until) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => panic!("no {until:?} within 20 s; got {text:?}"),
        }
    }
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (s, code, text)
}

const SSE: &str = "GET /api/realtime HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n";
const HEALTH: &str = "GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// A realtime client holding its connection open, past `PB_CONNECT`.
async fn sse_open(node: &Node) -> (TcpStream, u16, String) {
    raw_request(node, SSE, "PB_CONNECT").await
}

#[tokio::test]
async fn a_100_mib_multipart_upload_is_a_413() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let boundary = "XBOUNDARYX";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nbig\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.resize(body.len() + (100 << 20), b'x');
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (s, answer) = node
        .raw(
            Method::POST,
            "/api/collections/posts/records",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        answer,
        json!({"status": 413, "message": "Request entity too large.", "data": {}})
    );
    // A text field streamed without a declared length is cut at the limit, with the same answer.
    let chunks = futures::stream::iter(
        std::iter::once(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n"
        ))
        .chain(std::iter::repeat_n("y".repeat(1 << 20), 40))
        .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    );
    let resp = node
        .client
        .post(format!("{}/api/collections/posts/records", node.url))
        .header("Authorization", &node.token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(node.ids("posts", "").await.is_empty(), "nothing was stored");
}

/// Guests create large records; the outbound log keeps whole the newest that fit its byte
/// bound and, of a record larger than the bound, only its key.
#[tokio::test]
async fn the_outbound_log_stays_under_its_byte_bound() {
    let bound = 1 << 20;
    let node = Node::start_with(&["--outbound-log-bytes", &bound.to_string()]).await;
    node.create_collection(json!({"name": "blobs", "createRule": "",
        "fields": [{"name": "data", "type": "json", "maxSize": 8_000_000}]}))
        .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let (s, rec) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/blobs/records",
                Some(json!({"data": {"i": i, "pad": "p".repeat(300 << 10)}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{rec}");
        ids.push(rec["id"].clone());
    }
    let (s, huge) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/blobs/records",
            Some(json!({"data": {"pad": "h".repeat(3 << 20)}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{huge}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let (_, log) = node.get("/api/plugins/outbound").await;
        if log["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["id"] == huge["id"]))
        {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the outbound stage never logged: {log}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let items = log["items"].as_array().expect("items");
    let data_bytes: usize = items.iter().map(|i| i["data"].to_string().len()).sum();
    assert!(
        data_bytes <= bound,
        "the log keeps {data_bytes} bytes of records, over its bound of {bound}"
    );
    assert!(
        log["retainedBytes"]
            .as_u64()
            .is_some_and(|b| b <= bound as u64),
        "{}",
        log["retainedBytes"]
    );
    let last = items.last().expect("an item");
    assert_eq!(last["id"], huge["id"]);
    assert_eq!(
        (last["data"].clone(), last["truncated"].clone()),
        (Value::Null, json!(true))
    );
    // The newest records that fit are kept whole.
    let kept: Vec<&Value> = items.iter().filter(|i| i["data"].is_object()).collect();
    assert!(!kept.is_empty());
    assert_eq!(kept.last().map(|i| &i["id"]), ids.last());
    // `limit` asks for the newest events only (0: the counters alone).
    let (_, newest) = node.get("/api/plugins/outbound?limit=1").await;
    assert_eq!(newest["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(newest["items"][0]["id"], huge["id"]);
    let (_, counters) = node.get("/api/plugins/outbound?limit=0").await;
    assert_eq!(counters["items"], json!([]));
    assert!(
        counters["passed"].as_u64().is_some_and(|n| n >= 9),
        "{counters}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_a_503_while_health_answers() {
    let node = Node::start_with(&["--max-connections", "20"]).await;
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() < 40, "no connection was refused");
        let (s, code, text) = sse_open(&node).await;
        if code != 200 {
            break (code, text);
        }
        open.push(s);
    };
    assert!(open.len() <= 20, "{} connections were served", open.len());
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert!(
        refused.1.contains("too many open connections"),
        "{}",
        refused.1
    );
    assert!(refused.1.to_ascii_lowercase().contains("connection: close"));
    // Health checks still answer on a connection over the cap.
    let (_, code, text) = raw_request(&node, HEALTH, "API is healthy").await;
    assert_eq!(code, 200, "{text}");
    // Once connections close, new ones are served again.
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, code, _) = sse_open(&node).await;
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections were never served again"
        );
        // Poll interval: the server notices closed connections asynchronously.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node starts with a soft limit of 512 open files (a common service-manager default is
/// 1024): it raises it to the hard limit, so 1,100 realtime clients do not stop it accepting
/// connections and health checks answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_so_1100_sse_clients_leave_health_answering() {
    raise_own_nofile();
    let node = Node::start_with_soft_nofile(512, &[]).await;
    let pid = node.pid().expect("pid");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        nums[0], nums[1],
        "soft limit not raised to the hard one: {line}"
    );
    let mut clients = Vec::new();
    for _ in 0..22 {
        let batch = (0..50).map(|_| sse_open(&node));
        for (s, code, text) in futures::future::join_all(batch).await {
            assert_eq!(code, 200, "{text}");
            clients.push(s);
        }
    }
    assert_eq!(clients.len(), 1100);
    let (_, code, text) = raw_request(&node, HEALTH, "API is healthy").await;
    assert_eq!(code, 200, "{text}");
}

/// A realtime client that subscribes and then never reads: the node's writes to it stall, and
/// after the write timeout the connection is reset instead of staying established forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_is_disconnected_after_the_write_timeout() {
    let node = Node::start_with(&["--write-timeout", "2"]).await;
    node.create_collection(json!({"name": "blobs", "listRule": "", "createRule": "",
        "fields": [{"name": "data", "type": "json", "maxSize": 8_000_000}]}))
        .await;
    // A small receive buffer, so the socket fills after a few megabytes.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stuck = socket
        .connect(addr(&node).parse().expect("addr"))
        .await
        .expect("connect");
    stuck.write_all(SSE.as_bytes()).await.expect("write");
    let mut text = String::new();
    let mut buf = vec![0u8; 4096];
    while !text.contains("PB_CONNECT") {
        let n = stuck.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before PB_CONNECT");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let client_id = text
        .split("\"clientId\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("clientId")
        .to_string();
    let (s, body) = node
        .call_as(
            "",
            Method::POST,
            "/api/realtime",
            Some(json!({"clientId": client_id, "subscriptions": ["blobs/*"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    // About 12 MiB of events; the client reads none of them.
    for _ in 0..48 {
        let (s, body) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/blobs/records",
                Some(json!({"data": {"pad": "z".repeat(256 << 10)}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = stuck.take_error().expect("SO_ERROR") {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck consumer's connection is still established"
        );
        // Poll interval of the deadline-bounded wait for the reset.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = node.get("/api/health").await;
    assert_eq!(s, StatusCode::OK);
}
