//! Configuring and starting an OpenDHT node.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kadmos_proto::node_io::Families;
use kadmos_proto::opendht::{Config, Node, SignatureVerifier, Value};
use kadmos_proto::NodeId;
use tokio::sync::{mpsc, watch};

use super::driver::Driver;
use super::handle::OpenDht;
use super::state::OpenDhtState;
use crate::builder::{bind_sockets, resolve};
use crate::error::Result;
use crate::node_task::{self, Clock, EPOCH_OFFSET};
use crate::ports::PortSpec;

/// OpenDHT's port.
pub const DEFAULT_PORT: u16 = 4222;

/// The public node a node bootstraps from by default (Jami's, as OpenDHT's `dhtnode`).
pub const DEFAULT_BOOTSTRAP: &[&str] = &["bootstrap.jami.net:4222"];

/// A signature verifier shared by the builder's clones.
#[derive(Clone)]
struct SharedVerifier(Arc<dyn SignatureVerifier + Sync>);

impl SignatureVerifier for SharedVerifier {
    fn verify(&self, value: &Value) -> bool {
        self.0.verify(value)
    }
}

impl fmt::Debug for SharedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignatureVerifier")
    }
}

/// Builds an [`OpenDht`]. Defaults: bind `0.0.0.0` and `[::]` (IPv6 skipped if unavailable),
/// port 4222 (any free port if taken), a random node ID, bootstrap from
/// `bootstrap.jami.net:4222`, the public network (id 0), a full node (not a client).
#[derive(Clone, Debug)]
pub struct OpenDhtBuilder {
    bind: Vec<IpAddr>,
    bind_explicit: bool,
    ports: PortSpec,
    node_id: Option<NodeId>,
    state: Option<OpenDhtState>,
    bootstrap: Vec<String>,
    seed: Option<u64>,
    client: bool,
    network_id: u32,
    verifier: Option<SharedVerifier>,
    rate_limits: Option<(Option<u32>, Option<u32>)>,
}

impl Default for OpenDhtBuilder {
    fn default() -> Self {
        OpenDhtBuilder {
            bind: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            bind_explicit: false,
            ports: PortSpec::list([DEFAULT_PORT, 0]),
            node_id: None,
            state: None,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
            seed: None,
            client: false,
            network_id: 0,
            verifier: None,
            rate_limits: None,
        }
    }
}

impl OpenDhtBuilder {
    /// Binds this address (call once per address; IPv4 and IPv6 may be mixed). Replaces the
    /// default of all interfaces.
    pub fn bind(mut self, ip: IpAddr) -> Self {
        if !self.bind_explicit {
            self.bind.clear();
            self.bind_explicit = true;
        }
        if !self.bind.contains(&ip) {
            self.bind.push(ip);
        }
        self
    }

    /// Ports to try in turn (0 is the last resort). Default: 4222.
    pub fn ports(mut self, ports: PortSpec) -> Self {
        self.ports = ports;
        self
    }

    /// Listens on this port and no other.
    pub fn port(self, port: u16) -> Self {
        self.ports(PortSpec::single(port))
    }

    /// Uses this node ID (overrides the one in a restored state).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Restores a saved state: the node ID and the contacts to rejoin through. A restored node
    /// joins through its contacts first and uses the bootstrap nodes only if none answers.
    pub fn state(mut self, state: OpenDhtState) -> Self {
        self.state = Some(state);
        self
    }

    /// Replaces the bootstrap list (`host:port` strings).
    pub fn bootstrap<S: ToString>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.bootstrap = nodes.into_iter().map(|s| s.to_string()).collect();
        self
    }

    /// Bootstraps from nobody: the first node of a new network, or one that others join.
    pub fn no_bootstrap(mut self) -> Self {
        self.bootstrap.clear();
        self
    }

    /// Client mode (OpenDHT's `s` flag): other nodes keep this one out of their routing
    /// tables and send it no queries but its listens' updates. For short-lived nodes.
    pub fn client(mut self, client: bool) -> Self {
        self.client = client;
        self
    }

    /// OpenDHT network id (default 0, the public network): nodes of other networks are ignored.
    pub fn network_id(mut self, network_id: u32) -> Self {
        self.network_id = network_id;
        self
    }

    /// Replaces the check of the signatures of signed values stored here (default: the core
    /// node's, see [`Node::set_signature_verifier`]).
    pub fn signature_verifier(mut self, verifier: impl SignatureVerifier + Sync + 'static) -> Self {
        self.verifier = Some(SharedVerifier(Arc::new(verifier)));
        self
    }

    /// Requests served per second, in all and per IP address (`None`: no limit), as OpenDHT's
    /// `setRateLimit` (with -1 for no limit). Default 8192 and 1024, as OpenDHT. Nodes that
    /// all share one address (a loopback test network) need the per-IP limit off, as OpenDHT's
    /// own test tools turn it off.
    pub fn rate_limits(mut self, total: Option<u32>, per_ip: Option<u32>) -> Self {
        self.rate_limits = Some((total, per_ip));
        self
    }

    /// Seed of the node's random generator (default: from the OS), for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Binds the sockets, starts the node on the current tokio runtime and begins joining the
    /// network in the background (see [`OpenDht::bootstrapped`]).
    pub async fn build(self) -> Result<OpenDht> {
        let ports = match self.state.as_ref().and_then(|s| s.port) {
            Some(saved) => self.ports.preferring(saved),
            None => self.ports.clone(),
        };
        let sockets = bind_sockets(&self.bind, self.bind_explicit, &ports)?;
        let local_addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let families = Families {
            v4: local_addrs.iter().any(SocketAddr::is_ipv4),
            v6: local_addrs.iter().any(SocketAddr::is_ipv6),
        };

        let restored_id = match &self.state {
            Some(state) => Some(state.node_id()?),
            None => None,
        };
        let node_id = self.node_id.or(restored_id).unwrap_or_else(|| NodeId::random(&mut rand::thread_rng()));
        let contacts = self.state.as_ref().map(OpenDhtState::contacts).unwrap_or_default();
        let routers = resolve(&self.bootstrap, families).await;

        let mut config = Config::new(node_id, self.seed.unwrap_or_else(rand::random));
        config.families = families;
        config.is_client = self.client;
        config.network = self.network_id;
        if let Some((total, per_ip)) = self.rate_limits {
            (config.max_requests, config.max_requests_per_ip) = (total, per_ip);
        }
        // With Unix time known, values put with a creation time (`c`) expire when they should.
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        config.unix_time_at_zero = unix_now.checked_sub(EPOCH_OFFSET.as_secs());
        let clock = Clock::starting_at(tokio::time::Instant::now());
        let mut node = Node::new(config, Clock::start_timestamp());
        if let Some(verifier) = self.verifier {
            node.set_signature_verifier(Box::new(verifier));
        }

        let (command_tx, command_rx) = mpsc::channel(256);
        let (boot_tx, boot_rx) = watch::channel(false);
        let mut driver = Driver::new(node, local_addrs.clone(), clock, boot_tx);
        if let Some(state) = &self.state {
            driver.restore_values(state);
        }
        driver.start_bootstrap(routers, contacts);
        node_task::spawn(driver, sockets, command_rx, clock);
        tracing::info!(%node_id, ?local_addrs, "OpenDHT node started");
        Ok(OpenDht { commands: command_tx, bootstrapped: boot_rx, local_addrs, node_id })
    }
}
