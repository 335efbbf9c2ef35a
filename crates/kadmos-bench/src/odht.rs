//! `kadmos-bench opendht`: put, get and listen-notify latency and operations per second between
//! kadmos OpenDHT nodes on loopback, next to the same operations between real OpenDHT 4.4.2
//! nodes measured in the same run.
//!
//! Both sides run 4 nodes on 127.0.0.1 in one process each (kadmos: [`Testnet`] on a tokio
//! runtime inside this process; OpenDHT: `opendht_bench.py`, next to this crate's manifest, run
//! with `interop/.venv/bin/python`). Every node bootstraps from the first, and each does one
//! unmeasured get first. Then, one operation at a time, never overlapping:
//!
//! * put: node B puts `--ops` values under distinct keys (until the put reports completion);
//! * get: node C gets each of those keys (until the get completes), checking the value is there;
//! * listen: node A listens on one key; node B puts `--ops` values under it; the latency runs from
//!   the start of each put to A's listen event for that value (10 s at most, else a failure).
//!
//! Latencies are p50/p99 over the operations; ops/s is operations over the phase's wall time
//! (sequential, so about 1/mean latency). The Python script reports raw latencies; both sides'
//! percentiles are computed here the same way. Figures are printed, never asserted. The script
//! is killed on every exit path. Without `interop/.venv` the OpenDHT side is skipped (install
//! it with `bash interop/install.sh`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kadmos::opendht::{PutOptions, Testnet};
use kadmos::Id;
use serde_json::{json, Value as Json};

/// How long one listen-notify waits for its event before counting a failure.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one put or get may take before counting a failure.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// One operation's figures on one implementation.
#[derive(Default)]
pub struct OpStats {
    /// Latencies of the successful operations, sorted, in seconds.
    latencies: Vec<f64>,
    wall_s: f64,
    failures: u64,
}

impl OpStats {
    fn new(mut latencies: Vec<f64>, wall_s: f64, failures: u64) -> OpStats {
        latencies.retain(|l| l.is_finite());
        latencies.sort_by(f64::total_cmp);
        OpStats { latencies, wall_s, failures }
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Some(1000.0 * self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    /// Operations (successful or not) per second of the phase's wall time.
    fn ops_per_s(&self) -> Option<f64> {
        let n = self.latencies.len() as u64 + self.failures;
        (self.wall_s > 0.0).then(|| n as f64 / self.wall_s)
    }

    fn to_json(&self) -> Json {
        json!({
            "ok": self.latencies.len(),
            "failures": self.failures,
            "p50_ms": self.percentile_ms(50.0),
            "p99_ms": self.percentile_ms(99.0),
            "ops_per_s": self.ops_per_s(),
            "wall_s": self.wall_s,
        })
    }
}

/// One implementation's three measurements.
pub struct Side {
    put: OpStats,
    get: OpStats,
    listen: OpStats,
}

impl Side {
    fn ops(&self) -> [(&'static str, &OpStats); 3] {
        [("put", &self.put), ("get", &self.get), ("listen-notify", &self.listen)]
    }

    fn to_json(&self) -> Json {
        json!({ "put": self.put.to_json(), "get": self.get.to_json(), "listen_notify": self.listen.to_json() })
    }
}

pub fn run(ops: usize, json_out: bool) -> Result<(), String> {
    if ops == 0 {
        return Err("--ops must be > 0".into());
    }
    if !json_out {
        eprintln!("kadmos-bench: {ops} sequential operations of each kind, 4 nodes on 127.0.0.1 per implementation");
        eprintln!("kadmos-bench: kadmos side…");
    }
    let kadmos = kadmos_side(ops)?;

    let root = workspace_root();
    let python = root.join("interop/.venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("opendht_bench.py");
    let (opendht, skipped) = if !python.is_file() {
        (None, Some(format!("no {} (install it: bash interop/install.sh)", python.display())))
    } else if !script.is_file() {
        (None, Some(format!("no {}", script.display())))
    } else {
        if !json_out {
            eprintln!("kadmos-bench: OpenDHT side ({} {})…", python.display(), script.display());
        }
        match opendht_side(&python, &script, ops) {
            Ok(side) => (Some(side), None),
            Err(e) => return Err(format!("OpenDHT side: {e}")),
        }
    };

    if json_out {
        let v = json!({
            "config": { "ops": ops, "nodes": 4, "bind": "127.0.0.1" },
            "kadmos": kadmos.to_json(),
            "opendht": opendht.as_ref().map(Side::to_json),
            "opendht_skipped": skipped,
        });
        println!("{v}");
    } else {
        print_table(&kadmos, opendht.as_ref());
        if let Some(why) = skipped {
            println!("OpenDHT side skipped: {why}");
        }
    }
    Ok(())
}

/// The workspace root: two levels above this crate's manifest, else the current directory.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest.parent().and_then(Path::parent) {
        Some(root) if root.join("interop").is_dir() => root.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn kadmos_side(ops: usize) -> Result<Side, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let net = tokio::time::timeout(Duration::from_secs(60), Testnet::new(4))
            .await
            .map_err(|_| "kadmos testnet took over 60 s".to_string())?
            .map_err(|e| format!("kadmos testnet: {e}"))?;
        let side = kadmos_measure(&net, ops).await;
        net.shutdown().await;
        side
    })
}

async fn kadmos_measure(net: &Testnet, ops: usize) -> Result<Side, String> {
    let (a, b, c) = (&net.nodes[0], &net.nodes[1], &net.nodes[2]);
    let tag = format!(
        "kadmos-bench {} {}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    // One unmeasured get per node, as on the OpenDHT side.
    for (i, node) in net.nodes.iter().enumerate() {
        if let Ok(stream) = node.get(Id::of_str(&format!("{tag} warm-up {i}"))).await {
            let _ = tokio::time::timeout(OP_TIMEOUT, stream.collect_values()).await;
        }
    }

    let (mut lat, mut failures) = (Vec::with_capacity(ops), 0);
    let t0 = Instant::now();
    for i in 0..ops {
        let key = Id::of_str(&format!("{tag} put {i}"));
        let s = Instant::now();
        let res = tokio::time::timeout(OP_TIMEOUT, b.put(key, format!("value {i}"), PutOptions::default())).await;
        match res {
            Ok(Ok(_)) => lat.push(s.elapsed().as_secs_f64()),
            _ => failures += 1,
        }
    }
    let put = OpStats::new(lat, t0.elapsed().as_secs_f64(), failures);

    let (mut lat, mut failures) = (Vec::with_capacity(ops), 0);
    let t0 = Instant::now();
    for i in 0..ops {
        let key = Id::of_str(&format!("{tag} put {i}"));
        let want = format!("value {i}").into_bytes();
        let s = Instant::now();
        let values =
            tokio::time::timeout(OP_TIMEOUT, async { Some(c.get(key).await.ok()?.collect_values().await) }).await;
        let elapsed = s.elapsed().as_secs_f64();
        match values {
            Ok(Some(values)) if values.iter().any(|v| v.data == want) => lat.push(elapsed),
            _ => failures += 1,
        }
    }
    let get = OpStats::new(lat, t0.elapsed().as_secs_f64(), failures);

    let lkey = Id::of_str(&format!("{tag} listen"));
    let mut changes = a.listen(lkey).await.map_err(|e| format!("kadmos listen: {e}"))?;
    // Let the listen reach the storing nodes, so that values come as pushes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut lat, mut failures) = (Vec::with_capacity(ops), 0);
    let t0 = Instant::now();
    for i in 0..ops {
        let want = format!("notify {i}").into_bytes();
        let s = Instant::now();
        let putter = b.clone();
        let data = want.clone();
        let put = tokio::spawn(async move {
            tokio::time::timeout(OP_TIMEOUT, putter.put(lkey, data, PutOptions::default())).await
        });
        let heard = tokio::time::timeout(LISTEN_TIMEOUT, async {
            while let Some(ev) = changes.next().await {
                if !ev.expired && ev.value.data == want {
                    return Some(s.elapsed().as_secs_f64());
                }
            }
            None
        })
        .await;
        match heard {
            Ok(Some(l)) => lat.push(l),
            _ => failures += 1,
        }
        // The next put starts only once this one is done, as on the OpenDHT side (blocking put).
        let _ = put.await;
    }
    let listen = OpStats::new(lat, t0.elapsed().as_secs_f64(), failures);
    drop(changes);
    Ok(Side { put, get, listen })
}

/// The script's process, killed (and reaped) however this scope is left.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn opendht_side(python: &Path, script: &Path, ops: usize) -> Result<Side, String> {
    let child = Command::new(python)
        .arg(script)
        .arg("--ops")
        .arg(ops.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", python.display()))?;
    let mut script_proc = Script(child);
    let stdout = script_proc.0.stdout.take().ok_or("no stdout")?;
    let mut stderr = script_proc.0.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let res = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(res);
    });
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = etx.send(text);
    });
    // Generous: a few seconds of set-up plus each operation's own timeouts would be far more.
    let limit = Duration::from_secs(60) + Duration::from_millis(200) * (3 * ops as u32);
    let line = match rx.recv_timeout(limit) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(format!("reading its output: {e}")),
        Err(_) => {
            drop(script_proc);
            let err = erx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
            return Err(format!("no result within {limit:?}; stderr:\n{err}"));
        }
    };
    if line.trim().is_empty() {
        drop(script_proc);
        let err = erx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
        return Err(format!("no output; stderr:\n{err}"));
    }
    drop(script_proc);
    let v: Json = serde_json::from_str(&line).map_err(|e| format!("bad JSON from the script: {e}"))?;
    let op = |name: &str| -> Result<OpStats, String> {
        let o = &v[name];
        let lat = o["latencies_s"]
            .as_array()
            .ok_or_else(|| format!("no {name}.latencies_s"))?
            .iter()
            .filter_map(Json::as_f64)
            .collect();
        let wall = o["wall_s"].as_f64().ok_or_else(|| format!("no {name}.wall_s"))?;
        Ok(OpStats::new(lat, wall, o["failures"].as_u64().unwrap_or(0)))
    };
    Ok(Side { put: op("put")?, get: op("get")?, listen: op("listen")? })
}

fn print_table(kadmos: &Side, opendht: Option<&Side>) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let rate = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!(
        "{:<14} | {:>10} {:>10} {:>8} {:>5} | {:>11} {:>10} {:>8} {:>5}",
        "operation", "kadmos p50", "p99 ms", "ops/s", "fail", "OpenDHT p50", "p99 ms", "ops/s", "fail"
    );
    let others = opendht.map(Side::ops);
    for (i, (name, k)) in kadmos.ops().into_iter().enumerate() {
        let o = others.as_ref().map(|s| s[i].1);
        println!(
            "{:<14} | {:>10} {:>10} {:>8} {:>5} | {:>11} {:>10} {:>8} {:>5}",
            name,
            ms(k.percentile_ms(50.0)),
            ms(k.percentile_ms(99.0)),
            rate(k.ops_per_s()),
            k.failures,
            ms(o.and_then(|o| o.percentile_ms(50.0))),
            ms(o.and_then(|o| o.percentile_ms(99.0))),
            rate(o.and_then(OpStats::ops_per_s)),
            o.map_or("-".to_string(), |o| o.failures.to_string()),
        );
    }
    println!("(latencies in ms; one operation at a time, so ops/s is about 1000 / mean latency)");
}
