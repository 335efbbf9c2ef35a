//! Quests through a [`Dht`]: advertising that we serve an infohash, and watching an infohash
//! for new peers, both for as long as the application wants (see
//! `kadmos_proto::mainline::quest` for the intervals and why).
//!
//! The node runs the quests; the handles here only listen to them and stop them. An
//! [`Advertisement`] stops its announces when it is cancelled or dropped (the last handle of
//! that infohash, if several were taken); a [`PeerWatch`] stops its searches when dropped.
//! Advertisements are part of the saved state: a node restored from it resumes them without a
//! handle, until [`Dht::stop_advertising`] (or a handle taken with [`Dht::advertise`] and
//! dropped).
//!
//! A watch ends with its last handle, unless the node *keeps* it ([`Dht::keep_watching`]): a
//! kept watch runs without handles until [`Dht::stop_watching`], and is part of the saved
//! state with the peers it has reported. A node restored from it resumes the watch knowing
//! those peers, so it reports only peers new to it; [`Dht::follow_watch`] hears of the peers
//! a kept watch found since this node started or resumed it, then of its events (what a
//! daemon logs), and [`Dht::watch`] joins it like any watch, hearing of all the peers it
//! knows first. Watches held only by handles are not saved:
//! after a restart nobody would hold them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use kadmos_proto::mainline::{Node, QuestError, QuestEvent};
use kadmos_proto::{InfoHash, NodeId, Timestamp};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::dht::Dht;
use crate::driver::Command;
use crate::error::{Error, Result};
use crate::state::{SavedWatch, SavedWatchedPeer};
use crate::types::NodeInfo;

/// One advertisement round, as its handle reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Renewal {
    /// Nodes that stored the announce; 0 means the round reached nobody and is retried soon.
    pub stored_at: usize,
    /// Time until the next round.
    pub next_in_secs: u64,
}

/// What a watch reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// A peer not seen before, named by the node `from`; `advertised` says whether this node
    /// advertises the infohash too.
    Found {
        /// The peer's address.
        peer: SocketAddr,
        /// The node that named it.
        from: NodeInfo,
        /// Whether this node advertises the infohash too.
        advertised: bool,
    },
    /// No search has returned this peer for the store lifetime (30 minutes).
    Gone {
        /// The peer's address.
        peer: SocketAddr,
    },
}

/// An advertisement kept running by the node (taken with [`Dht::advertise`]); the handle only
/// hears of its rounds and stops it. The announces stop when it is cancelled or dropped (the
/// last handle of that infohash, if several were taken). Advertisements are part of the saved
/// state: a node restored from it resumes them without a handle, until
/// [`Dht::stop_advertising`] (or a handle taken with [`Dht::advertise`] and dropped).
pub struct Advertisement {
    info_hash: InfoHash,
    subscriber: u64,
    commands: mpsc::Sender<Command>,
    renewals: mpsc::UnboundedReceiver<Renewal>,
    released: bool,
}

impl Advertisement {
    /// The advertised infohash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The next round's report; `None` once the advertisement was stopped (by
    /// [`Dht::stop_advertising`]) or the node shut down.
    pub async fn next_renewal(&mut self) -> Option<Renewal> {
        self.renewals.recv().await
    }

    /// The next round's report, blocking the thread (for the blocking API; never call it
    /// inside an async runtime).
    pub(crate) fn blocking_next_renewal(&mut self) -> Option<Renewal> {
        self.renewals.blocking_recv()
    }

    /// Stops the announces (unless another handle of the same infohash is still held) and
    /// waits until the node has taken note.
    pub async fn cancel(mut self) -> Result<()> {
        self.released = true;
        let (tx, rx) = oneshot::channel();
        let release = Command::ReleaseQuest(QuestKind::Advertisement, self.info_hash, self.subscriber, Some(tx));
        self.commands.send(release).await.map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if !self.released {
            release_on_drop(
                &self.commands,
                Command::ReleaseQuest(QuestKind::Advertisement, self.info_hash, self.subscriber, None),
            );
        }
    }
}

/// New peers of an infohash as the node's watch finds them (taken with [`Dht::watch`]). Dropping
/// it stops the watch (unless another `PeerWatch` of the same infohash is held).
pub struct PeerWatch {
    info_hash: InfoHash,
    subscriber: u64,
    commands: mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<WatchEvent>,
}

impl PeerWatch {
    /// The watched infohash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The next event; `None` once the node shut down.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().await
    }

    /// The next event, blocking the thread (for the blocking API).
    pub(crate) fn blocking_next(&mut self) -> Option<WatchEvent> {
        self.events.blocking_recv()
    }
}

impl futures_core::Stream for PeerWatch {
    type Item = WatchEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        release_on_drop(&self.commands, Command::ReleaseQuest(QuestKind::Watch, self.info_hash, self.subscriber, None));
    }
}

/// Sends a handle's release from `drop`, which cannot wait: at once if the command queue has
/// room, otherwise from a task on the current runtime. A closed queue means the node is gone,
/// and its quests with it.
fn release_on_drop(commands: &mpsc::Sender<Command>, release: Command) {
    if let Err(mpsc::error::TrySendError::Full(release)) = commands.try_send(release) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let commands = commands.clone();
            runtime.spawn(async move {
                let _ = commands.send(release).await;
            });
        }
    }
}

/// An advertisement the node runs, with or without a handle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdvertisementInfo {
    /// The advertised infohash.
    #[serde(serialize_with = "crate::types::hex_id")]
    pub info_hash: InfoHash,
    /// `None`: the node's own UDP port.
    pub port: Option<u16>,
    /// Announce rounds so far.
    pub rounds: u64,
    /// Nodes that stored the last round's announce.
    pub last_stored_at: usize,
    /// Seconds until the next round.
    pub next_in_secs: u64,
}

impl Dht {
    /// Advertises that we are a peer of `info_hash` on `port` (`None`: the node's UDP port,
    /// via `implied_port`): an announce now, then one every 15 minutes (less up to 10%
    /// jitter; one minute after a round that reached nobody) to the nodes closest then, until
    /// the handle is cancelled or dropped. Advertising an infohash again with another port
    /// changes the port. At most 256 advertisements per node (`Error::Quest`).
    pub async fn advertise(&self, info_hash: InfoHash, port: Option<u16>) -> Result<Advertisement> {
        let (tx, renewals) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Advertise(info_hash, port, tx, reply)).await.map_err(|_| Error::Shutdown)?;
        let subscriber = answer.await.map_err(|_| Error::Shutdown)??;
        Ok(Advertisement { info_hash, subscriber, commands: self.commands.clone(), renewals, released: false })
    }

    /// Watches `info_hash`: a search now, then every 5 minutes and at once after the node
    /// rejoins, reporting each peer not seen before and peers gone for 30 minutes. A second
    /// watch of the same infohash starts with the peers the first one knows. At most 64
    /// watched infohashes per node (`Error::Quest`).
    pub async fn watch(&self, info_hash: InfoHash) -> Result<PeerWatch> {
        let (tx, events) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Watch(info_hash, tx, reply)).await.map_err(|_| Error::Shutdown)?;
        let subscriber = answer.await.map_err(|_| Error::Shutdown)??;
        Ok(PeerWatch { info_hash, subscriber, commands: self.commands.clone(), events })
    }

    /// Stops an advertisement whatever handles exist (their renewals end); whether there was one.
    pub async fn stop_advertising(&self, info_hash: InfoHash) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::StopAdvertising(info_hash, reply)).await.map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)
    }

    /// The advertisements the node runs (restored ones included).
    pub async fn advertisements(&self) -> Result<Vec<AdvertisementInfo>> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Advertisements(reply)).await.map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)
    }
}

/// A watch the node runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchInfo {
    /// The infohash watched.
    #[serde(serialize_with = "crate::types::hex_id")]
    pub info_hash: InfoHash,
    /// Kept by the node (saved, runs without handles), or held by handles only.
    pub kept: bool,
    /// Peers it knows (has reported).
    pub peers: usize,
    /// Handles listening to it.
    pub handles: usize,
}

impl Dht {
    /// Watches `info_hash` for as long as the node runs, without a handle (or makes a running
    /// watch kept): it is saved with the peers it has reported and resumed by a node restored
    /// from the saved state, until [`Dht::stop_watching`]. Hear its events with
    /// [`Dht::follow_watch`] or [`Dht::watch`]. The same limit as [`Dht::watch`].
    pub async fn keep_watching(&self, info_hash: InfoHash) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::KeepWatching(info_hash, reply)).await.map_err(|_| Error::Shutdown)?;
        Ok(answer.await.map_err(|_| Error::Shutdown)??)
    }

    /// Stops a watch whatever its handles (their streams end); whether there was one.
    pub async fn stop_watching(&self, info_hash: InfoHash) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::StopWatching(info_hash, reply)).await.map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)
    }

    /// A handle on a kept watch (one resumed from saved state, or started with
    /// [`Dht::keep_watching`]): it hears first of the peers the watch found since this node
    /// started or resumed it (so nothing is lost between a restart and the call), then of its
    /// events; never of the peers the watch was resumed with. Dropping it leaves the watch
    /// running. `None` when the node keeps no watch of `info_hash`.
    pub async fn follow_watch(&self, info_hash: InfoHash) -> Result<Option<PeerWatch>> {
        let (tx, events) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::FollowWatch(info_hash, tx, reply)).await.map_err(|_| Error::Shutdown)?;
        let subscriber = answer.await.map_err(|_| Error::Shutdown)?;
        Ok(subscriber.map(|subscriber| PeerWatch { info_hash, subscriber, commands: self.commands.clone(), events }))
    }

    /// The watches the node runs, kept or held by handles.
    pub async fn watches(&self) -> Result<Vec<WatchInfo>> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Watches(reply)).await.map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)
    }
}

/// Which kind of quest a handle belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuestKind {
    Advertisement,
    Watch,
}

/// The handles listening to the node's quests, kept by the driver: who hears what, and when
/// the last handle of a quest goes, stopping it.
#[derive(Default)]
pub(crate) struct QuestListeners {
    next_subscriber: u64,
    advertisements: HashMap<InfoHash, Vec<(u64, mpsc::UnboundedSender<Renewal>)>>,
    watches: HashMap<InfoHash, Vec<(u64, mpsc::UnboundedSender<WatchEvent>)>>,
    /// Watches that run without handles and are saved, with the peers each was resumed with
    /// (reported before the node's restart: followers do not hear of them).
    kept: BTreeMap<InfoHash, HashSet<SocketAddr>>,
}

impl QuestListeners {
    pub(crate) fn advertise(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        info_hash: InfoHash,
        port: Option<u16>,
        renewals: mpsc::UnboundedSender<Renewal>,
    ) -> Result<u64, QuestError> {
        node.advertise(now, info_hash, port)?;
        self.next_subscriber += 1;
        self.advertisements.entry(info_hash).or_default().push((self.next_subscriber, renewals));
        Ok(self.next_subscriber)
    }

    pub(crate) fn watch(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        info_hash: InfoHash,
        events: mpsc::UnboundedSender<WatchEvent>,
    ) -> Result<u64, QuestError> {
        node.watch(now, info_hash)?;
        // A second handle of a running watch hears of the peers it already knows first.
        if let Some(quests) = node.quests() {
            let advertised = quests.is_advertised(&info_hash);
            for (peer, seen) in quests.watched_peers(&info_hash) {
                let _ = events.send(WatchEvent::Found { peer: *peer, from: seen.from.into(), advertised });
            }
        }
        self.next_subscriber += 1;
        self.watches.entry(info_hash).or_default().push((self.next_subscriber, events));
        Ok(self.next_subscriber)
    }

    /// A handle is gone; the quest stops with its last handle.
    pub(crate) fn release(&mut self, node: &mut Node, kind: QuestKind, info_hash: InfoHash, subscriber: u64) {
        match kind {
            QuestKind::Advertisement => {
                if Self::remove(&mut self.advertisements, info_hash, subscriber) {
                    node.stop_advertising(&info_hash);
                }
            }
            QuestKind::Watch => {
                if Self::remove(&mut self.watches, info_hash, subscriber) && !self.kept.contains_key(&info_hash) {
                    node.unwatch(&info_hash);
                }
            }
        }
    }

    /// Removes a subscriber; whether it was the last of its infohash.
    fn remove<T>(map: &mut HashMap<InfoHash, Vec<(u64, T)>>, info_hash: InfoHash, subscriber: u64) -> bool {
        let Some(list) = map.get_mut(&info_hash) else { return false };
        let before = list.len();
        list.retain(|(id, _)| *id != subscriber);
        if list.is_empty() {
            map.remove(&info_hash);
            return before > 0;
        }
        false
    }

    /// Stops an advertisement whatever its handles (their streams end).
    pub(crate) fn stop_advertising(&mut self, node: &mut Node, info_hash: InfoHash) -> bool {
        self.advertisements.remove(&info_hash);
        node.stop_advertising(&info_hash)
    }

    /// Hands a quest event to the handles listening; a watch whose handles are all gone stops.
    pub(crate) fn deliver(&mut self, node: &mut Node, now: Timestamp, event: QuestEvent) {
        match event {
            QuestEvent::Advertised { info_hash, stored_at, next_round, .. } => {
                let renewal = Renewal { stored_at, next_in_secs: next_round.saturating_since(now).as_secs() };
                if let Some(list) = self.advertisements.get_mut(&info_hash) {
                    // A handle dropped without its release arriving yet: the release will come.
                    list.retain(|(_, tx)| tx.send(renewal).is_ok());
                }
            }
            QuestEvent::Found { info_hash, peer, from, advertised } => {
                self.tell_watchers(node, info_hash, WatchEvent::Found { peer, from: from.into(), advertised });
            }
            QuestEvent::Gone { info_hash, peer } => {
                // Should it come back, it is new to the followers too.
                if let Some(resumed_with) = self.kept.get_mut(&info_hash) {
                    resumed_with.remove(&peer);
                }
                self.tell_watchers(node, info_hash, WatchEvent::Gone { peer })
            }
            QuestEvent::Searched { .. } => {}
        }
    }

    fn tell_watchers(&mut self, node: &mut Node, info_hash: InfoHash, event: WatchEvent) {
        let Some(list) = self.watches.get_mut(&info_hash) else { return };
        list.retain(|(_, tx)| tx.send(event).is_ok());
        if list.is_empty() {
            self.watches.remove(&info_hash);
            if !self.kept.contains_key(&info_hash) {
                node.unwatch(&info_hash);
            }
        }
    }

    /// Starts a kept watch, or keeps a running one.
    pub(crate) fn keep_watching(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        info_hash: InfoHash,
    ) -> Result<(), QuestError> {
        node.watch(now, info_hash)?;
        self.kept.entry(info_hash).or_default();
        Ok(())
    }

    /// Stops a watch whatever its handles (their streams end).
    pub(crate) fn stop_watching(&mut self, node: &mut Node, info_hash: InfoHash) -> bool {
        self.kept.remove(&info_hash);
        self.watches.remove(&info_hash);
        node.unwatch(&info_hash)
    }

    /// Adds a handle to a kept watch, telling it first of the peers found since the watch
    /// was started or resumed here.
    pub(crate) fn follow(
        &mut self,
        node: &Node,
        info_hash: InfoHash,
        events: mpsc::UnboundedSender<WatchEvent>,
    ) -> Option<u64> {
        let resumed_with = self.kept.get(&info_hash)?;
        if let Some(quests) = node.quests() {
            let advertised = quests.is_advertised(&info_hash);
            for (peer, seen) in quests.watched_peers(&info_hash).filter(|(peer, _)| !resumed_with.contains(peer)) {
                let _ = events.send(WatchEvent::Found { peer: *peer, from: seen.from.into(), advertised });
            }
        }
        self.next_subscriber += 1;
        self.watches.entry(info_hash).or_default().push((self.next_subscriber, events));
        Some(self.next_subscriber)
    }

    /// Resumes a kept watch of a saved state, knowing the peers it had reported (unreadable
    /// peers are skipped).
    pub(crate) fn resume_watch(&mut self, node: &mut Node, now: Timestamp, saved: &SavedWatch) -> Result<(), String> {
        let info_hash: InfoHash = saved.info_hash.parse().map_err(|e| format!("{e}"))?;
        let peers = saved
            .peers
            .iter()
            .filter_map(|p| Some((p.addr, (p.from_id.parse::<NodeId>().ok()?, p.from_addr))))
            .collect::<Vec<_>>();
        let resumed_with = peers.iter().map(|(peer, _)| *peer).collect();
        node.resume_watch(now, info_hash, peers).map_err(|e| e.to_string())?;
        self.kept.insert(info_hash, resumed_with);
        Ok(())
    }

    /// The kept watches and their peers, for the saved state.
    pub(crate) fn saved_watches(&self, node: &Node) -> Vec<SavedWatch> {
        let Some(quests) = node.quests() else { return Vec::new() };
        self.kept
            .keys()
            .map(|info_hash| {
                let mut peers: Vec<SavedWatchedPeer> = quests
                    .watched_peers(info_hash)
                    .map(|(addr, seen)| SavedWatchedPeer {
                        addr: *addr,
                        from_id: seen.from.0.to_string(),
                        from_addr: seen.from.1,
                    })
                    .collect();
                // In a stable order, so that saving twice writes the same file.
                peers.sort_by_key(|p| p.addr);
                SavedWatch { info_hash: info_hash.to_string(), peers }
            })
            .collect()
    }

    /// The watches the node runs.
    pub(crate) fn watch_list(&self, node: &Node) -> Vec<WatchInfo> {
        let Some(quests) = node.quests() else { return Vec::new() };
        quests
            .watched()
            .map(|info_hash| WatchInfo {
                info_hash: *info_hash,
                kept: self.kept.contains_key(info_hash),
                peers: quests.watched_peers(info_hash).count(),
                handles: self.watches.get(info_hash).map_or(0, Vec::len),
            })
            .collect()
    }

    /// The advertisements the node runs.
    pub(crate) fn list(node: &Node, now: Timestamp) -> Vec<AdvertisementInfo> {
        node.quests()
            .into_iter()
            .flat_map(|q| q.advertisements())
            .map(|ad| AdvertisementInfo {
                info_hash: ad.info_hash,
                port: ad.port,
                rounds: ad.rounds,
                last_stored_at: ad.last_stored_at,
                next_in_secs: ad.next_round.saturating_since(now).as_secs(),
            })
            .collect()
    }
}
