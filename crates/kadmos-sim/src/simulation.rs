//! The simulation: many unchanged sans-IO nodes of one network ([`kadmos_proto::mainline::Node`]
//! or [`kadmos_proto::opendht::Node`], through [`SimNode`]) in one process, driven on virtual
//! time, with faults, workloads and invariant checks.
//!
//! # A run
//!
//! 1. **Build**: `nodes` nodes are created at time zero (IDs and node seeds from the
//!    simulator's generator; node `i` lives at `10.0.0.0 + i + 1`, port 6881). Of the `seeds`
//!    first nodes, each bootstraps from the ones before it; then every other node bootstraps
//!    from the seeds, one every `join_interval_ms`. The network then settles for
//!    `settle_secs` (default 60 s), time for the refreshes each node runs after joining.
//! 2. **Faults**: a `dead` share of the nodes dies silently (their routing-table entries stay
//!    behind in everyone else's tables). Churn and the partition clock start.
//! 3. **Workload**: one unit of work every `lookup_interval_ms`, the workloads taking turns,
//!    until `lookups` units have begun, every measured lookup has finished and every wake-up
//!    a workload asked for ([`Control::wake_after`]) has come.
//!
//! After every input a node gets (`handle_datagram`, `handle_timeout`, a command) the
//! simulator drains `poll_transmit` and `poll_event`, then asks `poll_timeout`, exactly as
//! the module documentation of `Node` says a driver must.
//!
//! # What success means
//!
//! - `find_node`, `get_peers`: the lookup finished with at least one node in its result.
//! - `get_peers` that expects a peer (`get_peers_announced`): also, a `Peers` event named
//!   the announced peer.
//! - `announce`: at least one node stored the peer.
//! - `put_item` ([`Control::put_item`]): at least one node stored the item.
//! - `get_item` ([`Control::get_item`]) with an expected item: an `Item` event brought that
//!   very item (for a mutable one, that version); without one, like `find_node`.
//! - OpenDHT `find` and `get` ([`Control::find`], [`Control::get`]): a non-empty result; a
//!   `get` with an expected value: a `Value` event brought that value (same id and content).
//! - OpenDHT `put` ([`Control::put`]): at least one node stored the value.
//!
//! Accuracy is separate: the share of the true `k` closest live nodes not behind a NAT (the
//! querying node left out) that the result holds, as the [`Oracle`] knows them when the
//! lookup finishes.
//!
//! Next to it, *within reach*: the share of those nodes whose answer could have come back
//! before the lookup ended, had it asked each the moment an answer first named it (or, for a
//! node from its own table, when it asked it), known which silent nodes were dead, and lost
//! nothing; and the time by which all of them could have. That is the most accuracy any rule
//! for ending lookups could have had at the same completion time, so it tells a lookup that
//! gave up too early from one that could not have done better.
//!
//! A node that answered holds no slot of the lookup any more, even while a retry of the
//! request to it is on the wire (OpenDHT retries a silent search request once): the wire
//! count of requests in flight leaves such a retry out.
//!
//! # Invariants
//!
//! Checked after every input of a node: no lookup has more than alpha requests in flight
//! outside the target's neighbourhood, nor more than final alpha in all, as the lookup counts
//! them (`KademliaNode::lookup_parallelism`) and, for measured lookups, no more than final alpha as
//! counted on the wire (queries not answered and sent less than the node's stall timeout ago);
//! pending
//! requests stay within `max_pending_requests`; no
//! datagram is larger than 1280 bytes; no node sends to its own address; every `Peers` and
//! `Finished` event belongs to a command that is still running, and each command finishes
//! once; a lookup's result holds at most k nodes, in distance order, never the querier itself,
//! and only real nodes (the ID really lives at that address), and no more of the true k
//! closest than were within reach (an answer takes at least its link's round trip after the
//! lookup heard of the node); `handle_timeout` does not spin
//! at one instant.
//!
//! Checked every `check_every_secs` of virtual time (up to 1,000 nodes per sweep, taking
//! turns, so a large network is covered over several sweeps): every live routing table passes
//! `RoutingTable::check_invariants` (bucket sizes, no duplicates, never the node itself) and
//! holds no contact at the node's own address; peer stores keep their limit; no measured
//! lookup runs longer than `max_lookup_secs`.
//!
//! A violation stops the run with a [`Violation`] that carries the seed and the command line
//! that replays it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use kadmos_proto::mainline::Node;
use kadmos_proto::node_io::{QueryId, Transmit};
use kadmos_proto::{Id, NodeId, Timestamp};

use crate::event_queue::EventQueue;
use crate::network::{Fate, NatTable, Network, NodeIndex, Traffic};
use crate::options::SimOptions;
use crate::oracle::Oracle;
use crate::report::{
    BootstrapFigures, LookupRecord, LookupReport, NodeFigures, Percentiles, Perf, Report, TableFigures,
};
use crate::sim_node::{Command, NodeEvent, SimNode};
use crate::workload::{LookupDone, Workload};

/// The UDP port of every simulated node.
pub const PORT: u16 = 6881;
/// First address: node `i` lives at `FIRST_ADDR + i`.
const FIRST_ADDR: u32 = 0x0A00_0001;
/// Largest datagram a node may send: the IPv6 minimum MTU the core's reply budget aims under.
pub const MAX_DATAGRAM: usize = 1280;
/// Routing tables checked per sweep; larger networks are covered over several sweeps.
const SWEEP_NODES: usize = 1000;
/// `handle_timeout` calls at one instant after which a node is taken to be spinning.
const MAX_TIMEOUTS_AT_ONE_INSTANT: u32 = 1000;

/// The address of a simulated node.
pub fn addr_of(node: NodeIndex) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(FIRST_ADDR + node), PORT))
}

/// The node living at an address, if the address is one the simulator hands out.
fn index_of(addr: &SocketAddr) -> Option<NodeIndex> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == PORT => u32::from(*v4.ip()).checked_sub(FIRST_ADDR),
        _ => None,
    }
}

/// A broken invariant: the run stopped here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    /// Virtual time of the event that broke it, in microseconds.
    pub at_us: u64,
    pub node: Option<NodeIndex>,
    pub what: String,
    /// The command line that replays the run up to here.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant violated at {:.6} s", self.at_us as f64 / 1e6)?;
        if let Some(node) = self.node {
            write!(f, " on node {node} ({})", addr_of(node))?;
        }
        write!(f, ": {}\nseed {}; replay with:\n  {}", self.what, self.seed, self.replay)
    }
}

impl std::error::Error for Violation {}

enum SimEvent {
    Deliver { to: NodeIndex, from: NodeIndex, payload: Vec<u8> },
    Timer { node: NodeIndex },
    Join { node: NodeIndex },
    Begin,
    ChurnLeave,
    ChurnJoin,
    Sweep,
    Wake { workload: usize, tag: u64 },
}

/// A simulated host: the node (none once it died) and what the simulator keeps about it.
struct Slot<N> {
    id: NodeId,
    node: Option<Box<N>>,
    /// The earliest timer event in the queue that is still valid for this node.
    timer: Option<Timestamp>,
    nat: Option<Box<NatTable>>,
    /// Commands the simulator issued that have not finished.
    commands: Vec<QueryId>,
    /// Measured lookups running on this node (their datagrams are inspected).
    tracked: u32,
    /// Last instant `handle_timeout` ran and how often in a row.
    fired: (Timestamp, u32),
    /// When the node died (`dead` or churn).
    left_at: Option<Timestamp>,
}

/// A query of a measured lookup, seen on the wire, not answered yet.
struct PendingQuery {
    to: NodeIndex,
    transaction_id: Vec<u8>,
    /// When the lookup stops counting it in flight (the node's stall timeout when it was sent).
    stall_at: Timestamp,
    /// A query of the iterative lookup itself (not an announce_peer at its end), bound by
    /// final alpha.
    iterative: bool,
}

/// See [`World::reach`].
#[derive(Clone, Copy)]
struct Reach {
    share: f64,
    all_by_us: Option<u64>,
}

/// When a measured lookup first heard of a node, and at which hop.
#[derive(Clone, Copy)]
struct Heard {
    /// 1 for a node from the querier's own routing table (first seen as a query to it), h + 1
    /// for a node first named by one at h.
    hop: u32,
    at: Timestamp,
}

/// A measured lookup in flight.
struct Tracked<N: SimNode> {
    command: Command,
    kind: &'static str,
    workload: usize,
    tag: u64,
    target: Id,
    started: Timestamp,
    /// What the command must find to succeed.
    expect: Option<N::Expect>,
    found_expected: bool,
    first_peers: Option<Timestamp>,
    messages: u32,
    bytes: u64,
    /// Queries awaiting a reply.
    pending: Vec<PendingQuery>,
    /// When and at which hop the lookup first heard of each node it queried or was named.
    heard: HashMap<NodeIndex, Heard>,
    /// The items (BEP 44 items, OpenDHT values) that came back.
    items: Vec<N::Item>,
    /// The neighbourhood bits of the node's table when the lookup sent its first query.
    neighbourhood: Option<u32>,
}

/// Everything but the workloads (which get a [`Control`] onto this).
struct World<N: SimNode> {
    options: SimOptions,
    node_template: N::Config,
    rng: ChaCha8Rng,
    now: Timestamp,
    queue: EventQueue<SimEvent>,
    network: Network,
    slots: Vec<Slot<N>>,
    live: Vec<NodeIndex>,
    /// Position of each node in `live`, `u32::MAX` once dead.
    live_pos: Vec<u32>,
    oracle: Oracle,
    tracked: BTreeMap<(NodeIndex, QueryId), Tracked<N>>,
    done: VecDeque<(usize, LookupDone<N>)>,
    records: Vec<LookupRecord>,
    abandoned: BTreeMap<&'static str, usize>,
    traffic: Traffic,
    events: u64,
    sweeps: u64,
    sweep_cursor: usize,
    units_begun: usize,
    /// Wake-ups workloads asked for that have not come yet.
    wakes_pending: usize,
    figures: NodeFigures,
    bootstrap_ok: usize,
    bootstrap_failed: usize,
    violation: Option<Violation>,
    scratch_transmits: Vec<Transmit>,
    scratch_events: Vec<N::Event>,
    /// Events of nodes for the workloads, outside measured commands.
    notices: VecDeque<(NodeIndex, N::Notice)>,
}

/// What a workload may do: pick nodes, draw random numbers and start measured lookups.
pub struct Control<'a, N: SimNode = Node> {
    world: &'a mut World<N>,
    workload: usize,
}

impl<N: SimNode> Control<'_, N> {
    pub fn now(&self) -> Timestamp {
        self.world.now
    }

    /// The simulator's generator (drawing from it is deterministic like everything else).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.world.rng
    }

    /// A random live node other than `except`, if there is one.
    pub fn random_live_node(&mut self, except: Option<NodeIndex>) -> Option<NodeIndex> {
        let live = &self.world.live;
        if live.is_empty() || (live.len() == 1 && except == Some(live[0])) {
            return None;
        }
        loop {
            let node = live[self.world.rng.gen_range(0..live.len())];
            if Some(node) != except {
                return Some(node);
            }
        }
    }

    pub fn addr(&self, node: NodeIndex) -> SocketAddr {
        addr_of(node)
    }

    /// The node itself, to read its state (none once dead).
    pub fn node(&self, node: NodeIndex) -> Option<&N> {
        self.world.slots.get(node as usize).and_then(|s| s.node.as_deref())
    }

    /// Starts a command that is not measured but whose findings go to the workloads as
    /// notices (an OpenDHT listen), until [`Control::end_unmeasured`]. `None` if the node is
    /// dead.
    pub(crate) fn start_unmeasured(
        &mut self,
        node: NodeIndex,
        issue: impl FnOnce(&mut N, Timestamp) -> QueryId,
    ) -> Option<QueryId> {
        let query = self.with_node(node, issue)?;
        self.world.slots[node as usize].commands.push(query);
        Some(query)
    }

    /// Ends a command started with [`Control::start_unmeasured`] (`end` cancels it on the
    /// node). Whether the node was alive and running it.
    pub(crate) fn end_unmeasured(
        &mut self,
        node: NodeIndex,
        query: QueryId,
        end: impl FnOnce(&mut N, Timestamp, QueryId) -> bool,
    ) -> bool {
        let commands = &mut self.world.slots[node as usize].commands;
        let Some(pos) = commands.iter().position(|q| *q == query) else { return false };
        commands.swap_remove(pos);
        self.with_node(node, |n, now| end(n, now, query)).unwrap_or(false)
    }

    /// Runs `f` on a live node, then drains its outputs; `None` if the node is dead.
    pub(crate) fn with_node<R>(&mut self, node: NodeIndex, f: impl FnOnce(&mut N, Timestamp) -> R) -> Option<R> {
        let now = self.world.now;
        let n = self.world.slots.get_mut(node as usize).and_then(|s| s.node.as_mut())?;
        let result = f(n, now);
        self.world.after_input(node);
        Some(result)
    }

    /// Calls [`Workload::woke`] with `tag` after `delay` of virtual time. The workload is not
    /// over while a wake-up is pending.
    pub fn wake_after(&mut self, delay: Duration, tag: u64) {
        let world = &mut *self.world;
        world.wakes_pending += 1;
        world.queue.push(world.now + delay, SimEvent::Wake { workload: self.workload, tag });
    }

    /// The live nodes, in no particular order.
    pub fn live_nodes(&self) -> &[NodeIndex] {
        &self.world.live
    }

    /// When a node died (`dead` or churn); `None` while it lives.
    pub fn left_at(&self, node: NodeIndex) -> Option<Timestamp> {
        self.world.slots.get(node as usize).and_then(|s| s.left_at)
    }

    /// Starts a measured command `issue` gives the node; with `expect`, it succeeds only if
    /// the node finds that. `None` if the node is dead.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        node: NodeIndex,
        command: Command,
        target: Id,
        kind: &'static str,
        tag: u64,
        expect: Option<N::Expect>,
        issue: impl FnOnce(&mut N, Timestamp) -> QueryId,
    ) -> Option<QueryId> {
        let world = &mut *self.world;
        let now = world.now;
        let slot = world.slots.get_mut(node as usize)?;
        let query = issue(slot.node.as_mut()?, now);
        slot.commands.push(query);
        slot.tracked += 1;
        let tracked = Tracked {
            command,
            kind,
            workload: self.workload,
            tag,
            target,
            started: now,
            expect,
            found_expected: false,
            first_peers: None,
            messages: 0,
            bytes: 0,
            pending: Vec::new(),
            heard: HashMap::new(),
            items: Vec::new(),
            neighbourhood: None,
        };
        world.tracked.insert((node, query), tracked);
        world.after_input(node);
        Some(query)
    }
}

impl<N: SimNode> World<N> {
    fn new(options: SimOptions) -> World<N> {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let network = Network::new(options.network.clone(), rng.gen());
        World {
            node_template: N::config(&options),
            rng,
            now: Timestamp::ZERO,
            queue: EventQueue::default(),
            network,
            slots: Vec::with_capacity(options.nodes),
            live: Vec::with_capacity(options.nodes),
            live_pos: Vec::with_capacity(options.nodes),
            oracle: Oracle::default(),
            tracked: BTreeMap::new(),
            done: VecDeque::new(),
            records: Vec::new(),
            abandoned: BTreeMap::new(),
            traffic: Traffic::default(),
            events: 0,
            sweeps: 0,
            sweep_cursor: 0,
            units_begun: 0,
            wakes_pending: 0,
            figures: NodeFigures::default(),
            bootstrap_ok: 0,
            bootstrap_failed: 0,
            violation: None,
            scratch_transmits: Vec::new(),
            scratch_events: Vec::new(),
            notices: VecDeque::new(),
            options,
        }
    }

    fn violate(&mut self, node: Option<NodeIndex>, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                seed: self.options.seed,
                at_us: self.now.as_micros(),
                node,
                what,
                replay: self.options.command_line(),
            });
        }
    }

    fn k(&self) -> usize {
        N::lookup_config(&self.node_template).k
    }

    fn nat_timeout_us(&self) -> u64 {
        (self.options.network.nat_timeout_secs * 1e6) as u64
    }

    fn create_node(&mut self, behind_nat: bool) -> NodeIndex {
        let index = self.slots.len() as NodeIndex;
        let id = Id::random(&mut self.rng);
        let seed = self.rng.gen();
        let node = N::create(&self.node_template, id, seed, self.now);
        self.slots.push(Slot {
            id,
            node: Some(Box::new(node)),
            timer: None,
            nat: behind_nat.then(Box::default),
            commands: Vec::new(),
            tracked: 0,
            fired: (Timestamp::ZERO, 0),
            left_at: None,
        });
        self.live_pos.push(self.live.len() as u32);
        self.live.push(index);
        if behind_nat {
            self.figures.behind_nat += 1;
        } else {
            self.oracle.insert(id, index);
        }
        index
    }

    fn kill(&mut self, node: NodeIndex) {
        let slot = &mut self.slots[node as usize];
        if slot.node.take().is_none() {
            return;
        }
        let behind_nat = slot.nat.take().is_some();
        slot.commands = Vec::new();
        slot.timer = None;
        slot.tracked = 0;
        slot.left_at = Some(self.now);
        let id = slot.id;
        if !behind_nat {
            self.oracle.remove(&id);
        }
        let pos = self.live_pos[node as usize] as usize;
        self.live.swap_remove(pos);
        if let Some(&moved) = self.live.get(pos) {
            self.live_pos[moved as usize] = pos as u32;
        }
        self.live_pos[node as usize] = u32::MAX;
        let abandoned: Vec<(NodeIndex, QueryId)> =
            self.tracked.range((node, QueryId(0))..=(node, QueryId(u64::MAX))).map(|(k, _)| *k).collect();
        for key in abandoned {
            let tracked = self.tracked.remove(&key).expect("listed above");
            *self.abandoned.entry(tracked.kind).or_insert(0) += 1;
        }
    }

    fn random_live(&mut self) -> Option<NodeIndex> {
        (!self.live.is_empty()).then(|| self.live[self.rng.gen_range(0..self.live.len())])
    }

    fn bootstrap(&mut self, node: NodeIndex, routers: &[SocketAddr]) {
        let now = self.now;
        let slot = &mut self.slots[node as usize];
        let Some(n) = slot.node.as_mut() else { return };
        let query = n.bootstrap(now, routers, &[]);
        slot.commands.push(query);
        self.after_input(node);
    }

    // ------------------------------------------------------------ driving one node

    /// Drains a node's outputs after an input, checks what can be checked at once, and
    /// re-arms its timer.
    fn after_input(&mut self, i: NodeIndex) {
        if self.slots[i as usize].node.is_none() {
            return;
        }
        let mut transmits = std::mem::take(&mut self.scratch_transmits);
        let mut events = std::mem::take(&mut self.scratch_events);
        let now = self.now;
        let mut broken = None;
        {
            let slot = &mut self.slots[i as usize];
            let node = slot.node.as_mut().expect("checked above");
            transmits.extend(std::iter::from_fn(|| node.poll_transmit()));
            events.extend(std::iter::from_fn(|| node.poll_event()));
            if let Some(what) = node.parallelism_violation() {
                broken = Some(format!("a lookup has {what}"));
            }
            let max_pending = N::max_pending_requests(&self.node_template);
            if node.pending_requests() > max_pending {
                broken = Some(format!("{} requests pending, the limit is {max_pending}", node.pending_requests()));
            }
            if let Some(t) = node.poll_timeout() {
                let t = t.max(now);
                if slot.timer.map_or(true, |armed| t < armed) {
                    slot.timer = Some(t);
                    self.queue.push(t, SimEvent::Timer { node: i });
                }
            }
        }
        if let Some(what) = broken {
            self.violate(Some(i), what);
        }
        for t in transmits.drain(..) {
            self.send(i, t);
        }
        for e in events.drain(..) {
            self.on_event(i, e);
        }
        self.scratch_transmits = transmits;
        self.scratch_events = events;
    }

    fn fire_timer(&mut self, i: NodeIndex) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        if slot.timer != Some(now) {
            return; // superseded by an earlier deadline that already fired
        }
        slot.timer = None;
        let Some(node) = slot.node.as_mut() else { return };
        if slot.fired.0 == now {
            slot.fired.1 += 1;
        } else {
            slot.fired = (now, 1);
        }
        let spinning = slot.fired.1 > MAX_TIMEOUTS_AT_ONE_INSTANT;
        node.handle_timeout(now);
        if spinning {
            self.violate(Some(i), format!("handle_timeout ran {MAX_TIMEOUTS_AT_ONE_INSTANT} times at one instant"));
        }
        self.after_input(i);
    }

    fn deliver(&mut self, to: NodeIndex, from: NodeIndex, payload: Vec<u8>) {
        let now = self.now;
        let timeout = self.nat_timeout_us();
        let slot = &self.slots[to as usize];
        if slot.node.is_none() {
            self.traffic.to_dead += 1;
            return;
        }
        if slot.nat.as_ref().is_some_and(|nat| !nat.allows(from, now, timeout)) {
            self.traffic.nat_blocked += 1;
            return;
        }
        self.traffic.delivered += 1;
        if slot.tracked > 0 {
            self.inspect_incoming(to, from, &payload);
        }
        let node = self.slots[to as usize].node.as_mut().expect("checked above");
        node.handle_datagram(now, addr_of(from), &payload);
        self.after_input(to);
    }

    fn send(&mut self, from: NodeIndex, transmit: Transmit) {
        let now = self.now;
        let len = transmit.payload.len();
        self.traffic.sent += 1;
        self.traffic.bytes_sent += len as u64;
        self.traffic.largest_datagram = self.traffic.largest_datagram.max(len);
        if len > MAX_DATAGRAM {
            self.violate(Some(from), format!("sent a datagram of {len} bytes (limit {MAX_DATAGRAM})"));
        }
        let Some(to) = index_of(&transmit.to).filter(|i| (*i as usize) < self.slots.len()) else {
            self.traffic.undeliverable += 1;
            return;
        };
        if to == from {
            self.violate(Some(from), "sent a datagram to its own address".into());
            return;
        }
        if self.slots[from as usize].tracked > 0 {
            self.inspect_outgoing(from, to, &transmit.payload);
        }
        let timeout = self.nat_timeout_us();
        if let Some(nat) = self.slots[from as usize].nat.as_mut() {
            nat.sent(to, now, timeout);
        }
        match self.network.fate(&mut self.rng, from, to, now) {
            Fate::Lost => self.traffic.lost += 1,
            Fate::Partitioned => self.traffic.partitioned += 1,
            Fate::Deliver { delay_us, copy_us, reordered } => {
                if reordered {
                    self.traffic.reordered += 1;
                }
                if let Some(copy_us) = copy_us {
                    self.traffic.duplicated += 1;
                    let payload = transmit.payload.clone();
                    self.queue.push(
                        Timestamp::from_micros(now.as_micros() + copy_us),
                        SimEvent::Deliver { to, from, payload },
                    );
                }
                self.queue.push(
                    Timestamp::from_micros(now.as_micros() + delay_us),
                    SimEvent::Deliver { to, from, payload: transmit.payload },
                );
            }
        }
    }

    // ------------------------------------------------------------ measuring lookups

    /// A query leaving a node that runs measured lookups: count it for the lookup it belongs
    /// to (same target, a method that lookup sends).
    fn inspect_outgoing(&mut self, from: NodeIndex, to: NodeIndex, payload: &[u8]) {
        let Some(query) = N::read_query(payload) else { return };
        let (target, iterative, fits) = (query.target, query.iterative, query.fits);
        let now = self.now;
        let lookup = N::lookup_config(&self.node_template);
        let timeout = lookup.request_timeout;
        // The node stepped its lookups with this stall timeout during the input that sent this.
        let stall = self.slots[from as usize].node.as_ref().map_or(timeout, |n| n.stall_timeout());
        // Requests outside the target's neighbourhood (as the lookup judged it when it started)
        // stall sooner.
        let neighbourhood =
            self.slots[from as usize].node.as_ref().map_or(u32::MAX, |n| n.ipv4_table().neighbourhood_bits());
        let shared_bits = self.slots[to as usize].id.distance(&target).leading_zeros();
        let far_stall = stall * lookup.far_stall_percent.min(100) / 100;
        let final_alpha = lookup.max_in_flight();
        let range = (from, QueryId(0))..=(from, QueryId(u64::MAX));
        let Some((_, t)) = self.tracked.range_mut(range).find(|(_, t)| t.target == target && fits(t.command)) else {
            return;
        };
        t.messages += 1;
        t.bytes += payload.len() as u64;
        let neighbourhood = *t.neighbourhood.get_or_insert(neighbourhood);
        let stall = if shared_bits < neighbourhood { far_stall } else { stall };
        t.pending.push(PendingQuery { to, transaction_id: query.transaction_id, stall_at: now + stall, iterative });
        t.heard.entry(to).or_insert(Heard { hop: 1, at: now });
        // The alpha bound counted on the wire, independently of the lookup's own counter: queries
        // not answered yet and sent less than a stall timeout ago (a stalled query gives up its
        // slot; see `kad::lookup`).
        let in_flight = t.pending.iter().filter(|p| p.iterative && now < p.stall_at).count();
        if in_flight > final_alpha {
            let what = format!(
                "{} has {in_flight} queries on the wire unanswered and not stalled, final alpha is {final_alpha}",
                t.kind
            );
            self.violate(Some(from), what);
        }
    }

    /// A datagram reaching a node that runs measured lookups: if it answers one of their
    /// queries, count it and note the hop of every node it names.
    fn inspect_incoming(&mut self, to: NodeIndex, from: NodeIndex, payload: &[u8]) {
        let Some(answer) = N::read_answer(payload) else { return };
        let tx = &answer.transaction_id;
        let range = (to, QueryId(0))..=(to, QueryId(u64::MAX));
        for (_, t) in self.tracked.range_mut(range) {
            let Some(pos) = t.pending.iter().position(|p| p.to == from && p.transaction_id == *tx) else { continue };
            t.pending.swap_remove(pos);
            // A node that answered holds no slot of the lookup any more, even with a retry to
            // it still on the wire (the answer to the first attempt ends the retry too).
            for p in t.pending.iter_mut().filter(|p| p.to == from) {
                p.stall_at = p.stall_at.min(self.now);
            }
            t.messages += 1;
            t.bytes += payload.len() as u64;
            let next = Heard { hop: t.heard.get(&from).map_or(1, |h| h.hop) + 1, at: self.now };
            for addr in &answer.named {
                if let Some(named) = index_of(addr) {
                    t.heard.entry(named).or_insert(next);
                }
            }
            return;
        }
    }

    fn on_event(&mut self, i: NodeIndex, event: N::Event) {
        match N::read_event(event) {
            NodeEvent::Found { query, found } => {
                if !self.slots[i as usize].commands.contains(&query) {
                    let what = N::found_name(&found);
                    self.violate(Some(i), format!("{what} event for {query:?}, which is not running"));
                    return;
                }
                let now = self.now;
                let Some(t) = self.tracked.get_mut(&(i, query)) else {
                    // A command that is not measured (a listen): the workloads hear of it.
                    if let Some(notice) = N::unmeasured_found(query, found) {
                        self.notices.push_back((i, notice));
                    }
                    return;
                };
                let found = N::match_found(found, t.expect.as_ref());
                if found.first_result {
                    t.first_peers.get_or_insert(now);
                }
                if found.expected {
                    t.found_expected = true;
                }
                t.items.extend(found.item);
            }
            // Events outside commands (quests, listens) go to the workloads.
            NodeEvent::Notice(notice) => self.notices.push_back((i, notice)),
            NodeEvent::Finished { query, outcome } => {
                let commands = &mut self.slots[i as usize].commands;
                let Some(pos) = commands.iter().position(|q| *q == query) else {
                    self.violate(Some(i), format!("Finished event for {query:?}, which is not running"));
                    return;
                };
                commands.swap_remove(pos);
                match self.tracked.remove(&(i, query)) {
                    Some(t) => {
                        self.slots[i as usize].tracked -= 1;
                        self.finish_tracked(i, t, outcome);
                    }
                    None => {
                        let view = N::read_outcome(&outcome);
                        if view.closest && !view.nodes.is_empty() {
                            self.bootstrap_ok += 1;
                        } else {
                            self.bootstrap_failed += 1;
                        }
                    }
                }
            }
        }
    }

    /// What the best lookup could have found by the time this one ended, had it asked each of
    /// the true `k` closest the moment an answer named it (or it asked it, for a node from its
    /// own table), had it known which silent nodes were dead and lost nothing: the share of them
    /// whose answer could have come back by then (link round trip), and the time from the
    /// lookup's start by which all of them could have (`None` if one was never named).
    fn reach(&self, querier: NodeIndex, t: &Tracked<N>, truth: &[(NodeId, NodeIndex)]) -> Option<Reach> {
        if truth.is_empty() {
            return None;
        }
        let answer_at = |j: NodeIndex| {
            let heard = t.heard.get(&j)?;
            Some(heard.at.as_micros() + 2 * self.network.one_way_us(querier, j))
        };
        let ended = self.now.as_micros();
        let in_time = truth.iter().filter(|(_, j)| answer_at(*j).is_some_and(|at| at <= ended)).count();
        let all_by = truth.iter().map(|(_, j)| answer_at(*j)).collect::<Option<Vec<u64>>>();
        Some(Reach {
            share: in_time as f64 / truth.len() as f64,
            all_by_us: all_by.and_then(|at| at.into_iter().max()).map(|at| at - t.started.as_micros()),
        })
    }

    fn finish_tracked(&mut self, i: NodeIndex, t: Tracked<N>, outcome: N::Outcome) {
        let own = self.slots[i as usize].id;
        let k = self.k();
        let view = N::read_outcome(&outcome);
        let (result, sorted) = (view.nodes, view.sorted);
        // The result must name real nodes, never the querier, at most k, closest first.
        let mut broken = None;
        if sorted && result.len() > k {
            broken = Some(format!("{} result holds {} nodes, k is {k}", t.kind, result.len()));
        }
        if sorted && result.windows(2).any(|w| w[0].0.distance(&t.target) >= w[1].0.distance(&t.target)) {
            broken = Some(format!("{} result is not in distance order", t.kind));
        }
        for (id, addr) in result {
            if *id == own {
                broken = Some(format!("{} result holds the querying node itself", t.kind));
            }
            let real = index_of(addr).and_then(|j| self.slots.get(j as usize)).is_some_and(|s| s.id == *id);
            if !real {
                broken = Some(format!("{} result names {id} at {addr}, where no node has that ID", t.kind));
            }
        }
        if let Some(what) = broken {
            self.violate(Some(i), what);
        }
        let succeeded = N::succeeded(&outcome, t.expect.as_ref(), t.found_expected);
        let truth = self.oracle.closest(&t.target, k, &own);
        let accuracy = (!truth.is_empty()).then(|| {
            let hits = truth.iter().filter(|(id, _)| result.iter().any(|(r, _)| r == id)).count();
            hits as f64 / truth.len() as f64
        });
        let reach = self.reach(i, &t, &truth);
        // An answer takes at least the link's round trip after the lookup first heard of its
        // node, so a result cannot hold more of the true closest than were within reach.
        if let (Some(accuracy), Some(reach)) = (accuracy, reach) {
            if accuracy > reach.share {
                let what = format!(
                    "{} result holds {accuracy} of the true closest, only {} were within reach",
                    t.kind, reach.share
                );
                self.violate(Some(i), what);
            }
        }
        let closest = result.iter().min_by_key(|(id, _)| id.distance(&t.target));
        let hops = closest.and_then(|(_, addr)| index_of(addr)).and_then(|j| t.heard.get(&j).map(|h| h.hop));
        let stalls = view.stalls;
        let first_result_us = t.first_peers.map(|f| f.as_micros() - t.started.as_micros());
        let completion_us = self.now.as_micros() - t.started.as_micros();
        self.records.push(LookupRecord {
            kind: t.kind,
            succeeded,
            first_result_us,
            completion_us,
            messages: t.messages,
            bytes: t.bytes,
            hops,
            stalls,
            accuracy,
            within_reach: reach.map(|r| r.share),
            all_within_reach_us: reach.and_then(|r| r.all_by_us),
        });
        self.done.push_back((
            t.workload,
            LookupDone {
                kind: t.kind,
                tag: t.tag,
                node: i,
                target: t.target,
                succeeded,
                outcome,
                first_result_us,
                completion_us,
                messages: t.messages,
                items: t.items,
            },
        ));
    }

    // ------------------------------------------------------------ checks and figures

    fn sweep(&mut self) {
        self.sweeps += 1;
        let mut broken = None;
        let live = self.live.len();
        let count = live.min(SWEEP_NODES);
        let start = if live == 0 { 0 } else { self.sweep_cursor % live };
        self.sweep_cursor = start + count;
        for i in (start..start + count).map(|p| self.live[p % live]) {
            let node = self.slots[i as usize].node.as_ref().expect("live nodes have a node");
            let table = node.ipv4_table();
            if let Err(e) = table.check_invariants() {
                broken = Some((i, format!("routing table: {e}")));
                break;
            }
            if table.contacts().any(|c| c.addr() == addr_of(i)) {
                broken = Some((i, "the routing table holds the node's own address".into()));
                break;
            }
            if let Some(what) = node.storage_violation() {
                broken = Some((i, what));
                break;
            }
        }
        let max_us = (self.options.max_lookup_secs * 1e6) as u64;
        let now = self.now.as_micros();
        if let Some(((node, query), t)) =
            self.tracked.iter().find(|(_, t)| now.saturating_sub(t.started.as_micros()) > max_us)
        {
            broken = Some((
                *node,
                format!(
                    "{} {query:?} still running after {:.3} s (max-lookup-secs {})",
                    t.kind,
                    (now - t.started.as_micros()) as f64 / 1e6,
                    self.options.max_lookup_secs
                ),
            ));
        }
        if let Some((node, what)) = broken {
            self.violate(Some(node), what);
        }
    }

    fn table_figures(&self) -> TableFigures {
        let mut sizes = Vec::with_capacity(self.live.len());
        let (mut contacts, mut dead, mut replacements, mut buckets) = (0usize, 0usize, 0usize, 0usize);
        for &i in &self.live {
            let node = self.slots[i as usize].node.as_ref().expect("live");
            let table = node.ipv4_table();
            sizes.push(table.len() as f64);
            buckets += table.buckets().len();
            replacements += table.buckets().iter().map(|b| b.replacements().len()).sum::<usize>();
            for c in table.contacts() {
                contacts += 1;
                let alive =
                    index_of(&c.addr()).and_then(|j| self.slots.get(j as usize)).is_some_and(|s| s.node.is_some());
                if !alive {
                    dead += 1;
                }
            }
        }
        let per_table = |n: usize| if self.live.is_empty() { 0.0 } else { n as f64 / self.live.len() as f64 };
        TableFigures {
            size: Percentiles::of(&sizes),
            buckets_mean: per_table(buckets),
            replacements_mean: per_table(replacements),
            dead_share: if contacts == 0 { 0.0 } else { dead as f64 / contacts as f64 },
        }
    }
}

/// A configured run. See the module documentation.
pub struct Simulation<N: SimNode = Node> {
    world: World<N>,
    workloads: Vec<Box<dyn Workload<N>>>,
    memory_probe: Option<fn() -> usize>,
}

impl Simulation<Node> {
    /// A Mainline simulation: checks the options and sets up the built-in workloads they name.
    pub fn new(options: SimOptions) -> Result<Simulation<Node>, String> {
        Simulation::of(options)
    }
}

impl<N: SimNode> Simulation<N> {
    /// A simulation of `N` nodes: checks the options (they must name `N`'s network) and sets
    /// up the built-in workloads they name.
    pub fn of(options: SimOptions) -> Result<Simulation<N>, String> {
        options.validate()?;
        if options.dht != N::DHT {
            return Err(format!(
                "the options name {}, this simulation drives {}",
                options.dht.cli_name(),
                N::DHT.cli_name()
            ));
        }
        let workloads = options.workloads.iter().map(|k| N::workload(*k, &options)).collect::<Result<_, _>>()?;
        Ok(Simulation { world: World::new(options), workloads, memory_probe: None })
    }

    /// Replaces the workloads (they take turns, one unit each).
    pub fn with_workloads(mut self, workloads: Vec<Box<dyn Workload<N>>>) -> Simulation<N> {
        self.workloads = workloads;
        self
    }

    /// A function returning the bytes currently allocated (the binary installs a counting
    /// allocator), for the memory figures of the report.
    pub fn with_memory_probe(mut self, probe: fn() -> usize) -> Simulation<N> {
        self.memory_probe = Some(probe);
        self
    }

    /// Runs the simulation to the end of the workload.
    pub fn run(mut self) -> Result<Report, Violation> {
        let wall = Instant::now();
        let probe = |p: Option<fn() -> usize>| p.map(|f| f());
        let mem_start = probe(self.memory_probe);
        let opts = self.world.options.clone();

        // Build.
        for i in 0..opts.nodes {
            // Seeds are never behind a NAT: everyone must be able to reach them.
            let nat = i >= opts.seeds && opts.network.nat > 0.0 && self.world.rng.gen::<f64>() < opts.network.nat;
            self.world.create_node(nat);
        }
        let mem_created = probe(self.memory_probe);
        self.world.figures.initial = opts.nodes;
        let seeds: Vec<SocketAddr> = (0..opts.seeds as NodeIndex).map(addr_of).collect();
        // Seed 0 is the first node of the network; every other seed joins through the earlier ones.
        for s in 1..opts.seeds {
            self.world.bootstrap(s as NodeIndex, &seeds[..s]);
        }
        let join_interval = Duration::from_secs_f64(opts.join_interval_ms / 1000.0);
        if opts.nodes > opts.seeds {
            self.world.queue.push(Timestamp::ZERO + join_interval, SimEvent::Join { node: opts.seeds as NodeIndex });
        }
        let check_every = Duration::from_secs_f64(opts.check_every_secs);
        self.world.queue.push(Timestamp::ZERO + check_every, SimEvent::Sweep);
        let joins = opts.nodes.saturating_sub(opts.seeds) as u32;
        let build_end = Timestamp::ZERO + join_interval * joins + Duration::from_secs_f64(opts.settle_secs);
        self.run_until(build_end, &seeds)?;

        let unfinished = self.world.slots.iter().map(|s| s.commands.len()).sum();
        let bootstrap = BootstrapFigures {
            virtual_secs: build_end.as_duration().as_secs_f64(),
            succeeded: self.world.bootstrap_ok,
            failed: self.world.bootstrap_failed,
            unfinished,
            tables: self.world.table_figures(),
        };
        self.world.queue.shrink_to_fit();
        let mem_built = probe(self.memory_probe);
        let build_wall = wall.elapsed();

        // Faults.
        let dead = (opts.network.dead * opts.nodes as f64).round() as usize;
        let victims: Vec<NodeIndex> = rand::seq::index::sample(&mut self.world.rng, self.world.live.len(), dead)
            .into_iter()
            .map(|p| self.world.live[p])
            .collect();
        for v in victims {
            self.world.kill(v);
        }
        self.world.figures.killed = dead;
        let workload_start = self.world.now;
        self.world.network.set_workload_start(workload_start);
        if opts.network.churn_per_min > 0.0 {
            let leave = self.churn_delay();
            self.world.queue.push(leave, SimEvent::ChurnLeave);
            let join = self.churn_delay();
            self.world.queue.push(join, SimEvent::ChurnJoin);
        }

        // Workload.
        if opts.lookups > 0 {
            self.world.queue.push(workload_start, SimEvent::Begin);
        }
        while !self.workload_over() {
            self.step(&seeds)?;
        }
        let wall_total = wall.elapsed();
        let advertise = self
            .workloads
            .iter()
            .enumerate()
            .find_map(|(i, wl)| wl.advertise_report(&Control { world: &mut self.world, workload: i }));

        let w = &mut self.world;
        w.figures.live_at_end = w.live.len();
        let tables_at_end = w.table_figures();
        // What the node objects themselves hold: the memory freed by dropping them all.
        let mut memory_per_node_object_bytes = None;
        if let Some(before) = probe(self.memory_probe) {
            let live = w.live.len();
            for slot in &mut w.slots {
                slot.node = None;
            }
            if let Some(after) = probe(self.memory_probe) {
                memory_per_node_object_bytes = Some(before.saturating_sub(after) as f64 / live.max(1) as f64);
            }
        }
        let median_rtt = opts.network.rtt.median_ms();
        let events = w.events;
        Ok(Report {
            replay: opts.command_line(),
            options: Some(opts),
            nodes: w.figures.clone(),
            bootstrap,
            lookups: LookupReport::all(&w.records, &w.abandoned, median_rtt),
            items: self.workloads.iter().find_map(|wl| wl.item_report()),
            listen: self.workloads.iter().find_map(|wl| wl.listen_report(median_rtt)),
            advertise,
            tables_at_end,
            traffic: w.traffic.clone(),
            virtual_secs: w.now.as_duration().as_secs_f64(),
            events,
            invariant_sweeps: w.sweeps,
            perf: Perf {
                wall_secs: wall_total.as_secs_f64(),
                build_wall_secs: build_wall.as_secs_f64(),
                workload_wall_secs: (wall_total - build_wall).as_secs_f64(),
                events_per_sec: events as f64 / wall_total.as_secs_f64().max(1e-9),
                memory_per_new_node_bytes: mem_start
                    .zip(mem_created)
                    .map(|(a, b)| b.saturating_sub(a) as f64 / w.figures.initial.max(1) as f64),
                memory_per_idle_node_bytes: mem_start
                    .zip(mem_built)
                    .map(|(a, b)| b.saturating_sub(a) as f64 / w.figures.initial.max(1) as f64),
                memory_total_bytes: mem_built.map(|b| b as u64),
                memory_per_node_object_bytes,
            },
        })
    }

    fn workload_over(&self) -> bool {
        self.world.units_begun >= self.world.options.lookups
            && self.world.tracked.is_empty()
            && self.world.done.is_empty()
            && self.world.wakes_pending == 0
    }

    /// Time of the next churn event (a Poisson process per direction).
    fn churn_delay(&mut self) -> Timestamp {
        let o = &self.world.options;
        let per_sec = o.network.churn_per_min * o.nodes as f64 / 60.0;
        let u: f64 = 1.0 - self.world.rng.gen::<f64>();
        let secs = (-u.ln() / per_sec).min(1e6);
        self.world.now + Duration::from_secs_f64(secs)
    }

    fn run_until(&mut self, limit: Timestamp, seeds: &[SocketAddr]) -> Result<(), Violation> {
        while self.world.queue.peek_time().is_some_and(|t| t <= limit) {
            self.step(seeds)?;
        }
        self.world.now = limit;
        Ok(())
    }

    fn step(&mut self, seeds: &[SocketAddr]) -> Result<(), Violation> {
        let (at, event) = self.world.queue.pop().expect("sweeps keep the queue busy");
        self.world.now = at;
        self.world.events += 1;
        match event {
            SimEvent::Deliver { to, from, payload } => self.world.deliver(to, from, payload),
            SimEvent::Timer { node } => self.world.fire_timer(node),
            SimEvent::Join { node } => {
                self.world.bootstrap(node, seeds);
                let next = node + 1;
                if (next as usize) < self.world.options.nodes {
                    let interval = Duration::from_secs_f64(self.world.options.join_interval_ms / 1000.0);
                    self.world.queue.push(at + interval, SimEvent::Join { node: next });
                }
            }
            SimEvent::Begin => {
                let unit = self.world.units_begun;
                self.world.units_begun += 1;
                if !self.workloads.is_empty() {
                    let w = unit % self.workloads.len();
                    self.workloads[w].begin(&mut Control { world: &mut self.world, workload: w });
                }
                if self.world.units_begun < self.world.options.lookups {
                    let interval = Duration::from_secs_f64(self.world.options.lookup_interval_ms / 1000.0);
                    self.world.queue.push(at + interval, SimEvent::Begin);
                }
            }
            SimEvent::ChurnLeave => {
                if let Some(node) = self.world.random_live() {
                    self.world.kill(node);
                    self.world.figures.churn_left += 1;
                }
                let next = self.churn_delay();
                self.world.queue.push(next, SimEvent::ChurnLeave);
            }
            SimEvent::ChurnJoin => {
                let nat = self.world.options.network.nat;
                let behind_nat = nat > 0.0 && self.world.rng.gen::<f64>() < nat;
                // A joiner knows a few live nodes not behind a NAT (as if from saved state).
                let mut routers = Vec::new();
                for _ in 0..4 * self.world.options.seeds.max(1) {
                    if routers.len() >= self.world.options.seeds.max(1) {
                        break;
                    }
                    if let Some(r) = self.world.random_live() {
                        if self.world.slots[r as usize].nat.is_none() && !routers.contains(&addr_of(r)) {
                            routers.push(addr_of(r));
                        }
                    }
                }
                let node = self.world.create_node(behind_nat);
                self.world.figures.churn_joined += 1;
                self.world.bootstrap(node, &routers);
                let next = self.churn_delay();
                self.world.queue.push(next, SimEvent::ChurnJoin);
            }
            SimEvent::Sweep => {
                self.world.sweep();
                let every = Duration::from_secs_f64(self.world.options.check_every_secs);
                self.world.queue.push(at + every, SimEvent::Sweep);
            }
            SimEvent::Wake { workload, tag } => {
                self.world.wakes_pending -= 1;
                if let Some(w) = self.workloads.get_mut(workload) {
                    w.woke(&mut Control { world: &mut self.world, workload }, tag);
                }
            }
        }
        while let Some((w, done)) = self.world.done.pop_front() {
            if let Some(workload) = self.workloads.get_mut(w) {
                workload.finished(&mut Control { world: &mut self.world, workload: w }, &done);
            }
        }
        while let Some((node, notice)) = self.world.notices.pop_front() {
            for (w, workload) in self.workloads.iter_mut().enumerate() {
                workload.notice(&mut Control { world: &mut self.world, workload: w }, node, &notice);
            }
        }
        match self.world.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }
}
