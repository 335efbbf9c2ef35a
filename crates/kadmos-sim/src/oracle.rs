//! The ground truth lookups are measured against: the IDs of every live, reachable node,
//! kept sorted, and the true `k` closest of them to any target.
//!
//! Implementation note: all IDs sharing the first `p` bits with the target are closer to it
//! than any ID that does not, and they form one contiguous range of the sorted IDs. So the
//! `k` closest lie in the narrowest such range holding at least `k` IDs, found with binary
//! searches; only that range (about 2k IDs) is sorted by distance.

use kadmos_proto::{Id, NodeId};

use crate::network::NodeIndex;

/// Live nodes that a lookup can reach (not behind a NAT), sorted by ID.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    sorted: Vec<(NodeId, NodeIndex)>,
}

/// `id` with every bit from `prefix_len` on set to `fill`.
fn with_suffix(id: &Id, prefix_len: usize, fill: bool) -> Id {
    let mut out = *id;
    for bit in prefix_len..160 {
        let mask = 0x80u8 >> (bit % 8);
        if fill {
            out.0[bit / 8] |= mask;
        } else {
            out.0[bit / 8] &= !mask;
        }
    }
    out
}

impl Oracle {
    pub fn insert(&mut self, id: NodeId, node: NodeIndex) {
        let at = self.sorted.partition_point(|(i, _)| *i < id);
        self.sorted.insert(at, (id, node));
    }

    pub fn remove(&mut self, id: &NodeId) {
        let at = self.sorted.partition_point(|(i, _)| i < id);
        if self.sorted.get(at).is_some_and(|(i, _)| i == id) {
            self.sorted.remove(at);
        }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `k` live reachable nodes closest to `target`, closest first, with their indexes,
    /// leaving out `except` (the node that looks up: a lookup never returns itself).
    pub fn closest(&self, target: &Id, k: usize, except: &NodeId) -> Vec<(NodeId, NodeIndex)> {
        let want = k + 1; // one more, in case `except` is among them
        let range = |p: usize| {
            let lo = with_suffix(target, p, false);
            let hi = with_suffix(target, p, true);
            let start = self.sorted.partition_point(|(i, _)| *i < lo);
            let end = self.sorted.partition_point(|(i, _)| *i <= hi);
            start..end
        };
        // Longest shared prefix whose range still holds `want` IDs (p = 0 holds them all).
        let (mut good, mut bad) = (0usize, 161usize);
        while bad - good > 1 {
            let mid = (good + bad) / 2;
            if range(mid).len() >= want {
                good = mid;
            } else {
                bad = mid;
            }
        }
        let mut nodes: Vec<(NodeId, NodeIndex)> =
            self.sorted[range(good)].iter().copied().filter(|(i, _)| i != except).collect();
        nodes.sort_unstable_by_key(|(i, _)| i.distance(target));
        nodes.truncate(k);
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The oracle's k closest equal a brute-force sort of all IDs by distance.
    #[test]
    fn closest_matches_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut oracle = Oracle::default();
        let ids: Vec<Id> = (0..1000).map(|_| Id::random(&mut rng)).collect();
        for (i, id) in ids.iter().enumerate() {
            oracle.insert(*id, i as NodeIndex);
        }
        for id in ids.iter().step_by(7) {
            oracle.remove(id);
        }
        let live: Vec<Id> = ids.iter().enumerate().filter(|(i, _)| i % 7 != 0).map(|(_, id)| *id).collect();
        for round in 0..100 {
            let target = if round % 2 == 0 { Id::random(&mut rng) } else { live[round] };
            let except = live[round * 3];
            let mut truth: Vec<Id> = live.iter().copied().filter(|i| *i != except).collect();
            truth.sort_by_key(|i| i.distance(&target));
            truth.truncate(8);
            let closest: Vec<Id> = oracle.closest(&target, 8, &except).into_iter().map(|(id, _)| id).collect();
            assert_eq!(closest, truth);
        }
        assert_eq!(oracle.len(), live.len());
    }
}
