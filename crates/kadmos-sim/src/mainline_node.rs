//! The Mainline node in the simulator: [`SimNode`] for `kadmos_proto::mainline::Node`, and the
//! commands a workload starts on it ([`Control`] methods: find_node, get_peers, announce, BEP 44
//! put and get, keep-alive, advertise, watch).

use std::net::SocketAddr;

use kadmos_proto::kad::{KademliaNode, LookupConfig};
use kadmos_proto::mainline::mutable_target;
use kadmos_proto::mainline::{Body, CommandResult, Config, Event, Item, ItemQuery, Message, Node, Query, QuestEvent};
use kadmos_proto::node_io::QueryId;
use kadmos_proto::{Id, NodeId, Timestamp};

use crate::network::NodeIndex;
use crate::options::{SimOptions, WorkloadKind};
use crate::sim_node::{Command, Dht, FoundMatch, NodeEvent, OutcomeView, SimNode, WireAnswer, WireQuery};
use crate::simulation::Control;
use crate::workload::{built_in_with, Workload};

/// What a Mainline command brings back before it finishes.
pub enum MainlineFound {
    /// Peers from one node (`get_peers`, announce).
    Peers(Vec<SocketAddr>),
    /// A verified BEP 44 item (`get_item`).
    Item(Item),
}

/// What a measured Mainline command must find to succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum MainlineExpect {
    /// A `get_peers` must be told this peer.
    Peer(SocketAddr),
    /// A `get_item` must bring exactly this item (for a mutable one, this version).
    Item(Item),
}

impl SimNode for Node {
    type Config = Config;
    type Event = Event;
    type Outcome = CommandResult;
    type Found = MainlineFound;
    type Expect = MainlineExpect;
    type Item = Item;
    type Notice = QuestEvent;

    const DHT: Dht = Dht::Mainline;

    fn config(options: &SimOptions) -> Config {
        let mut config = Config::new(Id::ZERO, 0);
        options.apply_lookup_overrides(&mut config.lookup, &mut config.stall_deviations, &mut config.routing);
        config
    }

    fn lookup_config(config: &Config) -> &LookupConfig {
        &config.lookup
    }

    fn max_pending_requests(config: &Config) -> usize {
        config.max_pending_requests
    }

    fn create(config: &Config, id: NodeId, seed: u64, now: Timestamp) -> Node {
        let mut config = config.clone();
        config.node_id = id;
        config.seed = seed;
        Node::new(config, now)
    }

    fn workload(kind: WorkloadKind, options: &SimOptions) -> Result<Box<dyn Workload<Node>>, String> {
        built_in_with(kind, &options.items, &options.advertise)
            .ok_or_else(|| format!("workload {} is not a Mainline workload", kind.cli_name()))
    }

    fn poll_event(&mut self) -> Option<Event> {
        Node::poll_event(self)
    }

    fn storage_violation(&self) -> Option<String> {
        let store = self.peer_store();
        (store.infohash_count() > store.config().max_infohashes)
            .then(|| format!("peer store holds {} infohashes", store.infohash_count()))
    }

    fn read_query(datagram: &[u8]) -> Option<WireQuery> {
        let message = Message::decode(datagram).ok()?;
        let Body::Query { query, .. } = &message.body else { return None };
        let (target, iterative, fits): (Id, bool, fn(Command) -> bool) = match query {
            Query::FindNode { target, .. } => (*target, true, |c| c == Command::FindNode),
            Query::GetPeers { info_hash, .. } => (*info_hash, true, |c| c != Command::FindNode),
            Query::AnnouncePeer { info_hash, .. } => (*info_hash, false, |c| c == Command::Announce),
            Query::Get { target, .. } => (*target, true, |c| matches!(c, Command::GetItem | Command::PutItem)),
            Query::Put(put) => {
                let target = match &put.public_key {
                    Some(key) => mutable_target(key, put.salt.as_deref().unwrap_or_default()),
                    None => Id::sha1_of(&put.value),
                };
                (target, false, |c| c == Command::PutItem)
            }
            _ => return None,
        };
        Some(WireQuery { target, transaction_id: message.transaction_id, iterative, fits })
    }

    fn read_answer(datagram: &[u8]) -> Option<WireAnswer> {
        let message = Message::decode(datagram).ok()?;
        let named = match &message.body {
            Body::Query { .. } => return None,
            Body::Response(response) => response.nodes.iter().map(|(_, addr)| *addr).collect(),
            _ => Vec::new(),
        };
        Some(WireAnswer { transaction_id: message.transaction_id, named })
    }

    fn read_event(event: Event) -> NodeEvent<Node> {
        match event {
            Event::Peers { query, peers, .. } => NodeEvent::Found { query, found: MainlineFound::Peers(peers) },
            Event::Item { query, item, .. } => NodeEvent::Found { query, found: MainlineFound::Item(item) },
            Event::Finished { query, result } => NodeEvent::Finished { query, outcome: result },
            Event::Quest(event) => NodeEvent::Notice(event),
        }
    }

    fn found_name(found: &MainlineFound) -> &'static str {
        match found {
            MainlineFound::Peers(_) => "Peers",
            MainlineFound::Item(_) => "Item",
        }
    }

    fn unmeasured_found(_query: QueryId, _found: MainlineFound) -> Option<QuestEvent> {
        // Only bootstraps run unmeasured, and they find no peers or items.
        None
    }

    fn match_found(found: MainlineFound, expect: Option<&MainlineExpect>) -> FoundMatch<Item> {
        match found {
            MainlineFound::Peers(peers) => FoundMatch {
                expected: matches!(expect, Some(MainlineExpect::Peer(e)) if peers.contains(e)),
                first_result: true,
                item: None,
            },
            MainlineFound::Item(item) => {
                let expected = matches!(expect, Some(MainlineExpect::Item(e)) if *e == item);
                FoundMatch { expected, first_result: expected, item: Some(item) }
            }
        }
    }

    fn read_outcome(result: &CommandResult) -> OutcomeView<'_> {
        match result {
            CommandResult::Bootstrap(closest)
            | CommandResult::FindNode(Ok(closest))
            | CommandResult::GetPeers(Ok(closest))
            | CommandResult::GetItem(Ok(closest)) => {
                OutcomeView { nodes: &closest.nodes, sorted: true, closest: true, stalls: Some(closest.stats.stalls) }
            }
            CommandResult::Announce(stored) | CommandResult::PutItem(stored) => OutcomeView {
                nodes: &stored.stored_at,
                sorted: false,
                closest: false,
                stalls: Some(stored.stats.stalls),
            },
            _ => OutcomeView { nodes: &[], sorted: false, closest: false, stalls: None },
        }
    }

    fn succeeded(result: &CommandResult, expect: Option<&MainlineExpect>, found_expected: bool) -> bool {
        let view = Self::read_outcome(result);
        match expect {
            _ if !view.closest => !view.nodes.is_empty(),
            Some(MainlineExpect::Item(_)) => found_expected,
            _ => !view.nodes.is_empty() && (expect.is_none() || found_expected),
        }
    }
}

impl Control<'_, Node> {
    /// Starts a measured `find_node`. Returns `None` if the node is dead.
    pub fn find_node(&mut self, node: NodeIndex, target: Id, kind: &'static str, tag: u64) -> Option<QueryId> {
        self.start(node, Command::FindNode, target, kind, tag, None, |n, now| n.find_node(now, target))
    }

    /// Starts a measured `get_peers`; with `expect`, it succeeds only if that peer is found.
    pub fn get_peers(
        &mut self,
        node: NodeIndex,
        info_hash: Id,
        kind: &'static str,
        tag: u64,
        expect: Option<SocketAddr>,
    ) -> Option<QueryId> {
        let expect = expect.map(MainlineExpect::Peer);
        self.start(node, Command::GetPeers, info_hash, kind, tag, expect, |n, now| n.get_peers(now, info_hash))
    }

    /// Starts a measured announce (`port: None` announces the node's own UDP port).
    pub fn announce_peer(
        &mut self,
        node: NodeIndex,
        info_hash: Id,
        port: Option<u16>,
        kind: &'static str,
        tag: u64,
    ) -> Option<QueryId> {
        self.start(node, Command::Announce, info_hash, kind, tag, None, |n, now| n.announce_peer(now, info_hash, port))
    }

    /// Starts a measured BEP 44 put (`Node::put_item`, no CAS). Returns `None` if the node
    /// is dead.
    pub fn put_item(&mut self, node: NodeIndex, item: Item, kind: &'static str, tag: u64) -> Option<QueryId> {
        let target = item.target();
        self.start(node, Command::PutItem, target, kind, tag, None, |n, now| n.put_item(now, item, None))
    }

    /// Starts a measured BEP 44 get (`Node::get_item`); with `expect`, it succeeds only if an
    /// `Item` event brings exactly that item. The items that came back are in
    /// [`crate::LookupDone::items`]. Returns `None` if the node is dead.
    pub fn get_item(
        &mut self,
        node: NodeIndex,
        query: ItemQuery,
        expect: Option<Item>,
        kind: &'static str,
        tag: u64,
    ) -> Option<QueryId> {
        let target = query.target();
        let expect = expect.map(MainlineExpect::Item);
        self.start(node, Command::GetItem, target, kind, tag, expect, |n, now| n.get_item(now, query))
    }

    /// Has the node keep an item alive (`Node::keep_alive`); false if the node is dead.
    pub fn keep_alive(&mut self, node: NodeIndex, item: Item) -> bool {
        self.with_node(node, |n, now| n.keep_alive(now, item)).is_some()
    }

    /// Stops a node keeping an item alive (`Node::cancel_keep_alive`); whether it was kept.
    pub fn cancel_keep_alive(&mut self, node: NodeIndex, target: &Id) -> bool {
        self.with_node(node, |n, _| n.cancel_keep_alive(target)).unwrap_or(false)
    }

    /// Has the node advertise `info_hash` with its own port (`Node::advertise`, implied
    /// port); false if the node is dead or refused.
    pub fn advertise(&mut self, node: NodeIndex, info_hash: Id) -> bool {
        self.with_node(node, |n, now| n.advertise(now, info_hash, None).is_ok()).unwrap_or(false)
    }

    /// Has the node watch `info_hash` (`Node::watch`); false if the node is dead or refused.
    pub fn watch(&mut self, node: NodeIndex, info_hash: Id) -> bool {
        self.with_node(node, |n, now| n.watch(now, info_hash).is_ok()).unwrap_or(false)
    }
}
