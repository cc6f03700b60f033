//! `syncbase superuser upsert`: creates or updates a superuser directly in the data directory.

use std::path::Path;

use serde_json::{Value, json};

use crate::auth::password;
use crate::store::schema::{ALNUM, TokenKind, new_record_id, random_string};
use crate::store::{Store, StoreError, StoreOptions, installer, records};

/// True when at least one superuser exists (the first-run placeholder does not count).
pub async fn exists(store: &Store) -> Result<bool, StoreError> {
    store.read(installer::has_real_superuser).await
}

/// How long the install link works (PocketBase's static installer token lives as long).
const INSTALL_TOKEN_SECS: i64 = 30 * 60;

/// The first-run link (`{base}/_/#/pbinstall/{token}`) while the node has no superuser of its
/// own, else `None`. The token is a non-refreshable superuser token of the installer
/// placeholder, valid 30 minutes; creating the first superuser deletes the placeholder, so
/// the link works until then at most.
pub async fn install_link(store: &Store, base: &str) -> Result<Option<String>, StoreError> {
    let found = store
        .write(|ctx| {
            let rec = installer::find_or_create(ctx)?;
            let c = ctx.schema.get("_superusers").cloned();
            Ok(rec.zip(c))
        })
        .await?;
    let Some((rec, c)) = found else {
        return Ok(None);
    };
    let text = |k: &str| {
        rec.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let opts = c.auth.clone().unwrap_or_default();
    let claims = crate::auth::jwt::Claims {
        id: text("id"),
        kind: "auth".into(),
        collection_id: c.id.clone(),
        refreshable: false,
        exp: chrono::Utc::now().timestamp() + INSTALL_TOKEN_SECS,
    };
    let key = format!("{}{}", text("tokenKey"), opts.secret(TokenKind::Auth));
    let token = crate::auth::jwt::sign(&claims, key.as_bytes());
    Ok(Some(format!(
        "{}/_/#/pbinstall/{token}",
        base.trim_end_matches('/')
    )))
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
            if created && email != installer::INSTALLER_EMAIL {
                installer::remove(ctx)?;
            }
            Ok(created)
        })
        .await?;
    store.close().await?;
    Ok(created)
}
