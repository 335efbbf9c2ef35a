//! The results both networks' commands share: a ping's answer and a lookup's closest nodes.
//! Each network's `CommandResult` says which command a result answers and carries these, or
//! its own (a store's, BEP 51 samples).

use std::net::SocketAddr;

use super::id::NodeId;
use super::lookup::LookupStats;
use super::query_error::QueryError;
use super::search::Search;

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

impl Closest {
    /// What `search` came to.
    pub(crate) fn of(search: &Search) -> Closest {
        let (nodes, stats) = search.summary();
        Closest { nodes, stats }
    }

    /// Whether the lookup reached anybody: one that had nobody to ask found nothing.
    pub(crate) fn reached_anybody(&self) -> bool {
        !self.nodes.is_empty() || self.stats.requests > 0
    }

    /// The result of a command that looks for nodes: these, or that there was nobody to ask.
    pub(crate) fn found(self) -> Result<Closest, QueryError> {
        if self.reached_anybody() {
            Ok(self)
        } else {
            Err(QueryError::NoContacts)
        }
    }
}

/// A network's `CommandResult`, as Kademlia's own commands report into it: which of its
/// variants carries each one's result.
pub(crate) trait KademliaResults: Sized {
    const BOOTSTRAP: fn(Closest) -> Self;
    const PING: fn(Result<Pong, QueryError>) -> Self;
    const FIND_NODE: fn(Result<Closest, QueryError>) -> Self;
}
