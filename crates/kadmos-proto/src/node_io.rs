//! What a sans-IO node and its driver exchange, the same for both networks: datagrams to send
//! ([`Transmit`]), address families ([`Family`], and [`Families`] a node has sockets for), and
//! the handle of a command in progress ([`QueryId`]).

use std::net::SocketAddr;

use crate::kad::KademliaNode;
use crate::time::Timestamp;

/// Identifies one command's progress and result in a node's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// 0 for IPv4, 1 for IPv6: where a node keeps per-family state in a two-slot array.
    pub fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }
}

/// Which address families a node has a socket for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    /// An IPv4 socket.
    pub v4: bool,
    /// An IPv6 socket.
    pub v6: bool,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub to: SocketAddr,
    /// The datagram's bytes.
    pub payload: Vec<u8>,
}

/// A node's queue of datagrams to send. Bursts (a maintenance tick's neighbour checks, a
/// lookup's requests) grow it; [`TransmitQueue::release_when_drained`] has it give that room
/// back the next time the driver empties it. A node asks for that once per maintenance tick,
/// not at every drain: a busy node empties and refills its queue for every datagram it takes
/// in. (Shrinking at the tick itself came before the tick's pings were queued, so the room
/// for them stayed: 1.0 KB per idle node in the simulator.)
#[derive(Debug, Default)]
pub(crate) struct TransmitQueue {
    queue: std::collections::VecDeque<Transmit>,
    release_when_drained: bool,
}

impl TransmitQueue {
    pub(crate) fn push(&mut self, transmit: Transmit) {
        self.queue.push_back(transmit);
    }

    /// The next datagram; when there is none left, the queue gives back its memory if asked to.
    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        let next = self.queue.pop_front();
        if next.is_none() && self.release_when_drained {
            self.queue = std::collections::VecDeque::new();
            self.release_when_drained = false;
        }
        next
    }

    /// Gives back the queue's memory the next time it is empty.
    pub(crate) fn release_when_drained(&mut self) {
        self.release_when_drained = true;
    }
}

/// The inputs and outputs every sans-IO node has, whatever its network: what a driver (the
/// tokio task, the simulator) needs to run one. Joining and the routing tables are
/// [`KademliaNode`]'s; other commands and events are each network's own.
pub trait SansIoNode: KademliaNode {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]);
    /// The time [`SansIoNode::poll_timeout`] gave has come.
    fn handle_timeout(&mut self, now: Timestamp);
    /// When the node next wants [`SansIoNode::handle_timeout`].
    fn poll_timeout(&mut self) -> Option<Timestamp>;
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
}

/// Implements [`SansIoNode`] for a node type through its inherent methods of the same names
/// (each node documents them where its users look).
macro_rules! sans_io_node_by_inherent_methods {
    ($node:ty) => {
        impl $crate::node_io::SansIoNode for $node {
            fn handle_datagram(&mut self, now: $crate::time::Timestamp, from: std::net::SocketAddr, datagram: &[u8]) {
                <$node>::handle_datagram(self, now, from, datagram);
            }
            fn handle_timeout(&mut self, now: $crate::time::Timestamp) {
                <$node>::handle_timeout(self, now);
            }
            fn poll_timeout(&mut self) -> Option<$crate::time::Timestamp> {
                <$node>::poll_timeout(self)
            }
            fn poll_transmit(&mut self) -> Option<$crate::node_io::Transmit> {
                <$node>::poll_transmit(self)
            }
        }
    };
}
pub(crate) use sans_io_node_by_inherent_methods;
