//! One-shot commands through an ephemeral node: join, do one thing, print, leave.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use kadmos::{Dht, InfoHash, NodeId, NodeInfo, PeerBatch, PortSpec};
use serde_json::json;

use crate::output::emit;
use crate::NetworkArgs;

/// How long joining may take before a one-shot command gives up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts an ephemeral node (the builder adjusted by `configure`) and waits until it joined.
pub async fn join(
    net: &NetworkArgs,
    configure: impl FnOnce(kadmos::DhtBuilder) -> kadmos::DhtBuilder,
) -> Result<Dht, String> {
    // BEP 43 read-only: a node that exits in a moment must not enter others' routing tables,
    // where it would only cost later lookups a timeout.
    let dht = configure(net.builder().read_only(true))
        .build()
        .await
        .map_err(|e| crate::node::start_failure(e, net.port.as_ref()))?;
    tokio::time::timeout(JOIN_TIMEOUT, dht.bootstrapped())
        .await
        .map_err(|_| "joining the network timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !net.no_bootstrap {
        let info = dht.info().await.map_err(|e| e.to_string())?;
        if info.routing_table_ipv4.unwrap_or(0) + info.routing_table_ipv6.unwrap_or(0) == 0 {
            return Err("could not join the network: no bootstrap node answered".into());
        }
    }
    Ok(dht)
}

pub async fn peers(info_hash: InfoHash, net: NetworkArgs) -> Result<(), String> {
    let dht = join(&net, |b| b).await?;
    let mut stream = dht.get_peers(info_hash).await.map_err(|e| e.to_string())?;
    let mut total = 0;
    while let Some(batch) = stream.next().await {
        total += print_peers(net.json, &batch);
    }
    print_peers_done(net.json, info_hash, total);
    let _ = dht.shutdown().await;
    Ok(())
}

/// Prints the peers of one batch (also for the batches a daemon streams); returns how many.
pub(crate) fn print_peers(json_output: bool, batch: &PeerBatch) -> usize {
    for peer in &batch.peers {
        emit(json_output, "peer", &json!({ "peer": peer, "from": batch.from }), || {
            format!("{peer}\t(from {} {})", batch.from.addr, batch.from.id)
        });
    }
    batch.peers.len()
}

pub(crate) fn print_peers_done(json_output: bool, info_hash: InfoHash, total: usize) {
    emit(json_output, "done", &json!({ "info_hash": info_hash.to_string(), "peers": total }), || {
        format!("{total} peers found")
    });
}

/// The port an announce or advertisement names: with `--port N`, N (the node binds N if it
/// can, else any free port: N is what is announced, and the peer serving it need not be this
/// node); otherwise `None`, for the node's own UDP port (implied_port).
pub fn announced_port(net: &mut NetworkArgs) -> Option<u16> {
    let announced_port = net.port.as_ref().and_then(|spec| spec.candidates().first().copied()).filter(|p| *p != 0);
    if let Some(port) = announced_port {
        net.port = Some(PortSpec::list([port, 0]));
    }
    announced_port
}

pub async fn announce(info_hash: InfoHash, mut net: NetworkArgs) -> Result<(), String> {
    let announced_port = announced_port(&mut net);
    let dht = join(&net, |b| b).await?;
    let result = dht.announce_peer(info_hash, announced_port).await.map_err(|e| e.to_string())?;
    let port = announced_port.or_else(|| dht.local_addr_v4().or(dht.local_addrs().first().copied()).map(|a| a.port()));
    let _ = dht.shutdown().await;
    print_announced(net.json, info_hash, (port, announced_port.is_none()), &result.stored_at)
}

/// Prints an announce's outcome (`port`: the port announced, and whether it was implied), or
/// fails if no node stored it.
pub(crate) fn print_announced(
    json_output: bool,
    info_hash: InfoHash,
    (port, implied_port): (Option<u16>, bool),
    stored_at: &[NodeInfo],
) -> Result<(), String> {
    if stored_at.is_empty() {
        return Err("announce failed: no node accepted it".into());
    }
    emit(
        json_output,
        "announced",
        &json!({ "info_hash": info_hash.to_string(), "port": port, "implied_port": implied_port, "stored_at": stored_at }),
        || format!("announced port {} at {} nodes", port.unwrap_or(0), stored_at.len()),
    );
    Ok(())
}

pub async fn find_node(id: NodeId, net: NetworkArgs) -> Result<(), String> {
    let dht = join(&net, |b| b).await?;
    let nodes = dht.find_node(id).await.map_err(|e| e.to_string())?;
    print_nodes(net.json, id, &nodes);
    let _ = dht.shutdown().await;
    Ok(())
}

pub(crate) fn print_nodes(json_output: bool, target: NodeId, nodes: &[NodeInfo]) {
    for node in nodes {
        emit(
            json_output,
            "node",
            &json!({ "id": node.id.to_string(), "addr": node.addr, "distance": hex_distance(&node.id, &target) }),
            || format!("{}\t{}", node.id, node.addr),
        );
    }
}

fn hex_distance(a: &NodeId, b: &NodeId) -> String {
    a.distance(b).0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address `HOST:PORT` names (the first one if several).
pub(crate) fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

pub async fn ping(addr: String, net: NetworkArgs) -> Result<(), String> {
    let target = resolve(&addr)?;
    let mut net = net;
    net.no_bootstrap = true; // a ping needs no network
    let dht = net.builder().build().await.map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let pong = dht.ping(target).await.map_err(|e| format!("ping {target}: {e}"))?;
    let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
    print_pong(net.json, pong, rtt_ms);
    let _ = dht.shutdown().await;
    Ok(())
}

pub(crate) fn print_pong(json_output: bool, pong: NodeInfo, rtt_ms: f64) {
    emit(json_output, "pong", &json!({ "id": pong.id.to_string(), "addr": pong.addr, "rtt_ms": rtt_ms }), || {
        format!("{} answered as {} in {rtt_ms:.1} ms", pong.addr, pong.id)
    });
}
