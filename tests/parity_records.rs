//! PocketBase parity of record reads and writes (issue 17), against the real binary: geoPoint
//! fields and `geoDistance`, expand shapes, `:excerpt`, and validation answers. Every answer
//! asserted here is what PocketBase 0.40.6 answers to the same requests.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

fn q(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("url");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_string()
}

#[tokio::test]
async fn geo_points_are_stored_validated_and_filtered_by_distance() {
    let node = Node::start().await;
    let coll = node
        .create_collection(json!({
            "name": "places", "listRule": "", "createRule": "",
            "fields": [{"name": "name", "type": "text"},
                       {"name": "loc", "type": "geoPoint"},
                       {"name": "home", "type": "geoPoint", "required": true}]}))
        .await;
    assert_eq!(coll["fields"][2]["type"], "geoPoint");
    let home = json!({"lon": 1, "lat": 1});
    let paris = node
        .create_record(
            "places",
            json!({"name": "paris", "loc": {"lon": 2.3522, "lat": 48.8566}, "home": home}),
        )
        .await;
    assert_eq!(paris["loc"], json!({"lon": 2.3522, "lat": 48.8566}));
    // JSON text is read too (multipart clients send it); a missing point is the zero point.
    let london = node
        .create_record(
            "places",
            json!({"name": "london", "loc": "{\"lon\":-0.1276,\"lat\":51.5072}", "home": home}),
        )
        .await;
    assert_eq!(london["loc"], json!({"lon": -0.1276, "lat": 51.5072}));
    let nowhere = node
        .create_record("places", json!({"name": "nowhere", "home": home}))
        .await;
    assert_eq!(nowhere["loc"], json!({"lon": 0, "lat": 0}));

    for (body, field, code) in [
        (
            json!({"loc": {"lon": 1, "lat": 91}, "home": home}),
            "loc",
            "validation_invalid_latitude",
        ),
        (
            json!({"loc": {"lon": -181, "lat": 1}, "home": home}),
            "loc",
            "validation_invalid_longitude",
        ),
        (
            json!({"home": {"lon": 0, "lat": 0}}),
            "home",
            "validation_required",
        ),
        (
            json!({"home": "not a point"}),
            "home",
            "validation_required",
        ),
    ] {
        let (s, err) = node.post("/api/collections/places/records", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["data"][field]["code"], code, "{err}");
    }

    // Within 400 km of Paris: Paris (0 km) and London (~344 km), nearest first.
    let (s, body) = node
        .call_as(
            "",
            Method::GET,
            &format!(
                "/api/collections/places/records?{}",
                q(&[
                    (
                        "filter",
                        "geoDistance(loc.lon, loc.lat, 2.3522, 48.8566) < 400"
                    ),
                    ("sort", "-loc.lat"),
                ])
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["london", "paris"]);
    // Points read like JSON objects in filters.
    assert_eq!(
        node.ids("places", &q(&[("filter", "loc.lat > 50")]))
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn expand_shapes_follow_pocketbase() {
    let node = Node::start().await;
    let a = node
        .create_collection(json!({"name": "ex_a", "listRule": "", "viewRule": "",
            "fields": [{"name": "name", "type": "text"}]}))
        .await;
    let b = node
        .create_collection(json!({"name": "ex_b", "listRule": "", "viewRule": "",
            "fields": [{"name": "a", "type": "relation", "collectionId": a["id"], "maxSelect": 1},
                       {"name": "title", "type": "text"}]}))
        .await;
    node.create_collection(json!({"name": "ex_c", "listRule": "", "viewRule": "",
        "fields": [{"name": "b", "type": "relation", "collectionId": b["id"], "maxSelect": 1},
                   {"name": "t", "type": "text"}]}))
        .await;
    node.create_collection(json!({"name": "hidden_a", "listRule": "", "viewRule": null,
        "fields": [{"name": "ref", "type": "relation", "collectionId": a["id"], "maxSelect": 1}]}))
        .await;
    node.create_record("ex_a", json!({"id": "aaaaaaaaaaaaa01", "name": "A1"}))
        .await;
    node.create_record(
        "ex_b",
        json!({"id": "bbbbbbbbbbbbb01", "a": "aaaaaaaaaaaaa01"}),
    )
    .await;
    node.create_record("ex_b", json!({"id": "bbbbbbbbbbbbb02"}))
        .await;
    node.create_record(
        "ex_c",
        json!({"id": "ccccccccccccc01", "b": "bbbbbbbbbbbbb01"}),
    )
    .await;
    node.create_record(
        "ex_c",
        json!({"id": "ccccccccccccc02", "b": "bbbbbbbbbbbbb02"}),
    )
    .await;
    node.create_record(
        "hidden_a",
        json!({"id": "hhhhhhhhhhhhh01", "ref": "aaaaaaaaaaaaa01"}),
    )
    .await;
    let view = |id: &str, expand: &str| {
        let path = format!(
            "/api/collections/ex_c/records/{id}?{}",
            q(&[("expand", expand)])
        );
        let node = &node;
        async move {
            let (s, body) = node.call_as("", Method::GET, &path, None).await;
            assert_eq!(s, StatusCode::OK, "{path}: {body}");
            body
        }
    };
    // A path that cannot be expanded adds no `expand` key at all, also when only its tail is
    // wrong; a valid path beside it still expands.
    for bad in ["nope", "b.nope", "t", "b.title", "B", "b..a"] {
        let body = view("ccccccccccccc01", bad).await;
        assert!(body.get("expand").is_none(), "{bad}: {body}");
    }
    let body = view("ccccccccccccc01", "b.a,nope").await;
    assert_eq!(body["expand"]["b"]["expand"]["a"]["name"], "A1");
    // A resolvable path gives each record of its level an `expand` object, empty when there
    // is nothing to expand: on the middle record too.
    let body = view("ccccccccccccc02", "b.a").await;
    assert_eq!(body["expand"]["b"]["id"], "bbbbbbbbbbbbb02");
    assert_eq!(body["expand"]["b"]["expand"], json!({}));
    // Paths sharing a prefix merge.
    let body = view("ccccccccccccc01", "b.a, b.ex_c_via_b").await;
    assert_eq!(body["expand"]["b"]["expand"]["a"]["id"], "aaaaaaaaaaaaa01");
    assert_eq!(
        body["expand"]["b"]["expand"]["ex_c_via_b"][0]["id"],
        "ccccccccccccc01"
    );
    // A collection a guest may not view cannot be expanded by one: no key, not an empty one.
    let (s, body) = node
        .call_as(
            "",
            Method::GET,
            "/api/collections/ex_a/records/aaaaaaaaaaaaa01?expand=hidden_a_via_ref",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.get("expand").is_none(), "{body}");
    let (_, body) = node
        .get("/api/collections/ex_a/records/aaaaaaaaaaaaa01?expand=hidden_a_via_ref")
        .await;
    assert_eq!(
        body["expand"]["hidden_a_via_ref"][0]["id"],
        "hhhhhhhhhhhhh01"
    );
}

#[tokio::test]
async fn excerpt_trims_before_the_ellipsis() {
    let node = Node::start().await;
    node.create_collection(json!({"name": "notes", "listRule": "", "viewRule": "",
        "fields": [{"name": "desc", "type": "editor"}]}))
        .await;
    node.create_record(
        "notes",
        json!({"id": "nnnnnnnnnnnnn01", "desc": "<p>Hello   <b>big</b> world of things</p>"}),
    )
    .await;
    for (fields, want) in [
        ("desc:excerpt(10,true)", json!("Hello big...")),
        ("desc:excerpt(8, true)", json!("Hello bi...")),
        ("desc:excerpt(8)", json!("Hello bi")),
        ("desc:excerpt(100,true)", json!("Hello big world of things")),
    ] {
        let (s, body) = node
            .get(&format!(
                "/api/collections/notes/records/nnnnnnnnnnnnn01?{}",
                q(&[("fields", fields)])
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{fields}: {body}");
        assert_eq!(body, json!({"desc": want}), "{fields}");
    }
    for bad in [
        "desc:excerpt(0,true)",
        "desc:excerpt(x)",
        "desc:excerpt()",
        "desc:nope(3)",
    ] {
        let (s, body) = node
            .get(&format!(
                "/api/collections/notes/records?{}",
                q(&[("fields", bad)])
            ))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn record_validation_answers_as_pocketbase() {
    let node = Node::start().await;
    node.create_collection(json!({"name": "vv", "createRule": "",
        "fields": [{"name": "title", "type": "text", "required": true},
                   {"name": "n", "type": "number", "max": 5},
                   {"name": "r", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                   {"name": "rs", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 3}]}))
        .await;
    // Missing relation records are reported beside the other field errors.
    let (s, err) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/vv/records",
            Some(json!({"n": 10, "r": "nosuchuser00000", "rs": ["nosuchuser00001"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    let codes: Vec<(&str, &str)> = err["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.as_str(), v["code"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        codes,
        [
            ("n", "validation_max_number_constraint"),
            ("r", "validation_missing_rel_records"),
            ("rs", "validation_missing_rel_records"),
            ("title", "validation_required"),
        ]
    );

    // A tokenKey sent on sign-up is ignored: two sign-ups with the same one both succeed (its
    // unique index would refuse the second if it were stored), and both can log in.
    let key = "my-own-token-key-that-is-long-enough-xyz";
    for email in ["tk1@example.com", "tk2@example.com"] {
        let (s, body) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/users/records",
                Some(json!({"email": email, "password": "password123",
                            "passwordConfirm": "password123", "tokenKey": key})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, auth) = node
            .call_as(
                "",
                Method::POST,
                "/api/collections/users/auth-with-password",
                Some(json!({"identity": email, "password": "password123"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{auth}");
    }
    // A superuser may set it (PocketBase validates it then: at least 30 characters).
    let (s, err) = node
        .post(
            "/api/collections/users/records",
            json!({"email": "tk3@example.com", "password": "password123",
                   "passwordConfirm": "password123", "tokenKey": "short"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err["data"]["tokenKey"]["code"],
        "validation_min_text_constraint"
    );

    // A password over bcrypt's 72 bytes: a guest's sign-up fails without field errors (even
    // beside other bad values), a superuser's names the field.
    let long = "é".repeat(37); // 37 characters, 74 bytes
    let (s, err) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/records",
            Some(json!({"email": "not an email", "password": long, "passwordConfirm": long})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["data"], json!({}));
    let (s, err) = node
        .post(
            "/api/collections/users/records",
            json!({"email": "lp@example.com", "password": long, "passwordConfirm": long}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["data"]["password"]["code"], "validation_invalid_value");
}
