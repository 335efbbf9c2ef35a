//! Background jobs: periodic maintenance, re-puts of kept items and republishing of stored
//! ones, and giving memory back after bursts.

use super::*;
use crate::kad::engine::engine_and_wire;

impl Node {
    pub(super) fn maintain(&mut self, now: Timestamp) {
        self.next_maintenance = now + self.config.maintenance_interval;
        self.tokens.maybe_rotate(now, &mut self.engine.rng);
        self.peers.expire(now);
        self.items.expire(now);
        self.refresh_kept(now);
        self.republish_stored(now);
        self.shrink_buffers();
        self.out.limiter.forget_quiet_sources(now);
        if let Some(reachability) = &mut self.out.reachability {
            reachability.tick(now);
        }
        let (engine, wire) = engine_and_wire!(self);
        engine.start_due_refreshes(now, wire, &self.config.lookup);
    }

    /// Gives back memory that bursts (joining, refreshes) left in queues and maps: a node is
    /// mostly idle, and the simulator holds 100,000 of them.
    pub(super) fn shrink_buffers(&mut self) {
        self.engine.shrink();
        self.out.transmits.release_when_drained();
        self.events.shrink_to_fit();
        if let Some(quests) = &mut self.quests {
            quests.compact();
        }
        // An emptied BTreeMap keeps its last node allocated; a fresh one holds nothing.
        if self.background.is_empty() {
            self.background = BTreeMap::new();
        }
        if self.republished.is_empty() {
            self.republished = BTreeMap::new();
        }
    }

    /// With `republish_interval`, re-puts stored items last (re)published that long ago, as
    /// background operations (no events). Targets are taken in order, for determinism.
    pub(super) fn republish_stored(&mut self, now: Timestamp) {
        let Some(interval) = self.config.republish_interval else { return };
        let items = &self.items;
        self.republished.retain(|target, _| items.get(target, now).is_some());
        let mut due: Vec<(Id, Item)> = self
            .items
            .iter()
            .filter(|s| {
                let since = self.republished.get(&s.item.target()).copied().unwrap_or(s.put_at);
                now.saturating_since(since) >= interval
            })
            .map(|s| (s.item.target(), s.item.clone()))
            .collect();
        due.sort_unstable_by_key(|(target, _)| *target);
        for (target, item) in due {
            self.republished.insert(target, now);
            let query = Query::Get { target, seq: None, want: self.want() };
            let op = self.start_store(StoreRequest::Item { item, cas: None }, target, query);
            self.republishing.insert(op);
        }
    }

    /// Re-puts kept items that are due. A re-put that reaches nobody is retried after
    /// `keep_alive_retry` (see `finish`).
    pub(super) fn refresh_kept(&mut self, now: Timestamp) {
        let due: Vec<Id> = self.kept.iter().filter(|(_, k)| k.next_put <= now).map(|(t, _)| *t).collect();
        for target in due {
            let kept = self.kept.get_mut(&target).expect("listed above");
            kept.next_put = now + self.config.keep_alive_interval;
            let item = kept.item.clone();
            let query = Query::Get { target, seq: None, want: self.want() };
            let op = self.start_store(StoreRequest::Item { item, cas: None }, target, query);
            self.background.insert(op, target);
        }
    }
}
