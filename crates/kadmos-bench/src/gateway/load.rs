//! The closed-loop load generator: `connections` HTTP/1.1 keep-alive connections kept busy, one
//! request in flight each, every answer read to its end; and the warm-up that walks a server
//! through many distinct keys.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};

use super::sides::{spread_key, CpuPerOp, CpuReading};

/// A request gets no answer past this: counted failed, and its connection is replaced.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One scenario's figures on one server.
#[derive(Default, Clone)]
pub struct Figures {
    pub ok: u64,
    pub failed: u64,
    /// Latencies of the successful requests, sorted, in seconds.
    pub latencies: Vec<f64>,
    pub seconds: f64,
    /// The servers' CPU time per successful request over the measured window.
    pub cpu: Option<CpuPerOp>,
}

impl Figures {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        percentile_ms(&self.latencies, p)
    }

    pub fn to_json(&self) -> Json {
        json!({ "ok": self.ok, "failed": self.failed, "req_per_s": self.rate(),
                "p50_ms": self.percentile_ms(50.0), "p99_ms": self.percentile_ms(99.0),
                "cpu_per_request": CpuPerOp::to_json(self.cpu) })
    }
}

/// The `p`th percentile (nearest rank) of sorted latencies in seconds, in milliseconds.
pub fn percentile_ms(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(1000.0 * sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Keys the POST scenario spreads its values over. A kadmos node keeps at most 1024 values
/// under one key (OpenDHT's, 65,536) and refuses more when they all come from one address, as
/// here: POSTing every value to one key measured, past the first 1024, puts that no node
/// stored. 256 keys hold the 60,000-100,000 values of a run.
const POST_KEYS: u64 = 256;

/// What each request of a load scenario is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    NodeInfo,
    HotKeyGet,
    SpreadGet,
    PostNewId,
    GetNewKey,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NodeInfo => "GET /node/info",
            Scenario::HotKeyGet => "GET hot key (10 values)",
            Scenario::SpreadGet => "GET over 64 keys",
            Scenario::PostNewId => "POST new id, 256 keys",
            Scenario::GetNewKey => "GET new empty key",
        }
    }

    /// The `n`th request of connection `conn`; `run` keeps ids and keys of runs apart.
    fn request(self, conn: usize, n: u64, run: u64) -> (Method, String, Bytes) {
        match self {
            Scenario::NodeInfo => (Method::GET, "/node/info".into(), Bytes::new()),
            Scenario::HotKeyGet => (Method::GET, "/key/bench10".into(), Bytes::new()),
            // Connections start on different keys and each walks all of them.
            Scenario::SpreadGet => (Method::GET, spread_key(conn + n as usize), Bytes::new()),
            Scenario::PostNewId => {
                let id = run * 1_000_000_000 + (conn as u64) * 10_000_000 + n + 1;
                let path = format!("/key/bench-post-{run}-{}", (conn as u64 + n) % POST_KEYS);
                (Method::POST, path, Bytes::from(format!(r#"{{"data":"dmFsdWU=","id":"{id}"}}"#)))
            }
            Scenario::GetNewKey => (Method::GET, format!("/key/empty-{run}-{conn}-{n}"), Bytes::new()),
        }
    }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn_task) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn_task);
    Some(sender)
}

/// Sends one request and reads its answer to the end: `Some(success)`, or `None` when the
/// connection failed or the answer did not come within [`REQUEST_TIMEOUT`].
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    (method, path, body): (Method, String, Bytes),
) -> Option<bool> {
    let request = Request::builder().method(method).uri(path).header("host", "bench").body(Full::new(body)).ok()?;
    let answer = async {
        let response = sender.send_request(request).await.ok()?;
        let ok = response.status().is_success();
        response.into_body().collect().await.ok()?;
        Some(ok)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, answer).await.ok().flatten()
}

/// Runs one scenario against `addr` (served by the processes `pids`, the gateway last) for
/// `duration` after a one-second warm-up.
pub async fn drive(
    addr: SocketAddr,
    pids: &[u32],
    scenario: Scenario,
    connections: usize,
    duration: Duration,
    run: u64,
) -> Figures {
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
                let Some(mut sender) = connect(addr).await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while !stop.load(Ordering::Relaxed) {
                    let request = scenario.request(conn, n, run);
                    n += 1;
                    let started = Instant::now();
                    let counted = measuring.load(Ordering::Relaxed);
                    let answer = exchange(&mut sender, request).await;
                    if !counted {
                        if answer.is_none() {
                            continue 'reconnect;
                        }
                        continue;
                    }
                    match answer {
                        Some(true) => latencies.push(started.elapsed().as_secs_f64()),
                        Some(false) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
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
    let cpu_before = CpuReading::now(pids);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = CpuReading::now(pids);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(Ok(mut l)) = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), task).await {
            latencies.append(&mut l);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let ok = latencies.len() as u64;
    let cpu = cpu_before.zip(cpu_after).and_then(|(before, after)| after.per_op_since(before, ok));
    Figures { ok, failed: failed.load(Ordering::Relaxed), latencies, seconds, cpu }
}

/// How a warm-up went.
pub struct Warmed {
    /// Distinct keys answered with success.
    pub keys: u64,
    pub failed: u64,
    pub seconds: f64,
}

impl Warmed {
    pub fn to_json(&self) -> Json {
        json!({ "keys": self.keys, "failed": self.failed, "seconds": self.seconds })
    }
}

/// One key in this many is POSTed a value by the walk, the others are GOT. The puts stay
/// below what the nodes behind a gateway store: a kadmos node stores values under at most
/// 16,384 keys and refuses new keys beyond (OpenDHT's nodes have no key limit), so a walk
/// that put every other key would fill both nodes of the two-node network, and the scenarios
/// after it would measure that limit (no node storing, no listen hearing a put) rather than
/// the gateway.
const PUT_EVERY: u64 = 8;

/// Walks the server through `keys` distinct keys over `connections` connections: one key in
/// [`PUT_EVERY`] is POSTed a value, the others are GOT (a lookup each), so the gateway both
/// stores and searches. Stops at `limit` if the server is too slow to finish.
pub async fn warm(addr: SocketAddr, keys: u64, connections: usize, limit: Duration) -> Warmed {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, done, failed) = (next.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            'reconnect: while Instant::now() < deadline {
                let Some(mut sender) = connect(addr).await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keys {
                        return;
                    }
                    let path = format!("/key/aged-{i}");
                    let request = if i % PUT_EVERY == 0 {
                        (Method::POST, path, Bytes::from(format!(r#"{{"data":"dmFsdWU=","id":"{}"}}"#, i + 1)))
                    } else {
                        (Method::GET, path, Bytes::new())
                    };
                    match exchange(&mut sender, request).await {
                        Some(true) => done.fetch_add(1, Ordering::Relaxed),
                        Some(false) => failed.fetch_add(1, Ordering::Relaxed),
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue 'reconnect;
                        }
                    };
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Warmed {
        keys: done.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}
