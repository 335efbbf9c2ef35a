//! What a Mainline node counts by kind (see [`crate::kad::MessageCounts`]): queries by KRPC
//! method, both ways, and error answers by BEP 5 and BEP 44 code.

pub use crate::kad::KindCount;
use crate::kad::MessageCatalog;

/// The KRPC methods a node knows, in the order of the counters.
pub const METHODS: [&str; 7] = ["ping", "find_node", "get_peers", "announce_peer", "sample_infohashes", "get", "put"];

/// The error codes of BEP 5 and BEP 44, in the order of the counters; any other code is
/// counted last, as "other".
pub const ERROR_CODES: [i64; 9] = [201, 202, 203, 204, 205, 206, 207, 301, 302];

/// Mainline's catalog: queries by method (answers and errors are not counted by kind).
#[derive(Clone, Copy, Debug)]
pub struct Krpc;

impl MessageCatalog for Krpc {
    const KINDS: &'static [&'static str] = &METHODS;
    const ERROR_CODES: &'static [i64] = &ERROR_CODES;
}

/// Queries by method (received: from others; sent: ours) and errors by code, both ways.
pub type MessageCounts = crate::kad::MessageCounts<Krpc, { METHODS.len() }, { ERROR_CODES.len() + 1 }>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each KRPC method has its counter; other names have none.
    #[test]
    fn methods_in_counter_order() {
        let mut counts = MessageCounts::default();
        let get_peers = MessageCounts::kind_index("get_peers").unwrap();
        counts.received(get_peers, 100);
        counts.error_received(302);
        assert_eq!(get_peers, 2);
        assert_eq!(MessageCounts::kind_index("vote"), None);
        assert_eq!(counts.received[2], KindCount { messages: 1, bytes: 100 });
        assert_eq!(counts.errors_received[8], 1);
    }
}
