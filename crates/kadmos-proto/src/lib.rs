//! Sans-IO core of kadmos.
//!
//! Nothing in this crate opens a socket, reads a clock or asks the OS for randomness: time
//! comes in as a [`Timestamp`] argument and randomness from a seeded generator in each
//! node's config. That is what lets the same state machines run under the tokio runtime
//! (`kadmos` crate) and, deterministically, under a simulator.
//!
//! # Layout
//!
//! - [`time`]: the timestamp type every input takes.
//! - [`kad`]: what every Kademlia network shares: [`kad::Id`] and XOR distance, the
//!   [`kad::RoutingTable`] of one address family, the [`kad::Lookup`] state machine, and the
//!   engine both nodes run (operations, requests, stall evidence, joining, refreshes), with
//!   one [`kad::QueryError`] and one set of [`kad::TrafficCounters`].
//! - [`node_io`]: what a node and its driver exchange (datagrams, address families, query
//!   ids), the same for both networks.
//! - [`mainline`]: the BitTorrent DHT: bencode, compact encodings, KRPC messages, tokens,
//!   the peer store, BEP 42 node IDs and the [`mainline::Node`] that ties them together.
//! - [`opendht`]: OpenDHT's wire protocol: msgpack messages, values with their signed and
//!   encrypted forms, SELECT/WHERE queries, and splitting and reassembling large values.

pub mod fuzz_targets;
pub mod kad;
pub mod mainline;
pub mod node_io;
pub mod opendht;
pub mod time;

pub use kad::{Id, InfoHash, NodeId, QueryError, TrafficCounters};
pub use time::Timestamp;
