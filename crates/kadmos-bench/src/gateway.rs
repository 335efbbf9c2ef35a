//! `kadmos-bench gateway`: the kadmos HTTP gateway against OpenDHT's own proxy server
//! (`dhtnode --proxyserver`, Debian's 2.4.12 unpacked by `interop/install.sh`), under the same
//! load generator in the same run.
//!
//! Two phases. Fresh: every scenario starts on fresh servers (OpenDHT's proxy slows down as it
//! accumulates searches). After many keys: fresh servers are first walked through
//! `--aged-keys` distinct keys (one in 8 POSTed, the others GOT), then run every scenario in turn, which
//! shows whether a gateway degrades with the state it keeps.
//!
//! Load scenarios keep `--connections` HTTP/1.1 keep-alive connections busy, one request in
//! flight each, for `--duration` seconds after a one-second warm-up, reading every answer to
//! its end: `GET /node/info` (HTTP stack only), `GET /key/{h}` of one key holding 10 values
//! (hot key), `GET` over 64 keys holding one value each, `GET` of a new empty key each time
//! (every GET a lookup), `POST /key/{h}` of a new value id each time (over 256 keys). Listen
//! scenarios: put-to-listen latency and fan-out to `--streams` streams on one key (see
//! [`listen`]). Every figure is printed with the load average when it was taken, never
//! asserted.

mod listen;
mod load;
mod raw_http;
mod sides;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value as Json};

use crate::procs;
use listen::{Fanout, PutToListen};
use load::{Figures, Scenario, Warmed};
use sides::{load_average, Side};

#[derive(clap::Args, Clone)]
pub struct GatewayArgs {
    /// Seconds measured per load scenario and server (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    duration: f64,
    /// Connections kept busy by the generator.
    #[arg(long, default_value_t = 64, value_name = "N")]
    connections: usize,
    /// Listen streams of the fan-out scenario (all on one key).
    #[arg(long, default_value_t = 5000, value_name = "N")]
    streams: usize,
    /// POSTs measured by the put-to-listen scenario (after 10 not counted).
    #[arg(long, default_value_t = 200, value_name = "N")]
    puts: usize,
    /// Distinct keys walked through each server before the second phase (one in 8 put, the
    /// others got); 0 skips it.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    aged_keys: u64,
    /// Longest the walk through those keys may take per server (a slow server stops short,
    /// and the figures say how far it got).
    #[arg(long, default_value_t = 600.0, value_name = "SECS")]
    aged_limit: f64,
    /// Runs only the scenarios whose name contains this (repeatable), e.g. `fan-out`.
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
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
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

/// A scenario of either kind.
#[derive(Clone, Copy)]
enum Item {
    Load(Scenario),
    PutToListen,
    Fanout,
}

impl Item {
    /// In the order run on an aged server: the POST scenario, which leaves tens of thousands
    /// of values at one key, comes last.
    fn all() -> Vec<Item> {
        let load = |s| Item::Load(s);
        vec![
            load(Scenario::NodeInfo),
            load(Scenario::HotKeyGet),
            load(Scenario::SpreadGet),
            load(Scenario::GetNewKey),
            Item::PutToListen,
            Item::Fanout,
            load(Scenario::PostNewId),
        ]
    }

    fn name(self) -> &'static str {
        match self {
            Item::Load(s) => s.name(),
            Item::PutToListen => "put-to-listen",
            Item::Fanout => "listen fan-out",
        }
    }
}

enum Outcome {
    Load(Figures),
    PutToListen(PutToListen),
    Fanout(Fanout),
    Failed(String),
}

impl Outcome {
    /// The servers' CPU time per operation, for the scenarios that measure it.
    fn cpu(&self) -> Option<sides::CpuPerOp> {
        match self {
            Outcome::Load(f) => f.cpu,
            Outcome::Fanout(f) => f.cpu,
            Outcome::PutToListen(_) | Outcome::Failed(_) => None,
        }
    }
}

/// One scenario's outcome on one server, with the load average at its end.
struct Point {
    outcome: Outcome,
    load_avg: f64,
    /// Set when a server process died during the scenario.
    died: Option<String>,
}

impl Point {
    fn to_json(&self) -> Json {
        let mut figures = match &self.outcome {
            Outcome::Load(f) => f.to_json(),
            Outcome::PutToListen(f) => f.to_json(),
            Outcome::Fanout(f) => f.to_json(),
            Outcome::Failed(e) => json!({ "error": e }),
        };
        figures["load_avg"] = json!(self.load_avg);
        figures["server_died"] = json!(self.died);
        figures
    }
}

struct Row {
    item: Item,
    kadmos: Point,
    opendht: Option<Point>,
}

struct Phase {
    name: &'static str,
    /// How each server's walk through many keys went (the second phase only).
    warmed: Vec<(&'static str, Result<Warmed, String>)>,
    rows: Vec<Row>,
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Kadmos,
    OpenDht,
}

struct Bench<'a> {
    args: &'a GatewayArgs,
    runtime: tokio::runtime::Runtime,
    kadmos: PathBuf,
    dhtnode: PathBuf,
    server_core: usize,
    tmp: procs::TempDir,
    /// Counts started sides: keeps keys, ids and state directories of runs apart.
    runs: u64,
}

impl Bench<'_> {
    fn start(&mut self, server: Server) -> Result<Side, String> {
        self.runs += 1;
        let side = match server {
            Server::Kadmos => {
                let state = self.tmp.path().join(format!("run{}/state.json", self.runs));
                sides::kadmos_side(&self.kadmos, self.server_core, &state)?
            }
            Server::OpenDht => sides::opendht_side(&self.dhtnode, self.server_core)?,
        };
        if let Err(e) = self.runtime.block_on(sides::prepare(side.addr)) {
            return Err(format!("{e}\n{}", side.output()));
        }
        Ok(side)
    }

    fn measure(&mut self, side: &mut Side, item: Item) -> Point {
        let (addr, pids, run, args) = (side.addr, side.pids(), self.runs, self.args);
        let duration = Duration::from_secs_f64(args.duration);
        let outcome = self.runtime.block_on(async {
            match item {
                Item::Load(s) => Outcome::Load(load::drive(addr, &pids, s, args.connections, duration, run).await),
                Item::PutToListen => Outcome::PutToListen(listen::put_to_listen(addr, args.puts, run).await),
                Item::Fanout => Outcome::Fanout(listen::fanout(addr, &pids, args.streams, run).await),
            }
        });
        Point { outcome, load_avg: load_average(), died: side.dead() }
    }

    /// Every scenario on fresh servers.
    fn fresh(&mut self, server: Server, item: Item) -> Point {
        match self.start(server) {
            Ok(mut side) => self.measure(&mut side, item),
            Err(e) => Point { outcome: Outcome::Failed(e), load_avg: load_average(), died: None },
        }
    }

    /// One server walked through many keys, then every scenario in turn.
    fn aged(&mut self, server: Server, items: &[Item]) -> (Result<Warmed, String>, Vec<Point>) {
        let failed = |e: &str| Point { outcome: Outcome::Failed(e.to_string()), load_avg: load_average(), died: None };
        let mut side = match self.start(server) {
            Ok(side) => side,
            Err(e) => return (Err(e.clone()), items.iter().map(|_| failed(&e)).collect()),
        };
        let limit = Duration::from_secs_f64(self.args.aged_limit);
        let warmed = self.runtime.block_on(load::warm(side.addr, self.args.aged_keys, self.args.connections, limit));
        let mut points = Vec::new();
        for &item in items {
            if let Some(died) = side.dead() {
                points.push(failed(&format!("the server died earlier: {died}")));
                continue;
            }
            points.push(self.measure(&mut side, item));
        }
        (Ok(warmed), points)
    }
}

/// Raises this process's open-file limit (inherited by the servers it starts) to at least
/// `wanted`, within the hard limit.
fn raise_open_files(wanted: u64) -> Result<(), String> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if limit.rlim_cur >= wanted {
            return Ok(());
        }
        if limit.rlim_max < wanted {
            return Err(format!(
                "{wanted} open files are needed, the hard limit is {} (raise it, or lower --streams)",
                limit.rlim_max
            ));
        }
        limit.rlim_cur = wanted;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
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
    // Each stream is a socket at each end, plus the generator's connections and some slack.
    raise_open_files(2 * (args.streams + args.connections) as u64 + 1024)?;
    let gen_core = args.gen_core % procs::online_cpus().max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(move || {
            let _ = procs::pin_current_thread(gen_core);
        })
        .build()
        .map_err(|e| e.to_string())?;
    let _ = procs::pin_current_thread(gen_core);
    let mut bench = Bench {
        args,
        runtime,
        kadmos,
        dhtnode,
        server_core: args.server_core % procs::online_cpus().max(1),
        tmp: procs::TempDir::new("kadmos-bench-gateway").map_err(|e| format!("temp dir: {e}"))?,
        runs: 0,
    };
    let items: Vec<Item> = Item::all()
        .into_iter()
        .filter(|item| args.only.is_empty() || args.only.iter().any(|o| item.name().contains(o.as_str())))
        .collect();
    if items.is_empty() {
        return Err(format!("no scenario's name contains {:?}", args.only));
    }
    let mut phases = Vec::new();

    let mut rows = Vec::new();
    for &item in &items {
        let kadmos = bench.fresh(Server::Kadmos, item);
        let opendht = with_opendht.then(|| bench.fresh(Server::OpenDht, item));
        rows.push(Row { item, kadmos, opendht });
    }
    phases.push(Phase { name: "fresh servers", warmed: Vec::new(), rows });

    if args.aged_keys > 0 {
        let (kadmos_warmed, kadmos_points) = bench.aged(Server::Kadmos, &items);
        let mut warmed = vec![("kadmos", kadmos_warmed)];
        let mut opendht_points: Vec<Option<Point>> = items.iter().map(|_| None).collect();
        if with_opendht {
            let (opendht_warmed, points) = bench.aged(Server::OpenDht, &items);
            warmed.push(("opendht", opendht_warmed));
            opendht_points = points.into_iter().map(Some).collect();
        }
        let rows = items
            .iter()
            .zip(kadmos_points.into_iter().zip(opendht_points))
            .map(|(&item, (kadmos, opendht))| Row { item, kadmos, opendht })
            .collect();
        phases.push(Phase { name: "after many keys", warmed, rows });
    }

    if args.json {
        print_json(args, &phases);
    } else {
        for phase in &phases {
            print_phase(args, phase);
        }
    }
    Ok(())
}

fn print_json(args: &GatewayArgs, phases: &[Phase]) {
    let phases: Vec<Json> = phases
        .iter()
        .map(|phase| {
            let warmed: serde_json::Map<String, Json> = phase
                .warmed
                .iter()
                .map(|(server, w)| {
                    (server.to_string(), w.as_ref().map_or_else(|e| json!({ "error": e }), Warmed::to_json))
                })
                .collect();
            let scenarios: Vec<Json> = phase
                .rows
                .iter()
                .map(|r| {
                    json!({ "scenario": r.item.name(), "kadmos": r.kadmos.to_json(),
                            "opendht": r.opendht.as_ref().map(Point::to_json) })
                })
                .collect();
            json!({ "phase": phase.name, "warmed": warmed, "scenarios": scenarios })
        })
        .collect();
    println!(
        "{}",
        json!({ "connections": args.connections, "duration_s": args.duration, "streams": args.streams,
                "puts": args.puts, "aged_keys": args.aged_keys, "phases": phases })
    );
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// One server's cells of a row: the figures, or why there are none.
fn cells(point: Option<&Point>) -> String {
    let Some(point) = point else { return format!("{:>48}", "not run") };
    let died = if point.died.is_some() { " (died)" } else { "" };
    let body = match &point.outcome {
        Outcome::Load(f) => format!(
            "{:>9.0} {:>8} {:>8} {:>6}",
            f.rate(),
            ms(f.percentile_ms(50.0)),
            ms(f.percentile_ms(99.0)),
            f.failed
        ),
        Outcome::PutToListen(f) => format!(
            "{:>9} {:>8} {:>8} {:>6}",
            format!("n={}", f.latencies.len()),
            ms(load::percentile_ms(&f.latencies, 50.0)),
            ms(load::percentile_ms(&f.latencies, 99.0)),
            if f.error.is_some() { "error" } else { "0" }
        ),
        Outcome::Fanout(f) => format!(
            "{:>9} {:>8} {:>8} {:>6}",
            format!("{}/{}", f.received, f.streams),
            ms(load::percentile_ms(&f.deliveries, 50.0)),
            ms(f.last_ms()),
            f.kib_per_stream().map_or("-".into(), |k| format!("{k:.1}K"))
        ),
        Outcome::Failed(_) => format!("{:>33}", "failed"),
    };
    let cpu = point.outcome.cpu();
    format!("{body} {:>7} {:>5.1}{died}", cpu.map_or("-".into(), |c| format!("{:.1}", c.gateway_us)), point.load_avg)
}

fn print_phase(args: &GatewayArgs, phase: &Phase) {
    println!("== {} ==", phase.name);
    for (server, warmed) in &phase.warmed {
        match warmed {
            Ok(w) => println!(
                "{server}: walked through {} distinct keys in {:.0} s ({} failed requests){}",
                w.keys,
                w.seconds,
                w.failed,
                if w.keys + w.failed < args.aged_keys { " - stopped at --aged-limit" } else { "" }
            ),
            Err(e) => println!("{server}: could not start: {e}"),
        }
    }
    println!(
        "{:<24} | {:>9} {:>8} {:>8} {:>6} {:>7} {:>5} | {:>9} {:>8} {:>8} {:>6} {:>7} {:>5}",
        "scenario",
        "kadmos/s",
        "p50 ms",
        "p99 ms",
        "fail",
        "cpu us",
        "load",
        "OpenDHT/s",
        "p50 ms",
        "p99 ms",
        "fail",
        "cpu us",
        "load"
    );
    for row in &phase.rows {
        println!("{:<24} | {} | {}", row.item.name(), cells(Some(&row.kadmos)), cells(row.opendht.as_ref()));
    }
    println!(
        "({} keep-alive connections, {} s per load point; put-to-listen: n puts measured, p50/p99 from POST \
         send to delivery; fan-out: streams served/opened, p50 and last delivery, server RSS per stream; cpu us: the gateway \
         process's CPU time per request served or stream delivered to)",
        args.connections, args.duration
    );
    for row in &phase.rows {
        for (server, point) in [("kadmos", Some(&row.kadmos)), ("OpenDHT", row.opendht.as_ref())] {
            let Some(point) = point else { continue };
            let error = match &point.outcome {
                Outcome::Failed(e) => Some(e.as_str()),
                Outcome::PutToListen(f) => f.error.as_deref(),
                Outcome::Fanout(f) => f.error.as_deref(),
                Outcome::Load(_) => None,
            };
            if let Some(e) = error {
                println!("  {server}, {}: {e}", row.item.name());
            }
            if let Some(died) = &point.died {
                println!("  {server}, {}: a server process died: {died}", row.item.name());
            }
            if let Some(c) = point.outcome.cpu() {
                println!(
                    "  {server}, {}: CPU {:.1} us per operation in the gateway, {:.1} us with the storing node",
                    row.item.name(),
                    c.gateway_us,
                    c.side_us
                );
            }
            if let Outcome::Fanout(f) = &point.outcome {
                println!(
                    "  {server}, fan-out: RSS {} -> {} KiB with {} streams open; generator busy {}",
                    f.rss_before_kib,
                    f.rss_open_kib,
                    f.opened,
                    f.generator_busy_pct.map_or("-".into(), |p| format!("{p:.0} %"))
                );
            }
        }
    }
}
