//! Configuration of a Mainline node. Every field has a documented default.

use std::time::Duration;

use super::external_address::DEFAULT_VOTES_PER_ROUND;
use super::item_store::ItemStoreConfig;
use super::node_id_security::NodeIdSecurity;
use super::peer_store::PeerStoreConfig;
use super::quest::QuestConfig;
use super::rate_limit::RateLimits;
use super::reachability::AdaptiveReadOnly;
use crate::kad::{LookupConfig, NodeId, RoutingTableConfig};
pub use crate::node_io::Families;

/// Client version sent in `v`: "KD" then version 0.1.
pub const CLIENT_VERSION: [u8; 4] = *b"KD\x00\x01";

/// Everything a Mainline [`Node`](super::Node) is built with: its ID and random seed, the
/// address families it serves, and every limit and timer, each with its default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our node ID. No default: the driver picks it (given, restored or random).
    pub node_id: NodeId,
    /// Seed of the node's only random generator (transaction IDs, token secrets, samples).
    pub seed: u64,
    /// Address families with a socket. Default: IPv4 only.
    pub families: Families,
    /// BEP 43 read-only mode: queries carry `ro=1`, incoming queries are ignored. Default off.
    pub read_only: bool,
    /// BEP 43 adaptive mode: turn read-only while nobody reaches us unasked though our own
    /// queries are answered (behind a NAT or firewall), and back once someone does (see
    /// [`AdaptiveReadOnly`]). Default off here; `kadmos node` turns it on.
    pub adaptive_read_only: Option<AdaptiveReadOnly>,
    /// Lookup parallelism, width, timeout and retries (see [`LookupConfig`]).
    pub lookup: LookupConfig,
    /// Routing table shape (see [`RoutingTableConfig`]).
    pub routing: RoutingTableConfig,
    /// Peer store limits (see [`PeerStoreConfig`]).
    pub peer_store: PeerStoreConfig,
    /// BEP 44 item store limits (see [`ItemStoreConfig`]).
    pub item_store: ItemStoreConfig,
    /// Queries served per source and in all, reply bytes to unverified sources, bytes sent
    /// (see [`RateLimits`] for the defaults).
    pub rate_limits: RateLimits,
    /// BEP 42: keep contacts whose ID does not match their address out of the routing table
    /// and take a secure ID when our external address changes. Default
    /// [`NodeIdSecurity::Enforce`]; loopback and private addresses are exempt.
    pub node_id_security: NodeIdSecurity,
    /// Distinct responders whose `ip` fields decide our external address (a majority of
    /// them): more than half of one round of this many must agree. Default 10.
    pub external_address_votes: usize,
    /// Floor of the lookups' stall timeout, which otherwise follows measured round trips
    /// (`srtt + stall_deviations × rttvar`, at most `lookup.stall_timeout`). Default 100 ms.
    pub min_stall_timeout: Duration,
    /// How many mean deviations above the smoothed RTT a request stalls. Default 1 (about the
    /// 80th percentile of round trips on the simulator's lognormal links): a stall frees the
    /// slot and stops holding up the result (a late answer still counts), and each dead node
    /// in the result window costs one stall timeout. Measured in the simulator with 20% dead
    /// contacts, against 2 deviations and a 150 ms floor: get_peers about 0.3 round trips
    /// faster, but more slow live nodes miss the result (accuracy 0.914 → 0.888).
    pub stall_deviations: u32,
    /// Timeout of single requests outside lookups (ping, announce_peer). Default 2 s.
    pub request_timeout: Duration,
    /// How often the token secret rotates; tokens live one to two periods. Default 5 minutes.
    pub token_rotation: Duration,
    /// Bytes of compact peers put in one `get_peers` answer, so that the datagram stays under
    /// the IPv6 minimum MTU (1280) with nodes and nodes6 beside them. Default 600 bytes
    /// (75 IPv4 or 28 IPv6 peers).
    pub peers_reply_budget: usize,
    /// Most requests of our own awaiting an answer; further ones fail at once. Default 2048.
    pub max_pending_requests: usize,
    /// Pings sent per second at most to verify unknown nodes that queried us, before they
    /// may enter the routing table. Default 20.
    pub verify_pings_per_second: u32,
    /// Interval of housekeeping (token rotation, expiry, bucket refresh). Default 10 s.
    pub maintenance_interval: Duration,
    /// How often an item kept alive is re-put (BEP 44 items expire after 2 hours). Default
    /// 1 hour.
    pub keep_alive_interval: Duration,
    /// How soon a keep-alive re-put that reached no node is tried again. Default 1 minute.
    pub keep_alive_retry: Duration,
    /// Re-put items this node stores for others to the nodes closest to them now, this often
    /// (BEP 44 lets any node do so; it keeps items alive through churn even when their owner
    /// is offline). Default: off.
    pub republish_interval: Option<Duration>,
    /// `interval` advertised in BEP 51 answers, in seconds. Default 300.
    pub sample_interval: i64,
    /// Intervals and limits of advertisements and watches (see [`QuestConfig`]).
    pub quests: QuestConfig,
}

impl Config {
    /// The defaults, for a node with ID `node_id` whose random generator starts from `seed`.
    pub fn new(node_id: NodeId, seed: u64) -> Self {
        Config {
            node_id,
            seed,
            families: Families { v4: true, v6: false },
            read_only: false,
            adaptive_read_only: None,
            lookup: LookupConfig::default(),
            routing: RoutingTableConfig::default(),
            peer_store: PeerStoreConfig::default(),
            item_store: ItemStoreConfig::default(),
            rate_limits: RateLimits::default(),
            node_id_security: NodeIdSecurity::Enforce,
            external_address_votes: DEFAULT_VOTES_PER_ROUND,
            min_stall_timeout: Duration::from_millis(100),
            stall_deviations: 1,
            request_timeout: Duration::from_secs(2),
            token_rotation: Duration::from_secs(5 * 60),
            peers_reply_budget: 600,
            max_pending_requests: 2048,
            verify_pings_per_second: 20,
            maintenance_interval: Duration::from_secs(10),
            sample_interval: 300,
            keep_alive_interval: Duration::from_secs(60 * 60),
            republish_interval: None,
            keep_alive_retry: Duration::from_secs(60),
            quests: QuestConfig::default(),
        }
    }
}
