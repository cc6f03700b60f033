//! The fold's tests: database failures while folding fail the batch, never a dead letter on
//! one node only.

use super::super::super::{Store, StoreOptions};
use super::super::{Builtin, Policy, last_writer_wins};
use super::*;
use crate::replication::{Clock, CollectionRef, Hlc};

/// A policy whose binds always succeed, counting them as its binding table. While `busy` is
/// set its plugin has no instance on this node: every call is a node fault.
#[derive(Default)]
struct Binder {
    binds: parking_lot::Mutex<u32>,
    busy: std::sync::atomic::AtomicBool,
}

impl Binder {
    fn check(&self) -> Result<(), StoreError> {
        if self.busy.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Unavailable("no instance slot".into()));
        }
        Ok(())
    }
}

impl Policy for Binder {
    fn outbound(&self, _: &Collection, _: &Event) -> Result<Filtered, StoreError> {
        self.check().map(|()| Filtered::Keep)
    }
    fn inbound(&self, _: &Collection, _: &Event) -> Result<Filtered, StoreError> {
        self.check().map(|()| Filtered::Keep)
    }
    fn resolve(
        &self,
        _: &Collection,
        current: &Current,
        incoming: &Event,
    ) -> Result<(Resolved, String), StoreError> {
        self.check()?;
        Ok((last_writer_wins(current, incoming), "test".into()))
    }
    fn bind(&self, _: &Event) -> Result<Result<(), String>, StoreError> {
        self.check()?;
        *self.binds.lock() += 1;
        Ok(Ok(()))
    }
    fn bindings(&self) -> String {
        format!("binds={}", self.binds.lock())
    }
}

fn binding_event() -> Event {
    Event {
        id: EventId::random(),
        origin: "n2".into(),
        hlc: Hlc::new(1_000, 0),
        kind: EventKind::PluginBinding,
        collection: CollectionRef {
            id: String::new(),
            name: String::new(),
        },
        record_id: None,
        data: Some(serde_json::Map::new()),
        before: None,
        base: None,
        schema_version: 0,
        plugin_version: 0,
        files: Vec::new(),
    }
}

/// The event creating `notes`, a base collection shaped like `users`' non-auth part.
fn notes_event(store: &Store) -> Event {
    let mut c = (**store.schema().get("users").expect("users")).clone();
    c.id = "pbc_notes00001".into();
    c.name = "notes".into();
    c.system = false;
    c.kind = crate::store::schema::CollectionType::Base;
    c.fields.retain(|f| f.name == "id" || f.name == "name");
    c.indexes.clear();
    let serde_json::Value::Object(data) = serde_json::to_value(&c).expect("json") else {
        panic!("collection is not an object")
    };
    let mut event = binding_event();
    event.kind = EventKind::CollectionCreate;
    event.collection = CollectionRef {
        id: c.id.clone(),
        name: c.name.clone(),
    };
    event.data = Some(data);
    event
}

/// One delivery at `seq`.
fn delivered(seq: u64, event: Event) -> Delivered {
    Delivered {
        seq,
        event: Ok(event),
        payload: bytes::Bytes::from_static(b"{}"),
    }
}

/// A replicating store on `dir` folding with `policy`.
fn open(dir: &std::path::Path, policy: Arc<dyn Policy>) -> (Arc<SyncHooks>, Store) {
    let hooks = Arc::new(SyncHooks {
        node_id: "n1".into(),
        clock: Arc::new(Clock::new()),
        outbox: Arc::new(tokio::sync::Notify::new()),
        policy,
        fresh: Default::default(),
        listeners: Default::default(),
    });
    let store = Store::open_with(dir, &StoreOptions::default(), Some(hooks.clone())).expect("open");
    (hooks, store)
}

/// Runs `sql` on the writer connection.
async fn exec(store: &Store, sql: String) {
    store
        .write(move |ctx| Ok(ctx.conn.execute_batch(&sql)?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_raw(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .await
        .expect("count")
}

#[tokio::test]
async fn a_schema_event_the_disk_has_no_room_for_fails_the_batch_instead_of_dead_lettering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks, store) = open(dir.path(), Arc::new(Builtin));
    let event = notes_event(&store);
    let batch = Arc::new(vec![Delivered {
        seq: 1,
        event: Ok(event),
        payload: bytes::Bytes::from_static(b"{}"),
    }]);
    // The disk is full: the database may not grow by a single page.
    let pages = count(&store, "PRAGMA page_count").await;
    exec(&store, format!("PRAGMA max_page_count = {pages}")).await;
    let failed = store.apply_events(hooks.clone(), batch.clone(), 0).await;
    assert!(failed.is_err(), "the batch must fail: {failed:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM _sync_dead").await, 0);
    assert!(store.schema().get("notes").is_none());
    exec(&store, "PRAGMA max_page_count = 1073741823".into()).await;
    let report = store
        .apply_events(hooks, batch, 0)
        .await
        .expect("the retry applies");
    assert_eq!((report.applied, report.dead), (1, 0));
    assert!(store.schema().get("notes").is_some(), "collection created");
}

#[tokio::test]
async fn a_binding_the_database_cannot_store_fails_the_batch_instead_of_dead_lettering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks, store) = open(dir.path(), Arc::new(Binder::default()));
    // This node's database refuses the binding table's row (as a full disk would).
    exec(
        &store,
        "CREATE TRIGGER refuse BEFORE INSERT ON _sync_bindings
         BEGIN SELECT RAISE(ABORT, 'no room'); END;"
            .into(),
    )
    .await;
    let batch = Arc::new(vec![Delivered {
        seq: 1,
        event: Ok(binding_event()),
        payload: bytes::Bytes::from_static(b"{}"),
    }]);
    let failed = store.apply_events(hooks.clone(), batch.clone(), 0).await;
    assert!(failed.is_err(), "the batch must fail: {failed:?}");
    // Dead-lettering it here alone would fork this node from the others, which bound it.
    assert_eq!(count(&store, "SELECT count(*) FROM _sync_dead").await, 0);
    assert_eq!(
        count(&store, "SELECT count(*) FROM _sync_seen").await,
        0,
        "nothing of the failed batch committed"
    );
    exec(&store, "DROP TRIGGER refuse".into()).await;
    let report = store
        .apply_events(hooks, batch, 0)
        .await
        .expect("the retry applies");
    assert_eq!((report.applied, report.dead), (1, 0));
    let stored: String = store
        .read_raw(|c| Ok(c.query_row("SELECT data FROM _sync_bindings", [], |r| r.get(0))?))
        .await
        .expect("bindings");
    assert_eq!(stored, "binds=2");
}

#[tokio::test]
async fn a_plugin_without_an_instance_on_this_node_fails_the_batch_instead_of_deciding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Arc::new(Binder::default());
    let (hooks, store) = open(dir.path(), policy.clone());
    policy
        .busy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let batch = Arc::new(vec![Delivered {
        seq: 1,
        event: Ok(binding_event()),
        payload: bytes::Bytes::from_static(b"{}"),
    }]);
    let failed = store.apply_events(hooks.clone(), batch.clone(), 0).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "the batch must fail: {failed:?}"
    );
    // Neither refused (a dead letter) nor decided by a default the other nodes would not use.
    assert_eq!(count(&store, "SELECT count(*) FROM _sync_dead").await, 0);
    assert_eq!(count(&store, "SELECT count(*) FROM _sync_seen").await, 0);
    policy
        .busy
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let report = store
        .apply_events(hooks, batch, 0)
        .await
        .expect("the retry applies");
    assert_eq!((report.applied, report.dead), (1, 0));
}

#[tokio::test]
async fn record_changes_reach_the_change_feed_only_while_someone_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks, store) = open(dir.path(), Arc::new(Builtin));
    let notes = notes_event(&store);
    let note = |seq: u64, rid: &str| {
        let mut e = binding_event();
        e.kind = EventKind::RecordCreate;
        e.collection = notes.collection.clone();
        e.record_id = Some(rid.into());
        e.data = Some(
            serde_json::json!({"id": rid, "name": "hello"})
                .as_object()
                .cloned()
                .expect("object"),
        );
        delivered(seq, e)
    };
    let batch = Arc::new(vec![
        delivered(1, notes.clone()),
        note(2, "aaaaaaaaaaaaaa1"),
    ]);
    let mut feed = store.subscribe();
    let report = store
        .apply_events(hooks.clone(), batch, 0)
        .await
        .expect("apply");
    assert_eq!((report.applied, report.dead), (2, 0));
    assert!(
        feed.try_recv().is_err(),
        "no listener: the fold announced a change"
    );
    hooks.listeners.set_clients(1);
    let report = store
        .apply_events(hooks, Arc::new(vec![note(3, "aaaaaaaaaaaaaa2")]), 0)
        .await
        .expect("apply");
    assert_eq!((report.applied, report.dead), (1, 0));
    let changes = feed.try_recv().expect("announced to the listener");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].record["id"], "aaaaaaaaaaaaaa2");
    assert_eq!(changes[0].op, crate::store::Op::Create);
}

/// A schema event for the view collection `name` over `query` (fields as a node inferred them).
fn view_event(kind: EventKind, id: &str, name: &str, query: &str) -> Event {
    let c = serde_json::json!({
        "id": id, "name": name, "type": "view", "system": false,
        "fields": [crate::store::views::parse::view_id_field(),
                   crate::store::views::parse::default_view_field("name")],
        "indexes": [], "listRule": "", "viewRule": "", "createRule": null,
        "updateRule": null, "deleteRule": null, "viewQuery": query,
        "created": "2026-01-01 00:00:00.000Z", "updated": "2026-01-01 00:00:00.000Z",
    });
    let mut event = binding_event();
    event.kind = kind;
    event.collection = CollectionRef {
        id: id.into(),
        name: name.into(),
    };
    event.data = c.as_object().cloned();
    event
}

#[tokio::test]
async fn views_fold_at_their_log_position_and_refuse_what_would_break_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks, store) = open(dir.path(), Arc::new(Builtin));
    let notes = notes_event(&store);
    let mut delete_notes = binding_event();
    delete_notes.kind = EventKind::CollectionDelete;
    delete_notes.collection = notes.collection.clone();
    let batch: Vec<Delivered> = [
        notes,
        view_event(
            EventKind::CollectionCreate,
            "pbc_view00001",
            "noteview",
            "SELECT id, name FROM notes",
        ),
        // Deleting the view's table would break it: refused on every node alike.
        delete_notes,
        // A view over a table that is not there at this position of the log.
        view_event(
            EventKind::CollectionCreate,
            "pbc_view00002",
            "ghostview",
            "SELECT id, name FROM ghosts",
        ),
        // A view whose new query reads a missing column keeps its old query.
        view_event(
            EventKind::CollectionUpdate,
            "pbc_view00001",
            "noteview",
            "SELECT id, nope AS name FROM notes",
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, e)| delivered(i as u64 + 1, e))
    .collect();
    let report = store
        .apply_events(hooks, Arc::new(batch), 0)
        .await
        .expect("apply");
    assert_eq!((report.applied, report.dead), (2, 3));
    let schema = store.schema();
    assert!(schema.get("notes").is_some(), "the delete was refused");
    assert!(schema.get("ghostview").is_none());
    let view = schema.get("noteview").expect("the view");
    assert_eq!(
        view.view_query.as_deref(),
        Some("SELECT id, name FROM notes")
    );
    // The SQL view exists and reads the table.
    exec(
        &store,
        "INSERT INTO notes (id, name) VALUES ('n1', 'hello')".into(),
    )
    .await;
    assert_eq!(
        count(&store, "SELECT count(*) FROM noteview WHERE name = 'hello'").await,
        1
    );
    let reasons: Vec<String> = store
        .read_raw(|c| {
            let mut st = c.prepare("SELECT reason FROM _sync_dead ORDER BY seq")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
        .expect("reasons");
    assert!(reasons[0].contains("depends on it"), "{reasons:?}");
    assert!(reasons[1].contains("no such table"), "{reasons:?}");
    assert!(reasons[2].contains("no such column"), "{reasons:?}");
}

#[test]
fn a_dead_letter_is_never_written_outside_the_folds_transaction() {
    // After a full disk SQLite has ended the fold's transaction; the error that surfaces next
    // ("no such savepoint") must fail the batch, not commit a dead letter on this node alone.
    let conn = Connection::open_in_memory().expect("open");
    assert!(conn.is_autocommit());
    let d = delivered(7, binding_event());
    let e = dead_letter(&conn, &d, None, "sqlite: no such savepoint: fold_revert")
        .expect_err("refused outside a transaction");
    assert!(is_engine_fault(&e), "the batch is retried: {e}");
}
