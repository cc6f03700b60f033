//! The mail outbox, `_mail_outbox`: every mail the node must send, written in the same writer
//! job as the request that caused it (an OTP's record and its mail commit together), so a mail
//! is never lost between "the request succeeded" and "the SMTP server took it". Node-local: not
//! a collection, so it is never captured for replication — the node that took a request is the
//! one node that sends its mail. Rows leave the table once sent; a mail that failed every
//! attempt stays with status `failed` and its last error.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

pub(crate) fn create_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _mail_outbox (
             id         INTEGER PRIMARY KEY AUTOINCREMENT,
             kind       TEXT NOT NULL,
             recipient  TEXT NOT NULL,
             message    TEXT NOT NULL,
             status     TEXT NOT NULL DEFAULT 'pending',
             attempts   INTEGER NOT NULL DEFAULT 0,
             next_at    INTEGER NOT NULL DEFAULT 0,
             last_error TEXT NOT NULL DEFAULT '',
             created    TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS _mail_outbox_due ON _mail_outbox (status, next_at);",
    )?;
    Ok(())
}

/// One queued mail. `message` is the JSON of a `mail::Message`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMail {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    #[serde(skip)]
    pub message: String,
    pub status: String,
    pub attempts: i64,
    /// Unix milliseconds of the next attempt (0: as soon as possible).
    pub next_at: i64,
    pub last_error: String,
    pub created: String,
}

/// Queues a mail; returns its id.
pub fn enqueue(
    conn: &Connection,
    kind: &str,
    recipient: &str,
    message: &str,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO _mail_outbox (kind, recipient, message, created) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        kind,
        recipient,
        message,
        crate::records::validate::now_string()
    ])?;
    Ok(conn.last_insert_rowid())
}

const COLUMNS: &str =
    "id, kind, recipient, message, status, attempts, next_at, last_error, created";

fn row(r: &rusqlite::Row) -> rusqlite::Result<OutboxMail> {
    Ok(OutboxMail {
        id: r.get(0)?,
        kind: r.get(1)?,
        recipient: r.get(2)?,
        message: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_at: r.get(6)?,
        last_error: r.get(7)?,
        created: r.get(8)?,
    })
}

/// Pending mails due at `now_ms`, oldest first.
pub fn due(conn: &Connection, now_ms: i64, limit: usize) -> Result<Vec<OutboxMail>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM _mail_outbox WHERE status = 'pending' AND next_at <= ?1
         ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now_ms, limit as i64], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending mail is due (unix ms), if any is pending.
pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT min(next_at) FROM _mail_outbox WHERE status = 'pending'",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

/// Every mail still in the outbox (pending or failed), newest first.
pub fn list(conn: &Connection, limit: usize) -> Result<Vec<OutboxMail>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM _mail_outbox ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit as i64], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A mail the server accepted: it leaves the outbox.
pub fn sent(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM _mail_outbox WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// A failed attempt: retried at `next_at`, or kept as `failed` when `give_up`.
pub fn attempt_failed(
    conn: &Connection,
    id: i64,
    error: &str,
    next_at: i64,
    give_up: bool,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE _mail_outbox SET attempts = attempts + 1, last_error = ?2, next_at = ?3,
             status = CASE WHEN ?4 THEN 'failed' ELSE 'pending' END
         WHERE id = ?1",
    )?
    .execute(params![id, error, next_at, give_up])?;
    Ok(())
}

/// Makes every pending mail due now, and gives failed ones a new round of attempts: the mail
/// settings changed, so earlier failures say nothing about the next try.
pub fn retry_all(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE _mail_outbox SET next_at = 0, status = 'pending',
             attempts = CASE WHEN status = 'failed' THEN 0 ELSE attempts END",
        [],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_waits_until_due_fails_then_is_retried_on_demand() {
        let conn = Connection::open_in_memory().expect("db");
        create_table(&conn).expect("table");
        let id = enqueue(&conn, "verification", "a@b.c", "{}").expect("enqueue");
        assert_eq!(due(&conn, 0, 10).expect("due").len(), 1);
        attempt_failed(&conn, id, "refused", 5_000, false).expect("fail");
        assert!(due(&conn, 4_999, 10).expect("due").is_empty());
        assert_eq!(next_due(&conn).expect("next"), Some(5_000));
        attempt_failed(&conn, id, "refused again", 9_000, true).expect("give up");
        assert!(due(&conn, i64::MAX, 10).expect("due").is_empty());
        let all = list(&conn, 10).expect("list");
        assert_eq!(
            (
                all[0].status.as_str(),
                all[0].attempts,
                all[0].last_error.as_str()
            ),
            ("failed", 2, "refused again")
        );
        assert_eq!(retry_all(&conn).expect("retry"), 1);
        assert_eq!(due(&conn, 0, 10).expect("due")[0].attempts, 0);
        sent(&conn, id).expect("sent");
        assert!(list(&conn, 10).expect("list").is_empty());
    }
}
