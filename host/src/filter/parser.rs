//! Tokenizer and recursive-descent parser for PocketBase's filter syntax (the `fexpr` grammar).
//!
//! `&&` binds tighter than `||`, as in SQL (PocketBase emits the groups into SQL unchanged, so
//! that is the precedence it gets). Strings follow `fexpr`: only the escaped quote of the
//! string's own kind (`\'` in `'...'`) is unescaped; every other backslash is kept verbatim,
//! which lets `\%` and `\_` reach the LIKE pattern as escapes.

use super::FilterError;
use super::ast::{Comparison, Expr, Macro, Op, Operand};

/// Deeper nesting than this is refused instead of risking the stack.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Text(String),
    Number(f64),
    Op(Op),
    And,
    Or,
    LParen,
    RParen,
    Comma,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn syntax(pos: usize, message: String) -> FilterError {
    FilterError::Syntax { pos, message }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => format!("\"{s}\""),
        Tok::Text(s) => format!("string '{s}'"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Op(op) => format!("'{op}'"),
        Tok::And => "'&&'".into(),
        Tok::Or => "'||'".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Eof => "end of filter".into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '@' || c == '#'
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '.' || c == ':'
}

fn is_op_char(c: char) -> bool {
    matches!(c, '=' | '?' | '!' | '>' | '<' | '~')
}

/// `fexpr`'s identifier shape: an optional `@`, `#` or `_` prefix, then word characters, dots
/// and colons, ending in a word character.
fn valid_identifier(s: &str) -> bool {
    let body = s.strip_prefix(['@', '#', '_']).unwrap_or(s);
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    body.chars().last().is_some_and(word) && body.chars().all(|c| word(c) || c == '.' || c == ':')
}

fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Parenthesis depth: PocketBase scans a group's text before parsing it, so a comment
    // inside a group also ends at the `)` that closes the group.
    let mut depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth = depth.saturating_sub(1);
        }
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' && !(depth > 0 && chars[i] == ')') {
                i += 1;
            }
        } else if is_ident_start(c) {
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            if !valid_identifier(&s) {
                return Err(syntax(
                    start,
                    format!("invalid identifier \"{s}\" at {start}"),
                ));
            }
            out.push(Token {
                tok: Tok::Ident(s),
                pos: start,
            });
        } else if c == '-' || c.is_ascii_digit() {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = match s.parse::<f64>() {
                Ok(n) if !s.ends_with('.') => n,
                _ => return Err(syntax(start, format!("invalid number \"{s}\" at {start}"))),
            };
            out.push(Token {
                tok: Tok::Number(n),
                pos: start,
            });
        } else if c == '\'' || c == '"' {
            let (text, end) = scan_text(&chars, start)?;
            i = end;
            out.push(Token {
                tok: Tok::Text(text),
                pos: start,
            });
        } else if is_op_char(c) {
            while i < chars.len() && is_op_char(chars[i]) {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let op = Op::parse(&s)
                .ok_or_else(|| syntax(start, format!("invalid operator \"{s}\" at {start}")))?;
            out.push(Token {
                tok: Tok::Op(op),
                pos: start,
            });
        } else if c == '&' || c == '|' {
            while i < chars.len() && (chars[i] == '&' || chars[i] == '|') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let tok = match s.as_str() {
                "&&" => Tok::And,
                "||" => Tok::Or,
                _ => {
                    return Err(syntax(
                        start,
                        format!("invalid operator \"{s}\" at {start}"),
                    ));
                }
            };
            out.push(Token { tok, pos: start });
        } else {
            let tok = match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                _ => {
                    return Err(syntax(
                        start,
                        format!("unexpected character '{c}' at {start}"),
                    ));
                }
            };
            i += 1;
            out.push(Token { tok, pos: start });
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
    });
    Ok(out)
}

/// Scans a quoted string starting at `start`; returns its unescaped text and the index after
/// the closing quote.
fn scan_text(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut raw = String::new();
    let mut prev = '\0';
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote && prev != '\\' {
            let escaped = format!("\\{quote}");
            return Ok((raw.replace(&escaped, &quote.to_string()), i + 1));
        }
        raw.push(c);
        prev = c;
        i += 1;
    }
    Err(syntax(
        start,
        format!("unterminated string starting at {start}"),
    ))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `at` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn or_expr(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.and_expr()?];
        while self.peek().tok == Tok::Or {
            self.next();
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.primary()?];
        while self.peek().tok == Tok::And {
            self.next();
            items.push(self.primary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let t = self.peek().clone();
        if t.tok != Tok::LParen {
            return self.comparison();
        }
        self.next();
        if self.peek().tok == Tok::RParen {
            return Err(syntax(t.pos, format!("empty parentheses at {}", t.pos)));
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(
                t.pos,
                format!("parentheses nested too deeply at {}", t.pos),
            ));
        }
        let inner = self.or_expr()?;
        self.depth -= 1;
        let close = self.next();
        match close.tok {
            Tok::RParen => Ok(inner),
            Tok::Eof => Err(syntax(t.pos, format!("missing ')' for '(' at {}", t.pos))),
            other => Err(syntax(
                close.pos,
                format!(
                    "expected && or || at {}, found {}",
                    close.pos,
                    describe(&other)
                ),
            )),
        }
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let left = self.operand()?;
        let t = self.next();
        let op = match t.tok {
            Tok::Op(op) => op,
            Tok::Eof => {
                return Err(syntax(
                    t.pos,
                    "unexpected end of filter, expected an operator".into(),
                ));
            }
            other => {
                return Err(syntax(
                    t.pos,
                    format!(
                        "expected an operator at {}, found {}",
                        t.pos,
                        describe(&other)
                    ),
                ));
            }
        };
        let right = self.operand()?;
        Ok(Expr::Compare(Comparison { left, op, right }))
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let t = self.next();
        match t.tok {
            Tok::Text(s) => Ok(Operand::Text(s)),
            Tok::Number(n) => Ok(Operand::Number(n)),
            Tok::Ident(name) => {
                if self.peek().tok == Tok::LParen && self.peek().pos == t.pos + name.chars().count()
                {
                    return self.call(name, t.pos);
                }
                Ok(match name.to_ascii_lowercase().as_str() {
                    "null" => Operand::Null,
                    "true" => Operand::Bool(true),
                    "false" => Operand::Bool(false),
                    _ => match Macro::from_name(&name) {
                        Some(m) => Operand::Macro(m),
                        None => Operand::Field { name, pos: t.pos },
                    },
                })
            }
            Tok::Eof => Err(syntax(
                t.pos,
                "unexpected end of filter, expected a field, string or number".into(),
            )),
            other => Err(syntax(
                t.pos,
                format!(
                    "unexpected {} at {}, expected a field, string or number",
                    describe(&other),
                    t.pos
                ),
            )),
        }
    }

    fn call(&mut self, name: String, pos: usize) -> Result<Operand, FilterError> {
        self.next(); // the '('
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.next();
            return Ok(Operand::Call { name, args, pos });
        }
        loop {
            args.push(self.operand()?);
            let t = self.next();
            match t.tok {
                Tok::Comma => continue,
                Tok::RParen => return Ok(Operand::Call { name, args, pos }),
                other => {
                    return Err(syntax(
                        t.pos,
                        format!(
                            "expected ',' or ')' at {}, found {}",
                            t.pos,
                            describe(&other)
                        ),
                    ));
                }
            }
        }
    }
}

/// Parses a filter expression. An empty (or comment-only) filter is a syntax error here;
/// `filter_sql` treats it as "no filter".
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    let tokens = tokenize(src)?;
    let mut p = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Err(syntax(0, "empty filter".into()));
    }
    let expr = p.or_expr()?;
    let t = p.next();
    match t.tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(syntax(t.pos, format!("unexpected ')' at {}", t.pos))),
        other => Err(syntax(
            t.pos,
            format!("expected && or || at {}, found {}", t.pos, describe(&other)),
        )),
    }
}

/// True when the source holds nothing but whitespace and comments.
pub fn is_blank(src: &str) -> bool {
    matches!(tokenize(src).as_deref(), Ok([Token { tok: Tok::Eof, .. }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::ast::Cmp;

    fn field(name: &str, pos: usize) -> Operand {
        Operand::Field {
            name: name.into(),
            pos,
        }
    }

    fn cmp(left: Operand, op: &str, right: Operand) -> Expr {
        Expr::Compare(Comparison {
            left,
            op: Op::parse(op).expect("op"),
            right,
        })
    }

    fn err(src: &str) -> (usize, String) {
        match parse(src) {
            Err(FilterError::Syntax { pos, message }) => (pos, message),
            other => panic!("expected a syntax error for {src:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_every_operator() {
        for op in [
            "=", "!=", "~", "!~", "<", "<=", ">", ">=", "?=", "?!=", "?~", "?!~", "?<", "?<=",
            "?>", "?>=",
        ] {
            let e = parse(&format!("a {op} 1")).expect("parse");
            assert_eq!(e, cmp(field("a", 0), op, Operand::Number(1.0)), "{op}");
            assert_eq!(Op::parse(op).expect("op").to_string(), op);
        }
        assert_eq!(
            Op::parse("?!~"),
            Some(Op {
                cmp: Cmp::NotLike,
                any: true
            })
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("a = 1 || b = 2 && c = 3").expect("parse");
        let Expr::Or(items) = e else {
            panic!("expected Or")
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[1], Expr::And(v) if v.len() == 2));
    }

    #[test]
    fn a_comment_inside_a_group_ends_at_its_closing_paren() {
        let e = parse("a > 1 && (b < 3 // ends here) || c = 3").expect("parse");
        // The same expression with the comment blanked out (positions stay aligned).
        let f = parse("a > 1 && (b < 3             ) || c = 3").expect("parse");
        assert_eq!(e, f);
    }

    #[test]
    fn literals_strings_and_comments() {
        let e = parse("// leading\n title = 'it\\'s' && x = \"say \\\"hi\\\"\" // trailing")
            .expect("parse");
        let Expr::And(items) = e else {
            panic!("expected And")
        };
        assert_eq!(
            items[0],
            cmp(field("title", 12), "=", Operand::Text("it's".into()))
        );
        assert_eq!(
            items[1],
            cmp(field("x", 31), "=", Operand::Text("say \"hi\"".into()))
        );
        // Other backslashes are kept verbatim, as in fexpr.
        assert_eq!(
            parse(r"a ~ '50\%'").expect("parse"),
            cmp(field("a", 0), "~", Operand::Text(r"50\%".into()))
        );
        assert_eq!(
            parse("a=-1.5&&b=TRUE||c=Null").expect("parse"),
            Expr::Or(vec![
                Expr::And(vec![
                    cmp(field("a", 0), "=", Operand::Number(-1.5)),
                    cmp(field("b", 8), "=", Operand::Bool(true)),
                ]),
                cmp(field("c", 16), "=", Operand::Null),
            ])
        );
        assert_eq!(
            parse("@now > @todayStart").expect("parse"),
            cmp(
                Operand::Macro(Macro::Now),
                ">",
                Operand::Macro(Macro::TodayStart)
            )
        );
        assert_eq!(
            parse("tags:each ?= 'a'").expect("parse"),
            cmp(field("tags:each", 0), "?=", Operand::Text("a".into()))
        );
    }

    #[test]
    fn nested_parentheses() {
        let e = parse("((a = 1) && ((b = 2 || c = 3)))").expect("parse");
        let Expr::And(items) = e else {
            panic!("expected And")
        };
        assert!(matches!(&items[1], Expr::Or(v) if v.len() == 2));
    }

    #[test]
    fn function_calls_parse() {
        let e = parse("geoDistance(a, 1, b.c, 2) < 5").expect("parse");
        let Expr::Compare(c) = e else {
            panic!("expected comparison")
        };
        let Operand::Call { name, args, .. } = c.left else {
            panic!("expected a call")
        };
        assert_eq!((name.as_str(), args.len()), ("geoDistance", 4));
    }

    #[test]
    fn syntax_errors_name_the_problem_and_position() {
        assert_eq!(err("title = 'p1')"), (12, "unexpected ')' at 12".into()));
        assert_eq!(
            err("title = 'abc"),
            (8, "unterminated string starting at 8".into())
        );
        assert_eq!(err("(title = 'p1'"), (0, "missing ')' for '(' at 0".into()));
        assert_eq!(
            err("title"),
            (5, "unexpected end of filter, expected an operator".into())
        );
        assert_eq!(
            err("title = 'a' &&").1,
            "unexpected end of filter, expected a field, string or number"
        );
        assert_eq!(
            err("title == 'a'"),
            (6, "invalid operator \"==\" at 6".into())
        );
        assert_eq!(
            err("a = 1 b = 2"),
            (6, "expected && or || at 6, found \"b\"".into())
        );
        assert_eq!(
            err("a = 1 & b = 2"),
            (6, "invalid operator \"&\" at 6".into())
        );
        assert_eq!(err("a = 100."), (4, "invalid number \"100.\" at 4".into()));
        assert_eq!(err("a = $"), (4, "unexpected character '$' at 4".into()));
        assert_eq!(err("() && a = 1"), (0, "empty parentheses at 0".into()));
        assert_eq!(
            err("a = )"),
            (
                4,
                "unexpected ')' at 4, expected a field, string or number".into()
            )
        );
        assert_eq!(err("a. = 1"), (0, "invalid identifier \"a.\" at 0".into()));
        assert_eq!(err("   // only a comment"), (0, "empty filter".into()));
        assert_eq!(
            err("= 1").1,
            "unexpected '=' at 0, expected a field, string or number"
        );
        let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
        assert!(err(&deep).1.contains("nested too deeply"));
    }

    #[test]
    fn blank_detection() {
        assert!(is_blank("  \n// c\n  "));
        assert!(!is_blank("a = 1"));
    }
}
