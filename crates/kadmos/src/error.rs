//! Errors of the runtime API.

use std::net::SocketAddr;

pub use kadmos_proto::kad::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not bind a UDP socket on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("no address to bind: give at least one IPv4 or IPv6 address")]
    NoBindAddress,
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("the node has shut down")]
    Shutdown,
    #[error("invalid saved state: {0}")]
    State(String),
    #[error("{0} is not reachable from this node (no socket of that address family)")]
    FamilyUnavailable(SocketAddr),
    #[error("invalid item: {0}")]
    InvalidItem(kadmos_proto::mainline::ItemError),
    #[error("not found on the DHT")]
    NotFound,
    #[error("put refused: CAS mismatch (301): {0}")]
    CasMismatch(String),
    #[error("put refused: sequence number less than current (302): {0}")]
    SeqTooLow(String),
    #[error("put refused: invalid signature (206): {0}")]
    InvalidSignature(String),
    #[error("put refused by every node: error {code}: {message}")]
    PutRefused { code: i64, message: String },
    /// An advertisement or watch refused: a limit reached, or port 0.
    #[error("{0}")]
    Quest(#[from] kadmos_proto::mainline::QuestError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An OpenDHT value with this id is already on the network and this put could not
    /// replace it (another owner's, unsigned, or at the last `seq`).
    #[error("cannot replace value {value_id:x}: {reason}")]
    CannotReplace { value_id: u64, reason: String },
    /// An OpenDHT key, signature or cypher was refused (bad key file, value too large to sign
    /// or encrypt, a value encrypted to someone else).
    #[error("{0}")]
    Crypto(#[from] kadmos_proto::opendht::crypto::CryptoError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
