//! A command's search: one [`Lookup`] per address family the node has, run side by side (BEP 32
//! and OpenDHT search IPv4 and IPv6 contacts separately, and an answer's nodes of the other
//! family feed the sibling lookup), with the write tokens that answering nodes handed out.
//! Both nodes run every search (find, get_peers, BEP 44, OpenDHT get/put/listen) through this.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::family_tables::FamilyTables;
use super::id::{Id, NodeId};
use super::lookup::{Lookup, LookupAction, LookupConfig, LookupStats};
use crate::node_io::Family;
use crate::time::Timestamp;

/// Contacts as answers carry them.
type Nodes<'a> = &'a [(NodeId, SocketAddr)];

/// Most write tokens one family's lookup keeps (a lookup asks a few dozen nodes).
const MAX_TOKENS: usize = 256;

/// One family's lookup and the tokens its answers carried.
#[derive(Clone, Debug)]
pub(crate) struct FamilyLookup {
    pub family: Family,
    pub lookup: Lookup,
    tokens: HashMap<NodeId, Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Search {
    lookups: Vec<FamilyLookup>,
}

impl Search {
    /// A search for `target` in every family `tables` has, each lookup seeded with the
    /// family's `2 k` closest contacts (spares for the dead among them) and the family's
    /// `extra_seeds` (e.g. contacts from saved state).
    pub(crate) fn start(
        tables: &FamilyTables,
        target: Id,
        config: &LookupConfig,
        extra_seeds: &[(NodeId, SocketAddr)],
    ) -> Search {
        let lookups = tables.enabled().into_iter().map(|family| {
            let mut seeds = tables.closest_nodes(family, &target, config.k * 2);
            seeds.extend(extra_seeds.iter().filter(|(_, a)| Family::of(a) == family));
            let mut lookup = Lookup::new(target, config.clone(), seeds);
            if let Some(table) = tables.get(family) {
                lookup.set_neighbourhood(table.neighbourhood_bits());
                lookup.set_vouch_bits(table.depth());
            }
            FamilyLookup { family, lookup, tokens: HashMap::new() }
        });
        Search { lookups: lookups.collect() }
    }

    pub(crate) fn get_mut(&mut self, family: Family) -> Option<&mut FamilyLookup> {
        self.lookups.iter_mut().find(|l| l.family == family)
    }

    pub(crate) fn target(&self) -> Option<Id> {
        self.lookups.first().map(|l| l.lookup.target())
    }

    /// Records `responder`'s answer to the `family` lookup: its nodes of that family go to
    /// that lookup, its nodes of the other family to the sibling, its token is kept. `own` (our
    /// node ID) is never a candidate.
    pub(crate) fn on_answer(
        &mut self,
        family: Family,
        responder: NodeId,
        own: NodeId,
        (nodes4, nodes6): (Nodes<'_>, Nodes<'_>),
        token: Option<&[u8]>,
    ) {
        let (same, other) = if family == Family::V4 { (nodes4, nodes6) } else { (nodes6, nodes4) };
        if let Some(fl) = self.get_mut(family) {
            fl.lookup.on_success(&responder, same.iter().copied().filter(|(id, _)| *id != own));
            if let Some(token) = token.filter(|t| !t.is_empty()) {
                if fl.tokens.len() < MAX_TOKENS {
                    fl.tokens.insert(responder, token.to_vec());
                }
            }
        }
        if let Some(fl) = self.lookups.iter_mut().find(|l| l.family != family) {
            fl.lookup.add_candidates(other.iter().copied().filter(|(id, _)| *id != own));
        }
    }

    /// Offers the nodes an answer named as candidates, each to the lookup of its family,
    /// without counting the answer as one of the lookups' (a router's, or one from another
    /// node than the one asked). `also`: a node to offer besides (a router that is a node too).
    /// `own` (our node ID) is never a candidate.
    pub(crate) fn add_candidates(
        &mut self,
        (nodes4, nodes6): (Nodes<'_>, Nodes<'_>),
        own: NodeId,
        also: Option<(NodeId, SocketAddr)>,
    ) {
        for fl in &mut self.lookups {
            let nodes = if fl.family == Family::V4 { nodes4 } else { nodes6 };
            let also = also.filter(|(id, addr)| *id != own && Family::of(addr) == fl.family);
            fl.lookup.add_candidates(nodes.iter().copied().chain(also).filter(|(id, _)| *id != own));
        }
    }

    /// Counts `id` as failed in the `family` lookup.
    pub(crate) fn on_failure(&mut self, family: Family, id: &NodeId) {
        if let Some(fl) = self.get_mut(family) {
            fl.lookup.on_failure(id);
        }
    }

    /// Steps every lookup with the node's current stall timeout (and whether to wait for
    /// stalled nodes, where the node decides that) and returns the requests to send now.
    ///
    /// A lookup without a single candidate is not stepped (it would finish empty) while a
    /// sibling is still running, since the sibling's answers may name nodes of its family; nor
    /// at all with `seeded_only` (a bootstrap waiting for its routers to name some nodes).
    pub(crate) fn step(
        &mut self,
        now: Timestamp,
        stall_timeout: std::time::Duration,
        wait_for_stalled: Option<bool>,
        seeded_only: bool,
    ) -> Vec<(Family, NodeId, SocketAddr)> {
        let mut sends = Vec::new();
        let seeded = |fl: &FamilyLookup| fl.lookup.candidates().next().is_some();
        for fl in &mut self.lookups {
            fl.lookup.set_stall_timeout(stall_timeout);
            if let Some(wait) = wait_for_stalled {
                fl.lookup.set_wait_for_stalled(wait);
            }
        }
        for fl in self.lookups.iter_mut().filter(|fl| seeded(fl)) {
            drain(fl, now, &mut sends);
        }
        let sibling_running = self.lookups.iter().any(|fl| seeded(fl) && !fl.lookup.is_finished());
        if !seeded_only && !sibling_running {
            for fl in self.lookups.iter_mut().filter(|fl| !seeded(fl)) {
                drain(fl, now, &mut sends);
            }
        }
        sends
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.lookups.iter().all(|l| l.lookup.is_finished())
    }

    /// When a lookup must be stepped again (a request stalls, or stops holding up the result).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.lookups.iter().filter_map(|l| l.lookup.next_deadline()).min()
    }

    /// The nodes that answered, closest to the target first, and the lookups' totals.
    pub(crate) fn summary(&self) -> (Vec<(NodeId, SocketAddr)>, LookupStats) {
        let mut stats = LookupStats::default();
        let mut nodes = Vec::new();
        for fl in &self.lookups {
            let s = fl.lookup.stats();
            stats.requests += s.requests;
            stats.successes += s.successes;
            stats.failures += s.failures;
            stats.stalls += s.stalls;
            nodes.extend(fl.lookup.closest_succeeded());
        }
        if let Some(target) = self.target() {
            nodes.sort_by_key(|(id, _)| id.distance(&target));
        }
        (nodes, stats)
    }

    /// Up to `per_family` of each lookup's closest answering nodes that gave a token, with it:
    /// where to store (announce, put) or subscribe.
    pub(crate) fn closest_with_tokens(&self, per_family: usize) -> Vec<(NodeId, SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        for fl in &self.lookups {
            let with_token = fl.lookup.closest_succeeded().into_iter().filter_map(|(id, addr)| {
                let token = fl.tokens.get(&id)?;
                Some((id, addr, token.clone()))
            });
            out.extend(with_token.take(per_family));
        }
        out
    }

    /// Requests in flight and the parallelism allowed, per lookup (for invariant checks).
    pub(crate) fn parallelism(&self) -> impl Iterator<Item = Parallelism> + '_ {
        self.lookups.iter().map(|l| Parallelism {
            alpha: l.lookup.config().alpha,
            final_alpha: l.lookup.config().max_in_flight(),
            in_flight: l.lookup.in_flight(),
            in_flight_narrow: l.lookup.in_flight_narrow(),
        })
    }
}

/// A lookup's requests in flight against its bounds: at most `alpha` asked outside the
/// target's neighbourhood, at most `final_alpha` in all (see
/// [`LookupConfig`](super::LookupConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    /// Most requests in flight to nodes outside the target's neighbourhood.
    pub alpha: usize,
    /// Most requests in flight in all.
    pub final_alpha: usize,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests in flight now to nodes outside the target's neighbourhood.
    pub in_flight_narrow: usize,
}

impl Parallelism {
    /// What is wrong, if a bound is broken.
    pub fn violation(&self) -> Option<String> {
        if self.in_flight_narrow > self.alpha {
            return Some(format!("{} requests in flight under alpha {}", self.in_flight_narrow, self.alpha));
        }
        (self.in_flight > self.final_alpha)
            .then(|| format!("{} requests in flight, final alpha is {}", self.in_flight, self.final_alpha))
    }
}

/// Takes every request `fl`'s lookup wants sent now.
fn drain(fl: &mut FamilyLookup, now: Timestamp, sends: &mut Vec<(Family, NodeId, SocketAddr)>) {
    while let LookupAction::Send { id, addr } = fl.lookup.next(now) {
        sends.push((fl.family, id, addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kad::RoutingTableConfig;
    use crate::node_io::Families;

    /// An answer's nodes go to the lookup of their family (the other family's to the sibling,
    /// which waited for them rather than finish empty), our own ID never becomes a candidate,
    /// and only nodes that answered with a token are offered for storing; the summary lists
    /// answering nodes closest first; a search whose families both run dry finishes.
    #[test]
    fn answers_feed_both_families_and_keep_tokens() {
        let now = Timestamp::ZERO;
        let own = Id::sha1_of(b"own");
        let target = Id::sha1_of(b"target");
        let mut tables = FamilyTables::new(own, Families { v4: true, v6: true }, &RoutingTableConfig::default(), now);
        let (a, a_addr): (Id, SocketAddr) = (Id::sha1_of(b"a"), "10.0.0.1:1".parse().unwrap());
        tables.get_mut(Family::V4).unwrap().insert_responded(a, a_addr, now);
        let mut search = Search::start(&tables, target, &LookupConfig::default(), &[]);
        // The IPv6 lookup, with no seed yet, waits for its sibling instead of finishing empty.
        let sends = search.step(now, std::time::Duration::from_secs(1), None, false);
        assert_eq!(sends, [(Family::V4, a, a_addr)], "only the IPv4 lookup has a seed");
        assert!(!search.is_finished());

        let (b, b_addr): (Id, SocketAddr) = (Id::sha1_of(b"b"), "10.0.0.2:1".parse().unwrap());
        let (c, c_addr): (Id, SocketAddr) = (Id::sha1_of(b"c"), "[::2]:1".parse().unwrap());
        let v4 = [(b, b_addr), (own, "10.0.0.9:1".parse().unwrap())];
        search.on_answer(Family::V4, a, own, (&v4, &[(c, c_addr)]), Some(b"token-a"));
        let sends = search.step(now, std::time::Duration::from_secs(1), None, false);
        assert!(sends.contains(&(Family::V4, b, b_addr)) && sends.contains(&(Family::V6, c, c_addr)), "{sends:?}");
        assert!(sends.iter().all(|(_, id, _)| *id != own));

        search.on_answer(Family::V4, b, own, (&[], &[]), None);
        assert_eq!(search.closest_with_tokens(8), [(a, a_addr, b"token-a".to_vec())]);
        let (nodes, stats) = search.summary();
        let mut expected = vec![(a, a_addr), (b, b_addr)];
        expected.sort_by_key(|(id, _)| id.distance(&target));
        assert_eq!((nodes, stats.successes), (expected, 2));

        search.on_failure(Family::V6, &c);
        assert!(search.step(now, std::time::Duration::from_secs(1), None, false).is_empty());
        assert!(search.is_finished());
    }
}
