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
//!    (Kademlia's own from [`KademliaNode`](crate::kad::KademliaNode): `bootstrap`, `ping`, `find_node`; OpenDHT's:
//!    [`Node::get`], [`Node::put`], [`Node::listen`]) which return a [`QueryId`];
//!    [`Node::cancel_put`], [`Node::cancel_listen`] and [`Node::cancel`] stop them.
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
//! - **Searches** are [`Lookup`](crate::kad::Lookup)s (4 in flight, the 8 closest must answer) sending `find`
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

use rand::Rng;
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
use super::message_counts::{count_received, MessageCounts, MessageKind};
use super::query::{Field, FieldValue, FieldValues, Query};
use super::rate_limit::RateLimiter;
use super::storage::{Origin, RefreshOutcome, Refusal, Source, Storage, StoreOutcome};
use super::store_policy;
use super::token::TokenIssuer;
use super::value::{Value, ValueId, INVALID_VALUE_ID};
use super::value_cache::{CacheChange, Holder, ValueCache};
use super::verifier::SignatureVerifier;
use crate::kad::engine::{engine_and_wire, Answer, Answered, Engine, Network, OwnRequestFailed};
use crate::kad::operation_driver::{engine_accessors, NetworkKind, OperationDriver, OperationKind, StoreAt};
use crate::kad::sent_request::{NetworkPurpose, Purpose};
use crate::kad::{
    Closest, DeadlineMap, FamilyTables, Id, NodeId, Pong, QueryError, Scheduled, StoreRound, TrafficCounters,
};
use crate::node_io::{Family, QueryId, Transmit, TransmitQueue};
use crate::time::Timestamp;

/// An OpenDHT node. See the [namespace documentation](super) for how to drive it.
pub struct Node {
    config: Config,
    /// Operations, requests, routing tables and the generator every random choice comes from.
    engine: Engine<Kind, Outgoing, OpenDhtPurpose>,
    out: Outbox,
    storage: Storage,
    listeners: ListenerTable,
    verifier: Box<dyn SignatureVerifier>,
    tokens: TokenIssuer,
    limiter: RateLimiter,
    // The timed collections keep their earliest deadline at hand for `poll_timeout`.
    kept: DeadlineMap<(Id, ValueId), KeptPut>,
    listens: DeadlineMap<QueryId, ListenState>,
    sockets: HashMap<u32, QueryId>,
    partials: DeadlineMap<(SocketAddr, u32), Partial>,
    events: VecDeque<Event>,
    next_maintenance: Timestamp,
}

mod command_result;
mod fragments;
mod serving;
mod wire;
pub use command_result::{CommandResult, Stored};
use wire::{want, Outbox, Wire};

const NEVER: Timestamp = Timestamp::from_micros(u64::MAX);
/// Wait before a listen searches again after a failed subscription or an empty search.
const LISTEN_RETRY: Duration = Duration::from_secs(5);
/// A permanent put restored from saved state goes out when the node has joined, or after
/// this long if no bootstrap ends first.
pub const RESTORED_PUT_DELAY: Duration = Duration::from_secs(10);

/// Values, changes and results of commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// For a `get`: a value found (`expired` is false). For a `listen`: a value now stored at the
    /// key, or (`expired`) one no longer stored.
    Value {
        /// The `get` or `listen` it answers.
        query: QueryId,
        /// The value; a signed one passed the node's signature verifier.
        value: Value,
        /// True when a listen learns the value is no longer stored.
        expired: bool,
    },
    /// The command is over: which command it was and its result (listens are over only when
    /// cancelled, silently).
    Finished {
        /// The command that is over.
        query: QueryId,
        /// What it came to, typed for that command.
        result: CommandResult,
    },
}

/// Traffic and state counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams, requests and errors, as every node counts them.
    pub traffic: TrafficCounters,
    /// Requests dropped by the rate limit.
    pub rate_limited: u64,
    /// Values stored for a remote node's put.
    pub values_stored: u64,
    /// Values of remote puts refused (by the store policy or the storage limits).
    pub values_refused: u64,
    /// Values put to us while we are not among the nodes closest to their key (ignored).
    pub puts_outside_radius: u64,
    /// Datagrams sent to remote listeners (new values, refreshed or expired IDs).
    pub listener_pushes: u64,
    /// The same traffic by message kind and error code.
    pub messages: MessageCounts,
}

/// Why a request of OpenDHT's own operations was sent.
#[derive(Clone, Debug)]
pub(crate) enum OpenDhtPurpose {
    /// A `put` at the end of a put operation.
    Put { op: QueryId },
    /// A `refresh` at the end of a put operation; a 404 turns it into a `put` with `token`.
    Refresh { op: QueryId, token: Vec<u8> },
    /// A subscription of one of our listens.
    Listen { listen: QueryId },
}

impl NetworkPurpose for OpenDhtPurpose {
    fn operation(&self) -> Option<QueryId> {
        match self {
            OpenDhtPurpose::Put { op } | OpenDhtPurpose::Refresh { op, .. } => Some(*op),
            OpenDhtPurpose::Listen { .. } => None,
        }
    }
}

/// A request and the fragments of the values it carries (none for most).
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    request: Request,
    parts: Vec<Vec<u8>>,
}

impl Outgoing {
    fn whole(request: Request) -> Outgoing {
        Outgoing { request, parts: Vec::new() }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PutState {
    key: Id,
    value: Value,
    permanent: bool,
    /// A refresh round of a permanent put: no events.
    background: bool,
    /// Whether this node's own storage took the value (or already held it).
    stored_here: bool,
    /// The put (or refresh) at the closest nodes, once the search is over.
    round: StoreRound,
    errors: Vec<(SocketAddr, u16, String)>,
    /// The seq of the value each node already holds (from the search's probe).
    probes: HashMap<NodeId, u16>,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
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

type Operation = crate::kad::engine::Operation<Kind, Outgoing>;

impl NetworkKind for Kind {
    fn store_round(&mut self) -> Option<&mut StoreRound> {
        match self {
            Kind::Put(state) => Some(&mut state.round),
            _ => None,
        }
    }
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
    /// When the node gives up waiting for the rest.
    fn deadline(&self) -> Timestamp {
        (self.started + RX_MAX_PACKET_TIME).min(self.last + RX_TIMEOUT)
    }
}

impl Scheduled for Partial {
    fn next_deadline(&self) -> Option<Timestamp> {
        Some(self.deadline())
    }
}

impl Scheduled for KeptPut {
    /// Its next round (none while one runs: starting a round sets it to never).
    fn next_deadline(&self) -> Option<Timestamp> {
        (self.next_round != NEVER).then_some(self.next_round)
    }
}

impl Scheduled for ListenState {
    /// The earliest of: its next search (when none runs), its cache's next expiry, and the
    /// renewal of each subscription not waiting for an answer.
    fn next_deadline(&self) -> Option<Timestamp> {
        let search = self.search.is_none().then_some(self.next_search);
        let renewals = self.nodes.values().filter(|s| !s.pending).map(|s| s.renew_at);
        search.into_iter().chain(self.cache.next_expiry()).chain(renewals).min()
    }
}

/// A change in our own storage, told to listeners.
enum Change {
    New(Value),
    Refreshed(ValueId),
    Expired(Vec<Value>),
}

impl Node {
    /// A node that has not joined yet, started at `now` (call
    /// [`bootstrap`](crate::kad::KademliaNode::bootstrap) to join).
    pub fn new(config: Config, now: Timestamp) -> Node {
        let tables = FamilyTables::new(config.node_id, config.families, &config.routing, now);
        let mut engine = Engine::new(tables, config.seed, now);
        let tokens = TokenIssuer::new(&mut engine.rng, now, config.token_rotation);
        Node {
            engine,
            out: Outbox { transmits: TransmitQueue::default(), counters: Counters::default() },
            storage: Storage::new(config.storage.clone()),
            listeners: ListenerTable::new(config.listeners.clone()),
            verifier: Box::new(RsaSignatures),
            limiter: RateLimiter::new(config.max_requests, config.max_requests_per_ip),
            tokens,
            kept: DeadlineMap::default(),
            listens: DeadlineMap::default(),
            sockets: HashMap::new(),
            partials: DeadlineMap::default(),
            events: VecDeque::new(),
            next_maintenance: now + config.maintenance_interval,
            config,
        }
    }

    fn wire(&mut self) -> Wire<'_> {
        Wire { config: &self.config, out: &mut self.out }
    }

    /// Our node ID.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the signature check of signed values (default: RSA, as OpenDHT signs:
    /// [`RsaSignatures`]).
    pub fn set_signature_verifier(&mut self, verifier: Box<dyn SignatureVerifier>) {
        self.verifier = verifier;
    }

    /// What this node stores (for remote nodes and for its own user).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The remote nodes listening to keys stored here.
    pub fn listener_table(&self) -> &ListenerTable {
        &self.listeners
    }

    /// Traffic and state counters since the node started.
    pub fn counters(&self) -> &Counters {
        &self.out.counters
    }

    /// Messages waiting for fragments.
    pub fn partial_messages(&self) -> usize {
        self.partials.len()
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

    /// The next datagram to send, if any: call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop()
    }

    /// The next event (values found, command results), if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let deadlines = [
            self.engine.next_deadline(),
            self.storage.next_expiry(),
            self.partials.earliest(),
            self.listens.earliest(),
            self.kept.earliest(),
        ];
        Some(deadlines.into_iter().flatten().fold(self.next_maintenance, Timestamp::min))
    }

    // ---------------------------------------------------------------- commands

    fn want(&self) -> Option<Want> {
        want(self.engine.tables.dual_stack())
    }

    /// Gets the values at `key` that pass `filter`'s WHERE conditions (its SELECT is ignored:
    /// whole values are reported). Emits `Value` for each value (ours first, then as nodes answer;
    /// each once, again if it changes), then `Finished` with [`CommandResult::Get`].
    pub fn get(&mut self, now: Timestamp, key: Id, filter: Query) -> QueryId {
        let filter = Query { select: Vec::new(), filters: filter.filters };
        let request = Request::Get { key, query: wire_query(&filter), want: self.want() };
        let op = self.start_operation(
            Kind::Get { filter: filter.clone(), seen: HashMap::new() },
            key,
            Outgoing::whole(request),
        );
        let local: Vec<Value> = self.storage.get(&key, Some(&filter)).cloned().collect();
        for value in local {
            self.report_get_value(op, value);
        }
        self.drive_operation(now, op);
        op
    }

    /// Puts `value` at `key`: stores it here, then at the nodes closest to the key. A value id
    /// of 0 is replaced by a random one (read it from [`Stored::value_id`]). A `permanent` value is
    /// kept alive until [`Node::cancel_put`]; otherwise it lives as long as its type says.
    /// Emits `Finished` with [`CommandResult::Put`].
    pub fn put(&mut self, now: Timestamp, key: Id, mut value: Value, permanent: bool) -> QueryId {
        if value.id == INVALID_VALUE_ID {
            value.id = self.engine.rng.gen_range(1..=u64::MAX);
        }
        let outcome = self.store_value(now, key, value.clone(), Source::Local, now, permanent);
        let stored_here = !matches!(outcome, StoreOutcome::Refused(_));
        let op = self.start_put(key, value.clone(), permanent, false, stored_here);
        if permanent {
            self.kept
                .insert((key, value.id), KeptPut { value, next_round: NEVER, running: Some(op), awaiting_join: false });
        }
        self.drive_operation(now, op);
        op
    }

    fn start_put(&mut self, key: Id, value: Value, permanent: bool, background: bool, stored_here: bool) -> QueryId {
        // The probe: does the node hold this value, and at which seq?
        let probe = Query::select([Field::Id, Field::SeqNum]).and_where(FieldValue::Id(value.id));
        let request = Request::Get { key, query: Some(probe), want: self.want() };
        let state = PutState {
            key,
            value,
            permanent,
            background,
            stored_here,
            round: StoreRound::default(),
            errors: Vec::new(),
            probes: HashMap::new(),
        };
        self.start_operation(Kind::Put(Box::new(state)), key, Outgoing::whole(request))
    }

    /// Stops keeping a permanent value alive and removes our own copy (listeners hear it
    /// expired). Other nodes keep theirs until it expires. Whether the put was permanent.
    pub fn cancel_put(&mut self, now: Timestamp, key: Id, value_id: ValueId) -> bool {
        let Some(kept) = self.kept.remove(&(key, value_id)) else { return false };
        if let Some(op) = kept.running {
            self.engine.remove(op);
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
        let listen = self.engine.new_query_id();
        let socket_id = loop {
            let candidate: u32 = self.engine.rng.gen_range(1..=u32::MAX);
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
            self.engine.remove(search);
        }
        true
    }

    /// Forgets a running command (a listen or permanent put is cancelled as such); late answers
    /// are ignored.
    pub fn cancel(&mut self, now: Timestamp, query: QueryId) {
        if self.cancel_listen(query) {
            return;
        }
        if let Some(Kind::Put(state)) = self.engine.network_kind(query) {
            let (key, id) = (state.key, state.value.id);
            if self.kept.get(&(key, id)).is_some_and(|k| k.running == Some(query)) {
                self.cancel_put(now, key, id);
            }
        }
        self.engine.remove(query);
    }

    fn start_listen_search(&mut self, now: Timestamp, listen: QueryId) {
        let Some(state) = self.listens.get(&listen) else { return };
        let (key, query) = (state.key, state.wire_query.clone());
        let request = Request::Get { key, query, want: self.want() };
        let op = self.start_operation(Kind::ListenSearch { listen }, key, Outgoing::whole(request));
        self.listens.update(&listen, |state| state.search = Some(op));
        self.drive_operation(now, op);
    }

    // ---------------------------------------------------------------- inputs

    /// Handles one received datagram.
    pub fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        self.out.counters.traffic.received(datagram.len());
        if !self.engine.tables.reaches(&from) || from.port() == 0 {
            self.out.counters.traffic.dropped += 1;
            return;
        }
        let message = match Message::decode(datagram) {
            Ok(message) => {
                count_received(&mut self.out.counters.messages, &message.body, datagram.len());
                message
            }
            Err(error) => {
                match error.reply(self.config.node_id) {
                    Some(reply) if self.limiter.allow(now, from.ip()) => {
                        self.out.counters.traffic.errors_sent += 1;
                        self.wire().send(from, reply);
                    }
                    _ => self.out.counters.traffic.dropped += 1,
                }
                return;
            }
        };
        if message.network != self.config.network {
            self.out.counters.traffic.dropped += 1;
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
        self.expire_requests(now);
        for (key, values) in self.storage.expire(now) {
            self.on_change(now, key, Change::Expired(values));
        }
        for sender in self.partials.due_keys(now) {
            self.partials.remove(&sender);
        }
        self.step_listens(now);
        self.step_kept(now);
        if now >= self.next_maintenance {
            self.maintain(now);
        }
        self.drive(now);
    }

    fn maintain(&mut self, now: Timestamp) {
        self.next_maintenance = now + self.config.maintenance_interval;
        self.tokens.maybe_rotate(now, &mut self.engine.rng);
        self.listeners.expire(now);
        self.shrink_buffers();
        let (engine, wire) = engine_and_wire!(self);
        engine.start_due_refreshes(now, wire, &self.config.lookup);
    }

    fn shrink_buffers(&mut self) {
        self.engine.shrink();
        self.out.transmits.release_when_drained();
        self.events.shrink_to_fit();
        self.partials.compact();
        self.listens.compact();
        self.kept.compact();
    }

    /// Listens that are due: expire cached values, renew subscriptions, search again.
    fn step_listens(&mut self, now: Timestamp) {
        for listen in self.listens.due_keys(now) {
            let expired = self
                .listens
                .update(&listen, |state| (state.cache.expire(now), state.search.is_none() && state.next_search <= now));
            let Some((changes, search_due)) = expired else { continue };
            self.report_changes(listen, changes);
            if search_due {
                self.start_listen_search(now, listen);
            }
            self.renew_subscriptions(now, listen);
        }
    }

    /// Permanent puts: start the refresh rounds that are due.
    fn step_kept(&mut self, now: Timestamp) {
        // Due means not running: a running round's next one is never (see `KeptPut`).
        for (key, id) in self.kept.due_keys(now) {
            let Some(value) = self.kept.get(&(key, id)).map(|k| k.value.clone()) else { continue };
            // Our own copy is permanent; make sure it is still there (a restart, an eviction).
            if self.storage.get_stored(&key, id).is_none() {
                self.store_value(now, key, value.clone(), Source::Local, now, true);
            }
            // A kept value is stored here (restored or put before).
            let op = self.start_put(key, value, true, true, true);
            self.kept.update(&(key, id), |kept| {
                kept.running = Some(op);
                kept.next_round = NEVER;
                kept.awaiting_join = false;
            });
        }
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
                self.out.counters.traffic.requests_received += 1;
                if id == self.config.node_id {
                    self.out.counters.traffic.dropped += 1;
                    return;
                }
                self.handle_request(now, from, message.tid, id, request, is_client);
            }
            Body::Reply(reply) => {
                self.out.counters.traffic.answers_received += 1;
                if let Some(op) = self.handle_reply(now, from, message.tid, reply, is_client) {
                    self.drive_operation(now, op);
                }
            }
            Body::Error { code, message: text, .. } => {
                self.out.counters.traffic.errors_received += 1;
                self.refused(now, from, Some(message.tid), i64::from(code), text);
            }
            // We always subscribe with `ve: 1`; legacy pushes are not for us.
            Body::ListenerPush(_) | Body::ValueParts(_) => self.out.counters.traffic.dropped += 1,
        }
    }

    fn handle_reply(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tid: u32,
        reply: Reply,
        is_client: bool,
    ) -> Option<QueryId> {
        let Some(request) = self.engine.take_answered(now, from, tid, reply.id) else {
            self.out.counters.traffic.dropped += 1;
            return None;
        };
        let touched = request.purpose.operation();
        let insertable = !is_client && reply.id != self.config.node_id;
        let answer = Answer { id: reply.id, nodes4: &reply.nodes4, nodes6: &reply.nodes6, token: Some(&reply.token) };
        let (engine, wire) = engine_and_wire!(self);
        match engine.on_answer(now, wire, from, request, answer, insertable) {
            Answered::Nothing => {}
            Answered::Pong { op } => self.ping_ended(now, op, Ok(Pong { id: reply.id, addr: from })),
            Answered::Network(OpenDhtPurpose::Put { op } | OpenDhtPurpose::Refresh { op, .. }) => {
                if let Some(Kind::Put(state)) = self.engine.network_kind_mut(op) {
                    state.round.on_stored(from, reply.id);
                }
            }
            Answered::Network(OpenDhtPurpose::Listen { listen }) => {
                let renewal = self.config.listen_renewal;
                self.listens.update(&listen, |state| {
                    if let Some(sub) = state.nodes.get_mut(&from) {
                        sub.pending = false;
                        sub.renew_at = now + renewal;
                        if !reply.token.is_empty() {
                            sub.token = reply.token;
                        }
                    }
                });
            }
            Answered::Lookup { op, .. } => self.on_lookup_reply(now, op, from, reply),
        }
        touched
    }

    fn on_lookup_reply(&mut self, now: Timestamp, op: QueryId, from: SocketAddr, reply: Reply) {
        let Some(kind) = self.engine.network_kind_mut(op) else { return };
        let has_token = !reply.token.is_empty();
        if let Kind::Put(state) = kind {
            if let Some(seq) = probed_seq(&reply, state.value.id) {
                if state.probes.len() < 256 {
                    state.probes.insert(reply.id, seq);
                }
            }
        }
        if !has_token {
            return;
        }
        let values = ValueSlot::whole_values(reply.values);
        match kind {
            Kind::Get { .. } => {
                for value in values {
                    self.report_get_value(op, value);
                }
            }
            Kind::ListenSearch { listen } => {
                let listen = *listen;
                let added = self.listens.update(&listen, |state| {
                    let mut changes = Vec::new();
                    for value in values.into_iter().filter(|v| state.filter.matches(v)) {
                        let until = now + value.expiration();
                        changes.extend(state.cache.add(value, Holder::Node(from), until, now));
                    }
                    changes
                });
                let Some(changes) = added else { return };
                self.report_changes(listen, changes);
            }
            _ => {}
        }
    }

    fn report_get_value(&mut self, op: QueryId, value: Value) {
        let max = self.config.max_get_values;
        let Some(Kind::Get { filter, seen }) = self.engine.network_kind_mut(op) else { return };
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

    /// After a listen's search: subscribe at the closest nodes of each family.
    fn subscribe(&mut self, now: Timestamp, listen: QueryId, op: QueryId) {
        let per_family = self.config.listen_nodes;
        let targets = self.engine.operation(op).map(|o| closest_with_tokens(o, per_family)).unwrap_or_default();
        let research = self.config.listen_research;
        let subscribed = self.listens.update(&listen, |state| {
            if state.search != Some(op) {
                return false;
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
            true
        });
        if subscribed == Some(true) {
            self.renew_subscriptions(now, listen);
        }
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
                OpenDhtPurpose::Listen { listen },
            );
            self.listens.update(&listen, |state| {
                if let Some(sub) = state.nodes.get_mut(&addr) {
                    match sent {
                        Ok(()) => sub.pending = true,
                        Err(_) => sub.renew_at = now + Duration::from_secs(1),
                    }
                }
            });
        }
    }

    // ---------------------------------------------------------------- sending

    fn send(&mut self, to: SocketAddr, message: Message) {
        self.wire().send(to, message);
    }

    fn send_with_parts(&mut self, to: SocketAddr, message: Message, parts: Vec<Vec<u8>>) {
        self.wire().send_with_parts(to, message, parts);
    }

    /// Sends an `update` to a remote listener. It is not tracked: the acknowledgement carries
    /// nothing (OpenDHT ignores it too), and thousands of listeners must not crowd our own
    /// requests out of the pending table. Acknowledgements count as dropped datagrams.
    fn send_push(&mut self, to: SocketAddr, request: Request, parts: Vec<Vec<u8>>) {
        let tid: u32 = self.engine.rng.gen_range(1..=u32::MAX);
        let message = Message::request(tid, self.config.node_id, request);
        self.send_with_parts(to, message, parts);
    }

    /// Sends a request of ours. `attempts` > 1 sends it again (with its fragments) after
    /// `request_timeout`, doubling each time; searches retry through their lookup.
    #[allow(clippy::too_many_arguments)]
    fn send_request(
        &mut self,
        now: Timestamp,
        to: SocketAddr,
        node_id: Option<NodeId>,
        request: Request,
        parts: Vec<Vec<u8>>,
        attempts: u8,
        purpose: OpenDhtPurpose,
    ) -> Result<(), QueryError> {
        let (engine, wire) = engine_and_wire!(self);
        let outgoing = Outgoing { request, parts };
        engine.send_request(now, wire, to, node_id, outgoing, Purpose::Network(purpose), attempts)
    }
}

impl OperationDriver for Node {
    type Kind = Kind;
    type Request = Outgoing;
    type Purpose = OpenDhtPurpose;
    type Result = CommandResult;

    engine_accessors!();

    /// OpenDHT sends requests outside searches again when unanswered.
    fn ping_attempts(&self) -> u8 {
        self.config.request_attempts
    }

    /// The store round of a put: `put` where the value is missing or older, `refresh` where
    /// it is there.
    fn store_requests(&self, op: QueryId, operation: &Operation) -> Vec<StoreAt<Outgoing, OpenDhtPurpose>> {
        let Some(Kind::Put(state)) = operation.kind.network() else { return Vec::new() };
        let (key, value) = (state.key, &state.value);
        let packed = pack_values(std::slice::from_ref(value));
        let attempts = self.config.request_attempts;
        let store = |(id, addr, token, held): (NodeId, SocketAddr, Vec<u8>, Option<u16>)| {
            let (request, purpose) = if held.is_some_and(|seq| seq >= value.seq) {
                let refresh = Request::Refresh { key, token: token.clone(), value_id: value.id };
                (Outgoing::whole(refresh), OpenDhtPurpose::Refresh { op, token })
            } else {
                let put = Request::Put(PutArgs { key, token, values: packed.slots.clone(), created: None });
                (Outgoing { request: put, parts: packed.parts.clone() }, OpenDhtPurpose::Put { op })
            };
            StoreAt { id, addr, request, purpose, attempts }
        };
        closest_with_tokens(operation, self.config.lookup.k).into_iter().map(store).collect()
    }

    /// A listen's search subscribes at the closest nodes.
    fn lookups_over(&mut self, now: Timestamp, op: QueryId) {
        if let Some(Kind::ListenSearch { listen }) = self.engine.network_kind(op) {
            self.subscribe(now, *listen, op);
        }
    }

    fn result(&self, kind: &Kind, operation: &Operation) -> Option<CommandResult> {
        let closest = Closest::of(&operation.search);
        Some(match kind {
            Kind::Put(_) if !closest.reached_anybody() => CommandResult::Put(Err(QueryError::NoContacts)),
            Kind::Put(state) => CommandResult::Put(Ok(Stored {
                value_id: state.value.id,
                stored_here: state.stored_here,
                stored_at: state.round.stored_at(),
                errors: state.errors.clone(),
                stats: closest.stats,
            })),
            Kind::Get { .. } => CommandResult::Get(closest.found()),
            Kind::ListenSearch { .. } => return None,
        })
    }

    /// A put's or refresh's failure is noted in its round (a refresh of a value the node lost
    /// becomes a put); a failed subscription is dropped and its listen searches again soon.
    fn own_request_failed(&mut self, now: Timestamp, failed: OwnRequestFailed<OpenDhtPurpose>) {
        let OwnRequestFailed { to, node_id, purpose, error } = failed;
        match purpose {
            OpenDhtPurpose::Refresh { op, token } if error.is_remote_code(i64::from(error_code::NOT_FOUND)) => {
                // The node lost the value: put it again (OpenDHT does the same).
                let Some(Kind::Put(state)) = self.engine.network_kind(op) else { return };
                let (key, value) = (state.key, state.value.clone());
                let packed = pack_values(std::slice::from_ref(&value));
                let put = Request::Put(PutArgs { key, token, values: packed.slots, created: None });
                let attempts = self.config.request_attempts;
                let purpose = OpenDhtPurpose::Put { op };
                if self.send_request(now, to, node_id, put, packed.parts, attempts, purpose).is_err() {
                    if let Some(Kind::Put(state)) = self.engine.network_kind_mut(op) {
                        state.round.on_refused(to);
                    }
                }
            }
            OpenDhtPurpose::Put { op } | OpenDhtPurpose::Refresh { op, .. } => {
                if let Some(Kind::Put(state)) = self.engine.network_kind_mut(op) {
                    state.round.on_refused(to);
                    if let QueryError::Remote { code, message } = error {
                        // The code came in as a u16.
                        state.errors.push((to, u16::try_from(code).unwrap_or(u16::MAX), message));
                    }
                }
            }
            OpenDhtPurpose::Listen { listen } => {
                // A refused or silent subscription: drop it and search again soon (a 401 means
                // our token is stale; the search brings a fresh one).
                self.listens.update(&listen, |state| {
                    state.nodes.remove(&to);
                    state.next_search = state.next_search.min(now + LISTEN_RETRY);
                });
            }
        }
    }

    /// Joined (again): permanent values restored from saved state, or whose last round
    /// reached nobody, go out now.
    fn rejoined(&mut self, now: Timestamp) {
        self.kept.for_each_mut(|_, kept| {
            if kept.awaiting_join {
                kept.next_round = kept.next_round.min(now);
            }
        });
    }

    fn ended(&mut self, now: Timestamp, op: QueryId, operation: Operation, result: Option<CommandResult>) {
        match operation.kind {
            OperationKind::Network(Kind::ListenSearch { listen }) => {
                self.listens.update(&listen, |state| {
                    if state.search == Some(op) {
                        state.search = None;
                    }
                });
            }
            OperationKind::Network(Kind::Put(state)) => {
                if state.permanent {
                    let reached = matches!(&result, Some(CommandResult::Put(Ok(s))) if !s.stored_at.is_empty());
                    let expiration = state.value.expiration();
                    let interval = expiration.saturating_sub(self.config.reannounce_margin).max(expiration / 2);
                    let retry = (self.config.reannounce_margin / 3).max(Duration::from_secs(1));
                    self.kept.update(&(state.key, state.value.id), |kept| {
                        if kept.running == Some(op) {
                            kept.running = None;
                            kept.next_round = now + if reached { interval } else { retry.min(interval) };
                            // Reached nobody: go again as soon as a bootstrap ends, if earlier.
                            kept.awaiting_join = !reached;
                        }
                    });
                }
                if state.background {
                    return;
                }
            }
            _ => {}
        }
        if let Some(result) = result {
            self.events.push_back(Event::Finished { query: op, result });
        }
    }
}

/// The closest nodes of each family that answered `operation`'s search with a token, and the
/// seq of the value each already holds (a put's probe).
fn closest_with_tokens(operation: &Operation, per_family: usize) -> Vec<(NodeId, SocketAddr, Vec<u8>, Option<u16>)> {
    let probes = match operation.kind.network() {
        Some(Kind::Put(state)) => Some(&state.probes),
        _ => None,
    };
    let held = |id: &NodeId| probes.and_then(|p| p.get(id).copied());
    let closest = operation.search.closest_with_tokens(per_family);
    closest.into_iter().map(|(id, addr, token)| (id, addr, token, held(&id))).collect()
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

crate::node_io::sans_io_node_by_inherent_methods!(Node);

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
