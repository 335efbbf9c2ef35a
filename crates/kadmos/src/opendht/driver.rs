//! The OpenDHT side of a node's task ([`crate::node_task`]), as [`crate::driver`] is the
//! Mainline side: the sans-IO [`Node`], the commands of the [`super::OpenDht`] handle, and who
//! waits for which query's events (gets, puts, listens).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::kad::RoutingTable;
use kadmos_proto::opendht::Source;
use kadmos_proto::opendht::{self, CommandResult, Event, Family, Node, Query, QueryError, QueryId, Value, ValueId};
use kadmos_proto::{Id, NodeId, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

use super::state::{OpenDhtState, SavedPut, SavedValue};
use super::{KindTraffic, ListenEvent, OpenDhtInfo, OpenDhtTraffic};
use crate::node_task::{self, Clock, NodeDriver};
use crate::types::{traffic_by_kind, ContactCounts, NodeInfo, RemoteError};
use crate::types::{AddressFamily, FamilyTable, RoutingTableDump};

/// What a put reports back: value id, whether this node stored it, the nodes that
/// acknowledged it, the errors others answered.
pub(crate) type Stored = (ValueId, bool, Vec<NodeInfo>, Vec<RemoteError>);

/// Requests from the API handle.
pub(crate) enum Command {
    Ping(SocketAddr, oneshot::Sender<Result<NodeInfo, QueryError>>),
    FindNode(Id, oneshot::Sender<Result<Vec<NodeInfo>, QueryError>>),
    Get(Id, Query, mpsc::UnboundedSender<Value>),
    Put(Id, Value, bool, oneshot::Sender<Result<Stored, QueryError>>),
    CancelPut(Id, ValueId, oneshot::Sender<bool>),
    /// A listen; its id comes back so that the stream can cancel it when dropped.
    Listen(Id, Query, mpsc::UnboundedSender<ListenEvent>, oneshot::Sender<QueryId>),
    CancelListen(QueryId),
    /// A join through routers and contacts; the reply comes once operations issued after it
    /// would wait for it (see [`node_task::hold_operations_until_joined`]).
    Bootstrap(Vec<SocketAddr>, Vec<(NodeId, SocketAddr)>, oneshot::Sender<()>),
    Info(oneshot::Sender<OpenDhtInfo>),
    RoutingTable(oneshot::Sender<RoutingTableDump>),
    SaveState(oneshot::Sender<OpenDhtState>),
    Shutdown(oneshot::Sender<OpenDhtState>),
}

enum Waiter {
    Ping(oneshot::Sender<Result<NodeInfo, QueryError>>),
    FindNode(oneshot::Sender<Result<Vec<NodeInfo>, QueryError>>),
    Get(mpsc::UnboundedSender<Value>),
    Put(oneshot::Sender<Result<Stored, QueryError>>),
    Listen(mpsc::UnboundedSender<ListenEvent>),
    /// Initial join: when it ends the bootstrapped flag is raised. `fallback` nodes are tried
    /// if joining through saved contacts left the tables empty.
    Bootstrap {
        fallback: Vec<SocketAddr>,
    },
}

pub(crate) struct Driver {
    node: Node,
    clock: Clock,
    local_addrs: Vec<SocketAddr>,
    bootstrapped: watch::Sender<bool>,
    waiters: HashMap<QueryId, Waiter>,
}

impl Driver {
    pub(super) fn new(
        node: Node,
        local_addrs: Vec<SocketAddr>,
        clock: Clock,
        bootstrapped: watch::Sender<bool>,
    ) -> Self {
        Driver { node, clock, local_addrs, bootstrapped, waiters: HashMap::new() }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Starts the initial join; see [`Waiter::Bootstrap`].
    pub(super) fn start_bootstrap(&mut self, routers: Vec<SocketAddr>, contacts: Vec<(NodeId, SocketAddr)>) {
        match node_task::start_join(&mut self.node, self.clock.now(), routers, &contacts) {
            Some((query, fallback)) => {
                self.waiters.insert(query, Waiter::Bootstrap { fallback });
            }
            None => {
                let _ = self.bootstrapped.send(true);
            }
        }
    }
}

impl NodeDriver for Driver {
    type Node = Node;
    type Command = Command;

    fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    fn handle_command(&mut self, command: Command) -> bool {
        self.command(command)
    }

    fn deliver_events(&mut self) {
        while let Some(event) = self.node.poll_event() {
            self.handle_event(event);
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.node.handle_timeout(now);
        self.drop_abandoned_listens();
    }
}

impl Driver {
    /// Carries out a command; `false` for shutdown (after replying with the final state).
    fn command(&mut self, command: Command) -> bool {
        let now = self.now();
        match command {
            Command::Ping(addr, reply) => {
                let q = self.node.ping(now, addr);
                self.waiters.insert(q, Waiter::Ping(reply));
            }
            Command::FindNode(target, reply) => {
                let q = self.node.find_node(now, target);
                self.waiters.insert(q, Waiter::FindNode(reply));
            }
            Command::Get(key, filter, values) => {
                let q = self.node.get(now, key, filter);
                self.waiters.insert(q, Waiter::Get(values));
            }
            Command::Put(key, value, permanent, reply) => {
                let q = self.node.put(now, key, value, permanent);
                self.waiters.insert(q, Waiter::Put(reply));
            }
            Command::CancelPut(key, value_id, reply) => {
                let _ = reply.send(self.node.cancel_put(now, key, value_id));
            }
            Command::Listen(key, filter, changes, id) => {
                // Registered before the node runs: a listen reports the values stored here at once.
                let q = self.node.listen(now, key, filter);
                self.waiters.insert(q, Waiter::Listen(changes));
                if id.send(q).is_err() {
                    self.cancel_listen(q);
                }
            }
            Command::CancelListen(q) => self.cancel_listen(q),
            Command::Bootstrap(routers, contacts, started) => {
                node_task::hold_operations_until_joined(&self.node, &self.bootstrapped);
                self.start_bootstrap(routers, contacts);
                let _ = started.send(());
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::RoutingTable(reply) => {
                let now = self.now();
                let _ = reply.send(RoutingTableDump {
                    node_id: self.node.id(),
                    ipv4: self.node.routing_table(Family::V4).map(|t| FamilyTable::of(t, AddressFamily::Ipv4, now)),
                    ipv6: self.node.routing_table(Family::V6).map(|t| FamilyTable::of(t, AddressFamily::Ipv6, now)),
                });
            }
            Command::SaveState(reply) => {
                let _ = reply.send(self.saved_state());
            }
            Command::Shutdown(reply) => {
                let _ = reply.send(self.saved_state());
                return false;
            }
        }
        // Commands can complete at once (an empty table, say): deliver those events now.
        self.deliver_events();
        true
    }

    fn cancel_listen(&mut self, listen: QueryId) {
        if matches!(self.waiters.get(&listen), Some(Waiter::Listen(_))) {
            self.waiters.remove(&listen);
            self.node.cancel_listen(listen);
        }
    }

    /// Cancels the listens whose stream is gone (the stream asks for it when dropped; this
    /// catches a request lost to a full command queue).
    fn drop_abandoned_listens(&mut self) {
        let gone: Vec<QueryId> = self
            .waiters
            .iter()
            .filter_map(|(q, w)| matches!(w, Waiter::Listen(tx) if tx.is_closed()).then_some(*q))
            .collect();
        for q in gone {
            self.cancel_listen(q);
        }
    }

    fn handle_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Value { query, value, expired } => {
                let delivered = match self.waiters.get(&query) {
                    Some(Waiter::Get(values)) => values.send(value).is_ok(),
                    Some(Waiter::Listen(changes)) => changes.send(ListenEvent { value, expired }).is_ok(),
                    _ => true,
                };
                if !delivered {
                    // The stream was dropped: stop the get or the listen.
                    self.waiters.remove(&query);
                    self.node.cancel(now, query);
                }
            }
            Event::Finished { query, result } => {
                let Some(waiter) = self.waiters.remove(&query) else { return };
                match (waiter, result) {
                    (Waiter::Ping(reply), CommandResult::Ping(result)) => {
                        let _ = reply.send(result.map(NodeInfo::from));
                    }
                    (Waiter::FindNode(reply), CommandResult::FindNode(result)) => {
                        let _ = reply.send(result.map(NodeInfo::closest));
                    }
                    (Waiter::Put(reply), CommandResult::Put(result)) => {
                        let _ = reply.send(result.map(
                            |opendht::Stored { value_id, stored_here, stored_at, errors, .. }| {
                                let stored_at = stored_at.into_iter().map(NodeInfo::from).collect();
                                let errors = errors
                                    .into_iter()
                                    .map(|(from, code, message)| RemoteError { from, code: i64::from(code), message })
                                    .collect();
                                (value_id, stored_here, stored_at, errors)
                            },
                        ));
                    }
                    (Waiter::Get(_), _) => {} // dropping the sender ends the stream
                    (Waiter::Bootstrap { fallback }, _) => {
                        if node_task::join_needs_fallback(&self.node, &fallback) {
                            tracing::info!("saved contacts did not answer; bootstrapping from the bootstrap nodes");
                            self.start_bootstrap(fallback, Vec::new());
                        } else {
                            let _ = self.bootstrapped.send(true);
                        }
                    }
                    (waiter @ Waiter::Listen(_), _) => {
                        // Listens end only when cancelled; keep the waiter.
                        self.waiters.insert(query, waiter);
                    }
                    (_, other) => tracing::warn!("a result for another command: {other:?}"),
                }
            }
        }
    }

    fn info(&self) -> OpenDhtInfo {
        let c = self.node.counters();
        let storage = self.node.storage();
        let (by_kind, errors_by_code) = traffic_by_kind(&c.messages, KindTraffic::from);
        OpenDhtInfo {
            node_id: self.node.id(),
            local_addrs: self.local_addrs.clone(),
            client: self.node.config().is_client,
            network_id: self.node.config().network,
            routing_table_ipv4: self.node.routing_table(Family::V4).map(RoutingTable::len),
            routing_table_ipv6: self.node.routing_table(Family::V6).map(RoutingTable::len),
            contacts_ipv4: self.node.routing_table(Family::V4).map(|t| ContactCounts::of(t, self.now())),
            contacts_ipv6: self.node.routing_table(Family::V6).map(|t| ContactCounts::of(t, self.now())),
            stored_keys: storage.key_count(),
            stored_values: storage.len(),
            remote_bytes: storage.remote_bytes(),
            local_bytes: storage.local_bytes(),
            permanent_puts: self.node.permanent_puts().count(),
            listens: self.waiters.values().filter(|w| matches!(w, Waiter::Listen(_))).count(),
            remote_listeners: self.node.listener_table().len(),
            running_operations: self.node.running_operations(),
            uptime_secs: self.clock.uptime().as_secs(),
            traffic: OpenDhtTraffic {
                datagrams_received: c.traffic.datagrams_received,
                bytes_received: c.traffic.bytes_received,
                datagrams_sent: c.traffic.datagrams_sent,
                bytes_sent: c.traffic.bytes_sent,
                requests_received: c.traffic.requests_received,
                replies_received: c.traffic.answers_received,
                errors_received: c.traffic.errors_received,
                errors_sent: c.traffic.errors_sent,
                dropped: c.traffic.dropped,
                rate_limited: c.rate_limited,
                requests_sent: c.traffic.requests_sent,
                requests_timed_out: c.traffic.requests_timed_out,
                values_stored: c.values_stored,
                values_refused: c.values_refused,
                listener_pushes: c.listener_pushes,
                by_kind,
                errors_by_code,
            },
        }
    }

    fn saved_state(&self) -> OpenDhtState {
        let now = self.now();
        let mut state = OpenDhtState::new(self.node.id(), self.node.contacts());
        state.port = self.local_addrs.first().map(SocketAddr::port);
        let permanent: HashSet<(Id, ValueId)> = self.node.permanent_puts().map(|(k, v)| (*k, v.id)).collect();
        state.permanent_puts = self.node.permanent_puts().map(|(key, value)| SavedPut::new(*key, value)).collect();
        for (key, stored) in self.node.storage().iter() {
            // Permanent values come back with their puts; everything else with its time left.
            let Some(expires) = stored.expires.filter(|_| !permanent.contains(&(*key, stored.value.id))) else {
                continue;
            };
            let left = expires.saturating_since(now).as_secs();
            if left > 0 {
                let source = match stored.source {
                    Source::Local => None,
                    Source::Remote(ip) => Some(ip),
                };
                state.values.push(SavedValue::new(*key, &stored.value, source, left));
            }
        }
        state
    }

    /// Stores the values and restarts the permanent puts of a saved state. Entries that do not
    /// decode or that storage refuses (expired, bad signature, over a limit) are skipped and
    /// counted in the log.
    pub(crate) fn restore_values(&mut self, state: &OpenDhtState) {
        let now = self.now();
        let mut skipped = 0;
        for saved in &state.permanent_puts {
            let restored = saved.decode().map(|(key, value)| self.node.restore_permanent_put(now, key, value));
            skipped += usize::from(!matches!(restored, Some(Ok(()))));
        }
        for saved in &state.values {
            let source = saved.source.map_or(Source::Local, Source::Remote);
            let expires = now + Duration::from_secs(saved.expires_in_secs);
            let restored = saved.decode().map(|(key, value)| self.node.restore_value(now, key, value, source, expires));
            skipped += usize::from(!matches!(restored, Some(Ok(()))));
        }
        let restored = state.values.len() + state.permanent_puts.len() - skipped;
        tracing::info!(restored, skipped, "restored stored values and permanent puts");
    }
}
