//! Validation of auth records: the create form's rules, password fields, and what managers
//! and regular clients may change.

use super::*;

fn users() -> Collection {
    collection(
        "auth",
        json!([
            {"name": "password", "type": "password", "system": true, "required": true,
             "hidden": true, "min": 8},
            {"name": "tokenKey", "type": "text", "system": true, "required": true,
             "hidden": true, "min": 30, "max": 60, "autogeneratePattern": "[a-zA-Z0-9]{50}"},
            {"name": "email", "type": "email", "system": true, "required": true},
            {"name": "emailVisibility", "type": "bool", "system": true},
            {"name": "verified", "type": "bool", "system": true},
            {"name": "name", "type": "text", "max": 255}
        ]),
    )
}

#[test]
fn auth_create_form_rules_come_first() {
    let c = users();
    let blank = json!({"code": "validation_required", "message": "Cannot be blank."});
    let mismatch = json!({"code": "validation_values_mismatch", "message": "Values don't match."});
    // Only the form errors are reported, not the missing email.
    assert_eq!(
        errors(&c, json!({})),
        json!({"password": blank, "passwordConfirm": blank})
    );
    assert_eq!(
        errors(&c, json!({"email": "x@x.com", "password": "1234567"})),
        json!({"passwordConfirm": blank})
    );
    assert_eq!(
        errors(
            &c,
            json!({"email": "x@x.com", "password": "12345678", "passwordConfirm": "123456789"})
        ),
        json!({"passwordConfirm": mismatch})
    );
    assert_eq!(
        errors(&c, json!({"passwordConfirm": "12345678"})),
        json!({"password": blank, "passwordConfirm": mismatch})
    );
    assert_eq!(
        errors(
            &c,
            json!({"password": "12345678", "passwordConfirm": "12345678"})
        ),
        json!({"email": blank})
    );
}

#[test]
fn auth_password_field_rules() {
    let c = users();
    let with = |pw: &str| json!({"email": "x@x.com", "password": pw, "passwordConfirm": pw});
    assert_eq!(
        errors(&c, with("1234567"))["password"],
        json!({"code": "validation_min_text_constraint",
               "message": "Must be at least 8 character(s)."})
    );
    assert!(create(&c, with(&"x".repeat(71))).is_ok());
    assert_eq!(
        errors(&c, with(&"x".repeat(72)))["password"],
        json!({"code": "validation_max_text_constraint",
               "message": "Must be less than 71 character(s)."})
    );
    // Over bcrypt's 72 bytes (37 two-byte characters here): bcrypt's error wins.
    for long in ["x".repeat(73), "é".repeat(37)] {
        assert_eq!(
            errors(&c, with(&long))["password"],
            json!({"code": "validation_invalid_value", "message": "Invalid value."})
        );
    }
    let p = create(
        &c,
        json!({"email": "x@x.com", "password": 12345678, "passwordConfirm": "12345678",
                              "emailVisibility": "true", "verified": "1"}),
    )
    .expect("create");
    assert_eq!(p.password.as_deref(), Some("12345678"));
    assert_eq!(p.record["password"], "");
    assert_eq!(p.record["emailVisibility"], true);
    assert_eq!(p.record["verified"], true);
    assert_eq!(p.record["tokenKey"].as_str().map(str::len), Some(50));
    assert_eq!(p.old_password, None);
    assert_eq!(
        errors(
            &c,
            json!({"email": "x@x.com", "password": "12345678",
                          "passwordConfirm": "12345678", "tokenKey": "abc"})
        )["tokenKey"]["params"],
        json!({"min": 30})
    );
}

fn stored_user() -> Record {
    let mut rec = created(
        &users(),
        json!({"email": "u@x.com", "password": "12345678", "passwordConfirm": "12345678"}),
    );
    rec.insert("password".into(), json!("$2a$10$hash"));
    rec
}

#[test]
fn auth_updates_as_manager() {
    let c = users();
    let current = stored_user();
    let blank = json!({"code": "validation_required", "message": "Cannot be blank."});
    let mismatch = json!({"code": "validation_values_mismatch", "message": "Values don't match."});
    let err =
        |v: Value| serde_json::to_value(update(&c, &current, v).expect_err("should fail")).ok();
    assert_eq!(
        err(json!({"password": "87654321"})),
        Some(json!({"passwordConfirm": blank}))
    );
    assert_eq!(
        err(json!({"passwordConfirm": "x"})),
        Some(json!({"password": blank, "passwordConfirm": mismatch}))
    );
    assert_eq!(
        err(json!({"oldPassword": "12345678"})),
        Some(json!({"password": blank, "passwordConfirm": blank}))
    );
    assert_eq!(
        err(json!({"password": "1", "passwordConfirm": "2"})),
        Some(json!({"passwordConfirm": mismatch}))
    );
    // An explicitly emptied password fails the field's required rule.
    assert_eq!(
        err(json!({"password": ""})),
        Some(json!({"password": blank}))
    );
    assert_eq!(err(json!({"email": ""})), Some(json!({"email": blank})));

    let p = update(
        &c,
        &current,
        json!({"password": "87654321", "passwordConfirm": "87654321"}),
    )
    .expect("change password");
    assert_eq!(p.password.as_deref(), Some("87654321"));
    assert_eq!(p.record["password"], "$2a$10$hash");
    assert_ne!(
        p.record["tokenKey"], current["tokenKey"],
        "tokens are invalidated"
    );
    let renamed =
        update(&c, &current, json!({"email": "zz@x.com", "verified": true})).expect("email");
    assert_eq!(renamed.record["email"], "zz@x.com");
    assert_eq!(renamed.record["verified"], true);
    assert_ne!(renamed.record["tokenKey"], current["tokenKey"]);
    let untouched = update(&c, &current, json!({"name": "x"})).expect("name");
    assert_eq!(untouched.record["tokenKey"], current["tokenKey"]);
    assert_eq!(untouched.password, None);
}

#[test]
fn auth_rules_for_regular_clients() {
    // From PocketBase's record upsert form (not exercised over the API, which was driven
    // as a superuser).
    let c = users();
    let current = stored_user();
    let as_user = |v: Value| prepare_update_as(&c, &current, &input(v), NOW, Access::Regular);
    let err = as_user(json!({"email": "new@x.com", "verified": true})).expect_err("manage only");
    assert_eq!(err["email"].code, "validation_values_mismatch");
    assert_eq!(err["verified"].code, "validation_values_mismatch");
    let err = as_user(json!({"password": "87654321", "passwordConfirm": "87654321"}))
        .expect_err("old password needed");
    assert_eq!(err["oldPassword"].code, "validation_required");
    let p = as_user(
        json!({"password": "87654321", "passwordConfirm": "87654321",
                           "oldPassword": "12345678"}),
    )
    .expect("with old password");
    assert_eq!(p.old_password.as_deref(), Some("12345678"));
    assert!(as_user(json!({"name": "me", "email": "u@x.com"})).is_ok());
    let signup = prepare_create_as(
        &c,
        &input(json!({"email": "a@x.com", "password": "12345678",
                      "passwordConfirm": "12345678", "verified": true})),
        NOW,
        Access::Regular,
    );
    assert_eq!(
        signup.expect_err("verified")["verified"].code,
        "validation_values_mismatch"
    );
    assert_eq!(
        invalid_old_password()["oldPassword"].code,
        "validation_invalid_old_password"
    );
}
