//! Replication foundations: the HLC, the log event and its encoding, and the JetStream log
//! (stream, publish, per-node consumer, plugin object store). With `nats/`, the only code that
//! touches async-nats. Nothing here opens SQLite: the store calls in, never the reverse.
//!
//! `sync/` wires these pieces into `syncbase serve --sync`, following the replication model in
//! DESIGN.md:
//!
//! ```text
//!  writer job (store/writer.rs, one savepoint)            publisher task
//!  ┌──────────────────────────────────────────┐          ┌─────────────────────────────────┐
//!  │ validate → INSERT/UPDATE/DELETE rows      │          │ loop: read outbox rows in id     │
//!  │ hlc = clock.now()                         │ COMMIT   │ order (bounded batch) →          │
//!  │ event = Event{id: EventId::random(), …,   │ ───────▶ │ Log::publish_pipelined(batch, N) │
//!  │   data: row as stored, base: row's        │ notify   │ → DELETE acked prefix (writer    │
//!  │   version, before: old changed fields}    │          │ job) → on error back off, retry: │
//!  │ outbound filter (drop / rewrite)          │          │ same ids ⇒ Nats-Msg-Id dedup     │
//!  │ INSERT INTO _outbox(id, bytes)            │          └───────────────┬─────────────────┘
//!  └──────────────────────────────────────────┘                          │ JetStream stream
//!                                                                         ▼ (total order)
//!  apply task (one per node)                                 EventConsumer (durable
//!  ┌──────────────────────────────────────────┐ ◀─────────── node_<id>, resume_after =
//!  │ collect deliveries (up to B, or until the │               _replication.applied_seq)
//!  │ consumer is idle) → ONE writer job:       │
//!  │   for each in seq order: inbound filter → │
//!  │   decode error / invalid ⇒ _dead_letters  │
//!  │   schema / binding events ⇒ apply schema  │
//!  │   record events: base == current version? │
//!  │     apply as stored : resolver(current,   │
//!  │     incoming) (LWW by HLC, node id)       │
//!  │   clock.observe(event.hlc)                │
//!  │   UPDATE _replication SET applied_seq=seq │
//!  │ COMMIT → ack each delivery → drop own     │
//!  │ events from the read-your-writes overlay  │
//!  └──────────────────────────────────────────┘
//! ```
//!
//! * **Outbox, same job.** The outbox row is written by the writer job that makes the change,
//!   so the change and its event commit or roll back together; capture never depends on
//!   timing or a global "applying" flag. Events carry stored values (hashes, `tokenKey`,
//!   autodates, ids), never inputs.
//! * **Publisher.** Drains the outbox in order with [`log::Log::publish_pipelined`]
//!   (`Nats-Msg-Id` = event id, N acks in flight) and deletes the acknowledged prefix. While
//!   NATS is down, writes keep committing locally and the backlog (outbox row count) grows; a
//!   retry after an outage republishes the same ids and JetStream's duplicate window (2 min)
//!   absorbs the ones that had landed. A backlog older than the window could duplicate — the
//!   fold then sees the same event id twice and must treat the second as a no-op (keep a
//!   per-record "version = event id" so a repeat is recognisable).
//! * **Consumer.** [`consumer::EventConsumer`] yields `(seq, event)` strictly in stream order,
//!   each once per session, resuming after the `applied_seq` read from SQLite at startup.
//! * **Apply.** One writer job per batch applies events in order and stores the batch's last
//!   sequence in the same transaction; acks go out only after COMMIT. A crash between COMMIT
//!   and ack just redelivers events at or below `applied_seq`, which the consumer skips after
//!   it is reopened with `resume_after = applied_seq`. An event that does not decode or apply
//!   is written to a dead-letter table with its reason and the fold continues — identically on
//!   every node, because the same bytes fail the same way.
//! * **Clock.** One [`hlc::Clock`] per node, resumed at startup from the largest HLC in the
//!   applied state; every applied event is `observe`d so local writes order after what the
//!   node has seen.
//! * **Plugins.** Bytes go to [`objects::PluginObjects`] (sha256-named) before the binding
//!   event is published; the apply task fetches them (waiting if absent) before applying it.
//! * **Embedded mode.** `crate::nats::EmbeddedNats` gives a client URL; everything above
//!   connects to it exactly as to an external cluster.

pub mod connect;
pub mod consumer;
pub mod event;
pub mod files;
pub mod hlc;
pub mod intent;
pub mod log;
pub mod objects;
pub mod presence;
pub mod rooms;
pub mod servers;
pub mod snapshots;
pub mod tip;

pub use connect::{ConnectOptions, connect, connect_choosing};
pub use consumer::{ConsumerOptions, Delivery, EventConsumer};
pub use event::{CollectionRef, DecodeError, Event, EventId, EventKind, FileRef};
pub use files::FileObjects;
pub use hlc::{Clock, Hlc};
pub use log::{
    Log, LogError, NodePosition, Outgoing, PipelineError, Published, StreamOptions, StreamPeer,
    StreamState,
};
pub use objects::{PluginObjects, sha256_hex};
pub use presence::{NodeState, Presence};
pub use rooms::{Appended, HistoryEntry, LeaseEntry, RoomLog, RoomLogOptions};
pub use snapshots::{Progress, SnapshotStore, Stored, StreamUsage};
