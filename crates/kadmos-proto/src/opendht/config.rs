//! Configuration of an OpenDHT node. Every field has a documented default; where OpenDHT has a
//! figure (savoirfairelinux/opendht include/opendht/dht.h, node.h, network_engine.h,
//! src/request.h), the default is OpenDHT's.

use std::time::Duration;

use super::fragment::ReassemblyLimits;
use super::listeners::ListenerConfig;
use super::storage::StorageConfig;
use crate::kad::{LookupConfig, NodeId, RoutingTableConfig};
use crate::node_io::Families;

/// Everything an OpenDHT [`Node`](super::Node) is built with: its ID and random seed, the
/// address families it serves, and every limit and timer, each with its default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our node ID. No default: the driver picks it (given, restored or random).
    pub node_id: NodeId,
    /// Seed of the node's only random generator (transaction ids, token secrets, value ids,
    /// listen socket ids).
    pub seed: u64,
    /// Address families with a socket. Default: IPv4 only.
    pub families: Families,
    /// `n`: the network id; datagrams of other networks are dropped. Default 0 (the public
    /// network, not sent on the wire).
    pub network: u32,
    /// `s`: we are a client. Others keep us out of their routing tables and never query us; we
    /// still answer what reaches us. Default off.
    pub is_client: bool,
    /// Searches: 4 in flight (OpenDHT's `MAX_REQUESTED_SEARCH_NODES`), the 8 closest must
    /// answer (`TARGET_NODES`), 2 s before a request fails, no retry after the stall timeout
    /// (OpenDHT retries once; here a silent node stalls and the next candidate is asked, as on
    /// Mainline. Measured in the simulator with 20% dead contacts and 2% loss: the retry held
    /// each dead node in the result window for a second stall timeout, a median of 5.8 round
    /// trips per get against 3.8 without, for 5 more messages).
    pub lookup: LookupConfig,
    /// Routing tables: buckets of 8 as in OpenDHT (see [`RoutingTableConfig`]).
    pub routing: RoutingTableConfig,
    /// Value storage limits (see [`StorageConfig`]).
    pub storage: StorageConfig,
    /// Remote listener limits (see [`ListenerConfig`]).
    pub listeners: ListenerConfig,
    /// Bounds on one message being reassembled from fragments (see [`ReassemblyLimits`]).
    pub reassembly: ReassemblyLimits,
    /// Messages being reassembled at once; more are dropped. Default 64.
    pub max_partial_messages: usize,
    /// Floor of the stall timeout of search requests, which otherwise follows measured round
    /// trips. Default 100 ms, as on Mainline.
    pub min_stall_timeout: Duration,
    /// Mean deviations above the smoothed RTT after which a search request stalls. Default 1,
    /// as on Mainline (about the 80th percentile of round trips; see the Mainline `Config`).
    pub stall_deviations: u32,
    /// Wait after the first attempt of a request outside searches (ping, put, refresh, listen);
    /// it doubles for each further attempt. Default 1 s (OpenDHT: 0.5 s doubling, plus jitter).
    pub request_timeout: Duration,
    /// Attempts of a request outside searches. Default 3 (OpenDHT's `MAX_ATTEMPT_COUNT`).
    pub request_attempts: u8,
    /// Range of the time between two token secret rotations. Default 15 to 45 minutes.
    pub token_rotation: (Duration, Duration),
    /// A `put` is stored only if we are among this many nodes closest to the key that we know
    /// (once we know at least `lookup.k`). Default 14 (OpenDHT's `SEARCH_NODES`).
    pub store_radius: usize,
    /// Nodes a listen subscribes at. Default 4 (`LISTEN_NODES`).
    pub listen_nodes: usize,
    /// How often a listen renews its subscriptions. Default 30 s. (OpenDHT renews 10 s before
    /// its `LISTEN_EXPIRE_TIME` of 30 s runs out, so every 20 s; storing nodes keep a listener
    /// 10 minutes either way.)
    pub listen_renewal: Duration,
    /// How often a listen searches the key again, to follow churn (also after a subscription
    /// fails). Default 10 minutes (OpenDHT's `NODE_EXPIRE_TIME`, after which a search node
    /// is asked again).
    pub listen_research: Duration,
    /// How long before a permanent value expires its refresh round starts (a search, then
    /// `refresh` or `put`). Default 30 s: OpenDHT sends the refresh 10 s before; the search
    /// comes first here, so it starts earlier.
    pub reannounce_margin: Duration,
    /// Values a `get` reports at most (each once). Default 16,384.
    pub max_get_values: usize,
    /// Values a listen keeps track of. Default 4096 (OpenDHT's listen cache).
    pub max_listen_values: usize,
    /// Requests served per second from one IP address. Default 1024 (OpenDHT).
    pub max_requests_per_ip: Option<u32>,
    /// Requests served per second in all. Default 8192 (OpenDHT).
    pub max_requests: Option<u32>,
    /// Most requests of our own awaiting an answer; further ones fail at once. Default 2048.
    pub max_pending_requests: usize,
    /// Pings sent per second at most to verify unknown nodes that queried us, before they may
    /// enter a routing table. Default 20.
    pub verify_pings_per_second: u32,
    /// Housekeeping interval (listener expiry, token rotation, bucket refresh). Default 10 s.
    pub maintenance_interval: Duration,
    /// Unix time (seconds) at `Timestamp::ZERO`, if the driver knows it. With it, the creation
    /// time `c` of incoming values is honoured (a value put earlier expires earlier); without
    /// it, values count as created when they arrive. Default `None`.
    pub unix_time_at_zero: Option<u64>,
}

impl Config {
    /// The defaults, for a node with ID `node_id` whose random generator starts from `seed`.
    pub fn new(node_id: NodeId, seed: u64) -> Config {
        Config {
            node_id,
            seed,
            families: Families { v4: true, v6: false },
            network: 0,
            is_client: false,
            lookup: LookupConfig {
                alpha: 4,
                final_alpha: 11,
                k: 8,
                request_timeout: Duration::from_secs(2),
                stall_timeout: Duration::from_secs(1),
                ..LookupConfig::default()
            },
            routing: RoutingTableConfig::default(),
            storage: StorageConfig::default(),
            listeners: ListenerConfig::default(),
            reassembly: ReassemblyLimits::default(),
            max_partial_messages: 64,
            min_stall_timeout: Duration::from_millis(100),
            stall_deviations: 1,
            request_timeout: Duration::from_secs(1),
            request_attempts: 3,
            token_rotation: (Duration::from_secs(15 * 60), Duration::from_secs(45 * 60)),
            store_radius: 14,
            listen_nodes: 4,
            listen_renewal: Duration::from_secs(30),
            listen_research: Duration::from_secs(600),
            reannounce_margin: Duration::from_secs(30),
            max_get_values: 16_384,
            max_listen_values: 4096,
            max_requests_per_ip: Some(1024),
            max_requests: Some(8192),
            max_pending_requests: 2048,
            verify_pings_per_second: 20,
            maintenance_interval: Duration::from_secs(10),
            unix_time_at_zero: None,
        }
    }
}
