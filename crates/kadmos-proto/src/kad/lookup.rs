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
//! - A candidate is *vouched for* when an answer from one of its nearest neighbours named it:
//!   a node sharing at least one bit fewer than the depth of our routing table with it (see
//!   [`Lookup::set_vouch_bits`]; a handful of nodes share the depth with any ID), and
//!   *closely* when that node shares the depth itself. Nodes ping their nearest neighbours
//!   when silent for a few seconds and stop naming those that fail
//!   (`RoutingTableConfig::neighbours_checked`), so a vouched candidate is very likely alive,
//!   while one named only from afar may have died long ago. That is how a lookup tells a slow
//!   node from a dead one while both are silent. Accuracy (finding the true `k` closest) is
//!   lost to slow links and lost datagrams of live nodes, and waiting for every silent node to
//!   find them also waits for every dead one: measured in the simulator with 20% dead
//!   contacts and 2% loss, accuracy 0.95 took 5.1 round trips at the median that way, against
//!   3.9 for 0.89 (see docs/simulator.md).
//! - A silent request to a closely vouched candidate of the result window is sent again once
//!   when it stalls (`vouched_resends`): its node is likely alive, so the silence is a slow
//!   link or a lost datagram, and only a second request recovers a lost one. The resend holds
//!   the slot and the result for one more stall timeout. The window's farthest member gets
//!   none: the first candidate beyond the window is nearly as close, and a resend holds up
//!   the lookup that waits for it (measured in the simulator, 10,000 nodes, two seeds:
//!   resending to the whole window took 0.035 round trips more at the median for 0.8 points
//!   more accuracy, 0.963 against 0.955). Other candidates get no resend.
//! - Whether a stalled vouched candidate still holds up the result after that is the
//!   driver's call ([`Lookup::set_wait_for_stalled`]): where silent nodes usually turn out
//!   dead, waiting only costs time; where they usually answer late (a network with slow links
//!   but few deaths), waiting keeps the result exact. The node decides from what its recent
//!   stalled requests did. Even then a stalled node holds up the result for at most
//!   `STALLED_HOLD` more stall timeouts, not until its request times out: the node's evidence
//!   may be stale (nodes that had seen only late answers while the simulator built the
//!   network waited the whole 2 s timeout for each dead node after 20% of the network died).
//!   A candidate not vouched for never holds up the result once stalled: it is the likely dead
//!   one.
//! - Whatever the evidence, a stalled node closer than the `k`-th answered one may hold up
//!   the end for `stalled_grace_percent` of the stall timeout more. 0 by default: the resend
//!   to vouched candidates buys accuracy at a lower price.
//! - Only answers count towards `k` when deciding whether to ask more nodes (as in
//!   libtorrent's traversal): while some of the `k` closest are still waiting, a free slot
//!   goes to the next candidate beyond them, so that if a waiting node turns out dead its
//!   replacement has already been asked. It costs a few more requests (measured: about 3 per
//!   lookup) and saves a stall timeout for each dead node in the result window. Such spares
//!   go out only for candidates of the window not vouched for, one spare each: a vouched one
//!   is likely alive, and a spare for it is a wasted request.
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

/// How many more stall timeouts a lookup that waits for stalled nodes waits for a vouched one
/// (see the module notes), after its resend stalled too: with a stall timeout near the 80th
/// percentile of round trips (the nodes' default), a link slower than the four stall timeouts
/// in all (about 6 median round trips on the simulator's lognormal links) is one in several
/// thousand. Six, when every stalled node was waited for, made the slowest 1% of lookups in the
/// simulator's quality scenario take 1.4 s rather than 0.8 s (3,000 nodes).
pub(crate) const STALLED_HOLD: u32 = 2;

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
    /// stalled nodes says. Default 0 (see the module notes).
    pub stalled_grace_percent: u32,
    /// Times a silent request to a closely vouched candidate of the result window (see the
    /// module notes) is sent again before it stalls; `retries` if that is more. Default 1: in
    /// the simulator (3,000 nodes, 20% dead, 2% loss), accuracy 0.89 → 0.96 for 0.4 round
    /// trips more at the median. 0 trades that accuracy back for speed.
    pub vouched_resends: u8,
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
            stalled_grace_percent: 0,
            vouched_resends: 1,
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
    /// The most bits a node that named it shares with it (see the module notes); 0 for seeds.
    pub named_by_bits: u32,
}

/// How well a candidate is vouched for (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vouch {
    No,
    /// Named by one of its nearest neighbours: waited for when stalled, if the node's evidence
    /// says stalled nodes answer late.
    Yes,
    /// Named by one of its very nearest: also sent the request again when silent, and given
    /// no spare.
    Closely,
}

impl Vouch {
    /// A candidate named by nodes sharing at most `named_by_bits` bits with it, where
    /// `vouch_bits` vouch closely (see [`Lookup::set_vouch_bits`]).
    fn of(named_by_bits: u32, vouch_bits: u32) -> Vouch {
        if named_by_bits >= vouch_bits {
            Vouch::Closely
        } else if named_by_bits.saturating_add(1) >= vouch_bits {
            Vouch::Yes
        } else {
            Vouch::No
        }
    }
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
    /// Shared prefix bits with a candidate from which a node naming it vouches for it closely
    /// (one bit fewer: it vouches for it).
    vouch_bits: u32,
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
            vouch_bits: u32::MAX,
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

    /// Whether stalled candidates vouched for in the result window hold up the end of the
    /// lookup (until they answer or fail). They never hold a slot. Default: no.
    pub(crate) fn set_wait_for_stalled(&mut self, wait: bool) {
        self.wait_for_stalled = wait;
    }

    /// A node sharing at least `bits` bits with a candidate it names vouches for it closely,
    /// and one sharing a bit fewer vouches for it (see the module notes). Default: none does.
    /// A node sets the depth of its routing table.
    pub(crate) fn set_vouch_bits(&mut self, bits: u32) {
        self.vouch_bits = bits;
    }

    /// How well `candidate` is vouched for.
    fn vouch(&self, candidate: &Candidate) -> Vouch {
        Vouch::of(candidate.named_by_bits, self.vouch_bits)
    }

    /// Whether a stalled candidate still holds up the result (while its hold lasts).
    fn holds(&self, candidate: &Candidate) -> bool {
        Self::holds_with(candidate, self.wait_for_stalled, self.vouch_bits)
    }

    /// [`Lookup::holds`] with the lookup's fields passed in (for a loop that borrows the
    /// candidates mutably).
    fn holds_with(candidate: &Candidate, wait_for_stalled: bool, vouch_bits: u32) -> bool {
        match candidate.state {
            CandidateState::Stalled { hold_until, grace_until, .. } => {
                let vouched = Vouch::of(candidate.named_by_bits, vouch_bits) != Vouch::No;
                grace_until.is_some() || (hold_until.is_some() && wait_for_stalled && vouched)
            }
            _ => false,
        }
    }

    /// Whether a candidate is vouched for, closely or not.
    fn vouched(&self, candidate: &Candidate) -> bool {
        self.vouch(candidate) != Vouch::No
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
        self.add_named(None, nodes);
    }

    /// Adds nodes that `by` (if known) named: those close to `by` are vouched for.
    fn add_named(&mut self, by: Option<&NodeId>, nodes: impl IntoIterator<Item = (NodeId, SocketAddr)>) {
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
            let shared_bits = by.map_or(0, |by| by.distance(&id).leading_zeros());
            let candidate = self.candidates.entry(distance).or_insert(Candidate {
                id,
                addr,
                state: CandidateState::NotContacted,
                named_by_bits: 0,
            });
            candidate.named_by_bits = candidate.named_by_bits.max(shared_bits);
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
        self.add_named(Some(id), closer);
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
        let vouched_retries = retries.max(self.config.vouched_resends);
        let mut resend = None;
        let (k, wait_for_stalled, vouch_bits) = (self.config.k, self.wait_for_stalled, self.vouch_bits);
        // Window members passed so far, by their state before this pass: resends go to the
        // window but its farthest member (see the module notes).
        let mut members = 0;
        for (distance, candidate) in self.candidates.iter_mut() {
            let position = members;
            members += usize::from(
                matches!(candidate.state, CandidateState::Succeeded | CandidateState::Waiting { .. })
                    || Self::holds_with(candidate, wait_for_stalled, vouch_bits),
            );
            match candidate.state {
                CandidateState::Waiting { stall_at, deadline, attempts, wide } if now >= stall_at => {
                    let closely_vouched = Vouch::of(candidate.named_by_bits, vouch_bits) == Vouch::Closely;
                    let resent_if_silent = closely_vouched && (k < 2 || position + 1 < k);
                    if attempts <= if resent_if_silent { vouched_retries } else { retries } {
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
            return self.send(now, distance, attempts, wide);
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
        // Candidates of the window not vouched for and not answered yet: each may have a spare.
        let mut doubtful = 0;
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
                    doubtful += usize::from(in_window && self.vouch(candidate) != Vouch::Closely);
                }
                CandidateState::Stalled { .. } if self.holds(candidate) => {
                    window += 1;
                    window_answered &= !in_window;
                    doubtful += usize::from(in_window && self.vouch(candidate) != Vouch::Closely);
                }
                CandidateState::NotContacted => {
                    if window >= self.config.k && window - self.config.k >= doubtful {
                        // A spare beyond the window, and every doubtful member has one.
                        break;
                    }
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
            self.in_flight += 1;
            return self.send(now, distance, 1, wide);
        }
        let stalled_pending = self.candidates.values().any(|c| self.holds(c));
        if self.in_flight == 0 && !stalled_pending {
            self.finished = true;
            LookupAction::Finished
        } else {
            LookupAction::Wait
        }
    }

    /// Asks the candidate at `distance` (attempt `attempts`).
    fn send(&mut self, now: Timestamp, distance: Distance, attempts: u8, wide: bool) -> LookupAction {
        let state = self.waiting(now, attempts, wide, &distance);
        let candidate = self.candidates.get_mut(&distance).expect("a known candidate");
        candidate.state = state;
        self.stats.requests += 1;
        LookupAction::Send { id: candidate.id, addr: candidate.addr }
    }

    /// When [`Lookup::next`] should be called again if no answer comes: the earliest moment a
    /// request in flight stalls (or, when waiting for stalled nodes, one fails).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.candidates
            .values()
            .filter_map(|c| match c.state {
                CandidateState::Waiting { stall_at, .. } => Some(stall_at),
                CandidateState::Stalled { hold_until, grace_until, .. } => {
                    let hold = hold_until.filter(|_| self.wait_for_stalled && self.vouched(c));
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
        fn terminates_within_bounds(seed in any::<u64>(), alpha in 1usize..6, final_alpha in 0usize..16, neighbourhood in 0u32..8, k in 1usize..12, dead in 0.0f64..0.9, retries in 0u8..3, far_stall_percent in 10u32..=100, stalled_grace_percent in 0u32..200, vouched_resends in 0u8..3) {
            let net = ToyNetwork::new(seed, 120, dead);
            let target = Id::random(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 1));
            let config = LookupConfig { alpha, final_alpha, k, request_timeout: Duration::from_millis(500), stall_timeout: Duration::from_millis(200), retries, far_stall_percent, max_per_subnet: None, stalled_grace_percent, vouched_resends };
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
            vouched_resends: 0,
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

    /// An ID that starts with `prefix` and is zero after it.
    fn id_of(prefix: &[u8]) -> Id {
        let mut bytes = [0u8; 20];
        bytes[..prefix.len()].copy_from_slice(prefix);
        Id::from_bytes(&bytes).unwrap()
    }

    /// A lookup that waits for stalled nodes waits only for a vouched one (named by a node
    /// sharing enough bits with it), and for that one only `STALLED_HOLD` more stall timeouts,
    /// not until its request timeout; a candidate named from afar stops holding up the result
    /// as soon as it stalls.
    #[test]
    fn only_a_vouched_stalled_node_is_waited_for_and_not_for_long() {
        let stall = Duration::from_millis(100);
        let near = id_of(&[0x01]);
        for (namer, vouched) in [(id_of(&[0x01, 0x80]), true), (id_of(&[0x80]), false)] {
            let config = one_window(1, 1, Duration::from_secs(10), stall);
            let mut lookup = Lookup::new(Id::ZERO, config, [(namer, addr_of(2))]);
            lookup.set_wait_for_stalled(true);
            lookup.set_vouch_bits(8);
            let t0 = Timestamp::ZERO;
            assert_eq!(lookup.next(t0), LookupAction::Send { id: namer, addr: addr_of(2) });
            lookup.on_success(&namer, [(near, addr_of(1))]);
            assert_eq!(lookup.next(t0), LookupAction::Send { id: near, addr: addr_of(1) });
            let stalled_at = lookup.next_deadline().unwrap();
            assert_eq!(stalled_at, t0 + stall);
            if !vouched {
                assert_eq!(lookup.next(stalled_at), LookupAction::Finished, "named from afar: not waited for");
                assert_eq!(lookup.closest_succeeded(), vec![(namer, addr_of(2))]);
                continue;
            }
            assert_eq!(lookup.next(stalled_at), LookupAction::Wait, "vouched: still holds the result");
            let hold = lookup.next_deadline().unwrap();
            assert_eq!(hold, stalled_at + stall * STALLED_HOLD);
            assert_eq!(lookup.next(hold), LookupAction::Finished);
            assert_eq!(lookup.closest_succeeded(), vec![(namer, addr_of(2))]);
        }
    }

    /// A silent request to a closely vouched member of the result window is sent again once
    /// when it stalls, and the answer to either attempt counts; the window's farthest member
    /// and a candidate not vouched for get no resend.
    #[test]
    fn a_closely_vouched_window_member_is_asked_again_once() {
        let stall = Duration::from_millis(100);
        let namer = id_of(&[0x01, 0x80]);
        let (x1, x2) = (id_of(&[0x01, 0x00, 0x01]), id_of(&[0x01, 0x00, 0x02]));
        let mut config = one_window(2, 2, Duration::from_secs(10), stall);
        config.vouched_resends = 1;
        let mut lookup = Lookup::new(Id::ZERO, config.clone(), [(namer, addr_of(9))]);
        lookup.set_vouch_bits(8);
        let t0 = Timestamp::ZERO;
        assert_eq!(lookup.next(t0), LookupAction::Send { id: namer, addr: addr_of(9) });
        lookup.on_success(&namer, [(x1, addr_of(1)), (x2, addr_of(2))]);
        assert_eq!(lookup.next(t0), LookupAction::Send { id: x1, addr: addr_of(1) });
        assert_eq!(lookup.next(t0), LookupAction::Send { id: x2, addr: addr_of(2) });
        let stalled_at = t0 + stall;
        assert_eq!(lookup.next(stalled_at), LookupAction::Send { id: x1, addr: addr_of(1) }, "resent once");
        assert_eq!(lookup.next(stalled_at), LookupAction::Wait, "x2, the window's farthest, is not resent");
        assert_eq!(lookup.next_deadline(), Some(stalled_at + stall));
        assert_eq!(lookup.next(stalled_at + stall), LookupAction::Finished, "the resend stalled too");
        assert_eq!(lookup.stats().requests, 4);

        // Named from afar, x1 gets no resend.
        let far_namer = id_of(&[0x80]);
        let mut lookup = Lookup::new(Id::ZERO, config, [(far_namer, addr_of(9))]);
        lookup.set_vouch_bits(8);
        assert_eq!(lookup.next(t0), LookupAction::Send { id: far_namer, addr: addr_of(9) });
        lookup.on_success(&far_namer, [(x1, addr_of(1)), (x2, addr_of(2))]);
        assert_eq!(lookup.next(t0), LookupAction::Send { id: x1, addr: addr_of(1) });
        assert_eq!(lookup.next(t0), LookupAction::Send { id: x2, addr: addr_of(2) });
        assert_eq!(lookup.next(stalled_at), LookupAction::Finished);
        assert_eq!(lookup.stats().requests, 3);
    }

    /// Near the target a spare beyond the result window goes out only for a window member not
    /// closely vouched for: with every member closely vouched the lookup asks no one else.
    #[test]
    fn spares_go_out_only_for_doubtful_window_members() {
        let namer = id_of(&[0x01, 0x80]);
        let (x1, x2, x3) = (id_of(&[0x01, 0x00, 0x01]), id_of(&[0x01, 0x00, 0x02]), id_of(&[0x01, 0x00, 0x03]));
        let far = id_of(&[0x40]);
        let mut config = one_window(4, 2, Duration::from_secs(10), Duration::from_millis(100));
        config.final_alpha = 4;
        let t0 = Timestamp::ZERO;
        for (doubtful, expect_spare) in [(false, false), (true, true)] {
            let mut lookup = Lookup::new(Id::ZERO, config.clone(), [(namer, addr_of(9))]);
            lookup.set_vouch_bits(8);
            lookup.set_neighbourhood(0);
            assert_eq!(lookup.next(t0), LookupAction::Send { id: namer, addr: addr_of(9) });
            lookup.on_success(&namer, [(x1, addr_of(1)), (x3, addr_of(3))]);
            // x2 named by the close namer, or only from afar.
            lookup.add_named(Some(if doubtful { &far } else { &namer }), [(x2, addr_of(2))]);
            let mut asked = Vec::new();
            while let LookupAction::Send { id, .. } = lookup.next(t0) {
                asked.push(id);
            }
            assert_eq!(asked.contains(&x3), expect_spare, "asked {asked:?}");
            assert!(asked.contains(&x1) && asked.contains(&x2));
        }
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
