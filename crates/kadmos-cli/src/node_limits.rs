//! `kadmos node`'s limits on what the node serves and stores (Mainline).

use clap::Args;
use kadmos::{AdaptiveReadOnly, DhtBuilder, NodeIdSecurity, PeerStoreConfig, Rate, RateLimits};

#[derive(Args, Clone, Debug)]
pub struct NodeLimitArgs {
    /// Queries served per second in all, from every source together (bursts of twice as
    /// many); 0 for no limit. Queries over it are dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub rate_limit: u32,
    /// Queries served per second to one source IP address (bursts of twice as many); 0 for
    /// no limit.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub rate_limit_per_ip: u32,
    /// Torrents whose peers the node stores at most (announces for more are refused).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub max_torrents: usize,
    /// Peers stored per torrent at most (the oldest announce makes way).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub max_peers_per_torrent: usize,
    /// BEP 42: `enforce` keeps contacts whose ID does not match their address out of the
    /// routing table and gives the node a secure ID when its external address changes
    /// (default; `keep-id` with --id); `keep-id` only the former; `off` neither.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub node_id_security: Option<NodeIdPolicy>,
    /// Stay serving even when nobody seems to reach the node (by default a node that gets
    /// no unasked queries for 10 minutes while its own are answered turns read-only, BEP 43,
    /// and tries serving again every 30 minutes).
    #[arg(long)]
    pub no_adaptive_read_only: bool,
}

/// `--node-id-security` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum NodeIdPolicy {
    Enforce,
    KeepId,
    Off,
}

impl NodeLimitArgs {
    /// The builder with these limits.
    pub fn apply(&self, builder: DhtBuilder) -> DhtBuilder {
        let rate = |n: u32| (n > 0).then(|| Rate::per_second(n));
        let limits = RateLimits {
            queries: rate(self.rate_limit),
            queries_per_ip: rate(self.rate_limit_per_ip),
            ..RateLimits::default()
        };
        let store = PeerStoreConfig {
            max_infohashes: self.max_torrents,
            max_peers_per_infohash: self.max_peers_per_torrent,
            ..PeerStoreConfig::default()
        };
        let adaptive = (!self.no_adaptive_read_only).then(AdaptiveReadOnly::default);
        let builder = builder.rate_limits(limits).peer_store(store).adaptive_read_only(adaptive);
        match self.node_id_security {
            None => builder,
            Some(NodeIdPolicy::Enforce) => builder.node_id_security(NodeIdSecurity::Enforce),
            Some(NodeIdPolicy::KeepId) => builder.node_id_security(NodeIdSecurity::KeepOwnId),
            Some(NodeIdPolicy::Off) => builder.node_id_security(NodeIdSecurity::Off),
        }
    }
}
