//! The smoothed round-trip time of each contact, for operators (`kadmos routing-table`, the
//! dashboard). Kept beside the routing table rather than in [`Contact`](super::Contact): a
//! contact is held to 48 bytes because the simulator runs 100,000 nodes in one process.
//!
//! Each entry is one `u64`: the last five bytes of the contact's ID (the leading bytes of the
//! IDs in one bucket are alike: they share a prefix with ours) and the RTT in microseconds
//! (smoothed as TCP smooths it, 7/8 of the old value and 1/8 of the sample; at most 16.7 s,
//! far beyond any request timeout). Two contacts of a table of a thousand sharing those 40
//! bits is a one-in-two-million chance (they would then show one RTT). Entries are sorted, so a lookup is a binary search and the table costs
//! 8 bytes a contact. Contacts that left the routing table are dropped whenever the side table
//! has grown to twice the size it had after the last such pruning, which bounds it to about
//! twice the contacts and replacements the routing tables hold.

use std::time::Duration;

use super::id::NodeId;

/// Bits of an entry holding the RTT (the rest hold the key).
const VALUE_BITS: u32 = 24;
const VALUE_MAX: u64 = (1 << VALUE_BITS) - 1;

/// Entries kept at least before pruning is worth it.
const MIN_PRUNE_AT: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct ContactRtts {
    /// `key << 24 | rtt_us`, sorted.
    entries: Vec<u64>,
    /// Prune when `entries` reaches this length.
    prune_at: usize,
}

fn key(id: &NodeId) -> u64 {
    let bytes = id.as_bytes();
    let mut tail = [0u8; 8];
    tail[3..].copy_from_slice(&bytes[bytes.len() - 5..]);
    u64::from_be_bytes(tail)
}

impl ContactRtts {
    /// Where the entry of `key` is, or would go.
    fn find(&self, key: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&key, |e| e >> VALUE_BITS)
    }

    /// A request to `id` was answered after `sample`. `known` lists the contacts (and
    /// replacements) the routing tables hold; it is called only when pruning.
    pub fn observe<I: IntoIterator<Item = NodeId>>(
        &mut self,
        id: &NodeId,
        sample: Duration,
        known: impl FnOnce() -> I,
    ) {
        let sample = sample.as_micros().min(u128::from(VALUE_MAX)) as u64;
        let key = key(id);
        if let Ok(i) = self.find(key) {
            let old = self.entries[i] & VALUE_MAX;
            self.entries[i] = key << VALUE_BITS | (old * 7 + sample).div_ceil(8);
            return;
        }
        if self.entries.len() >= self.prune_at.max(MIN_PRUNE_AT) {
            let mut kept: Vec<u64> = known().into_iter().map(|id| self::key(&id)).collect();
            kept.sort_unstable();
            self.entries.retain(|e| kept.binary_search(&(e >> VALUE_BITS)).is_ok());
            self.prune_at = self.entries.len() * 2;
            self.entries.shrink_to(self.prune_at);
        }
        // Grow by a quarter, not by doubling: this is memory every node holds.
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact((self.entries.len() / 4).max(8));
        }
        let i = self.find(key).unwrap_or_else(|i| i);
        self.entries.insert(i, key << VALUE_BITS | sample);
    }

    /// The smoothed round trip to `id`, if one of our requests to it was answered.
    pub fn get(&self, id: &NodeId) -> Option<Duration> {
        let i = self.find(key(id)).ok()?;
        Some(Duration::from_micros(self.entries[i] & VALUE_MAX))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> NodeId {
        let mut bytes = [0xabu8; 20];
        bytes[16..].copy_from_slice(&n.to_be_bytes());
        NodeId::from_bytes(&bytes).unwrap()
    }

    /// A contact's RTT is smoothed over its samples, kept apart from other contacts', and
    /// unknown before the first answer.
    #[test]
    fn smooths_per_contact() {
        let mut rtts = ContactRtts::default();
        assert_eq!(rtts.get(&id(1)), None);
        rtts.observe(&id(1), Duration::from_millis(80), Vec::new);
        rtts.observe(&id(2), Duration::from_millis(5), Vec::new);
        assert_eq!(rtts.get(&id(1)), Some(Duration::from_millis(80)));
        rtts.observe(&id(1), Duration::from_millis(160), Vec::new);
        assert_eq!(rtts.get(&id(1)), Some(Duration::from_millis(90)), "7/8 of 80 + 1/8 of 160");
        assert_eq!(rtts.get(&id(2)), Some(Duration::from_millis(5)));
        rtts.observe(&id(3), Duration::from_secs(300), Vec::new);
        assert_eq!(rtts.get(&id(3)), Some(Duration::from_micros(VALUE_MAX)), "capped, not wrapped");
        rtts.observe(&id(4), Duration::from_micros(213), Vec::new);
        assert_eq!(rtts.get(&id(4)), Some(Duration::from_micros(213)), "loopback round trips keep their microseconds");
    }

    /// Contacts no longer in the routing table are dropped when the side table has doubled,
    /// so it stays within about twice the table however many nodes come and go.
    #[test]
    fn drops_contacts_that_left() {
        let mut rtts = ContactRtts::default();
        // The table holds 10 contacts at any time; 2,000 nodes pass through it.
        for n in 0..2000u32 {
            let known = move || (n.saturating_sub(9)..=n).map(id);
            rtts.observe(&id(n), Duration::from_millis(u64::from(n % 100)), known);
            assert!(rtts.len() <= 2 * MIN_PRUNE_AT, "{} entries at {n}", rtts.len());
        }
        assert!(rtts.get(&id(1999)).is_some());
        assert_eq!(rtts.get(&id(5)), None, "left long ago");
        assert!(rtts.entries.capacity() <= 2 * MIN_PRUNE_AT);
    }
}
