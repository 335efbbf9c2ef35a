//! Peers announced to this node (BEP 5 `announce_peer`), with hard limits.
//!
//! Limits (defaults in [`PeerStoreConfig`]): at most `max_infohashes` torrents and
//! `max_peers_per_infohash` peers each; a peer expires `peer_ttl` after its last announce.
//! When a torrent is full, the peer announced longest ago is replaced; when the store holds
//! `max_infohashes` torrents, an announce for a new one is refused (the node still answers
//! the announce: the announcer cannot tell a full store from a lost datagram, and refusing
//! new torrents protects the ones already stored from being flushed by a flood).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::kad::InfoHash;
use crate::time::Timestamp;

#[derive(Clone, Debug)]
pub struct PeerStoreConfig {
    /// Torrents stored at most. Default 2000.
    pub max_infohashes: usize,
    /// Peers stored per torrent at most. Default 500.
    pub max_peers_per_infohash: usize,
    /// How long an announce is remembered. Default 30 minutes.
    pub peer_ttl: Duration,
}

impl Default for PeerStoreConfig {
    fn default() -> Self {
        PeerStoreConfig { max_infohashes: 2000, max_peers_per_infohash: 500, peer_ttl: Duration::from_secs(30 * 60) }
    }
}

#[derive(Clone, Debug)]
struct StoredPeer {
    addr: SocketAddr,
    announced_at: Timestamp,
}

/// Outcome of an announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    Refreshed,
    /// The store holds `max_infohashes` torrents already.
    Full,
}

#[derive(Clone, Debug, Default)]
pub struct PeerStore {
    config: PeerStoreConfig,
    torrents: HashMap<InfoHash, Vec<StoredPeer>>,
}

impl PeerStore {
    pub fn new(config: PeerStoreConfig) -> Self {
        PeerStore { config, torrents: HashMap::new() }
    }

    pub fn config(&self) -> &PeerStoreConfig {
        &self.config
    }

    pub fn announce(&mut self, info_hash: InfoHash, peer: SocketAddr, now: Timestamp) -> StoreOutcome {
        // Expired torrents are swept by `expire` (the node calls it every maintenance tick), not
        // here: a flood of announces for new torrents must not cost a full sweep each.
        if !self.torrents.contains_key(&info_hash) && self.torrents.len() >= self.config.max_infohashes {
            return StoreOutcome::Full;
        }
        let peers = self.torrents.entry(info_hash).or_default();
        if let Some(existing) = peers.iter_mut().find(|p| p.addr == peer) {
            existing.announced_at = now;
            return StoreOutcome::Refreshed;
        }
        let fresh = StoredPeer { addr: peer, announced_at: now };
        if peers.len() >= self.config.max_peers_per_infohash {
            if let Some(oldest) = peers.iter_mut().min_by_key(|p| p.announced_at) {
                *oldest = fresh;
            }
        } else {
            peers.push(fresh);
        }
        StoreOutcome::Stored
    }

    /// Up to `max` live peers of one address family for a torrent, chosen at random when
    /// there are more (so every stored peer gets handed out over time).
    pub fn peers<R: Rng + ?Sized>(
        &self,
        info_hash: &InfoHash,
        v6: bool,
        max: usize,
        now: Timestamp,
        rng: &mut R,
    ) -> Vec<SocketAddr> {
        let Some(peers) = self.torrents.get(info_hash) else { return Vec::new() };
        let live = peers
            .iter()
            .filter(|p| p.addr.is_ipv6() == v6 && now.saturating_since(p.announced_at) < self.config.peer_ttl)
            .map(|p| p.addr);
        let mut all: Vec<SocketAddr> = live.collect();
        if all.len() > max {
            all.partial_shuffle(rng, max);
            all.truncate(max);
        }
        all
    }

    /// Up to `max` stored infohashes (for BEP 51), random when there are more, and the total.
    pub fn sample<R: Rng + ?Sized>(&self, max: usize, rng: &mut R) -> (Vec<InfoHash>, usize) {
        let mut all: Vec<InfoHash> = self.torrents.keys().copied().collect();
        all.sort_unstable(); // HashMap order is not deterministic; the simulator needs it to be
        let total = all.len();
        if total > max {
            all.partial_shuffle(rng, max);
            all.truncate(max);
        }
        (all, total)
    }

    /// Drops peers whose announce is older than the TTL, and torrents left empty.
    pub fn expire(&mut self, now: Timestamp) {
        let ttl = self.config.peer_ttl;
        self.torrents.retain(|_, peers| {
            peers.retain(|p| now.saturating_since(p.announced_at) < ttl);
            !peers.is_empty()
        });
    }

    pub fn infohash_count(&self) -> usize {
        self.torrents.len()
    }

    pub fn peer_count(&self) -> usize {
        self.torrents.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn peer(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    /// Every limit holds: peers per torrent (oldest replaced), torrents (new ones refused),
    /// peers per reply, and peers expire after the TTL.
    #[test]
    fn limits_and_expiry() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let config =
            PeerStoreConfig { max_infohashes: 2, max_peers_per_infohash: 3, peer_ttl: Duration::from_secs(60) };
        let mut store = PeerStore::new(config);
        let t = |s| Timestamp::ZERO + Duration::from_secs(s);
        let a = InfoHash::from_bytes(&[1; 20]).unwrap();
        for i in 0..5 {
            assert_eq!(store.announce(a, peer(i), t(i as u64)), StoreOutcome::Stored);
        }
        let mut got = store.peers(&a, false, 10, t(5), &mut rng);
        got.sort();
        assert_eq!(got, vec![peer(2), peer(3), peer(4)], "the oldest peers were replaced");
        assert_eq!(store.peers(&a, false, 2, t(5), &mut rng).len(), 2);
        assert!(store.peers(&a, true, 10, t(5), &mut rng).is_empty(), "no IPv6 peers stored");
        store.announce(InfoHash::from_bytes(&[2; 20]).unwrap(), peer(1), t(5));
        assert_eq!(store.announce(InfoHash::from_bytes(&[3; 20]).unwrap(), peer(1), t(6)), StoreOutcome::Full);
        assert_eq!(store.infohash_count(), 2);
        assert!(store.peers(&a, false, 10, t(64), &mut rng).len() < 3, "expired peers are not handed out");
        assert_eq!(store.announce(InfoHash::from_bytes(&[3; 20]).unwrap(), peer(1), t(100)), StoreOutcome::Full);
        store.expire(t(100));
        assert_eq!(store.infohash_count(), 0);
        assert_eq!(store.announce(InfoHash::from_bytes(&[3; 20]).unwrap(), peer(1), t(100)), StoreOutcome::Stored);
    }
}
