//! The [`Dht`](crate::Dht) API for code without an async runtime: each call blocks until
//! its answer. The node runs on a small runtime owned by the handle.

use std::net::SocketAddr;

use kadmos_proto::{InfoHash, NodeId};

use crate::builder::DhtBuilder;
use crate::error::Result;
use crate::state::SavedState;
use crate::types::*;

/// A blocking handle to a node. Dropping it stops the node.
pub struct Dht {
    runtime: tokio::runtime::Runtime,
    inner: crate::Dht,
}

impl Dht {
    /// Starts a node from a builder on a runtime of its own.
    pub fn start(builder: DhtBuilder) -> Result<Dht> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let inner = runtime.block_on(builder.build())?;
        Ok(Dht { runtime, inner })
    }

    /// The async handle, for code that mixes both styles.
    pub fn as_async(&self) -> &crate::Dht {
        &self.inner
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id()
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner.local_addrs()
    }

    pub fn bootstrapped(&self) -> Result<()> {
        self.runtime.block_on(self.inner.bootstrapped())
    }

    pub fn ping(&self, addr: SocketAddr) -> Result<NodeInfo> {
        self.runtime.block_on(self.inner.ping(addr))
    }

    pub fn find_node(&self, target: NodeId) -> Result<Vec<NodeInfo>> {
        self.runtime.block_on(self.inner.find_node(target))
    }

    /// An iterator over batches of peers as they are found.
    pub fn get_peers(&self, info_hash: InfoHash) -> Result<impl Iterator<Item = PeerBatch>> {
        let mut stream = self.runtime.block_on(self.inner.get_peers(info_hash))?;
        Ok(std::iter::from_fn(move || stream.blocking_next()))
    }

    pub fn announce_peer(&self, info_hash: InfoHash, port: Option<u16>) -> Result<AnnounceResult> {
        self.runtime.block_on(self.inner.announce_peer(info_hash, port))
    }

    pub fn routing_table(&self) -> Result<RoutingTableDump> {
        self.runtime.block_on(self.inner.routing_table())
    }

    pub fn info(&self) -> Result<Info> {
        self.runtime.block_on(self.inner.info())
    }

    pub fn save_state(&self) -> Result<SavedState> {
        self.runtime.block_on(self.inner.save_state())
    }

    pub fn shutdown(self) -> Result<SavedState> {
        self.runtime.block_on(self.inner.shutdown())
    }
}
