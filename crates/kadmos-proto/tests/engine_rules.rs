//! Rules of the engine both nodes run, seen from the wire of a Mainline node.

use std::net::SocketAddr;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::mainline::{Body, CommandResult, Config, Event, Family, Message, Node, Query, Response};
use kadmos_proto::{Id, Timestamp};

/// The find_node queries a node sent since last asked: (destination, transaction id).
fn sent_find_nodes(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| node.poll_transmit())
        .filter_map(|t| {
            let message = Message::decode(&t.payload).expect("the node sends valid KRPC");
            matches!(message.body, Body::Query { query: Query::FindNode { .. }, .. })
                .then_some((t.to, message.transaction_id))
        })
        .collect()
}

/// An answer from another node ID than the one asked: the asked node counts as failed in the
/// lookup at once (the lookup asks on without waiting for it to stall), the nodes the answer
/// names become candidates and are asked, and the answering node enters the routing table
/// under its real ID.
#[test]
fn an_answer_from_another_node_id_fails_the_one_asked() {
    let now = Timestamp::ZERO;
    let mut node = Node::new(Config::new(Id::sha1_of(b"us"), 1), now);
    let (asked, at): (Id, SocketAddr) = (Id::sha1_of(b"asked"), "10.0.0.1:6881".parse().unwrap());
    let (named, named_at): (Id, SocketAddr) = (Id::sha1_of(b"named"), "10.0.0.2:6881".parse().unwrap());
    let join = node.bootstrap(now, &[], &[(asked, at)]);
    let sent = sent_find_nodes(&mut node);
    assert_eq!(sent.iter().map(|(to, _)| *to).collect::<Vec<_>>(), [at], "the saved contact is asked");

    let impostor = Id::sha1_of(b"someone else");
    let answer = Response { id: impostor, nodes: vec![(named, named_at)], ..Response::default() };
    let mut datagram = Vec::new();
    Message::response(sent[0].1.clone(), answer).encode(&mut datagram);
    node.handle_datagram(now, at, &datagram);

    let next = sent_find_nodes(&mut node);
    assert_eq!(next.iter().map(|(to, _)| *to).collect::<Vec<_>>(), [named_at], "the named node is asked at once");
    let table = node.routing_table(Family::V4).expect("an IPv4 table");
    assert_eq!(table.get(&impostor).map(|c| c.addr()), Some(at), "the answering node is learned");
    assert!(table.get(&asked).is_none(), "the asked ID never answered");

    // The named node answers: the join ends with only it as an answering node, well before any
    // timeout (no time passes at all).
    let mut datagram = Vec::new();
    Message::response(next[0].1.clone(), Response { id: named, ..Response::default() }).encode(&mut datagram);
    node.handle_datagram(now, named_at, &datagram);
    let finished = std::iter::from_fn(|| node.poll_event()).find_map(|e| match e {
        Event::Finished { query, result: CommandResult::Bootstrap(closest) } if query == join => Some(closest.nodes),
        _ => None,
    });
    assert_eq!(finished, Some(vec![(named, named_at)]));
}
