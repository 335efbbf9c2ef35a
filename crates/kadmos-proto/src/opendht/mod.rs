//! OpenDHT's network protocol: msgpack datagrams over UDP (default port 4222), and the node
//! that speaks it.
//!
//! # Layout
//!
//! - The wire layer: [`message`] (datagrams; [`message_counts`] counts them by kind and error
//!   code), [`value`] (values and their packing), [`query`] (SELECT/WHERE), [`fragment`]
//!   (splitting and reassembling large values), [`msgpack`].
//! - The node: [`node::Node`] (the sans-IO state machine; its module documentation says how to
//!   drive it and what it does), [`config`] (every limit and timer with its default),
//!   [`storage`] (values per key, expiry, limits and eviction), [`listeners`] (remote nodes
//!   listening to keys stored here), [`value_cache`] (what a listen believes a key holds),
//!   [`token`] (write tokens), [`rate_limit`] (requests served per second), [`verifier`] (the
//!   hook for signature checks).
//! - Crypto: [`crypto`] (owner keys, signed values, values encrypted to a recipient, and the
//!   RSA signature verifier a node installs).
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

pub mod config;
pub mod crypto;
pub mod fragment;
pub mod listeners;
pub mod message;
pub mod message_counts;
pub mod msgpack;
pub mod node;
pub mod query;
pub mod rate_limit;
pub mod storage;
pub mod store_policy;
pub mod token;
pub mod value;
pub mod value_cache;
pub mod verifier;

pub use fragment::{pack_values, FragmentError, PackedValues, Reassembly, ReassemblyLimits};
pub use message::{
    error_code, Body, DecodeError, Fragment, ListenArgs, Message, PutArgs, Reply, Request, UpdateArgs, ValueParts,
    ValueSlot, Want,
};
pub use query::{Field, FieldValue, FieldValues, Query};
pub use value::{Value, ValueError, ValueId, ValueType};

pub use config::Config;
pub use listeners::{Listener, ListenerConfig, ListenerTable};
pub use node::{Closest, CommandResult, Counters, Event, Family, Node, Pong, QueryError, QueryId, Stored, Transmit};
pub use storage::{Refusal, Source, Storage, StorageConfig, StoreOutcome, StoredValue};
pub use value_cache::{Holder, ValueCache};
pub use verifier::{SignatureVerifier, UnverifiedSignatures};
