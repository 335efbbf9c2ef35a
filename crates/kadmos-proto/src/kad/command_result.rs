//! The results both networks' commands share: a ping's answer and a lookup's closest nodes.
//! Each network's `CommandResult` says which command a result answers and carries these, or
//! its own (a store's, BEP 51 samples).

use std::net::SocketAddr;

use super::id::NodeId;
use super::lookup::LookupStats;

/// A ping answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// The ID the node answered with.
    pub id: NodeId,
    /// The address we pinged, which answered.
    pub addr: SocketAddr,
}

/// A lookup is over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closest {
    /// The closest nodes that answered (at most k per address family), closest first within
    /// each family.
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// What the lookup sent and how its requests ended.
    pub stats: LookupStats,
}
