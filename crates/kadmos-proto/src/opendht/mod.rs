//! OpenDHT's network protocol: msgpack datagrams over UDP (default port 4222), and the node
//! that speaks it.
//!
//! # What is here
//!
//! - The node: [`Node`], the sans-IO state machine that serves the network (routing, value
//!   storage, listeners) and runs its user's commands ([`Node::get`], [`Node::put`],
//!   [`Node::listen`]); [`Config`] (every limit and timer with its default); [`Event`] (what it
//!   reports); [`Storage`] (values per key, expiry, limits and eviction) and [`ListenerTable`]
//!   (remote nodes listening to keys stored here), which it exposes read-only;
//!   [`SignatureVerifier`] (the hook for signature checks).
//! - The wire layer: [`Message`] (datagrams: a [`Request`], a [`Reply`] or an error;
//!   [`MessageCounts`] counts them by kind and error code), [`Value`] and [`ValueType`],
//!   [`Query`] (SELECT/WHERE), [`pack_values`] and [`Reassembly`] (splitting and reassembling
//!   large values), [`msgpack`] (the bounded reader and the writer).
//! - Crypto: [`crypto`] (owner keys, signed values, values encrypted to a recipient, and the
//!   RSA signature verifier a node installs).
//!
//! # Driving a node
//!
//! The node never touches a socket or a clock. Whoever drives it (the tokio runtime, a test,
//! the simulator) hands it every datagram received ([`Node::handle_datagram`]) and calls
//! [`Node::handle_timeout`] when the time [`Node::poll_timeout`] asked for has come; commands
//! ([`KademliaNode::bootstrap`], [`Node::get`], [`Node::put`], [`Node::listen`]...) return a
//! [`QueryId`]. After every input, it sends what [`Node::poll_transmit`] gives and handles
//! what [`Node::poll_event`] gives (values, changes and results, keyed by `QueryId`). Every
//! input takes `now`, and all randomness comes from the seeded generator in the config: the
//! same inputs give the same outputs. The crate documentation shows it in a few lines.
//!
//! # Implementation notes
//!
//! Everything here was learned from OpenDHT's own code (savoirfairelinux/opendht); each module
//! names the files it follows. The things that are easy to get wrong:
//!
//! - **Packing must match msgpack-c byte for byte**, because signatures cover a re-packed value
//!   body, never the received bytes. [`msgpack::Writer`](msgpack) always takes the smallest
//!   encoding, and every map is written in OpenDHT's key order with OpenDHT's rules for which
//!   keys are present. Decoding a datagram OpenDHT sent and encoding it again gives back the
//!   same bytes (the capture tests check this).
//! - **Reading follows OpenDHT's leniency, and its strictness.** Byte strings may arrive as
//!   binary, string, or an array of small integers; keys must be 20-byte binaries; a value
//!   that does not parse is skipped, not the datagram; `t` may be absent (then 0). Where
//!   OpenDHT would drop a datagram, decoding reports [`DecodeError::Garbage`].
//! - **Hostile input is bounded**: at most 64 KiB of input, nesting of 16 containers (rmpv
//!   would otherwise recurse up to 1024 levels), no allocation from length prefixes, no panics
//!   (a property test feeds random bytes), and reassembly caps each value, each message and
//!   the number of fragments.
//! - `fileds` is spelled that way on the wire.

mod config;
pub mod crypto;
mod fragment;
mod listeners;
pub(crate) mod message;
mod message_counts;
pub mod msgpack;
mod node;
mod query;
mod rate_limit;
mod storage;
mod store_policy;
mod token;
mod value;
mod value_cache;
mod verifier;

pub use fragment::{
    pack_values, update_batches, FragmentError, PackedValues, Reassembly, ReassemblyLimits, MAX_ANNOUNCED_SIZE,
    PART_SIZE,
};
pub use message::{
    error_code, Body, DecodeError, Fragment, ListenArgs, Message, PutArgs, Reply, Request, UpdateArgs, ValueParts,
    ValueSlot, Want, WANT_IPV4, WANT_IPV6,
};
pub use message_counts::{KindCount, MessageCounts, OpenDhtMessages, ERROR_CODES, KINDS};
pub use query::{Field, FieldValue, FieldValues, Query};
pub use value::{Value, ValueError, ValueId, ValueType, MAX_VALUE_SIZE};

// What both networks' nodes share, named here too so that one import brings a node's whole
// surface: Kademlia's own commands and views, results, errors, counters and what a driver
// exchanges with the node.
pub use crate::kad::{Closest, KademliaNode, Pong, QueryError, TrafficCounters};
pub use crate::node_io::{Family, QueryId, Transmit};
pub use config::Config;
pub use listeners::{Listener, ListenerConfig, ListenerTable};
pub use node::{CommandResult, Counters, Event, Node, Stored, RESTORED_PUT_DELAY};
pub use storage::{Refusal, Source, Storage, StorageConfig, StoreOutcome, StoredValue};
pub use store_policy::{ip_service_announcement, read_ip_service_announcement};
pub use verifier::{SignatureVerifier, UnverifiedSignatures};
