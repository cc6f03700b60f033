//! A node about to start the cluster from its own data says so over core NATS, before
//! JetStream answers (see `sync::genesis`).
//!
//! A clustered `nats-server` runs JetStream only once it is routed to a peer, so a node with
//! data started in embedded mode can claim the empty stream only from the moment a second
//! node's server is up, and from that same moment the second node could write the stream's
//! first event itself. Plain subscriptions work as soon as the node's own server does, and
//! routes carry them to peers before JetStream elects its leader: a node that is about to
//! start the cluster answers on `syncbase.<cluster>.genesis` from its first connection until
//! it has decided, and a node that finds the stream empty asks there before it writes.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::log::LogError;

fn subject(cluster: &str) -> String {
    format!("syncbase.{cluster}.genesis")
}

/// Answers peers' [`starting_node`] with `node` until `until` completes. The subscription is
/// in place (flushed to the server) when this returns.
pub async fn announce_start(
    client: &async_nats::Client,
    cluster: &str,
    node: &str,
    until: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LogError> {
    let fail = |e: &dyn std::fmt::Display| LogError::Stream {
        stream: subject(cluster),
        message: format!("subscribing: {e}"),
    };
    let mut sub = client
        .subscribe(subject(cluster))
        .await
        .map_err(|e| fail(&e))?;
    client.flush().await.map_err(|e| fail(&e))?;
    let client = client.clone();
    let answer = Bytes::from(node.to_string());
    tokio::spawn(async move {
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => break,
                m = sub.next() => match m {
                    Some(m) => {
                        if let Some(reply) = m.reply {
                            let _ = client.publish(reply, answer.clone()).await;
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = sub.unsubscribe().await;
    });
    Ok(())
}

/// The node that announced it is starting the cluster from its data, if one answers within
/// `wait` (no node: `None` at once, NATS answers "no responders").
pub async fn starting_node(
    client: &async_nats::Client,
    cluster: &str,
    wait: Duration,
) -> Option<String> {
    match tokio::time::timeout(wait, client.request(subject(cluster), Bytes::new())).await {
        Ok(Ok(m)) => Some(String::from_utf8_lossy(&m.payload).into_owned()),
        _ => None,
    }
}
