//! A running node under hostile input: malformed, deeply nested, oversized and mistyped
//! datagrams, unknown methods, announces with bad tokens, and floods. It must answer with the
//! right errors, never crash and keep answering honest queries. (Floods and memory are
//! checked against the `kadmos node` process in `kadmos-cli/tests/flood.rs`.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use kadmos::Dht;
use kadmos_proto::mainline::{Body, Message, Query};
use kadmos_proto::Id;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long a client waits for an answer it expects: generous, for a busy machine.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// How long a client listens before it takes silence for a refusal. A late answer would still
/// be caught: each silence check is followed by a ping that must get its own answer.
const SILENCE_WAIT: Duration = Duration::from_millis(500);

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    socket
}

/// Sends one datagram and returns the node's answer to it, skipping the node's own
/// verification pings; `None` if it stays silent.
fn ask(socket: &UdpSocket, node: SocketAddr, datagram: &[u8]) -> Option<Message> {
    socket.send_to(datagram, node).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let Ok((len, _)) = socket.recv_from(&mut buf) else { return None };
        let message = Message::decode(&buf[..len]).expect("the node only sends valid KRPC");
        if !matches!(message.body, Body::Query { .. }) {
            return Some(message);
        }
    }
}

fn error_code(answer: Option<Message>) -> Option<i64> {
    match answer?.body {
        Body::Error { code, .. } => Some(code),
        _ => None,
    }
}

fn honest_ping_works(socket: &UdpSocket, node: SocketAddr, expect: Id) {
    let ping = Message::query(b"hp".to_vec(), Id::MAX, Query::Ping).to_bytes();
    match ask(socket, node, &ping).map(|m| m.body) {
        Some(Body::Response(r)) => assert_eq!(r.id, expect),
        other => panic!("honest ping got {other:?}"),
    }
}

/// Malformed input: garbage and truncated datagrams are dropped silently, a readable query
/// with bad arguments gets 203, an unknown method 204, announces with a missing, forged or
/// foreign token 203; after each the node still answers an honest ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_get_the_right_answers() {
    let dht = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
    let node = dht.local_addr_v4().unwrap();
    let id = dht.node_id();
    tokio::task::spawn_blocking(move || {
        let s = client();
        let valid_ping = Message::query(b"aa".to_vec(), Id::MAX, Query::Ping).to_bytes();
        // Dropped without an answer.
        let deep = format!("d1:t2:xx1:y1:q1:q4:ping1:a{}e", "l".repeat(50_000));
        let silent: Vec<Vec<u8>> = vec![
            valid_ping[..valid_ping.len() - 3].to_vec(), // truncated
            deep.into_bytes(),                           // deeply nested
            vec![b'd'; 65_000],                          // oversized
            b"\x00\x01\x02garbage".to_vec(),
            b"li1ei2ee".to_vec(),                                           // not a dict
            b"d1:y1:q1:q4:pinge".to_vec(),                                  // no transaction id
            b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaae1:t2:zz1:y1:re".to_vec(),    // unsolicited answer
            b"d1:eli201e5:oops!e1:t2:zz1:y1:ee".to_vec(),                   // unsolicited error
        ];
        for datagram in &silent {
            s.set_read_timeout(Some(SILENCE_WAIT)).unwrap();
            assert!(ask(&s, node, datagram).is_none(), "answered {:?}", String::from_utf8_lossy(&datagram[..datagram.len().min(40)]));
            s.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
            honest_ping_works(&s, node, id);
        }
        // Readable queries with unusable arguments: 203.
        let mistyped = [
            &b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe"[..],                            // id is an int
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",                                // short id
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q9:find_node1:t2:aa1:y1:qe",        // no target
            b"d1:a5:hello1:q9:get_peers1:t2:aa1:y1:qe",                              // a not a dict
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa4:wanti1ee1:q9:find_node1:t2:aa1:y1:qe", // want not list
        ];
        for datagram in mistyped {
            assert_eq!(error_code(ask(&s, node, datagram)), Some(203), "{}", String::from_utf8_lossy(datagram));
        }
        // Unknown method: 204.
        let unknown = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q6:vote_x1:t2:aa1:y1:qe";
        assert_eq!(error_code(ask(&s, node, unknown)), Some(204));
        // Announces: missing, forged, another address's token: 203. A real token works.
        let info_hash = Id::sha1_of(b"hostile");
        let announce = |token: &[u8]| {
            Message::query(
                b"an".to_vec(),
                Id::MAX,
                Query::AnnouncePeer { info_hash, port: 1234, implied_port: false, token: token.to_vec(), seed: None },
            )
            .to_bytes()
        };
        let no_token = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa9:info_hash20:bbbbbbbbbbbbbbbbbbbb4:porti9ee1:q13:announce_peer1:t2:aa1:y1:qe";
        assert_eq!(error_code(ask(&s, node, no_token)), Some(203));
        assert_eq!(error_code(ask(&s, node, &announce(b"forgedtk"))), Some(203));
        let get = Message::query(b"gp".to_vec(), Id::MAX, Query::GetPeers { info_hash, want: None }).to_bytes();
        let token = match ask(&s, node, &get).unwrap().body {
            Body::Response(r) => r.token.unwrap(),
            other => panic!("{other:?}"),
        };
        // The token was issued to 127.0.0.1; from 127.0.0.2 it is someone else's.
        let elsewhere = UdpSocket::bind("127.0.0.2:0").unwrap();
        elsewhere.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
        assert_eq!(error_code(ask(&elsewhere, node, &announce(&token))), Some(203));
        assert!(matches!(ask(&s, node, &announce(&token)).map(|m| m.body), Some(Body::Response(_))));
        honest_ping_works(&s, node, id);
    })
    .await
    .unwrap();
    let info = dht.info().await.unwrap();
    assert_eq!(info.stored_peers, 1, "only the announce with a valid token was stored");
    assert!(info.traffic.errors_sent >= 9, "{} error replies", info.traffic.errors_sent);
    dht.shutdown().await.unwrap();
}
