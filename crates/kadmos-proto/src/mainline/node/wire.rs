//! How a Mainline node sends: its queue of datagrams, its counters and outbound limits, and
//! the engine's view of it ([`Network`]): KRPC queries under 4-byte transaction ids.

use super::*;

/// What a node sends through: the queue of datagrams, the counters, the outbound limits and
/// what sending tells of our reachability.
pub(super) struct Outbox {
    pub(super) transmits: TransmitQueue,
    pub(super) counters: Counters,
    /// Limits on what we serve and send (see `mainline::rate_limit`).
    pub(super) limiter: RateLimiter,
    /// With `adaptive_read_only`: whether others reach us (boxed: the simulator's nodes run
    /// without it, and 100,000 of them count every byte).
    pub(super) reachability: Option<Box<Reachability>>,
}

impl Outbox {
    /// BEP 43: whether the node is read-only now (see [`Node::is_read_only`]).
    pub(super) fn is_read_only(&self, config: &Config) -> bool {
        config.read_only || self.reachability.as_ref().is_some_and(|r| r.is_read_only())
    }

    /// Queues a request of ours or an error answer (these are always sent), counted against
    /// the outbound cap. Returns its length.
    pub(super) fn send(&mut self, to: SocketAddr, message: &Message) -> usize {
        let mut payload = Vec::with_capacity(512);
        message.encode(&mut payload);
        let len = payload.len();
        self.limiter.spend_outbound(len);
        self.push_transmit(to, payload);
        len
    }

    pub(super) fn push_transmit(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.counters.traffic.sent(payload.len());
        self.transmits.push(Transmit { to, payload });
    }
}

/// The node as the engine sees it: how Mainline encodes and sends requests.
pub(crate) struct Wire<'a> {
    pub(super) config: &'a Config,
    pub(super) out: &'a mut Outbox,
}

impl Network for Wire<'_> {
    type Request = Query;
    type Kind = Kind;
    type Purpose = MainlinePurpose;
    /// BEP 5 routers (router.bittorrent.com and the like) only name nodes.
    const ROUTERS_ARE_NODES: bool = false;
    type Config = Config;

    fn config(&self) -> &Config {
        self.config
    }

    fn draw_transaction_id(rng: &mut ChaCha8Rng) -> u32 {
        rng.gen()
    }

    fn find_request(&self, target: Id, dual_stack: bool) -> Query {
        Query::FindNode { target, want: want(dual_stack) }
    }

    fn ping_request(&self) -> Query {
        Query::Ping
    }

    fn send_request(&mut self, _now: Timestamp, to: SocketAddr, tx: u32, query: Query, _keep: bool) -> Vec<Vec<u8>> {
        let method = query.method();
        let mut message = Message::query(tx.to_be_bytes().to_vec(), self.config.node_id, query);
        message.read_only = self.out.is_read_only(self.config);
        if let Some(reachability) = &mut self.out.reachability {
            reachability.note_sent(to.ip());
        }
        message.version = Some(CLIENT_VERSION.to_vec());
        let len = self.out.send(to, &message);
        if let Some(kind) = MessageCounts::kind_index(method) {
            self.out.counters.messages.sent(kind, len);
        }
        Vec::new()
    }

    fn send_again(&mut self, _to: SocketAddr, _datagrams: &[Vec<u8>]) {
        // Mainline requests are sent once; lookups retry through `kad::lookup`.
    }

    fn traffic(&mut self) -> &mut crate::kad::TrafficCounters {
        &mut self.out.counters.traffic
    }
}

crate::kad::engine::engine_config_for!(Config);

/// Asks for nodes of both families when we have both (BEP 32 `want`).
pub(super) fn want(dual_stack: bool) -> Option<Want> {
    dual_stack.then_some(Want { v4: true, v6: true })
}
