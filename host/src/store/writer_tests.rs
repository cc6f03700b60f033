use super::super::{Store, StoreOptions};
use super::*;

/// A store with a table `t (n, v)` to write into.
async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    store
        .write(|ctx| {
            ctx.conn
                .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)")?;
            Ok(())
        })
        .await
        .expect("create");
    (dir, store)
}

async fn rows(store: &Store) -> Vec<String> {
    store
        .read_raw(|c| {
            let mut st = c.prepare("SELECT v FROM t ORDER BY n")?;
            let v = st.query_map([], |r| r.get(0))?;
            Ok(v.collect::<Result<Vec<String>, _>>()?)
        })
        .await
        .expect("read")
}

#[tokio::test]
async fn a_failed_job_alone_leaves_nothing_and_the_next_jobs_commit() {
    let (_dir, store) = open().await;
    let writer = &store.inner.writer;
    let failed = writer
        .submit_alone(|ctx| {
            ctx.conn.execute("INSERT INTO t (v) VALUES ('half')", [])?;
            Err::<(), _>(StoreError::BadRequest("the job fails".into()))
        })
        .await;
    assert!(
        matches!(failed, Err(StoreError::BadRequest(_))),
        "{failed:?}"
    );
    writer
        .submit_alone(|ctx| {
            ctx.conn.execute("INSERT INTO t (v) VALUES ('whole')", [])?;
            Ok(())
        })
        .await
        .expect("alone");
    assert_eq!(rows(&store).await, ["whole"]);
}

#[tokio::test]
async fn jobs_alone_and_batched_commit_in_submission_order() {
    let (_dir, store) = open().await;
    // Queued all at once, so the writer gathers batches and meets alone jobs among them.
    let writer = &store.inner.writer;
    let jobs = (0..60).map(|i| async move {
        let insert = move |ctx: &mut WriteCtx| {
            ctx.conn
                .execute("INSERT INTO t (v) VALUES (?1)", [format!("{i:02}")])?;
            Ok(())
        };
        if i % 7 == 3 {
            writer.submit_alone(insert).await
        } else {
            writer.submit(insert).await
        }
    });
    for r in futures::future::join_all(jobs).await {
        r.expect("job");
    }
    let want: Vec<String> = (0..60).map(|i| format!("{i:02}")).collect();
    assert_eq!(rows(&store).await, want);
}
