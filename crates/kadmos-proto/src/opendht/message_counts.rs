//! Datagrams counted by message kind and error code, for operators (`kadmos node`'s metrics):
//! which requests a node answers and sends, what each kind costs in bytes, and which errors
//! pass. Fixed arrays indexed by kind and code: counting is on the path of every datagram, so
//! it must not allocate.

use super::message::{error_code, Body, Request};
pub use crate::mainline::message_counts::KindCount;

/// The kinds of datagram, in the order of the counters: the seven requests, then answers
/// (`reply`, listener pushes in the old form included), errors and value fragments.
pub const KINDS: [&str; 10] =
    ["ping", "find", "get", "put", "listen", "refresh", "update", "reply", "error", "value_parts"];

/// The error codes OpenDHT sends, in the order of the counters; any other code is counted
/// last, as "other".
pub const ERROR_CODES: [u16; 3] =
    [error_code::NON_AUTHORITATIVE_INFORMATION, error_code::UNAUTHORIZED, error_code::NOT_FOUND];

/// The kind of one datagram, an index into [`KINDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MessageKind(u8);

impl MessageKind {
    /// Value fragments (`y: p`) that follow a message with large values.
    pub(crate) const VALUE_PARTS: MessageKind = MessageKind(9);

    pub(crate) fn of(body: &Body) -> MessageKind {
        MessageKind(match body {
            Body::Request { request, .. } => match request {
                Request::Ping => 0,
                Request::Find { .. } => 1,
                Request::Get { .. } => 2,
                Request::Put(_) => 3,
                Request::Listen(_) => 4,
                Request::Refresh { .. } => 5,
                Request::Update(_) => 6,
            },
            Body::Reply(_) | Body::ListenerPush(_) => 7,
            Body::Error { .. } => 8,
            Body::ValueParts(_) => 9,
        })
    }

    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        KINDS[usize::from(self.0)]
    }
}

/// Datagrams by kind and errors by code, in both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Datagrams received, by kind ([`KINDS`] order).
    pub received: [KindCount; KINDS.len()],
    /// Datagrams sent, by kind (retransmissions included).
    pub sent: [KindCount; KINDS.len()],
    /// Error answers received, by code ([`ERROR_CODES`] order, then other codes).
    pub errors_received: [u64; ERROR_CODES.len() + 1],
    /// Error answers sent, by code.
    pub errors_sent: [u64; ERROR_CODES.len() + 1],
}

fn code_index(code: u16) -> usize {
    ERROR_CODES.iter().position(|c| *c == code).unwrap_or(ERROR_CODES.len())
}

fn add(count: &mut KindCount, bytes: usize) {
    count.messages += 1;
    count.bytes += bytes as u64;
}

impl MessageCounts {
    /// A decoded datagram of `bytes` bytes.
    pub(crate) fn received(&mut self, body: &Body, bytes: usize) {
        add(&mut self.received[usize::from(MessageKind::of(body).0)], bytes);
        if let Body::Error { code, .. } = body {
            self.errors_received[code_index(*code)] += 1;
        }
    }

    /// A datagram of ours; an error answer's code is counted with [`MessageCounts::error_sent`].
    pub(crate) fn sent(&mut self, kind: MessageKind, bytes: usize) {
        add(&mut self.sent[usize::from(kind.0)], bytes);
    }

    pub(crate) fn error_sent(&mut self, code: u16) {
        self.errors_sent[code_index(code)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opendht::message::Reply;

    /// Each kind and code lands in its own counter, with its bytes; unknown codes in "other".
    #[test]
    fn counts_by_kind() {
        let mut counts = MessageCounts::default();
        let ping = Body::Request { id: Default::default(), request: Request::Ping };
        counts.received(&ping, 40);
        counts.received(&ping, 60);
        counts.received(&Body::Reply(Reply::default()), 500);
        counts.received(&Body::Error { code: 401, message: String::new(), id: None }, 30);
        counts.sent(MessageKind::of(&Body::Error { code: 999, message: String::new(), id: None }), 20);
        counts.error_sent(999);
        counts.sent(MessageKind::VALUE_PARTS, 1200);
        assert_eq!(MessageKind::of(&ping).name(), "ping");
        assert_eq!(counts.received[0], KindCount { messages: 2, bytes: 100 });
        assert_eq!(counts.received[7], KindCount { messages: 1, bytes: 500 });
        assert_eq!(counts.received[8], KindCount { messages: 1, bytes: 30 });
        assert_eq!(counts.errors_received, [0, 1, 0, 0]);
        assert_eq!(counts.errors_sent, [0, 0, 0, 1]);
        assert_eq!(counts.sent[8], KindCount { messages: 1, bytes: 20 });
        assert_eq!(counts.sent[9], KindCount { messages: 1, bytes: 1200 });
    }
}
