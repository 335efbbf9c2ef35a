//! Permanent puts: values a client POSTed with `"permanent"`, which the node keeps alive until
//! [`GatewayConfig::permanent_lifetime`](crate::GatewayConfig) (24 h, as OpenDHT's proxy) after
//! the client's last POST of it. Clients re-POST before that (OpenDHT's every 22 h).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kadmos::opendht::{Value, ValueId};
use kadmos::Id;

struct Entry {
    value: Value,
    expires: Instant,
}

/// The permanent puts this gateway keeps alive, and until when.
pub struct PermanentPuts {
    entries: Mutex<HashMap<(Id, ValueId), Entry>>,
    lifetime: Duration,
}

impl PermanentPuts {
    pub fn new(lifetime: Duration) -> PermanentPuts {
        PermanentPuts { entries: Mutex::new(HashMap::new()), lifetime }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Id, ValueId), Entry>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of a value already kept alive at `key` with the same content: a client re-POSTing
    /// an id-less permanent value refreshes it rather than adding a copy (as OpenDHT does).
    pub fn same_content(&self, key: &Id, value: &Value) -> Option<ValueId> {
        self.lock().iter().find(|((k, _), e)| k == key && e.value.content_equals(value)).map(|((_, id), _)| *id)
    }

    /// Records a POST of `value` (with its final id): kept alive for another lifetime from now.
    pub fn refresh(&self, key: Id, value: Value) {
        let expires = Instant::now() + self.lifetime;
        self.lock().insert((key, value.id), Entry { value, expires });
    }

    /// Removes and returns the puts whose lifetime is over at `now`.
    pub fn take_expired(&self, now: Instant) -> Vec<(Id, ValueId)> {
        let mut entries = self.lock();
        let gone: Vec<(Id, ValueId)> = entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| *k).collect();
        for k in &gone {
            entries.remove(k);
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A put expires one lifetime after its last refresh; the same content is found again.
    #[test]
    fn expiry_counts_from_the_last_refresh() {
        let puts = PermanentPuts::new(Duration::from_secs(100));
        let key = Id::of_str("k");
        let value = Value::new(5, 0, b"v".to_vec());
        puts.refresh(key, value.clone());
        let mut same = value.clone();
        same.id = 0;
        assert_eq!(puts.same_content(&key, &same), Some(5));
        assert!(puts.take_expired(Instant::now() + Duration::from_secs(99)).is_empty());
        assert_eq!(puts.take_expired(Instant::now() + Duration::from_secs(101)), vec![(key, 5)]);
        assert_eq!(puts.len(), 0);
    }
}
