//! A node's record of one request of its own awaiting an answer: where it went, when, why,
//! and (for networks that retry) what to send again.

use std::net::SocketAddr;
use std::time::Duration;

use super::id::NodeId;
use super::requests::PendingRequest;
use crate::node_io::{Family, QueryId};
use crate::time::Timestamp;

/// Why a request was sent: the engine's own reasons, or the network's (`P`).
#[derive(Clone, Debug)]
pub(crate) enum Purpose<P> {
    /// A request of a lookup belonging to an operation.
    Lookup { op: QueryId, family: Family },
    /// A find to a bootstrap router (no known ID).
    Router { op: QueryId },
    /// The request of a ping command.
    Ping { op: QueryId },
    /// Checking a node before it enters the routing table, or a questionable contact.
    Verify,
    /// A request of one of the network's own operations (a store, a subscription...).
    Network(P),
}

/// What the engine needs to know of a network's own request purposes.
pub(crate) trait NetworkPurpose {
    /// The operation the request belongs to, if any: it is driven again when the request ends.
    fn operation(&self) -> Option<QueryId>;
}

impl<P: NetworkPurpose> Purpose<P> {
    /// The operation a request belongs to, if any.
    pub(crate) fn operation(&self) -> Option<QueryId> {
        match self {
            Purpose::Lookup { op, .. } | Purpose::Router { op } | Purpose::Ping { op } => Some(*op),
            Purpose::Verify => None,
            Purpose::Network(p) => p.operation(),
        }
    }

    /// Lookup requests time out after the lookup's timeout, others after the node's.
    pub(crate) fn is_lookup(&self) -> bool {
        matches!(self, Purpose::Lookup { .. } | Purpose::Router { .. })
    }
}

/// Further attempts of a request that is sent again when unanswered (OpenDHT's requests
/// outside lookups; lookups retry through `kad::lookup` instead).
#[derive(Clone, Debug)]
pub(crate) struct Resend {
    pub(crate) attempts_left: u8,
    /// The current wait, doubled at each attempt.
    pub(crate) wait: Duration,
    /// Whether it was sent again already (its round trip then measures nothing).
    pub(crate) resent: bool,
    pub(crate) datagrams: Vec<Vec<u8>>,
}

/// One request of ours awaiting an answer.
#[derive(Clone, Debug)]
pub(crate) struct SentRequest<P> {
    pub(crate) to: SocketAddr,
    pub(crate) sent_at: Timestamp,
    /// When a lookup request stalls (the stall timeout changes as round trips are measured;
    /// an answer after this instant is a late one).
    pub(crate) stalls_at: Timestamp,
    /// The node we meant to ask (`None` for routers and addresses given by the user).
    pub(crate) node_id: Option<NodeId>,
    pub(crate) deadline: Timestamp,
    pub(crate) purpose: Purpose<P>,
    /// Boxed: most requests are never sent again, and a node holds many.
    pub(crate) resend: Option<Box<Resend>>,
}

impl<P> SentRequest<P> {
    /// Whether the request went out more than once (its answer's delay is no round trip).
    pub(crate) fn was_resent(&self) -> bool {
        self.resend.as_ref().is_some_and(|r| r.resent)
    }
}

impl<P> PendingRequest for SentRequest<P> {
    fn to(&self) -> SocketAddr {
        self.to
    }
    fn deadline(&self) -> Timestamp {
        self.deadline
    }
}
