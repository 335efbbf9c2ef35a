//! OpenDHT nodes on loopback, in one process: for tests and for trying the CLI offline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::handle::OpenDht;
use crate::error::Result;
use crate::ports::PortSpec;

/// `n` OpenDHT nodes on 127.0.0.1, each on its own port, joined into one network. Their request
/// rate limits are off: every node and every local client shares one address, which the per-IP
/// limit would throttle after 1024 requests a second (OpenDHT's test tools turn it off too).
pub struct Testnet {
    /// The nodes, the first one the one the others joined through.
    pub nodes: Vec<OpenDht>,
}

impl Testnet {
    /// Starts `n` nodes (n ≥ 1) on free ports. The first bootstraps from nobody; every other
    /// one from the first. Returns once all have joined.
    pub async fn new(n: usize) -> Result<Testnet> {
        Testnet::start(n, PortSpec::any()).await
    }

    /// The same with the first node (the one to bootstrap from) on `port`, easy to type.
    pub async fn with_port(n: usize, port: u16) -> Result<Testnet> {
        Testnet::start(n, PortSpec::single(port)).await
    }

    async fn start(n: usize, first_port: PortSpec) -> Result<Testnet> {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let builder = || OpenDht::builder().bind(loopback).rate_limits(None, None);
        let first = builder().ports(first_port).no_bootstrap().build().await?;
        let seed = first.local_addr_v4().expect("bound on IPv4");
        let mut nodes = vec![first];
        for _ in 1..n.max(1) {
            let node = builder().ports(PortSpec::any()).bootstrap([seed.to_string()]).build().await?;
            node.bootstrapped().await?;
            nodes.push(node);
        }
        // A second round lets early nodes learn of the later ones.
        for node in &nodes {
            let _ = node.find_node(node.node_id()).await;
        }
        Ok(Testnet { nodes })
    }

    /// Addresses to bootstrap from (one per node).
    pub fn bootstrap_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().filter_map(OpenDht::local_addr_v4).collect()
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            let _ = node.shutdown().await;
        }
    }
}
