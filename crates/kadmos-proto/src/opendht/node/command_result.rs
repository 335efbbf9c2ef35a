//! What each command of an OpenDHT node reports when it is over: [`CommandResult`] names the
//! command and carries exactly its result.

use std::net::SocketAddr;

use crate::kad::command_result::KademliaResults;
use crate::kad::{Closest, LookupStats, NodeId, Pong, QueryError};
use crate::opendht::value::ValueId;

/// A finished command: which one, and its result. A listen never finishes (it ends when
/// cancelled, silently), and the node's background work (refreshes, the rounds of permanent
/// puts, listens' searches) reports nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandResult {
    /// [`KademliaNode::bootstrap`](crate::kad::KademliaNode::bootstrap): the closest nodes to our own ID that
    /// answered (none if nobody did: a bootstrap always ends this way).
    Bootstrap(Closest),
    /// [`KademliaNode::ping`](crate::kad::KademliaNode::ping).
    Ping(Result<Pong, QueryError>),
    /// [`KademliaNode::find_node`](crate::kad::KademliaNode::find_node).
    FindNode(Result<Closest, QueryError>),
    /// [`Node::get`](super::Node::get): the search's closest nodes (the values came in
    /// `Event::Value` on the way).
    Get(Result<Closest, QueryError>),
    /// [`Node::put`](super::Node::put).
    Put(Result<Stored, QueryError>),
}

/// A put at the closest nodes that gave a token is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The value's id (drawn by the node if the value was put with id 0).
    pub value_id: ValueId,
    /// Whether this node's own storage took the value (or already held it). Remote nodes
    /// answer a put they refused (storage full, say) exactly like one they stored, as
    /// OpenDHT's do on purpose, so `stored_at` does not prove the value is anywhere.
    pub stored_here: bool,
    /// The nodes that acknowledged it, with `put` or `refresh`.
    pub stored_at: Vec<(NodeId, SocketAddr)>,
    /// The nodes that refused it: address, OpenDHT error code and message.
    pub errors: Vec<(SocketAddr, u16, String)>,
    /// What the search for tokens sent and how its requests ended.
    pub stats: LookupStats,
}

impl KademliaResults for CommandResult {
    const BOOTSTRAP: fn(Closest) -> Self = CommandResult::Bootstrap;
    const PING: fn(Result<Pong, QueryError>) -> Self = CommandResult::Ping;
    const FIND_NODE: fn(Result<Closest, QueryError>) -> Self = CommandResult::FindNode;
}
