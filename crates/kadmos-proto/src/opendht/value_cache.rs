//! What a listening client believes a key holds, built from what several storing nodes told it.
//!
//! Facts from savoirfairelinux/opendht src/value_cache.h (`ValueCache`) and src/op_cache.h: each
//! storing node's values are kept until the node says they expired (`exp`), or until their type's
//! expiration passes without a refresh (`re`, or the value sent again). A value is reported to
//! the user once, when the first node has it, and reported expired once no node holds it any
//! more. kadmos keeps one cache per listen with the holders of each value, which gives the same
//! result as OpenDHT's cache per node plus reference counts.
//!
//! A signed value sent with a higher `seq` replaces the cached one and is reported again (an
//! edit); any other value with a known id only counts as a refresh from its sender. At most
//! [`ValueCache::new`]'s `max_values` values are kept (OpenDHT: 4096); beyond, the value first
//! seen longest ago is dropped and reported expired.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::value::{Value, ValueId};
use crate::time::Timestamp;

/// Who told us about a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Holder {
    /// Our own storage.
    Local,
    /// A storing node we listen to.
    Node(SocketAddr),
}

#[derive(Clone, Debug)]
struct Cached {
    value: Value,
    first_seen: Timestamp,
    holders: BTreeMap<Holder, Timestamp>,
}

/// A change to report to the user: `(value, expired)`.
pub(crate) type CacheChange = (Value, bool);

/// The values of one listened key. See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct ValueCache {
    values: BTreeMap<ValueId, Cached>,
    /// (holder expiry, value, holder), to expire in order.
    expiries: BTreeSet<(Timestamp, ValueId, Holder)>,
    max_values: usize,
}

impl ValueCache {
    pub(crate) fn new(max_values: usize) -> ValueCache {
        ValueCache { values: BTreeMap::new(), expiries: BTreeSet::new(), max_values: max_values.max(1) }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The earliest moment a holder's claim runs out.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(t, _, _)| *t)
    }

    fn set_holder(&mut self, id: ValueId, holder: Holder, until: Timestamp) {
        let Some(cached) = self.values.get_mut(&id) else { return };
        if let Some(old) = cached.holders.insert(holder, until) {
            self.expiries.remove(&(old, id, holder));
        }
        self.expiries.insert((until, id, holder));
    }

    fn drop_value(&mut self, id: ValueId) -> Option<Value> {
        let cached = self.values.remove(&id)?;
        for (holder, t) in &cached.holders {
            self.expiries.remove(&(*t, id, *holder));
        }
        Some(cached.value)
    }

    /// `holder` has `value`, which it keeps until `until` unless refreshed.
    pub(crate) fn add(&mut self, value: Value, holder: Holder, until: Timestamp, now: Timestamp) -> Vec<CacheChange> {
        let id = value.id;
        let mut changes = Vec::new();
        match self.values.get_mut(&id) {
            Some(cached) => {
                let edit = value.is_signed() && value.owner == cached.value.owner && value.seq > cached.value.seq;
                if edit {
                    cached.value = value.clone();
                    changes.push((value, false));
                }
            }
            None => {
                if self.values.len() >= self.max_values {
                    let oldest = self.values.iter().min_by_key(|(id, c)| (c.first_seen, **id)).map(|(id, _)| *id);
                    if let Some(gone) = oldest.and_then(|id| self.drop_value(id)) {
                        changes.push((gone, true));
                    }
                }
                self.values.insert(id, Cached { value: value.clone(), first_seen: now, holders: BTreeMap::new() });
                changes.push((value, false));
            }
        }
        self.set_holder(id, holder, until);
        changes
    }

    /// `holder` refreshed value `id` (`re`); it now keeps it until `until`.
    pub(crate) fn refresh(&mut self, id: ValueId, holder: Holder, until: Timestamp) {
        if self.values.get(&id).is_some_and(|c| c.holders.contains_key(&holder)) {
            self.set_holder(id, holder, until);
        }
    }

    /// The value a holder refreshes lives this long (by the cached value's type).
    pub(crate) fn expiration_of(&self, id: ValueId) -> Option<std::time::Duration> {
        self.values.get(&id).map(|c| c.value.expiration())
    }

    /// `holder` no longer has value `id` (`exp`): reported expired when nobody else has it.
    pub(crate) fn remove(&mut self, id: ValueId, holder: Holder) -> Option<CacheChange> {
        let cached = self.values.get_mut(&id)?;
        let t = cached.holders.remove(&holder)?;
        self.expiries.remove(&(t, id, holder));
        if cached.holders.is_empty() {
            return self.drop_value(id).map(|v| (v, true));
        }
        None
    }

    /// Drops claims that ran out; returns the values nobody holds any more.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<CacheChange> {
        let mut changes = Vec::new();
        while let Some((t, id, holder)) = self.expiries.first().copied() {
            if t > now {
                break;
            }
            match self.remove(id, holder) {
                Some(change) => changes.push(change),
                None => {
                    self.expiries.remove(&(t, id, holder));
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(i: u8) -> Holder {
        Holder::Node(SocketAddr::from(([10, 0, 0, i], 4222)))
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_secs(secs)
    }

    /// A value is reported once when first held, expired once its last holder drops it (by
    /// `exp` or by running out), and refreshes keep a holder's claim alive.
    #[test]
    fn reported_once_expired_when_nobody_holds_it() {
        let mut c = ValueCache::new(16);
        let v = Value::new(1, 0, *b"x");
        assert_eq!(c.add(v.clone(), node(1), at(600), at(0)), vec![(v.clone(), false)]);
        assert!(c.add(v.clone(), node(2), at(100), at(0)).is_empty());
        assert_eq!(c.remove(1, node(1)), None, "node 2 still has it");
        c.refresh(1, node(2), at(700));
        assert!(c.expire(at(600)).is_empty());
        assert_eq!(c.expire(at(700)), vec![(v, true)]);
        assert!(c.is_empty() && c.next_expiry().is_none());
    }

    /// A signed value with a higher seq is reported again; the cache never exceeds its size,
    /// dropping (and reporting expired) the value seen first.
    #[test]
    fn edits_and_size_bound() {
        let mut c = ValueCache::new(2);
        let signed = |seq| Value { id: 5, owner: Some(vec![1]), signature: vec![seq as u8], seq, ..Value::default() };
        c.add(signed(1), node(1), at(600), at(0));
        assert_eq!(c.add(signed(2), node(1), at(600), at(1)), vec![(signed(2), false)]);
        assert!(c.add(signed(1), node(2), at(600), at(1)).is_empty());
        c.add(Value::new(6, 0, *b"a"), node(1), at(600), at(2));
        let changes = c.add(Value::new(7, 0, *b"b"), node(1), at(600), at(3));
        assert_eq!(changes, vec![(signed(2), true), (Value::new(7, 0, *b"b"), false)]);
        assert_eq!(c.len(), 2);
    }
}
