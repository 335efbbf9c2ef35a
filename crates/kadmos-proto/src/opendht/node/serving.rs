//! Serving other nodes' requests: routing answers, value storage within the store radius and
//! policies, remote listeners and the updates pushed to them.

use super::*;
use crate::kad::engine::engine_and_wire;

impl Node {
    pub(super) fn handle_request(
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
            let (engine, wire) = engine_and_wire!(self);
            engine.verify_querier(now, wire, sender, from, true);
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

    pub(super) fn serve_put(&mut self, now: Timestamp, from: SocketAddr, tid: u32, put: PutArgs, reply: Reply) {
        if !self.tokens.is_valid(from, &put.token) {
            self.reply_error(from, tid, error_code::UNAUTHORIZED, "put with wrong token");
            return;
        }
        let values = ValueSlot::whole_values(put.values);
        if values.iter().any(|v| v.id == INVALID_VALUE_ID) {
            self.reply_error(from, tid, error_code::NON_AUTHORITATIVE_INFORMATION, "put with invalid value id");
            return;
        }
        let inside = self.within_store_radius(&put.key, Family::of(&from));
        let created = self.created_at(put.created, now);
        for value in values {
            let value_id = value.id;
            if !inside {
                self.out.counters.puts_outside_radius += 1;
            } else if let Ok(value) = store_policy::apply(value, from) {
                self.store_value(now, put.key, value, Source::Remote(from.ip()), created, false);
            } else {
                self.out.counters.values_refused += 1;
            }
            // Answered either way, as OpenDHT does (a refusal would make the requester look
            // elsewhere and spread the value further).
            self.send(from, Message::reply(tid, Reply { value_id: Some(value_id), ..reply.clone() }));
        }
    }

    /// The creation time of a put: its `c` when we know Unix time, else now.
    pub(super) fn created_at(&self, created: Option<i64>, now: Timestamp) -> Timestamp {
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
    pub(super) fn within_store_radius(&self, key: &Id, family: Family) -> bool {
        let Some(table) = self.engine.tables.get(family) else { return true };
        let closest = table.closest_nodes(key, self.config.store_radius);
        match closest.last() {
            Some((farthest, _)) if closest.len() >= self.config.lookup.k => {
                farthest.distance(key) >= self.config.node_id.distance(key)
            }
            _ => true,
        }
    }

    pub(super) fn store_value(
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
                self.out.counters.values_stored += 1;
                // The new value itself may have been evicted to make room.
                if self.storage.get_stored(&key, value.id).is_some() {
                    self.on_change(now, key, Change::New(value));
                }
            }
            StoreOutcome::Refreshed => self.on_change(now, key, Change::Refreshed(value.id)),
            StoreOutcome::Refused(_) => self.out.counters.values_refused += 1,
        }
        result.outcome
    }

    /// Tells remote listeners and our own listens about a change in our storage.
    pub(super) fn on_change(&mut self, now: Timestamp, key: Id, change: Change) {
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
            let changes = self.listens.update(&listen, |state| match &change {
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
            });
            self.report_changes(listen, changes.expect("listed above"));
        }
    }

    /// Sends values to a remote listener: `update` requests (`ve` ≥ 1) or legacy answers.
    pub(super) fn push_values(&mut self, listener: &Listener, key: Id, values: Vec<Value>) {
        let token = self.tokens.issue(listener.addr).to_vec();
        for batch in update_batches(values) {
            self.out.counters.listener_pushes += 1;
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
    pub(super) fn push_ids(&mut self, listener: &Listener, refreshed: Vec<ValueId>, expired: Vec<ValueId>) {
        self.out.counters.listener_pushes += 1;
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
    pub(super) fn on_update(&mut self, now: Timestamp, from: SocketAddr, update: UpdateArgs) {
        let Some(listen) = self.sockets.get(&update.socket_id).copied() else { return };
        let changes = self.listens.update(&listen, |state| {
            if update.key.is_some_and(|k| k != state.key) {
                return None;
            }
            let sub = state.nodes.get_mut(&from)?;
            if !update.token.is_empty() {
                sub.token = update.token;
            }
            let holder = Holder::Node(from);
            let mut changes = Vec::new();
            for value in ValueSlot::whole_values(update.values) {
                if state.filter.matches(&value) {
                    let until = now + value.expiration();
                    changes.extend(state.cache.add(value, holder, until, now));
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
            Some(changes)
        });
        let Some(changes) = changes.flatten() else { return };
        self.report_changes(listen, changes);
    }

    pub(super) fn fill_nodes(&self, reply: &mut Reply, target: &Id, want: Option<Want>, family: Family) {
        let k = self.config.routing.bucket_size;
        let want = want.map(|w| (w.v4, w.v6));
        (reply.nodes4, reply.nodes6) = self.engine.tables.closest_wanted(target, want, family, k);
    }

    pub(super) fn reply_error(&mut self, to: SocketAddr, tid: u32, code: u16, text: &str) {
        self.out.counters.traffic.errors_sent += 1;
        let message = Message::error(tid, code, text, self.config.node_id);
        self.send(to, message);
    }
}
