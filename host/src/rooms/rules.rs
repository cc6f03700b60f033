//! Who may join and send: a room belongs to a record, so joining needs the record's view rule
//! and each send its update rule, evaluated with the client's own auth on the node the client
//! is connected to (superusers always pass; a `null` rule lets only superusers through).
//! `@request.context` is `"realtime"`; for a send, `@request.body` is the payload, so rules
//! such as `@request.body.kind != "admin"` apply to messages too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::RoomKey;
use super::protocol::close;
use crate::access::Auth;
use crate::access::rules::{request_info, rule_condition};
use crate::store::{Collection, Record, Store, StoreError, records};

/// Why a client may not do something, with the close code and message it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub error: &'static str,
    pub message: String,
}

impl Refusal {
    fn not_found() -> Refusal {
        Refusal {
            code: close::NOT_FOUND,
            error: "not_found",
            message: "The room's record wasn't found.".into(),
        }
    }

    fn forbidden(what: &str) -> Refusal {
        Refusal {
            code: close::FORBIDDEN,
            error: "forbidden",
            message: format!("You are not allowed to {what} this room."),
        }
    }

    fn internal(e: StoreError) -> Refusal {
        tracing::warn!(error = %e, "room rule check failed");
        Refusal {
            code: close::UNAVAILABLE,
            error: "unavailable",
            message: "The rule check failed; try again.".into(),
        }
    }
}

fn request(auth: &Auth, method: Method, body: Option<&Record>) -> Value {
    let mut r = request_info(auth, &method, &HashMap::new(), &HeaderMap::new(), body);
    r["context"] = json!("realtime");
    r
}

/// Checks the view rule for joining `collection`/`record` (name or id): the room's key and
/// the collection's name.
pub async fn view(
    store: &Store,
    auth: &Auth,
    collection: &str,
    record: &str,
) -> Result<(RoomKey, Arc<Collection>), Refusal> {
    let schema = store.schema();
    let c = schema
        .get(collection)
        .cloned()
        .ok_or_else(Refusal::not_found)?;
    let rule = if auth.is_superuser() {
        None
    } else {
        match &c.view_rule {
            None => return Err(Refusal::forbidden("join")),
            Some(r) if r.trim().is_empty() => None,
            Some(r) => Some(r.clone()),
        }
    };
    let request = rule.as_ref().map(|_| request(auth, Method::GET, None));
    let (c2, id) = (c.clone(), record.to_string());
    let verdict = store
        .read(move |conn, schema| {
            if records::get(conn, &c2, &id)?.is_none() {
                return Ok(Err(Refusal::not_found()));
            }
            if let (Some(rule), Some(request)) = (rule, request)
                && let Some((sql, params)) = rule_condition(schema, &c2, &rule, &request)?
                && !records::matches(conn, &c2, &id, &sql, &params)?
            {
                // The two reads are separate statements: a delete committed between them
                // fails the rule, yet the member must be told the record is gone.
                if records::get(conn, &c2, &id)?.is_none() {
                    return Ok(Err(Refusal::not_found()));
                }
                return Ok(Err(Refusal::forbidden("join")));
            }
            Ok(Ok(()))
        })
        .await
        .map_err(Refusal::internal)?;
    verdict?;
    let key = RoomKey {
        collection: c.id.clone(),
        record: record.to_string(),
    };
    Ok((key, c))
}

/// Checks the update rule for sending `payload` to the room.
pub async fn send(
    store: &Store,
    auth: &Auth,
    key: &RoomKey,
    payload: &RawValue,
) -> Result<(), Refusal> {
    if auth.is_superuser() {
        return Ok(());
    }
    let schema = store.schema();
    let c = schema
        .get(&key.collection)
        .cloned()
        .ok_or_else(Refusal::not_found)?;
    let rule = match &c.update_rule {
        None => return Err(Refusal::forbidden("send to")),
        Some(r) if r.trim().is_empty() => return Ok(()),
        Some(r) => r.clone(),
    };
    let body: Record = serde_json::from_str(payload.get()).unwrap_or_default();
    let request = request(auth, Method::POST, Some(&body));
    let id = key.record.clone();
    store
        .read(move |conn, schema| {
            let ok = match rule_condition(schema, &c, &rule, &request)? {
                None => true,
                Some((sql, params)) => records::matches(conn, &c, &id, &sql, &params)?,
            };
            Ok(ok)
        })
        .await
        .map_err(Refusal::internal)?
        .then_some(())
        .ok_or_else(|| Refusal::forbidden("send to"))
}
