use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rmpv::ValueRef;

use super::msgpack::{self, Map, Writer};
use super::query::{FieldValues, Query};
use super::value::{Value, ValueId};
use crate::kad::{Id, NodeId};
use crate::mainline::compact::{self, NODE_V4_LEN, NODE_V6_LEN};

/// What OpenDHT sends as `v`. OpenDHT never reads it; kadmos sends the same so that it is just
/// another node on the wire.
pub(crate) const DEFAULT_AGENT: &str = "o2";

/// The `w` (want) number for IPv4: Linux's AF_INET, which OpenDHT sends as is.
pub const WANT_IPV4: u64 = 2;
/// The `w` number for IPv6: Linux's AF_INET6. OpenDHT sends its platform's own number, so we
/// also read those of Windows (23), FreeBSD (28) and macOS (30) as IPv6.
pub const WANT_IPV6: u64 = 10;
const OTHER_IPV6_FAMILIES: [u64; 3] = [23, 28, 30];

/// Longest error message kept from an error datagram, in characters.
pub(crate) const MAX_ERROR_MESSAGE_LEN: usize = 256;

/// Error codes (include/opendht/network_engine.h, `DhtProtocolException`).
pub mod error_code {
    /// 203: a request without a key (`get`, `listen` or `put` with no `h`), or a `put` of a
    /// value with id 0. kadmos also answers it to any request it can read but not accept.
    pub const NON_AUTHORITATIVE_INFORMATION: u16 = 203;
    /// 401: wrong or missing token on `put`, `listen` or `refresh`. A requester seeing it on a
    /// `put` or `listen` asks for a fresh token.
    pub const UNAUTHORIZED: u16 = 401;
    /// 404: `refresh` at a key the node holds nothing under (OpenDHT answers a refresh of an
    /// unknown value id under a key it does hold like a successful one). The requester puts the
    /// value again.
    pub const NOT_FOUND: u16 = 404;
    /// 421, 422, 423: OpenDHT's internal codes (truncated id, unknown transaction, bad node
    /// list length). Never sent on the wire; listed so that nobody reuses them.
    pub const INVALID_TID_SIZE: u16 = 421;
    /// 422: unknown transaction (internal to OpenDHT).
    pub const UNKNOWN_TID: u16 = 422;
    /// 423: node list of a bad length (internal to OpenDHT).
    pub const WRONG_NODE_INFO_BUF_LEN: u16 = 423;
}

/// One OpenDHT datagram.
///
/// OpenDHT datagrams: one msgpack map each.
///
/// These are wire structs: they say what a datagram holds, nothing about what a node does
/// with it. Facts from savoirfairelinux/opendht src/parsed_message.h (how a datagram is read)
/// and src/network_engine.cpp (how each one is packed):
///
/// - Top level: `t` transaction id (an integer; 4 raw bytes from old peers; 0 when absent),
///   `y` kind, `v` agent ("o2"; nobody reads it), `n` network id (only when non-zero; nodes
///   drop datagrams from other networks), `s` is-client (only when true).
/// - The kind comes from which key is present, in this order: `e` error `[code, message]`
///   (with `r: {id}`), `r` reply, `p` value fragments, `u` legacy listener push; otherwise a
///   request named by `q` with arguments `a` (where `y` may be absent or must be "q").
/// - Requests: `ping {id}`, `find {id, target, w?}`, `get {id, h, q?, w?}`,
///   `put {id, h, values, c?, token}`, `listen {id, ve, h, token, sid, q?}`,
///   `refresh {id, h, vid, token}`, `update {id, ve, h, sid, values, c?, token}` (new values
///   for a listener) or `update {id, sid, token?, re | exp}` (refreshed or expired value ids).
/// - Replies: `{id, vid?, sa, n4?, n6?, token?, values | fileds}`; `sa` is the requester's IP
///   (4 or 16 bytes, no port); `n4`/`n6` are 26/38-byte compact nodes (port big-endian), `w`
///   picks the families (2 = IPv4, 10 = IPv6, Linux's AF_INET numbers). A `put` is answered
///   once per value with `{id, vid, sa}`.
/// - `values` holds packed values inline, or, when the sender splits them (see
///   [`pack_values`](super::pack_values)), each value's packed size; the bytes follow in
///   `p` datagrams `{y: "p", t, p: {index: {o: offset, d: bytes}}}` with the same `t`.
/// - Keys are 20-byte binaries; anything else in their place makes OpenDHT drop the datagram.
///
/// Decoding sorts failures into what the node must do about them (see [`DecodeError`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `t`: picked by the requester, echoed by the answer (and by value fragments).
    pub tid: u32,
    /// `v`: the sender's agent string, when sent.
    pub agent: Option<String>,
    /// `n`: the network id; 0 (the public network) is not sent.
    pub network: u32,
    /// `s`: the sender is a client (it does not want to enter routing tables).
    pub is_client: bool,
    /// `y` and what goes with it: a request, an answer, an error, a listener push or fragments.
    pub body: Body,
}

/// What an OpenDHT message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `y: q`: a request from node `id`.
    Request {
        /// The requester's node ID.
        id: NodeId,
        /// The method and its arguments.
        request: Request,
    },
    /// `y: r`: an answer. Answers don't name their request, so every field is optional.
    Reply(Reply),
    /// `y: e`: `e: [code, message]`, with the sender's id in `r` (OpenDHT ignores errors
    /// without one).
    Error {
        /// The error code (see [`error_code`]).
        code: u16,
        /// The human-readable message.
        message: String,
        /// The sender's node ID, when sent.
        id: Option<NodeId>,
    },
    /// `u`: a listener update in the pre-`update` form (`y: r`, `t` = the listener's socket
    /// id), still sent to listeners that did not say `ve: 1`.
    ListenerPush(Reply),
    /// `y: p`: fragments of values announced by size in the message with the same `t`.
    ValueParts(ValueParts),
}

/// Which address families a `find` or `get` wants nodes for (`w`). Absent means "the family
/// I asked on".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// IPv4 nodes.
    pub v4: bool,
    /// IPv6 nodes.
    pub v6: bool,
}

/// An OpenDHT request (`q`) and its arguments (`a`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `ping`.
    Ping,
    /// `find`: nodes close to `target`.
    Find {
        /// The ID searched for.
        target: Id,
        /// `w`: the families to return nodes of, when sent.
        want: Option<Want>,
    },
    /// `get`: values at `key` (filtered by `query`) and nodes close to it.
    Get {
        /// `h`: the key.
        key: Id,
        /// `q`: which values and fields to return, when sent.
        query: Option<Query>,
        /// `w`: the families to return nodes of, when sent.
        want: Option<Want>,
    },
    /// `put`: store values.
    Put(PutArgs),
    /// `listen`: be told of changes to a key's values.
    Listen(ListenArgs),
    /// `refresh`: keep value `value_id` at `key` alive.
    Refresh {
        /// `h`: the key.
        key: Id,
        /// The write token from the storing node's last answer.
        token: Vec<u8>,
        /// `vid`: the value to keep alive.
        value_id: ValueId,
    },
    /// `update`: values changed at a key a listener listens to.
    Update(UpdateArgs),
}

impl Request {
    /// The method's name on the wire (`q`).
    pub fn method(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Find { .. } => "find",
            Request::Get { .. } => "get",
            Request::Put(_) => "put",
            Request::Listen(_) => "listen",
            Request::Refresh { .. } => "refresh",
            Request::Update(_) => "update",
        }
    }
}

/// `put`: store values at `key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutArgs {
    /// `h`: the key.
    pub key: Id,
    /// `token` from the storing node's last answer (empty when not sent: answered with 401).
    pub token: Vec<u8>,
    /// `values`: the values, inline or announced by size.
    pub values: Vec<ValueSlot>,
    /// `c`: when the value was first put (Unix seconds), when earlier than now.
    pub created: Option<i64>,
}

/// `listen`: push changes of the values at `key` (matching `query`) for 10 minutes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenArgs {
    /// `h`: the key.
    pub key: Id,
    /// The write token from the storing node's last answer.
    pub token: Vec<u8>,
    /// `sid`: the requester's id for this subscription, echoed in every `update`.
    pub socket_id: u32,
    /// `ve`: 1 asks for pushes as `update` requests (otherwise legacy `u` replies).
    pub version: Option<i32>,
    /// `q`: which values to be told about, when sent.
    pub query: Option<Query>,
}

/// `update`: a storing node tells a listener about new, refreshed or expired values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateArgs {
    /// `h`: sent with new values only.
    pub key: Option<Id>,
    /// `sid`: the listener's subscription id from its `listen`.
    pub socket_id: u32,
    /// `ve`: sent with new values only.
    pub version: Option<i32>,
    /// A write token the storing node issues to the listener.
    pub token: Vec<u8>,
    /// `values`: new values, inline or announced by size.
    pub values: Vec<ValueSlot>,
    /// `c`: when the values were created (Unix seconds), when sent.
    pub created: Option<i64>,
    /// `re`: ids of values that were refreshed.
    pub refreshed: Vec<ValueId>,
    /// `exp`: ids of values that expired.
    pub expired: Vec<ValueId>,
}

/// The `r` map of an answer, or the `u` map of a legacy listener push.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The answering node's ID.
    pub id: NodeId,
    /// `vid`: the value a `put` or `refresh` answer is about.
    pub value_id: Option<ValueId>,
    /// `sa`: the requester's IP as the answering node saw it (no port).
    pub requester: Option<IpAddr>,
    /// `n4`: IPv4 nodes.
    pub nodes4: Vec<(NodeId, SocketAddr)>,
    /// `n6`: IPv6 nodes.
    pub nodes6: Vec<(NodeId, SocketAddr)>,
    /// `token`: lets the requester `put`, `listen` and `refresh` here; empty when not sent.
    pub token: Vec<u8>,
    /// `values`: values found, inline or announced by size.
    pub values: Vec<ValueSlot>,
    /// `fileds` (sic): fields of the values, when the `get` selected some.
    pub fields: Option<FieldValues>,
    /// `re` and `exp` of a legacy listener push.
    pub refreshed: Vec<ValueId>,
    /// Ids of values that expired, in a legacy listener push.
    pub expired: Vec<ValueId>,
}

/// One entry of a `values` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSlot {
    /// A value sent inline.
    Value(Value),
    /// A value announced by its packed size; its bytes come in `p` fragments, at this slot's
    /// index in the array.
    Announced(u64),
    /// An entry that is not a value (OpenDHT skips such entries). Kept so that the indices of
    /// the others still match their fragments; packed back as nil.
    Unreadable,
}

impl ValueSlot {
    /// The values of a `values` array, in order; entries that are not values (an announced
    /// size still waiting for its fragments, an unreadable entry) are skipped.
    pub fn whole_values(slots: Vec<ValueSlot>) -> Vec<Value> {
        slots
            .into_iter()
            .filter_map(|s| match s {
                ValueSlot::Value(v) => Some(v),
                _ => None,
            })
            .collect()
    }
}

/// `p`: fragments of announced values, by index in the announcing `values` array.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValueParts {
    /// Fragments by the index of their value in the announcing message's `values`.
    pub fragments: BTreeMap<u32, Fragment>,
}

/// `{o, d}`: `data` goes at byte `offset` of the packed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// `o`: where the data starts in the packed value.
    pub offset: u64,
    /// `d`: the bytes.
    pub data: Vec<u8>,
}

/// Why a datagram was not accepted, and so what the node does about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not an OpenDHT message we can answer: drop it.
    #[error("not an OpenDHT message: {0}")]
    Garbage(String),
    /// A request for a method we do not know: drop it. (OpenDHT has no "method unknown"
    /// error; it drops these, and an answer would only help reflection attacks.)
    #[error("unknown method {method:?}")]
    UnknownMethod {
        /// The request's `t`.
        tid: u32,
        /// The method named.
        method: String,
    },
    /// A request from a known sender with unusable arguments: answer 203. OpenDHT itself answers
    /// 203 only to a request without a key and drops requests with arguments of the wrong type;
    /// answering those too costs nothing (OpenDHT logs and ignores error codes it did not
    /// expect) and tells a peer what was wrong.
    #[error("malformed {method} request: {reason}")]
    MalformedRequest {
        /// The request's `t`, to answer with.
        tid: u32,
        /// The request's method.
        method: &'static str,
        /// What is wrong with its arguments.
        reason: String,
    },
    /// An answer we cannot read: drop it (never answer an answer).
    #[error("malformed reply: {reason}")]
    MalformedReply {
        /// The answer's `t`.
        tid: u32,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// The error answer a node with id `own_id` sends for this failure, if any. The node sets
    /// its `network` and `is_client` as on every message it sends.
    pub fn reply(&self, own_id: NodeId) -> Option<Message> {
        match self {
            DecodeError::MalformedRequest { tid, reason, .. } => Some(Message::error(
                *tid,
                error_code::NON_AUTHORITATIVE_INFORMATION,
                format!("invalid arguments: {reason}"),
                own_id,
            )),
            _ => None,
        }
    }
}

fn garbage(reason: impl Into<String>) -> DecodeError {
    DecodeError::Garbage(reason.into())
}

/// Text for people, at most `max` characters. Cut after conversion, so that decoding the text
/// we would send back gives the same text.
fn lossy(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes).chars().take(max).collect()
}

impl Message {
    fn with_body(tid: u32, agent: Option<String>, body: Body) -> Message {
        Message { tid, agent, network: 0, is_client: false, body }
    }

    /// A request from node `id`, with kadmos's agent string.
    pub fn request(tid: u32, id: NodeId, request: Request) -> Message {
        Message::with_body(tid, Some(DEFAULT_AGENT.into()), Body::Request { id, request })
    }

    /// An answer, with kadmos's agent string.
    pub fn reply(tid: u32, reply: Reply) -> Message {
        Message::with_body(tid, Some(DEFAULT_AGENT.into()), Body::Reply(reply))
    }

    /// An error answer from node `own_id`, with kadmos's agent string.
    pub fn error(tid: u32, code: u16, message: impl Into<String>, own_id: NodeId) -> Message {
        Message::with_body(
            tid,
            Some(DEFAULT_AGENT.into()),
            Body::Error { code, message: message.into(), id: Some(own_id) },
        )
    }

    /// A fragment datagram (OpenDHT sends these without agent).
    pub fn value_parts(tid: u32, parts: ValueParts) -> Message {
        Message::with_body(tid, None, Body::ValueParts(parts))
    }

    /// The `values` of a `put`, `update`, reply or listener push.
    pub fn value_slots(&self) -> Option<&[ValueSlot]> {
        match &self.body {
            Body::Request { request: Request::Put(p), .. } => Some(&p.values),
            Body::Request { request: Request::Update(u), .. } => Some(&u.values),
            Body::Reply(r) | Body::ListenerPush(r) => Some(&r.values),
            _ => None,
        }
    }

    /// Whether value bytes are still to come in `p` fragments with this message's `t`.
    pub fn awaits_parts(&self) -> bool {
        self.value_slots().is_some_and(|s| s.iter().any(|v| matches!(v, ValueSlot::Announced(_))))
    }

    /// Decodes one datagram. Never panics; see [`DecodeError`] for what failures mean.
    pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
        let root = msgpack::read(datagram).map_err(|e| garbage(e.to_string()))?;
        let top = msgpack::as_map(&root).ok_or_else(|| garbage("top level is not a map"))?;
        let tid = match msgpack::get_last(top, "t") {
            None => 0,
            Some(t) => msgpack::as_tid(t).ok_or_else(|| garbage("t is not a transaction id"))?,
        };
        let agent = match msgpack::get_last(top, "v") {
            None => None,
            Some(v) => Some(lossy(msgpack::as_raw_text(v).ok_or_else(|| garbage("v is not a string"))?, 64)),
        };
        let network = match msgpack::get_last(top, "n") {
            None => 0,
            Some(n) => msgpack::as_u32(n).ok_or_else(|| garbage("n is not a u32"))?,
        };
        let is_client = match msgpack::get_last(top, "s") {
            None => false,
            Some(s) => msgpack::as_bool(s).ok_or_else(|| garbage("s is not a boolean"))?,
        };
        let method = match msgpack::get_last(top, "q") {
            None => None,
            Some(q) => Some(msgpack::as_raw_text(q).ok_or_else(|| garbage("q is not a string"))?),
        };
        let map_of = |key: &str| -> Result<Option<&Map<'_>>, DecodeError> {
            match msgpack::get_last(top, key) {
                None => Ok(None),
                Some(v) => msgpack::as_map(v).map(Some).ok_or_else(|| garbage(format!("{key} is not a map"))),
            }
        };
        let body = if let Some(e) = msgpack::get_last(top, "e") {
            Self::decode_error(e, map_of("r")?)?
        } else if let Some(r) = msgpack::get_last(top, "r") {
            let r = msgpack::as_map(r)
                .ok_or_else(|| DecodeError::MalformedReply { tid, reason: "r is not a map".into() })?;
            Body::Reply(decode_reply(r).map_err(|reason| DecodeError::MalformedReply { tid, reason })?)
        } else if let Some(p) = msgpack::get_last(top, "p") {
            Body::ValueParts(decode_parts(p)?)
        } else if let Some(u) = map_of("u")? {
            Body::ListenerPush(decode_reply(u).map_err(|reason| DecodeError::MalformedReply { tid, reason })?)
        } else {
            if let Some(y) = msgpack::get_last(top, "y") {
                if msgpack::as_raw_text(y) != Some(b"q") {
                    return Err(garbage("y is not q, r, e or p"));
                }
            }
            let method = method.ok_or_else(|| garbage("request without method q"))?;
            let args = map_of("a")?.ok_or_else(|| garbage("request without arguments a"))?;
            Self::decode_request(tid, method, args)?
        };
        Ok(Message { tid, agent, network, is_client, body })
    }

    fn decode_error(e: &ValueRef<'_>, r: Option<&Map<'_>>) -> Result<Body, DecodeError> {
        let e = msgpack::as_array(e).filter(|e| !e.is_empty()).ok_or_else(|| garbage("e is not [code, message]"))?;
        let code = msgpack::as_u16(&e[0]).ok_or_else(|| garbage("error code is not a u16"))?;
        let message = e.get(1).and_then(msgpack::as_raw_text).map(|m| lossy(m, MAX_ERROR_MESSAGE_LEN));
        let id = match r.and_then(|r| msgpack::get_last(r, "id")) {
            None => None,
            Some(id) => Some(msgpack::as_hash(id).ok_or_else(|| garbage("error sender id is not 20 bytes"))?),
        };
        Ok(Body::Error { code, message: message.unwrap_or_default(), id })
    }

    fn decode_request(tid: u32, method: &[u8], a: &Map<'_>) -> Result<Body, DecodeError> {
        let method: &'static str = match method {
            b"ping" => "ping",
            b"find" => "find",
            b"get" => "get",
            b"put" => "put",
            b"listen" => "listen",
            b"refresh" => "refresh",
            b"update" => "update",
            other => return Err(DecodeError::UnknownMethod { tid, method: lossy(other, 64) }),
        };
        // Without a readable sender id OpenDHT drops a request outright (it takes it for one
        // of its own); so do we.
        let id = msgpack::get_last(a, "id")
            .and_then(msgpack::as_hash)
            .filter(|id| *id != Id::ZERO)
            .ok_or_else(|| garbage(format!("{method} request without a sender id")))?;
        let request =
            decode_request_args(method, a).map_err(|reason| DecodeError::MalformedRequest { tid, method, reason })?;
        Ok(Body::Request { id, request })
    }

    /// Appends the encoded message. Keys come in the order OpenDHT packs them, so a message
    /// read from OpenDHT encodes back to the same bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        let trailer = usize::from(self.agent.is_some()) + usize::from(self.network != 0) + usize::from(self.is_client);
        match &self.body {
            Body::Request { id, request } => {
                w.map(4 + trailer);
                w.key("a");
                encode_request(&mut w, id, request);
                w.key("q").str(request.method());
                w.key("t").uint(u64::from(self.tid));
                w.key("y").str("q");
                self.encode_trailer(&mut w);
            }
            Body::Reply(r) => {
                w.map(3 + trailer);
                w.key("r");
                encode_reply(&mut w, r);
                w.key("t").uint(u64::from(self.tid));
                w.key("y").str("r");
                self.encode_trailer(&mut w);
            }
            Body::Error { code, message, id } => {
                w.map(3 + usize::from(id.is_some()) + trailer);
                w.key("e").array(2).uint(u64::from(*code)).str(message);
                if let Some(id) = id {
                    w.key("r").map(1).key("id").bin(id.as_bytes());
                }
                w.key("t").uint(u64::from(self.tid));
                w.key("y").str("e");
                self.encode_trailer(&mut w);
            }
            Body::ListenerPush(r) => {
                w.map(3 + trailer);
                w.key("u");
                encode_reply(&mut w, r);
                w.key("y").str("r");
                self.encode_trailer(&mut w);
                w.key("t").uint(u64::from(self.tid));
            }
            Body::ValueParts(parts) => {
                w.map(3 + trailer);
                if let Some(agent) = &self.agent {
                    w.key("v").str(agent);
                }
                self.encode_network(&mut w);
                w.key("y").str("p");
                w.key("t").uint(u64::from(self.tid));
                w.key("p").map(parts.fragments.len());
                for (index, fragment) in &parts.fragments {
                    w.uint(u64::from(*index)).map(2).key("o").uint(fragment.offset).key("d").bin(&fragment.data);
                }
            }
        }
    }

    fn encode_trailer(&self, w: &mut Writer<'_>) {
        if let Some(agent) = &self.agent {
            w.key("v").str(agent);
        }
        self.encode_network(w);
    }

    fn encode_network(&self, w: &mut Writer<'_>) {
        if self.network != 0 {
            w.key("n").uint(u64::from(self.network));
        }
        if self.is_client {
            w.key("s").bool(true);
        }
    }

    /// The message packed as msgpack, ready to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode(&mut out);
        out
    }
}

// ------------------------------------------------------------------ argument decoding

fn key_arg(a: &Map<'_>, key: &str) -> Result<Id, String> {
    let v = msgpack::get_last(a, key).ok_or_else(|| format!("missing {key}"))?;
    msgpack::as_hash(v).ok_or_else(|| format!("{key} is not a 20-byte binary"))
}

fn opt_key_arg(a: &Map<'_>, key: &str) -> Result<Option<Id>, String> {
    msgpack::get_last(a, key).map(|_| key_arg(a, key)).transpose()
}

fn blob_arg(a: &Map<'_>, key: &str) -> Result<Vec<u8>, String> {
    match msgpack::get_last(a, key) {
        None => Ok(Vec::new()),
        Some(v) => msgpack::as_blob(v).ok_or_else(|| format!("{key} is not bytes")),
    }
}

fn opt_u64_arg(a: &Map<'_>, key: &str) -> Result<Option<u64>, String> {
    msgpack::get_last(a, key).map(|v| msgpack::as_uint(v).ok_or_else(|| format!("{key} is not a u64"))).transpose()
}

fn opt_i64_arg(a: &Map<'_>, key: &str) -> Result<Option<i64>, String> {
    msgpack::get_last(a, key).map(|v| msgpack::as_int(v).ok_or_else(|| format!("{key} is not an i64"))).transpose()
}

fn opt_i32_arg(a: &Map<'_>, key: &str) -> Result<Option<i32>, String> {
    msgpack::get_last(a, key)
        .map(|v| msgpack::as_int(v).and_then(|i| i32::try_from(i).ok()).ok_or_else(|| format!("{key} is not an i32")))
        .transpose()
}

fn tid_arg(a: &Map<'_>, key: &str) -> Result<u32, String> {
    match msgpack::get_last(a, key) {
        None => Ok(0),
        Some(v) => msgpack::as_tid(v).ok_or_else(|| format!("{key} is not a u32")),
    }
}

fn ids_arg(a: &Map<'_>, key: &str) -> Result<Vec<ValueId>, String> {
    match msgpack::get_last(a, key) {
        None => Ok(Vec::new()),
        Some(v) => msgpack::as_array(v)
            .and_then(|items| items.iter().map(msgpack::as_uint).collect())
            .ok_or_else(|| format!("{key} is not an array of value ids")),
    }
}

fn want_arg(a: &Map<'_>) -> Result<Option<Want>, String> {
    let Some(w) = msgpack::get_last(a, "w") else { return Ok(None) };
    let items = msgpack::as_array(w).ok_or("w is not an array")?;
    let mut want = Want::default();
    for family in items.iter().filter_map(msgpack::as_uint) {
        if family == WANT_IPV4 {
            want.v4 = true;
        } else if family == WANT_IPV6 || OTHER_IPV6_FAMILIES.contains(&family) {
            want.v6 = true;
        }
    }
    Ok(Some(want))
}

fn query_arg(a: &Map<'_>) -> Result<Option<Query>, String> {
    msgpack::get_last(a, "q").map(Query::read).transpose()
}

fn values_arg(a: &Map<'_>) -> Result<Vec<ValueSlot>, String> {
    let Some(values) = msgpack::get_last(a, "values") else { return Ok(Vec::new()) };
    let items = msgpack::as_array(values).ok_or("values is not an array")?;
    Ok(items
        .iter()
        .map(|item| match msgpack::as_uint(item) {
            Some(size) => ValueSlot::Announced(size),
            None => Value::from_msgpack(item).map_or(ValueSlot::Unreadable, ValueSlot::Value),
        })
        .collect())
}

fn decode_request_args(method: &'static str, a: &Map<'_>) -> Result<Request, String> {
    Ok(match method {
        "ping" => Request::Ping,
        "find" => Request::Find { target: key_arg(a, "target")?, want: want_arg(a)? },
        "get" => Request::Get { key: key_arg(a, "h")?, query: query_arg(a)?, want: want_arg(a)? },
        "put" => Request::Put(PutArgs {
            key: key_arg(a, "h")?,
            token: blob_arg(a, "token")?,
            values: values_arg(a)?,
            created: opt_i64_arg(a, "c")?,
        }),
        "listen" => Request::Listen(ListenArgs {
            key: key_arg(a, "h")?,
            token: blob_arg(a, "token")?,
            socket_id: tid_arg(a, "sid")?,
            version: opt_i32_arg(a, "ve")?,
            query: query_arg(a)?,
        }),
        "refresh" => Request::Refresh {
            key: key_arg(a, "h")?,
            token: blob_arg(a, "token")?,
            value_id: opt_u64_arg(a, "vid")?.ok_or("missing vid")?,
        },
        _ => Request::Update(UpdateArgs {
            key: opt_key_arg(a, "h")?,
            socket_id: tid_arg(a, "sid")?,
            version: opt_i32_arg(a, "ve")?,
            token: blob_arg(a, "token")?,
            values: values_arg(a)?,
            created: opt_i64_arg(a, "c")?,
            refreshed: ids_arg(a, "re")?,
            expired: ids_arg(a, "exp")?,
        }),
    })
}

fn nodes_arg(r: &Map<'_>, key: &str, len: usize) -> Result<Vec<(NodeId, SocketAddr)>, String> {
    let bytes = blob_arg(r, key)?;
    if bytes.len() % len != 0 {
        return Err(format!("{key} is {} bytes, not a multiple of {len}", bytes.len()));
    }
    Ok(compact::decode_nodes(&bytes, len))
}

fn decode_reply(r: &Map<'_>) -> Result<Reply, String> {
    let id = key_arg(r, "id")?;
    let requester = match msgpack::get_last(r, "sa") {
        None => None,
        Some(ValueRef::Binary(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(*b).ok().map(|ip| IpAddr::V4(Ipv4Addr::from(ip))),
            16 => <[u8; 16]>::try_from(*b).ok().map(|ip| IpAddr::V6(Ipv6Addr::from(ip))),
            // OpenDHT ignores an address of any other length.
            _ => None,
        },
        Some(_) => return Err("sa is not a binary".into()),
    };
    let values = values_arg(r)?;
    // As in OpenDHT, `fileds` is only read when there is no `values`.
    let fields = match msgpack::get_last(r, "fileds") {
        Some(f) if msgpack::get_last(r, "values").is_none() => Some(FieldValues::read(f)?),
        _ => None,
    };
    Ok(Reply {
        id,
        value_id: opt_u64_arg(r, "vid")?,
        requester,
        nodes4: nodes_arg(r, "n4", NODE_V4_LEN)?,
        nodes6: nodes_arg(r, "n6", NODE_V6_LEN)?,
        token: blob_arg(r, "token")?,
        values,
        fields,
        refreshed: ids_arg(r, "re")?,
        expired: ids_arg(r, "exp")?,
    })
}

fn decode_parts(p: &ValueRef<'_>) -> Result<ValueParts, DecodeError> {
    let entries = msgpack::as_map(p).ok_or_else(|| garbage("p is not a map"))?;
    let mut fragments = BTreeMap::new();
    for (index, part) in entries {
        let index = msgpack::as_u32(index).ok_or_else(|| garbage("a fragment index is not a u32"))?;
        let part = msgpack::as_map(part).ok_or_else(|| garbage("a fragment is not a map"))?;
        let (Some(o), Some(d)) = (msgpack::get(part, "o"), msgpack::get(part, "d")) else {
            continue; // OpenDHT skips fragments without offset or data
        };
        let offset = msgpack::as_uint(o).ok_or_else(|| garbage("a fragment offset is not a u64"))?;
        let data = msgpack::as_blob(d).ok_or_else(|| garbage("fragment data are not bytes"))?;
        // The first fragment with a given index wins, as in OpenDHT.
        fragments.entry(index).or_insert(Fragment { offset, data });
    }
    Ok(ValueParts { fragments })
}

// ------------------------------------------------------------------ encoding

fn encode_want(w: &mut Writer<'_>, want: &Option<Want>) {
    if let Some(want) = want {
        w.key("w").array(usize::from(want.v4) + usize::from(want.v6));
        if want.v4 {
            w.uint(WANT_IPV4);
        }
        if want.v6 {
            w.uint(WANT_IPV6);
        }
    }
}

fn encode_values(w: &mut Writer<'_>, values: &[ValueSlot]) {
    w.key("values").array(values.len());
    for slot in values {
        match slot {
            ValueSlot::Value(v) => v.write(w),
            ValueSlot::Announced(size) => {
                w.uint(*size);
            }
            ValueSlot::Unreadable => {
                w.nil();
            }
        }
    }
}

fn encode_request(w: &mut Writer<'_>, id: &NodeId, request: &Request) {
    match request {
        Request::Ping => {
            w.map(1).key("id").bin(id.as_bytes());
        }
        Request::Find { target, want } => {
            w.map(2 + usize::from(want.is_some()));
            w.key("id").bin(id.as_bytes());
            w.key("target").bin(target.as_bytes());
            encode_want(w, want);
        }
        Request::Get { key, query, want } => {
            w.map(2 + usize::from(query.is_some()) + usize::from(want.is_some()));
            w.key("id").bin(id.as_bytes());
            w.key("h").bin(key.as_bytes());
            if let Some(q) = query {
                w.key("q");
                q.write(w);
            }
            encode_want(w, want);
        }
        Request::Put(p) => {
            w.map(4 + usize::from(p.created.is_some()));
            w.key("id").bin(id.as_bytes());
            w.key("h").bin(p.key.as_bytes());
            encode_values(w, &p.values);
            if let Some(c) = p.created {
                w.key("c").int(c);
            }
            w.key("token").bin(&p.token);
        }
        Request::Listen(l) => {
            w.map(4 + usize::from(l.version.is_some()) + usize::from(l.query.is_some()));
            w.key("id").bin(id.as_bytes());
            if let Some(ve) = l.version {
                w.key("ve").int(i64::from(ve));
            }
            w.key("h").bin(l.key.as_bytes());
            w.key("token").bin(&l.token);
            w.key("sid").uint(u64::from(l.socket_id));
            if let Some(q) = &l.query {
                w.key("q");
                q.write(w);
            }
        }
        Request::Refresh { key, token, value_id } => {
            w.map(4);
            w.key("id").bin(id.as_bytes());
            w.key("h").bin(key.as_bytes());
            w.key("vid").uint(*value_id);
            w.key("token").bin(token);
        }
        Request::Update(u) => {
            let len = 2
                + usize::from(u.version.is_some())
                + usize::from(u.key.is_some())
                + usize::from(!u.values.is_empty())
                + usize::from(u.created.is_some())
                + usize::from(!u.token.is_empty())
                + usize::from(!u.refreshed.is_empty())
                + usize::from(!u.expired.is_empty());
            w.map(len);
            w.key("id").bin(id.as_bytes());
            if let Some(ve) = u.version {
                w.key("ve").int(i64::from(ve));
            }
            if let Some(key) = &u.key {
                w.key("h").bin(key.as_bytes());
            }
            w.key("sid").uint(u64::from(u.socket_id));
            if !u.values.is_empty() {
                encode_values(w, &u.values);
            }
            if let Some(c) = u.created {
                w.key("c").int(c);
            }
            if !u.token.is_empty() {
                w.key("token").bin(&u.token);
            }
            encode_ids(w, "re", &u.refreshed);
            encode_ids(w, "exp", &u.expired);
        }
    }
}

fn encode_ids(w: &mut Writer<'_>, key: &str, ids: &[ValueId]) {
    if !ids.is_empty() {
        w.key(key).array(ids.len());
        for id in ids {
            w.uint(*id);
        }
    }
}

fn encode_reply(w: &mut Writer<'_>, r: &Reply) {
    let v4: Vec<_> = r.nodes4.iter().filter(|(_, a)| a.is_ipv4()).collect();
    let v6: Vec<_> = r.nodes6.iter().filter(|(_, a)| a.is_ipv6()).collect();
    let fields = r.fields.as_ref().filter(|_| r.values.is_empty());
    let len = 1
        + usize::from(r.value_id.is_some())
        + usize::from(r.requester.is_some())
        + usize::from(!v4.is_empty())
        + usize::from(!v6.is_empty())
        + usize::from(!r.token.is_empty())
        + usize::from(!r.values.is_empty())
        + usize::from(fields.is_some())
        + usize::from(!r.refreshed.is_empty())
        + usize::from(!r.expired.is_empty());
    w.map(len);
    w.key("id").bin(r.id.as_bytes());
    if let Some(vid) = r.value_id {
        w.key("vid").uint(vid);
    }
    match r.requester {
        Some(IpAddr::V4(ip)) => {
            w.key("sa").bin(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            w.key("sa").bin(&ip.octets());
        }
        None => {}
    }
    if !v4.is_empty() {
        let mut bytes = Vec::with_capacity(v4.len() * NODE_V4_LEN);
        compact::encode_nodes(v4, false, &mut bytes);
        w.key("n4").bin(&bytes);
    }
    if !v6.is_empty() {
        let mut bytes = Vec::with_capacity(v6.len() * NODE_V6_LEN);
        compact::encode_nodes(v6, true, &mut bytes);
        w.key("n6").bin(&bytes);
    }
    if !r.token.is_empty() {
        w.key("token").bin(&r.token);
    }
    if !r.values.is_empty() {
        encode_values(w, &r.values);
    } else if let Some(f) = fields {
        w.key("fileds");
        f.write(w);
    }
    encode_ids(w, "re", &r.refreshed);
    encode_ids(w, "exp", &r.expired);
}
