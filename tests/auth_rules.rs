//! Auth and API rules against the real binary: sign-up, login, refresh, token revocation and
//! forgery, and list/view/create/update/delete rules for owner, other user, guest, superuser.

mod support;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn sign_up_login_refresh_and_bearer_tokens() {
    let node = Node::start().await;
    let (id, token) = user(&node, "ann@example.com").await;
    let (s, me) = node
        .call_as(
            &format!("Bearer {token}"),
            Method::GET,
            &format!("/api/collections/users/records/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(
        me["email"], "ann@example.com",
        "the owner sees their own email"
    );
    let (s, refreshed) = node
        .call_as(
            &token,
            Method::POST,
            "/api/collections/users/auth-refresh",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(refreshed["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(refreshed["record"]["id"], id.as_str());
    let (s, methods) = node
        .call_as("", Method::GET, "/api/collections/users/auth-methods", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(methods["password"]["enabled"], true);
    assert_eq!(methods["password"]["identityFields"], json!(["email"]));
}

#[tokio::test]
async fn wrong_passwords_do_not_say_which_part_was_wrong() {
    let node = Node::start().await;
    user(&node, "ann@example.com").await;
    let login =
        |identity: &str, password: &str| json!({"identity": identity, "password": password});
    let (s1, b1) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(login("ann@example.com", "wrongpass")),
        )
        .await;
    let (s2, b2) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(login("nobody@example.com", "wrongpass")),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    assert_eq!(
        b1, b2,
        "same answer for a wrong password and an unknown identity"
    );
}

fn forge(token: &str, f: impl FnOnce(&mut Value)) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
    f(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn expired_forged_and_wrong_collection_tokens_are_refused() {
    let node = Node::start().await;
    let (_, token) = user(&node, "ann@example.com").await;
    let refresh = |t: String| {
        let node = &node;
        async move {
            node.call_as(
                &t,
                Method::POST,
                "/api/collections/users/auth-refresh",
                None,
            )
            .await
            .0
        }
    };
    // Tampered claims break the signature.
    assert_eq!(
        refresh(forge(&token, |c| c["exp"] = json!(4_000_000_000i64))).await,
        StatusCode::UNAUTHORIZED
    );
    // An expired (validly shaped) token: claims rewritten, so the signature fails too, and the
    // expiry check runs independently in the unit tests of auth::jwt.
    assert_eq!(
        refresh(forge(&token, |c| c["exp"] = json!(1))).await,
        StatusCode::UNAUTHORIZED
    );
    // A users token claiming to be a superuser's.
    let su = forge(&token, |c| c["collectionId"] = json!("pbc_3142635823"));
    assert_eq!(
        node.call_as(&su, Method::GET, "/api/collections", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(refresh("garbage".into()).await, StatusCode::UNAUTHORIZED);
    // A real token used on another auth collection's refresh.
    let (s, _) = node
        .call_as(
            &token,
            Method::POST,
            "/api/collections/_superusers/auth-refresh",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn changing_the_password_revokes_old_tokens() {
    let node = Node::start().await;
    let (id, token) = user(&node, "ann@example.com").await;
    let path = format!("/api/collections/users/records/{id}");
    let (s, body) = node
        .call_as(
            &token,
            Method::PATCH,
            &path,
            Some(json!({"password": "newsecret1", "passwordConfirm": "newsecret1"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "oldPassword is required: {body}"
    );
    assert_eq!(
        body["data"]["oldPassword"]["code"],
        "validation_invalid_old_password"
    );
    let (s, body) = node
        .call_as(&token, Method::PATCH, &path, Some(json!({"oldPassword": "secret123", "password": "newsecret1", "passwordConfirm": "newsecret1"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = node
        .call_as(
            &token,
            Method::POST,
            "/api/collections/users/auth-refresh",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old token is revoked");
    let (s, _) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/users/auth-with-password",
            Some(json!({"identity": "ann@example.com", "password": "newsecret1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn rules_for_owner_other_user_guest_and_superuser() {
    let node = Node::start().await;
    let (_, users) = node.get("/api/collections/users").await;
    node.create_collection(json!({
        "name": "notes",
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id || public = true",
        "createRule": "@request.auth.id != '' && @request.body.owner = @request.auth.id",
        "updateRule": "owner = @request.auth.id",
        "deleteRule": null,
        "fields": [
            {"name": "text", "type": "text"},
            {"name": "public", "type": "bool"},
            {"name": "owner", "type": "relation", "collectionId": users["id"], "maxSelect": 1}
        ]
    }))
    .await;
    let (ann, ann_t) = user(&node, "ann@example.com").await;
    let (bob, bob_t) = user(&node, "bob@example.com").await;

    // create: the rule checks the submitted owner.
    let (s, _) = node
        .call_as(
            &bob_t,
            Method::POST,
            "/api/collections/notes/records",
            Some(json!({"text": "x", "owner": ann})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "bob cannot create a note owned by ann"
    );
    let (s, _) = node
        .call_as(
            "",
            Method::POST,
            "/api/collections/notes/records",
            Some(json!({"text": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "guests cannot create");
    let (s, note) = node
        .call_as(
            &ann_t,
            Method::POST,
            "/api/collections/notes/records",
            Some(json!({"text": "mine", "owner": ann})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{note}");
    let nid = note["id"].as_str().expect("id").to_string();
    node.call_as(
        &bob_t,
        Method::POST,
        "/api/collections/notes/records",
        Some(json!({"text": "bob's", "owner": bob, "public": true})),
    )
    .await;

    // list: fewer rows, never an error.
    let list = |t: &str| {
        let (node, t) = (&node, t.to_string());
        async move {
            let (s, b) = node
                .call_as(&t, Method::GET, "/api/collections/notes/records", None)
                .await;
            assert_eq!(s, StatusCode::OK);
            b["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|r| r["text"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(&ann_t).await, vec!["mine"]);
    assert_eq!(list(&bob_t).await, vec!["bob's"]);
    assert!(list("").await.is_empty());
    assert_eq!(
        list(&node.token).await.len(),
        2,
        "superusers see everything"
    );

    // view: 404 hides existence.
    let path = format!("/api/collections/notes/records/{nid}");
    assert_eq!(
        node.call_as(&bob_t, Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        node.call_as(&ann_t, Method::GET, &path, None).await.0,
        StatusCode::OK
    );

    // update: 404 for others, 200 for the owner.
    assert_eq!(
        node.call_as(
            &bob_t,
            Method::PATCH,
            &path,
            Some(json!({"text": "hacked"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        node.call_as(
            &ann_t,
            Method::PATCH,
            &path,
            Some(json!({"text": "edited"}))
        )
        .await
        .0,
        StatusCode::OK
    );

    // delete: null rule = superusers only.
    assert_eq!(
        node.call_as(&ann_t, Method::DELETE, &path, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        node.call_as(&node.token, Method::DELETE, &path, None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn client_filters_using_request_or_collection_refs_are_forbidden_for_non_superusers() {
    let node = Node::start().await;
    let (_, token) = user(&node, "ann@example.com").await;
    let (s, _) = node
        .call_as(
            &token,
            Method::GET,
            "/api/collections/users/records?filter=%40request.auth.id%3D%27%27",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = node
        .call_as(
            &token,
            Method::GET,
            "/api/collections/users/records?filter=%40collection.users.id%3D%27x%27",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = node
        .get("/api/collections/users/records?filter=%40request.auth.id%3D%27%27")
        .await;
    assert_eq!(s, StatusCode::OK, "superusers may");
}

#[tokio::test]
async fn emails_are_shown_only_to_owners_superusers_or_when_visible() {
    let node = Node::start().await;
    let (_, users) = node.get("/api/collections/users").await;
    let mut def = users.clone();
    def["listRule"] = json!("");
    def["viewRule"] = json!("");
    let (s, _) = node
        .patch(
            "/api/collections/users",
            json!({"listRule": "", "viewRule": ""}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (ann, _) = user(&node, "ann@example.com").await;
    let (_, bob_t) = user(&node, "bob@example.com").await;
    let path = format!("/api/collections/users/records/{ann}");
    let (_, seen) = node.call_as(&bob_t, Method::GET, &path, None).await;
    assert!(seen.get("email").is_none(), "{seen}");
    let (_, su) = node.get(&path).await;
    assert_eq!(su["email"], "ann@example.com");
    node.patch(&path, json!({"emailVisibility": true})).await;
    let (_, seen) = node.call_as(&bob_t, Method::GET, &path, None).await;
    assert_eq!(seen["email"], "ann@example.com");
}

#[tokio::test]
async fn tokens_expire_after_the_collection_duration() {
    let node = Node::start().await;
    let (s, body) = node
        .patch(
            "/api/collections/users",
            json!({"authToken": {"duration": 1}}),
        )
        .await;
    // PocketBase's floor for a token lifetime is 10 seconds.
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["data"]["authToken"]["duration"]["code"],
        "validation_min_greater_equal_than_required"
    );
    let (s, body) = node
        .patch(
            "/api/collections/users",
            json!({"authToken": {"duration": 10}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body["authToken"].get("secret").is_none(),
        "the secret is never served: {body}"
    );
    let (_, token) = user(&node, "ann@example.com").await;
    // Valid at first, refused once its 10 seconds have passed (polled with a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    loop {
        let (s, _) = node
            .call_as(
                &token,
                Method::GET,
                "/api/collections/users/auth-methods",
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = node
            .call_as(
                &token,
                Method::POST,
                "/api/collections/users/auth-refresh",
                None,
            )
            .await;
        match s {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => break,
            other => panic!("unexpected {other}"),
        }
        assert!(std::time::Instant::now() < deadline, "token never expired");
        // Poll interval of the deadline-bounded wait (the token lives 10 s).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
