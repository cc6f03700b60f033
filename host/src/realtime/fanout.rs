//! The fan-out task: one committed batch at a time, find interested clients, check each
//! delivery against the subscriber's rule with its own auth, present the record for it, and
//! offer the message to its bounded buffer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{Client, Hub, Message, Subscription};
use crate::access::Auth;
use crate::access::present::{self, FieldsPicker};
use crate::access::rules::{request_info, rule_condition};
use crate::filter;
use crate::store::{Change, ReadConn, Schema, Store, StoreError, records};

/// Runs until the store's change feed closes.
pub async fn run(store: Store, hub: Arc<Hub>) {
    let mut rx = store.subscribe();
    loop {
        let batch = match rx.recv().await {
            Ok(b) => b,
            Err(RecvError::Lagged(n)) => {
                // Events were lost for every client: close them all so they resubscribe and
                // refetch, rather than silently missing changes.
                tracing::warn!(missed = n, "realtime fan-out lagged; disconnecting clients");
                hub.drop_all();
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let names: Vec<String> = batch.iter().map(|c| c.collection.name.clone()).collect();
        let targets = hub.interested(&names);
        if targets.is_empty() {
            continue;
        }
        // A small batch whose every delivery is decided without SQL (superusers or empty
        // rules, no filter, no expand) is planned right here: no reader thread hand-off in the
        // path of a replicated or local write to its subscribers.
        let deliveries = if batch.len() <= INLINE_BATCH && !needs_sql(&batch, &targets) {
            let schema = store.schema();
            Ok(plan(None, &schema, &batch, &targets))
        } else {
            store
                .read(move |conn, schema| Ok(plan(Some(conn), schema, &batch, &targets)))
                .await
        };
        match deliveries {
            Ok(list) => {
                for (client, msg) in list {
                    if !client.offer(msg) {
                        tracing::info!(client = %client.id, "realtime client too slow or gone; dropping it");
                        hub.disconnect(&client.id);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "realtime fan-out failed for a batch"),
        }
    }
}

type Target = (Arc<Client>, Auth, Vec<Subscription>);

/// Largest batch planned on the fan-out task itself (rendering is CPU work).
const INLINE_BATCH: usize = 32;

/// Whether any delivery of `batch` to `targets` needs the database: a rule to evaluate, a
/// `filter`, or an `expand`.
fn needs_sql(batch: &[Change], targets: &[Target]) -> bool {
    let nonempty =
        |q: &HashMap<String, String>, k: &str| q.get(k).is_some_and(|v| !v.trim().is_empty());
    batch.iter().any(|change| {
        let c = &change.collection;
        targets.iter().any(|(_, auth, subs)| {
            subs.iter().any(|sub| {
                let rule = if sub.record.is_some() {
                    &c.view_rule
                } else {
                    &c.list_rule
                };
                let ruled =
                    !auth.is_superuser() && rule.as_deref().is_some_and(|r| !r.trim().is_empty());
                ruled || nonempty(&sub.query, "filter") || nonempty(&sub.query, "expand")
            })
        })
    })
}

fn plan(
    conn: Option<&ReadConn>,
    schema: &Schema,
    batch: &[Change],
    targets: &[Target],
) -> Vec<(Arc<Client>, Message)> {
    let mut out = Vec::new();
    for change in batch {
        // Identical (auth, topic) pairs share one check and one rendering.
        let mut memo: HashMap<(Option<String>, bool, String), Option<Arc<str>>> = HashMap::new();
        let id = change
            .record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for (client, auth, subs) in targets {
            for sub in subs {
                if !sub.collection.eq_ignore_ascii_case(&change.collection.name)
                    && sub.collection != change.collection.id
                {
                    continue;
                }
                if sub.record.as_deref().is_some_and(|r| r != id) {
                    continue;
                }
                let key = (
                    auth.id().map(String::from),
                    auth.is_superuser(),
                    sub.topic.clone(),
                );
                let data = match memo.get(&key) {
                    Some(d) => d.clone(),
                    None => {
                        let d = render(conn, schema, change, auth, sub).unwrap_or_else(|e| {
                            tracing::warn!(error = %e, topic = %sub.topic, "realtime delivery check failed");
                            None
                        });
                        memo.insert(key, d.clone());
                        d
                    }
                };
                if let Some(data) = data {
                    out.push((
                        client.clone(),
                        Message {
                            event: Arc::from(sub.topic.as_str()),
                            data,
                        },
                    ));
                }
            }
        }
    }
    out
}

/// The JSON payload for one subscriber, or `None` when its rule hides the record.
fn render(
    conn: Option<&ReadConn>,
    schema: &Schema,
    change: &Change,
    auth: &Auth,
    sub: &Subscription,
) -> Result<Option<Arc<str>>, StoreError> {
    let c = &change.collection;
    let db =
        || conn.ok_or_else(|| StoreError::Internal("realtime check needs the database".into()));
    let headers = HeaderMap::new();
    let mut request = request_info(auth, &Method::GET, &sub.query, &headers, None);
    request["headers"] = Value::Object(sub.headers.clone());
    request["context"] = json!("realtime");
    if !auth.is_superuser() {
        let rule = if sub.record.is_some() {
            &c.view_rule
        } else {
            &c.list_rule
        };
        let Some(rule) = rule else { return Ok(None) };
        if let Some((sql, params)) = rule_condition(schema, c, rule, &request)?
            && !records::matches_values(db()?, c, &change.record, &sql, &params)?
        {
            return Ok(None);
        }
    }
    if let Some(f) = sub.query.get("filter").filter(|f| !f.trim().is_empty()) {
        let q = filter::Query {
            lookup: schema,
            collection: c,
            request: Some(&request),
            allow_request_refs: auth.is_superuser(),
            allow_hidden: auth.is_superuser(),
            now: chrono::Utc::now(),
        };
        let (sql, params) = filter::filter_sql(f, &q)?;
        if !records::matches_values(db()?, c, &change.record, &sql, &params)? {
            return Ok(None);
        }
    }
    let mut recs = vec![change.record.clone()];
    if let Some(paths) = sub.query.get("expand").filter(|e| !e.trim().is_empty()) {
        crate::access::expand::expand_visible(db()?, schema, c, &mut recs, paths, auth, &request)?;
    }
    let rec = recs.pop().unwrap_or_default();
    let mut shown = present::record(schema, c, rec, auth);
    if let Some(p) = sub.query.get("fields").and_then(|f| FieldsPicker::parse(f)) {
        shown = p.apply(shown);
    }
    let payload = json!({"action": change.op, "record": shown});
    Ok(Some(Arc::from(payload.to_string().as_str())))
}
