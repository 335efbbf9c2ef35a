//! Listens shared per key: however many clients listen to a key (HTTP streams, SSE, WebSocket),
//! the node runs one listen for it, and the hub keeps what that listen knows: the values now at
//! the key, and a journal of the last events. A new client gets the current values, then the
//! events as they come; a client resuming with the id of the last event it saw (SSE's
//! `Last-Event-ID`) gets only the events after it, if the journal still has it. The node's
//! listen stops 30 s after the last client went away (time for it to come back and resume). A listen that has run a moment also answers
//! GETs of its key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use kadmos::opendht::{ListenEvent, Value, ValueId};
use kadmos::{Id, OpenDht};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::framing::{http_chunk, Framing, StreamEvent};
use crate::listen_sink::ListenSink;
use crate::value_json;

/// Events kept for resuming clients, per key.
const JOURNAL: usize = 256;
/// Events a slow client may fall behind before its stream is closed (it can resume).
const BACKLOG: usize = 1024;
/// How long a key's listen outlives its last client, so that a client reconnecting (an
/// `EventSource` retries after a few seconds) resumes from the journal.
const LINGER: Duration = Duration::from_secs(30);

/// An event as every client of the key receives it: one copy, whose JSON and HTTP chunks are
/// encoded once however many clients send it (a fan-out to thousands of streams would
/// otherwise encode it thousands of times).
pub struct SharedEvent {
    pub event: ListenEvent,
    json: OnceLock<String>,
    ndjson_chunk: OnceLock<Bytes>,
    sse_chunk: OnceLock<Bytes>,
}

impl SharedEvent {
    fn new(event: ListenEvent) -> Arc<SharedEvent> {
        Arc::new(SharedEvent {
            event,
            json: OnceLock::new(),
            ndjson_chunk: OnceLock::new(),
            sse_chunk: OnceLock::new(),
        })
    }

    /// The event in OpenDHT's JSON form (`"expired": true` on an expiry), without a newline.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| value_json::to_json(&self.event.value, self.event.expired).to_string())
    }

    /// The event as a stream carries it.
    pub fn stream_event(&self) -> StreamEvent {
        StreamEvent {
            kind: if self.event.expired { "expired" } else { "value" },
            id: Some(self.event.value.id.to_string()),
            json: self.json().to_string(),
        }
    }

    /// The event as one HTTP/1.1 chunk of a stream framed with `framing`.
    pub fn chunk(&self, framing: Framing) -> &Bytes {
        let cell = match framing {
            Framing::Ndjson => &self.ndjson_chunk,
            Framing::Sse => &self.sse_chunk,
        };
        cell.get_or_init(|| http_chunk(&framing.encode(&self.stream_event())))
    }
}

/// Holds a shared listen while a client streams from it, and for [`LINGER`] after.
struct Linger(Option<Arc<KeyListen>>);

impl Drop for Linger {
    fn drop(&mut self) {
        let listen = self.0.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(LINGER).await;
                drop(listen);
            });
        }
    }
}

#[derive(Default)]
struct KeyState {
    /// The values at the key now, in the order they arrived.
    current: Vec<Value>,
    journal: VecDeque<Arc<SharedEvent>>,
    /// Listen streams served on their own socket, written to here as each event arrives
    /// ([`crate::listen_sink`]); the others receive events through the broadcast channel.
    sinks: Vec<Weak<ListenSink>>,
}

impl KeyState {
    /// What a new client is sent first: the events after the one it resumes from, if the
    /// journal still has it, else the values at the key now.
    fn first_events(&self, resume_after: Option<ValueId>) -> Vec<Arc<SharedEvent>> {
        let resumed = resume_after.and_then(|id| {
            let at = self.journal.iter().rposition(|e| e.event.value.id == id && !e.event.expired)?;
            Some(self.journal.iter().skip(at + 1).cloned().collect::<Vec<_>>())
        });
        resumed.unwrap_or_else(|| {
            self.current.iter().map(|v| SharedEvent::new(ListenEvent { value: v.clone(), expired: false })).collect()
        })
    }
}

struct Shared {
    state: Mutex<KeyState>,
    events: broadcast::Sender<Arc<SharedEvent>>,
    started: Instant,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, event: ListenEvent) {
        let mut state = self.lock();
        let id = event.value.id;
        state.current.retain(|v| v.id != id);
        if !event.expired {
            state.current.push(event.value.clone());
        }
        if state.journal.len() == JOURNAL {
            state.journal.pop_front();
        }
        let event = SharedEvent::new(event);
        state.journal.push_back(event.clone());
        // Sent under the lock, so that a subscriber's snapshot and its events neither overlap
        // nor leave a gap.
        if !state.sinks.is_empty() {
            let now = tokio::time::Instant::now();
            state.sinks.retain(|sink| sink.upgrade().is_some_and(|sink| sink.send(event.chunk(sink.framing()), now)));
        }
        let _ = self.events.send(event);
    }

    /// The node's listen is over: every stream ends once it has sent what it holds.
    fn end(&self) {
        for sink in self.lock().sinks.drain(..).filter_map(|s| s.upgrade()) {
            sink.end();
        }
    }
}

/// One key's shared listen; the node's listen stops when the last holder drops it.
pub struct KeyListen {
    shared: Arc<Shared>,
    feeder: JoinHandle<()>,
}

impl Drop for KeyListen {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

/// A client's view of a shared listen: what to send first, then the live events.
pub struct Subscription {
    pub first: Vec<Arc<SharedEvent>>,
    pub events: broadcast::Receiver<Arc<SharedEvent>>,
    /// Keeps the shared listen running while the client is there.
    pub listen: Arc<KeyListen>,
}

impl Subscription {
    /// The first events, then the live ones. Ends if the client falls more than the backlog
    /// behind (it may resume from the journal) or the node stops.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Arc<SharedEvent>> + Send + 'static {
        let Subscription { first, events, listen } = self;
        let held = Linger(Some(listen));
        let live = futures_util::stream::unfold((events, held), |(mut events, held)| async move {
            let event = events.recv().await.ok()?;
            Some((event, (events, held)))
        });
        futures_util::stream::iter(first).chain(live)
    }
}

#[derive(Default)]
pub struct ListenHub {
    keys: Mutex<HashMap<Id, Weak<KeyListen>>>,
}

impl ListenHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Weak<KeyListen>>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self, key: &Id) -> Option<Arc<KeyListen>> {
        self.lock().get(key).and_then(Weak::upgrade)
    }

    /// Keys with a listen running.
    pub fn len(&self) -> usize {
        self.lock().values().filter(|w| w.strong_count() > 0).count()
    }

    /// The key's shared listen, started if none runs.
    async fn key_listen(&self, dht: &OpenDht, key: Id) -> kadmos::Result<Arc<KeyListen>> {
        if let Some(listen) = self.running(&key) {
            return Ok(listen);
        }
        let changes = dht.listen(key).await?;
        let (events, _) = broadcast::channel(BACKLOG);
        let shared = Arc::new(Shared { state: Mutex::default(), events, started: Instant::now() });
        let feeder = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut changes = changes;
                while let Some(event) = changes.next().await {
                    shared.apply(event);
                }
                shared.end();
            }
        });
        let fresh = Arc::new(KeyListen { shared, feeder });
        let mut keys = self.lock();
        // Another client may have started one meanwhile: use it, drop ours.
        Ok(match keys.get(&key).and_then(Weak::upgrade) {
            Some(theirs) => theirs,
            None => {
                keys.retain(|_, w| w.strong_count() > 0);
                keys.insert(key, Arc::downgrade(&fresh));
                fresh
            }
        })
    }

    /// Subscribes to `key`, starting the node's listen if none runs. `resume_after`: the id of
    /// the last value event the client saw.
    pub async fn subscribe(
        &self,
        dht: &OpenDht,
        key: Id,
        resume_after: Option<ValueId>,
    ) -> kadmos::Result<Subscription> {
        let listen = self.key_listen(dht, key).await?;
        let (first, events) = {
            let state = listen.shared.lock();
            (state.first_events(resume_after), listen.shared.events.subscribe())
        };
        Ok(Subscription { first, events, listen })
    }

    /// Attaches a stream served on its own socket to `key`'s listen (started if none runs):
    /// its first events are queued in the sink at once, and every later event is written to it
    /// by the listen itself. The stream stays attached while the sink lives; the listen runs
    /// while the returned holder does (and [`LINGER`] after).
    pub async fn attach(
        &self,
        dht: &OpenDht,
        key: Id,
        resume_after: Option<ValueId>,
        sink: &Arc<ListenSink>,
    ) -> kadmos::Result<impl Send + 'static> {
        let listen = self.key_listen(dht, key).await?;
        {
            let mut state = listen.shared.lock();
            let framing = sink.framing();
            sink.queue(state.first_events(resume_after).iter().map(|e| e.chunk(framing).clone()));
            // Streams gone are dropped at each event; on a quiet key, here, at each doubling
            // (so that a key whose clients come and go holds no more dead entries than live).
            if state.sinks.len() >= 64 && state.sinks.len().is_power_of_two() {
                state.sinks.retain(|s| s.strong_count() > 0);
            }
            state.sinks.push(Arc::downgrade(sink));
        }
        Ok(Linger(Some(listen)))
    }

    /// The values at `key` known to a listen that has run at least `settled` (long enough to
    /// have heard from the storing nodes); `None` if there is no such listen.
    pub fn current_values(&self, key: &Id, settled: Duration) -> Option<Vec<Value>> {
        let listen = self.running(key)?;
        (listen.shared.started.elapsed() >= settled).then(|| listen.shared.lock().current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state follows the events (a new version replaces, an expiry removes), the journal is
    /// bounded, and every event reaches subscribers.
    #[test]
    fn state_follows_events() {
        let (events, mut rx) = broadcast::channel(BACKLOG);
        let shared = Shared { state: Mutex::default(), events, started: Instant::now() };
        let v = |id, data: &[u8]| Value::new(id, 0, data.to_vec());
        shared.apply(ListenEvent { value: v(1, b"a"), expired: false });
        shared.apply(ListenEvent { value: v(2, b"b"), expired: false });
        shared.apply(ListenEvent { value: v(1, b"a2"), expired: false });
        shared.apply(ListenEvent { value: v(2, b"b"), expired: true });
        assert_eq!(shared.lock().current, vec![v(1, b"a2")]);
        for _ in 0..JOURNAL + 10 {
            shared.apply(ListenEvent { value: v(3, b"c"), expired: false });
        }
        assert_eq!(shared.lock().journal.len(), JOURNAL);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.event.value.id, 1);
        assert!(first.json().contains(r#""id":"1""#), "{}", first.json());
    }
}
