//! The cluster's log in JetStream: connecting, the one stream, publishing.
//!
//! One stream per cluster name (`SYNCBASE_<cluster>`, subject `syncbase.<cluster>.events`),
//! file storage, `min(3, servers)` replicas, interior deletes denied (the fold must see every
//! event; purging below a snapshot stays allowed), and a duplicate window so a publisher that
//! retries from its outbox with the same `Nats-Msg-Id` never lands an event twice.
//!
//! Order: the stream's sequence is the cluster's total order. Publishes from one connection
//! reach the stream in send order, but after a failure in the middle of a pipelined batch the
//! retried events can land after ones that were acknowledged; the fold therefore must not
//! assume per-origin order (each event's `base` and HLC carry what it needs).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::Context, stream};
use bytes::Bytes;

use super::consumer::{ConsumerOptions, EventConsumer};
use super::event::{Event, EventId};
use super::objects::PluginObjects;

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

/// Which stream, and how it must look.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The cluster name: names the stream, its subject and the object store bucket.
    pub cluster: String,
    /// Stream replicas; `None` takes `min(3, servers the connected server knows)`.
    pub replicas: Option<usize>,
    pub duplicate_window: Duration,
    /// How long to keep retrying while JetStream is not ready (a forming cluster has no
    /// meta leader for a few seconds).
    pub ready_timeout: Duration,
}

impl StreamOptions {
    pub fn new(cluster: impl Into<String>) -> StreamOptions {
        StreamOptions {
            cluster: cluster.into(),
            replicas: None,
            duplicate_window: Duration::from_secs(120),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid {what} {value:?}: use 1-64 characters from A-Z a-z 0-9 _ -")]
    InvalidName { what: &'static str, value: String },
    #[error("could not connect to NATS at {urls}: {message}")]
    Connect { urls: String, message: String },
    #[error("stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("stream {stream} exists with subjects {found:?}, expected [{expected:?}]")]
    StreamMismatch {
        stream: String,
        found: Vec<String>,
        expected: String,
    },
    #[error("publishing event {msg_id}: {message}")]
    Publish { msg_id: String, message: String },
    #[error("consumer {consumer}: {message}")]
    Consumer { consumer: String, message: String },
    #[error("plugin object store: {0}")]
    Objects(String),
}

/// The result of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The event's position in the total order.
    pub seq: u64,
    /// JetStream had this `Nats-Msg-Id` already (a retry): `seq` is the original's.
    pub duplicate: bool,
}

/// A pipelined batch that stopped at its first failure.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {} acknowledged)", acked.len())]
pub struct PipelineError {
    /// Acks of the batch's leading events, in order; the rest must be retried (the duplicate
    /// window makes retrying ones that did land harmless).
    pub acked: Vec<Published>,
    pub error: LogError,
}

/// An encoded event ready to publish, as an outbox row holds it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: EventId,
    pub payload: Bytes,
}

impl Outgoing {
    pub fn from_event(event: &Event) -> Outgoing {
        Outgoing {
            id: event.id.clone(),
            payload: Bytes::from(event.encode()),
        }
    }
}

/// The connected log: the stream exists and is configured.
#[derive(Clone)]
pub struct Log {
    client: async_nats::Client,
    js: Context,
    cluster: String,
    stream_name: String,
    subject: String,
    replicas: usize,
}

/// Connects to NATS with the given credentials and TLS settings.
pub async fn connect(opts: &ConnectOptions) -> Result<async_nats::Client, LogError> {
    let urls = opts.urls.join(",");
    let fail = |message: String| LogError::Connect {
        urls: urls.clone(),
        message,
    };
    let mut o = async_nats::ConnectOptions::new();
    if let Some(path) = &opts.creds_file {
        o = o
            .credentials_file(path)
            .await
            .map_err(|e| fail(format!("reading credentials {}: {e}", path.display())))?;
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
    let addrs = opts
        .urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    o.connect(addrs).await.map_err(|e| fail(e.to_string()))
}

/// Stream, consumer and bucket names are built from user-given names: keep them to what
/// every NATS name and subject token accepts.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), LogError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidName {
            what,
            value: value.to_string(),
        })
    }
}

impl Log {
    /// Connects and opens the log: [`connect`] then [`Log::open`].
    pub async fn connect(conn: &ConnectOptions, stream: &StreamOptions) -> Result<Log, LogError> {
        Log::open(connect(conn).await?, stream).await
    }

    /// Ensures the cluster's stream exists with the wanted configuration, waiting (up to
    /// `ready_timeout`) for JetStream to become available.
    pub async fn open(client: async_nats::Client, opts: &StreamOptions) -> Result<Log, LogError> {
        check_name("cluster name", &opts.cluster)?;
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(65_536)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let replicas = opts
            .replicas
            .unwrap_or_else(|| client.server_info().connect_urls.len())
            .clamp(1, 3);
        let log = Log {
            client,
            js,
            stream_name: format!("SYNCBASE_{}", opts.cluster),
            subject: format!("syncbase.{}.events", opts.cluster),
            cluster: opts.cluster.clone(),
            replicas,
        };
        let deadline = Instant::now() + opts.ready_timeout;
        loop {
            match log.ensure_stream(opts).await {
                Ok(()) => return Ok(log),
                Err(e @ LogError::StreamMismatch { .. }) => return Err(e),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "JetStream not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn ensure_stream(&self, opts: &StreamOptions) -> Result<(), LogError> {
        let fail = |e: &dyn std::fmt::Display| LogError::Stream {
            stream: self.stream_name.clone(),
            message: e.to_string(),
        };
        match self.js.get_stream(&self.stream_name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| fail(&e))?;
                let mut config = info.config.clone();
                if config.subjects != [self.subject.clone()] {
                    return Err(LogError::StreamMismatch {
                        stream: self.stream_name.clone(),
                        found: config.subjects,
                        expected: self.subject.clone(),
                    });
                }
                // Grow replicas as the cluster grows; never shrink a stream another node made
                // bigger because this node sees fewer servers right now.
                let mut changed = false;
                if config.num_replicas < self.replicas {
                    config.num_replicas = self.replicas;
                    changed = true;
                }
                if config.duplicate_window != opts.duplicate_window {
                    config.duplicate_window = opts.duplicate_window;
                    changed = true;
                }
                if changed {
                    self.js.update_stream(config).await.map_err(|e| fail(&e))?;
                }
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                let config = stream::Config {
                    name: self.stream_name.clone(),
                    description: Some(format!("Syncbase log of cluster {}", self.cluster)),
                    subjects: vec![self.subject.clone()],
                    storage: stream::StorageType::File,
                    retention: stream::RetentionPolicy::Limits,
                    discard: stream::DiscardPolicy::Old,
                    num_replicas: self.replicas,
                    duplicate_window: opts.duplicate_window,
                    deny_delete: true,
                    allow_direct: true,
                    ..Default::default()
                };
                match self.js.create_stream(config).await {
                    Ok(_) => Ok(()),
                    // Another node created it in the meantime: check it on the next round.
                    Err(e) => Err(fail(&e)),
                }
            }
            Err(e) => Err(fail(&e)),
        }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Whether the connection to NATS is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The replica count this node asked for.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub(crate) fn jetstream(&self) -> &Context {
        &self.js
    }

    /// The stream's state: last sequence and configured replicas.
    pub async fn state(&self) -> Result<StreamState, LogError> {
        let fail = |e: &dyn std::fmt::Display| LogError::Stream {
            stream: self.stream_name.clone(),
            message: e.to_string(),
        };
        let mut s = self
            .js
            .get_stream(&self.stream_name)
            .await
            .map_err(|e| fail(&e))?;
        let info = s.info().await.map_err(|e| fail(&e))?;
        Ok(StreamState {
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            messages: info.state.messages,
            replicas: info.config.num_replicas,
        })
    }

    /// Publishes one event and waits for JetStream's ack.
    pub async fn publish(&self, event: &Event) -> Result<Published, LogError> {
        self.publish_outgoing(Outgoing::from_event(event)).await
    }

    /// Publishes one encoded event (`Nats-Msg-Id` = its id) and waits for the ack.
    pub async fn publish_outgoing(&self, out: Outgoing) -> Result<Published, LogError> {
        let msg_id = out.id.to_string();
        let ack = self.send(out).await?;
        await_ack(&msg_id, ack).await
    }

    async fn send(&self, out: Outgoing) -> Result<jetstream::context::PublishAckFuture, LogError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(out.payload)
            .message_id(out.id.as_str());
        self.js
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(|e| LogError::Publish {
                msg_id: out.id.to_string(),
                message: e.to_string(),
            })
    }

    /// Publishes events in order keeping up to `in_flight` acks outstanding (a pipeline, not
    /// one round trip per event). Stops at the first failure and returns the acks received
    /// before it, in order.
    pub async fn publish_pipelined(
        &self,
        events: impl IntoIterator<Item = Outgoing>,
        in_flight: usize,
    ) -> Result<Vec<Published>, PipelineError> {
        let in_flight = in_flight.max(1);
        let mut pending: VecDeque<(String, jetstream::context::PublishAckFuture)> =
            VecDeque::with_capacity(in_flight);
        let mut acked = Vec::new();
        for out in events {
            if pending.len() >= in_flight
                && let Some((msg_id, ack)) = pending.pop_front()
            {
                match await_ack(&msg_id, ack).await {
                    Ok(p) => acked.push(p),
                    Err(error) => return Err(PipelineError { acked, error }),
                }
            }
            let msg_id = out.id.to_string();
            match self.send(out).await {
                Ok(ack) => pending.push_back((msg_id, ack)),
                Err(error) => {
                    // Acks already in flight still count if they arrive in order.
                    for (msg_id, ack) in pending {
                        match await_ack(&msg_id, ack).await {
                            Ok(p) => acked.push(p),
                            Err(_) => break,
                        }
                    }
                    return Err(PipelineError { acked, error });
                }
            }
        }
        for (msg_id, ack) in pending {
            match await_ack(&msg_id, ack).await {
                Ok(p) => acked.push(p),
                Err(error) => return Err(PipelineError { acked, error }),
            }
        }
        Ok(acked)
    }

    /// This node's durable consumer; see [`EventConsumer`].
    pub async fn consumer(
        &self,
        node_id: &str,
        opts: ConsumerOptions,
    ) -> Result<EventConsumer, LogError> {
        EventConsumer::open(self, node_id, opts).await
    }

    /// The plugin bytes bucket (`SYNCBASE_<cluster>_PLUGINS`), created if missing.
    pub async fn plugin_objects(&self) -> Result<PluginObjects, LogError> {
        PluginObjects::open(self).await
    }

    /// The cluster's presence bucket (nodes and the plugins each has compiled).
    pub async fn presence(&self, ttl: Duration) -> Result<super::presence::Presence, LogError> {
        super::presence::Presence::open(self, ttl).await
    }
}

/// A snapshot of the stream's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: u64,
    pub replicas: usize,
}

async fn await_ack(
    msg_id: &str,
    ack: jetstream::context::PublishAckFuture,
) -> Result<Published, LogError> {
    let ack = ack.await.map_err(|e| LogError::Publish {
        msg_id: msg_id.to_string(),
        message: e.to_string(),
    })?;
    Ok(Published {
        seq: ack.sequence,
        duplicate: ack.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("cluster name", "prod-eu_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", &"x".repeat(65)] {
            let err = check_name("cluster name", bad).expect_err(bad);
            assert!(err.to_string().contains("cluster name"), "{err}");
        }
    }
}
