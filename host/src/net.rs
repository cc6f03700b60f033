//! The HTTP listener: every connection counted against `--max-connections`, every socket
//! write bounded by `--write-timeout`, and the process's open-file limit raised at start.
//!
//! A connection accepted beyond the cap is marked over capacity: it may ask for
//! `/api/health` (so probes keep answering when the node is full) and gets a 503 for anything
//! else, then it is closed; it also lives at most [`OVER_CAPACITY_LIFETIME`]. Beyond the cap
//! plus [`HEADROOM`] a connection is closed at once, so file descriptors never run out.
//! A socket whose peer stops reading (a stuck realtime consumer) fails its pending write after
//! the write timeout and is reset, instead of staying established forever.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// Connections accepted beyond the cap, for health checks and clear 503 answers.
pub const HEADROOM: usize = 64;
/// How long an over-capacity connection may stay open.
pub const OVER_CAPACITY_LIFETIME: Duration = Duration::from_secs(5);
/// File descriptors kept for everything but client connections (SQLite, NATS, plugins).
const RESERVED_FDS: u64 = 256;

/// Listener limits, from the config.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Concurrent client connections served normally.
    pub max_connections: usize,
    /// A write the peer does not drain for this long closes the connection.
    pub write_timeout: Duration,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            max_connections: 10_000,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Raises the soft open-file limit to the hard limit (as Go does for PocketBase), and returns
/// the soft limit in force afterwards (`None`: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return now.current;
    }
    let mut want = Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    if want.current.is_none() {
        // An unlimited hard limit cannot be the soft one on Linux: the kernel's ceiling is.
        want.current = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }
    match setrlimit(Resource::Nofile, want) {
        Ok(()) => {
            tracing::debug!(from = ?now.current, to = ?want.current, "raised the open-file limit");
            want.current
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = ?now.current, "could not raise the open-file limit");
            now.current
        }
    }
}

/// The connection cap that fits the open-file limit: at most `wanted`, leaving room for the
/// headroom and the node's own files.
pub fn fit_connections(wanted: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return wanted;
    };
    let room = limit.saturating_sub(RESERVED_FDS + HEADROOM as u64) as usize;
    if room < wanted {
        tracing::warn!(
            wanted,
            open_file_limit = limit,
            cap = room.max(1),
            "--max-connections lowered to fit the open-file limit"
        );
    }
    wanted.min(room).max(1)
}

/// What a handler can know about its connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// Accepted beyond `--max-connections`: health checks only.
    pub over_capacity: bool,
}

impl Connected<IncomingStream<'_, Listener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> ConnInfo {
        ConnInfo {
            remote: *stream.remote_addr(),
            over_capacity: stream.io().over_capacity,
        }
    }
}

/// Accepts connections for axum, counting them and wrapping each in a [`Conn`].
pub struct Listener {
    inner: TcpListener,
    live: Arc<AtomicUsize>,
    opts: NetOptions,
}

impl Listener {
    pub fn new(inner: TcpListener, opts: NetOptions) -> Listener {
        Listener {
            inner,
            live: Arc::new(AtomicUsize::new(0)),
            opts,
        }
    }

    /// Connections open now.
    pub fn live(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(s) => s,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            };
            let n = self.live.fetch_add(1, Ordering::SeqCst) + 1;
            let guard = Live(self.live.clone());
            if n > self.opts.max_connections + HEADROOM {
                // Not even a 503: keep the descriptors for the connections being served.
                let _ = stream.set_zero_linger();
                drop(stream);
                drop(guard);
                continue;
            }
            let over_capacity = n > self.opts.max_connections;
            if over_capacity {
                tracing::debug!(live = n, "connection over capacity");
            }
            let _ = stream.set_nodelay(true);
            return (
                Conn {
                    stream,
                    _live: guard,
                    over_capacity,
                    write_timeout: self.opts.write_timeout,
                    stalled: None,
                    expires: over_capacity
                        .then(|| Box::pin(tokio::time::sleep(OVER_CAPACITY_LIFETIME))),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    // Out of descriptors (EMFILE/ENFILE) or memory: wait a little for connections to close.
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Counts a live connection until dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client connection: the TCP stream with a write timeout and, over capacity, a lifetime.
pub struct Conn {
    stream: TcpStream,
    _live: Live,
    over_capacity: bool,
    write_timeout: Duration,
    /// Armed when a write could not proceed; firing fails the write.
    stalled: Option<Pin<Box<Sleep>>>,
    expires: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.expires
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    /// Turns a write that cannot proceed into an error once it has waited the write timeout.
    fn waited<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(timer.as_mut().poll(cx));
                // The peer stopped reading: reset the connection rather than leave its unsent
                // bytes in the kernel, and let hyper drop it.
                tracing::info!(
                    timeout_secs = timeout.as_secs(),
                    "a client stopped reading; closing its connection"
                );
                let _ = self.stream.set_zero_linger();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read for the write timeout",
                )))
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "over-capacity connection expired",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.waited(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.waited(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.stream).poll_flush(cx);
        self.waited(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.waited(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_nodes_own_files() {
        assert_eq!(fit_connections(10_000, None), 10_000);
        assert_eq!(fit_connections(10_000, Some(1_000_000)), 10_000);
        assert_eq!(fit_connections(10_000, Some(1024)), 1024 - 256 - 64);
        assert_eq!(fit_connections(10, Some(100)), 1);
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_fails_the_write_after_the_timeout() {
        use tokio::io::AsyncWriteExt;
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let mut listener = Listener::new(
            tcp,
            NetOptions {
                max_connections: 10,
                write_timeout: Duration::from_millis(200),
            },
        );
        let _peer = TcpStream::connect(addr).await.expect("connect");
        let (mut conn, _) = axum::serve::Listener::accept(&mut listener).await;
        assert_eq!(listener.live().load(Ordering::SeqCst), 1);
        let chunk = vec![b'x'; 1 << 20];
        let err = loop {
            if let Err(e) = conn.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(conn);
        assert_eq!(listener.live().load(Ordering::SeqCst), 0);
    }
}
