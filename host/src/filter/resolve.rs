//! Field path resolution: turns identifiers such as `author.name`, `tags:each`,
//! `comments_via_post.message` or `@collection.users.email` into SQL operands.
//!
//! This follows PocketBase's record field resolver. Every relation hop becomes a LEFT JOIN that
//! is shared by all identifiers with the same path prefix, so `editors.name ?= 'a' &&
//! editors.age ?> 3` means "one editor with both". The joins are later wrapped in one
//! correlated `EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN ... WHERE ...)`, which is what
//! PocketBase's `SELECT DISTINCT ... LEFT JOIN ...` amounts to for a single row. Multi-valued
//! paths also get a self-contained "multi-match" subquery listing every value of the path, used
//! to make non-`?` operators require that all values match.

use std::collections::HashMap;

use super::sql::{
    Emptiness, Frag, Join, MultiSub, Resolved, json_array_length, json_each, json_extract,
};
use super::{FilterError, Query};
use crate::store::schema::{Collection, Field, FieldKind, quote_ident};

/// PocketBase's limit on relation hops in one path.
const MAX_NESTED_RELS: usize = 6;

/// The modifiers PocketBase knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Modifier {
    Each,
    Length,
    Lower,
    Isset,
    Changed,
}

/// Splits `name:modifier`. As in PocketBase, only a name with exactly one `:` has a modifier
/// (`a:b:c` is looked up whole, and so never found).
pub(super) fn split_modifier(segment: &str) -> Result<(&str, Option<Modifier>), FilterError> {
    let Some((name, m)) = segment.split_once(':') else {
        return Ok((segment, None));
    };
    if m.contains(':') {
        return Ok((segment, None));
    }
    let modifier = match m {
        "each" => Modifier::Each,
        "length" => Modifier::Length,
        "lower" => Modifier::Lower,
        "isset" => Modifier::Isset,
        "changed" => Modifier::Changed,
        _ => {
            return Err(FilterError::Invalid(format!(
                "unknown modifier \":{m}\" in \"{segment}\""
            )));
        }
    };
    Ok((name, Some(modifier)))
}

/// Hidden fields (and passwords, which PocketBase always hides) may only be filtered by
/// superusers and by rules.
pub(super) fn is_hidden(f: &Field) -> bool {
    f.hidden || matches!(f.kind, FieldKind::Password(_))
}

/// Select and relation fields hold one or more values and accept `:each` / `:length`.
fn is_multi_valuer(f: &Field) -> bool {
    matches!(f.kind, FieldKind::Select(_) | FieldKind::Relation(_))
}

/// JSON fields, and geoPoint fields (a JSON object `{lon, lat}`), are read by JSON path.
fn is_json_like(f: &Field) -> bool {
    matches!(f.kind, FieldKind::Json(_) | FieldKind::GeoPoint(_))
}

/// A hidden field in a caller's filter: PocketBase answers 400, like any invalid filter.
fn not_filterable(name: &str) -> FilterError {
    FilterError::Invalid(format!("field \"{name}\" is not filterable"))
}

/// Collects the joins of one filter (or sort field) and resolves its identifiers.
pub(super) struct Resolver<'q, 'a> {
    pub q: &'q Query<'a>,
    /// How the SQL refers to the queried row: the collection's quoted table name for the outer
    /// query, or a join's alias when a related collection's listRule is resolved for that join.
    pub base: String,
    /// The quoted table of the queried collection (the `FROM` of multi-match subqueries).
    base_table: String,
    pub joins: Vec<Join>,
    join_keys: HashMap<String, usize>,
    pub seq: usize,
    /// Joined collections whose listRule must hold for the joined row (`alias`, collection):
    /// registered for every join made while resolving a non-superuser's filter or sort
    /// (`!allow_hidden`), as PocketBase's `registerRuleJoin`.
    pub rule_joins: Vec<(String, &'a Collection)>,
}

/// The multi-match subquery being built alongside the main joins.
pub(super) struct MultiMatch {
    pub from_alias: String,
    pub joins: Vec<Join>,
    pub value: Frag,
}

/// The state of resolving one identifier.
pub(super) struct Run<'a> {
    /// The identifier as written, for error messages.
    pub name: String,
    pub coll: &'a Collection,
    /// SQL alias of the active table in the main join scope.
    pub alias: String,
    /// Join-key prefix of the active table; equal keys share a join.
    pub key: String,
    pub allow_hidden: bool,
    /// `@request.*` paths resolve missing fields to NULL instead of failing.
    pub nullify_missing: bool,
    pub with_multi: bool,
    pub mm: MultiMatch,
    /// SQL alias of the active table inside the multi-match subquery.
    pub mm_alias: String,
    pub uses_join: bool,
}

impl<'q, 'a> Resolver<'q, 'a> {
    pub fn new(q: &'q Query<'a>) -> Self {
        Resolver {
            q,
            base: q.collection.table(),
            base_table: q.collection.table(),
            joins: Vec::new(),
            join_keys: HashMap::new(),
            seq: 0,
            rule_joins: Vec::new(),
        }
    }

    /// A resolver for `q.collection`'s rows as they appear under `alias` in another query
    /// (a related collection's listRule, checked against the joined row). Its aliases continue
    /// from `seq` so they never clash with the outer query's.
    pub fn nested(q: &'q Query<'a>, alias: String, seq: usize) -> Self {
        Resolver {
            base: alias,
            seq,
            ..Resolver::new(q)
        }
    }

    /// A fresh, quoted alias.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.seq += 1;
        quote_ident(&format!("__{prefix}{}", self.seq))
    }

    /// Registers a main-scope join under `key` (or reuses the one already there) and returns
    /// its alias. `on` builds the ON clause from the new alias. A key reused for a different
    /// table is an error (only possible with two `@collection` references sharing an alias).
    /// `coll` is the joined collection, if the table is one: for a non-superuser's filter its
    /// listRule must then hold for the joined row (a `None` rule refuses the join outright).
    pub fn join(
        &mut self,
        key: &str,
        table: Frag,
        coll: Option<&'a Collection>,
        on: impl FnOnce(&str) -> Option<Frag>,
    ) -> Result<String, FilterError> {
        let alias = if let Some(&i) = self.join_keys.get(key) {
            if self.joins[i].table != table {
                return Err(FilterError::Invalid(format!(
                    "\"{key}\" refers to two different collections"
                )));
            }
            self.joins[i].alias.clone()
        } else {
            let alias = self.fresh("fj");
            let on = on(&alias);
            self.join_keys.insert(key.to_string(), self.joins.len());
            self.joins.push(Join {
                table,
                alias: alias.clone(),
                on,
            });
            alias
        };
        if let Some(c) = coll
            && !self.q.allow_hidden
        {
            if c.list_rule.is_none() {
                return Err(FilterError::Invalid(format!(
                    "the fields of \"{}\" can only be filtered by superusers",
                    c.name
                )));
            }
            if !self.rule_joins.iter().any(|(a, _)| *a == alias) {
                self.rule_joins.push((alias.clone(), c));
            }
        }
        Ok(alias)
    }

    /// Loads a collection by name or id.
    pub fn collection(&self, name_or_id: &str) -> Option<&'a Collection> {
        let base = self.q.collection;
        if base.name == name_or_id || base.id == name_or_id {
            return Some(base);
        }
        self.q.lookup.collection(name_or_id)
    }

    /// Starts resolving `name` from the base collection.
    pub fn start(&mut self, name: &str, allow_hidden: bool, nullify_missing: bool) -> Run<'a> {
        let from_alias = self.fresh("mm");
        Run {
            name: name.to_string(),
            coll: self.q.collection,
            alias: self.base.clone(),
            key: String::new(),
            allow_hidden,
            nullify_missing,
            with_multi: false,
            mm: MultiMatch {
                from_alias: from_alias.clone(),
                joins: Vec::new(),
                value: Frag::default(),
            },
            mm_alias: from_alias,
            uses_join: false,
        }
    }

    /// Resolves any identifier (not a macro or literal).
    pub fn resolve(&mut self, name: &str) -> Result<Resolved, FilterError> {
        let props: Vec<&str> = name.split('.').collect();
        match props[0] {
            "@request" | "@collection" if !self.q.allow_request_refs => Err(
                FilterError::Forbidden(format!("\"{name}\" cannot be used in this filter")),
            ),
            "@collection" => self.collection_field(name, &props),
            "@request" => self.request_field(name, &props),
            first if first.starts_with('@') || first.starts_with('#') => {
                Err(FilterError::UnknownField(name.to_string()))
            }
            _ => {
                let mut run = self.start(name, self.q.allow_hidden, false);
                self.props(&mut run, &props)
            }
        }
    }

    /// `@collection.NAME[:alias].path`: joins every row of another collection.
    fn collection_field(&mut self, name: &str, props: &[&str]) -> Result<Resolved, FilterError> {
        if props.len() < 3 {
            return Err(FilterError::Invalid(format!(
                "invalid @collection path \"{name}\""
            )));
        }
        let (coll_name, alias) = match props[1].split_once(':') {
            Some((c, a)) if !a.is_empty() => (c, Some(a)),
            Some((c, _)) => (c, None),
            None => (props[1], None),
        };
        let Some(coll) = self.collection(coll_name) else {
            return Err(FilterError::UnknownField(format!(
                "@collection.{coll_name}"
            )));
        };
        let mut run = self.start(name, true, false);
        run.coll = coll;
        run.key = match alias {
            Some(a) => format!("@collection:{a}"),
            None => format!("@collection.{}", coll.name),
        };
        run.alias = self.join(
            &run.key.clone(),
            Frag::raw(coll.table()),
            Some(coll),
            |_| None,
        )?;
        run.uses_join = true;
        run.with_multi = true;
        let mm_alias = self.fresh("mj");
        run.mm.joins.push(Join {
            table: Frag::raw(coll.table()),
            alias: mm_alias.clone(),
            on: None,
        });
        run.mm_alias = mm_alias;
        self.props(&mut run, &props[2..])
    }

    /// Walks a path of relation hops to its last segment.
    pub fn props(&mut self, run: &mut Run<'a>, props: &[&str]) -> Result<Resolved, FilterError> {
        let total = props.len();
        for (i, &prop) in props.iter().enumerate() {
            if i == total - 1 {
                return self.last(run, prop);
            }
            // A modifier before the last segment (`author:each.name`) names no field, as in
            // PocketBase: it fails like any unknown name (NULL under `@request.*`).
            let field = run.coll.field(prop);
            if let Some(f) = field
                && is_hidden(f)
                && !run.allow_hidden
            {
                return Err(not_filterable(prop));
            }
            if let Some(f) = field
                && is_json_like(f)
            {
                return self.json_path(run, f, &props[i + 1..]);
            }
            if i >= MAX_NESTED_RELS {
                return Err(FilterError::Invalid(format!(
                    "too many nested relations in \"{}\"",
                    run.name
                )));
            }
            match field {
                None => {
                    if !self.back_relation(run, prop)? {
                        return Ok(Resolved::null());
                    }
                }
                Some(f) => {
                    let FieldKind::Relation(opts) = &f.kind else {
                        return Err(FilterError::Invalid(format!(
                            "field \"{prop}\" in \"{}\" is not a relation",
                            run.name
                        )));
                    };
                    let Some(rel) = self.collection(&opts.collection_id) else {
                        return Err(FilterError::Invalid(format!(
                            "the collection of relation \"{prop}\" does not exist"
                        )));
                    };
                    // `author.id` is the `author` column itself: no join needed.
                    if !f.is_multiple() && i == total - 2 && props[i + 1] == "id" {
                        return self.last(run, prop);
                    }
                    self.relation(run, f, rel)?;
                }
            }
        }
        Err(FilterError::UnknownField(run.name.clone()))
    }

    /// Joins a forward relation field of the active collection and makes its target active.
    fn relation(
        &mut self,
        run: &mut Run<'a>,
        f: &Field,
        rel: &'a Collection,
    ) -> Result<(), FilterError> {
        let col = quote_ident(&f.name);
        let key = format!("{}.{}", run.key, f.name);
        let mm_col = Frag::raw(format!("{}.{col}", run.mm_alias));
        let main_col = Frag::raw(format!("{}.{col}", run.alias));
        let new_mm = self.fresh("mj");
        let new_alias = if f.is_multiple() {
            let je = self.join(&format!("{key}:each"), json_each(&main_col), None, |_| None)?;
            let mm_je = self.fresh("mj");
            run.mm.joins.push(Join {
                table: json_each(&mm_col),
                alias: mm_je.clone(),
                on: None,
            });
            run.mm.joins.push(Join {
                table: Frag::raw(rel.table()),
                alias: new_mm.clone(),
                on: Some(Frag::raw(format!("{new_mm}.`id` = {mm_je}.value"))),
            });
            run.with_multi = true;
            self.join(&key, Frag::raw(rel.table()), Some(rel), |a| {
                Some(Frag::raw(format!("{a}.`id` = {je}.value")))
            })?
        } else {
            run.mm.joins.push(Join {
                table: Frag::raw(rel.table()),
                alias: new_mm.clone(),
                on: Some(Frag::raw(format!("{new_mm}.`id` = {}", mm_col.sql))),
            });
            self.join(&key, Frag::raw(rel.table()), Some(rel), |a| {
                Some(Frag::raw(format!("{a}.`id` = {}", main_col.sql)))
            })?
        };
        run.coll = rel;
        run.alias = new_alias;
        run.key = key;
        run.mm_alias = new_mm;
        run.uses_join = true;
        Ok(())
    }

    /// `OTHER_via_FIELD`: joins the records of OTHER whose relation FIELD points at the active
    /// record. Returns false when the path should resolve to NULL (missing parts in
    /// `@request.*` paths).
    fn back_relation(&mut self, run: &mut Run<'a>, prop: &str) -> Result<bool, FilterError> {
        let missing = |run: &Run<'a>| {
            if run.nullify_missing {
                Ok(false)
            } else {
                Err(FilterError::UnknownField(run.name.clone()))
            }
        };
        let Some((coll_name, field_name)) = prop.rsplit_once("_via_") else {
            return missing(run);
        };
        let Some(back) = self.collection(coll_name) else {
            return missing(run);
        };
        let Some(bf) = back.field(field_name) else {
            return missing(run);
        };
        let FieldKind::Relation(opts) = &bf.kind else {
            return missing(run);
        };
        if opts.collection_id != run.coll.id {
            return missing(run);
        }
        if is_hidden(bf) && !run.allow_hidden {
            return Err(not_filterable(field_name));
        }
        // Several records may point at this one unless the field is single and unique.
        let multiple = bf.is_multiple() || !has_unique_index(back, &bf.name);
        // A single relation column holds the id itself, so it can be matched (and indexed)
        // directly; a multiple one holds a JSON array of ids.
        let array = bf.is_multiple();
        let col = quote_ident(&bf.name);
        let key = format!("{}.{prop}", run.key);
        let new_mm = self.fresh("mj");
        let table = Frag::raw(back.table());
        let outer = run.alias.clone();
        let je = self.fresh("je");
        let alias = self.join(&key, table.clone(), Some(back), |a| {
            Some(Frag::raw(if array {
                let each = json_each(&Frag::raw(format!("{a}.{col}")));
                format!("{outer}.`id` IN (SELECT {je}.value FROM {} {je})", each.sql)
            } else {
                format!("{a}.{col} = {outer}.`id`")
            }))
        })?;
        let mm_on = if array {
            let je = self.fresh("mj");
            let each = json_each(&Frag::raw(format!("{new_mm}.{col}")));
            format!(
                "{}.`id` IN (SELECT {je}.value FROM {} {je})",
                run.mm_alias, each.sql
            )
        } else {
            format!("{new_mm}.{col} = {}.`id`", run.mm_alias)
        };
        run.mm.joins.push(Join {
            table,
            alias: new_mm.clone(),
            on: Some(Frag::raw(mm_on)),
        });
        if multiple {
            run.with_multi = true;
        }
        run.coll = back;
        run.alias = alias;
        run.key = key;
        run.mm_alias = new_mm;
        run.uses_join = true;
        Ok(true)
    }

    /// The remaining segments after a JSON (or geoPoint) field are a JSON path into it, built
    /// as PocketBase builds it: numeric segments become `[n]`, and characters that cannot be in
    /// a column name are dropped, so a modifier there is no modifier (`meta.a:lower` reads the
    /// key `alower`).
    fn json_path(
        &mut self,
        run: &mut Run<'a>,
        f: &Field,
        rest: &[&str],
    ) -> Result<Resolved, FilterError> {
        let mut path = String::new();
        for (j, &seg) in rest.iter().enumerate() {
            let seg_clean: String = seg.chars().filter(|&c| c != ':').collect();
            if seg.parse::<i64>().is_ok() {
                path.push_str(&format!("[{seg_clean}]"));
            } else {
                if j > 0 {
                    path.push('.');
                }
                path.push_str(&seg_clean);
            }
        }
        let col = quote_ident(&f.name);
        let ident = json_extract(&format!("{}.{col}", run.alias), &path);
        run.mm.value = json_extract(&format!("{}.{col}", run.mm_alias), &path);
        let mut r = self.finish(run, ident, Emptiness::Unknown);
        r.no_coalesce = true;
        Ok(r)
    }

    /// The last segment of a path: a field of the active collection, with its modifier.
    pub fn last(&mut self, run: &mut Run<'a>, prop: &str) -> Result<Resolved, FilterError> {
        let (name, modifier) = split_modifier(prop)?;
        let Some(field) = run.coll.field(name) else {
            if run.nullify_missing {
                return Ok(Resolved::null());
            }
            return Err(FilterError::UnknownField(run.name.clone()));
        };
        if is_hidden(field) && !run.allow_hidden {
            return Err(not_filterable(name));
        }
        let col = quote_ident(&field.name);
        let main_col = format!("{}.{col}", run.alias);
        let mm_col = format!("{}.{col}", run.mm_alias);
        // PocketBase applies `:each` and `:length` to multi-valued field types only and
        // `:isset`/`:changed` to `@request.body` only; elsewhere the modifier is ignored.
        let modifier = match modifier {
            Some(Modifier::Length | Modifier::Each) if !is_multi_valuer(field) => None,
            m => m,
        };
        match modifier {
            Some(Modifier::Length) => {
                run.mm.value = json_array_length(&mm_col);
                Ok(self.finish(run, json_array_length(&main_col), Emptiness::Unknown))
            }
            Some(Modifier::Each) => {
                let key = format!("{}.{name}:each", run.key);
                let je = self.join(&key, json_each(&Frag::raw(&main_col)), None, |_| None)?;
                run.uses_join = true;
                if field.is_multiple() {
                    run.with_multi = true;
                }
                let mm_je = self.fresh("mj");
                run.mm.joins.push(Join {
                    table: json_each(&Frag::raw(&mm_col)),
                    alias: mm_je.clone(),
                    on: None,
                });
                run.mm.value = Frag::raw(format!("{mm_je}.value"));
                Ok(self.finish(run, Frag::raw(format!("{je}.value")), Emptiness::Unknown))
            }
            Some(Modifier::Lower | Modifier::Isset | Modifier::Changed) | None => {
                let lower = modifier == Some(Modifier::Lower);
                let json = matches!(field.kind, FieldKind::Json(_));
                let wrap = |x: String| -> Frag {
                    let f = if json {
                        json_extract(&x, "")
                    } else {
                        Frag::raw(x)
                    };
                    if lower {
                        Frag::raw("LOWER(").f(&f).s(")")
                    } else {
                        f
                    }
                };
                run.mm.value = wrap(mm_col);
                let mut r = self.finish(run, wrap(main_col), Emptiness::Unknown);
                r.no_coalesce = json;
                // Like PocketBase, only auth records with a public email match on `email`.
                if field.name == "email" && !run.allow_hidden && run.coll.is_auth() {
                    r.after = Some(format!("{}.`emailVisibility` = TRUE", run.alias));
                }
                Ok(r)
            }
        }
    }

    /// Wraps up a resolved identifier, attaching the multi-match subquery when the path is
    /// multi-valued.
    pub fn finish(&mut self, run: &mut Run<'a>, ident: Frag, emptiness: Emptiness) -> Resolved {
        let mut r = Resolved::plain(ident, emptiness);
        r.uses_join = run.uses_join;
        if run.with_multi {
            let mut from = Frag::raw(format!(" FROM {} {}", self.base_table, run.mm.from_alias));
            for j in &run.mm.joins {
                from = from.f(&j.sql());
            }
            let from = from.s(&format!(
                " WHERE {}.`id` = {}.`id`",
                run.mm.from_alias, self.base
            ));
            r.multi = Some(MultiSub {
                value: run.mm.value.clone(),
                from,
            });
        }
        r
    }
}

/// True when the collection has a unique index on exactly this one column, which makes a
/// back-relation through it single-valued.
fn has_unique_index(coll: &Collection, column: &str) -> bool {
    let unquote = |s: &str| {
        s.trim_matches(|c| matches!(c, '`' | '"' | '[' | ']' | '\''))
            .to_string()
    };
    coll.indexes.iter().any(|idx| {
        let words: Vec<String> = idx
            .split_whitespace()
            .take(3)
            .map(|w| w.to_ascii_uppercase())
            .collect();
        if words != ["CREATE", "UNIQUE", "INDEX"] {
            return false;
        }
        let Some(open) = idx.find('(') else {
            return false;
        };
        let Some(len) = idx[open..].find(')') else {
            return false;
        };
        let cols = &idx[open + 1..open + len];
        !cols.contains(',')
            && cols.split_whitespace().next().map(unquote).as_deref() == Some(column)
    })
}
