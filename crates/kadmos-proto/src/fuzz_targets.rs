//! What each fuzz target does with one input. The fuzzers in `fuzz/` and the corpus replay
//! test (`tests/fuzz_corpus.rs`) both call these, so a saved input replays exactly as the
//! fuzzer ran it, with no fuzzer installed.
//!
//! Each function must never panic on any input, and checks what must hold for every input
//! that decodes: re-encoding a decoded message gives one that decodes to the same thing, and
//! every datagram a node sends decodes. A panic here is a bug in the code under test.
//!
//! The node targets read their input as a script of datagrams on a fixed clock: each step is
//! a header byte (source address in the low 3 bits, then time to wait in 50 ms units), a
//! big-endian 16-bit length and that many bytes (cut short at the end of the input).

use std::net::SocketAddr;
use std::time::Duration;

use crate::kad::Id;
use crate::mainline;
use crate::node_io::SansIoNode;
use crate::opendht;
use crate::time::Timestamp;

/// The bencode decoder; a decoded value re-encodes to one that decodes to the same value.
pub fn bencode(input: &[u8]) {
    let Ok(value) = mainline::bencode::decode(input) else { return };
    let mut out = Vec::new();
    mainline::bencode::Encoder::new(&mut out).value(&value);
    let again = mainline::bencode::decode(&out).expect("a re-encoded value decodes");
    assert!(again == value, "bencode round trip changed the value");
}

/// The KRPC decoder; a decoded message re-encodes to one that decodes to the same message.
pub fn krpc(input: &[u8]) {
    let Ok(message) = mainline::Message::decode(input) else { return };
    let again = mainline::Message::decode(&message.to_bytes()).expect("a re-encoded message decodes");
    assert_eq!(again, message, "KRPC round trip changed the message");
}

/// The msgpack reader.
pub fn msgpack(input: &[u8]) {
    let _ = opendht::msgpack::read(input);
}

/// The OpenDHT message decoder; a decoded message re-encodes to one that decodes to the same.
pub fn opendht_message(input: &[u8]) {
    let Ok(message) = opendht::Message::decode(input) else { return };
    let again = opendht::Message::decode(&message.to_bytes()).expect("a re-encoded message decodes");
    assert_eq!(again, message, "OpenDHT round trip changed the message");
}

/// Fragment reassembly: the first datagram of the script is a message announcing values, the
/// others bring `p` fragments; whatever completes must unpack without panicking.
pub fn fragments(input: &[u8]) {
    let mut datagrams = Script::new(input);
    let Some(first) = datagrams.next() else { return };
    let Ok(message) = opendht::Message::decode(first.bytes) else { return };
    let Some(slots) = message.value_slots() else { return };
    let Ok(mut reassembly) = opendht::Reassembly::new(slots, opendht::ReassemblyLimits::default()) else { return };
    for step in datagrams {
        if let Ok(opendht::Message { body: opendht::message::Body::ValueParts(parts), .. }) =
            opendht::Message::decode(step.bytes)
        {
            let _ = reassembly.add(&parts);
        }
    }
    let _ = reassembly.missing_bytes();
    if reassembly.is_complete() {
        let _ = reassembly.into_values();
    }
}

/// A Mainline node, joined through source 0, fed the script; all it sends must decode.
pub fn mainline_node(input: &[u8]) {
    let node = mainline::Node::new(mainline::Config::new(Id::sha1_of(b"fuzzed node"), 1), Timestamp::ZERO);
    run_script(node, input, |datagram| mainline::Message::decode(datagram).is_ok());
}

/// An OpenDHT node, joined through source 0, fed the script; all it sends must decode.
pub fn opendht_node(input: &[u8]) {
    let node = opendht::Node::new(opendht::Config::new(Id::sha1_of(b"fuzzed node"), 1), Timestamp::ZERO);
    run_script(node, input, |datagram| opendht::Message::decode(datagram).is_ok());
}

/// Bootstraps `node` through source 0, then delivers the script's datagrams on its clock,
/// with timeouts as they fall due. (Events pile up unread: the script bounds them.)
fn run_script<N: SansIoNode>(mut node: N, input: &[u8], decodes: fn(&[u8]) -> bool) {
    let _ = node.bootstrap(Timestamp::ZERO, &[SOURCES[0]], &[]);
    let mut now = Timestamp::ZERO;
    for step in Script::new(input) {
        now = now + step.wait;
        node.handle_datagram(now, step.from, step.bytes);
        if node.poll_timeout().is_some_and(|due| due <= now) {
            node.handle_timeout(now);
        }
        while let Some(t) = node.poll_transmit() {
            assert!(decodes(&t.payload), "the node sent a datagram it cannot decode: {:?}", t.payload);
        }
    }
}

/// The addresses a script's datagrams come from: public and private IPv4 (one /24 shared by
/// two), and IPv6 (which an IPv4-only node drops).
const SOURCES: [SocketAddr; 8] = [
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1)), 6881),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 2)), 6881),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9)), 4222),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 200)), 1),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 6881),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 6881),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(8, 8, 8, 8)), 65535),
    SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 6881),
];

/// One datagram of a script.
struct Step<'a> {
    from: SocketAddr,
    wait: Duration,
    bytes: &'a [u8],
}

/// Reads a fuzz input as datagrams (see the module notes).
struct Script<'a> {
    rest: &'a [u8],
}

impl<'a> Script<'a> {
    fn new(input: &'a [u8]) -> Self {
        Script { rest: input }
    }
}

impl<'a> Iterator for Script<'a> {
    type Item = Step<'a>;

    fn next(&mut self) -> Option<Step<'a>> {
        let [header, high, low, rest @ ..] = self.rest else { return None };
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(rest.len());
        let (bytes, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Step {
            from: SOURCES[usize::from(header & 0x7)],
            wait: Duration::from_millis(u64::from(header >> 3) * 50),
            bytes,
        })
    }
}

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target by name, as the fuzz directory names them.
pub const TARGETS: [(&str, Target); 7] = [
    ("bencode", bencode),
    ("krpc", krpc),
    ("msgpack", msgpack),
    ("opendht_message", opendht_message),
    ("fragments", fragments),
    ("mainline_node", mainline_node),
    ("opendht_node", opendht_node),
];
