//! The BitTorrent Mainline DHT: KRPC over bencode (BEP 5) with BEP 32, 42, 43, 44 and 51.

pub mod bencode;
pub(crate) mod compact;
mod config;
mod external_address;
mod item;
mod item_store;
mod message;
pub(crate) mod message_counts;
// The fields of `Outcome` and `Event` are not documented yet: both enums are being replaced
// by typed results per command, which come with their docs. Everything else in `node` is.
#[allow(missing_docs)]
mod node;
mod node_id_security;
mod peer_store;
mod quest;
mod rate_limit;
mod reachability;
mod token;

pub use config::{Config, Families, CLIENT_VERSION};
pub use item::{mutable_target, ImmutableItem, Item, ItemError, ItemSigner, MutableItem};
pub use item_store::{ItemStore, ItemStoreConfig, StoredItem};
pub use message::{error_code, Body, DecodeError, Message, PutArgs, Query, Response, Want};
pub use message_counts::{KindCount, MessageCounts, ERROR_CODES, METHODS};
pub use node::{
    Counters, Event, Family, ItemQuery, KeptItem, Node, Outcome, QueryError, QueryId, TrafficCounters, Transmit,
};
pub use node_id_security::{is_secure, secure_node_id, NodeIdSecurity};
pub use peer_store::{PeerStore, PeerStoreConfig};
pub use quest::{Advertisement, QuestBook, QuestConfig, QuestError, QuestEvent, SeenPeer};
pub use rate_limit::{Rate, RateLimits};
pub use reachability::AdaptiveReadOnly;
