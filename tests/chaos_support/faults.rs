//! The fault menu: what can go wrong, picked and parameterised from the seed, injected into
//! the running [`Cluster`] and healed again.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use super::cluster::{Cluster, NODES, SERVERS};
use super::proxy::Way;

/// Every kind of fault, in the order the summary lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// kill -9 of a node, restarted at heal.
    KillNode,
    /// kill -9 of a nats-server, restarted at heal.
    KillServer,
    /// kill -9 of the nats-server holding the stream's leader, restarted at heal.
    KillLeader,
    /// SIGSTOP of a node, SIGCONT at heal.
    PauseNode,
    /// SIGSTOP of a nats-server, SIGCONT at heal.
    PauseServer,
    /// A node cut off from every server while its clients keep writing.
    IsolateNode,
    /// One server cut off from its two peers (a minority); nodes stay connected to it.
    IsolateServer,
    /// A node that can reach only one server, which is cut off from its peers.
    NodeOnMinority,
    /// Extra latency on a few links, both ways.
    Latency,
    /// One direction of one link cut (asymmetric partition).
    OneWay,
    /// A node whose disk is full (SQLite `max_page_count`).
    DiskFull,
    /// A node's wall clock moved seconds ahead or behind, for the rest of the run.
    ClockSkew,
    /// A `?sync=published` write, then kill -9 of the node that acknowledged it: the write
    /// must be in the log before the node comes back.
    PublishedThenKill,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::KillNode,
        Kind::KillServer,
        Kind::KillLeader,
        Kind::PauseNode,
        Kind::PauseServer,
        Kind::IsolateNode,
        Kind::IsolateServer,
        Kind::NodeOnMinority,
        Kind::Latency,
        Kind::OneWay,
        Kind::DiskFull,
        Kind::ClockSkew,
        Kind::PublishedThenKill,
    ];

    /// Faults of the NATS side, after which the stream itself has to recover (elect a leader,
    /// catch a replica up): the ones whose "fold resumes" delay the harness measures.
    pub fn hits_the_stream(self) -> bool {
        matches!(
            self,
            Kind::KillServer | Kind::KillLeader | Kind::PauseServer | Kind::IsolateServer
        )
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillNode => "kill-node",
            Kind::KillServer => "kill-server",
            Kind::KillLeader => "kill-leader",
            Kind::PauseNode => "pause-node",
            Kind::PauseServer => "pause-server",
            Kind::IsolateNode => "isolate-node",
            Kind::IsolateServer => "isolate-server",
            Kind::NodeOnMinority => "node-on-minority",
            Kind::Latency => "latency",
            Kind::OneWay => "one-way-cut",
            Kind::DiskFull => "disk-full",
            Kind::ClockSkew => "clock-skew",
            Kind::PublishedThenKill => "published-then-kill",
        }
    }
}

/// Which proxy a link-level fault acts on.
#[derive(Debug, Clone, Copy)]
pub enum LinkRef {
    Route(usize, usize),
    Node(usize, usize),
}

/// One fault with its parameters, all drawn from the seed.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    pub node: usize,
    pub server: usize,
    /// How long the fault lasts before it is healed.
    pub hold: Duration,
    pub links: Vec<LinkRef>,
    pub delay: Duration,
    /// For a one-way cut: the dialing side's outgoing direction, else the way back.
    pub outgoing: bool,
    pub skew_ms: i64,
}

impl Fault {
    /// A fault drawn from `kinds` (every kind when empty).
    pub fn pick(rng: &mut StdRng, kinds: &[Kind]) -> Fault {
        let menu = if kinds.is_empty() {
            &Kind::ALL[..]
        } else {
            kinds
        };
        let kind = menu[rng.random_range(0..menu.len())];
        let random_link = |rng: &mut StdRng| {
            if rng.random_bool(0.5) {
                let a = rng.random_range(0..SERVERS);
                let b = (a + rng.random_range(1..SERVERS)) % SERVERS;
                LinkRef::Route(a, b)
            } else {
                LinkRef::Node(rng.random_range(0..NODES), rng.random_range(0..SERVERS))
            }
        };
        let links = match kind {
            Kind::Latency => (0..rng.random_range(1..4))
                .map(|_| random_link(rng))
                .collect(),
            Kind::OneWay => vec![random_link(rng)],
            _ => Vec::new(),
        };
        let skew = rng.random_range(2_000..30_000);
        Fault {
            kind,
            node: rng.random_range(0..NODES),
            server: rng.random_range(0..SERVERS),
            // Server faults sometimes outlast a Raft election (4-9 s) so the stream moves.
            hold: Duration::from_millis(if kind.hits_the_stream() && rng.random_bool(0.5) {
                rng.random_range(6_000..11_000)
            } else {
                rng.random_range(1_500..4_000)
            }),
            links,
            delay: Duration::from_millis(rng.random_range(50..400)),
            outgoing: rng.random_bool(0.5),
            skew_ms: if rng.random_bool(0.5) { skew } else { -skew },
        }
    }

    pub fn describe(&self) -> String {
        let what = match self.kind {
            Kind::KillNode | Kind::PauseNode | Kind::IsolateNode | Kind::DiskFull => {
                format!("n{}", self.node)
            }
            Kind::PublishedThenKill => format!("n{}", self.node),
            Kind::KillServer | Kind::PauseServer | Kind::IsolateServer => {
                format!("s{}", self.server)
            }
            Kind::KillLeader => "the stream leader".to_string(),
            Kind::NodeOnMinority => format!("n{} on s{}", self.node, self.server),
            Kind::Latency => format!("{:?} +{:?}", self.links, self.delay),
            Kind::OneWay => format!(
                "{:?} {}",
                self.links,
                if self.outgoing { "out" } else { "back" }
            ),
            Kind::ClockSkew => format!("n{} {:+} ms", self.node, self.skew_ms),
        };
        format!("{} {what} for {:?}", self.kind.name(), self.hold)
    }

    fn proxies<'a>(&self, cluster: &'a Cluster) -> Vec<&'a super::proxy::Proxy> {
        self.links
            .iter()
            .map(|l| match *l {
                LinkRef::Route(a, b) => cluster.route(a, b),
                LinkRef::Node(n, s) => cluster.link(n, s),
            })
            .collect()
    }

    fn isolate_server(cluster: &Cluster, s: usize, cut: bool) {
        for other in (0..SERVERS).filter(|o| *o != s) {
            for p in cluster.routes_between(s, other) {
                p.set(|st| {
                    st.out.cut = cut;
                    st.back.cut = cut;
                });
            }
        }
    }

    /// Injects the fault. Faults that need a node's clock offset keep `skews` current;
    /// `leader` is the stream leader's server index, when known (for [`Kind::KillLeader`]).
    pub async fn inject(
        &mut self,
        cluster: &mut Cluster,
        skews: &mut [i64; NODES],
        leader: Option<usize>,
    ) {
        match self.kind {
            Kind::KillLeader => {
                self.server = leader.unwrap_or(self.server);
                cluster.kill_server(self.server).await;
            }
            Kind::KillNode | Kind::PublishedThenKill => cluster.kill_node(self.node).await,
            Kind::KillServer => cluster.kill_server(self.server).await,
            Kind::PauseNode => cluster.pause_node(self.node, true),
            Kind::PauseServer => cluster.pause_server(self.server, true),
            Kind::IsolateNode => {
                for s in 0..SERVERS {
                    cluster.link(self.node, s).set(|st| {
                        st.out.cut = true;
                        st.back.cut = true;
                    });
                }
            }
            Kind::IsolateServer => Fault::isolate_server(cluster, self.server, true),
            Kind::NodeOnMinority => {
                for s in (0..SERVERS).filter(|s| *s != self.server) {
                    cluster.link(self.node, s).set(|st| st.refused = true);
                }
                Fault::isolate_server(cluster, self.server, true);
            }
            Kind::Latency => {
                let delay = self.delay;
                for p in self.proxies(cluster) {
                    p.set(|st| {
                        st.out.delay = delay;
                        st.back.delay = delay;
                    });
                }
            }
            Kind::OneWay => {
                let outgoing = self.outgoing;
                for p in self.proxies(cluster) {
                    p.set(|st| {
                        let way: &mut Way = if outgoing { &mut st.out } else { &mut st.back };
                        way.cut = true;
                    });
                }
            }
            Kind::DiskFull => cluster.nodes[self.node].set_faults(json!({
                "clockOffsetMs": skews[self.node],
                "maxPageSlack": 2,
            })),
            Kind::ClockSkew => {
                skews[self.node] = self.skew_ms;
                cluster.nodes[self.node].set_faults(json!({"clockOffsetMs": self.skew_ms}));
            }
        }
    }

    /// Undoes the fault: restarts what was killed, resumes what was paused, heals links.
    pub async fn heal(&self, cluster: &mut Cluster, skews: &[i64; NODES]) {
        match self.kind {
            Kind::KillNode | Kind::PublishedThenKill => cluster.start_node(self.node).await,
            Kind::KillServer | Kind::KillLeader => cluster.start_server(self.server),
            Kind::PauseNode => cluster.pause_node(self.node, false),
            Kind::PauseServer => cluster.pause_server(self.server, false),
            Kind::IsolateNode => {
                for s in 0..SERVERS {
                    cluster.link(self.node, s).heal();
                }
            }
            Kind::IsolateServer => Fault::isolate_server(cluster, self.server, false),
            Kind::NodeOnMinority => {
                Fault::isolate_server(cluster, self.server, false);
                for s in 0..SERVERS {
                    cluster.link(self.node, s).heal();
                }
            }
            Kind::Latency | Kind::OneWay => {
                for p in self.proxies(cluster) {
                    p.heal();
                }
            }
            Kind::DiskFull => cluster.nodes[self.node].set_faults(json!({
                "clockOffsetMs": skews[self.node],
                "maxPageSlack": null,
            })),
            Kind::ClockSkew => {}
        }
    }
}
