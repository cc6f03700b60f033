//! An in-process TCP proxy standing in for one network link, which the harness can cut, slow
//! down and heal, in each direction separately — so partitions need no root and no network
//! namespaces.
//!
//! A *cut* direction behaves like a network that drops packets: bytes (and a closing FIN) sent
//! that way are held, not delivered and not refused, and new connections are accepted but never
//! reach the other side; both ends only notice through their own timeouts (NATS pings, Raft
//! heartbeats, request timeouts). Healing delivers what was held, in order, as TCP would after
//! retransmission. A *refused* link instead closes its connections and turns new ones away at
//! once, which makes a client move to another server. A *delay* holds every chunk for that long
//! before passing it on (a latency spike).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The state of one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Way {
    /// Hold everything sent this way.
    pub cut: bool,
    /// Extra latency of every chunk sent this way.
    pub delay: Duration,
}

/// Both directions: `out` is from the dialing side to the listening side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState {
    pub out: Way,
    pub back: Way,
    /// Close connections and refuse new ones.
    pub refused: bool,
}

/// One proxied link: listens on a loopback port, forwards to `upstream`.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<LinkState>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let (state, _) = watch::channel(LinkState::default());
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            state.subscribe(),
            conns.clone(),
        ));
        Proxy {
            addr,
            upstream,
            state,
            conns,
            accept,
        }
    }

    /// Where clients of this link connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Changes the link; held bytes move on as soon as their direction is healed.
    pub fn set(&self, f: impl FnOnce(&mut LinkState)) {
        let mut refused = false;
        self.state.send_modify(|s| {
            f(s);
            refused = s.refused;
        });
        if refused {
            self.reset();
        }
    }

    /// Heals both directions, removes delays and stops refusing.
    pub fn heal(&self) {
        self.state.send_replace(LinkState::default());
    }

    /// Closes every open connection (both ends see it closed).
    pub fn reset(&self) {
        for task in self.conns.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<LinkState>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if state.borrow().refused {
            drop(client);
            continue;
        }
        let task = tokio::spawn(connection(client, upstream, state.clone()));
        let mut list = conns.lock();
        list.retain(|t| !t.is_finished());
        list.push(task);
    }
}

/// One proxied connection: dials upstream once the outgoing direction lets the SYN through,
/// then pumps both ways.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<LinkState>,
) {
    // A connection attempt over a cut link hangs until the link heals (or the client gives up).
    if state.wait_for(|s| !s.out.cut && !s.refused).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let out = pump(cr, sw, state.clone(), |s| s.out);
    let back = pump(sr, cw, state, |s| s.back);
    // Either side failing ends the connection; a clean half-close lets the other side finish.
    tokio::join!(out, back);
}

/// Moves bytes one way: a reader task timestamps chunks, this task delivers each once its
/// direction is open and its delay has passed (so a delay adds latency, not a throughput cap).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<LinkState>,
    way: fn(&LinkState) -> Way,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    // Aborted with this future, so a reset closes the socket's read half too.
    let _reader = AbortOnDrop(tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now(), None));
                    return;
                }
                Ok(n) => {
                    if tx.send((Instant::now(), Some(buf[..n].to_vec()))).is_err() {
                        return;
                    }
                }
            }
        }
    }));
    while let Some((at, chunk)) = rx.recv().await {
        loop {
            let w = way(&state.borrow_and_update());
            if w.cut {
                if state.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let due = at + w.delay;
            if Instant::now() >= due {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => break,
                changed = state.changed() => if changed.is_err() { return; },
            }
        }
        match chunk {
            Some(bytes) => {
                if to.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            None => {
                let _ = to.shutdown().await;
                break;
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
