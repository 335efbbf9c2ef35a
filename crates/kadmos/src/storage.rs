//! BEP 44 storage through a [`Dht`]: immutable items addressed by their hash, and signed
//! mutable items. Items a user puts are kept alive (re-put every hour, before the 2-hour
//! expiry) until [`Dht::cancel_keep_alive`].

use kadmos_proto::mainline::{ImmutableItem, Item, ItemQuery, ItemSigner, MutableItem};
use std::pin::Pin;
use std::task::{Context, Poll};

use kadmos_proto::Id;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::dht::Dht;
use crate::driver::Command;
use crate::error::{Error, Result};
use crate::types::{FoundItem, NodeInfo, RemoteError, StoreReport};

/// Which sequence number a mutable put uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seq {
    /// One more than the highest seq found on the network (1 if none).
    Next,
    /// Exactly this one.
    Exact(i64),
}

/// The result of a put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PutResult {
    /// The item's target: the SHA-1 of its value (immutable) or of its key and salt (mutable).
    #[serde(serialize_with = "hex_id")]
    pub target: Id,
    /// The seq of a mutable item.
    pub seq: Option<i64>,
    /// Nodes that stored the item.
    pub stored_at: Vec<NodeInfo>,
    /// Errors some nodes answered while others stored the item.
    pub errors: Vec<RemoteError>,
}

fn hex_id<S: serde::Serializer>(id: &Id, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A version of a mutable item as one node returned it, its signature checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundMutableItem {
    /// The node that returned it.
    pub from: NodeInfo,
    /// The item: its value, sequence number and signature.
    pub item: MutableItem,
}

/// The versions of a mutable item as nodes return them (each version once), from
/// [`Dht::get_mutable`].
pub struct MutableItemStream {
    rx: mpsc::UnboundedReceiver<FoundItem>,
}

impl MutableItemStream {
    /// The next version, or `None` when the lookup is over.
    pub async fn next(&mut self) -> Option<FoundMutableItem> {
        std::future::poll_fn(|cx| self.poll_version(cx)).await
    }

    /// The next version, blocking the thread (for the blocking API; never call it inside an
    /// async runtime).
    pub(crate) fn blocking_next(&mut self) -> Option<FoundMutableItem> {
        loop {
            if let Some(found) = mutable(self.rx.blocking_recv()?) {
                return Some(found);
            }
        }
    }

    /// Waits for the lookup to end and returns the version with the highest seq.
    pub async fn most_recent(mut self) -> Option<MutableItem> {
        let mut best: Option<MutableItem> = None;
        while let Some(found) = self.next().await {
            if best.as_ref().is_none_or(|b| found.item.seq > b.seq) {
                best = Some(found.item);
            }
        }
        best
    }

    fn poll_version(&mut self, cx: &mut Context<'_>) -> Poll<Option<FoundMutableItem>> {
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(found)) => {
                    if let Some(found) = mutable(found) {
                        return Poll::Ready(Some(found));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_core::Stream for MutableItemStream {
    type Item = FoundMutableItem;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FoundMutableItem>> {
        self.poll_version(cx)
    }
}

/// The mutable item a node returned; `None` for an immutable one, which a mutable query never
/// yields (the core node checks each item against the query's key and salt).
fn mutable(found: FoundItem) -> Option<FoundMutableItem> {
    match found.item {
        Item::Mutable(item) => Some(FoundMutableItem { from: found.from, item }),
        Item::Immutable(_) => None,
    }
}

/// Turns a put that no node accepted into the error the nodes gave, typed.
fn refused(report: &StoreReport) -> Error {
    let Some(first) = report.errors.first() else {
        return Error::Query(kadmos_proto::mainline::QueryError::NoContacts);
    };
    let message = first.message.clone();
    match first.code {
        301 => Error::CasMismatch(message),
        302 => Error::SeqTooLow(message),
        206 => Error::InvalidSignature(message),
        code => Error::PutRefused { code, message },
    }
}

impl Dht {
    async fn put_item(&self, item: Item, cas: Option<i64>) -> Result<StoreReport> {
        self.bootstrapped().await?;
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::PutItem(item.clone(), cas, tx)).await.map_err(|_| Error::Shutdown)?;
        let report = rx.await.map_err(|_| Error::Shutdown)??;
        // A put most nodes refused has failed, even if a node that held no copy accepted it:
        // a CAS or seq refusal means the caller's view of the item is stale.
        if report.stored_at.is_empty() || report.errors.len() > report.stored_at.len() {
            return Err(refused(&report));
        }
        // Only a version the network accepted is kept alive: re-putting a refused one later
        // (without its CAS) would apply an update the network rejected.
        if self.keep_alive_puts {
            self.commands.send(Command::KeepAlive(item)).await.map_err(|_| Error::Shutdown)?;
        }
        Ok(report)
    }

    /// Stores `value` (any bytes, stored as a bencoded string) as an immutable item; returns
    /// its target, the SHA-1 of the bencoded value.
    pub async fn put_immutable(&self, value: &[u8]) -> Result<PutResult> {
        let item = ImmutableItem::from_bytes(value).map_err(Error::InvalidItem)?;
        self.put_immutable_bencoded(item.value).await
    }

    /// Stores an already bencoded value (a list, a dict, an integer…) as an immutable item.
    pub async fn put_immutable_bencoded(&self, bencoded: Vec<u8>) -> Result<PutResult> {
        let item = ImmutableItem::new(bencoded).map_err(Error::InvalidItem)?;
        let target = item.target();
        let report = self.put_item(Item::Immutable(item), None).await?;
        Ok(PutResult { target, seq: None, stored_at: report.stored_at, errors: report.errors })
    }

    /// Fetches an immutable item; the value returned (bencoded) has been checked against the
    /// target hash. `Error::NotFound` if no node has it.
    pub async fn get_immutable(&self, target: Id) -> Result<Vec<u8>> {
        let mut items = self.get_items(ItemQuery::Immutable(target), true).await?;
        match items.recv().await {
            Some(found) => Ok(found.item.value().to_vec()),
            None => Err(Error::NotFound),
        }
    }

    /// Signs and stores a mutable item. With [`Seq::Next`] (or a `cas`) the current seq is
    /// learned from the network first. Nodes refusing the put surface as typed errors:
    /// [`Error::CasMismatch`], [`Error::SeqTooLow`], [`Error::InvalidSignature`].
    pub async fn put_mutable(
        &self,
        signer: &ItemSigner,
        salt: &[u8],
        value: Vec<u8>,
        seq: Seq,
        cas: Option<i64>,
    ) -> Result<PutResult> {
        let seq = match seq {
            Seq::Exact(seq) => seq,
            Seq::Next => {
                let current = self.get_mutable(signer.public_key(), salt, None).await?.most_recent().await;
                current.map_or(1, |m| m.seq + 1)
            }
        };
        let item = MutableItem::sign(signer, salt, seq, value).map_err(Error::InvalidItem)?;
        let target = item.target();
        let report = self.put_item(Item::Mutable(item), cas).await?;
        Ok(PutResult { target, seq: Some(seq), stored_at: report.stored_at, errors: report.errors })
    }

    /// Stores a mutable item signed elsewhere (a gateway's client signs its own items): its
    /// signature is checked here first ([`Error::InvalidItem`] if it does not verify).
    pub async fn put_signed_mutable(&self, item: MutableItem, cas: Option<i64>) -> Result<PutResult> {
        item.verify().map_err(Error::InvalidItem)?;
        let (target, seq) = (item.target(), item.seq);
        let report = self.put_item(Item::Mutable(item), cas).await?;
        Ok(PutResult { target, seq: Some(seq), stored_at: report.stored_at, errors: report.errors })
    }

    /// Streams verified versions of a mutable item (each once); nodes omit values whose seq
    /// is not above `newer_than`. [`MutableItemStream::most_recent`] resolves to the newest.
    pub async fn get_mutable(
        &self,
        public_key: [u8; 32],
        salt: &[u8],
        newer_than: Option<i64>,
    ) -> Result<MutableItemStream> {
        let query = ItemQuery::Mutable { public_key, salt: salt.to_vec(), newer_than };
        Ok(MutableItemStream { rx: self.get_items(query, false).await? })
    }

    /// Starts a BEP 44 get; the items come on the receiver as nodes return them.
    async fn get_items(&self, query: ItemQuery, first_only: bool) -> Result<mpsc::UnboundedReceiver<FoundItem>> {
        self.bootstrapped().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands.send(Command::GetItem(query, first_only, tx)).await.map_err(|_| Error::Shutdown)?;
        Ok(rx)
    }

    /// Stops re-putting the item with this target. Returns whether it was being kept alive.
    pub async fn cancel_keep_alive(&self, target: Id) -> Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::CancelKeepAlive(target, tx)).await.map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }
}
