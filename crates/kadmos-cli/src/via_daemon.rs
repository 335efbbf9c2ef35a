//! Commands answered by the running local daemon (`kadmos node`), found through `daemon.json`
//! in the data directory: `routing-table`, `stats` and `stop`, and the one-shot commands,
//! which ask the daemon's warm routing table instead of joining with a cold node of their own.
//! Their output is the same either way.
//!
//! A one-shot command uses the daemon unless `--standalone` is given or it describes a node of
//! its own (`--bootstrap`, `--no-bootstrap`, `--bind`, or `--port` other than `announce`'s),
//! which the daemon is not; a daemon that does not answer within a second counts as absent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use kadmos::{Id, InfoHash, NodeId, NodeInfo, PeerBatch, WatchEvent};
use kadmos_http::{send, Client, ClientConfig, HttpResponse};
use serde_json::{json, Value as Json};

use crate::daemon_file::DaemonFile;
use crate::oneshot::{print_announced, print_nodes, print_peers, print_peers_done, print_pong};
use crate::output::emit;
use crate::quests::{print_renewal, print_watch_event};
use crate::storage::{parse_public_key, print_immutable, print_mutable, print_put};
use crate::NetworkArgs;

/// How long a daemon has to answer before it counts as absent.
const HEALTH_DEADLINE: Duration = Duration::from_secs(1);
/// How long an operation through the daemon may take (the daemon's own deadline is 30 s).
const OPERATION_DEADLINE: Duration = Duration::from_secs(60);

/// A daemon that answered.
pub struct LocalDaemon {
    file: DaemonFile,
}

/// Whether a one-shot command should look for a daemon (see the module's notes).
pub fn wanted(net: &NetworkArgs, port_is_the_commands: bool) -> bool {
    !net.standalone
        && net.bootstrap.is_empty()
        && !net.no_bootstrap
        && net.bind.is_empty()
        && (port_is_the_commands || net.port.is_none())
}

impl LocalDaemon {
    /// The daemon recorded in the data directory, if it answers and runs `network`.
    pub async fn find(net: &NetworkArgs, network: &str, port_is_the_commands: bool) -> Option<LocalDaemon> {
        if !wanted(net, port_is_the_commands) {
            return None;
        }
        let file = DaemonFile::read().filter(|f| f.networks.iter().any(|n| n == network))?;
        if answers(&file).await {
            Some(LocalDaemon { file })
        } else {
            tracing::debug!("the daemon recorded in {} does not answer", DaemonFile::path().display());
            None
        }
    }

    /// The running daemon, or an error saying there is none.
    pub async fn running() -> Result<LocalDaemon, String> {
        let file = DaemonFile::read().ok_or_else(|| {
            format!("no daemon is running ({} not found; start one with kadmos node)", DaemonFile::path().display())
        })?;
        if answers(&file).await {
            Ok(LocalDaemon { file })
        } else {
            Err(format!("the daemon recorded in {} (pid {}) does not answer", DaemonFile::path().display(), file.pid))
        }
    }

    /// Sends a request with the control token; an answer other than 2xx is an error with the
    /// daemon's message.
    async fn request(&self, method: &str, path: &str) -> Result<HttpResponse, String> {
        self.request_with_body(method, path, Bytes::new()).await
    }

    async fn request_with_body(&self, method: &str, path: &str, body: Bytes) -> Result<HttpResponse, String> {
        let auth = format!("Bearer {}", self.file.token);
        let headers = [("authorization", auth.as_str())];
        let answer = send(self.file.addr, axum_method(method), path, &headers, body, OPERATION_DEADLINE)
            .await
            .map_err(|e| format!("daemon: {e}"))?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let status = answer.status;
        let text = answer.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Json>(&text)
            .ok()
            .and_then(|j| j["err"].as_str().map(String::from))
            .unwrap_or_else(|| text.trim().to_string());
        Err(format!("daemon answered {status}: {message}"))
    }

    async fn json(&self, method: &str, path: &str) -> Result<Json, String> {
        self.json_with_body(method, path, Bytes::new()).await
    }

    async fn json_with_body(&self, method: &str, path: &str, body: Bytes) -> Result<Json, String> {
        let text = self.request_with_body(method, path, body).await?.text().await?;
        serde_json::from_str(&text).map_err(|e| format!("daemon sent bad JSON: {e}"))
    }

    /// A gateway client on the daemon (for OpenDHT's put, get and listen, which the gateway
    /// routes already serve).
    pub fn client(&self) -> Result<Client, String> {
        Client::new(std::slice::from_ref(&self.file.url), ClientConfig::default()).map_err(|e| e.to_string())
    }
}

/// Whether the daemon of `file` answers at its address. Its stats must name its pid: after a
/// crash, another program (another daemon's gateway, say) may have taken the port.
async fn answers(file: &DaemonFile) -> bool {
    let stats = async {
        let answer = send(file.addr, Method::GET, "/daemon/stats", &[], Bytes::new(), HEALTH_DEADLINE).await.ok()?;
        let text = tokio::time::timeout(HEALTH_DEADLINE, answer.text()).await.ok()?.ok()?;
        serde_json::from_str::<Json>(&text).ok()?["pid"].as_u64()
    };
    stats.await == Some(u64::from(file.pid))
}

fn axum_method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET)
}

/// A `NodeInfo` from its JSON form (`{"id": hex, "addr": "ip:port"}`).
fn node_info(json: &Json) -> Result<NodeInfo, String> {
    let id = json["id"].as_str().and_then(|t| t.parse::<NodeId>().ok());
    let addr = json["addr"].as_str().and_then(|t| t.parse::<SocketAddr>().ok());
    match (id, addr) {
        (Some(id), Some(addr)) => Ok(NodeInfo { id, addr }),
        _ => Err(format!("daemon sent a node without an ID and address: {json}")),
    }
}

fn node_infos(json: &Json) -> Result<Vec<NodeInfo>, String> {
    json.as_array().map(|a| a.iter().map(node_info).collect()).unwrap_or_else(|| Ok(Vec::new()))
}

pub async fn peers(info_hash: InfoHash, daemon: &LocalDaemon, json_output: bool) -> Result<(), String> {
    let mut answer = daemon.request("GET", &format!("/daemon/mainline/peers/{info_hash}")).await?;
    let mut total = 0;
    while let Some(line) = answer.next_line().await {
        let batch: Json = serde_json::from_str(&line?).map_err(|e| format!("daemon sent bad JSON: {e}"))?;
        let peers = batch["peers"].as_array().map(|a| a.iter().filter_map(|p| p.as_str()?.parse().ok()).collect());
        let batch = PeerBatch { from: node_info(&batch["from"])?, peers: peers.unwrap_or_default() };
        total += print_peers(json_output, &batch);
    }
    print_peers_done(json_output, info_hash, total);
    Ok(())
}

pub async fn announce(
    info_hash: InfoHash,
    port: Option<u16>,
    daemon: &LocalDaemon,
    json_output: bool,
) -> Result<(), String> {
    let query = port.map(|p| format!("?port={p}")).unwrap_or_default();
    let answer = daemon.json("POST", &format!("/daemon/mainline/announce/{info_hash}{query}")).await?;
    let stored_at = node_infos(&answer["result"]["stored_at"])?;
    let announced = answer["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    print_announced(json_output, info_hash, (announced, port.is_none()), &stored_at)
}

pub async fn find_node(id: NodeId, daemon: &LocalDaemon, json_output: bool) -> Result<(), String> {
    let nodes = node_infos(&daemon.json("GET", &format!("/daemon/mainline/find-node/{id}")).await?)?;
    print_nodes(json_output, id, &nodes);
    Ok(())
}

pub async fn ping(addr: String, daemon: &LocalDaemon, json_output: bool) -> Result<(), String> {
    let target = crate::oneshot::resolve(&addr)?;
    let answer = daemon.json("GET", &format!("/daemon/mainline/ping/{target}")).await?;
    print_pong(json_output, node_info(&answer)?, answer["rtt_ms"].as_f64().unwrap_or(0.0));
    Ok(())
}

/// `advertise INFOHASH [--port N]` through the daemon: its rounds are printed until SIGINT or
/// SIGTERM; the daemon stops the advertisement when this command's connection closes.
pub async fn advertise(
    info_hash: InfoHash,
    port: Option<u16>,
    daemon: &LocalDaemon,
    json_output: bool,
) -> Result<(), String> {
    let stats = daemon.json("GET", "/daemon/stats").await?;
    let own_port =
        stats["mainline"]["local_addrs"][0].as_str().and_then(|a| a.parse::<SocketAddr>().ok()).map(|a| a.port());
    let query = port.map(|p| format!("?port={p}")).unwrap_or_default();
    let mut rounds = daemon.request("POST", &format!("/daemon/mainline/advertise/{info_hash}{query}")).await?;
    until_signal(async {
        while let Some(line) = rounds.next_line().await {
            let renewal = parse_line(&line?)?;
            let Some(stored_at) = renewal["stored_at"].as_u64() else { continue }; // a heartbeat
            let next_in_secs = renewal["next_in_secs"].as_u64().unwrap_or(0);
            print_renewal(
                json_output,
                info_hash,
                (port.or(own_port), port.is_none()),
                stored_at as usize,
                next_in_secs,
            );
        }
        Err("the daemon stopped".to_string())
    })
    .await
}

/// `watch INFOHASH` through the daemon: each new peer (and each peer gone) until SIGINT or
/// SIGTERM; the daemon stops the watch when this command's connection closes.
pub async fn watch(info_hash: InfoHash, daemon: &LocalDaemon, json_output: bool) -> Result<(), String> {
    let mut events = daemon.request("GET", &format!("/daemon/mainline/watch/{info_hash}")).await?;
    until_signal(async {
        while let Some(line) = events.next_line().await {
            let event = parse_line(&line?)?;
            let peer = event["peer"].as_str().and_then(|p| p.parse::<SocketAddr>().ok());
            let event = match (event["event"].as_str(), peer) {
                (Some("found"), Some(peer)) => {
                    let advertised = event["advertised"].as_bool().unwrap_or(false);
                    WatchEvent::Found { peer, from: node_info(&event["from"])?, advertised }
                }
                (Some("gone"), Some(peer)) => WatchEvent::Gone { peer },
                _ => continue, // a heartbeat
            };
            print_watch_event(json_output, info_hash, event);
        }
        Err("the daemon stopped".to_string())
    })
    .await
}

fn parse_line(line: &str) -> Result<Json, String> {
    serde_json::from_str(line).map_err(|e| format!("daemon sent bad JSON: {e}"))
}

/// Runs `work` until it fails or SIGINT/SIGTERM arrives (then the command ends normally).
async fn until_signal(work: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::select! {
        () = crate::testnet::wait_for_signal() => Ok(()),
        result = work => result,
    }
}

/// `put VALUE` (an immutable item) through the daemon.
pub async fn put_immutable(value: &str, daemon: &LocalDaemon, json_output: bool) -> Result<(), String> {
    let body = Bytes::from(value.as_bytes().to_vec());
    let result = daemon.json_with_body("POST", "/daemon/mainline/immutable", body).await?;
    print_put(json_output, &result);
    Ok(())
}

/// `get TARGET` or `get --public-key HEX [--salt S]` through the daemon.
pub async fn get(
    target: Option<Id>,
    public_key: Option<String>,
    salt: Option<String>,
    daemon: &LocalDaemon,
    json_output: bool,
) -> Result<(), String> {
    let bencoded =
        |answer: &Json| hex::decode(answer["bencoded"].as_str().unwrap_or_default()).map_err(|e| e.to_string());
    match (target, public_key) {
        (Some(target), None) => {
            let answer = daemon.json("GET", &format!("/daemon/mainline/immutable/{target}")).await?;
            print_immutable(json_output, target, &bencoded(&answer)?);
        }
        (None, Some(public_key)) => {
            parse_public_key(&public_key)?;
            let salt = salt.unwrap_or_default();
            let path = format!("/daemon/mainline/mutable/{public_key}?salt={}", hex::encode(&salt));
            let answer = daemon.json("GET", &path).await?;
            let target: Id = answer["target"].as_str().and_then(|t| t.parse().ok()).ok_or("daemon sent no target")?;
            let seq = answer["seq"].as_i64().ok_or("daemon sent no seq")?;
            print_mutable(json_output, (&public_key, &salt), target, seq, &bencoded(&answer)?);
        }
        _ => return Err("give either a TARGET or --public-key HEX".into()),
    }
    Ok(())
}

/// `kadmos routing-table`: both networks' tables, bucket by bucket.
pub async fn routing_table(json_output: bool) -> Result<(), String> {
    let daemon = LocalDaemon::running().await?;
    let tables = daemon.json("GET", "/daemon/routing-table").await?;
    for network in ["mainline", "opendht"] {
        let table = &tables[network];
        if table.is_null() {
            continue;
        }
        let mut fields = table.clone();
        fields["network"] = json!(network);
        emit(json_output, "routing_table", &fields, || describe_table(network, table));
    }
    Ok(())
}

fn describe_contact(contact: &Json, replacement: bool) -> String {
    let seen = match contact["last_response_secs_ago"].as_u64() {
        Some(secs) => format!("last seen {secs} s ago"),
        None => "never answered".into(),
    };
    let rtt = match contact["round_trip_us"].as_u64() {
        Some(us) => format!("rtt {:.2} ms", us as f64 / 1000.0),
        None => "rtt unknown".into(),
    };
    format!(
        "    {}{}  {}  {}  {seen}, {rtt}, {} failures",
        if replacement { "(replacement) " } else { "" },
        contact["id"].as_str().unwrap_or("?"),
        contact["addr"].as_str().unwrap_or("?"),
        contact["status"].as_str().unwrap_or("?"),
        contact["failures"].as_u64().unwrap_or(0),
    )
}

fn describe_table(network: &str, table: &Json) -> String {
    let mut lines = vec![format!("{network} node {}", table["node_id"].as_str().unwrap_or("?"))];
    for family in ["ipv4", "ipv6"].iter().map(|f| &table[*f]).filter(|f| !f.is_null()) {
        let buckets = family["buckets"].as_array().cloned().unwrap_or_default();
        lines.push(format!(
            "  {}: {} contacts in {} buckets",
            family["family"].as_str().unwrap_or("?"),
            family["size"],
            buckets.len()
        ));
        for bucket in &buckets {
            let contacts = bucket["contacts"].as_array().cloned().unwrap_or_default();
            let replacements = bucket["replacement_contacts"].as_array().cloned().unwrap_or_default();
            lines.push(format!(
                "  bucket {:>3} (prefix {} bits): {}/{} contacts, {} replacements, changed {} s ago",
                bucket["prefix_len"],
                bucket["prefix_len"],
                contacts.len(),
                bucket["capacity"],
                replacements.len(),
                bucket["last_changed_secs_ago"]
            ));
            lines.extend(contacts.iter().map(|c| describe_contact(c, false)));
            lines.extend(replacements.iter().map(|c| describe_contact(c, true)));
        }
    }
    lines.join("\n")
}

/// `kadmos stats`: the daemon's counters, stores and uptime.
pub async fn stats(json_output: bool) -> Result<(), String> {
    let daemon = LocalDaemon::running().await?;
    let stats = daemon.json("GET", "/daemon/stats").await?;
    emit(json_output, "daemon_stats", &stats, || describe_stats(&stats));
    Ok(())
}

fn describe_stats(stats: &Json) -> String {
    let mut lines = vec![format!("daemon pid {}, up {} s", stats["pid"], stats["uptime_secs"])];
    for network in ["mainline", "opendht"] {
        let info = &stats[network];
        if info.is_null() {
            continue;
        }
        let t = &info["traffic"];
        lines.push(format!(
            "{network}: node {} on {}, routing table ipv4 {} ipv6 {}",
            info["node_id"].as_str().unwrap_or("?"),
            info["local_addrs"],
            info["routing_table_ipv4"],
            info["routing_table_ipv6"]
        ));
        lines.push(format!(
            "  in {} datagrams {} B, out {} datagrams {} B, {} requests timed out, {} dropped",
            t["datagrams_received"],
            t["bytes_received"],
            t["datagrams_sent"],
            t["bytes_sent"],
            t["requests_timed_out"],
            t["dropped"]
        ));
        let methods: Vec<String> = t["by_method"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["received"].as_u64().unwrap_or(0) + m["sent"].as_u64().unwrap_or(0) > 0)
            .map(|m| format!("{} {}/{}", m["method"].as_str().unwrap_or("?"), m["received"], m["sent"]))
            .collect();
        if !methods.is_empty() {
            lines.push(format!("  queries in/out: {}", methods.join(", ")));
        }
        lines.push(match network {
            "mainline" => format!(
                "  stored: {} peers of {} torrents, {} items; {} kept alive; {} operations running",
                info["stored_peers"],
                info["stored_infohashes"],
                info["stored_items"],
                info["kept_items"],
                info["running_operations"]
            ),
            _ => format!(
                "  stored: {} values under {} keys; {} permanent puts, {} listens; {} operations running",
                info["stored_values"],
                info["stored_keys"],
                info["permanent_puts"],
                info["listens"],
                info["running_operations"]
            ),
        });
    }
    if let Some(advertisements) = stats["advertisements"].as_array() {
        let rounds: u64 = advertisements.iter().filter_map(|a| a["rounds"].as_u64()).sum();
        lines.push(format!("quests: advertising {} torrents ({rounds} rounds so far)", advertisements.len()));
        for a in advertisements {
            lines.push(format!(
                "  {} port {}: {} rounds, last stored at {} nodes, next in {} s",
                a["info_hash"].as_str().unwrap_or("?"),
                a["port"].as_u64().map_or("(own)".to_string(), |p| p.to_string()),
                a["rounds"],
                a["last_stored_at"],
                a["next_in_secs"]
            ));
        }
    }
    if let Some(watches) = stats["watches"].as_array() {
        lines.push(format!("quests: watching {} torrents", watches.len()));
        for w in watches {
            lines.push(format!(
                "  {}: {} peers known, {} clients{}",
                w["info_hash"].as_str().unwrap_or("?"),
                w["peers"],
                w["handles"],
                if w["kept"] == true { ", kept (saved)" } else { "" }
            ));
        }
    }
    let g = &stats["gateway"];
    lines.push(format!(
        "gateway: {} requests, {} open listen streams, {} puts",
        g["requests"], g["open_listen_streams"], g["puts"]
    ));
    lines.join("\n")
}

/// `kadmos unwatch`: stops the daemon's watch of an infohash, kept or not.
pub async fn unwatch(info_hash: InfoHash, json_output: bool) -> Result<(), String> {
    let daemon = LocalDaemon::running().await?;
    let answer = daemon.json("DELETE", &format!("/daemon/mainline/watch/{info_hash}")).await?;
    let stopped = answer["stopped"].as_bool().unwrap_or(false);
    emit(json_output, "unwatched", &json!({ "info_hash": info_hash.to_string(), "stopped": stopped }), || {
        if stopped {
            format!("{info_hash}: the daemon no longer watches it")
        } else {
            format!("{info_hash}: the daemon was not watching it")
        }
    });
    Ok(())
}

/// `kadmos stop`: asks the daemon to stop, and waits until it has saved its state and gone.
pub async fn stop(json_output: bool) -> Result<(), String> {
    let daemon = LocalDaemon::running().await?;
    daemon.request("POST", "/daemon/stop").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // The daemon removes its file once its state is saved; until then it still answers.
    while DaemonFile::read().is_some_and(|f| f.pid == daemon.file.pid) {
        if Instant::now() > deadline {
            return Err(format!("the daemon (pid {}) did not stop within 60 s", daemon.file.pid));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emit(json_output, "stopped", &json!({ "pid": daemon.file.pid }), || {
        format!("stopped the daemon (pid {})", daemon.file.pid)
    });
    Ok(())
}
