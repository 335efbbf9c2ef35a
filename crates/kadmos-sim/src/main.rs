//! `kadmos-sim`: runs a simulated Mainline or OpenDHT network and prints its report.
//!
//! Exit status: 0 when the run completed, 2 when an invariant broke (the seed and the
//! command line that replays the run are printed), 1 for bad options.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{Parser, ValueEnum};

use kadmos_proto::{mainline, opendht};
use kadmos_sim::{Dht, Partition, Report, RttModel, SimNode, SimOptions, Simulation, Violation, WorkloadKind};

/// The system allocator, counting the bytes currently allocated, so that the report can say
/// how much memory a simulated node costs.
struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WorkloadArg {
    FindNode,
    GetPeers,
    Announce,
    /// BEP 44 put of a fresh immutable item, then a get of it from another node.
    Put,
    /// BEP 44 items: put (immutable, mutable, mutable salted), kept alive, got
    /// --item-hold-secs later.
    Items,
    /// Advertisements (re-announced) and watches; lookups at random times over
    /// --advertise-hold-secs; --one-shot for the control run.
    Advertise,
    /// OpenDHT: find_node of a random target.
    Find,
    /// OpenDHT: get of a random key.
    Get,
    /// OpenDHT: put a value, then get it from another node.
    PutGet,
    /// OpenDHT: listen to a key, another node puts; time to the notification.
    Listen,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NetworkArg {
    Mainline,
    Opendht,
}

/// Simulates a BitTorrent Mainline DHT or an OpenDHT network of kadmos nodes on virtual time
/// and reports lookup latency, cost, accuracy and success, with the simulator's own speed and
/// memory.
#[derive(Parser, Debug)]
#[command(name = "kadmos-sim", version)]
struct Args {
    /// The network simulated.
    #[arg(long, value_enum, default_value_t = NetworkArg::Mainline)]
    network: NetworkArg,
    /// Nodes in the network.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Units of work (lookups; an announce unit is an announce then a get_peers; an items unit
    /// is one item, put then got --item-hold-secs later).
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Seed of the run: the same seed and options give the same report.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes everyone bootstraps from.
    #[arg(long, default_value_t = 4)]
    seeds: usize,
    /// Time between two joins while the network is built.
    #[arg(long, default_value_t = 10.0)]
    join_interval_ms: f64,
    /// Quiet time after the last join, before faults and workload (the refreshes a node
    /// runs after joining have long finished after 60 s).
    #[arg(long, default_value_t = 60.0)]
    settle_secs: f64,
    /// Time between two units of work.
    #[arg(long, default_value_t = 20.0)]
    lookup_interval_ms: f64,
    /// Workloads, taking turns (comma-separated or repeated). Default: find-node, get-peers,
    /// announce on Mainline; find, get, put-get, listen on OpenDHT.
    #[arg(long, value_enum, value_delimiter = ',')]
    workload: Vec<WorkloadArg>,
    /// Median link RTT of the lognormal model.
    #[arg(long, default_value_t = 80.0)]
    rtt_median_ms: f64,
    /// Spread (sigma of the underlying normal) of the lognormal model.
    #[arg(long, default_value_t = 0.5)]
    rtt_spread: f64,
    /// Every link has this RTT instead of a lognormal one.
    #[arg(long)]
    rtt_fixed_ms: Option<f64>,
    /// Probability that a datagram is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a datagram arrives twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a datagram is held back by up to one RTT (reordering).
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Share of nodes behind a NAT (only answers to their own datagrams reach them).
    #[arg(long, default_value_t = 0.0)]
    nat: f64,
    /// How long a NAT mapping stays open after the last datagram out.
    #[arg(long, default_value_t = 60.0)]
    nat_timeout_secs: f64,
    /// Share of nodes that die silently once the network is built.
    #[arg(long, default_value_t = 0.0)]
    dead: f64,
    /// Share of the nodes that leave (and as many that join) per virtual minute of workload.
    #[arg(long, default_value_t = 0.0)]
    churn_per_min: f64,
    /// Split the network: START:DURATION:SHARE (seconds after the workload starts, share of
    /// nodes on one side).
    #[arg(long, value_parser = parse_partition)]
    partition: Option<Partition>,
    /// Virtual seconds between two full invariant sweeps.
    #[arg(long, default_value_t = 10.0)]
    check_every_secs: f64,
    /// A lookup running longer than this (virtual seconds) breaks the liveness invariant.
    #[arg(long, default_value_t = 300.0)]
    max_lookup_secs: f64,
    /// Override the nodes' lookup parallelism (core default 4).
    #[arg(long)]
    alpha: Option<usize>,
    /// Override the nodes' lookup parallelism in the target's neighbourhood (core default 11;
    /// at most alpha turns the widening off, as lookups ran before it).
    #[arg(long)]
    final_alpha: Option<usize>,
    /// Override the nodes' lookup request timeout (core default 2000 ms).
    #[arg(long)]
    lookup_timeout_ms: Option<f64>,
    /// Override the nodes' lookup retries after a timeout (core default 0).
    #[arg(long)]
    retries: Option<u8>,
    /// Override how long, in percent of the stall timeout, a stalled node closer than the
    /// k-th answered one still holds up a lookup's end (core default 0).
    #[arg(long)]
    stalled_grace_percent: Option<u32>,
    /// Override the deviations above the mean round trip after which a request stalls
    /// (core default 1).
    #[arg(long)]
    stall_deviations: Option<u32>,
    /// Override how many times a silent request to a closely vouched candidate is sent again
    /// (core default 1; see `kad::lookup`).
    #[arg(long)]
    vouched_resends: Option<u8>,
    /// Override how many of its nearest contacts a node pings when they fall silent (core
    /// default 24; 0: none).
    #[arg(long)]
    neighbours_checked: Option<usize>,
    /// Items workload: virtual seconds from the end of an item's put to its get.
    #[arg(long, default_value_t = 7200.0)]
    item_hold_secs: f64,
    /// Items workload: putters do not keep their items alive (the control run).
    #[arg(long)]
    no_keep_alive: bool,
    /// Advertise workload: virtual seconds over which each advertisement's lookups are spread.
    #[arg(long, default_value_t = 7200.0)]
    advertise_hold_secs: f64,
    /// Advertise workload: lookups at random times per advertisement.
    #[arg(long, default_value_t = 5)]
    advertise_lookups: usize,
    /// Advertise workload: one announce per infohash, no renewal, no watch (the control run).
    #[arg(long)]
    one_shot: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_partition(s: &str) -> Result<Partition, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [start, duration, share] = parts.as_slice() else {
        return Err("expected START:DURATION:SHARE, e.g. 30:60:0.5".into());
    };
    let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{v:?}: {e}"));
    Ok(Partition { start_secs: num(start)?, duration_secs: num(duration)?, share: num(share)? })
}

impl Args {
    fn options(&self) -> SimOptions {
        let dht = match self.network {
            NetworkArg::Mainline => Dht::Mainline,
            NetworkArg::Opendht => Dht::OpenDht,
        };
        let mut o = SimOptions::for_dht(dht, self.nodes, self.lookups, self.seed);
        o.seeds = self.seeds;
        o.join_interval_ms = self.join_interval_ms;
        o.settle_secs = self.settle_secs;
        o.lookup_interval_ms = self.lookup_interval_ms;
        if !self.workload.is_empty() {
            o.workloads = self
                .workload
                .iter()
                .map(|w| match w {
                    WorkloadArg::FindNode => WorkloadKind::FindNode,
                    WorkloadArg::GetPeers => WorkloadKind::GetPeers,
                    WorkloadArg::Announce => WorkloadKind::Announce,
                    WorkloadArg::Put => WorkloadKind::Put,
                    WorkloadArg::Items => WorkloadKind::Items,
                    WorkloadArg::Advertise => WorkloadKind::Advertise,
                    WorkloadArg::Find => WorkloadKind::Find,
                    WorkloadArg::Get => WorkloadKind::Get,
                    WorkloadArg::PutGet => WorkloadKind::PutGet,
                    WorkloadArg::Listen => WorkloadKind::Listen,
                })
                .collect();
        }
        let n = &mut o.network;
        n.rtt = match self.rtt_fixed_ms {
            Some(ms) => RttModel::Fixed { ms },
            None => RttModel::Lognormal { median_ms: self.rtt_median_ms, spread: self.rtt_spread },
        };
        n.loss = self.loss;
        n.duplicate = self.duplicate;
        n.reorder = self.reorder;
        n.nat = self.nat;
        n.nat_timeout_secs = self.nat_timeout_secs;
        n.dead = self.dead;
        n.churn_per_min = self.churn_per_min;
        n.partition = self.partition;
        o.check_every_secs = self.check_every_secs;
        o.max_lookup_secs = self.max_lookup_secs;
        o.lookup_alpha = self.alpha;
        o.lookup_final_alpha = self.final_alpha;
        o.lookup_timeout_ms = self.lookup_timeout_ms;
        o.lookup_retries = self.retries;
        o.stalled_grace_percent = self.stalled_grace_percent;
        o.vouched_resends = self.vouched_resends;
        o.neighbours_checked = self.neighbours_checked;
        o.stall_deviations = self.stall_deviations;
        o.items.hold_secs = self.item_hold_secs;
        o.items.keep_alive = !self.no_keep_alive;
        o.advertise.hold_secs = self.advertise_hold_secs;
        o.advertise.lookups_per_advertisement = self.advertise_lookups;
        o.advertise.quests = !self.one_shot;
        o
    }
}

/// Sets up and runs a simulation of `N` nodes.
fn simulate<N: SimNode>(options: SimOptions) -> Result<Result<Report, Violation>, String> {
    Ok(Simulation::<N>::of(options)?.with_memory_probe(allocated).run())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = args.options();
    let outcome = match options.dht {
        Dht::Mainline => simulate::<mainline::Node>(options),
        Dht::OpenDht => simulate::<opendht::Node>(options),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("kadmos-sim: {e}");
            return ExitCode::from(1);
        }
    };
    match outcome {
        Ok(report) => {
            let text = if args.json {
                serde_json::to_string_pretty(&report).expect("reports serialize")
            } else {
                report.to_string()
            };
            // A closed pipe (`| head`) is not an error of the simulation.
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(violation) => {
            if args.json {
                let v = serde_json::json!({
                    "violation": violation.what,
                    "seed": violation.seed,
                    "at_us": violation.at_us,
                    "node": violation.node,
                    "replay": violation.replay,
                });
                let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v).expect("json"));
            }
            eprintln!("kadmos-sim: {violation}");
            ExitCode::from(2)
        }
    }
}
