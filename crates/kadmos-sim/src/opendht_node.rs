//! The OpenDHT node in the simulator: [`SimNode`] for `kadmos_proto::opendht::Node`, and the
//! commands a workload starts on it ([`Control`] methods: find, get, put, listen).
//!
//! This is the one place that reads the OpenDHT node's events and results (`Event`,
//! `CommandResult`) and its datagrams; the OpenDHT workloads only see the simulator's terms
//! ([`crate::LookupDone`]'s success, its values, and [`ListenValue`] notices).

use kadmos_proto::kad::{KademliaNode, LookupConfig};
use kadmos_proto::node_io::QueryId;
use kadmos_proto::opendht::{Body, CommandResult, Config, Event, Message, Node, Query, Request, Value};
use kadmos_proto::{Id, NodeId, Timestamp};

use crate::network::NodeIndex;
use crate::opendht_workload;
use crate::options::{SimOptions, WorkloadKind};
use crate::sim_node::{Command, Dht, FoundMatch, NodeEvent, OutcomeView, SimNode, WireAnswer, WireQuery};
use crate::simulation::Control;
use crate::workload::Workload;

/// A value a listen reported (every workload hears it).
#[derive(Clone, Debug, PartialEq)]
pub struct ListenValue {
    /// The listen, as [`Control::listen`] returned it.
    pub listen: QueryId,
    pub value: Value,
    /// The value is no longer stored (rather than new or changed).
    pub expired: bool,
}

impl SimNode for Node {
    type Config = Config;
    type Event = Event;
    type Outcome = CommandResult;
    /// A value a `get` or a listen reported, and whether it expired.
    type Found = (Value, bool);
    /// A `get` must find this value (same id and content).
    type Expect = Value;
    type Item = Value;
    type Notice = ListenValue;

    const DHT: Dht = Dht::OpenDht;

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

    fn workload(kind: WorkloadKind, _options: &SimOptions) -> Result<Box<dyn Workload<Node>>, String> {
        opendht_workload::built_in(kind)
            .ok_or_else(|| format!("workload {} is not an OpenDHT workload", kind.cli_name()))
    }

    fn poll_event(&mut self) -> Option<Event> {
        Node::poll_event(self)
    }

    fn storage_violation(&self) -> Option<String> {
        let storage = self.storage();
        let limits = storage.config();
        if storage.key_count() > limits.max_keys {
            return Some(format!("storage holds {} keys, the limit is {}", storage.key_count(), limits.max_keys));
        }
        if storage.remote_bytes() > limits.max_remote_bytes {
            return Some(format!("storage holds {} bytes of others' values", storage.remote_bytes()));
        }
        (storage.local_bytes() > limits.max_local_bytes)
            .then(|| format!("storage holds {} bytes of our own values", storage.local_bytes()))
    }

    fn read_query(datagram: &[u8]) -> Option<WireQuery> {
        let message = Message::decode(datagram).ok()?;
        let Body::Request { request, .. } = &message.body else { return None };
        let (target, iterative, fits): (Id, bool, fn(Command) -> bool) = match request {
            Request::Find { target, .. } => (*target, true, |c| c == Command::FindNode),
            // A put searches with a probing get.
            Request::Get { key, .. } => (*key, true, |c| matches!(c, Command::Get | Command::Put)),
            Request::Put(put) => (put.key, false, |c| c == Command::Put),
            Request::Refresh { key, .. } => (*key, false, |c| c == Command::Put),
            _ => return None,
        };
        Some(WireQuery { target, transaction_id: message.tid.to_be_bytes().to_vec(), iterative, fits })
    }

    fn read_answer(datagram: &[u8]) -> Option<WireAnswer> {
        let message = Message::decode(datagram).ok()?;
        let named = match &message.body {
            Body::Reply(reply) => reply.nodes4.iter().chain(&reply.nodes6).map(|(_, addr)| *addr).collect(),
            Body::Error { .. } => Vec::new(),
            // Requests, listener pushes and value fragments answer no query of ours.
            _ => return None,
        };
        Some(WireAnswer { transaction_id: message.tid.to_be_bytes().to_vec(), named })
    }

    fn read_event(event: Event) -> NodeEvent<Node> {
        match event {
            Event::Value { query, value, expired } => NodeEvent::Found { query, found: (value, expired) },
            Event::Finished { query, result } => NodeEvent::Finished { query, outcome: result },
        }
    }

    fn found_name(_found: &(Value, bool)) -> &'static str {
        "Value"
    }

    fn match_found((value, expired): (Value, bool), expect: Option<&Value>) -> FoundMatch<Value> {
        let expected = !expired && expect.is_some_and(|e| e.id == value.id && e.content_equals(&value));
        FoundMatch { expected, first_result: expected, item: Some(value) }
    }

    fn unmeasured_found(listen: QueryId, (value, expired): (Value, bool)) -> Option<ListenValue> {
        Some(ListenValue { listen, value, expired })
    }

    fn read_outcome(result: &CommandResult) -> OutcomeView<'_> {
        match result {
            CommandResult::Bootstrap(closest)
            | CommandResult::FindNode(Ok(closest))
            | CommandResult::Get(Ok(closest)) => {
                OutcomeView { nodes: &closest.nodes, sorted: true, closest: true, stalls: Some(closest.stats.stalls) }
            }
            CommandResult::Put(Ok(stored)) => OutcomeView {
                nodes: &stored.stored_at,
                sorted: false,
                closest: false,
                stalls: Some(stored.stats.stalls),
            },
            CommandResult::Ping(_)
            | CommandResult::FindNode(Err(_))
            | CommandResult::Get(Err(_))
            | CommandResult::Put(Err(_)) => OutcomeView { nodes: &[], sorted: false, closest: false, stalls: None },
        }
    }

    fn succeeded(result: &CommandResult, expect: Option<&Value>, found_expected: bool) -> bool {
        let view = Self::read_outcome(result);
        match expect {
            _ if !view.closest => !view.nodes.is_empty(),
            Some(_) => found_expected,
            None => !view.nodes.is_empty(),
        }
    }
}

impl Control<'_, Node> {
    /// Starts a measured `find_node`. Returns `None` if the node is dead.
    pub fn find(&mut self, node: NodeIndex, target: Id, kind: &'static str, tag: u64) -> Option<QueryId> {
        self.start(node, Command::FindNode, target, kind, tag, None, |n, now| n.find_node(now, target))
    }

    /// Starts a measured `get` of every value at `key`; with `expect`, it succeeds only if a
    /// node answers with that value (same id and content). The values that came back are in
    /// [`crate::LookupDone::items`]. Returns `None` if the node is dead.
    pub fn get(
        &mut self,
        node: NodeIndex,
        key: Id,
        expect: Option<Value>,
        kind: &'static str,
        tag: u64,
    ) -> Option<QueryId> {
        self.start(node, Command::Get, key, kind, tag, expect, |n, now| n.get(now, key, Query::default()))
    }

    /// Starts a measured `put` of `value` at `key` (not permanent). Returns `None` if the node
    /// is dead.
    pub fn put(&mut self, node: NodeIndex, key: Id, value: Value, kind: &'static str, tag: u64) -> Option<QueryId> {
        self.start(node, Command::Put, key, kind, tag, None, |n, now| n.put(now, key, value, false))
    }

    /// Has the node listen to `key`: its values come to every workload as [`ListenValue`]
    /// notices until [`Control::cancel_listen`]. Returns `None` if the node is dead.
    pub fn listen(&mut self, node: NodeIndex, key: Id) -> Option<QueryId> {
        self.start_unmeasured(node, |n, now| n.listen(now, key, Query::default()))
    }

    /// Stops a listen; whether the node was alive and listening.
    pub fn cancel_listen(&mut self, node: NodeIndex, listen: QueryId) -> bool {
        self.end_unmeasured(node, listen, |n, _, query| n.cancel_listen(query))
    }
}
