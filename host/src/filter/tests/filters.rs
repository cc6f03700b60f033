//! Filters on the queried collection's own fields, relations, JSON and macros.

use super::*;

#[test]
fn comparison_operators_on_plain_fields() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("title = 'p1'", "p1"),
            ("title='p1'", "p1"),
            ("title = \"p1\"", "p1"),
            ("'p1' = title", "p1"),
            ("title != 'p1'", "p2,p3,p4,p5"),
            ("views > 5", "p1,p3,p5"),
            ("views >= 5.5", "p1,p3,p5"),
            ("views < 0", "p4"),
            ("views <= 0", "p2,p4"),
            ("views = -3", "p4"),
            ("views>-3", "p1,p2,p3,p5"),
            ("published = true", "p1,p3,p5"),
            ("published = false", "p2,p4"),
            ("published = TRUE", "p1,p3,p5"),
            ("title = subtitle", "p1,p5"),
            ("title != subtitle", "p2,p3,p4"),
            ("pubdate > '2024-01-01'", "p1,p3,p5"),
            ("pubdate < '2024-01-01' && pubdate != ''", "p4"),
            ("status = 'live'", "p1,p4"),
            ("1 = 1", ALL),
            ("'a' = 'a'", ALL),
            ("true = 1", ALL),
            ("id = null", ""),
            // Number literals are bound as floats, as in PocketBase: '5' text is not 5.0.
            ("subtitle = 5", ""),
        ],
    );
}

#[test]
fn like_operators() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("title ~ 'hello'", "p4"),
            ("title ~ 'P'", "p1,p2,p3,p4"),
            ("title !~ 'p'", "p5"),
            ("title ~ '_x'", "p3"),
            ("title ~ '0%'", ""),
            ("title ~ 'P%'", "p1,p2,p3,p4"),
            ("title ~ '%1'", "p1"),
            (r"title ~ '100\%'", "p3"),
            (r"title ~ 'p\%'", ""),
            ("title ~ subtitle", "p1,p2,p5"),
            ("subtitle !~ 'x'", "p1,p2,p3,p5"),
            ("views ~ 5", "p3"),
        ],
    );
}

#[test]
fn null_and_empty_string_are_equal() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("subtitle = ''", "p2,p5"),
            ("subtitle = null", "p2,p5"),
            ("subtitle != ''", "p1,p3,p4"),
            ("subtitle != null", "p1,p3,p4"),
            ("'' = subtitle", "p2,p5"),
            ("null = ''", ALL),
            ("title = NULL", "p5"),
            ("author = ''", "p2"),
            ("pubdate = ''", "p2"),
            ("meta = null", "p2"),
            ("meta != null", "p1,p3,p4,p5"),
        ],
    );
}

#[test]
fn logic_parentheses_and_comments() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("title = 'p1' || title = 'p2' && views = 5", "p1"),
            ("(title = 'p1' || title = 'p2') && views = 0", "p2"),
            ("title = 'p1' || (views > 50 && published = true)", "p1,p5"),
            ("((title = 'p1'))", "p1"),
            (
                "((views > 0 && (published = true || title ~ 'hello')) || (views < 0 && ((status = 'live'))))",
                "p1,p3,p4,p5",
            ),
            ("title = 'p1' // a comment", "p1"),
            ("// first line\ntitle = 'p1'\n// last line", "p1"),
            ("(title = 'p1' // inside\n)", "p1"),
            ("title = 'p1'\t&&\nviews=10", "p1"),
        ],
    );
}

#[test]
fn multi_valued_fields_and_modifiers() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("tags ?= 'c'", ""),
            ("tags ~ 'c'", "p3,p4,p5"),
            ("tags:each ?= 'c'", "p3,p4,p5"),
            ("tags:each = 'c'", "p3"),
            ("tags:each != 'c'", "p1,p2"),
            ("tags:each ?!= 'c'", "p1,p2,p4,p5"),
            ("tags:each ?> 'b'", "p3,p4,p5"),
            ("tags:each > 'a'", "p3,p4"),
            ("tags:each ?~ 'd'", "p4,p5"),
            ("tags:each ?!~ 'a'", "p1,p3,p4,p5"),
            ("tags:each ?< 'b'", "p1,p5"),
            ("tags:each ?<= 'a'", "p1,p5"),
            ("tags:each ?>= 'd'", "p4,p5"),
            ("tags:length > 2", "p5"),
            ("tags:length = 0", "p2"),
            ("tags:length = 1", "p3"),
            ("status:each ?= 'live'", "p1,p4"),
            ("status:length = 1", "p1,p3,p4,p5"),
            ("editors:length = 3", "p4"),
            ("editors:each ?= 'dave'", "p4,p5"),
            ("editors:each ?= ''", "p2"),
            ("title:lower = 'p4 hello'", "p4"),
            ("title:lower ~ 'P4'", "p4"),
            ("tags:lower ~ 'A'", "p1,p5"),
            // The same :each join is shared, so one element cannot be both.
            ("tags:each ?= 'a' && tags:each ?= 'b'", ""),
            ("tags:each ?= 'a' || tags:each ?= 'c'", "p1,p3,p4,p5"),
            ("tags ~ 'a' && tags ~ 'b'", "p1,p5"),
            ("tags:each ?= 'c' && views > 0", "p3,p5"),
        ],
    );
}

#[test]
fn relation_paths() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("author.name = 'alice'", "p1"),
            ("author.name != 'alice'", "p2,p3,p4,p5"),
            ("author.id = 'bob'", "p3"),
            ("author.age >= 30", "p1,p4"),
            ("author.team.name = 'Red'", "p1,p5"),
            ("author.team.id = 'red'", "p1,p5"),
            ("author.roles:each ?= 'admin'", "p1"),
            ("author.roles:length = 0", "p2,p4"),
            ("author.secret = 's1'", "p1"),
            ("author.email ~ 'alice'", "p1"),
            ("editors.name ?= 'bob'", "p1,p4"),
            ("editors.name = 'bob'", ""),
            ("editors.name != 'bob'", "p2,p3,p5"),
            ("editors.age > 10", "p1,p3"),
            ("editors.age ?> 10", "p1,p3,p4"),
            ("editors.id ?= 'carol'", "p3,p4"),
            ("editors.name:lower ?= 'ALICE'", ""),
            ("editors.name:lower ?= 'alice'", "p1"),
            ("editors.roles:each ?= 'viewer'", "p1,p4,p5"),
            ("editors.team.name ?= 'Blue'", "p1,p4"),
            ("editors.name ?= 'alice' && editors.name ?= 'bob'", ""),
            ("editors.name ?= 'bob' && editors.age ?> 25", ""),
            ("editors.name ?= 'bob' || editors.age ?> 35", "p1,p3,p4"),
            ("editors.age = author.age", "p2,p5"),
            ("editors.name ?= author.name", "p1,p2,p4,p5"),
            ("comments_via_post.message ?= 'c3'", "p3"),
            ("comments_via_post.message = 'c3'", ""),
            ("comments_via_post.message != 'zz'", ALL),
            ("comments_via_post.user.name ?= 'carol'", "p3,p4"),
            ("comments_via_post.id ?!= ''", "p1,p3,p4"),
        ],
    );
    // Relations from other collections, and back-relations from users.
    let c = |f: &str| {
        fx.run("comments", f, Caller::Superuser)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    assert_eq!(c("post.author.name = 'bob'"), "c3,c5");
    assert_eq!(c("post.editors.name ?= 'dave'"), "c4");
    assert_eq!(c("user.team.name = 'Red' && post.title ~ 'p'"), "c1,c3");
    let u = |f: &str| {
        fx.run("users", f, Caller::Superuser)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    assert_eq!(u("posts_via_author.title ?= 'p1'"), "alice");
    assert_eq!(u("posts_via_editors.title ?= 'P4 Hello'"), "bob,carol,dave");
    assert_eq!(u("comments_via_user.post.title ?~ 'hello'"), "carol");
}

#[test]
fn json_fields() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("meta.x = 1", "p1"),
            ("meta.x > 0", "p1,p5"),
            ("meta.s = 'hi'", "p1"),
            // In a JSON path PocketBase drops the ':' and reads the key "slower" (PocketBase: no
            // match either).
            ("meta.s:lower = 'hi'", ""),
            ("meta.s = 'hi'", "p1"),
            ("meta.0 = 1", "p3"),
            ("meta.1 = 2", "p3"),
            ("meta = 'str'", "p4"),
            ("meta ~ 'x'", "p1,p5"),
            ("meta.nope = null", ALL),
        ],
    );
}

#[test]
fn datetime_macros() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("pubdate > @now", "p5"),
            ("@yearStart < pubdate", "p5"),
            ("pubdate < @todayStart && pubdate != ''", "p1,p3,p4"),
            ("@todayEnd > @todayStart", ALL),
            ("@yesterday < @now && @tomorrow > @now", ALL),
            (
                "@weekday = 3 && @day = 25 && @month = 11 && @year = 2026",
                ALL,
            ),
            ("@hour = 15 && @minute = 23 && @second = 50", ALL),
            ("@monthEnd = '2026-11-30 23:59:59.999Z'", ALL),
            ("@monthStart = '2026-11-01 00:00:00.000Z'", ALL),
            ("@yearEnd = '2026-12-31 23:59:59.999Z'", ALL),
            ("@todayStart = '2026-11-25 00:00:00.000Z'", ALL),
            ("@todayEnd = '2026-11-25 23:59:59.999Z'", ALL),
            ("@now = '2026-11-25 15:23:50.000Z'", ALL),
            ("@yesterday = '2026-11-24 15:23:50.000Z'", ALL),
            ("@tomorrow = '2026-11-26 15:23:50.000Z'", ALL),
            ("@now = ''", ""),
        ],
    );
}

#[test]
fn strftime_function() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("strftime('%Y', pubdate) = '2024'", "p1"),
            ("strftime('%Y-%m', pubdate, '+1 month') = '2024-02'", "p1"),
            ("strftime('%Y', pubdate) = ''", "p2"),
            ("strftime('%Y', pubdate) != ''", "p1,p3,p4,p5"),
            ("strftime('%Y', @now) = '2026'", ALL),
            ("strftime('%Y', '2020-05-01') = '2020'", ALL),
            ("strftime('%d', tags:each) ?= ''", ALL),
            ("strftime('%Y', tags:each) = ''", ALL),
            ("strftime('%Y') > '2000'", ALL),
        ],
    );
    let su = |f: &str| fx.run("posts", f, Caller::Superuser);
    for bad in [
        "strftime() = 1",
        "strftime(pubdate) = 1",
        "strftime('%Y', pubdate, 5) = 1",
    ] {
        assert!(matches!(su(bad), Err(FilterError::Invalid(_))), "{bad}");
    }
}

#[test]
fn collection_references() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            // Without `?`, every row of the other collection must match.
            ("@collection.users.name = 'alice'", ""),
            ("@collection.users.name ?= 'alice'", ALL),
            ("@collection.users.age > -1", ALL),
            ("@collection.users.age ?> 35", ALL),
            ("@collection.users.name ?= 'zed'", ""),
            // References to the same collection share one row; aliases make them independent.
            (
                "@collection.users.name ?= 'alice' && @collection.users.age ?> 35",
                "",
            ),
            (
                "@collection.users:u.name ?= 'alice' && @collection.users:v.age ?> 35",
                ALL,
            ),
            ("@collection.comments.post ?= id", "p1,p3,p4"),
            (
                "@collection.comments.post ?= id && @collection.comments.message ?= 'c3'",
                "p3",
            ),
            ("@collection.comments.post = id", ""),
            (
                "@collection.comments.post.author.name ?= 'bob' && @collection.comments.post ?= id",
                "p3",
            ),
            (
                "@collection.pbc_comments.message ?= 'c5' && @collection.pbc_comments.post ?= id",
                "p3",
            ),
            ("@collection.posts.views ?> views", "p1,p2,p3,p4"),
        ],
    );
}

#[test]
fn modifiers_pocketbase_ignores_on_single_value_fields() {
    let fx = Fixture::new();
    // `:each`/`:length` on fields that hold one value, and `:isset`/`:changed` outside
    // `@request.body`, are accepted and ignored (PocketBase 0.40.6 answers the same).
    for (with, without) in [
        ("title:each = 'p1'", "title = 'p1'"),
        ("title:each ?= 'p1'", "title ?= 'p1'"),
        ("views:length = 5.5", "views = 5.5"),
        ("views:length > 0", "views > 0"),
        ("title:isset = true", "title = true"),
        ("title:isset = false", "title = false"),
        ("title:changed = true", "title = true"),
        ("meta:length = 2", "meta = 2"),
        ("meta:each = 1", "meta = 1"),
        ("meta.x:each = 1", "meta.xeach = 1"),
        ("author.name:each = 'alice'", "author.name = 'alice'"),
    ] {
        assert_eq!(fx.posts(with), fx.posts(without), "{with}");
    }
    assert_eq!(fx.posts("views:length > 0"), "p1,p3,p5");
    // In sort too.
    for (with, without) in [
        ("title:each,id", "title,id"),
        ("-views:length,id", "-views,id"),
        ("title:isset,id", "title,id"),
        ("meta:length,id", "meta,id"),
    ] {
        assert_eq!(
            fx.sorted("posts", with),
            fx.sorted("posts", without),
            "{with}"
        );
    }
    // Multi-valued fields keep their meaning, and an unknown modifier is still an error.
    assert_eq!(fx.posts("tags:length = 2"), "p1,p4");
    assert!(matches!(
        fx.run("posts", "title:nope = 1", Caller::Superuser),
        Err(FilterError::Invalid(_))
    ));
}

#[test]
fn geo_distance_in_kilometres() {
    let fx = Fixture::new();
    // Paris (2.3522, 48.8566) to London (-0.1276, 51.5072) is about 344 km.
    check(
        &fx,
        &[
            (
                "geoDistance(2.3522, 48.8566, -0.1276, 51.5072) > 340 && id = 'p1'",
                "p1",
            ),
            (
                "geoDistance(2.3522, 48.8566, -0.1276, 51.5072) < 350 && id = 'p1'",
                "p1",
            ),
            ("geoDistance(0, 0, 0, 0) = 0 && id = 'p1'", "p1"),
            // Fields as arguments: JSON paths and numbers; NULL makes the distance NULL.
            ("geoDistance(views, 0, 0, 0) < 700", "p2,p3,p4"),
            ("geoDistance(meta.x, 0, 0, 0) < 120", "p1"),
            ("geoDistance(null, 0, 0, 0) < 1", ""),
            // Through a relation: some editor's age makes the distance small enough.
            ("geoDistance(editors.age, 0, 0, 0) < 1", "p4,p5"),
        ],
    );
}
