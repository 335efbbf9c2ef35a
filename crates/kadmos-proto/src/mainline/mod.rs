//! The BitTorrent Mainline DHT: KRPC over bencode (BEP 5) with BEP 32, 42, 43, 44 and 51.
//!
//! # What is here
//!
//! - The node: [`Node`], the sans-IO state machine that serves the network and runs its
//!   user's commands ([`Node::get_peers`], [`Node::announce_peer`], BEP 44's
//!   [`Node::get_item`] and [`Node::put_item`]) and quests ([`Node::advertise`],
//!   [`Node::watch`]: announces and searches that renew until stopped); [`Config`] (every
//!   limit and timer with its default); [`Event`] (what it reports); the [`PeerStore`],
//!   [`ItemStore`] and [`QuestBook`] it exposes read-only.
//! - BEP 44 items: [`ImmutableItem`], [`MutableItem`] and the [`ItemSigner`] that signs them.
//! - The wire layer: [`Message`] (a KRPC datagram: a [`Query`], a [`Response`] or an error
//!   from [`error_code`]; [`MessageCounts`] counts them by method and code) and [`bencode`].
//! - Hardening: [`RateLimits`] on what is served, BEP 42 node IDs ([`NodeIdSecurity`],
//!   [`secure_node_id`]) and BEP 43's [`AdaptiveReadOnly`] mode.
//!
//! # Driving a node
//!
//! The node never touches a socket or a clock. Whoever drives it (the tokio runtime, a test,
//! the simulator) hands it every datagram received ([`Node::handle_datagram`]) and calls
//! [`Node::handle_timeout`] when the time [`Node::poll_timeout`] asked for has come; commands
//! ([`KademliaNode::bootstrap`], [`Node::get_peers`]...) return a [`QueryId`]. After every input, it
//! sends what [`Node::poll_transmit`] gives and handles what [`Node::poll_event`] gives
//! (progress and results, keyed by `QueryId`, and quest reports). Every input takes `now`,
//! and all randomness comes from the seeded generator in the config: the same inputs give the
//! same outputs. The crate documentation shows it in a few lines.

pub mod bencode;
pub(crate) mod compact;
mod config;
mod external_address;
mod item;
mod item_store;
mod message;
pub(crate) mod message_counts;
mod node;
mod node_id_security;
mod peer_store;
mod quest;
mod rate_limit;
mod reachability;
mod token;

// What both networks' nodes share, named here too so that one import brings a node's whole
// surface: Kademlia's own commands and views, results, errors, counters and what a driver
// exchanges with the node.
pub use crate::kad::{Closest, KademliaNode, Pong, QueryError, TrafficCounters};
pub use crate::node_io::{Family, QueryId, Transmit};
pub use config::{Config, Families, CLIENT_VERSION};
pub use item::{mutable_target, ImmutableItem, Item, ItemError, ItemSigner, MutableItem};
pub use item_store::{ItemStore, ItemStoreConfig, StoredItem};
pub use message::{error_code, Body, DecodeError, Message, PutArgs, Query, Response, Want};
pub use message_counts::{KindCount, Krpc, MessageCounts, ERROR_CODES, METHODS};
pub use node::{CommandResult, Counters, Event, ItemQuery, KeptItem, Node, Samples, Stored};
pub use node_id_security::{is_secure, secure_node_id, NodeIdSecurity};
pub use peer_store::{PeerStore, PeerStoreConfig};
pub use quest::{Advertisement, QuestBook, QuestConfig, QuestError, QuestEvent, SeenPeer};
pub use rate_limit::{Rate, RateLimits};
pub use reachability::AdaptiveReadOnly;
