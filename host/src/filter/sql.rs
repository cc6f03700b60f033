//! SQL building blocks: fragments with positional parameters, joins, resolved operands and
//! the JSON helpers that normalise non-JSON column values.

use super::SqlParam;

/// SQL text and the values of its `?` placeholders, in order of appearance. Fragments are only
/// ever combined by concatenation, which keeps the parameters in step with the text.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Frag {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

impl Frag {
    pub fn raw(sql: impl Into<String>) -> Frag {
        Frag {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    pub fn param(p: SqlParam) -> Frag {
        Frag {
            sql: "?".into(),
            params: vec![p],
        }
    }

    /// Appends plain SQL text.
    pub fn s(mut self, sql: &str) -> Frag {
        self.sql.push_str(sql);
        self
    }

    /// Appends another fragment, text and parameters.
    pub fn f(mut self, other: &Frag) -> Frag {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params.iter().cloned());
        self
    }

    /// Joins fragments with a separator.
    pub fn join(parts: &[Frag], sep: &str) -> Frag {
        let mut out = Frag::default();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out = out.s(sep);
            }
            out = out.f(p);
        }
        out
    }
}

/// One `LEFT JOIN table alias [ON ...]`.
#[derive(Debug, Clone)]
pub(super) struct Join {
    pub table: Frag,
    pub alias: String,
    pub on: Option<Frag>,
}

impl Join {
    pub fn sql(&self) -> Frag {
        let f = Frag::raw(" LEFT JOIN ")
            .f(&self.table)
            .s(" ")
            .s(&self.alias);
        match &self.on {
            Some(on) => f.s(" ON ").f(on),
            None => f,
        }
    }
}

/// A multi-match subquery, `SELECT value AS __mv FROM ...`, kept in two parts so that a
/// function such as `strftime` can wrap the value.
#[derive(Debug, Clone)]
pub(super) struct MultiSub {
    pub value: Frag,
    /// ` FROM base alias LEFT JOIN ... WHERE alias.id = base.id`.
    pub from: Frag,
}

impl MultiSub {
    pub fn sql(&self) -> Frag {
        Frag::raw("SELECT ")
            .f(&self.value)
            .s(" AS `__mv`")
            .f(&self.from)
    }
}

/// What is statically known about an operand being '' or NULL, which decides how `=` and `!=`
/// are emitted (PocketBase treats '' and NULL as equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emptiness {
    /// NULL or ''.
    Empty,
    /// A non-empty literal, so a direct (index-friendly) comparison is exact.
    NonEmpty,
    /// A column or expression.
    Unknown,
}

/// A resolved operand: PocketBase's `ResolverResult`.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub ident: Frag,
    pub emptiness: Emptiness,
    /// Compare with `IS` / `IS NOT` instead of the '' = NULL normalisation (JSON values).
    pub no_coalesce: bool,
    /// For multi-valued paths: the subquery listing every value of the path for the current
    /// row, used to require that all values satisfy a non-`?` comparison.
    pub multi: Option<MultiSub>,
    /// An extra condition ANDed to any comparison using this operand.
    pub after: Option<String>,
    /// True when the identifier refers to a joined alias, so the comparison must be evaluated
    /// inside the join scope.
    pub uses_join: bool,
    /// The text a `~` pattern is built from when it differs from the bound value's own text
    /// (a JSON boolean is bound as 1/0 but matched as "true"/"false", as in PocketBase).
    pub like_text: Option<String>,
    /// The parameters belong to an inner expression: for `~` the operand behaves like a
    /// column, not like a bound value to turn into a pattern.
    pub params_internal: bool,
}

impl Resolved {
    pub fn plain(ident: Frag, emptiness: Emptiness) -> Resolved {
        Resolved {
            ident,
            emptiness,
            no_coalesce: false,
            multi: None,
            after: None,
            uses_join: false,
            like_text: None,
            params_internal: false,
        }
    }

    /// `NULL`.
    pub fn null() -> Resolved {
        Resolved::plain(Frag::raw("NULL"), Emptiness::Empty)
    }

    /// A constant such as `TRUE`, `1` or `0`, never empty.
    pub fn constant(sql: &str) -> Resolved {
        Resolved::plain(Frag::raw(sql), Emptiness::NonEmpty)
    }

    /// A bound literal value.
    pub fn literal(p: SqlParam) -> Resolved {
        let emptiness = if p.is_empty() {
            Emptiness::Empty
        } else {
            Emptiness::NonEmpty
        };
        Resolved::plain(Frag::param(p), emptiness)
    }

    /// `LOWER(?)` of a bound value; empty exactly when the value is.
    pub fn lower_literal(p: SqlParam) -> Resolved {
        let mut r = Resolved::literal(p);
        r.ident = Frag::raw("LOWER(").f(&r.ident).s(")");
        r
    }
}

impl SqlParam {
    /// NULL or the empty string.
    pub(super) fn is_empty(&self) -> bool {
        match self {
            SqlParam::Null => true,
            SqlParam::Text(s) => s.is_empty(),
            SqlParam::Int(_) | SqlParam::Real(_) => false,
        }
    }

    /// The value as text, as Go's `cast.ToString` renders it (NULL is '').
    pub(super) fn to_text(&self) -> String {
        match self {
            SqlParam::Null => String::new(),
            SqlParam::Int(i) => i.to_string(),
            SqlParam::Real(f) => f.to_string(),
            SqlParam::Text(s) => s.clone(),
        }
    }
}

/// `json_each` over a column or parameter, treating a non-array value as a one-element array.
pub(super) fn json_each(x: &Frag) -> Frag {
    Frag::raw("json_each(CASE WHEN iif(json_valid(")
        .f(x)
        .s("), json_type(")
        .f(x)
        .s(")='array', FALSE) THEN ")
        .f(x)
        .s(" ELSE json_array(")
        .f(x)
        .s(") END)")
}

/// The length of a JSON array column; '' and NULL count as empty, a scalar as one element.
pub(super) fn json_array_length(x: &str) -> Frag {
    Frag::raw(format!(
        "json_array_length(CASE WHEN iif(json_valid({x}), json_type({x})='array', FALSE) \
         THEN {x} ELSE (CASE WHEN {x} = '' OR {x} IS NULL THEN json_array() \
         ELSE json_array({x}) END) END)"
    ))
}

/// `JSON_EXTRACT` of a path (`""`, `".a.b"`-less form such as `a.b[0]` or `[1]`), also for
/// values that are not valid JSON (they are wrapped first).
pub(super) fn json_extract(x: &str, path: &str) -> Frag {
    let path = if path.is_empty() || path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    };
    Frag::raw(format!(
        "(CASE WHEN json_valid({x}) THEN JSON_EXTRACT({x}, '${path}') \
         ELSE JSON_EXTRACT(json_object('pb', {x}), '$.pb{path}') END)"
    ))
}
