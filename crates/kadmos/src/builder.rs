//! Configuring and starting a node.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kadmos_proto::kad::LookupConfig;
use kadmos_proto::mainline::{
    AdaptiveReadOnly, Config, Families, Node, NodeIdSecurity, PeerStoreConfig, QuestConfig, RateLimits,
};
use kadmos_proto::NodeId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::dht::Dht;
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::node_task::{self, Clock};
use crate::ports::PortSpec;
use crate::state::SavedState;

/// The public routers a node bootstraps from by default.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
    "router.utorrent.com:6881",
];

/// Builds a [`Dht`]. Defaults: bind `0.0.0.0` and `[::]` (IPv6 skipped if unavailable),
/// any free port, a random node ID, the public bootstrap routers, read-write mode.
#[derive(Clone, Debug)]
pub struct DhtBuilder {
    bind: Vec<IpAddr>,
    bind_explicit: bool,
    ports: PortSpec,
    node_id: Option<NodeId>,
    state: Option<SavedState>,
    bootstrap: Vec<String>,
    read_only: bool,
    lookup: LookupConfig,
    seed: Option<u64>,
    keep_alive: bool,
    republish: Option<Duration>,
    quests: QuestConfig,
    rate_limits: RateLimits,
    peer_store: PeerStoreConfig,
    node_id_security: Option<NodeIdSecurity>,
    adaptive_read_only: Option<AdaptiveReadOnly>,
}

impl Default for DhtBuilder {
    fn default() -> Self {
        DhtBuilder {
            bind: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            bind_explicit: false,
            ports: PortSpec::any(),
            node_id: None,
            state: None,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
            read_only: false,
            lookup: LookupConfig::default(),
            seed: None,
            keep_alive: true,
            republish: None,
            quests: QuestConfig::default(),
            rate_limits: RateLimits::default(),
            peer_store: PeerStoreConfig::default(),
            node_id_security: None,
            adaptive_read_only: None,
        }
    }
}

impl DhtBuilder {
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

    /// Ports to try in turn. The list is strict: [`DhtBuilder::build`] fails with
    /// [`Error::Bind`] when none of them can be bound, unless it ends with 0 (any free port).
    /// A restored state's port is tried first when the list ends with 0. Default: any free port.
    pub fn ports(mut self, ports: PortSpec) -> Self {
        self.ports = ports;
        self
    }

    /// Listens on this port and no other (see [`DhtBuilder::ports`]).
    pub fn port(self, port: u16) -> Self {
        self.ports(PortSpec::single(port))
    }

    /// Uses this node ID (overrides the one in a restored state).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Restores a saved state: the node ID and the contacts to rejoin through. A restored
    /// node joins through its contacts first and uses the bootstrap routers only if none of
    /// them answers.
    pub fn state(mut self, state: SavedState) -> Self {
        self.state = Some(state);
        self
    }

    /// Replaces the bootstrap list (`host:port` strings).
    pub fn bootstrap<S: ToString>(mut self, routers: impl IntoIterator<Item = S>) -> Self {
        self.bootstrap = routers.into_iter().map(|s| s.to_string()).collect();
        self
    }

    /// Bootstraps from nobody: the first node of a new network, or one that others join.
    pub fn no_bootstrap(mut self) -> Self {
        self.bootstrap.clear();
        self
    }

    /// BEP 43 read-only mode: the node queries but never answers.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Lookup parallelism, width, timeout and retries.
    pub fn lookup_config(mut self, lookup: LookupConfig) -> Self {
        self.lookup = lookup;
        self
    }

    /// Whether BEP 44 items put through this node are re-put every hour until cancelled
    /// (default: yes). One-shot tools that exit after a put turn it off.
    pub fn keep_alive_puts(mut self, keep: bool) -> Self {
        self.keep_alive = keep;
        self
    }

    /// Re-put the BEP 44 items this node stores for others every `interval` to the nodes
    /// closest to them then (default: off), so they survive churn even if their owner is gone.
    pub fn republish_stored_items(mut self, interval: Option<Duration>) -> Self {
        self.republish = interval;
        self
    }

    /// Intervals and limits of advertisements and watches (default: re-announce every 15
    /// minutes, re-search every 5, 256 advertisements, 64 watches; see [`QuestConfig`]).
    /// Tests shorten the intervals.
    pub fn quests(mut self, quests: QuestConfig) -> Self {
        self.quests = quests;
        self
    }

    /// Limits on queries served (per source address and in all), on reply bytes to
    /// unverified addresses and on bytes sent. Default: [`RateLimits::default`] (100 queries a
    /// second per address, 10,000 in all, 32 KiB/s of answers to an unverified address, 8 MiB/s
    /// sent); [`RateLimits::unlimited`] turns them off.
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Limits of the store of announced peers: torrents, peers per torrent, peer lifetime.
    /// Default: [`PeerStoreConfig::default`] (2,000 torrents × 500 peers, 30 minutes).
    pub fn peer_store(mut self, limits: PeerStoreConfig) -> Self {
        self.peer_store = limits;
        self
    }

    /// BEP 42 policy. Default [`NodeIdSecurity::Enforce`]: contacts whose ID does not match
    /// their address stay out of the routing table, and the node takes a secure ID (kept in
    /// its saved state) when the vote on its external address changes; with an ID given by
    /// [`DhtBuilder::node_id`], [`NodeIdSecurity::KeepOwnId`].
    pub fn node_id_security(mut self, policy: NodeIdSecurity) -> Self {
        self.node_id_security = Some(policy);
        self
    }

    /// BEP 43 adaptive mode: the node turns read-only while nobody reaches it unasked though
    /// its own queries are answered (behind a NAT or firewall), and serves again once someone
    /// does; [`crate::Info::read_only`] says which. Default: off (`kadmos node` turns it on
    /// with [`AdaptiveReadOnly::default`]: 10-minute windows, 30-minute read-only spells).
    pub fn adaptive_read_only(mut self, adaptive: Option<AdaptiveReadOnly>) -> Self {
        self.adaptive_read_only = adaptive;
        self
    }

    /// Seed of the node's random generator (default: from the OS), for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Binds the sockets, starts the node on the current tokio runtime and begins joining
    /// the network in the background (see [`Dht::bootstrapped`]).
    pub async fn build(self) -> Result<Dht> {
        let sockets = self.bind_sockets()?;
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
        let contacts = self.state.as_ref().map(SavedState::contacts).unwrap_or_default();
        let routers = resolve(&self.bootstrap, families).await;

        let mut config = Config::new(node_id, self.seed.unwrap_or_else(rand::random));
        config.families = families;
        config.read_only = self.read_only;
        config.adaptive_read_only = self.adaptive_read_only;
        config.lookup = self.lookup;
        config.republish_interval = self.republish;
        config.quests = self.quests.clone();
        config.rate_limits = self.rate_limits;
        config.peer_store = self.peer_store;
        let chosen_id = if self.node_id.is_some() { NodeIdSecurity::KeepOwnId } else { NodeIdSecurity::Enforce };
        config.node_id_security = self.node_id_security.unwrap_or(chosen_id);
        let clock = Clock::starting_at(tokio::time::Instant::now());
        let node = Node::new(config, Clock::start_timestamp());

        let (command_tx, command_rx) = mpsc::channel(256);
        let (boot_tx, boot_rx) = watch::channel(false);
        let mut driver = Driver::new(node, local_addrs.clone(), clock, boot_tx);
        if let Some(state) = &self.state {
            driver.restore_items(state);
            driver.restore_advertisements(state);
            driver.restore_watches(state);
        }
        driver.start_bootstrap(routers, contacts);
        node_task::spawn(driver, sockets, command_rx, clock);
        tracing::info!(%node_id, ?local_addrs, "node started");
        Ok(Dht { commands: command_tx, bootstrapped: boot_rx, local_addrs, node_id, keep_alive_puts: self.keep_alive })
    }

    fn bind_sockets(&self) -> Result<Vec<Arc<UdpSocket>>> {
        let ports = match self.state.as_ref().and_then(|s| s.port) {
            Some(saved) => self.ports.preferring(saved),
            None => self.ports.clone(),
        };
        bind_sockets(&self.bind, self.bind_explicit, &ports)
    }
}

/// Binds one UDP socket per address in `bind`, all on the same port: the first of `ports` where
/// every address binds; the error of the last port tried when none does. When `bind` is the default (not `explicit`),
/// an IPv6 address that cannot be bound is skipped. Shared by both networks' builders.
pub(crate) fn bind_sockets(bind: &[IpAddr], explicit: bool, ports: &PortSpec) -> Result<Vec<Arc<UdpSocket>>> {
    if bind.is_empty() {
        return Err(Error::NoBindAddress);
    }
    let mut last_error = None;
    for port in ports.candidates() {
        let mut sockets = Vec::new();
        let mut failed = false;
        for ip in bind {
            let attempt = match (port, sockets.first()) {
                // With port 0, prefer the port the first socket got so both families share it.
                (0, Some(first)) => {
                    bind_udp(SocketAddr::new(*ip, bound_port(first))).or_else(|_| bind_udp(SocketAddr::new(*ip, 0)))
                }
                _ => bind_udp(SocketAddr::new(*ip, port)),
            };
            match attempt {
                Ok(socket) => sockets.push(socket),
                Err(e) if ip.is_ipv6() && !explicit => {
                    tracing::debug!("IPv6 not available ({e}); running IPv4 only");
                }
                Err(e) => {
                    last_error = Some(Error::Bind { addr: SocketAddr::new(*ip, port), source: e });
                    failed = true;
                    break;
                }
            }
        }
        if !failed && !sockets.is_empty() {
            let first = ports.candidates().first().copied().unwrap_or(0);
            if port != first {
                // Not silent: whoever expected the first port learns where the node went.
                let got = bound_port(&sockets[0]);
                tracing::warn!("UDP port {first} is taken; listening on port {got} instead");
            }
            return Ok(sockets.into_iter().map(Arc::new).collect());
        }
    }
    Err(last_error.unwrap_or(Error::NoBindAddress))
}

fn bound_port(socket: &UdpSocket) -> u16 {
    socket.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// Binds a non-blocking UDP socket; IPv6 sockets are IPv6-only so that an IPv4 socket can
/// share the port.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Larger buffers ride out bursts (a busy node receives thousands of datagrams a second).
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Resolves `host:port` strings to addresses of the families we have sockets for. Names that
/// do not resolve within 5 s are skipped with a warning.
pub(crate) async fn resolve(routers: &[String], families: Families) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for router in routers {
        let found = match router.parse::<SocketAddr>() {
            Ok(addr) => vec![addr],
            Err(_) => {
                match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host(router.as_str())).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => {
                        tracing::warn!("cannot resolve bootstrap node {router}: {e}");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!("resolving bootstrap node {router} timed out");
                        continue;
                    }
                }
            }
        };
        out.extend(found.into_iter().filter(|a| if a.is_ipv4() { families.v4 } else { families.v6 }));
    }
    out
}
