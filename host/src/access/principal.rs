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

/// Verified tokens, so a hot path does not reread the auth record on every request.
///
/// An entry is served only under the store's auth epoch it was verified in (see
/// `store::AuthEpoch`): the writer bumps the epoch when a commit touches an auth record or the
/// schema, before that write answers, so a revoked token (password or tokenKey changed, record
/// deleted, collection secret changed) is refused by the very next request. No timing is
/// involved: a request that reads the new epoch reads the committed record too, because the
/// epoch is read before the record and bumped after the commit.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// The epoch every entry in `map` was verified under.
    epoch: u64,
    map: HashMap<String, (Auth, i64)>,
}

impl AuthCache {
    const MAX: usize = 10_000;

    fn get(&self, token: &str, now: i64, epoch: u64) -> Option<Auth> {
        let entries = self.entries.lock();
        if entries.epoch != epoch {
            return None;
        }
        entries
            .map
            .get(token)
            .filter(|(_, exp)| *exp > now)
            .map(|(a, _)| a.clone())
    }

    /// Stores a token verified under `epoch`; entries of an older epoch are dropped, and an
    /// entry verified under an epoch already superseded is not stored.
    fn put(&self, token: &str, auth: Auth, exp: i64, epoch: u64) {
        let mut entries = self.entries.lock();
        if epoch < entries.epoch {
            return;
        }
        if epoch > entries.epoch || entries.map.len() >= Self::MAX {
            entries.map.clear();
            entries.epoch = epoch;
        }
        entries.map.insert(token.to_string(), (auth, exp));
    }
}

/// Resolves a token to its auth record, verifying signature (record tokenKey + collection
/// secret) and expiry. Any failure means "no auth".
pub async fn authenticate(store: &Store, cache: &AuthCache, token: &str) -> Option<Auth> {
    let now = chrono::Utc::now().timestamp();
    // Read before the record: a commit that revokes this token bumps it after committing.
    let epoch = store.auth_epoch();
    if let Some(a) = cache.get(token, now, epoch) {
        return Some(a);
    }
    let (auth, exp) = verify_as(store, token, "auth", now).await?;
    cache.put(token, auth.clone(), exp, epoch);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::records::validate::Access;
    use crate::store::StoreOptions;

    /// A token for `rec` of `users`, signed as the auth endpoints sign it.
    fn token_for(store: &Store, rec: &Record) -> String {
        let c = store.schema().get("users").cloned().expect("users");
        let key = format!(
            "{}{}",
            rec["tokenKey"].as_str().expect("tokenKey"),
            c.auth.clone().expect("auth").auth_token.secret
        );
        let claims = jwt::Claims {
            id: rec["id"].as_str().expect("id").to_string(),
            kind: "auth".into(),
            collection_id: c.id.clone(),
            refreshable: true,
            exp: chrono::Utc::now().timestamp() + 600,
        };
        jwt::sign(&claims, key.as_bytes())
    }

    /// No task empties the cache here: the write itself must make the old token fail, for the
    /// very next request after it answered.
    #[tokio::test]
    async fn a_password_change_revokes_a_cached_token_before_the_write_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        let hash = |p: &str| bcrypt::hash(p, 4).expect("hash");
        let (h1, h2) = (hash("secret123"), hash("newsecret1"));
        let rec = store
            .write(move |ctx| {
                let input = json!({"email": "ann@example.com", "password": "secret123",
                                   "passwordConfirm": "secret123"});
                let input = input.as_object().cloned().unwrap_or_default();
                records::create(ctx, "users", &input, Some(h1), Access::Manager)
            })
            .await
            .expect("create");
        let token = token_for(&store, &rec);
        let cache = AuthCache::default();
        assert!(authenticate(&store, &cache, &token).await.is_some());
        assert!(
            cache.get(&token, 0, store.auth_epoch()).is_some(),
            "the token is cached"
        );
        let id = rec["id"].as_str().expect("id").to_string();
        store
            .write(move |ctx| {
                let input = json!({"password": "newsecret1", "passwordConfirm": "newsecret1"});
                let input = input.as_object().cloned().unwrap_or_default();
                records::update(ctx, "users", &id, &input, Some(h2), Access::Manager)
            })
            .await
            .expect("update");
        assert!(
            authenticate(&store, &cache, &token).await.is_none(),
            "the old token still works after the password change answered"
        );
        store.close().await.expect("close");
    }

    /// A `users` record event from node n2, as the fold receives it.
    fn user_event(kind: crate::replication::EventKind, rec: &Record) -> crate::replication::Event {
        use crate::replication::{CollectionRef, Event, EventId, Hlc};
        Event {
            id: EventId::random(),
            origin: "n2".into(),
            hlc: Hlc::new(1_000, 0),
            kind,
            collection: CollectionRef {
                id: "_pb_users_auth_".into(),
                name: "users".into(),
            },
            record_id: rec["id"].as_str().map(String::from),
            data: Some(rec.clone()),
            before: None,
            base: None,
            schema_version: 0,
            plugin_version: 0,
        }
    }

    /// On a node that did not take the write, the token stops working when the fold that
    /// applies the password change commits (the fold answers after its commit, as writes do).
    #[tokio::test]
    async fn a_folded_password_change_revokes_a_cached_token_when_the_fold_commits() {
        use crate::replication::{Clock, EventKind};
        use crate::store::sync::{Builtin, Delivered, SyncHooks};
        let dir = tempfile::tempdir().expect("tempdir");
        let hooks = Arc::new(SyncHooks {
            node_id: "n1".into(),
            clock: Arc::new(Clock::new()),
            outbox: Arc::new(tokio::sync::Notify::new()),
            policy: Arc::new(Builtin),
            fresh: Default::default(),
            listeners: Default::default(),
        });
        let store = Store::open_with(dir.path(), &StoreOptions::default(), Some(hooks.clone()))
            .expect("open");
        let rec = json!({"id": "ann000000000001", "email": "ann@example.com",
            "emailVisibility": false, "verified": false, "name": "",
            "password": bcrypt::hash("secret123", 4).expect("hash"),
            "tokenKey": "old-token-key-0000000000000000000000000000",
            "created": "2026-01-01 00:00:00.000Z", "updated": "2026-01-01 00:00:00.000Z"});
        let rec = rec.as_object().cloned().unwrap_or_default();
        let fold = |seq: u64, event| {
            let batch = Arc::new(vec![Delivered {
                seq,
                event: Ok(event),
                payload: bytes::Bytes::from_static(b"{}"),
            }]);
            store.apply_events(hooks.clone(), batch, 0)
        };
        let created = user_event(EventKind::RecordCreate, &rec);
        let report = fold(1, created.clone()).await.expect("fold create");
        assert_eq!(report.dead, 0);
        let token = token_for(&store, &rec);
        let cache = AuthCache::default();
        assert!(authenticate(&store, &cache, &token).await.is_some());
        let mut changed = rec.clone();
        changed.insert(
            "tokenKey".into(),
            json!("new-token-key-0000000000000000000000000000"),
        );
        let mut update = user_event(EventKind::RecordUpdate, &changed);
        update.base = Some(created.id.clone());
        update.hlc = crate::replication::Hlc::new(2_000, 0);
        let report = fold(2, update).await.expect("fold update");
        assert_eq!((report.applied, report.dead), (1, 0));
        assert!(
            authenticate(&store, &cache, &token).await.is_none(),
            "the old token still works after the fold committed the change"
        );
        store.close().await.expect("close");
    }

    #[test]
    fn entries_of_a_superseded_epoch_are_neither_served_nor_stored() {
        let cache = AuthCache::default();
        cache.put("t", Auth::Guest, 100, 3);
        assert!(cache.get("t", 0, 3).is_some());
        assert!(cache.get("t", 0, 4).is_none());
        // A verification that started under epoch 3 finishes after epoch 4 began.
        cache.put("u", Auth::Guest, 100, 4);
        cache.put("t", Auth::Guest, 100, 3);
        assert!(cache.get("t", 0, 4).is_none());
        assert!(cache.get("u", 0, 4).is_some());
    }
}
