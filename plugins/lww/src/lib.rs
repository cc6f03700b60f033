//! `lww`: last writer wins. The incoming change wins when its HLC is larger,
//! or equal with a larger origin node id; otherwise the current version stays.
//!
//! This is exactly the host's built-in default, made explicit: bind it when
//! you want the policy visible in `syncbase plugin ls`, or as a template.

use syncbase_guest::{Change, Resolution, Resolver, Version, last_writer_wins, no_config};

/// The last-writer-wins resolver. Takes no configuration.
pub struct Lww;

impl Resolver for Lww {
    fn configure(config: &str) -> Result<Self, String> {
        no_config(config).map(|()| Lww)
    }

    fn resolve(&self, current: &Version, incoming: &Change) -> Resolution {
        last_writer_wins(current, incoming)
    }
}

syncbase_guest::export_resolver!(Lww);

#[cfg(test)]
mod tests {
    use super::*;
    use syncbase_guest::Op;

    fn current(hlc: u64, origin: &str) -> Version {
        Version {
            data: Some(r#"{"title":"current"}"#.into()),
            hlc,
            origin: origin.into(),
        }
    }

    fn incoming(op: Op, hlc: u64, origin: &str) -> Change {
        Change {
            op,
            collection: "posts".into(),
            id: "r1".into(),
            data: (op != Op::Delete).then(|| r#"{"title":"incoming"}"#.into()),
            hlc,
            origin: origin.into(),
            before: None,
        }
    }

    #[test]
    fn the_later_hlc_wins() {
        let p = Lww::configure("").expect("no config is valid");
        assert_eq!(
            p.resolve(&current(10, "a"), &incoming(Op::Update, 11, "a")),
            Resolution::TakeIncoming
        );
        assert_eq!(
            p.resolve(&current(12, "a"), &incoming(Op::Update, 11, "z")),
            Resolution::KeepCurrent
        );
    }

    #[test]
    fn equal_hlcs_are_broken_by_origin() {
        let p = Lww::configure("").expect("no config is valid");
        assert_eq!(
            p.resolve(&current(10, "n1"), &incoming(Op::Update, 10, "n2")),
            Resolution::TakeIncoming
        );
        assert_eq!(
            p.resolve(&current(10, "n2"), &incoming(Op::Update, 10, "n1")),
            Resolution::KeepCurrent
        );
    }

    #[test]
    fn a_later_delete_wins_over_an_update() {
        let p = Lww::configure("").expect("no config is valid");
        assert_eq!(
            p.resolve(&current(10, "a"), &incoming(Op::Delete, 20, "b")),
            Resolution::TakeIncoming
        );
    }

    #[test]
    fn configuration_is_refused() {
        assert!(Lww::configure(r#"{"x":1}"#).is_err());
    }
}
