//! A room's recent history as its owner holds it: the last N stamped messages, the room's
//! top position, and the rule deciding whether a client's `{offset, epoch}` can be recovered.
//! Also the encoding of history entries in the JetStream stream (a group of messages stamped
//! together). Pure: no I/O.
//!
//! Offsets count a room's messages from 1, without gaps, across owners. An epoch names one
//! owner's term: every takeover starts a new one. A client's position `{offset, epoch}` is
//! the last message it saw and the epoch that message was stamped in; it is recoverable when
//! the history still holds that very message (same offset, same epoch), or the one right
//! after it (whose entry records the epoch before it). Offset 0 means "saw nothing" and is
//! recoverable while the history still starts at offset 1. Anything else — the history was
//! trimmed past the position, or lost and restarted (offsets from 1 again under a new epoch)
//! — is reported as not recovered, never papered over.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One stamped message: its offset, its epoch, and the `message` frame clients receive.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub offset: u64,
    pub epoch: Arc<str>,
    pub frame: Arc<str>,
}

/// The retained tail of a room's history.
#[derive(Debug)]
pub struct Tail {
    cap: usize,
    msgs: VecDeque<Stamped>,
    /// Epoch of the message just before the first retained one ("" when that is offset 0).
    before_front: Arc<str>,
    top: u64,
    top_epoch: Arc<str>,
}

impl Tail {
    /// An empty history keeping up to `cap` messages.
    pub fn new(cap: usize) -> Tail {
        Tail {
            cap,
            msgs: VecDeque::with_capacity(cap.min(1024)),
            before_front: Arc::from(""),
            top: 0,
            top_epoch: Arc::from(""),
        }
    }

    /// The last offset stamped and its epoch.
    pub fn top(&self) -> (u64, &Arc<str>) {
        (self.top, &self.top_epoch)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Appends the next message (`offset` must be `top + 1`).
    pub fn push(&mut self, s: Stamped) {
        debug_assert_eq!(s.offset, self.top + 1, "offsets are contiguous");
        self.top = s.offset;
        self.top_epoch = s.epoch.clone();
        if self.cap == 0 {
            self.before_front = s.epoch;
            return;
        }
        self.msgs.push_back(s);
        while self.msgs.len() > self.cap {
            if let Some(old) = self.msgs.pop_front() {
                self.before_front = old.epoch;
            }
        }
    }

    /// Restarts the history after `offset` (stamped in `epoch`): what is retained begins
    /// right after it.
    fn restart_after(&mut self, offset: u64, epoch: Arc<str>) {
        self.msgs.clear();
        self.top = offset;
        self.top_epoch = epoch.clone();
        self.before_front = epoch;
    }

    /// The frames a client at `offset`/`epoch` missed, oldest first; `None` when they are
    /// not all retained, or the position is not one of this history's.
    pub fn recover(&self, offset: u64, epoch: &str) -> Option<Vec<Arc<str>>> {
        if offset > self.top {
            return None;
        }
        if offset == self.top {
            return (offset == 0 || *self.top_epoch == *epoch).then(Vec::new);
        }
        let front = self.msgs.front()?.offset;
        let from = if offset == 0 {
            (front == 1).then_some(0)?
        } else if offset + 1 < front {
            return None;
        } else if offset + 1 == front {
            (*self.before_front == *epoch).then_some(0)?
        } else {
            let i = usize::try_from(offset - front).ok()?;
            (*self.msgs.get(i)?.epoch == *epoch).then_some(i + 1)?
        };
        Some(
            self.msgs
                .iter()
                .skip(from)
                .map(|m| m.frame.clone())
                .collect(),
        )
    }

    /// Rebuilds the tail from the stream's entries of the room, oldest first. An entry that
    /// does not continue the one before restarts the history at it.
    pub fn load(cap: usize, entries: &[Entry]) -> Tail {
        let mut tail = Tail::new(cap);
        for e in entries {
            if e.first == 0 {
                continue;
            }
            if e.first != tail.top + 1 {
                tail.restart_after(e.first - 1, Arc::from(e.prev_epoch.as_str()));
            }
            let epoch: Arc<str> = Arc::from(e.epoch.as_str());
            for (i, m) in e.messages.iter().enumerate() {
                tail.push(Stamped {
                    offset: e.first + i as u64,
                    epoch: epoch.clone(),
                    frame: Arc::from(m.get()),
                });
            }
        }
        tail
    }
}

/// One history entry in the stream: messages `first..first+len` stamped in `epoch`, the
/// message before `first` having been stamped in `prev_epoch`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "e")]
    pub epoch: String,
    #[serde(rename = "pe")]
    pub prev_epoch: String,
    #[serde(rename = "o")]
    pub first: u64,
    /// The `message` frames, as clients receive them.
    #[serde(rename = "m")]
    pub messages: Vec<Box<RawValue>>,
}

/// Just enough of an entry to recognise it.
#[derive(Deserialize)]
struct EntryHead {
    #[serde(rename = "e")]
    epoch: String,
    #[serde(rename = "o")]
    first: u64,
}

impl Entry {
    pub fn decode(bytes: &[u8]) -> Result<Entry, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether `bytes` is the entry of `epoch` starting at `first`.
    pub fn is(bytes: &[u8], epoch: &str, first: u64) -> bool {
        serde_json::from_slice::<EntryHead>(bytes)
            .is_ok_and(|h| h.epoch == epoch && h.first == first)
    }
}

/// Encodes an entry from frames already rendered (no copy into `RawValue`s).
pub fn encode_entry(epoch: &str, prev_epoch: &str, first: u64, frames: &[Arc<str>]) -> Vec<u8> {
    let mut out = String::with_capacity(64 + frames.iter().map(|f| f.len() + 1).sum::<usize>());
    out.push_str(r#"{"e":"#);
    out.push_str(&serde_json::Value::from(epoch).to_string());
    out.push_str(r#","pe":"#);
    out.push_str(&serde_json::Value::from(prev_epoch).to_string());
    out.push_str(r#","o":"#);
    out.push_str(&first.to_string());
    out.push_str(r#","m":["#);
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(f);
    }
    out.push_str("]}");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(offset: u64, epoch: &str) -> Stamped {
        Stamped {
            offset,
            epoch: Arc::from(epoch),
            frame: Arc::from(format!(r#"{{"offset":{offset}}}"#)),
        }
    }

    fn offsets(frames: Option<Vec<Arc<str>>>) -> Option<Vec<u64>> {
        frames.map(|fs| {
            fs.iter()
                .map(|f| {
                    serde_json::from_str::<serde_json::Value>(f).expect("json")["offset"]
                        .as_u64()
                        .expect("offset")
                })
                .collect()
        })
    }

    #[test]
    fn positions_recover_exactly_what_was_missed() {
        let mut t = Tail::new(3);
        assert_eq!(offsets(t.recover(0, "")), Some(vec![]));
        for (o, e) in [(1, "a"), (2, "a"), (3, "b")] {
            t.push(stamp(o, e));
        }
        assert_eq!(offsets(t.recover(0, "")), Some(vec![1, 2, 3]));
        assert_eq!(offsets(t.recover(1, "a")), Some(vec![2, 3]));
        assert_eq!(offsets(t.recover(2, "a")), Some(vec![3]));
        assert_eq!(offsets(t.recover(3, "b")), Some(vec![]));
        // The same offset stamped in another epoch is another message: not ours to continue.
        assert_eq!(t.recover(2, "b"), None);
        assert_eq!(t.recover(3, "a"), None);
        // Ahead of the history: it was lost and restarted.
        assert_eq!(t.recover(4, "b"), None);

        t.push(stamp(4, "b"));
        t.push(stamp(5, "c"));
        // Retained: 3, 4, 5; the message before 3 was stamped in "a".
        assert_eq!(offsets(t.recover(2, "a")), Some(vec![3, 4, 5]));
        assert_eq!(t.recover(2, "z"), None);
        assert_eq!(t.recover(1, "a"), None, "trimmed away");
        assert_eq!(t.recover(0, ""), None, "offset 1 is gone");
    }

    #[test]
    fn loading_entries_keeps_offsets_and_epochs() {
        let frames = |from: u64, n: u64| -> Vec<Arc<str>> {
            (from..from + n)
                .map(|o| Arc::from(format!(r#"{{"offset":{o}}}"#)))
                .collect()
        };
        let entries: Vec<Entry> = [
            encode_entry("a", "", 1, &frames(1, 2)),
            encode_entry("b", "a", 3, &frames(3, 3)),
        ]
        .iter()
        .map(|b| Entry::decode(b).expect("decode"))
        .collect();
        assert!(Entry::is(&encode_entry("b", "a", 3, &frames(3, 1)), "b", 3));
        let t = Tail::load(4, &entries);
        assert_eq!((t.top().0, &**t.top().1), (5, "b"));
        assert_eq!(t.len(), 4);
        assert_eq!(offsets(t.recover(1, "a")), Some(vec![2, 3, 4, 5]));
        assert_eq!(offsets(t.recover(2, "a")), Some(vec![3, 4, 5]));

        // A history whose oldest entries were trimmed by the stream starts mid-way.
        let t = Tail::load(10, &entries[1..]);
        assert_eq!(t.top().0, 5);
        assert_eq!(offsets(t.recover(2, "a")), Some(vec![3, 4, 5]));
        assert_eq!(t.recover(0, ""), None);
    }
}
