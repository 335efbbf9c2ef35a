//! The listen scenarios. Fan-out: `streams` concurrent `GET /key/{h}/listen` streams, all on
//! one key, then one POST of a value to that key: how long until each stream (and the last)
//! has it, and the serving process's resident memory per open stream. Put-to-listen: one
//! listen stream, then POSTs one after the other on another connection: the time from a
//! POST's send to the listener's delivery of that value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tokio::sync::Semaphore;

use super::load::percentile_ms;
use super::raw_http::{Conn, ListenReader};
use super::sides::{rss_kib, CpuPerOp, CpuReading};

/// Connections being opened at once (a larger burst overflows the servers' accept backlog and
/// costs SYN retransmissions, a second each).
const OPENING_AT_ONCE: usize = 128;
/// The longest wait for every stream to open, or for every stream to deliver.
const PHASE_LIMIT: Duration = Duration::from_secs(60);
/// A value id no other request of the run uses.
const FANOUT_VALUE: u64 = 4_242_424_242;

pub struct Fanout {
    pub streams: usize,
    pub opened: usize,
    pub received: usize,
    /// Delivery times after the POST's send, sorted, seconds.
    pub deliveries: Vec<f64>,
    /// Server resident memory before the streams opened and with them all open, KiB.
    pub rss_before_kib: u64,
    pub rss_open_kib: u64,
    /// Share of the delivery window the generator's thread spent on the CPU (near 100 %: the
    /// generator, not the server, set the pace).
    pub generator_busy_pct: Option<f64>,
    /// The servers' CPU time from the POST's send to the last delivery, per stream delivered
    /// to (the POST and its put included: a few streams' worth).
    pub cpu: Option<CpuPerOp>,
    pub error: Option<String>,
}

impl Fanout {
    pub fn last_ms(&self) -> Option<f64> {
        self.deliveries.last().map(|s| s * 1000.0)
    }

    pub fn kib_per_stream(&self) -> Option<f64> {
        (self.opened > 0).then(|| (self.rss_open_kib as f64 - self.rss_before_kib as f64) / self.opened as f64)
    }

    pub fn to_json(&self) -> Json {
        json!({ "streams": self.streams, "opened": self.opened, "received": self.received,
                "p50_ms": percentile_ms(&self.deliveries, 50.0), "last_ms": self.last_ms(),
                "rss_before_kib": self.rss_before_kib, "rss_open_kib": self.rss_open_kib,
                "kib_per_stream": self.kib_per_stream(), "generator_busy_pct": self.generator_busy_pct,
                "cpu_per_stream": CpuPerOp::to_json(self.cpu), "error": self.error })
    }
}

/// CPU time of the calling thread (the generator's only thread), to the nanosecond: the
/// delivery window is milliseconds, finer than /proc's clock ticks.
fn thread_cpu_seconds() -> Option<f64> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct passed, nothing else.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    ok.then_some(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
}

/// Opens `streams` listens on one new key of the server at `addr` (served by the processes
/// `pids`, the gateway last), then POSTs one value there.
pub async fn fanout(addr: SocketAddr, pids: &[u32], streams: usize, run: u64) -> Fanout {
    let pid = pids.last().copied().unwrap_or(0);
    let key = format!("fanout-{run}");
    let rss_before_kib = rss_kib(pid).unwrap_or(0);
    let mut figures = Fanout {
        streams,
        opened: 0,
        received: 0,
        deliveries: Vec::new(),
        rss_before_kib,
        rss_open_kib: rss_before_kib,
        generator_busy_pct: None,
        cpu: None,
        error: None,
    };
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let (posted_tx, posted_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let (delivered_tx, mut delivered_rx) = tokio::sync::mpsc::unbounded_channel::<Result<f64, String>>();
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (opening, opened_tx, delivered_tx, key) =
            (opening.clone(), opened_tx.clone(), delivered_tx.clone(), key.clone());
        let mut posted_rx = posted_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let mut reader = match ListenReader::open(addr, &key).await {
                Ok(reader) => reader,
                Err(e) => {
                    let _ = opened_tx.send(Err(e.to_string()));
                    return;
                }
            };
            drop(permit);
            let _ = opened_tx.send(Ok(()));
            let outcome = reader.wait_for(FANOUT_VALUE).await;
            let at = Instant::now();
            // The POST's send time is set before the POST is written, so it is there by now.
            let sent = posted_rx.wait_for(Option::is_some).await.ok().and_then(|t| *t);
            let _ = delivered_tx.send(match (outcome, sent) {
                (Ok(()), Some(sent)) => Ok(at.duration_since(sent).as_secs_f64()),
                (Ok(()), None) => Err("a value arrived before the POST".into()),
                (Err(e), _) => Err(e.to_string()),
            });
            // Held open until the scenario ends, so that the memory reading counts every stream.
            std::future::pending::<()>().await;
        }));
    }
    drop((opened_tx, delivered_tx));
    let mut open_errors = Vec::new();
    let opening_deadline = Instant::now() + PHASE_LIMIT;
    while figures.opened + open_errors.len() < streams {
        match tokio::time::timeout_at(opening_deadline.into(), opened_rx.recv()).await {
            Ok(Some(Ok(()))) => figures.opened += 1,
            Ok(Some(Err(e))) => open_errors.push(e),
            Ok(None) | Err(_) => break,
        }
    }
    if figures.opened < streams {
        let first = open_errors.first().cloned().unwrap_or_else(|| "not open within 60 s".into());
        figures.error = Some(format!("{} of {streams} streams did not open ({first})", streams - figures.opened));
    }
    // A moment for the server to finish setting up what the last streams started (OpenDHT
    // registers each listen with its node asynchronously), then its memory with all open.
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.rss_open_kib = rss_kib(pid).unwrap_or(0);
    if figures.opened > 0 {
        let cpu_before = thread_cpu_seconds();
        let servers_before = CpuReading::now(pids);
        let body = format!(r#"{{"data":"ZmFub3V0","id":"{FANOUT_VALUE}","type":0}}"#);
        let post_path = format!("/key/{key}");
        let post = async move {
            let mut conn = Conn::connect(addr).await?;
            let _ = posted_tx.send(Some(Instant::now()));
            conn.send("POST", &post_path, body.as_bytes()).await?;
            conn.read_answer().await
        };
        let post = tokio::spawn(post);
        let mut errors = Vec::new();
        let delivery_deadline = Instant::now() + PHASE_LIMIT;
        let started = Instant::now();
        while figures.received + errors.len() < figures.opened {
            match tokio::time::timeout_at(delivery_deadline.into(), delivered_rx.recv()).await {
                Ok(Some(Ok(latency))) => {
                    figures.received += 1;
                    figures.deliveries.push(latency);
                }
                Ok(Some(Err(e))) => errors.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        let window = started.elapsed().as_secs_f64();
        let servers_after = CpuReading::now(pids);
        figures.cpu = servers_before
            .zip(servers_after)
            .and_then(|(before, after)| after.per_op_since(before, figures.received as u64));
        if let (Some(before), Some(after)) = (cpu_before, thread_cpu_seconds()) {
            figures.generator_busy_pct = Some(100.0 * (after - before) / window.max(1e-9));
        }
        figures.deliveries.sort_by(f64::total_cmp);
        if figures.received < figures.opened && figures.error.is_none() {
            let first = errors.first().cloned().unwrap_or_else(|| "not within 60 s".into());
            figures.error = Some(format!(
                "{} of {} streams got no value ({first})",
                figures.opened - figures.received,
                figures.opened
            ));
        }
        match tokio::time::timeout(Duration::from_secs(5), post).await {
            Ok(Ok(Ok((200, _)))) => {}
            Ok(Ok(Ok((status, _)))) if figures.error.is_none() => {
                figures.error = Some(format!("the POST answered {status}"));
            }
            _ => {}
        }
    }
    for task in tasks {
        task.abort();
    }
    figures
}

pub struct PutToListen {
    pub puts: usize,
    /// Latencies after the warm-up puts, sorted, seconds.
    pub latencies: Vec<f64>,
    pub error: Option<String>,
}

impl PutToListen {
    pub fn to_json(&self) -> Json {
        json!({ "puts": self.puts, "measured": self.latencies.len(),
                "p50_ms": percentile_ms(&self.latencies, 50.0), "p99_ms": percentile_ms(&self.latencies, 99.0),
                "max_ms": self.latencies.last().map(|s| s * 1000.0), "error": self.error })
    }
}

/// Puts not counted: the first ones pay for setting up the key's search on both servers.
pub const PUT_TO_LISTEN_WARMUP: usize = 10;

/// One listen stream on a new key, then `puts` POSTs of new values to it over another
/// keep-alive connection, one at a time: each one's time from send to delivery.
pub async fn put_to_listen(addr: SocketAddr, puts: usize, run: u64) -> PutToListen {
    let mut figures = PutToListen { puts, latencies: Vec::new(), error: None };
    let key = format!("latency-{run}");
    let outcome = async {
        let mut listener = ListenReader::open(addr, &key).await.map_err(|e| format!("opening the listen: {e}"))?;
        let mut poster = Conn::connect(addr).await.map_err(|e| format!("connecting: {e}"))?;
        for i in 0..PUT_TO_LISTEN_WARMUP + puts {
            let id = run * 1_000_000 + 1 + i as u64;
            let body = format!(r#"{{"data":"bGF0ZW5jeQ==","id":"{id}","type":0}}"#);
            let sent = Instant::now();
            poster.send("POST", &format!("/key/{key}"), body.as_bytes()).await.map_err(|e| format!("POST: {e}"))?;
            tokio::time::timeout(Duration::from_secs(10), listener.wait_for(id))
                .await
                .map_err(|_| format!("put {i}: no delivery within 10 s"))?
                .map_err(|e| format!("put {i}: the listen failed: {e}"))?;
            let latency = sent.elapsed().as_secs_f64();
            let (status, _) = tokio::time::timeout(Duration::from_secs(10), poster.read_answer())
                .await
                .map_err(|_| format!("put {i}: no answer to the POST within 10 s"))?
                .map_err(|e| format!("put {i}: POST: {e}"))?;
            if status != 200 {
                return Err(format!("put {i}: the POST answered {status}"));
            }
            if i >= PUT_TO_LISTEN_WARMUP {
                figures.latencies.push(latency);
            }
        }
        Ok::<(), String>(())
    };
    if let Err(e) = outcome.await {
        figures.error = Some(e);
    }
    figures.latencies.sort_by(f64::total_cmp);
    figures
}
