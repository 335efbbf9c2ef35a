//! BEP 43 adaptive mode on virtual time: a node behind a simulated NAT (the harness drops
//! datagrams to it from addresses it has not sent to in the last 30 seconds) turns read-only,
//! and serves again once the NAT is gone and other nodes reach it unasked.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::mainline::{AdaptiveReadOnly, Body, Config, Message, Node};
use kadmos_proto::{Id, Timestamp};

const NAT_MEMORY: Duration = Duration::from_secs(30);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 6881))
}

struct Net {
    nodes: Vec<Node>,
    now: Timestamp,
    /// The node behind the NAT, while there is one, and when it last sent to each address.
    natted: Option<usize>,
    sent_by_natted: HashMap<SocketAddr, Timestamp>,
    /// Queries from the NATed node that carried `ro=1`.
    read_only_queries: usize,
    dropped_by_nat: usize,
}

impl Net {
    fn settle(&mut self) {
        let mut queue = VecDeque::new();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = node.poll_transmit() {
                    queue.push_back((i, t));
                }
                while node.poll_event().is_some() {}
            }
            let Some((from, t)) = queue.pop_front() else { break };
            let Some(to) = (0..self.nodes.len()).find(|j| addr(*j) == t.to) else { continue };
            if Some(from) == self.natted {
                self.sent_by_natted.insert(t.to, self.now);
                let message = Message::decode(&t.payload).unwrap();
                if matches!(message.body, Body::Query { .. }) && message.read_only {
                    self.read_only_queries += 1;
                }
            }
            if Some(to) == self.natted {
                let invited =
                    self.sent_by_natted.get(&addr(from)).is_some_and(|at| self.now.saturating_since(*at) < NAT_MEMORY);
                if !invited {
                    self.dropped_by_nat += 1;
                    continue;
                }
            }
            self.nodes[to].handle_datagram(self.now, addr(from), &t.payload);
        }
    }

    /// Ten seconds pass: every node in `lookups` runs a find_node for a random target.
    fn tick(&mut self, lookups: impl Iterator<Item = usize>, round: u64) {
        self.now = self.now + Duration::from_secs(10);
        for i in lookups {
            let target = Id::sha1_of(&(round * 100 + i as u64).to_be_bytes());
            let now = self.now;
            self.nodes[i].find_node(now, target);
        }
        for node in &mut self.nodes {
            node.handle_timeout(self.now);
        }
        self.settle();
        // Requests that stay unanswered (dropped by the NAT) time out within 10 s.
        for _ in 0..4 {
            self.now = self.now + Duration::from_millis(2500);
            for node in &mut self.nodes {
                node.handle_timeout(self.now);
            }
            self.settle();
        }
    }
}

/// Lookups of a round: the 38 busy nodes every round, the two quiet ones (the NATed node and
/// its control) every sixth, so most of the network never hears from them directly.
fn lookups(round: u64) -> impl Iterator<Item = usize> {
    (0..NODES).filter(move |i| *i < QUIET || round.is_multiple_of(6))
}

const NODES: usize = 40;
/// Nodes from here on look things up rarely: `QUIET` is the control, `NATTED` sits behind a NAT.
const QUIET: usize = 38;
const NATTED: usize = 39;

/// The last of 40 nodes sits behind a NAT: its own lookups are answered, but nobody reaches
/// it unasked, so within its first windows it turns read-only and its queries carry `ro=1`,
/// while a node that behaves the same without a NAT keeps serving. Once the NAT is gone, the
/// others' lookups reach it unasked and it serves again, long before its read-only spell
/// (1,000 s) would have ended by itself.
#[test]
fn natted_node_turns_read_only_then_serves_when_reachable() {
    let adaptive =
        AdaptiveReadOnly { window: Duration::from_secs(60), min_answers: 4, read_only_for: Duration::from_secs(1000) };
    let nodes = (0..NODES)
        .map(|i| {
            let mut config = Config::new(Id::sha1_of(format!("node {i}").as_bytes()), i as u64);
            config.adaptive_read_only = Some(adaptive);
            Node::new(config, Timestamp::ZERO)
        })
        .collect();
    let mut net = Net {
        nodes,
        now: Timestamp::ZERO,
        natted: Some(NATTED),
        sent_by_natted: HashMap::new(),
        read_only_queries: 0,
        dropped_by_nat: 0,
    };
    for i in 1..NODES {
        let now = net.now;
        net.nodes[i].bootstrap(now, &[addr(0)], &[]);
        net.settle();
    }
    let mut round = 0;
    let mut turned_at = None;
    while net.now < Timestamp::ZERO + Duration::from_secs(400) && turned_at.is_none() {
        round += 1;
        net.tick(lookups(round), round);
        if net.nodes[NATTED].is_read_only() {
            turned_at = Some(net.now);
        }
    }
    let turned_at = turned_at.expect("the NATed node turns read-only");
    assert!(net.dropped_by_nat > 0, "the others did try to reach it");
    assert!((0..NATTED).all(|i| !net.nodes[i].is_read_only()), "reachable nodes keep serving, the quiet one too");
    round += 1;
    net.tick(NATTED..NODES, round);
    assert!(net.read_only_queries > 0, "its queries now carry ro=1");

    // The NAT goes away: the others' lookups reach the node unasked.
    net.natted = None;
    let mut serving_at = None;
    while net.now < turned_at + Duration::from_secs(900) && serving_at.is_none() {
        round += 1;
        net.tick(lookups(round), round);
        if !net.nodes[NATTED].is_read_only() {
            serving_at = Some(net.now);
        }
    }
    assert!(serving_at.is_some(), "reached unasked, the node serves again before its spell ends");
}
