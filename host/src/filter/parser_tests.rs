//! Parser tests. Cases marked "PocketBase" were checked against PocketBase 0.40.6: the same
//! text is accepted or refused there, and accepted text means the same.

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

/// The same expression with every position zeroed, to compare shapes.
fn shape(src: &str) -> String {
    let e = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    let s = format!("{e:?}");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("pos: ") {
        out.push_str(&rest[..i + 5]);
        rest = rest[i + 5..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('0');
    }
    out.push_str(rest);
    out
}

#[test]
fn parses_every_operator() {
    for op in [
        "=", "!=", "~", "!~", "<", "<=", ">", ">=", "?=", "?!=", "?~", "?!~", "?<", "?<=", "?>",
        "?>=",
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
    // Numbers: a leading minus and one dot; "007" is 7; an out-of-range literal is 0, as Go's
    // cast.ToFloat64 makes it.
    assert_eq!(
        parse("a = 007").expect("parse"),
        cmp(field("a", 0), "=", Operand::Number(7.0))
    );
    assert_eq!(
        parse("a = -.5").expect("parse"),
        cmp(field("a", 0), "=", Operand::Number(-0.5))
    );
    let huge = format!("a = 1{}", "0".repeat(400));
    assert_eq!(
        parse(&huge).expect("parse"),
        cmp(field("a", 0), "=", Operand::Number(0.0))
    );
}

#[test]
fn nested_parentheses() {
    let e = parse("((a = 1) && ((b = 2 || c = 3)))").expect("parse");
    let Expr::And(items) = e else {
        panic!("expected And")
    };
    assert!(matches!(&items[1], Expr::Or(v) if v.len() == 2));
    // Positions inside groups are offsets in the whole filter.
    assert_eq!(
        parse("x = 1 && (y = 2)").expect("parse"),
        Expr::And(vec![
            cmp(field("x", 0), "=", Operand::Number(1.0)),
            cmp(field("y", 10), "=", Operand::Number(2.0)),
        ])
    );
}

#[test]
fn comments_follow_fexpr() {
    // A comment inside a group ends at the group's closing parenthesis (PocketBase).
    assert_eq!(
        shape("a > 1 && (b < 3 // ends here) || c = 3"),
        shape("a > 1 && (b < 3) || c = 3")
    );
    // ...but a '(' inside that comment is counted as nesting (PocketBase: 200).
    assert_eq!(
        shape("a = 1 && (b > 1 // (x)\n && b < 9)"),
        shape("a = 1 && (b > 1 && b < 9)")
    );
    // ...and an apostrophe starts a string that never ends (PocketBase: 400).
    assert!(
        err("a = 1 && (b > 1 // it's\n)")
            .1
            .contains("unterminated string")
    );
    // Outside a group a comment runs to the end of the line, ')' included (PocketBase: 200).
    assert_eq!(shape("a > 1 // c ) || 1=1"), shape("a > 1"));
    assert_eq!(shape("a = 1 // x\r\n&& b > 1"), shape("a = 1 && b > 1"));
    // In function arguments, comments and whitespace are skipped (PocketBase: 200).
    assert_eq!(
        shape("geoDistance(1, 2, 3 // c\n, 4) > 0"),
        shape("geoDistance(1,2,3,4) > 0")
    );
    // A lone '/' is no comment.
    assert!(err("a = 1 /").1.contains("invalid comment"));
}

#[test]
fn groups_follow_fexpr() {
    // A group may follow an unfinished comparison, which is then dropped (PocketBase: 200, the
    // same answer as the group alone).
    assert_eq!(shape("count = (title = 'x')"), shape("title = 'x'"));
    assert_eq!(shape("count (title = 'x')"), shape("title = 'x'"));
    // Adjacent groups (or a comparison and a group) join with the last join seen.
    assert_eq!(shape("(a = 1)(b = 2)"), shape("a = 1 && b = 2"));
    assert_eq!(shape("a = 3 (b = 'x')"), shape("a = 3 && b = 'x'"));
    assert_eq!(
        shape("(a > 100) || (b = 'x')(c > 1)"),
        shape("a > 100 || b = 'x' || c > 1")
    );
    // After a group, only a join or another group may come.
    assert!(err("(a = 1) b > 1").1.contains("expected && or ||"));
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
    // A trailing comma is accepted, as in fexpr.
    let Expr::Compare(c) = parse("f(1,) = 1").expect("parse") else {
        panic!("expected comparison")
    };
    assert!(matches!(c.left, Operand::Call { ref args, .. } if args.len() == 1));
    assert!(err("f(,1) = 1").1.contains("unexpected comma"));
    assert!(err("f(1 2) = 1").1.contains("expected a comma"));
    assert!(err("f((1)) = 1").1.contains("unsupported argument"));
    assert!(err("f(1 = 1").1.contains("expected a comma"));
    assert!(err("f(1").1.contains("missing ')'"));
    assert!(parse("a(b(c(1))) = 1").is_ok());
    assert!(err("a(b(c(d(1)))) = 1").1.contains("nested too deeply"));
}

#[test]
fn syntax_errors_name_the_problem_and_position() {
    assert_eq!(
        err("title = 'p1')"),
        (12, "unexpected character ')' at 12".into())
    );
    assert_eq!(
        err("title = 'abc"),
        (8, "unterminated string starting at 8".into())
    );
    assert_eq!(err("(title = 'p1'"), (0, "missing ')' for '(' at 0".into()));
    assert_eq!(
        err("title"),
        (5, "invalid or incomplete filter expression".into())
    );
    assert_eq!(
        err("title = 'a' &&").1,
        "invalid or incomplete filter expression"
    );
    assert_eq!(
        err("title == 'a'"),
        (6, "invalid sign operator \"==\" at 6".into())
    );
    assert_eq!(
        err("a = 1 b = 2"),
        (6, "expected && or || at 6, found \"b\"".into())
    );
    assert_eq!(
        err("a = 1 & b = 2"),
        (6, "invalid join operator \"&\" at 6".into())
    );
    assert_eq!(err("a = 100."), (4, "invalid number \"100.\" at 4".into()));
    assert_eq!(err("a = -"), (4, "invalid number \"-\" at 4".into()));
    assert_eq!(err("a = $"), (4, "unexpected character '$' at 4".into()));
    assert_eq!(err("() && a = 1"), (1, "empty filter expression".into()));
    assert_eq!(err("a. = 1"), (0, "invalid identifier \"a.\" at 0".into()));
    assert_eq!(err("@ = 1"), (0, "invalid identifier \"@\" at 0".into()));
    assert_eq!(
        err("   // only a comment"),
        (0, "empty filter expression".into())
    );
    assert_eq!(err(""), (0, "empty filter expression".into()));
    assert_eq!(err(" "), (0, "empty filter expression".into()));
    assert_eq!(err("= 1").1, "expected a left operand at 0, found '='");
    // Only space, tab and newline are whitespace (PocketBase: 400 for these).
    assert!(err("a = 1\r").1.contains("unexpected character"));
    assert!(err("a = 1\u{a0}").1.contains("unexpected character"));
    assert!(err("é = 1").1.contains("unexpected character"));
    let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
    assert!(err(&deep).1.contains("nested too deeply"));
}

#[test]
fn identifiers_follow_fexpr() {
    for ok in [
        "a..b = 1",
        "#x = 1",
        "_x = 1",
        "@x = 1",
        "a:b:c = 1",
        "__ = 1",
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
    for bad in ["title:: = 1", "a: = 1", "_ = 1", "# = 1"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn blank_detection() {
    assert!(is_blank(""));
    assert!(is_blank("  \n// c\n  "));
    assert!(!is_blank("a = 1"));
    assert!(!is_blank("()"));
    assert!(!is_blank("a = '"));
}
