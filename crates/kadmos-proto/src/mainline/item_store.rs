use std::collections::HashMap;
use std::time::Duration;

use super::item::{Item, ItemError, MutableItem};
use crate::kad::Id;
use crate::time::Timestamp;

/// Limits of the BEP 44 item store.
#[derive(Clone, Debug)]
pub struct ItemStoreConfig {
    /// Items stored at most (immutable and mutable together). Default 1000.
    pub max_items: usize,
    /// Bytes of items stored at most. Default 2 MiB.
    pub max_bytes: usize,
    /// Lifetime of an item after its last put. Default 2 hours.
    pub item_ttl: Duration,
}

impl Default for ItemStoreConfig {
    fn default() -> Self {
        ItemStoreConfig { max_items: 1000, max_bytes: 2 << 20, item_ttl: Duration::from_secs(2 * 60 * 60) }
    }
}

/// A stored item and when it was last put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredItem {
    /// The item.
    pub item: Item,
    /// When it was last put: it expires `item_ttl` later.
    pub put_at: Timestamp,
}

/// The BEP 44 items this node stores for others, within the limits of its [`ItemStoreConfig`].
///
/// Rules: an immutable item is stored under the SHA-1 of its value; a mutable item only with a
/// valid signature, and it replaces the stored one only with a higher `seq` (the same `seq`
/// with the same value refreshes it; a CAS that does not match the stored `seq` is refused).
/// An invalid put never touches what is stored.
///
/// Limits (see [`ItemStoreConfig`]): at most `max_items` items and `max_bytes` bytes; an item
/// expires `item_ttl` after its last put. When a new item does not fit, the item put longest
/// ago is evicted (items are a cache that their owners re-put; the oldest is the likeliest to
/// be abandoned).
#[derive(Clone, Debug, Default)]
pub struct ItemStore {
    config: ItemStoreConfig,
    items: HashMap<Id, StoredItem>,
    bytes: usize,
}

impl ItemStore {
    pub(crate) fn new(config: ItemStoreConfig) -> Self {
        ItemStore { config, items: HashMap::new(), bytes: 0 }
    }

    /// The limits the store was made with.
    pub fn config(&self) -> &ItemStoreConfig {
        &self.config
    }

    /// Items stored, live or expired but not yet swept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes the stored items take, as [`Item::len`](super::Item::len) counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The live item stored under `target`.
    pub fn get(&self, target: &Id, now: Timestamp) -> Option<&Item> {
        self.items.get(target).filter(|s| now.saturating_since(s.put_at) < self.config.item_ttl).map(|s| &s.item)
    }

    /// Every stored item, for saving state and republishing.
    pub fn iter(&self) -> impl Iterator<Item = &StoredItem> {
        self.items.values()
    }

    /// Validates and stores an item. `cas` applies to mutable items only.
    pub(crate) fn put(&mut self, item: Item, cas: Option<i64>, now: Timestamp) -> Result<(), ItemError> {
        let target = item.target();
        if let Item::Mutable(m) = &item {
            m.verify()?;
            let current = self.get(&target, now).and_then(|i| match i {
                Item::Mutable(m) => Some(m),
                Item::Immutable(_) => None,
            });
            check_replacement(m, current, cas)?;
        }
        self.insert(StoredItem { item, put_at: now });
        Ok(())
    }

    /// Puts back an item from saved state, as if last put at `put_at` (which may be before
    /// the driver's epoch began: then it is simply older). The signature is checked again.
    pub(crate) fn restore(&mut self, item: Item, put_at: Timestamp) -> Result<(), ItemError> {
        if let Item::Mutable(m) = &item {
            m.verify()?;
        }
        self.insert(StoredItem { item, put_at });
        Ok(())
    }

    fn insert(&mut self, stored: StoredItem) {
        let target = stored.item.target();
        if let Some(old) = self.items.remove(&target) {
            self.bytes -= old.item.len();
        }
        let size = stored.item.len();
        while !self.items.is_empty()
            && (self.items.len() >= self.config.max_items || self.bytes + size > self.config.max_bytes)
        {
            let oldest =
                *self.items.iter().min_by_key(|(id, s)| (s.put_at, **id)).map(|(id, _)| id).expect("not empty");
            if let Some(evicted) = self.items.remove(&oldest) {
                self.bytes -= evicted.item.len();
            }
        }
        self.bytes += size;
        self.items.insert(target, stored);
    }

    /// Drops items older than the TTL.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        let ttl = self.config.item_ttl;
        let mut freed = 0;
        self.items.retain(|_, s| {
            let keep = now.saturating_since(s.put_at) < ttl;
            if !keep {
                freed += s.item.len();
            }
            keep
        });
        self.bytes -= freed;
    }
}

/// May `new` replace `current`? BEP 44's sequence and CAS rules.
fn check_replacement(new: &MutableItem, current: Option<&MutableItem>, cas: Option<i64>) -> Result<(), ItemError> {
    if let Some(expected) = cas {
        if current.map(|c| c.seq) != Some(expected) && current.is_some() {
            return Err(ItemError::CasMismatch { expected, current: current.map(|c| c.seq) });
        }
    }
    match current {
        Some(c) if new.seq < c.seq || (new.seq == c.seq && new.value != c.value) => {
            Err(ItemError::SeqTooLow { offered: new.seq, current: c.seq })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mainline::item::{ImmutableItem, ItemSigner};

    fn t(secs: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_secs(secs)
    }

    /// Sequence and CAS rules: higher seq replaces, lower or conflicting seq is refused with
    /// 302, a wrong CAS with 301, a forged item with 206, and a refused put leaves the stored
    /// item untouched.
    #[test]
    fn mutable_rules() {
        let signer = ItemSigner::from_seed([1; 32]);
        let mut store = ItemStore::new(ItemStoreConfig::default());
        let v1 = MutableItem::sign(&signer, b"", 1, b"1:a".to_vec()).unwrap();
        let target = v1.target();
        store.put(Item::Mutable(v1.clone()), None, t(0)).unwrap();
        let v3 = MutableItem::sign(&signer, b"", 3, b"1:c".to_vec()).unwrap();
        assert_eq!(store.put(Item::Mutable(v3.clone()), Some(2), t(1)).unwrap_err().code(), 301);
        store.put(Item::Mutable(v3.clone()), Some(1), t(1)).unwrap();
        let v2 = MutableItem::sign(&signer, b"", 2, b"1:b".to_vec()).unwrap();
        assert_eq!(store.put(Item::Mutable(v2), None, t(2)).unwrap_err().code(), 302);
        let other3 = MutableItem::sign(&signer, b"", 3, b"1:x".to_vec()).unwrap();
        assert_eq!(store.put(Item::Mutable(other3), None, t(2)).unwrap_err().code(), 302);
        let mut forged = MutableItem::sign(&signer, b"", 9, b"1:z".to_vec()).unwrap();
        forged.value = b"1:y".to_vec();
        assert_eq!(store.put(Item::Mutable(forged), None, t(2)).unwrap_err().code(), 206);
        assert_eq!(store.get(&target, t(3)), Some(&Item::Mutable(v3.clone())), "refused puts changed nothing");
        store.put(Item::Mutable(v3), None, t(4)).unwrap();
    }

    /// A CAS race: two writers both read seq 1 and put seq 2 with `cas = 1`; the first wins,
    /// the second is refused with 301 instead of silently overwriting the winner.
    #[test]
    fn cas_race_has_one_winner() {
        let signer = ItemSigner::from_seed([2; 32]);
        let mut store = ItemStore::new(ItemStoreConfig::default());
        let v1 = MutableItem::sign(&signer, b"", 1, b"2:v1".to_vec()).unwrap();
        store.put(Item::Mutable(v1.clone()), None, t(0)).unwrap();
        let alice = MutableItem::sign(&signer, b"", 2, b"5:alice".to_vec()).unwrap();
        let bob = MutableItem::sign(&signer, b"", 2, b"3:bob".to_vec()).unwrap();
        store.put(Item::Mutable(alice.clone()), Some(1), t(1)).unwrap();
        assert_eq!(store.put(Item::Mutable(bob), Some(1), t(1)).unwrap_err().code(), 301);
        assert_eq!(store.get(&v1.target(), t(2)), Some(&Item::Mutable(alice)));
    }

    /// Items expire two hours after their last put, and the store keeps to its item and byte
    /// limits by evicting the item put longest ago.
    #[test]
    fn expiry_and_limits() {
        let mut store =
            ItemStore::new(ItemStoreConfig { max_items: 3, max_bytes: 40, item_ttl: Duration::from_secs(7200) });
        let items: Vec<ImmutableItem> =
            (0..5).map(|i| ImmutableItem::from_bytes(format!("value {i}").as_bytes()).unwrap()).collect();
        for (i, item) in items.iter().enumerate() {
            store.put(Item::Immutable(item.clone()), None, t(i as u64)).unwrap();
            assert!(store.len() <= 3 && store.bytes() <= 40);
        }
        assert!(store.get(&items[0].target(), t(5)).is_none(), "oldest evicted");
        assert!(store.get(&items[4].target(), t(5)).is_some());
        assert!(store.get(&items[4].target(), t(4 + 7200)).is_none(), "expired");
        store.expire(t(10_000));
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }
}
