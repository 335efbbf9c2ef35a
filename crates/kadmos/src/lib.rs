//! kadmos: a DHT node for the BitTorrent Mainline network and the OpenDHT network, on tokio.
//!
//! A node is a handle to a task that owns its UDP sockets and a sans-IO node of the protocol
//! core (the `kadmos_proto` crate). Build one, let it join, then ask it things: every call
//! returns a typed result (or a stream of them), and every error is an [`Error`].
//!
//! The examples below run against a [`Testnet`], a few nodes on loopback in this process, so
//! that they run anywhere (they are tested that way). On the real network, leave out
//! `.bootstrap(..)`: a builder joins through the public routers by default
//! ([`DEFAULT_BOOTSTRAP`], [`opendht::DEFAULT_BOOTSTRAP`]).
//!
//! # Mainline: join, find peers, announce
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kadmos::Result<()> {
//! use kadmos::{InfoHash, Testnet};
//!
//! let testnet = Testnet::new(8).await?;
//! // On the public network: `kadmos::Dht::builder().build().await?`.
//! let builder = Testnet::node_builder().bootstrap(testnet.bootstrap_addrs());
//! let dht = builder.build().await?;
//! dht.bootstrapped().await?;
//!
//! let info_hash: InfoHash = "e5f96f6f38320f0f33959cb4d3d656452117aadb".parse().unwrap();
//! let announced = dht.announce_peer(info_hash, Some(6881)).await?; // we serve it on 6881
//! println!("announced to {} nodes", announced.stored_at.len());
//!
//! let mut peers = testnet.nodes[3].get_peers(info_hash).await?; // a stream of batches
//! while let Some(batch) = peers.next().await {
//!     println!("{} knows {:?}", batch.from.addr, batch.peers);
//! }
//! # Ok(()) }
//! ```
//!
//! To stay findable, [`Dht::advertise`] re-announces until dropped; [`Dht::watch`] reports
//! new peers of an infohash as they appear. [`Dht::shutdown`] returns a [`SavedState`] from
//! which [`DhtBuilder::state`] rejoins without the routers.
//!
//! # Mainline: BEP 44 items
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kadmos::Result<()> {
//! use kadmos::{ItemSigner, Seq, Testnet};
//!
//! let testnet = Testnet::new(8).await?;
//! let (writer, reader) = (&testnet.nodes[1], &testnet.nodes[6]);
//!
//! // Immutable: addressed by the SHA-1 of the (bencoded) value.
//! let put = writer.put_immutable(b"Hello World!").await?;
//! assert_eq!(reader.get_immutable(put.target).await?, b"12:Hello World!");
//!
//! // Mutable: signed with an ed25519 key, addressed by the key (and a salt).
//! let signer = ItemSigner::from_seed([7; 32]);
//! writer.put_mutable(&signer, b"salt", b"3:one".to_vec(), Seq::Next, None).await?;
//! let versions = reader.get_mutable(signer.public_key(), b"salt", None).await?;
//! let newest = versions.most_recent().await.expect("found");
//! assert_eq!((newest.seq, newest.value), (1, b"3:one".to_vec()));
//! # Ok(()) }
//! ```
//!
//! # OpenDHT: put, get, listen
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kadmos::Result<()> {
//! use kadmos::opendht::{PutOptions, Testnet};
//! use kadmos::Id;
//!
//! let testnet = Testnet::new(6).await?;
//! // On the public network: `kadmos::OpenDht::builder().build().await?`.
//! let (alice, bob) = (&testnet.nodes[1], &testnet.nodes[4]);
//! let key = Id::of_str("my key"); // OpenDHT's InfoHash::get("my key")
//!
//! let mut changes = bob.listen(key).await?; // subscribed until `changes` is dropped
//! let put = alice.put(key, "hello", PutOptions::default()).await?;
//! let change = changes.next().await.expect("the put is pushed to the listener");
//! assert_eq!(change.value.id, put.value_id);
//! assert_eq!(change.value.data, b"hello");
//!
//! let values = bob.get(key).await?.collect_values().await;
//! assert!(values.iter().any(|v| v.id == put.value_id));
//! # Ok(()) }
//! ```
//!
//! # Without an async runtime
//!
//! [`blocking::Dht`] and [`blocking::OpenDht`] run a node on a runtime of their own: every call
//! blocks until its answer and streams become iterators.
//!
//! ```
//! # fn main() -> kadmos::Result<()> {
//! use kadmos::{blocking, Testnet};
//!
//! # let runtime = tokio::runtime::Runtime::new()?; // the testnet's nodes run on it
//! # let testnet = runtime.block_on(Testnet::new(8))?;
//! // On the public network: `blocking::Dht::start(kadmos::Dht::builder())?`.
//! let builder = Testnet::node_builder().bootstrap(testnet.bootstrap_addrs());
//! let dht = blocking::Dht::start(builder)?;
//! let put = dht.put_immutable(b"no runtime needed")?;
//! assert_eq!(dht.get_immutable(put.target)?, b"17:no runtime needed");
//!
//! let info_hash = "e5f96f6f38320f0f33959cb4d3d656452117aadb".parse().unwrap();
//! for batch in dht.get_peers(info_hash)? {
//!     println!("{} knows {:?}", batch.from.addr, batch.peers);
//! }
//! # Ok(()) }
//! ```
//!
//! # Where to go next
//!
//! - The programs in `crates/kadmos/examples/` (a node, `get_peers`, BEP 44, OpenDHT put and
//!   listen, the blocking API): `cargo run -p kadmos --example node`.
//! - [`DhtBuilder`] and [`opendht::OpenDhtBuilder`]: addresses, ports, saved state, limits.
//! - [`opendht`]: the OpenDHT network (signed and encrypted values, value lifetimes), under a
//!   namespace of its own because its builder, testnet and saved state mirror Mainline's.
//! - [`blocking`]: the same APIs for code without an async runtime, under a namespace of its
//!   own because its handles carry the same names as the async ones.

#![warn(missing_docs, unreachable_pub)]

mod batch_io;
pub mod blocking;
mod builder;
mod dht;
mod driver;
mod endpoint;
mod error;
mod node_task;
pub mod opendht;
mod ports;
mod quests;
mod state;
mod storage;
mod testnet;
mod types;

pub use builder::{DhtBuilder, DEFAULT_BOOTSTRAP};
pub use dht::{Dht, PeerStream};
pub use error::{Error, QueryError, Result};
pub use kadmos_proto::kad::LookupConfig;
pub use kadmos_proto::mainline::{
    AdaptiveReadOnly, ImmutableItem, Item, ItemError, ItemSigner, MutableItem, NodeIdSecurity, PeerStoreConfig,
    QuestConfig, QuestError, Rate, RateLimits,
};
pub use kadmos_proto::{Id, InfoHash, NodeId};
pub use opendht::{OpenDht, OpenDhtBuilder};
pub use ports::{ParsePortSpecError, PortSpec};
pub use quests::{Advertisement, AdvertisementInfo, PeerWatch, Renewal, WatchEvent, WatchInfo};
pub use state::{SavedAdvertisement, SavedContact, SavedItem, SavedState, SavedWatch, SavedWatchedPeer};
pub use storage::{FoundMutableItem, MutableItemStream, PutResult, Seq};
pub use testnet::Testnet;
pub use types::{
    AddressFamily, AnnounceResult, BucketDump, ContactCounts, ContactDump, ContactStatus, ErrorCodeCount, FamilyTable,
    Info, MethodTraffic, NodeInfo, PeerBatch, RemoteError, RoutingTableDump, Samples, Traffic,
};
