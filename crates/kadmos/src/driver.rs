//! The Mainline side of a node's task ([`crate::node_task`]): the sans-IO [`Node`], the
//! commands of the [`crate::Dht`] handle, and who waits for which query's events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::kad::RoutingTable;
use kadmos_proto::mainline::{
    self, CommandResult, Event, Family, Item, ItemQuery, Node, QueryError, QueryId, QuestError, Stored,
};
use kadmos_proto::{InfoHash, NodeId, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

use crate::node_task::{self, Clock, NodeDriver};
use crate::quests::{AdvertisementInfo, QuestKind, QuestListeners, Renewal, WatchEvent, WatchInfo};
use crate::state::{SavedAdvertisement, SavedContact, SavedItem, SavedState};
use crate::types::*;

/// Requests from the API handle.
pub(crate) enum Command {
    Ping(SocketAddr, oneshot::Sender<Result<NodeInfo, QueryError>>),
    FindNode(NodeId, oneshot::Sender<Result<Vec<NodeInfo>, QueryError>>),
    GetPeers(InfoHash, mpsc::UnboundedSender<PeerBatch>),
    Announce(InfoHash, Option<u16>, oneshot::Sender<Result<AnnounceResult, QueryError>>),
    Samples(SocketAddr, NodeId, oneshot::Sender<Result<Samples, QueryError>>),
    /// BEP 44 get; `first_only` stops the lookup at the first verified item.
    GetItem(ItemQuery, bool, mpsc::UnboundedSender<FoundItem>),
    /// BEP 44 put.
    PutItem(Item, Option<i64>, oneshot::Sender<Result<StoreReport, QueryError>>),
    /// Keep an item alive (after a put that succeeded).
    KeepAlive(Item),
    CancelKeepAlive(NodeId, oneshot::Sender<bool>),
    /// Start (or join) an advertisement; the reply is the handle's subscriber number.
    Advertise(InfoHash, Option<u16>, mpsc::UnboundedSender<Renewal>, oneshot::Sender<Result<u64, QuestError>>),
    /// Start (or join) a watch.
    Watch(InfoHash, mpsc::UnboundedSender<WatchEvent>, oneshot::Sender<Result<u64, QuestError>>),
    /// A quest handle was cancelled or dropped.
    ReleaseQuest(QuestKind, InfoHash, u64, Option<oneshot::Sender<()>>),
    StopAdvertising(InfoHash, oneshot::Sender<bool>),
    Advertisements(oneshot::Sender<Vec<AdvertisementInfo>>),
    /// Start (or adopt) a watch the node keeps without handles, and saves.
    KeepWatching(InfoHash, oneshot::Sender<Result<(), QuestError>>),
    /// Stop a watch whatever its handles; whether there was one.
    StopWatching(InfoHash, oneshot::Sender<bool>),
    /// Follow a kept watch from now on (no replay of its peers): the subscriber, or `None`
    /// when the node keeps no watch of that infohash.
    FollowWatch(InfoHash, mpsc::UnboundedSender<WatchEvent>, oneshot::Sender<Option<u64>>),
    Watches(oneshot::Sender<Vec<WatchInfo>>),
    /// A join through routers and contacts; the reply comes once operations issued after it
    /// would wait for it (see [`node_task::hold_operations_until_joined`]).
    Bootstrap(Vec<SocketAddr>, Vec<(NodeId, SocketAddr)>, oneshot::Sender<()>),
    RoutingTable(oneshot::Sender<RoutingTableDump>),
    Info(oneshot::Sender<Info>),
    SaveState(oneshot::Sender<SavedState>),
    Shutdown(oneshot::Sender<SavedState>),
}

enum Waiter {
    Ping(oneshot::Sender<Result<NodeInfo, QueryError>>),
    FindNode(oneshot::Sender<Result<Vec<NodeInfo>, QueryError>>),
    GetPeers(mpsc::UnboundedSender<PeerBatch>),
    Announce(oneshot::Sender<Result<AnnounceResult, QueryError>>),
    Samples(oneshot::Sender<Result<Samples, QueryError>>),
    GetItem {
        items: mpsc::UnboundedSender<FoundItem>,
        first_only: bool,
    },
    PutItem(oneshot::Sender<Result<StoreReport, QueryError>>),
    /// Initial join: when it ends the bootstrapped flag is raised. `fallback` routers are
    /// tried if joining through saved contacts left the table empty.
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
    quests: QuestListeners,
}

impl Driver {
    pub(crate) fn new(
        node: Node,
        local_addrs: Vec<SocketAddr>,
        clock: Clock,
        bootstrapped: watch::Sender<bool>,
    ) -> Self {
        Driver { node, clock, local_addrs, bootstrapped, waiters: HashMap::new(), quests: QuestListeners::default() }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Starts the initial join; see [`Waiter::Bootstrap`].
    pub(crate) fn start_bootstrap(&mut self, routers: Vec<SocketAddr>, contacts: Vec<(NodeId, SocketAddr)>) {
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
            Command::GetPeers(info_hash, batches) => {
                let q = self.node.get_peers(now, info_hash);
                self.waiters.insert(q, Waiter::GetPeers(batches));
            }
            Command::Announce(info_hash, port, reply) => {
                let q = self.node.announce_peer(now, info_hash, port);
                self.waiters.insert(q, Waiter::Announce(reply));
            }
            Command::Samples(addr, target, reply) => {
                let q = self.node.sample_infohashes(now, addr, target);
                self.waiters.insert(q, Waiter::Samples(reply));
            }
            Command::GetItem(query, first_only, items) => {
                let q = self.node.get_item(now, query);
                self.waiters.insert(q, Waiter::GetItem { items, first_only });
            }
            Command::PutItem(item, cas, reply) => {
                let q = self.node.put_item(now, item, cas);
                self.waiters.insert(q, Waiter::PutItem(reply));
            }
            Command::KeepAlive(item) => self.node.keep_alive(now, item),
            Command::CancelKeepAlive(target, reply) => {
                let _ = reply.send(self.node.cancel_keep_alive(&target));
            }
            Command::Advertise(info_hash, port, renewals, reply) => {
                let _ = reply.send(self.quests.advertise(&mut self.node, now, info_hash, port, renewals));
            }
            Command::Watch(info_hash, events, reply) => {
                let _ = reply.send(self.quests.watch(&mut self.node, now, info_hash, events));
            }
            Command::ReleaseQuest(kind, info_hash, subscriber, reply) => {
                self.quests.release(&mut self.node, kind, info_hash, subscriber);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::StopAdvertising(info_hash, reply) => {
                let _ = reply.send(self.quests.stop_advertising(&mut self.node, info_hash));
            }
            Command::Advertisements(reply) => {
                let _ = reply.send(QuestListeners::list(&self.node, now));
            }
            Command::KeepWatching(info_hash, reply) => {
                let _ = reply.send(self.quests.keep_watching(&mut self.node, now, info_hash));
            }
            Command::StopWatching(info_hash, reply) => {
                let _ = reply.send(self.quests.stop_watching(&mut self.node, info_hash));
            }
            Command::FollowWatch(info_hash, events, reply) => {
                let _ = reply.send(self.quests.follow(&self.node, info_hash, events));
            }
            Command::Watches(reply) => {
                let _ = reply.send(self.quests.watch_list(&self.node));
            }
            Command::Bootstrap(routers, contacts, started) => {
                node_task::hold_operations_until_joined(&self.node, &self.bootstrapped);
                self.start_bootstrap(routers, contacts);
                let _ = started.send(());
            }
            Command::RoutingTable(reply) => {
                let _ = reply.send(self.routing_table_dump());
            }
            Command::Info(reply) => {
                let _ = reply.send(self.info());
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

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Peers { query, from, peers } => {
                if let Some(Waiter::GetPeers(batches)) = self.waiters.get(&query) {
                    if batches.send(PeerBatch { from: from.into(), peers }).is_err() {
                        // The stream was dropped: stop the lookup.
                        self.waiters.remove(&query);
                        self.node.cancel(query);
                    }
                }
            }
            Event::Item { query, from, item } => {
                if let Some(Waiter::GetItem { items, first_only }) = self.waiters.get(&query) {
                    let first_only = *first_only;
                    if items.send(FoundItem { from: from.into(), item }).is_err() || first_only {
                        // The stream was dropped, or one verified item is all that was asked.
                        self.waiters.remove(&query);
                        self.node.cancel(query);
                    }
                }
            }
            Event::Quest(event) => {
                let now = self.now();
                self.quests.deliver(&mut self.node, now, event);
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
                    (Waiter::PutItem(reply), CommandResult::PutItem(Stored { stored_at, errors, .. })) => {
                        let _ = reply.send(Ok(StoreReport {
                            stored_at: stored_at.into_iter().map(NodeInfo::from).collect(),
                            errors: errors
                                .into_iter()
                                .map(|(from, code, message)| RemoteError { from, code, message })
                                .collect(),
                        }));
                    }
                    (Waiter::GetItem { .. }, _) => {}
                    (Waiter::Announce(reply), CommandResult::Announce(Stored { stored_at, stats, .. })) => {
                        let _ = reply.send(Ok(AnnounceResult {
                            stored_at: stored_at.into_iter().map(NodeInfo::from).collect(),
                            lookup_requests: stats.requests,
                        }));
                    }
                    (Waiter::Samples(reply), CommandResult::SampleInfohashes(result)) => {
                        let _ = reply.send(result.map(|mainline::Samples { from, samples, num, interval, nodes }| {
                            Samples {
                                from,
                                samples,
                                num,
                                interval,
                                nodes: nodes.into_iter().map(NodeInfo::from).collect(),
                            }
                        }));
                    }
                    (Waiter::GetPeers(_), _) => {} // dropping the sender ends the stream
                    (Waiter::Bootstrap { fallback }, _) => {
                        if node_task::join_needs_fallback(&self.node, &fallback) {
                            tracing::info!("saved contacts did not answer; bootstrapping from routers");
                            self.start_bootstrap(fallback, Vec::new());
                        } else {
                            let _ = self.bootstrapped.send(true);
                        }
                    }
                    (_, other) => tracing::warn!("a result for another command: {other:?}"),
                }
            }
        }
    }

    fn routing_table_dump(&self) -> RoutingTableDump {
        let now = self.now();
        RoutingTableDump {
            node_id: self.node.id(),
            ipv4: self.node.routing_table(Family::V4).map(|t| FamilyTable::of(t, AddressFamily::Ipv4, now)),
            ipv6: self.node.routing_table(Family::V6).map(|t| FamilyTable::of(t, AddressFamily::Ipv6, now)),
        }
    }

    fn info(&self) -> Info {
        let c = self.node.counters();
        let (by_method, errors_by_code) = traffic_by_kind(&c.messages, MethodTraffic::from);
        Info {
            node_id: self.node.id(),
            local_addrs: self.local_addrs.clone(),
            external_addr: self.node.external_addr(),
            read_only: self.node.is_read_only(),
            routing_table_ipv4: self.node.routing_table(Family::V4).map(RoutingTable::len),
            routing_table_ipv6: self.node.routing_table(Family::V6).map(RoutingTable::len),
            contacts_ipv4: self.node.routing_table(Family::V4).map(|t| ContactCounts::of(t, self.now())),
            contacts_ipv6: self.node.routing_table(Family::V6).map(|t| ContactCounts::of(t, self.now())),
            stored_infohashes: self.node.peer_store().infohash_count(),
            stored_peers: self.node.peer_store().peer_count(),
            stored_items: self.node.item_store().len(),
            kept_items: self.node.kept_items().count(),
            running_operations: self.node.running_operations(),
            uptime_secs: self.clock.uptime().as_secs(),
            traffic: Traffic {
                datagrams_received: c.traffic.datagrams_received,
                bytes_received: c.traffic.bytes_received,
                datagrams_sent: c.traffic.datagrams_sent,
                bytes_sent: c.traffic.bytes_sent,
                queries_received: c.traffic.requests_received,
                responses_received: c.traffic.answers_received,
                errors_received: c.traffic.errors_received,
                errors_sent: c.traffic.errors_sent,
                dropped: c.traffic.dropped,
                requests_sent: c.traffic.requests_sent,
                requests_timed_out: c.traffic.requests_timed_out,
                by_method,
                errors_by_code,
                queries_rate_limited: c.queries_rate_limited,
                replies_capped_unverified: c.replies_capped_unverified,
                replies_capped_outbound: c.replies_capped_outbound,
                insecure_ids_refused: c.insecure_ids_refused,
                node_id_changes: c.node_id_changes,
            },
        }
    }

    fn saved_state(&self) -> SavedState {
        let now = self.now();
        SavedState {
            node_id: self.node.id().to_string(),
            contacts: self
                .node
                .contacts()
                .into_iter()
                .map(|(id, addr)| SavedContact { id: id.to_string(), addr })
                .collect(),
            items: self
                .node
                .item_store()
                .iter()
                .map(|s| SavedItem::from_item(&s.item, now.saturating_since(s.put_at).as_secs()))
                .collect(),
            kept_items: self
                .node
                .kept_items()
                .map(|k| {
                    let age = self.node.config().keep_alive_interval.saturating_sub(k.next_put.saturating_since(now));
                    SavedItem::from_item(&k.item, age.as_secs())
                })
                .collect(),
            port: self.local_addrs.first().map(SocketAddr::port),
            advertisements: self
                .node
                .quests()
                .into_iter()
                .flat_map(|q| q.advertisements())
                .map(|ad| SavedAdvertisement { info_hash: ad.info_hash.to_string(), port: ad.port })
                .collect(),
            watches: self.quests.saved_watches(&self.node),
        }
    }

    /// Resumes the kept watches of a saved state, knowing the peers they had reported. Their
    /// first searches run when the bootstrap ends.
    pub(crate) fn restore_watches(&mut self, state: &SavedState) {
        let now = self.now();
        for saved in &state.watches {
            if let Err(e) = self.quests.resume_watch(&mut self.node, now, saved) {
                tracing::warn!("saved watch {} dropped: {e}", saved.info_hash);
            }
        }
    }

    /// Resumes the advertisements of a saved state. Their first rounds run when the bootstrap
    /// ends (before it, the table is empty and a round would reach nobody).
    pub(crate) fn restore_advertisements(&mut self, state: &SavedState) {
        let now = self.now();
        for saved in &state.advertisements {
            let restored = saved
                .info_hash
                .parse::<InfoHash>()
                .map_err(|e| e.to_string())
                .and_then(|info_hash| self.node.advertise(now, info_hash, saved.port).map_err(|e| e.to_string()));
            if let Err(e) = restored {
                tracing::warn!("saved advertisement {} dropped: {e}", saved.info_hash);
            }
        }
    }

    /// Puts back the items of a saved state: stored items with their remaining lifetime, and
    /// kept items, due again an hour after their last put.
    pub(crate) fn restore_items(&mut self, state: &SavedState) {
        let now = self.now();
        for saved in &state.items {
            let put_at = now - Duration::from_secs(saved.age_secs);
            match saved.to_item().map(|item| self.node.restore_item(item, put_at)) {
                Some(Ok(())) => {}
                Some(Err(e)) => tracing::warn!("saved item dropped: {e}"),
                None => tracing::warn!("unreadable saved item dropped"),
            }
        }
        for saved in &state.kept_items {
            if let Some(item) = saved.to_item() {
                let interval = self.node.config().keep_alive_interval;
                self.node.restore_kept(item, now + interval.saturating_sub(Duration::from_secs(saved.age_secs)));
            }
        }
    }
}
