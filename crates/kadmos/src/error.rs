//! Errors of the runtime API.

use std::net::SocketAddr;

pub use kadmos_proto::kad::QueryError;

/// Why a call failed. Each case is one kind of failure, so callers can match on what they
/// handle (a timeout, a refused put, a node that has shut down) and report the rest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A UDP socket could not be bound (port taken, address not local).
    #[error("could not bind a UDP socket on {addr}: {source}")]
    Bind {
        /// The address and port tried last.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The builder was given no address to bind.
    #[error("no address to bind: give at least one IPv4 or IPv6 address")]
    NoBindAddress,
    /// A query or lookup failed: a timeout, an error answer, no contacts to ask.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// The node has shut down (its handle outlived it).
    #[error("the node has shut down")]
    Shutdown,
    /// A saved state could not be read: not JSON, a bad node ID, another network's state.
    #[error("invalid saved state: {0}")]
    State(String),
    /// The address is of a family (IPv4 or IPv6) this node has no socket for.
    #[error("{0} is not reachable from this node (no socket of that address family)")]
    FamilyUnavailable(SocketAddr),
    /// A BEP 44 item was refused before it was sent: too large, not bencoded, a bad signature.
    #[error("invalid item: {0}")]
    InvalidItem(kadmos_proto::mainline::ItemError),
    /// A get ended without finding the item.
    #[error("not found on the DHT")]
    NotFound,
    /// BEP 44 error 301: the stored item's seq is not the `cas` the put expected.
    #[error("put refused: CAS mismatch (301): {0}")]
    CasMismatch(String),
    /// BEP 44 error 302: the nodes hold a newer version of the item.
    #[error("put refused: sequence number less than current (302): {0}")]
    SeqTooLow(String),
    /// BEP 44 error 206: the nodes found the item's signature invalid.
    #[error("put refused: invalid signature (206): {0}")]
    InvalidSignature(String),
    /// Every node refused the put, with an error of no case above.
    #[error("put refused by every node: error {code}: {message}")]
    PutRefused {
        /// The first refusal's error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// An advertisement or watch refused: a limit reached, or port 0.
    #[error("{0}")]
    Quest(#[from] kadmos_proto::mainline::QuestError),
    /// A file (saved state) or the runtime could not be used.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An OpenDHT value with this id is already on the network and this put could not
    /// replace it (another owner's, unsigned, or at the last `seq`).
    #[error("cannot replace value {value_id:x}: {reason}")]
    CannotReplace {
        /// The value's id.
        value_id: u64,
        /// Why it cannot be replaced.
        reason: String,
    },
    /// An OpenDHT key, signature or cypher was refused (bad key file, value too large to sign
    /// or encrypt, a value encrypted to someone else).
    #[error("{0}")]
    Crypto(#[from] kadmos_proto::opendht::crypto::CryptoError),
}

/// The result of a call: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;
