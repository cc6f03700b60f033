//! The fan-out task: one committed batch at a time, find interested clients, check each
//! delivery against the subscriber's rule with its own auth, present the record for it, and
//! offer the message to its bounded buffer.
//!
//! Clients whose subscriptions cost more than [`HEAVY_COST`] are not planned here: their
//! batches go to a task of their own ([`evaluate_heavy`]), which takes one change per reader
//! turn, so one client's thousand filters delay only that client.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::{Client, HEAVY_COST, HEAVY_QUEUE, HeavyJob, Hub, Message, Subscription, Target};
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
        let mut targets = hub.interested(&names);
        if targets.is_empty() {
            continue;
        }
        // Heavy clients, and clients whose earlier batches are still being evaluated on their
        // own task (so their deliveries keep commit order), are handed their batch.
        targets.retain(|t| {
            let (client, _, _) = t;
            let own = client.cost() > HEAVY_COST || client.pending.load(Ordering::SeqCst) > 0;
            if own {
                hand_over(&store, &hub, t, &batch);
            }
            !own
        });
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
                    deliver(&hub, &client, msg);
                }
            }
            Err(e) => tracing::error!(error = %e, "realtime fan-out failed for a batch"),
        }
    }
}

/// Offers a message, dropping the client when its buffer is full.
fn deliver(hub: &Hub, client: &Client, msg: Message) -> bool {
    if client.offer(msg) {
        return true;
    }
    tracing::info!(client = %client.id, "realtime client too slow or gone; dropping it");
    hub.disconnect(&client.id);
    false
}

/// Queues a batch for a client's own evaluation task, starting the task on first use.
fn hand_over(store: &Store, hub: &Arc<Hub>, target: &Target, batch: &Arc<Vec<Change>>) {
    let (client, auth, subs) = target;
    let mut heavy = client.heavy.lock();
    let tx = heavy.get_or_insert_with(|| {
        let (tx, rx) = mpsc::channel(HEAVY_QUEUE);
        tokio::spawn(evaluate_heavy(
            store.clone(),
            hub.clone(),
            Arc::downgrade(client),
            rx,
        ));
        tx
    });
    client.pending.fetch_add(1, Ordering::SeqCst);
    if tx
        .try_send((batch.clone(), auth.clone(), subs.clone()))
        .is_err()
    {
        client.pending.fetch_sub(1, Ordering::SeqCst);
        drop(heavy);
        tracing::info!(client = %client.id, "realtime client's evaluation fell behind; dropping it");
        hub.disconnect(&client.id);
    }
}

/// One heavy client's deliveries, in commit order, one change per reader turn (readers are
/// handed out first come, first served, so other clients' reads interleave). Ends when the
/// client is gone.
async fn evaluate_heavy(
    store: Store,
    hub: Arc<Hub>,
    client: Weak<Client>,
    mut rx: mpsc::Receiver<HeavyJob>,
) {
    while let Some((batch, auth, subs)) = rx.recv().await {
        let Some(c) = client.upgrade() else { return };
        let target: Target = (c.clone(), auth, subs);
        let mut alive = true;
        for i in 0..batch.len() {
            let change = std::slice::from_ref(&batch[i]);
            let targets = std::slice::from_ref(&target);
            let list = if needs_sql(change, targets) {
                let (b, t) = (batch.clone(), target.clone());
                store
                    .read(move |conn, schema| {
                        Ok(plan(
                            Some(conn),
                            schema,
                            std::slice::from_ref(&b[i]),
                            std::slice::from_ref(&t),
                        ))
                    })
                    .await
            } else {
                Ok(plan(None, &store.schema(), change, targets))
            };
            match list {
                Ok(list) => {
                    for (client, msg) in list {
                        alive &= deliver(&hub, &client, msg);
                    }
                }
                Err(e) => tracing::error!(error = %e, client = %c.id, "realtime evaluation failed"),
            }
            if !alive {
                break;
            }
        }
        c.pending.fetch_sub(1, Ordering::SeqCst);
        drop(c);
        if !alive {
            return;
        }
    }
}

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
            subs.iter()
                .filter(|s| s.collection.eq_ignore_ascii_case(&c.name) || s.collection == c.id)
                .any(|sub| {
                    let rule = if sub.record.is_some() {
                        &c.view_rule
                    } else {
                        &c.list_rule
                    };
                    let ruled = !auth.is_superuser()
                        && rule.as_deref().is_some_and(|r| !r.trim().is_empty());
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
            for sub in subs.iter() {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::realtime::RealtimeOptions;
    use crate::records::validate::Access;
    use crate::store::StoreOptions;

    fn topic_with_filter(filter: &str) -> String {
        let opts = json!({"query": {"filter": filter}}).to_string();
        let enc: String = url::form_urlencoded::byte_serialize(opts.as_bytes()).collect();
        format!("users/*?options={enc}")
    }

    /// The only reader connection is held; a light client (no SQL needed) still gets its
    /// delivery, while a heavy client's filters wait for the reader, and then get theirs.
    #[tokio::test]
    async fn a_heavy_clients_filters_do_not_hold_back_other_clients() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StoreOptions {
            readers: 1,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), &opts).expect("open");
        let hub = Hub::new(RealtimeOptions::default());
        let fanout = tokio::spawn(run(store.clone(), hub.clone()));
        let su = Auth::Record {
            collection: store.schema().get("_superusers").cloned().expect("su"),
            record: json!({"id": "su0000000000001"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let (light, mut light_rx) = hub.connect();
        hub.subscribe(&light.id, su.clone(), &["users/*".to_string()])
            .expect("light");
        let (heavy, mut heavy_rx) = hub.connect();
        let mut topics: Vec<String> = (0..40)
            .map(|i| topic_with_filter(&format!("email = 'nope{i}@example.com'")))
            .collect();
        let wanted = topic_with_filter("email = 'ann@example.com'");
        topics.push(wanted.clone());
        hub.subscribe(&heavy.id, su, &topics).expect("heavy");
        // Hold the only reader until told.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let blocker = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .read(move |_, _| {
                        let _ = held_tx.send(());
                        let _ = wait.recv();
                        Ok(())
                    })
                    .await
            })
        };
        held.await.expect("reader held");
        let hash = bcrypt::hash("secret123", 4).expect("hash");
        store
            .write(move |ctx| {
                let input = json!({"email": "ann@example.com", "password": "secret123",
                                   "passwordConfirm": "secret123"});
                let input = input.as_object().cloned().unwrap_or_default();
                records::create(ctx, "users", &input, Some(hash), Access::Manager)
            })
            .await
            .expect("create");
        let msg = tokio::time::timeout(Duration::from_secs(10), light_rx.recv())
            .await
            .expect("the light client waited for the heavy client's filters")
            .expect("a message");
        assert_eq!(&*msg.event, "users/*");
        assert!(
            heavy_rx.try_recv().is_err(),
            "the heavy client needs the reader"
        );
        release.send(()).expect("release");
        blocker.await.expect("blocker").expect("read");
        let msg = tokio::time::timeout(Duration::from_secs(10), heavy_rx.recv())
            .await
            .expect("the heavy client got nothing")
            .expect("a message");
        assert_eq!(&*msg.event, wanted.as_str());
        drop((light, heavy));
        fanout.abort();
    }
}
