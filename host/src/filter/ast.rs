//! The parsed form of a filter expression.
//!
//! The tree is purely syntactic: field paths are kept as written and only resolved against a
//! collection when the expression is translated to SQL.

use std::fmt;

/// A boolean filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every operand must hold (`a && b && ...`).
    And(Vec<Expr>),
    /// At least one operand must hold (`a || b || ...`).
    Or(Vec<Expr>),
    /// A single comparison such as `title ~ 'x'`.
    Compare(Comparison),
}

/// `left op right`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub left: Operand,
    pub op: Op,
    pub right: Operand,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A field path with an optional `:modifier` on its last segment, e.g. `author.name`,
    /// `tags:each`, `@request.auth.id`, `@collection.users:u.email`. `pos` is the character
    /// offset in the source, for error messages.
    Field { name: String, pos: usize },
    /// A quoted string, unescaped.
    Text(String),
    /// A numeric literal. PocketBase binds every number literal as a float.
    Number(f64),
    /// `true` / `false` (any case).
    Bool(bool),
    /// `null` (any case).
    Null,
    /// One of the datetime macros (`@now`, `@todayStart`, ...).
    Macro(Macro),
    /// A function call: `geoDistance(lonA, latA, lonB, latB)` or `strftime(format, ...)`.
    Call {
        name: String,
        args: Vec<Operand>,
        pos: usize,
    },
}

/// A comparison operator: the base comparison and whether it is the any-of (`?`) form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub cmp: Cmp,
    /// True for the `?=`, `?!=`, ... forms, which match when any value of a multi-valued
    /// operand satisfies the comparison. Without it every value must.
    pub any: bool,
}

/// The comparison part of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Like,
    NotLike,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// Datetime macros, all computed in UTC from the query's `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Macro {
    Now,
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
    Weekday,
    Yesterday,
    Tomorrow,
    TodayStart,
    TodayEnd,
    MonthStart,
    MonthEnd,
    YearStart,
    YearEnd,
}

impl Op {
    /// Parses an operator token (`=`, `?!~`, ...).
    pub fn parse(s: &str) -> Option<Op> {
        let (any, rest) = match s.strip_prefix('?') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let cmp = match rest {
            "=" => Cmp::Eq,
            "!=" => Cmp::Neq,
            "~" => Cmp::Like,
            "!~" => Cmp::NotLike,
            "<" => Cmp::Lt,
            "<=" => Cmp::Lte,
            ">" => Cmp::Gt,
            ">=" => Cmp::Gte,
            _ => return None,
        };
        Some(Op { cmp, any })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.cmp {
            Cmp::Eq => "=",
            Cmp::Neq => "!=",
            Cmp::Like => "~",
            Cmp::NotLike => "!~",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
        };
        if self.any {
            write!(f, "?{s}")
        } else {
            f.write_str(s)
        }
    }
}

impl Macro {
    /// The macro named by an identifier such as `@todayStart`.
    pub fn from_name(name: &str) -> Option<Macro> {
        Some(match name {
            "@now" => Macro::Now,
            "@second" => Macro::Second,
            "@minute" => Macro::Minute,
            "@hour" => Macro::Hour,
            "@day" => Macro::Day,
            "@month" => Macro::Month,
            "@year" => Macro::Year,
            "@weekday" => Macro::Weekday,
            "@yesterday" => Macro::Yesterday,
            "@tomorrow" => Macro::Tomorrow,
            "@todayStart" => Macro::TodayStart,
            "@todayEnd" => Macro::TodayEnd,
            "@monthStart" => Macro::MonthStart,
            "@monthEnd" => Macro::MonthEnd,
            "@yearStart" => Macro::YearStart,
            "@yearEnd" => Macro::YearEnd,
            _ => return None,
        })
    }
}
