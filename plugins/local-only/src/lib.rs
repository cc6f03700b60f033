//! `local-only`: keeps chosen collections off the wire.
//!
//! Bound as an outbound filter, it drops changes to the listed collections
//! before they are published: the data stays on the node that wrote it.
//! Bound as an inbound filter, it drops them before they are applied: this node
//! becomes a partial replica without those collections.
//!
//! Configuration: `{"collections": ["drafts", "sessions"]}`. Without a list
//! (empty config) it drops every change it sees, so binding it to a collection
//! is enough to keep that collection local.

use serde::Deserialize;
use syncbase_guest::{Change, Direction, Filter, Verdict, parse_config};

/// The local-only plugin's configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Collections to keep local; empty means every collection it is bound to.
    #[serde(default)]
    pub collections: Vec<String>,
}

/// The local-only filter.
pub struct LocalOnly {
    config: Config,
}

impl Filter for LocalOnly {
    fn configure(config: &str) -> Result<Self, String> {
        Ok(LocalOnly {
            config: parse_config(config)?,
        })
    }

    fn filter(&self, _direction: Direction, change: Change) -> Verdict {
        let listed = &self.config.collections;
        if listed.is_empty() || listed.contains(&change.collection) {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }
}

syncbase_guest::export_filter!(LocalOnly);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::Op;

    fn change(collection: &str) -> Change {
        Change {
            op: Op::Create,
            collection: collection.into(),
            id: "r1".into(),
            data: Some("{}".into()),
            hlc: 1,
            origin: "n1".into(),
            before: None,
        }
    }

    #[test]
    fn listed_collections_are_dropped_others_kept() {
        let p = LocalOnly::configure(r#"{"collections":["drafts"]}"#).expect("valid config");
        assert_eq!(
            p.filter(Direction::Outbound, change("drafts")),
            Verdict::Drop
        );
        assert_eq!(
            p.filter(Direction::Outbound, change("posts")),
            Verdict::Keep
        );
        assert_eq!(
            p.filter(Direction::Inbound, change("drafts")),
            Verdict::Drop
        );
    }

    #[test]
    fn without_a_list_everything_it_sees_stays_local() {
        let p = LocalOnly::configure("").expect("defaults are valid");
        assert_eq!(
            p.filter(Direction::Outbound, change("anything")),
            Verdict::Drop
        );
    }
}
