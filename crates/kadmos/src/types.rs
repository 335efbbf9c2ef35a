//! Plain data the API returns: what a lookup found, the routing table, node info.
//! All of it serialises to JSON with stable field names (the CLI's `--json` output).

use std::net::SocketAddr;

use kadmos_proto::kad::{self, RoutingTable, RoutingTableConfig};
use kadmos_proto::kad::{MessageCatalog, MessageCounts};
use kadmos_proto::{NodeId, Timestamp};
use serde::{Serialize, Serializer};

pub(crate) fn hex_id<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A node of the DHT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct NodeInfo {
    /// The node's ID.
    #[serde(serialize_with = "hex_id")]
    pub id: NodeId,
    /// The address it answered from.
    pub addr: SocketAddr,
}

impl From<(NodeId, SocketAddr)> for NodeInfo {
    fn from((id, addr): (NodeId, SocketAddr)) -> Self {
        NodeInfo { id, addr }
    }
}

impl From<kad::Pong> for NodeInfo {
    fn from(kad::Pong { id, addr }: kad::Pong) -> Self {
        NodeInfo { id, addr }
    }
}

impl NodeInfo {
    /// The nodes a lookup ended with, closest first.
    pub(crate) fn closest(closest: kad::Closest) -> Vec<NodeInfo> {
        closest.nodes.into_iter().map(NodeInfo::from).collect()
    }
}

/// Peers one node returned during a `get_peers` lookup (each peer reported once per lookup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerBatch {
    /// The node that returned them.
    pub from: NodeInfo,
    /// Peers of the torrent not reported earlier in this lookup.
    pub peers: Vec<SocketAddr>,
}

/// Result of an announce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnnounceResult {
    /// Nodes that accepted our announce.
    pub stored_at: Vec<NodeInfo>,
    /// Queries sent during the lookup that preceded the announce.
    pub lookup_requests: u32,
}

/// BEP 51 answer of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Samples {
    /// The node that answered.
    pub from: SocketAddr,
    /// A random sample of the infohashes it stores.
    #[serde(serialize_with = "hex_ids")]
    pub samples: Vec<NodeId>,
    /// How many infohashes it stores in all.
    pub num: i64,
    /// Seconds to wait before asking it again.
    pub interval: i64,
    /// Nodes close to the target, to ask next.
    pub nodes: Vec<NodeInfo>,
}

fn hex_ids<S: Serializer>(ids: &[NodeId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|i| i.to_string()))
}

/// A contact's state in the routing table, as BEP 5 defines it (`good`, `questionable` or
/// `bad` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatus {
    /// Answered us, or queried us after having answered, within the last 15 minutes.
    Good,
    /// Silent for longer, not yet failed often enough to be dropped.
    Questionable,
    /// Failed to answer several queries in a row: the first to be replaced.
    Bad,
}

impl ContactStatus {
    /// The BEP 5 word: `good`, `questionable` or `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactStatus::Good => "good",
            ContactStatus::Questionable => "questionable",
            ContactStatus::Bad => "bad",
        }
    }

    /// Every state, best first.
    pub const ALL: [ContactStatus; 3] = [ContactStatus::Good, ContactStatus::Questionable, ContactStatus::Bad];
}

impl std::fmt::Display for ContactStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One contact of the routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactDump {
    /// The contact's node ID.
    #[serde(serialize_with = "hex_id")]
    pub id: NodeId,
    /// Where it is reached.
    pub addr: SocketAddr,
    /// Its BEP 5 state.
    pub status: ContactStatus,
    /// Seconds since it last answered us, if it ever did.
    pub last_response_secs_ago: Option<u64>,
    /// Queries it failed to answer since its last answer.
    pub failures: u8,
    /// The smoothed round-trip time of our requests to it, in microseconds, once one was
    /// answered.
    pub round_trip_us: Option<u64>,
}

impl ContactDump {
    fn of(contact: &kadmos_proto::kad::Contact, config: &RoutingTableConfig, now: Timestamp) -> ContactDump {
        ContactDump {
            id: contact.id,
            addr: contact.addr(),
            status: match contact.status(now, config) {
                kad::ContactStatus::Good => ContactStatus::Good,
                kad::ContactStatus::Questionable => ContactStatus::Questionable,
                kad::ContactStatus::Bad => ContactStatus::Bad,
            },
            last_response_secs_ago: contact.last_response().map(|t| now.saturating_since(t).as_secs()),
            failures: contact.failures,
            round_trip_us: contact.round_trip().map(|rtt| rtt.as_micros() as u64),
        }
    }
}

/// One bucket: contacts sharing `prefix_len` leading bits with our ID (the last bucket:
/// at least that many).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BucketDump {
    /// Leading bits its contacts share with our ID.
    pub prefix_len: usize,
    /// How many contacts the bucket holds at most (wider near the top of the table).
    pub capacity: usize,
    /// The bucket's contacts.
    pub contacts: Vec<ContactDump>,
    /// How many contacts wait in the replacement cache.
    pub replacements: usize,
    /// The replacement cache: verified contacts that take the place of a bad one.
    pub replacement_contacts: Vec<ContactDump>,
    /// Seconds since a contact was added, replaced or answered.
    pub last_changed_secs_ago: u64,
}

/// An IP address family (`ipv4` or `ipv6` in JSON). Each family has a routing table of its
/// own (BEP 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressFamily {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl AddressFamily {
    /// `ipv4` or `ipv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "ipv4",
            AddressFamily::Ipv6 => "ipv6",
        }
    }
}

impl std::fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The routing table of one address family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FamilyTable {
    /// Which family.
    pub family: AddressFamily,
    /// Contacts in all buckets.
    pub size: usize,
    /// The buckets, from the one farthest from our ID (prefix length 0) to the nearest.
    pub buckets: Vec<BucketDump>,
}

impl FamilyTable {
    /// A snapshot of `table` (the same form for both networks' nodes).
    pub(crate) fn of(table: &RoutingTable, family: AddressFamily, now: Timestamp) -> FamilyTable {
        let config = table.config();
        let buckets = table
            .buckets()
            .iter()
            .enumerate()
            .map(|(index, bucket)| BucketDump {
                prefix_len: index,
                capacity: table.bucket_capacity(index),
                contacts: bucket.contacts().iter().map(|c| ContactDump::of(c, config, now)).collect(),
                replacements: bucket.replacements().len(),
                replacement_contacts: bucket.replacements().iter().map(|c| ContactDump::of(c, config, now)).collect(),
                last_changed_secs_ago: now.saturating_since(bucket.last_changed()).as_secs(),
            })
            .collect();
        FamilyTable { family, size: table.len(), buckets }
    }
}

/// Both routing tables (a family without a socket is absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoutingTableDump {
    /// The ID the tables are ordered by.
    #[serde(serialize_with = "hex_id")]
    pub node_id: NodeId,
    /// The IPv4 table.
    pub ipv4: Option<FamilyTable>,
    /// The IPv6 table.
    pub ipv6: Option<FamilyTable>,
}

/// Traffic counters since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// UDP datagrams received.
    pub datagrams_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// UDP datagrams sent.
    pub datagrams_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// KRPC queries received.
    pub queries_received: u64,
    /// Responses received to our queries.
    pub responses_received: u64,
    /// Error answers received.
    pub errors_received: u64,
    /// Error answers sent.
    pub errors_sent: u64,
    /// Datagrams ignored: undecodable, unexpected responses, our own queries echoed back.
    pub dropped: u64,
    /// Queries sent.
    pub requests_sent: u64,
    /// Queries sent that got no answer in time.
    pub requests_timed_out: u64,
    /// Queries received and sent, per KRPC method (every method, zeros included).
    pub by_method: Vec<MethodTraffic>,
    /// Error answers received and sent, per code (every BEP 5 and BEP 44 code, then 0 for
    /// any other code).
    pub errors_by_code: Vec<ErrorCodeCount>,
    /// Queries dropped over the per-address or global rate limit.
    pub queries_rate_limited: u64,
    /// Answers not sent to unverified addresses over their byte cap (no amplification).
    pub replies_capped_unverified: u64,
    /// Answers not sent over the outbound byte cap.
    pub replies_capped_outbound: u64,
    /// Contacts kept out of the routing table: ID not derived from their address (BEP 42).
    pub insecure_ids_refused: u64,
    /// Times the node took a new secure ID after its external address changed (BEP 42).
    pub node_id_changes: u64,
}

/// Queries of one KRPC method: received from others and sent by us, with their bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MethodTraffic {
    /// The KRPC method (`ping`, `find_node`, `get_peers`…).
    pub method: &'static str,
    /// Queries received.
    pub received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Queries sent.
    pub sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
}

impl From<KindRow> for MethodTraffic {
    fn from((method, received, bytes_received, sent, bytes_sent): KindRow) -> Self {
        MethodTraffic { method, received, bytes_received, sent, bytes_sent }
    }
}

/// Error answers with one code (0: a code outside BEP 5 and BEP 44).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCodeCount {
    /// The KRPC error code.
    pub code: i64,
    /// Error answers received with it.
    pub received: u64,
    /// Error answers sent with it.
    pub sent: u64,
}

/// One kind's traffic as [`traffic_by_kind`] hands it to a row: name, messages received and
/// their bytes, messages sent and their bytes.
pub(crate) type KindRow = (&'static str, u64, u64, u64, u64);

/// The per-kind and per-code lists of a node's message counts, whatever its network: every
/// kind and code of its catalog, zeros included, other codes under 0. `row` builds a kind's
/// entry in the network's own type (`MethodTraffic::from`, `KindTraffic::from`).
pub(crate) fn traffic_by_kind<C: MessageCatalog, const KINDS: usize, const CODES: usize, Row>(
    counts: &MessageCounts<C, KINDS, CODES>,
    row: impl Fn(KindRow) -> Row,
) -> (Vec<Row>, Vec<ErrorCodeCount>) {
    let kinds = counts
        .by_kind()
        .map(|k| row((k.kind, k.received.messages, k.received.bytes, k.sent.messages, k.sent.bytes)))
        .collect();
    let codes = counts.by_code().map(|c| ErrorCodeCount { code: c.code, received: c.received, sent: c.sent }).collect();
    (kinds, codes)
}

/// How many contacts of a routing table are in each state, as BEP 5 and OpenDHT's node info
/// count them: `good` answered recently, `dubious` has been silent for a while (not yet failed
/// enough to be dropped). Gateways report these so that clients can tell a joined node from an
/// isolated one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContactCounts {
    /// Contacts that answered recently.
    pub good: usize,
    /// Contacts silent for a while.
    pub dubious: usize,
}

impl ContactCounts {
    pub(crate) fn of(table: &RoutingTable, now: Timestamp) -> ContactCounts {
        let mut counts = ContactCounts::default();
        for contact in table.contacts() {
            match contact.status(now, table.config()) {
                kad::ContactStatus::Good => counts.good += 1,
                kad::ContactStatus::Questionable => counts.dubious += 1,
                kad::ContactStatus::Bad => {}
            }
        }
        counts
    }
}

/// A snapshot of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Info {
    /// The node's current ID (BEP 42 may have changed it since it started).
    #[serde(serialize_with = "hex_id")]
    pub node_id: NodeId,
    /// The addresses its sockets are bound to.
    pub local_addrs: Vec<SocketAddr>,
    /// Our address as other nodes report it (BEP 42 `ip`).
    pub external_addr: Option<SocketAddr>,
    /// Whether it is read-only now (BEP 43): it queries but does not answer.
    pub read_only: bool,
    /// Contacts in the IPv4 routing table (`None`: no IPv4 socket).
    pub routing_table_ipv4: Option<usize>,
    /// Contacts in the IPv6 routing table (`None`: no IPv6 socket).
    pub routing_table_ipv6: Option<usize>,
    /// The IPv4 routing table's contacts by state (`None`: family not enabled).
    pub contacts_ipv4: Option<ContactCounts>,
    /// The IPv6 routing table's contacts by state (`None`: family not enabled).
    pub contacts_ipv6: Option<ContactCounts>,
    /// Torrents with peers announced to this node.
    pub stored_infohashes: usize,
    /// Peers announced to this node, over all torrents.
    pub stored_peers: usize,
    /// BEP 44 items stored for others.
    pub stored_items: usize,
    /// Items put through this node and kept alive.
    pub kept_items: usize,
    /// Lookups and other operations in progress.
    pub running_operations: usize,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Messages and bytes since the node started.
    pub traffic: Traffic,
}

/// An error answer of one node (KRPC code and message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteError {
    /// The node that answered.
    pub from: SocketAddr,
    /// The KRPC error code (e.g. 301: CAS mismatch).
    pub code: i64,
    /// The node's message.
    pub message: String,
}

/// What a store (BEP 44 put) achieved: where it was stored, and what the others answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StoreReport {
    pub(crate) stored_at: Vec<NodeInfo>,
    pub(crate) errors: Vec<RemoteError>,
}

/// A verified BEP 44 item and the node that returned it, as the driver reports it (the API
/// narrows it to what each get asks for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FoundItem {
    /// The node that returned it.
    pub(crate) from: NodeInfo,
    /// The item, its signature or hash checked.
    pub(crate) item: kadmos_proto::mainline::Item,
}
