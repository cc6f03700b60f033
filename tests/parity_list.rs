//! PocketBase parity of the records list (issue 17), against the real binary. Every answer
//! asserted here is what PocketBase 0.40.6 answers to the same requests (the JS SDK suite,
//! `tests/js/parity.test.mjs`, runs the same cases against PocketBase itself).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

/// `GET` as a given caller ("" for a guest) with a raw query string.
async fn list(node: &Node, token: &str, coll: &str, query: &str) -> (StatusCode, Value) {
    node.call_as(
        token,
        Method::GET,
        &format!("/api/collections/{coll}/records?{query}"),
        None,
    )
    .await
}

fn ids(body: &Value) -> Vec<&str> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default())
        .collect()
}

fn q(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("url");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_string()
}

/// Users u1 (verified) and u2 (not), and posts p1 (owner u1), p2 (owner u2), p3 (no owner),
/// listable by anyone. `users` keeps its default rules: a user may list only itself.
async fn posts_with_owners(node: &Node) -> (String, String) {
    for (id, email, verified) in [
        ("uuuuuuuuuuuuu01", "u1@example.com", true),
        ("uuuuuuuuuuuuu02", "u2@example.com", false),
    ] {
        node.create_record(
            "users",
            json!({"id": id, "email": email, "password": "secret123", "passwordConfirm": "secret123",
                   "verified": verified, "emailVisibility": true}),
        )
        .await;
    }
    node.create_collection(json!({
        "name": "posts", "listRule": "", "viewRule": "",
        "fields": [{"name": "title", "type": "text"},
                   {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                   {"name": "secret", "type": "text", "hidden": true}]}))
    .await;
    for (id, owner) in [
        ("ppppppppppppp01", "uuuuuuuuuuuuu01"),
        ("ppppppppppppp02", "uuuuuuuuuuuuu02"),
        ("ppppppppppppp03", ""),
    ] {
        node.create_record(
            "posts",
            json!({"id": id, "title": id, "owner": owner, "secret": "s"}),
        )
        .await;
    }
    let (s, auth) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "u1@example.com", "password": "secret123"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{auth}");
    (
        auth["token"].as_str().expect("token").to_string(),
        "ppppppppppppp03".to_string(),
    )
}

#[tokio::test]
async fn a_guest_learns_nothing_from_relations_it_may_not_list() {
    let node = Node::start().await;
    let (u1, ownerless) = posts_with_owners(&node).await;
    let n = &node;
    let guest = move |query: String| async move { list(n, "", "posts", &query).await };

    // Before issue 17 a guest got p2 here: u2's verified flag, one comparison at a time.
    for filter in ["owner.verified = false", "owner.verified = true"] {
        let (s, body) = guest(q(&[("filter", filter)])).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(ids(&body).is_empty(), "{filter}: {body}");
    }
    // A missing relation does not fail the other side of an `||`.
    let (_, body) = guest(q(&[(
        "filter",
        "owner.verified = true || title = 'ppppppppppppp03'",
    )]))
    .await;
    assert_eq!(ids(&body), [ownerless.as_str()]);
    // Sorting by the owners' emails drops the posts whose owner the guest may not list.
    let (s, body) = guest(q(&[("sort", "-owner.email")])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), [ownerless.as_str()]);

    // u1 may list itself, so its own post matches, u2's never does.
    let (_, body) = list(
        &node,
        &u1,
        "posts",
        &q(&[("filter", "owner.verified = true")]),
    )
    .await;
    assert_eq!(ids(&body), ["ppppppppppppp01"]);
    let (_, body) = list(
        &node,
        &u1,
        "posts",
        &q(&[("filter", "owner.verified = false")]),
    )
    .await;
    assert!(ids(&body).is_empty(), "{body}");
    let (_, body) = list(&node, &u1, "posts", &q(&[("sort", "owner.email")])).await;
    assert_eq!(ids(&body), ["ppppppppppppp03", "ppppppppppppp01"]);

    // A superuser is never narrowed.
    let (_, body) = node
        .get(&format!(
            "/api/collections/posts/records?{}",
            q(&[("filter", "owner.verified = false")])
        ))
        .await;
    assert_eq!(ids(&body), ["ppppppppppppp02"]);

    // A collection only superusers may list cannot be joined by anyone else at all.
    let (s, _) = node
        .patch("/api/collections/users", json!({"listRule": null}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = guest(q(&[("filter", "owner.verified = false")])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = guest(q(&[("sort", "owner.email")])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // ...while the relation column itself stays the caller's to filter.
    let (s, body) = guest(q(&[("filter", "owner = 'uuuuuuuuuuuuu02'")])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), ["ppppppppppppp02"]);
}

#[tokio::test]
async fn list_errors_come_in_pocketbase_order() {
    let node = Node::start().await;
    posts_with_owners(&node).await;
    let n = &node;
    let guest = move |query: String| async move { list(n, "", "posts", &query).await };

    // `@request.` / `@collection.` anywhere in a guest's filter or sort is a 403 before
    // anything is parsed: in a string literal, beside a syntax error, in the sort.
    for query in [
        q(&[("filter", "title = '@request.x'")]),
        q(&[("filter", "title = '"), ("sort", "@request.x")]),
        q(&[("sort", "@collection.users.email")]),
        q(&[("filter", "title = '@collection.'"), ("page", "x")]),
    ] {
        let (s, body) = guest(query.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{query}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Only superusers")
        );
    }
    // A superuser may sort by another collection.
    let (s, body) = node
        .get(&format!(
            "/api/collections/posts/records?{}",
            q(&[("sort", "@collection.users.email,id")])
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Paging values are parsed as PocketBase parses them (Go's Atoi and ParseBool).
    for bad in [
        "page=x",
        "page=1.5",
        "page=+1",
        "perPage=abc",
        "perPage=2.0",
        "skipTotal=yes",
        "skipTotal=on",
    ] {
        let (s, body) = guest(bad.to_string()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["data"], json!({}));
    }
    let (s, body) = guest("page=-3&perPage=0&skipTotal=T".into()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["page"], &body["perPage"], &body["totalItems"]),
        (&json!(1), &json!(30), &json!(-1))
    );
    let (_, body) = guest("perPage=5000&skipTotal=".into()).await;
    assert_eq!(
        (&body["perPage"], &body["totalItems"]),
        (&json!(1000), &json!(3))
    );

    // A hidden field is a 400 for a non-superuser (not a 403), in filter and sort.
    for query in [q(&[("filter", "secret = 's'")]), q(&[("sort", "secret")])] {
        let (s, body) = guest(query.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    // Blank and comment-only filters are refused; a comment ends at a group's ')' but a '('
    // inside it nests.
    for blank in [" ", "// nothing", "()"] {
        let (s, body) = guest(q(&[("filter", blank)])).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{blank:?}: {body}");
    }
    for (filter, want) in [
        (
            "title = 'ppppppppppppp01' // the first",
            vec!["ppppppppppppp01"],
        ),
        (
            "(title = 'ppppppppppppp01' // c) || title = 'ppppppppppppp03'",
            vec!["ppppppppppppp01", "ppppppppppppp03"],
        ),
        (
            "title != '' && (title > 'ppppppppppppp01' // (x)\n && title < 'ppppppppppppp03')",
            vec!["ppppppppppppp02"],
        ),
        (
            "title = (title = 'ppppppppppppp02')",
            vec!["ppppppppppppp02"],
        ),
    ] {
        let (s, body) = guest(q(&[("filter", filter)])).await;
        assert_eq!(s, StatusCode::OK, "{filter:?}: {body}");
        assert_eq!(ids(&body), want, "{filter:?}");
    }
}

#[tokio::test]
async fn modifiers_on_single_value_fields_are_ignored() {
    let node = Node::start().await;
    node.create_collection(json!({
        "name": "m", "listRule": "",
        "fields": [{"name": "title", "type": "text"}, {"name": "count", "type": "number"},
                   {"name": "meta", "type": "json"},
                   {"name": "tags", "type": "select", "maxSelect": 3, "values": ["a", "b", "c"]}]}))
        .await;
    node.create_record(
        "m",
        json!({"id": "mmmmmmmmmmmmm01", "title": "hello", "count": 3, "meta": {"a": [1, 2]}, "tags": ["a", "b"]}),
    )
    .await;
    node.create_record(
        "m",
        json!({"id": "mmmmmmmmmmmmm02", "title": "", "count": 0}),
    )
    .await;
    let n = &node;
    let guest = move |query: String| async move { list(n, "", "m", &query).await };
    for (filter, want) in [
        ("title:each = 'hello'", vec!["mmmmmmmmmmmmm01"]),
        ("title:each ?= 'hello'", vec!["mmmmmmmmmmmmm01"]),
        ("count:length = 3", vec!["mmmmmmmmmmmmm01"]),
        ("title:isset = true", vec![]),
        ("title:changed = false", vec![]),
        ("meta:length = 2", vec![]),
        ("meta.a:each ?= 1", vec![]),
        ("tags:length = 2", vec!["mmmmmmmmmmmmm01"]),
    ] {
        let (s, body) = guest(q(&[("filter", filter)])).await;
        assert_eq!(s, StatusCode::OK, "{filter}: {body}");
        assert_eq!(ids(&body), want, "{filter}");
    }
    for (sort, want) in [
        ("title:each", ["mmmmmmmmmmmmm02", "mmmmmmmmmmmmm01"]),
        ("-count:length", ["mmmmmmmmmmmmm01", "mmmmmmmmmmmmm02"]),
        ("title:isset", ["mmmmmmmmmmmmm02", "mmmmmmmmmmmmm01"]),
        ("meta:length,id", ["mmmmmmmmmmmmm02", "mmmmmmmmmmmmm01"]),
    ] {
        let (s, body) = guest(q(&[("sort", sort)])).await;
        assert_eq!(s, StatusCode::OK, "{sort}: {body}");
        assert_eq!(ids(&body), want, "{sort}");
    }
    let (s, _) = guest(q(&[("filter", "title:nope = 1")])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
