//! The Kademlia routing table of one address family, as BEP 5 describes it.
//!
//! Implementation notes:
//! - Buckets are kept as a list where bucket `i < len-1` holds contacts whose ID shares exactly
//!   `i` leading bits with ours, and the last bucket holds everything closer. Only that last
//!   bucket (the one containing our own ID) splits, which gives the usual shape: a few full
//!   far buckets and a trail of near ones.
//! - Only contacts that *answered* one of our queries are inserted: a source address in an
//!   incoming query can be spoofed, so the node pings it first (see `mainline::node`). This
//!   is also why the replacement cache holds verified contacts only.
//! - A contact with the same ID but another address is ignored rather than moved: moving it
//!   would let anyone who knows a node's ID hijack its slot.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::id::{Id, NodeId};
use super::subnet::{self, Subnet};
use crate::time::Timestamp;

/// Tuning of a routing table. Defaults follow BEP 5.
#[derive(Clone, Debug)]
pub struct RoutingTableConfig {
    /// Contacts per bucket (`k`). Default 8.
    pub bucket_size: usize,
    /// Capacities of the four farthest buckets once they have split off (never below `k`).
    /// Default 128, 64, 32 and 16 (libtorrent's extended routing table: 16, 8, 4 and 2 times
    /// k). Half of all targets fall in bucket 0: knowing 128 nodes there instead of 8 starts a
    /// lookup about four bits closer, which saves it a hop (measured in the simulator: see the
    /// README). Wide buckets fill as the node runs lookups and is queried.
    pub first_bucket_sizes: [usize; 4],
    /// Verified contacts kept per bucket to replace ones that go bad. Default 4.
    pub replacement_cache_size: usize,
    /// Silence after which a good contact becomes questionable. Default 15 minutes.
    pub good_for: Duration,
    /// Consecutive failed queries that make a contact bad. Default 2.
    pub bad_after_failures: u8,
    /// A bucket unchanged this long is refreshed with a lookup. Default 15 minutes.
    pub refresh_after: Duration,
    /// Contacts one IPv4 /24 or IPv6 /64 may have in a bucket (its replacement cache
    /// included); a newcomer past it is rejected. Loopback, private, link-local and
    /// unique-local addresses are exempt (a test network or a LAN is many honest nodes in one
    /// subnet). Default 2: libtorrent allows one per bucket; two leave room for two honest
    /// nodes behind one small network while a Sybil farm in one subnet still gets at most two
    /// slots in any bucket. `None`: no limit.
    pub max_per_subnet: Option<usize>,
    /// Our nearest contacts (closest to our own ID) that are pinged when not heard from for
    /// `neighbour_check_after`, so that a neighbour that died fails its ping and answers stop
    /// naming it. Default 24. Lookups near a target rely on it: a candidate named by a node
    /// close to it is *vouched for*, likely alive, and worth waiting for when it is slow (see
    /// [`LookupConfig`](crate::kad::LookupConfig)). Measured in the simulator (10,000 nodes,
    /// 20% dead, 2% loss): with 16, lookups took 0.1 round trip longer at the median; each
    /// node sends at most 24 pings per check, one check every maintenance interval. 0: no
    /// checks.
    pub neighbours_checked: usize,
    /// Silence (neither an answer nor a query) after which a nearest contact is pinged.
    /// Default 10 s.
    pub neighbour_check_after: Duration,
}

impl Default for RoutingTableConfig {
    fn default() -> Self {
        RoutingTableConfig {
            bucket_size: 8,
            first_bucket_sizes: [128, 64, 32, 16],
            replacement_cache_size: 4,
            good_for: Duration::from_secs(15 * 60),
            bad_after_failures: 2,
            refresh_after: Duration::from_secs(15 * 60),
            max_per_subnet: Some(2),
            neighbours_checked: 24,
            neighbour_check_after: Duration::from_secs(10),
        }
    }
}

/// A node we know: its ID, address and what we heard from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The node's ID.
    pub id: NodeId,
    addr: PackedAddr,
    /// Last time it answered one of our queries.
    last_response: Seconds,
    /// Last time it sent us a query.
    last_query: Seconds,
    /// Queries in a row it failed to answer.
    pub failures: u8,
    /// The smoothed round trip of our requests to it.
    round_trip: RoundTrip,
}

impl Contact {
    /// A contact that has just answered us.
    pub fn answered(id: NodeId, addr: SocketAddr, now: Timestamp) -> Contact {
        Contact {
            id,
            addr: PackedAddr::new(addr),
            last_response: Seconds::at(now),
            last_query: Seconds::NEVER,
            failures: 0,
            round_trip: RoundTrip::NEVER,
        }
    }

    /// The smoothed round trip of our requests to it (within 3.5%), once one was answered.
    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip.get()
    }

    /// One of our requests to it was answered after `sample`: smoothed as TCP smooths its
    /// RTT, 7/8 of the old value and 1/8 of the sample.
    fn note_round_trip(&mut self, sample: Duration) {
        self.round_trip = match self.round_trip.get() {
            Some(old) => RoundTrip::of((old * 7 + sample) / 8),
            None => RoundTrip::of(sample),
        };
    }

    /// The address it answered from.
    pub fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    /// Last time it answered one of our queries (to the second).
    pub fn last_response(&self) -> Option<Timestamp> {
        self.last_response.get()
    }

    /// Last time it sent us a query (to the second).
    pub fn last_query(&self) -> Option<Timestamp> {
        self.last_query.get()
    }

    /// Good, questionable or bad at `now`, by BEP 5's rules with the table's thresholds.
    pub fn status(&self, now: Timestamp, config: &RoutingTableConfig) -> ContactStatus {
        if self.is_bad(config) {
            return ContactStatus::Bad;
        }
        let recent = |t: Option<Timestamp>| t.is_some_and(|t| now.saturating_since(t) < config.good_for);
        let answered = self.last_response();
        if recent(answered) || (answered.is_some() && recent(self.last_query())) {
            ContactStatus::Good
        } else {
            ContactStatus::Questionable
        }
    }

    /// [`ContactStatus::Bad`] without the clock arithmetic of [`Contact::status`] (answers
    /// check this for every contact they consider).
    fn is_bad(&self, config: &RoutingTableConfig) -> bool {
        self.failures >= config.bad_after_failures
    }

    fn last_seen(&self) -> Timestamp {
        self.last_response().max(self.last_query()).unwrap_or(Timestamp::ZERO)
    }
}

/// An XOR distance as two integers (high 128 bits, low 32), cheap to compare.
type Key = (u128, u32);

fn key(id: &Id, target: Key) -> Key {
    let (high, low) = id.to_ints();
    (high ^ target.0, low ^ target.1)
}

/// Leading zero bits of a distance: the prefix its two IDs share.
fn shared_bits(key: Key) -> u32 {
    if key.0 != 0 {
        key.0.leading_zeros()
    } else {
        128 + key.1.leading_zeros()
    }
}

/// The closest contacts found so far, with their distances, closest first.
type Closest<'a> = Vec<(Key, &'a Contact)>;

/// Adds the usable contacts of `group` to `best`, keeping the `n` closest. Callers visit groups
/// closest first, so a full `best` means nothing further can get in.
fn extend_closest<'a>(
    best: &mut Closest<'a>,
    n: usize,
    target: Key,
    group: impl Iterator<Item = &'a Contact>,
    usable: &impl Fn(&Contact) -> bool,
) {
    if best.len() >= n {
        return;
    }
    for contact in group {
        consider(best, n, key(&contact.id, target), contact, usable);
    }
}

/// [`extend_closest`] for the contacts of one bucket, which are in ID order. Along each side
/// of where the target would sit, the shared prefix with the target only shrinks; the walk
/// takes the next contact from the side whose next one shares more bits, so it meets contacts
/// in order of shared bits and stops once `best` is full and neither side can share as many
/// bits as the farthest kept. An answer so looks at 11 contacts on average in a table of 248
/// with a 128-contact bucket 0, not at all of them (scanning them all cost the node benchmark
/// 10% of its replies per second).
fn extend_closest_sorted<'a>(
    best: &mut Closest<'a>,
    n: usize,
    target_id: &Id,
    contacts: &'a [Contact],
    usable: &impl Fn(&Contact) -> bool,
) {
    let target = target_id.to_ints();
    let (lower, upper) = contacts.split_at(contacts.partition_point(|c| c.id < *target_id));
    let mut upper = upper.iter().map(|c| (key(&c.id, target), c)).peekable();
    let mut lower = lower.iter().rev().map(|c| (key(&c.id, target), c)).peekable();
    loop {
        let shared = |next: Option<&(Key, &Contact)>| next.map(|(k, _)| shared_bits(*k));
        let (up, down) = (shared(upper.peek()), shared(lower.peek()));
        // `None` sorts first: a side is taken only while it has contacts left.
        let next = if up >= down { upper.next() } else { lower.next() };
        let Some((distance, contact)) = next else { return };
        if best.len() >= n && best.last().is_none_or(|(farthest, _)| shared_bits(distance) < shared_bits(*farthest)) {
            return;
        }
        consider(best, n, distance, contact, usable);
    }
}

/// Keeps `contact` at `distance` in `best` (sorted, at most `n` long) if it is usable and
/// closer than the farthest kept.
fn consider<'a>(
    best: &mut Closest<'a>,
    n: usize,
    distance: Key,
    contact: &'a Contact,
    usable: &impl Fn(&Contact) -> bool,
) {
    if best.len() >= n && best.last().is_none_or(|(farthest, _)| *farthest <= distance) {
        return;
    }
    if !usable(contact) {
        return;
    }
    if best.len() >= n {
        best.pop();
    }
    let at = best.partition_point(|(kept, _)| *kept < distance);
    best.insert(at, (distance, contact));
}

/// A socket address in 18 bytes instead of `SocketAddr`'s 32, which makes a contact 48 bytes
/// instead of 64: contacts are most of an idle node's memory (wide first buckets hold up to
/// 240 of them; see [`RoutingTableConfig::first_bucket_sizes`]). Contacts are DHT nodes at
/// global addresses, so an IPv6 flow label or scope is not kept.
///
/// An IPv4 address is stored IPv4-mapped (`::ffff:a.b.c.d`), and the family is read back from
/// the address itself, so no byte is spent on it. An IPv6 address of that form therefore reads
/// back as IPv4: the table refuses such contacts ([`is_v4_mapped`]), which a node reaching IPv6
/// only could not use anyway.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PackedAddr {
    ip: [u8; 16],
    port: [u8; 2],
}

impl PackedAddr {
    fn new(addr: SocketAddr) -> PackedAddr {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        PackedAddr { ip: ip.octets(), port: addr.port().to_be_bytes() }
    }

    fn get(self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
        SocketAddr::new(ip, u16::from_be_bytes(self.port))
    }
}

impl std::fmt::Debug for PackedAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// Whether `addr` is an IPv6 address of the IPv4-mapped form, which a contact cannot have: it
/// names an IPv4 node, and would be stored as that node's IPv4 address ([`PackedAddr`]).
fn is_v4_mapped(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        SocketAddr::V4(_) => false,
    }
}

/// A round trip in one byte, 0 meaning never measured: a logarithmic scale of 7% steps from
/// about 1 µs to about 30 s (a display needs no finer; loopback answers take a few hundred
/// microseconds, a request times out after seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RoundTrip(u8);

impl RoundTrip {
    const NEVER: RoundTrip = RoundTrip(0);
    /// The ratio between two steps of the scale.
    const STEP: f64 = 1.07;

    /// `rtt` on the scale: at least step 1 (a round trip measured as nothing is still
    /// measured), at most step 255.
    fn of(rtt: Duration) -> RoundTrip {
        let micros = rtt.as_secs_f64() * 1e6;
        let step = if micros <= 1.0 { 0.0 } else { (micros.ln() / Self::STEP.ln()).round() };
        RoundTrip(step.clamp(1.0, 255.0) as u8)
    }

    fn get(self) -> Option<Duration> {
        (self != Self::NEVER).then(|| Duration::from_secs_f64(Self::STEP.powi(i32::from(self.0)) / 1e6))
    }
}

/// A time to the second in 4 bytes, 0 meaning never: contact timestamps only feed the
/// 15-minute good/questionable rule, and a table holds hundreds of contacts (the simulator,
/// thousands of tables), so they are kept small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seconds(u32);

impl Seconds {
    const NEVER: Seconds = Seconds(0);

    fn at(t: Timestamp) -> Seconds {
        Seconds(u32::try_from(t.as_micros() / 1_000_000 + 1).unwrap_or(u32::MAX))
    }

    fn get(self) -> Option<Timestamp> {
        (self.0 != 0).then(|| Timestamp::from_micros(u64::from(self.0 - 1) * 1_000_000))
    }
}

/// BEP 5's contact states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContactStatus {
    /// Answered within the last 15 minutes (or queried us after having answered before).
    Good,
    /// Silent for 15 minutes.
    Questionable,
    /// Failed several queries in a row; first to be replaced.
    Bad,
}

/// A bucket: up to `k` contacts plus a cache of replacements.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    contacts: Vec<Contact>,
    replacements: Vec<Contact>,
    last_changed: Timestamp,
}

impl Bucket {
    /// The bucket's contacts, in ID order.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }
    /// Contacts waiting for a place in the bucket, most recently seen last.
    pub fn replacements(&self) -> &[Contact] {
        &self.replacements
    }
    /// Last time a contact was added, replaced or answered, or the bucket refreshed: the bucket
    /// is due for refresh `refresh_after` later.
    pub fn last_changed(&self) -> Timestamp {
        self.last_changed
    }

    fn find(&self, id: &NodeId) -> Result<usize, usize> {
        self.contacts.binary_search_by(|c| c.id.cmp(id))
    }

    /// Where the contact with this ID and address sits, if it does.
    fn position_of(&self, id: &NodeId, addr: PackedAddr) -> Option<usize> {
        self.find(id).ok().filter(|pos| self.contacts[*pos].addr == addr)
    }

    /// Whether one more contact from `addr`'s subnet keeps the bucket within `limit`.
    fn subnet_has_room(&self, addr: SocketAddr, limit: Option<usize>) -> bool {
        let (Some(limit), Some(subnet)) = (limit, Subnet::of(addr.ip())) else { return true };
        let held = self.contacts.iter().chain(&self.replacements).map(|c| c.addr().ip());
        subnet::count_in(subnet, held) < limit
    }

    /// Adds a contact whose ID the bucket does not hold, keeping ID order.
    fn insert_sorted(&mut self, contact: Contact) {
        let at = self.find(&contact.id).unwrap_or_else(|at| at);
        self.contacts.insert(at, contact);
    }
}

/// What happened to a contact offered to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Added to a bucket.
    Inserted,
    /// Already there; its timestamps were updated.
    Updated,
    /// Took the place of a bad contact.
    ReplacedBad(Contact),
    /// The bucket is full of good or questionable contacts: kept in the replacement cache.
    /// `ping` is the least recently seen questionable contact, which the caller should ping
    /// so that, if it has gone, the newcomer can take its place.
    Cached {
        /// The least recently seen questionable contact, to ping so that the newcomer can
        /// replace it if it has gone.
        ping: Option<Contact>,
    },
    /// Not accepted: our own ID, a known ID claimed from another address, or one subnet too
    /// many in the bucket (`RoutingTableConfig::max_per_subnet`).
    Rejected,
}

/// Routing table of one address family.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own_id: NodeId,
    config: RoutingTableConfig,
    buckets: Vec<Bucket>,
    /// The round trip of the last answer from a node the table did not hold: a node's first
    /// answer is timed before its sender is offered to the table, and the contact made of it
    /// starts with that round trip.
    unplaced_round_trip: Option<(NodeId, RoundTrip)>,
}

impl RoutingTable {
    /// An empty table (one bucket covering the whole ID space) for a node with ID `own_id`.
    pub fn new(own_id: NodeId, config: RoutingTableConfig, now: Timestamp) -> Self {
        RoutingTable {
            own_id,
            config,
            buckets: vec![Bucket { last_changed: now, ..Bucket::default() }],
            unplaced_round_trip: None,
        }
    }

    /// The ID of the node that owns the table, which buckets split around.
    pub fn own_id(&self) -> NodeId {
        self.own_id
    }

    /// The bucket size and status thresholds the table was made with.
    pub fn config(&self) -> &RoutingTableConfig {
        &self.config
    }

    /// The buckets, from the one farthest from our own ID to the one holding it.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Number of contacts (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.contacts.len()).sum()
    }

    /// Whether the table holds no contact.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every contact, bucket by bucket (replacement caches not included).
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.contacts.iter())
    }

    /// The contact with ID `id`, if the table holds it.
    pub fn get(&self, id: &NodeId) -> Option<&Contact> {
        let bucket = &self.buckets[self.bucket_index(id)];
        bucket.find(id).ok().map(|pos| &bucket.contacts[pos])
    }

    /// Shared prefix bits with a target from which a node is in the target's neighbourhood,
    /// the region a lookup asks in parallel at its end (see
    /// [`LookupConfig`](super::LookupConfig)). The table splits its own bucket until it holds
    /// at most `k` contacts, so with `d` buckets about `k` nodes share `d - 1` bits with us;
    /// about `k` share as many with any target, and the neighbourhood starts a little above
    /// that. Measured in the simulator at 10,000 nodes
    /// with 20% dead contacts: the 8 closest live nodes often share only `d - 3` bits with a
    /// target (8 or 9), and a neighbourhood of `d - 3` bits made get_peers 0.35 round trips
    /// faster than `d - 2` (4.86 → 4.50) for 1.3 more messages per lookup.
    pub fn neighbourhood_bits(&self) -> u32 {
        self.depth().saturating_sub(3)
    }

    /// The number of buckets: about `log2(n / k) + 1` in a network of `n` nodes, so that a
    /// handful of nodes share this many bits with any ID. A node sharing as many with another
    /// has it among its nearest neighbours, the ones it checks (lookups use this to tell which
    /// answers vouch for the nodes they name).
    pub fn depth(&self) -> u32 {
        u32::try_from(self.buckets.len()).unwrap_or(u32::MAX)
    }

    /// Contacts bucket `index` may hold: `k`, or more for the first buckets once they have
    /// split off (the last bucket, which splits, always holds `k`).
    pub fn bucket_capacity(&self, index: usize) -> usize {
        let k = self.config.bucket_size;
        if index + 1 < self.buckets.len() {
            self.config.first_bucket_sizes.get(index).map_or(k, |wide| k.max(*wide))
        } else {
            k
        }
    }

    fn bucket_index(&self, id: &Id) -> usize {
        (self.own_id.distance(id).leading_zeros() as usize).min(self.buckets.len() - 1)
    }

    /// Offers a contact that has just answered one of our queries.
    pub fn insert_responded(&mut self, id: NodeId, addr: SocketAddr, now: Timestamp) -> InsertOutcome {
        if id == self.own_id || is_v4_mapped(&addr) {
            return InsertOutcome::Rejected;
        }
        let packed = PackedAddr::new(addr);
        let mut fresh = Contact::answered(id, addr, now);
        if let Some((_, round_trip)) = self.unplaced_round_trip.filter(|(unplaced, _)| *unplaced == id) {
            fresh.round_trip = round_trip;
        }
        loop {
            let index = self.bucket_index(&id);
            let can_split = index == self.buckets.len() - 1 && self.buckets.len() < 160;
            let capacity = self.bucket_capacity(index);
            let config = &self.config;
            let bucket = &mut self.buckets[index];
            if let Ok(pos) = bucket.find(&id) {
                let existing = &mut bucket.contacts[pos];
                if existing.addr != packed {
                    return InsertOutcome::Rejected;
                }
                existing.last_response = Seconds::at(now);
                existing.failures = 0;
                bucket.last_changed = now;
                return InsertOutcome::Updated;
            }
            // A node that restarted with a new ID on the same address: the old entry is stale.
            bucket.contacts.retain(|c| c.addr != packed);
            bucket.replacements.retain(|c| c.addr != packed && c.id != id);
            if !bucket.subnet_has_room(addr, config.max_per_subnet) {
                return InsertOutcome::Rejected;
            }
            if bucket.contacts.len() < capacity {
                // Grow by k at a time, not by doubling: a wide bucket 70 contacts full would
                // otherwise carry 58 empty slots (measured at 100,000 simulated nodes: 16.5 KB
                // per idle node with doubling; see the README for the figure now).
                if bucket.contacts.len() == bucket.contacts.capacity() {
                    bucket.contacts.reserve_exact(config.bucket_size.min(capacity - bucket.contacts.len()));
                }
                bucket.insert_sorted(fresh);
                bucket.last_changed = now;
                return InsertOutcome::Inserted;
            }
            if let Some(bad) = bucket.contacts.iter().position(|c| c.status(now, config) == ContactStatus::Bad) {
                let old = bucket.contacts.remove(bad);
                bucket.insert_sorted(fresh);
                bucket.last_changed = now;
                return InsertOutcome::ReplacedBad(old);
            }
            if can_split {
                self.split_last(now);
                continue;
            }
            let ping = bucket
                .contacts
                .iter()
                .filter(|c| c.status(now, config) == ContactStatus::Questionable)
                .min_by_key(|c| c.last_seen())
                .cloned();
            if bucket.replacements.len() >= config.replacement_cache_size {
                bucket.replacements.remove(0);
            }
            if config.replacement_cache_size > 0 {
                bucket.replacements.push(fresh);
            }
            return InsertOutcome::Cached { ping };
        }
    }

    /// Would a newly answering contact with this ID find a place (a free slot, a bad contact to
    /// replace, or a split)? Used to decide whether a node that queried us is worth a ping.
    pub fn would_accept(&self, id: &NodeId, addr: SocketAddr, now: Timestamp) -> bool {
        if *id == self.own_id || is_v4_mapped(&addr) {
            return false;
        }
        let index = self.bucket_index(id);
        let bucket = &self.buckets[index];
        bucket.find(id).is_err()
            && bucket.subnet_has_room(addr, self.config.max_per_subnet)
            && (bucket.contacts.len() < self.bucket_capacity(index)
                || (index == self.buckets.len() - 1 && self.buckets.len() < 160)
                || bucket.contacts.iter().any(|c| c.status(now, &self.config) != ContactStatus::Good))
    }

    fn split_last(&mut self, now: Timestamp) {
        let depth = self.buckets.len();
        let own = self.own_id;
        let last = self.buckets.last_mut().expect("a table always has a bucket");
        let (near, far): (Vec<Contact>, Vec<Contact>) =
            last.contacts.drain(..).partition(|c| own.distance(&c.id).leading_zeros() as usize >= depth);
        let (near_r, far_r): (Vec<Contact>, Vec<Contact>) =
            last.replacements.drain(..).partition(|c| own.distance(&c.id).leading_zeros() as usize >= depth);
        last.contacts = far;
        last.replacements = far_r;
        self.buckets.push(Bucket { contacts: near, replacements: near_r, last_changed: now });
    }

    /// Records that a contact sent us a query (keeps a contact that answered before good).
    /// Returns whether the table holds the ID (at this address or another).
    pub fn note_query(&mut self, id: &NodeId, addr: SocketAddr, now: Timestamp) -> bool {
        let index = self.bucket_index(id);
        let bucket = &mut self.buckets[index];
        let Ok(pos) = bucket.find(id) else { return false };
        let contact = &mut bucket.contacts[pos];
        if contact.addr == PackedAddr::new(addr) {
            contact.last_query = Seconds::at(now);
        }
        true
    }

    /// One of our requests to `id` was answered after `sample`: the contact of that ID, or its
    /// entry in the replacement cache, smooths it into its round trip. Returns whether the
    /// table holds the ID; if it does not, the sample is kept for a contact of that ID offered
    /// next ([`RoutingTable::insert_responded`]).
    pub fn note_round_trip(&mut self, id: &NodeId, sample: Duration) -> bool {
        let index = self.bucket_index(id);
        let bucket = &mut self.buckets[index];
        let held = match bucket.find(id) {
            Ok(pos) => Some(&mut bucket.contacts[pos]),
            Err(_) => bucket.replacements.iter_mut().find(|c| c.id == *id),
        };
        match held {
            Some(contact) => {
                contact.note_round_trip(sample);
                true
            }
            None => {
                self.unplaced_round_trip = Some((*id, RoundTrip::of(sample)));
                false
            }
        }
    }

    /// Records a query the contact failed to answer. A contact that turns bad is replaced by
    /// the most recent verified replacement, if there is one.
    pub fn note_failure(&mut self, id: &NodeId, addr: SocketAddr, now: Timestamp) {
        let index = self.bucket_index(id);
        let config = &self.config;
        let bucket = &mut self.buckets[index];
        let packed = PackedAddr::new(addr);
        let Some(pos) = bucket.position_of(id, packed) else {
            bucket.replacements.retain(|c| !(c.id == *id && c.addr == packed));
            return;
        };
        let contact = &mut bucket.contacts[pos];
        contact.failures = contact.failures.saturating_add(1);
        if contact.status(now, config) == ContactStatus::Bad {
            if let Some(replacement) = bucket.replacements.pop() {
                bucket.contacts.remove(pos);
                bucket.insert_sorted(replacement);
                bucket.last_changed = now;
            }
        }
    }

    /// Removes a contact outright (for example one that answered with an error about itself).
    pub fn remove(&mut self, id: &NodeId) -> Option<Contact> {
        let index = self.bucket_index(id);
        let bucket = &mut self.buckets[index];
        let pos = bucket.find(id).ok()?;
        let removed = bucket.contacts.remove(pos);
        if let Some(replacement) = bucket.replacements.pop() {
            bucket.insert_sorted(replacement);
        }
        Some(removed)
    }

    /// The `n` non-bad contacts closest to `target`, closest first; contacts that failed their
    /// last query only if too few others are known.
    pub fn closest(&self, target: &Id, n: usize) -> Vec<Contact> {
        self.closest_refs(target, n).into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// [`RoutingTable::closest`] as `(id, address)` pairs, as answers and lookups need them.
    pub fn closest_nodes(&self, target: &Id, n: usize) -> Vec<(NodeId, SocketAddr)> {
        self.closest_refs(target, n).into_iter().map(|(_, c)| (c.id, c.addr())).collect()
    }

    fn closest_refs(&self, target: &Id, n: usize) -> Closest<'_> {
        // Contacts that failed their last query are likely gone: handing them out costs the
        // asker a timeout. They are used only when too few others are known.
        let config = &self.config;
        let healthy = self.closest_matching(target, n, |c| c.failures == 0 && !c.is_bad(config));
        if healthy.len() >= n {
            return healthy;
        }
        self.closest_matching(target, n, |c| !c.is_bad(config))
    }

    /// Visits buckets in order of distance instead of sorting the whole table: with `i` the
    /// bucket the target falls in, contacts of bucket `i` share more than `i` bits with the
    /// target, those of every deeper bucket exactly `i`, and those of bucket `j < i` exactly
    /// `j`. So bucket `i` holds the closest, then the deeper buckets together, then `i-1`,
    /// `i-2`, … in turn; usually bucket `i` alone is enough. (This runs for every find_node and
    /// get_peers answered; sorting all contacts was the top cost of answering.)
    fn closest_matching(&self, target: &Id, n: usize, usable: impl Fn(&Contact) -> bool) -> Closest<'_> {
        let first = self.bucket_index(target);
        let mut best: Closest = Vec::with_capacity(n);
        extend_closest_sorted(&mut best, n, target, &self.buckets[first].contacts, &usable);
        let key = target.to_ints();
        extend_closest(&mut best, n, key, self.buckets[first + 1..].iter().flat_map(|b| b.contacts.iter()), &usable);
        for bucket in self.buckets[..first].iter().rev() {
            extend_closest(&mut best, n, key, bucket.contacts.iter(), &usable);
        }
        best
    }

    /// Of our `neighbours_checked` nearest contacts that are not bad, those not heard from
    /// (an answer or a query) for `neighbour_check_after`: the ones to ping, so that answers
    /// near our ID stop naming neighbours that died.
    pub fn silent_neighbours(&self, now: Timestamp) -> Vec<(NodeId, SocketAddr)> {
        let config = &self.config;
        let own = self.own_id;
        self.closest_matching(&own, config.neighbours_checked, |c| !c.is_bad(config))
            .into_iter()
            .filter(|(_, c)| now.saturating_since(c.last_seen()) >= config.neighbour_check_after)
            .map(|(_, c)| (c.id, c.addr()))
            .collect()
    }

    /// Buckets not changed for `refresh_after`, each with a random ID in its range to look up.
    /// The timestamps of returned buckets are reset so a refresh is not started twice.
    pub fn take_refresh_targets<R: rand::Rng + ?Sized>(&mut self, now: Timestamp, rng: &mut R) -> Vec<Id> {
        let refresh_after = self.config.refresh_after;
        let mut due = Vec::new();
        for (index, bucket) in self.buckets.iter_mut().enumerate() {
            if now.saturating_since(bucket.last_changed) >= refresh_after {
                bucket.last_changed = now;
                due.push(index);
            }
        }
        due.into_iter().map(|index| self.random_id_in_bucket(index, rng)).collect()
    }

    /// A random ID in the range of each bucket holding fewer than k contacts, or less than half
    /// its capacity if it is wide (the last bucket excepted: it fills as the table splits). A
    /// young table looks these up after joining; every node such a lookup asks falls in the
    /// bucket.
    pub fn sparse_bucket_targets<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Vec<Id> {
        let k = self.config.bucket_size;
        (0..self.buckets.len().saturating_sub(1))
            .filter(|i| self.buckets[*i].contacts.len() < k.max(self.bucket_capacity(*i) / 2))
            .map(|i| self.random_id_in_bucket(i, rng))
            .collect()
    }

    /// A random ID that falls in bucket `index`: it shares `index` bits with ours and differs at
    /// bit `index` (the last bucket only needs the shared prefix).
    fn random_id_in_bucket<R: rand::Rng + ?Sized>(&self, index: usize, rng: &mut R) -> Id {
        let own = self.own_id;
        let mut target = own.random_with_prefix(index, rng);
        if index < self.buckets.len() - 1 && target.bit(index) == own.bit(index) {
            target.0[index / 8] ^= 0x80 >> (index % 8);
        }
        target
    }

    /// Checks the structural invariants; used by tests and by the simulator while it runs.
    pub fn check_invariants(&self) -> Result<(), String> {
        let depth = self.buckets.len();
        let mut seen = std::collections::HashSet::new();
        for (index, bucket) in self.buckets.iter().enumerate() {
            if bucket.contacts.len() > self.bucket_capacity(index) {
                return Err(format!("bucket {index} holds {} contacts", bucket.contacts.len()));
            }
            if bucket.replacements.len() > self.config.replacement_cache_size {
                return Err(format!("bucket {index} holds {} replacements", bucket.replacements.len()));
            }
            if bucket.contacts.windows(2).any(|pair| pair[0].id >= pair[1].id) {
                return Err(format!("bucket {index} is not in ID order"));
            }
            if let Some(limit) = self.config.max_per_subnet {
                let held: Vec<IpAddr> =
                    bucket.contacts.iter().chain(&bucket.replacements).map(|c| c.addr().ip()).collect();
                let crowded = |ip: &&IpAddr| {
                    Subnet::of(**ip).is_some_and(|net| subnet::count_in(net, held.iter().copied()) > limit)
                };
                if let Some(ip) = held.iter().find(crowded) {
                    return Err(format!("bucket {index} holds more than {limit} contacts in the subnet of {ip}"));
                }
            }
            for c in &bucket.contacts {
                if c.id == self.own_id {
                    return Err("the table holds our own id".into());
                }
                if !seen.insert(c.id) {
                    return Err(format!("contact {} appears twice", c.id));
                }
                let shared = self.own_id.distance(&c.id).leading_zeros() as usize;
                let fits = if index == depth - 1 { shared >= index } else { shared == index };
                if !fits {
                    return Err(format!("contact {} sharing {shared} bits sits in bucket {index}", c.id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
    }

    /// The neighbours to check are our nearest contacts, at most `neighbours_checked` of them,
    /// that have been silent for `neighbour_check_after`: neither one that answered nor one that
    /// queried us within that time, nor a farther contact, nor a bad one.
    #[test]
    fn silent_neighbours_are_the_nearest_quiet_contacts() {
        let own = Id::ZERO;
        let config = RoutingTableConfig {
            neighbours_checked: 3,
            neighbour_check_after: Duration::from_secs(10),
            ..RoutingTableConfig::default()
        };
        let t0 = Timestamp::ZERO;
        let mut table = RoutingTable::new(own, config, t0);
        // Contacts at distances 1, 2, ..., 6 from us: nearest first.
        let ids: Vec<Id> = (1u8..=6)
            .map(|i| {
                let mut bytes = [0u8; 20];
                bytes[19] = i;
                Id::from_bytes(&bytes).unwrap()
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            table.insert_responded(*id, addr(i as u32 + 1), t0);
        }
        assert!(table.silent_neighbours(t0 + Duration::from_secs(9)).is_empty(), "all heard within 10 s");
        let later = t0 + Duration::from_secs(20);
        assert!(table.note_query(&ids[1], addr(2), t0 + Duration::from_secs(15)));
        table.note_failure(&ids[2], addr(3), t0);
        table.note_failure(&ids[2], addr(3), t0);
        let silent: Vec<Id> = table.silent_neighbours(later).into_iter().map(|(id, _)| id).collect();
        // The three nearest not bad are 1, 2 and 4; 2 queried us 5 s ago.
        assert_eq!(silent, vec![ids[0], ids[3]]);
    }

    /// A table fed many random contacts keeps its invariants: bucket sizes bounded by k, no
    /// duplicates, each contact in the bucket of its shared-prefix length, never our own ID.
    #[test]
    fn invariants_hold_under_random_inserts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let own = Id::random(&mut rng);
        let mut table = RoutingTable::new(own, RoutingTableConfig::default(), Timestamp::ZERO);
        for i in 0..5000 {
            let id = if i % 97 == 0 { own } else { Id::random(&mut rng) };
            table.insert_responded(id, addr(i), Timestamp::from_micros(i as u64));
        }
        table.check_invariants().unwrap();
        // 5000 random IDs fill about log2(5000/8) + 1 buckets.
        assert!(table.buckets().len() >= 8, "only {} buckets", table.buckets().len());
        assert!(table.len() >= 8 * 8);
    }

    /// Only the bucket holding our own ID splits: far buckets stay at k and overflow goes to the
    /// replacement cache, and the least recently seen questionable contact is offered for a ping.
    #[test]
    fn full_far_bucket_caches_and_asks_for_ping() {
        let own = Id::ZERO;
        // BEP 5's plain table: every bucket holds k.
        let config = RoutingTableConfig { first_bucket_sizes: [0; 4], ..RoutingTableConfig::default() };
        let mut table = RoutingTable::new(own, config, Timestamp::ZERO);
        // IDs with the top bit set all land in bucket 0 once the table has split.
        let far = |i: u8| {
            let mut b = [0u8; 20];
            b[0] = 0x80;
            b[19] = i;
            Id(b)
        };
        let near = {
            let mut b = [0u8; 20];
            b[19] = 1;
            Id(b)
        };
        table.insert_responded(near, addr(999), Timestamp::ZERO);
        for i in 0..8 {
            assert_eq!(table.insert_responded(far(i), addr(i as u32), Timestamp::ZERO), InsertOutcome::Inserted);
        }
        // Ninth far contact: the table splits (bucket 0 held our own range), then bucket 0 is full.
        let later = Timestamp::ZERO + Duration::from_secs(20 * 60);
        match table.insert_responded(far(8), addr(8), later) {
            InsertOutcome::Cached { ping: Some(c) } => assert_eq!(c.id, far(0)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(table.buckets()[0].contacts().len(), 8);
        assert_eq!(table.buckets()[0].replacements().len(), 1);
        // When the pinged contact fails twice it turns bad and the replacement takes its place.
        table.note_failure(&far(0), addr(0), later);
        table.note_failure(&far(0), addr(0), later);
        assert!(table.get(&far(0)).is_none());
        assert!(table.get(&far(8)).is_some());
        table.check_invariants().unwrap();
    }

    /// Contact status follows BEP 5: good when it answered recently, questionable after 15
    /// minutes of silence, good again if it queries us after having answered, bad after failures.
    #[test]
    fn contact_status_follows_bep5() {
        let config = RoutingTableConfig::default();
        let t0 = Timestamp::ZERO;
        let mut c = Contact::answered(Id::MAX, addr(1), t0);
        assert_eq!(c.status(t0 + Duration::from_secs(60), &config), ContactStatus::Good);
        let t1 = t0 + Duration::from_secs(16 * 60);
        assert_eq!(c.status(t1, &config), ContactStatus::Questionable);
        c.last_query = Seconds::at(t1);
        assert_eq!(c.status(t1, &config), ContactStatus::Good);
        c.failures = 2;
        assert_eq!(c.status(t1, &config), ContactStatus::Bad);
    }

    /// The first buckets widen to their configured capacity once they have split off (not
    /// before: the last bucket splits at k), then cache newcomers like any full bucket.
    #[test]
    fn far_buckets_widen_once_split() {
        let mut table = RoutingTable::new(Id::ZERO, RoutingTableConfig::default(), Timestamp::ZERO);
        let with_prefix = |prefix: u8, i: u32| {
            let mut b = [0u8; 20];
            b[0] = prefix;
            b[16..].copy_from_slice(&i.to_be_bytes());
            Id(b)
        };
        // Bucket 0 (top bit differs from ours): the only bucket holds k, then splits (it holds
        // our own range), and the far half widens.
        for i in 0..8 {
            table.insert_responded(with_prefix(0x80, i), addr(i), Timestamp::ZERO);
        }
        assert_eq!((table.buckets().len(), table.bucket_capacity(0)), (1, 8));
        for i in 8..400 {
            table.insert_responded(with_prefix(0x80, i), addr(i), Timestamp::ZERO);
        }
        assert_eq!(table.bucket_capacity(0), 128);
        assert_eq!(table.buckets()[0].contacts().len(), 128);
        assert!(!table.would_accept(&with_prefix(0x80, 999), addr(999), Timestamp::ZERO), "full of good contacts");
        // Bucket 1 (second bit differs) widens to 64 once it has split off in turn.
        for i in 0..100 {
            table.insert_responded(with_prefix(0x40, i), addr(2000 + i), Timestamp::ZERO);
        }
        assert_eq!(table.buckets()[1].contacts().len(), 64);
        assert_eq!(table.bucket_capacity(table.buckets().len() - 1), 8);
        table.check_invariants().unwrap();
    }

    /// Sybil limit: a bucket takes at most two contacts from one IPv4 /24 or IPv6 /64 (its
    /// replacement cache included), other subnets still get in, the node would not even ping a
    /// third, and private or loopback addresses (test networks, LANs) are not limited.
    #[test]
    fn one_subnet_gets_two_slots_per_bucket() {
        let mut table = RoutingTable::new(Id::ZERO, RoutingTableConfig::default(), Timestamp::ZERO);
        let far = |i: u32| {
            let mut b = [0u8; 20];
            b[0] = 0x80;
            b[16..].copy_from_slice(&i.to_be_bytes());
            Id(b)
        };
        let farm = |i: u32| SocketAddr::from(([203, 0, 113, i as u8], 6881));
        let farm6 = |i: u32| SocketAddr::new(format!("2001:db8:0:1::{i}").parse().unwrap(), 6881);
        let t = Timestamp::ZERO;
        assert_eq!(table.insert_responded(far(1), farm(1), t), InsertOutcome::Inserted);
        assert_eq!(table.insert_responded(far(2), farm(2), t), InsertOutcome::Inserted);
        assert!(!table.would_accept(&far(3), farm(3), t));
        assert_eq!(table.insert_responded(far(3), farm(3), t), InsertOutcome::Rejected);
        assert_eq!(
            table.insert_responded(far(4), SocketAddr::from(([203, 0, 114, 1], 6881)), t),
            InsertOutcome::Inserted
        );
        assert_eq!(table.insert_responded(far(5), farm6(1), t), InsertOutcome::Inserted);
        assert_eq!(table.insert_responded(far(6), farm6(2), t), InsertOutcome::Inserted);
        assert_eq!(table.insert_responded(far(7), farm6(3), t), InsertOutcome::Rejected);
        for i in 10..16 {
            assert_eq!(table.insert_responded(far(i), addr(i), t), InsertOutcome::Inserted, "private addresses");
        }
        table.check_invariants().unwrap();
        let open = RoutingTableConfig { max_per_subnet: None, ..RoutingTableConfig::default() };
        let mut table = RoutingTable::new(Id::ZERO, open, t);
        assert!((1..=6).all(|i| table.insert_responded(far(i), farm(i), t) == InsertOutcome::Inserted));
    }

    /// A contact keeps its address exactly, whatever the family, and its round trip, in 48
    /// bytes: the memory budget of an idle node depends on it.
    #[test]
    fn contacts_keep_addresses_and_round_trips_in_48_bytes() {
        let addrs: [SocketAddr; 6] = [
            "1.2.3.4:6881".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "255.255.255.255:1".parse().unwrap(),
            "[2001:db8::1]:65535".parse().unwrap(),
            "[::]:6881".parse().unwrap(),
            "[::1.2.3.4]:6881".parse().unwrap(),
        ];
        for a in addrs {
            let mut c = Contact::answered(Id::MAX, a, Timestamp::ZERO);
            assert_eq!(c.addr(), a);
            assert_eq!(c.round_trip(), None, "never measured");
            c.note_round_trip(Duration::from_millis(40));
            assert_eq!(c.addr(), a, "the round trip is kept beside the address, not in it");
            assert!(close(c.round_trip(), 40_000.0), "{:?}", c.round_trip());
        }
        assert_eq!(std::mem::size_of::<Contact>(), 48);
    }

    /// The family is read from the stored address, so an IPv6 address of the IPv4-mapped form
    /// would come back as IPv4: no table takes such a contact (nor asks for a ping to one), and
    /// one never alters the IPv4 contact it names.
    #[test]
    fn v4_mapped_ipv6_addresses_are_not_contacts() {
        let v4: SocketAddr = "1.2.3.4:6881".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:6881".parse().unwrap();
        let now = Timestamp::ZERO;
        let mut table = RoutingTable::new(Id::ZERO, RoutingTableConfig::default(), now);
        assert!(!table.would_accept(&Id::MAX, mapped, now));
        assert_eq!(table.insert_responded(Id::MAX, mapped, now), InsertOutcome::Rejected);
        assert!(table.is_empty());
        assert!(table.would_accept(&Id::MAX, v4, now));
        assert_eq!(table.insert_responded(Id::MAX, v4, now), InsertOutcome::Inserted);
        assert_eq!(table.insert_responded(Id::MAX, mapped, now), InsertOutcome::Rejected);
        assert_eq!(table.get(&Id::MAX).unwrap().addr(), v4);
        assert_eq!(table.get(&Id::MAX).unwrap().last_response(), Some(now));
    }

    fn close(got: Option<Duration>, micros: f64) -> bool {
        got.is_some_and(|d| (d.as_secs_f64() * 1e6 / micros - 1.0).abs() <= 0.036)
    }

    /// A contact's round trip is smoothed over its samples (within the scale's 3.5%), kept
    /// apart from other contacts', and unknown before the first answer; the scale spans
    /// loopback to timeouts, and a round trip measured as nothing still counts as measured.
    #[test]
    fn round_trips_are_smoothed_per_contact() {
        let mut table = RoutingTable::new(Id::ZERO, RoutingTableConfig::default(), Timestamp::ZERO);
        let ids: Vec<NodeId> = (1..=5u8).map(|n| Id::from_bytes(&[n << 4; 20]).unwrap()).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(table.insert_responded(*id, addr((i as u32) << 8), Timestamp::ZERO), InsertOutcome::Inserted);
        }
        let rtt = |table: &RoutingTable, i: usize| table.get(&ids[i]).unwrap().round_trip();
        assert_eq!(rtt(&table, 0), None);
        assert!(table.note_round_trip(&ids[0], Duration::from_millis(80)));
        assert!(table.note_round_trip(&ids[1], Duration::from_millis(5)));
        assert!(close(rtt(&table, 0), 80_000.0), "{:?}", rtt(&table, 0));
        table.note_round_trip(&ids[0], Duration::from_millis(160));
        assert!(close(rtt(&table, 0), 90_000.0), "7/8 of 80 + 1/8 of 160: {:?}", rtt(&table, 0));
        assert!(close(rtt(&table, 1), 5_000.0));
        table.note_round_trip(&ids[2], Duration::from_secs(300));
        assert!(rtt(&table, 2).unwrap() > Duration::from_secs(25), "capped, not wrapped");
        table.note_round_trip(&ids[3], Duration::from_micros(213));
        assert!(close(rtt(&table, 3), 213.0), "loopback round trips keep their scale");
        table.note_round_trip(&ids[4], Duration::ZERO);
        assert!(rtt(&table, 4).unwrap() <= Duration::from_micros(2));
    }

    /// A node's first answer is timed before it is offered to the table: the contact made of
    /// it starts with that round trip (another node's does not count), and a contact waiting
    /// in the replacement cache keeps its round trip when it takes a bad contact's place.
    #[test]
    fn first_answers_and_replacements_keep_round_trips() {
        let t = Timestamp::ZERO;
        let config = RoutingTableConfig { bucket_size: 1, first_bucket_sizes: [0; 4], ..RoutingTableConfig::default() };
        let mut table = RoutingTable::new(Id::ZERO, config, t);
        // All in the far bucket (first bit 1), which holds one contact: `a` fills it, and `b`
        // splits the table (to no avail: the new bucket is the near half) and is then cached.
        let (a, b, c) = ([0x80; 20], [0xc0; 20], [0xe0; 20]);
        let [a, b, c] = [a, b, c].map(|bytes| Id::from_bytes(&bytes).unwrap());
        assert!(!table.note_round_trip(&a, Duration::from_millis(30)));
        assert!(!table.note_round_trip(&c, Duration::from_millis(70)));
        assert_eq!(table.insert_responded(a, addr(1), t), InsertOutcome::Inserted);
        assert_eq!(table.get(&a).unwrap().round_trip(), None, "the sample was another node's");
        assert!(!table.note_round_trip(&b, Duration::from_millis(50)));
        assert!(matches!(table.insert_responded(b, addr(2), t), InsertOutcome::Cached { .. }));
        let cached = |table: &RoutingTable| table.buckets()[0].replacements().first().cloned();
        assert!(close(cached(&table).unwrap().round_trip(), 50_000.0));
        assert!(table.note_round_trip(&b, Duration::from_millis(130)));
        assert!(close(cached(&table).unwrap().round_trip(), 60_000.0), "{:?}", cached(&table));
        for _ in 0..table.config().bad_after_failures {
            table.note_failure(&a, addr(1), t);
        }
        assert!(table.get(&a).is_none());
        assert!(close(table.get(&b).unwrap().round_trip(), 60_000.0), "moved with its round trip");
    }

    /// An ID already in the table claimed from another address is rejected (no slot hijack).
    #[test]
    fn same_id_other_address_is_rejected() {
        let mut table = RoutingTable::new(Id::ZERO, RoutingTableConfig::default(), Timestamp::ZERO);
        assert_eq!(table.insert_responded(Id::MAX, addr(1), Timestamp::ZERO), InsertOutcome::Inserted);
        assert_eq!(table.insert_responded(Id::MAX, addr(2), Timestamp::ZERO), InsertOutcome::Rejected);
        assert_eq!(table.get(&Id::MAX).unwrap().addr(), addr(1));
    }

    /// Idle buckets produce refresh targets that fall inside their own range, once; sparse
    /// buckets produce targets inside their ranges.
    #[test]
    fn refresh_targets_fall_in_their_bucket() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let own = Id::random(&mut rng);
        let mut table = RoutingTable::new(own, RoutingTableConfig::default(), Timestamp::ZERO);
        for i in 0..300 {
            table.insert_responded(Id::random(&mut rng), addr(i), Timestamp::ZERO);
        }
        let later = Timestamp::ZERO + Duration::from_secs(16 * 60);
        let targets = table.take_refresh_targets(later, &mut rng);
        assert_eq!(targets.len(), table.buckets().len());
        let depth = table.buckets().len();
        for (index, t) in targets.iter().enumerate() {
            let shared = own.distance(t).leading_zeros() as usize;
            if index < depth - 1 {
                assert_eq!(shared, index);
            } else {
                assert!(shared >= index);
            }
        }
        assert!(table.take_refresh_targets(later, &mut rng).is_empty());
        // Sparse-bucket targets fall in buckets holding fewer than k contacts, and only there.
        let sparse: Vec<usize> = (0..depth - 1).filter(|i| table.buckets()[*i].contacts().len() < 8).collect();
        assert!(!sparse.is_empty(), "the test table has a sparse bucket");
        let targets = table.sparse_bucket_targets(&mut rng);
        let hit: Vec<usize> = targets.iter().map(|t| own.distance(t).leading_zeros() as usize).collect();
        assert_eq!(hit, sparse);
    }

    proptest! {
        /// `closest` returns the n closest non-bad contacts in distance order, for targets in
        /// wide far buckets and in deep ones alike.
        #[test]
        fn closest_is_sorted_and_minimal(seed in any::<u64>(), target in any::<[u8; 20]>(), n in 1usize..30, shared in 0usize..20) {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut table = RoutingTable::new(Id::random(&mut rng), RoutingTableConfig::default(), Timestamp::ZERO);
            for i in 0..200 { table.insert_responded(Id::random(&mut rng), addr(i), Timestamp::ZERO); }
            let target = Id(target);
            // A random target, and one sharing `shared` bits with our own ID (deep buckets).
            let near = table.own_id().random_with_prefix(shared, &mut rng);
            for target in [target, near] {
                let got = table.closest(&target, n);
                let mut all: Vec<_> = table.contacts().map(|c| c.id.distance(&target)).collect();
                all.sort();
                let want: Vec<_> = all.into_iter().take(n).collect();
                let got_d: Vec<_> = got.iter().map(|c| c.id.distance(&target)).collect();
                prop_assert_eq!(got_d, want);
            }
            table.check_invariants().unwrap();
        }
    }
}
