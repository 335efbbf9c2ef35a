//! Quests on virtual time: a few sans-IO Mainline nodes, advertisements and watches running
//! for hours, nodes leaving and rejoining. Time jumps from one node deadline to the next, as
//! a driver would sleep until `poll_timeout`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::mainline::{
    Body, CommandResult, Config, Event, Message, Node, Query, QueryId, QuestError, QuestEvent,
};
use kadmos_proto::{Id, InfoHash, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6881))
}

/// Nodes on a lossless network with instant delivery. A node that is down (`None`) drops
/// what is sent to it. Every event and every announce_peer sent is recorded with its time.
struct World {
    nodes: Vec<Option<Node>>,
    now: Timestamp,
    events: Vec<(Timestamp, usize, Event)>,
    announces: Vec<(Timestamp, usize, InfoHash)>,
}

impl World {
    fn new(n: usize, adjust: impl Fn(&mut Config)) -> World {
        let mut world = World { nodes: Vec::new(), now: Timestamp::ZERO, events: Vec::new(), announces: Vec::new() };
        for i in 0..n {
            world.nodes.push(Some(Self::node(i, &adjust, Timestamp::ZERO)));
        }
        for i in 1..n {
            world.join(i);
            world.run_for(Duration::from_secs(1));
        }
        world.run_for(Duration::from_secs(60));
        world
    }

    fn node(i: usize, adjust: &impl Fn(&mut Config), now: Timestamp) -> Node {
        let mut config = Config::new(Id::sha1_of(format!("quest node {i}").as_bytes()), 100 + i as u64);
        adjust(&mut config);
        Node::new(config, now)
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node is up")
    }

    fn join(&mut self, i: usize) {
        let now = self.now;
        let seed = if i == 0 { addr(1) } else { addr(0) };
        let _ = self.node_mut(i).bootstrap(now, &[seed], &[]);
        self.settle();
    }

    /// Delivers datagrams until the network is quiet.
    fn settle(&mut self) {
        let mut queue = VecDeque::new();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let Some(node) = node else { continue };
                while let Some(t) = node.poll_transmit() {
                    if let Ok(Message {
                        body: Body::Query { query: Query::AnnouncePeer { info_hash, .. }, .. }, ..
                    }) = Message::decode(&t.payload)
                    {
                        self.announces.push((self.now, i, info_hash));
                    }
                    queue.push_back((i, t));
                }
                while let Some(e) = node.poll_event() {
                    self.events.push((self.now, i, e));
                }
            }
            let Some((from, t)) = queue.pop_front() else { break };
            let to = (0..self.nodes.len()).find(|j| addr(*j) == t.to);
            if let Some(Some(node)) = to.map(|j| &mut self.nodes[j]) {
                node.handle_datagram(self.now, addr(from), &t.payload);
            }
        }
    }

    /// Runs every node's timers up to `now + span`.
    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            let next = self.nodes.iter_mut().flatten().filter_map(|n| n.poll_timeout()).min();
            let Some(next) = next.filter(|t| *t <= end) else { break };
            self.now = self.now.max(next);
            let now = self.now;
            for node in self.nodes.iter_mut().flatten() {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
            self.settle();
        }
        self.now = end;
    }

    fn quest_events(&self, node: usize) -> impl Iterator<Item = (Timestamp, &QuestEvent)> {
        self.events.iter().filter(move |(_, i, _)| *i == node).filter_map(|(t, _, e)| match e {
            Event::Quest(q) => Some((*t, q)),
            _ => None,
        })
    }

    /// The advertisement rounds of a node: when each ended, for which infohash, how many
    /// nodes stored it and when the next one is due.
    fn rounds(&self, node: usize) -> Vec<(Timestamp, InfoHash, usize, Timestamp)> {
        self.quest_events(node)
            .filter_map(|(t, e)| match e {
                QuestEvent::Advertised { info_hash, stored_at, next_round, .. } => {
                    Some((t, *info_hash, *stored_at, *next_round))
                }
                _ => None,
            })
            .collect()
    }

    /// Live nodes whose peer store holds `peer` for `info_hash` now.
    fn stored_on(&self, info_hash: &InfoHash, peer: SocketAddr) -> usize {
        self.nodes
            .iter()
            .flatten()
            .filter(|n| {
                n.peer_store()
                    .peers(info_hash, false, 1000, self.now, &mut ChaCha8Rng::seed_from_u64(0))
                    .contains(&peer)
            })
            .count()
    }

    /// Whether a one-shot get_peers from `node` finds `peer` now.
    fn get_peers_finds(&mut self, node: usize, info_hash: InfoHash, peer: SocketAddr) -> bool {
        let now = self.now;
        let q: QueryId = self.node_mut(node).get_peers(now, info_hash);
        self.settle();
        self.run_for(Duration::from_secs(5));
        self.events.iter().any(|(_, i, e)| {
            matches!(e, Event::Peers { query, peers, .. } if *i == node && *query == q && peers.contains(&peer))
        })
    }
}

/// An advertisement is renewed every 13.5–15 minutes (15 minutes less up to 10% jitter), so a
/// get_peers every 10 minutes over three hours finds the advertiser, while a one-shot
/// announce made at the same time is stored nowhere after its 30-minute lifetime.
#[test]
fn advertisement_outlives_the_announce_lifetime() {
    let mut world = World::new(12, |_| {});
    let advertised = Id::sha1_of(b"advertised");
    let one_shot = Id::sha1_of(b"one-shot");
    let now = world.now;
    world.node_mut(3).advertise(now, advertised, Some(7003)).unwrap();
    let _ = world.node_mut(4).announce_peer(now, one_shot, Some(7004));
    world.settle();
    let start = world.now;
    for step in 1..=18 {
        world.run_for(Duration::from_secs(600));
        let finder = 5 + step % 6;
        assert!(
            world.get_peers_finds(finder, advertised, SocketAddr::from(([10, 1, 0, 3], 7003))),
            "advertiser not found {} minutes in",
            step * 10
        );
    }
    assert_eq!(world.stored_on(&one_shot, SocketAddr::from(([10, 1, 0, 4], 7004))), 0);
    let rounds: Vec<Timestamp> = world.rounds(3).into_iter().filter(|r| r.1 == advertised).map(|r| r.0).collect();
    assert!(world.rounds(3).iter().all(|r| r.2 >= 8), "every round stores on the 8 closest");
    assert_eq!(rounds[0], start, "the first round runs at once");
    for gap in rounds.windows(2).map(|w| w[1].saturating_since(w[0])) {
        assert!(gap >= Duration::from_secs(810) && gap <= Duration::from_secs(900), "gap {gap:?}");
    }
    // 3 hours (and the get_peers' 5 s each) at 13.5–15 minutes a round, plus the first.
    assert!((12..=15).contains(&rounds.len()), "{} rounds", rounds.len());
}

/// A watch reports an advertiser already there and one that starts later, each once (later
/// searches find them again without a second report), with the `advertised` flag only on the
/// node that advertises the infohash itself; the late advertiser is reported by the next
/// search, within one watch interval (5 minutes).
#[test]
fn watch_reports_each_new_peer_once() {
    let mut world = World::new(12, |_| {});
    let info_hash = Id::sha1_of(b"watched");
    let now = world.now;
    world.node_mut(2).advertise(now, info_hash, None).unwrap();
    world.settle();
    world.node_mut(8).watch(now, info_hash).unwrap();
    // Node 2 watches what it advertises: its own Found carries `advertised`.
    world.node_mut(2).watch(now, info_hash).unwrap();
    world.settle();
    world.run_for(Duration::from_secs(120));
    let late_start = world.now;
    world.node_mut(6).advertise(late_start, info_hash, Some(6006)).unwrap();
    world.settle();
    world.run_for(Duration::from_secs(3600));
    let found: Vec<(Timestamp, SocketAddr, bool)> = world
        .quest_events(8)
        .filter_map(|(t, e)| match e {
            QuestEvent::Found { peer, advertised, .. } => Some((t, *peer, *advertised)),
            _ => None,
        })
        .collect();
    let early = addr(2);
    let late = SocketAddr::from(([10, 1, 0, 6], 6006));
    assert_eq!(found.iter().map(|f| f.1).collect::<Vec<_>>(), vec![early, late]);
    assert!(found.iter().all(|f| !f.2), "node 8 advertises nothing");
    let latency = found[1].0.saturating_since(late_start);
    assert!(latency <= Duration::from_secs(300), "late advertiser reported after {latency:?}");
    let searches = world.quest_events(8).filter(|(_, e)| matches!(e, QuestEvent::Searched { .. })).count();
    assert!(searches >= 12, "an hour of 4.5–5-minute rounds, {searches} searches");
    let own: Vec<bool> = world
        .quest_events(2)
        .filter_map(|(_, e)| match e {
            QuestEvent::Found { advertised, .. } => Some(*advertised),
            _ => None,
        })
        .collect();
    assert!(!own.is_empty() && own.iter().all(|a| *a), "{own:?}");
}

/// Stopping an advertisement stops its announces at once, and a watcher then reports the
/// peer gone once no search has returned it for 30 minutes (the stored announces expire
/// after 30 minutes, and the watch searches every 5).
#[test]
fn stopped_advertisement_is_reported_gone() {
    let mut world = World::new(12, |_| {});
    let info_hash = Id::sha1_of(b"stopping");
    let now = world.now;
    world.node_mut(4).advertise(now, info_hash, Some(4444)).unwrap();
    world.node_mut(9).watch(now, info_hash).unwrap();
    world.settle();
    world.run_for(Duration::from_secs(1200));
    assert!(world.node_mut(4).stop_advertising(&info_hash));
    assert!(!world.node_mut(4).stop_advertising(&info_hash), "stopped already");
    let stopped = world.now;
    world.run_for(Duration::from_secs(3 * 3600));
    assert!(
        !world.announces.iter().any(|(t, i, h)| *i == 4 && *h == info_hash && *t > stopped),
        "an announce after the stop"
    );
    let peer = SocketAddr::from(([10, 1, 0, 4], 4444));
    let gone: Vec<Timestamp> = world
        .quest_events(9)
        .filter_map(|(t, e)| matches!(e, QuestEvent::Gone { peer: p, .. } if *p == peer).then_some(t))
        .collect();
    assert_eq!(gone.len(), 1, "reported gone once");
    let after = gone[0].saturating_since(stopped);
    // Last stored at most 15 minutes before the stop, expired 30 minutes after that store,
    // then up to 30 minutes without a search returning it, plus a search interval.
    assert!(after > Duration::from_secs(1800) && after <= Duration::from_secs(1800 + 1800 + 300), "{after:?}");
}

/// A node alone advertises: the round reaches nobody, is reported with `stored_at: 0` and is
/// tried again one minute later, not an interval later.
#[test]
fn round_that_reached_nobody_is_retried_after_a_minute() {
    let mut world = World { nodes: Vec::new(), now: Timestamp::ZERO, events: Vec::new(), announces: Vec::new() };
    world.nodes.push(Some(World::node(0, &|_: &mut Config| {}, Timestamp::ZERO)));
    let info_hash = Id::sha1_of(b"lonely");
    world.node_mut(0).advertise(Timestamp::ZERO, info_hash, None).unwrap();
    world.settle();
    world.run_for(Duration::from_secs(150));
    let rounds = world.rounds(0);
    assert_eq!(rounds.len(), 3, "{rounds:?}");
    for (at, _, stored_at, next_round) in rounds {
        assert_eq!(stored_at, 0);
        assert_eq!(next_round.saturating_since(at), Duration::from_secs(60));
    }
}

/// Limits: a node refuses a watch beyond `max_watches` and an advertisement beyond
/// `max_advertisements` with a typed error, refuses port 0, and counts a second watch or
/// advertisement of the same infohash as the same quest.
#[test]
fn quest_limits_are_enforced() {
    let mut world = World::new(1, |c| {
        c.quests.max_watches = 2;
        c.quests.max_advertisements = 1;
    });
    let now = world.now;
    let node = world.node_mut(0);
    let (a, b, c) = (Id::sha1_of(b"a"), Id::sha1_of(b"b"), Id::sha1_of(b"c"));
    node.watch(now, a).unwrap();
    node.watch(now, a).unwrap();
    node.watch(now, b).unwrap();
    assert_eq!(node.watch(now, c), Err(QuestError::TooManyWatches { limit: 2 }));
    assert_eq!(node.advertise(now, a, Some(0)), Err(QuestError::PortZero));
    node.advertise(now, a, Some(1)).unwrap();
    node.advertise(now, a, Some(2)).unwrap();
    assert_eq!(node.advertise(now, b, None), Err(QuestError::TooManyAdvertisements { limit: 1 }));
    assert_eq!(node.quests().unwrap().watched().count(), 2);
    let ads: Vec<_> = node.quests().unwrap().advertisements().map(|ad| (ad.info_hash, ad.port)).collect();
    assert_eq!(ads, vec![(a, Some(2))]);
}

/// A node that comes back (here: a new node object with the same ID, given its advertisement
/// and watch again, as a restarted daemon restores them) starts both rounds the moment its
/// bootstrap ends, not an interval later; and while it was away, the network kept its announce
/// until expiry.
#[test]
fn rejoining_node_runs_its_quests_at_once() {
    let mut world = World::new(12, |_| {});
    let info_hash = Id::sha1_of(b"restart");
    let now = world.now;
    world.node_mut(7).advertise(now, info_hash, Some(7777)).unwrap();
    world.settle();
    world.run_for(Duration::from_secs(300));
    world.nodes[7] = None;
    world.run_for(Duration::from_secs(600));
    assert!(world.stored_on(&info_hash, SocketAddr::from(([10, 1, 0, 7], 7777))) >= 8);
    let now = world.now;
    let mut back = World::node(7, &|_: &mut Config| {}, now);
    // Restored before the bootstrap, as the runtime does: with an empty table the first
    // rounds reach nobody and wait a minute, but the bootstrap's end makes them due at once.
    back.advertise(now, info_hash, Some(7777)).unwrap();
    back.watch(now, info_hash).unwrap();
    world.nodes[7] = Some(back);
    world.events.retain(|(_, i, _)| *i != 7);
    world.settle();
    world.join(7);
    let joined = world.events.iter().find_map(|(t, i, e)| {
        (*i == 7 && matches!(e, Event::Finished { result: CommandResult::Bootstrap(_), .. })).then_some(*t)
    });
    let joined = joined.expect("the bootstrap ended");
    world.run_for(Duration::from_secs(10));
    let stored = world.quest_events(7).find_map(|(t, e)| match e {
        QuestEvent::Advertised { stored_at, .. } if *stored_at > 0 => Some(t),
        _ => None,
    });
    let searched = world.quest_events(7).find_map(|(t, e)| match e {
        QuestEvent::Searched { answered, .. } if *answered > 0 => Some(t),
        _ => None,
    });
    assert_eq!(stored, Some(joined), "announced when the bootstrap ended");
    assert_eq!(searched, Some(joined), "searched when the bootstrap ended");
}
