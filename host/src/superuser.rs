//! `syncbase superuser upsert`: creates or updates a superuser directly in the data directory.

use std::path::Path;

use serde_json::{Value, json};

use crate::auth::password;
use crate::store::schema::{ALNUM, new_record_id, random_string};
use crate::store::{Store, StoreError, StoreOptions, records};

/// True when at least one superuser exists.
pub async fn exists(store: &Store) -> Result<bool, StoreError> {
    store
        .read(|conn, schema| {
            let c = schema
                .get("_superusers")
                .cloned()
                .ok_or(StoreError::NotFound)?;
            let q = records::ListQuery {
                where_sql: "1=1".into(),
                limit: 1,
                ..Default::default()
            };
            Ok(!records::list(conn, &c, &q)?.0.is_empty())
        })
        .await
}

/// Creates the superuser `email`, or sets its password; returns true when it was created.
pub async fn upsert(dir: &Path, email: &str, pass: &str) -> Result<bool, StoreError> {
    if pass.chars().count() < 8 {
        return Err(StoreError::BadRequest(
            "the password must be at least 8 characters".into(),
        ));
    }
    if !email.contains('@') {
        return Err(StoreError::BadRequest(format!(
            "{email:?} is not an email address"
        )));
    }
    let store = Store::open(
        dir,
        &StoreOptions {
            readers: 1,
            ..StoreOptions::default()
        },
    )?;
    let hash = {
        let p = pass.to_string();
        tokio::task::spawn_blocking(move || password::hash(&p))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    };
    let email = email.to_string();
    let created = store
        .write(move |ctx| {
            let c = ctx.schema.get("_superusers").cloned().ok_or(StoreError::NotFound)?;
            let q = records::ListQuery {
                where_sql: "`email` = ? COLLATE NOCASE".into(),
                params: vec![crate::filter::SqlParam::Text(email.clone())],
                limit: 1,
                ..Default::default()
            };
            let (mut found, _) = records::list(ctx.conn, &c, &q)?;
            let now = crate::records::validate::now_string();
            let (rec, created) = match found.pop() {
                Some(mut r) => {
                    r.insert("password".into(), Value::String(hash));
                    r.insert("tokenKey".into(), Value::String(random_string(50, ALNUM)));
                    r.insert("updated".into(), Value::String(now));
                    (r, false)
                }
                None => {
                    let v = json!({
                        "id": new_record_id(), "password": hash, "tokenKey": random_string(50, ALNUM),
                        "email": email, "emailVisibility": false, "verified": true,
                        "created": now, "updated": now,
                    });
                    let Value::Object(r) = v else { return Err(StoreError::Internal("record".into())) };
                    (r, true)
                }
            };
            records::put_raw(ctx, "_superusers", &rec)?;
            Ok(created)
        })
        .await?;
    store.close().await?;
    Ok(created)
}
