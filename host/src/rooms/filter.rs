//! Room messages through the room collection's inbound filter plugin, so moderation and
//! redaction can be plugins.
//!
//! A message is presented to the `filter` world as an inbound `change`:
//! * `op`: `create`; `collection`: the room's collection name; `id`: the room's record id;
//! * `data`: the message payload (always a JSON object), so a field filter such as `redact`
//!   works on messages unchanged;
//! * `origin`: `room:<userId>` for a signed-in sender, `room:` for a guest — record events
//!   carry a node id there, which never contains `:`, so a filter can tell the two apart;
//! * `hlc`: the owner's wall clock in HLC form (ms << 16); `before`: none.
//!
//! `keep` stamps the message as sent, `drop` refuses it (the sender gets an error frame),
//! `replace` stamps the replacement's `data` (unless it is not a JSON object: then the
//! message is kept as sent, as for record events). Only the room's owner runs the filter,
//! once per message; a plugin that fails because of the node (no instance slot) refuses the
//! message instead of deciding by default.

use serde_json::value::RawValue;
use syncbase_plugin_runtime::types::{
    Change as WitChange, Direction, Op as WitOp, Verdict as WitVerdict,
};

use super::protocol::{Who, compact};
use crate::plugins::{DecidedBy, Plugins};

/// What becomes of one message.
#[derive(Debug)]
pub enum Verdict {
    Keep,
    Replace(Box<RawValue>),
    Drop,
    /// The plugin could not run on this node.
    Unavailable(String),
}

/// Whether the collection (by id) has an inbound filter bound.
pub fn bound(plugins: &Plugins, collection_id: &str) -> bool {
    plugins
        .runtime
        .has_filter(collection_id, Direction::Inbound)
}

/// The change a message is presented as.
pub fn change(collection: &str, record: &str, who: &Who, payload: String, hlc: u64) -> WitChange {
    WitChange {
        op: WitOp::Create,
        collection: collection.to_string(),
        id: record.to_string(),
        data: Some(payload),
        hlc,
        origin: format!("room:{}", who.user_id.as_deref().unwrap_or("")),
        before: None,
    }
}

/// Filters `(sender, payload)` pairs on a blocking thread, one verdict each, in order.
pub async fn run(
    plugins: &Plugins,
    collection_id: &str,
    collection: &str,
    record: &str,
    items: Vec<(Who, String)>,
) -> Vec<Verdict> {
    let (id, collection, record) = (
        collection_id.to_string(),
        collection.to_string(),
        record.to_string(),
    );
    let hlc = (chrono::Utc::now().timestamp_millis().max(0) as u64) << 16;
    plugins
        .blocking(move |rt| {
            items
                .into_iter()
                .map(|(who, payload)| {
                    let ch = change(&collection, &record, &who, payload, hlc);
                    let out = rt.filter(&id, Direction::Inbound, &ch);
                    if let DecidedBy::Fallback { plugin, failure } = &out.decided_by
                        && failure.is_node_fault()
                    {
                        return Verdict::Unavailable(format!(
                            "plugin {}@{} {failure}",
                            plugin.name, plugin.version
                        ));
                    }
                    match out.value {
                        WitVerdict::Keep => Verdict::Keep,
                        WitVerdict::Drop => Verdict::Drop,
                        WitVerdict::Replace(replaced) => match replaced
                            .data
                            .filter(|d| d.trim_start().starts_with('{'))
                            .and_then(|d| RawValue::from_string(d).ok())
                        {
                            Some(raw) => Verdict::Replace(compact(&raw)),
                            None => Verdict::Keep,
                        },
                    }
                })
                .collect()
        })
        .await
}
