//! What an OpenDHT node counts by kind (see [`crate::kad::MessageCounts`]): every datagram
//! by message type, both ways, and error answers by code.

use super::message::{error_code, Body, Request};
pub use crate::kad::KindCount;
use crate::kad::MessageCatalog;

/// The kinds of datagram, in the order of the counters: the seven requests, then answers
/// (`reply`, listener pushes in the old form included), errors and value fragments.
pub const KINDS: [&str; 10] =
    ["ping", "find", "get", "put", "listen", "refresh", "update", "reply", "error", "value_parts"];

/// The error codes OpenDHT sends, in the order of the counters; any other code is counted
/// last, as "other".
pub const ERROR_CODES: [i64; 3] =
    [error_code::NON_AUTHORITATIVE_INFORMATION as i64, error_code::UNAUTHORIZED as i64, error_code::NOT_FOUND as i64];

/// OpenDHT's catalog: datagrams by message type.
#[derive(Clone, Copy, Debug)]
pub struct OpenDhtMessages;

impl MessageCatalog for OpenDhtMessages {
    const KINDS: &'static [&'static str] = &KINDS;
    const ERROR_CODES: &'static [i64] = &ERROR_CODES;
}

/// Datagrams by kind (sent: retransmissions included) and errors by code, both ways.
pub type MessageCounts = crate::kad::MessageCounts<OpenDhtMessages, { KINDS.len() }, { ERROR_CODES.len() + 1 }>;

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
        KINDS[self.index()]
    }

    /// Its counter in [`MessageCounts`].
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Counts a decoded datagram of `bytes` bytes, and its code if it is an error answer.
pub(crate) fn count_received(counts: &mut MessageCounts, body: &Body, bytes: usize) {
    counts.received(MessageKind::of(body).index(), bytes);
    if let Body::Error { code, .. } = body {
        counts.error_received(i64::from(*code));
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
        count_received(&mut counts, &ping, 40);
        count_received(&mut counts, &ping, 60);
        count_received(&mut counts, &Body::Reply(Reply::default()), 500);
        count_received(&mut counts, &Body::Error { code: 401, message: String::new(), id: None }, 30);
        counts.sent(MessageKind::of(&Body::Error { code: 999, message: String::new(), id: None }).index(), 20);
        counts.error_sent(999);
        counts.sent(MessageKind::VALUE_PARTS.index(), 1200);
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
