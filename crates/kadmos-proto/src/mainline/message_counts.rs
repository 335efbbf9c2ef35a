//! Messages counted by KRPC method and error code, for operators (`kadmos node`'s metrics):
//! which queries a node answers and sends, how many bytes each kind costs, and which errors
//! pass. Fixed arrays indexed by method and code: counting is on the path of every datagram,
//! so it must not allocate.

/// The KRPC methods a node knows, in the order of the counters.
pub const METHODS: [&str; 7] = ["ping", "find_node", "get_peers", "announce_peer", "sample_infohashes", "get", "put"];

/// The error codes of BEP 5 and BEP 44, in the order of the counters; any other code is
/// counted last, as "other".
pub const ERROR_CODES: [i64; 9] = [201, 202, 203, 204, 205, 206, 207, 301, 302];

/// Messages and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCount {
    /// Datagrams.
    pub messages: u64,
    /// Their bytes, as sent or received.
    pub bytes: u64,
}

/// Queries by method and errors by code, in both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Queries received, by method ([`METHODS`] order).
    pub queries_received: [KindCount; METHODS.len()],
    /// Our requests sent, by method.
    pub queries_sent: [KindCount; METHODS.len()],
    /// Error answers received, by code ([`ERROR_CODES`] order, then other codes).
    pub errors_received: [u64; ERROR_CODES.len() + 1],
    /// Error answers sent, by code.
    pub errors_sent: [u64; ERROR_CODES.len() + 1],
}

fn method_index(method: &str) -> Option<usize> {
    METHODS.iter().position(|m| *m == method)
}

fn code_index(code: i64) -> usize {
    ERROR_CODES.iter().position(|c| *c == code).unwrap_or(ERROR_CODES.len())
}

impl MessageCounts {
    pub(crate) fn query_received(&mut self, method: &str, bytes: usize) {
        if let Some(i) = method_index(method) {
            self.queries_received[i].messages += 1;
            self.queries_received[i].bytes += bytes as u64;
        }
    }

    pub(crate) fn query_sent(&mut self, method: &str, bytes: usize) {
        if let Some(i) = method_index(method) {
            self.queries_sent[i].messages += 1;
            self.queries_sent[i].bytes += bytes as u64;
        }
    }

    pub(crate) fn error_received(&mut self, code: i64) {
        self.errors_received[code_index(code)] += 1;
    }

    pub(crate) fn error_sent(&mut self, code: i64) {
        self.errors_sent[code_index(code)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each method and code lands in its own counter; unknown codes in "other".
    #[test]
    fn counts_by_kind() {
        let mut counts = MessageCounts::default();
        counts.query_received("get_peers", 100);
        counts.query_received("get_peers", 50);
        counts.query_sent("put", 300);
        counts.error_received(302);
        counts.error_sent(999);
        assert_eq!(counts.queries_received[2], KindCount { messages: 2, bytes: 150 });
        assert_eq!(counts.queries_sent[6], KindCount { messages: 1, bytes: 300 });
        assert_eq!(counts.errors_received[8], 1);
        assert_eq!(counts.errors_sent[ERROR_CODES.len()], 1);
        assert_eq!(counts.queries_received.iter().map(|k| k.messages).sum::<u64>(), 2);
    }
}
