//! The log event: one change in the cluster's total order, and its wire encoding.
//!
//! # Encoding (why binary envelope + JSON payload)
//!
//! Byte 0 is the format version ([`FORMAT_VERSION`]); a node refuses versions it does not know
//! with [`DecodeError::UnknownVersion`], so the format can evolve by bumping it. Version 1 is a
//! compact binary envelope — fixed-order fields, LEB128 varints, length-prefixed UTF-8 strings,
//! one tag byte per optional field, HLC as 8 big-endian bytes — around the record values, which
//! travel as JSON object text:
//!
//! ```text
//! u8 version=1 | u8 kind | str id | str origin | u64be hlc | str collection_id
//! | str collection_name | opt<str> record_id | opt<str> base | varint schema_version
//! | varint plugin_version | opt<json> data | opt<json> before
//! ```
//!
//! * The envelope is what every node reads for every event (routing, dedup, conflict checks),
//!   so it is binary: decoding is a bounds-checked walk with no allocation beyond the strings,
//!   and every malformed input maps to a precise [`DecodeError`] naming the field.
//! * Record values stay JSON because that is what they are everywhere else: the store keeps
//!   PocketBase's JSON values, and resolver and filter plugins receive record data as JSON text
//!   through the WIT interface. A second binary value encoding would be one more place for a
//!   field type to round-trip wrongly (the prior art lost multi-relation arrays and autodates).
//!   The data map is the record *exactly as stored* — id, autodates, `tokenKey`, the password
//!   hash — and applying it never regenerates or re-hashes anything.
//!
//! Decoding never panics; an event a node cannot decode is a value (the caller dead-letters it
//! with the error text, identically on every node).

use std::fmt;

use rand::Rng;
use serde_json::{Map, Value};

use super::hlc::Hlc;

/// The format version written by [`Event::encode`] for events without file references;
/// events that reference files are written as version 2 (version 1 followed by the
/// references), so nodes that never see files never need to read version 2.
pub const FORMAT_VERSION: u8 = 1;

/// The format version of events that reference stored files.
pub const FILES_FORMAT_VERSION: u8 = 2;

/// A stored file a record event references: the bytes travel by `sha256` through the
/// cluster's file bucket, never inside the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The stored name (as in the record's file field).
    pub name: String,
    /// Lowercase hex sha256 of the bytes: the object's name in the bucket.
    pub sha256: String,
    pub size: u64,
    /// The type detected when the file was uploaded.
    pub mime: String,
}

/// Longest accepted event id (it is also the `Nats-Msg-Id` header value).
pub const MAX_ID_LEN: usize = 64;

/// A globally unique event id, safe as a `Nats-Msg-Id` header value: 1–64 printable ASCII
/// characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(String);

impl EventId {
    /// 20 characters from `[0-9a-z]`: the wall-clock millisecond in 9 base-36 digits, then 11
    /// random ones (~57 bits). Unique without coordination or persisted counters (a node that
    /// restores from a backup cannot reuse an id), and roughly time-ordered, so the tables
    /// keyed by event id (`_sync_seen`) grow at their end instead of touching a random page
    /// per event.
    pub fn random() -> EventId {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        EventId::at(ms)
    }

    fn at(ms: u64) -> EventId {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut id = String::with_capacity(20);
        for i in (0..9).rev() {
            let digit = (ms / 36u64.pow(i)) % 36;
            id.push(char::from(ALPHABET[digit as usize]));
        }
        let mut rng = rand::rng();
        id.extend((0..11).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])));
        EventId(id)
    }

    /// Validates an id read from storage or the wire.
    pub fn parse(s: &str) -> Result<EventId, InvalidId> {
        if s.is_empty() || s.len() > MAX_ID_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidId(s.chars().take(80).collect()));
        }
        Ok(EventId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {0:?}: want 1-64 printable ASCII characters without spaces")]
pub struct InvalidId(pub String);

/// What an event does. The discriminants are the wire values: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    RecordCreate = 1,
    RecordUpdate = 2,
    RecordDelete = 3,
    CollectionCreate = 4,
    CollectionUpdate = 5,
    CollectionDelete = 6,
    /// A whole-schema import; `data` holds the imported collections.
    CollectionImport = 7,
    /// A resolver/filter plugin bound to (or unbound from) a collection; `data` names the
    /// plugin by sha256 so nodes fetch the bytes from the object store first.
    PluginBinding = 8,
    /// A plugin version registered (uploaded) or deleted cluster-wide; `data` holds
    /// `{"op": "upload", name, sha256, ...metadata}` or `{"op": "delete", name, version?}`.
    /// The fold numbers versions, so every node lists the same versions.
    PluginRegistry = 9,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::RecordCreate,
        EventKind::RecordUpdate,
        EventKind::RecordDelete,
        EventKind::CollectionCreate,
        EventKind::CollectionUpdate,
        EventKind::CollectionDelete,
        EventKind::CollectionImport,
        EventKind::PluginBinding,
        EventKind::PluginRegistry,
    ];

    pub fn from_u8(b: u8) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| *k as u8 == b)
    }

    pub fn is_record(self) -> bool {
        matches!(
            self,
            EventKind::RecordCreate | EventKind::RecordUpdate | EventKind::RecordDelete
        )
    }
}

/// A collection named by both its id (stable everywhere) and its name (for humans and
/// filters; it can change with a rename).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionRef {
    pub id: String,
    pub name: String,
}

/// One change in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id; also the `Nats-Msg-Id`, so republishing from the outbox dedupes.
    pub id: EventId,
    /// The node that wrote it.
    pub origin: String,
    /// The writer's HLC at the write: last-writer-wins order and the only time plugins see.
    pub hlc: Hlc,
    pub kind: EventKind,
    pub collection: CollectionRef,
    /// The record's id for record events; `None` for schema and plugin events.
    pub record_id: Option<String>,
    /// The record exactly as stored after the change (for deletes: as it was), or the
    /// collection / import / binding definition. Every stored field, autodates, `tokenKey`
    /// and password hash included.
    pub data: Option<Map<String, Value>>,
    /// Old values of the fields this change modified (`change.before` for resolvers).
    pub before: Option<Map<String, Value>>,
    /// The id of the event that produced the version the writer saw (`None`: the writer saw
    /// no record). The fold compares it with the current canonical version to detect
    /// concurrent writes.
    pub base: Option<EventId>,
    /// The writer's schema version (how many schema events its canonical state had folded).
    pub schema_version: u64,
    /// The version of the collection's plugin binding the writer had.
    pub plugin_version: u64,
    /// The stored files the record data names (every one, not only new uploads), so a node
    /// can fetch what it lacks before it applies the event.
    pub files: Vec<FileRef>,
}

/// Why bytes are not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty event")]
    Empty,
    #[error("unknown event format version {0} (this node reads version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("event truncated while reading {0}")]
    Truncated(&'static str),
    #[error("invalid varint in {0}")]
    BadVarint(&'static str),
    #[error("invalid option tag {tag} for {field}")]
    BadTag { field: &'static str, tag: u8 },
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("{field} is not a JSON object: {message}")]
    Json {
        field: &'static str,
        message: String,
    },
    #[error("{field}: {source}")]
    Id {
        field: &'static str,
        source: InvalidId,
    },
    #[error("{0} is empty")]
    EmptyField(&'static str),
    #[error("record event without a record id")]
    MissingRecordId,
    #[error("{0} trailing bytes after the event")]
    TrailingBytes(usize),
}

/// A JSON error described without the values it quotes: serde_json names the offending value
/// (`invalid type: string "$2a$10$…"`), and decode errors end up in dead letters that the
/// status API shows, so record data (a password hash) must not leak through them. Field names
/// are schema, not data, and are kept.
pub fn json_error_without_values(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let keeps_no_value = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| text.starts_with(p));
    match e.classify() {
        Category::Data if !keeps_no_value => format!(
            "a value has the wrong type or is invalid at line {} column {}",
            e.line(),
            e.column()
        ),
        _ => text,
    }
}

impl Event {
    /// The `Nats-Msg-Id` for this event.
    pub fn msg_id(&self) -> &str {
        self.id.as_str()
    }

    /// Encodes with the current [`FORMAT_VERSION`].
    pub fn encode(&self) -> Vec<u8> {
        let data = self.data.as_ref().map(json_text);
        let before = self.before.as_ref().map(json_text);
        let mut out = Vec::with_capacity(
            64 + self.origin.len()
                + self.collection.id.len()
                + self.collection.name.len()
                + data.as_ref().map_or(0, Vec::len)
                + before.as_ref().map_or(0, Vec::len),
        );
        out.push(if self.files.is_empty() {
            FORMAT_VERSION
        } else {
            FILES_FORMAT_VERSION
        });
        out.push(self.kind as u8);
        put_bytes(&mut out, self.id.as_str().as_bytes());
        put_bytes(&mut out, self.origin.as_bytes());
        out.extend_from_slice(&self.hlc.0.to_be_bytes());
        put_bytes(&mut out, self.collection.id.as_bytes());
        put_bytes(&mut out, self.collection.name.as_bytes());
        put_opt(&mut out, self.record_id.as_deref().map(str::as_bytes));
        put_opt(&mut out, self.base.as_ref().map(|b| b.as_str().as_bytes()));
        put_varint(&mut out, self.schema_version);
        put_varint(&mut out, self.plugin_version);
        put_opt(&mut out, data.as_deref());
        put_opt(&mut out, before.as_deref());
        if !self.files.is_empty() {
            put_varint(&mut out, self.files.len() as u64);
            for f in &self.files {
                put_bytes(&mut out, f.name.as_bytes());
                put_bytes(&mut out, f.sha256.as_bytes());
                put_varint(&mut out, f.size);
                put_bytes(&mut out, f.mime.as_bytes());
            }
        }
        out
    }

    /// Decodes any format version this node knows.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match version {
            1 => decode_v1(rest, false),
            2 => decode_v1(rest, true),
            other => Err(DecodeError::UnknownVersion(other)),
        }
    }
}

fn json_text(map: &Map<String, Value>) -> Vec<u8> {
    // Serializing a map of `Value`s cannot fail (keys are strings, no custom Serialize).
    serde_json::to_vec(map).unwrap_or_else(|_| b"{}".to_vec())
}

/// Version 1, and with `files` version 2 (version 1 followed by the file references).
fn decode_v1(bytes: &[u8], files: bool) -> Result<Event, DecodeError> {
    let mut r = Reader { bytes };
    let kind_byte = r.byte("kind")?;
    let kind = EventKind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    let id = r.id("id")?;
    let origin = r.str("origin")?;
    if origin.is_empty() {
        return Err(DecodeError::EmptyField("origin"));
    }
    let hlc = Hlc(u64::from_be_bytes(r.array::<8>("hlc")?));
    let collection = CollectionRef {
        id: r.str("collection id")?,
        name: r.str("collection name")?,
    };
    let record_id = r.opt("record id", |r| r.str("record id"))?;
    let base = r.opt("base", |r| r.id("base"))?;
    let schema_version = r.varint("schema version")?;
    let plugin_version = r.varint("plugin version")?;
    let data = r.opt("data", |r| r.json("data"))?;
    let before = r.opt("before", |r| r.json("before"))?;
    let files = if files { r.files()? } else { Vec::new() };
    if !r.bytes.is_empty() {
        return Err(DecodeError::TrailingBytes(r.bytes.len()));
    }
    if kind.is_record() && record_id.as_deref().is_none_or(str::is_empty) {
        return Err(DecodeError::MissingRecordId);
    }
    Ok(Event {
        id,
        origin,
        hlc,
        kind,
        collection,
        record_id,
        data,
        before,
        base,
        schema_version,
        plugin_version,
        files,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// A bounds-checked cursor: every read names its field so errors say where input broke.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte(field)?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && bits > 1 {
                return Err(DecodeError::BadVarint(field));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint(field))
    }

    fn raw(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(field)?;
        // The length is checked against what is left before anything is allocated.
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(field))?;
        self.take(len, field)
    }

    fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.raw(field)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8(field))
    }

    fn id(&mut self, field: &'static str) -> Result<EventId, DecodeError> {
        EventId::parse(&self.str(field)?).map_err(|source| DecodeError::Id { field, source })
    }

    fn json(&mut self, field: &'static str) -> Result<Map<String, Value>, DecodeError> {
        let raw = self.raw(field)?;
        serde_json::from_slice(raw).map_err(|e| DecodeError::Json {
            field,
            message: json_error_without_values(&e),
        })
    }

    fn files(&mut self) -> Result<Vec<FileRef>, DecodeError> {
        let n = self.varint("files")?;
        // Each reference takes at least four bytes: a count beyond that is damage, refused
        // before anything is allocated for it.
        if n > (self.bytes.len() / 4) as u64 {
            return Err(DecodeError::Truncated("files"));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = self.str("file name")?;
            let sha256 = self.str("file sha256")?;
            if sha256.len() != 64
                || !sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(DecodeError::EmptyField("file sha256"));
            }
            let size = self.varint("file size")?;
            let mime = self.str("file type")?;
            out.push(FileRef {
                name,
                sha256,
                size,
                mime,
            });
        }
        Ok(out)
    }

    fn opt<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.byte(field)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(DecodeError::BadTag { field, tag }),
        }
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "event_fuzz.rs"]
mod fuzz;
