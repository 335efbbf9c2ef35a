//! A map whose entries each have a next deadline, that tells its earliest deadline and which
//! entries are due without looking at every entry: what a node's `poll_timeout` and
//! `handle_timeout` read for a collection of timed things (fragment sets waiting for their
//! parts, listens, kept puts, quests).
//!
//! Every change to an entry goes through the map ([`DeadlineMap::insert`],
//! [`DeadlineMap::update`], [`DeadlineMap::for_each_mut`]), which reads the entry's deadline
//! again afterwards and queues it in a [`TimerQueue`] when it moved. A queued deadline is live
//! while the entry still has it; the others are dropped when they reach the top, so asking
//! for the earliest costs a peek and a lookup, not a scan, and the due entries cost a pop each.

use std::collections::{BTreeMap, BTreeSet};

use super::timers::TimerQueue;
use crate::time::Timestamp;

/// Something with a next deadline (none: nothing to do until it changes).
pub(crate) trait Scheduled {
    fn next_deadline(&self) -> Option<Timestamp>;
}

#[derive(Clone, Debug)]
struct Entry<V> {
    value: V,
    /// The deadline queued for it, as `value` gave it when last changed.
    due: Option<Timestamp>,
}

/// Entries by key, with the earliest of their deadlines at hand.
#[derive(Clone, Debug)]
pub(crate) struct DeadlineMap<K: Ord, V> {
    entries: BTreeMap<K, Entry<V>>,
    timers: TimerQueue<K>,
}

impl<K: Ord, V> Default for DeadlineMap<K, V> {
    fn default() -> Self {
        DeadlineMap { entries: BTreeMap::new(), timers: TimerQueue::default() }
    }
}

impl<K: Ord + Copy, V: Scheduled> DeadlineMap<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|e| &e.value)
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, e)| (k, &e.value))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|e| &e.value)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let due = value.next_deadline();
        if let Some(at) = due {
            self.timers.push(at, key);
        }
        self.entries.insert(key, Entry { value, due }).map(|e| e.value)
    }

    /// Removes an entry; its queued deadline goes stale.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|e| e.value)
    }

    /// Changes the entry of `key`, if there is one, and reads its deadline again; gives back
    /// what `change` returns.
    pub(crate) fn update<R>(&mut self, key: &K, change: impl FnOnce(&mut V) -> R) -> Option<R> {
        let entry = self.entries.get_mut(key)?;
        let result = change(&mut entry.value);
        requeue(*key, entry, &mut self.timers);
        Some(result)
    }

    /// Changes every entry in key order, reading each one's deadline again.
    pub(crate) fn for_each_mut(&mut self, mut change: impl FnMut(&K, &mut V)) {
        for (key, entry) in &mut self.entries {
            change(key, &mut entry.value);
            requeue(*key, entry, &mut self.timers);
        }
    }

    /// The earliest deadline of all entries.
    pub(crate) fn earliest(&mut self) -> Option<Timestamp> {
        let entries = &self.entries;
        self.timers.earliest(|at, key| entries.get(key).is_some_and(|e| e.due == Some(at)))
    }

    /// The keys of the entries due at `now` (their deadline is at or before it), each once and
    /// in key order, so that handling them draws randomness in the order a walk over every
    /// entry would. Costs a pop per due deadline, not a scan: the entries' deadlines stay
    /// queued (handling an entry changes it through the map, which queues its new deadline).
    pub(crate) fn due_keys(&mut self, now: Timestamp) -> Vec<K> {
        let mut due = BTreeSet::new();
        let mut live = Vec::new();
        while let Some((at, key)) = self.timers.pop_due(now) {
            if self.entries.get(&key).is_some_and(|e| e.due == Some(at)) && due.insert(key) {
                live.push((at, key));
            }
        }
        for (at, key) in live {
            self.timers.push(at, key);
        }
        due.into_iter().collect()
    }

    /// Drops the stale deadlines still queued and gives back memory (for periodic upkeep:
    /// a deadline moved earlier leaves its later one queued until that time comes).
    pub(crate) fn compact(&mut self) {
        let entries = &self.entries;
        self.timers.retain(|at, key| entries.get(key).is_some_and(|e| e.due == Some(at)));
    }
}

fn requeue<K: Ord + Copy, V: Scheduled>(key: K, entry: &mut Entry<V>, timers: &mut TimerQueue<K>) {
    let due = entry.value.next_deadline();
    if due != entry.due {
        entry.due = due;
        if let Some(at) = due {
            timers.push(at, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thing due at a time, or never.
    #[derive(Clone, Debug)]
    struct Task(Option<u64>);

    impl Scheduled for Task {
        fn next_deadline(&self) -> Option<Timestamp> {
            self.0.map(Timestamp::from_micros)
        }
    }

    fn brute_force(map: &DeadlineMap<u32, Task>) -> Option<Timestamp> {
        map.values().filter_map(Scheduled::next_deadline).min()
    }

    /// The earliest deadline follows every kind of change (insert, update, change of all,
    /// removal), and stays the minimum over the entries.
    #[test]
    fn earliest_follows_changes() {
        let t = Timestamp::from_micros;
        let mut map = DeadlineMap::default();
        assert_eq!(map.earliest(), None);
        map.insert(1u32, Task(Some(30)));
        map.insert(2, Task(Some(10)));
        map.insert(3, Task(None));
        assert_eq!(map.earliest(), Some(t(10)));
        map.update(&2, |task| task.0 = Some(50));
        assert_eq!(map.earliest(), Some(t(30)));
        map.update(&3, |task| task.0 = Some(5));
        assert_eq!(map.earliest(), Some(t(5)));
        map.remove(&3);
        assert_eq!(map.earliest(), Some(t(30)));
        map.for_each_mut(|k, task| task.0 = Some(100 - u64::from(*k)));
        assert_eq!(map.earliest(), Some(t(98)));
        map.remove(&2);
        assert_eq!(map.earliest(), Some(t(99)));
        map.update(&1, |task| task.0 = None);
        assert_eq!(map.earliest(), None);
        assert_eq!(brute_force(&map), None);
    }

    /// A deadline that moves back to a time it had before is still found, and compacting
    /// keeps exactly the live deadlines.
    #[test]
    fn deadline_moved_back_and_compacted() {
        let t = Timestamp::from_micros;
        let mut map = DeadlineMap::default();
        map.insert(7u32, Task(Some(20)));
        map.update(&7, |task| task.0 = Some(40));
        map.update(&7, |task| task.0 = Some(20));
        assert_eq!(map.earliest(), Some(t(20)));
        map.update(&7, |task| task.0 = Some(60));
        map.compact();
        assert_eq!(map.earliest(), Some(t(60)));
    }

    /// The due keys are exactly the entries whose deadline has come, in key order, each once
    /// however often its deadline moved; asking does not lose a deadline that is left as it was.
    #[test]
    fn due_keys_are_the_entries_whose_time_has_come() {
        let t = Timestamp::from_micros;
        let mut map = DeadlineMap::default();
        map.insert(5u32, Task(Some(30)));
        map.insert(1, Task(Some(10)));
        map.insert(3, Task(Some(50)));
        map.insert(4, Task(None));
        map.update(&1, |task| task.0 = Some(40));
        map.update(&1, |task| task.0 = Some(20));
        assert_eq!(map.due_keys(t(9)), Vec::<u32>::new());
        assert_eq!(map.due_keys(t(30)), vec![1, 5]);
        // Nothing was handled: both are still due, and the earliest deadline still shows.
        assert_eq!(map.earliest(), Some(t(20)));
        assert_eq!(map.due_keys(t(30)), vec![1, 5]);
        map.update(&1, |task| task.0 = Some(60));
        map.remove(&5);
        assert_eq!(map.due_keys(t(55)), vec![3]);
        assert_eq!(map.earliest(), Some(t(50)));
    }

    /// Over a long run of random changes, the earliest deadline always equals the minimum
    /// over all entries, computed the slow way.
    #[test]
    fn matches_a_scan_under_random_changes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut map = DeadlineMap::default();
        for step in 0..5_000 {
            let key: u32 = rng.gen_range(0..40);
            let deadline = rng.gen_bool(0.8).then(|| rng.gen_range(0..1_000u64));
            match rng.gen_range(0..5) {
                0 => {
                    map.insert(key, Task(deadline));
                }
                1 => {
                    map.remove(&key);
                }
                2 => {
                    map.update(&key, |task| task.0 = deadline);
                }
                3 => map.for_each_mut(|k, task| {
                    if k % 7 == key % 7 {
                        task.0 = task.0.map(|d| d + 1);
                    }
                }),
                // Drop what is due, as a node drops fragment sets whose time ran out.
                _ => {
                    for due in map.due_keys(Timestamp::from_micros(u64::from(key) * 25)) {
                        map.remove(&due);
                    }
                }
            }
            if step % 500 == 0 {
                map.compact();
            }
            assert_eq!(map.earliest(), brute_force(&map), "step {step}");
            let now = Timestamp::from_micros(rng.gen_range(0..1_000u64));
            let scanned: Vec<u32> = map
                .iter()
                .filter(|(_, task)| task.next_deadline().is_some_and(|at| at <= now))
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(map.due_keys(now), scanned, "step {step}");
        }
    }
}
