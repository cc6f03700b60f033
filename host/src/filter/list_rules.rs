//! Related collections' listRules, applied to the rows a non-superuser's filter or sort joins.
//!
//! PocketBase (`RecordFieldResolver.updateQueryWithCollectionListRule`) ANDs, for every
//! collection joined while resolving a client's filter or sort (relation hops, back-relations,
//! `@collection`), `id = '' || (listRule)` evaluated against the joined row. Without it a
//! caller could filter or sort on the fields of records it may not list, and learn them one
//! comparison at a time. The `id = ''` arm keeps a missing relation (NULL joined row) from
//! failing the whole filter. A `None` listRule refuses the join when it is registered
//! ([`super::resolve::Resolver::join`]); an empty rule adds nothing.

use super::ast::Expr;
use super::build::node;
use super::resolve::Resolver;
use super::sql::Frag;
use super::{FilterError, Query};

/// The listRule conditions of the collections `res` joined for a non-superuser, in the order
/// the joins were registered. The rules' own joins (with fresh aliases) are added to
/// `res.joins`, after the joins they refer to; the conditions must be evaluated where those
/// joins are in scope (inside the filter's `EXISTS`, or a sort's subquery).
pub(super) fn list_rule_conditions(res: &mut Resolver) -> Result<Vec<Frag>, FilterError> {
    let mut out = Vec::new();
    for (alias, coll) in std::mem::take(&mut res.rule_joins) {
        let rule = match coll.list_rule.as_deref() {
            None | Some("") => continue,
            Some(rule) => rule,
        };
        // Exactly the text PocketBase builds, so a rule parses here as it parses there (the
        // newlines end a trailing comment).
        let expr: Expr = super::parse(&format!("id='' || (\n{rule}\n)")).map_err(|e| {
            FilterError::Invalid(format!("the listRule of \"{}\" is invalid: {e}", coll.name))
        })?;
        let q = Query {
            lookup: res.q.lookup,
            collection: coll,
            request: res.q.request,
            allow_request_refs: true,
            allow_hidden: true,
            now: res.q.now,
        };
        let mut sub = Resolver::nested(&q, alias, res.seq);
        let (cond, _) = node(&mut sub, &expr)?;
        res.seq = sub.seq;
        res.joins.append(&mut sub.joins);
        out.push(cond);
    }
    Ok(out)
}
