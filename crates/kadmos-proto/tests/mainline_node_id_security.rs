//! BEP 42 on a Mainline node, on virtual time: contacts whose ID does not match their address
//! stay out of the routing table when enforcement is on, and the node takes a secure ID once
//! a vote of its responders says its external address is one its ID does not match.

use std::net::{IpAddr, SocketAddr};

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::mainline::{is_secure, secure_node_id};
use kadmos_proto::mainline::{Body, Config, Family, Message, Node, NodeIdSecurity, Query, Response};
use kadmos_proto::{Id, NodeId, Timestamp};
use rand::SeedableRng;

fn node(policy: NodeIdSecurity) -> Node {
    let mut config = Config::new(Id::sha1_of(b"bep42 node"), 1);
    config.node_id_security = policy;
    Node::new(config, Timestamp::ZERO)
}

/// Pings `peer` and answers the ping as `id` would, telling the node it sits at `reported`.
fn ping_answered(node: &mut Node, peer: SocketAddr, id: NodeId, reported: Option<SocketAddr>) {
    node.ping(Timestamp::ZERO, peer);
    let ping = std::iter::from_fn(|| node.poll_transmit()).find(|t| t.to == peer).expect("a ping is sent");
    let message = Message::decode(&ping.payload).unwrap();
    assert!(matches!(message.body, Body::Query { query: Query::Ping, .. }));
    let mut pong = Message::response(message.transaction_id, Response { id, ..Response::default() });
    pong.requester_ip = reported;
    node.handle_datagram(Timestamp::ZERO, peer, &pong.to_bytes());
    while node.poll_event().is_some() {}
}

fn table_holds(node: &Node, id: &NodeId) -> bool {
    node.routing_table(Family::V4).unwrap().get(id).is_some()
}

/// With enforcement on (the default), a node at a public address whose ID is not derived from
/// that address stays out of the table and is counted, a secure one enters, and a node at a
/// private address enters whatever its ID; with enforcement off, the insecure one enters too.
#[test]
fn insecure_ids_are_kept_out() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let public: SocketAddr = "198.51.100.7:6881".parse().unwrap();
    let insecure = Id::sha1_of(b"chosen next to a target");
    assert!(!is_secure(&insecure, public.ip()));
    let mut enforcing = node(NodeIdSecurity::default());
    ping_answered(&mut enforcing, public, insecure, None);
    assert!(!table_holds(&enforcing, &insecure));
    assert_eq!(enforcing.counters().insecure_ids_refused, 1);
    let other: SocketAddr = "198.51.100.8:6881".parse().unwrap();
    let secure = secure_node_id(other.ip(), 3, &mut rng);
    ping_answered(&mut enforcing, other, secure, None);
    assert!(table_holds(&enforcing, &secure));
    let private: SocketAddr = "192.168.1.20:6881".parse().unwrap();
    ping_answered(&mut enforcing, private, insecure, None);
    assert!(table_holds(&enforcing, &insecure), "private addresses are exempt");

    let mut open = node(NodeIdSecurity::Off);
    ping_answered(&mut open, public, insecure, None);
    assert!(table_holds(&open, &insecure));
}

/// Ten distinct responders report the same public address: the node's ID, random at start,
/// becomes a secure ID for that address, its contacts stay in the table, and further votes
/// for the same address change nothing. Under `KeepOwnId` the ID stays as it is.
#[test]
fn node_takes_a_secure_id_after_the_vote() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let external: SocketAddr = "203.0.113.5:51413".parse().unwrap();
    let responders: Vec<(SocketAddr, NodeId)> = (1..=12u8)
        .map(|i| {
            let addr = SocketAddr::new(IpAddr::from([198, 51, i, 1]), 6881);
            (addr, secure_node_id(addr.ip(), i, &mut rng))
        })
        .collect();
    let mut node = node(NodeIdSecurity::Enforce);
    let before = node.id();
    assert!(!is_secure(&before, external.ip()));
    for (addr, id) in &responders[..9] {
        ping_answered(&mut node, *addr, *id, Some(external));
    }
    assert_eq!(node.id(), before, "nine votes do not decide");
    ping_answered(&mut node, responders[9].0, responders[9].1, Some(external));
    assert_ne!(node.id(), before);
    assert!(is_secure(&node.id(), external.ip()));
    assert_eq!(node.external_addr().map(|a| a.ip()), Some(external.ip()));
    assert_eq!(node.counters().node_id_changes, 1);
    assert_eq!(node.routing_table(Family::V4).unwrap().len(), 10, "contacts kept");
    node.routing_table(Family::V4).unwrap().check_invariants().unwrap();
    let after = node.id();
    for (addr, id) in &responders {
        ping_answered(&mut node, *addr, *id, Some(external));
    }
    assert_eq!(node.id(), after);

    let mut keeping = self::node(NodeIdSecurity::KeepOwnId);
    for (addr, id) in &responders {
        ping_answered(&mut keeping, *addr, *id, Some(external));
    }
    assert_eq!(keeping.id(), before);
}
