//! Rules: `@request.*` values, access flags and combined rule + filter translation.

use super::*;

#[test]
fn request_auth_in_rules() {
    let fx = Fixture::new();
    let rule = |f: &str, who: Option<&str>| fx.rule(f, who, NULL_BODY);
    let cases: &[(&str, [&str; 3])] = &[
        // filter, [alice, bob, guest]
        ("@request.auth.roles:each ?= 'admin'", [ALL, "", ""]),
        ("@request.auth.roles:each = 'viewer'", ["", "", ""]),
        ("author = @request.auth.id", ["p1", "p3", "p2"]),
        ("@request.auth.age > 25", [ALL, "", ""]),
        ("editors ~ @request.auth.id", ["p1", "p1,p4", ""]),
        ("editors:each ?= @request.auth.id", ["p1", "p1,p4", "p2"]),
        ("editors.id ?= @request.auth.id", ["p1", "p1,p4", "p2"]),
        ("@request.auth.id = ''", ["", "", ALL]),
        ("@request.auth.id != ''", [ALL, ALL, ""]),
        ("@request.auth.name = author.name", ["p1", "p3", "p2"]),
        ("@request.auth.email = 'alice@x.io'", [ALL, "", ""]),
        ("@request.auth.secret = 's1'", [ALL, "", ""]),
        ("@request.auth.nope = null", [ALL, ALL, ALL]),
        ("@request.auth.roles:length = 2", ["", ALL, ""]),
        (
            "@request.auth.comments_via_user.message ?= 'c2'",
            ["", ALL, ""],
        ),
        ("@request.auth.collectionName = 'users'", [ALL, ALL, ""]),
        ("@request.auth.verified = false", ["", ALL, ""]),
        ("@request.auth.team.name = 'Red'", [ALL, "", ""]),
        (
            "@request.auth.team.name = author.team.name",
            ["p1,p5", "p3", "p2,p4"],
        ),
        // Rules may see hidden fields and private emails.
        ("author.email ~ 'bob'", ["p3", "p3", "p3"]),
        ("editors.email ?~ 'bob'", ["p1,p4", "p1,p4", "p1,p4"]),
    ];
    for (filter, want) in cases {
        for (who, want) in [Some("alice"), Some("bob"), None].iter().zip(want) {
            assert_eq!(rule(filter, *who), *want, "rule {filter:?} for {who:?}");
        }
    }
}

#[test]
fn request_static_values() {
    let fx = Fixture::new();
    let rule = |f: &str| fx.rule(f, None, NULL_BODY);
    assert_eq!(rule("@request.method = 'GET'"), ALL);
    assert_eq!(rule("@request.method = 'POST'"), "");
    assert_eq!(rule("@request.context = 'default'"), ALL);
    assert_eq!(rule("@request.query.perPage = '500'"), ALL);
    // Query values are text: a number literal does not equal them.
    assert_eq!(rule("@request.query.perPage = 500"), "");
    assert_eq!(
        rule("@request.query.page:isset = true && @request.query.nope:isset = false"),
        ALL
    );
    assert_eq!(rule("@request.headers.x_token = 'tok'"), ALL);
    assert_eq!(rule("@request.headers.user_agent ~ 'tester'"), ALL);
    assert_eq!(rule("@request.headers.nope = ''"), ALL);
    assert_eq!(rule("@request.query.perPage:lower = '500'"), ALL);
}

#[test]
fn request_body() {
    let fx = Fixture::new();
    let body = json!({"title": "p1", "views": "10", "published": false, "tags": ["b", "a"],
                      "editors": ["carol", "dave"], "author": "bob", "meta": {"x": 1, "s": "hi"}, "extra": null});
    let rule = |f: &str| fx.rule(f, Some("alice"), &body);
    assert_eq!(rule("@request.body.title = title"), "p1");
    assert_eq!(rule("@request.body.title:isset = true"), ALL);
    assert_eq!(rule("@request.body.extra:isset = true"), ALL);
    assert_eq!(rule("@request.body.subtitle:isset = false"), ALL);
    assert_eq!(rule("@request.body.subtitle = null"), ALL);
    // A numeric string for a number field compares as a number.
    assert_eq!(rule("@request.body.views = views"), "p1");
    assert_eq!(rule("@request.body.views > 5"), ALL);
    assert_eq!(rule("@request.body.published = false"), ALL);
    assert_eq!(rule("@request.body.title:lower = 'P1'"), "");
    assert_eq!(rule("@request.body.title:lower = 'p1'"), ALL);
    // :changed: submitted and different from the stored value (array order matters).
    assert_eq!(rule("@request.body.title:changed = false"), "p1");
    assert_eq!(rule("@request.body.views:changed = false"), "p1");
    assert_eq!(rule("@request.body.tags:changed = true"), ALL);
    assert_eq!(rule("@request.body.subtitle:changed = false"), ALL);
    assert_eq!(rule("@request.body.meta:changed = false"), "p1");
    assert_eq!(rule("@request.body.published:changed = true"), "p1,p3,p5");
    assert_eq!(rule("@request.body.nofield:changed = false"), ALL);
    // Arrays: :each and :length.
    assert_eq!(rule("@request.body.tags:length = 2"), ALL);
    assert_eq!(rule("@request.body.tags:each ?= 'a'"), ALL);
    assert_eq!(rule("@request.body.tags:each = 'a'"), "");
    assert_eq!(rule("@request.body.tags:each ?= tags:each"), "p1,p5");
    assert_eq!(rule("@request.body.tags:each != 'z'"), ALL);
    assert_eq!(
        rule("@request.body.editors:length > 1 && @request.body.editors:each ?= author"),
        "p4,p5"
    );
    // Submitted relations: fields of the records they point at.
    assert_eq!(rule("@request.body.author.name = 'bob'"), ALL);
    assert_eq!(rule("@request.body.editors.age ?> 30"), ALL);
    assert_eq!(rule("@request.body.editors.age > 30"), "");
    assert_eq!(rule("@request.body.editors.team.name ?= 'Red'"), ALL);
    assert_eq!(rule("@request.body.meta.x = 1"), ALL);
    assert_eq!(
        rule("@request.body.title = 'p1' && @request.body.author = author"),
        "p3"
    );
    // No body at all.
    assert_eq!(
        fx.rule("@request.body.author.name = 'bob'", None, NULL_BODY),
        ""
    );
    assert_eq!(
        fx.rule("@request.body.title:changed = false", None, NULL_BODY),
        ALL
    );
}

#[test]
fn rule_and_filter_share_joins() {
    let fx = Fixture::new();
    let request = fx.request(Caller::Rule {
        auth: Some("alice"),
        body: NULL_BODY,
    });
    let rule_q = fx.query(
        "posts",
        Caller::Rule {
            auth: Some("alice"),
            body: NULL_BODY,
        },
        Some(&request),
    );
    let client_q = fx.query("posts", Caller::Client, Some(&request));
    let ids = |rule: &str, filter: &str| -> Result<String, FilterError> {
        let (rule, filter) = (parse(rule)?, parse(filter)?);
        let (sql, params) = combined_sql(&[(&rule, &rule_q), (&filter, &client_q)])?;
        let full = format!("SELECT id FROM `posts` WHERE {sql} ORDER BY id");
        let mut stmt = fx.conn.prepare(&full).expect("prepare");
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(params.iter().map(param_to_db)),
                |r| r.get(0),
            )
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("rows");
        Ok(rows.join(","))
    };
    // The same editor must be named bob and be older than 25: nobody.
    assert_eq!(
        ids("editors.name ?= 'bob'", "editors.age ?> 25"),
        Ok(String::new())
    );
    assert_eq!(
        ids("editors.name ?= 'bob'", "editors.age ?< 25"),
        Ok("p1,p4".into())
    );
    // Each part keeps its own access flags.
    assert_eq!(
        ids(
            "author.secret = 's1' && @request.auth.id != ''",
            "title ~ 'p'"
        ),
        Ok("p1".into())
    );
    assert!(matches!(
        ids("title ~ 'p'", "author.secret = 's1'"),
        Err(FilterError::Invalid(_))
    ));
    assert!(matches!(
        ids("title ~ 'p'", "@request.auth.id != ''"),
        Err(FilterError::Forbidden(_))
    ));
    assert_eq!(combined_sql(&[]), Ok(("1=1".into(), Vec::new())));
}

#[test]
fn forbidden_unknown_and_invalid() {
    let fx = Fixture::new();
    let client = |f: &str| fx.run("posts", f, Caller::Client);
    assert!(matches!(
        client("@request.auth.id != ''"),
        Err(FilterError::Forbidden(_))
    ));
    assert!(matches!(
        client("@collection.users.name ?= 'x'"),
        Err(FilterError::Forbidden(_))
    ));
    assert!(matches!(
        client("title = 'x' || @request.method = 'GET'"),
        Err(FilterError::Forbidden(_))
    ));
    assert!(matches!(client("hid = 'h1'"), Err(FilterError::Invalid(_))));
    assert!(matches!(
        client("author.secret = 's1'"),
        Err(FilterError::Invalid(_))
    ));
    assert!(matches!(
        client("author.password = ''"),
        Err(FilterError::Invalid(_))
    ));
    assert!(matches!(
        client("author.tokenKey = ''"),
        Err(FilterError::Invalid(_))
    ));
    // Non-superusers only match public emails.
    assert_eq!(client("author.email ~ 'bob'"), Ok(String::new()));
    assert_eq!(client("author.email ~ 'alice'"), Ok("p1".into()));
    assert_eq!(client("editors.email ?~ 'bob'"), Ok(String::new()));
    assert_eq!(
        client("title = 'p1' && @now > '2000-01-01'"),
        Ok("p1".into())
    );

    let su = |f: &str| fx.run("posts", f, Caller::Superuser);
    assert_eq!(
        su("nope = 1"),
        Err(FilterError::UnknownField("nope".into()))
    );
    assert_eq!(
        su("author.nope = 1"),
        Err(FilterError::UnknownField("author.nope".into()))
    );
    assert_eq!(
        su("nope_via_post.x = 1"),
        Err(FilterError::UnknownField("nope_via_post.x".into()))
    );
    assert_eq!(
        su("@collection.nope.x = 1"),
        Err(FilterError::UnknownField("@collection.nope".into()))
    );
    assert_eq!(
        su("@nowx = 1"),
        Err(FilterError::UnknownField("@nowx".into()))
    );
    assert_eq!(
        su("@request.nope = 1"),
        Err(FilterError::UnknownField("@request.nope".into()))
    );
    assert_eq!(
        su("@request.auth = null"),
        Err(FilterError::UnknownField("@request.auth".into()))
    );
    assert_eq!(
        su("nope = 1").map_err(|e| e.to_string()),
        Err("unknown field \"nope\"".to_string())
    );
    for bad in [
        "title:foo = 1",
        "title.x = 1",
        "@request.query.page:each = 1",
        "geoDistance(1, 2, 3) < 5",
        "geoDistance(1, 2, 3, '4') < 5",
        "nope(1) = 1",
        "@collection.users:a.name ?= 'x' && @collection.comments:a.message ?= 'y'",
    ] {
        assert!(
            matches!(su(bad), Err(FilterError::Invalid(_))),
            "{bad}: {:?}",
            su(bad)
        );
    }
    // A modifier before the last segment names no field (PocketBase: 400).
    assert_eq!(
        su("tags:each.x = 1"),
        Err(FilterError::UnknownField("tags:each.x".into()))
    );
    let many = vec!["id = 'a'"; 201].join(" || ");
    assert!(
        matches!(su(&many), Err(FilterError::Invalid(m)) if m.contains("too many comparisons"))
    );
    assert_eq!(su(&vec!["id = 'p1'"; 200].join(" || ")), Ok("p1".into()));
    // The length limit is the API's, for clients' filters: rules may be longer.
    let long = format!("title = '{}'", "x".repeat(3500));
    assert_eq!(su(&long), Ok(String::new()));
    // Relations nest at most six levels deep.
    assert!(matches!(
        su("comments_via_post.post.comments_via_post.post.comments_via_post.post.comments_via_post.message = 'x'"),
        Err(FilterError::Invalid(m)) if m.contains("nested")
    ));
}
