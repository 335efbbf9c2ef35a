//! What the simulator needs from a node, whatever its network: the [`SimNode`] trait.
//!
//! The simulation (network model, faults, event queue, invariants, measurements) is written
//! once against this trait; each network implements it in its own module
//! ([`crate::mainline_node`], [`crate::opendht_node`]). The trait covers the sans-IO inputs and
//! outputs, the few node figures the invariant checks read, and how to read the network's own
//! datagrams, events and results into the simulator's terms. Starting a workload's commands is
//! each network's own (`Control` methods in the network's module), because the commands differ.

use std::fmt;
use std::net::SocketAddr;

use kadmos_proto::kad::{LookupConfig, RoutingTable};
use kadmos_proto::node_io::{Family, QueryId, SansIoNode};
use kadmos_proto::{Id, NodeId, Timestamp};

use crate::options::{SimOptions, WorkloadKind};
use crate::workload::Workload;

/// Which network a run simulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dht {
    /// BitTorrent Mainline DHT (`kadmos_proto::mainline::Node`).
    #[default]
    Mainline,
    /// OpenDHT (`kadmos_proto::opendht::Node`).
    #[serde(rename = "opendht")]
    OpenDht,
}

impl Dht {
    pub fn cli_name(self) -> &'static str {
        match self {
            Dht::Mainline => "mainline",
            Dht::OpenDht => "opendht",
        }
    }
}

/// A measured command, as the simulator matches the queries it sends on the wire to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Mainline and OpenDHT: a search of the nodes closest to a target.
    FindNode,
    /// Mainline: `get_peers`.
    GetPeers,
    /// Mainline: `announce_peer` (get_peers, then announce).
    Announce,
    /// Mainline: BEP 44 `get`.
    GetItem,
    /// Mainline: BEP 44 `put` (get, then put).
    PutItem,
    /// OpenDHT: `get` of a key's values.
    Get,
    /// OpenDHT: `put` (a probing get, then put or refresh).
    Put,
}

/// A query a node sent, read from its datagram.
pub struct WireQuery {
    /// The ID it is about (target, infohash, key).
    pub target: Id,
    pub transaction_id: Vec<u8>,
    /// A query of the iterative search itself (not a store at its end), bound by final alpha.
    pub iterative: bool,
    /// Whether a measured command of this kind sends such queries.
    pub fits: fn(Command) -> bool,
}

/// An answer (reply or error) a node received, read from its datagram.
pub struct WireAnswer {
    pub transaction_id: Vec<u8>,
    /// Addresses of the nodes the answer names.
    pub named: Vec<SocketAddr>,
}

/// What a node's event means to the simulator.
pub enum NodeEvent<N: SimNode> {
    /// A command brought something back (peers, an item, a value).
    Found { query: QueryId, found: N::Found },
    /// A command is over.
    Finished { query: QueryId, outcome: N::Outcome },
    /// Something for the workloads that belongs to no measured command (a quest's report, a
    /// listen's value): every workload hears it.
    Notice(N::Notice),
}

/// A found thing, held against what the measured command expects.
pub struct FoundMatch<I> {
    /// It is what the command expects.
    pub expected: bool,
    /// It counts as the command's first result (its time is measured).
    pub first_result: bool,
    /// Kept in [`crate::LookupDone::items`].
    pub item: Option<I>,
}

/// A finished command's result, as the simulator checks and measures it.
pub struct OutcomeView<'a> {
    /// The nodes of the result: the closest that answered, or those that stored.
    pub nodes: &'a [(NodeId, SocketAddr)],
    /// The result is the closest nodes, so it holds at most k, in distance order.
    pub sorted: bool,
    /// A search with a result (what a bootstrap counts as joined).
    pub closest: bool,
    /// Requests of the search that stalled, when it ran one.
    pub stalls: Option<u32>,
}

/// A node the simulator can drive: a sans-IO node (datagrams, timeouts, transmits, joining, as
/// [`SansIoNode`] says) and what the simulation reads of it. See the module documentation.
pub trait SimNode: SansIoNode + Sized + 'static {
    /// The configuration every node starts from (its ID and seed set per node).
    type Config: Clone;
    /// The node's event.
    type Event;
    /// A finished command's result.
    type Outcome: Clone + fmt::Debug;
    /// What a command brings back before it finishes (peers, an item, a value).
    type Found;
    /// What a measured command may expect to find.
    type Expect;
    /// A found thing kept for the workload.
    type Item: Clone + fmt::Debug;
    /// Events for the workloads outside measured commands.
    type Notice;

    const DHT: Dht;

    /// The configuration of every node in a run of `options` (the lookup overrides applied).
    fn config(options: &SimOptions) -> Self::Config;
    fn lookup_config(config: &Self::Config) -> &LookupConfig;
    fn max_pending_requests(config: &Self::Config) -> usize;
    fn create(config: &Self::Config, id: NodeId, seed: u64, now: Timestamp) -> Self;

    /// The built-in workload of a kind, or why the network has none.
    fn workload(kind: WorkloadKind, options: &SimOptions) -> Result<Box<dyn Workload<Self>>, String>;

    fn poll_event(&mut self) -> Option<Self::Event>;

    /// A search breaking its alpha or final alpha bound, as it counts its requests.
    fn parallelism_violation(&self) -> Option<String> {
        self.lookup_parallelism().find_map(|p| p.violation())
    }
    /// The IPv4 routing table (simulated nodes speak IPv4 only).
    fn ipv4_table(&self) -> &RoutingTable {
        self.routing_table(Family::V4).expect("simulated nodes speak IPv4")
    }
    /// A storage limit the node broke (peer store, value storage).
    fn storage_violation(&self) -> Option<String>;

    /// The query a datagram carries, if it is one a measured command may send.
    fn read_query(datagram: &[u8]) -> Option<WireQuery>;
    /// The answer a datagram carries, if it is one.
    fn read_answer(datagram: &[u8]) -> Option<WireAnswer>;
    fn read_event(event: Self::Event) -> NodeEvent<Self>;
    /// A short name of a found thing for violation messages (`Peers`, `Item`, `Value`).
    fn found_name(found: &Self::Found) -> &'static str;
    /// A measured command found this.
    fn match_found(found: Self::Found, expect: Option<&Self::Expect>) -> FoundMatch<Self::Item>;
    /// A command that is not measured found this: what the workloads hear of it, if anything.
    fn unmeasured_found(query: QueryId, found: Self::Found) -> Option<Self::Notice>;
    fn read_outcome(outcome: &Self::Outcome) -> OutcomeView<'_>;
    /// Whether a measured command succeeded (see [`crate::simulation`]).
    fn succeeded(outcome: &Self::Outcome, expect: Option<&Self::Expect>, found_expected: bool) -> bool;
}
