//! The async handle to a running node.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use kadmos_proto::{InfoHash, NodeId};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::Command;
use crate::error::{Error, Result};
use crate::state::SavedState;
use crate::types::*;

/// A handle to a running Mainline DHT node. Cheap to clone; the node stops when
/// [`Dht::shutdown`] is called or every handle is dropped.
///
/// Start one with [`Dht::builder`]. Its calls: lookups ([`Dht::get_peers`],
/// [`Dht::find_node`]), announces ([`Dht::announce_peer`] once, [`Dht::advertise`] for as long
/// as the handle lives), [`Dht::watch`] for new peers, BEP 44 storage
/// ([`Dht::put_immutable`], [`Dht::put_mutable`] and their gets; items put are re-put every hour,
/// before their 2-hour expiry, until [`Dht::cancel_keep_alive`]), and the node's own state
/// ([`Dht::info`], [`Dht::routing_table`], [`Dht::save_state`]).
#[derive(Clone)]
pub struct Dht {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) bootstrapped: watch::Receiver<bool>,
    pub(crate) local_addrs: Vec<SocketAddr>,
    pub(crate) node_id: NodeId,
    /// Whether items put through this handle are kept alive (see [`Dht::cancel_keep_alive`]).
    pub(crate) keep_alive_puts: bool,
}

impl Dht {
    /// A builder with default settings (see [`crate::DhtBuilder`]).
    pub fn builder() -> crate::DhtBuilder {
        crate::DhtBuilder::default()
    }

    /// The ID the node started with. BEP 42 can give a node a new ID once it learns its
    /// external address; [`Dht::info`] has the current one.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// A handle to the same node whose BEP 44 puts are not kept alive (for a gateway: its
    /// clients republish their own items, and keeping every client's item alive would grow
    /// without bound).
    pub fn without_keep_alive(&self) -> Dht {
        Dht { keep_alive_puts: false, ..self.clone() }
    }

    /// The addresses the node's sockets are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound IPv4 address, if any.
    pub fn local_addr_v4(&self) -> Option<SocketAddr> {
        self.local_addrs.iter().copied().find(SocketAddr::is_ipv4)
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Waits until the initial bootstrap is over (successful or not). Lookups wait for this
    /// themselves; call it to know when the node has joined.
    pub async fn bootstrapped(&self) -> Result<()> {
        let mut rx = self.bootstrapped.clone();
        rx.wait_for(|done| *done).await.map_err(|_| Error::Shutdown)?;
        Ok(())
    }

    /// Joins (again) through the given routers, in the background. On a node with no
    /// contacts, operations issued after this returns wait for that join to end.
    pub async fn bootstrap(&self, routers: Vec<SocketAddr>) -> Result<()> {
        self.call(|started| Command::Bootstrap(routers, Vec::new(), started)).await
    }

    /// Pings a node and returns its ID.
    pub async fn ping(&self, addr: SocketAddr) -> Result<NodeInfo> {
        if !self.local_addrs.iter().any(|a| a.is_ipv4() == addr.is_ipv4()) {
            return Err(Error::FamilyUnavailable(addr));
        }
        Ok(self.call(|tx| Command::Ping(addr, tx)).await??)
    }

    /// The closest nodes to `target` that answered an iterative `find_node`, closest first.
    pub async fn find_node(&self, target: NodeId) -> Result<Vec<NodeInfo>> {
        self.bootstrapped().await?;
        Ok(self.call(|tx| Command::FindNode(target, tx)).await??)
    }

    /// Looks up peers of a torrent. The stream yields each batch of new peers as a node sends
    /// it and ends when the lookup is over. Dropping the stream stops the lookup.
    pub async fn get_peers(&self, info_hash: InfoHash) -> Result<PeerStream> {
        self.bootstrapped().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands.send(Command::GetPeers(info_hash, tx)).await.map_err(|_| Error::Shutdown)?;
        Ok(PeerStream { rx })
    }

    /// Announces that we are a peer of `info_hash` on `port` (`None`: the port we send from,
    /// via `implied_port`). Returns the nodes that stored the announce.
    pub async fn announce_peer(&self, info_hash: InfoHash, port: Option<u16>) -> Result<AnnounceResult> {
        self.bootstrapped().await?;
        Ok(self.call(|tx| Command::Announce(info_hash, port, tx)).await??)
    }

    /// BEP 51: asks one node for a sample of the infohashes it stores.
    pub async fn sample_infohashes(&self, addr: SocketAddr, target: NodeId) -> Result<Samples> {
        Ok(self.call(|tx| Command::Samples(addr, target, tx)).await??)
    }

    /// A snapshot of both routing tables.
    pub async fn routing_table(&self) -> Result<RoutingTableDump> {
        self.call(Command::RoutingTable).await
    }

    /// Counters and sizes.
    pub async fn info(&self) -> Result<Info> {
        self.call(Command::Info).await
    }

    /// The node's ID and contacts, to restore with [`crate::DhtBuilder::state`].
    pub async fn save_state(&self) -> Result<SavedState> {
        self.call(Command::SaveState).await
    }

    /// Stops the node and returns its final state.
    pub async fn shutdown(&self) -> Result<SavedState> {
        self.call(Command::Shutdown).await
    }
}

/// Batches of peers from a `get_peers` lookup, as they arrive.
pub struct PeerStream {
    rx: mpsc::UnboundedReceiver<PeerBatch>,
}

impl PeerStream {
    /// The next batch, or `None` when the lookup is over.
    pub async fn next(&mut self) -> Option<PeerBatch> {
        self.rx.recv().await
    }

    /// Waits for the lookup to end and returns every peer found, without duplicates.
    pub async fn collect_peers(mut self) -> Vec<SocketAddr> {
        let mut all = Vec::new();
        while let Some(batch) = self.next().await {
            for peer in batch.peers {
                if !all.contains(&peer) {
                    all.push(peer);
                }
            }
        }
        all
    }

    pub(crate) fn blocking_next(&mut self) -> Option<PeerBatch> {
        self.rx.blocking_recv()
    }
}

impl futures_core::Stream for PeerStream {
    type Item = PeerBatch;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerBatch>> {
        self.rx.poll_recv(cx)
    }
}
