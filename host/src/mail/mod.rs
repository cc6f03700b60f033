//! Outgoing mail. Requests queue mails in the node's outbox (`store/mails.rs`), in the same
//! writer job as whatever else they write; the [`Mailer`]'s sender task delivers them over
//! SMTP (settings `smtp`, sender `meta.senderName/senderAddress`), or through `sendmail` when
//! SMTP is disabled, as PocketBase does.
//!
//! A mail that cannot be sent is never dropped: each failure is logged (`tracing`, warn) and the
//! mail retried with growing delays ([`retry_delay`]); after [`MAX_ATTEMPTS`] it stays in the
//! outbox as `failed` (`GET /api/mails` shows it) until the mail settings change, which
//! retries every queued mail at once. Delivery is at least once: a node stopped between the
//! server's acceptance and the outbox update sends that mail again when it restarts.
//!
//! The outbox is node-local, so on a cluster exactly one node — the one that took the request —
//! sends each mail. This module never touches SQLite itself: it goes through the store.

pub mod message;
pub mod templates;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

pub use message::{Address, Message};

use crate::store::{Store, StoreError, WriteCtx, mails, settings};

/// Attempts before a mail is left as `failed`.
pub const MAX_ATTEMPTS: i64 = 12;

/// Why a mail could not be sent (the SMTP server's or the transport's words).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("{0}")]
    Transport(String),
    #[error("the outbox failed: {0}")]
    Store(#[from] StoreError),
}

/// Delay before attempt `attempts + 1` after `attempts` failures: 2 s doubling, at most 15 min,
/// so a short outage delays mail by seconds and a long one costs a try every quarter hour.
pub fn retry_delay(attempts: i64) -> Duration {
    let secs = 2u64.saturating_pow(attempts.clamp(1, 20) as u32);
    Duration::from_secs(secs.min(15 * 60))
}

/// Queues `msg` inside a writer job (the caller's transaction), labelled `kind`. The sender
/// learns about it when the caller calls [`Mailer::wake`] after the job committed.
pub fn enqueue_in(ctx: &WriteCtx, kind: &str, msg: &Message) -> Result<i64, StoreError> {
    let text = serde_json::to_string(msg).map_err(|e| StoreError::Internal(e.to_string()))?;
    let to = msg
        .to
        .iter()
        .map(|a| a.address.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    mails::enqueue(ctx.conn, kind, &to, &text)
}

/// The node's mail sender: cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    store: Store,
    wake: Arc<Notify>,
}

impl Mailer {
    pub fn new(store: Store) -> Mailer {
        Mailer {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues a mail in a writer job of its own and wakes the sender.
    pub async fn enqueue(&self, kind: &'static str, msg: Message) -> Result<i64, StoreError> {
        let id = self
            .store
            .write(move |ctx| enqueue_in(ctx, kind, &msg))
            .await?;
        self.wake();
        Ok(id)
    }

    /// Tells the sender that mails were queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The settings changed: every queued mail is tried again now.
    pub async fn retry_all(&self) -> Result<(), StoreError> {
        self.store.write(|ctx| mails::retry_all(ctx.conn)).await?;
        self.wake();
        Ok(())
    }

    /// Sends `msg` now, bypassing the outbox (`/api/settings/test/email`: the caller wants to
    /// know whether the settings work).
    pub async fn send_now(&self, msg: &Message) -> Result<(), MailError> {
        let settings = self.store.read(|conn, _| settings::load(conn)).await?;
        transport::send(&settings, msg).await
    }

    /// The sender task: delivers due mails one at a time until aborted (rows stay queued, so
    /// the next start resumes them).
    pub async fn run(self) {
        loop {
            let idle = match self.deliver_due().await {
                Ok(idle) => idle,
                Err(e) => {
                    tracing::error!(error = %e, "mail outbox unreadable; retrying");
                    Duration::from_secs(5)
                }
            };
            // Woken by new mail or a settings change, or when the next retry falls due.
            let _ = tokio::time::timeout(idle, self.wake.notified()).await;
        }
    }

    /// Sends every due mail; returns how long to sleep until the next one falls due.
    async fn deliver_due(&self) -> Result<Duration, StoreError> {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let due = self.store.read_raw(move |c| mails::due(c, now, 16)).await?;
            if due.is_empty() {
                let next = self.store.read_raw(mails::next_due).await?;
                let wait = next.map_or(3_600_000, |at| (at - now).clamp(10, 3_600_000));
                return Ok(Duration::from_millis(wait as u64));
            }
            let settings = self.store.read(|conn, _| settings::load(conn)).await?;
            for mail in due {
                self.deliver(&settings, mail).await?;
            }
        }
    }

    async fn deliver(&self, settings: &Value, mail: mails::OutboxMail) -> Result<(), StoreError> {
        let result = match serde_json::from_str::<Message>(&mail.message) {
            Ok(msg) => transport::send(settings, &msg).await,
            Err(e) => Err(MailError::Build(e.to_string())),
        };
        let id = mail.id;
        match result {
            Ok(()) => {
                tracing::info!(mail = id, kind = %mail.kind, to = %mail.recipient, "mail sent");
                self.store.write(move |ctx| mails::sent(ctx.conn, id)).await
            }
            Err(e) => {
                let attempts = mail.attempts + 1;
                let give_up = attempts >= MAX_ATTEMPTS;
                let next = chrono::Utc::now().timestamp_millis()
                    + retry_delay(attempts).as_millis() as i64;
                if give_up {
                    tracing::error!(mail = id, kind = %mail.kind, to = %mail.recipient, attempts,
                        error = %e, "mail not sent; giving up until the mail settings change");
                } else {
                    tracing::warn!(mail = id, kind = %mail.kind, to = %mail.recipient, attempts,
                        error = %e, "mail not sent; will retry");
                }
                let error = e.to_string();
                self.store
                    .write(move |ctx| mails::attempt_failed(ctx.conn, id, &error, next, give_up))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_level_out() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(11), Duration::from_secs(900));
        let total: u64 = (1..MAX_ATTEMPTS).map(|a| retry_delay(a).as_secs()).sum();
        assert!(
            total > 30 * 60,
            "a mail outlives a half-hour outage: {total} s"
        );
    }
}
