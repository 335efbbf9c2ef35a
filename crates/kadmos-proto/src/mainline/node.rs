//! A Mainline DHT node as a sans-IO state machine.
//!
//! # Driving a node
//!
//! The node never touches a socket or a clock. Whoever drives it (the tokio runtime in the
//! `kadmos` crate, or the simulator) does this, in any order, as often as needed:
//!
//! 1. **Inputs**: [`Node::handle_datagram`] for every UDP datagram received,
//!    [`Node::handle_timeout`] when the time from [`Node::poll_timeout`] has come, and commands
//!    ([`Node::bootstrap`], [`Node::ping`], [`Node::find_node`], [`Node::get_peers`],
//!    [`Node::announce_peer`], [`Node::sample_infohashes`]) which return a [`QueryId`], and
//!    quests ([`Node::advertise`], [`Node::watch`]; see [`super::quest`]), which run until
//!    stopped and report through `Event::Quest`.
//! 2. **Outputs**, after every input: drain [`Node::poll_transmit`] (datagrams to send),
//!    [`Node::poll_event`] (progress and results, keyed by `QueryId`), then ask
//!    [`Node::poll_timeout`] when to call `handle_timeout` next.
//!
//! Every input takes `now`; all randomness comes from the seeded generator in the config, so
//! the same inputs give the same outputs.
//!
//! # Implementation notes
//!
//! - One routing table per address family (BEP 32), and one [`Lookup`] per family for each
//!   operation; the nodes a reply names for the other family feed the sibling lookup.
//! - A node that queries us enters the routing table only after it answers a ping of ours
//!   (rate-limited), since a query's source address can be forged.
//! - Requests of our own are keyed by a random 4-byte transaction ID and the answer must
//!   come from the address we asked. Four bytes, not libtorrent's two: the `mainline` crate
//!   (pkarr, Pubky) ignores queries whose transaction ID is not exactly 4 bytes, and libtorrent
//!   and bittorrent-dht answer any length. Queries from others may carry any length (BEP 5).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{Config, CLIENT_VERSION};
use super::external_address::ExternalAddress;
use super::item::{ImmutableItem, Item, MutableItem};
use super::item_store::ItemStore;
use super::message::{error_code, Body, Message, PutArgs, Query, Response, Want};
use super::node_id_security::{self, NodeIdSecurity};
use super::peer_store::PeerStore;
use super::quest::{DueRound, QuestBook, QuestError, QuestEvent, RoundEnd, RoundKind};
use super::rate_limit::{RateLimiter, Refusal};
use super::reachability::Reachability;
use super::token::TokenIssuer;
use crate::kad::{
    FamilyTables, Id, InfoHash, InsertOutcome, LookupStats, NodeId, Parallelism, PendingRequest, RequestTable,
    RoutingTable, RttEstimator, Search, StoreRound, TimerQueue,
};
use crate::node_io::SansIoNode;
pub use crate::node_io::{Family, QueryId, Transmit};
use crate::time::Timestamp;

/// How long after joining a node looks up its own ID again; the gap then doubles up to the
/// bucket refresh interval and stays there. A node's neighbours learn of it only when it
/// queries them or someone names it, so a node that joined a young network stays unknown to
/// the nodes that join around it later unless it looks again (measured in the simulator: in
/// a 500-node network, nodes among the first hundred to join sat in 0 to 3 routing tables,
/// none of them near, so lookups for targets next to them missed them).
const NEIGHBOURHOOD_REFRESH_FIRST: Duration = Duration::from_secs(30);

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no answer within the timeout")]
    Timeout,
    #[error("remote error {code}: {message}")]
    Remote { code: i64, message: String },
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
    /// A lookup (find_node, get_peers, bootstrap) is over: the closest nodes that answered.
    Closest {
        nodes: Vec<(NodeId, SocketAddr)>,
        stats: LookupStats,
    },
    /// An announce is over: the nodes that stored our peer.
    /// An announce or a BEP 44 put is over: the nodes that stored it, and the errors others
    /// answered with (address, KRPC code, message). The store round ends once every storing
    /// node answered or stalled (`kad::store_round`), so a slow node that stored it after
    /// that is not listed.
    Stored {
        stored_at: Vec<(NodeId, SocketAddr)>,
        errors: Vec<(SocketAddr, i64, String)>,
        stats: LookupStats,
    },
    /// BEP 51 samples from one node.
    Samples {
        from: SocketAddr,
        samples: Vec<InfoHash>,
        num: i64,
        interval: i64,
        nodes: Vec<(NodeId, SocketAddr)>,
    },
    Failed(QueryError),
}

/// Progress and results of commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Peers for a `get_peers` or announce lookup, as one node sent them.
    Peers { query: QueryId, from: (NodeId, SocketAddr), peers: Vec<SocketAddr> },
    /// A verified BEP 44 item, as one node sent it during a `get_item` lookup.
    Item { query: QueryId, from: (NodeId, SocketAddr), item: Item },
    /// The command is over.
    Finished { query: QueryId, outcome: Outcome },
    /// What an advertisement or a watch did (see [`super::quest`]).
    Quest(QuestEvent),
}

/// Traffic and state counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub queries_received: u64,
    pub responses_received: u64,
    pub errors_received: u64,
    pub errors_sent: u64,
    pub dropped: u64,
    pub requests_sent: u64,
    pub requests_timed_out: u64,
    /// The same traffic by KRPC method and error code.
    pub messages: super::message_counts::MessageCounts,
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

#[derive(Clone, Debug)]
enum Purpose {
    /// A query of a lookup belonging to an operation.
    Lookup {
        op: QueryId,
        family: Family,
    },
    /// A find_node to a bootstrap router (no known ID).
    Router {
        op: QueryId,
    },
    Ping {
        op: QueryId,
    },
    /// An announce_peer or put at the end of a store operation.
    Store {
        op: QueryId,
    },
    Samples {
        op: QueryId,
    },
    /// Checking a node before it enters the table, or a questionable contact.
    Verify,
}

impl Purpose {
    /// The operation a request belongs to, if any.
    fn operation(&self) -> Option<QueryId> {
        match self {
            Purpose::Lookup { op, .. }
            | Purpose::Router { op }
            | Purpose::Ping { op }
            | Purpose::Store { op }
            | Purpose::Samples { op } => Some(*op),
            Purpose::Verify => None,
        }
    }
}

#[derive(Clone, Debug)]
struct SentRequest {
    to: SocketAddr,
    sent_at: Timestamp,
    /// When a lookup request stalls (the stall timeout changes as round trips are measured;
    /// an answer after this instant is a late one).
    stalls_at: Timestamp,
    node_id: Option<NodeId>,
    deadline: Timestamp,
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
enum Kind {
    FindNode,
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
    Bootstrap,
    /// Internal bucket refresh: emits no events.
    Refresh,
    Ping,
    Samples,
}

/// An item kept alive and when it is next re-put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptItem {
    pub item: Item,
    pub next_put: Timestamp,
}

/// What a store operation stores.
#[derive(Clone, Debug)]
enum StoreRequest {
    Announce { port: Option<u16> },
    Item { item: Item, cas: Option<i64> },
}

/// Which item a BEP 44 get looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemQuery {
    /// The immutable item with this target (its value must hash to it).
    Immutable(Id),
    /// The mutable item of this key and salt; nodes may omit values with `seq <= newer_than`.
    Mutable { public_key: [u8; 32], salt: Vec<u8>, newer_than: Option<i64> },
}

impl ItemQuery {
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

#[derive(Clone, Debug)]
struct Operation {
    kind: Kind,
    query: Query,
    search: Search,
    /// Requests outside the lookups that must end before the operation does.
    awaiting: usize,
    /// The wake-up queued for the lookups, if any (so one deadline is queued once).
    wake_at: Option<Timestamp>,
}

/// A Mainline DHT node. See the module documentation for how to drive it.
pub struct Node {
    config: Config,
    rng: ChaCha8Rng,
    tables: FamilyTables,
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
    /// Limits on what we serve and send (see `mainline::rate_limit`).
    limiter: RateLimiter,
    requests: RequestTable<u32, SentRequest>,
    /// When lookups must be stepped again (their requests stall), lazily cleaned.
    wakeups: TimerQueue<QueryId>,
    /// Round trips of our requests, for the lookups' stall timeout.
    rtt: RttEstimator,
    /// What stalled lookup requests turned out to be, decayed: answered late, or never. More
    /// late answers than deaths means lookups should wait for their stalled nodes.
    stalled_late: f32,
    stalled_dead: f32,
    /// When to look up our own ID again, and the gap before the one after (see
    /// [`NEIGHBOURHOOD_REFRESH_FIRST`]). `None` until the first bootstrap ends.
    neighbourhood_refresh: Option<(Timestamp, Duration)>,
    /// Ordered by QueryId so that driving them is deterministic (the simulator replays runs).
    operations: BTreeMap<QueryId, Operation>,
    next_query: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    next_maintenance: Timestamp,
    verify_budget: (Timestamp, u32),
    /// Our address as responders report it (BEP 42 `ip`), by vote.
    external: ExternalAddress,
    /// With `adaptive_read_only`: whether others reach us (boxed: the simulator's nodes run
    /// without it, and 100,000 of them count every byte).
    reachability: Option<Box<Reachability>>,
}

impl Node {
    pub fn new(config: Config, now: Timestamp) -> Node {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let tables = FamilyTables::new(config.node_id, config.families, &config.routing, now);
        let tokens = TokenIssuer::new(&mut rng, now, config.token_rotation);
        Node {
            peers: PeerStore::new(config.peer_store.clone()),
            items: ItemStore::new(config.item_store.clone()),
            kept: BTreeMap::new(),
            background: BTreeMap::new(),
            republished: BTreeMap::new(),
            republishing: std::collections::BTreeSet::new(),
            quests: None,
            tokens,
            limiter: RateLimiter::new(config.rate_limits.clone(), now),
            tables,
            rng,
            requests: RequestTable::default(),
            wakeups: TimerQueue::default(),
            rtt: RttEstimator::default(),
            stalled_late: 0.0,
            stalled_dead: 0.0,
            neighbourhood_refresh: None,
            operations: BTreeMap::new(),
            next_query: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            next_maintenance: now + config.maintenance_interval,
            verify_budget: (now, 0),
            external: ExternalAddress::new(config.external_address_votes),
            reachability: config.adaptive_read_only.map(|adaptive| Box::new(Reachability::new(adaptive, now))),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn routing_table(&self, family: Family) -> Option<&RoutingTable> {
        self.tables.get(family)
    }

    pub fn peer_store(&self) -> &PeerStore {
        &self.peers
    }

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

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Operations still running (user commands and internal refreshes).
    pub fn running_operations(&self) -> usize {
        self.operations.len()
    }

    /// Requests of ours awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// BEP 43: whether the node is read-only now, by configuration or because the adaptive
    /// mode found it unreachable (see `mainline::reachability`).
    pub fn is_read_only(&self) -> bool {
        self.config.read_only || self.reachability.as_ref().is_some_and(|r| r.is_read_only())
    }

    /// Our address as most responders report it (BEP 42 `ip`), if any did.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external.get()
    }

    /// Lookups in flight, for the simulator's invariant checks: (alpha, in flight) per lookup.
    pub fn lookup_parallelism(&self) -> impl Iterator<Item = Parallelism> + '_ {
        self.operations.values().flat_map(|op| op.search.parallelism())
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().or_else(|| self.quests.as_mut()?.poll_event().map(Event::Quest))
    }

    /// When [`Node::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let request_due = self.requests.next_deadline();
        let operations = &self.operations;
        let wakeup = self.wakeups.earliest(|_, op| operations.contains_key(op));
        let quest_due = self.quests.as_ref().and_then(|q| q.next_due());
        Some([request_due, wakeup, quest_due].into_iter().flatten().fold(self.next_maintenance, Timestamp::min))
    }

    fn note_stall_outcome(&mut self, answered_late: bool) {
        self.stalled_late *= 0.95;
        self.stalled_dead *= 0.95;
        if answered_late {
            self.stalled_late += 1.0;
        } else {
            self.stalled_dead += 1.0;
        }
    }

    /// Whether lookups wait for their stalled nodes: yes while at least four in five stalled
    /// requests were answered late rather than not at all (see `kad::lookup`). Waiting for a
    /// node that never answers costs a few stall timeouts, so the bar is high; without evidence
    /// either way (a node that has just joined) lookups wait, as a result that misses the slow
    /// among the closest nodes is worse than a slower one (measured in the simulator: the
    /// fault-free lookups that missed one of the k closest were those of nodes with no late
    /// answer on record yet).
    pub fn waits_for_stalled(&self) -> bool {
        self.stalled_late >= 4.0 * self.stalled_dead
    }

    /// The stall timeout lookups use now, from measured round trips.
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
        query: Query,
        extra_seeds: &[(NodeId, SocketAddr)],
    ) -> QueryId {
        let id = self.new_query_id();
        let search = Search::start(&self.tables, target, &self.config.lookup, extra_seeds);
        self.operations.insert(id, Operation { kind, query, search, awaiting: 0, wake_at: None });
        id
    }

    /// Joins the network: asks each router for nodes close to our own ID, then looks our ID
    /// up. `contacts` are known nodes (from saved state) used as lookup seeds; they enter the
    /// routing table once they answer. Emits `Finished { Closest }` when done.
    pub fn bootstrap(&mut self, now: Timestamp, routers: &[SocketAddr], contacts: &[(NodeId, SocketAddr)]) -> QueryId {
        let own = self.config.node_id;
        let query = Query::FindNode { target: own, want: self.want() };
        let op = self.start_operation(Kind::Bootstrap, own, query.clone(), contacts);
        let families = self.tables.enabled();
        for router in routers.iter().filter(|r| families.contains(&Family::of(r))) {
            if self.send_request(now, *router, None, query.clone(), Purpose::Router { op }).is_ok() {
                self.operations.get_mut(&op).expect("just created").awaiting += 1;
            }
        }
        self.drive_operation(now, op);
        op
    }

    /// Pings one node. Emits `Finished { Pong }` or `Finished { Failed }`.
    pub fn ping(&mut self, now: Timestamp, addr: SocketAddr) -> QueryId {
        let op = self.new_query_id();
        self.operations.insert(
            op,
            Operation { kind: Kind::Ping, query: Query::Ping, search: Search::default(), awaiting: 0, wake_at: None },
        );
        self.single_request(now, op, addr, Query::Ping, Purpose::Ping { op });
        op
    }

    /// BEP 51: asks one node for a sample of the infohashes it stores.
    pub fn sample_infohashes(&mut self, now: Timestamp, addr: SocketAddr, target: Id) -> QueryId {
        let op = self.new_query_id();
        let query = Query::SampleInfohashes { target, want: self.want() };
        self.operations.insert(
            op,
            Operation {
                kind: Kind::Samples,
                query: query.clone(),
                search: Search::default(),
                awaiting: 0,
                wake_at: None,
            },
        );
        self.single_request(now, op, addr, query, Purpose::Samples { op });
        op
    }

    fn single_request(&mut self, now: Timestamp, op: QueryId, addr: SocketAddr, query: Query, purpose: Purpose) {
        let family_ok = self.tables.reaches(&addr);
        let sent =
            if family_ok { self.send_request(now, addr, None, query, purpose) } else { Err(QueryError::NoContacts) };
        match sent {
            Ok(()) => self.operations.get_mut(&op).expect("just created").awaiting += 1,
            Err(e) => self.finish(now, op, Outcome::Failed(e)),
        }
    }

    /// Iterative find_node. Emits `Finished { Closest }`.
    pub fn find_node(&mut self, now: Timestamp, target: Id) -> QueryId {
        let query = Query::FindNode { target, want: self.want() };
        let op = self.start_operation(Kind::FindNode, target, query, &[]);
        self.drive_operation(now, op);
        op
    }

    /// Iterative get_peers. Emits `Peers` as nodes answer with peers (each peer once), then
    /// `Finished { Closest }`.
    pub fn get_peers(&mut self, now: Timestamp, info_hash: InfoHash) -> QueryId {
        let query = Query::GetPeers { info_hash, want: self.want() };
        let op = self.start_operation(Kind::GetPeers { seen: HashSet::new() }, info_hash, query, &[]);
        self.drive_operation(now, op);
        op
    }

    /// get_peers, then `announce_peer` to the closest nodes that gave a token. `port: None`
    /// asks them to use our UDP source port (`implied_port`). Emits `Peers` on the way, then
    /// `Finished { Announced }`.
    pub fn announce_peer(&mut self, now: Timestamp, info_hash: InfoHash, port: Option<u16>) -> QueryId {
        let query = Query::GetPeers { info_hash, want: self.want() };
        let op = self.start_store(StoreRequest::Announce { port }, info_hash, query);
        self.drive_operation(now, op);
        op
    }

    fn start_store(&mut self, what: StoreRequest, target: Id, query: Query) -> QueryId {
        let kind = Kind::Store { what, seen: HashSet::new(), errors: Vec::new(), round: StoreRound::default() };
        self.start_operation(kind, target, query, &[])
    }

    /// BEP 44 get: emits `Item` for every verified item a node returns (once per version),
    /// then `Finished { Closest }`.
    pub fn get_item(&mut self, now: Timestamp, expect: ItemQuery) -> QueryId {
        let target = expect.target();
        let seq = match &expect {
            ItemQuery::Mutable { newer_than, .. } => *newer_than,
            ItemQuery::Immutable(_) => None,
        };
        let query = Query::Get { target, seq, want: self.want() };
        let op = self.start_operation(Kind::GetItem { expect, seen: HashSet::new() }, target, query, &[]);
        self.drive_operation(now, op);
        op
    }

    /// BEP 44 put: looks up the closest nodes (collecting write tokens), then puts the item
    /// there. `cas` (mutable items) makes nodes refuse the put unless they hold that seq.
    /// Emits `Finished { Stored }` with the nodes that stored it and the errors of the others.
    pub fn put_item(&mut self, now: Timestamp, item: Item, cas: Option<i64>) -> QueryId {
        let target = item.target();
        let query = Query::Get { target, seq: None, want: self.want() };
        let op = self.start_store(StoreRequest::Item { item, cas }, target, query);
        self.drive_operation(now, op);
        op
    }

    /// Forgets a running command; late answers to it are ignored.
    pub fn cancel(&mut self, query: QueryId) {
        self.operations.remove(&query);
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

    /// Resumes a watch that already knows `peers` (from saved state): see
    /// [`QuestBook::resume_watch`].
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
            self.operations.remove(&op);
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
                RoundKind::Watch => {
                    self.start_operation(Kind::GetPeers { seen: HashSet::new() }, info_hash, query, &[])
                }
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
        self.counters.datagrams_received += 1;
        self.counters.bytes_received += datagram.len() as u64;
        if !self.tables.reaches(&from) {
            self.counters.dropped += 1;
            return;
        }
        match Message::decode(datagram) {
            Ok(message) => match message.body {
                Body::Query { id, query } => {
                    self.counters.queries_received += 1;
                    self.counters.messages.query_received(query.method(), datagram.len());
                    if let Some(reachability) = &mut self.reachability {
                        reachability.note_query(now, from.ip());
                    }
                    if !self.is_read_only() && self.admit_query(now, from) {
                        self.handle_query(now, from, message.transaction_id, id, query, message.read_only);
                    }
                }
                Body::Response(response) => {
                    self.counters.responses_received += 1;
                    if let Some(op) =
                        self.handle_response(now, from, &message.transaction_id, response, message.requester_ip)
                    {
                        self.drive_operation(now, op);
                    }
                }
                Body::Error { code, message: text } => {
                    self.counters.errors_received += 1;
                    self.counters.messages.error_received(code);
                    if let Some(op) = self.handle_error(now, from, &message.transaction_id, code, text) {
                        self.drive_operation(now, op);
                    }
                }
            },
            Err(error) => match error.reply() {
                Some(reply) if !self.is_read_only() => {
                    self.counters.errors_sent += 1;
                    if let Body::Error { code, .. } = &reply.body {
                        self.counters.messages.error_sent(*code);
                    }
                    self.send(from, &reply);
                }
                _ => self.counters.dropped += 1,
            },
        }
    }

    /// Handles expired requests and housekeeping. Call at the time [`Node::poll_timeout`] gave.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(tx) = self.requests.pop_due(now) {
            let Some(request) = self.requests.remove(tx) else { continue };
            self.counters.requests_timed_out += 1;
            if matches!(request.purpose, Purpose::Lookup { .. }) {
                self.note_stall_outcome(false);
            }
            if let Some(id) = request.node_id {
                if let Some(table) = self.tables.get_mut(Family::of(&request.to)) {
                    table.note_failure(&id, request.to, now);
                }
            }
            self.request_failed(now, request, QueryError::Timeout);
        }
        // Due wake-ups only ask for the lookups to be stepped, which `drive` below does.
        while self.wakeups.pop_due(now).is_some() {}
        if now >= self.next_maintenance {
            self.maintain(now);
        }
        self.drive(now);
        if self.quests.is_some() {
            self.run_quests(now);
        }
    }

    fn maintain(&mut self, now: Timestamp) {
        self.next_maintenance = now + self.config.maintenance_interval;
        self.tokens.maybe_rotate(now, &mut self.rng);
        self.peers.expire(now);
        self.items.expire(now);
        self.refresh_kept(now);
        self.republish_stored(now);
        self.shrink_buffers();
        self.limiter.forget_quiet_sources(now);
        if let Some(reachability) = &mut self.reachability {
            reachability.tick(now);
        }
        for target in self.tables.take_refresh_targets(now, &mut self.rng) {
            let query = Query::FindNode { target, want: self.want() };
            self.start_operation(Kind::Refresh, target, query, &[]);
        }
        if let Some((due, gap)) = self.neighbourhood_refresh {
            if now >= due {
                let gap = (gap * 2).min(self.config.routing.refresh_after);
                self.neighbourhood_refresh = Some((now + gap, gap));
                let target = self.config.node_id;
                let query = Query::FindNode { target, want: self.want() };
                self.start_operation(Kind::Refresh, target, query, &[]);
            }
        }
    }

    /// Gives back memory that bursts (joining, refreshes) left in queues and maps: a node is
    /// mostly idle, and the simulator holds 100,000 of them.
    fn shrink_buffers(&mut self) {
        self.requests.shrink();
        let operations = &self.operations;
        self.wakeups.retain(|_, op| operations.contains_key(op));
        self.transmits.shrink_to_fit();
        self.events.shrink_to_fit();
        // An emptied BTreeMap keeps its last node allocated; a fresh one holds nothing.
        if self.operations.is_empty() {
            self.operations = BTreeMap::new();
        }
        if self.background.is_empty() {
            self.background = BTreeMap::new();
        }
        if self.republished.is_empty() {
            self.republished = BTreeMap::new();
        }
    }

    /// After joining, looks up a random ID in every bucket holding fewer than k contacts, so
    /// that a young table fills its far buckets now rather than at their first 15-minute
    /// refresh (a lookup for a target in a half of the keyspace no contact covers cannot start).
    fn refresh_sparse_buckets(&mut self, now: Timestamp) {
        for family in self.tables.enabled() {
            let table = self.tables.get(family).expect("enabled");
            let targets = table.sparse_bucket_targets(&mut self.rng);
            for target in targets {
                let query = Query::FindNode { target, want: self.want() };
                let op = self.start_operation(Kind::Refresh, target, query, &[]);
                self.drive_operation(now, op);
            }
        }
    }

    /// With `republish_interval`, re-puts stored items last (re)published that long ago, as
    /// background operations (no events). Targets are taken in order, for determinism.
    fn republish_stored(&mut self, now: Timestamp) {
        let Some(interval) = self.config.republish_interval else { return };
        let items = &self.items;
        self.republished.retain(|target, _| items.get(target, now).is_some());
        let mut due: Vec<(Id, Item)> = self
            .items
            .iter()
            .filter(|s| {
                let since = self.republished.get(&s.item.target()).copied().unwrap_or(s.put_at);
                now.saturating_since(since) >= interval
            })
            .map(|s| (s.item.target(), s.item.clone()))
            .collect();
        due.sort_unstable_by_key(|(target, _)| *target);
        for (target, item) in due {
            self.republished.insert(target, now);
            let query = Query::Get { target, seq: None, want: self.want() };
            let kind = Kind::Store {
                what: StoreRequest::Item { item, cas: None },
                seen: HashSet::new(),
                errors: Vec::new(),
                round: StoreRound::default(),
            };
            let op = self.start_operation(kind, target, query, &[]);
            self.republishing.insert(op);
        }
    }

    /// Re-puts kept items that are due. A re-put that reaches nobody is retried after
    /// `keep_alive_retry` (see `finish`).
    fn refresh_kept(&mut self, now: Timestamp) {
        let due: Vec<Id> = self.kept.iter().filter(|(_, k)| k.next_put <= now).map(|(t, _)| *t).collect();
        for target in due {
            let kept = self.kept.get_mut(&target).expect("listed above");
            kept.next_put = now + self.config.keep_alive_interval;
            let item = kept.item.clone();
            let query = Query::Get { target, seq: None, want: self.want() };
            let kind = Kind::Store {
                what: StoreRequest::Item { item, cas: None },
                seen: HashSet::new(),
                errors: Vec::new(),
                round: StoreRound::default(),
            };
            let op = self.start_operation(kind, target, query, &[]);
            self.background.insert(op, target);
        }
    }

    // ---------------------------------------------------------------- serving

    fn handle_query(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tx: Vec<u8>,
        sender: NodeId,
        query: Query,
        sender_read_only: bool,
    ) {
        let family = Family::of(&from);
        let verified = self.tables.get(family).and_then(|t| t.get(&sender)).is_some_and(|c| c.addr() == from);
        if !sender_read_only && sender != self.config.node_id {
            let table = self.tables.get_mut(family).expect("checked in handle_datagram");
            let known = table.note_query(&sender, from, now);
            if !known
                && table.would_accept(&sender, from, now)
                && self.config.node_id_security.admits(&sender, from.ip())
                && self.verify_allowed(now)
                && !self.requests.any_to(from)
            {
                let _ = self.send_request(now, from, Some(sender), Query::Ping, Purpose::Verify);
            }
        }
        let mut response = Response { id: self.config.node_id, ..Response::default() };
        match query {
            Query::Ping => {}
            Query::FindNode { target, want } => self.fill_nodes(&mut response, &target, want, family),
            Query::GetPeers { info_hash, want } => {
                response.token = Some(self.tokens.issue(from.ip()).to_vec());
                let per_peer = if from.is_ipv4() { 8 } else { 21 };
                let max = (self.config.peers_reply_budget / per_peer).max(1);
                response.values = self.peers.peers(&info_hash, from.is_ipv6(), max, now, &mut self.rng);
                self.fill_nodes(&mut response, &info_hash, want, family);
            }
            Query::AnnouncePeer { info_hash, port, implied_port, token, .. } => {
                if !self.tokens.is_valid(from.ip(), &token) {
                    self.reply_error(from, tx, error_code::PROTOCOL, "bad token");
                    return;
                }
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    self.reply_error(from, tx, error_code::PROTOCOL, "port 0");
                    return;
                }
                self.peers.announce(info_hash, SocketAddr::new(from.ip(), port), now);
            }
            Query::SampleInfohashes { target, want } => {
                // 20 samples keep the answer around 600 bytes with nodes beside them.
                let (samples, num) = self.peers.sample(20, &mut self.rng);
                response.samples = Some(samples);
                response.num = Some(num as i64);
                response.interval = Some(self.config.sample_interval);
                self.fill_nodes(&mut response, &target, want, family);
            }
            Query::Get { target, seq, want } => {
                response.token = Some(self.tokens.issue(from.ip()).to_vec());
                match self.items.get(&target, now) {
                    Some(Item::Immutable(item)) => response.value = Some(item.value.clone()),
                    Some(Item::Mutable(item)) => {
                        response.seq = Some(item.seq);
                        // A querier that already holds this seq (or newer) need not get the value.
                        if seq.is_none_or(|s| s < item.seq) {
                            response.public_key = Some(item.public_key);
                            response.signature = Some(item.signature);
                            response.value = Some(item.value.clone());
                        }
                    }
                    None => {}
                }
                self.fill_nodes(&mut response, &target, want, family);
            }
            Query::Put(put) => {
                if !self.tokens.is_valid(from.ip(), &put.token) {
                    self.reply_error(from, tx, error_code::PROTOCOL, "bad token");
                    return;
                }
                if let Err(e) = self.store_put(put, now) {
                    let (code, text) = e;
                    self.reply_error(from, tx, code, &text);
                    return;
                }
            }
        }
        let mut message = Message::response(tx, response);
        message.requester_ip = Some(from);
        message.version = Some(CLIENT_VERSION.to_vec());
        self.send_reply(now, from, &message, verified);
    }

    /// BEP 42: whether a node that answered us may enter the routing table (counted if not).
    fn admits_contact(&mut self, id: &NodeId, from: SocketAddr) -> bool {
        let admitted = self.config.node_id_security.admits(id, from.ip());
        if !admitted {
            self.counters.insecure_ids_refused += 1;
        }
        admitted
    }

    /// BEP 42: the vote found a new external address. Unless our ID is already secure for it
    /// (or the policy keeps our ID), take a secure one and move the routing tables to it.
    fn adopt_external_ip(&mut self, now: Timestamp, ip: IpAddr) {
        if self.config.node_id_security != NodeIdSecurity::Enforce
            || node_id_security::is_secure(&self.config.node_id, ip)
        {
            return;
        }
        let last_byte = self.rng.gen();
        let id = node_id_security::secure_node_id(ip, last_byte, &mut self.rng);
        self.config.node_id = id;
        self.tables.recentre(id, now);
        self.counters.node_id_changes += 1;
    }

    /// Counts a query against the rate limits; whether to serve it. BEP 5 has no error for
    /// "too many queries", so one over a limit is dropped and counted.
    fn admit_query(&mut self, now: Timestamp, from: SocketAddr) -> bool {
        let admitted = self.limiter.allow_query(now, from.ip()).is_ok();
        if !admitted {
            self.counters.queries_rate_limited += 1;
        }
        admitted
    }

    /// Sends an answer if the outbound and amplification caps allow it (see
    /// `mainline::rate_limit`); `verified`: the querier is in the routing table at `to`.
    fn send_reply(&mut self, now: Timestamp, to: SocketAddr, message: &Message, verified: bool) {
        let mut payload = Vec::with_capacity(512);
        message.encode(&mut payload);
        match self.limiter.allow_reply(now, to.ip(), payload.len(), verified) {
            Ok(()) => self.push_transmit(to, payload),
            Err(Refusal::OutboundBytes) => self.counters.replies_capped_outbound += 1,
            Err(_) => self.counters.replies_capped_unverified += 1,
        }
    }

    /// Validates and stores a BEP 44 put; on refusal, the KRPC error code and message.
    fn store_put(&mut self, put: PutArgs, now: Timestamp) -> Result<(), (i64, String)> {
        let refuse = |e: super::item::ItemError| (e.code(), e.to_string());
        let item = match put.public_key {
            None => Item::Immutable(ImmutableItem::new(put.value).map_err(refuse)?),
            Some(public_key) => {
                let (Some(signature), Some(seq)) = (put.signature, put.seq) else {
                    return Err((error_code::PROTOCOL, "a mutable put needs sig and seq".into()));
                };
                let salt = put.salt.unwrap_or_default();
                if salt.len() > super::item::MAX_SALT_LEN {
                    return Err(refuse(super::item::ItemError::SaltTooBig(salt.len())));
                }
                Item::Mutable(MutableItem { public_key, salt, seq, value: put.value, signature })
            }
        };
        self.items.put(item, put.cas, now).map_err(refuse)
    }

    fn fill_nodes(&self, response: &mut Response, target: &Id, want: Option<Want>, family: Family) {
        let want = want.filter(|w| w.v4 || w.v6).unwrap_or(Want { v4: family == Family::V4, v6: family == Family::V6 });
        let k = self.config.routing.bucket_size;
        let closest = |f: Family| -> Vec<(NodeId, SocketAddr)> { self.tables.closest_nodes(f, target, k) };
        if want.v4 {
            response.nodes = closest(Family::V4);
        }
        if want.v6 {
            response.nodes6 = closest(Family::V6);
        }
    }

    fn reply_error(&mut self, to: SocketAddr, tx: Vec<u8>, code: i64, text: &str) {
        self.counters.errors_sent += 1;
        self.counters.messages.error_sent(code);
        let mut message = Message::error(tx, code, text);
        message.version = Some(CLIENT_VERSION.to_vec());
        self.send(to, &message);
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

    // ---------------------------------------------------------------- our requests

    /// Sends a request of ours or an error answer: always sent, and counted against the
    /// outbound cap. Returns its length.
    fn send(&mut self, to: SocketAddr, message: &Message) -> usize {
        let mut payload = Vec::with_capacity(512);
        message.encode(&mut payload);
        let len = payload.len();
        self.limiter.spend_outbound(len);
        self.push_transmit(to, payload);
        len
    }

    fn push_transmit(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.counters.datagrams_sent += 1;
        self.counters.bytes_sent += payload.len() as u64;
        self.transmits.push_back(Transmit { to, payload });
    }

    fn send_request(
        &mut self,
        now: Timestamp,
        to: SocketAddr,
        node_id: Option<NodeId>,
        query: Query,
        purpose: Purpose,
    ) -> Result<(), QueryError> {
        if self.requests.len() >= self.config.max_pending_requests {
            return Err(QueryError::Overloaded);
        }
        let rng = &mut self.rng;
        let tx = self.requests.free_id(|| rng.gen());
        let timeout = match purpose {
            Purpose::Lookup { .. } | Purpose::Router { .. } => self.config.lookup.request_timeout,
            _ => self.config.request_timeout,
        };
        let deadline = now + timeout;
        let method = query.method();
        let mut message = Message::query(tx.to_be_bytes().to_vec(), self.config.node_id, query);
        message.read_only = self.is_read_only();
        if let Some(reachability) = &mut self.reachability {
            reachability.note_sent(to.ip());
        }
        message.version = Some(CLIENT_VERSION.to_vec());
        self.counters.requests_sent += 1;
        let len = self.send(to, &message);
        self.counters.messages.query_sent(method, len);
        let stalls_at = now + self.stall_timeout();
        self.requests.insert(tx, SentRequest { to, sent_at: now, stalls_at, node_id, deadline, purpose });
        Ok(())
    }

    fn take_request(&mut self, from: SocketAddr, tx: &[u8]) -> Option<SentRequest> {
        let tx = u32::from_be_bytes(tx.try_into().ok()?);
        self.requests.take_answered(tx, from)
    }

    fn handle_response(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tx: &[u8],
        response: Response,
        requester_ip: Option<SocketAddr>,
    ) -> Option<QueryId> {
        let Some(request) = self.take_request(from, tx) else {
            self.counters.dropped += 1;
            return None;
        };
        let touched = request.purpose.operation();
        if let Some(reachability) = &mut self.reachability {
            reachability.note_answer();
        }
        let rtt = now.saturating_since(request.sent_at);
        if matches!(request.purpose, Purpose::Lookup { .. }) && now > request.stalls_at {
            self.note_stall_outcome(true);
        }
        self.rtt.observe(rtt);
        self.tables.note_round_trip(&response.id, rtt);
        if request.node_id.is_some_and(|id| id != response.id) {
            // The node at that address is not the one we meant; treat it as a failure for the
            // old ID but still learn the new one below.
            if let (Some(old), Some(table)) = (request.node_id, self.tables.get_mut(Family::of(&from))) {
                table.note_failure(&old, from, now);
            }
        }
        if let Some(new_ip) = requester_ip.and_then(|ip| self.external.vote(from.ip(), ip)) {
            self.adopt_external_ip(now, new_ip);
        }
        if response.id != self.config.node_id && self.admits_contact(&response.id, from) {
            let family = Family::of(&from);
            let table = self.tables.get_mut(family).expect("checked in handle_datagram");
            if let InsertOutcome::Cached { ping: Some(old) } = table.insert_responded(response.id, from, now) {
                if !self.requests.any_to(old.addr()) {
                    let _ = self.send_request(now, old.addr(), Some(old.id), Query::Ping, Purpose::Verify);
                }
            }
        }
        match request.purpose {
            Purpose::Verify => {}
            Purpose::Ping { op } => {
                self.finish(now, op, Outcome::Pong { id: response.id, addr: from });
            }
            Purpose::Samples { op } => {
                let mut nodes = response.nodes.clone();
                nodes.extend(response.nodes6.iter().copied());
                let outcome = Outcome::Samples {
                    from,
                    samples: response.samples.clone().unwrap_or_default(),
                    num: response.num.unwrap_or(0),
                    interval: response.interval.unwrap_or(0),
                    nodes,
                };
                self.finish(now, op, outcome);
            }
            Purpose::Store { op } => {
                if let Some(Operation { kind: Kind::Store { round, .. }, .. }) = self.operations.get_mut(&op) {
                    round.on_stored(from, response.id);
                }
            }
            Purpose::Router { op } => {
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.awaiting -= 1;
                    Self::feed_lookups(operation, &response);
                }
            }
            Purpose::Lookup { op, family } => {
                let Some(operation) = self.operations.get_mut(&op) else { return touched };
                let own = self.config.node_id;
                let nodes = (&response.nodes[..], &response.nodes6[..]);
                operation.search.on_answer(family, response.id, own, nodes, response.token.as_deref());
                if !response.values.is_empty() {
                    let seen = match &mut operation.kind {
                        Kind::GetPeers { seen } | Kind::Store { seen, .. } => Some(seen),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        let fresh: Vec<SocketAddr> = response
                            .values
                            .iter()
                            .copied()
                            .filter(|p| seen.len() < 100_000 && seen.insert(*p))
                            .collect();
                        if let Some(quests) = self.quests.as_mut().filter(|q| q.owns(op)) {
                            quests.peers_found(now, op, (response.id, from), &fresh);
                        } else if !fresh.is_empty() {
                            self.events.push_back(Event::Peers { query: op, from: (response.id, from), peers: fresh });
                        }
                    }
                }
                if let Kind::GetItem { expect, seen } = &mut operation.kind {
                    if let Some(item) = expect.accept(&response) {
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
        }
        touched
    }

    fn feed_lookups(operation: &mut Operation, response: &Response) {
        for fl in operation.search.lookups_mut() {
            let nodes = if fl.family == Family::V4 { &response.nodes } else { &response.nodes6 };
            fl.lookup.add_candidates(nodes.iter().copied());
        }
    }

    fn handle_error(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tx: &[u8],
        code: i64,
        message: String,
    ) -> Option<QueryId> {
        let Some(request) = self.take_request(from, tx) else {
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
            Purpose::Ping { op } | Purpose::Samples { op } => self.finish(now, op, Outcome::Failed(error)),
            Purpose::Store { op } => {
                if let Some(Operation { kind: Kind::Store { errors, round, .. }, .. }) = self.operations.get_mut(&op) {
                    round.on_refused(request.to);
                    if let QueryError::Remote { code, message } = error {
                        errors.push((request.to, code, message));
                    }
                }
            }
            Purpose::Router { op } => {
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.awaiting -= 1;
                }
            }
            Purpose::Lookup { op, family } => {
                // Timeouts are the lookup's own business (it retries); errors fail the node.
                if let (QueryError::Remote { .. }, Some(operation), Some(id)) =
                    (&error, self.operations.get_mut(&op), request.node_id)
                {
                    operation.search.on_failure(family, &id);
                }
            }
        }
    }

    fn finish(&mut self, now: Timestamp, op: QueryId, outcome: Outcome) {
        let Some(operation) = self.operations.remove(&op) else { return };
        if let Some(target) = self.background.remove(&op) {
            // A keep-alive re-put that reached nobody is tried again soon, not in an hour.
            let reached = matches!(&outcome, Outcome::Stored { stored_at, .. } if !stored_at.is_empty());
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
            let announces = match &operation.kind {
                Kind::Store { round, .. } => round.sent_count(),
                _ => 0,
            };
            quests.finished(now, op, round_end(&outcome, announces), &mut self.rng);
            return;
        }
        if matches!(operation.kind, Kind::Bootstrap) {
            self.refresh_sparse_buckets(now);
            self.neighbourhood_refresh = Some((now + NEIGHBOURHOOD_REFRESH_FIRST, NEIGHBOURHOOD_REFRESH_FIRST));
            // A (re)joined node's view is new: every quest runs a round now.
            if let Some(quests) = &mut self.quests {
                quests.rejoined(now);
                self.run_quests(now);
            }
        }
        if !matches!(operation.kind, Kind::Refresh) {
            self.events.push_back(Event::Finished { query: op, outcome });
        }
    }

    /// Steps every lookup: sends what they ask for, and finishes operations that are done.
    fn drive(&mut self, now: Timestamp) {
        let ids: Vec<QueryId> = self.operations.keys().copied().collect();
        for op in ids {
            self.drive_operation(now, op);
        }
    }

    fn drive_operation(&mut self, now: Timestamp, op: QueryId) {
        let stall_timeout = self.stall_timeout();
        let wait_for_stalled = self.waits_for_stalled();
        let Some(operation) = self.operations.get_mut(&op) else { return };
        // A bootstrap lookup with no seeds waits for the routers to name some nodes.
        let waiting_for_routers = operation.awaiting > 0;
        let sends = operation.search.step(now, stall_timeout, Some(wait_for_stalled), waiting_for_routers);
        self.queue_wake(now, op);
        for (family, id, addr) in sends {
            let query = self.operations[&op].query.clone();
            if self.send_request(now, addr, Some(id), query, Purpose::Lookup { op, family }).is_err() {
                // Too many requests in flight: count the node as failed so the lookup moves on.
                if let Some(operation) = self.operations.get_mut(&op) {
                    operation.search.on_failure(family, &id);
                }
            }
        }
        let Some(operation) = self.operations.get(&op) else { return };
        let lookups_done = operation.search.is_finished();
        if !lookups_done || operation.awaiting > 0 {
            return;
        }
        // Store operations: once the lookups are over, store at the closest nodes that gave us
        // a token (announce_peer, or a BEP 44 put), until each has answered or stalled.
        if let Kind::Store { what, round, .. } = &operation.kind {
            if !round.started() {
                let what = what.clone();
                self.start_store_round(now, op, what);
            }
            let Some(Operation { kind: Kind::Store { round, .. }, .. }) = self.operations.get_mut(&op) else { return };
            round.step(now);
            if !round.is_over() {
                self.queue_wake(now, op);
                return;
            }
        }
        let operation = &self.operations[&op];
        let (nodes, stats) = operation.search.summary();
        let outcome = match &operation.kind {
            Kind::Store { round, errors, .. } => {
                Outcome::Stored { stored_at: round.stored_at(), errors: errors.clone(), stats }
            }
            _ if nodes.is_empty()
                && stats.requests == 0
                && !matches!(operation.kind, Kind::Refresh | Kind::Bootstrap) =>
            {
                Outcome::Failed(QueryError::NoContacts)
            }
            _ => Outcome::Closest { nodes, stats },
        };
        self.finish(now, op, outcome);
    }

    /// Sends the store of a store operation to the closest nodes that gave a token (announce_peer,
    /// or a BEP 44 put) and begins its round; they stall as lookup requests do.
    fn start_store_round(&mut self, now: Timestamp, op: QueryId, what: StoreRequest) {
        let operation = &self.operations[&op];
        let targets = operation.search.closest_with_tokens(self.config.lookup.k);
        let info_hash = operation.search.target();
        let mut sent = Vec::new();
        for (id, addr, token) in targets {
            let query = match &what {
                StoreRequest::Announce { port } => Query::AnnouncePeer {
                    info_hash: info_hash.expect("a store operation has a lookup"),
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                    seed: None,
                },
                StoreRequest::Item { item, cas } => Query::Put(put_args(item, *cas, token)),
            };
            if self.send_request(now, addr, Some(id), query, Purpose::Store { op }).is_ok() {
                sent.push((id, addr));
            }
        }
        let (stall_timeout, wait_for_stalled) = (self.stall_timeout(), self.waits_for_stalled());
        if let Some(Operation { kind: Kind::Store { round, .. }, .. }) = self.operations.get_mut(&op) {
            round.start();
            for (id, addr) in sent {
                round.sent(now, id, addr, stall_timeout, wait_for_stalled, self.config.request_timeout);
            }
        }
    }

    /// Queues a wake-up for an operation's next deadline: when a lookup request stalls (or,
    /// when lookups wait for stalled nodes, one stops holding up the result), or when a store
    /// request stalls.
    fn queue_wake(&mut self, now: Timestamp, op: QueryId) {
        let Some(operation) = self.operations.get_mut(&op) else { return };
        let next = match &operation.kind {
            Kind::Store { round, .. } if round.started() => round.next_deadline(),
            _ => operation.search.next_deadline(),
        };
        if let Some(at) = next.filter(|at| *at > now) {
            if operation.wake_at.is_none_or(|queued| queued <= now || at < queued) {
                operation.wake_at = Some(at);
                self.wakeups.push(at, op);
            }
        }
    }

    /// Known good and questionable contacts of both families, for saving state.
    pub fn contacts(&self) -> Vec<(NodeId, SocketAddr)> {
        self.tables.contacts()
    }

    /// Whether an address family has a routing table on this node.
    pub fn has_family(&self, ip: IpAddr) -> bool {
        self.tables.has(if ip.is_ipv4() { Family::V4 } else { Family::V6 })
    }
}

/// What the quest book needs to know of a round's end (`announces`: announce_peer queries sent).
fn round_end(outcome: &Outcome, announces: usize) -> RoundEnd {
    match outcome {
        Outcome::Stored { stored_at, errors, stats } => RoundEnd {
            stored_at: stored_at.len(),
            answered: stats.successes,
            messages: stats.requests + stats.successes + (announces + stored_at.len() + errors.len()) as u32,
        },
        Outcome::Closest { stats, .. } => {
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
