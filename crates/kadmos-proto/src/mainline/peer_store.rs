use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::kad::InfoHash;
use crate::time::Timestamp;

/// Limits of the peer store.
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

/// Outcome of an announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreOutcome {
    Stored,
    Refreshed,
    /// The store holds `max_infohashes` torrents already.
    Full,
}

/// The end of a chain of records.
const NIL: u32 = u32::MAX;

/// Seconds since the driver's epoch (136 years fit).
fn seconds(t: Timestamp) -> u32 {
    u32::try_from(t.as_micros() / 1_000_000).unwrap_or(u32::MAX)
}

/// One stored peer of one address family, chained to the next peer of its torrent.
trait PeerRecord: Copy {
    fn new(addr: SocketAddr, announced: u32) -> Self;
    fn addr(&self) -> SocketAddr;
    fn announced(&self) -> u32;
    fn set_announced(&mut self, at: u32);
    fn next(&self) -> u32;
    fn set_next(&mut self, next: u32);
}

/// 16 bytes.
#[derive(Clone, Copy, Debug)]
struct PeerV4 {
    ip: [u8; 4],
    port: u16,
    announced: u32,
    next: u32,
}

/// 28 bytes.
#[derive(Clone, Copy, Debug)]
struct PeerV6 {
    ip: [u8; 16],
    port: u16,
    announced: u32,
    next: u32,
}

macro_rules! peer_record {
    ($record:ty, $ip:ident, $octets:expr) => {
        impl PeerRecord for $record {
            fn new(addr: SocketAddr, announced: u32) -> Self {
                let ip = match addr.ip() {
                    IpAddr::$ip(ip) => ip.octets(),
                    _ => unreachable!("the store picks the arena by family"),
                };
                Self { ip, port: addr.port(), announced, next: NIL }
            }
            fn addr(&self) -> SocketAddr {
                SocketAddr::new(IpAddr::$ip($octets(self.ip)), self.port)
            }
            fn announced(&self) -> u32 {
                self.announced
            }
            fn set_announced(&mut self, at: u32) {
                self.announced = at;
            }
            fn next(&self) -> u32 {
                self.next
            }
            fn set_next(&mut self, next: u32) {
                self.next = next;
            }
        }
    };
}
peer_record!(PeerV4, V4, Ipv4Addr::from);
peer_record!(PeerV6, V6, Ipv6Addr::from);

/// Records of one family; freed ones are chained from `free` and reused first.
#[derive(Clone, Debug)]
struct Arena<P> {
    records: Vec<P>,
    free: u32,
}

impl<P: PeerRecord> Default for Arena<P> {
    fn default() -> Self {
        Arena { records: Vec::new(), free: NIL }
    }
}

impl<P: PeerRecord> Arena<P> {
    fn get(&self, index: u32) -> &P {
        &self.records[index as usize]
    }

    fn get_mut(&mut self, index: u32) -> &mut P {
        &mut self.records[index as usize]
    }

    /// Stores `record` at the head of the chain starting at `head`; the new head.
    fn push(&mut self, head: u32, mut record: P) -> u32 {
        record.set_next(head);
        if self.free == NIL {
            self.records.push(record);
            u32::try_from(self.records.len() - 1).expect("fewer than 4 billion peers")
        } else {
            let index = self.free;
            self.free = self.get(index).next();
            *self.get_mut(index) = record;
            index
        }
    }

    /// Unlinks the record at `index` (after `previous`, or the head) and frees it; the new head.
    fn remove(&mut self, head: u32, previous: u32, index: u32) -> u32 {
        let next = self.get(index).next();
        let head = if previous == NIL {
            next
        } else {
            self.get_mut(previous).set_next(next);
            head
        };
        let free = self.free;
        self.get_mut(index).set_next(free);
        self.free = index;
        head
    }

    /// Indices of a chain, with the index before each.
    fn chain(&self, head: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut previous = NIL;
        let mut at = head;
        std::iter::from_fn(move || {
            (at != NIL).then(|| {
                let step = (previous, at);
                previous = at;
                at = self.get(at).next();
                step
            })
        })
    }

    /// Where `addr` sits in a chain.
    fn find(&self, head: u32, addr: SocketAddr) -> Option<u32> {
        self.chain(head).map(|(_, at)| at).find(|at| self.get(*at).addr() == addr)
    }

    /// The record announced longest ago in a chain: (announced, previous, index).
    fn oldest(&self, head: u32) -> Option<(u32, u32, u32)> {
        self.chain(head).map(|(previous, at)| (self.get(at).announced(), previous, at)).min()
    }

    /// Frees the records of a chain announced before `cutoff`, keeping the others in order;
    /// the new head and how many went.
    fn expire(&mut self, head: u32, cutoff: u32) -> (u32, usize) {
        let (mut new_head, mut tail, mut gone) = (NIL, NIL, 0);
        let mut at = head;
        while at != NIL {
            let next = self.get(at).next();
            if self.get(at).announced() < cutoff {
                let free = self.free;
                self.get_mut(at).set_next(free);
                self.free = at;
                gone += 1;
            } else {
                self.get_mut(at).set_next(NIL);
                if tail == NIL {
                    new_head = at;
                } else {
                    self.get_mut(tail).set_next(at);
                }
                tail = at;
            }
            at = next;
        }
        (new_head, gone)
    }
}

/// A torrent's chains of peers, one per family.
#[derive(Clone, Copy, Debug)]
struct Torrent {
    v4: u32,
    v6: u32,
    len: u32,
}

/// The peers announced to this node (BEP 5 `announce_peer`), per infohash, within the limits of
/// its [`PeerStoreConfig`].
///
/// Limits (defaults in [`PeerStoreConfig`]): at most `max_infohashes` torrents and
/// `max_peers_per_infohash` peers each; a peer expires `peer_ttl` after its last announce.
/// When a torrent is full, the peer announced longest ago is replaced; when the store holds
/// `max_infohashes` torrents, an announce for a new one is refused (the node still answers
/// the announce: the announcer cannot tell a full store from a lost datagram, and refusing
/// new torrents protects the ones already stored from being flushed by a flood).
///
/// # Layout
///
/// A stored peer costs about 16 bytes (IPv4; 28 for IPv6) plus its torrent's share of a
/// 32-byte map entry, because a node may hold hundreds of thousands of them: a `Vec` of
/// `SocketAddr`s per torrent cost some 300 bytes per peer when torrents hold one peer each
/// (a 24-byte `Vec` and its own allocation for every torrent, 32-byte addresses and 16-byte
/// timestamps). Peers of all torrents live in two arenas, one per address family, as
/// fixed-size records chained into one list per torrent and family by 32-bit indices; freed
/// records are reused through a free list. Announce times are kept to the second.
#[derive(Clone, Debug, Default)]
pub struct PeerStore {
    config: PeerStoreConfig,
    torrents: HashMap<InfoHash, Torrent>,
    v4: Arena<PeerV4>,
    v6: Arena<PeerV6>,
    peers: usize,
}

impl PeerStore {
    pub(crate) fn new(config: PeerStoreConfig) -> Self {
        PeerStore { config, ..PeerStore::default() }
    }

    /// The limits the store was made with.
    pub fn config(&self) -> &PeerStoreConfig {
        &self.config
    }

    pub(crate) fn announce(&mut self, info_hash: InfoHash, peer: SocketAddr, now: Timestamp) -> StoreOutcome {
        // Expired torrents are swept by `expire` (the node calls it every maintenance tick), not
        // here: a flood of announces for new torrents must not cost a full sweep each.
        if !self.torrents.contains_key(&info_hash) && self.torrents.len() >= self.config.max_infohashes {
            return StoreOutcome::Full;
        }
        let at = seconds(now);
        let torrent = self.torrents.entry(info_hash).or_insert(Torrent { v4: NIL, v6: NIL, len: 0 });
        let found = match peer {
            SocketAddr::V4(_) => self.v4.find(torrent.v4, peer).map(|i| self.v4.get_mut(i).set_announced(at)),
            SocketAddr::V6(_) => self.v6.find(torrent.v6, peer).map(|i| self.v6.get_mut(i).set_announced(at)),
        };
        if found.is_some() {
            return StoreOutcome::Refreshed;
        }
        if torrent.len as usize >= self.config.max_peers_per_infohash {
            // Full: the peer announced longest ago makes way.
            match (self.v4.oldest(torrent.v4), self.v6.oldest(torrent.v6)) {
                (Some(a), Some(b)) if b < a => torrent.v6 = self.v6.remove(torrent.v6, b.1, b.2),
                (Some(a), _) => torrent.v4 = self.v4.remove(torrent.v4, a.1, a.2),
                (None, Some(b)) => torrent.v6 = self.v6.remove(torrent.v6, b.1, b.2),
                (None, None) => return StoreOutcome::Full,
            }
        } else {
            torrent.len += 1;
            self.peers += 1;
        }
        match peer {
            SocketAddr::V4(_) => torrent.v4 = self.v4.push(torrent.v4, PeerV4::new(peer, at)),
            SocketAddr::V6(_) => torrent.v6 = self.v6.push(torrent.v6, PeerV6::new(peer, at)),
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
        let Some(torrent) = self.torrents.get(info_hash) else { return Vec::new() };
        let cutoff = self.cutoff(now);
        let mut all: Vec<SocketAddr> =
            if v6 { live(&self.v6, torrent.v6, cutoff) } else { live(&self.v4, torrent.v4, cutoff) };
        // Oldest first, as announced (chains hold the newest first).
        all.reverse();
        if all.len() > max {
            all.partial_shuffle(rng, max);
            all.truncate(max);
        }
        all
    }

    /// Up to `max` stored infohashes (for BEP 51), random when there are more, and the total.
    pub(crate) fn sample<R: Rng + ?Sized>(&self, max: usize, rng: &mut R) -> (Vec<InfoHash>, usize) {
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
    pub(crate) fn expire(&mut self, now: Timestamp) {
        let cutoff = self.cutoff(now);
        let (v4, v6, peers) = (&mut self.v4, &mut self.v6, &mut self.peers);
        self.torrents.retain(|_, torrent| {
            let (head, gone4) = v4.expire(torrent.v4, cutoff);
            torrent.v4 = head;
            let (head, gone6) = v6.expire(torrent.v6, cutoff);
            torrent.v6 = head;
            let gone = (gone4 + gone6) as u32;
            torrent.len -= gone;
            *peers -= gone as usize;
            torrent.len > 0
        });
        if self.torrents.capacity() > 2 * self.torrents.len() + 64 {
            self.torrents.shrink_to_fit();
        }
        if self.peers == 0 {
            // Nothing stored: give the arenas' memory back (records cannot move while stored).
            self.v4 = Arena::default();
            self.v6 = Arena::default();
        }
    }

    /// Announces at or after this second are live (less than the TTL ago, to the second).
    fn cutoff(&self, now: Timestamp) -> u32 {
        let ttl = u32::try_from(self.config.peer_ttl.as_secs()).unwrap_or(u32::MAX);
        seconds(now).checked_sub(ttl).map_or(0, |c| c + 1)
    }

    /// Infohashes with at least one stored peer.
    pub fn infohash_count(&self) -> usize {
        self.torrents.len()
    }

    /// Peers stored, over every infohash.
    pub fn peer_count(&self) -> usize {
        self.peers
    }
}

/// Addresses of the records of a chain announced at or after `cutoff`.
fn live<P: PeerRecord>(arena: &Arena<P>, head: u32, cutoff: u32) -> Vec<SocketAddr> {
    arena.chain(head).map(|(_, at)| arena.get(at)).filter(|p| p.announced() >= cutoff).map(|p| p.addr()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn peer(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    /// The records are as small as the layout notes say: 16 bytes per IPv4 peer, 28 per IPv6
    /// peer, 32 per torrent in the map.
    #[test]
    fn record_sizes() {
        assert_eq!(std::mem::size_of::<PeerV4>(), 16);
        assert_eq!(std::mem::size_of::<PeerV6>(), 28);
        assert_eq!(std::mem::size_of::<(InfoHash, Torrent)>(), 32);
    }

    /// IPv4 and IPv6 peers of one torrent share its limit (the oldest of either family makes
    /// way), records freed by expiry are reused, and counts stay right.
    #[test]
    fn families_share_the_limit_and_records_are_reused() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let config =
            PeerStoreConfig { max_infohashes: 10, max_peers_per_infohash: 3, peer_ttl: Duration::from_secs(60) };
        let mut store = PeerStore::new(config);
        let t = |s| Timestamp::ZERO + Duration::from_secs(s);
        let a = InfoHash::from_bytes(&[1; 20]).unwrap();
        let v6 = |i: u16| SocketAddr::new("2001:db8::1".parse().unwrap(), i);
        store.announce(a, v6(1), t(0));
        store.announce(a, peer(1), t(1));
        store.announce(a, v6(2), t(2));
        assert_eq!(store.announce(a, peer(1), t(3)), StoreOutcome::Refreshed);
        assert_eq!(store.announce(a, peer(2), t(4)), StoreOutcome::Stored);
        assert_eq!(store.peer_count(), 3);
        assert_eq!(store.peers(&a, true, 10, t(4), &mut rng), vec![v6(2)], "the oldest (IPv6) made way");
        let mut got = store.peers(&a, false, 10, t(4), &mut rng);
        got.sort();
        assert_eq!(got, vec![peer(1), peer(2)]);
        store.expire(t(63));
        assert_eq!((store.peer_count(), store.peers(&a, false, 10, t(63), &mut rng)), (1, vec![peer(2)]));
        let before = store.v4.records.len();
        let b = InfoHash::from_bytes(&[2; 20]).unwrap();
        store.announce(b, peer(9), t(63));
        assert_eq!(store.v4.records.len(), before, "a freed record was reused");
        assert_eq!((store.infohash_count(), store.peer_count()), (2, 2));
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
