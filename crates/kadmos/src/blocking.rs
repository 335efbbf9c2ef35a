//! The [`Dht`](crate::Dht) and [`OpenDht`](crate::OpenDht) APIs for code without an async
//! runtime: each call blocks until its answer, and streams become iterators. The node runs on a
//! small runtime owned by the handle. Never call these from inside an async runtime.

use std::net::SocketAddr;

use kadmos_proto::mainline::MutableItem;
use kadmos_proto::{Id, InfoHash, NodeId};

use crate::builder::DhtBuilder;
use crate::error::Result;
use crate::opendht::{
    Filter, ListenEvent, OpenDhtBuilder, OpenDhtInfo, OpenDhtState, OwnerKey, PublicKey, PutOptions, PutReport, Value,
    ValueId,
};
use crate::quests::{Renewal, WatchEvent};
use crate::state::SavedState;
use crate::storage::{FoundMutableItem, PutResult, Seq};
use crate::types::*;
use kadmos_proto::mainline::ItemSigner;

/// A runtime for one node: one worker thread, timers and I/O.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}

/// A blocking handle to a node. Dropping it stops the node.
pub struct Dht {
    runtime: tokio::runtime::Runtime,
    inner: crate::Dht,
}

impl Dht {
    /// Starts a node from a builder on a runtime of its own.
    pub fn start(builder: DhtBuilder) -> Result<Dht> {
        let runtime = runtime()?;
        let inner = runtime.block_on(builder.build())?;
        Ok(Dht { runtime, inner })
    }

    /// The async handle, for code that mixes both styles.
    pub fn as_async(&self) -> &crate::Dht {
        &self.inner
    }

    /// See [`crate::Dht::node_id`].
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id()
    }

    /// See [`crate::Dht::local_addrs`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner.local_addrs()
    }

    /// See [`crate::Dht::bootstrapped`].
    pub fn bootstrapped(&self) -> Result<()> {
        self.runtime.block_on(self.inner.bootstrapped())
    }

    /// See [`crate::Dht::ping`].
    pub fn ping(&self, addr: SocketAddr) -> Result<NodeInfo> {
        self.runtime.block_on(self.inner.ping(addr))
    }

    /// See [`crate::Dht::find_node`].
    pub fn find_node(&self, target: NodeId) -> Result<Vec<NodeInfo>> {
        self.runtime.block_on(self.inner.find_node(target))
    }

    /// An iterator over batches of peers as they are found.
    pub fn get_peers(&self, info_hash: InfoHash) -> Result<impl Iterator<Item = PeerBatch>> {
        let mut stream = self.runtime.block_on(self.inner.get_peers(info_hash))?;
        Ok(std::iter::from_fn(move || stream.blocking_next()))
    }

    /// See [`crate::Dht::announce_peer`].
    pub fn announce_peer(&self, info_hash: InfoHash, port: Option<u16>) -> Result<AnnounceResult> {
        self.runtime.block_on(self.inner.announce_peer(info_hash, port))
    }

    /// BEP 44: see [`crate::Dht::put_immutable`].
    pub fn put_immutable(&self, value: &[u8]) -> Result<PutResult> {
        self.runtime.block_on(self.inner.put_immutable(value))
    }

    /// BEP 44: see [`crate::Dht::get_immutable`].
    pub fn get_immutable(&self, target: Id) -> Result<Vec<u8>> {
        self.runtime.block_on(self.inner.get_immutable(target))
    }

    /// BEP 44: see [`crate::Dht::put_mutable`].
    pub fn put_mutable(
        &self,
        signer: &ItemSigner,
        salt: &[u8],
        value: Vec<u8>,
        seq: Seq,
        cas: Option<i64>,
    ) -> Result<PutResult> {
        self.runtime.block_on(self.inner.put_mutable(signer, salt, value, seq, cas))
    }

    /// BEP 44: the verified versions of a mutable item as nodes return them.
    pub fn get_mutable(
        &self,
        public_key: [u8; 32],
        salt: &[u8],
        newer_than: Option<i64>,
    ) -> Result<impl Iterator<Item = FoundMutableItem>> {
        let mut stream = self.runtime.block_on(self.inner.get_mutable(public_key, salt, newer_than))?;
        Ok(std::iter::from_fn(move || stream.blocking_next()))
    }

    /// BEP 44: the newest version of a mutable item, once the lookup is over.
    pub fn get_mutable_most_recent(&self, public_key: [u8; 32], salt: &[u8]) -> Result<Option<MutableItem>> {
        self.runtime.block_on(async { Ok(self.inner.get_mutable(public_key, salt, None).await?.most_recent().await) })
    }

    /// See [`crate::Dht::advertise`]: the rounds' reports as they come; dropping the iterator
    /// stops the advertisement (unless another handle of the infohash is held).
    pub fn advertise(&self, info_hash: InfoHash, port: Option<u16>) -> Result<impl Iterator<Item = Renewal>> {
        let mut advertisement = self.runtime.block_on(self.inner.advertise(info_hash, port))?;
        Ok(std::iter::from_fn(move || advertisement.blocking_next_renewal()))
    }

    /// See [`crate::Dht::watch`]: new and gone peers as they are found; dropping the iterator
    /// stops the watch.
    pub fn watch(&self, info_hash: InfoHash) -> Result<impl Iterator<Item = WatchEvent>> {
        let mut watch = self.runtime.block_on(self.inner.watch(info_hash))?;
        Ok(std::iter::from_fn(move || watch.blocking_next()))
    }

    /// See [`crate::Dht::routing_table`].
    pub fn routing_table(&self) -> Result<RoutingTableDump> {
        self.runtime.block_on(self.inner.routing_table())
    }

    /// See [`crate::Dht::info`].
    pub fn info(&self) -> Result<Info> {
        self.runtime.block_on(self.inner.info())
    }

    /// See [`crate::Dht::save_state`].
    pub fn save_state(&self) -> Result<SavedState> {
        self.runtime.block_on(self.inner.save_state())
    }

    /// Stops the node and returns its final state (see [`crate::Dht::shutdown`]).
    pub fn shutdown(self) -> Result<SavedState> {
        self.runtime.block_on(self.inner.shutdown())
    }
}

/// A blocking handle to an OpenDHT node. Dropping it stops the node.
pub struct OpenDht {
    runtime: tokio::runtime::Runtime,
    inner: crate::OpenDht,
}

impl OpenDht {
    /// Starts a node from a builder on a runtime of its own.
    pub fn start(builder: OpenDhtBuilder) -> Result<OpenDht> {
        let runtime = runtime()?;
        let inner = runtime.block_on(builder.build())?;
        Ok(OpenDht { runtime, inner })
    }

    /// The async handle, for code that mixes both styles.
    pub fn as_async(&self) -> &crate::OpenDht {
        &self.inner
    }

    /// See [`crate::OpenDht::node_id`].
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id()
    }

    /// See [`crate::OpenDht::local_addrs`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner.local_addrs()
    }

    /// See [`crate::OpenDht::bootstrapped`].
    pub fn bootstrapped(&self) -> Result<()> {
        self.runtime.block_on(self.inner.bootstrapped())
    }

    /// See [`crate::OpenDht::ping`].
    pub fn ping(&self, addr: SocketAddr) -> Result<NodeInfo> {
        self.runtime.block_on(self.inner.ping(addr))
    }

    /// See [`crate::OpenDht::find_node`].
    pub fn find_node(&self, target: Id) -> Result<Vec<NodeInfo>> {
        self.runtime.block_on(self.inner.find_node(target))
    }

    /// See [`crate::OpenDht::put`].
    pub fn put(&self, key: Id, data: impl Into<Vec<u8>>, options: PutOptions) -> Result<PutReport> {
        self.runtime.block_on(self.inner.put(key, data, options))
    }

    /// See [`crate::OpenDht::put_value`].
    pub fn put_value(&self, key: Id, value: Value, permanent: bool) -> Result<PutReport> {
        self.runtime.block_on(self.inner.put_value(key, value, permanent))
    }

    /// See [`crate::OpenDht::put_signed`].
    pub fn put_signed(
        &self,
        key: Id,
        data: impl Into<Vec<u8>>,
        options: PutOptions,
        owner: &OwnerKey,
    ) -> Result<PutReport> {
        self.runtime.block_on(self.inner.put_signed(key, data, options, owner))
    }

    /// See [`crate::OpenDht::put_encrypted`].
    pub fn put_encrypted(
        &self,
        key: Id,
        data: impl Into<Vec<u8>>,
        options: PutOptions,
        sender: &OwnerKey,
        recipient: &PublicKey,
    ) -> Result<PutReport> {
        self.runtime.block_on(self.inner.put_encrypted(key, data, options, sender, recipient))
    }

    /// See [`crate::OpenDht::cancel_put`].
    pub fn cancel_put(&self, key: Id, value_id: ValueId) -> Result<bool> {
        self.runtime.block_on(self.inner.cancel_put(key, value_id))
    }

    /// The values at `key` as they are found; the iterator ends with the search.
    pub fn get(&self, key: Id) -> Result<impl Iterator<Item = Value>> {
        self.get_filtered(key, Filter::default())
    }

    /// The values at `key` that pass `filter`, as they are found.
    pub fn get_filtered(&self, key: Id, filter: Filter) -> Result<impl Iterator<Item = Value>> {
        let mut stream = self.runtime.block_on(self.inner.get_filtered(key, filter))?;
        Ok(std::iter::from_fn(move || stream.blocking_next()))
    }

    /// The changes at `key` as they happen; each `next` blocks until one comes. Dropping the
    /// iterator cancels the listen.
    pub fn listen(&self, key: Id) -> Result<impl Iterator<Item = ListenEvent>> {
        self.listen_filtered(key, Filter::default())
    }

    /// The changes at `key` that pass `filter`; dropping the iterator cancels the listen.
    pub fn listen_filtered(&self, key: Id, filter: Filter) -> Result<impl Iterator<Item = ListenEvent>> {
        let mut stream = self.runtime.block_on(self.inner.listen_filtered(key, filter))?;
        Ok(std::iter::from_fn(move || stream.blocking_next()))
    }

    /// See [`crate::OpenDht::info`].
    pub fn info(&self) -> Result<OpenDhtInfo> {
        self.runtime.block_on(self.inner.info())
    }

    /// See [`crate::OpenDht::save_state`].
    pub fn save_state(&self) -> Result<OpenDhtState> {
        self.runtime.block_on(self.inner.save_state())
    }

    /// Stops the node and returns its final state (see [`crate::OpenDht::shutdown`]).
    pub fn shutdown(self) -> Result<OpenDhtState> {
        self.runtime.block_on(self.inner.shutdown())
    }
}
