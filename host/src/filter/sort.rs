//! The `sort` query parameter: `-created,title` → an ORDER BY body.

use super::resolve::Resolver;
use super::{FilterError, MAX_SORT_FIELDS, Query};

/// Translates a sort expression into the body of an ORDER BY clause (empty for an empty
/// expression). Fields may be prefixed with `-` (descending) or `+`; `@random` and `@rowid` are
/// supported. Relation paths become correlated subqueries; a multi-valued path sorts by its
/// smallest value ascending and its largest value descending.
pub(super) fn sort_sql(src: &str, q: &Query) -> Result<String, FilterError> {
    if src.trim().is_empty() {
        return Ok(String::new());
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
        out.push(sort_field(name, dir, q)?);
    }
    Ok(out.join(", "))
}

fn sort_field(name: &str, dir: &str, q: &Query) -> Result<String, FilterError> {
    let invalid = || FilterError::Invalid(format!("invalid sort field \"{name}\""));
    match name {
        "" => return Err(FilterError::Invalid("empty sort field".into())),
        "@random" => return Ok("RANDOM()".into()),
        "@rowid" => return Ok(format!("{}.`_rowid_` {dir}", q.collection.table())),
        _ => {}
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !name.starts_with(word) || !name.chars().all(|c| word(c) || c == '.' || c == ':') {
        return Err(invalid());
    }
    let mut res = Resolver::new(q);
    let r = res.resolve(name)?;
    if !r.ident.params.is_empty() || r.ident.sql == "NULL" {
        return Err(invalid());
    }
    if res.joins.is_empty() {
        return Ok(format!("{} {dir}", r.ident.sql));
    }
    let agg = match (r.multi.is_some(), dir) {
        (false, _) => "",
        (true, "DESC") => "MAX",
        (true, _) => "MIN",
    };
    let mut sub = format!("(SELECT {agg}({}) FROM (SELECT 1) `__fb`", r.ident.sql);
    for j in &res.joins {
        let j = j.sql();
        if !j.params.is_empty() {
            return Err(invalid());
        }
        sub.push_str(&j.sql);
    }
    Ok(format!("{sub}) {dir}"))
}
