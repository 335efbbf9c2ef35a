//! What every kadmos node is as a Kademlia node, whatever its network: the commands Kademlia
//! itself defines (join, ping a node, find the nodes closest to an ID) and what a node shows
//! of its routing tables and of its work in flight. Both networks' nodes run the same engine
//! for these, so they are written once, for every node driving its operations on it.

use std::net::SocketAddr;
use std::time::Duration;

use super::id::{Id, NodeId};
use super::operation_driver::{KademliaOp, OperationDriver, OperationKind};
use super::routing_table::RoutingTable;
use super::search::Parallelism;
use super::sent_request::Purpose;
use crate::node_io::{Family, QueryId};
use crate::time::Timestamp;

/// The Kademlia commands and state of a node, the same on both networks:
/// [`mainline::Node`](crate::mainline::Node) and [`opendht::Node`](crate::opendht::Node)
/// implement it, and each network's namespace re-exports it, so `use kadmos_proto::mainline::*`
/// (or `opendht::*`) brings these methods in with the node.
///
/// Commands return a [`QueryId`] and report through the node's events, as its own commands do:
/// `Finished` with the network's `CommandResult::Bootstrap`, `Ping` or `FindNode`.
pub trait KademliaNode {
    /// Joins the network: asks each router for nodes close to our own ID, then looks our ID
    /// up. `contacts` are known nodes (from saved state) used as lookup seeds; they enter the
    /// routing table once they answer. Emits `Finished` with `CommandResult::Bootstrap` when
    /// done; the refreshes that fill the routing table's sparse buckets start then.
    fn bootstrap(&mut self, now: Timestamp, routers: &[SocketAddr], contacts: &[(NodeId, SocketAddr)]) -> QueryId;

    /// Pings one node. Emits `Finished` with `CommandResult::Ping`: the node's ID, or why
    /// it did not answer.
    fn ping(&mut self, now: Timestamp, addr: SocketAddr) -> QueryId;

    /// Iterative search of the nodes closest to `target`. Emits `Finished` with
    /// `CommandResult::FindNode`.
    fn find_node(&mut self, now: Timestamp, target: Id) -> QueryId;

    /// The routing table of `family`, if the node has a socket of that family.
    fn routing_table(&self, family: Family) -> Option<&RoutingTable>;

    /// Known good and questionable contacts of both families, for saving state.
    fn contacts(&self) -> Vec<(NodeId, SocketAddr)>;

    /// Whether no routing table holds a contact (a join that reached nobody).
    fn has_no_contacts(&self) -> bool;

    /// Operations still running: user commands, refreshes, and each network's own background
    /// work (republishing, listen searches).
    fn running_operations(&self) -> usize;

    /// Requests of ours awaiting an answer.
    fn pending_requests(&self) -> usize;

    /// Lookups in flight, for invariant checks: their parallelism bounds and requests in flight.
    fn lookup_parallelism(&self) -> impl Iterator<Item = Parallelism> + '_;

    /// The stall timeout lookups use now, from measured round trips.
    fn stall_timeout(&self) -> Duration;

    /// Whether lookups wait for their stalled candidates that are vouched for (the others are
    /// never waited for): yes while at least four in five stalled requests were answered late
    /// rather than not at all (see [`LookupConfig`](crate::kad::LookupConfig)).
    fn waits_for_stalled(&self) -> bool;
}

impl<D: OperationDriver> KademliaNode for D {
    fn bootstrap(&mut self, now: Timestamp, routers: &[SocketAddr], contacts: &[(NodeId, SocketAddr)]) -> QueryId {
        let lookup = self.lookup_config().clone();
        let op = {
            let (engine, mut wire) = self.parts();
            engine.bootstrap(now, &mut wire, &lookup, routers, contacts)
        };
        self.drive_operation(now, op);
        op
    }

    fn ping(&mut self, now: Timestamp, addr: SocketAddr) -> QueryId {
        let attempts = self.ping_attempts();
        let (engine, mut wire) = self.parts();
        let ping = crate::kad::engine::Network::ping_request(&wire);
        let op = engine.start_single(OperationKind::Kademlia(KademliaOp::Ping), ping.clone());
        let sent = engine.send_single(now, &mut wire, op, addr, ping, Purpose::Ping { op }, attempts);
        drop(wire);
        if let Err(error) = sent {
            self.ping_ended(now, op, Err(error));
        }
        op
    }

    fn find_node(&mut self, now: Timestamp, target: Id) -> QueryId {
        let lookup = self.lookup_config().clone();
        let (engine, wire) = self.parts();
        let request = crate::kad::engine::Network::find_request(&wire, target, engine.tables.dual_stack());
        let op = engine.start(OperationKind::Kademlia(KademliaOp::FindNode), target, request, &lookup, &[]);
        drop(wire);
        self.drive_operation(now, op);
        op
    }

    fn routing_table(&self, family: Family) -> Option<&RoutingTable> {
        self.engine().tables.get(family)
    }

    fn contacts(&self) -> Vec<(NodeId, SocketAddr)> {
        self.engine().tables.contacts()
    }

    fn has_no_contacts(&self) -> bool {
        self.engine().tables.is_empty()
    }

    fn running_operations(&self) -> usize {
        self.engine().operation_count()
    }

    fn pending_requests(&self) -> usize {
        self.engine().pending_requests()
    }

    fn lookup_parallelism(&self) -> impl Iterator<Item = Parallelism> + '_ {
        self.engine().lookup_parallelism()
    }

    fn stall_timeout(&self) -> Duration {
        self.engine().stall_timeout(&self.engine_settings())
    }

    fn waits_for_stalled(&self) -> bool {
        self.engine().waits_for_stalled()
    }
}
