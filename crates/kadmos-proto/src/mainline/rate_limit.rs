use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::time::Timestamp;

/// A sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Units (queries or bytes) per second.
    pub per_second: u32,
    /// Units that may be spent at once after a quiet spell (the bucket's size).
    pub burst: u32,
}

impl Rate {
    /// `per_second` with a burst of two seconds' worth.
    pub const fn per_second(per_second: u32) -> Rate {
        Rate { per_second, burst: per_second.saturating_mul(2) }
    }
}

/// The limits of a node. `None` turns a limit off.
///
/// Limits on what a Mainline node serves: queries per source address and in all, reply bytes
/// to sources it has not verified, and bytes sent in all.
///
/// BEP 5 has no error for "too many queries", so a query over a limit is dropped silently
/// and counted. Each limit is a token bucket (a rate and a burst) rather than a fixed window:
/// a window lets a source send twice its quota across a window edge, and a bucket lets an
/// honest node's short burst (a lookup asks a node a few things at once) through without
/// raising the sustained rate.
///
/// Anchors: libtorrent blocks an IP past 5 messages a second (its `dos_blocker`) and caps
/// its upload at 8,000 B/s by default; OpenDHT serves 1,024 requests a second per IP and
/// 8,192 in all. kadmos's defaults sit far above any honest node's rate towards one other
/// node (a lookup asks a given node one or two things), and the global ones far above what a
/// node on the real network is asked (tens to hundreds of queries a second), so that honest
/// traffic never meets them; they exist to stop one source from taking the whole node.
///
/// Amplification: an answer is larger than the query (a `get_peers` answer carries up to
/// 600 bytes of peers and 8 nodes for a query of about 100 bytes), and a query's source
/// address can be forged. So the bytes answered to a source the routing table has not
/// verified (it never answered one of our queries from that address) are capped per IP:
/// a forger can aim at most that many bytes a second of our answers at its victim.
///
/// The per-address table holds at most `max_tracked_sources` entries. An entry whose buckets
/// are full again carries no information and is forgotten; when the table is full of active
/// sources, a new source is judged by the global limits alone (a flood from forged random
/// addresses is what the global limit is for).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// Queries served per source IP address. Default 100 a second, bursts of 200.
    pub queries_per_ip: Option<Rate>,
    /// Queries served in all. Default 10,000 a second, bursts of 20,000.
    pub queries: Option<Rate>,
    /// Reply bytes sent to one IP address that the routing table has not verified (no
    /// amplification). Default 32 KiB a second, bursts of 64 KiB (some 50 full `get_peers`
    /// answers a second).
    pub unverified_reply_bytes_per_ip: Option<Rate>,
    /// Bytes sent in all. Replies over it are dropped; our own requests are always sent but
    /// spend from it, so a busy node answers less rather than stop working. Default 8 MiB a
    /// second, bursts of 16 MiB (above what the global query limit can cause).
    pub outbound_bytes: Option<Rate>,
    /// Source addresses tracked at once. Default 8,192 (about 600 KiB at most; the table
    /// empties as sources go quiet).
    pub max_tracked_sources: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            queries_per_ip: Some(Rate::per_second(100)),
            queries: Some(Rate::per_second(10_000)),
            unverified_reply_bytes_per_ip: Some(Rate::per_second(32 * 1024)),
            outbound_bytes: Some(Rate::per_second(8 * 1024 * 1024)),
            max_tracked_sources: 8192,
        }
    }
}

impl RateLimits {
    /// No limit at all: for benchmarks that measure raw speed, and for networks whose nodes
    /// share one address and trust each other.
    pub fn unlimited() -> RateLimits {
        RateLimits {
            queries_per_ip: None,
            queries: None,
            unverified_reply_bytes_per_ip: None,
            outbound_bytes: None,
            max_tracked_sources: 0,
        }
    }
}

impl RateLimits {
    /// The defaults without the per-address limits: for networks whose nodes all share one
    /// address (a testnet on 127.0.0.1), where one address is the whole network.
    pub fn shared_address() -> RateLimits {
        RateLimits { queries_per_ip: None, unverified_reply_bytes_per_ip: None, ..RateLimits::default() }
    }
}

/// A token bucket: holds up to `burst` tokens and refills at `per_second`.
#[derive(Clone, Copy, Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Timestamp,
}

impl TokenBucket {
    fn full(rate: Rate, now: Timestamp) -> TokenBucket {
        TokenBucket { tokens: f64::from(rate.burst), updated: now }
    }

    fn refill(&mut self, rate: Rate, now: Timestamp) {
        // A clock that steps back (a driver's bug) must not drain or overfill the bucket.
        let elapsed = now.saturating_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate.per_second)).min(f64::from(rate.burst));
        self.updated = self.updated.max(now);
    }

    /// Takes `amount` tokens if the bucket holds them.
    fn take(&mut self, rate: Rate, now: Timestamp, amount: f64) -> bool {
        self.refill(rate, now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// Takes `amount` tokens even if that leaves the bucket in debt (of one burst at most);
    /// the next refill counts from the last update, so no clock is needed here.
    fn spend(&mut self, rate: Rate, amount: f64) {
        self.tokens = (self.tokens - amount).max(-f64::from(rate.burst));
    }

    fn is_full(&mut self, rate: Rate, now: Timestamp) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate.burst)
    }
}

/// What the node knows of one source address.
#[derive(Clone, Copy, Debug)]
struct Source {
    queries: TokenBucket,
    reply_bytes: TokenBucket,
}

/// Why something was not sent or served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The source sent more queries than its own limit.
    SourceQueries,
    /// All sources together sent more queries than the node serves.
    TotalQueries,
    /// The answer would exceed the bytes allowed to an unverified address.
    UnverifiedBytes,
    /// The answer would exceed the node's outbound bytes.
    OutboundBytes,
}

/// The state of every limit of one node.
#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    queries: Option<TokenBucket>,
    outbound: Option<TokenBucket>,
    sources: HashMap<IpAddr, Source>,
    last_sweep: Timestamp,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits, now: Timestamp) -> RateLimiter {
        RateLimiter {
            queries: limits.queries.map(|r| TokenBucket::full(r, now)),
            outbound: limits.outbound_bytes.map(|r| TokenBucket::full(r, now)),
            limits,
            sources: HashMap::new(),
            last_sweep: now,
        }
    }

    /// Source addresses tracked now.
    #[cfg(test)]
    pub(crate) fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Counts a query from `ip`; whether it may be served.
    pub(crate) fn allow_query(&mut self, now: Timestamp, ip: IpAddr) -> Result<(), Refusal> {
        if let Some(rate) = self.limits.queries_per_ip {
            if let Some(source) = self.source(now, ip) {
                if !source.queries.take(rate, now, 1.0) {
                    return Err(Refusal::SourceQueries);
                }
            }
        }
        if let (Some(rate), Some(bucket)) = (self.limits.queries, self.queries.as_mut()) {
            if !bucket.take(rate, now, 1.0) {
                return Err(Refusal::TotalQueries);
            }
        }
        Ok(())
    }

    /// Counts an answer of `bytes` to `ip`; whether it may be sent. `verified`: the routing
    /// table holds the source at this address (it answered us from there).
    pub(crate) fn allow_reply(
        &mut self,
        now: Timestamp,
        ip: IpAddr,
        bytes: usize,
        verified: bool,
    ) -> Result<(), Refusal> {
        let amount = bytes as f64;
        if let (Some(rate), Some(bucket)) = (self.limits.outbound_bytes, self.outbound.as_mut()) {
            bucket.refill(rate, now);
            if bucket.tokens < amount {
                return Err(Refusal::OutboundBytes);
            }
        }
        if let (false, Some(rate)) = (verified, self.limits.unverified_reply_bytes_per_ip) {
            if let Some(source) = self.source(now, ip) {
                if !source.reply_bytes.take(rate, now, amount) {
                    return Err(Refusal::UnverifiedBytes);
                }
            }
        }
        self.spend_outbound(bytes);
        Ok(())
    }

    /// Counts bytes of our own requests, which are always sent.
    pub(crate) fn spend_outbound(&mut self, bytes: usize) {
        if let (Some(rate), Some(bucket)) = (self.limits.outbound_bytes, self.outbound.as_mut()) {
            bucket.spend(rate, bytes as f64);
        }
    }

    /// Forgets sources whose buckets have refilled, and gives back the memory of a table that
    /// a burst grew (an idle node holds nothing here).
    pub(crate) fn forget_quiet_sources(&mut self, now: Timestamp) {
        self.last_sweep = now;
        let limits = &self.limits;
        self.sources.retain(|_, source| !source_is_quiet(source, limits, now));
        if self.sources.capacity() > 2 * self.sources.len() + 16 {
            self.sources.shrink_to_fit();
        }
    }

    /// The entry of `ip`, created if there is room (`None` when the table is full of active
    /// sources).
    fn source(&mut self, now: Timestamp, ip: IpAddr) -> Option<&mut Source> {
        if !self.sources.contains_key(&ip) {
            if self.sources.len() >= self.limits.max_tracked_sources {
                if now.saturating_since(self.last_sweep) < Duration::from_secs(1) {
                    return None;
                }
                self.forget_quiet_sources(now);
                if self.sources.len() >= self.limits.max_tracked_sources {
                    return None;
                }
            }
            let fresh = |rate: Option<Rate>| TokenBucket::full(rate.unwrap_or(Rate::per_second(0)), now);
            let source = Source {
                queries: fresh(self.limits.queries_per_ip),
                reply_bytes: fresh(self.limits.unverified_reply_bytes_per_ip),
            };
            self.sources.insert(ip, source);
        }
        self.sources.get_mut(&ip)
    }
}

fn source_is_quiet(source: &mut Source, limits: &RateLimits, now: Timestamp) -> bool {
    let queries_full = limits.queries_per_ip.is_none_or(|rate| source.queries.is_full(rate, now));
    let bytes_full = limits.unverified_reply_bytes_per_ip.is_none_or(|rate| source.reply_bytes.is_full(rate, now));
    queries_full && bytes_full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_millis(millis)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// A source gets its burst at once, then its rate; other sources are not affected; the
    /// global bucket caps all sources together.
    #[test]
    fn per_source_and_global_buckets() {
        let limits = RateLimits {
            queries_per_ip: Some(Rate { per_second: 10, burst: 20 }),
            queries: Some(Rate { per_second: 100, burst: 30 }),
            ..RateLimits::default()
        };
        let mut limiter = RateLimiter::new(limits, at(0));
        let served = (0..50).filter(|_| limiter.allow_query(at(0), ip(1)).is_ok()).count();
        assert_eq!(served, 20, "the burst");
        assert_eq!(limiter.allow_query(at(0), ip(1)), Err(Refusal::SourceQueries));
        assert_eq!((0..20).filter(|_| limiter.allow_query(at(0), ip(2)).is_ok()).count(), 10, "30 in all");
        assert_eq!(limiter.allow_query(at(0), ip(3)), Err(Refusal::TotalQueries));
        // Half a second later: 5 more for source 1 (its rate), the global bucket has 50 more.
        assert_eq!((0..50).filter(|_| limiter.allow_query(at(500), ip(1)).is_ok()).count(), 5);
    }

    /// Unverified addresses get their reply bytes and no more; verified ones are not counted
    /// against it; the outbound cap applies to both, and requests of our own spend from it.
    #[test]
    fn reply_bytes() {
        let limits = RateLimits {
            unverified_reply_bytes_per_ip: Some(Rate { per_second: 1000, burst: 1000 }),
            outbound_bytes: Some(Rate { per_second: 10_000, burst: 3000 }),
            ..RateLimits::default()
        };
        let mut limiter = RateLimiter::new(limits, at(0));
        assert!(limiter.allow_reply(at(0), ip(1), 600, false).is_ok());
        assert_eq!(limiter.allow_reply(at(0), ip(1), 600, false), Err(Refusal::UnverifiedBytes));
        assert!(limiter.allow_reply(at(0), ip(1), 600, true).is_ok(), "verified: only the outbound cap");
        limiter.spend_outbound(1500);
        assert_eq!(limiter.allow_reply(at(0), ip(2), 600, true), Err(Refusal::OutboundBytes));
        assert!(limiter.allow_reply(at(100), ip(2), 600, true).is_ok(), "1,000 bytes refilled");
    }

    /// Sources that went quiet are forgotten; a full table judges newcomers by the global
    /// limit alone until a sweep makes room.
    #[test]
    fn tracked_sources_are_bounded() {
        let limits = RateLimits { max_tracked_sources: 4, ..RateLimits::default() };
        let mut limiter = RateLimiter::new(limits, at(0));
        for last in 0..10 {
            assert!(limiter.allow_query(at(0), ip(last)).is_ok());
        }
        assert_eq!(limiter.tracked_sources(), 4);
        limiter.forget_quiet_sources(at(5000));
        assert_eq!(limiter.tracked_sources(), 0);
        assert!(RateLimiter::new(RateLimits::unlimited(), at(0)).allow_reply(at(0), ip(1), 1 << 30, false).is_ok());
    }
}
