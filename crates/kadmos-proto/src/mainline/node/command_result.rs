//! What each command of a Mainline node reports when it is over: [`CommandResult`] names the
//! command and carries exactly its result.

use std::net::SocketAddr;

use crate::kad::command_result::KademliaResults;
use crate::kad::{Closest, InfoHash, LookupStats, NodeId, Pong, QueryError};

/// A finished command: which one, and its result. Quests report through `Event::Quest`, and
/// the node's background work (refreshes, re-puts, republishing) reports nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandResult {
    /// [`KademliaNode::bootstrap`](crate::kad::KademliaNode::bootstrap): the closest nodes to our own ID that
    /// answered (none if nobody did: a bootstrap always ends this way).
    Bootstrap(Closest),
    /// [`KademliaNode::ping`](crate::kad::KademliaNode::ping).
    Ping(Result<Pong, QueryError>),
    /// [`KademliaNode::find_node`](crate::kad::KademliaNode::find_node).
    FindNode(Result<Closest, QueryError>),
    /// [`Node::get_peers`](super::Node::get_peers): the lookup's closest nodes (the peers came
    /// in `Event::Peers` on the way).
    GetPeers(Result<Closest, QueryError>),
    /// [`Node::announce_peer`](super::Node::announce_peer): where our peer was stored (nowhere
    /// if the lookup found no node with a token).
    Announce(Stored),
    /// [`Node::get_item`](super::Node::get_item): the lookup's closest nodes (the items came in
    /// `Event::Item` on the way).
    GetItem(Result<Closest, QueryError>),
    /// [`Node::put_item`](super::Node::put_item): where the item was stored.
    PutItem(Stored),
    /// [`Node::sample_infohashes`](super::Node::sample_infohashes) (BEP 51).
    SampleInfohashes(Result<Samples, QueryError>),
}

/// A store (announce_peer or BEP 44 put) at the closest nodes that gave a token is over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// The nodes that acknowledged the store.
    pub stored_at: Vec<(NodeId, SocketAddr)>,
    /// The nodes that refused it: address, KRPC error code and message.
    pub errors: Vec<(SocketAddr, i64, String)>,
    /// What the lookup for tokens sent and how its requests ended.
    pub stats: LookupStats,
}

/// BEP 51: one node's sample of the infohashes it stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Samples {
    /// The node asked.
    pub from: SocketAddr,
    /// Infohashes it stores (a sample of them).
    pub samples: Vec<InfoHash>,
    /// How many infohashes it stores in all.
    pub num: i64,
    /// Seconds before asking it again brings a new sample.
    pub interval: i64,
    /// Nodes close to the target, of both families.
    pub nodes: Vec<(NodeId, SocketAddr)>,
}

impl KademliaResults for CommandResult {
    const BOOTSTRAP: fn(Closest) -> Self = CommandResult::Bootstrap;
    const PING: fn(Result<Pong, QueryError>) -> Self = CommandResult::Ping;
    const FIND_NODE: fn(Result<Closest, QueryError>) -> Self = CommandResult::FindNode;
}
