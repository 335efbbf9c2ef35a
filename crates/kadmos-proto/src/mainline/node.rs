//! A Mainline DHT node as a sans-IO state machine.
//!
//! # Driving a node
//!
//! The node never touches a socket or a clock. Whoever drives it (the tokio runtime in the
//! `kadmos` crate, or the simulator) does this, in any order, as often as needed:
//!
//! 1. **Inputs**: [`Node::handle_datagram`] for every UDP datagram received,
//!    [`Node::handle_timeout`] when the time from [`Node::poll_timeout`] has come, and commands
//!    (Kademlia's own from [`KademliaNode`](crate::kad::KademliaNode): `bootstrap`, `ping`, `find_node`; Mainline's:
//!    [`Node::get_peers`], [`Node::announce_peer`], [`Node::sample_infohashes`]) which return a
//!    [`QueryId`], and quests ([`Node::advertise`], [`Node::watch`]; see [`super::quest`]),
//!    which run until stopped and report through `Event::Quest`.
//! 2. **Outputs**, after every input: drain [`Node::poll_transmit`] (datagrams to send),
//!    [`Node::poll_event`] (progress and results, keyed by `QueryId`), then ask
//!    [`Node::poll_timeout`] when to call `handle_timeout` next.
//!
//! Every input takes `now`; all randomness comes from the seeded generator in the config, so
//! the same inputs give the same outputs.
//!
//! # Implementation notes
//!
//! - One routing table per address family (BEP 32), and one [`Lookup`](crate::kad::Lookup) per family for each
//!   operation; the nodes a reply names for the other family feed the sibling lookup.
//! - A node that queries us enters the routing table only after it answers a ping of ours
//!   (rate-limited), since a query's source address can be forged.
//! - Requests of our own are keyed by a random 4-byte transaction ID and the answer must
//!   come from the address we asked. Four bytes, not libtorrent's two: the `mainline` crate
//!   (pkarr, Pubky) ignores queries whose transaction ID is not exactly 4 bytes, and libtorrent
//!   and bittorrent-dht answer any length. Queries from others may carry any length (BEP 5).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{Config, CLIENT_VERSION};
use super::external_address::ExternalAddress;
use super::item::{ImmutableItem, Item, MutableItem};
use super::item_store::ItemStore;
use super::message::{error_code, Body, Message, PutArgs, Query, Response, Want};
use super::message_counts::MessageCounts;
use super::node_id_security::{self, NodeIdSecurity};
use super::peer_store::PeerStore;
use super::quest::{DueRound, QuestBook, QuestError, QuestEvent, RoundEnd, RoundKind};
use super::rate_limit::{RateLimiter, Refusal};
use super::reachability::Reachability;
use super::token::TokenIssuer;
use crate::kad::engine::{engine_and_wire, Answer, Answered, Engine, Network, OwnRequestFailed};
use crate::kad::operation_driver::{engine_accessors, NetworkKind, OperationDriver, OperationKind, StoreAt};
use crate::kad::sent_request::{NetworkPurpose, Purpose};
use crate::kad::{Closest, FamilyTables, Id, InfoHash, NodeId, Pong, QueryError, StoreRound, TrafficCounters};
use crate::node_io::{Family, QueryId, Transmit, TransmitQueue};
use crate::time::Timestamp;

/// A Mainline DHT node. See the [namespace documentation](super) for how to drive it.
pub struct Node {
    config: Config,
    /// Operations, requests, routing tables and the generator every random choice comes from.
    engine: Engine<Kind, Query, MainlinePurpose>,
    out: Outbox,
    peers: PeerStore,
    items: ItemStore,
    /// Items our user put, re-put every `keep_alive_interval` until cancelled.
    kept: BTreeMap<Id, KeptItem>,
    /// Running keep-alive re-puts and the item each is for.
    background: BTreeMap<QueryId, Id>,
    /// When stored items were last republished (with `republish_interval`).
    republished: BTreeMap<Id, Timestamp>,
    /// Running republish operations: they emit no events.
    republishing: std::collections::BTreeSet<QueryId>,
    /// Advertisements and watches; their operations emit `Event::Quest` only. Boxed and made
    /// on first use: most nodes run none, and the simulator holds 100,000 nodes.
    quests: Option<Box<QuestBook>>,
    tokens: TokenIssuer,
    events: VecDeque<Event>,
    next_maintenance: Timestamp,
    /// Our address as responders report it (BEP 42 `ip`), by vote.
    external: ExternalAddress,
}

mod command_result;
mod jobs;
mod serving;
mod wire;
pub use command_result::{CommandResult, Samples, Stored};
use wire::{want, Outbox, Wire};

/// Progress and results of commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Peers for a `get_peers` or announce lookup, as one node sent them.
    Peers {
        /// The command they answer.
        query: QueryId,
        /// The node that sent them.
        from: (NodeId, SocketAddr),
        /// The peers, as that node listed them (not checked).
        peers: Vec<SocketAddr>,
    },
    /// A verified BEP 44 item, as one node sent it during a `get_item` lookup.
    Item {
        /// The command it answers.
        query: QueryId,
        /// The node that sent it.
        from: (NodeId, SocketAddr),
        /// The item, its signature (if mutable) checked.
        item: Item,
    },
    /// The command is over: which command it was and its result.
    Finished {
        /// The command that is over.
        query: QueryId,
        /// What it came to, typed for that command.
        result: CommandResult,
    },
    /// What an advertisement or a watch did (see [`QuestBook`]).
    Quest(QuestEvent),
}

/// Traffic and state counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams, requests and errors, as every node counts them.
    pub traffic: TrafficCounters,
    /// The same traffic by KRPC method and error code.
    pub messages: MessageCounts,
    /// Queries dropped unanswered: over their source's limit, or the node's.
    pub queries_rate_limited: u64,
    /// Answers not sent: over the bytes allowed to an unverified address (amplification).
    pub replies_capped_unverified: u64,
    /// Answers not sent: over the node's outbound bytes.
    pub replies_capped_outbound: u64,
    /// Contacts kept out of the routing table: their ID does not match their address (BEP 42).
    pub insecure_ids_refused: u64,
    /// Times we took a new secure ID after our external address changed (BEP 42).
    pub node_id_changes: u64,
}

/// Why a request of Mainline's own operations was sent.
#[derive(Clone, Debug)]
pub(crate) enum MainlinePurpose {
    /// An announce_peer or put at the end of a store operation.
    Store {
        op: QueryId,
    },
    Samples {
        op: QueryId,
    },
}

impl NetworkPurpose for MainlinePurpose {
    fn operation(&self) -> Option<QueryId> {
        match self {
            MainlinePurpose::Store { op } | MainlinePurpose::Samples { op } => Some(*op),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    GetPeers {
        seen: HashSet<SocketAddr>,
    },
    /// A lookup for tokens, then a store at the closest nodes (announce_peer or put).
    Store {
        what: StoreRequest,
        seen: HashSet<SocketAddr>,
        errors: Vec<(SocketAddr, i64, String)>,
        /// The store at the closest nodes, once the lookups are over.
        round: StoreRound,
    },
    /// A BEP 44 get: verified items are reported once per (seq, value).
    GetItem {
        expect: ItemQuery,
        seen: HashSet<(i64, Id)>,
    },
    Samples,
}

impl NetworkKind for Kind {
    fn store_round(&mut self) -> Option<&mut StoreRound> {
        match self {
            Kind::Store { round, .. } => Some(round),
            _ => None,
        }
    }
}

/// An item kept alive and when it is next re-put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptItem {
    /// The item.
    pub item: Item,
    /// When the node puts it again.
    pub next_put: Timestamp,
}

/// What a store operation stores.
#[derive(Clone, Debug)]
pub(crate) enum StoreRequest {
    Announce { port: Option<u16> },
    Item { item: Item, cas: Option<i64> },
}

/// Which item a BEP 44 get looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemQuery {
    /// The immutable item with this target (its value must hash to it).
    Immutable(Id),
    /// The mutable item of this key and salt; nodes may omit values with `seq <= newer_than`.
    Mutable {
        /// The ed25519 public key that signs the item.
        public_key: [u8; 32],
        /// The item's salt (empty for none).
        salt: Vec<u8>,
        /// Ask nodes to omit values with a `seq` not above this one.
        newer_than: Option<i64>,
    },
}

impl ItemQuery {
    /// Where the item is stored: the target a get looks up.
    pub fn target(&self) -> Id {
        match self {
            ItemQuery::Immutable(target) => *target,
            ItemQuery::Mutable { public_key, salt, .. } => super::item::mutable_target(public_key, salt),
        }
    }

    /// Builds and verifies the item a node answered with, if it is the one we asked for.
    fn accept(&self, response: &Response) -> Option<Item> {
        let value = response.value.clone()?;
        match self {
            ItemQuery::Immutable(target) => {
                let item = ImmutableItem::new(value).ok()?;
                (item.target() == *target).then_some(Item::Immutable(item))
            }
            ItemQuery::Mutable { public_key, salt, .. } => {
                if response.public_key.as_ref() != Some(public_key) {
                    return None;
                }
                let item = MutableItem {
                    public_key: *public_key,
                    salt: salt.clone(),
                    seq: response.seq?,
                    value,
                    signature: response.signature?,
                };
                item.verify().ok()?;
                Some(Item::Mutable(item))
            }
        }
    }
}

type Operation = crate::kad::engine::Operation<Kind, Query>;

impl Node {
    /// A node that has not joined yet, started at `now` (call
    /// [`bootstrap`](crate::kad::KademliaNode::bootstrap) to join).
    pub fn new(config: Config, now: Timestamp) -> Node {
        let tables = FamilyTables::new(config.node_id, config.families, &config.routing, now);
        let mut engine = Engine::new(tables, config.seed, now);
        let tokens = TokenIssuer::new(&mut engine.rng, now, config.token_rotation);
        let out = Outbox {
            transmits: TransmitQueue::default(),
            counters: Counters::default(),
            limiter: RateLimiter::new(config.rate_limits.clone(), now),
            reachability: config.adaptive_read_only.map(|adaptive| Box::new(Reachability::new(adaptive, now))),
        };
        Node {
            engine,
            out,
            peers: PeerStore::new(config.peer_store.clone()),
            items: ItemStore::new(config.item_store.clone()),
            kept: BTreeMap::new(),
            background: BTreeMap::new(),
            republished: BTreeMap::new(),
            republishing: std::collections::BTreeSet::new(),
            quests: None,
            tokens,
            events: VecDeque::new(),
            next_maintenance: now + config.maintenance_interval,
            external: ExternalAddress::new(config.external_address_votes),
            config,
        }
    }

    /// Our node ID (with BEP 42 enforced, it changes to one secure for the external address
    /// responders report).
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peers announced to this node.
    pub fn peer_store(&self) -> &PeerStore {
        &self.peers
    }

    /// The BEP 44 items this node stores for others.
    pub fn item_store(&self) -> &ItemStore {
        &self.items
    }

    /// Keeps an item alive: it is re-put every `keep_alive_interval` (to the nodes closest to
    /// it then, so it follows churn) until [`Node::cancel_keep_alive`]. Call it after a put
    /// the network accepted; a later version of the same item replaces it.
    pub fn keep_alive(&mut self, now: Timestamp, item: Item) {
        self.restore_kept(item, now + self.config.keep_alive_interval);
    }

    /// Keeps an item alive with its next re-put at `next_put` (for saved state).
    pub fn restore_kept(&mut self, item: Item, next_put: Timestamp) {
        self.kept.insert(item.target(), KeptItem { item, next_put });
    }

    /// Stops re-putting an item; whether it was kept.
    pub fn cancel_keep_alive(&mut self, target: &Id) -> bool {
        self.kept.remove(target).is_some()
    }

    /// Items kept alive and when each is next re-put.
    pub fn kept_items(&self) -> impl Iterator<Item = &KeptItem> {
        self.kept.values()
    }

    /// Puts back an item from saved state (its signature is checked again).
    pub fn restore_item(&mut self, item: Item, put_at: Timestamp) -> Result<(), super::item::ItemError> {
        self.items.restore(item, put_at)
    }

    /// Traffic and state counters since the node started.
    pub fn counters(&self) -> &Counters {
        &self.out.counters
    }

    /// BEP 43: whether the node is read-only now, by configuration or because the adaptive
    /// mode found it unreachable (see [`AdaptiveReadOnly`](super::AdaptiveReadOnly)).
    pub fn is_read_only(&self) -> bool {
        self.out.is_read_only(&self.config)
    }

    /// Our address as most responders report it (BEP 42 `ip`), if any did.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external.get()
    }

    /// The next datagram to send, if any: call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop()
    }

    /// The next event (command progress and results, quest reports), if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().or_else(|| self.quests.as_mut()?.poll_event().map(Event::Quest))
    }

    /// When [`Node::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let engine_due = self.engine.next_deadline();
        let quest_due = self.quests.as_mut().and_then(|q| q.next_due());
        Some([engine_due, quest_due].into_iter().flatten().fold(self.next_maintenance, Timestamp::min))
    }

    // ---------------------------------------------------------------- commands

    fn want(&self) -> Option<Want> {
        want(self.engine.tables.dual_stack())
    }

    /// BEP 51: asks one node for a sample of the infohashes it stores. Emits `Finished` with
    /// [`CommandResult::SampleInfohashes`].
    pub fn sample_infohashes(&mut self, now: Timestamp, addr: SocketAddr, target: Id) -> QueryId {
        let query = Query::SampleInfohashes { target, want: self.want() };
        let op = self.engine.start_single(OperationKind::Network(Kind::Samples), query.clone());
        let purpose = Purpose::Network(MainlinePurpose::Samples { op });
        let (engine, wire) = engine_and_wire!(self);
        if let Err(e) = engine.send_single(now, wire, op, addr, query, purpose, 1) {
            self.finish(now, op, Some(CommandResult::SampleInfohashes(Err(e))));
        }
        op
    }

    /// Iterative get_peers. Emits `Peers` as nodes answer with peers (each peer once), then
    /// `Finished` with [`CommandResult::GetPeers`].
    pub fn get_peers(&mut self, now: Timestamp, info_hash: InfoHash) -> QueryId {
        let query = Query::GetPeers { info_hash, want: self.want() };
        let op = self.start_operation(Kind::GetPeers { seen: HashSet::new() }, info_hash, query);
        self.drive_operation(now, op);
        op
    }

    /// get_peers, then `announce_peer` to the closest nodes that gave a token. `port: None`
    /// asks them to use our UDP source port (`implied_port`). Emits `Peers` on the way, then
    /// `Finished` with [`CommandResult::Announce`].
    pub fn announce_peer(&mut self, now: Timestamp, info_hash: InfoHash, port: Option<u16>) -> QueryId {
        let query = Query::GetPeers { info_hash, want: self.want() };
        let op = self.start_store(StoreRequest::Announce { port }, info_hash, query);
        self.drive_operation(now, op);
        op
    }

    fn start_store(&mut self, what: StoreRequest, target: Id, query: Query) -> QueryId {
        let kind = Kind::Store { what, seen: HashSet::new(), errors: Vec::new(), round: StoreRound::default() };
        self.start_operation(kind, target, query)
    }

    /// BEP 44 get: emits `Item` for every verified item a node returns (once per version),
    /// then `Finished` with [`CommandResult::GetItem`].
    pub fn get_item(&mut self, now: Timestamp, expect: ItemQuery) -> QueryId {
        let target = expect.target();
        let seq = match &expect {
            ItemQuery::Mutable { newer_than, .. } => *newer_than,
            ItemQuery::Immutable(_) => None,
        };
        let query = Query::Get { target, seq, want: self.want() };
        let op = self.start_operation(Kind::GetItem { expect, seen: HashSet::new() }, target, query);
        self.drive_operation(now, op);
        op
    }

    /// BEP 44 put: looks up the closest nodes (collecting write tokens), then puts the item
    /// there. `cas` (mutable items) makes nodes refuse the put unless they hold that seq.
    /// Emits `Finished` with [`CommandResult::PutItem`]: the nodes that stored it and the errors
    /// of the others.
    pub fn put_item(&mut self, now: Timestamp, item: Item, cas: Option<i64>) -> QueryId {
        let target = item.target();
        let query = Query::Get { target, seq: None, want: self.want() };
        let op = self.start_store(StoreRequest::Item { item, cas }, target, query);
        self.drive_operation(now, op);
        op
    }

    /// Forgets a running command; late answers to it are ignored.
    pub fn cancel(&mut self, query: QueryId) {
        self.engine.remove(query);
        self.background.remove(&query);
        self.republishing.remove(&query);
        if let Some(quests) = &mut self.quests {
            quests.forget_round(query);
        }
    }

    // ---------------------------------------------------------------- quests

    /// Advertises that we are a peer of `info_hash` on `port` (`None`: our UDP source port,
    /// `implied_port`) until [`Node::stop_advertising`]: an announce now, then one every
    /// `quests.advertise_interval` to the nodes closest at that time. Each round ends with
    /// `Event::Quest(QuestEvent::Advertised)`. Advertising again with another port changes it.
    pub fn advertise(&mut self, now: Timestamp, info_hash: InfoHash, port: Option<u16>) -> Result<(), QuestError> {
        self.quest_book().advertise(now, info_hash, port)?;
        self.run_quests(now);
        Ok(())
    }

    /// Stops an advertisement and its running round; whether there was one.
    pub fn stop_advertising(&mut self, info_hash: &InfoHash) -> bool {
        let stopped = self.quests.as_mut().and_then(|q| q.stop_advertising(info_hash));
        stopped.map(|running| self.drop_round(running)).is_some()
    }

    /// Watches `info_hash` until [`Node::unwatch`]: a get_peers now, then one every
    /// `quests.watch_interval`, reporting `QuestEvent::Found` for each peer not seen before
    /// and `QuestEvent::Gone` for peers no search returned for `quests.gone_after`.
    pub fn watch(&mut self, now: Timestamp, info_hash: InfoHash) -> Result<(), QuestError> {
        self.quest_book().watch(now, info_hash)?;
        self.run_quests(now);
        Ok(())
    }

    /// Resumes a watch that already knows `peers` (from saved state): they are not reported
    /// again when its searches return them, only peers new to it are. Its first search is due
    /// at once. Resuming a running watch adds the peers it did not know.
    pub fn resume_watch(
        &mut self,
        now: Timestamp,
        info_hash: InfoHash,
        peers: impl IntoIterator<Item = (SocketAddr, (NodeId, SocketAddr))>,
    ) -> Result<(), QuestError> {
        self.quest_book().resume_watch(now, info_hash, peers)?;
        self.run_quests(now);
        Ok(())
    }

    /// Stops a watch and its running round; whether there was one.
    pub fn unwatch(&mut self, info_hash: &InfoHash) -> bool {
        let stopped = self.quests.as_mut().and_then(|q| q.unwatch(info_hash));
        stopped.map(|running| self.drop_round(running)).is_some()
    }

    /// The advertisements and watches of this node (`None` before the first).
    pub fn quests(&self) -> Option<&QuestBook> {
        self.quests.as_deref()
    }

    fn quest_book(&mut self) -> &mut QuestBook {
        let config = &self.config.quests;
        self.quests.get_or_insert_with(|| Box::new(QuestBook::new(config.clone())))
    }

    fn drop_round(&mut self, running: Option<QueryId>) {
        if let Some(op) = running {
            self.engine.remove(op);
        }
    }

    /// Starts the rounds of quests that are due.
    fn run_quests(&mut self, now: Timestamp) {
        let due = self.quests.as_ref().map(|q| q.due(now)).unwrap_or_default();
        for round in due {
            let DueRound { info_hash, kind } = round;
            let query = Query::GetPeers { info_hash, want: self.want() };
            let op = match kind {
                RoundKind::Advertise { port } => self.start_store(StoreRequest::Announce { port }, info_hash, query),
                RoundKind::Watch => self.start_operation(Kind::GetPeers { seen: HashSet::new() }, info_hash, query),
            };
            if let Some(quests) = &mut self.quests {
                quests.started(op, round);
            }
            self.drive_operation(now, op);
        }
    }

    // ---------------------------------------------------------------- inputs

    /// Handles one received datagram.
    pub fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        self.out.counters.traffic.received(datagram.len());
        if !self.engine.tables.reaches(&from) {
            self.out.counters.traffic.dropped += 1;
            return;
        }
        match Message::decode(datagram) {
            Ok(message) => match message.body {
                Body::Query { id, query } => {
                    self.out.counters.traffic.requests_received += 1;
                    if let Some(kind) = MessageCounts::kind_index(query.method()) {
                        self.out.counters.messages.received(kind, datagram.len());
                    }
                    if let Some(reachability) = &mut self.out.reachability {
                        reachability.note_query(now, from.ip());
                    }
                    if !self.is_read_only() && self.admit_query(now, from) {
                        self.handle_query(now, from, message.transaction_id, id, query, message.read_only);
                    }
                }
                Body::Response(response) => {
                    self.out.counters.traffic.answers_received += 1;
                    if let Some(op) =
                        self.handle_response(now, from, &message.transaction_id, response, message.requester_ip)
                    {
                        self.drive_operation(now, op);
                    }
                }
                Body::Error { code, message: text } => {
                    self.out.counters.traffic.errors_received += 1;
                    self.out.counters.messages.error_received(code);
                    self.refused(now, from, Self::transaction_id(&message.transaction_id), code, text);
                }
            },
            Err(error) => match error.reply() {
                Some(reply) if !self.is_read_only() => {
                    self.out.counters.traffic.errors_sent += 1;
                    if let Body::Error { code, .. } = &reply.body {
                        self.out.counters.messages.error_sent(*code);
                    }
                    self.send(from, &reply);
                }
                _ => self.out.counters.traffic.dropped += 1,
            },
        }
    }

    /// Handles expired requests and housekeeping. Call at the time [`Node::poll_timeout`] gave.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.expire_requests(now);
        if now >= self.next_maintenance {
            self.maintain(now);
        }
        self.drive(now);
        if self.quests.is_some() {
            self.run_quests(now);
        }
    }

    // ---------------------------------------------------------------- our requests

    /// Sends a request of ours or an error answer: always sent, and counted against the
    /// outbound cap.
    fn send(&mut self, to: SocketAddr, message: &Message) {
        self.out.send(to, message);
    }

    fn push_transmit(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.out.push_transmit(to, payload);
    }

    /// Our 4-byte transaction ids as the number the engine keys requests by.
    fn transaction_id(tx: &[u8]) -> Option<u32> {
        Some(u32::from_be_bytes(tx.try_into().ok()?))
    }

    fn handle_response(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tx: &[u8],
        response: Response,
        requester_ip: Option<SocketAddr>,
    ) -> Option<QueryId> {
        let taken = Self::transaction_id(tx).and_then(|tx| self.engine.take_answered(now, from, tx, response.id));
        let Some(request) = taken else {
            self.out.counters.traffic.dropped += 1;
            return None;
        };
        let touched = request.purpose.operation();
        if let Some(reachability) = &mut self.out.reachability {
            reachability.note_answer();
        }
        if let Some(new_ip) = requester_ip.and_then(|ip| self.external.vote(from.ip(), ip)) {
            self.adopt_external_ip(now, new_ip);
        }
        let insertable = response.id != self.config.node_id && self.admits_contact(&response.id, from);
        let answer = Answer {
            id: response.id,
            nodes4: &response.nodes,
            nodes6: &response.nodes6,
            token: response.token.as_deref(),
        };
        let (engine, wire) = engine_and_wire!(self);
        match engine.on_answer(now, wire, from, request, answer, insertable) {
            Answered::Nothing => {}
            Answered::Pong { op } => self.ping_ended(now, op, Ok(Pong { id: response.id, addr: from })),
            Answered::Network(MainlinePurpose::Samples { op }) => {
                let mut nodes = response.nodes.clone();
                nodes.extend(response.nodes6.iter().copied());
                let samples = Samples {
                    from,
                    samples: response.samples.clone().unwrap_or_default(),
                    num: response.num.unwrap_or(0),
                    interval: response.interval.unwrap_or(0),
                    nodes,
                };
                self.finish(now, op, Some(CommandResult::SampleInfohashes(Ok(samples))));
            }
            Answered::Network(MainlinePurpose::Store { op }) => {
                if let Some(Kind::Store { round, .. }) = self.engine.network_kind_mut(op) {
                    round.on_stored(from, response.id);
                }
            }
            Answered::Lookup { op, .. } => self.on_lookup_answer(now, op, from, &response),
        }
        touched
    }

    /// What a lookup's answer carries for the operation: peers, BEP 44 items.
    fn on_lookup_answer(&mut self, now: Timestamp, op: QueryId, from: SocketAddr, response: &Response) {
        let Some(kind) = self.engine.network_kind_mut(op) else { return };
        if !response.values.is_empty() {
            let seen = match kind {
                Kind::GetPeers { seen } | Kind::Store { seen, .. } => Some(seen),
                _ => None,
            };
            if let Some(seen) = seen {
                let fresh: Vec<SocketAddr> =
                    response.values.iter().copied().filter(|p| seen.len() < 100_000 && seen.insert(*p)).collect();
                if let Some(quests) = self.quests.as_mut().filter(|q| q.owns(op)) {
                    quests.peers_found(now, op, (response.id, from), &fresh);
                } else if !fresh.is_empty() {
                    self.events.push_back(Event::Peers { query: op, from: (response.id, from), peers: fresh });
                }
            }
        }
        if let Kind::GetItem { expect, seen } = kind {
            if let Some(item) = expect.accept(response) {
                let seq = match &item {
                    Item::Mutable(m) => m.seq,
                    Item::Immutable(_) => 0,
                };
                if seen.len() < 64 && seen.insert((seq, Id::sha1_of(item.value()))) {
                    self.events.push_back(Event::Item { query: op, from: (response.id, from), item });
                }
            }
        }
    }

    /// Whether an address family has a routing table on this node.
    pub fn has_family(&self, ip: IpAddr) -> bool {
        self.engine.tables.has(if ip.is_ipv4() { Family::V4 } else { Family::V6 })
    }
}

impl OperationDriver for Node {
    type Kind = Kind;
    type Request = Query;
    type Purpose = MainlinePurpose;
    type Result = CommandResult;

    engine_accessors!();

    /// announce_peer, or a BEP 44 put.
    fn store_requests(&self, op: QueryId, operation: &Operation) -> Vec<StoreAt<Query, MainlinePurpose>> {
        let Some(Kind::Store { what, .. }) = operation.kind.network() else { return Vec::new() };
        // A search without lookups (no address family) has no target, and nobody to store at.
        let Some(info_hash) = operation.search.target() else { return Vec::new() };
        let targets = operation.search.closest_with_tokens(self.config.lookup.k);
        let store = |(id, addr, token)| {
            let request = match what {
                StoreRequest::Announce { port } => Query::AnnouncePeer {
                    info_hash,
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                    seed: None,
                },
                StoreRequest::Item { item, cas } => Query::Put(put_args(item, *cas, token)),
            };
            StoreAt { id, addr, request, purpose: MainlinePurpose::Store { op }, attempts: 1 }
        };
        targets.into_iter().map(store).collect()
    }

    fn result(&self, kind: &Kind, operation: &Operation) -> Option<CommandResult> {
        let closest = Closest::of(&operation.search);
        let stats = closest.stats;
        let stored = |round: &StoreRound, errors: &Vec<(SocketAddr, i64, String)>| Stored {
            stored_at: round.stored_at(),
            errors: errors.clone(),
            stats,
        };
        Some(match kind {
            Kind::Store { what: StoreRequest::Announce { .. }, round, errors, .. } => {
                CommandResult::Announce(stored(round, errors))
            }
            Kind::Store { what: StoreRequest::Item { .. }, round, errors, .. } => {
                CommandResult::PutItem(stored(round, errors))
            }
            Kind::GetPeers { .. } => CommandResult::GetPeers(closest.found()),
            Kind::GetItem { .. } => CommandResult::GetItem(closest.found()),
            // A sample request ends with its answer; without one it reached nobody.
            Kind::Samples => CommandResult::SampleInfohashes(Err(QueryError::NoContacts)),
        })
    }

    /// A sample request's failure ends its command; a store's is noted in its round.
    fn own_request_failed(&mut self, now: Timestamp, failed: OwnRequestFailed<MainlinePurpose>) {
        let OwnRequestFailed { to, purpose, error, .. } = failed;
        match purpose {
            MainlinePurpose::Samples { op } => self.finish(now, op, Some(CommandResult::SampleInfohashes(Err(error)))),
            MainlinePurpose::Store { op } => {
                if let Some(Kind::Store { errors, round, .. }) = self.engine.network_kind_mut(op) {
                    round.on_refused(to);
                    if let QueryError::Remote { code, message } = error {
                        errors.push((to, code, message));
                    }
                }
            }
        }
    }

    /// A (re)joined node's view is new: every quest runs a round now.
    fn rejoined(&mut self, now: Timestamp) {
        if let Some(quests) = &mut self.quests {
            quests.rejoined(now);
            self.run_quests(now);
        }
    }

    fn ended(&mut self, now: Timestamp, op: QueryId, operation: Operation, result: Option<CommandResult>) {
        if let Some(target) = self.background.remove(&op) {
            // A keep-alive re-put that reached nobody is tried again soon, not in an hour.
            let reached = matches!(&result, Some(CommandResult::PutItem(stored)) if !stored.stored_at.is_empty());
            if let (false, Some(kept)) = (reached, self.kept.get_mut(&target)) {
                let retry = now + self.config.keep_alive_retry;
                kept.next_put = kept.next_put.min(retry);
            }
            return;
        }
        if self.republishing.remove(&op) {
            return;
        }
        if let Some(quests) = self.quests.as_mut().filter(|q| q.owns(op)) {
            // The announces a store sent went to the closest nodes that gave a token.
            let announces = match operation.kind.network() {
                Some(Kind::Store { round, .. }) => round.sent_count(),
                _ => 0,
            };
            quests.finished(now, op, round_end(result.as_ref(), announces), &mut self.engine.rng);
            return;
        }
        if let Some(result) = result {
            self.events.push_back(Event::Finished { query: op, result });
        }
    }
}

/// What the quest book needs to know of a round's end (`announces`: announce_peer queries sent).
fn round_end(result: Option<&CommandResult>, announces: usize) -> RoundEnd {
    match result {
        Some(CommandResult::Announce(Stored { stored_at, errors, stats })) => RoundEnd {
            stored_at: stored_at.len(),
            answered: stats.successes,
            messages: stats.requests + stats.successes + (announces + stored_at.len() + errors.len()) as u32,
        },
        Some(CommandResult::GetPeers(Ok(Closest { stats, .. }))) => {
            RoundEnd { stored_at: 0, answered: stats.successes, messages: stats.requests + stats.successes }
        }
        _ => RoundEnd::default(),
    }
}

/// The arguments of a `put` carrying `item`, with its `target` (which the `mainline` crate needs).
fn put_args(item: &Item, cas: Option<i64>, token: Vec<u8>) -> PutArgs {
    match item {
        Item::Immutable(i) => PutArgs { token, value: i.value.clone(), target: Some(i.target()), ..PutArgs::default() },
        Item::Mutable(m) => PutArgs {
            target: Some(m.target()),
            token,
            value: m.value.clone(),
            public_key: Some(m.public_key),
            signature: Some(m.signature),
            seq: Some(m.seq),
            salt: (!m.salt.is_empty()).then(|| m.salt.clone()),
            cas,
        },
    }
}

crate::node_io::sans_io_node_by_inherent_methods!(Node);
