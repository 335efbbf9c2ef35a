//! `kadmos node`: the daemon. A Mainline node, an OpenDHT node, or both in one process
//! (`--network both`), and optionally the HTTP gateway over them (`--http`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kadmos::{Dht, NodeId, OpenDht, PortSpec, SavedState};
use kadmos_http::{DaemonControl, Gateway, GatewayConfig, LimitsConfig, RunningGateway};
use serde_json::json;

use crate::daemon_file::DaemonFile;
use crate::node_limits::NodeLimitArgs;
use crate::output::emit;
use crate::testnet::wait_for_signal;
use crate::{opendht, NetworkArgs, NodeNetwork};

/// How often the state file is rewritten while the node runs.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);

/// kadmos's data directory: `$XDG_DATA_HOME/kadmos`, else `~/.local/share/kadmos`.
pub fn data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kadmos")
}

/// Default state file: `state.json` in the data directory.
fn default_state_path() -> PathBuf {
    data_dir().join("state.json")
}

/// Everything `kadmos node` was asked for.
pub struct NodeOptions {
    pub net: NetworkArgs,
    pub network: NodeNetwork,
    pub state: Option<PathBuf>,
    pub read_only: bool,
    pub id: Option<NodeId>,
    pub stats_interval: u64,
    pub republish: Option<Duration>,
    /// With `--network both`: the OpenDHT node's ports and bootstrap nodes.
    pub opendht_port: Option<PortSpec>,
    pub opendht_bootstrap: Vec<String>,
    /// `--http`: where the gateway listens.
    pub http: Option<SocketAddr>,
    pub http_token: Option<String>,
    /// `--http-rate`: requests per second per client address (0: none).
    pub http_rate: f64,
    /// `--push-server`: the gorush-compatible push server.
    pub push_server: Option<String>,
    /// `--control-port`: the control API's port on 127.0.0.1 (0: any free port); `None` with
    /// `--no-control`.
    pub control: Option<u16>,
    /// `--advertise INFOHASH[:PORT]` (Mainline): advertisements to run, besides the saved ones.
    pub advertise: Vec<(kadmos::InfoHash, Option<u16>)>,
    /// `--watch INFOHASH` (Mainline): watches the node keeps, besides the saved ones.
    pub watch: Vec<kadmos::InfoHash>,
    /// Rate limits, peer store limits, BEP 42 and BEP 43 policies (Mainline).
    pub limits: NodeLimitArgs,
}

/// Reads `--http`'s `ADDR:PORT` or a bare `PORT` (on 127.0.0.1: a gateway is public only when
/// asked for).
pub fn parse_http_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("{text:?} is not ADDR:PORT or PORT"))
}

pub async fn run(options: NodeOptions) -> Result<(), String> {
    let net = &options.net;
    let mainline = match options.network {
        NodeNetwork::Opendht => None,
        NodeNetwork::Mainline | NodeNetwork::Both => Some(start_mainline(&options).await?),
    };
    let opendht = match options.network {
        NodeNetwork::Mainline => None,
        NodeNetwork::Opendht => {
            Some(opendht::start_node(net, options.state.clone(), options.read_only, options.id).await?)
        }
        NodeNetwork::Both => {
            // The OpenDHT node of a combined process has its own ports and bootstrap nodes.
            let mut own = net.clone();
            own.port = options.opendht_port.clone();
            own.bootstrap = options.opendht_bootstrap.clone();
            Some(opendht::start_node(&own, None, options.read_only, options.id).await?)
        }
    };
    let _gateway = match options.http {
        None => None,
        Some(addr) => {
            let handles = (opendht.as_ref().map(|(d, _)| d.clone()), mainline.as_ref().map(|(d, _)| d.clone()));
            let limits = LimitsConfig {
                requests_per_sec: (options.http_rate > 0.0).then_some(options.http_rate),
                burst: (2.0 * options.http_rate).max(1.0),
                ..LimitsConfig::default()
            };
            let config = GatewayConfig {
                write_token: options.http_token.clone(),
                limits,
                // Next to the node's state file when one is given, else in the data directory.
                state_file: Some(match &options.state {
                    Some(state) => state.with_file_name("gateway-permanent.json"),
                    None => data_dir().join("gateway-permanent.json"),
                }),
                push_server: options.push_server.clone(),
                ..GatewayConfig::default()
            };
            Some(start_gateway(addr, config, handles, net.json).await?)
        }
    };
    let handles = (opendht.as_ref().map(|(d, _)| d.clone()), mainline.as_ref().map(|(d, _)| d.clone()));
    let control = match options.control {
        Some(port) => Some(start_control(port, handles, net.json).await?),
        None => None,
    };
    let stop_requested = async {
        match &control {
            Some((control, _)) => control.stop_requested().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop_requested);
    // Once joined, an idle node needs little of what starting took.
    let joined = mainline.as_ref().map(|(dht, _)| dht.clone());
    tokio::spawn(async move {
        if let Some(dht) = joined {
            let _ = dht.bootstrapped().await;
        }
        let released = crate::startup_pages::release();
        tracing::debug!("released {released} bytes of read-only startup mappings");
    });
    let mut stats = tokio::time::interval(Duration::from_secs(options.stats_interval.max(1)));
    stats.tick().await;
    let mut save = tokio::time::interval(SAVE_EVERY);
    save.tick().await;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            () = &mut stop_requested => {
                tracing::info!("stopping: asked through the control API");
                break;
            }
            _ = stats.tick() => {
                if let Some((dht, _)) = &mainline {
                    print_stats(dht, net.json).await;
                }
                if let Some((dht, _)) = &opendht {
                    opendht::print_stats(dht, net.json).await;
                }
            }
            _ = save.tick() => {
                if let Some((dht, path)) = &mainline {
                    save_state(dht, path).await;
                }
                if let Some((dht, path)) = &opendht {
                    opendht::save_state(dht, path).await;
                }
            }
        }
    }
    if let Some((dht, path)) = &opendht {
        opendht::stop_node(dht, path, net.json).await?;
    }
    if let Some((dht, path)) = &mainline {
        stop_mainline(dht, path, net.json).await?;
    }
    // Last: `kadmos stop` waits for the file to go as the sign that the state is saved.
    DaemonFile::remove_own();
    Ok(())
}

/// Serves the control API on loopback (a gateway over the same nodes, with the control
/// routes) and records it in `daemon.json` for the CLI.
async fn start_control(
    port: u16,
    (opendht, mainline): (Option<OpenDht>, Option<Dht>),
    json_output: bool,
) -> Result<(DaemonControl, RunningGateway), String> {
    let token = hex::encode(rand::random::<[u8; 16]>());
    let control = DaemonControl::new(token.clone());
    let mut networks = Vec::new();
    if mainline.is_some() {
        networks.push("mainline".to_string());
    }
    if opendht.is_some() {
        networks.push("opendht".to_string());
    }
    // Its own listen hub and lookups; no permanent-put file (the public gateway's, if any).
    let gateway = Gateway::new(opendht, mainline, GatewayConfig::default()).with_control(control.clone());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let running = gateway.bind(addr).await.map_err(|e| format!("control API on {addr}: {e}"))?;
    let url = format!("http://{}", running.local_addr);
    if let Some(other) = DaemonFile::read().filter(|f| f.pid != std::process::id()) {
        tracing::warn!(
            "replacing the record of daemon pid {} at {} in {}",
            other.pid,
            other.url,
            DaemonFile::path().display()
        );
    }
    let file = DaemonFile { pid: std::process::id(), addr: running.local_addr, url: url.clone(), token, networks };
    file.write()?;
    emit(json_output, "control", &json!({ "url": url, "file": DaemonFile::path() }), || {
        format!("control API on {url} (recorded in {})", DaemonFile::path().display())
    });
    Ok((control, running))
}

async fn start_gateway(
    addr: SocketAddr,
    config: GatewayConfig,
    (opendht, mainline): (Option<OpenDht>, Option<Dht>),
    json_output: bool,
) -> Result<RunningGateway, String> {
    let running =
        Gateway::new(opendht, mainline, config).bind(addr).await.map_err(|e| format!("gateway on {addr}: {e}"))?;
    let url = format!("http://{}", running.local_addr);
    emit(json_output, "http", &json!({ "url": url, "addr": running.local_addr }), || {
        format!("gateway serving on {url}")
    });
    Ok(running)
}

/// Why a node could not start, with a hint when it is a `--port` that could not be bound.
pub(crate) fn start_failure(error: kadmos::Error, ports: Option<&PortSpec>) -> String {
    match (&error, ports) {
        (kadmos::Error::Bind { .. }, Some(ports)) if !ports.accepts_any() => {
            format!("{error} (--port {ports} is taken; end the list with 0, as in --port {ports},0, to accept any free port)")
        }
        _ => error.to_string(),
    }
}

/// Starts the Mainline node (6881, then 6882–6889, then any free port, unless `--port` says
/// otherwise; the port of the saved state first), restoring its state.
async fn start_mainline(options: &NodeOptions) -> Result<(Dht, PathBuf), String> {
    let state_path = options.state.clone().unwrap_or_else(default_state_path);
    let builder = options.net.builder().read_only(options.read_only).republish_stored_items(options.republish);
    let mut builder = options.limits.apply(builder);
    if options.net.port.is_none() {
        builder = builder.ports(PortSpec::mainline_daemon());
    }
    if state_path.exists() {
        let saved = SavedState::load(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
        tracing::info!("restoring {} contacts from {}", saved.contacts.len(), state_path.display());
        builder = builder.state(saved);
    }
    if let Some(id) = options.id {
        builder = builder.node_id(id);
    }
    let dht = builder.build().await.map_err(|e| start_failure(e, options.net.port.as_ref()))?;
    for addr in dht.local_addrs() {
        emit(options.net.json, "listening", &json!({ "addr": addr, "node_id": dht.node_id().to_string() }), || {
            format!("listening on {addr} as {}", dht.node_id())
        });
    }
    crate::quests::start_advertising(&dht, &options.advertise, options.net.json).await?;
    crate::quests::start_watching(&dht, &options.watch, options.net.json).await?;
    Ok((dht, state_path))
}

async fn stop_mainline(dht: &Dht, state_path: &Path, json_output: bool) -> Result<(), String> {
    let final_state = dht.shutdown().await.map_err(|e| e.to_string())?;
    final_state.save(state_path).map_err(|e| format!("saving {}: {e}", state_path.display()))?;
    let (contacts, advertisements) = (final_state.contacts.len(), final_state.advertisements.len());
    let watches = final_state.watches.len();
    let value =
        json!({ "state": state_path, "contacts": contacts, "advertisements": advertisements, "watches": watches });
    emit(json_output, "stopped", &value, || {
        format!(
            "saved {contacts} contacts, {advertisements} advertisements and {watches} watches to {}",
            state_path.display()
        )
    });
    Ok(())
}

async fn print_stats(dht: &Dht, json: bool) {
    let Ok(info) = dht.info().await else { return };
    emit(json, "stats", &info, || {
        let t = &info.traffic;
        format!(
            "routing table: ipv4 {} ipv6 {} | peers stored {} ({} torrents) | in {} datagrams {} B, out {} datagrams {} B",
            info.routing_table_ipv4.map_or("-".into(), |n| n.to_string()),
            info.routing_table_ipv6.map_or("-".into(), |n| n.to_string()),
            info.stored_peers,
            info.stored_infohashes,
            t.datagrams_received,
            t.bytes_received,
            t.datagrams_sent,
            t.bytes_sent
        )
    });
}

async fn save_state(dht: &Dht, path: &Path) {
    match dht.save_state().await {
        Ok(state) => {
            if let Err(e) = state.save(path) {
                tracing::warn!("saving state to {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!("reading state: {e}"),
    }
}
