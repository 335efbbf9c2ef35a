//! How an OpenDHT node sends: its queue of datagrams and counters, fragments of large values,
//! and the engine's view of it ([`Network`]): msgpack requests, resent when unanswered.

use super::*;

/// What a node sends through: the queue of datagrams and the counters.
pub(super) struct Outbox {
    pub(super) transmits: TransmitQueue,
    pub(super) counters: Counters,
}

/// The node as the engine (and its serving) sees it: how OpenDHT encodes and sends messages.
pub(crate) struct Wire<'a> {
    pub(super) config: &'a Config,
    pub(super) out: &'a mut Outbox,
}

impl Wire<'_> {
    pub(super) fn transmit(&mut self, to: SocketAddr, kind: MessageKind, payload: Vec<u8>) {
        self.out.counters.traffic.sent(payload.len());
        self.out.counters.messages.sent(kind.index(), payload.len());
        self.out.transmits.push(Transmit { to, payload });
    }

    pub(super) fn encode(&self, mut message: Message) -> Vec<u8> {
        message.network = self.config.network;
        message.is_client = self.config.is_client;
        message.to_bytes()
    }

    pub(super) fn send(&mut self, to: SocketAddr, message: Message) {
        let kind = MessageKind::of(&message.body);
        if let Body::Error { code, .. } = message.body {
            self.out.counters.messages.error_sent(i64::from(code));
        }
        let payload = self.encode(message);
        self.transmit(to, kind, payload);
    }

    /// A message and the fragments of its values, as datagrams (the message's first, then its
    /// value parts).
    pub(super) fn datagrams(&self, message: Message, parts: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let tid = message.tid;
        let mut out = vec![self.encode(message)];
        let packed = PackedValues { slots: Vec::new(), parts };
        out.extend(packed.part_messages(tid).into_iter().map(|m| self.encode(m)));
        out
    }

    /// Queues datagrams from [`Wire::datagrams`]: the first of `kind`, the rest value parts.
    fn transmit_all(&mut self, to: SocketAddr, kind: MessageKind, datagrams: &[Vec<u8>]) {
        for (i, payload) in datagrams.iter().enumerate() {
            let kind = if i == 0 { kind } else { MessageKind::VALUE_PARTS };
            self.transmit(to, kind, payload.clone());
        }
    }

    pub(super) fn send_with_parts(&mut self, to: SocketAddr, message: Message, parts: Vec<Vec<u8>>) {
        let kind = MessageKind::of(&message.body);
        let datagrams = self.datagrams(message, parts);
        self.transmit_all(to, kind, &datagrams);
    }
}

impl Network for Wire<'_> {
    type Request = Outgoing;
    type Kind = Kind;
    type Purpose = OpenDhtPurpose;
    /// OpenDHT's bootstrap nodes are full nodes (in a small network, maybe the only one).
    const ROUTERS_ARE_NODES: bool = true;
    type Config = Config;

    fn config(&self) -> &Config {
        self.config
    }

    fn draw_transaction_id(rng: &mut ChaCha8Rng) -> u32 {
        rng.gen_range(1..=u32::MAX)
    }

    fn find_request(&self, target: Id, dual_stack: bool) -> Outgoing {
        Outgoing::whole(Request::Find { target, want: want(dual_stack) })
    }

    fn ping_request(&self) -> Outgoing {
        Outgoing::whole(Request::Ping)
    }

    fn send_request(
        &mut self,
        _now: Timestamp,
        to: SocketAddr,
        tx: u32,
        outgoing: Outgoing,
        keep: bool,
    ) -> Vec<Vec<u8>> {
        let message = Message::request(tx, self.config.node_id, outgoing.request);
        let kind = MessageKind::of(&message.body);
        let datagrams = self.datagrams(message, outgoing.parts);
        self.transmit_all(to, kind, &datagrams);
        if keep {
            datagrams
        } else {
            Vec::new()
        }
    }

    fn send_again(&mut self, to: SocketAddr, datagrams: &[Vec<u8>]) {
        // The request's kind is read back from its datagram: resends are rare (a silent node),
        // so the request table need not keep it.
        let kind = datagrams
            .first()
            .and_then(|first| Message::decode(first).ok())
            .map_or(MessageKind::VALUE_PARTS, |m| MessageKind::of(&m.body));
        self.transmit_all(to, kind, datagrams);
    }

    fn traffic(&mut self) -> &mut crate::kad::TrafficCounters {
        &mut self.out.counters.traffic
    }
}

crate::kad::engine::engine_config_for!(Config);

/// Asks for nodes of both families when we have both.
pub(super) fn want(dual_stack: bool) -> Option<Want> {
    dual_stack.then_some(Want { v4: true, v6: true })
}
