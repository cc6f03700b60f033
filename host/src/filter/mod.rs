//! PocketBase's filter language: parsing filter and sort expressions and translating them to
//! SQLite SQL over Syncbase's record tables.
//!
//! This module owns the grammar (`parser`), the AST (`ast`), field path resolution
//! (`resolve`, `request`) and SQL generation (`build`, `sort`). It produces SQL text and
//! parameter values only: outside its tests it never executes SQL or touches rusqlite, and it
//! knows nothing of HTTP. The store binds the [`SqlParam`]s; the API decides who may use what
//! through [`Query`]'s flags.
//!
//! Semantics follow PocketBase 0.40, including its join model: every relation hop (and
//! `:each`, back-relations, `@collection`) is a LEFT JOIN shared by all identifiers with the
//! same path, so `editors.name ?= 'a' && editors.age ?> 3` needs one editor with both, and
//! `tags:each ?= 'a' && tags:each ?= 'b'` never matches (the same element cannot be both).
//! Conditions that need joins are wrapped in one correlated
//! `EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN ... WHERE ...)`; the others stay plain
//! (`` `posts`.`title` = ? ``) so indexes apply.
//!
//! The outer query must refer to the queried collection's table by its own name
//! (`collection.table()`, not an alias), as the generated SQL does. A collection's rule and the
//! client's filter and sort should go through [`list_sql`] (or [`combined_sql`]) together, as
//! PocketBase shares the joins between them.
//!
//! For a non-superuser (`allow_hidden == false`) every collection a filter or sort joins has its
//! listRule applied to the joined row (`list_rules.rs`), as PocketBase does: a related record
//! the caller may not list can neither match nor order anything, and a collection only
//! superusers may list cannot be joined at all.
//!
//! Deliberate differences from PocketBase: sorting by a multi-valued path uses its smallest
//! (ascending) or largest (descending) value (PocketBase sorts by whichever joined row SQLite
//! meets first); parentheses nest at most 64 deep; a submitted `@request.body.x:each` on the
//! right of `~` works instead of failing in SQL.

mod ast;
mod build;
mod functions;
mod list_rules;
mod parser;
mod request;
mod resolve;
mod sort;
mod sql;

#[cfg(test)]
mod tests;

pub use ast::{Cmp, Comparison, Expr, Macro, Op, Operand};

use crate::store::schema::Collection;

/// Longest filter accepted, in bytes (PocketBase's limit).
pub const MAX_FILTER_LEN: usize = 3500;

/// Most fields a sort expression may list.
pub const MAX_SORT_FIELDS: usize = 8;

/// Why a filter or sort expression was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// The text is not a valid expression; `pos` is the character offset of the problem.
    #[error("invalid filter: {message}")]
    Syntax { pos: usize, message: String },
    /// A field path that does not exist (the identifier as written).
    #[error("unknown field \"{0}\"")]
    UnknownField(String),
    /// `@request.*` / `@collection.*` where not allowed.
    #[error("forbidden filter: {0}")]
    Forbidden(String),
    /// Anything else: bad modifier, too long, too many sort fields, ...
    #[error("invalid filter: {0}")]
    Invalid(String),
}

/// A bound SQL parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// Finds collections referenced by relations, back-relations and `@collection`.
pub trait CollectionLookup {
    /// The collection with this name or id.
    fn collection(&self, name_or_id: &str) -> Option<&Collection>;
}

/// The context a filter is translated in.
#[derive(Clone, Copy)]
pub struct Query<'a> {
    pub lookup: &'a dyn CollectionLookup,
    /// The queried collection; its table is referenced in SQL as `collection.table()`.
    pub collection: &'a Collection,
    /// `{"auth": record-or-null, "body": {...}, "query": {...}, "headers": {...},
    /// "method": "GET", "context": "default"}`. `auth` should be the full auth record (hidden
    /// fields and email included) with its `collectionId`/`collectionName`; header names are
    /// matched as PocketBase normalises them (lowercase, `-` as `_`). `None` makes every
    /// `@request.*` NULL.
    pub request: Option<&'a serde_json::Value>,
    /// False for client-supplied filters of non-superusers: any `@request.*` or
    /// `@collection.*` is then [`FilterError::Forbidden`].
    pub allow_request_refs: bool,
    /// False for non-superusers' filters and sorts: hidden fields (and password fields) are
    /// [`FilterError::Invalid`] (a 400, as in PocketBase), `email` of auth records only
    /// matches public emails, and every joined collection's listRule must hold for the joined
    /// row (a `None` listRule refuses the join). Paths under `@request.*` and `@collection.*`
    /// may always use hidden fields, as in PocketBase (they only appear in rules).
    pub allow_hidden: bool,
    /// The time datetime macros (`@now`, `@todayStart`, ...) are computed from.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// True for text with nothing but whitespace and comments. PocketBase refuses such rules when a
/// collection is saved; one stored earlier reads as no condition.
pub fn is_blank(src: &str) -> bool {
    parser::is_blank(src)
}

/// Parses a filter expression (no length limit: that applies to clients' filters only, see
/// [`MAX_FILTER_LEN`], while PocketBase accepts longer rules).
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    parser::parse(src)
}

/// Translates a parsed filter into a WHERE fragment with plain `?` placeholders; the
/// parameters are in order of appearance.
pub fn to_sql(expr: &Expr, q: &Query) -> Result<(String, Vec<SqlParam>), FilterError> {
    combined_sql(&[(expr, q)])
}

/// Translates filters that apply together, ANDed, as PocketBase applies a collection's rule
/// and the client's `filter` to one query: they share relation joins, so `editors.name ?= 'a'`
/// in the rule and `editors.age ?> 3` in the filter must hold for the same editor. Each part
/// has its own [`Query`] (its own access flags) over the same collection. No parts is `1=1`.
pub fn combined_sql(parts: &[(&Expr, &Query)]) -> Result<(String, Vec<SqlParam>), FilterError> {
    let t = build::translate_all(parts, None)?;
    Ok((t.filter.sql, t.filter.params))
}

/// Parses and translates a filter. Only the empty string is "no filter" (`("1=1", [])`); blank
/// or comment-only text is an error, as in PocketBase.
pub fn filter_sql(src: &str, q: &Query) -> Result<(String, Vec<SqlParam>), FilterError> {
    if src.is_empty() {
        return Ok(("1=1".into(), Vec::new()));
    }
    to_sql(&parse(src)?, q)
}

/// A list query's WHERE condition and ORDER BY body, each with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ListSql {
    pub where_sql: String,
    pub params: Vec<SqlParam>,
    /// Empty when there is no sort.
    pub order_sql: String,
    pub order_params: Vec<SqlParam>,
}

/// Translates a list query: filter parts as [`combined_sql`], and the sort expression
/// (`"-created,title"`, see [`sort_sql`]) resolved in `sort_q`. They are translated together
/// because for a non-superuser the collections a sort joins have their listRules applied to
/// the rows, as PocketBase does.
pub fn list_sql(
    parts: &[(&Expr, &Query)],
    sort: &str,
    sort_q: &Query,
) -> Result<ListSql, FilterError> {
    let t = build::translate_all(parts, Some((sort, sort_q)))?;
    Ok(ListSql {
        where_sql: t.filter.sql,
        params: t.filter.params,
        order_sql: t.order.sql,
        order_params: t.order.params,
    })
}

/// Translates a sort expression (`"-created,title"`) into an ORDER BY body such as
/// ``"`posts`.`created` DESC, `posts`.`title` ASC"`` and its parameters; empty input gives an
/// empty string. At most [`MAX_SORT_FIELDS`] entries; `@random` and `@rowid` are supported.
pub fn sort_sql(src: &str, q: &Query) -> Result<(String, Vec<SqlParam>), FilterError> {
    let t = build::translate_all(&[], Some((src, q)))?;
    Ok((t.order.sql, t.order.params))
}
