use std::net::SocketAddr;

use super::bencode::{self, DictEncoder, Encoder, Value};
use super::compact::{self, NODE_V4_LEN, NODE_V6_LEN};
use crate::kad::{Id, NodeId};

/// Longest transaction ID echoed back; real ones are 2 to 4 bytes.
pub(crate) const MAX_TRANSACTION_ID_LEN: usize = 32;

/// KRPC error codes (BEP 5, and BEP 44 for 205 and up).
pub mod error_code {
    /// 201: generic error.
    pub const GENERIC: i64 = 201;
    /// 202: server error.
    pub const SERVER: i64 = 202;
    /// 203: protocol error (a malformed packet, an invalid argument or a bad token).
    pub const PROTOCOL: i64 = 203;
    /// 204: method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
    /// 205: BEP 44 value larger than 1000 bytes.
    pub const VALUE_TOO_BIG: i64 = 205;
    /// 206: BEP 44 signature that does not verify.
    pub const INVALID_SIGNATURE: i64 = 206;
    /// 207: BEP 44 salt larger than 64 bytes.
    pub const SALT_TOO_BIG: i64 = 207;
    /// 301: BEP 44 compare-and-swap whose `cas` does not match the stored sequence number.
    pub const CAS_MISMATCH: i64 = 301;
    /// 302: BEP 44 sequence number lower than the stored one.
    pub const SEQ_TOO_LOW: i64 = 302;
}

/// One KRPC datagram.
///
/// KRPC messages (BEP 5) with the extensions kadmos speaks: BEP 32 `nodes6`/`want`, BEP 42
/// `ip`, BEP 43 `ro`, BEP 44 `get`/`put`, BEP 51 `sample_infohashes`.
///
/// These are wire structs: they say what a datagram holds, nothing about what a node does
/// with it. Decoding sorts failures into what the node must do about them (see
/// [`DecodeError`]): reply 203 to a query it can read but not accept, 204 to an unknown
/// method, and drop everything else silently (answering garbage helps reflection attacks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `t`: opaque, echoed in the answer.
    pub transaction_id: Vec<u8>,
    /// `v`: the sender's client version (2 letters and 2 version bytes), when sent.
    pub version: Option<Vec<u8>>,
    /// `ip` (BEP 42): in answers, the address the responder saw us at.
    pub requester_ip: Option<SocketAddr>,
    /// `ro` (BEP 43): the sender is read-only and must not be added to routing tables.
    pub read_only: bool,
    /// `y` and its dictionary: a query, an answer or an error.
    pub body: Body,
}

/// What a KRPC message carries (`y` = `q`, `r` or `e`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A query (`y: q`).
    Query {
        /// The querier's node ID (`a.id`).
        id: NodeId,
        /// The method and its arguments.
        query: Query,
    },
    /// An answer (`y: r`).
    Response(Response),
    /// An error (`y: e`): a code from [`error_code`] and a message.
    Error {
        /// The error code.
        code: i64,
        /// The human-readable message.
        message: String,
    },
}

/// BEP 32 `want`: which address families the querier wants nodes for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// `n4`: nodes of IPv4.
    pub v4: bool,
    /// `n6`: nodes of IPv6.
    pub v6: bool,
}

/// A KRPC query: its method (`q`) and arguments (`a`), BEP 5 and the extensions kadmos speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// BEP 5 `ping`.
    Ping,
    /// BEP 5 `find_node`: the nodes closest to `target`.
    FindNode {
        /// The ID searched for.
        target: Id,
        /// BEP 32 `want`, when sent.
        want: Option<Want>,
    },
    /// BEP 5 `get_peers`: peers of a torrent, or the nodes closest to it.
    GetPeers {
        /// The torrent's infohash.
        info_hash: Id,
        /// BEP 32 `want`, when sent.
        want: Option<Want>,
    },
    /// BEP 5 `announce_peer`: the querier is a peer of `info_hash`.
    AnnouncePeer {
        /// The torrent's infohash.
        info_hash: Id,
        /// The peer's port (ignored when `implied_port` is set).
        port: u16,
        /// Use the UDP source port of the query instead of `port`.
        implied_port: bool,
        /// The write token from an earlier `get_peers` answer.
        token: Vec<u8>,
        /// BEP 33 `seed`: whether the peer is a seed, when sent.
        seed: Option<bool>,
    },
    /// BEP 51 `sample_infohashes`: a sample of the infohashes a node stores.
    SampleInfohashes {
        /// Where to look for more nodes (the answer carries the nodes closest to it).
        target: Id,
        /// BEP 32 `want`, when sent.
        want: Option<Want>,
    },
    /// BEP 44 `get`; `seq` asks the node to omit the value unless it holds a newer one.
    Get {
        /// The item's target.
        target: Id,
        /// Omit the value unless the stored `seq` is higher than this.
        seq: Option<i64>,
        /// BEP 32 `want`, when sent.
        want: Option<Want>,
    },
    /// BEP 44 `put`; `value` is the raw bencoded `v`.
    Put(PutArgs),
}

impl Query {
    /// The method's name on the wire (`q`).
    pub fn method(&self) -> &'static str {
        match self {
            Query::Ping => "ping",
            Query::FindNode { .. } => "find_node",
            Query::GetPeers { .. } => "get_peers",
            Query::AnnouncePeer { .. } => "announce_peer",
            Query::SampleInfohashes { .. } => "sample_infohashes",
            Query::Get { .. } => "get",
            Query::Put(_) => "put",
        }
    }
}

/// Arguments of a BEP 44 `put`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PutArgs {
    /// The write token from an earlier `get` answer.
    pub token: Vec<u8>,
    /// `v`, still bencoded.
    pub value: Vec<u8>,
    /// Mutable items: the ed25519 public key, signature, sequence number, salt and CAS.
    pub public_key: Option<[u8; 32]>,
    /// `sig`: the ed25519 signature of the salt, `seq` and `v`.
    pub signature: Option<[u8; 64]>,
    /// `seq`: the item's sequence number.
    pub seq: Option<i64>,
    /// `salt`, when not empty.
    pub salt: Option<Vec<u8>>,
    /// `cas`: store only if the stored `seq` equals this.
    pub cas: Option<i64>,
    /// The item's target. Not in BEP 44 (a receiver derives it from `v` or from `k` and `salt`),
    /// but the `mainline` crate (pkarr, Pubky) drops a `put` without it; other implementations
    /// ignore it. Sent by kadmos; read when present, never trusted.
    pub target: Option<Id>,
}

/// The `r` dictionary of an answer. Answers don't name their method, so every field any
/// method may return is optional here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The responder's node ID.
    pub id: NodeId,
    /// `nodes`: IPv4 nodes close to the target, compact.
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// `nodes6` (BEP 32): IPv6 nodes close to the target, compact.
    pub nodes6: Vec<(NodeId, SocketAddr)>,
    /// A write token for a later `announce_peer` or `put`.
    pub token: Option<Vec<u8>>,
    /// `values`: peers of the torrent (`get_peers`).
    pub values: Vec<SocketAddr>,
    /// BEP 51.
    pub samples: Option<Vec<Id>>,
    /// BEP 51 `num`: infohashes the responder stores.
    pub num: Option<i64>,
    /// BEP 51 `interval`: seconds before asking the responder for samples again.
    pub interval: Option<i64>,
    /// BEP 44: raw bencoded `v`, and the mutable item fields.
    pub value: Option<Vec<u8>>,
    /// `k`: a mutable item's ed25519 public key.
    pub public_key: Option<[u8; 32]>,
    /// `sig`: a mutable item's signature.
    pub signature: Option<[u8; 64]>,
    /// `seq`: a mutable item's sequence number.
    pub seq: Option<i64>,
    /// libtorrent's `p`: the port it saw us send from.
    pub port: Option<i64>,
}

/// Why a datagram was not accepted, and so what the node does about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a KRPC message we can answer: drop it.
    #[error("not a KRPC message: {0}")]
    Garbage(String),
    /// A query with a readable transaction ID but unusable arguments: answer 203.
    #[error("malformed {method} query: {reason}")]
    MalformedQuery {
        /// The query's `t`, to answer with.
        transaction_id: Vec<u8>,
        /// The query's method.
        method: String,
        /// What is wrong with its arguments.
        reason: String,
    },
    /// A query for a method we do not know: answer 204.
    #[error("unknown method {method:?}")]
    UnknownMethod {
        /// The query's `t`, to answer with.
        transaction_id: Vec<u8>,
        /// The method named.
        method: String,
    },
    /// An answer we cannot read: drop it (never answer an answer).
    #[error("malformed response: {reason}")]
    MalformedResponse {
        /// The answer's `t`.
        transaction_id: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// The error reply a node should send for this failure, if any.
    pub fn reply(&self) -> Option<Message> {
        let (transaction_id, code, message) = match self {
            DecodeError::MalformedQuery { transaction_id, reason, .. } => {
                (transaction_id, error_code::PROTOCOL, format!("invalid arguments: {reason}"))
            }
            DecodeError::UnknownMethod { transaction_id, method } => {
                (transaction_id, error_code::METHOD_UNKNOWN, format!("method unknown: {method}"))
            }
            _ => return None,
        };
        Some(Message::error(transaction_id.clone(), code, message))
    }
}

fn malformed(reason: impl Into<String>) -> String {
    reason.into()
}

fn id_arg(args: &Value<'_>, key: &str) -> Result<Id, String> {
    let bytes = args.get(key).ok_or_else(|| malformed(format!("missing {key}")))?;
    bytes.as_bytes().and_then(Id::from_bytes).ok_or_else(|| malformed(format!("{key} is not 20 bytes")))
}

fn bytes_arg<'a>(args: &Value<'a>, key: &str) -> Result<&'a [u8], String> {
    args.get(key)
        .ok_or_else(|| malformed(format!("missing {key}")))?
        .as_bytes()
        .ok_or_else(|| malformed(format!("{key} is not a string")))
}

fn opt_int(args: &Value<'_>, key: &str) -> Result<Option<i64>, String> {
    match args.get(key) {
        None => Ok(None),
        Some(v) => v.as_int().map(Some).ok_or_else(|| malformed(format!("{key} is not an integer"))),
    }
}

fn want_arg(args: &Value<'_>) -> Result<Option<Want>, String> {
    let Some(list) = args.get("want") else { return Ok(None) };
    let list = list.as_list().ok_or_else(|| malformed("want is not a list"))?;
    let mut want = Want::default();
    for item in list {
        match item.as_bytes() {
            Some(b"n4") => want.v4 = true,
            Some(b"n6") => want.v6 = true,
            _ => {} // unknown families are ignored, per BEP 32
        }
    }
    Ok(Some(want))
}

fn fixed<const N: usize>(args: &Value<'_>, key: &str) -> Result<Option<[u8; N]>, String> {
    match args.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bytes()
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .map(Some)
            .ok_or_else(|| malformed(format!("{key} is not {N} bytes"))),
    }
}

impl Message {
    /// A query message, with no `v`, `ip` or `ro` set.
    pub fn query(transaction_id: Vec<u8>, id: NodeId, query: Query) -> Message {
        Message { transaction_id, version: None, requester_ip: None, read_only: false, body: Body::Query { id, query } }
    }

    /// An answer message, with no `v`, `ip` or `ro` set.
    pub fn response(transaction_id: Vec<u8>, response: Response) -> Message {
        Message { transaction_id, version: None, requester_ip: None, read_only: false, body: Body::Response(response) }
    }

    /// An error message, with no `v`, `ip` or `ro` set.
    pub fn error(transaction_id: Vec<u8>, code: i64, message: impl Into<String>) -> Message {
        Message {
            transaction_id,
            version: None,
            requester_ip: None,
            read_only: false,
            body: Body::Error { code, message: message.into() },
        }
    }

    /// Decodes one datagram.
    pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
        let root = bencode::decode(datagram).map_err(|e| DecodeError::Garbage(e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(DecodeError::Garbage("top level is not a dictionary".into()));
        }
        let transaction_id = root
            .get("t")
            .and_then(Value::as_bytes)
            .filter(|t| t.len() <= MAX_TRANSACTION_ID_LEN)
            .ok_or_else(|| DecodeError::Garbage("no usable transaction id".into()))?
            .to_vec();
        let version = root.get("v").and_then(Value::as_bytes).filter(|v| v.len() <= 16).map(<[u8]>::to_vec);
        let requester_ip = root.get("ip").and_then(Value::as_bytes).and_then(compact::decode_peer);
        let read_only = root.get("ro").and_then(Value::as_int) == Some(1);
        let kind = root.get("y").and_then(Value::as_bytes);
        let body = match kind {
            Some(b"q") => {
                let method = root.get("q").and_then(Value::as_bytes).ok_or_else(|| DecodeError::MalformedQuery {
                    transaction_id: transaction_id.clone(),
                    method: "?".into(),
                    reason: "missing method name q".into(),
                })?;
                let method_name = String::from_utf8_lossy(&method[..method.len().min(64)]).into_owned();
                let fail = |reason: String| DecodeError::MalformedQuery {
                    transaction_id: transaction_id.clone(),
                    method: method_name.clone(),
                    reason,
                };
                let args_dict = root.get("a").filter(|a| a.as_dict().is_some());
                let args = || args_dict.ok_or_else(|| fail("missing argument dictionary a".into()));
                let query = match method {
                    b"ping" => Query::Ping,
                    b"find_node" => {
                        let a = args()?;
                        Query::FindNode { target: id_arg(a, "target").map_err(fail)?, want: want_arg(a).map_err(fail)? }
                    }
                    b"get_peers" => {
                        let a = args()?;
                        Query::GetPeers {
                            info_hash: id_arg(a, "info_hash").map_err(fail)?,
                            want: want_arg(a).map_err(fail)?,
                        }
                    }
                    b"announce_peer" => {
                        let a = args()?;
                        let implied_port = opt_int(a, "implied_port").map_err(fail)?.is_some_and(|v| v != 0);
                        let port = opt_int(a, "port").map_err(fail)?;
                        let port = match (port, implied_port) {
                            (Some(p), _) if (0..=65535).contains(&p) => p as u16,
                            (None, true) => 0,
                            (Some(_), _) => return Err(fail("port out of range".into())),
                            (None, false) => return Err(fail("missing port".into())),
                        };
                        Query::AnnouncePeer {
                            info_hash: id_arg(a, "info_hash").map_err(fail)?,
                            port,
                            implied_port,
                            token: bytes_arg(a, "token").map_err(fail)?.to_vec(),
                            seed: opt_int(a, "seed").map_err(fail)?.map(|s| s != 0),
                        }
                    }
                    b"sample_infohashes" => {
                        let a = args()?;
                        Query::SampleInfohashes {
                            target: id_arg(a, "target").map_err(fail)?,
                            want: want_arg(a).map_err(fail)?,
                        }
                    }
                    b"get" => {
                        let a = args()?;
                        Query::Get {
                            target: id_arg(a, "target").map_err(fail)?,
                            seq: opt_int(a, "seq").map_err(fail)?,
                            want: want_arg(a).map_err(fail)?,
                        }
                    }
                    b"put" => {
                        let a = args()?;
                        let value = a.get_entry("v").ok_or_else(|| fail("missing v".into()))?.raw.to_vec();
                        let salt = match a.get("salt") {
                            None => None,
                            Some(s) => Some(s.as_bytes().ok_or_else(|| fail("salt is not a string".into()))?.to_vec()),
                        };
                        Query::Put(PutArgs {
                            token: bytes_arg(a, "token").map_err(fail)?.to_vec(),
                            value,
                            public_key: fixed::<32>(a, "k").map_err(fail)?,
                            signature: fixed::<64>(a, "sig").map_err(fail)?,
                            seq: opt_int(a, "seq").map_err(fail)?,
                            salt,
                            cas: opt_int(a, "cas").map_err(fail)?,
                            // An extension: one that is not 20 bytes is ignored, not refused.
                            target: a.get("target").and_then(|t| t.as_bytes()).and_then(Id::from_bytes),
                        })
                    }
                    _ => return Err(DecodeError::UnknownMethod { transaction_id, method: method_name }),
                };
                let id = id_arg(args()?, "id").map_err(fail)?;
                Body::Query { id, query }
            }
            Some(b"r") => {
                let fail =
                    |reason: String| DecodeError::MalformedResponse { transaction_id: transaction_id.clone(), reason };
                let r = root.get("r").filter(|r| r.as_dict().is_some()).ok_or_else(|| fail("missing r".into()))?;
                Body::Response(Self::decode_response(r).map_err(fail)?)
            }
            Some(b"e") => {
                let e = root.get("e").and_then(Value::as_list).unwrap_or(&[]);
                let code = e.first().and_then(Value::as_int).unwrap_or(error_code::GENERIC);
                let message = e
                    .get(1)
                    .and_then(Value::as_bytes)
                    .map(|m| String::from_utf8_lossy(&m[..m.len().min(256)]).into_owned());
                Body::Error { code, message: message.unwrap_or_default() }
            }
            _ => {
                return Err(DecodeError::Garbage("y is not q, r or e".into()));
            }
        };
        Ok(Message { transaction_id, version, requester_ip, read_only, body })
    }

    fn decode_response(r: &Value<'_>) -> Result<Response, String> {
        let id = id_arg(r, "id")?;
        let nodes_of = |key: &str, len: usize| -> Result<Vec<(NodeId, SocketAddr)>, String> {
            match r.get(key) {
                None => Ok(Vec::new()),
                Some(v) => {
                    Ok(compact::decode_nodes(v.as_bytes().ok_or_else(|| format!("{key} is not a string"))?, len))
                }
            }
        };
        let values = match r.get("values") {
            None => Vec::new(),
            Some(v) => v
                .as_list()
                .ok_or("values is not a list")?
                .iter()
                .filter_map(|p| p.as_bytes().and_then(compact::decode_peer))
                .collect(),
        };
        let samples = match r.get("samples") {
            None => None,
            Some(v) => Some(
                v.as_bytes().ok_or("samples is not a string")?.chunks_exact(20).filter_map(Id::from_bytes).collect(),
            ),
        };
        let token = match r.get("token") {
            None => None,
            Some(v) => Some(v.as_bytes().ok_or("token is not a string")?.to_vec()),
        };
        Ok(Response {
            id,
            nodes: nodes_of("nodes", NODE_V4_LEN)?,
            nodes6: nodes_of("nodes6", NODE_V6_LEN)?,
            token,
            values,
            samples,
            num: opt_int(r, "num")?,
            interval: opt_int(r, "interval")?,
            value: r.get_entry("v").map(|e| e.raw.to_vec()),
            public_key: fixed::<32>(r, "k")?,
            signature: fixed::<64>(r, "sig")?,
            seq: opt_int(r, "seq")?,
            port: opt_int(r, "p")?,
        })
    }

    /// Encodes the message, appending to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        Encoder::new(out).dict(|d| {
            match &self.body {
                Body::Query { id, query } => {
                    d.key("a").dict(|a| encode_query_args(a, id, query));
                }
                Body::Error { code, message } => {
                    d.key("e").list(|l| {
                        l.int(*code);
                        l.bytes(message.as_bytes());
                    });
                }
                Body::Response(_) => {}
            }
            if let Some(ip) = &self.requester_ip {
                d.key("ip").bytes(&compact::peer_bytes(ip));
            }
            if let Body::Query { query, .. } = &self.body {
                d.key("q").bytes(query.method().as_bytes());
            }
            if let Body::Response(r) = &self.body {
                d.key("r").dict(|rd| encode_response(rd, r));
            }
            if self.read_only {
                d.key("ro").int(1);
            }
            d.key("t").bytes(&self.transaction_id);
            if let Some(v) = &self.version {
                d.key("v").bytes(v);
            }
            d.key("y").bytes(match self.body {
                Body::Query { .. } => b"q",
                Body::Response(_) => b"r",
                Body::Error { .. } => b"e",
            });
        });
    }

    /// The message bencoded, ready to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode(&mut out);
        out
    }
}

fn encode_want(d: &mut DictEncoder<'_>, want: &Option<Want>) {
    if let Some(want) = want {
        d.key("want").list(|l| {
            if want.v4 {
                l.bytes(b"n4");
            }
            if want.v6 {
                l.bytes(b"n6");
            }
        });
    }
}

fn encode_query_args(a: &mut DictEncoder<'_>, id: &NodeId, query: &Query) {
    match query {
        Query::Ping => {
            a.key("id").bytes(id.as_bytes());
        }
        Query::FindNode { target, want } => {
            a.key("id").bytes(id.as_bytes());
            a.key("target").bytes(target.as_bytes());
            encode_want(a, want);
        }
        Query::GetPeers { info_hash, want } => {
            a.key("id").bytes(id.as_bytes());
            a.key("info_hash").bytes(info_hash.as_bytes());
            encode_want(a, want);
        }
        Query::AnnouncePeer { info_hash, port, implied_port, token, seed } => {
            a.key("id").bytes(id.as_bytes());
            if *implied_port {
                a.key("implied_port").int(1);
            }
            a.key("info_hash").bytes(info_hash.as_bytes());
            a.key("port").int(i64::from(*port));
            if let Some(seed) = seed {
                a.key("seed").int(i64::from(*seed));
            }
            a.key("token").bytes(token);
        }
        Query::SampleInfohashes { target, want } => {
            a.key("id").bytes(id.as_bytes());
            a.key("target").bytes(target.as_bytes());
            encode_want(a, want);
        }
        Query::Get { target, seq, want } => {
            a.key("id").bytes(id.as_bytes());
            if let Some(seq) = seq {
                a.key("seq").int(*seq);
            }
            a.key("target").bytes(target.as_bytes());
            encode_want(a, want);
        }
        Query::Put(p) => {
            if let Some(cas) = p.cas {
                a.key("cas").int(cas);
            }
            a.key("id").bytes(id.as_bytes());
            if let Some(k) = &p.public_key {
                a.key("k").bytes(k);
            }
            if let Some(salt) = &p.salt {
                a.key("salt").bytes(salt);
            }
            if let Some(seq) = p.seq {
                a.key("seq").int(seq);
            }
            if let Some(sig) = &p.signature {
                a.key("sig").bytes(sig);
            }
            if let Some(target) = &p.target {
                a.key("target").bytes(target.as_bytes());
            }
            a.key("token").bytes(&p.token);
            a.key("v").raw(&p.value);
        }
    }
}

fn encode_response(d: &mut DictEncoder<'_>, r: &Response) {
    d.key("id").bytes(r.id.as_bytes());
    if let Some(interval) = r.interval {
        d.key("interval").int(interval);
    }
    if let Some(k) = &r.public_key {
        d.key("k").bytes(k);
    }
    let v4 = r.nodes.iter().filter(|(_, a)| a.is_ipv4()).count();
    if v4 > 0 {
        d.key("nodes").bytes_with(v4 * NODE_V4_LEN, |out| compact::encode_nodes(&r.nodes, false, out));
    }
    let v6 = r.nodes6.iter().filter(|(_, a)| a.is_ipv6()).count();
    if v6 > 0 {
        d.key("nodes6").bytes_with(v6 * NODE_V6_LEN, |out| compact::encode_nodes(&r.nodes6, true, out));
    }
    if let Some(num) = r.num {
        d.key("num").int(num);
    }
    if let Some(p) = r.port {
        d.key("p").int(p);
    }
    if let Some(samples) = &r.samples {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.0).collect();
        d.key("samples").bytes(&bytes);
    }
    if let Some(seq) = r.seq {
        d.key("seq").int(seq);
    }
    if let Some(sig) = &r.signature {
        d.key("sig").bytes(sig);
    }
    if let Some(token) = &r.token {
        d.key("token").bytes(token);
    }
    if let Some(v) = &r.value {
        d.key("v").raw(v);
    }
    if !r.values.is_empty() {
        d.key("values").list(|l| {
            for peer in &r.values {
                let len = if peer.is_ipv4() { compact::PEER_V4_LEN } else { compact::PEER_V6_LEN };
                l.bytes_with(len, |out| compact::encode_peer(peer, out));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> Id {
        Id([b; 20])
    }

    fn round_trip(m: Message) {
        let bytes = m.to_bytes();
        bencode::decode(&bytes).expect("valid bencode");
        assert_eq!(Message::decode(&bytes).unwrap(), m, "{}", String::from_utf8_lossy(&bytes));
    }

    /// Every query kind survives encode then decode unchanged.
    #[test]
    fn queries_round_trip() {
        let want = Some(Want { v4: true, v6: true });
        for query in [
            Query::Ping,
            Query::FindNode { target: id(2), want },
            Query::GetPeers { info_hash: id(3), want: None },
            Query::AnnouncePeer {
                info_hash: id(3),
                port: 6881,
                implied_port: true,
                token: b"tok".to_vec(),
                seed: Some(true),
            },
            Query::SampleInfohashes { target: id(4), want },
            Query::Get { target: id(5), seq: Some(4), want: None },
            Query::Put(PutArgs {
                token: b"tk".to_vec(),
                value: b"12:Hello World!".to_vec(),
                public_key: Some([7; 32]),
                signature: Some([8; 64]),
                seq: Some(1),
                salt: Some(b"foobar".to_vec()),
                cas: Some(0),
                target: Some(id(6)),
            }),
        ] {
            let mut m = Message::query(b"aa".to_vec(), id(1), query);
            m.read_only = true;
            m.version = Some(b"KD\x00\x01".to_vec());
            round_trip(m);
        }
    }

    /// Responses with every optional field, and errors, survive a round trip.
    #[test]
    fn responses_and_errors_round_trip() {
        let r = Response {
            id: id(1),
            nodes: vec![(id(2), "1.2.3.4:5".parse().unwrap())],
            nodes6: vec![(id(3), "[::1]:6".parse().unwrap())],
            token: Some(b"tok".to_vec()),
            values: vec!["1.2.3.4:5".parse().unwrap(), "[2001:db8::1]:7".parse().unwrap()],
            samples: Some(vec![id(9), id(10)]),
            num: Some(2),
            interval: Some(300),
            value: Some(b"li1ei2ee".to_vec()),
            public_key: Some([1; 32]),
            signature: Some([2; 64]),
            seq: Some(3),
            port: Some(6881),
        };
        let mut m = Message::response(vec![0, 1], r);
        m.requester_ip = Some("127.0.0.1:4000".parse().unwrap());
        round_trip(m);
        round_trip(Message::error(b"xy".to_vec(), 203, "bad"));
    }

    /// Decoding sorts bad input by what the node must do: 203 for a readable query with bad
    /// arguments, 204 for an unknown method, silence for garbage and malformed answers.
    #[test]
    fn decode_errors_map_to_replies() {
        let bad_args = b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe";
        let e = Message::decode(bad_args).unwrap_err();
        assert_eq!(
            e.reply().unwrap().body,
            Body::Error { code: 203, message: "invalid arguments: id is not 20 bytes".into() }
        );
        let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q5:fetch1:t2:aa1:y1:qe";
        let e = Message::decode(unknown).unwrap_err();
        assert!(matches!(e.reply().unwrap().body, Body::Error { code: 204, .. }));
        assert_eq!(e.reply().unwrap().transaction_id, b"aa");
        for garbage in [&b"de"[..], b"li1ee", b"d1:t2:aae", b"d1:y1:qe", b"\xff\xfe", b"d1:t2:aa1:y1:re"] {
            assert!(Message::decode(garbage).unwrap_err().reply().is_none(), "{garbage:?}");
        }
        let bad_port = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:abcdefghij01234567894:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe";
        assert!(matches!(Message::decode(bad_port).unwrap_err(), DecodeError::MalformedQuery { .. }));
    }
}
