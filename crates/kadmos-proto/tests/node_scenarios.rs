//! Deterministic scenarios: a few sans-IO Mainline nodes exchanging datagrams on virtual time,
//! with exact checks on what they send.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::mainline::{
    Body, CommandResult, Config, Event, ImmutableItem, Item, ItemQuery, ItemSigner, Message, MutableItem, Node, Pong,
    Query, Stored,
};
use kadmos_proto::{Id, Timestamp};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881))
}

/// Nodes on a lossless network with instant delivery; time moves only when asked.
struct Net {
    nodes: Vec<Node>,
    now: Timestamp,
    events: Vec<(usize, Event)>,
    /// Datagrams to this node holding these bytes are lost (a storing node gone silent).
    lose: Option<(usize, &'static [u8])>,
}

impl Net {
    fn new(n: usize) -> Net {
        Net::with_config(n, |_| {})
    }

    fn with_config(n: usize, adjust: impl Fn(&mut Config)) -> Net {
        let nodes = (0..n)
            .map(|i| {
                let id = Id::sha1_of(format!("node {i}").as_bytes());
                let mut config = Config::new(id, i as u64);
                adjust(&mut config);
                Node::new(config, Timestamp::ZERO)
            })
            .collect();
        Net { nodes, now: Timestamp::ZERO, events: Vec::new(), lose: None }
    }

    /// Delivers datagrams until the network is quiet.
    fn settle(&mut self) {
        let mut queue = VecDeque::new();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = node.poll_transmit() {
                    queue.push_back((i, t));
                }
                while let Some(e) = node.poll_event() {
                    self.events.push((i, e));
                }
            }
            let Some((from, t)) = queue.pop_front() else { break };
            let to = (0..self.nodes.len()).find(|j| addr(*j) == t.to);
            let lost = self
                .lose
                .is_some_and(|(node, bytes)| Some(node) == to && t.payload.windows(bytes.len()).any(|w| w == bytes));
            if let (Some(to), false) = (to, lost) {
                self.nodes[to].handle_datagram(self.now, addr(from), &t.payload);
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        for node in &mut self.nodes {
            node.handle_timeout(self.now);
        }
        self.settle();
    }

    fn finished(&self, node: usize, query: kadmos_proto::mainline::QueryId) -> Option<&CommandResult> {
        self.events.iter().find_map(|(i, e)| match e {
            Event::Finished { query: q, result } if *i == node && *q == query => Some(result),
            _ => None,
        })
    }

    /// Sends a raw datagram to node `to` from a stranger and returns its answer, if any.
    fn exchange(&mut self, to: usize, from: SocketAddr, datagram: &[u8]) -> Option<Message> {
        self.nodes[to].handle_datagram(self.now, from, datagram);
        let mut answer = None;
        while let Some(t) = self.nodes[to].poll_transmit() {
            if t.to == from {
                answer = Some(Message::decode(&t.payload).expect("node sends valid KRPC"));
            }
        }
        answer
    }
}

/// Twelve nodes bootstrap in a chain from node 0; then an announce from one is found by a
/// get_peers from another, and every table holds at least k contacts.
#[test]
fn bootstrap_announce_get_peers() {
    let mut net = Net::new(12);
    for i in 1..12 {
        let now = net.now;
        net.nodes[i].bootstrap(now, &[addr(0)], &[]);
        net.settle();
        // Joins a second apart, as verification pings are rate-limited per second.
        net.advance(Duration::from_secs(1));
    }
    net.advance(Duration::from_secs(1));
    let info_hash = Id::sha1_of(b"torrent");
    let now = net.now;
    let q = net.nodes[5].announce_peer(now, info_hash, Some(7000));
    net.settle();
    match net.finished(5, q) {
        Some(CommandResult::Announce(Stored { stored_at, .. })) => assert!(stored_at.len() >= 8, "{stored_at:?}"),
        other => panic!("{other:?}"),
    }
    let now = net.now;
    let q = net.nodes[9].get_peers(now, info_hash);
    net.settle();
    let peers: Vec<SocketAddr> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Peers { query, peers, .. } if *i == 9 && *query == q => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(peers, vec![SocketAddr::from(([10, 0, 0, 5], 7000))]);
    assert!(net.finished(9, q).is_some());
    // Kademlia does not promise full knowledge (a node hears of a later one only if that
    // one's lookups pass by), but every table must hold at least k = 8 of the 11 others.
    for node in &net.nodes {
        let table = node.routing_table(kadmos_proto::mainline::Family::V4).unwrap();
        table.check_invariants().unwrap();
        assert!(table.len() >= 8, "node {} knows only {} others", node.id(), table.len());
    }
}

/// A token is accepted for announce_peer from the address it was issued to, refused with
/// error 203 when forged, missing, from another address, or older than two rotations
/// (10 minutes), and nothing is stored on refusal.
/// Each command reports its own typed result: on a node that knows nobody, lookups fail with
/// `NoContacts`, an announce and a put report that nobody stored them, and a bootstrap that
/// reached nobody ends with no nodes; a ping and a BEP 51 sample request to a node it names by
/// address come back as that command's answer, from that node.
#[test]
fn each_command_reports_its_own_result() {
    let mut net = Net::new(2);
    let (now, target) = (net.now, Id::sha1_of(b"target"));
    let node = &mut net.nodes[0];
    let find = node.find_node(now, target);
    let get_peers = node.get_peers(now, target);
    let get_item = node.get_item(now, ItemQuery::Immutable(target));
    let announce = node.announce_peer(now, target, None);
    let put = node.put_item(now, Item::Immutable(ImmutableItem::from_bytes(b"nobody").unwrap()), None);
    let join = node.bootstrap(now, &[], &[]);
    let ping = node.ping(now, addr(1));
    let samples = node.sample_infohashes(now, addr(1), target);
    net.settle();
    let no_contacts = Err(kadmos_proto::mainline::QueryError::NoContacts);
    assert_eq!(net.finished(0, find), Some(&CommandResult::FindNode(no_contacts.clone())));
    assert_eq!(net.finished(0, get_peers), Some(&CommandResult::GetPeers(no_contacts.clone())));
    assert_eq!(net.finished(0, get_item), Some(&CommandResult::GetItem(no_contacts)));
    assert!(matches!(net.finished(0, announce), Some(CommandResult::Announce(s)) if s.stored_at.is_empty()));
    assert!(matches!(net.finished(0, put), Some(CommandResult::PutItem(s)) if s.stored_at.is_empty()));
    assert!(matches!(net.finished(0, join), Some(CommandResult::Bootstrap(c)) if c.nodes.is_empty()));
    let pong = Pong { id: net.nodes[1].id(), addr: addr(1) };
    assert_eq!(net.finished(0, ping), Some(&CommandResult::Ping(Ok(pong))));
    assert!(
        matches!(net.finished(0, samples), Some(CommandResult::SampleInfohashes(Ok(s))) if s.from == addr(1)),
        "{:?}",
        net.finished(0, samples)
    );
}

#[test]
fn announce_tokens_are_checked() {
    let mut net = Net::new(1);
    let stranger = SocketAddr::from(([10, 9, 9, 9], 5000));
    let info_hash = Id::sha1_of(b"t");
    let get = Message::query(b"g1".to_vec(), Id::MAX, Query::GetPeers { info_hash, want: None }).to_bytes();
    let token = match net.exchange(0, stranger, &get).unwrap().body {
        Body::Response(r) => r.token.expect("get_peers answers carry a token"),
        other => panic!("{other:?}"),
    };
    let announce = |token: &[u8]| {
        Message::query(
            b"a1".to_vec(),
            Id::MAX,
            Query::AnnouncePeer { info_hash, port: 9, implied_port: false, token: token.to_vec(), seed: None },
        )
        .to_bytes()
    };
    let code = |m: Option<Message>| match m.map(|m| m.body) {
        Some(Body::Error { code, .. }) => code,
        Some(Body::Response(_)) => 0,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(net.exchange(0, stranger, &announce(b"forged!!"))), 203);
    let other_ip = SocketAddr::from(([10, 9, 9, 8], 5000));
    assert_eq!(code(net.exchange(0, other_ip, &announce(&token))), 203);
    let missing = b"d1:ad2:id20:\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff9:info_hash20:aaaaaaaaaaaaaaaaaaaa4:porti9ee1:q13:announce_peer1:t2:a21:y1:qe";
    assert_eq!(code(net.exchange(0, stranger, missing)), 203);
    assert_eq!(net.nodes[0].peer_store().peer_count(), 0, "nothing stored on refusal");
    assert_eq!(code(net.exchange(0, stranger, &announce(&token))), 0);
    assert_eq!(net.nodes[0].peer_store().peer_count(), 1);
    // Eleven minutes later the secret has rotated twice (every 5 minutes): the token expired.
    for _ in 0..66 {
        net.advance(Duration::from_secs(10));
    }
    assert_eq!(code(net.exchange(0, stranger, &announce(&token))), 203);
}

/// A node answers honest queries with the requester's address (BEP 42 `ip`) and its client
/// version, does not add a BEP 43 read-only querier to its table, and pings an ordinary
/// unknown querier before adding it.
#[test]
fn read_only_queriers_stay_out_of_the_table() {
    let mut net = Net::new(1);
    let ro = SocketAddr::from(([10, 1, 1, 1], 1));
    let mut q = Message::query(b"p1".to_vec(), Id::sha1_of(b"ro"), Query::Ping);
    q.read_only = true;
    let answer = net.exchange(0, ro, &q.to_bytes()).unwrap();
    assert_eq!(answer.requester_ip, Some(ro));
    assert_eq!(answer.version.as_deref(), Some(&b"KD\x00\x01"[..]));
    // An ordinary querier gets a ping back (to verify it before it enters the table).
    let plain = SocketAddr::from(([10, 1, 1, 2], 1));
    let q = Message::query(b"p2".to_vec(), Id::sha1_of(b"plain"), Query::Ping).to_bytes();
    net.nodes[0].handle_datagram(net.now, plain, &q);
    let sent: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
    assert!(sent.iter().any(|t| t.to == plain
        && matches!(Message::decode(&t.payload).unwrap().body, Body::Query { query: Query::Ping, .. })));
    assert!(sent.iter().all(|t| t.to != ro), "no verification ping to the read-only node");
}

fn joined(n: usize) -> Net {
    joined_with(n, |_| {})
}

fn joined_with(n: usize, adjust: impl Fn(&mut Config)) -> Net {
    let mut net = Net::with_config(n, adjust);
    for i in 1..n {
        let now = net.now;
        net.nodes[i].bootstrap(now, &[addr(0)], &[]);
        net.settle();
        net.advance(Duration::from_secs(1));
    }
    net
}

fn items_of(net: &Net, node: usize, q: kadmos_proto::mainline::QueryId) -> Vec<Item> {
    net.events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Item { query, item, .. } if *i == node && *query == q => Some(item.clone()),
            _ => None,
        })
        .collect()
}

/// BEP 44 between nodes: an immutable item put by one node is got (and checked against its
/// target) by another; a mutable item's update with a higher seq is seen; a put with a stale
/// seq or a wrong CAS is refused by every node with 302 / 301, and the stored item survives.
#[test]
fn bep44_put_and_get_between_nodes() {
    let mut net = joined(12);
    let immutable = ImmutableItem::from_bytes(b"Hello World!").unwrap();
    let now = net.now;
    let q = net.nodes[2].put_item(now, Item::Immutable(immutable.clone()), None);
    net.settle();
    match net.finished(2, q) {
        Some(CommandResult::PutItem(Stored { stored_at, errors, .. })) => {
            assert!(stored_at.len() >= 8, "{stored_at:?}");
            assert!(errors.is_empty(), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    let now = net.now;
    let q = net.nodes[7].get_item(now, ItemQuery::Immutable(immutable.target()));
    net.settle();
    assert!(items_of(&net, 7, q).contains(&Item::Immutable(immutable)));

    let signer = ItemSigner::from_seed([3; 32]);
    let put = |net: &mut Net, seq: i64, value: &[u8], cas: Option<i64>| {
        let item = MutableItem::sign(&signer, b"salt", seq, value.to_vec()).unwrap();
        let now = net.now;
        let q = net.nodes[4].put_item(now, Item::Mutable(item), cas);
        net.settle();
        match net.finished(4, q) {
            Some(CommandResult::PutItem(Stored { stored_at, errors, .. })) => (stored_at.len(), errors.clone()),
            other => panic!("{other:?}"),
        }
    };
    assert!(put(&mut net, 1, b"1:a", None).0 >= 8);
    assert!(put(&mut net, 2, b"1:b", Some(1)).0 >= 8);
    let (stored, errors) = put(&mut net, 1, b"1:x", None);
    assert_eq!(stored, 0);
    assert!(!errors.is_empty() && errors.iter().all(|(_, code, _)| *code == 302), "{errors:?}");
    let (stored, errors) = put(&mut net, 5, b"1:y", Some(1));
    assert_eq!(stored, 0);
    assert!(!errors.is_empty() && errors.iter().all(|(_, code, _)| *code == 301), "{errors:?}");

    let query = ItemQuery::Mutable { public_key: signer.public_key(), salt: b"salt".to_vec(), newer_than: None };
    let now = net.now;
    let q = net.nodes[9].get_item(now, query);
    net.settle();
    let seqs: Vec<i64> = items_of(&net, 9, q)
        .into_iter()
        .map(|i| match i {
            Item::Mutable(m) => {
                assert_eq!(m.value, b"1:b");
                m.seq
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![2], "one verified version, the latest");
}

/// A node refuses forged and oversized puts with the BEP 44 codes (206, 205, 207) and a put
/// without a valid token with 203; nothing is stored.
#[test]
fn bep44_hostile_puts_are_refused() {
    let mut net = Net::new(1);
    let stranger = SocketAddr::from(([10, 9, 9, 9], 5000));
    let target = Id::sha1_of(b"x");
    let get = Message::query(b"g1".to_vec(), Id::MAX, Query::Get { target, seq: None, want: None }).to_bytes();
    let token = match net.exchange(0, stranger, &get).unwrap().body {
        Body::Response(r) => r.token.unwrap(),
        other => panic!("{other:?}"),
    };
    let signer = ItemSigner::from_seed([9; 32]);
    let good = MutableItem::sign(&signer, b"", 1, b"1:a".to_vec()).unwrap();
    let put =
        |args: kadmos_proto::mainline::PutArgs| Message::query(b"p1".to_vec(), Id::MAX, Query::Put(args)).to_bytes();
    let mutable = |m: &MutableItem, token: &[u8]| kadmos_proto::mainline::PutArgs {
        token: token.to_vec(),
        value: m.value.clone(),
        public_key: Some(m.public_key),
        signature: Some(m.signature),
        seq: Some(m.seq),
        salt: (!m.salt.is_empty()).then(|| m.salt.clone()),
        cas: None,
        target: None,
    };
    let code = |m: Option<Message>| match m.map(|m| m.body) {
        Some(Body::Error { code, .. }) => code,
        Some(Body::Response(_)) => 0,
        other => panic!("{other:?}"),
    };
    let mut forged = good.clone();
    forged.value = b"1:b".to_vec();
    assert_eq!(code(net.exchange(0, stranger, &put(mutable(&forged, &token)))), 206);
    let mut big = mutable(&good, &token);
    big.value = format!("1000:{}", "x".repeat(1000)).into_bytes();
    assert_eq!(code(net.exchange(0, stranger, &put(big))), 205);
    let mut salty = mutable(&good, &token);
    salty.salt = Some(vec![b's'; 65]);
    assert_eq!(code(net.exchange(0, stranger, &put(salty))), 207);
    assert_eq!(code(net.exchange(0, stranger, &put(mutable(&good, b"badtoken")))), 203);
    assert!(net.nodes[0].item_store().is_empty(), "nothing stored");
    assert_eq!(code(net.exchange(0, stranger, &put(mutable(&good, &token)))), 0);
    assert_eq!(net.nodes[0].item_store().len(), 1);
}

/// Keep-alive: an item kept alive is still stored on the network three hours later (items
/// expire after two), while an item put once without keep-alive is gone, and a cancelled
/// one stops being re-put.
#[test]
fn keep_alive_outlives_expiry() {
    let mut net = joined(10);
    let kept = Item::Immutable(ImmutableItem::from_bytes(b"kept").unwrap());
    let once = Item::Immutable(ImmutableItem::from_bytes(b"once").unwrap());
    let cancelled = Item::Immutable(ImmutableItem::from_bytes(b"cancelled").unwrap());
    for item in [&kept, &once, &cancelled] {
        let now = net.now;
        net.nodes[3].put_item(now, item.clone(), None);
        net.settle();
    }
    let now = net.now;
    net.nodes[3].keep_alive(now, kept.clone());
    net.nodes[3].keep_alive(now, cancelled.clone());
    assert!(net.nodes[3].cancel_keep_alive(&cancelled.target()));
    let stored_on = |net: &Net, item: &Item| {
        net.nodes.iter().filter(|n| n.item_store().get(&item.target(), net.now).is_some()).count()
    };
    assert!(stored_on(&net, &kept) >= 8 && stored_on(&net, &once) >= 8);
    for _ in 0..(3 * 360) {
        net.advance(Duration::from_secs(10));
    }
    assert!(stored_on(&net, &kept) >= 8, "kept item stored on {} nodes", stored_on(&net, &kept));
    assert_eq!(stored_on(&net, &once), 0);
    assert_eq!(stored_on(&net, &cancelled), 0);
    assert_eq!(net.nodes[3].kept_items().count(), 1);
}

/// With `republish_interval`, nodes that store an item re-put it to the closest nodes, so it
/// outlives the 2-hour expiry although nobody keeps it alive.
#[test]
fn stored_items_are_republished() {
    let mut net = joined_with(10, |c| c.republish_interval = Some(Duration::from_secs(60 * 60)));
    let item = Item::Immutable(ImmutableItem::from_bytes(b"orphan").unwrap());
    let now = net.now;
    net.nodes[3].put_item(now, item.clone(), None);
    net.settle();
    for _ in 0..(3 * 360) {
        net.advance(Duration::from_secs(10));
    }
    let holders = net.nodes.iter().filter(|n| n.item_store().get(&item.target(), net.now).is_some()).count();
    assert!(holders >= 8, "stored on {holders} nodes after 3 hours");
}

/// The `find_node` targets a node sends when its clock moves to `at`; everything it sends is
/// delivered and answered.
fn find_node_targets_at(net: &mut Net, node: usize, at: Timestamp) -> Vec<Id> {
    net.now = at;
    net.nodes[node].handle_timeout(at);
    let mut targets = Vec::new();
    while let Some(t) = net.nodes[node].poll_transmit() {
        if let Ok(Message { body: Body::Query { query: Query::FindNode { target, .. }, .. }, .. }) =
            Message::decode(&t.payload)
        {
            targets.push(target);
        }
        if let Some(to) = (0..net.nodes.len()).find(|j| addr(*j) == t.to) {
            net.nodes[to].handle_datagram(at, addr(node), &t.payload);
        }
    }
    net.settle();
    targets
}

/// After joining, a node looks its own ID up again 30 s later, then after gaps that double
/// (so that nodes joining around it later learn of it), and not in between.
#[test]
fn joined_node_looks_itself_up_again_with_growing_gaps() {
    let mut net = joined(6);
    let own = net.nodes[5].id();
    let joined_at = net.now;
    let self_lookups = |targets: &[Id]| targets.iter().filter(|t| **t == own).count();
    // Maintenance runs every 10 s: the first self-lookup comes within 10 s after the 30 s.
    let mut seen = Vec::new();
    for second in 1..=500u64 {
        let targets = find_node_targets_at(&mut net, 5, joined_at + Duration::from_secs(second));
        if self_lookups(&targets) > 0 {
            seen.push(second);
        }
    }
    assert!(seen.len() >= 4, "self-lookups at {seen:?}");
    assert!((30..=40).contains(&seen[0]), "first at {}", seen[0]);
    let gaps: Vec<u64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0] + 20), "gaps {gaps:?} should double");
}

/// The node's queries carry random 4-byte transaction IDs (the `mainline` crate ignores any
/// other length); an answer counts only with the whole ID and from the address asked, and the
/// node still answers queries whose transaction ID has another length (BEP 5 allows any).
#[test]
fn queries_carry_four_byte_transaction_ids() {
    let mut net = Net::new(1);
    let stranger = SocketAddr::from(([10, 9, 9, 9], 6881));
    let mut sent = Vec::new();
    for _ in 0..4 {
        let now = net.now;
        let query = net.nodes[0].ping(now, stranger);
        let t = net.nodes[0].poll_transmit().expect("a ping goes out");
        assert_eq!(t.to, stranger);
        let message = Message::decode(&t.payload).unwrap();
        assert!(matches!(message.body, Body::Query { query: Query::Ping, .. }), "{message:?}");
        assert_eq!(message.transaction_id.len(), 4, "{:?}", message.transaction_id);
        sent.push((query, message.transaction_id));
    }
    let mut ids: Vec<_> = sent.iter().map(|(_, tid)| tid.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "transaction IDs are drawn afresh: {ids:?}");

    let pong = |tid: Vec<u8>| {
        let response = kadmos_proto::mainline::Response { id: Id::sha1_of(b"stranger"), ..Default::default() };
        Message::response(tid, response).to_bytes()
    };
    let (query, tid) = sent[0].clone();
    let now = net.now;
    // A prefix of the ID, or the ID from another address, does not answer the ping.
    net.nodes[0].handle_datagram(now, stranger, &pong(tid[..2].to_vec()));
    net.nodes[0].handle_datagram(now, SocketAddr::from(([10, 9, 9, 8], 6881)), &pong(tid.clone()));
    net.settle();
    assert!(net.finished(0, query).is_none(), "answered by a partial ID or a stranger");
    net.nodes[0].handle_datagram(now, stranger, &pong(tid));
    net.settle();
    assert!(matches!(net.finished(0, query), Some(CommandResult::Ping(Ok(Pong { addr, .. }))) if *addr == stranger));

    for tid in [&b"a"[..], b"ab", b"abcdefgh"] {
        let ping = Message::query(tid.to_vec(), Id::sha1_of(b"asker"), Query::Ping).to_bytes();
        let answer = net.exchange(0, SocketAddr::from(([10, 7, 7, 7], 6881)), &ping).expect("an answer");
        assert_eq!(answer.transaction_id, tid);
    }
}

/// Runs a store (announce or put) from node 5 of a joined network whose node closest to
/// `target` answers lookups but loses every store datagram (`method`, as bencoded); returns
/// the virtual time the store took and the nodes it reports having stored at.
fn store_with_a_silent_node(
    target: Id,
    method: &'static [u8],
    start: impl FnOnce(&mut Node, Timestamp) -> kadmos_proto::mainline::QueryId,
) -> (Duration, Vec<SocketAddr>, SocketAddr) {
    let mut net = joined(12);
    let silent = (0..12).filter(|i| *i != 5).min_by_key(|i| net.nodes[*i].id().distance(&target)).unwrap();
    net.lose = Some((silent, method));
    let started = net.now;
    let q = start(&mut net.nodes[5], started);
    net.settle();
    while net.finished(5, q).is_none() {
        let next = net.nodes[5].poll_timeout().expect("a store is running");
        assert!(next > net.now, "time moves on");
        net.advance(next.saturating_since(net.now));
    }
    let Some(CommandResult::Announce(Stored { stored_at, .. }) | CommandResult::PutItem(Stored { stored_at, .. })) =
        net.finished(5, q)
    else {
        panic!("{:?}", net.finished(5, q))
    };
    (net.now.saturating_since(started), stored_at.iter().map(|(_, a)| *a).collect(), addr(silent))
}

/// A storing node that gave its token but never answers the store (dead since, or its
/// datagrams lost) no longer holds an announce, nor a BEP 44 put, for the full request
/// timeout: the store round ends once that node stalls, well before the timeout, and reports
/// the nodes that did store.
#[test]
fn a_silent_storing_node_does_not_hold_a_store_for_a_timeout() {
    let timeout = Config::new(Id::ZERO, 0).request_timeout;
    let info_hash = Id::sha1_of(b"torrent");
    let (took, stored_at, silent) =
        store_with_a_silent_node(info_hash, b"13:announce_peer", |n, now| n.announce_peer(now, info_hash, Some(7000)));
    assert!(took < timeout / 2, "the announce took {took:?}");
    assert!(stored_at.len() >= 7 && !stored_at.contains(&silent), "{stored_at:?}");

    let item = Item::Immutable(ImmutableItem::from_bytes(b"a stored item").unwrap());
    let target = item.target();
    let (took, stored_at, silent) = store_with_a_silent_node(target, b"1:q3:put", |n, now| n.put_item(now, item, None));
    assert!(took < timeout / 2, "the put took {took:?}");
    assert!(stored_at.len() >= 7 && !stored_at.contains(&silent), "{stored_at:?}");
}
