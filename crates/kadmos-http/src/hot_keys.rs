//! Concurrent GETs of one key share one lookup, and a finished lookup answers the GETs of the
//! next moment (OpenDHT's proxy runs a search per request and collapses under many GETs of a
//! hot key). Each lookup's results so far are a snapshot that every waiting GET streams from,
//! so late joiners get what was already found at once, then the rest as it arrives. A POST
//! through this gateway adds its value to the key's snapshot, so a client reads its own writes.
//! The number of keys remembered is bounded: past the bound, stale entries are dropped, and if
//! all are fresh a GET runs its own lookup without being remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use kadmos::opendht::Value;
use kadmos::{Id, OpenDht};
use tokio::sync::watch;

use crate::value_json;

/// What a lookup has found so far.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub values: Arc<Vec<Value>>,
    pub done: bool,
}

struct Lookup {
    found: watch::Sender<Found>,
    /// When the lookup ended (`None` while it runs).
    finished: Mutex<Option<Instant>>,
    /// The finished snapshot as OpenDHT's newline-delimited JSON, with the number of values it
    /// holds (values are only ever appended, so the count tells whether it is current).
    encoded: Mutex<Option<(usize, Bytes)>>,
}

/// How a GET is answered.
pub enum Answer<S> {
    /// The lookup is over: every value, and all of them encoded as one body.
    Complete { values: Arc<Vec<Value>>, body: Bytes },
    /// The lookup runs: values as they come.
    Streaming(S),
}

impl Lookup {
    fn fresh(&self, now: Instant, ttl: Duration) -> bool {
        match *self.finished.lock().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some(at) => now.duration_since(at) < ttl,
        }
    }

    fn add(&self, value: Value) {
        self.found.send_if_modified(|found| {
            if found.values.contains(&value) {
                return false;
            }
            Arc::make_mut(&mut found.values).push(value);
            true
        });
    }

    /// The finished snapshot and its encoding (made once per version of the snapshot: a hot
    /// key's GETs share it).
    fn complete(&self) -> (Arc<Vec<Value>>, Bytes) {
        let values = self.found.borrow().values.clone();
        let mut encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((count, body)) = encoded.as_ref().filter(|(count, _)| *count == values.len()) {
            debug_assert_eq!(*count, values.len());
            return (values, body.clone());
        }
        let body = Bytes::from(values.iter().map(|v| value_json::to_line(v, false)).collect::<String>());
        *encoded = Some((values.len(), body.clone()));
        (values, body)
    }

    fn finish(&self) {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.found.send_modify(|found| found.done = true);
    }
}

/// The GET lookups in flight or just finished, by key.
pub struct HotKeys {
    lookups: Mutex<HashMap<Id, Arc<Lookup>>>,
    ttl: Duration,
    capacity: usize,
}

impl HotKeys {
    /// Finished lookups answer GETs for `ttl`; at most `capacity` keys are remembered.
    pub fn new(ttl: Duration, capacity: usize) -> HotKeys {
        HotKeys { lookups: Mutex::new(HashMap::new()), ttl, capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Arc<Lookup>>> {
        self.lookups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Forgets the lookups that can no longer answer a GET.
    pub fn purge_stale(&self) {
        let now = Instant::now();
        self.lock().retain(|_, l| l.fresh(now, self.ttl));
    }

    /// The values at `key` as a stream: those already found by a running or recent lookup at
    /// once, then each new one until that lookup ends (a new lookup, ending by `deadline`, when
    /// there is none).
    pub fn get(
        &self,
        dht: &OpenDht,
        key: Id,
        deadline: Duration,
    ) -> Answer<impl Stream<Item = Value> + Send + 'static> {
        let now = Instant::now();
        let receiver = {
            let mut lookups = self.lock();
            match lookups.get(&key).filter(|l| l.fresh(now, self.ttl)) {
                Some(lookup) if lookup.found.borrow().done => {
                    let (values, body) = lookup.complete();
                    return Answer::Complete { values, body };
                }
                Some(lookup) => lookup.found.subscribe(),
                None => {
                    let (found, receiver) = watch::channel(Found::default());
                    let lookup = Arc::new(Lookup { found, finished: Mutex::new(None), encoded: Mutex::new(None) });
                    if lookups.len() >= self.capacity {
                        lookups.retain(|_, l| l.fresh(now, self.ttl));
                    }
                    if lookups.len() < self.capacity {
                        lookups.insert(key, lookup.clone());
                    }
                    tokio::spawn(run_lookup(dht.clone(), key, lookup, deadline));
                    receiver
                }
            }
        };
        Answer::Streaming(snapshot_stream(receiver))
    }

    /// A value put through this gateway joins the key's snapshot (read your own writes).
    pub fn note_put(&self, key: &Id, value: &Value) {
        if let Some(lookup) = self.lock().get(key) {
            lookup.add(value.clone());
        }
    }
}

/// Runs one lookup to its end (or `deadline`), whoever is still waiting for it.
async fn run_lookup(dht: OpenDht, key: Id, lookup: Arc<Lookup>, deadline: Duration) {
    let search = async {
        if let Ok(mut values) = dht.get(key).await {
            while let Some(value) = values.next().await {
                lookup.add(value);
            }
        }
    };
    let _ = tokio::time::timeout(deadline, search).await;
    lookup.finish();
}

/// Each value of the snapshot once, in the order found, until the lookup is done.
fn snapshot_stream(receiver: watch::Receiver<Found>) -> impl Stream<Item = Value> + Send + 'static {
    futures_util::stream::unfold((receiver, 0usize), |(mut receiver, sent)| async move {
        loop {
            let found = receiver.borrow_and_update().clone();
            if found.values.len() > sent {
                let batch: Vec<Value> = found.values[sent..].to_vec();
                return Some((futures_util::stream::iter(batch), (receiver, found.values.len())));
            }
            if found.done || receiver.changed().await.is_err() {
                return None;
            }
        }
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber that joins late gets what was found so far, then the rest, then the end;
    /// the finished snapshot encodes as OpenDHT's newline-delimited JSON.
    #[tokio::test]
    async fn late_subscribers_get_everything_once() {
        let (found, receiver) = watch::channel(Found::default());
        let lookup = Lookup { found, finished: Mutex::new(None), encoded: Mutex::new(None) };
        lookup.add(Value::new(1, 0, b"a".to_vec()));
        lookup.add(Value::new(1, 0, b"a".to_vec()));
        let late = lookup.found.subscribe();
        lookup.add(Value::new(2, 0, b"b".to_vec()));
        lookup.finish();
        let early: Vec<u64> = snapshot_stream(receiver).map(|v| v.id).collect().await;
        let late: Vec<u64> = snapshot_stream(late).map(|v| v.id).collect().await;
        assert_eq!((early, late), (vec![1, 2], vec![1, 2]));
        assert!(lookup.fresh(Instant::now(), Duration::from_secs(1)));
        let (values, body) = lookup.complete();
        assert_eq!(values.len(), 2);
        assert_eq!(body, "{\"data\":\"YQ==\",\"id\":\"1\",\"type\":0}\n{\"data\":\"Yg==\",\"id\":\"2\",\"type\":0}\n");
        assert!(!lookup.fresh(Instant::now() + Duration::from_secs(2), Duration::from_secs(1)));
    }
}
