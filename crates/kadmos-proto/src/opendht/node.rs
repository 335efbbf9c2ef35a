//! An OpenDHT node as a sans-IO state machine: it serves the network (routing, value storage,
//! listeners) and runs its user's operations (put, get, listen).
//!
//! # Driving a node
//!
//! The node never touches a socket or a clock. Whoever drives it (the tokio runtime, a test, the
//! simulator) does this, in any order, as often as needed:
//!
//! 1. **Inputs**: [`Node::handle_datagram`] for every UDP datagram received,
//!    [`Node::handle_timeout`] when the time from [`Node::poll_timeout`] has come, and commands
//!    ([`Node::bootstrap`], [`Node::ping`], [`Node::find_node`], [`Node::get`], [`Node::put`],
//!    [`Node::listen`]) which return a [`QueryId`]; [`Node::cancel_put`],
//!    [`Node::cancel_listen`] and [`Node::cancel`] stop them.
//! 2. **Outputs**, after every input: drain [`Node::poll_transmit`] (datagrams to send),
//!    [`Node::poll_event`] (values, changes and results, keyed by `QueryId`), then ask
//!    [`Node::poll_timeout`] when to call `handle_timeout` next.
//!
//! Every input takes `now`; all randomness comes from the seeded generator in the config, so the
//! same inputs give the same outputs.
//!
//! # What it does, and where OpenDHT does the same
//!
//! Facts from savoirfairelinux/opendht src/dht.cpp, src/search.h, src/network_engine.cpp,
//! src/storage.h, src/value_cache.h and include/opendht/dht.h:
//!
//! - **Searches** are [`Lookup`]s (4 in flight, the 8 closest must answer) sending `find`
//!   (find_node, bootstrap, bucket refresh) or `get` (get, put, listen), one per address family.
//!   Answers name nodes (`n4`, `n6`), carry a token and, for `get`, values (only taken from
//!   answers with a token, as OpenDHT does).
//! - **get** reports our own stored values first, then every value an answer brings (each once,
//!   again when it changes), then `Finished`. Filters go on the wire as `q` (WHERE), except
//!   `seq`, which OpenDHT cannot read (see [`super::query`]): that one is applied here only. A
//!   storing node answers at most 56 KiB of values per `get` (OpenDHT clients page through more
//!   with `SELECT id` and one get per id, which this node answers; this node's own get does not
//!   page yet).
//! - **put** stores the value here too, then searches the key with the probe `SELECT id,seq
//!   WHERE id=<vid>` and, at the 8 closest nodes that answered with a token, sends `put` where
//!   the value is missing or older, and `refresh` where it is already there. (OpenDHT probes
//!   only for permanent puts; probing during the search costs nothing extra.) A permanent put is
//!   done again `reannounce_margin` before the value would expire, until
//!   [`Node::cancel_put`]; a `refresh` answered 404 becomes a `put`.
//! - **listen** reports our own matching values, searches the key (reporting the values found),
//!   then subscribes (`listen {h, token, sid, ve: 1, q?}`) at the 4 closest nodes per family,
//!   renews every 30 s, searches again every 10 minutes or when a subscription fails, and
//!   reports `(value, expired)` as storing nodes push `update`s. Values are tracked in a
//!   [`ValueCache`] so that each change is reported once.
//! - **Serving**: `ping`; `find` (nodes and a token); `get` (values or SELECTed fields, nodes,
//!   token); `put` (token required, else 401; a value id of 0 is refused with 203; stored only
//!   when we are among the 14 nodes we know closest to the key and its type's
//!   [`store_policy`] allows it, otherwise silently ignored, and answered `{vid}` either way,
//!   as OpenDHT does to keep requesters from backtracking);
//!   `listen` (token required; the new listener is sent the matching values); `refresh` (token
//!   required; 404 when the value is not stored: OpenDHT answers 404 only for unknown keys);
//!   `update` (pushes for our listens, acknowledged).
//! - **Value storage** is [`Storage`] (limits and eviction documented there), remote
//!   listeners a [`ListenerTable`]. New and edited values, refreshes, expiries and evictions
//!   are pushed to listeners.
//! - Values too big for one datagram go out as fragments and come back together in a
//!   [`Reassembly`], with OpenDHT's timeouts (10 s for a message, 3 s between fragments) and
//!   bounds.
//! - Requests served are rate-limited per IP and in all (OpenDHT's figures). A node that
//!   queries us enters a routing table only after answering a ping of ours, since a query's
//!   source address can be forged (OpenDHT inserts it unconfirmed).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::Config;
use super::crypto::RsaSignatures;
use super::fragment::{
    pack_values, update_batches, PackedValues, Reassembly, MAX_MESSAGE_VALUE_SIZE, RX_MAX_EARLY_BYTES,
    RX_MAX_EARLY_PARTS, RX_MAX_PACKET_TIME, RX_TIMEOUT,
};
use super::listeners::{ListenOutcome, Listener, ListenerTable};
use super::message::{
    error_code, Body, ListenArgs, Message, PutArgs, Reply, Request, UpdateArgs, ValueParts, ValueSlot, Want,
};
use super::message_counts::MessageKind;
use super::query::{Field, FieldValue, FieldValues, Query};
use super::rate_limit::RateLimiter;
use super::storage::{Origin, RefreshOutcome, Refusal, Source, Storage, StoreOutcome};
use super::store_policy;
use super::token::TokenIssuer;
use super::value::{Value, ValueId, INVALID_VALUE_ID};
use super::value_cache::{CacheChange, Holder, ValueCache};
use super::verifier::SignatureVerifier;
use crate::kad::{
    FamilyTables, Id, InsertOutcome, LookupStats, NodeId, Parallelism, PendingRequest, RequestTable, RoutingTable,
    RttEstimator, Search, TimerQueue,
};
use crate::node_io::SansIoNode;
pub use crate::node_io::{Family, QueryId, Transmit};
use crate::time::Timestamp;

const NEVER: Timestamp = Timestamp::from_micros(u64::MAX);
/// Wait before a listen searches again after a failed subscription or an empty search.
const LISTEN_RETRY: Duration = Duration::from_secs(5);
/// A permanent put restored from saved state goes out when the node has joined, or after
/// this long if no bootstrap ends first.
pub const RESTORED_PUT_DELAY: Duration = Duration::from_secs(10);

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no answer within the timeout")]
    Timeout,
    #[error("remote error {code}: {message}")]
    Remote { code: u16, message: String },
    #[error("no contacts to ask: the routing table is empty (bootstrap first)")]
    NoContacts,
    #[error("too many requests in flight")]
    Overloaded,
}

/// What a finished command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node at `addr` answered a ping with its ID.
    Pong {
        id: NodeId,
        addr: SocketAddr,
    },
    /// A search (find_node, bootstrap, get) is over: the closest nodes that answered.
    Closest {
        nodes: Vec<(NodeId, SocketAddr)>,
        stats: LookupStats,
    },
    /// A put is over: the nodes that acknowledged it (with `put` or `refresh`), and the errors
    /// others answered with (address, code, message).
    Stored {
        value_id: ValueId,
        stored_at: Vec<(NodeId, SocketAddr)>,
        errors: Vec<(SocketAddr, u16, String)>,
        stats: LookupStats,
    },
    Failed(QueryError),
}

/// Values, changes and results of commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// For a `get`: a value found (`expired` is false). For a `listen`: a value now stored at the
    /// key, or (`expired`) one no longer stored.
    Value { query: QueryId, value: Value, expired: bool },
    /// The command is over (listens are over only when cancelled, silently).
    Finished { query: QueryId, outcome: Outcome },
}

/// Traffic and state counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub requests_received: u64,
    pub replies_received: u64,
    pub errors_received: u64,
    pub errors_sent: u64,
    /// Datagrams ignored: undecodable, other network, unexpected replies, refused fragments.
    pub dropped: u64,
    /// Requests dropped by the rate limit.
    pub rate_limited: u64,
    pub requests_sent: u64,
    pub requests_timed_out: u64,
    pub values_stored: u64,
    pub values_refused: u64,
    /// Values put to us while we are not among the nodes closest to their key (ignored).
    pub puts_outside_radius: u64,
    pub listener_pushes: u64,
    /// The same traffic by message kind and error code.
    pub messages: super::message_counts::MessageCounts,
}

#[derive(Clone, Debug)]
enum Purpose {
    /// A request of a search belonging to an operation.
    Lookup {
        op: QueryId,
        family: Family,
    },
    /// A `find` to a bootstrap router (no known ID).
    Router {
        op: QueryId,
    },
    Ping {
        op: QueryId,
    },
    /// A `put` at the end of a put operation.
    Put {
        op: QueryId,
    },
    /// A `refresh` at the end of a put operation; a 404 turns it into a `put` with `token`.
    Refresh {
        op: QueryId,
        token: Vec<u8>,
    },
    /// A subscription of one of our listens.
    Listen {
        listen: QueryId,
    },
    /// Checking a node before it enters the table, or a questionable contact.
    Verify,
}

impl Purpose {
    fn operation(&self) -> Option<QueryId> {
        match self {
            Purpose::Lookup { op, .. }
            | Purpose::Router { op }
            | Purpose::Ping { op }
            | Purpose::Put { op }
            | Purpose::Refresh { op, .. } => Some(*op),
            Purpose::Listen { .. } | Purpose::Verify => None,
        }
    }
}

#[derive(Clone, Debug)]
struct SentRequest {
    to: SocketAddr,
    node_id: Option<NodeId>,
    sent_at: Timestamp,
    deadline: Timestamp,
    /// Further attempts, each waiting twice as long, with these datagrams sent again.
    attempts_left: u8,
    wait: Duration,
    datagrams: Vec<(MessageKind, Vec<u8>)>,
    purpose: Purpose,
}

impl PendingRequest for SentRequest {
    fn to(&self) -> SocketAddr {
        self.to
    }
    fn deadline(&self) -> Timestamp {
        self.deadline
    }
}

#[derive(Clone, Debug)]
struct PutState {
    key: Id,
    value: Value,
    permanent: bool,
    /// A refresh round of a permanent put: no events.
    background: bool,
    storing: bool,
    stored_at: Vec<(NodeId, SocketAddr)>,
    errors: Vec<(SocketAddr, u16, String)>,
    /// The seq of the value each node already holds (from the search's probe).
    probes: HashMap<NodeId, u16>,
}

#[derive(Clone, Debug)]
enum Kind {
    FindNode,
    Bootstrap,
    /// Internal bucket refresh: emits no events.
    BucketRefresh,
    Ping,
    Get {
        filter: Query,
        seen: HashMap<ValueId, Id>,
    },
    Put(Box<PutState>),
    /// The search of a listen, before it subscribes.
    ListenSearch {
        listen: QueryId,
    },
}

#[derive(Clone, Debug)]
struct Operation {
    kind: Kind,
    request: Request,
    search: Search,
    /// Requests outside the lookups that must end before the operation does.
    awaiting: usize,
}

/// A permanent put and its next refresh round.
#[derive(Clone, Debug)]
struct KeptPut {
    value: Value,
    next_round: Timestamp,
    running: Option<QueryId>,
    /// Restored from saved state and not put since, or its last round reached nobody: its
    /// next round starts when a bootstrap ends, if that comes first.
    awaiting_join: bool,
}

/// One node a listen is subscribed at.
#[derive(Clone, Debug)]
struct Subscription {
    token: Vec<u8>,
    renew_at: Timestamp,
    pending: bool,
}

#[derive(Clone, Debug)]
struct ListenState {
    key: Id,
    filter: Query,
    wire_query: Option<Query>,
    socket_id: u32,
    cache: ValueCache,
    nodes: BTreeMap<SocketAddr, Subscription>,
    search: Option<QueryId>,
    next_search: Timestamp,
}

/// A message waiting for its value fragments (or fragments waiting for their message).
#[derive(Clone, Debug)]
struct Partial {
    header: Option<(Message, Reassembly)>,
    early: Vec<ValueParts>,
    early_bytes: usize,
    started: Timestamp,
    last: Timestamp,
}

impl Partial {
    fn deadline(&self) -> Timestamp {
        (self.started + RX_MAX_PACKET_TIME).min(self.last + RX_TIMEOUT)
    }
}

/// A change in our own storage, told to listeners.
enum Change {
    New(Value),
    Refreshed(ValueId),
    Expired(Vec<Value>),
}

/// An OpenDHT node. See the module documentation for how to drive it.
pub struct Node {
    config: Config,
    rng: ChaCha8Rng,
    tables: FamilyTables,
    storage: Storage,
    listeners: ListenerTable,
    verifier: Box<dyn SignatureVerifier>,
    tokens: TokenIssuer,
    limiter: RateLimiter,
    requests: RequestTable<u32, SentRequest>,
    wakeups: TimerQueue<QueryId>,
    rtt: RttEstimator,
    /// Ordered by QueryId so that driving them is deterministic.
    operations: BTreeMap<QueryId, Operation>,
    kept: BTreeMap<(Id, ValueId), KeptPut>,
    listens: BTreeMap<QueryId, ListenState>,
    sockets: HashMap<u32, QueryId>,
    partials: BTreeMap<(SocketAddr, u32), Partial>,
    next_query: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    next_maintenance: Timestamp,
    verify_budget: (Timestamp, u32),
}

impl Node {
    pub fn new(config: Config, now: Timestamp) -> Node {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let tables = FamilyTables::new(config.node_id, config.families, &config.routing, now);
        let tokens = TokenIssuer::new(&mut rng, now, config.token_rotation);
        Node {
            storage: Storage::new(config.storage.clone()),
            listeners: ListenerTable::new(config.listeners.clone()),
            verifier: Box::new(RsaSignatures),
            limiter: RateLimiter::new(config.max_requests, config.max_requests_per_ip),
            tokens,
            tables,
            rng,
            requests: RequestTable::default(),
            wakeups: TimerQueue::default(),
            rtt: RttEstimator::default(),
            operations: BTreeMap::new(),
            kept: BTreeMap::new(),
            listens: BTreeMap::new(),
            sockets: HashMap::new(),
            partials: BTreeMap::new(),
            next_query: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            next_maintenance: now + config.maintenance_interval,
            verify_budget: (now, 0),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the signature check of signed values (default: RSA, as OpenDHT signs:
    /// [`RsaSignatures`]).
    pub fn set_signature_verifier(&mut self, verifier: Box<dyn SignatureVerifier>) {
        self.verifier = verifier;
    }

    pub fn routing_table(&self, family: Family) -> Option<&RoutingTable> {
        self.tables.get(family)
    }

    /// What this node stores (for remote nodes and for its own user).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The remote nodes listening to keys stored here.
    pub fn listener_table(&self) -> &ListenerTable {
        &self.listeners
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Operations still running (user commands, refresh rounds, listen searches).
    pub fn running_operations(&self) -> usize {
        self.operations.len()
    }

    /// Requests of ours awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Messages waiting for fragments.
    pub fn partial_messages(&self) -> usize {
        self.partials.len()
    }

    /// Known contacts of both families, for saving state.
    pub fn contacts(&self) -> Vec<(NodeId, SocketAddr)> {
        self.tables.contacts()
    }

    /// Permanent puts kept alive: key and value.
    pub fn permanent_puts(&self) -> impl Iterator<Item = (&Id, &Value)> {
        self.kept.iter().map(|((key, _), k)| (key, &k.value))
    }

    /// Puts a permanent value saved before a restart back: stored here at once, and put to
    /// the network in a refresh round as soon as the node has joined (when a bootstrap ends),
    /// or after [`RESTORED_PUT_DELAY`] at the latest. No events.
    pub fn restore_permanent_put(&mut self, now: Timestamp, key: Id, value: Value) -> Result<(), Refusal> {
        if let StoreOutcome::Refused(why) = self.store_value(now, key, value.clone(), Source::Local, now, true) {
            return Err(why);
        }
        let next_round = now + RESTORED_PUT_DELAY;
        self.kept.insert((key, value.id), KeptPut { value, next_round, running: None, awaiting_join: true });
        Ok(())
    }

    /// Stores a value saved before a restart back, with the expiry it had (a value already
    /// expired is refused). It goes through the same checks as any put (signature, limits).
    pub fn restore_value(
        &mut self,
        now: Timestamp,
        key: Id,
        value: Value,
        source: Source,
        expires: Timestamp,
    ) -> Result<(), Refusal> {
        if expires <= now {
            return Err(Refusal::Expired);
        }
        let id = value.id;
        if let StoreOutcome::Refused(why) = self.store_value(now, key, value, source, now, false) {
            return Err(why);
        }
        self.storage.set_expiry(&key, id, expires);
        Ok(())
    }

    /// The nodes a listen is subscribed at.
    pub fn listen_subscriptions(&self, listen: QueryId) -> Vec<SocketAddr> {
        self.listens.get(&listen).map(|l| l.nodes.keys().copied().collect()).unwrap_or_default()
    }

    /// Searches in flight, for invariant checks: (alpha, in flight) per lookup.
    pub fn lookup_parallelism(&self) -> impl Iterator<Item = Parallelism> + '_ {
        self.operations.values().flat_map(|op| op.search.parallelism())
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let request_due = self.requests.next_deadline();
        let operations = &self.operations;
        let wakeup = self.wakeups.earliest(|_, op| operations.contains_key(op));
        let mut earliest = [request_due, wakeup].into_iter().flatten().fold(self.next_maintenance, Timestamp::min);
        if let Some(t) = self.storage.next_expiry() {
            earliest = earliest.min(t);
        }
        for partial in self.partials.values() {
            earliest = earliest.min(partial.deadline());
        }
        for listen in self.listens.values() {
            if listen.search.is_none() {
                earliest = earliest.min(listen.next_search);
            }
            if let Some(t) = listen.cache.next_expiry() {
                earliest = earliest.min(t);
            }
            for sub in listen.nodes.values().filter(|s| !s.pending) {
                earliest = earliest.min(sub.renew_at);
            }
        }
        for kept in self.kept.values() {
            earliest = earliest.min(kept.next_round);
        }
        Some(earliest)
    }

    /// The stall timeout searches use now, from measured round trips.
    pub fn stall_timeout(&self) -> Duration {
        self.rtt.timeout(self.config.stall_deviations, self.config.min_stall_timeout, self.config.lookup.stall_timeout)
    }

    // ---------------------------------------------------------------- commands

    fn new_query_id(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    fn want(&self) -> Option<Want> {
        self.tables.dual_stack().then_some(Want { v4: true, v6: true })
    }

    fn start_operation(
        &mut self,
        kind: Kind,
        target: Id,
        request: Request,
        extra_seeds: &[(NodeId, SocketAddr)],
    ) -> QueryId {
        let id = self.new_query_id();
        let search = Search::start(&self.tables, target, &self.config.lookup, extra_seeds);
        self.operations.insert(id, Operation { kind, request, search, awaiting: 0 });
        id
    }

    /// Joins the network: asks each router for nodes close to our own ID, then searches our
    /// ID. `contacts` are known nodes (from saved state) used as search seeds; they enter the
    /// routing table once they answer. Emits `Finished { Closest }` when done.
    pub fn bootstrap(&mut self, now: Timestamp, routers: &[SocketAddr], contacts: &[(NodeId, SocketAddr)]) -> QueryId {
        let own = self.config.node_id;
        let request = Request::Find { target: own, want: self.want() };
        let op = self.start_operation(Kind::Bootstrap, own, request.clone(), contacts);
        let families = self.tables.enabled();
        for router in routers.iter().filter(|r| families.contains(&Family::of(r))) {
            if self.send_request(now, *router, None, request.clone(), Vec::new(), 1, Purpose::Router { op }).is_ok() {
                self.operations.get_mut(&op).expect("just created").awaiting += 1;
            }
        }
        self.drive_operation(now, op);
        op
    }

    /// Pings one node. Emits `Finished { Pong }` or `Finished { Failed }`.
    pub fn ping(&mut self, now: Timestamp, addr: SocketAddr) -> QueryId {
        let op = self.new_query_id();
        let operation = Operation { kind: Kind::Ping, request: Request::Ping, search: Search::default(), awaiting: 0 };
        self.operations.insert(op, operation);
        let attempts = self.config.request_attempts;
        let sent = if self.tables.reaches(&addr) {
            self.send_request(now, addr, None, Request::Ping, Vec::new(), attempts, Purpose::Ping { op })
        } else {
            Err(QueryError::NoContacts)
        };
        match sent {
            Ok(()) => self.operations.get_mut(&op).expect("just created").awaiting += 1,
            Err(e) => self.finish(now, op, Outcome::Failed(e)),
        }
        op
    }

    /// Iterative search of the nodes closest to `target`. Emits `Finished { Closest }`.
    pub fn find_node(&mut self, now: Timestamp, target: Id) -> QueryId {
        let request = Request::Find { target, want: self.want() };
        let op = self.start_operation(Kind::FindNode, target, request, &[]);
        self.drive_operation(now, op);
        op
    }

    /// Gets the values at `key` that pass `filter`'s WHERE conditions (its SELECT is ignored:
    /// whole values are reported). Emits `Value` for each value (ours first, then as nodes answer;
    /// each once, again if it changes), then `Finished { Closest }`.
    pub fn get(&mut self, now: Timestamp, key: Id, filter: Query) -> QueryId {
        let filter = Query { select: Vec::new(), filters: filter.filters };
        let request = Request::Get { key, query: wire_query(&filter), want: self.want() };
        let op = self.start_operation(Kind::Get { filter: filter.clone(), seen: HashMap::new() }, key, request, &[]);
        let local: Vec<Value> = self.storage.get(&key, Some(&filter)).cloned().collect();
        for value in local {
            self.report_get_value(op, value);
        }
        self.drive_operation(now, op);
        op
    }

    /// Puts `value` at `key`: stores it here, then at the nodes closest to the key. A value id
    /// of 0 is replaced by a random one (read it from `Outcome::Stored`). A `permanent` value is
    /// kept alive until [`Node::cancel_put`]; otherwise it lives as long as its type says.
    /// Emits `Finished { Stored }`.
    pub fn put(&mut self, now: Timestamp, key: Id, mut value: Value, permanent: bool) -> QueryId {
        if value.id == INVALID_VALUE_ID {
            value.id = self.rng.gen_range(1..=u64::MAX);
        }
        self.store_value(now, key, value.clone(), Source::Local, now, permanent);
        let op = self.start_put(key, value.clone(), permanent, false);
        if permanent {
            self.kept
                .insert((key, value.id), KeptPut { value, next_round: NEVER, running: Some(op), awaiting_join: false });
        }
        self.drive_operation(now, op);
        op
    }

    fn start_put(&mut self, key: Id, value: Value, permanent: bool, background: bool) -> QueryId {
        // The probe: does the node hold this value, and at which seq?
        let probe = Query::select([Field::Id, Field::SeqNum]).and_where(FieldValue::Id(value.id));
        let request = Request::Get { key, query: Some(probe), want: self.want() };
        let state = PutState {
            key,
            value,
            permanent,
            background,
            storing: false,
            stored_at: Vec::new(),
            errors: Vec::new(),
            probes: HashMap::new(),
        };
        self.start_operation(Kind::Put(Box::new(state)), key, request, &[])
    }

    /// Stops keeping a permanent value alive and removes our own copy (listeners hear it
    /// expired). Other nodes keep theirs until it expires. Whether the put was permanent.
    pub fn cancel_put(&mut self, now: Timestamp, key: Id, value_id: ValueId) -> bool {
        let Some(kept) = self.kept.remove(&(key, value_id)) else { return false };
        if let Some(op) = kept.running {
            self.operations.remove(&op);
        }
        if self.storage.get_stored(&key, value_id).is_some_and(|s| s.source == Source::Local) {
            if let Some(value) = self.storage.remove(&key, value_id) {
                self.on_change(now, key, Change::Expired(vec![value]));
            }
        }
        true
    }

    /// Listens to `key`: emits `Value { expired: false }` for every value stored there that passes
    /// `filter`'s WHERE conditions (those present now, then new and edited ones) and
    /// `Value { expired: true }` when one is gone, until [`Node::cancel_listen`].
    pub fn listen(&mut self, now: Timestamp, key: Id, filter: Query) -> QueryId {
        let listen = self.new_query_id();
        let socket_id = loop {
            let candidate: u32 = self.rng.gen_range(1..=u32::MAX);
            if !self.sockets.contains_key(&candidate) {
                break candidate;
            }
        };
        let filter = Query { select: Vec::new(), filters: filter.filters };
        let mut state = ListenState {
            key,
            wire_query: wire_query(&filter),
            filter,
            socket_id,
            cache: ValueCache::new(self.config.max_listen_values),
            nodes: BTreeMap::new(),
            search: None,
            next_search: now,
        };
        let local: Vec<(Value, Option<Timestamp>)> = self
            .storage
            .get(&key, Some(&state.filter))
            .filter_map(|v| self.storage.get_stored(&key, v.id).map(|s| (v.clone(), s.expires)))
            .collect();
        for (value, expires) in local {
            let changes = state.cache.add(value, Holder::Local, expires.unwrap_or(NEVER), now);
            self.report_changes(listen, changes);
        }
        self.sockets.insert(socket_id, listen);
        self.listens.insert(listen, state);
        self.start_listen_search(now, listen);
        listen
    }

    /// Stops a listen. Storing nodes forget the subscription when it is not renewed.
    pub fn cancel_listen(&mut self, listen: QueryId) -> bool {
        let Some(state) = self.listens.remove(&listen) else { return false };
        self.sockets.remove(&state.socket_id);
        if let Some(search) = state.search {
            self.operations.remove(&search);
        }
        true
    }

    /// Forgets a running command (a listen or permanent put is cancelled as such); late answers
    /// are ignored.
    pub fn cancel(&mut self, now: Timestamp, query: QueryId) {
        if self.cancel_listen(query) {
            return;
        }
        if let Some(Operation { kind: Kind::Put(state), .. }) = self.operations.get(&query) {
            let (key, id) = (state.key, state.value.id);
            if self.kept.get(&(key, id)).is_some_and(|k| k.running == Some(query)) {
                self.cancel_put(now, key, id);
            }
        }
        self.operations.remove(&query);
    }

    fn start_listen_search(&mut self, now: Timestamp, listen: QueryId) {
        let Some(state) = self.listens.get(&listen) else { return };
        let (key, query) = (state.key, state.wire_query.clone());
        let request = Request::Get { key, query, want: self.want() };
        let op = self.start_operation(Kind::ListenSearch { listen }, key, request, &[]);
        if let Some(state) = self.listens.get_mut(&listen) {
            state.search = Some(op);
        }
        self.drive_operation(now, op);
    }

    // ---------------------------------------------------------------- inputs

    /// Handles one received datagram.
    pub fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        self.counters.datagrams_received += 1;
        self.counters.bytes_received += datagram.len() as u64;
        if !self.tables.reaches(&from) || from.port() == 0 {
            self.counters.dropped += 1;
            return;
        }
        let message = match Message::decode(datagram) {
            Ok(message) => {
                self.counters.messages.received(&message.body, datagram.len());
                message
            }
            Err(error) => {
                match error.reply(self.config.node_id) {
                    Some(reply) if self.limiter.allow(now, from.ip()) => {
                        self.counters.errors_sent += 1;
                        self.send(from, reply);
                    }
                    _ => self.counters.dropped += 1,
                }
                return;
            }
        };
        if message.network != self.config.network {
            self.counters.dropped += 1;
            return;
        }
        match message.body {
            Body::ValueParts(parts) => self.on_parts(now, from, message.tid, parts),
            _ if message.awaits_parts() => self.on_fragmented(now, from, message),
            _ => self.dispatch(now, from, message),
        }
    }

    /// Handles expired requests and timers. Call at the time [`Node::poll_timeout`] gave.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(tx) = self.requests.pop_due(now) {
            let Some(request) = self.requests.get_mut(tx) else { continue };
            if request.attempts_left > 0 {
                request.attempts_left -= 1;
                request.wait *= 2;
                request.deadline = now + request.wait;
                let (to, datagrams) = (request.to, request.datagrams.clone());
                self.requests.reschedule(tx);
                for (kind, payload) in datagrams {
                    self.transmit(to, kind, payload);
                }
                continue;
            }
            let Some(request) = self.requests.remove(tx) else { continue };
            self.counters.requests_timed_out += 1;
            if let (Some(id), Some(table)) = (request.node_id, self.tables.get_mut(Family::of(&request.to))) {
                table.note_failure(&id, request.to, now);
            }
            let touched = request.purpose.operation();
            self.request_failed(now, request, QueryError::Timeout);
            if let Some(op) = touched {
                self.drive_operation(now, op);
            }
        }
        // Due wake-ups only ask for the lookups to be stepped, which happens below.
        while self.wakeups.pop_due(now).is_some() {}
        for (key, values) in self.storage.expire(now) {
            self.on_change(now, key, Change::Expired(values));
        }
        self.partials.retain(|_, p| p.deadline() > now);
        self.step_listens(now);
        self.step_kept(now);
        if now >= self.next_maintenance {
            self.maintain(now);
        }
        self.drive(now);
    }

    fn maintain(&mut self, now: Timestamp) {
        self.next_maintenance = now + self.config.maintenance_interval;
        self.tokens.maybe_rotate(now, &mut self.rng);
        self.listeners.expire(now);
        self.shrink_buffers();
        for target in self.tables.take_refresh_targets(now, &mut self.rng) {
            let request = Request::Find { target, want: self.want() };
            self.start_operation(Kind::BucketRefresh, target, request, &[]);
        }
    }

    fn shrink_buffers(&mut self) {
        self.requests.shrink();
        let operations = &self.operations;
        self.wakeups.retain(|_, op| operations.contains_key(op));
        self.transmits.shrink_to_fit();
        self.events.shrink_to_fit();
    }

    /// Listens: expire cached values, renew subscriptions, search again when due.
    fn step_listens(&mut self, now: Timestamp) {
        let ids: Vec<QueryId> = self.listens.keys().copied().collect();
        for listen in ids {
            let Some(state) = self.listens.get_mut(&listen) else { continue };
            let changes = state.cache.expire(now);
            let search_due = state.search.is_none() && state.next_search <= now;
            self.report_changes(listen, changes);
            if search_due {
                self.start_listen_search(now, listen);
            }
            self.renew_subscriptions(now, listen);
        }
    }

    /// Permanent puts: start the refresh rounds that are due.
    fn step_kept(&mut self, now: Timestamp) {
        let due: Vec<(Id, ValueId)> =
            self.kept.iter().filter(|(_, k)| k.running.is_none() && k.next_round <= now).map(|(k, _)| *k).collect();
        for (key, id) in due {
            let value = self.kept[&(key, id)].value.clone();
            // Our own copy is permanent; make sure it is still there (a restart, an eviction).
            if self.storage.get_stored(&key, id).is_none() {
                self.store_value(now, key, value.clone(), Source::Local, now, true);
            }
            let op = self.start_put(key, value, true, true);
            if let Some(kept) = self.kept.get_mut(&(key, id)) {
                kept.running = Some(op);
                kept.next_round = NEVER;
                kept.awaiting_join = false;
            }
        }
    }

    // ---------------------------------------------------------------- fragments

    fn on_fragmented(&mut self, now: Timestamp, from: SocketAddr, message: Message) {
        let key = (from, message.tid);
        let is_reply = matches!(message.body, Body::Reply(_) | Body::ListenerPush(_));
        // Like OpenDHT: fragments of a reply only for a request we made; of a request only
        // within the rate limit.
        let expected = if is_reply {
            self.requests.awaits(message.tid, from)
        } else {
            self.partials.get(&key).is_some_and(|p| p.header.is_none()) || self.allow_request(now, from)
        };
        let existing_header = self.partials.get(&key).is_some_and(|p| p.header.is_some());
        if !expected || existing_header || (!self.partials.contains_key(&key) && self.partials_full()) {
            self.counters.dropped += 1;
            return;
        }
        let slots = message.value_slots().unwrap_or(&[]);
        let Ok(mut reassembly) = Reassembly::new(slots, self.config.reassembly) else {
            self.counters.dropped += 1;
            self.partials.remove(&key);
            return;
        };
        let mut partial = self.partials.remove(&key).unwrap_or(Partial {
            header: None,
            early: Vec::new(),
            early_bytes: 0,
            started: now,
            last: now,
        });
        for parts in partial.early.drain(..) {
            let _ = reassembly.add(&parts);
        }
        partial.early_bytes = 0;
        partial.last = now;
        if reassembly.is_complete() {
            self.complete(now, from, message, reassembly);
        } else {
            partial.header = Some((message, reassembly));
            self.partials.insert(key, partial);
        }
    }

    fn partials_full(&self) -> bool {
        self.partials.len() >= self.config.max_partial_messages
    }

    fn on_parts(&mut self, now: Timestamp, from: SocketAddr, tid: u32, parts: ValueParts) {
        let key = (from, tid);
        if parts.fragments.is_empty() || parts.fragments.values().any(|f| f.data.is_empty()) {
            self.counters.dropped += 1;
            return;
        }
        if !self.partials.contains_key(&key) {
            if self.partials_full() || !self.allow_request(now, from) {
                self.counters.dropped += 1;
                return;
            }
            let fresh = Partial { header: None, early: Vec::new(), early_bytes: 0, started: now, last: now };
            self.partials.insert(key, fresh);
        }
        let partial = self.partials.get_mut(&key).expect("present");
        partial.last = now;
        match &mut partial.header {
            Some((_, reassembly)) => {
                if reassembly.add(&parts).is_err() {
                    self.counters.dropped += 1;
                }
                if reassembly.is_complete() {
                    let (message, reassembly) =
                        self.partials.remove(&key).and_then(|p| p.header).expect("complete header");
                    self.complete(now, from, message, reassembly);
                }
            }
            None => {
                let bytes: usize = parts.fragments.values().map(|f| f.data.len()).sum();
                if partial.early.len() >= RX_MAX_EARLY_PARTS || partial.early_bytes + bytes > RX_MAX_EARLY_BYTES {
                    self.partials.remove(&key);
                    self.counters.dropped += 1;
                    return;
                }
                partial.early_bytes += bytes;
                partial.early.push(parts);
            }
        }
    }

    fn complete(&mut self, now: Timestamp, from: SocketAddr, mut message: Message, reassembly: Reassembly) {
        let values: Vec<ValueSlot> =
            reassembly.into_values().unwrap_or_default().into_iter().map(ValueSlot::Value).collect();
        match &mut message.body {
            Body::Request { request: Request::Put(p), .. } => p.values = values,
            Body::Request { request: Request::Update(u), .. } => u.values = values,
            Body::Reply(r) | Body::ListenerPush(r) => r.values = values,
            _ => {}
        }
        self.dispatch_checked(now, from, message);
    }

    fn allow_request(&mut self, now: Timestamp, from: SocketAddr) -> bool {
        let allowed = self.limiter.allow(now, from.ip());
        if !allowed {
            self.counters.rate_limited += 1;
        }
        allowed
    }

    // ---------------------------------------------------------------- dispatch

    fn dispatch(&mut self, now: Timestamp, from: SocketAddr, message: Message) {
        if matches!(message.body, Body::Request { .. }) && !self.allow_request(now, from) {
            return;
        }
        self.dispatch_checked(now, from, message);
    }

    /// Handles a whole message whose request (if it is one) passed the rate limit.
    fn dispatch_checked(&mut self, now: Timestamp, from: SocketAddr, message: Message) {
        let is_client = message.is_client;
        match message.body {
            Body::Request { id, request } => {
                self.counters.requests_received += 1;
                if id == self.config.node_id {
                    self.counters.dropped += 1;
                    return;
                }
                self.handle_request(now, from, message.tid, id, request, is_client);
            }
            Body::Reply(reply) => {
                self.counters.replies_received += 1;
                if let Some(op) = self.handle_reply(now, from, message.tid, reply, is_client) {
                    self.drive_operation(now, op);
                }
            }
            Body::Error { code, message: text, .. } => {
                self.counters.errors_received += 1;
                if let Some(op) = self.handle_error(now, from, message.tid, code, text) {
                    self.drive_operation(now, op);
                }
            }
            // We always subscribe with `ve: 1`; legacy pushes are not for us.
            Body::ListenerPush(_) | Body::ValueParts(_) => self.counters.dropped += 1,
        }
    }

    fn take_request(&mut self, from: SocketAddr, tid: u32) -> Option<SentRequest> {
        self.requests.take_answered(tid, from)
    }

    fn handle_reply(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tid: u32,
        reply: Reply,
        is_client: bool,
    ) -> Option<QueryId> {
        let Some(request) = self.take_request(from, tid) else {
            self.counters.dropped += 1;
            return None;
        };
        let touched = request.purpose.operation();
        // Only first attempts measure the round trip.
        if request.wait == self.config.request_timeout || matches!(request.purpose, Purpose::Lookup { .. }) {
            self.rtt.observe(now.saturating_since(request.sent_at));
            self.tables.note_round_trip(&reply.id, now.saturating_since(request.sent_at));
        }
        let family = Family::of(&from);
        if let Some(old) = request.node_id.filter(|id| *id != reply.id) {
            if let Some(table) = self.tables.get_mut(family) {
                table.note_failure(&old, from, now);
            }
        }
        if !is_client && reply.id != self.config.node_id {
            let table = self.tables.get_mut(family).expect("checked in handle_datagram");
            if let InsertOutcome::Cached { ping: Some(old) } = table.insert_responded(reply.id, from, now) {
                if !self.requests.any_to(old.addr()) {
                    let _ =
                        self.send_request(now, old.addr(), Some(old.id), Request::Ping, Vec::new(), 1, Purpose::Verify);
                }
            }
        }
        match request.purpose {
            Purpose::Verify => {}
            Purpose::Ping { op } => self.finish(now, op, Outcome::Pong { id: reply.id, addr: from }),
            Purpose::Router { op } => {
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.awaiting -= 1;
                    let own = self.config.node_id;
                    for fl in operation.search.lookups_mut() {
                        let nodes = if fl.family == Family::V4 { &reply.nodes4 } else { &reply.nodes6 };
                        fl.lookup.add_candidates(nodes.iter().copied().filter(|(id, _)| *id != own));
                        // The router itself is a node too (in a small network, maybe the only one).
                        if fl.family == family && reply.id != own && !is_client {
                            fl.lookup.add_candidates([(reply.id, from)]);
                        }
                    }
                }
            }
            Purpose::Put { op } | Purpose::Refresh { op, .. } => {
                if let Some(Operation { kind: Kind::Put(state), awaiting, .. }) = self.operations.get_mut(&op) {
                    *awaiting -= 1;
                    state.stored_at.push((reply.id, from));
                }
            }
            Purpose::Listen { listen } => {
                let renewal = self.config.listen_renewal;
                if let Some(sub) = self.listens.get_mut(&listen).and_then(|l| l.nodes.get_mut(&from)) {
                    sub.pending = false;
                    sub.renew_at = now + renewal;
                    if !reply.token.is_empty() {
                        sub.token = reply.token;
                    }
                }
            }
            Purpose::Lookup { op, family } => {
                if let Some(asked) = request.node_id.filter(|id| *id != reply.id) {
                    if let Some(operation) = self.operations.get_mut(&op) {
                        operation.search.on_failure(family, &asked);
                    }
                    return touched;
                }
                self.on_lookup_reply(now, op, family, from, reply);
            }
        }
        touched
    }

    fn on_lookup_reply(&mut self, now: Timestamp, op: QueryId, family: Family, from: SocketAddr, reply: Reply) {
        let own = self.config.node_id;
        let Some(operation) = self.operations.get_mut(&op) else { return };
        let has_token = !reply.token.is_empty();
        operation.search.on_answer(family, reply.id, own, (&reply.nodes4, &reply.nodes6), Some(&reply.token));
        if let Kind::Put(state) = &mut operation.kind {
            if let Some(seq) = probed_seq(&reply, state.value.id) {
                if state.probes.len() < 256 {
                    state.probes.insert(reply.id, seq);
                }
            }
        }
        if !has_token {
            return;
        }
        let values: Vec<Value> = reply
            .values
            .into_iter()
            .filter_map(|s| match s {
                ValueSlot::Value(v) => Some(v),
                _ => None,
            })
            .collect();
        match &operation.kind {
            Kind::Get { .. } => {
                for value in values {
                    self.report_get_value(op, value);
                }
            }
            Kind::ListenSearch { listen } => {
                let listen = *listen;
                let Some(state) = self.listens.get_mut(&listen) else { return };
                let mut changes = Vec::new();
                for value in values.into_iter().filter(|v| state.filter.matches(v)) {
                    let until = now + value.expiration();
                    changes.extend(state.cache.add(value, Holder::Node(from), until, now));
                }
                self.report_changes(listen, changes);
            }
            _ => {}
        }
    }

    fn report_get_value(&mut self, op: QueryId, value: Value) {
        let max = self.config.max_get_values;
        let Some(Operation { kind: Kind::Get { filter, seen }, .. }) = self.operations.get_mut(&op) else { return };
        if !filter.matches(&value) {
            return;
        }
        let digest = Id::sha1_of(&value.to_bytes());
        let fresh = match seen.get(&value.id) {
            Some(d) => *d != digest,
            None => seen.len() < max,
        };
        if fresh {
            seen.insert(value.id, digest);
            self.events.push_back(Event::Value { query: op, value, expired: false });
        }
    }

    fn report_changes(&mut self, listen: QueryId, changes: Vec<CacheChange>) {
        for (value, expired) in changes {
            self.events.push_back(Event::Value { query: listen, value, expired });
        }
    }

    fn handle_error(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tid: u32,
        code: u16,
        message: String,
    ) -> Option<QueryId> {
        let Some(request) = self.take_request(from, tid) else {
            self.counters.dropped += 1;
            return None;
        };
        let touched = request.purpose.operation();
        self.request_failed(now, request, QueryError::Remote { code, message });
        touched
    }

    fn request_failed(&mut self, now: Timestamp, request: SentRequest, error: QueryError) {
        match request.purpose {
            Purpose::Verify => {}
            Purpose::Ping { op } => self.finish(now, op, Outcome::Failed(error)),
            Purpose::Router { op } => {
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.awaiting -= 1;
                }
            }
            Purpose::Lookup { op, family } => {
                // Timeouts are the lookup's own business; errors fail the node.
                if let (QueryError::Remote { .. }, Some(id), Some(operation)) =
                    (&error, request.node_id, self.operations.get_mut(&op))
                {
                    operation.search.on_failure(family, &id);
                }
            }
            Purpose::Refresh { op, token } if is_code(&error, error_code::NOT_FOUND) => {
                // The node lost the value: put it again (OpenDHT does the same).
                let Some(Operation { kind: Kind::Put(state), .. }) = self.operations.get(&op) else { return };
                let (key, value) = (state.key, state.value.clone());
                let packed = pack_values(std::slice::from_ref(&value));
                let put = Request::Put(PutArgs { key, token, values: packed.slots, created: None });
                let attempts = self.config.request_attempts;
                let sent = self.send_request(
                    now,
                    request.to,
                    request.node_id,
                    put,
                    packed.parts,
                    attempts,
                    Purpose::Put { op },
                );
                if sent.is_err() {
                    if let Some(operation) = self.operations.get_mut(&op) {
                        operation.awaiting -= 1;
                    }
                }
            }
            Purpose::Put { op } | Purpose::Refresh { op, .. } => {
                if let Some(Operation { kind: Kind::Put(state), awaiting, .. }) = self.operations.get_mut(&op) {
                    *awaiting -= 1;
                    if let QueryError::Remote { code, message } = error {
                        state.errors.push((request.to, code, message));
                    }
                }
            }
            Purpose::Listen { listen } => {
                // A refused or silent subscription: drop it and search again soon (a 401 means
                // our token is stale; the search brings a fresh one).
                if let Some(state) = self.listens.get_mut(&listen) {
                    state.nodes.remove(&request.to);
                    state.next_search = state.next_search.min(now + LISTEN_RETRY);
                }
            }
        }
    }

    fn finish(&mut self, now: Timestamp, op: QueryId, outcome: Outcome) {
        let Some(operation) = self.operations.remove(&op) else { return };
        match operation.kind {
            Kind::BucketRefresh => return,
            Kind::ListenSearch { listen } => {
                if let Some(state) = self.listens.get_mut(&listen) {
                    if state.search == Some(op) {
                        state.search = None;
                    }
                }
                return;
            }
            Kind::Bootstrap => {
                self.refresh_sparse_buckets(now);
                // Joined (again): permanent values restored from saved state, or whose last
                // round reached nobody, go out now.
                for kept in self.kept.values_mut().filter(|k| k.awaiting_join) {
                    kept.next_round = kept.next_round.min(now);
                }
            }
            Kind::Put(state) => {
                if state.permanent {
                    let reached = matches!(&outcome, Outcome::Stored { stored_at, .. } if !stored_at.is_empty());
                    let expiration = state.value.expiration();
                    let interval = expiration.saturating_sub(self.config.reannounce_margin).max(expiration / 2);
                    let retry = (self.config.reannounce_margin / 3).max(Duration::from_secs(1));
                    if let Some(kept) = self.kept.get_mut(&(state.key, state.value.id)) {
                        if kept.running == Some(op) {
                            kept.running = None;
                            kept.next_round = now + if reached { interval } else { retry.min(interval) };
                            // Reached nobody: go again as soon as a bootstrap ends, if earlier.
                            kept.awaiting_join = !reached;
                        }
                    }
                }
                if state.background {
                    return;
                }
            }
            _ => {}
        }
        self.events.push_back(Event::Finished { query: op, outcome });
    }

    /// Steps every search: sends what they ask for, and finishes operations that are done.
    fn drive(&mut self, now: Timestamp) {
        let ids: Vec<QueryId> = self.operations.keys().copied().collect();
        for op in ids {
            self.drive_operation(now, op);
        }
    }

    fn drive_operation(&mut self, now: Timestamp, op: QueryId) {
        let stall_timeout = self.stall_timeout();
        let Some(operation) = self.operations.get_mut(&op) else { return };
        // A bootstrap lookup with no seeds waits for the routers to name some nodes.
        let waiting_for_routers = operation.awaiting > 0;
        let sends = operation.search.step(now, stall_timeout, None, waiting_for_routers);
        if !sends.is_empty() {
            self.wakeups.push(now + stall_timeout, op);
        }
        for (family, id, addr) in sends {
            let request = self.operations[&op].request.clone();
            if self.send_request(now, addr, Some(id), request, Vec::new(), 1, Purpose::Lookup { op, family }).is_err() {
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.search.on_failure(family, &id);
                }
            }
        }
        let Some(operation) = self.operations.get(&op) else { return };
        if operation.awaiting > 0 || !operation.search.is_finished() {
            return;
        }
        let (store_phase, listen) = match &operation.kind {
            Kind::Put(state) => (!state.storing, None),
            Kind::ListenSearch { listen } => (false, Some(*listen)),
            _ => (false, None),
        };
        if store_phase && self.store_at_closest(now, op) {
            return;
        }
        if let Some(listen) = listen {
            self.subscribe(now, listen, op);
        }
        let operation = &self.operations[&op];
        let (nodes, stats) = operation.search.summary();
        let no_contacts = nodes.is_empty() && stats.requests == 0;
        let outcome = match &operation.kind {
            Kind::Put(_) if no_contacts => Outcome::Failed(QueryError::NoContacts),
            Kind::Put(state) => Outcome::Stored {
                value_id: state.value.id,
                stored_at: state.stored_at.clone(),
                errors: state.errors.clone(),
                stats,
            },
            Kind::FindNode | Kind::Get { .. } if no_contacts => Outcome::Failed(QueryError::NoContacts),
            _ => Outcome::Closest { nodes, stats },
        };
        self.finish(now, op, outcome);
    }

    /// The closest nodes of each family that answered a search with a token, and the seq of
    /// the value each already holds (a put's probe).
    fn closest_with_tokens(&self, op: QueryId, per_family: usize) -> Vec<(NodeId, SocketAddr, Vec<u8>, Option<u16>)> {
        let Some(operation) = self.operations.get(&op) else { return Vec::new() };
        let probes = match &operation.kind {
            Kind::Put(state) => Some(&state.probes),
            _ => None,
        };
        let held = |id: &NodeId| probes.and_then(|p| p.get(id).copied());
        let closest = operation.search.closest_with_tokens(per_family);
        closest.into_iter().map(|(id, addr, token)| (id, addr, token, held(&id))).collect()
    }

    /// The store phase of a put: `put` where the value is missing or older, `refresh` where it
    /// is there. Returns whether requests went out.
    fn store_at_closest(&mut self, now: Timestamp, op: QueryId) -> bool {
        let targets = self.closest_with_tokens(op, self.config.lookup.k);
        let Some(Operation { kind: Kind::Put(state), .. }) = self.operations.get_mut(&op) else { return false };
        state.storing = true;
        let (key, value) = (state.key, state.value.clone());
        let packed = pack_values(std::slice::from_ref(&value));
        let attempts = self.config.request_attempts;
        let mut sent = 0;
        for (id, addr, token, held) in targets {
            let result = if held.is_some_and(|seq| seq >= value.seq) {
                let refresh = Request::Refresh { key, token: token.clone(), value_id: value.id };
                self.send_request(now, addr, Some(id), refresh, Vec::new(), attempts, Purpose::Refresh { op, token })
            } else {
                let put = Request::Put(PutArgs { key, token, values: packed.slots.clone(), created: None });
                self.send_request(now, addr, Some(id), put, packed.parts.clone(), attempts, Purpose::Put { op })
            };
            if result.is_ok() {
                sent += 1;
            }
        }
        if let Some(operation) = self.operations.get_mut(&op) {
            operation.awaiting += sent;
        }
        sent > 0
    }

    /// After a listen's search: subscribe at the closest nodes of each family.
    fn subscribe(&mut self, now: Timestamp, listen: QueryId, op: QueryId) {
        let targets = self.closest_with_tokens(op, self.config.listen_nodes);
        let research = self.config.listen_research;
        let Some(state) = self.listens.get_mut(&listen) else { return };
        if state.search != Some(op) {
            return;
        }
        state.search = None;
        state.next_search = now + if targets.is_empty() { LISTEN_RETRY } else { research };
        let mut nodes = BTreeMap::new();
        for (_, addr, token, _) in targets {
            let sub = match state.nodes.remove(&addr) {
                Some(mut old) => {
                    old.token = token;
                    old
                }
                None => Subscription { token, renew_at: now, pending: false },
            };
            nodes.insert(addr, sub);
        }
        state.nodes = nodes;
        self.renew_subscriptions(now, listen);
    }

    fn renew_subscriptions(&mut self, now: Timestamp, listen: QueryId) {
        let Some(state) = self.listens.get(&listen) else { return };
        let due: Vec<(SocketAddr, Vec<u8>)> = state
            .nodes
            .iter()
            .filter(|(_, s)| !s.pending && s.renew_at <= now)
            .map(|(a, s)| (*a, s.token.clone()))
            .collect();
        let (key, socket_id, query) = (state.key, state.socket_id, state.wire_query.clone());
        let attempts = self.config.request_attempts;
        for (addr, token) in due {
            let args = ListenArgs { key, token, socket_id, version: Some(1), query: query.clone() };
            let sent = self.send_request(
                now,
                addr,
                None,
                Request::Listen(args),
                Vec::new(),
                attempts,
                Purpose::Listen { listen },
            );
            if let Some(sub) = self.listens.get_mut(&listen).and_then(|l| l.nodes.get_mut(&addr)) {
                match sent {
                    Ok(()) => sub.pending = true,
                    Err(_) => sub.renew_at = now + Duration::from_secs(1),
                }
            }
        }
    }

    /// After joining, searches a random ID in every bucket holding fewer than k contacts.
    fn refresh_sparse_buckets(&mut self, now: Timestamp) {
        for family in self.tables.enabled() {
            let table = self.tables.get(family).expect("enabled");
            let targets = table.sparse_bucket_targets(&mut self.rng);
            for target in targets {
                let request = Request::Find { target, want: self.want() };
                let op = self.start_operation(Kind::BucketRefresh, target, request, &[]);
                self.drive_operation(now, op);
            }
        }
    }

    // ---------------------------------------------------------------- serving

    fn handle_request(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tid: u32,
        sender: NodeId,
        request: Request,
        sender_is_client: bool,
    ) {
        let family = Family::of(&from);
        if !sender_is_client {
            let table = self.tables.get_mut(family).expect("checked in handle_datagram");
            let known = table.note_query(&sender, from, now);
            if !known
                && table.would_accept(&sender, from, now)
                && self.verify_allowed(now)
                && !self.requests.any_to(from)
            {
                let _ = self.send_request(now, from, Some(sender), Request::Ping, Vec::new(), 1, Purpose::Verify);
            }
        }
        let mut reply = Reply { id: self.config.node_id, requester: Some(from.ip()), ..Reply::default() };
        match request {
            Request::Ping => self.send(from, Message::reply(tid, reply)),
            Request::Find { target, want } => {
                reply.token = self.tokens.issue(from).to_vec();
                self.fill_nodes(&mut reply, &target, want, family);
                self.send(from, Message::reply(tid, reply));
            }
            Request::Get { key, query, want } => {
                reply.token = self.tokens.issue(from).to_vec();
                self.fill_nodes(&mut reply, &key, want, family);
                let mut budget = 0;
                let values: Vec<Value> = self
                    .storage
                    .get(&key, query.as_ref())
                    .take_while(|v| {
                        let fits = budget == 0 || budget + v.size() <= MAX_MESSAGE_VALUE_SIZE;
                        budget += v.size().max(1);
                        fits
                    })
                    .cloned()
                    .collect();
                let mut parts = Vec::new();
                match query.filter(|q| !q.select.is_empty()) {
                    Some(q) if !values.is_empty() => reply.fields = Some(FieldValues::of(&q, &values)),
                    _ => {
                        let packed = pack_values(&values);
                        reply.values = packed.slots;
                        parts = packed.parts;
                    }
                }
                self.send_with_parts(from, Message::reply(tid, reply), parts);
            }
            Request::Put(put) => self.serve_put(now, from, tid, put, reply),
            Request::Listen(args) => {
                if !self.tokens.is_valid(from, &args.token) {
                    self.reply_error(from, tid, error_code::UNAUTHORIZED, "listen with wrong token");
                    return;
                }
                let listener = Listener {
                    node_id: sender,
                    addr: from,
                    socket_id: args.socket_id,
                    query: args.query,
                    version: args.version.unwrap_or(0),
                    expires: now,
                };
                match self.listeners.listen(args.key, listener.clone(), now) {
                    ListenOutcome::Refused(why) => {
                        self.reply_error(from, tid, error_code::NON_AUTHORITATIVE_INFORMATION, &why.to_string());
                        return;
                    }
                    ListenOutcome::Added => {
                        let values: Vec<Value> =
                            self.storage.get(&args.key, listener.query.as_ref()).cloned().collect();
                        if !values.is_empty() {
                            self.push_values(&listener, args.key, values);
                        }
                    }
                    ListenOutcome::Renewed => {}
                }
                reply.token = self.tokens.issue(from).to_vec();
                self.send(from, Message::reply(tid, reply));
            }
            Request::Refresh { key, token, value_id } => {
                if !self.tokens.is_valid(from, &token) {
                    self.reply_error(from, tid, error_code::UNAUTHORIZED, "refresh with wrong token");
                    return;
                }
                match self.storage.refresh(&key, value_id, now) {
                    RefreshOutcome::Refreshed => {
                        self.on_change(now, key, Change::Refreshed(value_id));
                        reply.value_id = Some(value_id);
                        self.send(from, Message::reply(tid, reply));
                    }
                    RefreshOutcome::UnknownKey | RefreshOutcome::UnknownValue => {
                        self.reply_error(from, tid, error_code::NOT_FOUND, "storage not found");
                    }
                }
            }
            Request::Update(update) => {
                self.on_update(now, from, update);
                self.send(from, Message::reply(tid, reply));
            }
        }
    }

    fn serve_put(&mut self, now: Timestamp, from: SocketAddr, tid: u32, put: PutArgs, reply: Reply) {
        if !self.tokens.is_valid(from, &put.token) {
            self.reply_error(from, tid, error_code::UNAUTHORIZED, "put with wrong token");
            return;
        }
        let values: Vec<Value> = put
            .values
            .into_iter()
            .filter_map(|s| match s {
                ValueSlot::Value(v) => Some(v),
                _ => None,
            })
            .collect();
        if values.iter().any(|v| v.id == INVALID_VALUE_ID) {
            self.reply_error(from, tid, error_code::NON_AUTHORITATIVE_INFORMATION, "put with invalid value id");
            return;
        }
        let inside = self.within_store_radius(&put.key, Family::of(&from));
        let created = self.created_at(put.created, now);
        for value in values {
            let value_id = value.id;
            if !inside {
                self.counters.puts_outside_radius += 1;
            } else if let Ok(value) = store_policy::apply(value, from) {
                self.store_value(now, put.key, value, Source::Remote(from.ip()), created, false);
            } else {
                self.counters.values_refused += 1;
            }
            // Answered either way, as OpenDHT does (a refusal would make the requester look
            // elsewhere and spread the value further).
            self.send(from, Message::reply(tid, Reply { value_id: Some(value_id), ..reply.clone() }));
        }
    }

    /// The creation time of a put: its `c` when we know Unix time, else now.
    fn created_at(&self, created: Option<i64>, now: Timestamp) -> Timestamp {
        match (created, self.config.unix_time_at_zero) {
            (Some(c), Some(zero)) => {
                let since_zero = u64::try_from(c).unwrap_or(0).saturating_sub(zero);
                (Timestamp::ZERO + Duration::from_secs(since_zero)).min(now)
            }
            _ => now,
        }
    }

    /// Whether we are among the `store_radius` nodes we know closest to `key` (or know too few
    /// nodes to tell): OpenDHT stores a put only then.
    fn within_store_radius(&self, key: &Id, family: Family) -> bool {
        let Some(table) = self.tables.get(family) else { return true };
        let closest = table.closest_nodes(key, self.config.store_radius);
        match closest.last() {
            Some((farthest, _)) if closest.len() >= self.config.lookup.k => {
                farthest.distance(key) >= self.config.node_id.distance(key)
            }
            _ => true,
        }
    }

    fn store_value(
        &mut self,
        now: Timestamp,
        key: Id,
        value: Value,
        source: Source,
        created: Timestamp,
        permanent: bool,
    ) -> StoreOutcome {
        let origin = Origin { source, created, permanent };
        let result = self.storage.store(key, value.clone(), origin, now, &*self.verifier);
        let mut evicted: BTreeMap<Id, Vec<Value>> = BTreeMap::new();
        for (k, v) in result.evicted {
            evicted.entry(k).or_default().push(v);
        }
        for (k, values) in evicted {
            self.on_change(now, k, Change::Expired(values));
        }
        match result.outcome {
            StoreOutcome::Stored { .. } => {
                self.counters.values_stored += 1;
                // The new value itself may have been evicted to make room.
                if self.storage.get_stored(&key, value.id).is_some() {
                    self.on_change(now, key, Change::New(value));
                }
            }
            StoreOutcome::Refreshed => self.on_change(now, key, Change::Refreshed(value.id)),
            StoreOutcome::Refused(_) => self.counters.values_refused += 1,
        }
        result.outcome
    }

    /// Tells remote listeners and our own listens about a change in our storage.
    fn on_change(&mut self, now: Timestamp, key: Id, change: Change) {
        let listeners: Vec<Listener> = self.listeners.of(&key).cloned().collect();
        for listener in &listeners {
            match &change {
                Change::New(value) if listener.wants(value) => {
                    self.push_values(listener, key, vec![value.clone()]);
                }
                Change::New(_) => {}
                Change::Refreshed(id) => self.push_ids(listener, vec![*id], Vec::new()),
                Change::Expired(values) => {
                    self.push_ids(listener, Vec::new(), values.iter().map(|v| v.id).collect());
                }
            }
        }
        let listens: Vec<QueryId> = self.listens.iter().filter(|(_, l)| l.key == key).map(|(id, _)| *id).collect();
        for listen in listens {
            let expires = |id: ValueId| self.storage.get_stored(&key, id).and_then(|s| s.expires).unwrap_or(NEVER);
            let state = self.listens.get_mut(&listen).expect("listed above");
            let changes = match &change {
                Change::New(value) if state.filter.matches(value) => {
                    state.cache.add(value.clone(), Holder::Local, expires(value.id), now)
                }
                Change::New(_) => Vec::new(),
                Change::Refreshed(id) => {
                    state.cache.refresh(*id, Holder::Local, expires(*id));
                    Vec::new()
                }
                Change::Expired(values) => {
                    values.iter().filter_map(|v| state.cache.remove(v.id, Holder::Local)).collect()
                }
            };
            self.report_changes(listen, changes);
        }
    }

    /// Sends values to a remote listener: `update` requests (`ve` ≥ 1) or legacy answers.
    fn push_values(&mut self, listener: &Listener, key: Id, values: Vec<Value>) {
        let token = self.tokens.issue(listener.addr).to_vec();
        for batch in update_batches(values) {
            self.counters.listener_pushes += 1;
            let packed = pack_values(&batch);
            if listener.version >= 1 {
                let update = UpdateArgs {
                    key: Some(key),
                    socket_id: listener.socket_id,
                    version: Some(1),
                    token: token.clone(),
                    values: packed.slots,
                    ..UpdateArgs::default()
                };
                self.send_push(listener.addr, Request::Update(update), packed.parts);
            } else {
                let reply = Reply {
                    id: self.config.node_id,
                    requester: Some(listener.addr.ip()),
                    token: token.clone(),
                    values: packed.slots,
                    ..Reply::default()
                };
                self.send_with_parts(listener.addr, Message::reply(listener.socket_id, reply), packed.parts);
            }
        }
    }

    /// Tells a remote listener which values were refreshed or expired.
    fn push_ids(&mut self, listener: &Listener, refreshed: Vec<ValueId>, expired: Vec<ValueId>) {
        self.counters.listener_pushes += 1;
        let token = self.tokens.issue(listener.addr).to_vec();
        if listener.version >= 1 {
            let update =
                UpdateArgs { socket_id: listener.socket_id, token, refreshed, expired, ..UpdateArgs::default() };
            self.send_push(listener.addr, Request::Update(update), Vec::new());
        } else {
            let push = Reply { id: self.config.node_id, token, refreshed, expired, ..Reply::default() };
            let mut message = Message::reply(listener.socket_id, Reply::default());
            message.body = Body::ListenerPush(push);
            self.send(listener.addr, message);
        }
    }

    /// A storing node pushes changes for one of our listens.
    fn on_update(&mut self, now: Timestamp, from: SocketAddr, update: UpdateArgs) {
        let Some(listen) = self.sockets.get(&update.socket_id).copied() else { return };
        let Some(state) = self.listens.get_mut(&listen) else { return };
        if update.key.is_some_and(|k| k != state.key) {
            return;
        }
        let Some(sub) = state.nodes.get_mut(&from) else { return };
        if !update.token.is_empty() {
            sub.token = update.token;
        }
        let holder = Holder::Node(from);
        let mut changes = Vec::new();
        for slot in update.values {
            if let ValueSlot::Value(value) = slot {
                if state.filter.matches(&value) {
                    let until = now + value.expiration();
                    changes.extend(state.cache.add(value, holder, until, now));
                }
            }
        }
        for id in update.refreshed {
            if let Some(expiration) = state.cache.expiration_of(id) {
                state.cache.refresh(id, holder, now + expiration);
            }
        }
        for id in update.expired {
            changes.extend(state.cache.remove(id, holder));
        }
        self.report_changes(listen, changes);
    }

    fn fill_nodes(&self, reply: &mut Reply, target: &Id, want: Option<Want>, family: Family) {
        let want = want.filter(|w| w.v4 || w.v6).unwrap_or(Want { v4: family == Family::V4, v6: family == Family::V6 });
        let k = self.config.routing.bucket_size;
        let closest = |f: Family| -> Vec<(NodeId, SocketAddr)> { self.tables.closest_nodes(f, target, k) };
        if want.v4 {
            reply.nodes4 = closest(Family::V4);
        }
        if want.v6 {
            reply.nodes6 = closest(Family::V6);
        }
    }

    fn reply_error(&mut self, to: SocketAddr, tid: u32, code: u16, text: &str) {
        self.counters.errors_sent += 1;
        let message = Message::error(tid, code, text, self.config.node_id);
        self.send(to, message);
    }

    fn verify_allowed(&mut self, now: Timestamp) -> bool {
        let (window_start, used) = &mut self.verify_budget;
        if now.saturating_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *used = 0;
        }
        if *used < self.config.verify_pings_per_second {
            *used += 1;
            true
        } else {
            false
        }
    }

    // ---------------------------------------------------------------- sending

    fn transmit(&mut self, to: SocketAddr, kind: MessageKind, payload: Vec<u8>) {
        self.counters.datagrams_sent += 1;
        self.counters.bytes_sent += payload.len() as u64;
        self.counters.messages.sent(kind, payload.len());
        self.transmits.push_back(Transmit { to, payload });
    }

    fn encode(&self, mut message: Message) -> Vec<u8> {
        message.network = self.config.network;
        message.is_client = self.config.is_client;
        message.to_bytes()
    }

    fn send(&mut self, to: SocketAddr, message: Message) {
        let kind = MessageKind::of(&message.body);
        if let Body::Error { code, .. } = message.body {
            self.counters.messages.error_sent(code);
        }
        let payload = self.encode(message);
        self.transmit(to, kind, payload);
    }

    /// A message and the fragments of its values, as datagrams.
    fn datagrams(&self, message: Message, parts: Vec<Vec<u8>>) -> Vec<(MessageKind, Vec<u8>)> {
        let tid = message.tid;
        let mut out = vec![(MessageKind::of(&message.body), self.encode(message))];
        let packed = PackedValues { slots: Vec::new(), parts };
        out.extend(packed.part_messages(tid).into_iter().map(|m| (MessageKind::VALUE_PARTS, self.encode(m))));
        out
    }

    fn send_with_parts(&mut self, to: SocketAddr, message: Message, parts: Vec<Vec<u8>>) {
        for (kind, payload) in self.datagrams(message, parts) {
            self.transmit(to, kind, payload);
        }
    }

    /// Sends an `update` to a remote listener. It is not tracked: the acknowledgement carries
    /// nothing (OpenDHT ignores it too), and thousands of listeners must not crowd our own
    /// requests out of the pending table. Acknowledgements count as dropped datagrams.
    fn send_push(&mut self, to: SocketAddr, request: Request, parts: Vec<Vec<u8>>) {
        let tid: u32 = self.rng.gen_range(1..=u32::MAX);
        let message = Message::request(tid, self.config.node_id, request);
        self.send_with_parts(to, message, parts);
    }

    /// Sends a request of ours. `attempts` > 1 sends it again (with its fragments) after
    /// `request_timeout`, doubling each time; searches retry through their [`Lookup`].
    #[allow(clippy::too_many_arguments)]
    fn send_request(
        &mut self,
        now: Timestamp,
        to: SocketAddr,
        node_id: Option<NodeId>,
        request: Request,
        parts: Vec<Vec<u8>>,
        attempts: u8,
        purpose: Purpose,
    ) -> Result<(), QueryError> {
        if self.requests.len() >= self.config.max_pending_requests {
            return Err(QueryError::Overloaded);
        }
        let rng = &mut self.rng;
        let tid = self.requests.free_id(|| rng.gen_range(1..=u32::MAX));
        let wait = match purpose {
            Purpose::Lookup { .. } | Purpose::Router { .. } => self.config.lookup.request_timeout,
            _ => self.config.request_timeout,
        };
        let datagrams = self.datagrams(Message::request(tid, self.config.node_id, request), parts);
        self.counters.requests_sent += 1;
        for (kind, payload) in &datagrams {
            self.transmit(to, *kind, payload.clone());
        }
        let attempts_left = attempts.saturating_sub(1);
        let datagrams = if attempts_left > 0 { datagrams } else { Vec::new() };
        let deadline = now + wait;
        self.requests
            .insert(tid, SentRequest { to, node_id, sent_at: now, deadline, attempts_left, wait, datagrams, purpose });
        Ok(())
    }
}

/// The query sent on the wire for a user's filter: its WHERE conditions but `seq`, which
/// OpenDHT nodes cannot read (they drop the request).
fn wire_query(filter: &Query) -> Option<Query> {
    let filters: Vec<FieldValue> =
        filter.filters.iter().filter(|c| !matches!(c, FieldValue::SeqNum(_))).cloned().collect();
    (!filters.is_empty()).then_some(Query { select: Vec::new(), filters })
}

/// The seq of value `id` in a probe answer (`fileds` rows, or whole values from nodes that
/// ignore SELECT).
fn probed_seq(reply: &Reply, id: ValueId) -> Option<u16> {
    if let Some(fields) = &reply.fields {
        for row in &fields.rows {
            let cell = |f: Field| fields.fields.iter().position(|x| *x == f).and_then(|i| row.get(i));
            if cell(Field::Id) == Some(&FieldValue::Id(id)) {
                return match cell(Field::SeqNum) {
                    Some(FieldValue::SeqNum(seq)) => Some(u16::try_from(*seq).unwrap_or(u16::MAX)),
                    _ => Some(0),
                };
            }
        }
    }
    reply.values.iter().find_map(|s| match s {
        ValueSlot::Value(v) if v.id == id => Some(v.seq),
        _ => None,
    })
}

fn is_code(error: &QueryError, code: u16) -> bool {
    matches!(error, QueryError::Remote { code: c, .. } if *c == code)
}

impl SansIoNode for Node {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        Node::handle_datagram(self, now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        Node::handle_timeout(self, now);
    }
    fn poll_timeout(&mut self) -> Option<Timestamp> {
        Node::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Node::poll_transmit(self)
    }
    fn bootstrap(&mut self, now: Timestamp, routers: &[SocketAddr], contacts: &[(NodeId, SocketAddr)]) -> QueryId {
        Node::bootstrap(self, now, routers, contacts)
    }
    fn has_no_contacts(&self) -> bool {
        self.tables.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node can move to another thread (the runtime drives it from a task).
    #[test]
    fn node_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Node>();
    }
}
