//! Scanner and parser for PocketBase's filter syntax: a port of `fexpr` (the package PocketBase
//! parses filters with), so that the same text is accepted, refused and grouped the same way.
//!
//! fexpr's shape, kept here on purpose because clients see its consequences:
//! - A parenthesised group is scanned as raw text up to its matching `)` (quoted strings kept
//!   whole, comments not recognised), then parsed on its own. So a `//` comment inside a group
//!   ends at the group's `)`, a `(` inside such a comment counts as nesting, and an apostrophe
//!   inside it starts a string.
//! - A comment runs to the end of the line; only space, tab and newline are whitespace.
//! - A group may follow anything: `a = (b = 1)` drops the unfinished `a =`, and `(a = 1)(b = 2)`
//!   joins the groups with the last join seen (`&&` at first).
//! - Conditions form a flat list joined left to right; PocketBase emits it into SQL as written,
//!   so `&&` binds tighter than `||`, which is how the list is turned into a tree here.
//! - Strings only unescape the escaped quote of their own kind (`\'` in `'...'`); every other
//!   backslash stays, which lets `\%` and `\_` reach a LIKE pattern as escapes.

use super::FilterError;
use super::ast::{Comparison, Expr, Macro, Op, Operand};

/// Deeper nesting of parentheses than this is refused instead of risking the stack (fexpr has
/// no limit; a 3,500-byte filter could otherwise nest 1,750 deep).
const MAX_DEPTH: usize = 64;

/// fexpr's limit on nested function calls in arguments.
const MAX_FUNC_DEPTH: usize = 3;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Whitespace,
    Comment,
    Join {
        or: bool,
    },
    Sign(Op),
    Ident(String),
    Func {
        name: String,
        args: Vec<Token>,
    },
    Number(f64),
    Text(String),
    /// The raw text between a group's parentheses; `inner` is the offset of its first char.
    Group {
        text: String,
        inner: usize,
    },
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    /// Character offset in the whole filter.
    pos: usize,
}

fn syntax(pos: usize, message: String) -> FilterError {
    FilterError::Syntax { pos, message }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n')
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_text_start(c: char) -> bool {
    c == '\'' || c == '"'
}

fn is_number_start(c: char) -> bool {
    c == '-' || is_digit(c)
}

fn is_sign_char(c: char) -> bool {
    matches!(c, '=' | '?' | '!' | '>' | '<' | '~')
}

fn is_join_char(c: char) -> bool {
    c == '&' || c == '|'
}

fn is_special_start(c: char) -> bool {
    c == '@' || c == '_' || c == '#'
}

fn is_ident_start(c: char) -> bool {
    is_letter(c) || is_special_start(c)
}

fn is_ident_char(c: char) -> bool {
    is_letter(c) || is_digit(c) || c == '.' || c == ':' || c == '_'
}

/// fexpr's identifier check: not ending in `.` or `:`, and not a lone `@`, `_` or `#`.
fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let (Some(first), Some(last)) = (chars.clone().next(), chars.next_back()) else {
        return false;
    };
    last != '.' && last != ':' && (s.chars().count() != 1 || !is_special_start(first))
}

/// A scanner over one text (the whole filter, or a group's inside at offset `base`).
struct Scanner<'a> {
    chars: &'a [char],
    at: usize,
    base: usize,
}

impl Scanner<'_> {
    fn read(&mut self) -> Option<char> {
        let c = self.chars.get(self.at).copied();
        if c.is_some() {
            self.at += 1;
        }
        c
    }

    fn unread(&mut self) {
        self.at = self.at.saturating_sub(1);
    }

    /// Offset of the next char in the whole filter.
    fn pos(&self) -> usize {
        self.base + self.at
    }

    fn scan(&mut self) -> Result<Token, FilterError> {
        let pos = self.pos();
        let token = |tok| Ok(Token { tok, pos });
        let Some(c) = self.read() else {
            return token(Tok::Eof);
        };
        self.unread();
        if is_ws(c) {
            self.whitespace();
            token(Tok::Whitespace)
        } else if c == '(' {
            self.group()
        } else if is_ident_start(c) {
            self.identifier(MAX_FUNC_DEPTH)
        } else if is_number_start(c) {
            self.number()
        } else if is_text_start(c) {
            let text = self.text(false)?;
            token(Tok::Text(text))
        } else if is_sign_char(c) {
            let s = self.run(is_sign_char);
            match Op::parse(&s) {
                Some(op) => token(Tok::Sign(op)),
                None => Err(syntax(
                    pos,
                    format!("invalid sign operator \"{s}\" at {pos}"),
                )),
            }
        } else if is_join_char(c) {
            match self.run(is_join_char).as_str() {
                "&&" => token(Tok::Join { or: false }),
                "||" => token(Tok::Join { or: true }),
                s => Err(syntax(
                    pos,
                    format!("invalid join operator \"{s}\" at {pos}"),
                )),
            }
        } else if c == '/' {
            self.comment()?;
            token(Tok::Comment)
        } else {
            Err(syntax(pos, format!("unexpected character '{c}' at {pos}")))
        }
    }

    /// The longest run of chars satisfying `f`.
    fn run(&mut self, f: fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.read() {
            if !f(c) {
                self.unread();
                break;
            }
            s.push(c);
        }
        s
    }

    fn whitespace(&mut self) {
        self.run(is_ws);
    }

    /// `//` up to the end of the line (the newline is consumed with it).
    fn comment(&mut self) -> Result<(), FilterError> {
        let pos = self.pos();
        if self.read() != Some('/') || self.read() != Some('/') {
            return Err(syntax(pos, format!("invalid comment at {pos}")));
        }
        while let Some(c) = self.read() {
            if c == '\n' {
                break;
            }
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Token, FilterError> {
        let pos = self.pos();
        let mut s = String::new();
        let mut had_dot = false;
        while let Some(c) = self.read() {
            let sign_ok = c == '-' && s.is_empty();
            let dot_ok = c == '.' && !had_dot;
            if !is_digit(c) && !sign_ok && !dot_ok {
                self.unread();
                break;
            }
            had_dot |= c == '.';
            s.push(c);
        }
        if s == "-" || s.ends_with('.') {
            return Err(syntax(pos, format!("invalid number \"{s}\" at {pos}")));
        }
        // Go's cast.ToFloat64 turns an out-of-range literal into 0.
        let n = s
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .unwrap_or(0.0);
        Ok(Token {
            tok: Tok::Number(n),
            pos,
        })
    }

    /// A quoted string; with `keep_quotes` the raw text including quotes and escapes.
    fn text(&mut self, keep_quotes: bool) -> Result<String, FilterError> {
        let pos = self.pos();
        let quote = self.read().unwrap_or('\'');
        let mut raw = String::from(quote);
        let mut prev = '\0';
        let mut closed = false;
        while let Some(c) = self.read() {
            raw.push(c);
            if c == quote && prev != '\\' {
                closed = true;
                break;
            }
            prev = c;
        }
        if !closed {
            return Err(syntax(
                pos,
                format!("unterminated string starting at {pos}"),
            ));
        }
        if keep_quotes {
            return Ok(raw);
        }
        let inner = &raw[quote.len_utf8()..raw.len() - quote.len_utf8()];
        Ok(inner.replace(&format!("\\{quote}"), &quote.to_string()))
    }

    fn identifier(&mut self, func_depth: usize) -> Result<Token, FilterError> {
        let pos = self.pos();
        let mut s = String::new();
        if let Some(c) = self.read() {
            s.push(c);
        }
        while let Some(c) = self.read() {
            if c == '(' {
                if func_depth == 0 {
                    return Err(syntax(
                        pos,
                        format!("functions nested too deeply at {pos} (at most {MAX_FUNC_DEPTH})"),
                    ));
                }
                if !valid_identifier(&s) {
                    return Err(syntax(
                        pos,
                        format!("invalid function name \"{s}\" at {pos}"),
                    ));
                }
                self.unread();
                return self.function_args(s, pos, func_depth);
            }
            if !is_ident_char(c) {
                self.unread();
                break;
            }
            s.push(c);
        }
        if !valid_identifier(&s) {
            return Err(syntax(pos, format!("invalid identifier \"{s}\" at {pos}")));
        }
        Ok(Token {
            tok: Tok::Ident(s),
            pos,
        })
    }

    fn function_args(
        &mut self,
        name: String,
        pos: usize,
        func_depth: usize,
    ) -> Result<Token, FilterError> {
        let bad = |m: &str| syntax(pos, format!("{m} in function \"{name}\" at {pos}"));
        if self.read() != Some('(') {
            return Err(bad("invalid call"));
        }
        let mut args = Vec::new();
        let mut expect_comma = false;
        let mut closed = false;
        while let Some(c) = self.read() {
            if c == ')' {
                closed = true;
                break;
            }
            if is_ws(c) {
                self.whitespace();
                continue;
            }
            if c == '/' {
                self.unread();
                self.comment()?;
                continue;
            }
            let comma = c == ',';
            if expect_comma && !comma {
                return Err(bad("expected a comma after an argument"));
            }
            if !expect_comma && comma {
                return Err(bad("unexpected comma"));
            }
            expect_comma = false;
            if comma {
                continue;
            }
            self.unread();
            let arg = if is_ident_start(c) {
                self.identifier(func_depth - 1)?
            } else if is_number_start(c) {
                self.number()?
            } else if is_text_start(c) {
                let at = self.pos();
                Token {
                    tok: Tok::Text(self.text(false)?),
                    pos: at,
                }
            } else {
                return Err(bad(&format!("unsupported argument character '{c}'")));
            };
            args.push(arg);
            expect_comma = true;
        }
        if !closed {
            return Err(bad("missing ')'"));
        }
        Ok(Token {
            tok: Tok::Func { name, args },
            pos,
        })
    }

    /// A group's raw inside, up to the matching `)`.
    fn group(&mut self) -> Result<Token, FilterError> {
        let pos = self.pos();
        self.read(); // the '('
        let inner = self.pos();
        let mut text = String::new();
        let mut open = 1usize;
        while let Some(c) = self.read() {
            if c == '(' {
                open += 1;
                text.push(c);
            } else if is_text_start(c) {
                self.unread();
                text.push_str(&self.text(true)?);
            } else if c == ')' {
                open -= 1;
                if open == 0 {
                    break;
                }
                text.push(c);
            } else {
                text.push(c);
            }
        }
        if open > 0 {
            return Err(syntax(pos, format!("missing ')' for '(' at {pos}")));
        }
        Ok(Token {
            tok: Tok::Group { text, inner },
            pos,
        })
    }
}

/// One item of fexpr's flat result: a comparison or a nested group, with the join before it.
enum Item {
    Compare(Comparison),
    Group(Vec<(bool, Item)>),
}

#[derive(PartialEq)]
enum Step {
    BeforeSign,
    Sign,
    AfterSign,
    Join,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("\"{s}\""),
        Tok::Func { name, .. } => format!("function \"{name}\""),
        Tok::Text(s) => format!("string '{s}'"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Sign(op) => format!("'{op}'"),
        Tok::Join { or: false } => "'&&'".into(),
        Tok::Join { or: true } => "'||'".into(),
        Tok::Group { .. } => "'('".into(),
        Tok::Whitespace | Tok::Comment => "whitespace".into(),
        Tok::Eof => "end of filter".into(),
    }
}

fn operand(t: Token) -> Result<Operand, FilterError> {
    Ok(match t.tok {
        Tok::Text(s) => Operand::Text(s),
        Tok::Number(n) => Operand::Number(n),
        Tok::Func { name, args } => Operand::Call {
            name,
            args: args.into_iter().map(operand).collect::<Result<_, _>>()?,
            pos: t.pos,
        },
        Tok::Ident(name) => {
            if let Some(m) = Macro::from_name(&name) {
                Operand::Macro(m)
            } else if name.eq_ignore_ascii_case("null") {
                Operand::Null
            } else if name.eq_ignore_ascii_case("true") {
                Operand::Bool(true)
            } else if name.eq_ignore_ascii_case("false") {
                Operand::Bool(false)
            } else {
                Operand::Field { name, pos: t.pos }
            }
        }
        other => {
            return Err(syntax(
                t.pos,
                format!(
                    "expected a field, function, string or number at {}, found {}",
                    t.pos,
                    describe(&other)
                ),
            ));
        }
    })
}

fn is_operand(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Ident(_) | Tok::Text(_) | Tok::Number(_) | Tok::Func { .. }
    )
}

/// fexpr's `Parse` over `chars` (the whole filter or a group's inside at offset `base`).
fn parse_items(
    chars: &[char],
    base: usize,
    depth: usize,
) -> Result<Vec<(bool, Item)>, FilterError> {
    let mut sc = Scanner { chars, at: 0, base };
    let mut out: Vec<(bool, Item)> = Vec::new();
    let mut step = Step::BeforeSign;
    let mut or = false;
    let mut left: Option<Operand> = None;
    let mut op: Option<Op> = None;
    let mut started = false;
    loop {
        let t = sc.scan()?;
        match t.tok {
            Tok::Eof => break,
            Tok::Whitespace | Tok::Comment => continue,
            Tok::Group { text, inner } => {
                if depth >= MAX_DEPTH {
                    return Err(syntax(
                        t.pos,
                        format!("parentheses nested too deeply at {}", t.pos),
                    ));
                }
                let inner_chars: Vec<char> = text.chars().collect();
                let items = parse_items(&inner_chars, inner, depth + 1)?;
                out.push((or, Item::Group(items)));
                step = Step::Join;
                continue;
            }
            _ => {}
        }
        let pos = t.pos;
        match step {
            Step::BeforeSign | Step::AfterSign => {
                if !is_operand(&t.tok) {
                    let side = if step == Step::BeforeSign {
                        "a left operand"
                    } else {
                        "a right operand"
                    };
                    return Err(syntax(
                        pos,
                        format!("expected {side} at {pos}, found {}", describe(&t.tok)),
                    ));
                }
                started = true;
                let o = operand(t)?;
                if step == Step::BeforeSign {
                    left = Some(o);
                    step = Step::Sign;
                } else {
                    let (Some(l), Some(op)) = (left.take(), op.take()) else {
                        return Err(syntax(pos, format!("incomplete comparison at {pos}")));
                    };
                    out.push((
                        or,
                        Item::Compare(Comparison {
                            left: l,
                            op,
                            right: o,
                        }),
                    ));
                    step = Step::Join;
                }
            }
            Step::Sign => match t.tok {
                Tok::Sign(o) => {
                    op = Some(o);
                    step = Step::AfterSign;
                }
                other => {
                    return Err(syntax(
                        pos,
                        format!("expected an operator at {pos}, found {}", describe(&other)),
                    ));
                }
            },
            Step::Join => match t.tok {
                Tok::Join { or: o } => {
                    or = o;
                    step = Step::BeforeSign;
                }
                other => {
                    return Err(syntax(
                        pos,
                        format!("expected && or || at {pos}, found {}", describe(&other)),
                    ));
                }
            },
        }
    }
    if step != Step::Join {
        let end = base + chars.len();
        if out.is_empty() && !started {
            return Err(syntax(base, "empty filter expression".into()));
        }
        return Err(syntax(
            end,
            "invalid or incomplete filter expression".into(),
        ));
    }
    Ok(out)
}

/// Turns fexpr's flat `a && b || c` list into a tree where `&&` binds tighter.
fn to_expr(items: Vec<(bool, Item)>) -> Expr {
    let mut ors: Vec<Expr> = Vec::new();
    let mut ands: Vec<Expr> = Vec::new();
    for (i, (or, item)) in items.into_iter().enumerate() {
        if i > 0 && or {
            ors.push(collapse(std::mem::take(&mut ands), Expr::And));
        }
        ands.push(match item {
            Item::Compare(c) => Expr::Compare(c),
            Item::Group(inner) => to_expr(inner),
        });
    }
    ors.push(collapse(ands, Expr::And));
    collapse(ors, Expr::Or)
}

fn collapse(mut v: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr) -> Expr {
    if v.len() == 1 { v.remove(0) } else { wrap(v) }
}

/// True when the text holds nothing but whitespace and comments (a rule saved like that
/// before rules were validated as PocketBase validates them means "no condition").
pub fn is_blank(src: &str) -> bool {
    let chars: Vec<char> = src.chars().collect();
    let mut sc = Scanner {
        chars: &chars,
        at: 0,
        base: 0,
    };
    loop {
        match sc.scan() {
            Ok(Token { tok: Tok::Eof, .. }) => return true,
            Ok(Token {
                tok: Tok::Whitespace | Tok::Comment,
                ..
            }) => continue,
            _ => return src.trim().is_empty(),
        }
    }
}

/// Parses a filter expression. Empty, blank and comment-only text is a syntax error, as in
/// PocketBase.
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    Ok(to_expr(parse_items(&chars, 0, 0)?))
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
