//! The way of a node's operations from their start to their end, once for both networks:
//! start one (or join), step its lookups, run a store's round at the closest nodes that gave
//! a token, read the operation's typed result, and end it (a bootstrap's end starts the
//! refreshes that follow joining). An operation is one of Kademlia's own ([`KademliaOp`]:
//! joining, refreshes, ping, find_node, whose results are read here) or one of the network's.
//! A node implements [`OperationDriver`] with its own steps (what a store sends, what its own
//! operations' results hold, what happens when an operation ends) and gets
//! `start_operation`, `drive`, `drive_operation` and `finish` (and, through
//! [`KademliaNode`](super::KademliaNode), Kademlia's own commands and views).

use std::net::SocketAddr;

use super::command_result::{Closest, KademliaResults, Pong};
use super::engine::{Engine, EngineSettings, Failed, Network, Operation, OwnRequestFailed};
use super::id::{Id, NodeId};
use super::lookup::LookupConfig;
use super::query_error::QueryError;
use super::sent_request::{NetworkPurpose, SentRequest};
use super::store_round::StoreRound;
use crate::node_io::QueryId;
use crate::time::Timestamp;

/// The operations Kademlia itself runs, the same on every network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KademliaOp {
    /// Joining: a lookup of our own ID, through routers and saved contacts.
    Bootstrap,
    /// A bucket or neighbourhood refresh: emits no events.
    Refresh,
    Ping,
    FindNode,
}

/// What an operation is: one of Kademlia's own, or one of the network's (`K`).
#[derive(Clone, Debug)]
pub(crate) enum OperationKind<K> {
    Kademlia(KademliaOp),
    Network(K),
}

impl<K: NetworkKind> OperationKind<K> {
    /// The store round of a store operation (announce_peer, put), which runs once its
    /// lookups are over; `None` for an operation that stores nothing.
    pub(crate) fn store_round(&mut self) -> Option<&mut StoreRound> {
        match self {
            OperationKind::Network(kind) => kind.store_round(),
            OperationKind::Kademlia(_) => None,
        }
    }
}

impl<K> OperationKind<K> {
    /// The network's own kind, if the operation is one of the network's.
    pub(crate) fn network(&self) -> Option<&K> {
        match self {
            OperationKind::Network(kind) => Some(kind),
            OperationKind::Kademlia(_) => None,
        }
    }

    pub(crate) fn network_mut(&mut self) -> Option<&mut K> {
        match self {
            OperationKind::Network(kind) => Some(kind),
            OperationKind::Kademlia(_) => None,
        }
    }
}

/// What the driving needs to know of a network's own operation kinds.
pub(crate) trait NetworkKind {
    /// The store round of a store operation, if this is one (see
    /// [`OperationKind::store_round`]).
    fn store_round(&mut self) -> Option<&mut StoreRound>;
}

/// One request of a store round: `request` to node `id` at `addr`, sent with `attempts` tries.
pub(crate) struct StoreAt<R, P> {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) request: R,
    pub(crate) purpose: P,
    pub(crate) attempts: u8,
}

/// The engine a driver's operations run on.
pub(crate) type EngineOf<D> =
    Engine<<D as OperationDriver>::Kind, <D as OperationDriver>::Request, <D as OperationDriver>::Purpose>;

/// The accessors of [`OperationDriver`] for a node that keeps its engine in `engine`, its
/// config in `config` and what it sends through in `out`, and has a `Wire { config, out }`
/// type (as `engine_and_wire!` expects).
macro_rules! engine_accessors {
    () => {
        type Wire<'a> = Wire<'a>;

        fn engine(&self) -> &$crate::kad::operation_driver::EngineOf<Self> {
            &self.engine
        }

        fn parts(&mut self) -> (&mut $crate::kad::operation_driver::EngineOf<Self>, Wire<'_>) {
            (&mut self.engine, Wire { config: &self.config, out: &mut self.out })
        }

        fn lookup_config(&self) -> &$crate::kad::LookupConfig {
            &self.config.lookup
        }

        fn engine_settings(&self) -> $crate::kad::engine::EngineSettings {
            $crate::kad::engine::EngineConfig::engine_settings(&self.config)
        }
    };
}
pub(crate) use engine_accessors;

/// A node whose operations run on an [`Engine`]: its own steps, and the driving they share.
pub(crate) trait OperationDriver: Sized {
    type Kind: NetworkKind;
    type Request: Clone;
    type Purpose: NetworkPurpose;
    /// The node as the engine sees it, borrowed next to the engine.
    type Wire<'a>: Network<Kind = Self::Kind, Request = Self::Request, Purpose = Self::Purpose>
    where
        Self: 'a;
    /// What a finished command reports: which command it was and its typed result (Kademlia's
    /// own commands' results among them).
    type Result: KademliaResults;

    fn engine(&self) -> &EngineOf<Self>;
    /// The engine and the node's wire, borrowed apart.
    fn parts(&mut self) -> (&mut EngineOf<Self>, Self::Wire<'_>);
    fn lookup_config(&self) -> &LookupConfig;
    fn engine_settings(&self) -> EngineSettings;
    /// How many times a ping is sent before it fails.
    fn ping_attempts(&self) -> u8 {
        1
    }

    /// The requests of `op`'s store round, at the closest nodes that gave a token.
    fn store_requests(
        &self,
        op: QueryId,
        operation: &Operation<Self::Kind, Self::Request>,
    ) -> Vec<StoreAt<Self::Request, Self::Purpose>>;
    /// The network's step once `op`'s lookups (and store round) are over, before its result
    /// is read.
    fn lookups_over(&mut self, _now: Timestamp, _op: QueryId) {}
    /// What the network's own `operation` (of `kind`) came to, once over; `None` for one that
    /// reports nothing.
    fn result(&self, kind: &Self::Kind, operation: &Operation<Self::Kind, Self::Request>) -> Option<Self::Result>;
    /// One of the network's own requests failed: refused, or out of attempts.
    fn own_request_failed(&mut self, now: Timestamp, failed: OwnRequestFailed<Self::Purpose>);
    /// A bootstrap ended and the engine's refreshes started: the network's own steps.
    fn rejoined(&mut self, now: Timestamp);
    /// `op` is over and out of the engine: the network's bookkeeping, and its event if the
    /// operation reports one.
    fn ended(
        &mut self,
        now: Timestamp,
        op: QueryId,
        operation: Operation<Self::Kind, Self::Request>,
        result: Option<Self::Result>,
    );

    /// Starts an operation whose lookups search `target` with `request`, seeded from the
    /// routing tables; the caller drives it.
    fn start_operation(&mut self, kind: Self::Kind, target: Id, request: Self::Request) -> QueryId {
        let lookup = self.lookup_config().clone();
        self.parts().0.start(OperationKind::Network(kind), target, request, &lookup, &[])
    }

    /// Steps every operation: sends what their lookups ask for, and finishes those done.
    fn drive(&mut self, now: Timestamp) {
        for op in self.engine().operation_ids() {
            self.drive_operation(now, op);
        }
    }

    /// Steps operation `op`, and finishes it if it is done.
    fn drive_operation(&mut self, now: Timestamp, op: QueryId) {
        let lookups_over = {
            let (engine, mut wire) = self.parts();
            engine.drive(now, op, &mut wire)
        };
        if !lookups_over || !self.store_round_over(now, op) {
            return;
        }
        self.lookups_over(now, op);
        let Some(operation) = self.engine().operation(op) else { return };
        let result = match &operation.kind {
            OperationKind::Network(kind) => self.result(kind, operation),
            OperationKind::Kademlia(kademlia) => {
                let closest = Closest::of(&operation.search);
                match kademlia {
                    KademliaOp::Bootstrap => Some(Self::Result::BOOTSTRAP(closest)),
                    KademliaOp::FindNode => Some(Self::Result::FIND_NODE(closest.found())),
                    // A ping ends with its answer; without one it reached nobody.
                    KademliaOp::Ping => Some(Self::Result::PING(Err(QueryError::NoContacts))),
                    KademliaOp::Refresh => None,
                }
            }
        };
        self.finish(now, op, result);
    }

    /// A store operation whose lookups are over stores at the closest nodes that gave a
    /// token, until each has answered, refused or stalled (they stall as lookup requests do).
    /// Whether that is over, or the operation stores nothing.
    fn store_round_over(&mut self, now: Timestamp, op: QueryId) -> bool {
        let (engine, _) = self.parts();
        let Some(operation) = engine.operation_mut(op) else { return false };
        let Some(round) = operation.kind.store_round() else { return true };
        if !round.started() {
            let stores = match self.engine().operation(op) {
                Some(operation) => self.store_requests(op, operation),
                None => Vec::new(),
            };
            let (engine, mut wire) = self.parts();
            engine.start_store_round(now, &mut wire, op, stores);
            drop(wire);
        }
        self.parts().0.step_store_round(now, op)
    }

    /// `from` answered our request `tx` with an error: the request fails with it and the
    /// operation it belongs to is stepped. An error to no request of ours (`tx` unknown, or
    /// not of our form: `None`) is dropped.
    fn refused(&mut self, now: Timestamp, from: SocketAddr, tx: Option<u32>, code: i64, message: String) {
        let (engine, mut wire) = self.parts();
        let Some(request) = tx.and_then(|tx| engine.take_refused(from, tx)) else {
            wire.traffic().dropped += 1;
            return;
        };
        drop(wire);
        let touched = request.purpose.operation();
        self.request_failed(now, request, QueryError::Remote { code, message });
        if let Some(op) = touched {
            self.drive_operation(now, op);
        }
    }

    /// Requests out of attempts fail with a timeout (those due another attempt are sent again).
    fn expire_requests(&mut self, now: Timestamp) {
        let (engine, mut wire) = self.parts();
        let expired = engine.expire(now, &mut wire);
        drop(wire);
        for request in expired {
            self.request_failed(now, request, QueryError::Timeout);
        }
    }

    /// A request of ours failed (refused, or out of attempts): the engine takes it, a ping
    /// command ends, and the network handles its own.
    fn request_failed(&mut self, now: Timestamp, request: SentRequest<Self::Purpose>, error: QueryError) {
        let (engine, _) = self.parts();
        match engine.on_failure(request, error) {
            Failed::Nothing => {}
            Failed::Ping { op, error } => self.ping_ended(now, op, Err(error)),
            Failed::Network(failed) => self.own_request_failed(now, failed),
        }
    }

    /// A ping command is over: answered by `Pong`, or failed.
    fn ping_ended(&mut self, now: Timestamp, op: QueryId, result: Result<Pong, QueryError>) {
        self.finish(now, op, Some(Self::Result::PING(result)));
    }

    /// Ends `op` with `result`: a bootstrap's end starts the refreshes that follow joining,
    /// then the network does its own bookkeeping and reports it.
    fn finish(&mut self, now: Timestamp, op: QueryId, result: Option<Self::Result>) {
        let (engine, _) = self.parts();
        let Some(operation) = engine.remove(op) else { return };
        if matches!(operation.kind, OperationKind::Kademlia(KademliaOp::Bootstrap)) {
            let lookup = self.lookup_config().clone();
            let refreshes = {
                let (engine, wire) = self.parts();
                engine.joined(now, &wire, &lookup)
            };
            for refresh in refreshes {
                self.drive_operation(now, refresh);
            }
            self.rejoined(now);
        }
        self.ended(now, op, operation, result);
    }
}
