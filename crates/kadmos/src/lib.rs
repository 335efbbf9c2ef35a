//! kadmos: a DHT node for the BitTorrent Mainline network.
//!
//! ```no_run
//! # async fn demo() -> kadmos::Result<()> {
//! let dht = kadmos::Dht::builder().build().await?;
//! let info_hash = "e5f96f6f38320f0f33959cb4d3d656452117aadb".parse().unwrap();
//! dht.announce_peer(info_hash, Some(6881)).await?;
//! let mut peers = dht.get_peers(info_hash).await?;
//! while let Some(batch) = peers.next().await {
//!     println!("{} sent {:?}", batch.from.addr, batch.peers);
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`builder`]: [`DhtBuilder`]: sockets, ports, node ID, saved state, bootstrap routers.
//! - [`dht`]: the async [`Dht`] handle and the [`PeerStream`] of `get_peers`.
//! - `driver`: the tokio task that owns the sockets and the sans-IO node.
//! - `endpoint`: a node's UDP sockets; `batch_io`: `recvmmsg`/`sendmmsg` batching (Linux).
//! - [`blocking`]: the same API for code without an async runtime.
//! - [`quests`]: advertisements and watches that last ([`Advertisement`], [`PeerWatch`]).
//! - [`storage`]: BEP 44 put/get of immutable and mutable items, keep-alive.
//! - [`state`]: [`SavedState`], what a node saves to rejoin after a restart.
//! - [`testnet`]: [`Testnet`], a local network of nodes for tests and demos.
//! - [`opendht`]: the same for the OpenDHT network: [`OpenDht`] (put, get, listen),
//!   [`OpenDhtBuilder`], its saved state and testnet.
//! - [`types`]: plain data returned by the API (serialisable to JSON).

mod batch_io;
pub mod blocking;
pub mod builder;
pub mod dht;
mod driver;
mod endpoint;
pub mod error;
mod node_task;
pub mod opendht;
pub mod ports;
pub mod quests;
pub mod state;
pub mod storage;
pub mod testnet;
pub mod types;

pub use builder::{DhtBuilder, DEFAULT_BOOTSTRAP};
pub use dht::{Dht, PeerStream};
pub use error::{Error, QueryError, Result};
pub use kadmos_proto::kad::LookupConfig;
pub use kadmos_proto::mainline::{
    AdaptiveReadOnly, ImmutableItem, Item, ItemSigner, MutableItem, NodeIdSecurity, PeerStoreConfig, QuestConfig,
    QuestError, Rate, RateLimits,
};
pub use kadmos_proto::{Id, InfoHash, NodeId};
pub use opendht::{OpenDht, OpenDhtBuilder};
pub use ports::PortSpec;
pub use quests::{Advertisement, AdvertisementInfo, PeerWatch, Renewal, WatchEvent, WatchInfo};
pub use state::{SavedState, SavedWatch, SavedWatchedPeer};
pub use storage::{ItemStream, PutResult, Seq};
pub use testnet::Testnet;
pub use types::*;
