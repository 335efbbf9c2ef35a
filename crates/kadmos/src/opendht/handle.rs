//! The async handle to a running OpenDHT node, and the streams of its gets and listens.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use kadmos_proto::opendht::crypto::{self, OwnerKey, PublicKey};
use kadmos_proto::opendht::{QueryId, Value, ValueId};
use kadmos_proto::{Id, NodeId};
use tokio::sync::{mpsc, oneshot, watch};

use super::builder::OpenDhtBuilder;
use super::driver::Command;
use super::state::OpenDhtState;
use super::{Filter, ListenEvent, OpenDhtInfo, PutOptions, PutReport};
use crate::error::{Error, QueryError, Result};
use crate::types::NodeInfo;

/// A handle to a running OpenDHT node. Cheap to clone; the node stops when
/// [`OpenDht::shutdown`] is called, or when every handle and every [`ListenStream`] is dropped.
#[derive(Clone)]
pub struct OpenDht {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) bootstrapped: watch::Receiver<bool>,
    pub(crate) local_addrs: Vec<SocketAddr>,
    pub(crate) node_id: NodeId,
}

impl OpenDht {
    /// A builder with default settings (see [`OpenDhtBuilder`]).
    pub fn builder() -> OpenDhtBuilder {
        OpenDhtBuilder::default()
    }

    /// The node's ID.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The addresses the node's sockets are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound IPv4 address, if any.
    pub fn local_addr_v4(&self) -> Option<SocketAddr> {
        self.local_addrs.iter().copied().find(SocketAddr::is_ipv4)
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| Error::Shutdown)
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Waits until the initial bootstrap is over (successful or not). Commands that search
    /// the network wait for this themselves.
    pub async fn bootstrapped(&self) -> Result<()> {
        let mut rx = self.bootstrapped.clone();
        rx.wait_for(|done| *done).await.map_err(|_| Error::Shutdown)?;
        Ok(())
    }

    /// Joins (again) through these nodes, in the background. On a node with no contacts,
    /// operations issued after this returns wait for that join to end (as OpenDHT's searches
    /// wait for nodes).
    pub async fn bootstrap(&self, nodes: Vec<SocketAddr>) -> Result<()> {
        self.call(|started| Command::Bootstrap(nodes, Vec::new(), started)).await
    }

    /// Pings a node and returns its ID.
    pub async fn ping(&self, addr: SocketAddr) -> Result<NodeInfo> {
        if !self.local_addrs.iter().any(|a| a.is_ipv4() == addr.is_ipv4()) {
            return Err(Error::FamilyUnavailable(addr));
        }
        self.call(|tx| Command::Ping(addr, tx)).await?.map_err(Error::Query)
    }

    /// The closest nodes to `target` that answered a search, closest first.
    pub async fn find_node(&self, target: Id) -> Result<Vec<NodeInfo>> {
        self.bootstrapped().await?;
        self.call(|tx| Command::FindNode(target, tx)).await?.map_err(Error::Query)
    }

    /// Puts `data` at `key` as a value described by `options` (type, user type, id,
    /// permanence). See [`OpenDht::put_value`].
    pub async fn put(&self, key: Id, data: impl Into<Vec<u8>>, options: PutOptions) -> Result<PutReport> {
        self.put_value(key, options.value(data), options.permanent).await
    }

    /// Puts `value` as given (a value id of 0 is replaced by a random one): stores it here,
    /// then at the nodes closest to `key`. A `permanent` value is refreshed before it expires
    /// until [`OpenDht::cancel_put`]. Succeeds when at least one node stored the value;
    /// otherwise the error is the first refusal a node answered, or
    /// [`QueryError::NoContacts`], and a permanent put is cancelled.
    pub async fn put_value(&self, key: Id, mut value: Value, permanent: bool) -> Result<PutReport> {
        self.bootstrapped().await?;
        if value.id == 0 {
            value.id = rand::random::<u64>().max(1);
        }
        let value_id = value.id;
        let error = match self.call(|tx| Command::Put(key, value, permanent, tx)).await? {
            Ok((_, stored_here, stored_at, errors)) if !stored_at.is_empty() => {
                return Ok(PutReport { key, value_id, stored_here, stored_at, errors });
            }
            Ok((_, _, _, errors)) => match errors.into_iter().next() {
                Some(e) => Error::PutRefused { code: e.code, message: e.message },
                None => Error::Query(QueryError::NoContacts),
            },
            Err(e) => Error::Query(e),
        };
        if permanent {
            self.cancel_put(key, value_id).await?;
        }
        Err(error)
    }

    /// Puts `data` signed by `owner`, as OpenDHT's `putSigned` does: only `owner` can then
    /// replace it, and only with a higher `seq`. With an [`PutOptions::id`] this first gets
    /// the network's values of that id and owner and puts the next `seq` (an edit); without
    /// one, the value gets a random id and `seq` 0.
    pub async fn put_signed(
        &self,
        key: Id,
        data: impl Into<Vec<u8>>,
        options: PutOptions,
        owner: &OwnerKey,
    ) -> Result<PutReport> {
        let mut value = options.value(data);
        if let Some(id) = options.id {
            value.seq = self.next_seq(key, id, owner).await?;
        }
        crypto::sign_value(owner, &mut value)?;
        self.put_value(key, value, options.permanent).await
    }

    /// The `seq` that edits value `id` of `owner` at `key`: one more than the highest found
    /// (0 if none is found). Storing nodes acknowledge an edit they decline (OpenDHT does the
    /// same), so the cases they would decline are refused here, where the user can hear it.
    async fn next_seq(&self, key: Id, id: ValueId, owner: &OwnerKey) -> Result<u16> {
        let found = self.get_filtered(key, Filter::default().id(id)).await?.collect_values().await;
        let refuse = |reason: String| Err(Error::CannotReplace { value_id: id, reason });
        if let Some(other) = found.iter().find(|v| v.owner_id() != Some(owner.id())) {
            return match other.owner_id() {
                Some(them) => refuse(format!("it is signed by {them}; only its owner can replace it")),
                None if other.is_encrypted() => refuse("an encrypted value holds this id".into()),
                None => refuse("an unsigned value holds this id".into()),
            };
        }
        match found.iter().map(|v| v.seq).max() {
            None => Ok(0),
            Some(u16::MAX) => refuse(format!("it already has the highest sequence number ({})", u16::MAX)),
            Some(seq) => Ok(seq + 1),
        }
    }

    /// Puts `data` encrypted to `recipient`, as OpenDHT's `putEncrypted` does: the value is
    /// addressed to the recipient's key id and signed by `sender` inside the encryption, so
    /// storing nodes see only the cypher and the recipient learns who wrote it
    /// ([`crypto::decrypt_value`] checks both).
    pub async fn put_encrypted(
        &self,
        key: Id,
        data: impl Into<Vec<u8>>,
        options: PutOptions,
        sender: &OwnerKey,
        recipient: &PublicKey,
    ) -> Result<PutReport> {
        let mut value = options.value(data);
        if value.id == 0 {
            value.id = rand::random::<u64>().max(1);
        }
        let sealed = crypto::encrypt_value(sender, &value, recipient, &mut rand::rngs::OsRng)?;
        self.put_value(key, sealed, options.permanent).await
    }

    /// Stops keeping a permanent value alive and removes this node's copy (other nodes keep
    /// theirs until it expires). Returns whether the value was being kept alive.
    pub async fn cancel_put(&self, key: Id, value_id: ValueId) -> Result<bool> {
        self.call(|tx| Command::CancelPut(key, value_id, tx)).await
    }

    /// Gets every value stored at `key`: this node's first, then as nodes answer (each value
    /// once, again if it changes). The stream ends when the search is over; dropping it stops
    /// the search.
    pub async fn get(&self, key: Id) -> Result<ValueStream> {
        self.get_filtered(key, Filter::default()).await
    }

    /// Gets the values at `key` that pass `filter`.
    pub async fn get_filtered(&self, key: Id, filter: Filter) -> Result<ValueStream> {
        self.bootstrapped().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(Command::Get(key, filter.to_query(), tx)).await?;
        Ok(ValueStream { rx })
    }

    /// Listens to `key`: the stream yields every value stored there now, then each new or
    /// edited value and each value gone (`expired`), as storing nodes push them. It stays
    /// subscribed (renewing, and searching again as nodes come and go) until dropped.
    pub async fn listen(&self, key: Id) -> Result<ListenStream> {
        self.listen_filtered(key, Filter::default()).await
    }

    /// Listens to the values at `key` that pass `filter`.
    pub async fn listen_filtered(&self, key: Id, filter: Filter) -> Result<ListenStream> {
        self.bootstrapped().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.call(|id| Command::Listen(key, filter.to_query(), tx, id)).await?;
        Ok(ListenStream { rx, id, commands: self.commands.clone() })
    }

    /// Counters and sizes.
    pub async fn info(&self) -> Result<OpenDhtInfo> {
        self.call(Command::Info).await
    }

    /// A snapshot of both routing tables (the same form as Mainline's).
    pub async fn routing_table(&self) -> Result<crate::RoutingTableDump> {
        self.call(Command::RoutingTable).await
    }

    /// The node's ID and contacts, to restore with [`OpenDhtBuilder::state`].
    pub async fn save_state(&self) -> Result<OpenDhtState> {
        self.call(Command::SaveState).await
    }

    /// Stops the node and returns its final state.
    pub async fn shutdown(&self) -> Result<OpenDhtState> {
        self.call(Command::Shutdown).await
    }
}

/// The values a get finds, as they arrive.
pub struct ValueStream {
    rx: mpsc::UnboundedReceiver<Value>,
}

impl ValueStream {
    /// The next value, or `None` when the search is over.
    pub async fn next(&mut self) -> Option<Value> {
        self.rx.recv().await
    }

    /// The next value, blocking the thread (for the blocking API; never call it inside an
    /// async runtime).
    pub(crate) fn blocking_next(&mut self) -> Option<Value> {
        self.rx.blocking_recv()
    }

    /// Waits for the search to end and returns every value found (the latest version of each).
    pub async fn collect_values(mut self) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        while let Some(value) = self.next().await {
            match all.iter_mut().find(|v| v.id == value.id) {
                Some(old) => *old = value,
                None => all.push(value),
            }
        }
        all
    }
}

impl futures_core::Stream for ValueStream {
    type Item = Value;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        self.rx.poll_recv(cx)
    }
}

/// The changes a listen reports, until dropped (dropping it cancels the listen).
pub struct ListenStream {
    rx: mpsc::UnboundedReceiver<ListenEvent>,
    id: QueryId,
    commands: mpsc::Sender<Command>,
}

impl ListenStream {
    /// The next change; `None` only once the node has shut down.
    pub async fn next(&mut self) -> Option<ListenEvent> {
        self.rx.recv().await
    }

    /// The next change, blocking the thread (for the blocking API; never call it inside an
    /// async runtime).
    pub(crate) fn blocking_next(&mut self) -> Option<ListenEvent> {
        self.rx.blocking_recv()
    }
}

impl futures_core::Stream for ListenStream {
    type Item = ListenEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ListenEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for ListenStream {
    fn drop(&mut self) {
        // If the queue is full the node notices the closed stream at its next timer instead.
        let _ = self.commands.try_send(Command::CancelListen(self.id));
    }
}
