//! Everything that decides a run, in one struct: the seed, the size of the network, the
//! workload and every fault probability (the model is TigerBeetle's VOPR options). The same
//! options give the same report, and every report prints them, with the command line that
//! replays the run.

use std::time::Duration;

use kadmos_proto::kad::{LookupConfig, RoutingTableConfig};
use serde::Serialize;

use crate::advertise_workload::AdvertiseOptions;
use crate::sim_node::Dht;

/// How round-trip times of links are drawn. Each pair of nodes gets one RTT for the whole
/// run (derived from the seed and the pair), so a link is consistently fast or slow.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RttModel {
    /// Lognormal: `median_ms * exp(spread * z)` with `z` standard normal. A spread of 0.5
    /// puts 80% of links between 0.53 and 1.9 times the median.
    Lognormal { median_ms: f64, spread: f64 },
    /// Every link has the same RTT.
    Fixed { ms: f64 },
}

impl RttModel {
    /// The median RTT in milliseconds, the unit lookups are also measured in.
    pub fn median_ms(&self) -> f64 {
        match *self {
            RttModel::Lognormal { median_ms, .. } => median_ms,
            RttModel::Fixed { ms } => ms,
        }
    }
}

/// A network split in two for a while: datagrams between the sides are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Partition {
    /// Start, in seconds after the workload begins.
    pub start_secs: f64,
    /// How long the split lasts.
    pub duration_secs: f64,
    /// Share of the nodes on the smaller side (0..=0.5 is the usual range).
    pub share: f64,
}

/// The network model and its faults. Probabilities are per datagram unless said otherwise.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkOptions {
    /// Round-trip times of links. Default lognormal, median 80 ms, spread 0.5.
    pub rtt: RttModel,
    /// Probability that a datagram is lost. Default 0.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (the copy up to half an RTT later). Default 0.
    pub duplicate: f64,
    /// Probability that a datagram is held back by up to one extra RTT, so that later ones
    /// overtake it. Default 0.
    pub reorder: f64,
    /// Share of nodes behind a NAT: they can send and receive answers, but a datagram from
    /// an address they have not sent to within `nat_timeout_secs` is dropped. Default 0.
    pub nat: f64,
    /// How long a NAT keeps a mapping open after the inside node last sent to an address.
    /// Default 60 s.
    pub nat_timeout_secs: f64,
    /// Share of nodes that die silently once the network is built (they stop answering and
    /// sending; routing tables keep their entries). Default 0.
    pub dead: f64,
    /// Churn during the workload: this share of the initial node count leaves (dies silently)
    /// per minute of virtual time, and as many new nodes join. Default 0. Leavers are drawn
    /// uniformly from the live nodes, newcomers included, so of the nodes present at some
    /// moment a share `1 - exp(-60 × churn_per_min)` is gone an hour later: 0.005 replaces 26%
    /// of the network per hour in that sense, 0.006 replaces 30% (and 0.36 N leave in the hour).
    pub churn_per_min: f64,
    /// An optional split of the network during the workload. Default none.
    pub partition: Option<Partition>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            rtt: RttModel::Lognormal { median_ms: 80.0, spread: 0.5 },
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            nat: 0.0,
            nat_timeout_secs: 60.0,
            dead: 0.0,
            churn_per_min: 0.0,
            partition: None,
        }
    }
}

/// The built-in workloads (see [`crate::workload`]); later issues add more behind the same
/// [`crate::workload::Workload`] trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// `find_node` of a random target from a random live node.
    FindNode,
    /// `get_peers` of a random infohash from a random live node.
    GetPeers,
    /// `announce_peer` of a random infohash from a random live node, then `get_peers` of
    /// that infohash from another random live node, which must find the announcer.
    Announce,
    /// BEP 44 put of a fresh immutable item from a random live node, then a get of it from
    /// another random live node, which must find it (the store round's cost, like announce's).
    Put,
    /// BEP 44 items: a random live node puts an item (immutable, mutable, or mutable and
    /// salted, in turn) and keeps it alive; `items.hold_secs` later another random live node
    /// gets it and must find it (the newest version of a mutable one). See [`ItemOptions`].
    Items,
    /// Advertisements and watches through churn, looked up at random times (see
    /// [`crate::advertise_workload`] and [`AdvertiseOptions`]).
    Advertise,
    /// OpenDHT: `find_node` of a random target from a random live node.
    Find,
    /// OpenDHT: `get` of a random key (nobody put it) from a random live node.
    Get,
    /// OpenDHT: a random live node puts a value at a random key; once that is over, another
    /// random live node gets the key and must find the value.
    PutGet,
    /// OpenDHT: a random live node listens to a random key; later another puts a value there,
    /// and the listener must be told (see [`crate::opendht_workload::ListenWorkload`]).
    Listen,
}

impl WorkloadKind {
    pub fn cli_name(self) -> &'static str {
        match self {
            WorkloadKind::FindNode => "find-node",
            WorkloadKind::GetPeers => "get-peers",
            WorkloadKind::Announce => "announce",
            WorkloadKind::Put => "put",
            WorkloadKind::Items => "items",
            WorkloadKind::Advertise => "advertise",
            WorkloadKind::Find => "find",
            WorkloadKind::Get => "get",
            WorkloadKind::PutGet => "put-get",
            WorkloadKind::Listen => "listen",
        }
    }

    /// The network whose nodes run this workload.
    pub fn dht(self) -> Dht {
        match self {
            WorkloadKind::FindNode
            | WorkloadKind::GetPeers
            | WorkloadKind::Announce
            | WorkloadKind::Put
            | WorkloadKind::Items
            | WorkloadKind::Advertise => Dht::Mainline,
            WorkloadKind::Find | WorkloadKind::Get | WorkloadKind::PutGet | WorkloadKind::Listen => Dht::OpenDht,
        }
    }

    /// The workloads a network runs when none are named.
    pub fn defaults(dht: Dht) -> Vec<WorkloadKind> {
        match dht {
            Dht::Mainline => vec![WorkloadKind::FindNode, WorkloadKind::GetPeers, WorkloadKind::Announce],
            Dht::OpenDht => vec![WorkloadKind::Find, WorkloadKind::Get, WorkloadKind::PutGet, WorkloadKind::Listen],
        }
    }
}

/// The items workload (see [`crate::workload::ItemWorkload`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ItemOptions {
    /// Virtual time from the moment an item's put is over (the nodes that stored it answered)
    /// to its get, so every copy from that put is at least this old when it is looked for.
    /// Default 7200 s: the BEP 44 lifetime, after which only keep-alive re-puts keep an item.
    pub hold_secs: f64,
    /// Whether the putting node keeps its item alive (`Node::keep_alive`). Default on; off
    /// for the control run that shows items vanish without it.
    pub keep_alive: bool,
}

impl Default for ItemOptions {
    fn default() -> Self {
        ItemOptions { hold_secs: 7200.0, keep_alive: true }
    }
}

/// One run of the simulator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimOptions {
    /// The network simulated. Default Mainline.
    #[serde(skip_serializing_if = "is_mainline")]
    pub dht: Dht,
    /// Seed of the simulator's only generator; node IDs and node seeds derive from it.
    pub seed: u64,
    /// Nodes in the network once built.
    pub nodes: usize,
    /// Units of work started by the workloads (one lookup each; an announce unit is an
    /// announce and then a get_peers; an items unit is the put of one item and, `items.hold_secs`
    /// later, its get).
    pub lookups: usize,
    /// Nodes that everyone bootstraps from. Default 4.
    pub seeds: usize,
    /// Time between two joins while the network is built. Default 10 ms.
    pub join_interval_ms: f64,
    /// Quiet time after the last join before faults and workload start. Default 60 s: a node
    /// refreshes its sparse buckets right after joining, and those lookups are long over.
    pub settle_secs: f64,
    /// Time between two units of work. Default 20 ms.
    pub lookup_interval_ms: f64,
    /// Workloads, taking turns; all of the network's kind. Default: Mainline's find_node,
    /// get_peers and announce; OpenDHT's find, get, put-get and listen.
    pub workloads: Vec<WorkloadKind>,
    /// The network model and faults.
    pub network: NetworkOptions,
    /// The items workload's hold time and keep-alive switch.
    pub items: ItemOptions,
    /// The advertise workload's hold time, lookups and quest switch.
    pub advertise: AdvertiseOptions,
    /// Virtual time between two full invariant sweeps (routing tables of every live node,
    /// lookups that run too long). Cheap checks run after every event. Default 10 s.
    pub check_every_secs: f64,
    /// A lookup running longer than this breaks the liveness invariant. Default 300 s.
    pub max_lookup_secs: f64,
    /// Node configuration overrides, for experiments; `None` keeps the network's default
    /// (both networks: alpha 4, final alpha 11, request timeout 2 s, no retry).
    pub lookup_alpha: Option<usize>,
    pub lookup_final_alpha: Option<usize>,
    pub lookup_timeout_ms: Option<f64>,
    pub lookup_retries: Option<u8>,
    /// `LookupConfig::stalled_grace_percent` (default 0).
    pub stalled_grace_percent: Option<u32>,
    /// `LookupConfig::vouched_resends` (default 1).
    pub vouched_resends: Option<u8>,
    /// `RoutingTableConfig::neighbours_checked` (default 24).
    pub neighbours_checked: Option<usize>,
    /// `Config::stall_deviations` (default 1).
    pub stall_deviations: Option<u32>,
}

impl SimOptions {
    /// Applies the lookup overrides to a node's lookup config, stall deviations and routing
    /// table config (the same fields on both networks).
    pub fn apply_lookup_overrides(
        &self,
        lookup: &mut LookupConfig,
        stall_deviations: &mut u32,
        routing: &mut RoutingTableConfig,
    ) {
        lookup.vouched_resends = self.vouched_resends.unwrap_or(lookup.vouched_resends);
        routing.neighbours_checked = self.neighbours_checked.unwrap_or(routing.neighbours_checked);
        lookup.alpha = self.lookup_alpha.unwrap_or(lookup.alpha);
        lookup.final_alpha = self.lookup_final_alpha.unwrap_or(lookup.final_alpha);
        lookup.retries = self.lookup_retries.unwrap_or(lookup.retries);
        lookup.stalled_grace_percent = self.stalled_grace_percent.unwrap_or(lookup.stalled_grace_percent);
        *stall_deviations = self.stall_deviations.unwrap_or(*stall_deviations);
        if let Some(ms) = self.lookup_timeout_ms {
            lookup.request_timeout = Duration::from_secs_f64(ms / 1000.0);
        }
    }
}

fn is_mainline(dht: &Dht) -> bool {
    *dht == Dht::Mainline
}

impl SimOptions {
    /// A Mainline run with the default workloads.
    pub fn new(nodes: usize, lookups: usize, seed: u64) -> Self {
        SimOptions {
            dht: Dht::Mainline,
            seed,
            nodes,
            lookups,
            seeds: 4,
            join_interval_ms: 10.0,
            settle_secs: 60.0,
            lookup_interval_ms: 20.0,
            workloads: vec![WorkloadKind::FindNode, WorkloadKind::GetPeers, WorkloadKind::Announce],
            network: NetworkOptions::default(),
            items: ItemOptions::default(),
            advertise: AdvertiseOptions::default(),
            check_every_secs: 10.0,
            max_lookup_secs: 300.0,
            lookup_alpha: None,
            lookup_final_alpha: None,
            lookup_timeout_ms: None,
            lookup_retries: None,
            stalled_grace_percent: None,
            vouched_resends: None,
            neighbours_checked: None,
            stall_deviations: None,
        }
    }

    /// A run of `dht` with its default workloads.
    pub fn for_dht(dht: Dht, nodes: usize, lookups: usize, seed: u64) -> Self {
        SimOptions { dht, workloads: WorkloadKind::defaults(dht), ..SimOptions::new(nodes, lookups, seed) }
    }

    /// Checks ranges; the error names the option.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.network;
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be between 0 and 1, got {v}"))
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number >= 0, got {v}"))
            }
        };
        unit("loss", n.loss)?;
        unit("duplicate", n.duplicate)?;
        unit("reorder", n.reorder)?;
        unit("nat", n.nat)?;
        unit("dead", n.dead)?;
        positive("churn-per-min", n.churn_per_min)?;
        positive("nat-timeout-secs", n.nat_timeout_secs)?;
        if let Some(p) = &n.partition {
            unit("partition share", p.share)?;
            positive("partition start", p.start_secs)?;
            positive("partition duration", p.duration_secs)?;
        }
        match n.rtt {
            RttModel::Lognormal { median_ms, spread } => {
                if !(median_ms.is_finite() && median_ms > 0.0) {
                    return Err(format!("rtt-median-ms must be > 0, got {median_ms}"));
                }
                positive("rtt-spread", spread)?;
            }
            RttModel::Fixed { ms } => {
                if !(ms.is_finite() && ms > 0.0) {
                    return Err(format!("rtt-fixed-ms must be > 0, got {ms}"));
                }
            }
        }
        positive("join-interval-ms", self.join_interval_ms)?;
        positive("settle-secs", self.settle_secs)?;
        positive("lookup-interval-ms", self.lookup_interval_ms)?;
        positive("max-lookup-secs", self.max_lookup_secs)?;
        positive("item-hold-secs", self.items.hold_secs)?;
        positive("advertise-hold-secs", self.advertise.hold_secs)?;
        if !(self.check_every_secs.is_finite() && self.check_every_secs > 0.0) {
            return Err(format!("check-every-secs must be > 0, got {}", self.check_every_secs));
        }
        if self.lookup_alpha == Some(0) {
            return Err("alpha must be at least 1".into());
        }
        if let Some(t) = self.lookup_timeout_ms {
            if !(t.is_finite() && t > 0.0) {
                return Err(format!("lookup-timeout-ms must be > 0, got {t}"));
            }
        }
        if self.seeds == 0 || self.seeds > self.nodes {
            return Err(format!("seeds must be between 1 and nodes ({}), got {}", self.nodes, self.seeds));
        }
        if self.nodes > (1 << 24) - 2 {
            return Err("at most 16,777,214 nodes (addresses are 10.x.y.z)".into());
        }
        if self.workloads.is_empty() && self.lookups > 0 {
            return Err("lookups > 0 needs at least one workload".into());
        }
        if let Some(w) = self.workloads.iter().find(|w| w.dht() != self.dht) {
            return Err(format!(
                "workload {} runs on {}, not on {}",
                w.cli_name(),
                w.dht().cli_name(),
                self.dht.cli_name()
            ));
        }
        Ok(())
    }

    /// The `kadmos-sim` command line that replays this run.
    pub fn command_line(&self) -> String {
        let n = &self.network;
        let mut args = vec!["kadmos-sim".to_string()];
        if self.dht != Dht::Mainline {
            args.push(format!("--network {}", self.dht.cli_name()));
        }
        args.extend([
            format!("--nodes {}", self.nodes),
            format!("--lookups {}", self.lookups),
            format!("--seed {}", self.seed),
            format!("--seeds {}", self.seeds),
            format!("--join-interval-ms {}", self.join_interval_ms),
            format!("--settle-secs {}", self.settle_secs),
            format!("--lookup-interval-ms {}", self.lookup_interval_ms),
        ]);
        let workloads: Vec<&str> = self.workloads.iter().map(|w| w.cli_name()).collect();
        args.push(format!("--workload {}", workloads.join(",")));
        match n.rtt {
            RttModel::Lognormal { median_ms, spread } => {
                args.push(format!("--rtt-median-ms {median_ms} --rtt-spread {spread}"))
            }
            RttModel::Fixed { ms } => args.push(format!("--rtt-fixed-ms {ms}")),
        }
        args.push(format!("--loss {} --duplicate {} --reorder {}", n.loss, n.duplicate, n.reorder));
        args.push(format!("--nat {} --nat-timeout-secs {}", n.nat, n.nat_timeout_secs));
        args.push(format!("--dead {} --churn-per-min {}", n.dead, n.churn_per_min));
        if let Some(p) = &n.partition {
            args.push(format!("--partition {}:{}:{}", p.start_secs, p.duration_secs, p.share));
        }
        if self.workloads.contains(&WorkloadKind::Items) {
            args.push(format!("--item-hold-secs {}", self.items.hold_secs));
            if !self.items.keep_alive {
                args.push("--no-keep-alive".into());
            }
        }
        if self.workloads.contains(&WorkloadKind::Advertise) {
            let a = &self.advertise;
            args.push(format!(
                "--advertise-hold-secs {} --advertise-lookups {}",
                a.hold_secs, a.lookups_per_advertisement
            ));
            if !a.quests {
                args.push("--one-shot".into());
            }
        }
        args.push(format!("--check-every-secs {} --max-lookup-secs {}", self.check_every_secs, self.max_lookup_secs));
        if let Some(a) = self.lookup_alpha {
            args.push(format!("--alpha {a}"));
        }
        if let Some(a) = self.lookup_final_alpha {
            args.push(format!("--final-alpha {a}"));
        }
        if let Some(t) = self.lookup_timeout_ms {
            args.push(format!("--lookup-timeout-ms {t}"));
        }
        if let Some(r) = self.lookup_retries {
            args.push(format!("--retries {r}"));
        }
        if let Some(g) = self.stalled_grace_percent {
            args.push(format!("--stalled-grace-percent {g}"));
        }
        if let Some(d) = self.stall_deviations {
            args.push(format!("--stall-deviations {d}"));
        }
        if let Some(r) = self.vouched_resends {
            args.push(format!("--vouched-resends {r}"));
        }
        if let Some(n) = self.neighbours_checked {
            args.push(format!("--neighbours-checked {n}"));
        }
        args.join(" ")
    }
}
