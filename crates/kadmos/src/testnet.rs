//! A network of kadmos nodes on loopback, in one process: for tests (yours and ours) and for
//! trying the CLI without internet access.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use kadmos_proto::mainline::RateLimits;

use crate::builder::DhtBuilder;
use crate::dht::Dht;
use crate::error::Result;

/// `n` nodes on 127.0.0.1, each on its own port, joined into one network.
pub struct Testnet {
    /// The nodes, the first one the one the others joined through.
    pub nodes: Vec<Dht>,
}

impl Testnet {
    /// Starts `n` nodes (n ≥ 1). The first bootstraps from nobody; every other one from the
    /// first. Returns once all have joined.
    pub async fn new(n: usize) -> Result<Testnet> {
        let first = Self::node_builder().no_bootstrap().build().await?;
        let seed = first.local_addr_v4().expect("bound on IPv4");
        let mut nodes = vec![first];
        for _ in 1..n.max(1) {
            let node = Self::node_builder().bootstrap([seed.to_string()]).build().await?;
            node.bootstrapped().await?;
            nodes.push(node);
        }
        // A second round lets early nodes learn of the later ones.
        for node in &nodes {
            let _ = node.find_node(node.node_id()).await;
        }
        Ok(Testnet { nodes })
    }

    /// A builder for one node of a loopback network: bound to 127.0.0.1 and without the
    /// per-address rate limits, since every node of the network shares that address.
    pub fn node_builder() -> DhtBuilder {
        Dht::builder().bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).rate_limits(RateLimits::shared_address())
    }

    /// Addresses to bootstrap from (one per node).
    pub fn bootstrap_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().filter_map(Dht::local_addr_v4).collect()
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            let _ = node.shutdown().await;
        }
    }
}
