//! The two servers under test, each a two-node network on loopback serving OpenDHT's proxy API:
//! kadmos runs `kadmos testnet --network opendht --nodes 1` and `kadmos node --network opendht
//! --http` bootstrapped from it; OpenDHT runs `dhtnode -s` and `dhtnode -s --proxyserver`
//! bootstrapped from it (as in the anchor figures of GATEWAY.md). Both pinned to one core.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;

use crate::procs::{self, Server};

/// Keys of the "GET over 64 keys" scenario, one value each.
pub const SPREAD_KEYS: usize = 64;

/// The path of the `i`th key of the "GET over 64 keys" scenario.
pub fn spread_key(i: usize) -> String {
    format!("/key/bench64-{}", i % SPREAD_KEYS)
}

/// A two-node network serving the proxy API at `addr`; the last server is the one serving HTTP.
pub struct Side {
    pub servers: Vec<Server>,
    pub addr: SocketAddr,
}

impl Side {
    /// The processes of the side, the one serving HTTP last.
    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().map(Server::pid).collect()
    }

    /// `None` while every process runs; else which one exited, and its last output.
    pub fn dead(&mut self) -> Option<String> {
        self.servers.iter_mut().find_map(|s| s.exited().map(|st| format!("{} exited ({st}):\n{}", s.name, s.tail())))
    }

    /// The last output of every process, for error messages.
    pub fn output(&self) -> String {
        self.servers.iter().map(|s| format!("{}:\n{}", s.name, s.tail())).collect::<Vec<_>>().join("\n")
    }
}

fn free_port() -> Result<u16, String> {
    // Free on both TCP and UDP: dhtnode's node port is UDP, the proxy's TCP.
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port".into())
}

fn start(name: &str, argv: Vec<String>, core: usize) -> Result<Server, String> {
    Server::spawn(name, &argv, Some(core)).map(|(server, _)| server).map_err(|e| e.to_string())
}

/// Starts the kadmos side; `state` is a path in a directory of its own (a fresh one each time:
/// no node state, no permanent puts from the last run).
pub fn kadmos_side(kadmos: &Path, core: usize, state: &Path) -> Result<Side, String> {
    let bin = kadmos.to_string_lossy().into_owned();
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let seed_port = free_port()?;
    let http = free_port()?;
    let testnet: Vec<String> =
        vec![bin.clone(), "testnet".into(), "--network".into(), "opendht".into(), "--nodes".into(), "1".into()];
    let testnet = [testnet, vec!["--port".into(), seed_port.to_string()]].concat();
    let (mut seed, printed) = Server::spawn("kadmos testnet", &testnet, Some(core)).map_err(|e| e.to_string())?;
    // The node must not bootstrap before the seed listens.
    seed.wait_addr(&printed, Duration::from_secs(30))?;
    let node = start(
        "kadmos node --http",
        vec![
            bin,
            "node".into(),
            "--network".into(),
            "opendht".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--bootstrap".into(),
            format!("127.0.0.1:{seed_port}"),
            "--http".into(),
            format!("127.0.0.1:{http}"),
            "--state".into(),
            state.to_string_lossy().into_owned(),
        ],
        core,
    )?;
    Ok(Side { servers: vec![seed, node], addr: SocketAddr::from(([127, 0, 0, 1], http)) })
}

/// Starts OpenDHT's side with the `dhtnode` launcher.
pub fn opendht_side(dhtnode: &Path, core: usize) -> Result<Side, String> {
    let bin = dhtnode.to_string_lossy().into_owned();
    let (peer_port, proxy_port, http) = (free_port()?, free_port()?, free_port()?);
    let peer = start("dhtnode", vec![bin.clone(), "-s".into(), "-p".into(), peer_port.to_string()], core)?;
    let proxy = start(
        "dhtnode --proxyserver",
        vec![
            bin,
            "-s".into(),
            "-p".into(),
            proxy_port.to_string(),
            "-b".into(),
            format!("127.0.0.1:{peer_port}"),
            "--proxyserver".into(),
            http.to_string(),
        ],
        core,
    )?;
    Ok(Side { servers: vec![peer, proxy], addr: SocketAddr::from(([127, 0, 0, 1], http)) })
}

/// One request on a fresh connection: status and body.
pub async fn once(addr: SocketAddr, method: Method, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::builder().method(method).uri(path).header("host", addr.to_string());
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// Waits until the server reports a good contact, then puts the hot key's 10 values and one
/// value at each of the 64 spread keys (all permanent, so they stay for the whole run).
pub async fn prepare(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = once(addr, Method::GET, "/node/info", Bytes::new()).await {
            let info: Json = serde_json::from_slice(&body).unwrap_or_default();
            let good = |f: &str| info[f]["good"].as_u64().unwrap_or(0);
            if good("ipv4") + good("ipv6") > 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the server at {addr} never reported a good contact"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let puts =
        (1..=10).map(|i| ("/key/bench10".to_string(), i)).chain((0..SPREAD_KEYS).map(|i| (spread_key(i), 100 + i)));
    for (path, id) in puts {
        let body = format!(r#"{{"data":"dmFsdWU=","id":"{id}","permanent":true}}"#);
        let (status, _) = once(addr, Method::POST, &path, Bytes::from(body)).await?;
        if status != 200 {
            return Err(format!("preparing {path}: POST answered {status}"));
        }
    }
    Ok(())
}

/// The 1-minute load average, noted with every figure (the machine is shared).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU time the processes of a side had used at some moment, seconds: the gateway's (the last
/// process) and all of them together (with the node that stores the values).
#[derive(Clone, Copy)]
pub struct CpuReading {
    gateway: f64,
    side: f64,
}

impl CpuReading {
    /// Now, for the processes `pids` (the gateway last); `None` if one cannot be read.
    pub fn now(pids: &[u32]) -> Option<CpuReading> {
        let each: Vec<f64> = pids.iter().map(|&p| procs::precise_cpu_seconds(p).ok()).collect::<Option<_>>()?;
        Some(CpuReading { gateway: *each.last()?, side: each.iter().sum() })
    }

    /// The CPU time used since `before`, per operation of the `ops` served meanwhile.
    pub fn per_op_since(self, before: CpuReading, ops: u64) -> Option<CpuPerOp> {
        (ops > 0).then(|| CpuPerOp {
            gateway_us: 1e6 * (self.gateway - before.gateway) / ops as f64,
            side_us: 1e6 * (self.side - before.side) / ops as f64,
        })
    }
}

/// Server CPU time per operation (request served, or stream delivered to), microseconds: a
/// figure that holds whatever else the machine runs, unlike rates and latencies.
#[derive(Clone, Copy, Debug)]
pub struct CpuPerOp {
    /// The process serving HTTP.
    pub gateway_us: f64,
    /// Both processes of the side (the gateway and the node storing the values).
    pub side_us: f64,
}

impl CpuPerOp {
    pub fn to_json(cpu: Option<CpuPerOp>) -> Json {
        cpu.map_or(Json::Null, |c| serde_json::json!({ "gateway_us": c.gateway_us, "side_us": c.side_us }))
    }
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    procs::status_kib(pid, "VmRSS:").ok()
}
