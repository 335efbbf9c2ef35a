//! Per-address limits: a token bucket of requests per second, and a cap on open listen streams.
//! Over either, the answer is 429 with `Retry-After`. Loopback clients can be exempted (the
//! default: a local client is the operator's own). The table of addresses is bounded: idle
//! buckets are dropped when it grows large.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::api_error::ApiError;

/// Addresses tracked before idle ones are dropped.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitsConfig {
    /// Requests per second per address (sustained); `None`: no limit.
    pub requests_per_sec: Option<f64>,
    /// Requests an address may send at once after being quiet.
    pub burst: f64,
    /// Open listen streams per address.
    pub listens_per_ip: usize,
    /// Whether loopback addresses are exempt from both.
    pub exempt_loopback: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { requests_per_sec: Some(200.0), burst: 400.0, listens_per_ip: 256, exempt_loopback: true }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct ClientLimits {
    config: LimitsConfig,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    listens: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// An open listen stream, counted against its address until dropped.
pub struct ListenSlot {
    ip: Option<IpAddr>,
    listens: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ListenSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut listens = self.listens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = listens.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                listens.remove(&ip);
            }
        }
    }
}

impl ClientLimits {
    pub fn new(config: LimitsConfig) -> ClientLimits {
        ClientLimits { config, buckets: Mutex::new(HashMap::new()), listens: Arc::new(Mutex::new(HashMap::new())) }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.config.exempt_loopback && ip.to_canonical().is_loopback()
    }

    /// Counts a request from `ip`; 429 when its bucket is empty.
    pub fn admit(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(rate) = self.config.requests_per_sec.filter(|r| *r > 0.0) else { return Ok(()) };
        if self.exempt(ip) {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            // A full bucket is one that has been quiet long enough to forget.
            let full = self.config.burst / rate;
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < full);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket { tokens: self.config.burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(self.config.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
            Err(ApiError::TooManyRequests(format!("more than {rate} requests per second from {ip}"), wait))
        }
    }

    /// Opens a listen stream for `ip`; 429 when it already has the most allowed.
    pub fn open_listen(&self, ip: IpAddr) -> Result<ListenSlot, ApiError> {
        if self.exempt(ip) {
            return Ok(ListenSlot { ip: None, listens: self.listens.clone() });
        }
        let mut listens = self.listens.lock().unwrap_or_else(|e| e.into_inner());
        let open = listens.entry(ip).or_insert(0);
        if *open >= self.config.listens_per_ip {
            let limit = self.config.listens_per_ip;
            return Err(ApiError::TooManyRequests(format!("{ip} already has {limit} listen streams open"), 5));
        }
        *open += 1;
        Ok(ListenSlot { ip: Some(ip), listens: self.listens.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst is admitted, then requests are refused with a Retry-After; loopback is exempt
    /// when configured so; listen slots are counted and given back on drop.
    #[test]
    fn buckets_and_slots() {
        let config = LimitsConfig { requests_per_sec: Some(1.0), burst: 3.0, listens_per_ip: 1, exempt_loopback: true };
        let limits = ClientLimits::new(config);
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.admit(remote).unwrap();
        }
        assert!(matches!(limits.admit(remote), Err(ApiError::TooManyRequests(_, 1))));
        for _ in 0..10 {
            limits.admit("127.0.0.1".parse().unwrap()).unwrap();
        }
        let slot = limits.open_listen(remote).unwrap();
        assert!(limits.open_listen(remote).is_err());
        drop(slot);
        limits.open_listen(remote).unwrap();
    }
}
