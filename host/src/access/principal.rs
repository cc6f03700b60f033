//! Who is calling: the principal a token resolves to, and the cache of verified tokens.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::Denied;
use crate::auth::jwt;
use crate::store::{Collection, Record, Store, records};

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Auth {
    Guest,
    /// An authenticated record of an auth collection (superusers included).
    Record {
        collection: Arc<Collection>,
        record: Record,
    },
}

impl Auth {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Auth::Record { collection, .. } if collection.name == "_superusers")
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Auth::Guest => None,
            Auth::Record { record, .. } => record.get("id").and_then(Value::as_str),
        }
    }

    /// The auth record as filter rules see it (`@request.auth.*`), or null for guests.
    pub fn as_json(&self) -> Value {
        match self {
            Auth::Guest => Value::Null,
            Auth::Record { collection, record } => {
                let mut r = record.clone();
                r.insert("collectionId".into(), Value::String(collection.id.clone()));
                r.insert(
                    "collectionName".into(),
                    Value::String(collection.name.clone()),
                );
                Value::Object(r)
            }
        }
    }

    /// Requires a superuser: 401 for guests, 403 for other records.
    pub fn require_superuser(&self) -> Result<(), Denied> {
        match self {
            Auth::Guest => Err(Denied::Unauthenticated),
            a if a.is_superuser() => Ok(()),
            _ => Err(Denied::Forbidden),
        }
    }
}

/// Verified tokens, so a hot path does not reread the auth record on every request. Any
/// committed change to an auth collection or any schema change empties it (see `lib.rs`).
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<String, (Auth, i64)>>,
}

impl AuthCache {
    const MAX: usize = 10_000;

    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    fn get(&self, token: &str, now: i64) -> Option<Auth> {
        let map = self.entries.lock();
        map.get(token)
            .filter(|(_, exp)| *exp > now)
            .map(|(a, _)| a.clone())
    }

    fn put(&self, token: &str, auth: Auth, exp: i64) {
        let mut map = self.entries.lock();
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(token.to_string(), (auth, exp));
    }
}

/// Resolves a token to its auth record, verifying signature (record tokenKey + collection
/// secret) and expiry. Any failure means "no auth".
pub async fn authenticate(store: &Store, cache: &AuthCache, token: &str) -> Option<Auth> {
    let now = chrono::Utc::now().timestamp();
    if let Some(a) = cache.get(token, now) {
        return Some(a);
    }
    let (auth, exp) = verify_as(store, token, "auth", now).await?;
    cache.put(token, auth.clone(), exp);
    Some(auth)
}

/// Resolves a short-lived file token (`POST /api/files/token`, type `file`) to its record.
pub async fn authenticate_file(store: &Store, token: &str) -> Option<Auth> {
    let now = chrono::Utc::now().timestamp();
    verify_as(store, token, "file", now).await.map(|(a, _)| a)
}

/// Verifies a token of type `kind` against its record's tokenKey and collection secret.
async fn verify_as(store: &Store, token: &str, kind: &str, now: i64) -> Option<(Auth, i64)> {
    let claims = jwt::peek(token).ok()?;
    if claims.kind != kind {
        return None;
    }
    let collection = store.schema().get(&claims.collection_id).cloned()?;
    let opts = collection.auth.clone()?;
    let id = claims.id.clone();
    let c2 = collection.clone();
    let record = store
        .read(move |conn, _| records::get(conn, &c2, &id))
        .await
        .ok()??;
    let token_key = record
        .get("tokenKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = format!("{token_key}{}", opts.auth_token.secret);
    let verified = jwt::verify(token, key.as_bytes(), now).ok()?;
    Some((Auth::Record { collection, record }, verified.exp))
}
