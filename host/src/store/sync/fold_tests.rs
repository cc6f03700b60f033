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
    fn bind(&self, _: &Event, _: &crate::store::Schema) -> Result<Result<(), String>, StoreError> {
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

/// A resolver that answers every conflict with a merged record, and counts what the fold
/// does with it.
#[derive(Default)]
struct Merger {
    merged: parking_lot::Mutex<Option<serde_json::Map<String, serde_json::Value>>>,
    rejected: parking_lot::Mutex<Vec<String>>,
    dropped: parking_lot::Mutex<Vec<String>>,
}

impl Policy for Merger {
    fn outbound(&self, _: &Collection, _: &Event) -> Result<Filtered, StoreError> {
        Ok(Filtered::Keep)
    }
    fn inbound(&self, _: &Collection, _: &Event) -> Result<Filtered, StoreError> {
        Ok(Filtered::Keep)
    }
    fn resolve(
        &self,
        _: &Collection,
        _: &Current,
        _: &Event,
    ) -> Result<(Resolved, String), StoreError> {
        let merged = self.merged.lock().clone().unwrap_or_default();
        Ok((Resolved::Merged(merged), "plugin merger@1".into()))
    }
    fn bind(&self, _: &Event, _: &crate::store::Schema) -> Result<Result<(), String>, StoreError> {
        Ok(Ok(()))
    }
    fn bindings(&self) -> String {
        format!("dropped={}", self.dropped.lock().join(","))
    }
    fn rejected_merge(&self, c: &Collection, reason: &str) {
        self.rejected.lock().push(format!("{}: {reason}", c.name));
    }
    fn drop_collection(&self, id: &str) -> Result<bool, StoreError> {
        self.dropped.lock().push(id.to_string());
        Ok(true)
    }
}

/// A record event of `notes` on `rid` from `origin` at `hlc`, based on `base`.
fn note_event(
    notes: &Event,
    kind: EventKind,
    rid: &str,
    name: &str,
    hlc: u64,
    origin: &str,
    base: Option<&EventId>,
) -> Event {
    let mut e = binding_event();
    e.kind = kind;
    e.origin = origin.into();
    e.hlc = Hlc::new(hlc, 0);
    e.collection = notes.collection.clone();
    e.record_id = Some(rid.into());
    e.base = base.cloned();
    e.data = serde_json::json!({"id": rid, "name": name})
        .as_object()
        .cloned();
    e
}

async fn stored_name(store: &Store) -> String {
    store
        .read_raw(|c| Ok(c.query_row("SELECT name FROM notes", [], |r| r.get(0))?))
        .await
        .expect("row")
}

#[tokio::test]
async fn a_merged_record_that_does_not_fit_the_schema_is_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Arc::new(Merger::default());
    let (hooks, store) = open(dir.path(), policy.clone());
    let notes = notes_event(&store);
    let rid = "aaaaaaaaaaaaaa1";
    let created = note_event(
        &notes,
        EventKind::RecordCreate,
        rid,
        "v0",
        1_000,
        "n2",
        None,
    );
    // Two writers saw the created version and changed it concurrently: a conflict.
    let first = note_event(
        &notes,
        EventKind::RecordUpdate,
        rid,
        "first",
        2_000,
        "n2",
        Some(&created.id),
    );
    let second = note_event(
        &notes,
        EventKind::RecordUpdate,
        rid,
        "second",
        3_000,
        "n3",
        Some(&created.id),
    );
    let batch = vec![
        delivered(1, notes.clone()),
        delivered(2, created.clone()),
        delivered(3, first),
    ];
    store
        .apply_events(hooks.clone(), Arc::new(batch), 0)
        .await
        .expect("apply");

    // A number in a text field: refused, and the built-in rule (the later write) applies.
    *policy.merged.lock() = serde_json::json!({"name": 5}).as_object().cloned();
    let report = store
        .apply_events(
            hooks.clone(),
            Arc::new(vec![delivered(4, second.clone())]),
            0,
        )
        .await
        .expect("apply");
    assert_eq!((report.applied, report.dead), (1, 0));
    assert_eq!(stored_name(&store).await, "second");
    let rejected = policy.rejected.lock().clone();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].contains("expected a string, got a number"),
        "{rejected:?}"
    );
    let verdict: String = store
        .read_raw(|c| Ok(c.query_row("SELECT verdict FROM _sync_versions", [], |r| r.get(0))?))
        .await
        .expect("verdict");
    assert!(
        verdict.contains("invalid merge by plugin merger@1"),
        "{verdict}"
    );

    // A merge that fits is stored as the schema reads it back.
    let third = note_event(
        &notes,
        EventKind::RecordUpdate,
        rid,
        "third",
        4_000,
        "n2",
        Some(&created.id),
    );
    *policy.merged.lock() = serde_json::json!({"name": "merged"}).as_object().cloned();
    store
        .apply_events(hooks, Arc::new(vec![delivered(5, third)]), 0)
        .await
        .expect("apply");
    assert_eq!(stored_name(&store).await, "merged");
    assert_eq!(policy.rejected.lock().len(), 1);
}

#[tokio::test]
async fn a_deleted_collection_takes_its_plugin_bindings_with_it_in_the_fold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = Arc::new(Merger::default());
    let (hooks, store) = open(dir.path(), policy.clone());
    let notes = notes_event(&store);
    let mut delete = binding_event();
    delete.kind = EventKind::CollectionDelete;
    delete.collection = notes.collection.clone();
    delete.data = None;
    let report = store
        .apply_events(
            hooks,
            Arc::new(vec![delivered(1, notes.clone()), delivered(2, delete)]),
            0,
        )
        .await
        .expect("apply");
    assert_eq!((report.applied, report.dead), (2, 0));
    assert_eq!(*policy.dropped.lock(), vec![notes.collection.id.clone()]);
    // The binding table without them is stored in the same transaction.
    let stored: String = store
        .read_raw(|c| Ok(c.query_row("SELECT data FROM _sync_bindings", [], |r| r.get(0))?))
        .await
        .expect("bindings");
    assert_eq!(stored, format!("dropped={}", notes.collection.id));
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

/// A replicating store on `dir` whose wall clock stands at `ms`.
fn open_at(dir: &std::path::Path, ms: u64) -> (Arc<SyncHooks>, Store) {
    let hooks = Arc::new(SyncHooks {
        node_id: "n1".into(),
        clock: Arc::new(Clock::with_wall(Arc::new(move || ms))),
        outbox: Arc::new(tokio::sync::Notify::new()),
        policy: Arc::new(Builtin),
        fresh: Default::default(),
        listeners: Default::default(),
    });
    let store = Store::open_with(dir, &StoreOptions::default(), Some(hooks.clone())).expect("open");
    (hooks, store)
}

/// Writes `name` into the note `rid` through the store's record API (creating it if `create`).
async fn write_note(store: &Store, rid: &'static str, name: &'static str, create: bool) {
    store
        .write(move |ctx| {
            let input = serde_json::json!({"id": rid, "name": name})
                .as_object()
                .cloned()
                .expect("object");
            let access = crate::records::validate::Access::Manager;
            if create {
                crate::store::records::create(ctx, "notes", &input, None, access)?;
            } else {
                crate::store::records::update(ctx, "notes", rid, &input, None, access)?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The newest event in the outbox.
async fn newest_outbox_event(store: &Store) -> Event {
    let payload: Vec<u8> = store
        .read_raw(|c| {
            Ok(c.query_row(
                "SELECT payload FROM _sync_outbox ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .expect("an outbox event");
    Event::decode(&payload).expect("decode")
}

#[tokio::test]
async fn a_write_is_later_than_its_unfolded_base_after_a_restart_with_the_clock_set_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wall = 1_796_644_266_378;
    let first = {
        let (hooks, store) = open_at(dir.path(), wall);
        let batch = Arc::new(vec![delivered(1, notes_event(&store))]);
        store.apply_events(hooks, batch, 0).await.expect("apply");
        write_note(&store, "aaaaaaaaaaaaaa1", "one", true).await;
        let first = newest_outbox_event(&store).await;
        // Published (the publisher trims it), not folded yet when the node stops.
        exec(&store, "DELETE FROM _sync_outbox".into()).await;
        first
    };
    // The node restarts with its wall clock 16.8 s behind (the chaos seed 4197 fault).
    let (_hooks, store) = open_at(dir.path(), wall - 16_800);
    write_note(&store, "aaaaaaaaaaaaaa1", "two", false).await;
    let second = newest_outbox_event(&store).await;
    assert_eq!(
        second.base.as_ref(),
        Some(&first.id),
        "based on the first write"
    );
    assert!(
        second.hlc > first.hlc,
        "HLC {} is not later than its base's {}",
        second.hlc,
        first.hlc
    );
}

#[test]
fn a_database_whose_pending_writes_lack_an_hlc_gains_the_column() {
    let conn = Connection::open_in_memory().expect("open");
    conn.execute_batch(
        "CREATE TABLE _sync_pending (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
                                     coll TEXT NOT NULL, rid TEXT NOT NULL, data TEXT);
         INSERT INTO _sync_pending VALUES (1, 'e1', 'c', 'r', NULL);",
    )
    .expect("old table");
    crate::store::sync::create_tables(&conn).expect("migrate");
    crate::store::sync::create_tables(&conn).expect("idempotent");
    conn.execute(
        "INSERT INTO _sync_pending (seq, event_id, coll, rid, data, hlc) VALUES (2, 'e2', 'c', 'r', NULL, 7)",
        [],
    )
    .expect("insert with an hlc");
    assert_eq!(
        crate::store::sync::max_hlc(&conn).expect("max"),
        Hlc(7),
        "the old row has none"
    );
}
