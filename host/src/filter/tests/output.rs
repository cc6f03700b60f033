//! The shape of the output: syntax errors, generated SQL and ORDER BY bodies.

use super::*;

#[test]
fn syntax_errors_through_filter_sql() {
    let fx = Fixture::new();
    let su = |f: &str| fx.run("posts", f, Caller::Superuser);
    let syntax = |f: &str| match su(f) {
        Err(FilterError::Syntax { pos, message }) => (pos, message),
        other => panic!("{f}: expected a syntax error, got {other:?}"),
    };
    assert_eq!(
        syntax("(title = 'p1' && views > 1))"),
        (27, "unexpected character ')' at 27".into())
    );
    assert_eq!(
        syntax("title = 'p1' && views = 'abc"),
        (24, "unterminated string starting at 24".into())
    );
    assert_eq!(
        syntax("title = 'p1' title = 'p2'").1,
        "expected && or || at 13, found \"title\""
    );
    assert_eq!(
        syntax("views = 1e2").1,
        "expected && or || at 9, found \"e2\""
    );
    assert_eq!(
        su("title = )").map_err(|e| e.to_string()),
        Err("invalid filter: unexpected character ')' at 8".into())
    );
    assert_eq!(su(""), Ok(ALL.into()));
    // Blank and comment-only filters are refused, as in PocketBase.
    assert_eq!(
        syntax("  // nothing\n "),
        (0, "empty filter expression".into())
    );
}

#[test]
fn simple_comparisons_stay_index_friendly() {
    let fx = Fixture::new();
    let q = fx.query("posts", Caller::Superuser, None);
    let sql = |f: &str| filter_sql(f, &q).expect("sql");
    assert_eq!(
        sql("title = 'x'"),
        (
            "`posts`.`title` = ?".into(),
            vec![SqlParam::Text("x".into())]
        )
    );
    assert_eq!(
        sql("views >= 2"),
        ("`posts`.`views` >= ?".into(), vec![SqlParam::Real(2.0)])
    );
    assert_eq!(
        sql("published = true"),
        ("`posts`.`published` = 1".into(), vec![])
    );
    assert_eq!(
        sql("title = ''"),
        (
            "(`posts`.`title` = '' OR `posts`.`title` IS NULL)".into(),
            vec![]
        )
    );
    assert_eq!(sql(""), ("1=1".into(), vec![]));
    // Conditions without joins stay outside the EXISTS, parameters follow the text order.
    let (s, p) = sql("author.name = 'a' && title = 'b' && views > 3");
    assert!(
        s.starts_with("`posts`.`title` = ? AND `posts`.`views` > ? AND EXISTS ("),
        "{s}"
    );
    assert_eq!(
        p,
        vec![
            SqlParam::Text("b".into()),
            SqlParam::Real(3.0),
            SqlParam::Text("a".into())
        ]
    );
    // `author.id` needs no join.
    assert_eq!(sql("author.id = 'bob'").0, "`posts`.`author` = ?");
    assert_eq!(
        to_sql(&parse("title ~ 'a_b'").expect("parse"), &q)
            .expect("sql")
            .1,
        vec![SqlParam::Text(r"%a\_b%".into())]
    );
}

#[test]
fn sorting() {
    let fx = Fixture::new();
    let s = |sort: &str| {
        fx.sorted("posts", sort)
            .unwrap_or_else(|e| panic!("{sort}: {e}"))
    };
    assert_eq!(s("-views,title"), "p5,p1,p3,p2,p4");
    assert_eq!(s("+title"), "p5,p4,p1,p2,p3");
    assert_eq!(s("title:lower"), "p5,p1,p2,p3,p4");
    assert_eq!(s(" title ,  -views "), "p5,p4,p1,p2,p3");
    assert_eq!(s("author.name,id"), "p2,p1,p3,p4,p5");
    assert_eq!(s("-author.name,id"), "p5,p4,p3,p1,p2");
    assert_eq!(s("author.team.name,-id"), "p4,p2,p3,p5,p1");
    assert_eq!(s("meta.x,id"), "p2,p3,p4,p1,p5");
    assert_eq!(s("tags:length,id"), "p2,p3,p1,p4,p5");
    assert_eq!(s("@rowid"), "p1,p2,p3,p4,p5");
    assert_eq!(s("-@rowid"), "p5,p4,p3,p2,p1");
    assert_eq!(s("editors.age,id"), "p2,p4,p5,p1,p3");
    assert_eq!(s("-editors.age,id"), "p3,p4,p1,p5,p2");
    assert_eq!(s("hid,id"), "p2,p5,p1,p3,p4");
    assert_eq!(s(""), "p1,p2,p3,p4,p5");
    assert_eq!(
        fx.sorted("posts", "@random").map(|v| v.len()),
        Ok(ALL.len())
    );

    let q = fx.query("posts", Caller::Superuser, None);
    assert_eq!(
        sort_sql("title,-id", &q),
        Ok(("`posts`.`title` ASC, `posts`.`id` DESC".into(), vec![]))
    );
    assert_eq!(sort_sql("@random", &q), Ok(("RANDOM()".into(), vec![])));
    assert_eq!(
        sort_sql("nope", &q),
        Err(FilterError::UnknownField("nope".into()))
    );
    for bad in [
        "a,b,c,d,e,f,g,h,i",
        ",title",
        "title,",
        "@request.method",
        "title:foo",
        "ti tle",
        "-",
    ] {
        assert!(
            matches!(sort_sql(bad, &q), Err(FilterError::Invalid(_))),
            "{bad}"
        );
    }
    let client = fx.query("posts", Caller::Client, None);
    assert!(matches!(
        sort_sql("hid", &client),
        Err(FilterError::Invalid(_))
    ));
}
