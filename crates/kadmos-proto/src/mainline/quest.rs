use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use crate::kad::{DeadlineMap, InfoHash, NodeId, Scheduled};
use crate::node_io::QueryId;
use crate::time::Timestamp;

/// Intervals and limits of quests. Every field has a documented default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuestConfig {
    /// Time between two announces of an advertisement. Default 15 minutes: half the
    /// 30-minute lifetime of an announce, so one lost round leaves the last one alive.
    pub advertise_interval: Duration,
    /// Time between two searches of a watch. Default 5 minutes (Net::BitTorrent::DHT's).
    pub watch_interval: Duration,
    /// Each interval is shortened by a random share of up to this many percent. Default 10.
    pub jitter_percent: u32,
    /// How soon a round that reached no node is tried again. Default 1 minute.
    pub retry_after: Duration,
    /// A watched peer no search has returned for this long is reported gone. Default 30
    /// minutes, the lifetime of an announce.
    pub gone_after: Duration,
    /// Most advertisements a node runs. Default 256.
    pub max_advertisements: usize,
    /// Most watches a node runs. Default 64.
    pub max_watches: usize,
    /// Most peers a watch remembers. Default 1,000.
    pub max_peers_per_watch: usize,
}

impl Default for QuestConfig {
    fn default() -> Self {
        QuestConfig {
            advertise_interval: Duration::from_secs(15 * 60),
            watch_interval: Duration::from_secs(5 * 60),
            jitter_percent: 10,
            retry_after: Duration::from_secs(60),
            gone_after: Duration::from_secs(30 * 60),
            max_advertisements: 256,
            max_watches: 64,
            max_peers_per_watch: 1000,
        }
    }
}

/// Why a quest could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuestError {
    /// The node already runs as many advertisements as [`QuestConfig::max_advertisements`] allows.
    #[error("this node already runs {limit} advertisements (the limit)")]
    TooManyAdvertisements {
        /// The limit.
        limit: usize,
    },
    /// The node already runs as many watches as [`QuestConfig::max_watches`] allows.
    #[error("this node already runs {limit} watches (the limit)")]
    TooManyWatches {
        /// The limit.
        limit: usize,
    },
    /// Port 0 was asked for; leave the port out to advertise the node's own UDP port.
    #[error("port 0 cannot be advertised (leave the port out to advertise the node's own UDP port)")]
    PortZero,
}

/// What quests report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuestEvent {
    /// An advertisement round is over: `stored_at` nodes stored the announce (0: the round
    /// reached nobody and is retried after `retry_after`), in `messages` datagrams (queries
    /// and answers); the next round is at `next_round`.
    Advertised {
        /// The infohash advertised.
        info_hash: InfoHash,
        /// Nodes that stored the announce.
        stored_at: usize,
        /// Datagrams of the round, queries and answers.
        messages: u32,
        /// When the next round starts.
        next_round: Timestamp,
    },
    /// A watched infohash has a peer not seen before, named by the node `from`. `advertised`
    /// says whether this node advertises that infohash too.
    Found {
        /// The infohash watched.
        info_hash: InfoHash,
        /// The peer found.
        peer: SocketAddr,
        /// The node that named it.
        from: (NodeId, SocketAddr),
        /// Whether this node advertises the infohash too.
        advertised: bool,
    },
    /// No search has returned this peer for `gone_after`.
    Gone {
        /// The infohash watched.
        info_hash: InfoHash,
        /// The peer no longer returned.
        peer: SocketAddr,
    },
    /// A watch round is over: it heard from `answered` nodes, in `messages` datagrams; the
    /// watch knows `peers` peers.
    Searched {
        /// The infohash watched.
        info_hash: InfoHash,
        /// Nodes that answered the round's lookup.
        answered: u32,
        /// Datagrams of the round, queries and answers.
        messages: u32,
        /// Peers the watch knows now.
        peers: usize,
        /// When the next round starts.
        next_round: Timestamp,
    },
}

/// One advertisement, as saved state lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    /// The infohash advertised.
    pub info_hash: InfoHash,
    /// `None`: the node's own UDP port (`implied_port`).
    pub port: Option<u16>,
    /// When the next round starts (if none is running).
    pub next_round: Timestamp,
    /// Rounds finished, and how many nodes stored the last one.
    pub rounds: u64,
    /// Nodes that stored the last round's announce.
    pub last_stored_at: usize,
    running: Option<QueryId>,
    /// The node rejoined while a round ran: the next round is due as soon as it ends.
    rejoined: bool,
}

/// A peer a watch has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenPeer {
    /// The node that first named it.
    pub from: (NodeId, SocketAddr),
    /// When a search last returned it.
    pub last_seen: Timestamp,
}

#[derive(Clone, Debug)]
struct Watch {
    next_round: Timestamp,
    running: Option<QueryId>,
    /// The node rejoined while a round ran: the next round is due as soon as it ends.
    rejoined: bool,
    peers: HashMap<SocketAddr, SeenPeer>,
}

impl Scheduled for Advertisement {
    /// Its next round, unless one runs.
    fn next_deadline(&self) -> Option<Timestamp> {
        self.running.is_none().then_some(self.next_round)
    }
}

impl Scheduled for Watch {
    /// Its next search, unless one runs.
    fn next_deadline(&self) -> Option<Timestamp> {
        self.running.is_none().then_some(self.next_round)
    }
}

/// What a running operation of a quest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoundKind {
    Advertise { port: Option<u16> },
    Watch,
}

/// A round to start: the node runs an announce or a get_peers for `info_hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DueRound {
    pub info_hash: InfoHash,
    pub kind: RoundKind,
}

/// How a round ended, as the node saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoundEnd {
    /// Nodes that stored the announce (advertisements).
    pub stored_at: usize,
    /// Nodes that answered the lookup.
    pub answered: u32,
    /// Datagrams of the round: its queries (lookup and announces) and the answers to them.
    pub messages: u32,
}

/// The quests of one node: its advertisements and watches.
///
/// Quests: tasks a node keeps running until it is told to stop. An *advertisement* keeps
/// saying "we are a peer of this infohash on this port"; a *watch* keeps looking an infohash
/// up and reports each peer it had not seen before.
///
/// # Why they renew
///
/// An announce lives [`PeerStoreConfig::expiry`](super::PeerStoreConfig) (30 minutes) on the
/// nodes that stored it, and the nodes closest to an infohash change as the network churns:
/// a one-shot announce is gone half an hour later, and a one-shot get_peers knows only the
/// peers of its moment. So an advertisement re-announces to the nodes closest *at that
/// time* every [`QuestConfig::advertise_interval`] (15 minutes, well inside the lifetime, so
/// one lost round still leaves the previous announce alive), and a watch searches again every
/// [`QuestConfig::watch_interval`] (5 minutes, as Net::BitTorrent::DHT's quests do). Every
/// interval is shortened by a random part of up to [`QuestConfig::jitter_percent`] so that
/// quests started together (a daemon restarting with many) drift apart. A round that reached
/// no node (an empty table, every candidate silent) is tried again after
/// [`QuestConfig::retry_after`] rather than a whole interval later, and the end of every
/// bootstrap makes all quests due at once (a round running then, begun with the view from
/// before, runs again as soon as it ends): after a rejoin the node's view is new, and a
/// restarted daemon should not wait an interval to speak again.
///
/// # Who does what
///
/// The [`QuestBook`] decides *when* and remembers *what was seen*; the [`Node`](super::Node)
/// runs the lookups: for each round due, an announce (advertisement) or a get_peers (watch)
/// operation, whose peers and end it reports back to the book. The book queues
/// [`QuestEvent`]s, which the node hands out through `poll_event` as `Event::Quest`.
/// Randomness (jitter) comes from the node's seeded generator, passed in.
///
/// # Limits
///
/// At most [`QuestConfig::max_advertisements`] (256) advertisements and
/// [`QuestConfig::max_watches`] (64) watches per node: each costs a lookup every round. A
/// watch remembers at most [`QuestConfig::max_peers_per_watch`] (1,000) peers; when full, the
/// peer not heard of for longest is forgotten (and would be reported again if it came back).
#[derive(Clone, Debug, Default)]
pub struct QuestBook {
    config: QuestConfig,
    // Each with its earliest round at hand for the node's `poll_timeout`.
    advertisements: DeadlineMap<InfoHash, Advertisement>,
    watches: DeadlineMap<InfoHash, Watch>,
    /// Running operations of quests: ordered, so that rounds start and end deterministically.
    rounds: BTreeMap<QueryId, (InfoHash, RoundKind)>,
    events: VecDeque<QuestEvent>,
}

impl QuestBook {
    pub(crate) fn new(config: QuestConfig) -> Self {
        QuestBook { config, ..QuestBook::default() }
    }

    /// The intervals and limits the book was made with.
    pub fn config(&self) -> &QuestConfig {
        &self.config
    }

    /// Starts (or, for a new port, changes) an advertisement; its first round is due at once.
    pub(crate) fn advertise(
        &mut self,
        now: Timestamp,
        info_hash: InfoHash,
        port: Option<u16>,
    ) -> Result<(), QuestError> {
        if port == Some(0) {
            return Err(QuestError::PortZero);
        }
        let changed = self.advertisements.update(&info_hash, |existing| {
            if existing.port != port {
                existing.port = port;
                existing.next_round = now;
            }
        });
        if changed.is_some() {
            return Ok(());
        }
        if self.advertisements.len() >= self.config.max_advertisements {
            return Err(QuestError::TooManyAdvertisements { limit: self.config.max_advertisements });
        }
        let ad = Advertisement {
            info_hash,
            port,
            next_round: now,
            rounds: 0,
            last_stored_at: 0,
            running: None,
            rejoined: false,
        };
        self.advertisements.insert(info_hash, ad);
        Ok(())
    }

    /// Stops an advertisement; `None` if there was none, else the operation of its running
    /// round, if any, which the node drops.
    pub(crate) fn stop_advertising(&mut self, info_hash: &InfoHash) -> Option<Option<QueryId>> {
        let running = self.advertisements.remove(info_hash)?.running;
        Some(running.filter(|op| self.rounds.remove(op).is_some()))
    }

    /// Starts a watch (its first search is due at once); watching an infohash twice is one watch.
    pub(crate) fn watch(&mut self, now: Timestamp, info_hash: InfoHash) -> Result<(), QuestError> {
        if self.watches.contains_key(&info_hash) {
            return Ok(());
        }
        if self.watches.len() >= self.config.max_watches {
            return Err(QuestError::TooManyWatches { limit: self.config.max_watches });
        }
        self.watches
            .insert(info_hash, Watch { next_round: now, running: None, rejoined: false, peers: HashMap::new() });
        Ok(())
    }

    /// Starts a watch that already knows `peers` (a watch resumed from saved state): they are
    /// not reported again when its searches return them, only peers new to it are. Its first
    /// search is due at once. Resuming a running watch adds the peers it did not know.
    pub(crate) fn resume_watch(
        &mut self,
        now: Timestamp,
        info_hash: InfoHash,
        peers: impl IntoIterator<Item = (SocketAddr, (NodeId, SocketAddr))>,
    ) -> Result<(), QuestError> {
        self.watch(now, info_hash)?;
        let limit = self.config.max_peers_per_watch.max(1);
        self.watches.update(&info_hash, |watch| {
            for (peer, from) in peers {
                if watch.peers.len() >= limit {
                    break;
                }
                // Heard of now: the saved state does not say when, and a gone peer is reported
                // after a whole `gone_after` anyway.
                watch.peers.entry(peer).or_insert(SeenPeer { from, last_seen: now });
            }
        });
        Ok(())
    }

    /// Stops a watch; `None` if there was none, else the operation of its running round, if
    /// any, which the node drops.
    pub(crate) fn unwatch(&mut self, info_hash: &InfoHash) -> Option<Option<QueryId>> {
        let running = self.watches.remove(info_hash)?.running;
        Some(running.filter(|op| self.rounds.remove(op).is_some()))
    }

    /// The advertisements this node runs.
    pub fn advertisements(&self) -> impl Iterator<Item = &Advertisement> {
        self.advertisements.values()
    }

    /// Whether this node advertises `info_hash`.
    pub fn is_advertised(&self, info_hash: &InfoHash) -> bool {
        self.advertisements.contains_key(info_hash)
    }

    /// The infohashes watched.
    pub fn watched(&self) -> impl Iterator<Item = &InfoHash> {
        self.watches.keys()
    }

    /// The peers a watch knows, with who named them first.
    pub fn watched_peers(&self, info_hash: &InfoHash) -> impl Iterator<Item = (&SocketAddr, &SeenPeer)> {
        self.watches.get(info_hash).into_iter().flat_map(|w| w.peers.iter())
    }

    /// The earliest round due, for the node's `poll_timeout` (none while every quest runs).
    pub(crate) fn next_due(&mut self) -> Option<Timestamp> {
        self.advertisements.earliest().into_iter().chain(self.watches.earliest()).min()
    }

    /// Rounds due at `now` (quests with no round running), advertisements first.
    pub(crate) fn due(&self, now: Timestamp) -> Vec<DueRound> {
        let ads = self
            .advertisements
            .values()
            .filter(|a| a.running.is_none() && a.next_round <= now)
            .map(|a| DueRound { info_hash: a.info_hash, kind: RoundKind::Advertise { port: a.port } });
        let watches = self
            .watches
            .iter()
            .filter(|(_, w)| w.running.is_none() && w.next_round <= now)
            .map(|(info_hash, _)| DueRound { info_hash: *info_hash, kind: RoundKind::Watch });
        ads.chain(watches).collect()
    }

    /// The node started `op` for a round that [`QuestBook::due`] listed.
    pub(crate) fn started(&mut self, op: QueryId, round: DueRound) {
        let started = match round.kind {
            RoundKind::Advertise { .. } => self.advertisements.update(&round.info_hash, |a| a.running = Some(op)),
            RoundKind::Watch => self.watches.update(&round.info_hash, |w| w.running = Some(op)),
        };
        if started.is_some() {
            self.rounds.insert(op, (round.info_hash, round.kind));
        }
    }

    /// Whether `op` is a round of a quest (its events are the book's, not the user's).
    pub(crate) fn owns(&self, op: QueryId) -> bool {
        self.rounds.contains_key(&op)
    }

    /// Every quest not running a round is due now: the node has just (re)joined.
    /// A round running now began with the view from before the rejoin (a quest started while
    /// the node was joining, say, with a table of a few contacts): it runs again once it ends.
    pub(crate) fn rejoined(&mut self, now: Timestamp) {
        self.advertisements.for_each_mut(|_, ad| {
            ad.next_round = ad.next_round.min(now);
            ad.rejoined = ad.running.is_some();
        });
        self.watches.for_each_mut(|_, watch| {
            watch.next_round = watch.next_round.min(now);
            watch.rejoined = watch.running.is_some();
        });
    }

    /// Peers that a round's lookup found (an advertisement's lookup feeds the watch of the
    /// same infohash too).
    pub(crate) fn peers_found(
        &mut self,
        now: Timestamp,
        op: QueryId,
        from: (NodeId, SocketAddr),
        peers: &[SocketAddr],
    ) {
        let Some((info_hash, _)) = self.rounds.get(&op) else { return };
        let info_hash = *info_hash;
        let advertised = self.advertisements.contains_key(&info_hash);
        let limit = self.config.max_peers_per_watch;
        let events = &mut self.events;
        self.watches.update(&info_hash, |watch| {
            for &peer in peers {
                if let Some(seen) = watch.peers.get_mut(&peer) {
                    seen.last_seen = now;
                    continue;
                }
                if watch.peers.len() >= limit.max(1) {
                    // Forget the peer not heard of for longest (ties: the lowest address, for
                    // determinism, since map order is not).
                    let stalest =
                        watch.peers.iter().min_by_key(|(addr, seen)| (seen.last_seen, **addr)).map(|(a, _)| *a);
                    if let Some(stalest) = stalest {
                        watch.peers.remove(&stalest);
                    }
                }
                watch.peers.insert(peer, SeenPeer { from, last_seen: now });
                events.push_back(QuestEvent::Found { info_hash, peer, from, advertised });
            }
        });
    }

    /// A round is over: schedules the quest's next one and reports the round.
    pub(crate) fn finished(&mut self, now: Timestamp, op: QueryId, end: RoundEnd, rng: &mut impl Rng) {
        let Some((info_hash, kind)) = self.rounds.remove(&op) else { return };
        let config = &self.config;
        let next = |interval: Duration, reached: bool, rng: &mut dyn rand::RngCore| {
            if !reached {
                return now + config.retry_after;
            }
            let percent = rng.gen_range(0..=config.jitter_percent.min(100));
            now + interval - interval * percent / 100
        };
        let events = &mut self.events;
        match kind {
            RoundKind::Advertise { .. } => {
                self.advertisements.update(&info_hash, |ad| {
                    if ad.running != Some(op) {
                        return;
                    }
                    ad.running = None;
                    ad.rounds += 1;
                    ad.last_stored_at = end.stored_at;
                    ad.next_round = next(config.advertise_interval, end.stored_at > 0, rng);
                    if std::mem::take(&mut ad.rejoined) {
                        ad.next_round = now;
                    }
                    let (stored_at, messages, next_round) = (end.stored_at, end.messages, ad.next_round);
                    events.push_back(QuestEvent::Advertised { info_hash, stored_at, messages, next_round });
                });
            }
            RoundKind::Watch => {
                self.watches.update(&info_hash, |watch| {
                    if watch.running != Some(op) {
                        return;
                    }
                    watch.running = None;
                    watch.next_round = next(config.watch_interval, end.answered > 0, rng);
                    if std::mem::take(&mut watch.rejoined) {
                        watch.next_round = now;
                    }
                    let gone_after = config.gone_after;
                    let mut gone: Vec<SocketAddr> = watch
                        .peers
                        .iter()
                        .filter(|(_, seen)| now.saturating_since(seen.last_seen) > gone_after)
                        .map(|(peer, _)| *peer)
                        .collect();
                    gone.sort_unstable();
                    for peer in gone {
                        watch.peers.remove(&peer);
                        events.push_back(QuestEvent::Gone { info_hash, peer });
                    }
                    let (peers, next_round) = (watch.peers.len(), watch.next_round);
                    let messages = end.messages;
                    let event = QuestEvent::Searched { info_hash, answered: end.answered, messages, peers, next_round };
                    events.push_back(event);
                });
            }
        }
    }

    /// A round's operation was cancelled without ending: its quest is due again at once
    /// (its `next_round` has passed, or the round would not have started).
    pub(crate) fn forget_round(&mut self, op: QueryId) {
        let Some((info_hash, kind)) = self.rounds.remove(&op) else { return };
        let forget = |running: &mut Option<QueryId>| {
            if *running == Some(op) {
                *running = None;
            }
        };
        match kind {
            RoundKind::Advertise { .. } => self.advertisements.update(&info_hash, |a| forget(&mut a.running)),
            RoundKind::Watch => self.watches.update(&info_hash, |w| forget(&mut w.running)),
        };
    }

    /// Drops the stale deadlines kept for `next_due` (periodic upkeep).
    pub(crate) fn compact(&mut self) {
        self.advertisements.compact();
        self.watches.compact();
    }

    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<QuestEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn peer(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 6881))
    }

    fn events(book: &mut QuestBook) -> Vec<QuestEvent> {
        std::iter::from_fn(|| book.poll_event()).collect()
    }

    /// A watch at its peer limit forgets the peer heard of longest ago to make room, and
    /// reports every newcomer once; a peer heard of again is not reported again.
    #[test]
    fn full_watch_forgets_the_stalest_peer() {
        let mut book = QuestBook::new(QuestConfig { max_peers_per_watch: 2, ..QuestConfig::default() });
        let info_hash = InfoHash::sha1_of(b"full");
        let from = (NodeId::sha1_of(b"from"), peer(200));
        let t = |s: u64| Timestamp::from_micros(s * 1_000_000);
        book.watch(t(0), info_hash).unwrap();
        let round = book.due(t(0))[0];
        book.started(QueryId(1), round);
        book.peers_found(t(1), QueryId(1), from, &[peer(1)]);
        book.peers_found(t(2), QueryId(1), from, &[peer(2)]);
        book.peers_found(t(3), QueryId(1), from, &[peer(1)]);
        book.peers_found(t(4), QueryId(1), from, &[peer(3)]);
        let found: Vec<SocketAddr> = events(&mut book)
            .into_iter()
            .filter_map(|e| match e {
                QuestEvent::Found { peer, .. } => Some(peer),
                _ => None,
            })
            .collect();
        assert_eq!(found, vec![peer(1), peer(2), peer(3)]);
        let mut kept: Vec<SocketAddr> = book.watched_peers(&info_hash).map(|(p, _)| *p).collect();
        kept.sort();
        assert_eq!(kept, vec![peer(1), peer(3)], "peer 2, last heard at 2 s, was the stalest");
    }

    /// A rejoin while a round runs (started with the view from before it) makes the next
    /// round due as soon as that one ends, instead of an interval later; a rejoin between
    /// rounds makes the quest due at once.
    #[test]
    fn rejoin_during_a_round_runs_another() {
        let mut book = QuestBook::new(QuestConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let info_hash = InfoHash::sha1_of(b"rejoin");
        let t = |s: u64| Timestamp::from_micros(s * 1_000_000);
        book.watch(t(0), info_hash).unwrap();
        book.started(QueryId(1), book.due(t(0))[0]);
        book.rejoined(t(1));
        book.finished(t(2), QueryId(1), RoundEnd { stored_at: 0, answered: 3, messages: 9 }, &mut rng);
        assert_eq!(book.next_due(), Some(t(2)), "due again at once");
        book.started(QueryId(2), book.due(t(2))[0]);
        book.finished(t(3), QueryId(2), RoundEnd { stored_at: 0, answered: 3, messages: 9 }, &mut rng);
        assert!(book.next_due().unwrap() > t(200), "then an interval later");
        book.rejoined(t(4));
        assert_eq!(book.next_due(), Some(t(4)));
    }

    /// A resumed watch does not report the peers it was resumed with, only new ones, and
    /// knows both afterwards.
    #[test]
    fn resumed_watch_reports_only_new_peers() {
        let mut book = QuestBook::new(QuestConfig::default());
        let info_hash = InfoHash::sha1_of(b"resumed");
        let from = (NodeId::sha1_of(b"from"), peer(200));
        book.resume_watch(Timestamp::ZERO, info_hash, [(peer(1), from)]).unwrap();
        let round = book.due(Timestamp::ZERO)[0];
        assert_eq!(round.kind, RoundKind::Watch, "its first search is due at once");
        book.started(QueryId(1), round);
        book.peers_found(Timestamp::ZERO, QueryId(1), from, &[peer(1), peer(2)]);
        let found: Vec<QuestEvent> = events(&mut book);
        assert_eq!(found, vec![QuestEvent::Found { info_hash, peer: peer(2), from, advertised: false }]);
        assert_eq!(book.watched_peers(&info_hash).count(), 2);
    }

    /// A finished round schedules the next one between 90% and 100% of the interval, from
    /// the seeded generator; a stopped quest's late round end is ignored; a cancelled round
    /// leaves its quest due at once.
    #[test]
    fn rounds_are_rescheduled_with_jitter() {
        let mut book = QuestBook::new(QuestConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let info_hash = InfoHash::sha1_of(b"jitter");
        let interval = book.config().advertise_interval;
        let mut now = Timestamp::ZERO;
        book.advertise(now, info_hash, Some(1)).unwrap();
        for op in 1..=50 {
            let round = book.due(now)[0];
            book.started(QueryId(op), round);
            assert!(book.due(now).is_empty(), "one round at a time");
            book.finished(now, QueryId(op), RoundEnd { stored_at: 8, answered: 8, messages: 40 }, &mut rng);
            let next = book.next_due().unwrap();
            let gap = next.saturating_since(now);
            assert!(gap >= interval * 9 / 10 && gap <= interval, "{gap:?}");
            now = next;
        }
        let round = book.due(now)[0];
        book.started(QueryId(99), round);
        book.forget_round(QueryId(99));
        assert_eq!(book.due(now).len(), 1, "due again at once");
        assert_eq!(book.stop_advertising(&info_hash), Some(None));
        book.finished(now, QueryId(99), RoundEnd::default(), &mut rng);
        assert!(book.next_due().is_none());
    }
}
