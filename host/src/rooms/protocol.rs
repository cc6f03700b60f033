//! What travels on room sockets: the client's JSON frames (parsed with clear errors), the
//! frames the server renders, close codes, and the node-to-node link's line format.
//!
//! Client → server: `join` (first frame), `send`, `presence.set`, `leave`.
//! Server → client: `joined`, `message`, `ack`, `presence`, `error`.
//! The link between an entry node and the owner carries the same frames, rendered once by
//! the owner and forwarded verbatim, tagged with which of the entry node's clients they are for.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Close codes (4000-4999 are the application's). Clients reconnect after `RECONNECT`,
/// `TOO_SLOW`, `UNAVAILABLE` and 1001; the others mean "do not retry as is".
pub mod close {
    /// The room's owner changed or was lost: reconnect and recover from your position.
    pub const RECONNECT: u16 = 4000;
    /// The client did not read its frames fast enough and was dropped: reconnect and recover.
    pub const TOO_SLOW: u16 = 4008;
    /// The first frame was not a valid `join`.
    pub const BAD_REQUEST: u16 = 4400;
    /// The token is invalid or expired.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The record's view rule refuses this client.
    pub const FORBIDDEN: u16 = 4403;
    /// No such collection or record.
    pub const NOT_FOUND: u16 = 4404;
    /// No owner could be reached in time: retry later.
    pub const UNAVAILABLE: u16 = 4503;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
}

/// Largest presence state, in bytes of JSON: every joiner receives every member's state in
/// one `sync` frame, so it stays small whatever `--room-max-payload` allows.
pub const MAX_PRESENCE: usize = 4096;

/// Longest client-chosen `ref` (echoed in the `ack` or `error` of a `send`), in bytes.
pub const MAX_REF: usize = 128;

/// Who a member is: its connection id and, when signed in, its auth record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    #[serde(rename = "clientId")]
    pub client_id: String,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "collectionName")]
    pub collection: Option<String>,
}

/// A position in a room's history: the offset of the last message seen and the epoch that
/// message was stamped in ("" for offset 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// A frame from a client, validated.
#[derive(Debug)]
pub enum ClientFrame {
    Join {
        token: Option<String>,
        since: Option<Position>,
        presence: Option<Box<RawValue>>,
    },
    Send {
        payload: Box<RawValue>,
        reference: Option<Box<RawValue>>,
    },
    PresenceSet {
        state: Box<RawValue>,
    },
    Leave,
}

/// Why a client frame was refused: `code` goes in the error frame, as does `message`.
#[derive(Debug, Clone)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    /// The `ref` of the refused send, when it had a readable one.
    pub reference: Option<Box<RawValue>>,
}

impl FrameError {
    fn bad(message: impl Into<String>) -> FrameError {
        FrameError {
            code: "bad_frame",
            message: message.into(),
            reference: None,
        }
    }

    fn with_ref(mut self, reference: &Option<Box<RawValue>>) -> FrameError {
        self.reference = reference.clone();
        self
    }
}

/// Every field any client frame may carry; which ones count depends on `type`.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(borrow)]
    state: Option<&'a RawValue>,
    #[serde(borrow)]
    presence: Option<&'a RawValue>,
    #[serde(borrow, rename = "ref")]
    reference: Option<&'a RawValue>,
    token: Option<String>,
    offset: Option<u64>,
    epoch: Option<String>,
}

/// A JSON object of at most `max` bytes, or why not.
fn object(raw: &RawValue, what: &str, max: usize) -> Result<Box<RawValue>, FrameError> {
    let text = raw.get();
    if text.len() > max {
        return Err(FrameError {
            code: "payload_too_large",
            message: format!("The {what} is {} bytes; the limit is {max}.", text.len()),
            reference: None,
        });
    }
    if !text.trim_start().starts_with('{') {
        return Err(FrameError::bad(format!(
            "The {what} must be a JSON object."
        )));
    }
    Ok(compact(raw))
}

/// `raw` without whitespace outside strings: frames are forwarded verbatim, one per line, so
/// a pretty-printed payload must lose its newlines (JSON strings cannot hold raw ones).
pub fn compact(raw: &RawValue) -> Box<RawValue> {
    let text = raw.get();
    if !text.bytes().any(|b| matches!(b, b'\n' | b'\r')) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for ch in text.chars() {
        if in_string {
            out.push(ch);
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if ch == '"' {
            in_string = true;
            out.push(ch);
        } else if !ch.is_ascii_whitespace() {
            out.push(ch);
        }
    }
    // Removing insignificant whitespace keeps the text valid JSON.
    RawValue::from_string(out).unwrap_or_else(|_| raw.to_owned())
}

impl ClientFrame {
    /// Parses one text frame; `max_payload` bounds a `send` payload (and a presence state,
    /// up to `MAX_PRESENCE`).
    pub fn parse(text: &str, max_payload: usize) -> Result<ClientFrame, FrameError> {
        let max_presence = max_payload.min(MAX_PRESENCE);
        let raw: RawFrame = serde_json::from_str(text)
            .map_err(|e| FrameError::bad(format!("Frames must be JSON objects: {e}.")))?;
        match raw.kind.as_deref() {
            Some("join") => {
                let since = match (raw.offset, raw.epoch) {
                    (None, _) => None,
                    (Some(offset), epoch) => Some(Position {
                        offset,
                        epoch: epoch.unwrap_or_default(),
                    }),
                };
                let presence = match raw.presence {
                    Some(p) if p.get() != "null" => {
                        Some(object(p, "presence state", max_presence)?)
                    }
                    _ => None,
                };
                Ok(ClientFrame::Join {
                    token: raw.token.filter(|t| !t.is_empty()),
                    since,
                    presence,
                })
            }
            Some("send") => {
                let reference = match raw.reference {
                    None => None,
                    Some(r) if r.get().len() > MAX_REF => {
                        return Err(FrameError::bad(format!(
                            "A ref is at most {MAX_REF} bytes of JSON."
                        )));
                    }
                    Some(r) => Some(compact(r)),
                };
                let payload = raw.payload.ok_or_else(|| {
                    FrameError::bad("A send needs a payload.").with_ref(&reference)
                })?;
                let payload =
                    object(payload, "payload", max_payload).map_err(|e| e.with_ref(&reference))?;
                Ok(ClientFrame::Send { payload, reference })
            }
            Some("presence.set") => {
                let state = raw
                    .state
                    .ok_or_else(|| FrameError::bad("presence.set needs a state object."))?;
                Ok(ClientFrame::PresenceSet {
                    state: object(state, "presence state", max_presence)?,
                })
            }
            Some("leave") => Ok(ClientFrame::Leave),
            Some(other) => Err(FrameError::bad(format!(
                "Unknown frame type {other:?}: use join, send, presence.set or leave."
            ))),
            None => Err(FrameError::bad("Frames need a \"type\".")),
        }
    }
}

/// An `error` frame; `reference` echoes the `ref` of the send it answers.
pub fn error_frame(code: &str, message: &str, reference: Option<&RawValue>) -> Arc<str> {
    let mut v = json!({"type": "error", "code": code, "message": message});
    if let Some(r) = reference
        && let Ok(r) = serde_json::from_str::<Value>(r.get())
    {
        v["ref"] = r;
    }
    Arc::from(v.to_string())
}

/// What an entry node asks of a room's owner for one of its clients.
#[derive(Debug)]
pub enum Up {
    Join {
        who: Who,
        since: Option<Position>,
        state: Option<Box<RawValue>>,
    },
    Send {
        cid: String,
        payload: Box<RawValue>,
        reference: Option<Box<RawValue>>,
    },
    State {
        cid: String,
        state: Box<RawValue>,
    },
    Leave {
        cid: String,
    },
}

/// `Up` on the wire: one JSON object per line.
#[derive(Serialize, Deserialize)]
struct UpWire {
    t: String,
    cid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    who: Option<Who>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Box<RawValue>>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<Box<RawValue>>,
}

impl Up {
    pub fn cid(&self) -> &str {
        match self {
            Up::Join { who, .. } => &who.client_id,
            Up::Send { cid, .. } | Up::State { cid, .. } | Up::Leave { cid } => cid,
        }
    }

    /// Appends this as one line of link text.
    pub fn encode(self, out: &mut String) {
        let cid = self.cid().to_string();
        let wire = match self {
            Up::Join { who, since, state } => UpWire {
                t: "join".into(),
                cid,
                who: Some(who),
                since,
                body: state,
                reference: None,
            },
            Up::Send {
                payload, reference, ..
            } => UpWire {
                t: "send".into(),
                cid,
                who: None,
                since: None,
                body: Some(payload),
                reference,
            },
            Up::State { state, .. } => UpWire {
                t: "state".into(),
                cid,
                who: None,
                since: None,
                body: Some(state),
                reference: None,
            },
            Up::Leave { .. } => UpWire {
                t: "leave".into(),
                cid,
                who: None,
                since: None,
                body: None,
                reference: None,
            },
        };
        // Serializing plain strings and raw JSON cannot fail.
        if let Ok(line) = serde_json::to_string(&wire) {
            out.push_str(&line);
            out.push('\n');
        }
    }

    /// Decodes one line of link text.
    pub fn decode(line: &str) -> Result<Up, String> {
        let w: UpWire = serde_json::from_str(line).map_err(|e| e.to_string())?;
        Ok(match w.t.as_str() {
            "join" => Up::Join {
                who: w.who.ok_or("join without who")?,
                since: w.since,
                state: w.body,
            },
            "send" => Up::Send {
                cid: w.cid,
                payload: w.body.ok_or("send without payload")?,
                reference: w.reference,
            },
            "state" => Up::State {
                cid: w.cid,
                state: w.body.ok_or("state without body")?,
            },
            "leave" => Up::Leave { cid: w.cid },
            other => return Err(format!("unknown link frame {other:?}")),
        })
    }
}

/// What an owner tells an entry node: frames for its clients, already rendered.
#[derive(Debug, Clone)]
pub enum Down {
    /// The client's join was accepted: deliver `frame`, then include it in broadcasts.
    Joined { cid: Arc<str>, frame: Arc<str> },
    /// A frame for one client.
    To { cid: Arc<str>, frame: Arc<str> },
    /// A frame for every joined client.
    Broadcast(Arc<str>),
    /// Close one client's socket with `code`.
    Kick {
        cid: Arc<str>,
        code: u16,
        reason: Arc<str>,
    },
}

impl Down {
    /// Appends this as one line of link text. Frames are compact JSON, so they hold no
    /// newline; client ids are alphanumeric.
    pub fn encode(&self, out: &mut String) {
        match self {
            Down::Joined { cid, frame } => {
                out.push('J');
                out.push_str(cid);
                out.push(' ');
                out.push_str(frame);
            }
            Down::To { cid, frame } => {
                out.push('T');
                out.push_str(cid);
                out.push(' ');
                out.push_str(frame);
            }
            Down::Broadcast(frame) => {
                out.push('B');
                out.push_str(frame);
            }
            Down::Kick { cid, code, reason } => {
                out.push('K');
                out.push_str(cid);
                out.push(' ');
                out.push_str(&code.to_string());
                out.push(' ');
                out.push_str(&reason.replace('\n', " "));
            }
        }
        out.push('\n');
    }

    /// Decodes one line of link text.
    pub fn decode(line: &str) -> Result<Down, String> {
        let bad = || {
            format!(
                "malformed link line {:?}",
                line.chars().take(40).collect::<String>()
            )
        };
        let (tag, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let split = |rest: &str| -> Result<(Arc<str>, Arc<str>), String> {
            let (cid, frame) = rest.split_once(' ').ok_or_else(bad)?;
            Ok((Arc::from(cid), Arc::from(frame)))
        };
        match tag {
            "J" => split(rest).map(|(cid, frame)| Down::Joined { cid, frame }),
            "T" => split(rest).map(|(cid, frame)| Down::To { cid, frame }),
            "B" => Ok(Down::Broadcast(Arc::from(rest))),
            "K" => {
                let (cid, rest) = rest.split_once(' ').ok_or_else(bad)?;
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                Ok(Down::Kick {
                    cid: Arc::from(cid),
                    code: code.parse().map_err(|_| bad())?,
                    reason: Arc::from(reason),
                })
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_bad_ones_say_why() {
        let f = ClientFrame::parse(
            r#"{"type":"join","offset":3,"epoch":"ab","token":"t"}"#,
            100,
        )
        .expect("join");
        assert!(matches!(
            f,
            ClientFrame::Join { token: Some(t), since: Some(Position { offset: 3, ref epoch }), .. }
                if t == "t" && epoch == "ab"
        ));
        let f =
            ClientFrame::parse(r#"{"type":"send","payload":{"a":1},"ref":7}"#, 100).expect("send");
        assert!(
            matches!(f, ClientFrame::Send { ref payload, .. } if payload.get() == r#"{"a":1}"#)
        );

        let err = |text: &str| ClientFrame::parse(text, 16).expect_err(text);
        assert_eq!(err("nope").code, "bad_frame");
        assert_eq!(err(r#"{"payload":{}}"#).code, "bad_frame");
        assert_eq!(err(r#"{"type":"dance"}"#).code, "bad_frame");
        assert_eq!(err(r#"{"type":"send"}"#).code, "bad_frame");
        assert_eq!(err(r#"{"type":"send","payload":"text"}"#).code, "bad_frame");
        let big = err(r#"{"type":"send","payload":{"text":"far too long for sixteen"}}"#);
        assert_eq!(big.code, "payload_too_large");
        assert!(big.message.contains("limit is 16"), "{}", big.message);
        assert_eq!(
            err(r#"{"type":"presence.set","state":[1]}"#).code,
            "bad_frame"
        );
    }

    #[test]
    fn link_lines_round_trip() {
        let downs = [
            Down::Joined {
                cid: "c1".into(),
                frame: r#"{"type":"joined"}"#.into(),
            },
            Down::To {
                cid: "c2".into(),
                frame: r#"{"a":"x y"}"#.into(),
            },
            Down::Broadcast(r#"{"type":"message"}"#.into()),
            Down::Kick {
                cid: "c3".into(),
                code: 4000,
                reason: "owner changed".into(),
            },
        ];
        let mut text = String::new();
        for d in &downs {
            d.encode(&mut text);
        }
        let back: Vec<String> = text
            .lines()
            .map(|l| format!("{:?}", Down::decode(l).expect("decode")))
            .collect();
        let want: Vec<String> = downs.iter().map(|d| format!("{d:?}")).collect();
        assert_eq!(back, want);

        let mut text = String::new();
        Up::Send {
            cid: "c1".into(),
            payload: RawValue::from_string(r#"{"k":"v\nw"}"#.into()).expect("raw"),
            reference: None,
        }
        .encode(&mut text);
        assert_eq!(text.lines().count(), 1, "one line per frame: {text}");
        let Up::Send { cid, payload, .. } = Up::decode(text.trim_end()).expect("decode") else {
            panic!("not a send");
        };
        assert_eq!((cid.as_str(), payload.get()), ("c1", r#"{"k":"v\nw"}"#));
        let pretty = RawValue::from_string("{\n \"a b\": [1, 2],\n \"c\": \"x\\\" y\"\n}".into())
            .expect("raw");
        assert_eq!(compact(&pretty).get(), r#"{"a b":[1,2],"c":"x\" y"}"#);
        assert!(Down::decode("Zwhat").is_err());
        assert!(Up::decode("{}").is_err());
    }
}
