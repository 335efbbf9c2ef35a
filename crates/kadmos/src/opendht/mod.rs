//! A node of the OpenDHT network (the DHT of Jami and other OpenDHT applications, UDP port
//! 4222): the async [`OpenDht`] handle over the sans-IO [`kadmos_proto::opendht::Node`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kadmos::Result<()> {
//! use kadmos::opendht::{OpenDht, PutOptions, Testnet};
//! use kadmos::Id;
//!
//! let testnet = Testnet::new(4).await?; // nodes on loopback, to join through
//! // On the public network: `OpenDht::builder().build()` (port 4222, bootstrap.jami.net).
//! let builder = OpenDht::builder().bootstrap(testnet.bootstrap_addrs()).port(0);
//! let dht = builder.build().await?;
//! let key = Id::of_str("my key"); // OpenDHT's InfoHash::get("my key")
//! let put = dht.put(key, "hello", PutOptions::default()).await?;
//! println!("value {:x} stored at {} nodes", put.value_id, put.stored_at.len());
//!
//! let mut values = dht.get(key).await?;
//! while let Some(value) = values.next().await {
//!     println!("{:x}: {}", value.id, String::from_utf8_lossy(&value.data));
//! }
//!
//! let mut changes = dht.listen(key).await?; // subscribed until `changes` is dropped
//! while let Some(change) = changes.next().await {
//!     println!("{:x} expired={}", change.value.id, change.expired);
//! #   break; // a listen goes on until dropped; the doctest stops at the first change
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`OpenDhtBuilder`]: sockets (the same binding and port rules as Mainline's
//!   [`DhtBuilder`](crate::DhtBuilder)), node ID, saved state, bootstrap nodes.
//! - [`OpenDht`]: the handle; [`ValueStream`] (a get) and [`ListenStream`] (a listen).
//! - `driver`: the tokio task that owns the sockets and the node, as Mainline's does.
//! - [`OpenDhtState`]: what a node saves to rejoin after a restart.
//! - [`Testnet`]: OpenDHT nodes on loopback, for tests and for trying the CLI offline.
//!
//! # How long values live
//!
//! OpenDHT has no per-value lifetime: a storing node keeps a value for as long as its *type*
//! says ([`ValueType`]), counted from when it was put: 10 minutes for type 0 (user data, the
//! default) and for every type a node does not know, 1 minute for type 5 (ICE candidates),
//! 5 minutes for types 1 and 3, 15 minutes for type 2 (whose storing nodes rewrite the
//! address in the data), 7 days for type 4. To keep a value longer, put it
//! [`permanent`](PutOptions::permanent): this node then refreshes it before it expires, until
//! [`OpenDht::cancel_put`] or shutdown. A value cannot be made to live *shorter* than its type
//! says (OpenDHT would need the put to carry an earlier creation time, which this node does
//! not send).
//!
//! # Signed and encrypted values
//!
//! [`OpenDht::put_signed`] signs a value with an [`OwnerKey`] (and, given the id of a value
//! already put, puts it with the next `seq`, which replaces it everywhere); only that key can
//! then replace it. [`OpenDht::put_encrypted`] encrypts a value to a recipient's [`PublicKey`],
//! signed by the sender inside the encryption. Both use OpenDHT's formats (RSA, PKCS#1 v1.5
//! signatures over SHA-512; PKCS#1 v1.5 + AES-GCM encryption), so values cross between kadmos
//! and OpenDHT either way. [`OpenDht::put_value`] puts a [`Value`] exactly as given (e.g. one
//! made with [`crypto::sign_value`] or [`crypto::encrypt_value`]). Gets and listens return
//! values as stored: check a signature with [`crypto::verify_value`], open a value encrypted
//! to you with [`crypto::decrypt_value`]. As a storing
//! node, this node checks signatures with the core node's default verifier, or the one given
//! to [`OpenDhtBuilder::signature_verifier`].

mod builder;
mod driver;
mod handle;
mod state;
mod testnet;

use std::net::SocketAddr;
use std::time::Duration;

use kadmos_proto::{Id, NodeId};
use serde::{Serialize, Serializer};

pub use builder::{OpenDhtBuilder, DEFAULT_BOOTSTRAP, DEFAULT_PORT};
pub use handle::{ListenStream, OpenDht, ValueStream};
pub use kadmos_proto::opendht::crypto::{self, CryptoError, OwnerKey, PublicKey};
pub use kadmos_proto::opendht::{FieldValue, Query, SignatureVerifier, Value, ValueId, ValueType};
pub use state::{OpenDhtState, SavedPut, SavedValue};
pub use testnet::Testnet;

use crate::types::{ContactCounts, NodeInfo, RemoteError};

/// The key a user means by `text`: the ID itself when `text` is 40 hex digits, otherwise
/// OpenDHT's `InfoHash::get(text)` (the SHA-1 of the text, [`Id::of_str`]).
pub fn key_from_str(text: &str) -> Id {
    match text.parse::<Id>() {
        Ok(id) if text.trim().len() == 40 => id,
        _ => Id::of_str(text),
    }
}

/// How to put a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The value type, which sets how long storing nodes keep the value (see the module
    /// documentation and [`PutOptions::lifetime`]). Default 0: user data, 10 minutes.
    pub value_type: u16,
    /// `utype`: the application's tag for the data (e.g. `text/plain`). Default: none.
    pub user_type: String,
    /// The value's id, unique under its key. Default: a random one (read it from
    /// [`PutReport::value_id`]). Putting the same id again with the same data refreshes it;
    /// with other data, storing nodes refuse it (an unsigned value cannot be edited).
    pub id: Option<ValueId>,
    /// Keep the value alive until [`OpenDht::cancel_put`] or shutdown. Default: no, the value
    /// lives [`PutOptions::lifetime`].
    pub permanent: bool,
}

impl PutOptions {
    /// Sets [`PutOptions::value_type`].
    pub fn value_type(mut self, value_type: u16) -> Self {
        self.value_type = value_type;
        self
    }

    /// Sets [`PutOptions::user_type`].
    pub fn user_type(mut self, user_type: impl Into<String>) -> Self {
        self.user_type = user_type.into();
        self
    }

    /// Sets [`PutOptions::id`].
    pub fn id(mut self, id: ValueId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets [`PutOptions::permanent`].
    pub fn permanent(mut self, permanent: bool) -> Self {
        self.permanent = permanent;
        self
    }

    /// How long storing nodes keep a value put with these options (unless it is permanent):
    /// its type's expiration.
    pub fn lifetime(&self) -> Duration {
        ValueType::expiration_of(self.value_type)
    }

    /// The value these options make of `data`.
    pub fn value(&self, data: impl Into<Vec<u8>>) -> Value {
        let mut value = Value::new(self.id.unwrap_or(0), self.value_type, data);
        value.user_type.clone_from(&self.user_type);
        value
    }
}

/// Which values a get or a listen reports: those matching every condition given. `id`,
/// `value_type`, `user_type` and `owner` travel to the storing nodes (OpenDHT's WHERE), `seq`
/// is checked here only (OpenDHT nodes cannot read it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only the value with this id.
    pub id: Option<ValueId>,
    /// Only values with this sequence number.
    pub seq: Option<u16>,
    /// Only values of this type.
    pub value_type: Option<u16>,
    /// Only values with this user type (`utype`).
    pub user_type: Option<String>,
    /// The owner's public key id (SHA-1 of its public key): signed values of that owner only.
    pub owner: Option<Id>,
}

impl Filter {
    /// Sets [`Filter::id`].
    pub fn id(mut self, id: ValueId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets [`Filter::seq`].
    pub fn seq(mut self, seq: u16) -> Self {
        self.seq = Some(seq);
        self
    }

    /// Sets [`Filter::value_type`].
    pub fn value_type(mut self, value_type: u16) -> Self {
        self.value_type = Some(value_type);
        self
    }

    /// Sets [`Filter::user_type`].
    pub fn user_type(mut self, user_type: impl Into<String>) -> Self {
        self.user_type = Some(user_type.into());
        self
    }

    /// Sets [`Filter::owner`].
    pub fn owner(mut self, owner: Id) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The filter as an OpenDHT query (WHERE conditions only).
    pub fn to_query(&self) -> Query {
        let mut query = Query::default();
        let conditions = [
            self.id.map(FieldValue::Id),
            self.value_type.map(|t| FieldValue::ValueType(u64::from(t))),
            self.owner.map(FieldValue::OwnerPk),
            self.seq.map(|s| FieldValue::SeqNum(u64::from(s))),
            self.user_type.as_ref().map(|t| FieldValue::UserType(t.as_bytes().to_vec())),
        ];
        for condition in conditions.into_iter().flatten() {
            query = query.and_where(condition);
        }
        query
    }

    /// Whether `value` passes every condition.
    pub fn matches(&self, value: &Value) -> bool {
        self.to_query().matches(value)
    }
}

/// What a put achieved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PutReport {
    /// The key the value was put at.
    #[serde(serialize_with = "hex_id")]
    pub key: Id,
    /// The value's id (as hex digits in JSON: JSON numbers lose 64-bit precision).
    #[serde(serialize_with = "hex_u64")]
    pub value_id: ValueId,
    /// Whether this node's own storage took the value (or already held it).
    pub stored_here: bool,
    /// The nodes that acknowledged the value (stored it, refreshed it, or refused it
    /// silently: OpenDHT's nodes answer a put they refused like one they stored).
    pub stored_at: Vec<NodeInfo>,
    /// What other nodes answered instead (code and message).
    pub errors: Vec<RemoteError>,
}

/// A change a listen reports: a value now stored at the key (`expired: false`: new, or a new
/// version of one), or a value no longer stored there (`expired: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenEvent {
    /// The value (for an expiry, as it was last seen).
    pub value: Value,
    /// Whether the value is gone rather than new or changed.
    pub expired: bool,
}

/// A snapshot of an OpenDHT node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenDhtInfo {
    /// The node's ID.
    #[serde(serialize_with = "hex_id")]
    pub node_id: NodeId,
    /// The addresses its sockets are bound to.
    pub local_addrs: Vec<SocketAddr>,
    /// Client mode: others keep this node out of their routing tables.
    pub client: bool,
    /// OpenDHT network id (0: the public network).
    pub network_id: u32,
    /// Contacts in the IPv4 routing table (`None`: no IPv4 socket).
    pub routing_table_ipv4: Option<usize>,
    /// Contacts in the IPv6 routing table (`None`: no IPv6 socket).
    pub routing_table_ipv6: Option<usize>,
    /// The routing table's contacts by state, per family (`None`: family not enabled).
    pub contacts_ipv4: Option<ContactCounts>,
    /// The IPv6 routing table's contacts by state.
    pub contacts_ipv6: Option<ContactCounts>,
    /// Keys holding values stored here (for others and for this node's user).
    pub stored_keys: usize,
    /// Values stored here, over all keys.
    pub stored_values: usize,
    /// Bytes of values stored for other nodes.
    pub remote_bytes: usize,
    /// Bytes of values stored for this node's user.
    pub local_bytes: usize,
    /// Values this node keeps alive (permanent puts).
    pub permanent_puts: usize,
    /// Listens of this node's user.
    pub listens: usize,
    /// Remote nodes listening to keys stored here.
    pub remote_listeners: usize,
    /// Searches and other operations in progress.
    pub running_operations: usize,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Messages and bytes since the node started.
    pub traffic: OpenDhtTraffic,
}

/// Traffic counters since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpenDhtTraffic {
    /// UDP datagrams received.
    pub datagrams_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// UDP datagrams sent.
    pub datagrams_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Requests received.
    pub requests_received: u64,
    /// Replies received to our requests.
    pub replies_received: u64,
    /// Error answers received.
    pub errors_received: u64,
    /// Error answers sent.
    pub errors_sent: u64,
    /// Datagrams ignored: undecodable, other network, unexpected replies, refused fragments.
    pub dropped: u64,
    /// Requests dropped over the rate limits.
    pub rate_limited: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests sent that got no answer in time.
    pub requests_timed_out: u64,
    /// Values accepted for storage.
    pub values_stored: u64,
    /// Values refused (too large, bad signature, not allowed to replace).
    pub values_refused: u64,
    /// Updates pushed to remote listeners.
    pub listener_pushes: u64,
    /// Datagrams received and sent, per kind (every kind, zeros included).
    pub by_kind: Vec<KindTraffic>,
    /// Error answers received and sent, per code (203, 401, 404, then 0 for any other code).
    pub errors_by_code: Vec<crate::ErrorCodeCount>,
}

/// Datagrams of one kind (a request's method, `reply`, `error` or `value_parts`), received
/// and sent, with their bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindTraffic {
    /// The message kind, as OpenDHT names it (`ping`, `find`, `get`, `put`, `listen`, ...).
    pub kind: &'static str,
    /// Datagrams of this kind received.
    pub received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Datagrams of this kind sent (retransmissions included).
    pub sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
}

impl From<crate::types::KindRow> for KindTraffic {
    fn from((kind, received, bytes_received, sent, bytes_sent): crate::types::KindRow) -> Self {
        KindTraffic { kind, received, bytes_received, sent, bytes_sent }
    }
}

fn hex_id<S: Serializer>(id: &Id, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn hex_u64<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{n:x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys: 40 hex digits are taken as the ID, anything else is hashed like OpenDHT's
    /// `InfoHash::get`.
    #[test]
    fn keys_from_text() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(key_from_str(hex), hex.parse().unwrap());
        assert_eq!(key_from_str("hello").to_string(), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(key_from_str("0123"), Id::of_str("0123"));
    }

    /// A filter becomes WHERE conditions and matches values the way the node does; options
    /// make the value they describe.
    #[test]
    fn filters_and_options() {
        let value = PutOptions::default().value_type(5).user_type("text/plain").id(7).value("x");
        assert_eq!((value.id, value.value_type, value.user_type.as_str()), (7, 5, "text/plain"));
        assert_eq!(PutOptions::default().value_type(5).lifetime(), Duration::from_secs(60));
        assert!(Filter::default().matches(&value));
        assert!(Filter::default().id(7).value_type(5).user_type("text/plain").matches(&value));
        assert!(!Filter::default().id(8).matches(&value));
        assert!(!Filter::default().seq(1).matches(&value));
        assert_eq!(Filter::default().id(7).seq(0).to_query().filters.len(), 2);
    }
}
