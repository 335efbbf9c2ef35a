//! The Kademlia engine both networks' nodes run: their operations and the driving of their
//! lookups, the requests in flight, round-trip and stall evidence, wake-ups, joining and the
//! refreshes that follow it, and verification of nodes before they enter a routing table.
//!
//! A network plugs in through [`Network`]: it builds its find request, encodes and sends
//! requests under the transaction ids the engine draws, and says what its own operations and
//! requests are. It keeps its serving and its own operations (BEP 44, announce and quests on
//! Mainline; put, listen and fragments on OpenDHT), and reads what an answer carries for
//! them once the engine has taken the answer.
//!
//! # Implementation notes
//!
//! - Operations are kept by [`QueryId`] in a `BTreeMap`, so that driving them is deterministic
//!   (the simulator replays runs from a seed).
//! - A lookup's wake-up is queued once per deadline: a lookup must be stepped again when one
//!   of its requests stalls, or stops holding up the result.
//! - An answer from a node ID other than the one asked: the asked ID counts as failed in its
//!   lookup (whoever holds that address now is not the node we meant, and waiting for it only
//!   holds the lookup up until the request times out), the answering node enters the routing
//!   table like any responder, and the nodes it names join the lookup as candidates; its token
//!   and values are not used, as they belong to a node the lookup did not choose.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::family_tables::FamilyTables;
use super::id::{Id, NodeId};
use super::lookup::LookupConfig;
use super::operation_driver::{KademliaOp, NetworkKind, OperationKind, StoreAt};
use super::query_error::QueryError;
use super::requests::RequestTable;
use super::routing_table::InsertOutcome;
use super::rtt::RttEstimator;
use super::search::{Parallelism, Search};
use super::sent_request::{NetworkPurpose, Purpose, Resend, SentRequest};
use super::stall_evidence::StallEvidence;
use super::timers::TimerQueue;
use super::traffic_counters::TrafficCounters;
use crate::node_io::{Family, QueryId};
use crate::time::Timestamp;

/// How long after joining a node looks up its own ID again; the gap then doubles up to the
/// bucket refresh interval and stays there. A node's neighbours learn of it only when it
/// queries them or someone names it, so a node that joined a young network stays unknown to
/// the nodes that join around it later unless it looks again (measured in the simulator: in
/// a 500-node network, nodes among the first hundred to join sat in 0 to 3 routing tables,
/// none of them near, so lookups for targets next to them missed them).
const NEIGHBOURHOOD_REFRESH_FIRST: Duration = Duration::from_secs(30);

/// A node's engine and the node's view for it to send through, borrowed apart: each node
/// keeps its engine in `engine`, its config in `config`, what it sends through in `out`, and
/// has a `Wire { config, out }` type implementing [`Network`].
macro_rules! engine_and_wire {
    ($node:expr) => {
        (&mut $node.engine, &mut Wire { config: &$node.config, out: &mut $node.out })
    };
}
pub(crate) use engine_and_wire;

/// What the engine reads in a network's config.
pub(crate) trait EngineConfig {
    /// Our node ID.
    fn node_id(&self) -> NodeId;
    /// The engine's knobs.
    fn engine_settings(&self) -> EngineSettings;
}

/// Implements [`EngineConfig`] for a network's config type, whose fields of these names mean
/// the same on both networks.
macro_rules! engine_config_for {
    ($config:ty) => {
        impl $crate::kad::engine::EngineConfig for $config {
            fn node_id(&self) -> $crate::kad::NodeId {
                self.node_id
            }

            fn engine_settings(&self) -> $crate::kad::engine::EngineSettings {
                $crate::kad::engine::EngineSettings {
                    max_pending_requests: self.max_pending_requests,
                    request_timeout: self.request_timeout,
                    lookup_request_timeout: self.lookup.request_timeout,
                    stall_deviations: self.stall_deviations,
                    min_stall_timeout: self.min_stall_timeout,
                    max_stall_timeout: self.lookup.stall_timeout,
                    verify_pings_per_second: self.verify_pings_per_second,
                    refresh_after: self.routing.refresh_after,
                }
            }
        }
    };
}
pub(crate) use engine_config_for;

/// The engine's knobs, read from the network's config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineSettings {
    pub(crate) max_pending_requests: usize,
    /// Timeout of requests outside lookups.
    pub(crate) request_timeout: Duration,
    /// Timeout of lookup requests (and of finds to routers).
    pub(crate) lookup_request_timeout: Duration,
    /// The stall timeout is `srtt + stall_deviations × rttvar`, within
    /// `[min_stall_timeout, max_stall_timeout]`.
    pub(crate) stall_deviations: u32,
    pub(crate) min_stall_timeout: Duration,
    pub(crate) max_stall_timeout: Duration,
    pub(crate) verify_pings_per_second: u32,
    /// The bucket refresh interval, which the neighbourhood refresh gap grows to.
    pub(crate) refresh_after: Duration,
}

/// What the engine asks of a network.
pub(crate) trait Network {
    /// A request on the wire (a lookup's find or get, a ping, the network's own).
    type Request: Clone;
    /// What the network's operations are (find, get_peers, put...).
    type Kind;
    /// Why the network's own requests were sent.
    type Purpose: NetworkPurpose;
    /// Routers are full nodes of the network: a router's answer makes it a lookup candidate
    /// too, not only the nodes it names.
    const ROUTERS_ARE_NODES: bool;
    /// The network's config, where the engine reads its knobs and our ID.
    type Config: EngineConfig;

    fn config(&self) -> &Self::Config;
    fn settings(&self) -> EngineSettings {
        self.config().engine_settings()
    }
    /// Our node ID.
    fn own_id(&self) -> NodeId {
        self.config().node_id()
    }
    /// A fresh transaction id (random, so that answers cannot be forged blind).
    fn draw_transaction_id(rng: &mut ChaCha8Rng) -> u32;
    /// The find request of a lookup for `target` (asking for both families if `dual_stack`).
    fn find_request(&self, target: Id, dual_stack: bool) -> Self::Request;
    fn ping_request(&self) -> Self::Request;
    /// Encodes `request` under `tx` and queues it to `to`; gives back the datagrams sent when
    /// `keep` (to send them again).
    fn send_request(
        &mut self,
        now: Timestamp,
        to: SocketAddr,
        tx: u32,
        request: Self::Request,
        keep: bool,
    ) -> Vec<Vec<u8>>;
    /// Queues `datagrams` to `to` again (an unanswered request's next attempt).
    fn send_again(&mut self, to: SocketAddr, datagrams: &[Vec<u8>]);
    fn traffic(&mut self) -> &mut TrafficCounters;
}

/// One command or background job in progress: its lookups (none for a single request) and
/// what the network keeps of it.
#[derive(Clone, Debug)]
pub(crate) struct Operation<K, R> {
    pub(crate) kind: OperationKind<K>,
    /// The request its lookups send.
    pub(crate) request: R,
    pub(crate) search: Search,
    /// Requests outside the lookups that must end before the operation does.
    pub(crate) awaiting: usize,
    /// The wake-up queued for the lookups, if any (so one deadline is queued once).
    wake_at: Option<Timestamp>,
}

/// What an answer carries that the engine reads.
pub(crate) struct Answer<'a> {
    pub(crate) id: NodeId,
    pub(crate) nodes4: &'a [(NodeId, SocketAddr)],
    pub(crate) nodes6: &'a [(NodeId, SocketAddr)],
    pub(crate) token: Option<&'a [u8]>,
}

/// What is left for the network once the engine has taken an answer.
#[derive(Debug)]
pub(crate) enum Answered<P> {
    /// Nothing (a verification, a router, an answer from another node than the one asked).
    Nothing,
    /// Operation `op`'s ping was answered.
    Pong { op: QueryId },
    /// A lookup of operation `op` took the answer: the network reads its values.
    Lookup { op: QueryId },
    /// A request of the network's own.
    Network(P),
}

/// What is left for the network once the engine has taken a failed request.
#[derive(Debug)]
pub(crate) enum Failed<P> {
    Nothing,
    /// Operation `op`'s ping failed.
    Ping {
        op: QueryId,
        error: QueryError,
    },
    /// A request of the network's own failed.
    Network(OwnRequestFailed<P>),
}

/// A request of the network's own that failed: where it went, why it was sent, and why it failed.
#[derive(Debug)]
pub(crate) struct OwnRequestFailed<P> {
    pub(crate) to: SocketAddr,
    pub(crate) node_id: Option<NodeId>,
    pub(crate) purpose: P,
    pub(crate) error: QueryError,
}

/// The engine. See the module documentation.
pub(crate) struct Engine<K, R, P> {
    pub(crate) tables: FamilyTables,
    pub(crate) rng: ChaCha8Rng,
    /// Ordered by QueryId so that driving them is deterministic (the simulator replays runs).
    operations: BTreeMap<QueryId, Operation<K, R>>,
    next_query: u64,
    requests: RequestTable<u32, SentRequest<P>>,
    /// When lookups must be stepped again (their requests stall), lazily cleaned.
    wakeups: TimerQueue<QueryId>,
    /// Round trips of our requests, for the lookups' stall timeout.
    rtt: RttEstimator,
    stalls: StallEvidence,
    /// When to look up our own ID again, and the gap before the one after (see
    /// [`NEIGHBOURHOOD_REFRESH_FIRST`]). `None` until the first bootstrap ends.
    neighbourhood_refresh: Option<(Timestamp, Duration)>,
    verify_budget: (Timestamp, u32),
}

impl<K, R: Clone, P: NetworkPurpose> Engine<K, R, P> {
    pub(crate) fn new(tables: FamilyTables, seed: u64, now: Timestamp) -> Self {
        Engine {
            tables,
            rng: ChaCha8Rng::seed_from_u64(seed),
            operations: BTreeMap::new(),
            next_query: 0,
            requests: RequestTable::default(),
            wakeups: TimerQueue::default(),
            rtt: RttEstimator::default(),
            stalls: StallEvidence::default(),
            neighbourhood_refresh: None,
            verify_budget: (now, 0),
        }
    }

    // ------------------------------------------------------------ operations

    /// A query id no command has had.
    pub(crate) fn new_query_id(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    /// Starts an operation whose lookups search `target`, seeded from the routing tables and
    /// `extra_seeds`.
    pub(crate) fn start(
        &mut self,
        kind: OperationKind<K>,
        target: Id,
        request: R,
        lookup: &LookupConfig,
        extra_seeds: &[(NodeId, SocketAddr)],
    ) -> QueryId {
        let id = self.new_query_id();
        let search = Search::start(&self.tables, target, lookup, extra_seeds);
        self.operations.insert(id, Operation { kind, request, search, awaiting: 0, wake_at: None });
        id
    }

    /// Starts an operation without lookups (one request, sent by the caller).
    pub(crate) fn start_single(&mut self, kind: OperationKind<K>, request: R) -> QueryId {
        let id = self.new_query_id();
        let operation = Operation { kind, request, search: Search::default(), awaiting: 0, wake_at: None };
        self.operations.insert(id, operation);
        id
    }

    pub(crate) fn operation(&self, op: QueryId) -> Option<&Operation<K, R>> {
        self.operations.get(&op)
    }

    pub(crate) fn operation_mut(&mut self, op: QueryId) -> Option<&mut Operation<K, R>> {
        self.operations.get_mut(&op)
    }

    /// The network's kind of operation `op`, if it runs and is one of the network's own.
    pub(crate) fn network_kind(&self, op: QueryId) -> Option<&K> {
        self.operations.get(&op)?.kind.network()
    }

    pub(crate) fn network_kind_mut(&mut self, op: QueryId) -> Option<&mut K> {
        self.operations.get_mut(&op)?.kind.network_mut()
    }

    /// Ends an operation; late answers to it are ignored.
    pub(crate) fn remove(&mut self, op: QueryId) -> Option<Operation<K, R>> {
        self.operations.remove(&op)
    }

    pub(crate) fn operation_count(&self) -> usize {
        self.operations.len()
    }

    /// The running operations, in order.
    pub(crate) fn operation_ids(&self) -> Vec<QueryId> {
        self.operations.keys().copied().collect()
    }

    /// Counts one more request outside `op`'s lookups that must end before it does.
    pub(crate) fn await_more(&mut self, op: QueryId, requests: usize) {
        if let Some(operation) = self.operations.get_mut(&op) {
            operation.awaiting += requests;
        }
    }

    /// One awaited request of `op` ended.
    pub(crate) fn awaited_ended(&mut self, op: QueryId) {
        if let Some(operation) = self.operations.get_mut(&op) {
            operation.awaiting -= 1;
        }
    }

    /// Queues a wake-up for `op` at `at` (its lookups' next deadline, or one of the network's
    /// own phases, such as a store round's next stall), unless an earlier one is queued.
    pub(crate) fn wake_at(&mut self, now: Timestamp, op: QueryId, at: Timestamp) {
        let Some(operation) = self.operations.get_mut(&op) else { return };
        if at > now && operation.wake_at.is_none_or(|queued| queued <= now || at < queued) {
            operation.wake_at = Some(at);
            self.wakeups.push(at, op);
        }
    }

    /// Lookups in flight, for invariant checks.
    pub(crate) fn lookup_parallelism(&self) -> impl Iterator<Item = Parallelism> + '_ {
        self.operations.values().flat_map(|op| op.search.parallelism())
    }

    /// Steps `op`'s lookups: sends what they ask for and queues their next wake-up. Whether
    /// the operation's lookups and awaited requests are all over (the network then ends it,
    /// or starts its next phase).
    pub(crate) fn drive<W>(&mut self, now: Timestamp, op: QueryId, wire: &mut W) -> bool
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let settings = wire.settings();
        let stall_timeout = self.stall_timeout(&settings);
        let wait_for_stalled = self.stalls.waits_for_stalled();
        let Some(operation) = self.operations.get_mut(&op) else { return false };
        // A bootstrap lookup with no seeds waits for the routers to name some nodes.
        let waiting_for_routers = operation.awaiting > 0;
        let sends = operation.search.step(now, stall_timeout, Some(wait_for_stalled), waiting_for_routers);
        // Step the lookups again when a request stalls or, when they wait for stalled nodes,
        // when one stops holding up the result.
        if let Some(at) = operation.search.next_deadline() {
            self.wake_at(now, op, at);
        }
        for (family, id, addr) in sends {
            let request = self.operations[&op].request.clone();
            if self.send_request(now, wire, addr, Some(id), request, Purpose::Lookup { op, family }, 1).is_err() {
                // Too many requests in flight: count the node as failed so the lookup moves on.
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.search.on_failure(family, &id);
                }
            }
        }
        self.operations.get(&op).is_some_and(|o| o.awaiting == 0 && o.search.is_finished())
    }

    // ------------------------------------------------------------ store rounds

    /// Sends the requests of `op`'s store round and starts the round with the nodes they went
    /// to; they stall as lookup requests do.
    pub(crate) fn start_store_round<W>(&mut self, now: Timestamp, wire: &mut W, op: QueryId, stores: Vec<StoreAt<R, P>>)
    where
        K: NetworkKind,
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let mut sent = Vec::new();
        for store in stores {
            let purpose = Purpose::Network(store.purpose);
            let (id, addr) = (store.id, store.addr);
            if self.send_request(now, wire, addr, Some(id), store.request, purpose, store.attempts).is_ok() {
                sent.push((id, addr));
            }
        }
        let settings = wire.settings();
        let (stall_timeout, wait_for_stalled) = (self.stall_timeout(&settings), self.waits_for_stalled());
        let Some(round) = self.operations.get_mut(&op).and_then(|o| o.kind.store_round()) else { return };
        round.start();
        for (id, addr) in sent {
            round.sent(now, id, addr, stall_timeout, wait_for_stalled, settings.request_timeout);
        }
    }

    /// Steps `op`'s store round: whether it is over (if not, its next stall is queued as a
    /// wake-up). An operation without a round has none to wait for.
    pub(crate) fn step_store_round(&mut self, now: Timestamp, op: QueryId) -> bool
    where
        K: NetworkKind,
    {
        let Some(round) = self.operations.get_mut(&op).and_then(|o| o.kind.store_round()) else { return true };
        round.step(now);
        if round.is_over() {
            return true;
        }
        if let Some(at) = round.next_deadline() {
            self.wake_at(now, op, at);
        }
        false
    }

    // ------------------------------------------------------------ requests

    /// Sends a request of ours and records it. `attempts` > 1 sends it again (the same
    /// datagrams) when unanswered, waiting twice as long each time.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_request<W>(
        &mut self,
        now: Timestamp,
        wire: &mut W,
        to: SocketAddr,
        node_id: Option<NodeId>,
        request: R,
        purpose: Purpose<P>,
        attempts: u8,
    ) -> Result<(), QueryError>
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let settings = wire.settings();
        if self.requests.len() >= settings.max_pending_requests {
            return Err(QueryError::Overloaded);
        }
        let rng = &mut self.rng;
        let tx = self.requests.free_id(|| W::draw_transaction_id(rng));
        let timeout = if purpose.is_lookup() { settings.lookup_request_timeout } else { settings.request_timeout };
        wire.traffic().requests_sent += 1;
        let datagrams = wire.send_request(now, to, tx, request, attempts > 1);
        let resend = (attempts > 1)
            .then(|| Box::new(Resend { attempts_left: attempts - 1, wait: timeout, resent: false, datagrams }));
        let stalls_at = now + self.stall_timeout(&settings);
        let deadline = now + timeout;
        self.requests.insert(tx, SentRequest { to, sent_at: now, stalls_at, node_id, deadline, purpose, resend });
        Ok(())
    }

    /// Sends the one request of operation `op` (a ping, a sample request) to `addr`, which
    /// the operation then awaits. An address of a family we have no socket for is refused
    /// as having nobody to ask.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_single<W>(
        &mut self,
        now: Timestamp,
        wire: &mut W,
        op: QueryId,
        addr: SocketAddr,
        request: R,
        purpose: Purpose<P>,
        attempts: u8,
    ) -> Result<(), QueryError>
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        if !self.tables.reaches(&addr) {
            return Err(QueryError::NoContacts);
        }
        self.send_request(now, wire, addr, None, request, purpose, attempts)?;
        self.await_more(op, 1);
        Ok(())
    }

    /// Requests of ours awaiting an answer.
    pub(crate) fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Whether request `tx` awaits an answer from `from`.
    pub(crate) fn awaits(&self, tx: u32, from: SocketAddr) -> bool {
        self.requests.awaits(tx, from)
    }

    /// The request `tx` that `from` answered with node ID `responder`, now over: its round
    /// trip and stall outcome are recorded, and if `responder` is not the node we asked, the
    /// one we asked counts as failed in the routing table. `None` if we sent no such request.
    pub(crate) fn take_answered(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tx: u32,
        responder: NodeId,
    ) -> Option<SentRequest<P>> {
        let request = self.requests.take_answered(tx, from)?;
        if matches!(request.purpose, Purpose::Lookup { .. }) && now > request.stalls_at {
            self.stalls.note(true);
        }
        if !request.was_resent() {
            let rtt = now.saturating_since(request.sent_at);
            self.rtt.observe(rtt);
            self.tables.note_round_trip(&responder, rtt);
        }
        if let Some(asked) = request.node_id.filter(|id| *id != responder) {
            if let Some(table) = self.tables.get_mut(Family::of(&from)) {
                table.note_failure(&asked, from, now);
            }
        }
        Some(request)
    }

    /// The request `tx` that `from` answered with an error, now over.
    pub(crate) fn take_refused(&mut self, from: SocketAddr, tx: u32) -> Option<SentRequest<P>> {
        self.requests.take_answered(tx, from)
    }

    /// Takes `request`'s answer (from [`Engine::take_answered`]): the responder enters the
    /// routing table if `insertable` (a questionable contact it would replace is pinged), and
    /// the engine's own purposes are served. What is left is the network's.
    pub(crate) fn on_answer<W>(
        &mut self,
        now: Timestamp,
        wire: &mut W,
        from: SocketAddr,
        request: SentRequest<P>,
        answer: Answer<'_>,
        insertable: bool,
    ) -> Answered<P>
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let family = Family::of(&from);
        if insertable {
            if let Some(table) = self.tables.get_mut(family) {
                if let InsertOutcome::Cached { ping: Some(old) } = table.insert_responded(answer.id, from, now) {
                    if !self.requests.any_to(old.addr()) {
                        let ping = wire.ping_request();
                        let _ = self.send_request(now, wire, old.addr(), Some(old.id), ping, Purpose::Verify, 1);
                    }
                }
            }
        }
        let own = wire.own_id();
        match request.purpose {
            Purpose::Verify => Answered::Nothing,
            Purpose::Ping { op } => Answered::Pong { op },
            Purpose::Router { op } => {
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.awaiting -= 1;
                    let router = (W::ROUTERS_ARE_NODES && insertable).then_some((answer.id, from));
                    operation.search.add_candidates((answer.nodes4, answer.nodes6), own, router);
                }
                Answered::Nothing
            }
            Purpose::Lookup { op, family } => {
                let Some(operation) = self.operations.get_mut(&op) else { return Answered::Nothing };
                if let Some(asked) = request.node_id.filter(|id| *id != answer.id) {
                    // See the module notes.
                    operation.search.on_failure(family, &asked);
                    operation.search.add_candidates((answer.nodes4, answer.nodes6), own, None);
                    return Answered::Nothing;
                }
                operation.search.on_answer(family, answer.id, own, (answer.nodes4, answer.nodes6), answer.token);
                Answered::Lookup { op }
            }
            Purpose::Network(p) => Answered::Network(p),
        }
    }

    /// Ends `request` with `error`: the engine's own purposes are served (a lookup moves on
    /// from a node that answered with an error; a timeout is the lookup's own business, as it
    /// stalls and retries by itself). What is left is the network's.
    pub(crate) fn on_failure(&mut self, request: SentRequest<P>, error: QueryError) -> Failed<P> {
        match request.purpose {
            Purpose::Verify => Failed::Nothing,
            Purpose::Ping { op } => Failed::Ping { op, error },
            Purpose::Router { op } => {
                self.awaited_ended(op);
                Failed::Nothing
            }
            Purpose::Lookup { op, family } => {
                if let (QueryError::Remote { .. }, Some(operation), Some(id)) =
                    (&error, self.operations.get_mut(&op), request.node_id)
                {
                    operation.search.on_failure(family, &id);
                }
                Failed::Nothing
            }
            Purpose::Network(purpose) => {
                Failed::Network(OwnRequestFailed { to: request.to, node_id: request.node_id, purpose, error })
            }
        }
    }

    /// Sends again the unanswered requests due for another attempt, and takes those out of
    /// attempts: counted, their nodes noted as failing, and given back to end with a timeout.
    pub(crate) fn expire<W>(&mut self, now: Timestamp, wire: &mut W) -> Vec<SentRequest<P>>
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let mut expired = Vec::new();
        while let Some(tx) = self.requests.pop_due(now) {
            let Some(request) = self.requests.get_mut(tx) else { continue };
            if let Some(resend) = request.resend.as_mut().filter(|r| r.attempts_left > 0) {
                resend.attempts_left -= 1;
                resend.wait *= 2;
                resend.resent = true;
                request.deadline = now + resend.wait;
                wire.send_again(request.to, &resend.datagrams);
                self.requests.reschedule(tx);
                continue;
            }
            let Some(request) = self.requests.remove(tx) else { continue };
            wire.traffic().requests_timed_out += 1;
            if matches!(request.purpose, Purpose::Lookup { .. }) {
                self.stalls.note(false);
            }
            if let Some(id) = request.node_id {
                if let Some(table) = self.tables.get_mut(Family::of(&request.to)) {
                    table.note_failure(&id, request.to, now);
                }
            }
            expired.push(request);
        }
        // Due wake-ups only ask for the lookups to be stepped, which the caller does next.
        while self.wakeups.pop_due(now).is_some() {}
        expired
    }

    /// When the engine needs `handle_timeout`: a request's deadline or a lookup's wake-up.
    pub(crate) fn next_deadline(&mut self) -> Option<Timestamp> {
        let request_due = self.requests.next_deadline();
        let operations = &self.operations;
        let wakeup = self.wakeups.earliest(|_, op| operations.contains_key(op));
        request_due.into_iter().chain(wakeup).min()
    }

    // ------------------------------------------------------------ round trips and stalls

    /// Whether lookups wait for their stalled nodes (see [`StallEvidence`]).
    pub(crate) fn waits_for_stalled(&self) -> bool {
        self.stalls.waits_for_stalled()
    }

    /// The stall timeout lookups use now, from measured round trips.
    pub(crate) fn stall_timeout(&self, settings: &EngineSettings) -> Duration {
        self.rtt.timeout(settings.stall_deviations, settings.min_stall_timeout, settings.max_stall_timeout)
    }

    // ------------------------------------------------------------ joining and refreshing

    /// Joins the network: a bootstrap operation looks our own ID up, seeded with `contacts` (they
    /// enter the routing table once they answer), while each router of a family we have is
    /// asked for nodes close to us. The caller drives the returned operation.
    pub(crate) fn bootstrap<W>(
        &mut self,
        now: Timestamp,
        wire: &mut W,
        lookup: &LookupConfig,
        routers: &[SocketAddr],
        contacts: &[(NodeId, SocketAddr)],
    ) -> QueryId
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let own = wire.own_id();
        let request = wire.find_request(own, self.tables.dual_stack());
        let bootstrap = OperationKind::Kademlia(KademliaOp::Bootstrap);
        let op = self.start(bootstrap, own, request.clone(), lookup, contacts);
        let families = self.tables.enabled();
        for router in routers.iter().filter(|r| families.contains(&Family::of(r))) {
            if self.send_request(now, wire, *router, None, request.clone(), Purpose::Router { op }, 1).is_ok() {
                self.await_more(op, 1);
            }
        }
        op
    }

    /// A bootstrap ended: looks up a random ID in every bucket holding fewer than k contacts,
    /// so that a young table fills its far buckets now rather than at their first refresh (a
    /// lookup for a target in a half of the keyspace no contact covers cannot start), and
    /// schedules the first look-up of our own ID again. Returns the refreshes started, for the
    /// caller to drive.
    pub(crate) fn joined<W>(&mut self, now: Timestamp, wire: &W, lookup: &LookupConfig) -> Vec<QueryId>
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let mut started = Vec::new();
        for family in self.tables.enabled() {
            let table = self.tables.get(family).expect("enabled");
            let targets = table.sparse_bucket_targets(&mut self.rng);
            for target in targets {
                let request = wire.find_request(target, self.tables.dual_stack());
                started.push(self.start(OperationKind::Kademlia(KademliaOp::Refresh), target, request, lookup, &[]));
            }
        }
        self.neighbourhood_refresh = Some((now + NEIGHBOURHOOD_REFRESH_FIRST, NEIGHBOURHOOD_REFRESH_FIRST));
        started
    }

    /// Starts the refreshes that are due: of buckets not refreshed for a while, and of our
    /// neighbourhood (our own ID), driven with every other operation; and pings the nearest
    /// contacts that have been silent for a while.
    pub(crate) fn start_due_refreshes<W>(&mut self, now: Timestamp, wire: &mut W, lookup: &LookupConfig)
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        for target in self.tables.take_refresh_targets(now, &mut self.rng) {
            let request = wire.find_request(target, self.tables.dual_stack());
            self.start(OperationKind::Kademlia(KademliaOp::Refresh), target, request, lookup, &[]);
        }
        self.check_neighbours(now, wire);
        if let Some((due, gap)) = self.neighbourhood_refresh {
            if now >= due {
                let gap = (gap * 2).min(wire.settings().refresh_after);
                self.neighbourhood_refresh = Some((now + gap, gap));
                let target = wire.own_id();
                let request = wire.find_request(target, self.tables.dual_stack());
                self.start(OperationKind::Kademlia(KademliaOp::Refresh), target, request, lookup, &[]);
            }
        }
    }

    /// Pings our nearest contacts that have been silent for a while (see
    /// `RoutingTableConfig::neighbours_checked`): one that died fails its ping, and answers
    /// stop naming it. All of them at the maintenance tick: spreading the pings over the
    /// interval (five every 2 s) made lookups a message dearer and less accurate in the
    /// simulator's quality scenario (see docs/simulator.md).
    fn check_neighbours<W>(&mut self, now: Timestamp, wire: &mut W)
    where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        for family in self.tables.enabled() {
            let Some(table) = self.tables.get(family) else { continue };
            for (id, addr) in table.silent_neighbours(now) {
                if !self.requests.any_to(addr) {
                    let ping = wire.ping_request();
                    let _ = self.send_request(now, wire, addr, Some(id), ping, Purpose::Verify, 1);
                }
            }
        }
    }

    // ------------------------------------------------------------ verification

    /// A node queried us: if it is not in the routing table and would be accepted, ping it
    /// (within the verification budget) so that it enters once it answers; a query's source
    /// address can be forged, an answer to our ping cannot. `admissible`: the network's own
    /// checks (BEP 42 on Mainline).
    pub(crate) fn verify_querier<W>(
        &mut self,
        now: Timestamp,
        wire: &mut W,
        sender: NodeId,
        from: SocketAddr,
        admissible: bool,
    ) where
        W: Network<Kind = K, Request = R, Purpose = P>,
    {
        let Some(table) = self.tables.get_mut(Family::of(&from)) else { return };
        let known = table.note_query(&sender, from, now);
        if !known
            && table.would_accept(&sender, from, now)
            && admissible
            && self.verify_allowed(now, wire.settings().verify_pings_per_second)
            && !self.requests.any_to(from)
        {
            let ping = wire.ping_request();
            let _ = self.send_request(now, wire, from, Some(sender), ping, Purpose::Verify, 1);
        }
    }

    fn verify_allowed(&mut self, now: Timestamp, per_second: u32) -> bool {
        let (window_start, used) = &mut self.verify_budget;
        if now.saturating_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *used = 0;
        }
        if *used < per_second {
            *used += 1;
            true
        } else {
            false
        }
    }

    // ------------------------------------------------------------ memory

    /// Gives back memory that bursts (joining, refreshes) left in the tables: a node is mostly
    /// idle, and the simulator holds 100,000 of them.
    pub(crate) fn shrink(&mut self) {
        self.requests.shrink();
        let operations = &self.operations;
        self.wakeups.retain(|_, op| operations.contains_key(op));
        // An emptied BTreeMap keeps its last node allocated; a fresh one holds nothing.
        if self.operations.is_empty() {
            self.operations = BTreeMap::new();
        }
    }
}
