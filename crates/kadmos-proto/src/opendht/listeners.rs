use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::query::Query;
use crate::kad::{Id, NodeId};
use crate::time::Timestamp;

/// Limits of the listener table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Listeners in all. Default 4096.
    pub max_listeners: usize,
    /// Listeners of one key. Default 256.
    pub max_per_key: usize,
    /// Listeners from one IP address. Default 64.
    pub max_per_ip: usize,
    /// How long a listener lasts after its last `listen`. Default 10 minutes.
    pub lifetime: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig { max_listeners: 4096, max_per_key: 256, max_per_ip: 64, lifetime: Duration::from_secs(600) }
    }
}

/// One remote listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The listening node's ID.
    pub node_id: NodeId,
    /// Where pushes go.
    pub addr: SocketAddr,
    /// The requester's subscription id, echoed in every push.
    pub socket_id: u32,
    /// Only values matching it are pushed (its selection is ignored: pushes carry values).
    pub query: Option<Query>,
    /// `ve`: 1 or more for `update` requests, 0 for legacy `u` pushes.
    pub version: i32,
    /// When the listener is forgotten unless it listens again.
    pub expires: Timestamp,
}

impl Listener {
    /// Whether a new or changed `value` is pushed to this listener (it matches the listener's
    /// query).
    pub fn wants(&self, value: &super::value::Value) -> bool {
        self.query.as_ref().is_none_or(|q| q.matches(value))
    }
}

/// What a `listen` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenOutcome {
    /// A new listener: send it the matching values now.
    Added,
    Renewed,
    Refused(ListenerRefusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[allow(clippy::enum_variant_names, reason = "each variant names the limit that is full")]
pub(crate) enum ListenerRefusal {
    #[error("too many listeners")]
    TableFull,
    #[error("too many listeners on this key")]
    KeyFull,
    #[error("too many listeners from this address")]
    AddressFull,
}

/// The listeners of every key.
///
/// Remote listeners: the nodes that asked us (`listen`) to push changes of a key's values.
///
/// Facts from savoirfairelinux/opendht src/dht.cpp (`onListen`, `storageAddListener`,
/// `storageChanged`, `storageRemoved`, `storageRefresh`), src/storage.h (`Storage::expire`),
/// src/listener.h and src/network_engine.cpp (`tellListener*`, `sendUpdateValues`):
///
/// - A listener is identified by the requester's address and its `sid`; a `listen` with the same
///   pair renews it (and replaces its query). It lasts 10 minutes (OpenDHT's `NODE_EXPIRE_TIME`)
///   after the last `listen`; requesters renew every 30 seconds.
/// - A new listener is sent the matching values at once; then every new or edited value that
///   matches its query, the ids of refreshed values (`re`) and of expired or evicted values
///   (`exp`). Listeners that said `ve: 1` get these as `update` requests, older ones as `u`
///   pushes.
/// - OpenDHT sets no bound on listeners. kadmos does, each refusing newcomers at the limit:
///   [`ListenerConfig::max_listeners`] (4096 in all), [`ListenerConfig::max_per_key`] (256),
///   [`ListenerConfig::max_per_ip`] (64).
#[derive(Clone, Debug, Default)]
pub struct ListenerTable {
    config: ListenerConfig,
    by_key: BTreeMap<Id, BTreeMap<(SocketAddr, u32), Listener>>,
    per_ip: BTreeMap<IpAddr, usize>,
    total: usize,
}

impl ListenerTable {
    pub(crate) fn new(config: ListenerConfig) -> ListenerTable {
        ListenerTable { config, ..ListenerTable::default() }
    }

    /// Listeners, over every key.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no remote node listens here.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds or renews `listener` (identified by its address and socket id) on `key`; its
    /// `expires` is set to `now` plus the configured lifetime.
    pub(crate) fn listen(&mut self, key: Id, mut listener: Listener, now: Timestamp) -> ListenOutcome {
        listener.expires = now + self.config.lifetime;
        let slot = (listener.addr, listener.socket_id);
        if let Some(l) = self.by_key.get_mut(&key).and_then(|m| m.get_mut(&slot)) {
            *l = listener;
            return ListenOutcome::Renewed;
        }
        if self.total >= self.config.max_listeners {
            return ListenOutcome::Refused(ListenerRefusal::TableFull);
        }
        if self.by_key.get(&key).is_some_and(|m| m.len() >= self.config.max_per_key) {
            return ListenOutcome::Refused(ListenerRefusal::KeyFull);
        }
        let ip = listener.addr.ip();
        if self.per_ip.get(&ip).is_some_and(|n| *n >= self.config.max_per_ip) {
            return ListenOutcome::Refused(ListenerRefusal::AddressFull);
        }
        self.by_key.entry(key).or_default().insert(slot, listener);
        *self.per_ip.entry(ip).or_default() += 1;
        self.total += 1;
        ListenOutcome::Added
    }

    /// The listeners of `key`.
    pub fn of(&self, key: &Id) -> impl Iterator<Item = &Listener> {
        self.by_key.get(key).into_iter().flat_map(|m| m.values())
    }

    /// Forgets listeners not renewed in time. Returns how many.
    pub(crate) fn expire(&mut self, now: Timestamp) -> usize {
        let mut removed = 0;
        let per_ip = &mut self.per_ip;
        self.by_key.retain(|_, listeners| {
            listeners.retain(|(addr, _), l| {
                let keep = l.expires > now;
                if !keep {
                    removed += 1;
                    if let Some(n) = per_ip.get_mut(&addr.ip()) {
                        *n -= 1;
                        if *n == 0 {
                            per_ip.remove(&addr.ip());
                        }
                    }
                }
                keep
            });
            !listeners.is_empty()
        });
        self.total -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], port))
    }

    /// Listeners renew by (address, sid), expire after their lifetime, and every limit refuses
    /// newcomers without touching existing listeners.
    #[test]
    fn limits_renewal_and_expiry() {
        let config = ListenerConfig { max_listeners: 4, max_per_key: 3, max_per_ip: 2, ..ListenerConfig::default() };
        let mut t = ListenerTable::new(config);
        let (k1, k2) = (Id::sha1_of(b"1"), Id::sha1_of(b"2"));
        let t0 = Timestamp::ZERO;
        let l = |a: SocketAddr| Listener {
            node_id: Id::MAX,
            addr: a,
            socket_id: 7,
            query: None,
            version: 1,
            expires: Timestamp::ZERO,
        };
        assert_eq!(t.listen(k1, l(addr(1, 1)), t0), ListenOutcome::Added);
        assert_eq!(t.listen(k1, l(addr(1, 1)), t0), ListenOutcome::Renewed);
        assert_eq!(t.listen(k1, l(addr(1, 2)), t0), ListenOutcome::Added);
        assert_eq!(t.listen(k1, l(addr(1, 3)), t0), ListenOutcome::Refused(ListenerRefusal::AddressFull));
        assert_eq!(t.listen(k1, l(addr(2, 1)), t0), ListenOutcome::Added);
        assert_eq!(t.listen(k1, l(addr(3, 1)), t0), ListenOutcome::Refused(ListenerRefusal::KeyFull));
        assert_eq!(t.listen(k2, l(addr(3, 1)), t0), ListenOutcome::Added);
        assert_eq!(t.listen(k2, l(addr(4, 1)), t0), ListenOutcome::Refused(ListenerRefusal::TableFull));
        let later = t0 + Duration::from_secs(300);
        t.listen(k1, l(addr(1, 1)), later);
        assert_eq!(t.expire(t0 + Duration::from_secs(600)), 3);
        assert_eq!(t.of(&k1).count(), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.listen(k2, l(addr(1, 2)), later), ListenOutcome::Added);
    }
}
