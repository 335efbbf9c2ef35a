//! The network model: what happens to a datagram between two simulated nodes.
//!
//! Implementation notes:
//! - A link's RTT is a pure function of the seed and the (unordered) pair of nodes, so it
//!   costs no memory however many pairs talk, and a link is as fast every time it is used.
//!   A datagram takes half the RTT one way.
//! - Loss, duplication and reordering draw from the simulator's one generator, per datagram,
//!   in the order datagrams are sent, which the event queue makes deterministic.
//! - A NAT is modelled as address-restricted filtering: the inside node can reach anyone,
//!   and a datagram in is let through only from an address it sent to within the timeout.

use std::collections::HashMap;

use rand::Rng;
use serde::Serialize;

use kadmos_proto::Timestamp;

use crate::options::{NetworkOptions, RttModel};

/// Index of a node in the simulation (its address is derived from it).
pub type NodeIndex = u32;

/// Shortest RTT a link can draw, so that a lognormal tail cannot make it zero.
const MIN_RTT_US: u64 = 1_000;
/// Longest RTT a link can draw.
const MAX_RTT_US: u64 = 10_000_000;

/// SplitMix64's finalizer: a fast, well-mixed hash of a 64-bit word.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in (0, 1] from a hash.
fn unit_open(h: u64) -> f64 {
    ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// Datagram counters of the whole network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Datagrams nodes sent.
    pub sent: u64,
    pub bytes_sent: u64,
    /// Datagrams handed to a live node (duplicates count twice).
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Dropped at a NAT: unsolicited, or the mapping had expired.
    pub nat_blocked: u64,
    /// Dropped between the two sides of a partition.
    pub partitioned: u64,
    /// Arrived at a node that had died.
    pub to_dead: u64,
    /// Sent to an address where no simulated node ever lived.
    pub undeliverable: u64,
    /// Largest datagram sent, in bytes.
    pub largest_datagram: usize,
}

/// What the network does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Lost,
    Partitioned,
    /// Delivered after `delay_us`, and a copy after `copy_us` if duplicated.
    Deliver {
        delay_us: u64,
        copy_us: Option<u64>,
        reordered: bool,
    },
}

/// The network model of a run.
pub struct Network {
    options: NetworkOptions,
    link_key: u64,
    side_key: u64,
    /// When the partition starts and ends, once the workload start is known.
    partition_window: Option<(Timestamp, Timestamp)>,
}

impl Network {
    /// `key` comes from the simulator's generator, so RTTs and sides follow the seed.
    pub fn new(options: NetworkOptions, key: u64) -> Self {
        Network { options, link_key: mix64(key), side_key: mix64(key ^ 0x5151_5151), partition_window: None }
    }

    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// The round-trip time of the link between two nodes, in microseconds.
    pub fn rtt_us(&self, a: NodeIndex, b: NodeIndex) -> u64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let pair = (u64::from(lo) << 32) | u64::from(hi);
        let ms = match self.options.rtt {
            RttModel::Fixed { ms } => ms,
            RttModel::Lognormal { median_ms, spread } => {
                // Box-Muller on two hashes of the pair.
                let h1 = mix64(pair ^ self.link_key);
                let h2 = mix64(h1 ^ self.link_key.rotate_left(17));
                let z = (-2.0 * unit_open(h1).ln()).sqrt() * (std::f64::consts::TAU * unit_open(h2)).cos();
                median_ms * (spread * z).exp()
            }
        };
        ((ms * 1000.0) as u64).clamp(MIN_RTT_US, MAX_RTT_US)
    }

    /// The delay of a datagram between two nodes on time: half the link's round trip.
    pub fn one_way_us(&self, a: NodeIndex, b: NodeIndex) -> u64 {
        self.rtt_us(a, b) / 2
    }

    /// Starts the partition clock (the partition is timed from the workload start).
    pub fn set_workload_start(&mut self, start: Timestamp) {
        if let Some(p) = &self.options.partition {
            let from = start + std::time::Duration::from_secs_f64(p.start_secs);
            self.partition_window = Some((from, from + std::time::Duration::from_secs_f64(p.duration_secs)));
        }
    }

    /// Which side of the partition a node is on (true: the smaller side).
    fn small_side(&self, node: NodeIndex, share: f64) -> bool {
        unit_open(mix64(u64::from(node) ^ self.side_key)) <= share
    }

    fn partitioned(&self, from: NodeIndex, to: NodeIndex, now: Timestamp) -> bool {
        match (&self.options.partition, self.partition_window) {
            (Some(p), Some((start, end))) if now >= start && now < end => {
                self.small_side(from, p.share) != self.small_side(to, p.share)
            }
            _ => false,
        }
    }

    /// Decides the fate of a datagram sent now. Draws from `rng` only for faults that are
    /// switched on, so a fault-free run spends no randomness here.
    pub fn fate<R: Rng>(&self, rng: &mut R, from: NodeIndex, to: NodeIndex, now: Timestamp) -> Fate {
        if self.partitioned(from, to, now) {
            return Fate::Partitioned;
        }
        let chance = |rng: &mut R, p: f64| p > 0.0 && rng.gen::<f64>() < p;
        if chance(rng, self.options.loss) {
            return Fate::Lost;
        }
        let rtt = self.rtt_us(from, to);
        let mut delay_us = self.one_way_us(from, to);
        let reordered = chance(rng, self.options.reorder);
        if reordered {
            delay_us += rng.gen_range(0..=rtt);
        }
        let copy_us = chance(rng, self.options.duplicate).then(|| delay_us + rng.gen_range(0..=rtt / 2));
        Fate::Deliver { delay_us, copy_us, reordered }
    }
}

/// The NAT in front of one node: when it last sent to each address.
#[derive(Clone, Debug, Default)]
pub struct NatTable {
    open: HashMap<NodeIndex, Timestamp>,
}

/// Mappings kept before expired ones are swept.
const NAT_SWEEP_AT: usize = 512;

impl NatTable {
    /// The inside node sent to `to`: the mapping opens or is refreshed.
    pub fn sent(&mut self, to: NodeIndex, now: Timestamp, timeout_us: u64) {
        if self.open.len() >= NAT_SWEEP_AT {
            // Only lookups and this order-independent sweep touch the map, so its iteration
            // order never reaches the output.
            self.open.retain(|_, at| now.as_micros().saturating_sub(at.as_micros()) < timeout_us);
        }
        self.open.insert(to, now);
    }

    /// Whether a datagram from `from` gets in.
    pub fn allows(&self, from: NodeIndex, now: Timestamp, timeout_us: u64) -> bool {
        self.open.get(&from).is_some_and(|at| now.as_micros().saturating_sub(at.as_micros()) < timeout_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Lognormal link RTTs have about the configured median, are symmetric and stable per link.
    #[test]
    fn lognormal_rtts_have_the_configured_median() {
        let options = NetworkOptions::default();
        let net = Network::new(options, 42);
        let mut rtts: Vec<u64> = (0..20_000).map(|i| net.rtt_us(i, i + 7)).collect();
        assert_eq!(net.rtt_us(3, 10), net.rtt_us(10, 3));
        rtts.sort_unstable();
        let median = rtts[rtts.len() / 2] as f64 / 1000.0;
        assert!((median - 80.0).abs() < 3.0, "median {median} ms");
        // spread 0.5: the 90th percentile is exp(0.5 * 1.2816) = 1.90 times the median.
        let p90 = rtts[rtts.len() * 9 / 10] as f64 / 1000.0;
        assert!((p90 / median - 1.90).abs() < 0.08, "p90 {p90} ms");
    }

    /// Without faults every datagram arrives after half the link's RTT and no randomness is used.
    #[test]
    fn fault_free_network_delivers_after_half_the_rtt() {
        let options = NetworkOptions { rtt: RttModel::Fixed { ms: 50.0 }, ..NetworkOptions::default() };
        let net = Network::new(options, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let before = rng.clone();
        assert_eq!(
            net.fate(&mut rng, 1, 2, Timestamp::ZERO),
            Fate::Deliver { delay_us: 25_000, copy_us: None, reordered: false }
        );
        assert_eq!(rng, before);
    }

    /// A NAT lets in only answers from addresses the node sent to recently.
    #[test]
    fn nat_filters_unsolicited_datagrams() {
        let mut nat = NatTable::default();
        let t = Timestamp::from_micros;
        assert!(!nat.allows(5, t(0), 1_000));
        nat.sent(5, t(0), 1_000);
        assert!(nat.allows(5, t(999), 1_000));
        assert!(!nat.allows(5, t(1_000), 1_000));
        assert!(!nat.allows(6, t(10), 1_000));
    }
}
