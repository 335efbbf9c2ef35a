//! A queue of deadlines whose entries may go stale, shared by both nodes (request timeouts,
//! lookup wake-ups).
//!
//! Cancelling an entry in a binary heap costs a search, so entries are never removed when the
//! thing they time goes away; instead the owner says which entries are still live, and stale
//! ones are dropped when they reach the top (or in a periodic [`TimerQueue::retain`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Timestamp;

#[derive(Clone, Debug)]
pub(crate) struct TimerQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Timestamp, K)>>,
}

impl<K: Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { heap: BinaryHeap::new() }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    pub(crate) fn push(&mut self, at: Timestamp, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest live deadline; stale entries met on the way are dropped.
    pub(crate) fn earliest(&mut self, live: impl Fn(Timestamp, &K) -> bool) -> Option<Timestamp> {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if live(*at, key) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest entry if it is due at `now` (live or not: the caller checks).
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// Drops stale entries and gives back memory.
    pub(crate) fn retain(&mut self, live: impl Fn(Timestamp, &K) -> bool) {
        self.heap.retain(|Reverse((at, key))| live(*at, key));
        self.heap.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stale entries never surface as the earliest deadline, and due entries come out in order.
    #[test]
    fn stale_entries_are_skipped() {
        let t = Timestamp::from_micros;
        let mut q = TimerQueue::default();
        q.push(t(30), 3u32);
        q.push(t(10), 1);
        q.push(t(20), 2);
        assert_eq!(q.earliest(|_, k| *k != 1), Some(t(20)));
        assert_eq!(q.pop_due(t(19)), None);
        assert_eq!(q.pop_due(t(25)), Some((t(20), 2)));
        q.retain(|_, k| *k != 3);
        assert_eq!(q.earliest(|_, _| true), None);
    }
}
