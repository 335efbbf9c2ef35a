//! The traffic counters every node keeps, whatever its network: datagrams and bytes each way,
//! requests made and how they ended, errors, and what was dropped.

/// Traffic counters since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    /// Datagrams handed to the node.
    pub datagrams_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Datagrams the node gave out to send.
    pub datagrams_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Requests (queries) from other nodes.
    pub requests_received: u64,
    /// Answers to our requests.
    pub answers_received: u64,
    /// Error answers to our requests.
    pub errors_received: u64,
    /// Error answers we sent.
    pub errors_sent: u64,
    /// Datagrams ignored: undecodable, unexpected answers, other families or networks.
    pub dropped: u64,
    /// Requests of ours sent (a resend does not count again).
    pub requests_sent: u64,
    /// Requests of ours that got no answer, retries included.
    pub requests_timed_out: u64,
}

impl TrafficCounters {
    /// Counts a datagram received.
    pub(crate) fn received(&mut self, len: usize) {
        self.datagrams_received += 1;
        self.bytes_received += len as u64;
    }

    /// Counts a datagram sent.
    pub(crate) fn sent(&mut self, len: usize) {
        self.datagrams_sent += 1;
        self.bytes_sent += len as u64;
    }
}
