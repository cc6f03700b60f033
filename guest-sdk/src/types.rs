//! Idiomatic Rust versions of the WIT types, independent of the generated
//! bindings so that plugin logic compiles and unit-tests natively.
//!
//! Record data stays JSON text until a plugin asks for it: a policy that only
//! compares clocks (last-writer-wins) never pays for parsing.

use serde_json::{Map, Value};

/// A JSON object: the fields of a record.
pub type Fields = Map<String, Value>;

/// What a change does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// Which way a change travels through a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A local write about to be published.
    Outbound,
    /// An event from the log about to be applied here.
    Inbound,
}

/// The current version of the record a resolver is asked about, as it stands in canonical
/// state (WIT `version`). It is the incoming change's record: the key (collection, id) is
/// given once, in the [`Change`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    /// The record as JSON object text; `None` for a tombstone.
    pub data: Option<String>,
    pub hlc: u64,
    pub origin: String,
}

/// One change to one record (WIT `change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub op: Op,
    pub collection: String,
    pub id: String,
    /// The whole record after the change as JSON object text; `None` for a delete.
    pub data: Option<String>,
    pub hlc: u64,
    pub origin: String,
    /// For an update, the previous value of every changed field (JSON object text).
    pub before: Option<String>,
}

/// Orders writes: HLC first, then origin node id. The larger stamp is the later write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp<'a> {
    pub hlc: u64,
    pub origin: &'a str,
}

/// Parses JSON object text; `None` when it is not a JSON object.
pub fn parse_fields(text: &str) -> Option<Fields> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

impl Version {
    /// True when this version is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.data.is_none()
    }

    /// The record's fields; `None` for a tombstone or data that is not a JSON object.
    pub fn fields(&self) -> Option<Fields> {
        self.data.as_deref().and_then(parse_fields)
    }

    /// This version's write stamp, for last-writer-wins comparisons.
    pub fn stamp(&self) -> Stamp<'_> {
        Stamp {
            hlc: self.hlc,
            origin: &self.origin,
        }
    }
}

impl Change {
    /// The record's fields after the change; `None` for a delete or bad data.
    pub fn fields(&self) -> Option<Fields> {
        self.data.as_deref().and_then(parse_fields)
    }

    /// The changed fields' previous values; `None` when unknown.
    pub fn before_fields(&self) -> Option<Fields> {
        self.before.as_deref().and_then(parse_fields)
    }

    /// This change's write stamp, for last-writer-wins comparisons.
    pub fn stamp(&self) -> Stamp<'_> {
        Stamp {
            hlc: self.hlc,
            origin: &self.origin,
        }
    }

    /// Replaces the record data with `fields` (serialized).
    pub fn set_fields(&mut self, fields: &Fields) {
        self.data = Some(Value::Object(fields.clone()).to_string());
    }
}

/// A resolver's answer (WIT `resolution`).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    KeepCurrent,
    TakeIncoming,
    /// A merged record.
    Merged(Fields),
    /// A merged record already serialized as JSON object text.
    MergedJson(String),
}

/// A filter's answer (WIT `verdict`).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Keep,
    Drop,
    /// Let this rewritten change through instead (only `data` and `before` may differ).
    Replace(Change),
}

/// What a snapshot policy is told (WIT `stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub events_since: u64,
    pub bytes_since: u64,
    pub ms_since: u64,
    pub stream_seq: u64,
    pub content_bytes: u64,
    pub snapshots: u32,
}

/// A snapshot policy's answer (WIT `decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Take a snapshot now.
    pub take: bool,
    /// How many snapshots to keep (0 = all).
    pub keep: u32,
}
