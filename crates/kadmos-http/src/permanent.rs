//! Permanent puts: values a client POSTed with `"permanent"`, which the node keeps alive until
//! [`GatewayConfig::permanent_lifetime`](crate::GatewayConfig) (24 h, as OpenDHT's proxy) after
//! the client's last POST of it. Clients re-POST before that (OpenDHT's every 22 h).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kadmos::opendht::{Value, ValueId};
use kadmos::Id;
use serde_json::{json, Value as Json};

use crate::gateway_state::Changed;
use crate::value_json;

struct Entry {
    value: Value,
    expires: Instant,
}

/// The permanent puts this gateway keeps alive, and until when.
pub struct PermanentPuts {
    entries: Mutex<HashMap<(Id, ValueId), Entry>>,
    lifetime: Duration,
    /// Changed since last saved.
    pub changed: Changed,
}

impl PermanentPuts {
    pub fn new(lifetime: Duration) -> PermanentPuts {
        PermanentPuts { entries: Mutex::new(HashMap::new()), lifetime, changed: Changed::default() }
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
        self.changed.mark();
    }

    /// Removes and returns the puts whose lifetime is over at `now`.
    pub fn take_expired(&self, now: Instant) -> Vec<(Id, ValueId)> {
        let mut entries = self.lock();
        let gone: Vec<(Id, ValueId)> = entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| *k).collect();
        for k in &gone {
            entries.remove(k);
        }
        if !gone.is_empty() {
            self.changed.mark();
        }
        gone
    }

    /// The puts and the time each has left, as JSON (to save).
    pub fn to_json(&self) -> Json {
        let now = Instant::now();
        let saved: Vec<Json> = self
            .lock()
            .iter()
            .map(|((key, _), e)| {
                json!({ "key": key.to_string(), "value": value_json::to_json(&e.value, false),
                        "left_secs": e.expires.saturating_duration_since(now).as_secs() })
            })
            .collect();
        Json::Array(saved)
    }

    /// Records the puts [`PermanentPuts::to_json`] saved, each with the time it had left, and
    /// returns them (to be put again). Entries that do not parse are skipped.
    pub fn restore(&self, saved: &Json) -> Vec<(Id, Value)> {
        let mut restored = Vec::new();
        for entry in saved.as_array().into_iter().flatten() {
            let key = entry["key"].as_str().and_then(|k| k.parse::<Id>().ok());
            let value = value_json::from_json(&entry["value"]).ok().map(|p| p.value);
            let left = Duration::from_secs(entry["left_secs"].as_u64().unwrap_or(0)).min(self.lifetime);
            if let (Some(key), Some(value)) = (key, value) {
                if !left.is_zero() {
                    let expires = Instant::now() + left;
                    self.lock().insert((key, value.id), Entry { value: value.clone(), expires });
                    restored.push((key, value));
                }
            }
        }
        restored
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

    /// Saved puts come back with the time they had left; a change is reported once.
    #[test]
    fn save_and_restore() {
        let puts = PermanentPuts::new(Duration::from_secs(100));
        let key = Id::of_str("k");
        puts.refresh(key, Value::new(9, 0, b"kept".to_vec()));
        assert!(puts.changed.take());
        assert!(!puts.changed.take());
        let saved = puts.to_json();

        let again = PermanentPuts::new(Duration::from_secs(100));
        let restored = again.restore(&saved);
        assert_eq!(restored, vec![(key, Value::new(9, 0, b"kept".to_vec()))]);
        assert_eq!(again.len(), 1);
        assert!(again.take_expired(Instant::now() + Duration::from_secs(101)).len() == 1);
    }
}
