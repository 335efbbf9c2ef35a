use std::net::IpAddr;
use std::time::Duration;

use crate::time::Timestamp;

/// Tuning of the adaptive mode.
///
/// Adaptive read-only mode (BEP 43): a node that others cannot reach (behind a NAT or a
/// firewall that drops unsolicited datagrams) only wastes their time if it enters their
/// routing tables, since every query they send it times out. So a node watches whether
/// anyone reaches it unasked while its own queries work, and if nobody does for a whole
/// window, it turns read-only (`ro=1` on its queries; it answers nothing). It turns back
/// once a query reaches it unasked, and otherwise tries serving again every
/// `read_only_for`, since a NAT's mapping or a firewall's rules can change.
///
/// "Unasked" means from an address we have sent nothing to lately: a NAT lets in datagrams
/// from an address it just sent to (the answer, or the verification ping a node sends back
/// to a querier), so those prove nothing. Recent destinations are kept in two generations of
/// a 2,048-bit filter (one window each, 512 bytes in all): a false match only makes a real
/// unasked query look asked, and a reachable node on the real network is asked hundreds of
/// times per window, so one is enough to stay serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveReadOnly {
    /// How long a node must go unasked, with its own queries answered, before it turns
    /// read-only. Default 10 minutes.
    pub window: Duration,
    /// Answers to our own requests within the window that show our queries work (a node
    /// with no traffic at all learns nothing). Default 8.
    pub min_answers: u32,
    /// How long a read-only node waits before serving again to see if it has become
    /// reachable (it turns back at once if asked meanwhile). Default 30 minutes.
    pub read_only_for: Duration,
}

impl Default for AdaptiveReadOnly {
    fn default() -> Self {
        AdaptiveReadOnly {
            window: Duration::from_secs(10 * 60),
            min_answers: 8,
            read_only_for: Duration::from_secs(30 * 60),
        }
    }
}

const FILTER_WORDS: usize = 32;

/// A set of IP addresses that may answer "present" for some it never held.
#[derive(Clone, Debug, Default)]
struct AddressFilter([u64; FILTER_WORDS]);

impl AddressFilter {
    fn bit(ip: IpAddr) -> (usize, u64) {
        // FNV-1a: cheap, and evenly spread for addresses.
        let octets = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let hash =
            octets.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let bit = (hash % (FILTER_WORDS as u64 * 64)) as usize;
        (bit / 64, 1 << (bit % 64))
    }

    fn insert(&mut self, ip: IpAddr) {
        let (word, mask) = Self::bit(ip);
        self.0[word] |= mask;
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (word, mask) = Self::bit(ip);
        self.0[word] & mask != 0
    }
}

/// Whether the node serves or stays read-only, and the evidence for it.
#[derive(Clone, Debug)]
pub(crate) struct Reachability {
    config: AdaptiveReadOnly,
    read_only_until: Option<Timestamp>,
    window_start: Timestamp,
    answers: u32,
    unasked: u32,
    sent_to: [AddressFilter; 2],
}

impl Reachability {
    pub(crate) fn new(config: AdaptiveReadOnly, now: Timestamp) -> Reachability {
        Reachability {
            config,
            read_only_until: None,
            window_start: now,
            answers: 0,
            unasked: 0,
            sent_to: Default::default(),
        }
    }

    /// Whether the node is read-only now.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only_until.is_some()
    }

    /// We sent a request to `ip`.
    pub(crate) fn note_sent(&mut self, ip: IpAddr) {
        self.sent_to[0].insert(ip);
    }

    /// A request of ours was answered.
    pub(crate) fn note_answer(&mut self) {
        self.answers = self.answers.saturating_add(1);
    }

    /// A query arrived from `ip`. One we did not invite shows that we are reachable: a
    /// read-only node turns back to serving at once.
    pub(crate) fn note_query(&mut self, now: Timestamp, ip: IpAddr) {
        if self.sent_to.iter().any(|f| f.contains(ip)) {
            return;
        }
        if self.read_only_until.take().is_some() {
            self.start_window(now);
        }
        self.unasked = self.unasked.saturating_add(1);
    }

    /// Ends the window or the read-only spell when due (call it periodically). Windows run on
    /// while read-only too, so that old destinations are forgotten.
    pub(crate) fn tick(&mut self, now: Timestamp) {
        if now.saturating_since(self.window_start) >= self.config.window {
            let unreachable =
                self.read_only_until.is_none() && self.unasked == 0 && self.answers >= self.config.min_answers;
            self.start_window(now);
            if unreachable {
                self.read_only_until = Some(now + self.config.read_only_for);
            }
        }
        if self.read_only_until.is_some_and(|until| now >= until) {
            self.read_only_until = None;
            self.start_window(now);
        }
    }

    fn start_window(&mut self, now: Timestamp) {
        self.window_start = now;
        self.answers = 0;
        self.unasked = 0;
        self.sent_to[1] = std::mem::take(&mut self.sent_to[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_secs(secs)
    }

    /// Unasked for a window while answered: read-only. Queries from addresses we sent to do
    /// not count; one from elsewhere turns the node back at once; a read-only spell ends by
    /// itself; a node without answers never turns.
    #[test]
    fn turns_read_only_and_back() {
        let config = AdaptiveReadOnly {
            window: Duration::from_secs(60),
            min_answers: 2,
            read_only_for: Duration::from_secs(300),
        };
        let mut r = Reachability::new(config, at(0));
        let contacted = IpAddr::from([198, 51, 100, 1]);
        r.note_sent(contacted);
        r.note_answer();
        r.note_answer();
        r.note_query(at(10), contacted);
        r.tick(at(60));
        assert!(r.is_read_only(), "only invited queries in a window with answers");
        r.note_query(at(70), IpAddr::from([203, 0, 113, 1]));
        assert!(!r.is_read_only(), "an unasked query proves reachability");
        r.note_answer();
        r.note_answer();
        r.tick(at(130));
        assert!(!r.is_read_only(), "the window had an unasked query");
        r.note_answer();
        r.note_answer();
        r.tick(at(190));
        assert!(r.is_read_only());
        r.tick(at(489));
        assert!(r.is_read_only());
        r.tick(at(490));
        assert!(!r.is_read_only(), "the spell is over: serve again and see");
        r.tick(at(550));
        assert!(!r.is_read_only(), "no answers in that window: no evidence");
    }
}
