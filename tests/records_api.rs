//! The records API against the real binary: CRUD, modifiers, listing (paging, sort, filter,
//! skipTotal, fields), expand and relation cascades, multipart bodies.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn crud_round_trip_with_generated_and_client_ids() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let rec = node
        .create_record(
            "posts",
            json!({"title": "hello", "n": 3, "active": true, "tags": ["a", "c"], "meta": {"k": 1}}),
        )
        .await;
    let id = rec["id"].as_str().expect("id");
    assert_eq!(id.len(), 15);
    assert_eq!(rec["collectionName"], "posts");
    assert_eq!(rec["tags"], json!(["a", "c"]));
    assert_eq!(rec["meta"], json!({"k": 1}));
    assert!(rec["created"].as_str().expect("created").ends_with('Z'));

    let mine = node
        .create_record("posts", json!({"id": "abcdefghijklmno", "title": "mine"}))
        .await;
    assert_eq!(mine["id"], "abcdefghijklmno");

    let (s, got) = node
        .get(&format!("/api/collections/posts/records/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, rec);

    let (s, upd) = node
        .patch(
            &format!("/api/collections/posts/records/{id}"),
            json!({"title": "bye"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(upd["title"], "bye");
    assert_eq!(upd["n"], 3);
    assert_eq!(upd["created"], rec["created"]);

    assert_eq!(
        node.delete(&format!("/api/collections/posts/records/{id}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        node.get(&format!("/api/collections/posts/records/{id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        node.delete(&format!("/api/collections/posts/records/{id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn modifiers_apply_to_the_current_value() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let rec = node
        .create_record("posts", json!({"title": "m", "n": 10, "tags": ["b"]}))
        .await;
    let path = format!(
        "/api/collections/posts/records/{}",
        rec["id"].as_str().expect("id")
    );
    let (_, r) = node.patch(&path, json!({"n+": 5})).await;
    assert_eq!(r["n"], 15);
    let (_, r) = node.patch(&path, json!({"n-": 20})).await;
    assert_eq!(r["n"], -5);
    let (_, r) = node.patch(&path, json!({"tags+": "c"})).await;
    assert_eq!(r["tags"], json!(["b", "c"]));
    let (_, r) = node.patch(&path, json!({"+tags": "a"})).await;
    assert_eq!(r["tags"], json!(["a", "b", "c"]));
    let (_, r) = node.patch(&path, json!({"tags-": ["a", "c"]})).await;
    assert_eq!(r["tags"], json!(["b"]));
}

#[tokio::test]
async fn concurrent_increments_are_all_kept() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let rec = node
        .create_record("posts", json!({"title": "counter", "n": 0}))
        .await;
    let path = format!(
        "/api/collections/posts/records/{}",
        rec["id"].as_str().expect("id")
    );
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, url, token) = (
            node.client.clone(),
            format!("{}{}", node.url, path),
            node.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .patch(url)
                .header("Authorization", token)
                .json(&json!({"n+": 1}))
                .send()
                .await
                .expect("send")
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), StatusCode::OK);
    }
    let (_, r) = node.get(&path).await;
    assert_eq!(r["n"], 50);
}

#[tokio::test]
async fn list_pages_sorts_filters_and_skips_totals() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    for i in 0..45 {
        node.create_record("posts", json!({"title": format!("t{i:02}"), "n": i, "active": i % 2 == 0, "tags": if i % 3 == 0 { json!(["a"]) } else { json!(["b", "c"]) }})).await;
    }
    let (s, page) = node.get("/api/collections/posts/records").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            page["page"].clone(),
            page["perPage"].clone(),
            page["totalItems"].clone(),
            page["totalPages"].clone()
        ),
        (json!(1), json!(30), json!(45), json!(2))
    );
    assert_eq!(page["items"].as_array().expect("items").len(), 30);

    let (_, p2) = node
        .get("/api/collections/posts/records?page=2&perPage=20&sort=-n")
        .await;
    let ns: Vec<i64> = p2["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns, (5..25).rev().collect::<Vec<_>>());
    assert_eq!(p2["perPage"], 20);

    let (_, f) = node.get("/api/collections/posts/records?filter=(n>=10%20%26%26%20active=true)&sort=n&perPage=100").await;
    let ns: Vec<i64> = f["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns, (10..45).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    assert_eq!(f["totalItems"], ns.len());

    let (_, skip) = node
        .get("/api/collections/posts/records?skipTotal=1&perPage=5")
        .await;
    assert_eq!(skip["totalItems"], -1);
    assert_eq!(skip["totalPages"], -1);
    assert_eq!(skip["items"].as_array().expect("items").len(), 5);

    // Multi-valued fields need :each for element matching; ~ matches the JSON text.
    let each = node
        .ids("posts", "perPage=100&filter=tags:each%20?=%20'c'")
        .await;
    assert_eq!(each.len(), 30);
    let plain = node
        .ids("posts", "perPage=100&filter=tags%20?=%20'c'")
        .await;
    assert_eq!(plain.len(), 0);
    let like = node.ids("posts", "perPage=100&filter=tags%20~%20'c'").await;
    assert_eq!(like.len(), 30);

    // Sorting by several keys, with a tie-breaker.
    let (_, multi) = node
        .get("/api/collections/posts/records?sort=-active,n&perPage=3")
        .await;
    let ns: Vec<i64> = multi["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns, vec![0, 2, 4]);
    let (s, random) = node
        .get("/api/collections/posts/records?sort=@random&perPage=45")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(random["items"].as_array().expect("items").len(), 45);
}

#[tokio::test]
async fn per_page_is_clamped_as_pocketbase_does() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let (_, zero) = node.get("/api/collections/posts/records?perPage=0").await;
    assert_eq!(zero["perPage"], 30);
    let (_, big) = node
        .get("/api/collections/posts/records?perPage=5000")
        .await;
    assert_eq!(big["perPage"], 1000);
    let (_, neg) = node.get("/api/collections/posts/records?page=-3").await;
    assert_eq!(neg["page"], 1);
}

#[tokio::test]
async fn fields_picker_limits_output() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    node.create_record(
        "posts",
        json!({"title": "<p>A long title here</p>", "n": 1}),
    )
    .await;
    let (_, page) = node
        .get("/api/collections/posts/records?fields=id,title:excerpt(6,true)")
        .await;
    let item = &page["items"][0];
    let keys: Vec<&String> = item.as_object().expect("obj").keys().collect();
    assert_eq!(keys, vec!["id", "title"]);
    assert_eq!(item["title"], "A long...");
}

#[tokio::test]
async fn expand_follows_relations_nested_and_backwards() {
    let node = Node::start().await;
    let authors = node.create_collection(json!({"name": "authors", "viewRule": "", "fields": [{"name": "name", "type": "text"}]})).await;
    let posts = node
        .create_collection(json!({"name": "posts", "fields": [
            {"name": "title", "type": "text"},
            {"name": "author", "type": "relation", "collectionId": authors["id"], "maxSelect": 1},
            {"name": "editors", "type": "relation", "collectionId": authors["id"], "maxSelect": 5}
        ]}))
        .await;
    node.create_collection(json!({"name": "comments", "fields": [
        {"name": "body", "type": "text"},
        {"name": "post", "type": "relation", "collectionId": posts["id"], "maxSelect": 1}
    ]}))
    .await;
    let ann = node.create_record("authors", json!({"name": "Ann"})).await;
    let bob = node.create_record("authors", json!({"name": "Bob"})).await;
    let post = node
        .create_record(
            "posts",
            json!({"title": "p", "author": ann["id"], "editors": [ann["id"], bob["id"]]}),
        )
        .await;
    node.create_record("comments", json!({"body": "first", "post": post["id"]}))
        .await;

    let pid = post["id"].as_str().expect("id");
    let (s, got) = node
        .get(&format!(
            "/api/collections/posts/records/{pid}?expand=author,editors,comments_via_post"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["expand"]["author"]["name"], "Ann");
    let editors: Vec<&str> = got["expand"]["editors"]
        .as_array()
        .expect("editors")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(editors, vec!["Ann", "Bob"]);
    assert_eq!(got["expand"]["comments_via_post"][0]["body"], "first");

    let (_, list) = node
        .get("/api/collections/comments/records?expand=post.author")
        .await;
    assert_eq!(
        list["items"][0]["expand"]["post"]["expand"]["author"]["name"],
        "Ann"
    );
}

#[tokio::test]
async fn deleting_a_related_record_cascades_or_unlinks() {
    let node = Node::start().await;
    let parents = node
        .create_collection(json!({"name": "parents", "fields": [{"name": "name", "type": "text"}]}))
        .await;
    node.create_collection(json!({"name": "children", "fields": [
        {"name": "parent", "type": "relation", "collectionId": parents["id"], "maxSelect": 1, "cascadeDelete": true}
    ]}))
    .await;
    node.create_collection(json!({"name": "fans", "fields": [
        {"name": "likes", "type": "relation", "collectionId": parents["id"], "maxSelect": 10}
    ]}))
    .await;
    let p1 = node.create_record("parents", json!({"name": "one"})).await;
    let p2 = node.create_record("parents", json!({"name": "two"})).await;
    node.create_record("children", json!({"parent": p1["id"]}))
        .await;
    let fan = node
        .create_record("fans", json!({"likes": [p1["id"], p2["id"]]}))
        .await;

    let (s, _) = node
        .delete(&format!(
            "/api/collections/parents/records/{}",
            p1["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        node.ids("children", "").await.is_empty(),
        "cascade removed the child"
    );
    let (_, f) = node
        .get(&format!(
            "/api/collections/fans/records/{}",
            fan["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(
        f["likes"],
        json!([p2["id"]]),
        "non-cascading relation is unlinked"
    );
}

#[tokio::test]
async fn relations_to_missing_records_are_refused_and_nothing_is_written() {
    let node = Node::start().await;
    let parents = node
        .create_collection(json!({"name": "parents", "fields": [{"name": "name", "type": "text"}]}))
        .await;
    node.create_collection(json!({"name": "children", "fields": [
        {"name": "parent", "type": "relation", "collectionId": parents["id"], "maxSelect": 1}
    ]}))
    .await;
    let (s, body) = node
        .post(
            "/api/collections/children/records",
            json!({"parent": "doesnotexist123"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["data"]["parent"]["code"],
        "validation_missing_rel_records"
    );
    assert!(node.ids("children", "").await.is_empty());
}

#[tokio::test]
async fn multipart_and_urlencoded_bodies_are_accepted() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let boundary = "XyZ";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nfrom form\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n42\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\na\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\nb\r\n--{b}--\r\n",
        b = boundary
    );
    let (s, rec) = node
        .raw(
            Method::POST,
            "/api/collections/posts/records",
            &format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rec}");
    assert_eq!(rec["title"], "from form");
    assert_eq!(rec["n"], 42);
    assert_eq!(rec["tags"], json!(["a", "b"]));
    let (s, rec) = node
        .raw(
            Method::POST,
            "/api/collections/posts/records",
            "application/x-www-form-urlencoded",
            b"title=urlenc&n=7".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rec}");
    assert_eq!(
        (rec["title"].clone(), rec["n"].clone()),
        (json!("urlenc"), json!(7))
    );
}

#[tokio::test]
async fn auth_records_hide_secrets() {
    let node = Node::start().await;
    let u = node.create_record("users", json!({"email": "x@example.com", "password": "secret123", "passwordConfirm": "secret123", "name": "X"})).await;
    assert!(
        u.get("password").is_none() && u.get("tokenKey").is_none(),
        "{u}"
    );
    let (_, list) = node
        .call_as("", Method::GET, "/api/collections/users/records", None)
        .await;
    assert_eq!(
        list["items"],
        json!([]),
        "the users listRule shows guests nothing: {list}"
    );
    let (s, auth) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "x@example.com", "password": "secret123"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{auth}");
    assert_eq!(auth["record"]["email"], "x@example.com");
    let (s, bad) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "x@example.com", "password": "wrong"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(bad["message"], "Failed to authenticate.");
    let _: Value = bad;
}

#[tokio::test]
async fn list_totals_follow_every_write() {
    let node = Node::start().await;
    node.create_collection(posts_def()).await;
    let total = |node: &Node| {
        let node = node.url.clone();
        let client = reqwest::Client::new();
        async move {
            let v: Value = client
                .get(format!(
                    "{node}/api/collections/posts/records?filter=n%3E%3D0&perPage=1"
                ))
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            v["totalItems"].as_i64().expect("total")
        }
    };
    // Totals are cached between commits; each write must be reflected at once.
    for i in 0..5 {
        assert_eq!(total(&node).await, i);
        assert_eq!(total(&node).await, i, "repeated read");
        node.create_record("posts", json!({"title": format!("t{i}"), "n": i}))
            .await;
    }
    let (_, page) = node.get("/api/collections/posts/records?perPage=1").await;
    let id = page["items"][0]["id"].as_str().expect("id").to_string();
    node.delete(&format!("/api/collections/posts/records/{id}"))
        .await;
    assert_eq!(total(&node).await, 4);
}
