//! PocketBase's reading of a view query, ported as written (`core/view.go`, `tools/tokenizer`):
//! a loose tokenizer that finds the selected columns (with their aliases) and the tables of
//! `FROM` and `JOIN`, and the classification of each column into a suggested field (counts and
//! casts become numbers, text or bools; `x.id` becomes a relation to `x`'s collection; a plain
//! column of a collection becomes a copy of that collection's field). Columns it cannot place
//! become `json` fields, as in PocketBase.
//!
//! Pure: it sees collections through [`CollectionLookup`] and never runs SQL. The caller
//! (`views/mod.rs`) asks SQLite for the view's real columns and orders the fields by them.
//!
//! One deliberate difference: PocketBase gives a copied field a random id (`_clone_` + 4
//! characters); here the 4 characters derive from the column's alias, so every node of a
//! cluster that infers the same view gets the same field ids.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::filter::CollectionLookup;
use crate::store::schema::{
    Collection, Empty, Field, FieldKind, JsonOptions, NumberOptions, RelationOptions, TextOptions,
    crc32,
};

/// A query PocketBase refuses before running it (the message is PocketBase's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Trims spaces and `;` and refuses more than one statement (a helpful message, not a
/// security measure: the view wraps the query in a sub-select anyway).
pub fn normalize_select(query: &str) -> Result<String, ParseError> {
    let q = query.trim().trim_matches(';').to_string();
    let mut tk = Tokenizer::new(&q, &[';']);
    let parts = tk.scan_all()?;
    if parts.len() > 1 {
        return Err(ParseError("multiple statements are not supported".into()));
    }
    Ok(q)
}

/// A column or table as written, and the name it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub original: String,
    pub alias: String,
}

/// The columns of the `SELECT` and the tables of its `FROM` and `JOIN`s, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identifiers {
    pub columns: Vec<Identifier>,
    pub tables: Vec<Identifier>,
}

/// Whitespace as Go's `regexp` `\s` sees it.
const WS: &str = r"[\t\n\f\r ]";

static COMMENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)(/\*[\s\S]*?\*/)|(--.+$)").expect("static regex"));
static JOINS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?im){WS}+(full{WS}+outer{WS}+join|left{WS}+outer{WS}+join|right{WS}+outer{WS}+join|full{WS}+join|cross{WS}+join|inner{WS}+join|outer{WS}+join|left{WS}+join|right{WS}+join|join){WS}+?"
    ))
    .expect("static regex")
});
static DISCARDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?im){WS}+(where|group{WS}+by|having|order|limit|with){WS}+?"
    ))
    .expect("static regex")
});
static CAST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)^cast\s*\(.*\s+as\s+(\w+)\s*\)$").expect("static regex"));

/// Finds the selected columns and the joined tables of `query`.
pub fn identifiers(query: &str) -> Result<Identifiers, ParseError> {
    let s = query.trim().trim_matches(';');
    let s = COMMENTS.replace_all(s, " ");
    let s = JOINS.replace_all(&s, " __pb_join__ ");
    let s = DISCARDS.replace_all(&s, " __pb_discard__ ");
    let mut tk = Tokenizer::new(&s, &[',', ' ', '\n', '\t']);
    tk.keep_separator = true;
    #[derive(PartialEq)]
    enum Part {
        None,
        Select,
        From,
        Join,
    }
    let (mut select, mut from, mut join) = (String::new(), String::new(), String::new());
    let mut part = Part::None;
    let mut skip = false;
    while let Some(token) = tk.scan()? {
        let trimmed = token.trim().to_lowercase();
        match trimmed.as_str() {
            "select" => {
                skip = false;
                part = Part::Select;
            }
            "distinct" => continue,
            "from" => {
                skip = false;
                part = Part::From;
            }
            "__pb_join__" => {
                skip = false;
                if part == Part::Join {
                    join.push(',');
                }
                part = Part::Join;
            }
            "__pb_discard__" => skip = true,
            _ => {
                if part == Part::Join && trimmed == "on" {
                    skip = true;
                }
                let active = match part {
                    Part::None => None,
                    Part::Select => Some(&mut select),
                    Part::From => Some(&mut from),
                    Part::Join => Some(&mut join),
                };
                if !skip && let Some(buf) = active {
                    buf.push(' ');
                    buf.push_str(&token);
                }
            }
        }
    }
    let mut tables = extract(&from)?;
    tables.extend(extract(&join)?);
    Ok(Identifiers {
        columns: extract(&select)?,
        tables,
    })
}

fn extract(raw: &str) -> Result<Vec<Identifier>, ParseError> {
    let mut out = Vec::new();
    for item in Tokenizer::new(raw, &[',']).scan_all()? {
        let parts = Tokenizer::new(&item, &[' ', '\n', '\t']).scan_all()?;
        out.push(identifier_from_parts(&parts)?);
    }
    Ok(out)
}

fn identifier_from_parts(parts: &[String]) -> Result<Identifier, ParseError> {
    let (original, alias) = match parts {
        [original, as_kw, alias] => {
            if !as_kw.eq_ignore_ascii_case("as") {
                return Err(ParseError(format!(
                    "invalid identifier part - expected \"as\", got {as_kw}"
                )));
            }
            (original.clone(), alias.clone())
        }
        [original, alias] => (original.clone(), alias.clone()),
        [original] => (
            original.clone(),
            original.rsplit('.').next().unwrap_or_default().to_string(),
        ),
        _ => {
            return Err(ParseError(format!(
                "invalid identifier parts [{}]",
                parts.join(" ")
            )));
        }
    };
    Ok(Identifier {
        original: trim_identifier(&original, ""),
        // SQLite accepts a single-quoted identifier where it expects one.
        alias: trim_identifier(&alias, "'"),
    })
}

fn trim_identifier(raw: &str, extra: &str) -> String {
    let cut = |c: char| "`\"[];".contains(c) || extra.contains(c);
    raw.split('.')
        .map(|p| p.trim_matches(cut))
        .collect::<Vec<_>>()
        .join(".")
}

/// A field suggested for one column, with where it came from.
#[derive(Debug, Clone)]
pub struct Suggested {
    pub field: Field,
    /// The collection the column was read from, when known.
    pub collection: Option<String>,
}

/// The `id` field of every view: text, primary key, no length limits.
pub fn view_id_field() -> Field {
    let mut f = Field::new(
        "id",
        FieldKind::Text(TextOptions {
            pattern: "^[a-z0-9]+$".into(),
            primary_key: true,
            ..TextOptions::default()
        }),
    );
    f.system = true;
    f.required = true;
    f
}

/// The field of a column nothing more is known about: `json`.
pub fn default_view_field(name: &str) -> Field {
    if name == "id" {
        return view_id_field();
    }
    Field::new(name, FieldKind::Json(JsonOptions { max_size: 1 }))
}

fn number(name: &str, only_int: bool) -> Field {
    Field::new(
        name,
        FieldKind::Number(NumberOptions {
            only_int,
            ..NumberOptions::default()
        }),
    )
}

/// Suggests a field for each selected column of `query`, by alias.
pub fn suggest_fields(
    lookup: &dyn CollectionLookup,
    query: &str,
) -> Result<HashMap<String, Suggested>, ParseError> {
    let ids = identifiers(query)?;
    // Tables by alias: only plain names (a sub-select is no collection).
    let mut by_alias: HashMap<&str, &Collection> = HashMap::new();
    for t in ids.tables.iter().filter(|t| !t.alias.contains('(')) {
        if let Some(c) = lookup
            .collection(&t.original)
            .filter(|c| c.name.eq_ignore_ascii_case(&t.original))
        {
            by_alias.insert(&t.alias, c);
        }
    }
    let main = ids.tables.first().map(|t| t.alias.as_str()).unwrap_or("");
    let mut out = HashMap::new();
    let mut clone_ids: Vec<String> = Vec::new();
    for col in &ids.columns {
        if col.alias == "*" {
            return Err(ParseError(
                "wildcard columns (*) are not supported - manually type the collection field names you want the view query to have".into(),
            ));
        }
        let plain = |field: Field| Suggested {
            field,
            collection: None,
        };
        let lower = col.original.to_lowercase();
        if col.alias == "id" {
            out.insert(col.alias.clone(), plain(view_id_field()));
            continue;
        }
        if lower.starts_with("count(") {
            out.insert(col.alias.clone(), plain(number(&col.alias, true)));
            continue;
        }
        if lower.starts_with("total(") {
            out.insert(col.alias.clone(), plain(number(&col.alias, false)));
            continue;
        }
        if let Some(cast) = CAST.captures(&lower) {
            let field = match &cast[1] {
                "real" | "decimal" | "numeric" => Some(number(&col.alias, false)),
                "int" | "integer" => Some(number(&col.alias, true)),
                "text" => Some(Field::new(
                    &col.alias,
                    FieldKind::Text(TextOptions::default()),
                )),
                "boolean" | "bool" => Some(Field::new(&col.alias, FieldKind::Bool(Empty {}))),
                _ => None,
            };
            if let Some(field) = field {
                out.insert(col.alias.clone(), plain(field));
                continue;
            }
        }
        let parts: Vec<&str> = col.original.split('.').collect();
        let (field_name, collection) = match parts.as_slice() {
            [table, field] => (*field, by_alias.get(table).copied()),
            _ => (parts[0], by_alias.get(main).copied()),
        };
        let Some(collection) = collection else {
            out.insert(col.alias.clone(), plain(default_view_field(&col.alias)));
            continue;
        };
        let from = Some(collection.id.clone());
        let Some(original) = collection
            .fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(field_name))
        else {
            out.insert(
                col.alias.clone(),
                Suggested {
                    field: default_view_field(&col.alias),
                    collection: from,
                },
            );
            continue;
        };
        let field = if field_name.eq_ignore_ascii_case("id") {
            // An id is a reference to its record.
            Field::new(
                &col.alias,
                FieldKind::Relation(RelationOptions {
                    collection_id: collection.id.clone(),
                    max_select: 1,
                    ..RelationOptions::default()
                }),
            )
        } else {
            let mut f = original.clone();
            f.name = col.alias.clone();
            f.id = clone_id(&col.alias, &clone_ids);
            clone_ids.push(f.id.clone());
            f
        };
        out.insert(
            col.alias.clone(),
            Suggested {
                field,
                collection: from,
            },
        );
    }
    Ok(out)
}

/// `_clone_` and 4 characters derived from the alias (PocketBase's are random), unique among
/// `taken`.
fn clone_id(alias: &str, taken: &[String]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for salt in 0u32.. {
        let mut n = crc32(format!("{alias}\u{0}{salt}").as_bytes());
        let mut id = String::from("_clone_");
        for _ in 0..4 {
            id.push(char::from(ALPHABET[(n % 62) as usize]));
            n /= 62;
        }
        if !taken.contains(&id) {
            return id;
        }
    }
    unreachable!("the salt loop always finds a free id")
}

/// PocketBase's `tools/tokenizer`: splits on separators outside quotes and parentheses.
struct Tokenizer {
    chars: Vec<char>,
    pos: usize,
    separators: Vec<char>,
    keep_separator: bool,
}

/// The whitespace Go's tokenizer trims from tokens (minus its separators).
const TRIM: [char; 8] = ['\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}'];

impl Tokenizer {
    fn new(s: &str, separators: &[char]) -> Tokenizer {
        Tokenizer {
            chars: s.chars().collect(),
            pos: 0,
            separators: separators.to_vec(),
            keep_separator: false,
        }
    }

    /// The next non-empty token, or `None` at the end.
    fn scan(&mut self) -> Result<Option<String>, ParseError> {
        loop {
            // Go's reader reports a NUL character as the end of input.
            if self.pos >= self.chars.len() || self.chars[self.pos] == '\0' {
                return Ok(None);
            }
            let token = self.read_token()?;
            if !token.is_empty() {
                return Ok(Some(token));
            }
        }
    }

    fn scan_all(&mut self) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        while let Some(t) = self.scan()? {
            out.push(t);
        }
        Ok(out)
    }

    fn read_token(&mut self) -> Result<String, ParseError> {
        let mut buf = String::new();
        let mut parens = 0usize;
        let mut quote: Option<char> = None;
        let mut prev: Option<char> = None;
        while let Some(&ch) = self.chars.get(self.pos) {
            if ch == '\0' {
                break;
            }
            self.pos += 1;
            if prev != Some('\\') {
                if ch == '(' && quote.is_none() {
                    parens += 1;
                } else if ch == ')' && parens > 0 && quote.is_none() {
                    parens -= 1;
                } else if matches!(ch, '\'' | '"' | '`') {
                    match quote {
                        Some(q) if q == ch => quote = None,
                        None => quote = Some(ch),
                        Some(_) => {}
                    }
                }
            }
            if self.separators.contains(&ch) && parens == 0 && quote.is_none() {
                if self.keep_separator {
                    buf.push(ch);
                }
                break;
            }
            prev = Some(ch);
            buf.push(ch);
        }
        if parens > 0 || quote.is_some() {
            return Err(ParseError(format!(
                "unbalanced parenthesis or quoted expression: {buf:?}"
            )));
        }
        let seps = &self.separators;
        Ok(buf
            .trim_matches(|c: char| TRIM.contains(&c) && !seps.contains(&c))
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Schema;
    use crate::store::schema::{CollectionType, SelectOptions};

    fn ident(original: &str, alias: &str) -> Identifier {
        Identifier {
            original: original.into(),
            alias: alias.into(),
        }
    }

    #[test]
    fn finds_columns_and_tables_like_pocketbase() {
        let ids = identifiers(
            "SELECT DISTINCT p.id, p.title AS t, count(c.id) total, `p`.`views`
             FROM posts p LEFT JOIN comments AS c ON c.post = p.id
             INNER JOIN users u ON u.id = p.author -- trailing comment
             WHERE p.views > 1 GROUP BY p.id ORDER BY t LIMIT 5;",
        )
        .expect("parse");
        assert_eq!(
            ids.columns,
            [
                ident("p.id", "id"),
                ident("p.title", "t"),
                ident("count(c.id)", "total"),
                ident("p.views", "views"),
            ]
        );
        assert_eq!(
            ids.tables,
            [
                ident("posts", "p"),
                ident("comments", "c"),
                ident("users", "u")
            ]
        );
    }

    #[test]
    fn commas_inside_parentheses_and_quotes_stay_in_one_column() {
        let ids =
            identifiers("select coalesce(a, 'x, y') as v, /* c, d */ b from t").expect("parse");
        assert_eq!(
            ids.columns,
            [ident("coalesce(a, 'x, y')", "v"), ident("b", "b")]
        );
        assert!(identifiers("select (a from t").is_err());
        assert_eq!(
            identifiers("select a b c d from t").map(|_| ()),
            Err(ParseError("invalid identifier parts [a b c d]".into()))
        );
    }

    #[test]
    fn more_than_one_statement_is_refused() {
        assert_eq!(normalize_select(" select 1; ").expect("one"), "select 1");
        assert!(normalize_select("select 1; delete from t").is_err());
        assert!(normalize_select("select ';' as id").is_ok());
    }

    fn schema() -> Schema {
        let mut posts = Collection {
            id: "pbc_posts".into(),
            name: "posts".into(),
            kind: CollectionType::Base,
            system: false,
            fields: vec![
                Field::primary_id(),
                Field::new("title", FieldKind::Text(TextOptions::default())),
                Field::new(
                    "tags",
                    FieldKind::Select(SelectOptions {
                        values: vec!["a".into()],
                        max_select: 2,
                    }),
                ),
            ],
            indexes: vec![],
            list_rule: None,
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            auth: None,
            view_query: None,
            created: String::new(),
            updated: String::new(),
            sql: Default::default(),
        };
        posts.fields[1].required = true;
        Schema::from_collections(vec![posts])
    }

    #[test]
    fn columns_become_the_fields_pocketbase_suggests() {
        let s = schema();
        let got = suggest_fields(
            &s,
            "SELECT p.id, p.title AS heading, p.id AS post, count(*) AS n, total(1) AS sum,
                    cast(p.title as int) AS ci, CAST(1 AS TEXT) ct, cast(0 as bool) cb,
                    tags, p.nope, 1+1 AS expr
             FROM posts p",
        )
        .expect("fields");
        let kind = |name: &str| got[name].field.kind.type_name();
        assert_eq!(got["id"].field, view_id_field());
        assert_eq!(kind("heading"), "text");
        assert!(got["heading"].field.required, "a copy keeps its options");
        assert!(got["heading"].field.id.starts_with("_clone_"));
        assert_eq!(
            got["post"].field.kind,
            FieldKind::Relation(RelationOptions {
                collection_id: "pbc_posts".into(),
                max_select: 1,
                ..RelationOptions::default()
            })
        );
        assert_eq!(
            got["n"].field.kind,
            FieldKind::Number(NumberOptions {
                only_int: true,
                ..NumberOptions::default()
            })
        );
        assert_eq!(kind("sum"), "number");
        assert_eq!(kind("ci"), "number");
        assert_eq!(kind("ct"), "text");
        assert_eq!(kind("cb"), "bool");
        assert_eq!(
            kind("tags"),
            "select",
            "unqualified: the main table's field"
        );
        assert_eq!(kind("nope"), "json");
        assert_eq!(got["nope"].collection.as_deref(), Some("pbc_posts"));
        assert_eq!(kind("expr"), "json");
        assert_eq!(
            got["expr"].field.id,
            Field::new("expr", FieldKind::Json(JsonOptions { max_size: 1 })).id
        );
    }

    #[test]
    fn copied_field_ids_are_the_same_on_every_run() {
        let s = schema();
        let q = "SELECT id, title AS a, title AS b FROM posts";
        let one = suggest_fields(&s, q).expect("fields");
        let two = suggest_fields(&s, q).expect("fields");
        assert_eq!(one["a"].field.id, two["a"].field.id);
        assert_ne!(one["a"].field.id, one["b"].field.id);
    }

    #[test]
    fn wildcards_are_refused() {
        let s = schema();
        for q in ["SELECT * FROM posts", "SELECT p.* FROM posts p"] {
            let err = suggest_fields(&s, q).expect_err(q);
            assert!(err.0.starts_with("wildcard columns (*)"), "{err}");
        }
    }
}
