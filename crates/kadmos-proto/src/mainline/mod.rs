//! The BitTorrent Mainline DHT: KRPC over bencode (BEP 5) with BEP 32, 42, 43, 44 and 51.

pub mod bencode;
pub mod compact;
pub mod config;
pub mod external_address;
pub mod item;
pub mod item_store;
pub mod message;
pub mod message_counts;
pub mod node;
pub mod node_id_security;
pub mod peer_store;
pub mod quest;
pub mod rate_limit;
pub mod reachability;
pub mod token;

pub use config::{Config, Families, CLIENT_VERSION};
pub use item::{ImmutableItem, Item, ItemError, ItemSigner, MutableItem};
pub use item_store::{ItemStore, ItemStoreConfig};
pub use message::{Body, DecodeError, Message, Query, Response, Want};
pub use node::{
    Closest, CommandResult, Counters, Event, Family, ItemQuery, KeptItem, Node, Pong, QueryError, QueryId, Samples,
    Stored, Transmit,
};
pub use node_id_security::NodeIdSecurity;
pub use peer_store::{PeerStore, PeerStoreConfig};
pub use quest::{Advertisement, QuestBook, QuestConfig, QuestError, QuestEvent};
pub use rate_limit::{Rate, RateLimits};
pub use reachability::AdaptiveReadOnly;
