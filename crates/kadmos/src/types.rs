//! Plain data the API returns: what a lookup found, the routing table, node info.
//! All of it serialises to JSON with stable field names (the CLI's `--json` output).

use std::net::SocketAddr;

use kadmos_proto::kad::{ContactStatus, RoutingTable, RoutingTableConfig};
use kadmos_proto::{NodeId, Timestamp};
use serde::{Serialize, Serializer};

pub(crate) fn hex_id<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A node of the DHT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct NodeInfo {
    #[serde(serialize_with = "hex_id")]
    pub id: NodeId,
    pub addr: SocketAddr,
}

impl From<(NodeId, SocketAddr)> for NodeInfo {
    fn from((id, addr): (NodeId, SocketAddr)) -> Self {
        NodeInfo { id, addr }
    }
}

/// Peers one node returned during a `get_peers` lookup (each peer reported once per lookup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerBatch {
    pub from: NodeInfo,
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
    pub from: SocketAddr,
    #[serde(serialize_with = "hex_ids")]
    pub samples: Vec<NodeId>,
    pub num: i64,
    pub interval: i64,
    pub nodes: Vec<NodeInfo>,
}

fn hex_ids<S: Serializer>(ids: &[NodeId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|i| i.to_string()))
}

/// One contact of the routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactDump {
    #[serde(serialize_with = "hex_id")]
    pub id: NodeId,
    pub addr: SocketAddr,
    /// `good`, `questionable` or `bad` (BEP 5).
    pub status: &'static str,
    /// Seconds since it last answered us, if it ever did.
    pub last_response_secs_ago: Option<u64>,
    pub failures: u8,
    /// The smoothed round-trip time of our requests to it, in microseconds, once one was
    /// answered.
    pub round_trip_us: Option<u64>,
}

impl ContactDump {
    fn of(
        contact: &kadmos_proto::kad::Contact,
        config: &RoutingTableConfig,
        now: Timestamp,
        round_trip: &dyn Fn(&NodeId) -> Option<std::time::Duration>,
    ) -> ContactDump {
        ContactDump {
            id: contact.id,
            addr: contact.addr(),
            status: match contact.status(now, config) {
                ContactStatus::Good => "good",
                ContactStatus::Questionable => "questionable",
                ContactStatus::Bad => "bad",
            },
            last_response_secs_ago: contact.last_response().map(|t| now.saturating_since(t).as_secs()),
            failures: contact.failures,
            round_trip_us: round_trip(&contact.id).map(|rtt| rtt.as_micros() as u64),
        }
    }
}

/// One bucket: contacts sharing `prefix_len` leading bits with our ID (the last bucket:
/// at least that many).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BucketDump {
    pub prefix_len: usize,
    /// How many contacts the bucket holds at most (wider near the top of the table).
    pub capacity: usize,
    pub contacts: Vec<ContactDump>,
    /// How many contacts wait in the replacement cache.
    pub replacements: usize,
    /// The replacement cache: verified contacts that take the place of a bad one.
    pub replacement_contacts: Vec<ContactDump>,
    pub last_changed_secs_ago: u64,
}

/// The routing table of one address family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FamilyTable {
    pub family: &'static str,
    pub size: usize,
    pub buckets: Vec<BucketDump>,
}

impl FamilyTable {
    /// A snapshot of `table` (the same form for both networks' nodes), with the round trips
    /// `round_trip` knows.
    pub(crate) fn of(
        table: &RoutingTable,
        family: &'static str,
        now: Timestamp,
        round_trip: &dyn Fn(&NodeId) -> Option<std::time::Duration>,
    ) -> FamilyTable {
        let config = table.config();
        let buckets = table
            .buckets()
            .iter()
            .enumerate()
            .map(|(index, bucket)| BucketDump {
                prefix_len: index,
                capacity: table.bucket_capacity(index),
                contacts: bucket.contacts().iter().map(|c| ContactDump::of(c, config, now, round_trip)).collect(),
                replacements: bucket.replacements().len(),
                replacement_contacts: bucket
                    .replacements()
                    .iter()
                    .map(|c| ContactDump::of(c, config, now, round_trip))
                    .collect(),
                last_changed_secs_ago: now.saturating_since(bucket.last_changed()).as_secs(),
            })
            .collect();
        FamilyTable { family, size: table.len(), buckets }
    }
}

/// Both routing tables (a family without a socket is absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoutingTableDump {
    #[serde(serialize_with = "hex_id")]
    pub node_id: NodeId,
    pub ipv4: Option<FamilyTable>,
    pub ipv6: Option<FamilyTable>,
}

/// Traffic counters since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub queries_received: u64,
    pub responses_received: u64,
    pub errors_received: u64,
    pub errors_sent: u64,
    pub dropped: u64,
    pub requests_sent: u64,
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
    pub method: &'static str,
    pub received: u64,
    pub bytes_received: u64,
    pub sent: u64,
    pub bytes_sent: u64,
}

/// Error answers with one code (0: a code outside BEP 5 and BEP 44).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCodeCount {
    pub code: i64,
    pub received: u64,
    pub sent: u64,
}

impl Traffic {
    /// The per-method and per-code lists of a node's message counts.
    pub(crate) fn by_kind(
        counts: &kadmos_proto::mainline::message_counts::MessageCounts,
    ) -> (Vec<MethodTraffic>, Vec<ErrorCodeCount>) {
        use kadmos_proto::mainline::message_counts::{ERROR_CODES, METHODS};
        let methods = METHODS
            .iter()
            .enumerate()
            .map(|(i, method)| MethodTraffic {
                method,
                received: counts.queries_received[i].messages,
                bytes_received: counts.queries_received[i].bytes,
                sent: counts.queries_sent[i].messages,
                bytes_sent: counts.queries_sent[i].bytes,
            })
            .collect();
        let codes = ERROR_CODES
            .iter()
            .chain([&0])
            .enumerate()
            .map(|(i, code)| ErrorCodeCount {
                code: *code,
                received: counts.errors_received[i],
                sent: counts.errors_sent[i],
            })
            .collect();
        (methods, codes)
    }
}

/// How many contacts of a routing table are in each state, as BEP 5 and OpenDHT's node info
/// count them: `good` answered recently, `dubious` has been silent for a while (not yet failed
/// enough to be dropped). Gateways report these so that clients can tell a joined node from an
/// isolated one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContactCounts {
    pub good: usize,
    pub dubious: usize,
}

impl ContactCounts {
    pub(crate) fn of(table: &RoutingTable, now: Timestamp) -> ContactCounts {
        let mut counts = ContactCounts::default();
        for contact in table.contacts() {
            match contact.status(now, table.config()) {
                ContactStatus::Good => counts.good += 1,
                ContactStatus::Questionable => counts.dubious += 1,
                ContactStatus::Bad => {}
            }
        }
        counts
    }
}

/// A snapshot of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Info {
    #[serde(serialize_with = "hex_id")]
    pub node_id: NodeId,
    pub local_addrs: Vec<SocketAddr>,
    /// Our address as other nodes report it (BEP 42 `ip`).
    pub external_addr: Option<SocketAddr>,
    pub read_only: bool,
    pub routing_table_ipv4: Option<usize>,
    pub routing_table_ipv6: Option<usize>,
    /// The routing table's contacts by state, per family (`None`: family not enabled).
    pub contacts_ipv4: Option<ContactCounts>,
    pub contacts_ipv6: Option<ContactCounts>,
    pub stored_infohashes: usize,
    pub stored_peers: usize,
    /// BEP 44 items stored for others.
    pub stored_items: usize,
    /// Items put through this node and kept alive.
    pub kept_items: usize,
    pub running_operations: usize,
    pub uptime_secs: u64,
    pub traffic: Traffic,
}

/// An error answer of one node (KRPC code and message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteError {
    pub from: SocketAddr,
    pub code: i64,
    pub message: String,
}

/// What a store (BEP 44 put) achieved: where it was stored, and what the others answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreReport {
    pub stored_at: Vec<NodeInfo>,
    pub errors: Vec<RemoteError>,
}

/// A verified BEP 44 item and the node that returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundItem {
    pub from: NodeInfo,
    pub item: kadmos_proto::mainline::Item,
}
