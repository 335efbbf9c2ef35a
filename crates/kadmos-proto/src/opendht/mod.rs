//! OpenDHT's network protocol: msgpack datagrams over UDP (default port 4222).
//!
//! This is the wire layer only: what datagrams hold and how values pack, so that a kadmos node
//! and OpenDHT nodes understand each other. Node logic (tokens, storage, listeners, searches)
//! builds on it.
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

pub mod fragment;
pub mod message;
pub mod msgpack;
pub mod query;
pub mod value;

pub use fragment::{pack_values, FragmentError, PackedValues, Reassembly, ReassemblyLimits};
pub use message::{
    error_code, Body, DecodeError, Fragment, ListenArgs, Message, PutArgs, Reply, Request, UpdateArgs, ValueParts,
    ValueSlot, Want,
};
pub use query::{Field, FieldValue, FieldValues, Query};
pub use value::{Value, ValueError, ValueId, ValueType};
