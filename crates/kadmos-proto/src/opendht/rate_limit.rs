//! Rate limit on the requests a node serves, per IP address and in all.
//!
//! OpenDHT (savoirfairelinux/opendht src/network_engine.cpp `rateLimit`,
//! include/opendht/rate_limiter.h) drops requests beyond 1024 per second from one address and
//! 8192 per second in all, counting each over a sliding second. kadmos counts over fixed
//! one-second windows, which needs no queue of timestamps: the per-address table holds at most
//! as many entries as the global quota allows requests in one window, and is emptied each window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::time::Timestamp;

#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    global_quota: Option<u32>,
    per_ip_quota: Option<u32>,
    window_start: Timestamp,
    global: u32,
    per_ip: HashMap<IpAddr, u32>,
}

impl RateLimiter {
    /// `None` means no limit.
    pub(crate) fn new(global_quota: Option<u32>, per_ip_quota: Option<u32>) -> RateLimiter {
        RateLimiter { global_quota, per_ip_quota, window_start: Timestamp::ZERO, global: 0, per_ip: HashMap::new() }
    }

    /// Counts a request from `ip`; whether it may be served.
    pub(crate) fn allow(&mut self, now: Timestamp, ip: IpAddr) -> bool {
        if now.saturating_since(self.window_start) >= Duration::from_secs(1) || now < self.window_start {
            self.window_start = now;
            self.global = 0;
            self.per_ip.clear();
            if self.per_ip.capacity() > 1024 {
                self.per_ip.shrink_to(64);
            }
        }
        if self.global_quota.is_some_and(|q| self.global >= q) {
            return false;
        }
        if let Some(quota) = self.per_ip_quota {
            let count = self.per_ip.entry(ip).or_insert(0);
            if *count >= quota {
                return false;
            }
            *count += 1;
        }
        self.global += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each address gets its quota per window, all together the global quota, and a new window
    /// starts afresh.
    #[test]
    fn quotas_per_window() {
        let mut r = RateLimiter::new(Some(5), Some(3));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Timestamp::ZERO;
        assert_eq!((0..4).filter(|_| r.allow(t, a)).count(), 3);
        assert_eq!((0..4).filter(|_| r.allow(t, b)).count(), 2, "global quota of 5");
        let next = t + Duration::from_secs(1);
        assert!(r.allow(next, a));
        assert!(RateLimiter::new(None, None).allow(t, a));
    }
}
