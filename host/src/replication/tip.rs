//! Where the stream ends, told to every node as it moves: on core NATS,
//! `syncbase.<cluster>.tip`, a stream sequence in decimal.
//!
//! A pull waiting at a consumer leader that died, or that a returning server deposed, is never
//! answered, and nothing tells the client (`consumer.rs`). The consumer replaces such a pull
//! once it knows the stream holds newer events: a node that writes knows it at once from its
//! own publish acks (the *tip*); a node that does not learned it only from its idle probe,
//! every 2 s. So every publisher also says here the newest sequence its acks reached, and
//! every node takes the highest it hears into the same tip: after a leader change, the first
//! write anywhere in the cluster shows every node whose pull is dead that it is.
//!
//! The announcement is a hint, not a fact the fold relies on: one lost costs only the probe's
//! wait, and the consumer checks the stream before it acts on a tip (`consumer.rs::stalled`).

use bytes::Bytes;
use futures::StreamExt;

use super::log::{Log, LogError};

fn subject(cluster: &str) -> String {
    format!("syncbase.{cluster}.tip")
}

/// The sequence a tip message carries (`None` for anything else).
pub fn parse(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

impl Log {
    /// Tells the other nodes the stream holds `seq` (fire and forget).
    pub async fn announce_tip(&self, seq: u64) {
        let _ = self
            .client()
            .publish(subject(self.cluster()), Bytes::from(seq.to_string()))
            .await;
    }

    /// Calls `on_tip` with every sequence a node announces, for as long as the connection
    /// lives (a reconnect keeps the subscription). The subscription is in place when this
    /// returns.
    pub async fn follow_tips(&self, on_tip: impl Fn(u64) + Send + 'static) -> Result<(), LogError> {
        let subject = subject(self.cluster());
        let fail = |e: &dyn std::fmt::Display| LogError::Stream {
            stream: subject.clone(),
            message: format!("subscribing: {e}"),
        };
        let mut sub = self
            .client()
            .subscribe(subject.clone())
            .await
            .map_err(|e| fail(&e))?;
        self.client().flush().await.map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(seq) = parse(&m.payload) {
                    on_tip(seq);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tip_is_a_decimal_sequence_and_nothing_else() {
        assert_eq!(parse(b"42"), Some(42));
        assert_eq!(parse(b" 7\n"), Some(7));
        for bad in [&b""[..], b"-1", b"4x", b"\xff", b"18446744073709551616"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
