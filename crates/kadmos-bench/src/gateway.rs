//! `kadmos-bench gateway`: the kadmos HTTP gateway against OpenDHT's own proxy server
//! (`dhtnode --proxyserver`, Debian's 2.4.12 unpacked by `interop/install.sh`), under the same
//! load generator in the same run.
//!
//! Each side is a two-node network on loopback: kadmos runs `kadmos testnet --network opendht
//! --nodes 1` and `kadmos node --network opendht --http` bootstrapped from it; OpenDHT runs
//! `dhtnode -s` and `dhtnode -s --proxyserver` bootstrapped from it (as in the anchor figures of
//! GATEWAY.md). The servers are pinned to `--server-core`, the generator to `--gen-core`. Every
//! scenario starts on fresh servers (OpenDHT's proxy slows down as it accumulates searches).
//!
//! The generator keeps `--connections` HTTP/1.1 keep-alive connections busy, one request in
//! flight each, for `--duration` seconds after a one-second warm-up, and reads every answer to
//! its end. Scenarios: `GET /node/info` (HTTP stack only), `GET /key/{h}` of one key holding 10
//! values (hot key), `POST /key/{h}` of a new value id each time (one key), `GET` of a new empty
//! key each time (every GET a lookup). Figures are printed, never asserted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};

use crate::procs::{self, Server};

#[derive(clap::Args, Clone)]
pub struct GatewayArgs {
    /// Seconds measured per scenario and server (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    duration: f64,
    /// Connections kept busy by the generator.
    #[arg(long, default_value_t = 64, value_name = "N")]
    connections: usize,
    /// The kadmos binary (default: `kadmos` next to this executable).
    #[arg(long, value_name = "PATH")]
    kadmos: Option<PathBuf>,
    /// The dhtnode launcher (default: interop/dhtnode.sh of this repository).
    #[arg(long, value_name = "PATH")]
    dhtnode: Option<PathBuf>,
    /// Core the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// Core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    gen_core: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One scenario's figures on one server.
#[derive(Default, Clone)]
struct Figures {
    ok: u64,
    failed: u64,
    /// Latencies of the successful requests, sorted, in seconds.
    latencies: Vec<f64>,
    seconds: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Some(1000.0 * self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    fn to_json(&self) -> Json {
        json!({ "ok": self.ok, "failed": self.failed, "req_per_s": self.rate(),
                "p50_ms": self.percentile_ms(50.0), "p99_ms": self.percentile_ms(99.0) })
    }
}

/// What each request of a scenario is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    NodeInfo,
    HotKeyGet,
    PostNewId,
    GetNewKey,
}

impl Scenario {
    const ALL: [Scenario; 4] = [Scenario::NodeInfo, Scenario::HotKeyGet, Scenario::PostNewId, Scenario::GetNewKey];

    fn name(self) -> &'static str {
        match self {
            Scenario::NodeInfo => "GET /node/info",
            Scenario::HotKeyGet => "GET hot key (10 values)",
            Scenario::PostNewId => "POST new id, one key",
            Scenario::GetNewKey => "GET new empty key",
        }
    }

    /// The `n`th request of connection `conn`.
    fn request(self, conn: usize, n: u64, run: u64) -> (Method, String, Bytes) {
        match self {
            Scenario::NodeInfo => (Method::GET, "/node/info".into(), Bytes::new()),
            Scenario::HotKeyGet => (Method::GET, "/key/bench10".into(), Bytes::new()),
            Scenario::PostNewId => {
                let id = run * 1_000_000_000 + (conn as u64) * 10_000_000 + n + 1;
                (Method::POST, "/key/bench-post".into(), Bytes::from(format!(r#"{{"data":"dmFsdWU=","id":"{id}"}}"#)))
            }
            Scenario::GetNewKey => (Method::GET, format!("/key/empty-{run}-{conn}-{n}"), Bytes::new()),
        }
    }
}

/// A two-node network serving the proxy API at `addr`.
struct Side {
    servers: Vec<Server>,
    addr: SocketAddr,
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

fn kadmos_side(kadmos: &Path, core: usize, state: &Path) -> Result<Side, String> {
    let bin = kadmos.to_string_lossy().into_owned();
    // A fresh directory per scenario: no node state, no permanent puts from the last one.
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let seed_port = free_port()?;
    let http = free_port()?;
    let testnet: Vec<String> = vec![
        bin.clone(),
        "testnet".into(),
        "--network".into(),
        "opendht".into(),
        "--nodes".into(),
        "1".into(),
        "--port".into(),
        seed_port.to_string(),
    ];
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

fn opendht_side(dhtnode: &Path, core: usize) -> Result<Side, String> {
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
async fn once(addr: SocketAddr, method: Method, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
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

/// Waits until the server reports a good contact, then puts the hot key's 10 values.
async fn prepare(addr: SocketAddr) -> Result<(), String> {
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
    for i in 1..=10 {
        let body = format!(r#"{{"data":"dmFsdWU=","id":"{i}","permanent":true}}"#);
        let (status, _) = once(addr, Method::POST, "/key/bench10", Bytes::from(body)).await?;
        if status != 200 {
            return Err(format!("preparing the hot key: POST answered {status}"));
        }
    }
    Ok(())
}

/// Runs one scenario against `addr` and returns its figures.
async fn drive(addr: SocketAddr, scenario: Scenario, connections: usize, duration: Duration, run: u64) -> Figures {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for conn in 0..connections {
        let (measuring, stop, failed) = (measuring.clone(), stop.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            'reconnect: while !stop.load(Ordering::Relaxed) {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut sender, conn_task)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                tokio::spawn(conn_task);
                while !stop.load(Ordering::Relaxed) {
                    let (method, path, body) = scenario.request(conn, n, run);
                    n += 1;
                    let request = Request::builder().method(method).uri(path).header("host", "bench");
                    let Ok(request) = request.body(Full::new(body)) else { continue };
                    let started = Instant::now();
                    let answer = async {
                        let response = sender.send_request(request).await.ok()?;
                        let ok = response.status().is_success();
                        response.into_body().collect().await.ok()?;
                        Some(ok)
                    };
                    let counted = measuring.load(Ordering::Relaxed);
                    match tokio::time::timeout(Duration::from_secs(10), answer).await {
                        Ok(Some(true)) => {
                            if counted {
                                latencies.push(started.elapsed().as_secs_f64());
                            }
                        }
                        Ok(Some(false)) => {
                            if counted {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            if counted {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            continue 'reconnect;
                        }
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(mut l) = tokio::time::timeout(Duration::from_secs(15), task).await.unwrap_or(Ok(Vec::new())) {
            latencies.append(&mut l);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Figures { ok: latencies.len() as u64, failed: failed.load(Ordering::Relaxed), latencies, seconds }
}

fn default_dhtnode() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/dhtnode.sh")
}

pub fn run(args: &GatewayArgs) -> Result<(), String> {
    let bench = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let kadmos = args.kadmos.clone().unwrap_or_else(|| bench.with_file_name("kadmos"));
    if !kadmos.is_file() {
        return Err(format!("no kadmos binary at {} (cargo build --release -p kadmos-cli)", kadmos.display()));
    }
    let dhtnode = args.dhtnode.clone().unwrap_or_else(default_dhtnode);
    let with_opendht = dhtnode.is_file() && dhtnode.with_file_name("dhtnode").join("usr/bin/dhtnode").is_file();
    if !with_opendht {
        eprintln!("note: no dhtnode at {} (bash interop/install.sh): OpenDHT's side is skipped", dhtnode.display());
    }
    let gen_core = args.gen_core % procs::online_cpus().max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(move || {
            let _ = procs::pin_current_thread(gen_core);
        })
        .build()
        .map_err(|e| e.to_string())?;
    let _ = procs::pin_current_thread(gen_core);
    let duration = Duration::from_secs_f64(args.duration);
    let tmp = procs::TempDir::new("kadmos-bench-gateway").map_err(|e| format!("temp dir: {e}"))?;
    let server_core = args.server_core % procs::online_cpus().max(1);
    let mut rows: Vec<(Scenario, Figures, Option<Figures>)> = Vec::new();
    for (run, scenario) in Scenario::ALL.into_iter().enumerate() {
        let measure = |side: Side| {
            runtime.block_on(async {
                if let Err(e) = prepare(side.addr).await {
                    let output: Vec<String> =
                        side.servers.iter().map(|s| format!("{}:\n{}", s.name, s.tail())).collect();
                    return Err(format!("{e}\n{}", output.join("\n")));
                }
                Ok(drive(side.addr, scenario, args.connections, duration, run as u64).await)
            })
        };
        let kadmos_figures =
            measure(kadmos_side(&kadmos, server_core, &tmp.path().join(format!("run{run}/state.json")))?)?;
        let opendht_figures = if with_opendht { Some(measure(opendht_side(&dhtnode, server_core)?)?) } else { None };
        rows.push((scenario, kadmos_figures, opendht_figures));
    }
    if args.json {
        let scenarios: Vec<Json> = rows
            .iter()
            .map(|(s, k, o)| json!({ "scenario": s.name(), "kadmos": k.to_json(), "opendht": o.as_ref().map(Figures::to_json) }))
            .collect();
        println!("{}", json!({ "connections": args.connections, "duration_s": args.duration, "scenarios": scenarios }));
        return Ok(());
    }
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "{:<24} | {:>9} {:>8} {:>8} {:>6} | {:>9} {:>8} {:>8} {:>6}",
        "scenario", "kadmos/s", "p50 ms", "p99 ms", "fail", "OpenDHT/s", "p50 ms", "p99 ms", "fail"
    );
    for (scenario, k, o) in &rows {
        println!(
            "{:<24} | {:>9.0} {:>8} {:>8} {:>6} | {:>9} {:>8} {:>8} {:>6}",
            scenario.name(),
            k.rate(),
            ms(k.percentile_ms(50.0)),
            ms(k.percentile_ms(99.0)),
            k.failed,
            o.as_ref().map_or("-".into(), |o| format!("{:.0}", o.rate())),
            ms(o.as_ref().and_then(|o| o.percentile_ms(50.0))),
            ms(o.as_ref().and_then(|o| o.percentile_ms(99.0))),
            o.as_ref().map_or("-".into(), |o| o.failed.to_string()),
        );
    }
    println!(
        "({} keep-alive connections, {} s per point, fresh servers per scenario)",
        args.connections, args.duration
    );
    Ok(())
}
