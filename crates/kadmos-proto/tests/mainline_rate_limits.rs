//! The Mainline node's rate limits on a fixed virtual clock: a flooding source is held to its
//! limit while honest sources are all answered, answers to an unverified address are capped
//! in bytes, and the counters say what was dropped.

use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::mainline::secure_node_id;
use kadmos_proto::mainline::{Body, Config, Message, Node, Query, Response};
use kadmos_proto::{Id, Timestamp};
use rand::SeedableRng;

fn node() -> Node {
    Node::new(Config::new(Id::sha1_of(b"limited"), 1), Timestamp::ZERO)
}

fn find_node(tx: u32) -> Vec<u8> {
    Message::query(
        tx.to_be_bytes().to_vec(),
        Id::sha1_of(&tx.to_be_bytes()),
        Query::FindNode { target: Id::MAX, want: None },
    )
    .to_bytes()
}

/// Delivers a datagram and returns the answers the node sent back to its source.
fn ask(node: &mut Node, now: Timestamp, from: SocketAddr, datagram: &[u8]) -> Vec<Message> {
    node.handle_datagram(now, from, datagram);
    let mut answers = Vec::new();
    while let Some(t) = node.poll_transmit() {
        let message = Message::decode(&t.payload).expect("the node sends valid KRPC");
        if t.to == from && !matches!(message.body, Body::Query { .. }) {
            answers.push(message);
        }
    }
    answers
}

/// One source sends 50,000 queries a second for two seconds while 32 others send 10 a second
/// each: every honest query is answered, the flooder gets its burst (200) plus its rate
/// (100 a second) and nothing more, and `queries_rate_limited` counts exactly the rest.
#[test]
fn flood_is_held_to_its_limit_and_honest_sources_are_answered() {
    let mut node = node();
    let flooder = SocketAddr::from(([198, 51, 100, 1], 6881));
    let honest: Vec<SocketAddr> = (0..32).map(|i| SocketAddr::from(([203, 0, 113, i], 6881))).collect();
    let (mut flood_sent, mut flood_answered, mut honest_sent, mut honest_answered) = (0u64, 0u64, 0u64, 0u64);
    let mut tx = 0u32;
    for ms in 0..2000u64 {
        let now = Timestamp::ZERO + Duration::from_millis(ms);
        for _ in 0..50 {
            tx += 1;
            flood_sent += 1;
            flood_answered += ask(&mut node, now, flooder, &find_node(tx)).len() as u64;
        }
        if ms % 100 == 0 {
            for source in &honest {
                tx += 1;
                honest_sent += 1;
                honest_answered += ask(&mut node, now, *source, &find_node(tx)).len() as u64;
            }
        }
    }
    assert_eq!(honest_answered, honest_sent, "every honest query answered");
    // 200 at once, then 100 a second over the 1.999 s that followed.
    assert!((398..=400).contains(&flood_answered), "flooder answered {flood_answered} times");
    let counters = node.counters();
    assert_eq!(counters.queries_rate_limited, flood_sent - flood_answered);
    assert_eq!(counters.replies_capped_unverified + counters.replies_capped_outbound, 0);
}

/// A source the routing table has not verified gets at most its byte allowance of answers
/// (64 KiB at once, then 32 KiB a second) however many `get_peers` it sends, so a forged
/// source address cannot turn the node into an amplifier; once the same address has answered
/// a ping of ours (it is in the table), its answers are no longer capped.
#[test]
fn answers_to_unverified_addresses_are_capped_in_bytes() {
    let mut node = node();
    let now = Timestamp::ZERO;
    let info_hash = Id::sha1_of(b"popular");
    let announcer = SocketAddr::from(([192, 0, 2, 7], 6881));
    let victim = SocketAddr::from(([198, 51, 100, 9], 6881));
    // A BEP 42 ID for the victim's address, so that it may enter the table once it answers.
    let asker = secure_node_id(victim.ip(), 1, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    // 75 peers make each get_peers answer about 700 bytes.
    let get = |tx: u32| {
        Message::query(tx.to_be_bytes().to_vec(), asker, Query::GetPeers { info_hash, want: None }).to_bytes()
    };
    let token = match &ask(&mut node, now, announcer, &get(0))[0].body {
        Body::Response(r) => r.token.clone().unwrap(),
        other => panic!("{other:?}"),
    };
    for port in 1..=75u16 {
        let announce = Query::AnnouncePeer { info_hash, port, implied_port: false, token: token.clone(), seed: None };
        ask(&mut node, now, announcer, &Message::query(vec![1], Id::sha1_of(b"announcer"), announce).to_bytes());
    }
    let mut bytes = 0usize;
    for ms in 0..1000u64 {
        let at = now + Duration::from_millis(ms);
        for answer in ask(&mut node, at, victim, &get(ms as u32)) {
            bytes += answer.to_bytes().len();
        }
    }
    let answer_size = 700;
    assert!(bytes <= 96 * 1024 + answer_size, "{bytes} bytes answered to an unverified address in 1 s");
    assert!(bytes >= 90 * 1024, "the allowance itself is used: {bytes}");
    assert!(node.counters().replies_capped_unverified > 0);

    // Ten seconds later (the buckets full again, the first verification ping expired) the
    // address answers a verification ping: it is verified, and 199 answers of 700 bytes
    // (twice its byte allowance) all go out.
    let later = now + Duration::from_secs(10);
    node.handle_timeout(later);
    let capped_before = node.counters().replies_capped_unverified;
    let victim_id = asker;
    node.handle_datagram(later, victim, &get(5000));
    let ping = std::iter::from_fn(|| node.poll_transmit())
        .map(|t| (t.to, Message::decode(&t.payload).unwrap()))
        .find(|(to, m)| *to == victim && matches!(m.body, Body::Query { query: Query::Ping, .. }))
        .expect("the node pings an unknown querier before it enters the table");
    let pong = Message::response(ping.1.transaction_id, Response { id: victim_id, ..Response::default() });
    node.handle_datagram(later, victim, &pong.to_bytes());
    let served = (0..200).filter(|i| !ask(&mut node, later, victim, &get(6000 + i)).is_empty()).count();
    assert_eq!(served, 200 - 1, "the burst of 200 queries (one spent above), none capped in bytes");
    assert_eq!(node.counters().replies_capped_unverified, capped_before);
}
