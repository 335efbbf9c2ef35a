//! What a run measured, for people (`Display`) and machines (`serde`, `--json`).
//!
//! Every figure but those in [`Perf`] (wall clock and memory of the simulator itself) is a
//! function of the options alone: the same seed and options give the same report.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::advertise_workload::AdvertiseReport;
use crate::network::Traffic;
use crate::options::SimOptions;

/// Summary of a list of values. Percentiles are nearest-rank; all zero when there are none.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Percentiles {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        }
    }

    /// The same figures divided by `unit` (for times in multiples of the median RTT).
    pub fn scaled(&self, unit: f64) -> Self {
        Percentiles {
            count: self.count,
            mean: self.mean / unit,
            p50: self.p50 / unit,
            p90: self.p90 / unit,
            p99: self.p99 / unit,
            max: self.max / unit,
        }
    }
}

/// One measured lookup, as the simulator saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupRecord {
    /// The label the workload gave it (`find_node`, `get_peers`, ...).
    pub kind: &'static str,
    /// See [`crate::simulation`] for what success means for each kind.
    pub succeeded: bool,
    /// Virtual time from the command to its first `Peers` event, if any.
    pub first_result_us: Option<u64>,
    /// Virtual time from the command to its `Finished` event.
    pub completion_us: u64,
    /// Datagrams of this lookup: its queries (retries included) and the replies that reached it.
    pub messages: u32,
    /// Bytes of those datagrams.
    pub bytes: u64,
    /// Hops to the closest node found: 1 for a node from the querier's own routing table,
    /// h + 1 for a node first named by one at h.
    pub hops: Option<u32>,
    /// Requests of the lookup that stalled (silent past the stall timeout; some answered later).
    pub stalls: Option<u32>,
    /// Share of the true k closest live reachable nodes that the result holds.
    pub accuracy: Option<f64>,
    /// Share of the true k closest whose answers could have come back before the lookup ended,
    /// had it asked each the moment it was named and known the dead, with nothing lost: the
    /// most accuracy any rule for ending lookups could have had at this completion time.
    pub within_reach: Option<f64>,
    /// Time from the command by which all of the true k closest could have answered, asked
    /// the moment they were named, with nothing lost (`None` if one was never named).
    pub all_within_reach_us: Option<u64>,
}

/// Figures of one kind of lookup (or of all of them).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LookupReport {
    pub kind: String,
    /// Lookups that finished (abandoned ones not included).
    pub run: usize,
    pub succeeded: usize,
    pub success_rate: f64,
    /// Lookups whose node died (churn) before they finished; not counted in `run`.
    pub abandoned: usize,
    pub first_result_ms: Percentiles,
    pub first_result_rtts: Percentiles,
    pub completion_ms: Percentiles,
    pub completion_rtts: Percentiles,
    pub messages: Percentiles,
    pub bytes: Percentiles,
    pub hops: Percentiles,
    /// Stalled requests per lookup (see `kad::lookup`): dead nodes, losses and slow answers.
    pub stalls: Percentiles,
    pub accuracy: Percentiles,
    /// Share of lookups that found all of the true k closest.
    pub exact_share: f64,
    /// See [`LookupRecord::within_reach`].
    pub within_reach: Percentiles,
    /// See [`LookupRecord::all_within_reach_us`], in median round trips.
    pub all_within_reach_rtts: Percentiles,
}

impl LookupReport {
    pub fn of(kind: &str, records: &[&LookupRecord], abandoned: usize, median_rtt_ms: f64) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        let run = records.len();
        let succeeded = records.iter().filter(|r| r.succeeded).count();
        let first: Vec<f64> = records.iter().filter_map(|r| r.first_result_us.map(ms)).collect();
        let completion: Vec<f64> = records.iter().map(|r| ms(r.completion_us)).collect();
        let accuracy: Vec<f64> = records.iter().filter_map(|r| r.accuracy).collect();
        let first_result_ms = Percentiles::of(&first);
        let completion_ms = Percentiles::of(&completion);
        LookupReport {
            kind: kind.to_string(),
            run,
            succeeded,
            success_rate: if run == 0 { 0.0 } else { succeeded as f64 / run as f64 },
            abandoned,
            first_result_rtts: first_result_ms.scaled(median_rtt_ms),
            first_result_ms,
            completion_rtts: completion_ms.scaled(median_rtt_ms),
            completion_ms,
            messages: Percentiles::of(&records.iter().map(|r| f64::from(r.messages)).collect::<Vec<_>>()),
            bytes: Percentiles::of(&records.iter().map(|r| r.bytes as f64).collect::<Vec<_>>()),
            hops: Percentiles::of(&records.iter().filter_map(|r| r.hops.map(f64::from)).collect::<Vec<_>>()),
            stalls: Percentiles::of(&records.iter().filter_map(|r| r.stalls.map(f64::from)).collect::<Vec<_>>()),
            exact_share: if accuracy.is_empty() {
                0.0
            } else {
                accuracy.iter().filter(|a| **a >= 1.0).count() as f64 / accuracy.len() as f64
            },
            accuracy: Percentiles::of(&accuracy),
            within_reach: Percentiles::of(&records.iter().filter_map(|r| r.within_reach).collect::<Vec<_>>()),
            all_within_reach_rtts: Percentiles::of(
                &records.iter().filter_map(|r| r.all_within_reach_us.map(ms)).collect::<Vec<_>>(),
            )
            .scaled(median_rtt_ms),
        }
    }

    /// One report per kind, sorted by kind, then one for all lookups together.
    pub fn all(records: &[LookupRecord], abandoned: &BTreeMap<&'static str, usize>, median_rtt_ms: f64) -> Vec<Self> {
        let mut by_kind: BTreeMap<&str, Vec<&LookupRecord>> = BTreeMap::new();
        for r in records {
            by_kind.entry(r.kind).or_default().push(r);
        }
        for kind in abandoned.keys() {
            by_kind.entry(kind).or_default();
        }
        let mut out: Vec<LookupReport> = by_kind
            .iter()
            .map(|(kind, rs)| LookupReport::of(kind, rs, abandoned.get(kind).copied().unwrap_or(0), median_rtt_ms))
            .collect();
        if out.len() > 1 {
            let every: Vec<&LookupRecord> = records.iter().collect();
            out.push(LookupReport::of("all", &every, abandoned.values().sum(), median_rtt_ms));
        }
        out
    }
}

/// Gets of one class of items: how many finished and how many found the item.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ItemGets {
    pub run: usize,
    pub found: usize,
    /// `found / run`; 0 when none ran.
    pub found_rate: f64,
}

impl ItemGets {
    pub fn new(run: usize, found: usize) -> Self {
        ItemGets { run, found, found_rate: if run == 0 { 0.0 } else { found as f64 / run as f64 } }
    }
}

/// What the item workload measured (see [`crate::workload::ItemWorkload`]).
///
/// Which gets count: the claim "items stay retrievable thanks to keep-alive" is about
/// `putter_alive`, the items whose putter was still alive (and so re-putting them) when they
/// were looked for. An item whose putter left is no longer kept alive, by design; those are
/// reported apart, split by whether the putter left before its first re-put was due (nobody
/// ever refreshed the item: gone once its two hours are up) or after (re-put once: still
/// there until two hours after that re-put). `gets` counts every finished get.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ItemReport {
    /// Whether putters kept their items alive (off in the control run).
    pub keep_alive: bool,
    /// Virtual time from the end of an item's put to its get.
    pub hold_secs: f64,
    /// Items whose put began, and of those, immutable and mutable ones (a third of the
    /// mutable ones salted).
    pub items: usize,
    pub immutable_items: usize,
    pub mutable_items: usize,
    /// Items whose last put stored on at least one node: these are gotten.
    pub stored: usize,
    /// Items whose last put reached no node (not gotten).
    pub put_failed: usize,
    /// Items whose putter left while putting (not gotten).
    pub put_abandoned: usize,
    /// Nodes that stored each item's last put.
    pub stored_at: Percentiles,
    /// Every get that finished.
    pub gets: ItemGets,
    /// Gets of items whose putter was alive when the get began: the keep-alive promise.
    pub putter_alive: ItemGets,
    /// Gets of items whose putter left before its first re-put was due.
    pub putter_left_before_reput: ItemGets,
    /// Gets of items whose putter left after its first re-put was due.
    pub putter_left_after_reput: ItemGets,
    /// Gets by kind of item.
    pub immutable: ItemGets,
    pub mutable: ItemGets,
    pub mutable_salted: ItemGets,
    /// Gets whose node left before they finished (not in `gets`).
    pub gets_abandoned: usize,
    /// Items not gotten because no live node but the putter was left.
    pub not_gotten: usize,
    /// Gets that were also answered with an older version of a mutable item.
    pub stale_answers: usize,
    /// Live nodes holding the item (the version put last, not expired) when its get began.
    pub replicas_at_get: Percentiles,
    pub replicas_at_get_putter_alive: Percentiles,
    /// Virtual time from a get's start to the answer holding the item, for gets that found it.
    pub first_item_ms: Percentiles,
    /// Datagrams per get (queries and the answers that reached the getter).
    pub messages_per_get: Percentiles,
    /// Datagrams per put (lookup, puts and their answers; a mutable item has two puts).
    pub messages_per_put: Percentiles,
}

/// What the OpenDHT listen workload measured (see
/// [`crate::opendht_workload::ListenWorkload`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ListenReport {
    /// Listens started.
    pub listens: usize,
    /// Listens whose put stored the value and whose listener and putter lived to the end of
    /// the wait: these are the ones measured.
    pub measured: usize,
    /// Of those, listens whose listener was told of the value.
    pub notified: usize,
    /// `notified / measured`; 0 when none was measured.
    pub notified_rate: f64,
    /// Listens not measured: the put stored nowhere, or the listener or putter left.
    pub not_measured: usize,
    /// Virtual time from the put's start to the listener's notification, for notified ones.
    pub latency_ms: Percentiles,
    pub latency_rtts: Percentiles,
}

impl fmt::Display for ListenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "listens: {} started, {} measured, {} notified ({:.2}%), {} not measured",
            self.listens,
            self.measured,
            self.notified,
            self.notified_rate * 100.0,
            self.not_measured
        )?;
        writeln!(f, "  put to notification ms:   {}", p(&self.latency_ms, 0))?;
        writeln!(f, "  put to notification RTTs: {}", p(&self.latency_rtts, 2))
    }
}

/// Routing tables of the live nodes at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TableFigures {
    /// Contacts per table (replacement caches not counted).
    pub size: Percentiles,
    /// Buckets per table, on average.
    pub buckets_mean: f64,
    /// Contacts in replacement caches per table, on average.
    pub replacements_mean: f64,
    /// Share of all contacts that point at dead nodes.
    pub dead_share: f64,
}

/// Population of the network.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeFigures {
    pub initial: usize,
    pub behind_nat: usize,
    /// Died silently once the network was built (`dead`).
    pub killed: usize,
    /// Left and joined during the workload (`churn-per-min`).
    pub churn_left: usize,
    pub churn_joined: usize,
    pub live_at_end: usize,
}

/// How the network was built.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BootstrapFigures {
    /// Virtual time from the first join to the end of the settle time.
    pub virtual_secs: f64,
    /// Bootstrap commands that finished with nodes, without, or had not finished.
    pub succeeded: usize,
    pub failed: usize,
    pub unfinished: usize,
    /// Routing tables at the end of the settle time.
    pub tables: TableFigures,
}

/// The simulator's own speed and memory. Not deterministic; left out of report comparisons.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Perf {
    pub wall_secs: f64,
    pub build_wall_secs: f64,
    pub workload_wall_secs: f64,
    pub events_per_sec: f64,
    /// Bytes allocated per node right after creating them (before any traffic), when the
    /// binary's counting allocator is installed.
    pub memory_per_new_node_bytes: Option<f64>,
    /// Bytes allocated per node once the network is built and idle (routing tables full,
    /// simulator state and pending timers included).
    pub memory_per_idle_node_bytes: Option<f64>,
    /// Bytes allocated at the end of the build, in total.
    pub memory_total_bytes: Option<u64>,
    /// Bytes a `Node` holds (its box and everything it owns) at the end of the run, measured
    /// as the memory freed by dropping every live node, per node.
    pub memory_per_node_object_bytes: Option<f64>,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub options: Option<SimOptions>,
    /// The command line that replays this run.
    pub replay: String,
    pub nodes: NodeFigures,
    pub bootstrap: BootstrapFigures,
    pub lookups: Vec<LookupReport>,
    /// The item workload's figures, when it ran.
    pub items: Option<ItemReport>,
    /// The advertise workload's figures, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<AdvertiseReport>,
    /// The OpenDHT listen workload's figures, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenReport>,
    /// Routing tables of the live nodes at the end of the run.
    pub tables_at_end: TableFigures,
    pub traffic: Traffic,
    pub virtual_secs: f64,
    pub events: u64,
    pub invariant_sweeps: u64,
    pub perf: Perf,
}

impl Report {
    /// The report without the wall-clock and memory figures: equal for equal seeds and options.
    pub fn deterministic(&self) -> Report {
        Report { perf: Perf::default(), ..self.clone() }
    }

    pub fn lookup(&self, kind: &str) -> Option<&LookupReport> {
        self.lookups.iter().find(|l| l.kind == kind)
    }
}

fn p(f: &Percentiles, digits: usize) -> String {
    format!(
        "p50 {:.d$}  p90 {:.d$}  p99 {:.d$}  mean {:.d$}  max {:.d$}",
        f.p50,
        f.p90,
        f.p99,
        f.mean,
        f.max,
        d = digits
    )
}

fn write_items(f: &mut fmt::Formatter<'_>, it: &ItemReport) -> fmt::Result {
    let gets = |g: &ItemGets| format!("{} run, {} found ({:.2}%)", g.run, g.found, g.found_rate * 100.0);
    writeln!(
        f,
        "items (keep-alive {}, got {} s after put): {} put ({} immutable, {} mutable), {} stored, {} put failed, {} putter left while putting",
        if it.keep_alive { "on" } else { "OFF" },
        it.hold_secs,
        it.items,
        it.immutable_items,
        it.mutable_items,
        it.stored,
        it.put_failed,
        it.put_abandoned
    )?;
    writeln!(f, "  stored at:          {}", p(&it.stored_at, 1))?;
    writeln!(
        f,
        "  gets, all:          {}; {} abandoned, {} not started",
        gets(&it.gets),
        it.gets_abandoned,
        it.not_gotten
    )?;
    let (alive, before, after) = if it.keep_alive {
        (
            "kept alive throughout: the figure keep-alive answers for",
            "never re-put: keep-alive cannot help",
            "re-put once, then orphaned",
        )
    } else {
        ("control run: nobody re-puts", "control run", "control run")
    };
    writeln!(f, "  putter alive:       {}  ({alive})", gets(&it.putter_alive))?;
    writeln!(f, "  putter left before its first re-put was due: {}  ({before})", gets(&it.putter_left_before_reput))?;
    writeln!(f, "  putter left after its first re-put was due:  {}  ({after})", gets(&it.putter_left_after_reput))?;
    writeln!(
        f,
        "  by kind:            immutable {}; mutable {}; mutable salted {}",
        gets(&it.immutable),
        gets(&it.mutable),
        gets(&it.mutable_salted)
    )?;
    writeln!(f, "  stale answers:      {} gets also saw an older version", it.stale_answers)?;
    writeln!(f, "  replicas at get:    {}", p(&it.replicas_at_get, 1))?;
    writeln!(f, "    putter alive:     {}", p(&it.replicas_at_get_putter_alive, 1))?;
    if it.first_item_ms.count > 0 {
        writeln!(f, "  first item ms:      {}", p(&it.first_item_ms, 0))?;
    } else {
        writeln!(f, "  first item ms:      none found")?;
    }
    writeln!(f, "  messages per get:   {}", p(&it.messages_per_get, 1))?;
    writeln!(f, "  messages per put:   {}", p(&it.messages_per_put, 1))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kadmos-sim report")?;
        writeln!(f, "replay: {}", self.replay)?;
        if let Some(o) = &self.options {
            let n = &o.network;
            writeln!(
                f,
                "network: rtt {:?}, loss {}, duplicate {}, reorder {}, nat {} (timeout {} s), dead {}, churn {}/min, partition {:?}",
                n.rtt, n.loss, n.duplicate, n.reorder, n.nat, n.nat_timeout_secs, n.dead, n.churn_per_min, n.partition
            )?;
            writeln!(
                f,
                "lookup config: alpha {}, final alpha {}, timeout {}, retries {}, stalled grace {}, stall deviations {}, vouched resends {}, neighbours checked {}",
                o.lookup_alpha.map_or("default".into(), |a| a.to_string()),
                o.lookup_final_alpha.map_or("default".into(), |a| a.to_string()),
                o.lookup_timeout_ms.map_or("default".into(), |t| format!("{t} ms")),
                o.lookup_retries.map_or("default".into(), |r| r.to_string()),
                o.stalled_grace_percent.map_or("default".into(), |g| format!("{g}%")),
                o.stall_deviations.map_or("default".into(), |d| d.to_string()),
                o.vouched_resends.map_or("default".into(), |r| r.to_string()),
                o.neighbours_checked.map_or("default".into(), |n| n.to_string()),
            )?;
        }
        let nd = &self.nodes;
        writeln!(
            f,
            "nodes: {} initial, {} behind NAT, {} killed, churn -{} +{}, {} live at end",
            nd.initial, nd.behind_nat, nd.killed, nd.churn_left, nd.churn_joined, nd.live_at_end
        )?;
        let b = &self.bootstrap;
        writeln!(
            f,
            "bootstrap: {:.1} s virtual; {} ok, {} empty or failed, {} unfinished",
            b.virtual_secs, b.succeeded, b.failed, b.unfinished
        )?;
        for (when, t) in [("after build", &b.tables), ("at end     ", &self.tables_at_end)] {
            writeln!(
                f,
                "  table size {when}: {}  ({:.1} buckets, {:.1} replacements, {:.1}% dead entries)",
                p(&t.size, 1),
                t.buckets_mean,
                t.replacements_mean,
                t.dead_share * 100.0
            )?;
        }
        for l in &self.lookups {
            writeln!(
                f,
                "lookups {}: {} run, {} succeeded ({:.2}%), {} abandoned",
                l.kind,
                l.run,
                l.succeeded,
                l.success_rate * 100.0,
                l.abandoned
            )?;
            if l.first_result_ms.count > 0 {
                writeln!(f, "  first result ms:   {}", p(&l.first_result_ms, 0))?;
                writeln!(f, "  first result RTTs: {}", p(&l.first_result_rtts, 2))?;
            }
            writeln!(f, "  completion ms:     {}", p(&l.completion_ms, 0))?;
            writeln!(f, "  completion RTTs:   {}", p(&l.completion_rtts, 2))?;
            writeln!(f, "  messages:          {}", p(&l.messages, 1))?;
            writeln!(f, "  bytes:             {}", p(&l.bytes, 0))?;
            writeln!(f, "  hops:              {}", p(&l.hops, 2))?;
            writeln!(f, "  stalls:            {}", p(&l.stalls, 2))?;
            writeln!(f, "  accuracy:          {}  (exact {:.2}%)", p(&l.accuracy, 3), l.exact_share * 100.0)?;
            if l.within_reach.count > 0 {
                writeln!(f, "  within reach:      {}", p(&l.within_reach, 3))?;
                writeln!(f, "  all in reach RTTs: {}", p(&l.all_within_reach_rtts, 2))?;
            }
        }
        if let Some(it) = &self.items {
            write_items(f, it)?;
        }
        if let Some(ad) = &self.advertise {
            write!(f, "{ad}")?;
        }
        if let Some(listen) = &self.listen {
            write!(f, "{listen}")?;
        }
        let t = &self.traffic;
        writeln!(
            f,
            "traffic: {} datagrams ({} bytes, largest {}), {} delivered, {} lost, {} duplicated, {} reordered, {} NAT-blocked, {} partitioned, {} to dead nodes, {} undeliverable",
            t.sent, t.bytes_sent, t.largest_datagram, t.delivered, t.lost, t.duplicated, t.reordered, t.nat_blocked,
            t.partitioned, t.to_dead, t.undeliverable
        )?;
        writeln!(
            f,
            "simulated {:.1} s in {} events; {} invariant sweeps passed",
            self.virtual_secs, self.events, self.invariant_sweeps
        )?;
        let pf = &self.perf;
        write!(
            f,
            "speed: {:.2} s wall ({:.2} build, {:.2} workload), {:.0} events/s",
            pf.wall_secs, pf.build_wall_secs, pf.workload_wall_secs, pf.events_per_sec
        )?;
        if let (Some(new), Some(idle), Some(total), Some(object)) = (
            pf.memory_per_new_node_bytes,
            pf.memory_per_idle_node_bytes,
            pf.memory_total_bytes,
            pf.memory_per_node_object_bytes,
        ) {
            write!(
                f,
                "\nmemory: {new:.0} bytes per new node, {idle:.0} bytes per idle built node with the simulator's share ({:.1} MB in all after the build), {object:.0} bytes per Node object at the end",
                total as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles are nearest-rank over the sorted values.
    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let pc = Percentiles::of(&values);
        assert_eq!((pc.p50, pc.p90, pc.p99, pc.max, pc.count), (50.0, 90.0, 99.0, 100.0, 100));
        assert_eq!(pc.mean, 50.5);
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}
