//! Fuzzing the filter language: any text is parsed or refused, never a panic, and every filter
//! and sort that translates runs in SQLite without an error (an SQL error would be a 500), for a
//! superuser, a guest, a signed-in user and a rule, with related collections' listRules in
//! play. `PROPTEST_CASES` sets the number of cases (`scripts/fuzz` runs many).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;

/// Pieces of filter text: real paths, modifiers, `@request`/`@collection`, macros, functions,
/// operators, literals (broken ones too), joins, groups, comments and stray characters.
const PIECES: &[&str] = &[
    "title",
    "subtitle",
    "views",
    "published",
    "pubdate",
    "tags",
    "tags:each",
    "tags:length",
    "status",
    "status:each",
    "author",
    "author.id",
    "author.name",
    "author.email",
    "author.team.name",
    "author.secret",
    "author.password",
    "editors",
    "editors.name",
    "editors.age",
    "editors:each",
    "editors:length",
    "editors.team.name",
    "meta",
    "meta.x",
    "meta.s:lower",
    "meta.0",
    "hid",
    "id",
    "title:lower",
    "title:each",
    "title:isset",
    "views:length",
    "comments_via_post.message",
    "comments_via_post.user.name",
    "users_via_team.name",
    "@request.auth.id",
    "@request.auth.team.name",
    "@request.auth.roles:each",
    "@request.body.title",
    "@request.body.tags:each",
    "@request.body.tags:length",
    "@request.body.author.name",
    "@request.body.title:changed",
    "@request.body.views:isset",
    "@request.query.page",
    "@request.headers.x_token",
    "@request.method",
    "@request.context",
    "@collection.users.name",
    "@collection.users:u.age",
    "@collection.comments.post.title",
    "@now",
    "@todayStart",
    "@yesterday",
    "@monthEnd",
    "null",
    "true",
    "FALSE",
    "nope",
    "author.nope",
    "a..b",
    "#x",
    "_",
    "geoDistance(",
    "geoDistance(views, 1, 2, 3)",
    "geoDistance(meta.x, editors.age, 0, 0)",
    "strftime(",
    "strftime('%Y', pubdate)",
    "strftime('%s', views, 'unixepoch')",
    ",",
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "~",
    "!~",
    "?=",
    "?!=",
    "?>",
    "?<",
    "?~",
    "?!~",
    "==",
    "=!",
    "&&",
    "||",
    "&",
    "|||",
    "(",
    ")",
    "((",
    "))",
    "0",
    "1",
    "-1",
    "2.5",
    "-",
    "1.",
    ".5",
    "1e5",
    "99999999999999999999999",
    "'p1'",
    "''",
    "\"x\"",
    "'a%'",
    "'\\%'",
    "'_'",
    "'it\\'s'",
    "'",
    "\"unterminated",
    "'alice'",
    "'red'",
    "// c\n",
    "//",
    "\n",
    "\t",
    " ",
    " ",
    " ",
    "$",
    "é",
    "\r",
    "\u{a0}",
    "/",
];

const SORT_PIECES: &[&str] = &[
    "title",
    "-title",
    "+views",
    "-views",
    "author.name",
    "-author.team.name",
    "editors.age",
    "-editors.name",
    "tags:length",
    "meta.x",
    "@rowid",
    "-@rowid",
    "@random",
    "hid",
    "comments_via_post.message",
    "@collection.users.name",
    "@request.auth.id",
    "nope",
    "title:each",
    "-",
    "",
    " ",
    "ti tle",
    "a..b",
];

fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec((proptest::sample::select(pieces), any::<bool>()), 0..max).prop_map(
        |parts| {
            parts
                .into_iter()
                .map(|(p, space)| {
                    if space {
                        format!("{p} ")
                    } else {
                        p.to_string()
                    }
                })
                .collect()
        },
    )
}

/// A well-formed filter from the same paths and literals, nested up to three levels: most of
/// these translate, so the SQL they become is what gets exercised.
fn structured() -> impl Strategy<Value = String> {
    let paths: Vec<&'static str> = PIECES
        .iter()
        .copied()
        .filter(|p| {
            p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '@') && !p.ends_with('(')
        })
        .collect();
    let literals = vec![
        "0",
        "1",
        "-1",
        "2.5",
        "'p1'",
        "''",
        "\"x\"",
        "'a%'",
        "'\\%'",
        "'_'",
        "'alice'",
        "'red'",
        "null",
        "true",
        "@now",
        "geoDistance(views, 1, 2, 3)",
        "strftime('%Y', pubdate)",
    ];
    let ops = vec![
        "=", "!=", ">", ">=", "<", "<=", "~", "!~", "?=", "?!=", "?>", "?<", "?~", "?!~",
    ];
    let operand = prop_oneof![
        proptest::sample::select(paths.clone()),
        proptest::sample::select(literals),
    ];
    let comparison = (
        proptest::sample::select(paths),
        proptest::sample::select(ops),
        operand,
    )
        .prop_map(|(l, op, r)| format!("{l} {op} {r}"));
    comparison.prop_recursive(3, 12, 3, |inner| {
        (
            inner.clone(),
            proptest::sample::select(vec!["&&", "||"]),
            inner,
            any::<bool>(),
        )
            .prop_map(|(a, join, b, group)| {
                if group {
                    format!("({a}) {join} {b}")
                } else {
                    format!("{a} {join} {b}")
                }
            })
    })
}

fn callers() -> [Caller<'static>; 4] {
    [
        Caller::Superuser,
        Caller::Client,
        Caller::User("bob"),
        Caller::Rule {
            auth: Some("alice"),
            body: &BODY,
        },
    ]
}

static BODY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"title": "p1", "tags": ["a", "z"], "author": ["alice", "bob"], "views": "5"}),
);

/// The fixture with related collections only some callers may list.
fn fixture() -> Fixture {
    let mut fx = Fixture::new();
    fx.set_list_rule("users", Some("id = @request.auth.id || verified = true"));
    fx.set_list_rule(
        "comments",
        Some("user.team.name != 'Blue' // and a comment"),
    );
    fx.set_list_rule("teams", None);
    fx
}

#[test]
fn fuzz_any_text_parses_or_is_refused() {
    let mut runner = TestRunner::new(Config::default());
    runner
        .run(&any::<String>(), |s| {
            let _ = parse(&s);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn fuzz_filters_and_sorts_that_translate_run_in_sqlite() {
    let fx = fixture();
    let mut runner = TestRunner::new(Config::default());
    let filter = prop_oneof![text(PIECES, 14), structured()];
    let case = (filter, text(SORT_PIECES, 4), any::<bool>());
    runner
        .run(&case, |(filter, sort, with_rule)| {
            let sort = sort.trim().replace(' ', ",");
            for caller in callers() {
                // `run` and `list` execute what translates, and panic on an SQL error.
                let _ = fx.run("posts", &filter, caller);
                let rule = if with_rule {
                    "author.name != 'nobody'"
                } else {
                    ""
                };
                let _ = fx.list(rule, &filter, &sort, caller);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
