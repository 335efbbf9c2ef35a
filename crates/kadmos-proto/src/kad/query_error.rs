//! Why a command failed: the same reasons on both networks.

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The node asked did not answer, even after the retries its network makes.
    #[error("no answer within the timeout")]
    Timeout,
    /// The node asked answered with an error: a KRPC error code on Mainline, an HTTP-like
    /// status on OpenDHT (both fit an `i64`).
    #[error("remote error {code}: {message}")]
    Remote {
        /// The error code the node sent.
        code: i64,
        /// The text the node sent with it.
        message: String,
    },
    /// The command had nobody to ask.
    #[error("no contacts to ask: the routing table is empty (bootstrap first)")]
    NoContacts,
    /// The node's table of requests in flight is full.
    #[error("too many requests in flight")]
    Overloaded,
}

impl QueryError {
    /// Whether this is the remote error `code`.
    pub fn is_remote_code(&self, code: i64) -> bool {
        matches!(self, QueryError::Remote { code: c, .. } if *c == code)
    }
}
