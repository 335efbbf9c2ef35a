//! Deterministic scenarios: a few sans-IO OpenDHT nodes exchanging datagrams on virtual time,
//! with exact checks on what they send and report; then (unless `KADMOS_SKIP_INTEROP=1`) one
//! kadmos node against a real OpenDHT 4.4.2 node over loopback UDP.

use std::collections::{BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use kadmos_proto::kad::KademliaNode;
use kadmos_proto::opendht::{error_code, Body, ListenArgs, Message, PutArgs, Reply, Request, ValueSlot};
use kadmos_proto::opendht::{
    CommandResult, Config, Event, Node, QueryId, StorageConfig, Stored, Value, ValueId, ValueType,
};
use kadmos_proto::opendht::{Field, FieldValue, FieldValues, Query};
use kadmos_proto::{Id, Timestamp};
use proptest::prelude::*;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4222))
}

fn key(name: &str) -> Id {
    Id::sha1_of(name.as_bytes())
}

/// Nodes on a lossless network with instant delivery; time moves only when asked, stopping at
/// every timer a node asks for.
struct Net {
    nodes: Vec<Node>,
    now: Timestamp,
    events: Vec<(usize, Event)>,
    /// Datagrams sent to addresses that are not nodes (strangers in tests).
    outside: Vec<(usize, SocketAddr, Vec<u8>)>,
    /// A digest of every datagram delivered, in order.
    trace: Id,
}

impl Net {
    fn with_config(n: usize, config: impl Fn(usize) -> Config) -> Net {
        let nodes = (0..n)
            .map(|i| {
                let mut node = Node::new(config(i), Timestamp::ZERO);
                // These scenarios are about storage, listen and search, and use made-up
                // signatures (see `signed`); RSA checks are tested in `opendht_crypto.rs`.
                node.set_signature_verifier(Box::new(kadmos_proto::opendht::UnverifiedSignatures));
                node
            })
            .collect();
        Net { nodes, now: Timestamp::ZERO, events: Vec::new(), outside: Vec::new(), trace: Id::ZERO }
    }

    fn new(n: usize) -> Net {
        Net::with_config(n, |i| Config::new(Id::sha1_of(format!("odht node {i}").as_bytes()), i as u64))
    }

    /// `n` nodes joining one by one through node 0.
    fn joined(n: usize) -> Net {
        let mut net = Net::new(n);
        for i in 1..n {
            let now = net.now;
            net.nodes[i].bootstrap(now, &[addr(0)], &[]);
            net.settle();
            net.advance(Duration::from_secs(1));
        }
        net.advance(Duration::from_secs(5));
        net
    }

    /// Delivers datagrams until the network is quiet.
    fn settle(&mut self) {
        let mut queue = VecDeque::new();
        for _ in 0..1_000_000 {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = node.poll_transmit() {
                    queue.push_back((i, t));
                }
                while let Some(e) = node.poll_event() {
                    self.events.push((i, e));
                }
            }
            let Some((from, t)) = queue.pop_front() else { return };
            self.trace = Id::sha1_of(&[self.trace.as_bytes(), &t.payload[..]].concat());
            match (0..self.nodes.len()).find(|j| addr(*j) == t.to) {
                Some(to) => self.nodes[to].handle_datagram(self.now, addr(from), &t.payload),
                None => self.outside.push((from, t.to, t.payload)),
            }
        }
        panic!("the network never settles");
    }

    /// Moves time forward by `by`, running every timer on the way.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        for _ in 0..1_000_000 {
            let next = self.nodes.iter_mut().filter_map(|n| n.poll_timeout()).min().unwrap_or(end);
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            for node in &mut self.nodes {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
            self.settle();
        }
        self.now = end;
    }

    fn finished(&self, node: usize, query: QueryId) -> Option<&CommandResult> {
        self.events.iter().find_map(|(i, e)| match e {
            Event::Finished { query: q, result } if *i == node && *q == query => Some(result),
            _ => None,
        })
    }

    /// `(value, expired)` events of one query, in order.
    fn values(&self, node: usize, query: QueryId) -> Vec<(Value, bool)> {
        self.events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Value { query: q, value, expired } if *i == node && *q == query => {
                    Some((value.clone(), *expired))
                }
                _ => None,
            })
            .collect()
    }

    /// Runs a get to completion and returns the ids it reported.
    fn get_ids(&mut self, node: usize, k: Id, filter: Query) -> BTreeSet<ValueId> {
        let now = self.now;
        let q = self.nodes[node].get(now, k, filter);
        self.settle();
        self.advance(Duration::from_secs(3));
        assert!(self.finished(node, q).is_some(), "get did not finish");
        self.values(node, q).into_iter().map(|(v, _)| v.id).collect()
    }

    fn put(&mut self, node: usize, k: Id, value: Value, permanent: bool) -> CommandResult {
        let now = self.now;
        let q = self.nodes[node].put(now, k, value, permanent);
        self.settle();
        self.advance(Duration::from_secs(3));
        self.finished(node, q).cloned().expect("put did not finish")
    }

    /// Nodes storing value `id` under `k`.
    fn holders(&self, k: &Id, id: ValueId) -> usize {
        self.nodes.iter().filter(|n| n.storage().get_stored(k, id).is_some()).count()
    }

    /// Sends a datagram to node `to` from a stranger and returns everything the node sends back
    /// to it (what it sends elsewhere goes to `outside`).
    fn exchange(&mut self, to: usize, from: SocketAddr, datagram: &[u8]) -> Vec<Message> {
        self.nodes[to].handle_datagram(self.now, from, datagram);
        let mut answers = Vec::new();
        while let Some(t) = self.nodes[to].poll_transmit() {
            if t.to == from {
                answers.push(Message::decode(&t.payload).expect("node sends valid messages"));
            } else {
                self.outside.push((to, t.to, t.payload));
            }
        }
        answers
    }

    fn check_invariants(&self) {
        for node in &self.nodes {
            node.storage().check_invariants().unwrap();
            for family in kadmos_proto::opendht::Family::ALL {
                if let Some(table) = node.routing_table(family) {
                    table.check_invariants().unwrap();
                }
            }
            for parallelism in node.lookup_parallelism() {
                assert_eq!(parallelism.violation(), None);
            }
        }
    }
}

/// The first answer (reply or error) among messages sent to a stranger (a node may also ping it).
fn answer(messages: &[Message]) -> &Message {
    messages.iter().find(|m| !matches!(m.body, Body::Request { .. })).expect("an answer")
}

fn reply_of(m: &Message) -> &Reply {
    match &m.body {
        Body::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn error_of(m: &Message) -> u16 {
    match &m.body {
        Body::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn stored_at(result: &CommandResult) -> usize {
    match result {
        CommandResult::Put(Ok(Stored { stored_at, .. })) => stored_at.len(),
        other => panic!("expected Stored, got {other:?}"),
    }
}

/// A signed value with a made-up signature (the scenario nodes accept any signature; each seq
/// gets its own signature bytes, as a real one would).
fn signed(id: ValueId, owner: &[u8], seq: u16, data: &[u8]) -> Value {
    Value {
        id,
        data: data.to_vec(),
        owner: Some(owner.to_vec()),
        seq,
        signature: [owner, &seq.to_be_bytes()].concat(),
        ..Value::default()
    }
}

/// Twelve nodes join; two nodes put three values under one key; a third node's get reports all
/// three (each once) and finishes; filters on id, user type and seq select the right ones (seq is
/// filtered locally, since OpenDHT nodes cannot read it); every value sits on the 8 nodes
/// closest to the key, plus the putting node's own copy.
/// Each command reports its own typed result: on a node that knows nobody, a find, a get and
/// a put fail with `NoContacts` and a bootstrap that reached nobody ends with no nodes; a ping
/// to a node it names by address comes back as a pong from that node.
#[test]
fn each_command_reports_its_own_result() {
    let mut net = Net::new(2);
    let (now, k) = (net.now, key("nobody"));
    let node = &mut net.nodes[0];
    let find = node.find_node(now, k);
    let get = node.get(now, k, kadmos_proto::opendht::Query::default());
    let put = node.put(now, k, Value::new(1, 0, *b"nobody"), false);
    let join = node.bootstrap(now, &[], &[]);
    let ping = node.ping(now, addr(1));
    net.settle();
    let no_contacts = Err(kadmos_proto::opendht::QueryError::NoContacts);
    assert_eq!(net.finished(0, find), Some(&CommandResult::FindNode(no_contacts.clone())));
    assert_eq!(net.finished(0, get), Some(&CommandResult::Get(no_contacts)));
    assert_eq!(net.finished(0, put), Some(&CommandResult::Put(Err(kadmos_proto::opendht::QueryError::NoContacts))));
    assert!(matches!(net.finished(0, join), Some(CommandResult::Bootstrap(c)) if c.nodes.is_empty()));
    let pong = kadmos_proto::opendht::Pong { id: net.nodes[1].id(), addr: addr(1) };
    assert_eq!(net.finished(0, ping), Some(&CommandResult::Ping(Ok(pong))));
}

#[test]
fn multi_value_put_and_get() {
    let mut net = Net::joined(12);
    let k = key("multi");
    let mut v1 = Value::new(1, 0, *b"one");
    v1.user_type = "text/plain".into();
    let v2 = signed(2, b"alice", 7, b"two");
    let v3 = Value::new(3, 0, *b"three");
    assert!(stored_at(&net.put(3, k, v1, false)) >= 8);
    assert!(stored_at(&net.put(3, k, v2, false)) >= 8);
    assert!(stored_at(&net.put(7, k, v3, false)) >= 8);
    for id in 1..=3 {
        assert!(net.holders(&k, id) >= 8, "value {id} on {} nodes", net.holders(&k, id));
    }
    assert_eq!(net.get_ids(10, k, Query::default()), BTreeSet::from([1, 2, 3]));
    let got: Vec<_> = net.events.iter().filter(|(i, e)| *i == 10 && matches!(e, Event::Value { .. })).collect();
    assert_eq!(got.len(), 3, "each value once: {got:?}");
    assert_eq!(net.get_ids(11, k, Query::default().and_where(FieldValue::Id(2))), BTreeSet::from([2]));
    let text = Query::default().and_where(FieldValue::UserType(b"text/plain".to_vec()));
    assert_eq!(net.get_ids(11, k, text), BTreeSet::from([1]));
    assert_eq!(net.get_ids(11, k, Query::default().and_where(FieldValue::SeqNum(7))), BTreeSet::from([2]));
    assert!(net.get_ids(11, key("empty"), Query::default()).is_empty());
    net.check_invariants();
}

/// A 20 KB value travels in fragments both ways (put, then a get answer) and arrives intact.
#[test]
fn large_values_travel_in_fragments() {
    let mut net = Net::joined(10);
    let k = key("large");
    let big = Value::new(9, 0, (0..20_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    assert!(stored_at(&net.put(2, k, big.clone(), false)) >= 8);
    let now = net.now;
    let q = net.nodes[6].get(now, k, Query::default());
    net.settle();
    net.advance(Duration::from_secs(3));
    assert_eq!(net.values(6, q), vec![(big, false)]);
    assert!(net.nodes.iter().all(|n| n.partial_messages() == 0));
}

/// The same seeds give the same run: every datagram and every event is identical when a
/// scenario (joins, puts, a get, a listen, expiries) is played twice.
#[test]
fn runs_replay_from_their_seeds() {
    let run = || {
        let mut net = Net::joined(8);
        let k = key("replay");
        let now = net.now;
        net.nodes[1].listen(now, k, Query::default());
        net.put(2, k, Value::new(0, ValueType::ICE_CANDIDATES.id, *b"random id"), true);
        net.put(3, k, Value::new(5, 0, vec![7; 3000]), false);
        net.get_ids(4, k, Query::default());
        net.advance(Duration::from_secs(180));
        (net.trace, net.events)
    };
    let (first, second) = (run(), run());
    assert_ne!(first.0, Id::ZERO);
    assert_eq!(first, second);
}

/// Values live as long as their type says: an ICE candidate (1 minute) is still everywhere at
/// 59 s and gone from every node at 60 s, while user data (10 minutes) stays.
#[test]
fn values_expire_by_type() {
    let mut net = Net::joined(10);
    let k = key("ttl");
    let ice = Value::new(1, ValueType::ICE_CANDIDATES.id, *b"candidate");
    let data = Value::new(2, ValueType::USER_DATA.id, *b"data");
    let start = net.now;
    net.put(1, k, ice, false);
    net.put(1, k, data, false);
    let elapsed = net.now.saturating_since(start);
    net.advance(Duration::from_secs(59) - elapsed);
    assert!(net.holders(&k, 1) >= 8);
    net.advance(Duration::from_secs(1));
    assert_eq!(net.holders(&k, 1), 0, "expired at its exact time on every node");
    assert!(net.holders(&k, 2) >= 8);
    assert_eq!(net.get_ids(5, k, Query::default()), BTreeSet::from([2]));
    net.advance(Duration::from_secs(10 * 60));
    assert_eq!(net.holders(&k, 2), 0);
}

/// A listen reports a value put from another node once, then its expiry once; it renews its
/// subscriptions, so a put 15 minutes later (past the 10-minute listener lifetime) still
/// arrives; filters apply; after `cancel_listen` nothing more is reported.
#[test]
fn listen_reports_puts_and_expiries() {
    let mut net = Net::joined(12);
    let k = key("listened");
    // Listeners far from the key, so that what they hear comes over the network.
    let mut by_distance: Vec<usize> = (0..12).filter(|i| ![5, 8, 9].contains(i)).collect();
    by_distance.sort_by_key(|i| std::cmp::Reverse(net.nodes[*i].id().distance(&k)));
    let (far, farther) = (by_distance[1], by_distance[0]);
    let now = net.now;
    let l = net.nodes[far].listen(now, k, Query::default());
    let filtered = net.nodes[farther].listen(now, k, Query::default().and_where(FieldValue::Id(5)));
    net.settle();
    net.advance(Duration::from_secs(2));
    assert_eq!(net.nodes[far].listen_subscriptions(l).len(), 4);
    let ice = Value::new(1, ValueType::ICE_CANDIDATES.id, *b"ring");
    net.put(5, k, ice.clone(), false);
    assert!(net.nodes[far].storage().get_stored(&k, 1).is_none(), "heard remotely");
    assert_eq!(net.values(far, l), vec![(ice.clone(), false)]);
    net.advance(Duration::from_secs(70));
    assert_eq!(net.values(far, l), vec![(ice.clone(), false), (ice.clone(), true)]);
    assert!(net.values(farther, filtered).is_empty(), "filtered out");
    net.advance(Duration::from_secs(15 * 60));
    let later = Value::new(5, 0, *b"later");
    net.put(8, k, later.clone(), false);
    assert_eq!(net.values(far, l).last(), Some(&(later.clone(), false)));
    assert_eq!(net.values(farther, filtered), vec![(later, false)]);
    assert!(net.nodes[far].cancel_listen(l));
    let count = net.values(far, l).len();
    net.put(9, k, Value::new(6, 0, *b"unheard"), false);
    net.advance(Duration::from_secs(60));
    assert_eq!(net.values(far, l).len(), count);
    net.check_invariants();
}

/// A listen started after a value was put reports it (found by its search); when the storing
/// nodes refresh a value the listener keeps it, and when the putting node's own listen holds
/// the value locally it is reported from its own storage first.
#[test]
fn listen_reports_existing_values() {
    let mut net = Net::joined(10);
    let k = key("existing");
    let v = Value::new(4, 0, *b"already there");
    net.put(1, k, v.clone(), false);
    let now = net.now;
    let remote = net.nodes[6].listen(now, k, Query::default());
    let local = net.nodes[1].listen(now, k, Query::default());
    net.settle();
    net.advance(Duration::from_secs(3));
    assert_eq!(net.values(6, remote), vec![(v.clone(), false)]);
    assert_eq!(net.values(1, local), vec![(v.clone(), false)]);
    // Re-putting the same value refreshes it everywhere: no new report, no expiry at 10 minutes.
    net.advance(Duration::from_secs(8 * 60));
    net.put(1, k, v.clone(), false);
    net.advance(Duration::from_secs(4 * 60));
    assert_eq!(net.values(6, remote), vec![(v.clone(), false)]);
    net.advance(Duration::from_secs(8 * 60));
    assert_eq!(net.values(6, remote), vec![(v.clone(), false), (v, true)]);
}

/// A permanent value of a short-lived type (1 minute) is refreshed by its node and still found
/// 5 minutes later, when a non-permanent one put at the same time is long gone; after
/// `cancel_put` it expires everywhere.
#[test]
fn permanent_values_are_refreshed() {
    let mut net = Net::joined(10);
    let k = key("permanent");
    let kept = Value::new(1, ValueType::ICE_CANDIDATES.id, *b"kept");
    let once = Value::new(2, ValueType::ICE_CANDIDATES.id, *b"once");
    assert!(stored_at(&net.put(3, k, kept, true)) >= 8);
    net.put(3, k, once, false);
    net.advance(Duration::from_secs(5 * 60));
    assert_eq!(net.get_ids(7, k, Query::default()), BTreeSet::from([1]));
    assert!(net.holders(&k, 1) >= 8);
    assert_eq!(net.nodes[3].permanent_puts().count(), 1);
    let now = net.now;
    assert!(net.nodes[3].cancel_put(now, k, 1));
    assert!(!net.nodes[3].cancel_put(now, k, 1));
    net.advance(Duration::from_secs(2 * 60));
    assert_eq!(net.holders(&k, 1), 0);
    assert!(net.get_ids(7, k, Query::default()).is_empty());
}

/// A permanent put probes, finds a node claiming to hold the value, refreshes it there, and on
/// the 404 answer puts it instead: the exact message sequence between one node and a scripted
/// peer.
#[test]
fn refresh_answered_404_becomes_put() {
    let mut net = Net::new(1);
    let peer = SocketAddr::from(([10, 9, 0, 1], 4222));
    let peer_id = key("scripted peer");
    let answer_with = |tid, reply: Reply| Message::reply(tid, reply).to_bytes();
    let base = Reply { id: peer_id, requester: Some(addr(0).ip()), ..Reply::default() };
    let request_to_peer = |net: &mut Net| {
        let t = net.nodes[0].poll_transmit().expect("a request");
        assert_eq!(t.to, peer);
        Message::decode(&t.payload).unwrap()
    };
    // Join through the peer, answering its finds (it asks the router, then the router again as
    // a node of the search).
    let now = net.now;
    net.nodes[0].bootstrap(now, &[peer], &[]);
    let mut pending = vec![request_to_peer(&mut net)];
    while let Some(find) = pending.pop() {
        assert!(matches!(find.body, Body::Request { request: Request::Find { .. }, .. }), "{find:?}");
        pending.extend(net.exchange(0, peer, &answer_with(find.tid, base.clone())));
    }
    net.advance(Duration::from_secs(3));
    while net.nodes[0].poll_transmit().is_some() {}
    let k = key("404");
    let value = Value::new(77, 0, *b"permanent");
    let now = net.now;
    let q = net.nodes[0].put(now, k, value.clone(), true);
    // 1. The probe: get SELECT id,seq WHERE id=77.
    let probe = request_to_peer(&mut net);
    let Body::Request { request: Request::Get { key: probe_key, query: Some(query), .. }, .. } = &probe.body else {
        panic!("{probe:?}")
    };
    assert_eq!(*probe_key, k);
    assert_eq!(query.to_string(), "SELECT id,seq WHERE id=77");
    let rows = vec![vec![FieldValue::Id(77), FieldValue::SeqNum(0)]];
    let claims = FieldValues { fields: vec![Field::Id, Field::SeqNum], rows };
    let token = vec![7u8; 32];
    let probed = Reply { token: token.clone(), fields: Some(claims), ..base.clone() };
    // 2. The peer claims to hold it: a refresh follows.
    let out = net.exchange(0, peer, &answer_with(probe.tid, probed));
    let [refresh] = &out[..] else { panic!("{out:?}") };
    assert!(
        matches!(&refresh.body, Body::Request { request: Request::Refresh { key: rk, value_id: 77, token: t }, .. } if *rk == k && *t == token),
        "{refresh:?}"
    );
    // 3. 404: the value is put instead, with the same token.
    let not_found = Message::error(refresh.tid, error_code::NOT_FOUND, "storage not found", peer_id).to_bytes();
    let out = net.exchange(0, peer, &not_found);
    let [put] = &out[..] else { panic!("{out:?}") };
    let Body::Request { request: Request::Put(args), .. } = &put.body else { panic!("{put:?}") };
    assert_eq!((args.key, &args.token, &args.values), (k, &token, &vec![ValueSlot::Value(value)]));
    net.exchange(0, peer, &answer_with(put.tid, Reply { value_id: Some(77), ..base.clone() }));
    net.settle();
    assert_eq!(stored_at(net.finished(0, q).unwrap()), 1);
}

/// Tokens: put, listen and refresh with a wrong token, or a token issued to another port, are
/// refused with 401; the right token works; a refresh of something not stored is 404; a value id
/// of 0 is 203; nothing is stored on refusal.
#[test]
fn tokens_are_checked() {
    let mut net = Net::new(1);
    let me = SocketAddr::from(([10, 9, 9, 9], 5000));
    let other_port = SocketAddr::from(([10, 9, 9, 9], 5001));
    let k = key("tokens");
    let stranger = key("stranger");
    let request = |tid, r| Message::request(tid, stranger, r).to_bytes();
    let get = request(1, Request::Get { key: k, query: None, want: None });
    let token = reply_of(answer(&net.exchange(0, me, &get))).token.clone();
    assert_eq!(token.len(), 32);
    let value = Value::new(5, 0, *b"v");
    let put = |token: Vec<u8>, v: &Value| {
        request(2, Request::Put(PutArgs { key: k, token, values: vec![ValueSlot::Value(v.clone())], created: None }))
    };
    for bad in [vec![], vec![0; 32], token[..31].to_vec()] {
        assert_eq!(error_of(answer(&net.exchange(0, me, &put(bad, &value)))), error_code::UNAUTHORIZED);
    }
    assert_eq!(error_of(answer(&net.exchange(0, other_port, &put(token.clone(), &value)))), error_code::UNAUTHORIZED);
    assert!(net.nodes[0].storage().is_empty());
    let listen =
        |token| request(3, Request::Listen(ListenArgs { key: k, token, socket_id: 9, version: Some(1), query: None }));
    assert_eq!(error_of(answer(&net.exchange(0, me, &listen(vec![1; 32])))), error_code::UNAUTHORIZED);
    let refresh = |token, key| request(4, Request::Refresh { key, token, value_id: 5 });
    assert_eq!(error_of(answer(&net.exchange(0, me, &refresh(vec![1; 32], k)))), error_code::UNAUTHORIZED);
    assert_eq!(error_of(answer(&net.exchange(0, me, &refresh(token.clone(), k)))), error_code::NOT_FOUND);
    assert_eq!(
        error_of(answer(&net.exchange(0, me, &put(token.clone(), &Value::new(0, 0, *b"no id"))))),
        error_code::NON_AUTHORITATIVE_INFORMATION
    );
    let stored = net.exchange(0, me, &put(token.clone(), &value));
    assert_eq!(reply_of(answer(&stored)).value_id, Some(5));
    assert!(net.nodes[0].storage().get_stored(&k, 5).is_some());
    assert_eq!(reply_of(answer(&net.exchange(0, me, &refresh(token.clone(), k)))).value_id, Some(5));
    assert_eq!(
        error_of(answer(&net.exchange(0, me, &refresh(token.clone(), key("elsewhere"))))),
        error_code::NOT_FOUND
    );
    assert!(reply_of(answer(&net.exchange(0, me, &listen(token)))).token.len() == 32);
}

/// Over the wire, a signed value is replaced only by its owner with a higher seq; an unsigned
/// value is never replaced by different content; refusals are answered like successes (as
/// OpenDHT does) but change nothing.
#[test]
fn owner_and_seq_rule_over_the_wire() {
    let mut net = Net::new(1);
    let me = SocketAddr::from(([10, 9, 9, 9], 5000));
    let k = key("owned");
    let stranger = key("stranger");
    let token = {
        let get = Message::request(1, stranger, Request::Get { key: k, query: None, want: None }).to_bytes();
        reply_of(answer(&net.exchange(0, me, &get))).token.clone()
    };
    let put = |net: &mut Net, v: Value| {
        let r =
            Request::Put(PutArgs { key: k, token: token.clone(), values: vec![ValueSlot::Value(v)], created: None });
        let answers = net.exchange(0, me, &Message::request(2, stranger, r).to_bytes());
        assert!(reply_of(answer(&answers)).value_id.is_some());
    };
    let data = |net: &Net, id| net.nodes[0].storage().get_stored(&k, id).unwrap().value.data.clone();
    put(&mut net, signed(1, b"alice", 3, b"v3"));
    put(&mut net, signed(1, b"mallory", 9, b"stolen"));
    assert_eq!(data(&net, 1), b"v3");
    put(&mut net, signed(1, b"alice", 2, b"v2"));
    assert_eq!(data(&net, 1), b"v3");
    put(&mut net, signed(1, b"alice", 4, b"v4"));
    assert_eq!(data(&net, 1), b"v4");
    put(&mut net, Value::new(2, 0, *b"first"));
    put(&mut net, Value::new(2, 0, *b"second"));
    assert_eq!(data(&net, 2), b"first");
    assert_eq!(net.nodes[0].counters().values_refused, 3);
}

/// With a 1000-byte remote limit, a put that goes over evicts the soonest-expiring value of the
/// address storing most, and a remote listener is told with an `update {exp}`; listener limits
/// refuse a 65th listener from one address with 203.
#[test]
fn storage_limits_evict_and_notify() {
    let mut net = Net::with_config(1, |_| {
        let mut c = Config::new(key("small node"), 1);
        c.storage = StorageConfig { max_remote_bytes: 1000, ..StorageConfig::default() };
        c
    });
    let heavy = SocketAddr::from(([10, 1, 1, 1], 4000));
    let light = SocketAddr::from(([10, 2, 2, 2], 4000));
    let listener = SocketAddr::from(([10, 3, 3, 3], 4000));
    let k = key("full");
    let stranger = key("stranger");
    let token_for = |net: &mut Net, from| {
        let get = Message::request(1, stranger, Request::Get { key: k, query: None, want: None }).to_bytes();
        reply_of(answer(&net.exchange(0, from, &get))).token.clone()
    };
    let put = |net: &mut Net, from, token: &Vec<u8>, v: Value| {
        let r =
            Request::Put(PutArgs { key: k, token: token.clone(), values: vec![ValueSlot::Value(v)], created: None });
        net.exchange(0, from, &Message::request(2, stranger, r).to_bytes())
    };
    let (th, tl, tlisten) = (token_for(&mut net, heavy), token_for(&mut net, light), token_for(&mut net, listener));
    let listen =
        Request::Listen(ListenArgs { key: k, token: tlisten.clone(), socket_id: 33, version: Some(1), query: None });
    net.exchange(0, listener, &Message::request(3, stranger, listen).to_bytes());
    put(&mut net, heavy, &th, Value::new(1, 0, vec![1; 400]));
    net.advance(Duration::from_secs(1));
    put(&mut net, heavy, &th, Value::new(2, 0, vec![2; 400]));
    let answers = put(&mut net, light, &tl, Value::new(3, 0, vec![3; 300]));
    assert_eq!(reply_of(answer(&answers)).value_id, Some(3));
    let stored: Vec<ValueId> = net.nodes[0].storage().get(&k, None).map(|v| v.id).collect();
    assert_eq!(stored, vec![2, 3], "value 1 (heavy source, expiring first) evicted");
    let pushes: Vec<Message> =
        net.outside.iter().filter(|(_, to, _)| *to == listener).map(|(_, _, p)| Message::decode(p).unwrap()).collect();
    let expired: Vec<ValueId> = pushes
        .iter()
        .filter_map(|m| match &m.body {
            Body::Request { request: Request::Update(u), .. } if u.socket_id == 33 => Some(u.expired.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(expired, vec![1]);
    net.nodes[0].storage().check_invariants().unwrap();
    for sid in 0..65u32 {
        let l = Request::Listen(ListenArgs {
            key: k,
            token: tlisten.clone(),
            socket_id: 1000 + sid,
            version: Some(1),
            query: None,
        });
        let answer = net.exchange(0, listener, &Message::request(10 + sid, stranger, l).to_bytes());
        let last = answer.last().unwrap();
        if sid < 63 {
            assert!(matches!(last.body, Body::Reply(_)), "listener {sid}: {last:?}");
        } else {
            assert_eq!(error_of(last), error_code::NON_AUTHORITATIVE_INFORMATION, "listener {sid}");
        }
    }
}

/// A node that knows at least 8 nodes all closer to a key than itself answers a put there with
/// `{vid}` but does not store it (OpenDHT's rule against storing far from the key).
#[test]
fn puts_far_from_the_key_are_ignored() {
    let mut net = Net::joined(20);
    let k = key("far");
    let farthest = (0..net.nodes.len()).max_by_key(|i| net.nodes[*i].id().distance(&k)).expect("nodes");
    let me = SocketAddr::from(([10, 9, 9, 9], 5000));
    let stranger = key("stranger");
    let get = Message::request(1, stranger, Request::Get { key: k, query: None, want: None }).to_bytes();
    let token = reply_of(answer(&net.exchange(farthest, me, &get))).token.clone();
    let put =
        Request::Put(PutArgs { key: k, token, values: vec![ValueSlot::Value(Value::new(1, 0, *b"x"))], created: None });
    let answers = net.exchange(farthest, me, &Message::request(2, stranger, put).to_bytes());
    assert_eq!(reply_of(answer(&answers)).value_id, Some(1));
    assert!(net.nodes[farthest].storage().is_empty());
    assert_eq!(net.nodes[farthest].counters().puts_outside_radius, 1);
}

/// Hostile traffic: announced fragmented messages from many transaction ids stay within the
/// partial-message limit, early fragment floods are bounded, and partial messages are dropped
/// after 10 s; the node stays consistent.
#[test]
fn fragment_floods_are_bounded() {
    let mut net = Net::joined(3);
    let me = SocketAddr::from(([10, 9, 9, 9], 5000));
    let stranger = key("stranger");
    let token = {
        let get = Message::request(1, stranger, Request::Get { key: key("k"), query: None, want: None }).to_bytes();
        reply_of(answer(&net.exchange(0, me, &get))).token.clone()
    };
    for tid in 0..500u32 {
        let put =
            PutArgs { key: key("k"), token: token.clone(), values: vec![ValueSlot::Announced(60_000)], created: None };
        net.exchange(0, me, &Message::request(tid, stranger, Request::Put(put)).to_bytes());
        let part = kadmos_proto::opendht::ValueParts {
            fragments: [(0u32, kadmos_proto::opendht::Fragment { offset: 0, data: vec![0; 1000] })].into(),
        };
        net.exchange(0, me, &Message::value_parts(10_000 + tid, part).to_bytes());
        assert!(net.nodes[0].partial_messages() <= 64);
    }
    net.advance(Duration::from_secs(11));
    assert_eq!(net.nodes[0].partial_messages(), 0);
    net.check_invariants();
}

fn captured_like_datagrams() -> Vec<Vec<u8>> {
    let id = key("fuzzer");
    let k = key("k");
    let token = vec![1; 32];
    let requests = vec![
        Request::Ping,
        Request::Find { target: k, want: None },
        Request::Get { key: k, query: Some(Query::select([Field::Id]).and_where(FieldValue::Id(1))), want: None },
        Request::Put(PutArgs {
            key: k,
            token: token.clone(),
            values: vec![ValueSlot::Value(signed(1, b"o", 1, b"d"))],
            created: Some(5),
        }),
        Request::Listen(ListenArgs { key: k, token: token.clone(), socket_id: 3, version: Some(1), query: None }),
        Request::Refresh { key: k, token, value_id: 1 },
    ];
    let mut out: Vec<Vec<u8>> = requests.into_iter().map(|r| Message::request(7, id, r).to_bytes()).collect();
    out.push(Message::reply(7, Reply { id, values: vec![ValueSlot::Announced(3000)], ..Reply::default() }).to_bytes());
    out.push(Message::error(7, 404, "x", id).to_bytes());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes and mutated valid datagrams, from many addresses, never panic a node that
    /// has values, listeners and operations in flight, and leave its storage consistent.
    #[test]
    fn hostile_input_never_panics(
        seed in any::<u64>(),
        inputs in proptest::collection::vec((any::<u8>(), any::<usize>(), proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), proptest::collection::vec(any::<u8>(), 0..64)), 1..40),
    ) {
        let mut node = Node::new(Config::new(Id::sha1_of(&seed.to_be_bytes()), seed), Timestamp::ZERO);
        let now = Timestamp::ZERO + Duration::from_secs(1);
        node.put(now, key("k"), Value::new(1, 0, *b"mine"), true);
        node.listen(now, key("k"), Query::default());
        node.bootstrap(now, &[addr(1)], &[]);
        let base = captured_like_datagrams();
        for (i, (from, pick, edits, random)) in inputs.into_iter().enumerate() {
            let mut datagram = if pick % 3 == 0 { random } else { base[pick % base.len()].clone() };
            for (at, byte) in edits {
                if !datagram.is_empty() {
                    let len = datagram.len();
                    datagram[at % len] = byte;
                }
            }
            let source = SocketAddr::from(([10, 7, 0, from % 8], 4000 + u16::from(from)));
            let t = now + Duration::from_millis(i as u64 * 100);
            node.handle_datagram(t, source, &datagram);
            node.handle_timeout(t);
            while node.poll_transmit().is_some() {}
            while node.poll_event().is_some() {}
        }
        prop_assert!(node.storage().check_invariants().is_ok());
        prop_assert!(node.partial_messages() <= 64);
    }
}

// ------------------------------------------------------------------ a real OpenDHT node

mod interop {
    use std::io::{BufRead, BufReader, Write};
    use std::net::UdpSocket;
    use std::path::PathBuf;
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::time::Instant;

    use super::*;

    /// Runs an OpenDHT node (Python binding) on 127.0.0.1 and answers JSON commands on stdin:
    /// `put` (a put through the DHT, answered once done), `get` (a get through the DHT),
    /// `listen` (starts a listen) and `heard` (what a listen reported so far).
    const DRIVER: &str = r#"
import json, signal, sys
import opendht as dht
signal.alarm(90)  # never outlive a stuck test
cfg = dht.DhtConfig(); cfg.setPeerDiscovery(False, False); cfg.setRateLimit(-1, -1)
node = dht.DhtRunner()
node.run(port=0, ipv4="127.0.0.1", ipv6="::1", config=cfg)
print(json.dumps({"port": node.getBound().getPort(), "id": str(node.getNodeId())}), flush=True)
heard, listens = {}, []
for line in sys.stdin:
    cmd = json.loads(line)
    key = dht.InfoHash.get(cmd["key"])
    out = {}
    if cmd["cmd"] == "put":
        v = dht.Value(bytes.fromhex(cmd["data"]))
        v.id = cmd["id"]
        out["ok"] = node.put(key, v)
    elif cmd["cmd"] == "get":
        out["values"] = [{"id": v.id, "data": bytes(v.data).hex()} for v in node.get(key)]
    elif cmd["cmd"] == "listen":
        name = cmd["key"]
        heard[name] = []
        def cb(v, expired, name=name):
            heard[name].append({"id": v.id, "data": bytes(v.data).hex(), "expired": expired})
            return True
        listens.append(node.listen(key, cb))
    elif cmd["cmd"] == "heard":
        out["values"] = list(heard.get(cmd["key"], []))
    print(json.dumps(out), flush=True)
"#;

    struct Driver {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Driver {
        fn command(&mut self, cmd: serde_json::Value) -> serde_json::Value {
            writeln!(self.stdin, "{cmd}").unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
        }
    }

    /// Drives a kadmos node over a real UDP socket with the wall clock, for a while or until
    /// `done` says so; events go to `events`.
    struct Runner {
        node: Node,
        socket: UdpSocket,
        start: Instant,
        events: Vec<Event>,
    }

    impl Runner {
        fn now(&self) -> Timestamp {
            Timestamp::from_duration(self.start.elapsed())
        }

        fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&[Event]) -> bool) {
            let deadline = Instant::now() + limit;
            let mut buf = vec![0u8; 65_536];
            loop {
                while let Some(t) = self.node.poll_transmit() {
                    self.socket.send_to(&t.payload, t.to).unwrap();
                }
                while let Some(e) = self.node.poll_event() {
                    self.events.push(e);
                }
                if done(&self.events) || Instant::now() >= deadline {
                    return;
                }
                let now = self.now();
                let wake = self.node.poll_timeout().unwrap_or(now + Duration::from_millis(50));
                let wait = wake.saturating_since(now).clamp(Duration::from_millis(1), Duration::from_millis(50));
                self.socket.set_read_timeout(Some(wait)).unwrap();
                match self.socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let now = self.now();
                        self.node.handle_datagram(now, from, &buf[..n]);
                    }
                    Err(_) => {
                        let now = self.now();
                        self.node.handle_timeout(now);
                    }
                }
                let now = self.now();
                if self.node.poll_timeout().is_some_and(|t| t <= now) {
                    self.node.handle_timeout(now);
                }
            }
        }
    }

    fn finished(events: &[Event], query: QueryId) -> Option<&CommandResult> {
        events.iter().find_map(|e| match e {
            Event::Finished { query: q, result } if *q == query => Some(result),
            _ => None,
        })
    }

    fn interop_python() -> Option<PathBuf> {
        let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/.venv/bin/python");
        if std::env::var("KADMOS_SKIP_INTEROP").is_ok_and(|v| v == "1") {
            println!("KADMOS_SKIP_INTEROP=1: skipping the OpenDHT node interop test");
            return None;
        }
        assert!(
            python.exists(),
            "{} missing: run `bash interop/install.sh` (or set KADMOS_SKIP_INTEROP=1)",
            python.display()
        );
        Some(python)
    }

    /// A kadmos node, driven by a UDP loop, bootstraps to a real OpenDHT 4.4.2 node; a value it
    /// puts is stored there (OpenDHT's own get finds it); values OpenDHT puts afterwards (one
    /// inline, one in fragments) are pushed to kadmos's listen and found by kadmos's get; and
    /// OpenDHT's own listen, subscribed at kadmos, is pushed a value stored at kadmos.
    #[test]
    fn kadmos_node_and_opendht_node_exchange_values() {
        let Some(python) = interop_python() else { return };
        let mut child = Command::new(python)
            .arg("-c")
            .arg(DRIVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OpenDHT driver");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        let mut driver = Driver { child, stdin, stdout };
        let ready: serde_json::Value =
            serde_json::from_str(&ready).unwrap_or_else(|e| panic!("driver said {ready:?}: {e}"));
        let odht_id: Id = ready["id"].as_str().unwrap().parse().unwrap();
        let odht = SocketAddr::from((Ipv4Addr::LOCALHOST, ready["port"].as_u64().unwrap() as u16));

        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = Config::new(key("kadmos live node"), 42);
        let mut runner =
            Runner { node: Node::new(config, Timestamp::ZERO), socket, start: Instant::now(), events: Vec::new() };

        // Bootstrap: the OpenDHT node answers and enters our routing table.
        let now = runner.now();
        let boot = runner.node.bootstrap(now, &[odht], &[]);
        runner.run_until(Duration::from_secs(10), |e| finished(e, boot).is_some());
        match finished(&runner.events, boot) {
            Some(CommandResult::Bootstrap(closest)) => {
                assert!(closest.nodes.iter().any(|(id, _)| *id == odht_id), "{closest:?}")
            }
            other => panic!("bootstrap: {other:?}"),
        }

        // kadmos puts; OpenDHT's get finds the value.
        let value = Value::new(0x4b41, 0, *b"put by kadmos");
        let now = runner.now();
        let put = runner.node.put(now, key("from-kadmos"), value, false);
        runner.run_until(Duration::from_secs(10), |e| finished(e, put).is_some());
        match finished(&runner.events, put) {
            Some(CommandResult::Put(Ok(Stored { stored_at, errors, .. }))) => {
                assert_eq!(stored_at.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![odht_id], "{errors:?}")
            }
            other => panic!("put: {other:?}"),
        }
        let got = driver.command(serde_json::json!({"cmd": "get", "key": "from-kadmos"}));
        assert_eq!(got["values"][0]["data"], hex::encode(b"put by kadmos"), "{got}");
        assert_eq!(got["values"][0]["id"], 0x4b41);

        // kadmos listens to a key; OpenDHT puts two values there: one small, one in fragments.
        let now = runner.now();
        let listen = runner.node.listen(now, key("from-odht"), Query::default());
        runner.run_until(Duration::from_secs(1), |_| false);
        assert_eq!(runner.node.listen_subscriptions(listen), vec![odht]);
        // OpenDHT's put runs on its own thread and returns once done; keep serving meanwhile.
        let big = vec![0xcd; 5000];
        let pending = std::thread::spawn(move || {
            let small = hex::encode(b"put by opendht");
            let a = driver.command(serde_json::json!({"cmd": "put", "key": "from-odht", "id": 7, "data": small}));
            let b = driver.command(
                serde_json::json!({"cmd": "put", "key": "from-odht", "id": 8, "data": hex::encode(vec![0xcd; 5000])}),
            );
            (driver, a, b)
        });
        while !pending.is_finished() {
            runner.run_until(Duration::from_millis(100), |_| false);
        }
        let (mut driver, a, b) = pending.join().unwrap();
        let two_values = |e: &[Event]| {
            e.iter().filter(|e| matches!(e, Event::Value { query, expired: false, .. } if *query == listen)).count()
                >= 2
        };
        assert_eq!((a["ok"].as_bool(), b["ok"].as_bool()), (Some(true), Some(true)), "{a} {b}");
        runner.run_until(Duration::from_secs(10), two_values);
        let heard: Vec<(ValueId, Vec<u8>)> = runner
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Value { query, value, expired: false } if *query == listen => {
                    Some((value.id, value.data.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(heard, vec![(7, b"put by opendht".to_vec()), (8, big.clone())]);

        // kadmos gets what OpenDHT put: both values, the large one reassembled from fragments.
        let now = runner.now();
        let get = runner.node.get(now, key("from-odht"), Query::default());
        runner.run_until(Duration::from_secs(10), |e| finished(e, get).is_some());
        let mut got: Vec<(ValueId, Vec<u8>)> = runner
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Value { query, value, .. } if *query == get => Some((value.id, value.data.clone())),
                _ => None,
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![(7, b"put by opendht".to_vec()), (8, big)]);
        assert!(matches!(finished(&runner.events, get), Some(CommandResult::Get(Ok(_)))));

        // OpenDHT listens; its search subscribes at our node. A third party then puts a value
        // straight to our node, which pushes it to OpenDHT in an `update`.
        driver.command(serde_json::json!({"cmd": "listen", "key": "pushed-by-kadmos"}));
        for _ in 0..100 {
            if !runner.node.listener_table().is_empty() {
                break;
            }
            runner.run_until(Duration::from_millis(100), |_| false);
        }
        assert_eq!(runner.node.listener_table().len(), 1, "OpenDHT subscribed at kadmos");
        let third = UdpSocket::bind("127.0.0.1:0").unwrap();
        third.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let target = runner.socket.local_addr().unwrap();
        let ask = |runner: &mut Runner, request: Request| -> Reply {
            third.send_to(&Message::request(5, key("third party"), request).to_bytes(), target).unwrap();
            let mut buf = vec![0u8; 65_536];
            for _ in 0..200 {
                runner.run_until(Duration::from_millis(10), |_| false);
                if let Ok((n, _)) = third.recv_from(&mut buf) {
                    match Message::decode(&buf[..n]).unwrap().body {
                        Body::Reply(r) => return r,
                        _ => continue,
                    }
                }
            }
            panic!("kadmos did not answer the third party");
        };
        let k = key("pushed-by-kadmos");
        let token = ask(&mut runner, Request::Get { key: k, query: None, want: None }).token;
        let pushed = Value::new(0x99, 0, *b"pushed by kadmos");
        let values = vec![ValueSlot::Value(pushed)];
        let stored = ask(&mut runner, Request::Put(PutArgs { key: k, token, values, created: None }));
        assert_eq!(stored.value_id, Some(0x99));
        let mut heard = serde_json::Value::Null;
        for _ in 0..50 {
            runner.run_until(Duration::from_millis(100), |_| false);
            heard = driver.command(serde_json::json!({"cmd": "heard", "key": "pushed-by-kadmos"}));
            if heard["values"].as_array().is_some_and(|v| !v.is_empty()) {
                break;
            }
        }
        assert_eq!(heard["values"][0]["data"], hex::encode(b"pushed by kadmos"), "{heard}");
        assert_eq!(heard["values"][0]["expired"], false);
    }
}

/// A value restored from saved state keeps the expiry it was saved with (not a fresh lifetime),
/// counts against its source's quota, and expires on time; an already expired one is refused.
/// A restored permanent put is stored here at once and goes out to the network when a
/// bootstrap ends.
#[test]
fn restored_values_keep_their_expiry() {
    let mut net = Net::joined(10);
    let now = net.now;
    let k = key("restored");
    let remote = kadmos_proto::opendht::Source::Remote(addr(3).ip());
    let value = Value::new(5, ValueType::USER_DATA.id, *b"saved");
    net.nodes[0].restore_value(now, k, value.clone(), remote, now + Duration::from_secs(100)).unwrap();
    let stored = net.nodes[0].storage().get_stored(&k, 5).unwrap();
    assert_eq!((stored.source, stored.expires), (remote, Some(now + Duration::from_secs(100))));
    let gone = Value::new(6, ValueType::USER_DATA.id, *b"gone");
    assert!(net.nodes[0].restore_value(now, k, gone, remote, now).is_err());
    net.advance(Duration::from_secs(99));
    assert_eq!(net.holders(&k, 5), 1);
    net.advance(Duration::from_secs(1));
    assert_eq!(net.holders(&k, 5), 0, "expired when the saved expiry said");

    // A permanent put restored on a fresh node reaches the network when its bootstrap ends.
    let mine = key("restored permanent");
    let fresh = net.nodes.len();
    net.nodes.push(Node::new(Config::new(Id::sha1_of(b"fresh"), 99), net.now));
    net.nodes[fresh].set_signature_verifier(Box::new(kadmos_proto::opendht::UnverifiedSignatures));
    let now = net.now;
    net.nodes[fresh].restore_permanent_put(now, mine, Value::new(7, ValueType::USER_DATA.id, *b"mine")).unwrap();
    assert_eq!(net.holders(&mine, 7), 1, "stored at the restoring node at once");
    net.nodes[fresh].bootstrap(now, &[addr(0)], &[]);
    net.settle();
    net.advance(Duration::ZERO); // the timers due now: the round the bootstrap's end scheduled
    assert!(net.holders(&mine, 7) >= 8, "put when the bootstrap ended: {} holders", net.holders(&mine, 7));
    assert!(net.now.saturating_since(now) < kadmos_proto::opendht::RESTORED_PUT_DELAY);
}

/// A config whose own housekeeping and bucket refreshes wait an hour, so that the timers a
/// test looks at are the node's next wake-up.
fn quiet(i: usize) -> Config {
    let mut config = Config::new(Id::sha1_of(format!("odht node {i}").as_bytes()), i as u64);
    config.maintenance_interval = Duration::from_secs(3600);
    config.routing.refresh_after = Duration::from_secs(3600);
    config
}

/// A fragmented message waiting for its parts wakes the node when it times out: 3 s after
/// its latest fragment, 10 s after it began at most; the node then drops it and sleeps until
/// its next timer.
#[test]
fn fragment_sets_wake_the_node_when_due() {
    use kadmos_proto::opendht::{Fragment, ValueParts};
    let mut net = Net::with_config(1, quiet);
    let me = SocketAddr::from(([10, 9, 9, 9], 5000));
    let stranger = key("stranger");
    let get = Message::request(1, stranger, Request::Get { key: key("k"), query: None, want: None }).to_bytes();
    let token = reply_of(answer(&net.exchange(0, me, &get))).token.clone();
    // The node pings the stranger to verify it; let that ping time out first.
    net.advance(Duration::from_secs(10));
    let idle = Some(Timestamp::ZERO + Duration::from_secs(3600));
    assert_eq!(net.nodes[0].poll_timeout(), idle);
    let start = net.now;
    let put = PutArgs { key: key("k"), token, values: vec![ValueSlot::Announced(60_000)], created: None };
    net.exchange(0, me, &Message::request(7, stranger, Request::Put(put)).to_bytes());
    assert_eq!(net.nodes[0].partial_messages(), 1);
    assert_eq!(net.nodes[0].poll_timeout(), Some(start + Duration::from_secs(3)));
    for (i, (at, due)) in [(2, 5), (4, 7), (6, 9), (8, 10)].into_iter().enumerate() {
        net.advance((start + Duration::from_secs(at)).saturating_since(net.now));
        let offset = 1000 * i as u64;
        let part = ValueParts { fragments: [(0u32, Fragment { offset, data: vec![0; 1000] })].into() };
        net.exchange(0, me, &Message::value_parts(7, part).to_bytes());
        assert_eq!(net.nodes[0].partial_messages(), 1, "still waiting at {at} s");
        assert_eq!(net.nodes[0].poll_timeout(), Some(start + Duration::from_secs(due)), "after a part at {at} s");
    }
    net.advance(Duration::from_secs(2));
    assert_eq!(net.nodes[0].partial_messages(), 0, "dropped at 10 s");
    assert_eq!(net.nodes[0].poll_timeout(), idle);
}

/// A permanent put restored from saved state wakes the node after `RESTORED_PUT_DELAY`; its
/// round reaches nobody (the node is alone), so the next one is due a retry interval later
/// (a third of `reannounce_margin`); once cancelled, it no longer wakes the node.
#[test]
fn kept_puts_wake_the_node_when_due() {
    use kadmos_proto::opendht::RESTORED_PUT_DELAY;
    let mut net = Net::with_config(1, quiet);
    let start = net.now;
    let k = key("kept");
    let value = Value::new(1, ValueType::USER_DATA.id, *b"kept");
    net.nodes[0].restore_permanent_put(start, k, value).unwrap();
    assert_eq!(net.nodes[0].poll_timeout(), Some(start + RESTORED_PUT_DELAY));
    net.advance(RESTORED_PUT_DELAY);
    let retry = net.nodes[0].config().reannounce_margin / 3;
    assert_eq!(net.nodes[0].poll_timeout(), Some(start + RESTORED_PUT_DELAY + retry));
    net.advance(retry);
    assert_eq!(net.nodes[0].poll_timeout(), Some(start + RESTORED_PUT_DELAY + retry * 2));
    let now = net.now;
    assert!(net.nodes[0].cancel_put(now, k, 1));
    assert!(net.nodes[0].poll_timeout() > Some(now + retry), "no round pending");
}

/// Two nodes, the second a client listening at the first, with timers that do not collide.
fn listening(renewal: Duration, research: Duration) -> (Net, QueryId) {
    let mut net = Net::with_config(2, |i| {
        let mut config = quiet(i);
        config.is_client = i == 1;
        config.listen_renewal = renewal;
        config.listen_research = research;
        config
    });
    net.nodes[1].bootstrap(Timestamp::ZERO, &[addr(0)], &[]);
    net.settle();
    net.advance(Duration::from_secs(1));
    let now = net.now;
    let l = net.nodes[1].listen(now, key("listened"), Query::default());
    net.settle();
    assert_eq!(net.nodes[1].listen_subscriptions(l), vec![addr(0)]);
    (net, l)
}

/// The listening client wakes every `interval` from its subscription on, three times, and is
/// still subscribed after each.
fn assert_wakes_every(interval: Duration, net: &mut Net, l: QueryId) {
    let subscribed = net.now;
    for round in 1..=3 {
        assert_eq!(net.nodes[1].poll_timeout(), Some(subscribed + interval * round), "wake-up {round}");
        net.advance(interval);
        assert_eq!(net.nodes[1].listen_subscriptions(l), vec![addr(0)]);
    }
}

/// A listen's subscriptions wake the node when they are due for renewal, again after each
/// renewal is answered.
#[test]
fn listen_renewals_wake_the_node_when_due() {
    let renewal = Duration::from_secs(7);
    let (mut net, l) = listening(renewal, Duration::from_secs(3600));
    assert_wakes_every(renewal, &mut net, l);
}

/// A listen wakes the node when its next search is due, and again a search interval after
/// that search ends.
#[test]
fn listen_searches_wake_the_node_when_due() {
    let research = Duration::from_secs(12);
    let (mut net, l) = listening(Duration::from_secs(3600), research);
    assert_wakes_every(research, &mut net, l);
}

/// How many datagrams of `kind` (a name in `opendht::KINDS`) a node has sent.
fn sent(node: &Node, kind: &str) -> u64 {
    let index = kadmos_proto::opendht::KINDS.iter().position(|k| *k == kind).expect("a message kind");
    node.counters().messages.sent[index].messages
}

/// Every listen renewal and kept-put round goes out at its own time, none early and none
/// dropped, when several are pending with different deadlines: three listens subscribed two
/// seconds apart renew one at a time, each exactly when due, and a restored permanent put's
/// round goes out at its time in between. A node that handled only some of what is due, or
/// lost a deadline it had looked at, would miss one of these.
#[test]
fn each_due_listen_renewal_and_kept_put_goes_out_at_its_time() {
    let renewal = Duration::from_secs(7);
    let (mut net, _first) = listening(renewal, Duration::from_secs(3600));
    let subscribed = net.now;
    for name in ["second", "third"] {
        net.advance(Duration::from_secs(2));
        let now = net.now;
        let l = net.nodes[1].listen(now, key(name), Query::default());
        net.settle();
        assert_eq!(net.nodes[1].listen_subscriptions(l), vec![addr(0)]);
    }
    net.advance(Duration::from_millis(500));
    let now = net.now;
    let kept = Value::new(9, ValueType::USER_DATA.id, *b"kept");
    net.nodes[1].restore_permanent_put(now, key("kept"), kept).unwrap();
    let round_at = now + kadmos_proto::opendht::RESTORED_PUT_DELAY;
    let listens = sent(&net.nodes[1], "listen");
    assert_eq!(sent(&net.nodes[1], "put"), 0);
    // Renewals at 7, 9 and 11 s after the first subscription, then 14 (the first again),
    // 16 and 18; the kept put's round at 14.5 s.
    let mut renewals = 0;
    for at in [7, 9, 11, 14, 16, 18] {
        let due = subscribed + Duration::from_secs(at);
        if round_at < due {
            net.advance(round_at.saturating_since(net.now));
            assert_eq!(sent(&net.nodes[1], "put"), 1, "the kept put's round went out at its time");
        }
        net.advance(due.saturating_since(net.now) - Duration::from_millis(1));
        assert_eq!(sent(&net.nodes[1], "listen"), listens + renewals, "nothing early, before {at} s");
        net.advance(Duration::from_millis(1));
        renewals += 1;
        assert_eq!(sent(&net.nodes[1], "listen"), listens + renewals, "one renewal at {at} s");
    }
    assert_eq!(sent(&net.nodes[1], "put"), 1, "one round: the next is due much later");
}

/// A value a listen heard from a storing node wakes the node when it expires there, and the
/// listen reports the expiry at that time.
#[test]
fn listen_caches_wake_the_node_when_values_expire() {
    let (mut net, l) = listening(Duration::from_secs(3600), Duration::from_secs(3600));
    let ice = Value::new(1, ValueType::ICE_CANDIDATES.id, *b"ring");
    let now = net.now;
    net.nodes[0].put(now, key("listened"), ice.clone(), false);
    net.settle();
    assert_eq!(net.values(1, l), vec![(ice.clone(), false)]);
    assert!(net.nodes[1].storage().is_empty(), "heard, not stored: a client stores nothing");
    let expiry = now + Duration::from_secs(60);
    assert_eq!(net.nodes[1].poll_timeout(), Some(expiry));
    net.advance(expiry.saturating_since(net.now) - Duration::from_millis(1));
    assert_eq!(net.values(1, l).len(), 1, "not yet expired");
    net.advance(Duration::from_millis(1));
    assert_eq!(net.values(1, l), vec![(ice.clone(), false), (ice, true)]);
}

/// A silent search node is asked once: it stalls after the stall timeout and the search moves
/// on without sending it the request again (as on Mainline; OpenDHT itself retries once, which
/// held each dead node in the result window for a second stall timeout), and the search ends.
#[test]
fn a_silent_search_node_is_asked_once() {
    let mut net = Net::joined(10);
    let fresh = net.nodes.len();
    let own = Id::sha1_of(b"fresh");
    net.nodes.push(Node::new(Config::new(own, 99), net.now));
    // The closest node to our own ID there is: the search cannot end before it stalls.
    let mut next_door = own;
    next_door.0[19] ^= 1;
    let stranger = (next_door, SocketAddr::from(([192, 0, 2, 1], 4222)));
    let now = net.now;
    let q = net.nodes[fresh].bootstrap(now, &[addr(0)], &[stranger]);
    net.settle();
    net.advance(Duration::from_secs(5));
    assert!(net.finished(fresh, q).is_some(), "the bootstrap search ended");
    let finds = net
        .outside
        .iter()
        .filter(|(from, to, _)| *from == fresh && *to == stranger.1)
        .filter(|(_, _, payload)| {
            let message = Message::decode(payload).expect("node sends valid messages");
            matches!(message.body, Body::Request { request: Request::Find { .. }, .. })
        })
        .count();
    assert_eq!(finds, 1);
}
