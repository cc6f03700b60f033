//! Snapshots on real SQLite files: a pinned copy holds exactly its position and nothing
//! node-local; an install keeps what the node acknowledged but the snapshot lacks; the fold ends
//! its batch where the policy decides a snapshot is due.

use std::sync::Arc;

use serde_json::json;

use super::stats::{SnapshotDecision, SnapshotStats};
use super::*;
use crate::replication::{Clock, CollectionRef, Event, EventId, EventKind, Hlc};
use crate::store::records::Record;
use crate::store::schema::Collection;
use crate::store::sync::{
    Builtin, Current, Delivered, Filtered, Policy, Resolved, SyncHooks, last_writer_wins,
    table_hashes,
};
use crate::store::{Store, StoreOptions};

/// The built-in resolver and filters, and a snapshot due at every multiple of `every`.
struct Every(u64);

impl Policy for Every {
    fn outbound(&self, c: &Collection, e: &Event) -> Result<Filtered, StoreError> {
        Builtin.outbound(c, e)
    }
    fn inbound(&self, c: &Collection, e: &Event) -> Result<Filtered, StoreError> {
        Builtin.inbound(c, e)
    }
    fn resolve(
        &self,
        _: &Collection,
        current: &Current,
        incoming: &Event,
    ) -> Result<(Resolved, String), StoreError> {
        Ok((last_writer_wins(current, incoming), "test".into()))
    }
    fn bind(
        &self,
        e: &Event,
        schema: &crate::store::Schema,
    ) -> Result<Result<(), String>, StoreError> {
        Builtin.bind(e, schema)
    }
    fn decide(&self, stats: &SnapshotStats) -> Result<SnapshotDecision, StoreError> {
        Ok(SnapshotDecision {
            take: stats.stream_seq.is_multiple_of(self.0),
            keep: 2,
            by: "test".into(),
        })
    }
}

fn open(dir: &Path, node: &str, every: u64) -> (Arc<SyncHooks>, Store) {
    let hooks = Arc::new(SyncHooks {
        node_id: node.into(),
        clock: Arc::new(Clock::new()),
        outbox: Arc::new(tokio::sync::Notify::new()),
        policy: Arc::new(Every(every)),
        fresh: Default::default(),
        listeners: Default::default(),
    });
    let store = Store::open_with(dir, &StoreOptions::default(), Some(hooks.clone())).expect("open");
    (hooks, store)
}

fn event(kind: EventKind, c: CollectionRef, rid: Option<&str>, data: serde_json::Value) -> Event {
    Event {
        id: EventId::random(),
        origin: "n9".into(),
        hlc: Hlc::new(1_000_000, 0),
        kind,
        collection: c,
        record_id: rid.map(String::from),
        data: data.as_object().cloned(),
        before: None,
        base: None,
        schema_version: 0,
        plugin_version: 0,
        files: Vec::new(),
    }
}

fn notes() -> CollectionRef {
    CollectionRef {
        id: "pbc_notes00001".into(),
        name: "notes".into(),
    }
}

/// The event creating `notes (id, name)`, shaped from the store's `users` collection.
fn notes_created(store: &Store) -> Event {
    let mut c = (**store.schema().get("users").expect("users")).clone();
    c.id = notes().id;
    c.name = notes().name;
    c.system = false;
    c.kind = crate::store::schema::CollectionType::Base;
    c.auth = None;
    c.fields.retain(|f| f.name == "id" || f.name == "name");
    c.indexes.clear();
    event(
        EventKind::CollectionCreate,
        notes(),
        None,
        serde_json::to_value(&c).expect("json"),
    )
}

fn note(rid: &str, name: &str) -> Event {
    event(
        EventKind::RecordCreate,
        notes(),
        Some(rid),
        json!({"id": rid, "name": name}),
    )
}

fn at(seq: u64, e: Event) -> Delivered {
    let payload = bytes::Bytes::from(e.encode());
    Delivered {
        seq,
        event: Ok(e),
        payload,
    }
}

/// Folds the whole batch (through every snapshot decision in it).
async fn fold(store: &Store, hooks: &Arc<SyncHooks>, batch: Vec<Delivered>) {
    let batch = Arc::new(batch);
    let mut start = 0;
    while start < batch.len() {
        let r = store
            .apply_events(hooks.clone(), batch.clone(), start)
            .await
            .expect("fold");
        assert_eq!(r.dead, 0, "dead letters in {r:?}");
        start += r.consumed;
    }
}

/// Writes a record locally, as a client would (outbox, overlay, shadow).
async fn local(store: &Store, rid: &'static str, name: &'static str) {
    store
        .write(move |ctx| {
            let rec: Record = json!({"id": rid, "name": name})
                .as_object()
                .cloned()
                .expect("object");
            crate::store::records::put_raw(ctx, "notes", &rec)
        })
        .await
        .expect("local write");
}

async fn names(store: &Store) -> Vec<(String, String)> {
    store
        .read_raw(|c| {
            let mut st = c.prepare("SELECT id, name FROM notes ORDER BY id")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .expect("names")
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_raw(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .await
        .expect("count")
}

fn pair(id: &str, name: &str) -> (String, String) {
    (id.into(), name.into())
}

#[tokio::test]
async fn a_pinned_copy_holds_exactly_its_position_and_nothing_node_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks, a) = open(&dir.path().join("a"), "n1", 1000);
    let created = notes_created(&a);
    let log = vec![
        at(1, created),
        at(2, note("aaaaaaaaaaaaaa1", "one")),
        at(3, note("aaaaaaaaaaaaaa2", "two")),
    ];
    let replay: Vec<Delivered> = log
        .iter()
        .map(|d| at(d.seq, d.event.clone().expect("event")))
        .collect();
    fold(&a, &hooks, log).await;
    // Node-local state: a pending create, a pending update over a canonical row, settings.
    local(&a, "aaaaaaaaaaaaaa3", "mine").await;
    local(&a, "aaaaaaaaaaaaaa1", "one, edited here").await;
    a.write(|ctx| crate::store::settings::update(ctx.conn, &json!({"meta": {"appName": "A"}})))
        .await
        .expect("settings");
    a.write(|ctx| crate::store::mails::enqueue(ctx.conn, "verification", "u@example.com", "m"))
        .await
        .expect("mail");

    let pinned = a.pin().await.expect("pin");
    assert_eq!(pinned.seq, 3);
    // The fold goes on after the pin: the copy must not see it.
    fold(&a, &hooks, vec![at(4, note("aaaaaaaaaaaaaa4", "later"))]).await;
    let dest = dir.path().join("copy.db");
    let contents = tokio::task::spawn_blocking({
        let dest = dest.clone();
        move || copy(pinned, &dest, CopyKind::Canonical)
    })
    .await
    .expect("join")
    .expect("copy");
    assert_eq!(contents.seq, 3);
    assert_eq!(contents.row_counts["notes"], 2);
    assert!(!contents.row_counts.contains_key(LOCAL_ONLY));

    let copy = Connection::open(&dest).expect("open copy");
    let rows: Vec<(String, String)> = copy
        .prepare("SELECT id, name FROM notes ORDER BY id")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .expect("rows");
    assert_eq!(
        rows,
        [
            pair("aaaaaaaaaaaaaa1", "one"),
            pair("aaaaaaaaaaaaaa2", "two")
        ],
        "canonical rows at 3: the overlays replaced by their shadows"
    );
    for table in [
        "_sync_outbox",
        "_sync_pending",
        "_sync_shadow",
        "_params",
        "_mail_outbox",
    ] {
        let n: i64 = copy
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0, "{table} is node-local");
    }
    let superusers: i64 = copy
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = '_superusers'",
            [],
            |r| r.get(0),
        )
        .expect("superusers");
    assert_eq!(superusers, 0, "no _superusers table in a snapshot");
    drop(copy);
    let (sha, size) = file_sha256(&dest).expect("sha256");
    assert_eq!(
        (sha.as_str(), size),
        (contents.db_sha256.as_str(), contents.db_bytes)
    );
    let inspected = inspect(&dest, crate::store::sync::HashScheme::RowSum).expect("inspect");
    assert_eq!(
        (
            &inspected.table_hashes,
            &inspected.row_counts,
            inspected.seq
        ),
        (&contents.table_hashes, &contents.row_counts, contents.seq)
    );

    // Another node that folded the same three events, and nothing else, has the same content.
    let (hooks_b, b) = open(&dir.path().join("b"), "n2", 1000);
    fold(&b, &hooks_b, replay).await;
    let schema = b.schema();
    let hashes_b = b
        .read_raw(move |c| table_hashes(c, &schema))
        .await
        .expect("hashes");
    assert_eq!(contents.table_hashes, hashes_b);
}

#[tokio::test]
async fn an_install_keeps_what_the_node_acknowledged_but_the_snapshot_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks_a, a) = open(&dir.path().join("a"), "n1", 1000);
    let (hooks_b, b) = open(&dir.path().join("b"), "n2", 1000);
    let created = notes_created(&b);
    fold(&a, &hooks_a, vec![at(1, created.clone())]).await;
    // A writes twice and a superuser of its own; only the first write reaches the log (B).
    local(&a, "aaaaaaaaaaaaaa5", "published").await;
    local(&a, "aaaaaaaaaaaaaa6", "unpublished").await;
    a.write(|ctx| {
        let su: Record = json!({"id": "su0000000000001", "email": "a@example.com",
            "password": "x", "tokenKey": "k".repeat(30), "emailVisibility": false,
            "verified": true, "created": "", "updated": ""})
        .as_object()
        .cloned()
        .expect("object");
        crate::store::records::put_raw(ctx, LOCAL_ONLY, &su)
    })
    .await
    .expect("superuser");
    // A mail A owes (the snapshot's taker owes one too: B must not send it, A must).
    a.write(|ctx| crate::store::mails::enqueue(ctx.conn, "verification", "a@example.com", "m"))
        .await
        .expect("mail");
    b.write(|ctx| crate::store::mails::enqueue(ctx.conn, "verification", "b@example.com", "m"))
        .await
        .expect("mail");
    let outbox: Vec<(u64, String, Vec<u8>)> = a
        .read_raw(|c| crate::store::sync::outbox_after(c, 0, 10))
        .await
        .expect("outbox");
    assert_eq!(outbox.len(), 2);
    let first = Event::decode(&outbox[0].2).expect("decode");
    let second = Event::decode(&outbox[1].2).expect("decode");
    fold(
        &b,
        &hooks_b,
        vec![
            at(1, created),
            at(2, note("aaaaaaaaaaaaaa1", "one")),
            at(3, first),
        ],
    )
    .await;
    let pinned = b.pin().await.expect("pin");
    let dest = dir.path().join("snap.db");
    tokio::task::spawn_blocking({
        let dest = dest.clone();
        move || copy(pinned, &dest, CopyKind::Canonical)
    })
    .await
    .expect("join")
    .expect("copy");

    let report = a
        .install(&dest, InstallMode::KeepLocal)
        .await
        .expect("install");
    assert_eq!(report.applied_seq, 3);
    assert_eq!(
        report.own_applied,
        Some(outbox[0].0),
        "the first write is in"
    );
    assert_eq!((report.outbox_kept, report.pending_kept), (2, 1));
    assert!(!dest.exists(), "the snapshot file was moved into place");
    // Canonical rows from the snapshot, and the unpublished write shown over them.
    assert_eq!(
        names(&a).await,
        [
            pair("aaaaaaaaaaaaaa1", "one"),
            pair("aaaaaaaaaaaaaa5", "published"),
            pair("aaaaaaaaaaaaaa6", "unpublished"),
        ]
    );
    assert_eq!(count(&a, "SELECT count(*) FROM _sync_shadow").await, 1);
    assert_eq!(count(&a, "SELECT count(*) FROM _superusers").await, 1);
    let mails: Vec<String> = a
        .read_raw(|c| crate::store::mails::list(c, 10))
        .await
        .expect("mails")
        .into_iter()
        .map(|m| m.recipient)
        .collect();
    assert_eq!(mails, ["a@example.com"], "A's mail outbox, not B's");
    assert!(a.schema().get("notes").is_some(), "the schema was reloaded");
    // The outbox goes on counting where it was.
    local(&a, "aaaaaaaaaaaaaa7", "after").await;
    let seqs: Vec<u64> = a
        .read_raw(|c| crate::store::sync::outbox_after(c, 0, 10))
        .await
        .expect("outbox")
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs, [outbox[0].0, outbox[1].0, outbox[1].0 + 1]);

    // The unpublished write folds like any other once it is in the log, on both nodes.
    fold(&a, &hooks_a, vec![at(4, second.clone())]).await;
    fold(&b, &hooks_b, vec![at(4, second)]).await;
    let pending_rows = a.read_raw(install::pending_ids).await.expect("pending");
    assert_eq!(
        pending_rows.len(),
        1,
        "only the write made after the install"
    );
    let mut expected = names(&b).await;
    expected.push(pair("aaaaaaaaaaaaaa7", "after"));
    assert_eq!(
        names(&a).await,
        expected,
        "B's rows, and A's newest write over them"
    );
}

#[tokio::test]
async fn the_fold_ends_its_batch_where_a_snapshot_is_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks, store) = open(dir.path(), "n1", 3);
    let created = notes_created(&store);
    let batch = Arc::new(vec![
        at(1, created),
        at(2, note("aaaaaaaaaaaaaa1", "one")),
        at(3, note("aaaaaaaaaaaaaa2", "two")),
        at(4, note("aaaaaaaaaaaaaa3", "three")),
        at(5, note("aaaaaaaaaaaaaa4", "four")),
    ]);
    let first = store
        .apply_events(hooks.clone(), batch.clone(), 0)
        .await
        .expect("fold");
    assert_eq!((first.consumed, first.last_seq), (3, 3));
    let due = first.snapshot.expect("a snapshot is due at 3");
    assert_eq!((due.seq, due.keep), (3, 2));
    assert_eq!(count(&store, "SELECT value FROM _sync_state").await, 3);
    let rest = store
        .apply_events(hooks, batch.clone(), 3)
        .await
        .expect("fold");
    assert_eq!((rest.consumed, rest.last_seq), (2, 5));
    assert!(rest.snapshot.is_none());
    let figures = store.read_raw(stats::current).await.expect("stats");
    assert_eq!(figures.events_since, 2);
    assert_eq!(
        figures.bytes_since,
        (batch[3].payload.len() + batch[4].payload.len()) as u64
    );
    // Four live notes: the content figure is their creating events' payloads.
    let content: u64 = batch[1..].iter().map(|d| d.payload.len() as u64).sum();
    assert_eq!(figures.content_bytes, content);
    assert_eq!(figures.snapshots, 1);
}

#[tokio::test]
async fn table_hashes_do_not_depend_on_the_order_rows_are_stored_in() {
    use crate::store::sync::{HashScheme, hash_table_with};
    let dir = tempfile::tempdir().expect("tempdir");
    let (hooks_a, a) = open(&dir.path().join("a"), "n1", 1000);
    let (hooks_b, b) = open(&dir.path().join("b"), "n2", 1000);
    let created = notes_created(&a);
    let ids = ["aaaaaaaaaaaaaa1", "aaaaaaaaaaaaaa2", "aaaaaaaaaaaaaa3"];
    // Node A stores the rows in id order; node B (say, after a bootstrap and a replay of a
    // different shape) in the opposite order: different rowids, same content.
    let mut log_a = vec![at(1, created.clone())];
    let mut log_b = vec![at(1, created)];
    for (i, id) in ids.iter().enumerate() {
        log_a.push(at(2 + i as u64, note(id, id)));
    }
    for (i, id) in ids.iter().rev().enumerate() {
        log_b.push(at(2 + i as u64, note(id, id)));
    }
    fold(&a, &hooks_a, log_a).await;
    fold(&b, &hooks_b, log_b).await;
    async fn hash(s: &Store, scheme: HashScheme) -> Result<(String, u64), StoreError> {
        let c = (**s.schema().get("notes").expect("notes")).clone();
        s.read_raw(move |conn| hash_table_with(conn, &c, scheme))
            .await
    }
    let (ra, rb) = (
        hash(&a, HashScheme::RowSum).await.expect("a"),
        hash(&b, HashScheme::RowSum).await.expect("b"),
    );
    assert_eq!(ra, rb, "same rows, another storage order");
    assert_eq!(ra.1, 3);
    // Format 1's id-ordered hash agrees across nodes too, and is another figure.
    let (oa, ob) = (
        hash(&a, HashScheme::IdOrdered).await.expect("a"),
        hash(&b, HashScheme::IdOrdered).await.expect("b"),
    );
    assert_eq!(oa, ob);
    assert_ne!(oa.0, ra.0);
    // One changed value changes the hash.
    fold(
        &b,
        &hooks_b,
        vec![at(5, {
            let mut e = note(ids[0], "changed");
            e.kind = EventKind::RecordUpdate;
            e.hlc = Hlc::new(2_000_000, 0);
            e
        })],
    )
    .await;
    assert_ne!(hash(&b, HashScheme::RowSum).await.expect("b").0, ra.0);
}
