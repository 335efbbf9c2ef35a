//! The smoothed round-trip time of each contact, for operators (`kadmos routing-table`, the
//! dashboard). Kept beside the routing table rather than in [`Contact`](super::Contact): a
//! contact is held to 48 bytes because the simulator runs 100,000 nodes in one process, and
//! this table costs 4 bytes a contact instead.
//!
//! Each entry is one `u32`: the last three bytes of the contact's ID (the leading bytes of the
//! IDs in one bucket are alike: they share a prefix with ours) and the RTT on a logarithmic
//! scale of 7% steps, from 1 µs to about 30 s (one byte; a display needs no more). The RTT is
//! smoothed as TCP smooths it: 7/8 of the old value and 1/8 of the sample. Two contacts of a
//! table of 200 share those 24 bits about once in a thousand tables, and would then show one
//! RTT. Entries are sorted, so a lookup is a binary search. Contacts that left the routing
//! tables are dropped whenever the side table has grown by half since the last such pruning,
//! which bounds it to one and a half times the contacts and replacements the tables hold.

use std::time::Duration;

use super::id::NodeId;

/// The ratio between two steps of the RTT scale.
const STEP: f64 = 1.07;

/// Entries kept at least before pruning is worth it.
const MIN_PRUNE_AT: usize = 32;

#[derive(Clone, Debug, Default)]
pub struct ContactRtts {
    /// `key << 8 | scaled rtt`, sorted.
    entries: Vec<u32>,
    /// Prune when `entries` reaches this length.
    prune_at: usize,
}

fn key(id: &NodeId) -> u32 {
    let bytes = id.as_bytes();
    u32::from_be_bytes([0, bytes[17], bytes[18], bytes[19]])
}

/// A duration on the one-byte scale.
fn encode(rtt: Duration) -> u32 {
    let micros = rtt.as_secs_f64() * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    (micros.ln() / STEP.ln()).round().min(255.0) as u32
}

fn decode(scaled: u32) -> Duration {
    Duration::from_secs_f64(STEP.powi(scaled as i32) / 1e6)
}

impl ContactRtts {
    /// Where the entry of `key` is, or would go.
    fn find(&self, key: u32) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&key, |e| e >> 8)
    }

    /// A request to `id` was answered after `sample`. `known` lists the contacts (and
    /// replacements) the routing tables hold; it is called only when pruning.
    pub fn observe<I: IntoIterator<Item = NodeId>>(
        &mut self,
        id: &NodeId,
        sample: Duration,
        known: impl FnOnce() -> I,
    ) {
        let key = key(id);
        if let Ok(i) = self.find(key) {
            let old = decode(self.entries[i] & 0xff);
            self.entries[i] = key << 8 | encode((old * 7 + sample) / 8);
            return;
        }
        if self.entries.len() >= self.prune_at.max(MIN_PRUNE_AT) {
            let mut kept: Vec<u32> = known().into_iter().map(|id| self::key(&id)).collect();
            kept.sort_unstable();
            self.entries.retain(|e| kept.binary_search(&(e >> 8)).is_ok());
            self.prune_at = self.entries.len() + self.entries.len() / 2;
            self.entries.shrink_to(self.prune_at);
        }
        // Grow by a quarter, not by doubling: this is memory every node holds.
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact((self.entries.len() / 4).max(8));
        }
        let i = self.find(key).unwrap_or_else(|i| i);
        self.entries.insert(i, key << 8 | encode(sample));
    }

    /// The smoothed round trip to `id` (within 3.5%), if one of our requests to it was
    /// answered.
    pub fn get(&self, id: &NodeId) -> Option<Duration> {
        let i = self.find(key(id)).ok()?;
        Some(decode(self.entries[i] & 0xff))
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

    fn close(got: Option<Duration>, micros: f64) -> bool {
        got.is_some_and(|d| (d.as_secs_f64() * 1e6 / micros - 1.0).abs() <= 0.036)
    }

    /// A contact's RTT is smoothed over its samples (within the scale's 3.5%), kept apart from
    /// other contacts', and unknown before the first answer; the scale spans loopback to
    /// timeouts.
    #[test]
    fn smooths_per_contact() {
        let mut rtts = ContactRtts::default();
        assert_eq!(rtts.get(&id(1)), None);
        rtts.observe(&id(1), Duration::from_millis(80), Vec::new);
        rtts.observe(&id(2), Duration::from_millis(5), Vec::new);
        assert!(close(rtts.get(&id(1)), 80_000.0), "{:?}", rtts.get(&id(1)));
        rtts.observe(&id(1), Duration::from_millis(160), Vec::new);
        assert!(close(rtts.get(&id(1)), 90_000.0), "7/8 of 80 + 1/8 of 160: {:?}", rtts.get(&id(1)));
        assert!(close(rtts.get(&id(2)), 5_000.0));
        rtts.observe(&id(3), Duration::from_secs(300), Vec::new);
        assert!(rtts.get(&id(3)).unwrap() > Duration::from_secs(25), "capped, not wrapped");
        rtts.observe(&id(4), Duration::from_micros(213), Vec::new);
        assert!(close(rtts.get(&id(4)), 213.0), "loopback round trips keep their scale");
        rtts.observe(&id(5), Duration::ZERO, Vec::new);
        assert!(rtts.get(&id(5)).unwrap() <= Duration::from_micros(1));
    }

    /// Contacts no longer in the routing table are dropped when the side table has grown by
    /// half, so it stays within a bound however many nodes come and go.
    #[test]
    fn drops_contacts_that_left() {
        let mut rtts = ContactRtts::default();
        // The table holds 10 contacts at any time; 2,000 nodes pass through it.
        for n in 0..2000u32 {
            let known = move || (n.saturating_sub(9)..=n).map(id);
            rtts.observe(&id(n), Duration::from_millis(u64::from(n % 100)), known);
            assert!(rtts.len() <= MIN_PRUNE_AT + 1, "{} entries at {n}", rtts.len());
        }
        assert!(rtts.get(&id(1999)).is_some());
        assert_eq!(rtts.get(&id(5)), None, "left long ago");
        assert!(rtts.entries.capacity() <= 2 * MIN_PRUNE_AT);
    }
}
