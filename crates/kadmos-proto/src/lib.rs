//! Sans-IO core of kadmos.
//!
//! Nothing in this crate opens a socket, reads a clock or asks the OS for randomness: time
//! comes in as a [`Timestamp`] argument and randomness from a seeded generator in each
//! node's config. That is what lets the same state machines run under the tokio runtime
//! (`kadmos` crate) and, deterministically, under a simulator.
//!
//! # Layout
//!
//! - [`Timestamp`], the time every input takes, and the IDs ([`Id`], with [`NodeId`] and
//!   [`InfoHash`] naming its roles) sit at the root.
//! - [`kad`]: what every Kademlia network shares: XOR distance, the
//!   [`RoutingTable`](kad::RoutingTable) of one address family, the tuning of lookups
//!   ([`LookupConfig`](kad::LookupConfig)), one [`QueryError`], one set of
//!   [`TrafficCounters`], and [`KademliaNode`](kad::KademliaNode): joining, ping, find_node and
//!   the routing tables, the same on both networks' nodes.
//! - [`node_io`]: what a node and its driver exchange (datagrams, address families, query
//!   ids, and the [`SansIoNode`](node_io::SansIoNode) trait both nodes implement).
//! - [`mainline`]: the BitTorrent DHT: the [`mainline::Node`], KRPC messages over bencode,
//!   BEP 44 items, the peer and item stores, quests, and BEP 42 and 43 hardening.
//! - [`opendht`]: OpenDHT's network: the [`opendht::Node`], msgpack messages, values with
//!   their signed and encrypted forms, SELECT/WHERE queries, and splitting and reassembling
//!   large values.
//!
//! # Driving nodes without sockets
//!
//! A node only ever sees datagrams and time handed to it, so a few lines drive two of them in
//! one process: carry each one's datagrams to the other until both are quiet. The same loop
//! serves both networks (both nodes implement [`node_io::SansIoNode`]).
//!
//! ```
//! use std::net::SocketAddr;
//! use kadmos_proto::node_io::SansIoNode;
//! use kadmos_proto::Timestamp;
//!
//! /// Carries datagrams between two nodes until neither has one to send.
//! fn exchange(a: &mut impl SansIoNode, a_addr: SocketAddr, b: &mut impl SansIoNode, b_addr: SocketAddr) {
//!     let now = Timestamp::ZERO;
//!     loop {
//!         let mut moved = false;
//!         while let Some(t) = a.poll_transmit() {
//!             b.handle_datagram(now, a_addr, &t.payload);
//!             moved = true;
//!         }
//!         while let Some(t) = b.poll_transmit() {
//!             a.handle_datagram(now, b_addr, &t.payload);
//!             moved = true;
//!         }
//!         if !moved {
//!             return;
//!         }
//!     }
//! }
//! ```
//!
//! On the BitTorrent Mainline DHT, a ping answered:
//!
//! ```
//! # use std::net::SocketAddr;
//! # use kadmos_proto::node_io::SansIoNode;
//! # use kadmos_proto::Timestamp;
//! # fn exchange(a: &mut impl SansIoNode, a_addr: SocketAddr, b: &mut impl SansIoNode, b_addr: SocketAddr) {
//! #     loop {
//! #         let mut moved = false;
//! #         while let Some(t) = a.poll_transmit() { b.handle_datagram(Timestamp::ZERO, a_addr, &t.payload); moved = true; }
//! #         while let Some(t) = b.poll_transmit() { a.handle_datagram(Timestamp::ZERO, b_addr, &t.payload); moved = true; }
//! #         if !moved { return; }
//! #     }
//! # }
//! use kadmos_proto::mainline::{CommandResult, Config, Event, KademliaNode, Node, Pong};
//! use kadmos_proto::Id;
//!
//! let (a_addr, b_addr): (SocketAddr, SocketAddr) = ("127.0.0.1:6881".parse()?, "127.0.0.2:6881".parse()?);
//! let now = Timestamp::ZERO;
//! let mut a = Node::new(Config::new(Id::sha1_of(b"a"), 1), now);
//! let mut b = Node::new(Config::new(Id::sha1_of(b"b"), 2), now);
//! let ping = a.ping(now, b_addr);
//! exchange(&mut a, a_addr, &mut b, b_addr);
//! let Some(Event::Finished { query, result: CommandResult::Ping(Ok(Pong { id, .. })) }) = a.poll_event() else {
//!     panic!()
//! };
//! assert_eq!((query, id), (ping, b.id()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On an OpenDHT network, a value put by one node and found by the other:
//!
//! ```
//! # use std::net::SocketAddr;
//! # use kadmos_proto::node_io::SansIoNode;
//! # use kadmos_proto::Timestamp;
//! # fn exchange(a: &mut impl SansIoNode, a_addr: SocketAddr, b: &mut impl SansIoNode, b_addr: SocketAddr) {
//! #     loop {
//! #         let mut moved = false;
//! #         while let Some(t) = a.poll_transmit() { b.handle_datagram(Timestamp::ZERO, a_addr, &t.payload); moved = true; }
//! #         while let Some(t) = b.poll_transmit() { a.handle_datagram(Timestamp::ZERO, b_addr, &t.payload); moved = true; }
//! #         if !moved { return; }
//! #     }
//! # }
//! use kadmos_proto::opendht::{CommandResult, Config, Event, KademliaNode, Node, Query, Stored, Value};
//! use kadmos_proto::Id;
//!
//! let (a_addr, b_addr): (SocketAddr, SocketAddr) = ("127.0.0.1:4222".parse()?, "127.0.0.2:4222".parse()?);
//! let now = Timestamp::ZERO;
//! let mut a = Node::new(Config::new(Id::sha1_of(b"a"), 1), now);
//! let mut b = Node::new(Config::new(Id::sha1_of(b"b"), 2), now);
//! a.bootstrap(now, &[b_addr], &[]);
//! exchange(&mut a, a_addr, &mut b, b_addr);
//! let key = Id::sha1_of(b"greeting");
//! let put = a.put(now, key, Value::new(7, 0, b"hello".to_vec()), false);
//! exchange(&mut a, a_addr, &mut b, b_addr);
//! let stored_at = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
//!     Event::Finished { query, result: CommandResult::Put(Ok(Stored { stored_at, .. })) } if query == put => {
//!         Some(stored_at)
//!     }
//!     _ => None,
//! });
//! assert_eq!(stored_at.map(|nodes| nodes.len()), Some(1), "b stored it");
//!
//! let get = b.get(now, key, Query::default());
//! let Some(Event::Value { query, value, .. }) = b.poll_event() else { panic!() };
//! assert_eq!((query, value.data.as_slice()), (get, &b"hello"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs, unreachable_pub)]

// The public surface is four namespaces. `kad` holds what both networks share (IDs, the
// routing table, lookup tuning, the one error type), `mainline` and `opendht` each a network's
// node, config, events, messages and codecs, and `node_io` what any node and its driver
// exchange. Inside each namespace the files are private and a short `pub use` names what the
// runtime, simulator, gateway, fuzzers and tests use, so a file can move without breaking a
// caller. The few public submodules left are codecs or sets of free functions that read best
// qualified (`mainline::bencode`, `opendht::msgpack`, `opendht::crypto`). `Timestamp`, the
// IDs, `QueryError` and `TrafficCounters` are also at the root because both networks' inputs
// and results use them. `fuzz_targets` is public only for the fuzzers in `fuzz/` and the
// corpus replay test, so it stays out of the documentation.
#[doc(hidden)]
pub mod fuzz_targets;
pub mod kad;
pub mod mainline;
pub mod node_io;
pub mod opendht;
mod time;

pub use kad::{Id, InfoHash, NodeId, QueryError, TrafficCounters};
pub use time::Timestamp;
