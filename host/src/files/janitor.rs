//! Deletes the bytes of files no row references any more: replaced and removed files, the
//! files of deleted records and collections, and files a fold fetched for an event that lost.
//! The transaction that dropped the last reference moved the key to `_files_trash`; the
//! janitor deletes the bytes (and the file's thumbs) only after that commit, and forgets the
//! entry after the deletion, so a crash in between deletes it again on the next start.
//!
//! Keys being written for a transaction that has not committed yet are protected
//! (`Files::protect`): an upload or a fetched file can look unreferenced for that moment.

use std::time::Duration;

use super::{Files, thumbs_prefix};
use crate::store::Store;
use crate::store::files as sql;

/// Trash entries handled per round.
const BATCH: usize = 256;

/// Runs until the task is aborted: a round after every wake-up (`Files::trashed`) and at
/// least every second.
pub async fn run(files: Files, store: Store) {
    loop {
        tokio::select! {
            _ = files.inner.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        loop {
            match round(&files, &store).await {
                Ok(n) if n >= BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "deleting unreferenced files failed; retrying");
                    break;
                }
            }
        }
    }
}

/// One round: deletes what it can of the trash and returns how many entries it handled.
pub async fn round(files: &Files, store: &Store) -> Result<usize, String> {
    let trash = store
        .read_raw(|c| sql::trashed(c, BATCH))
        .await
        .map_err(|e| e.to_string())?;
    if trash.is_empty() {
        return Ok(0);
    }
    let storage = files.storage();
    let mut done = Vec::with_capacity(trash.len());
    for t in &trash {
        // Held across the deletion: a key cannot become protected (written again) midway.
        let protected = files.inner.protected.lock().await;
        if protected.contains_key(&t.key) {
            continue;
        }
        let (coll, rid, name) = (t.coll.clone(), t.rid.clone(), t.name.clone());
        let referenced = store
            .read_raw(move |c| sql::is_referenced(c, &coll, &rid, &name))
            .await
            .map_err(|e| e.to_string())?;
        if !referenced {
            storage.delete(&t.key).await.map_err(|e| e.to_string())?;
            storage
                .delete_prefix(&thumbs_prefix(&t.coll, &t.rid, &t.name))
                .await
                .map_err(|e| e.to_string())?;
            tracing::debug!(key = %t.key, "unreferenced file deleted");
        }
        drop(protected);
        done.push(t.key.clone());
    }
    let n = done.len();
    if !done.is_empty() {
        store
            .write(move |ctx| sql::forget_trashed(ctx.conn, &done))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(n)
}
