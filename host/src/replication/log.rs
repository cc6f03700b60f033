//! The cluster's log in JetStream: the one stream, publishing, and where the node reads it from
//! (connecting is `connect.rs`).
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
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::Context, stream};
use bytes::Bytes;

use super::connect::{ConnectOptions, connect_choosing};
use super::consumer::{ConsumerOptions, EventConsumer};
use super::event::{Event, EventId};
use super::objects::PluginObjects;
use super::servers::ServerChoice;

/// How long a publish ack or a JetStream API call may take.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The servers were reached but refused us: wrong credentials or a TLS mismatch. Retrying
    /// with the same settings cannot succeed.
    #[error("NATS at {urls} refused the connection: {message}")]
    Refused { urls: String, message: String },
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
    /// Where reconnects go (`servers.rs`); its own when the client was not made by
    /// [`connect_choosing`].
    servers: ServerChoice,
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
        let (client, servers) = connect_choosing(conn).await?;
        Ok(Log::open(client, stream).await?.with_servers(servers))
    }

    /// Moves to another server through `servers`, the choice [`connect_choosing`] gave with
    /// this log's client.
    pub fn with_servers(mut self, servers: ServerChoice) -> Log {
        self.servers = servers;
        self
    }

    /// Ensures the cluster's stream exists with the wanted configuration, waiting (up to
    /// `ready_timeout`) for JetStream to become available.
    pub async fn open(client: async_nats::Client, opts: &StreamOptions) -> Result<Log, LogError> {
        check_name("cluster name", &opts.cluster)?;
        // Publish acks and API calls give up after 2 s (not 5): a stream without a leader
        // does not answer at all, and the publisher retries (deduplicated by event id) as soon
        // as one does.
        let js = jetstream::ContextBuilder::new()
            .timeout(PUBLISH_TIMEOUT)
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
            servers: ServerChoice::default(),
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

    /// Drops the current server connection and reconnects to another server, picked at random
    /// among the least-failed (`servers.rs`): a node attached to a server that cannot reach the
    /// stream (a minority partition, a server that lost its routes) moves to one that can.
    pub async fn switch_server(&self) {
        self.servers.leave();
        if let Err(e) = self.client.force_reconnect().await {
            tracing::debug!(error = %e, "forced reconnect");
        }
    }

    /// Whether the connection to NATS is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The name of the server the node is connected to (or was last).
    pub fn server_name(&self) -> String {
        self.client.server_info().server_name
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

    /// The stream's state: sequences, configured replicas and the servers holding them.
    pub async fn state(&self) -> Result<StreamState, LogError> {
        let fail = |e: &dyn std::fmt::Display| LogError::Stream {
            stream: self.stream_name.clone(),
            message: e.to_string(),
        };
        // `get_stream` answers with the stream's info: one request, not two.
        let s = self
            .js
            .get_stream(&self.stream_name)
            .await
            .map_err(|e| fail(&e))?;
        let info = s.cached_info();
        let (leader, mut servers) = match &info.cluster {
            Some(c) => (
                c.leader.clone(),
                c.replicas
                    .iter()
                    .map(|p| StreamPeer {
                        name: p.name.clone(),
                        current: p.current && !p.offline,
                    })
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        if let Some(l) = &leader {
            servers.insert(
                0,
                StreamPeer {
                    name: l.clone(),
                    current: true,
                },
            );
        }
        Ok(StreamState {
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            messages: info.state.messages,
            bytes: info.state.bytes,
            replicas: info.config.num_replicas,
            leader,
            servers,
        })
    }

    /// Every node's durable consumer (`node_<id>`) on the stream, with the last sequence the
    /// node acknowledged: nodes ack after their fold commits, so this is how far each one has
    /// applied the log, as the servers see it (a stopped node keeps its last position).
    pub async fn node_positions(&self) -> Result<Vec<NodePosition>, LogError> {
        use futures::TryStreamExt;
        let fail = |e: &dyn std::fmt::Display| LogError::Stream {
            stream: self.stream_name.clone(),
            message: e.to_string(),
        };
        let stream = self
            .js
            .get_stream(&self.stream_name)
            .await
            .map_err(|e| fail(&e))?;
        let mut consumers = stream.consumers();
        let mut out = Vec::new();
        while let Some(info) = consumers.try_next().await.map_err(|e| fail(&e))? {
            if let Some(node) = info.name.strip_prefix("node_") {
                out.push(NodePosition {
                    node_id: node.to_string(),
                    acked_seq: info.ack_floor.stream_sequence,
                    pending: info.num_pending,
                    waiting: info.num_waiting,
                });
            }
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(out)
    }

    /// Raises the replicas of the stream and of the plugin bucket towards three as the NATS
    /// cluster grows (never lowers them): tries 3, then fewer, and keeps the first the servers
    /// accept. A node sees only the servers that existed when it connected, so nodes that
    /// start together would otherwise settle on 1 or 2 copies. Returns the stream's replicas.
    pub async fn grow_replicas(&self) -> Result<usize, LogError> {
        if self.client.server_info().cluster.is_none() {
            // A standalone server cannot hold more than one copy.
            return Ok(1);
        }
        let mut result = 1;
        for name in [self.stream_name.clone(), self.objects_stream()] {
            let fail = |e: &dyn std::fmt::Display| LogError::Stream {
                stream: name.clone(),
                message: e.to_string(),
            };
            let stream = match self.js.get_stream(&name).await {
                Ok(s) => s,
                // The plugin bucket may not exist yet.
                Err(_) if name != self.stream_name => continue,
                Err(e) => return Err(fail(&e)),
            };
            let config = stream.cached_info().config.clone();
            let mut have = config.num_replicas;
            for want in (have + 1..=3).rev() {
                let mut grown = config.clone();
                grown.num_replicas = want;
                match self.js.update_stream(grown).await {
                    Ok(_) => {
                        tracing::info!(stream = %name, from = have, to = want, "stream replicas raised");
                        have = want;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(stream = %name, want, error = %e, "replicas not raised")
                    }
                }
            }
            if name == self.stream_name {
                result = have;
            }
        }
        Ok(result)
    }

    /// The stream behind the plugin Object Store bucket.
    fn objects_stream(&self) -> String {
        format!("OBJ_SYNCBASE_{}_PLUGINS", self.cluster)
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

    /// Publishes `event` only as the stream's first message (`Nats-Expected-Last-Sequence:
    /// 0`): `Ok(None)` when the stream already holds something. A retry of the same event
    /// after a lost ack is answered as a duplicate, with the original's sequence.
    pub async fn publish_first(&self, event: &Event) -> Result<Option<Published>, LogError> {
        let msg_id = event.id.to_string();
        let publish = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(event.encode()))
            .message_id(&msg_id)
            .expected_last_sequence(0);
        let fail = |e: &dyn std::fmt::Display| LogError::Publish {
            msg_id: msg_id.clone(),
            message: e.to_string(),
        };
        let ack = self
            .js
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(|e| fail(&e))?;
        match ack.await {
            Ok(ack) => Ok(Some(Published {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::PublishErrorKind::WrongLastSequence
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(fail(&e)),
        }
    }

    /// The event stored at `seq`, if the stream holds one there (`Ok(None)`: none, or not
    /// an event this build decodes).
    pub async fn event_at(&self, seq: u64) -> Result<Option<Event>, LogError> {
        let fail = |e: &dyn std::fmt::Display| LogError::Stream {
            stream: self.stream_name.clone(),
            message: e.to_string(),
        };
        let stream = self
            .js
            .get_stream_no_info(&self.stream_name)
            .await
            .map_err(|e| fail(&e))?;
        match stream.get_raw_message(seq).await {
            Ok(m) => Ok(Event::decode(&m.payload).ok()),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(fail(&e)),
        }
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

    /// The cluster's bucket of record files.
    pub async fn file_objects(&self) -> Result<super::FileObjects, LogError> {
        super::FileObjects::open(self).await
    }

    /// The cluster's presence bucket (nodes and the plugins each has compiled).
    pub async fn presence(&self, ttl: Duration) -> Result<super::presence::Presence, LogError> {
        super::presence::Presence::open(self, ttl).await
    }
}

/// One node's place in the log, from its durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePosition {
    pub node_id: String,
    /// Last stream sequence the node acknowledged (it acks after applying).
    pub acked_seq: u64,
    /// Stream messages not yet delivered to it.
    pub pending: u64,
    /// Pull requests it has waiting: more than zero while it is connected and idle.
    pub waiting: usize,
}

/// A snapshot of the stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamState {
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: u64,
    /// Stored size of the stream's messages.
    pub bytes: u64,
    pub replicas: usize,
    /// The server holding the stream's leader (clustered servers only).
    pub leader: Option<String>,
    /// The servers holding a copy, leader first, with whether each is current.
    pub servers: Vec<StreamPeer>,
}

/// One server holding a copy of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPeer {
    pub name: String,
    pub current: bool,
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
