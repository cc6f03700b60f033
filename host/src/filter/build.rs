//! Translation of a parsed filter into an SQLite WHERE fragment.
//!
//! Comparisons follow PocketBase's `buildResolversExpr`: `=`/`!=` treat '' and NULL as equal
//! (a plain `col = ?` when one side is a non-empty literal, so indexes still apply), `~` is a
//! LIKE contains-match with `\` as escape, and non-`?` operators on multi-valued paths also
//! require, through a `NOT EXISTS` over the path's values, that every value matches.

use super::ast::{Cmp, Comparison, Expr, Op, Operand};
use super::functions::{geo_distance, macro_value, strftime};
use super::list_rules::list_rule_conditions;
use super::resolve::Resolver;
use super::sql::{Emptiness, Frag, MultiSub, Resolved};
use super::{FilterError, Query, SqlParam};

/// PocketBase's limit on comparisons in one filter.
const MAX_COMPARISONS: usize = 200;

/// A filter and a sort translated together: a WHERE fragment and an ORDER BY body.
pub(super) struct Translated {
    pub filter: Frag,
    pub order: Frag,
}

/// Translates expressions that apply together (ANDed), sharing one set of joins, and the sort.
/// Top-level `&&` operands that need no join stay outside the join scope so that simple
/// comparisons keep using indexes. For a non-superuser (`!allow_hidden`) every collection the
/// filter or the sort joins also has its listRule checked on the joined row
/// (`list_rules.rs`); a sort over a relation therefore drops the rows whose related record the
/// caller may not list, as in PocketBase.
pub(super) fn translate_all<'q, 'a>(
    parts: &[(&Expr, &'q Query<'a>)],
    sort: Option<(&str, &'q Query<'a>)>,
) -> Result<Translated, FilterError> {
    let first = parts.first().map(|(_, q)| *q).or(sort.map(|(_, q)| q));
    let Some(first) = first else {
        return Ok(Translated {
            filter: Frag::raw("1=1"),
            order: Frag::default(),
        });
    };
    let mut res = Resolver::new(first);
    let mut outer = Vec::new();
    let mut inner = Vec::new();
    for (expr, q) in parts {
        if q.collection.id != first.collection.id {
            return Err(FilterError::Invalid(
                "combined filters must query one collection".into(),
            ));
        }
        let count = comparisons(expr);
        if count > MAX_COMPARISONS {
            return Err(FilterError::Invalid(format!(
                "too many comparisons ({count}), at most {MAX_COMPARISONS} are allowed"
            )));
        }
        res.q = q;
        let conjuncts: Vec<&Expr> = match expr {
            Expr::And(items) => items.iter().collect(),
            e => vec![e],
        };
        for c in conjuncts {
            let (frag, uses_join) = node(&mut res, c)?;
            if uses_join {
                inner.push(frag)
            } else {
                outer.push(frag)
            }
        }
    }
    let order = match sort {
        Some((src, q)) => super::sort::order_by(&mut res, src, q)?,
        None => Frag::default(),
    };
    inner.extend(list_rule_conditions(&mut res)?);
    if !inner.is_empty() {
        // One row of `(SELECT 1)` LEFT JOINed to every registered join: the conditions hold
        // when some combination of joined rows satisfies all of them, which is what
        // PocketBase's `SELECT DISTINCT ... LEFT JOIN ...` selects. A LEFT JOIN never drops
        // that row, so conditions without joins are equivalent outside the EXISTS.
        let mut ex = Frag::raw("EXISTS (SELECT 1 FROM (SELECT 1) `__fb`");
        for j in &res.joins {
            ex = ex.f(&j.sql());
        }
        outer.push(ex.s(" WHERE ").f(&Frag::join(&inner, " AND ")).s(")"));
    }
    let filter = if outer.is_empty() {
        Frag::raw("1=1")
    } else {
        Frag::join(&outer, " AND ")
    };
    Ok(Translated { filter, order })
}

fn comparisons(e: &Expr) -> usize {
    match e {
        Expr::Compare(_) => 1,
        Expr::And(items) | Expr::Or(items) => items.iter().map(comparisons).sum(),
    }
}

pub(super) fn node(res: &mut Resolver, e: &Expr) -> Result<(Frag, bool), FilterError> {
    let (items, sep) = match e {
        Expr::Compare(c) => return compare(res, c),
        Expr::And(items) => (items, " AND "),
        Expr::Or(items) => (items, " OR "),
    };
    let mut parts = Vec::with_capacity(items.len());
    let mut uses_join = false;
    for item in items {
        let (f, u) = node(res, item)?;
        parts.push(f);
        uses_join |= u;
    }
    Ok((Frag::raw("(").f(&Frag::join(&parts, sep)).s(")"), uses_join))
}

fn compare(res: &mut Resolver, c: &Comparison) -> Result<(Frag, bool), FilterError> {
    let left = operand(res, &c.left)?;
    let right = operand(res, &c.right)?;
    Ok((
        build(res, &left, c.op, &right),
        left.uses_join || right.uses_join,
    ))
}

pub(super) fn operand(res: &mut Resolver, o: &Operand) -> Result<Resolved, FilterError> {
    Ok(match o {
        Operand::Field { name, .. } => res.resolve(name)?,
        Operand::Text(s) => Resolved::literal(SqlParam::Text(s.clone())),
        Operand::Number(n) => Resolved::literal(SqlParam::Real(*n)),
        Operand::Bool(b) => Resolved::constant(if *b { "1" } else { "0" }),
        Operand::Null => Resolved::null(),
        Operand::Macro(m) => Resolved::literal(macro_value(*m, res.q.now)?),
        Operand::Call { name, args, .. } if name == "strftime" => strftime(res, args)?,
        Operand::Call { name, args, .. } if name == "geoDistance" => geo_distance(res, args)?,
        Operand::Call { name, .. } => {
            return Err(FilterError::Invalid(format!(
                "unsupported function \"{name}\""
            )));
        }
    })
}

/// One comparison, PocketBase's `buildResolversExpr`.
fn build(res: &mut Resolver, l: &Resolved, op: Op, r: &Resolved) -> Frag {
    let mut expr = match op.cmp {
        Cmp::Eq => equal(true, l, r),
        Cmp::Neq => equal(false, l, r),
        Cmp::Like | Cmp::NotLike => {
            let like = if op.cmp == Cmp::Like {
                " LIKE "
            } else {
                " NOT LIKE "
            };
            if r.ident.params.is_empty() || r.params_internal {
                // A column (or constant) on the right: contains-match on its value.
                l.ident
                    .clone()
                    .s(like)
                    .s("('%' || ")
                    .f(&r.ident)
                    .s(" || '%') ESCAPE '\\'")
            } else {
                let mut pattern = r.ident.clone();
                pattern.params = match (&r.like_text, pattern.params.as_slice()) {
                    (Some(text), [_]) => vec![like_pattern(&SqlParam::Text(text.clone()))],
                    _ => pattern.params.iter().map(like_pattern).collect(),
                };
                l.ident.clone().s(like).f(&pattern).s(" ESCAPE '\\'")
            }
        }
        Cmp::Lt => l.ident.clone().s(" < ").f(&r.ident),
        Cmp::Lte => l.ident.clone().s(" <= ").f(&r.ident),
        Cmp::Gt => l.ident.clone().s(" > ").f(&r.ident),
        Cmp::Gte => l.ident.clone().s(" >= ").f(&r.ident),
    };
    if !op.any {
        let all = match (&l.multi, &r.multi) {
            (Some(lm), Some(rm)) => Some(many_vs_many(res, l, lm, op, r, rm)),
            (Some(lm), None) => Some(many_vs_one(res, lm, l.no_coalesce, op, r, false)),
            (None, Some(rm)) => Some(many_vs_one(res, rm, r.no_coalesce, op, l, true)),
            (None, None) => None,
        };
        if let Some(all) = all {
            expr = Frag::raw("(").f(&expr).s(" AND ").f(&all).s(")");
        }
    }
    for after in [&l.after, &r.after].into_iter().flatten() {
        expr = Frag::raw("(").f(&expr).s(" AND ").s(after).s(")");
    }
    expr
}

/// `=` (`equal`) or `!=`, with '' and NULL treated as equal. `!=` uses `IS NOT` so that a
/// NULL on either side still compares.
pub(super) fn equal(equal: bool, l: &Resolved, r: &Resolved) -> Frag {
    let (eq, concat, null) = if equal {
        ("=", "OR", "IS NULL")
    } else {
        ("IS NOT", "AND", "IS NOT NULL")
    };
    let l_empty = l.emptiness == Emptiness::Empty;
    let r_empty = r.emptiness == Emptiness::Empty;
    if l.no_coalesce || r.no_coalesce {
        let is = if equal { " IS " } else { " IS NOT " };
        return l.ident.clone().s(is).f(&r.ident);
    }
    if l_empty && r_empty {
        return Frag::raw(format!("'' {eq} ''"));
    }
    if l.emptiness == Emptiness::NonEmpty || r.emptiness == Emptiness::NonEmpty {
        let side = |x: &Resolved, empty| {
            if empty {
                Frag::raw("''")
            } else {
                x.ident.clone()
            }
        };
        return side(l, l_empty).s(&format!(" {eq} ")).f(&side(r, r_empty));
    }
    if l_empty {
        return Frag::raw(format!("('' {eq} "))
            .f(&r.ident)
            .s(&format!(" {concat} "))
            .f(&r.ident)
            .s(&format!(" {null})"));
    }
    if r_empty {
        return Frag::raw("(")
            .f(&l.ident)
            .s(&format!(" {eq} '' {concat} "))
            .f(&l.ident)
            .s(&format!(" {null})"));
    }
    Frag::raw("COALESCE(")
        .f(&l.ident)
        .s(&format!(", '') {eq} COALESCE("))
        .f(&r.ident)
        .s(", '')")
}

/// Turns a `~` operand into a LIKE pattern: `%value%` with `\`, `%` and `_` escaped, unless
/// the value already holds an unescaped `%` (then it is used as the user's own pattern).
fn like_pattern(p: &SqlParam) -> SqlParam {
    let v = p.to_text();
    if contains_unescaped_percent(&v) {
        return SqlParam::Text(v);
    }
    let chars: Vec<char> = v.chars().collect();
    let mut out = String::from("%");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let special = |c: char| matches!(c, '\\' | '%' | '_');
        if c == '\\' && chars.get(i + 1).is_some_and(|&n| special(n)) {
            // Already escaped by the user.
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if special(c) {
            out.push('\\');
        }
        out.push(c);
        i += 1;
    }
    out.push('%');
    SqlParam::Text(out)
}

fn contains_unescaped_percent(s: &str) -> bool {
    let mut prev = '\0';
    for c in s.chars() {
        if c == '%' && prev != '\\' {
            return true;
        }
        prev = if c == '\\' && prev == '\\' { '\0' } else { c };
    }
    false
}

fn value_of(alias: &str, no_coalesce: bool) -> Resolved {
    let mut r = Resolved::plain(Frag::raw(format!("{alias}.`__mv`")), Emptiness::Unknown);
    r.no_coalesce = no_coalesce;
    r
}

/// "Every value of the path satisfies the comparison": no value of the multi-match subquery
/// fails it.
fn many_vs_one(
    res: &mut Resolver,
    sub: &MultiSub,
    no_coalesce: bool,
    op: Op,
    other: &Resolved,
    inverse: bool,
) -> Frag {
    let alias = res.fresh("sm");
    let each = value_of(&alias, no_coalesce);
    let mut other = other.clone();
    other.multi = None;
    other.after = None;
    other.no_coalesce = false;
    let any = Op {
        cmp: op.cmp,
        any: true,
    };
    let inner = if inverse {
        build(res, &other, any, &each)
    } else {
        build(res, &each, any, &other)
    };
    Frag::raw("NOT EXISTS (SELECT 1 FROM (")
        .f(&sub.sql())
        .s(&format!(") {alias} WHERE NOT ("))
        .f(&inner)
        .s("))")
}

/// Both sides multi-valued: no pair of values fails the comparison.
fn many_vs_many(
    res: &mut Resolver,
    l: &Resolved,
    lsub: &MultiSub,
    op: Op,
    r: &Resolved,
    rsub: &MultiSub,
) -> Frag {
    let la = res.fresh("ml");
    let ra = res.fresh("mr");
    let any = Op {
        cmp: op.cmp,
        any: true,
    };
    let inner = build(
        res,
        &value_of(&la, l.no_coalesce),
        any,
        &value_of(&ra, r.no_coalesce),
    );
    Frag::raw("NOT EXISTS (SELECT 1 FROM (")
        .f(&lsub.sql())
        .s(&format!(") {la} LEFT JOIN ("))
        .f(&rsub.sql())
        .s(&format!(") {ra} WHERE NOT ("))
        .f(&inner)
        .s("))")
}
