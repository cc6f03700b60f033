//! What a plugin call gives back: always a value, and who decided it.
//!
//! A call that fails (trap, fuel, memory cap, malformed output) yields the
//! built-in default, chosen by the same rule on every node, and says why. The
//! built-in defaults: last-writer-wins for resolvers (HLC, then origin node id),
//! `keep` for filters, "no snapshot, delete none" for snapshot policies.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::registry::PluginVersion;
use crate::types::{Change, Decision, Resolution, Verdict, Version};

/// Why a plugin call did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum CallFailure {
    /// The call used its whole fuel budget (e.g. an endless loop).
    OutOfFuel,
    /// A linear memory tried to grow past the memory cap.
    MemoryCap { desired: u64, cap: u64 },
    /// The call exhausted the wasm stack limit.
    StackOverflow,
    /// The plugin trapped (a Rust panic is an `unreachable` trap).
    Trap(String),
    /// The plugin answered, but the answer is unusable (e.g. a merged record
    /// that is not a JSON object).
    Malformed(String),
    /// The plugin returned an error instead of an answer: the message its
    /// author wrote, or, from the Python and JavaScript SDKs, an uncaught
    /// exception with its traceback. Deterministic, like a trap.
    Raised(String),
    /// `configure` returned an error for this binding's configuration.
    Configure(String),
    /// The component could not be instantiated (its start function or its
    /// set-up trapped, or its imports do not link): the plugin's fault, the
    /// same on every node.
    Instantiate(String),
    /// This node could not provide an instance (every pool slot is in use
    /// even after idle instances were dropped): not the plugin's fault and not
    /// the same on every node, so callers that must agree with other nodes
    /// retry instead of applying the default ([`CallFailure::is_node_fault`]).
    Unavailable(String),
}

impl CallFailure {
    /// A short stable name, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            CallFailure::OutOfFuel => "out-of-fuel",
            CallFailure::MemoryCap { .. } => "memory-cap",
            CallFailure::StackOverflow => "stack-overflow",
            CallFailure::Trap(_) => "trap",
            CallFailure::Malformed(_) => "malformed",
            CallFailure::Raised(_) => "raised",
            CallFailure::Configure(_) => "configure",
            CallFailure::Instantiate(_) => "instantiate",
            CallFailure::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the failure comes from this node's resources rather than from
    /// the plugin and its inputs: another node (or this one, later) may get an
    /// answer from the plugin, so a deterministic caller must not apply the
    /// default in its place.
    pub fn is_node_fault(&self) -> bool {
        matches!(self, CallFailure::Unavailable(_))
    }
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::OutOfFuel => f.write_str("ran out of fuel"),
            CallFailure::MemoryCap { desired, cap } => write!(
                f,
                "tried to grow memory to {desired} bytes, over the {cap}-byte cap"
            ),
            CallFailure::StackOverflow => f.write_str("exhausted the wasm stack"),
            CallFailure::Trap(t) => write!(f, "trapped: {t}"),
            CallFailure::Malformed(m) => write!(f, "returned a malformed answer: {m}"),
            CallFailure::Raised(m) => write!(f, "raised an error: {m}"),
            CallFailure::Configure(m) => write!(f, "refused its configuration: {m}"),
            CallFailure::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
            CallFailure::Unavailable(m) => write!(f, "had no instance on this node: {m}"),
        }
    }
}

/// Who decided an [`Outcome`].
#[derive(Debug, Clone, PartialEq)]
pub enum DecidedBy {
    /// No plugin is bound: the built-in default.
    Default,
    /// The bound plugin answered.
    Plugin(Arc<PluginVersion>),
    /// The bound plugin failed; the built-in default was applied instead.
    Fallback {
        plugin: Arc<PluginVersion>,
        failure: CallFailure,
    },
}

/// The answer of a plugin call, with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    pub value: T,
    pub decided_by: DecidedBy,
}

impl<T> Outcome<T> {
    pub(crate) fn by_default(value: T) -> Self {
        Outcome {
            value,
            decided_by: DecidedBy::Default,
        }
    }

    /// The failure, when the plugin failed and the default was applied.
    pub fn failure(&self) -> Option<&CallFailure> {
        match &self.decided_by {
            DecidedBy::Fallback { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// The built-in resolver: the later write wins, by HLC then origin node id.
pub fn default_resolution(current: &Version, incoming: &Change) -> Resolution {
    if (incoming.hlc, incoming.origin.as_str()) > (current.hlc, current.origin.as_str()) {
        Resolution::TakeIncoming
    } else {
        Resolution::KeepCurrent
    }
}

/// The built-in filter verdict: keep.
pub fn default_verdict() -> Verdict {
    Verdict::Keep
}

/// The built-in snapshot decision: take none, delete none.
pub fn default_decision() -> Decision {
    Decision {
        take: false,
        keep: 0,
    }
}

/// Checks that `text` is one JSON object, without building it.
pub(crate) fn check_json_object(what: &str, text: &str) -> Result<(), CallFailure> {
    if !text.trim_start().starts_with('{') {
        return Err(CallFailure::Malformed(format!(
            "{what} is not a JSON object"
        )));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| CallFailure::Malformed(format!("{what} is not valid JSON: {e}")))
}

/// Checks a resolver's answer.
pub(crate) fn check_resolution(resolution: &Resolution) -> Result<(), CallFailure> {
    match resolution {
        Resolution::Merged(text) => check_json_object("the merged record", text),
        Resolution::KeepCurrent | Resolution::TakeIncoming => Ok(()),
    }
}

/// Checks a filter's answer: a replacement may only change `data` and `before`.
pub(crate) fn check_verdict(original: &Change, verdict: &Verdict) -> Result<(), CallFailure> {
    let Verdict::Replace(new) = verdict else {
        return Ok(());
    };
    let same_identity = new.op == original.op
        && new.collection == original.collection
        && new.id == original.id
        && new.hlc == original.hlc
        && new.origin == original.origin;
    if !same_identity {
        return Err(CallFailure::Malformed(
            "the replacement changes more than data and before".into(),
        ));
    }
    if new.data.is_some() != original.data.is_some() {
        return Err(CallFailure::Malformed(
            "the replacement adds or removes the record data".into(),
        ));
    }
    if let Some(data) = &new.data {
        check_json_object("the replacement's data", data)?;
    }
    if let Some(before) = &new.before {
        check_json_object("the replacement's before", before)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Op;

    fn version(hlc: u64, origin: &str) -> Version {
        Version {
            data: Some("{}".into()),
            hlc,
            origin: origin.into(),
        }
    }

    fn change(hlc: u64, origin: &str) -> Change {
        Change {
            op: Op::Update,
            collection: "c".into(),
            id: "r".into(),
            data: Some("{}".into()),
            hlc,
            origin: origin.into(),
            before: None,
        }
    }

    #[test]
    fn default_resolution_is_lww_by_hlc_then_origin() {
        let take = Resolution::TakeIncoming;
        let keep = Resolution::KeepCurrent;
        assert_eq!(default_resolution(&version(1, "z"), &change(2, "a")), take);
        assert_eq!(default_resolution(&version(2, "a"), &change(1, "z")), keep);
        assert_eq!(default_resolution(&version(2, "a"), &change(2, "b")), take);
        assert_eq!(default_resolution(&version(2, "b"), &change(2, "a")), keep);
    }

    #[test]
    fn merged_records_must_be_json_objects() {
        let ok = Resolution::Merged(r#"{"a":1}"#.into());
        assert_eq!(check_resolution(&ok), Ok(()));
        for bad in ["[1]", "{\"a\":", "not json", "", "{} trailing"] {
            let failure = check_resolution(&Resolution::Merged(bad.into()));
            assert!(
                matches!(failure, Err(CallFailure::Malformed(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn a_replacement_may_not_change_identity() {
        let original = change(1, "n1");
        let mut moved = original.clone();
        moved.id = "other".into();
        assert!(check_verdict(&original, &Verdict::Replace(moved)).is_err());
        let mut redacted = original.clone();
        redacted.data = Some(r#"{"kept":1}"#.into());
        assert_eq!(
            check_verdict(&original, &Verdict::Replace(redacted)),
            Ok(())
        );
    }
}
