use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::query::{FieldValue, Query};
use super::value::{Value, ValueId, INVALID_VALUE_ID, MAX_VALUE_SIZE};
use super::verifier::SignatureVerifier;
use crate::kad::Id;
use crate::time::Timestamp;

/// Who stored a value: our own user, or a remote node (by IP address, for quotas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Our own user, through this node's API.
    Local,
    /// A remote node, at this IP address.
    Remote(IpAddr),
}

/// Where a stored value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub source: Source,
    /// When the value was first put (taken as `now` if later).
    pub created: Timestamp,
    /// Never expires here (honoured for [`Source::Local`] only).
    pub permanent: bool,
}

/// Storage limits. See [`Storage`] for what happens at each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Values under one key. Default 1024.
    pub max_values_per_key: usize,
    /// Keys holding values. Default 16,384.
    pub max_keys: usize,
    /// Bytes of values stored for remote nodes (by [`Value::size`]). Default 64 MiB.
    pub max_remote_bytes: usize,
    /// Bytes of values our own user stored. Default 64 MiB.
    pub max_local_bytes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_values_per_key: 1024,
            max_keys: 16_384,
            max_remote_bytes: 64 << 20,
            max_local_bytes: 64 << 20,
        }
    }
}

/// One stored value and its bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// The value.
    pub value: Value,
    /// Who stored it.
    pub source: Source,
    /// When it was stored or last refreshed.
    pub created: Timestamp,
    /// When it expires; `None` for a permanent value of our own user.
    pub expires: Option<Timestamp>,
}

/// Why a value was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The value id is 0.
    #[error("value id 0 is invalid")]
    InvalidId,
    /// The value is larger than [`MAX_VALUE_SIZE`].
    #[error("value larger than {MAX_VALUE_SIZE} bytes")]
    TooBig,
    /// The value has already expired.
    #[error("value already expired")]
    Expired,
    /// The stored value with that id is unsigned, so it cannot be replaced.
    #[error("the stored value is unsigned and cannot be edited")]
    EditForbidden,
    /// The stored value is signed by another owner, or the new one is unsigned.
    #[error("the stored value is signed by another owner, or the new one is unsigned")]
    NotOwner,
    /// The new version's sequence number is not higher than the stored one's.
    #[error("sequence number not higher than the stored one")]
    SeqNotHigher,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The key holds [`StorageConfig::max_values_per_key`] values.
    #[error("key holds the maximum number of values")]
    KeyFull,
    /// [`StorageConfig::max_keys`] keys hold values.
    #[error("maximum number of keys reached")]
    TooManyKeys,
    /// Our own user's values reached [`StorageConfig::max_local_bytes`].
    #[error("local storage limit reached")]
    LocalQuota,
    /// The value type's store policy refused it.
    #[error("refused by its type's store policy")]
    StorePolicy,
}

/// What a store did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A new value, or a new version of one (`edited`): listeners hear of it.
    Stored {
        /// Whether it replaced an older version of the value.
        edited: bool,
    },
    /// The same value again: its life was extended (listeners hear `re`).
    Refreshed,
    /// Not stored, and why.
    Refused(Refusal),
}

/// The outcome of a store and the values it evicted (key, value) to make room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoreResult {
    pub outcome: StoreOutcome,
    pub evicted: Vec<(Id, Value)>,
}

/// What a `refresh` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    Refreshed,
    /// The key holds values, not this one.
    UnknownValue,
    /// Nothing stored under the key.
    UnknownKey,
}

#[derive(Clone, Debug, Default)]
struct SourceUsage {
    bytes: usize,
    /// Values of this source by expiry (permanent ones last), for eviction.
    by_expiry: BTreeSet<(Timestamp, Id, ValueId)>,
}

const NEVER: Timestamp = Timestamp::from_micros(u64::MAX);

/// The values a node stores.
///
/// What an OpenDHT node stores: many values per key, each until its type's expiration, within hard
/// limits.
///
/// Facts from savoirfairelinux/opendht src/storage.h (`Storage::store`, `refresh`, `expire`,
/// `StorageBucket`) and src/dht.cpp (`storageStore`, `onAnnounce`, `storageRefresh`,
/// `expireStore`), src/securedht.cpp (`secureType`) and include/opendht/value.h:
///
/// - A value lives `created + expiration of its type` (10 minutes for USER_DATA and unknown
///   types, see [`ValueType`](super::value::ValueType)); a value our own user put as permanent
///   lives here until cancelled.
/// - A `put` of a value id already stored under the key: with the same content it only extends
///   the value's life (a *refresh*, to `max(old expiry, now + expiration)`); otherwise it is an
///   *edit*, refused for unsigned values, and allowed for a signed value only when the new value
///   is signed by the same owner with a higher `seq` (or the same `seq` and the same signed
///   body). Signatures are checked through [`SignatureVerifier`].
/// - Limits, each with its default and what happens at the limit:
///   - [`StorageConfig::max_values_per_key`] (1024; OpenDHT: 65,536): a newcomer takes the slot of
///     the value expiring soonest among those of the source holding most values under the key, if
///     that source holds at least two more than the newcomer's source; otherwise it is refused.
///     (OpenDHT refuses at the limit, which lets one address fill a key for everybody.)
///   - [`StorageConfig::max_keys`] (16,384): values under a new key are refused.
///   - [`StorageConfig::max_remote_bytes`] (64 MiB, as OpenDHT; bytes by
///     [`Value::size`]): after a store that goes over, values are evicted from the source using
///     the most bytes, the one expiring soonest first, until under the limit (OpenDHT's rule).
///     Sources are IP addresses; OpenDHT counts per address *and port*, which lets one host
///     escape its share by changing ports.
///   - [`StorageConfig::max_local_bytes`] (64 MiB; OpenDHT: unlimited): values of our own user
///     beyond it are refused. They do not count against the remote limit and are never evicted.
/// - Every eviction and expiry is reported to the caller, so that listeners hear of it.
#[derive(Clone, Debug, Default)]
pub struct Storage {
    config: StorageConfig,
    keys: BTreeMap<Id, BTreeMap<ValueId, StoredValue>>,
    expiries: BTreeSet<(Timestamp, Id, ValueId)>,
    /// Ordered so that eviction picks deterministically among equals.
    sources: BTreeMap<Source, SourceUsage>,
    remote_bytes: usize,
    local_bytes: usize,
    values: usize,
}

impl Storage {
    pub(crate) fn new(config: StorageConfig) -> Storage {
        Storage { config, ..Storage::default() }
    }

    /// The limits the storage was made with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Number of values stored.
    pub fn len(&self) -> usize {
        self.values
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.values == 0
    }

    /// Number of keys holding values.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Bytes stored for remote nodes.
    pub fn remote_bytes(&self) -> usize {
        self.remote_bytes
    }

    /// Bytes stored for our own user.
    pub fn local_bytes(&self) -> usize {
        self.local_bytes
    }

    /// The values under `key` that pass `query`'s filters, in id order.
    pub fn get<'a>(&'a self, key: &Id, query: Option<&'a Query>) -> impl Iterator<Item = &'a Value> + 'a {
        // A condition on the id (every put's probe has one) picks at most one value: looked up,
        // not found by walking the key's values (up to a thousand at a busy key).
        let id = query.and_then(|q| {
            q.filters.iter().find_map(|c| match c {
                FieldValue::Id(id) => Some(*id),
                _ => None,
            })
        });
        self.keys
            .get(key)
            .into_iter()
            .flat_map(move |values| match id {
                Some(id) => values.range(id..=id),
                None => values.range(..),
            })
            .map(|(_, s)| &s.value)
            .filter(move |v| query.is_none_or(|q| q.matches(v)))
    }

    /// The value `id` under `key`, with its bookkeeping.
    pub fn get_stored(&self, key: &Id, id: ValueId) -> Option<&StoredValue> {
        self.keys.get(key)?.get(&id)
    }

    /// Every stored value by key, for saving state.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &StoredValue)> {
        self.keys.iter().flat_map(|(k, values)| values.values().map(move |s| (k, s)))
    }

    /// When the next value expires.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(t, _, _)| *t)
    }

    fn add_to_indices(&mut self, key: Id, stored: &StoredValue) {
        let size = stored.value.size();
        if let Some(t) = stored.expires {
            self.expiries.insert((t, key, stored.value.id));
        }
        let usage = self.sources.entry(stored.source).or_default();
        usage.bytes += size;
        usage.by_expiry.insert((stored.expires.unwrap_or(NEVER), key, stored.value.id));
        match stored.source {
            Source::Local => self.local_bytes += size,
            Source::Remote(_) => self.remote_bytes += size,
        }
        self.values += 1;
    }

    fn remove_from_indices(&mut self, key: Id, stored: &StoredValue) {
        let size = stored.value.size();
        if let Some(t) = stored.expires {
            self.expiries.remove(&(t, key, stored.value.id));
        }
        if let Some(usage) = self.sources.get_mut(&stored.source) {
            usage.bytes -= size;
            usage.by_expiry.remove(&(stored.expires.unwrap_or(NEVER), key, stored.value.id));
            if usage.by_expiry.is_empty() {
                self.sources.remove(&stored.source);
            }
        }
        match stored.source {
            Source::Local => self.local_bytes -= size,
            Source::Remote(_) => self.remote_bytes -= size,
        }
        self.values -= 1;
    }

    /// Takes a value out (for eviction, expiry or cancellation).
    pub(crate) fn remove(&mut self, key: &Id, id: ValueId) -> Option<Value> {
        let values = self.keys.get_mut(key)?;
        let stored = values.remove(&id)?;
        if values.is_empty() {
            self.keys.remove(key);
        }
        self.remove_from_indices(*key, &stored);
        Some(stored.value)
    }

    fn replace(&mut self, key: Id, stored: StoredValue) {
        if let Some(old) = self.keys.get(&key).and_then(|values| values.get(&stored.value.id)).cloned() {
            self.remove_from_indices(key, &old);
        }
        self.add_to_indices(key, &stored);
        self.keys.entry(key).or_default().insert(stored.value.id, stored);
    }

    /// Stores `value` under `key` (see [`Storage`] for the rules).
    pub(crate) fn store(
        &mut self,
        key: Id,
        value: Value,
        origin: Origin,
        now: Timestamp,
        verifier: &dyn SignatureVerifier,
    ) -> StoreResult {
        let Origin { source, created, permanent } = origin;
        let refused = |r| StoreResult { outcome: StoreOutcome::Refused(r), evicted: Vec::new() };
        if value.id == INVALID_VALUE_ID {
            return refused(Refusal::InvalidId);
        }
        if value.size() > MAX_VALUE_SIZE {
            return refused(Refusal::TooBig);
        }
        let created = created.min(now);
        let permanent = permanent && source == Source::Local;
        let expires = (!permanent).then(|| created + value.expiration());
        if expires.is_some_and(|t| t <= now) {
            return refused(Refusal::Expired);
        }
        if let Some(old) = self.get_stored(&key, value.id).cloned() {
            if old.value.content_equals(&value) {
                // The same value again: a refresh. Our own user's put makes it ours (and
                // permanent if asked).
                let expires = match (old.expires, expires) {
                    (None, _) if old.source == Source::Local => None,
                    (_, None) => None,
                    (old_t, Some(new_t)) => Some(old_t.map_or(new_t, |o| o.max(new_t))),
                };
                let source = if source == Source::Local { Source::Local } else { old.source };
                self.replace(key, StoredValue { value: old.value, source, created: now, expires });
                return StoreResult { outcome: StoreOutcome::Refreshed, evicted: Vec::new() };
            }
            if let Err(refusal) = may_edit(&old.value, &value, verifier) {
                return refused(refusal);
            }
            if source == Source::Local
                && self.local_bytes - old_local_size(&old) + value.size() > self.config.max_local_bytes
            {
                return refused(Refusal::LocalQuota);
            }
            self.replace(key, StoredValue { value, source, created, expires });
            let evicted = self.enforce_remote_limit();
            return StoreResult { outcome: StoreOutcome::Stored { edited: true }, evicted };
        }
        if value.is_signed() && !verifier.verify(&value) {
            return refused(Refusal::BadSignature);
        }
        if !self.keys.contains_key(&key) && self.keys.len() >= self.config.max_keys {
            return refused(Refusal::TooManyKeys);
        }
        if source == Source::Local && self.local_bytes + value.size() > self.config.max_local_bytes {
            return refused(Refusal::LocalQuota);
        }
        let mut evicted = Vec::new();
        if self.keys.get(&key).is_some_and(|values| values.len() >= self.config.max_values_per_key) {
            match self.fair_share_victim(&key, source) {
                Some(victim) => {
                    if let Some(v) = self.remove(&key, victim) {
                        evicted.push((key, v));
                    }
                }
                None => return refused(Refusal::KeyFull),
            }
        }
        self.replace(key, StoredValue { value, source, created, expires });
        evicted.extend(self.enforce_remote_limit());
        StoreResult { outcome: StoreOutcome::Stored { edited: false }, evicted }
    }

    /// At a full key: the value a newcomer from `source` may displace, if any (see the module
    /// documentation).
    fn fair_share_victim(&self, key: &Id, source: Source) -> Option<ValueId> {
        let values = self.keys.get(key)?;
        let mut counts: BTreeMap<Source, usize> = BTreeMap::new();
        for stored in values.values() {
            *counts.entry(stored.source).or_default() += 1;
        }
        let own = counts.get(&source).copied().unwrap_or(0);
        let (heaviest, count) = counts
            .iter()
            .filter(|(s, _)| matches!(s, Source::Remote(_)))
            .max_by_key(|(s, c)| (**c, std::cmp::Reverse(**s)))?;
        if *count < own + 2 {
            return None;
        }
        values
            .values()
            .filter(|s| s.source == *heaviest)
            .min_by_key(|s| (s.expires.unwrap_or(NEVER), s.value.id))
            .map(|s| s.value.id)
    }

    /// Evicts values of the heaviest remote source, soonest expiring first, until the remote
    /// bytes are within the limit.
    fn enforce_remote_limit(&mut self) -> Vec<(Id, Value)> {
        let mut evicted = Vec::new();
        while self.remote_bytes > self.config.max_remote_bytes {
            let victim = self
                .sources
                .iter()
                .filter(|(s, _)| matches!(s, Source::Remote(_)))
                .max_by_key(|(s, u)| (u.bytes, std::cmp::Reverse(**s)))
                .and_then(|(_, u)| u.by_expiry.first().copied());
            let Some((_, key, id)) = victim else { break };
            match self.remove(&key, id) {
                Some(v) => evicted.push((key, v)),
                None => break,
            }
        }
        evicted
    }

    /// Sets when value `id` under `key` expires (a value restored from saved state keeps the
    /// expiry it had). Whether the value is stored.
    pub(crate) fn set_expiry(&mut self, key: &Id, id: ValueId, expires: Timestamp) -> bool {
        let Some(old) = self.get_stored(key, id).cloned() else { return false };
        self.replace(*key, StoredValue { expires: Some(expires), ..old });
        true
    }

    /// Extends the life of value `id` under `key` to `max(expiry, now + its type's expiration)`.
    pub(crate) fn refresh(&mut self, key: &Id, id: ValueId, now: Timestamp) -> RefreshOutcome {
        let Some(values) = self.keys.get(key) else { return RefreshOutcome::UnknownKey };
        let Some(old) = values.get(&id).cloned() else { return RefreshOutcome::UnknownValue };
        let expires = old.expires.map(|t| t.max(now + old.value.expiration()));
        self.replace(*key, StoredValue { created: now, expires, ..old });
        RefreshOutcome::Refreshed
    }

    /// Removes every value whose time has come, grouped by key.
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<(Id, Vec<Value>)> {
        let mut out: Vec<(Id, Vec<Value>)> = Vec::new();
        while let Some((t, key, id)) = self.expiries.first().copied() {
            if t > now {
                break;
            }
            let Some(value) = self.remove(&key, id) else {
                self.expiries.remove(&(t, key, id));
                continue;
            };
            match out.last_mut() {
                Some((k, values)) if *k == key => values.push(value),
                _ => out.push((key, vec![value])),
            }
        }
        out
    }

    /// Checks that the indices and counters agree with the values; for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        let (mut remote, mut local, mut count) = (0, 0, 0);
        for (key, values) in &self.keys {
            if values.is_empty() {
                return Err(format!("empty key {key} kept"));
            }
            if values.len() > self.config.max_values_per_key {
                return Err(format!("key {key} holds {} values", values.len()));
            }
            for (id, s) in values {
                if *id != s.value.id {
                    return Err(format!("value {} filed under {id}", s.value.id));
                }
                match s.source {
                    Source::Local => local += s.value.size(),
                    Source::Remote(_) => remote += s.value.size(),
                }
                count += 1;
                if let Some(t) = s.expires {
                    if !self.expiries.contains(&(t, *key, *id)) {
                        return Err(format!("value {id} missing from the expiry index"));
                    }
                }
            }
        }
        if (remote, local, count) != (self.remote_bytes, self.local_bytes, self.values) {
            return Err(format!(
                "counters {:?} but values sum to {:?}",
                (self.remote_bytes, self.local_bytes, self.values),
                (remote, local, count)
            ));
        }
        if self.keys.len() > self.config.max_keys {
            return Err(format!("{} keys", self.keys.len()));
        }
        if self.remote_bytes > self.config.max_remote_bytes {
            return Err(format!("{} remote bytes", self.remote_bytes));
        }
        let indexed: usize = self.sources.values().map(|u| u.by_expiry.len()).sum();
        if indexed != self.values {
            return Err(format!("{indexed} values in source indices, {} stored", self.values));
        }
        Ok(())
    }
}

fn old_local_size(old: &StoredValue) -> usize {
    if old.source == Source::Local {
        old.value.size()
    } else {
        0
    }
}

/// Whether `new` may replace `old` (same id, different content): OpenDHT's secure edit policy.
fn may_edit(old: &Value, new: &Value, verifier: &dyn SignatureVerifier) -> Result<(), Refusal> {
    if !old.is_signed() {
        return Err(Refusal::EditForbidden);
    }
    if !new.is_signed() || new.owner != old.owner {
        return Err(Refusal::NotOwner);
    }
    if !verifier.verify(new) {
        return Err(Refusal::BadSignature);
    }
    if new.seq < old.seq || (new.seq == old.seq && new.to_sign() != old.to_sign()) {
        return Err(Refusal::SeqNotHigher);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opendht::verifier::UnverifiedSignatures;
    use crate::opendht::ValueType;
    use std::time::Duration;

    const OK: UnverifiedSignatures = UnverifiedSignatures;

    fn at(secs: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_secs(secs)
    }

    /// A value put at `secs` by the node at 10.0.0.`ip`.
    fn remote(ip: u8, secs: u64) -> Origin {
        Origin { source: Source::Remote(IpAddr::from([10, 0, 0, ip])), created: at(secs), permanent: false }
    }

    fn local(permanent: bool) -> Origin {
        Origin { source: Source::Local, created: at(0), permanent }
    }

    fn signed(id: ValueId, owner: &[u8], seq: u16, data: &[u8]) -> Value {
        Value {
            id,
            data: data.to_vec(),
            owner: Some(owner.to_vec()),
            seq,
            signature: [owner, &seq.to_be_bytes(), data].concat(),
            ..Value::default()
        }
    }

    struct Reject;
    impl SignatureVerifier for Reject {
        fn verify(&self, _: &Value) -> bool {
            false
        }
    }

    /// A get filtered by id answers that value alone (looked up), still subject to the other
    /// conditions; without a query, every value of the key in id order.
    #[test]
    fn get_by_id_picks_one_value() {
        let mut s = Storage::new(StorageConfig::default());
        let k = Id::of_str("k");
        for id in 1..=5 {
            s.store(k, Value::new(id, 0, vec![id as u8]), remote(1, 0), at(1), &OK);
        }
        let ids = |q: Option<&Query>| s.get(&k, q).map(|v| v.id).collect::<Vec<_>>();
        assert_eq!(ids(None), [1, 2, 3, 4, 5]);
        assert_eq!(ids(Some(&Query::default().and_where(FieldValue::Id(3)))), [3]);
        assert_eq!(ids(Some(&Query::default().and_where(FieldValue::Id(9)))), [] as [u64; 0]);
        let other_type = Query::default().and_where(FieldValue::Id(3)).and_where(FieldValue::ValueType(7));
        assert_eq!(ids(Some(&other_type)), [] as [u64; 0]);
    }

    /// Values expire at `created + type expiration`; a put of the same value refreshes it to
    /// `max(old, now + expiration)`; local permanent values never expire.
    #[test]
    fn expiry_refresh_and_permanence() {
        let mut s = Storage::new(StorageConfig::default());
        let key = Id::sha1_of(b"k");
        let v = |id, t: u16| Value::new(id, t, *b"x");
        let ice = ValueType::ICE_CANDIDATES.id;
        let r = s.store(key, v(1, ice), remote(1, 0), at(0), &OK);
        assert_eq!(r.outcome, StoreOutcome::Stored { edited: false });
        s.store(key, v(2, 0), remote(1, 0), at(0), &OK);
        s.store(key, v(3, ice), local(true), at(0), &OK);
        assert_eq!(s.next_expiry(), Some(at(60)));
        let r = s.store(key, v(1, ice), remote(2, 30), at(30), &OK);
        assert_eq!(r.outcome, StoreOutcome::Refreshed);
        assert_eq!(s.get_stored(&key, 1).unwrap().expires, Some(at(90)));
        assert!(s.expire(at(89)).is_empty());
        assert_eq!(s.expire(at(90)), vec![(key, vec![v(1, ice)])]);
        assert_eq!(s.refresh(&key, 2, at(300)), RefreshOutcome::Refreshed);
        assert_eq!(s.get_stored(&key, 2).unwrap().expires, Some(at(900)));
        assert_eq!(s.refresh(&key, 9, at(300)), RefreshOutcome::UnknownValue);
        assert_eq!(s.refresh(&Id::ZERO, 2, at(300)), RefreshOutcome::UnknownKey);
        assert_eq!(s.expire(at(10_000)).len(), 1);
        assert_eq!(s.get(&key, None).map(|v| v.id).collect::<Vec<_>>(), vec![3], "permanent stays");
        s.check_invariants().unwrap();
    }

    /// Unsigned values cannot be edited; signed ones only by their owner with a higher seq (or
    /// the same signed body), and only when the signature verifies.
    #[test]
    fn owner_and_seq_rule() {
        let mut s = Storage::new(StorageConfig::default());
        let key = Id::sha1_of(b"k");
        let mut store =
            |v: Value, verifier: &dyn SignatureVerifier| s.store(key, v, remote(1, 0), at(0), verifier).outcome;
        let refused = StoreOutcome::Refused;
        assert_eq!(store(Value::new(1, 0, *b"a"), &OK), StoreOutcome::Stored { edited: false });
        assert_eq!(store(Value::new(1, 0, *b"b"), &OK), refused(Refusal::EditForbidden));
        assert_eq!(store(signed(2, b"alice", 5, b"v5"), &OK), StoreOutcome::Stored { edited: false });
        assert_eq!(store(signed(2, b"mallory", 9, b"x"), &OK), refused(Refusal::NotOwner));
        assert_eq!(store(Value::new(2, 0, *b"x"), &OK), refused(Refusal::NotOwner));
        assert_eq!(store(signed(2, b"alice", 4, b"v4"), &OK), refused(Refusal::SeqNotHigher));
        assert_eq!(store(signed(2, b"alice", 5, b"other"), &OK), refused(Refusal::SeqNotHigher));
        assert_eq!(store(signed(2, b"alice", 6, b"v6"), &Reject), refused(Refusal::BadSignature));
        assert_eq!(store(signed(2, b"alice", 6, b"v6"), &OK), StoreOutcome::Stored { edited: true });
        assert_eq!(store(signed(3, b"bob", 1, b"x"), &Reject), refused(Refusal::BadSignature));
        assert_eq!(s.get_stored(&key, 2).unwrap().value.data, b"v6");
        s.check_invariants().unwrap();
    }

    /// Over the byte limit, the heaviest source loses its soonest-expiring values; local values
    /// neither count nor get evicted.
    #[test]
    fn byte_limit_evicts_from_heaviest_source() {
        let mut s = Storage::new(StorageConfig { max_remote_bytes: 1000, ..StorageConfig::default() });
        let key = Id::sha1_of(b"k");
        s.store(key, Value::new(1, 0, vec![0; 400]), remote(1, 0), at(0), &OK);
        s.store(key, Value::new(2, 0, vec![0; 300]), remote(1, 5), at(5), &OK);
        s.store(key, Value::new(3, 0, vec![0; 200]), remote(2, 0), at(0), &OK);
        s.store(key, Value::new(9, 0, vec![0; 5000]), local(true), at(0), &OK);
        let r = s.store(key, Value::new(4, 0, vec![0; 200]), remote(2, 9), at(9), &OK);
        assert_eq!(r.outcome, StoreOutcome::Stored { edited: false });
        assert_eq!(r.evicted.iter().map(|(_, v)| v.id).collect::<Vec<_>>(), vec![1], "10.0.0.1 holds most");
        assert_eq!(s.remote_bytes(), 700);
        assert_eq!(s.local_bytes(), 5000);
        s.check_invariants().unwrap();
    }

    /// A full key makes room for a source holding fewer values by evicting from the source
    /// holding most; a source already holding its share is refused; new keys stop at max_keys.
    #[test]
    fn key_and_value_count_limits() {
        let config = StorageConfig { max_values_per_key: 4, max_keys: 2, ..StorageConfig::default() };
        let mut s = Storage::new(config);
        let key = Id::sha1_of(b"k");
        let x = |id| Value::new(id, 0, *b"x");
        for id in 1..=4 {
            s.store(key, x(id), remote(1, id), at(id), &OK);
        }
        let r = s.store(key, x(5), remote(1, 9), at(9), &OK);
        assert_eq!(r.outcome, StoreOutcome::Refused(Refusal::KeyFull));
        let r = s.store(key, x(6), remote(2, 9), at(9), &OK);
        assert_eq!(r.evicted, vec![(key, x(1))], "10.0.0.1's soonest-expiring value");
        let r = s.store(key, x(7), remote(2, 9), at(9), &OK);
        assert_eq!(r.evicted.len(), 1);
        let r = s.store(key, x(8), remote(2, 9), at(9), &OK);
        assert_eq!(r.outcome, StoreOutcome::Refused(Refusal::KeyFull), "2 against 2: no more room");
        s.store(Id::sha1_of(b"k2"), x(1), remote(1, 9), at(9), &OK);
        let r = s.store(Id::sha1_of(b"k3"), x(1), remote(1, 9), at(9), &OK);
        assert_eq!(r.outcome, StoreOutcome::Refused(Refusal::TooManyKeys));
        s.check_invariants().unwrap();
    }

    /// Invalid ids, oversized values and already-expired values are refused.
    #[test]
    fn invalid_values_are_refused() {
        let mut s = Storage::new(StorageConfig::default());
        let key = Id::sha1_of(b"k");
        let mut outcome = |v: Value, now: u64| s.store(key, v, remote(1, 0), at(now), &OK).outcome;
        assert_eq!(outcome(Value::new(0, 0, *b"x"), 0), StoreOutcome::Refused(Refusal::InvalidId));
        assert_eq!(outcome(Value::new(1, 0, vec![0; MAX_VALUE_SIZE + 1]), 0), StoreOutcome::Refused(Refusal::TooBig));
        assert_eq!(outcome(Value::new(1, 0, *b"x"), 601), StoreOutcome::Refused(Refusal::Expired));
        assert!(s.is_empty());
    }
}
