//! The `sort` query parameter: `-created,title` → an ORDER BY body.

use super::list_rules::list_rule_conditions;
use super::resolve::Resolver;
use super::sql::Frag;
use super::{FilterError, MAX_SORT_FIELDS, Query};

/// PocketBase's limit on one sort field's length.
const MAX_SORT_FIELD_LEN: usize = 255;

/// Translates a sort expression into the body of an ORDER BY clause (empty for an empty
/// expression). Fields may be prefixed with `-` (descending) or `+`; `@random` and `@rowid` are
/// supported, and any path a filter may use (relations, back-relations, `@collection.*`) as
/// long as it resolves to a column. Relation paths become correlated subqueries; a
/// multi-valued path sorts by its smallest value ascending and its largest descending.
///
/// `shared` is the filter's resolver: for a non-superuser each sorted relation path is also
/// registered there, so the listRules of the collections it joins filter the rows, exactly as
/// PocketBase's shared joins do; the sort value itself only comes from rows those rules let
/// through.
pub(super) fn order_by<'q, 'a>(
    shared: &mut Resolver<'q, 'a>,
    src: &str,
    q: &'q Query<'a>,
) -> Result<Frag, FilterError> {
    if src.is_empty() {
        return Ok(Frag::default());
    }
    let parts: Vec<&str> = src.split(',').collect();
    if parts.len() > MAX_SORT_FIELDS {
        return Err(FilterError::Invalid(format!(
            "too many sort fields ({}), at most {MAX_SORT_FIELDS} are allowed",
            parts.len()
        )));
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let part = part.trim();
        let (name, dir) = match part.strip_prefix('-') {
            Some(n) => (n, "DESC"),
            None => (part.strip_prefix('+').unwrap_or(part), "ASC"),
        };
        if name.len() > MAX_SORT_FIELD_LEN {
            return Err(FilterError::Invalid(format!(
                "sort field is too long ({} bytes, at most {MAX_SORT_FIELD_LEN})",
                name.len()
            )));
        }
        out.push(sort_field(shared, name, dir, q)?);
    }
    Ok(Frag::join(&out, ", "))
}

fn sort_field<'q, 'a>(
    shared: &mut Resolver<'q, 'a>,
    name: &str,
    dir: &str,
    q: &'q Query<'a>,
) -> Result<Frag, FilterError> {
    let invalid = || FilterError::Invalid(format!("invalid sort field \"{name}\""));
    match name {
        "" => return Err(FilterError::Invalid("empty sort field".into())),
        "@random" => return Ok(Frag::raw("RANDOM()")),
        "@rowid" => {
            return Ok(Frag::raw(format!(
                "{}.`_rowid_` {dir}",
                q.collection.table()
            )));
        }
        _ => {}
    }
    // PocketBase resolves only names shaped like field paths (`^\w+[\w.:]*$`, `@collection...`).
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !name
        .chars()
        .all(|c| word(c) || matches!(c, '.' | ':' | '@'))
    {
        return Err(invalid());
    }
    let mut res = Resolver::new(q);
    let r = res.resolve(name)?;
    // Only columns sort: no bound values (`@request.*`), no NULL (missing `@request` paths).
    if !r.ident.params.is_empty() || r.ident.sql == "NULL" {
        return Err(invalid());
    }
    if !q.allow_hidden {
        let saved = shared.q;
        shared.q = q;
        let registered = shared.resolve(name);
        shared.q = saved;
        registered?;
    }
    let conds = list_rule_conditions(&mut res)?;
    if res.joins.is_empty() {
        return Ok(r.ident.s(&format!(" {dir}")));
    }
    let agg = match (r.multi.is_some(), dir) {
        (false, _) => "",
        (true, "DESC") => "MAX",
        (true, _) => "MIN",
    };
    let mut sub = Frag::raw(format!("(SELECT {agg}("))
        .f(&r.ident)
        .s(") FROM (SELECT 1) `__fb`");
    for j in &res.joins {
        sub = sub.f(&j.sql());
    }
    if !conds.is_empty() {
        sub = sub.s(" WHERE ").f(&Frag::join(&conds, " AND "));
    }
    Ok(sub.s(&format!(") {dir}")))
}
