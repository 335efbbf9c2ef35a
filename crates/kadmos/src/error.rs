//! Errors of the runtime API.

use std::net::SocketAddr;

pub use kadmos_proto::mainline::QueryError;

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
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
