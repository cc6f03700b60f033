//! Realtime subscriptions: the hub of connected clients (SSE or websocket, one model behind
//! both) and the fan-out task that turns the store's change feed into deliveries.
//!
//! Fan-out is driven only by committed changes (`Store::subscribe`), never by handlers, so the
//! same feed serves local writes now and replicated ones later. Every delivery is checked
//! against the subscriber's list/view rule with its own auth, and presented as that
//! subscriber may see it. A client whose bounded buffer is full is dropped, so a slow consumer
//! never blocks writers or other subscribers.
//!
//! Each client's subscriptions have a cost (a topic costs 1, plus its filter's conditions and
//! relation hops and its expand paths), bounded per client (`--realtime-client-cost`). A client
//! whose cost is above [`HEAVY_COST`] is evaluated on its own task, one change per reader
//! turn, so its filters delay only its own deliveries, never other clients'.

mod fanout;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::store::Change;

use crate::access::Auth;
use crate::store::schema::{ALNUM, random_string};
use crate::store::sync::ChangeListeners;

pub use fanout::run as run_fanout;

/// A client with the auth and subscriptions a batch is evaluated for.
pub(crate) type Target = (Arc<Client>, Auth, Arc<Vec<Subscription>>);

/// Most topics one client may subscribe to.
pub const MAX_TOPICS: usize = 1000;
/// Longest topic accepted (options included).
pub const MAX_TOPIC_LEN: usize = 2500;
/// Default bound on the cost of one client's subscriptions: each topic costs 1, plus the
/// terms of its filter and its expand paths (`--realtime-client-cost`).
pub const CLIENT_COST: usize = 2000;
/// Clients whose subscriptions cost more are evaluated on their own task.
pub const HEAVY_COST: usize = 32;
/// Change batches a heavy client may have waiting for evaluation before it is dropped as too
/// slow.
const HEAVY_QUEUE: usize = 256;

/// Tuning from the config.
#[derive(Debug, Clone)]
pub struct RealtimeOptions {
    /// Messages buffered per client before it is considered too slow and dropped.
    pub client_buffer: usize,
    /// A connection with no message for this long is closed (clients reconnect).
    pub idle_timeout: Duration,
    /// Largest cost of one client's subscriptions (see `CLIENT_COST`).
    pub client_cost: usize,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        RealtimeOptions {
            client_buffer: 512,
            idle_timeout: Duration::from_secs(300),
            client_cost: CLIENT_COST,
        }
    }
}

/// One message to a client: the SSE event name (the topic) and its JSON data.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: Arc<str>,
    pub data: Arc<str>,
}

/// A parsed topic: `coll/*` or `coll/RECORD_ID`, with optional `?options=` query/headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub topic: String,
    pub collection: String,
    pub record: Option<String>,
    pub query: HashMap<String, String>,
    pub headers: Map<String, Value>,
    /// A non-record topic (e.g. the SDK's `PB_CONNECT` listener); never matched by changes.
    pub custom: bool,
}

impl Subscription {
    pub fn parse(topic: &str) -> Option<Subscription> {
        let (path, opts) = match topic.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (topic, None),
        };
        // A topic that is not `collection/record` is a custom topic (as in PocketBase): it is
        // accepted and kept, but no record change ever matches it.
        let (collection, record) = match path.split_once('/') {
            Some((c, r)) if !c.is_empty() && !r.is_empty() => (c, r),
            _ if !path.is_empty() && !path.contains('/') => (path, ""),
            _ => return None,
        };
        let mut sub = Subscription {
            topic: topic.to_string(),
            collection: collection.to_string(),
            record: (record != "*").then(|| record.to_string()),
            custom: record.is_empty(),
            query: HashMap::new(),
            headers: Map::new(),
        };
        if let Some(q) = opts {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                if k != "options" {
                    continue;
                }
                let parsed: Value = serde_json::from_str(&v).ok()?;
                if let Some(Value::Object(q)) = parsed.get("query") {
                    for (k, v) in q {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        sub.query.insert(k.clone(), v);
                    }
                }
                if let Some(Value::Object(h)) = parsed.get("headers") {
                    sub.headers = h.clone();
                }
            }
        }
        Some(sub)
    }
}

impl Subscription {
    /// What evaluating this subscription for one change costs, in units of one condition: 1,
    /// plus each filter comparison and each relation hop it makes, plus each expand path and
    /// hop. A filter that does not parse costs 1 (it never matches).
    pub fn cost(&self) -> usize {
        let mut cost = 1;
        if let Some(f) = self.query.get("filter").filter(|f| !f.trim().is_empty())
            && let Ok(expr) = crate::filter::parse(f)
        {
            cost += expr_cost(&expr);
        }
        if let Some(e) = self.query.get("expand") {
            cost += e
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| 1 + p.matches('.').count())
                .sum::<usize>();
        }
        cost
    }
}

fn expr_cost(e: &crate::filter::Expr) -> usize {
    use crate::filter::{Expr, Operand};
    let hops = |o: &Operand| match o {
        Operand::Field { name, .. } if !name.starts_with("@request.") => name.matches('.').count(),
        _ => 0,
    };
    match e {
        Expr::And(parts) | Expr::Or(parts) => parts.iter().map(expr_cost).sum(),
        Expr::Compare(c) => 1 + hops(&c.left) + hops(&c.right),
    }
}

struct ClientState {
    auth: Auth,
    subs: Arc<Vec<Subscription>>,
    cost: usize,
}

/// A batch of changes waiting for a heavy client's own evaluation, with the subscriptions and
/// auth it is evaluated for.
pub(crate) type HeavyJob = (Arc<Vec<Change>>, Auth, Arc<Vec<Subscription>>);

/// A connected realtime client.
pub struct Client {
    pub id: String,
    tx: mpsc::Sender<Message>,
    state: Mutex<ClientState>,
    /// The queue of this client's own evaluation task, once it is heavy.
    heavy: Mutex<Option<mpsc::Sender<HeavyJob>>>,
    /// Batches queued to the evaluation task and not yet delivered: while any is, later
    /// batches go the same way, so deliveries keep commit order.
    pending: std::sync::atomic::AtomicUsize,
}

impl Client {
    /// Delivers without waiting; false when the buffer is full or the client is gone.
    fn offer(&self, m: Message) -> bool {
        self.tx.try_send(m).is_ok()
    }

    /// The cost of the current subscriptions.
    pub fn cost(&self) -> usize {
        self.state.lock().cost
    }
}

/// Every connected client.
pub struct Hub {
    clients: RwLock<HashMap<String, Arc<Client>>>,
    pub opts: RealtimeOptions,
    /// Told how many clients are connected (the fold announces changes only for listeners).
    listeners: Arc<ChangeListeners>,
}

/// Removes its client from the hub when the connection's stream is dropped.
pub struct Registration {
    hub: Arc<Hub>,
    pub id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut clients = self.hub.clients.write();
        clients.remove(&self.id);
        self.hub.listeners.set_clients(clients.len());
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubscribeError {
    #[error("Missing or invalid client id.")]
    UnknownClient,
    #[error("The number of subscriptions exceeds the limit of {MAX_TOPICS}.")]
    TooMany,
    #[error("Invalid subscription topic {0:?}.")]
    BadTopic(String),
    #[error("The current and the previous request authorization don't match.")]
    AuthMismatch,
    #[error(
        "The subscriptions cost {cost}, over this server's limit of {limit} per client (each \
         topic costs 1, plus 1 per filter condition, relation hop and expand path)."
    )]
    TooCostly { cost: usize, limit: usize },
}

impl Hub {
    pub fn new(opts: RealtimeOptions) -> Arc<Hub> {
        Hub::with_listeners(opts, Arc::default())
    }

    /// A hub that keeps `listeners` told how many clients are connected.
    pub fn with_listeners(opts: RealtimeOptions, listeners: Arc<ChangeListeners>) -> Arc<Hub> {
        Arc::new(Hub {
            clients: RwLock::new(HashMap::new()),
            opts,
            listeners,
        })
    }

    /// Whether a fold batch that announced no changes may still be committing: a new
    /// subscription waits for the writer first, so it misses nothing committed after it.
    pub fn fold_was_blind(&self) -> bool {
        self.listeners.fold_was_blind()
    }

    /// Registers a new client; its messages arrive on the returned receiver.
    pub fn connect(self: &Arc<Hub>) -> (Registration, mpsc::Receiver<Message>) {
        let id = random_string(40, ALNUM);
        let (tx, rx) = mpsc::channel(self.opts.client_buffer.max(1));
        let client = Arc::new(Client {
            id: id.clone(),
            tx,
            state: Mutex::new(ClientState {
                auth: Auth::Guest,
                subs: Arc::new(Vec::new()),
                cost: 0,
            }),
            heavy: Mutex::new(None),
            pending: std::sync::atomic::AtomicUsize::new(0),
        });
        {
            let mut clients = self.clients.write();
            clients.insert(id.clone(), client);
            self.listeners.set_clients(clients.len());
        }
        (
            Registration {
                hub: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Replaces a client's subscriptions and binds `auth` to it.
    pub fn subscribe(
        &self,
        client_id: &str,
        auth: Auth,
        topics: &[String],
    ) -> Result<(), SubscribeError> {
        let client = self
            .clients
            .read()
            .get(client_id)
            .cloned()
            .ok_or(SubscribeError::UnknownClient)?;
        if topics.len() > MAX_TOPICS {
            return Err(SubscribeError::TooMany);
        }
        let mut subs = Vec::with_capacity(topics.len());
        for t in topics {
            if t.len() > MAX_TOPIC_LEN {
                return Err(SubscribeError::BadTopic(t.chars().take(40).collect()));
            }
            subs.push(Subscription::parse(t).ok_or_else(|| SubscribeError::BadTopic(t.clone()))?);
        }
        let cost: usize = subs.iter().map(Subscription::cost).sum();
        if cost > self.opts.client_cost {
            return Err(SubscribeError::TooCostly {
                cost,
                limit: self.opts.client_cost,
            });
        }
        let mut st = client.state.lock();
        // Once a client is bound to a record, a request without that auth cannot take it over.
        if let (Some(old), new) = (st.auth.id().map(String::from), auth.id())
            && new != Some(old.as_str())
        {
            return Err(SubscribeError::AuthMismatch);
        }
        st.auth = auth;
        st.subs = Arc::new(subs);
        st.cost = cost;
        Ok(())
    }

    /// Sends `data` as event `topic` to client `client_id` if it subscribed to that custom
    /// topic, then drops the subscription: one-shot topics such as the SDK's `@oauth2`, which
    /// carries the provider's redirect to the window that started the sign-in. False when
    /// there is no such client or subscription.
    pub fn deliver_once(&self, client_id: &str, topic: &str, data: String) -> bool {
        let Some(client) = self.clients.read().get(client_id).cloned() else {
            return false;
        };
        {
            let mut st = client.state.lock();
            let before = st.subs.len();
            let kept: Vec<Subscription> = st
                .subs
                .iter()
                .filter(|s| !(s.custom && s.topic == topic))
                .cloned()
                .collect();
            if kept.len() == before {
                return false;
            }
            st.cost = kept.iter().map(Subscription::cost).sum();
            st.subs = Arc::new(kept);
        }
        client.offer(Message {
            event: Arc::from(topic),
            data: Arc::from(data),
        })
    }

    /// Drops a client (its stream ends).
    pub fn disconnect(&self, client_id: &str) {
        let mut clients = self.clients.write();
        clients.remove(client_id);
        self.listeners.set_clients(clients.len());
    }

    pub fn client_count(&self) -> usize {
        self.clients.read().len()
    }

    /// Snapshot of (client, auth, subscriptions) for clients subscribed to any of `collections`.
    fn interested(&self, collections: &[String]) -> Vec<Target> {
        let clients: Vec<Arc<Client>> = self.clients.read().values().cloned().collect();
        let mut out = Vec::new();
        for c in clients {
            let st = c.state.lock();
            let wanted = st.subs.iter().any(|s| {
                collections
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(&s.collection))
            });
            if wanted {
                let (auth, subs) = (st.auth.clone(), st.subs.clone());
                drop(st);
                out.push((c, auth, subs));
            }
        }
        out
    }

    /// Closes every client's stream (on shutdown, or when events were lost).
    pub fn drop_all(&self) {
        let mut clients = self.clients.write();
        clients.clear();
        self.listeners.set_clients(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_with_options() {
        let s = Subscription::parse("posts/*").expect("parse");
        assert_eq!((s.collection.as_str(), s.record.clone()), ("posts", None));
        let s = Subscription::parse(
            "posts/abc?options=%7B%22query%22%3A%7B%22expand%22%3A%22author%22%7D%7D",
        )
        .expect("parse");
        assert_eq!(s.record.as_deref(), Some("abc"));
        assert_eq!(s.query.get("expand").map(String::as_str), Some("author"));
        assert!(Subscription::parse("PB_CONNECT").is_some_and(|s| s.custom));
        assert!(Subscription::parse("posts/").is_none());
        assert!(Subscription::parse("").is_none());
    }

    #[test]
    fn subscription_limits_and_unknown_clients() {
        let hub = Hub::new(RealtimeOptions::default());
        assert_eq!(
            hub.subscribe("nope", Auth::Guest, &[]),
            Err(SubscribeError::UnknownClient)
        );
        let (reg, _rx) = hub.connect();
        let many: Vec<String> = (0..1001).map(|i| format!("c/{i}")).collect();
        assert_eq!(
            hub.subscribe(&reg.id, Auth::Guest, &many),
            Err(SubscribeError::TooMany)
        );
        assert!(
            hub.subscribe(&reg.id, Auth::Guest, &["c/*".to_string()])
                .is_ok()
        );
        drop(reg);
        assert_eq!(hub.client_count(), 0);
    }

    fn with_options(query: serde_json::Value) -> String {
        let opts = serde_json::json!({ "query": query }).to_string();
        let enc: String = url::form_urlencoded::byte_serialize(opts.as_bytes()).collect();
        format!("posts/*?options={enc}")
    }

    #[test]
    fn a_subscription_costs_its_conditions_hops_and_expansions() {
        let cost = |t: &str| Subscription::parse(t).expect("parse").cost();
        assert_eq!(cost("posts/*"), 1);
        assert_eq!(
            cost(&with_options(serde_json::json!({"filter": "n > 1"}))),
            2
        );
        assert_eq!(
            cost(&with_options(
                serde_json::json!({"filter": "n > 1 && (author.name = 'a' || title ~ 'x')"})
            )),
            1 + 1 + 2 + 1
        );
        assert_eq!(
            cost(&with_options(
                serde_json::json!({"expand": "author,author.team"})
            )),
            1 + 1 + 2
        );
        assert_eq!(
            cost(&with_options(
                serde_json::json!({"filter": "@request.auth.id != ''"})
            )),
            2
        );
    }

    #[test]
    fn a_client_over_its_cost_is_refused_and_keeps_its_subscriptions() {
        let hub = Hub::new(RealtimeOptions {
            client_cost: 100,
            ..RealtimeOptions::default()
        });
        let (reg, _rx) = hub.connect();
        let cheap = vec!["posts/*".to_string()];
        hub.subscribe(&reg.id, Auth::Guest, &cheap).expect("cheap");
        let filtered: Vec<String> = (0..60)
            .map(|i| with_options(serde_json::json!({"filter": format!("n = {i}")})))
            .collect();
        assert_eq!(
            hub.subscribe(&reg.id, Auth::Guest, &filtered),
            Err(SubscribeError::TooCostly {
                cost: 120,
                limit: 100
            })
        );
        let client = hub.clients.read().get(&reg.id).cloned().expect("client");
        assert_eq!(
            client.cost(),
            1,
            "the refused set did not replace the old one"
        );
    }
}
