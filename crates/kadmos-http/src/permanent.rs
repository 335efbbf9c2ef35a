//! Permanent puts: values a client POSTed with `"permanent"`, which the node keeps alive until
//! [`GatewayConfig::permanent_lifetime`](crate::GatewayConfig) (24 h, as OpenDHT's proxy) after
//! the client's last POST of it. Clients re-POST before that (OpenDHT's every 22 h).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kadmos::opendht::{Value, ValueId};
use kadmos::Id;
use serde_json::{json, Value as Json};

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
    dirty: AtomicBool,
}

impl PermanentPuts {
    pub fn new(lifetime: Duration) -> PermanentPuts {
        PermanentPuts { entries: Mutex::new(HashMap::new()), lifetime, dirty: AtomicBool::new(false) }
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
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Removes and returns the puts whose lifetime is over at `now`.
    pub fn take_expired(&self, now: Instant) -> Vec<(Id, ValueId)> {
        let mut entries = self.lock();
        let gone: Vec<(Id, ValueId)> = entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| *k).collect();
        for k in &gone {
            entries.remove(k);
        }
        if !gone.is_empty() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        gone
    }

    /// Writes the puts and the time each has left to `path` (atomically: a temporary file
    /// renamed), if anything changed since the last save.
    pub fn save_if_changed(&self, path: &Path) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let now = Instant::now();
        let saved: Vec<Json> = self
            .lock()
            .iter()
            .map(|((key, _), e)| {
                json!({ "key": key.to_string(), "value": value_json::to_json(&e.value, false),
                        "left_secs": e.expires.saturating_duration_since(now).as_secs() })
            })
            .collect();
        let tmp = path.with_extension("tmp");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let written = std::fs::write(&tmp, Json::Array(saved).to_string()).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        written
    }

    /// Reads what [`PermanentPuts::save_if_changed`] wrote, records each put with the time it
    /// had left, and returns them (to be put again). Entries that do not parse are skipped.
    pub fn restore(&self, path: &Path) -> std::io::Result<Vec<(Id, Value)>> {
        let saved: Json = serde_json::from_slice(&std::fs::read(path)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
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
        Ok(restored)
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

    /// Saved puts come back with the time they had left; nothing is written when nothing
    /// changed.
    #[test]
    fn save_and_restore() {
        let path = std::env::temp_dir().join(format!("kadmos-permanent-{}.json", std::process::id()));
        let puts = PermanentPuts::new(Duration::from_secs(100));
        let key = Id::of_str("k");
        puts.refresh(key, Value::new(9, 0, b"kept".to_vec()));
        puts.save_if_changed(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        puts.save_if_changed(&path).unwrap();
        assert!(!path.exists(), "unchanged: not written again");
        puts.refresh(key, Value::new(9, 0, b"kept".to_vec()));
        puts.save_if_changed(&path).unwrap();

        let again = PermanentPuts::new(Duration::from_secs(100));
        let restored = again.restore(&path).unwrap();
        assert_eq!(restored, vec![(key, Value::new(9, 0, b"kept".to_vec()))]);
        assert_eq!(again.len(), 1);
        assert!(again.take_expired(Instant::now() + Duration::from_secs(101)).len() == 1);
        std::fs::remove_file(&path).unwrap();
    }
}
