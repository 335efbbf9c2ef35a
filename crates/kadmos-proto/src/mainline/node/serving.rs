//! Serving other nodes' queries (within the rate limits and reply caps), and BEP 42's say on\n//! which nodes enter the routing table and on our own ID.

use super::*;
use crate::kad::engine::engine_and_wire;

impl Node {
    pub(super) fn handle_query(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        tx: Vec<u8>,
        sender: NodeId,
        query: Query,
        sender_read_only: bool,
    ) {
        let family = Family::of(&from);
        let verified = self.engine.tables.get(family).and_then(|t| t.get(&sender)).is_some_and(|c| c.addr() == from);
        if !sender_read_only && sender != self.config.node_id {
            let admissible = self.config.node_id_security.admits(&sender, from.ip());
            let (engine, wire) = engine_and_wire!(self);
            engine.verify_querier(now, wire, sender, from, admissible);
        }
        let mut response = Response { id: self.config.node_id, ..Response::default() };
        match query {
            Query::Ping => {}
            Query::FindNode { target, want } => self.fill_nodes(&mut response, &target, want, family),
            Query::GetPeers { info_hash, want } => {
                response.token = Some(self.tokens.issue(from.ip()).to_vec());
                let per_peer = if from.is_ipv4() { 8 } else { 21 };
                let max = (self.config.peers_reply_budget / per_peer).max(1);
                response.values = self.peers.peers(&info_hash, from.is_ipv6(), max, now, &mut self.engine.rng);
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
                let (samples, num) = self.peers.sample(20, &mut self.engine.rng);
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
    pub(super) fn admits_contact(&mut self, id: &NodeId, from: SocketAddr) -> bool {
        let admitted = self.config.node_id_security.admits(id, from.ip());
        if !admitted {
            self.out.counters.insecure_ids_refused += 1;
        }
        admitted
    }

    /// BEP 42: the vote found a new external address. Unless our ID is already secure for it
    /// (or the policy keeps our ID), take a secure one and move the routing tables to it.
    pub(super) fn adopt_external_ip(&mut self, now: Timestamp, ip: IpAddr) {
        if self.config.node_id_security != NodeIdSecurity::Enforce
            || node_id_security::is_secure(&self.config.node_id, ip)
        {
            return;
        }
        let last_byte = self.engine.rng.gen();
        let id = node_id_security::secure_node_id(ip, last_byte, &mut self.engine.rng);
        self.config.node_id = id;
        self.engine.tables.recentre(id, now);
        self.out.counters.node_id_changes += 1;
    }

    /// Counts a query against the rate limits; whether to serve it. BEP 5 has no error for
    /// "too many queries", so one over a limit is dropped and counted.
    pub(super) fn admit_query(&mut self, now: Timestamp, from: SocketAddr) -> bool {
        let admitted = self.out.limiter.allow_query(now, from.ip()).is_ok();
        if !admitted {
            self.out.counters.queries_rate_limited += 1;
        }
        admitted
    }

    /// Sends an answer if the outbound and amplification caps allow it (see
    /// `mainline::rate_limit`); `verified`: the querier is in the routing table at `to`.
    pub(super) fn send_reply(&mut self, now: Timestamp, to: SocketAddr, message: &Message, verified: bool) {
        let mut payload = Vec::with_capacity(512);
        message.encode(&mut payload);
        match self.out.limiter.allow_reply(now, to.ip(), payload.len(), verified) {
            Ok(()) => self.push_transmit(to, payload),
            Err(Refusal::OutboundBytes) => self.out.counters.replies_capped_outbound += 1,
            Err(_) => self.out.counters.replies_capped_unverified += 1,
        }
    }

    /// Validates and stores a BEP 44 put; on refusal, the KRPC error code and message.
    pub(super) fn store_put(&mut self, put: PutArgs, now: Timestamp) -> Result<(), (i64, String)> {
        let refuse = |e: crate::mainline::item::ItemError| (e.code(), e.to_string());
        let item = match put.public_key {
            None => Item::Immutable(ImmutableItem::new(put.value).map_err(refuse)?),
            Some(public_key) => {
                let (Some(signature), Some(seq)) = (put.signature, put.seq) else {
                    return Err((error_code::PROTOCOL, "a mutable put needs sig and seq".into()));
                };
                let salt = put.salt.unwrap_or_default();
                if salt.len() > crate::mainline::item::MAX_SALT_LEN {
                    return Err(refuse(crate::mainline::item::ItemError::SaltTooBig(salt.len())));
                }
                Item::Mutable(MutableItem { public_key, salt, seq, value: put.value, signature })
            }
        };
        self.items.put(item, put.cas, now).map_err(refuse)
    }

    pub(super) fn fill_nodes(&self, response: &mut Response, target: &Id, want: Option<Want>, family: Family) {
        let k = self.config.routing.bucket_size;
        let want = want.map(|w| (w.v4, w.v6));
        (response.nodes, response.nodes6) = self.engine.tables.closest_wanted(target, want, family, k);
    }

    pub(super) fn reply_error(&mut self, to: SocketAddr, tx: Vec<u8>, code: i64, text: &str) {
        self.out.counters.traffic.errors_sent += 1;
        self.out.counters.messages.error_sent(code);
        let mut message = Message::error(tx, code, text);
        message.version = Some(CLIENT_VERSION.to_vec());
        self.send(to, &message);
    }
}
