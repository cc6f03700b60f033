//! Which server a node reconnects to.
//!
//! async-nats picks a reconnect target at random among the least-failed servers, and the server
//! the node just left has failed no more than the others, so a move off a server that is cut off
//! from the stream (`Log::switch_server`) landed on the same server again one time in three (a
//! three-server cluster), and the node waited out another round of errors before it moved again.
//! [`ServerChoice`] remembers where the node is and, on every reconnect, picks among the *other*
//! least-failed servers; the one it left is taken only when every other one has failed more (or
//! it is the only one). A server the node left because JetStream failed through it
//! ([`ServerChoice::leave`]) ranks after the others for [`LEFT_MEMORY`]: when the cluster's
//! meta leader was on the cut-off side, the healthy servers too say "unavailable" while they
//! elect a new one, and a node moving on from one of them must not go back to the cut-off one.
//!
//! The first connection is left to async-nats (it tries every server in turn, so a node starts
//! while some servers are down); later ones go through [`ServerChoice::pick`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{ReconnectToServer, Server, ServerAddr};
use parking_lot::Mutex;

/// How long a server the node left because of JetStream trouble ranks after the others.
pub const LEFT_MEMORY: Duration = Duration::from_secs(30);

/// Where the node is connected (or last tried to connect), as known to the reconnect callback,
/// and which servers it left because of JetStream trouble.
#[derive(Default, Clone)]
pub struct ServerChoice {
    last: Arc<Mutex<Option<ServerAddr>>>,
    left: Arc<Mutex<Vec<(ServerAddr, Instant)>>>,
}

impl std::fmt::Debug for ServerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerChoice")
            .field("last", &*self.last.lock())
            .finish_non_exhaustive()
    }
}

impl ServerChoice {
    /// The node is about to leave its server because JetStream keeps failing through it.
    pub fn leave(&self) {
        if let Some(addr) = self.last.lock().clone() {
            let now = Instant::now();
            let mut left = self.left.lock();
            left.retain(|(a, at)| *a != addr && now.duration_since(*at) < LEFT_MEMORY);
            left.push((addr, now));
        }
    }

    /// The reconnect callback's answer for `pool`: `None` on the first connection (async-nats
    /// tries them all), otherwise the server to dial and the delay before it.
    pub fn pick(&self, pool: &[Server]) -> Option<ReconnectToServer> {
        let mut last = self.last.lock();
        let current = match last.as_ref() {
            Some(addr) => Some(addr.clone()),
            // Before the first reconnect the node is on the one server it ever connected to.
            None => {
                let mut connected = pool.iter().filter(|s| s.did_connect);
                match (connected.next(), connected.next()) {
                    (Some(only), None) => Some(only.addr.clone()),
                    _ => None,
                }
            }
        };
        current.as_ref()?;
        let now = Instant::now();
        let left: Vec<ServerAddr> = self
            .left
            .lock()
            .iter()
            .filter(|(_, at)| now.duration_since(*at) < LEFT_MEMORY)
            .map(|(a, _)| a.clone())
            .collect();
        let chosen = choose(
            pool,
            current.as_ref(),
            &left,
            rand::random_range(0..pool.len().max(1)),
        )?;
        let server = &pool[chosen];
        tracing::info!(
            from = %current.as_ref().map_or("none", ServerAddr::as_url_str),
            to = %server.addr.as_url_str(),
            "reconnecting to another server"
        );
        *last = Some(server.addr.clone());
        Some(ReconnectToServer {
            addr: server.addr.clone(),
            delay: Some(reconnect_delay(server.failed_attempts)),
        })
    }
}

/// The index in `pool` of the server to dial: among the servers that have failed least (and,
/// of those, the ones not in `left`), not `current` unless it is the only one or ranks
/// strictly better than every other; `roll` picks among equals (any number; it is reduced
/// modulo their count).
pub fn choose(
    pool: &[Server],
    current: Option<&ServerAddr>,
    left: &[ServerAddr],
    roll: usize,
) -> Option<usize> {
    let rank = |i: usize| (pool[i].failed_attempts, left.contains(&pool[i].addr));
    let others: Vec<usize> = (0..pool.len())
        .filter(|&i| Some(&pool[i].addr) != current)
        .collect();
    let candidates = if others.is_empty() {
        (0..pool.len()).collect()
    } else {
        let best = others.iter().map(|&i| rank(i)).min()?;
        let current_better =
            (0..pool.len()).any(|i| Some(&pool[i].addr) == current && rank(i) < best);
        if current_better {
            // Every other server ranks worse than the one the node left: go back to it.
            (0..pool.len())
                .filter(|&i| Some(&pool[i].addr) == current)
                .collect()
        } else {
            others
                .into_iter()
                .filter(|&i| rank(i) == best)
                .collect::<Vec<_>>()
        }
    };
    if candidates.is_empty() {
        return None;
    }
    Some(candidates[roll % candidates.len()])
}

/// A server that has not failed is dialled at once; one that has, after a short backoff
/// (25 ms doubling to 250 ms), so a node whose servers are all down does not spin, and is
/// back within a fraction of a second of one's return.
pub fn reconnect_delay(failed_attempts: usize) -> Duration {
    if failed_attempts == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis((25u64 << failed_attempts.min(4)).min(250))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(port: u16, failed_attempts: usize, did_connect: bool) -> Server {
        Server {
            addr: format!("nats://127.0.0.1:{port}").parse().expect("addr"),
            failed_attempts,
            did_connect,
            is_discovered: false,
            last_error: None,
        }
    }

    #[test]
    fn a_reconnect_never_returns_to_the_server_it_left_while_another_is_as_good() {
        let pool = vec![server(1, 0, true), server(2, 0, false), server(3, 0, false)];
        let current = pool[0].addr.clone();
        for roll in 0..12 {
            let i = choose(&pool, Some(&current), &[], roll).expect("a server");
            assert_ne!(i, 0, "roll {roll} went back to the server it left");
        }
        // Both others are reachable by some roll.
        let picked: std::collections::BTreeSet<usize> = (0..12)
            .filter_map(|r| choose(&pool, Some(&current), &[], r))
            .collect();
        assert_eq!(picked, [1, 2].into());
    }

    #[test]
    fn the_least_failed_server_is_preferred_and_the_one_left_only_when_all_others_failed_more() {
        let pool = vec![server(1, 0, true), server(2, 2, false), server(3, 1, false)];
        let current = pool[0].addr.clone();
        assert_eq!(choose(&pool, Some(&current), &[], 0), Some(0));
        let pool = vec![server(1, 1, true), server(2, 2, false), server(3, 1, false)];
        for roll in 0..6 {
            assert_eq!(choose(&pool, Some(&current), &[], roll), Some(2));
        }
        // One server: it is the only choice.
        let pool = vec![server(1, 3, true)];
        assert_eq!(choose(&pool, Some(&pool[0].addr.clone()), &[], 5), Some(0));
        assert_eq!(choose(&[], None, &[], 0), None);
    }

    #[test]
    fn the_first_connection_is_left_to_the_client_and_later_ones_remember_where_they_went() {
        let choice = ServerChoice::default();
        let fresh = vec![server(1, 0, false), server(2, 0, false)];
        assert!(
            choice.pick(&fresh).is_none(),
            "first connection: try them all"
        );
        // Connected to server 1: the reconnect goes to server 2, at once.
        let pool = vec![server(1, 0, true), server(2, 0, false)];
        let to = choice.pick(&pool).expect("a reconnect target");
        assert_eq!(to.addr, pool[1].addr);
        assert_eq!(to.delay, Some(Duration::ZERO));
        // Now on server 2 (both have connected once): the next move goes back to 1.
        let pool = vec![server(1, 0, true), server(2, 0, true)];
        assert_eq!(choice.pick(&pool).expect("target").addr, pool[0].addr);
    }

    #[test]
    fn a_server_left_for_jetstream_trouble_is_not_gone_back_to_while_another_will_do() {
        let choice = ServerChoice::default();
        let pool = vec![server(1, 0, true), server(2, 0, true), server(3, 0, false)];
        // The node left s1 for trouble, and now leaves s2 too (the cluster elects a meta
        // leader, and s2 says so as well): without the memory it would go back to s1 one time
        // in two.
        *choice.last.lock() = Some(pool[0].addr.clone());
        choice.leave();
        for _ in 0..20 {
            *choice.last.lock() = Some(pool[1].addr.clone());
            choice.leave();
            assert_eq!(
                choice.pick(&pool).expect("target").addr,
                pool[2].addr,
                "neither the server it leaves nor the one it left before"
            );
        }
        // Every server left for trouble (the one being left too): any other will do, but
        // never one whose dial fails over one that answers.
        let pool = vec![server(1, 2, true), server(2, 0, true), server(3, 0, true)];
        let left: Vec<ServerAddr> = pool.iter().map(|s| s.addr.clone()).collect();
        for roll in 0..4 {
            assert_eq!(choose(&pool, Some(&pool[1].addr), &left, roll), Some(2));
        }
    }

    #[test]
    fn a_failed_server_is_dialled_after_a_bounded_backoff() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::from_millis(50));
        assert_eq!(reconnect_delay(9), Duration::from_millis(250));
    }
}
