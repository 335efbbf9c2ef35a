//! An iterative Kademlia lookup as a state machine, shared by every query kind of both
//! networks (find_node, get_peers, BEP 44 get, OpenDHT find/get).
//!
//! Implementation notes (the model is libp2p-kad's `ClosestPeersIter`):
//! - Candidates are kept ordered by XOR distance to the target, each `NotContacted`,
//!   `Waiting`, `Stalled`, `Succeeded` or `Failed`.
//! - The driver asks [`Lookup::next`] what to do until it answers `Wait` or `Finished`, and
//!   reports answers with [`Lookup::on_success`] / [`Lookup::on_failure`]. The lookup never
//!   touches the network and never reads a clock: `now` comes in as an argument.
//! - At most `alpha` requests are in flight. A request unanswered after `stall_timeout` (which
//!   the node sets from measured round-trip times) is *stalled*: it frees its slot so the next
//!   candidate is asked, and it no longer holds up the result. Most silent nodes are dead, and
//!   waiting the full `request_timeout` for each one inside the result window was the main
//!   cost of a lookup (measured in the simulator: a median of 56 round trips with 20% dead
//!   contacts, against 5 without). A stalled node that answers before the lookup ends is
//!   still taken; after `request_timeout` it counts as failed.
//! - Whether a stalled node still holds up the result is the driver's call
//!   ([`Lookup::set_wait_for_stalled`]): where silent nodes usually turn out dead, waiting for
//!   them only costs time; where they usually answer late (a network with slow links but few
//!   deaths), waiting keeps the result exact. The node decides from what its recent stalled
//!   requests did. Even then a stalled node holds up the result for at most `STALLED_HOLD`
//!   more stall timeouts, not until its request times out: the node's evidence may be stale
//!   (measured in the simulator: nodes that had seen only late answers while the network was
//!   built waited the whole 2 s timeout for each dead node after 20% of the network died,
//!   which made the slowest 1% of lookups take 2 s or more).
//! - Whatever the evidence, a stalled node closer than the `k`-th answered one may hold up
//!   the end for `stalled_grace_percent` of the stall timeout more, so that a slow live node
//!   among the `k` closest still makes the result. 10% by default: measured in the simulator
//!   (20% dead contacts, 2% loss), about half the stalled nodes there are dead, and the grace
//!   buys accuracy with time at about the same rate as a longer stall timeout (10,000 nodes:
//!   10%, accuracy 0.879 → 0.894 for 0.1 more round trips at the median, which leaves the
//!   median within 4 round trips; 3,000 nodes: 25%, 0.885 → 0.926 for 0.25; 50%, 0.933 for
//!   0.5). A lookup cannot tell a slow node from a dead one while both are silent, so more
//!   accuracy costs more time.
//! - Only answers count towards `k` when deciding whether to ask more nodes (as in
//!   libtorrent's traversal): while some of the `k` closest are still waiting, a free slot
//!   goes to the next candidate beyond them, so that if a waiting node turns out dead its
//!   replacement has already been asked. It costs a few more requests (measured: about 3 per
//!   lookup) and saves a stall timeout for each dead node in the result window.
//! - Near the target the lookup widens: a candidate in the target's *neighbourhood* (sharing
//!   at least [`Lookup::set_neighbourhood`] bits with it, the depth at which about `k` nodes
//!   are left, estimated by the node from its routing table) or any candidate once the
//!   lookup has converged (one of the `k` closest live candidates has answered: it knew fewer
//!   than `k` nodes closer than itself; waiting for the closest one instead held the widening
//!   back whenever that was a dead node) may be asked while up to
//!   `final_alpha` requests are in flight, not `alpha`, as long as it is among the first
//!   `final_alpha` live candidates. The `k` closest must all be asked anyway, so this costs
//!   few requests; asking them four at a time was most of a lookup's time (measured in the
//!   simulator with 20% dead contacts: the 8 closest were all named 2.2 round trips in, but
//!   the last of them asked only 4.6 round trips in, one slot turn after another; Kademlia's
//!   paper likewise ends a lookup by asking all of the `k` closest not yet asked at once).
//!   Requests to candidates outside the neighbourhood stay within `alpha` in flight: far from
//!   the target, extra parallel requests are mostly wasted, as closer answers make them moot.
//!   They also stall sooner (`far_stall_percent` of the stall timeout): their nodes will not
//!   be in the result, so a silent one only delays the walk.
//! - Before stalling, a request may be sent again `retries` times (for lossy links).
//! - The lookup is finished when the `k` closest candidates that have not failed or stalled
//!   have all answered, or when nobody is left to ask and nothing is in flight.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::id::{Distance, Id, NodeId};
use super::subnet::{self, Subnet};
use crate::time::Timestamp;

/// Most candidates one lookup remembers; farther ones are dropped once this many are known.
const MAX_CANDIDATES: usize = 256;

/// How many more stall timeouts a lookup that waits for stalled nodes waits for one (see the
/// module notes). With a stall timeout near the 80th percentile of round trips (the mainline
/// node's default), six more, seven in all (11 median round trips on the simulator's
/// lognormal links), leave about one answer in a million behind. Four (8 round trips) left
/// 4 of 13,333 fault-free lookups at 10,000 nodes without all of the k closest.
pub(crate) const STALLED_HOLD: u32 = 6;

/// Tuning of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupConfig {
    /// Requests in flight at once while the lookup approaches the target. Default 4.
    pub alpha: usize,
    /// Requests in flight at once once the candidates asked lie in the target's neighbourhood
    /// (see the module notes); never below `alpha`. Default 11: the `k` closest and three
    /// spares for the dead among them (a fifth of the contacts of a network can be gone;
    /// measured in the simulator, 12 is 0.08 round trips faster for one more message).
    pub final_alpha: usize,
    /// Number of closest nodes that must answer for the lookup to finish. Default 8.
    pub k: usize,
    /// Time after which an unanswered request counts as failed. Default 2 s.
    pub request_timeout: Duration,
    /// Time after which an unanswered request stops holding a slot and the result (see the
    /// module notes). Default 1 s; a node replaces it with a figure from measured round trips.
    pub stall_timeout: Duration,
    /// Extra attempts before a request stalls. Default 0.
    pub retries: u8,
    /// Share of the stall timeout, in percent, after which a request to a candidate outside
    /// the target's neighbourhood stalls. Default 60: such a request only moves the lookup on
    /// (its node will not be in the result), so a silent one should free its slot early; its
    /// late answer still counts. Measured in the simulator with 20% dead contacts: about 0.1
    /// round trip faster for two more messages per lookup.
    pub far_stall_percent: u32,
    /// Candidates one IPv4 /24 or IPv6 /64 may have in a lookup (local addresses exempt; see
    /// `kad::subnet`); later ones from that subnet are ignored, so a Sybil farm in one subnet
    /// cannot fill a lookup's result. Default 2. `None`: no limit.
    pub max_per_subnet: Option<usize>,
    /// How long, in percent of the stall timeout, a stalled node closer than the `k`-th
    /// answered one still holds up the end of the lookup, whatever the node's evidence on
    /// stalled nodes says. Default 10 (see the module notes).
    pub stalled_grace_percent: u32,
}

impl LookupConfig {
    /// Most requests a lookup has in flight: `final_alpha`, or `alpha` if that is larger.
    pub fn max_in_flight(&self) -> usize {
        self.final_alpha.max(self.alpha)
    }
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            alpha: 4,
            final_alpha: 11,
            k: 8,
            request_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(1),
            retries: 0,
            far_stall_percent: 60,
            max_per_subnet: Some(2),
            stalled_grace_percent: 10,
        }
    }
}

/// Where a candidate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CandidateState {
    NotContacted,
    /// Asked; holds a slot until `stall_at`. `wide`: asked under `final_alpha` (in the
    /// target's neighbourhood), not under `alpha`.
    Waiting {
        stall_at: Timestamp,
        deadline: Timestamp,
        attempts: u8,
        wide: bool,
    },
    /// Asked and silent past the stall timeout; fails at `deadline` unless it answers. When
    /// the lookup waits for stalled nodes, it waits for this one until `hold_until` (`None`
    /// once that has passed).
    Stalled {
        hold_until: Option<Timestamp>,
        /// Until when it holds up the result in any case (`stalled_grace_percent`).
        grace_until: Option<Timestamp>,
        deadline: Timestamp,
    },
    Succeeded,
    Failed,
}

/// A node the lookup knows of.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub state: CandidateState,
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LookupAction {
    /// Send the lookup's query to this node (a first attempt or a retry).
    Send { id: NodeId, addr: SocketAddr },
    /// Nothing to send until an answer or a deadline (see [`Lookup::next_deadline`]).
    Wait,
    /// The lookup is over; read the result with [`Lookup::closest_succeeded`].
    Finished,
}

/// Counters of one lookup, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Requests sent.
    pub requests: u32,
    /// Requests answered.
    pub successes: u32,
    /// Requests that failed (timed out, or answered with an error).
    pub failures: u32,
    /// Requests that stalled (some of them answered later).
    pub stalls: u32,
}

/// An iterative lookup of the nodes closest to a target.
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    target: Id,
    config: LookupConfig,
    candidates: BTreeMap<Distance, Candidate>,
    in_flight: usize,
    finished: bool,
    stats: LookupStats,
    wait_for_stalled: bool,
    /// Shared prefix bits with the target from which a candidate is in its neighbourhood.
    neighbourhood: u32,
}

impl Lookup {
    pub(crate) fn new(target: Id, config: LookupConfig, seeds: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> Self {
        let mut lookup = Lookup {
            target,
            config,
            candidates: BTreeMap::new(),
            in_flight: 0,
            finished: false,
            stats: Default::default(),
            wait_for_stalled: false,
            neighbourhood: u32::MAX,
        };
        lookup.add_candidates(seeds);
        lookup
    }

    pub(crate) fn target(&self) -> Id {
        self.target
    }

    pub(crate) fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// Sets the stall timeout for requests sent from now on.
    pub(crate) fn set_stall_timeout(&mut self, stall_timeout: Duration) {
        self.config.stall_timeout = stall_timeout;
    }

    /// Whether stalled nodes in the result window hold up the end of the lookup (until they
    /// answer or fail). They never hold a slot. Default: no.
    pub(crate) fn set_wait_for_stalled(&mut self, wait: bool) {
        self.wait_for_stalled = wait;
    }

    /// Candidates sharing at least `bits` bits with the target are in its neighbourhood and
    /// may be asked under `final_alpha` (see the module notes). Default: none is (until the
    /// lookup converges). A node sets the depth at which about `k` nodes are left, less a bit.
    pub(crate) fn set_neighbourhood(&mut self, bits: u32) {
        self.neighbourhood = bits;
    }

    /// Requests holding a slot (asked, not answered, not stalled).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests holding a slot that were asked under `alpha` (outside the neighbourhood).
    pub(crate) fn in_flight_narrow(&self) -> usize {
        self.candidates.values().filter(|c| matches!(c.state, CandidateState::Waiting { wide: false, .. })).count()
    }

    pub(crate) fn stats(&self) -> LookupStats {
        self.stats
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates.values()
    }

    /// Adds nodes learned from an answer (or seeds). Known IDs are left as they are.
    pub(crate) fn add_candidates(&mut self, nodes: impl IntoIterator<Item = (NodeId, SocketAddr)>) {
        if self.finished {
            return;
        }
        for (id, addr) in nodes {
            let distance = id.distance(&self.target);
            if let (Some(limit), Some(net)) = (self.config.max_per_subnet, Subnet::of(addr.ip())) {
                if subnet::count_in(net, self.candidates.values().map(|c| c.addr.ip())) >= limit {
                    continue;
                }
            }
            if self.candidates.len() >= MAX_CANDIDATES {
                match self.candidates.last_key_value() {
                    Some((farthest, c)) if *farthest > distance && c.state == CandidateState::NotContacted => {
                        let farthest = *farthest;
                        self.candidates.remove(&farthest);
                    }
                    _ => continue,
                }
            }
            self.candidates.entry(distance).or_insert(Candidate { id, addr, state: CandidateState::NotContacted });
        }
    }

    /// The node answered; `closer` are the nodes it named.
    pub(crate) fn on_success(&mut self, id: &NodeId, closer: impl IntoIterator<Item = (NodeId, SocketAddr)>) {
        let Some(candidate) = self.candidates.get_mut(&id.distance(&self.target)) else { return };
        match candidate.state {
            CandidateState::Waiting { .. } => self.in_flight -= 1,
            CandidateState::Stalled { .. } | CandidateState::Failed => {}
            CandidateState::Succeeded | CandidateState::NotContacted => return,
        }
        candidate.state = CandidateState::Succeeded;
        self.stats.successes += 1;
        self.add_candidates(closer);
    }

    /// The node answered with an error, or the driver gave up on it.
    pub(crate) fn on_failure(&mut self, id: &NodeId) {
        let Some(candidate) = self.candidates.get_mut(&id.distance(&self.target)) else { return };
        match candidate.state {
            CandidateState::Waiting { .. } => self.in_flight -= 1,
            CandidateState::Stalled { .. } => {}
            _ => return,
        }
        candidate.state = CandidateState::Failed;
        self.stats.failures += 1;
    }

    fn waiting(&self, now: Timestamp, attempts: u8, wide: bool, distance: &Distance) -> CandidateState {
        let mut stall = self.config.stall_timeout.min(self.config.request_timeout);
        if self.is_far(distance) {
            stall = stall * self.config.far_stall_percent.min(100) / 100;
        }
        CandidateState::Waiting { stall_at: now + stall, deadline: now + self.config.request_timeout, attempts, wide }
    }

    /// Whether a candidate lies outside the target's neighbourhood, as far as known (with no
    /// neighbourhood set, nothing is far).
    fn is_far(&self, distance: &Distance) -> bool {
        self.neighbourhood != u32::MAX && distance.leading_zeros() < self.neighbourhood
    }

    /// Decides the next step. Call repeatedly until it returns `Wait` or `Finished`.
    pub(crate) fn next(&mut self, now: Timestamp) -> LookupAction {
        if self.finished {
            return LookupAction::Finished;
        }
        // Expired requests first: retry, stall or fail them.
        let retries = self.config.retries;
        let mut resend = None;
        for (distance, candidate) in self.candidates.iter_mut() {
            match candidate.state {
                CandidateState::Waiting { stall_at, deadline, attempts, wide } if now >= stall_at => {
                    if attempts <= retries {
                        resend = Some((*distance, attempts + 1, wide));
                        break;
                    }
                    let hold_until = Some((now + self.config.stall_timeout * STALLED_HOLD).min(deadline));
                    let grace = self.config.stall_timeout * self.config.stalled_grace_percent / 100;
                    let grace_until = (!grace.is_zero()).then(|| (now + grace).min(deadline));
                    candidate.state = CandidateState::Stalled { hold_until, grace_until, deadline };
                    self.in_flight -= 1;
                    self.stats.stalls += 1;
                }
                CandidateState::Stalled { deadline, .. } if now >= deadline => {
                    candidate.state = CandidateState::Failed;
                    self.stats.failures += 1;
                }
                CandidateState::Stalled { hold_until, grace_until, deadline }
                    if hold_until.is_some_and(|at| now >= at) || grace_until.is_some_and(|at| now >= at) =>
                {
                    let hold_until = hold_until.filter(|at| now < *at);
                    let grace_until = grace_until.filter(|at| now < *at);
                    candidate.state = CandidateState::Stalled { hold_until, grace_until, deadline };
                }
                _ => {}
            }
        }
        if let Some((distance, attempts, wide)) = resend {
            let state = self.waiting(now, attempts, wide, &distance);
            let candidate = self.candidates.get_mut(&distance).expect("found above");
            candidate.state = state;
            self.stats.requests += 1;
            return LookupAction::Send { id: candidate.id, addr: candidate.addr };
        }
        // Walk the candidates closest first. The first `k` that have neither failed nor
        // stalled form the result window: the lookup is over when all of them have answered.
        // While some of the window is still waiting, a free slot goes to the next candidate
        // beyond it (libtorrent's traversal counts only answered nodes towards k, too): if a
        // waiting node turns out dead, its replacement has already been asked.
        //
        // A candidate in the target's neighbourhood, or any once the lookup has converged, may
        // be asked under `final_alpha` if it is among the first `final_alpha` live ones. The
        // lookup has converged when one of the `k` closest live candidates has answered: that
        // node knew fewer than `k` nodes closer than itself, so the end is near.
        let final_alpha = self.config.max_in_flight();
        let mut window = 0;
        let mut window_answered = true;
        let mut answered = 0;
        let mut converged = false;
        let mut ask = None;
        for (distance, candidate) in self.candidates.iter() {
            let in_window = window < self.config.k;
            match candidate.state {
                CandidateState::Succeeded => {
                    converged |= in_window;
                    window += 1;
                    answered += 1;
                }
                CandidateState::Waiting { .. } => {
                    window += 1;
                    window_answered &= !in_window;
                }
                CandidateState::Stalled { hold_until, grace_until, .. }
                    if grace_until.is_some() || (hold_until.is_some() && self.wait_for_stalled) =>
                {
                    window += 1;
                    window_answered &= !in_window;
                }
                CandidateState::NotContacted => {
                    let wide = self.in_flight >= self.config.alpha;
                    if wide {
                        let near = converged || distance.leading_zeros() >= self.neighbourhood;
                        if !near || window >= final_alpha || self.in_flight >= final_alpha {
                            return LookupAction::Wait;
                        }
                    }
                    ask = Some((*distance, wide));
                    break;
                }
                CandidateState::Stalled { .. } | CandidateState::Failed => {}
            }
            if in_window && window >= self.config.k && window_answered {
                self.finished = true;
                return LookupAction::Finished;
            }
            if answered >= self.config.k {
                break;
            }
        }
        if let Some((distance, wide)) = ask {
            let state = self.waiting(now, 1, wide, &distance);
            let candidate = self.candidates.get_mut(&distance).expect("found above");
            candidate.state = state;
            self.in_flight += 1;
            self.stats.requests += 1;
            return LookupAction::Send { id: candidate.id, addr: candidate.addr };
        }
        let stalled_pending = self.candidates.values().any(|c| match c.state {
            CandidateState::Stalled { hold_until, grace_until, .. } => {
                grace_until.is_some() || (hold_until.is_some() && self.wait_for_stalled)
            }
            _ => false,
        });
        if self.in_flight == 0 && !stalled_pending {
            self.finished = true;
            LookupAction::Finished
        } else {
            LookupAction::Wait
        }
    }

    /// When [`Lookup::next`] should be called again if no answer comes: the earliest moment a
    /// request in flight stalls (or, when waiting for stalled nodes, one fails).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.candidates
            .values()
            .filter_map(|c| match c.state {
                CandidateState::Waiting { stall_at, .. } => Some(stall_at),
                CandidateState::Stalled { hold_until, grace_until, .. } => {
                    let hold = hold_until.filter(|_| self.wait_for_stalled);
                    [hold, grace_until].into_iter().flatten().min()
                }
                _ => None,
            })
            .min()
    }

    /// Up to `k` nodes that answered, closest first.
    pub(crate) fn closest_succeeded(&self) -> Vec<(NodeId, SocketAddr)> {
        self.candidates
            .values()
            .filter(|c| c.state == CandidateState::Succeeded)
            .take(self.config.k)
            .map(|c| (c.id, c.addr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    fn addr_of(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881))
    }

    /// A toy network: every node holds a real routing table filled from every other node
    /// (shuffled), and answers with the 8 closest it knows; some never answer.
    struct ToyNetwork {
        ids: Vec<Id>,
        tables: Vec<crate::kad::RoutingTable>,
        dead: Vec<bool>,
    }

    impl ToyNetwork {
        fn new(seed: u64, n: usize, dead_share: f64) -> Self {
            use rand::seq::SliceRandom;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let ids: Vec<Id> = (0..n).map(|_| Id::random(&mut rng)).collect();
            let mut tables = Vec::new();
            for own in &ids {
                let mut table = crate::kad::RoutingTable::new(*own, Default::default(), Timestamp::ZERO);
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut rng);
                for j in order {
                    table.insert_responded(ids[j], addr_of(j), Timestamp::ZERO);
                }
                tables.push(table);
            }
            let dead = (0..n).map(|i| i > 0 && rng.gen_bool(dead_share)).collect();
            ToyNetwork { ids, tables, dead }
        }

        fn closer(&self, i: usize, target: &Id) -> Vec<(Id, SocketAddr)> {
            self.tables[i].closest(target, 8).into_iter().map(|c| (c.id, c.addr())).collect()
        }

        /// Runs a lookup to completion, checking the in-flight bound at every step.
        fn run(&self, target: Id, config: LookupConfig, neighbourhood: u32) -> (Lookup, usize) {
            let index: HashMap<Id, usize> = self.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            let seeds = self.closer(0, &target);
            let mut lookup = Lookup::new(target, config.clone(), seeds);
            lookup.set_neighbourhood(neighbourhood);
            let mut now = Timestamp::ZERO;
            let mut steps = 0;
            let mut pending: Vec<Id> = Vec::new();
            loop {
                steps += 1;
                assert!(steps < 100_000, "lookup did not terminate");
                match lookup.next(now) {
                    LookupAction::Send { id, .. } => {
                        assert!(lookup.in_flight_narrow() <= config.alpha);
                        assert!(lookup.in_flight() <= config.max_in_flight());
                        pending.push(id);
                    }
                    LookupAction::Finished => return (lookup, steps),
                    LookupAction::Wait => {
                        assert!(lookup.in_flight_narrow() <= config.alpha);
                        assert!(lookup.in_flight() <= config.max_in_flight());
                        if let Some(id) = pending.pop() {
                            let i = index[&id];
                            if !self.dead[i] {
                                lookup.on_success(&id, self.closer(i, &target));
                            }
                        } else {
                            now = lookup.next_deadline().expect("waiting with nothing in flight");
                        }
                    }
                }
            }
        }
    }

    /// Without faults a lookup finds exactly the k closest live nodes to its target.
    #[test]
    fn finds_true_closest_without_faults() {
        let net = ToyNetwork::new(3, 400, 0.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20 {
            let target = Id::random(&mut rng);
            let (lookup, _) = net.run(target, LookupConfig::default(), 4);
            // The querying node (index 0) does not count: a lookup never asks itself.
            let mut truth = net.ids[1..].to_vec();
            truth.sort_by_key(|id| id.distance(&target));
            let got: Vec<Id> = lookup.closest_succeeded().into_iter().map(|(id, _)| id).collect();
            assert_eq!(got, truth[..8].to_vec());
        }
    }

    proptest! {
        /// Whatever the network, a lookup terminates, never has more than alpha requests in
        /// flight outside the target's neighbourhood nor more than final alpha in all, and returns only nodes that answered, in distance order, at most k of them.
        #[test]
        fn terminates_within_bounds(seed in any::<u64>(), alpha in 1usize..6, final_alpha in 0usize..16, neighbourhood in 0u32..8, k in 1usize..12, dead in 0.0f64..0.9, retries in 0u8..3, far_stall_percent in 10u32..=100, stalled_grace_percent in 0u32..200) {
            let net = ToyNetwork::new(seed, 120, dead);
            let target = Id::random(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 1));
            let config = LookupConfig { alpha, final_alpha, k, request_timeout: Duration::from_millis(500), stall_timeout: Duration::from_millis(200), retries, far_stall_percent, max_per_subnet: None, stalled_grace_percent };
            let (lookup, _) = net.run(target, config, neighbourhood);
            prop_assert!(lookup.is_finished());
            let result = lookup.closest_succeeded();
            prop_assert!(result.len() <= k);
            for pair in result.windows(2) {
                prop_assert!(pair[0].0.distance(&target) < pair[1].0.distance(&target));
            }
            let index: HashMap<Id, usize> = net.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            for (id, _) in &result { prop_assert!(!net.dead[index[id]]); }
        }
    }

    /// Sybil limit: of ten nodes named from one /24, right next to the target, a lookup keeps
    /// two, so honest nodes from other subnets still make up most of its result; local
    /// addresses are not limited.
    #[test]
    fn one_subnet_gets_two_candidates() {
        let target = Id::ZERO;
        let id = |first: u8| Id::from_bytes(&[[0, first].as_slice(), &[0; 18]].concat()).unwrap();
        let farm = (1..=10).map(|i| (id(i), SocketAddr::from(([203, 0, 113, i], 6881))));
        let honest = (11..=20).map(|i| (id(i), SocketAddr::from(([198, 51, i, 1], 6881))));
        let lookup = Lookup::new(target, LookupConfig::default(), farm.chain(honest));
        let from_farm = lookup.candidates().filter(|c| c.addr.ip().to_string().starts_with("203.0.113.")).count();
        assert_eq!((from_farm, lookup.candidates().count()), (2, 12));
        let local = (1..=10).map(|i| (id(i), SocketAddr::from(([10, 0, 0, i], 6881))));
        assert_eq!(Lookup::new(target, LookupConfig::default(), local).candidates().count(), 10);
    }

    /// Far from the target a lookup keeps `alpha` requests in flight; candidates in the
    /// target's neighbourhood, or any once one of the `k` closest live candidates has answered,
    /// are asked up to `final_alpha` at once, and only the first `final_alpha` live ones.
    #[test]
    fn widens_in_the_neighbourhood() {
        let config = LookupConfig { alpha: 2, final_alpha: 5, k: 3, ..LookupConfig::default() };
        let id = |first: u8, second: u8| Id::from_bytes(&[[first, second].as_slice(), &[0; 18]].concat()).unwrap();
        let near: Vec<(Id, SocketAddr)> = (1..=7).map(|i| (id(0, i), addr_of(i as usize))).collect();
        let far: Vec<(Id, SocketAddr)> = (1..=7).map(|i| (id(0x80 | i, 0), addr_of(100 + i as usize))).collect();
        let t0 = Timestamp::ZERO;
        let sends = |lookup: &mut Lookup| {
            std::iter::from_fn(|| match lookup.next(t0) {
                LookupAction::Send { id, .. } => Some(id),
                _ => None,
            })
            .collect::<Vec<_>>()
        };

        // Near candidates (sharing 8 bits or more with the target): five at once.
        let mut lookup = Lookup::new(Id::ZERO, config.clone(), near.iter().chain(&far).copied());
        lookup.set_neighbourhood(8);
        let asked = sends(&mut lookup);
        assert_eq!(asked, near[..5].iter().map(|(id, _)| *id).collect::<Vec<_>>());
        assert_eq!((lookup.in_flight(), lookup.in_flight_narrow()), (5, 2));

        // Without a neighbourhood, alpha until one of the k closest live candidates answers.
        let mut lookup = Lookup::new(Id::ZERO, config.clone(), far[4..].iter().copied());
        assert_eq!(sends(&mut lookup), vec![far[4].0, far[5].0]);
        // far[5] names three closer nodes, so it is no longer among the k = 3 closest: alpha.
        lookup.on_success(&far[5].0, far[..3].iter().copied());
        assert_eq!(sends(&mut lookup), vec![far[0].0], "not converged: alpha");
        // The closest answers: converged. The next candidates go out beyond alpha, but only
        // among the first five live ones (far[0], far[1], far[2], far[4], far[5]): far[6] waits.
        lookup.on_success(&far[0].0, []);
        assert_eq!(sends(&mut lookup), vec![far[1].0, far[2].0]);
        assert_eq!(lookup.in_flight(), 3);
    }

    /// A lookup config whose window is `alpha` wide from start to end, with no retries, no
    /// early stall of far requests, no subnet cap and no stalled grace: the knobs the tests
    /// below set one at a time.
    fn one_window(alpha: usize, k: usize, request_timeout: Duration, stall_timeout: Duration) -> LookupConfig {
        LookupConfig {
            alpha,
            final_alpha: alpha,
            k,
            request_timeout,
            stall_timeout,
            retries: 0,
            far_stall_percent: 100,
            max_per_subnet: None,
            stalled_grace_percent: 0,
        }
    }

    /// A timed-out request is retried `retries` times before the candidate fails.
    #[test]
    fn retries_then_fails() {
        let config = LookupConfig { retries: 2, ..one_window(1, 1, Duration::from_secs(1), Duration::from_secs(1)) };
        let mut lookup = Lookup::new(Id::ZERO, config, [(Id::MAX, addr_of(1))]);
        let mut now = Timestamp::ZERO;
        let mut sends = 0;
        loop {
            match lookup.next(now) {
                LookupAction::Send { .. } => sends += 1,
                LookupAction::Wait => now = lookup.next_deadline().unwrap(),
                LookupAction::Finished => break,
            }
        }
        assert_eq!(sends, 3);
        assert_eq!(lookup.stats().stalls, 1);
        assert!(lookup.closest_succeeded().is_empty());
    }

    /// While one of the k closest is still waiting, a free slot goes to the next candidate
    /// beyond them; once the waiting one stalls, the lookup ends with the one beyond in its place.
    #[test]
    fn free_slot_goes_beyond_a_waiting_window() {
        let config = one_window(2, 2, Duration::from_secs(2), Duration::from_millis(300));
        let near = Id::from_bytes(&[0x01; 20]).unwrap();
        let mid = Id::from_bytes(&[0x02; 20]).unwrap();
        let far = Id::from_bytes(&[0x80; 20]).unwrap();
        let mut lookup = Lookup::new(Id::ZERO, config, [(near, addr_of(1)), (mid, addr_of(2)), (far, addr_of(3))]);
        let t0 = Timestamp::ZERO;
        assert_eq!(lookup.next(t0), LookupAction::Send { id: near, addr: addr_of(1) });
        assert_eq!(lookup.next(t0), LookupAction::Send { id: mid, addr: addr_of(2) });
        assert_eq!(lookup.next(t0), LookupAction::Wait, "alpha = 2");
        lookup.on_success(&mid, []);
        // The window (near, mid) is not complete, so the free slot asks far.
        assert_eq!(lookup.next(t0), LookupAction::Send { id: far, addr: addr_of(3) });
        lookup.on_success(&far, []);
        assert_eq!(lookup.next(t0), LookupAction::Wait, "near still holds the result");
        let stall = lookup.next_deadline().unwrap();
        assert_eq!(lookup.next(stall), LookupAction::Finished);
        assert_eq!(lookup.closest_succeeded(), vec![(mid, addr_of(2)), (far, addr_of(3))]);
    }

    /// A lookup that waits for stalled nodes waits for one only `STALLED_HOLD` more stall
    /// timeouts, not until its request timeout; an answer within that time still counts.
    #[test]
    fn waiting_for_a_stalled_node_is_bounded() {
        let config = one_window(1, 1, Duration::from_secs(10), Duration::from_millis(100));
        let near = Id::from_bytes(&[0x01; 20]).unwrap();
        let far = Id::from_bytes(&[0x80; 20]).unwrap();
        let mut lookup = Lookup::new(Id::ZERO, config, [(near, addr_of(1)), (far, addr_of(2))]);
        lookup.set_wait_for_stalled(true);
        let t0 = Timestamp::ZERO;
        assert_eq!(lookup.next(t0), LookupAction::Send { id: near, addr: addr_of(1) });
        let stall = lookup.next_deadline().unwrap();
        assert_eq!(lookup.next(stall), LookupAction::Send { id: far, addr: addr_of(2) });
        lookup.on_success(&far, []);
        assert_eq!(lookup.next(stall), LookupAction::Wait, "near still holds the result");
        let hold = lookup.next_deadline().unwrap();
        assert_eq!(hold, stall + Duration::from_millis(100) * STALLED_HOLD);
        assert_eq!(lookup.next(hold), LookupAction::Finished);
        assert_eq!(lookup.closest_succeeded(), vec![(far, addr_of(2))]);
    }

    /// With a stalled grace, a stalled node closer than the `k`-th answered one holds up the end
    /// for that share of the stall timeout even when the lookup does not wait for stalled
    /// nodes, so its late answer within the grace makes the result; without, the lookup ends
    /// as soon as the others have answered.
    #[test]
    fn stalled_grace_takes_a_late_answer() {
        let config = |grace| LookupConfig {
            stalled_grace_percent: grace,
            ..one_window(1, 1, Duration::from_secs(10), Duration::from_millis(100))
        };
        let near = Id::from_bytes(&[0x01; 20]).unwrap();
        let far = Id::from_bytes(&[0x80; 20]).unwrap();
        let t0 = Timestamp::ZERO;
        let stall = t0 + Duration::from_millis(100);
        for grace in [0, 50] {
            let mut lookup = Lookup::new(Id::ZERO, config(grace), [(near, addr_of(1)), (far, addr_of(2))]);
            assert_eq!(lookup.next(t0), LookupAction::Send { id: near, addr: addr_of(1) });
            assert_eq!(lookup.next(stall), LookupAction::Send { id: far, addr: addr_of(2) });
            lookup.on_success(&far, []);
            if grace == 0 {
                assert_eq!(lookup.next(stall), LookupAction::Finished);
                assert_eq!(lookup.closest_succeeded(), vec![(far, addr_of(2))]);
                continue;
            }
            assert_eq!(lookup.next(stall), LookupAction::Wait, "near is within its grace");
            assert_eq!(lookup.next_deadline(), Some(stall + Duration::from_millis(50)));
            lookup.on_success(&near, []);
            assert_eq!(lookup.next(stall + Duration::from_millis(30)), LookupAction::Finished);
            assert_eq!(lookup.closest_succeeded(), vec![(near, addr_of(1))]);
        }
        // A stalled node that stays silent holds the end only until its grace is over.
        let mut lookup = Lookup::new(Id::ZERO, config(50), [(near, addr_of(1)), (far, addr_of(2))]);
        lookup.next(t0);
        lookup.next(stall);
        lookup.on_success(&far, []);
        assert_eq!(lookup.next(stall), LookupAction::Wait);
        assert_eq!(lookup.next(stall + Duration::from_millis(50)), LookupAction::Finished);
        assert_eq!(lookup.closest_succeeded(), vec![(far, addr_of(2))]);
    }

    /// A silent node stalls after the stall timeout: its slot goes to the next candidate and it
    /// stops holding up the result, yet its late answer still counts while the lookup runs.
    #[test]
    fn stalled_request_frees_its_slot_and_may_still_answer() {
        let config = one_window(1, 2, Duration::from_secs(2), Duration::from_millis(300));
        let near = Id::from_bytes(&[0x01; 20]).unwrap();
        let mid = Id::from_bytes(&[0x02; 20]).unwrap();
        let far = Id::from_bytes(&[0x80; 20]).unwrap();
        let mut lookup = Lookup::new(Id::ZERO, config, [(near, addr_of(1)), (mid, addr_of(2)), (far, addr_of(3))]);
        let t0 = Timestamp::ZERO;
        assert_eq!(lookup.next(t0), LookupAction::Send { id: near, addr: addr_of(1) });
        assert_eq!(lookup.next(t0), LookupAction::Wait, "alpha = 1");
        let stall = lookup.next_deadline().unwrap();
        assert_eq!(stall, t0 + Duration::from_millis(300));
        assert_eq!(lookup.next(stall), LookupAction::Send { id: mid, addr: addr_of(2) });
        assert_eq!(lookup.in_flight(), 1);
        lookup.on_success(&mid, []);
        assert_eq!(lookup.next(stall), LookupAction::Send { id: far, addr: addr_of(3) });
        // The stalled node answers late: it is back in the result.
        lookup.on_success(&near, []);
        lookup.on_success(&far, []);
        assert_eq!(lookup.next(stall), LookupAction::Finished);
        assert_eq!(lookup.closest_succeeded(), vec![(near, addr_of(1)), (mid, addr_of(2))]);
        assert_eq!(lookup.stats().stalls, 1);
    }
}
