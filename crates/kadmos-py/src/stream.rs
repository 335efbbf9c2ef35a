//! The one stream type of the API: the peers of a `get_peers`, the items of a BEP 44 get, the
//! values of an OpenDHT get, the changes of a listen. It serves `for` (blocking, GIL released)
//! and `async for` alike; `close()`, leaving its `with`/`async with` block or dropping it
//! cancels the operation.
//!
//! The operation is started at once (a listen is registered when `listen()` returns, as in
//! OpenDHT), in a task whose handle the stream keeps until the first `next`. The state stays in
//! a mutex shared with every pending `next`, and each `next` only awaits cancel-safe things
//! (the start task, a channel): an `asyncio.wait_for` that cancels an `__anext__` loses nothing
//! and the stream stays usable.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream as _;

use kadmos::opendht::{ListenStream, ValueStream};
use kadmos::{FoundMutableItem, MutableItemStream, PeerBatch, PeerStream};
use pyo3::conversion::IntoPyObjectExt;
use pyo3::exceptions::{PyStopAsyncIteration, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::errors::to_py;
use crate::opendht::Value;
use crate::runtime::{self, Json};

/// A running operation that yields items.
pub enum Source {
    Peers(PeerStream),
    Items(MutableItemStream),
    Values(ValueStream),
    Listen(ListenStream),
}

impl Source {
    /// An item (or the end) already there, without waiting; `None` if there is none yet.
    fn ready(&mut self) -> Option<Option<Item>> {
        let mut cx = Context::from_waker(Waker::noop());
        let poll = match self {
            Source::Peers(s) => Pin::new(s).poll_next(&mut cx).map(|o| o.map(Item::Peers)),
            Source::Values(s) => Pin::new(s).poll_next(&mut cx).map(|o| o.map(|v| Item::Value(Value(v)))),
            Source::Listen(s) => {
                Pin::new(s).poll_next(&mut cx).map(|o| o.map(|e| Item::Change(Value(e.value), e.expired)))
            }
            Source::Items(s) => Pin::new(s).poll_next(&mut cx).map(|o| o.map(Item::Found)),
        };
        match poll {
            Poll::Ready(item) => Some(item),
            Poll::Pending => None,
        }
    }

    async fn next(&mut self) -> Option<Item> {
        match self {
            Source::Peers(s) => s.next().await.map(Item::Peers),
            Source::Items(s) => s.next().await.map(Item::Found),
            Source::Values(s) => s.next().await.map(|v| Item::Value(Value(v))),
            Source::Listen(s) => s.next().await.map(|e| Item::Change(Value(e.value), e.expired)),
        }
    }
}

/// One item, made a Python object only once the GIL is held.
pub enum Item {
    Peers(PeerBatch),
    Found(FoundMutableItem),
    Value(Value),
    Change(Value, bool),
}

/// BEP 44 item as found: the node that returned it and the item's fields.
#[derive(serde::Serialize)]
struct FoundJson {
    from: kadmos::NodeInfo,
    target: String,
    value: String,
    public_key: Option<String>,
    salt: Option<String>,
    seq: Option<i64>,
    signature: Option<String>,
}

impl From<FoundMutableItem> for FoundJson {
    fn from(found: FoundMutableItem) -> Self {
        let m = found.item;
        FoundJson {
            from: found.from,
            target: m.target().to_string(),
            value: hex::encode(&m.value),
            public_key: Some(hex::encode(m.public_key)),
            salt: Some(hex::encode(&m.salt)),
            seq: Some(m.seq),
            signature: Some(hex::encode(m.signature)),
        }
    }
}

/// An item and the Python function that makes it a typed result (from the dict of its JSON
/// form), applied under the GIL.
pub struct Converted {
    item: Item,
    convert: Option<Py<PyAny>>,
}

impl<'py> IntoPyObject<'py> for Converted {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let raw = match self.item {
            Item::Peers(batch) => Json(batch).into_pyobject(py)?,
            Item::Found(found) => Json(FoundJson::from(found)).into_pyobject(py)?,
            Item::Value(value) => value.into_bound_py_any(py)?,
            Item::Change(value, expired) => (value, expired).into_bound_py_any(py)?,
        };
        match self.convert {
            Some(convert) => convert.bind(py).call1((raw,)),
            None => Ok(raw),
        }
    }
}

struct State {
    start: Option<JoinHandle<kadmos::Result<Source>>>,
    source: Option<Source>,
}

impl State {
    /// Ends the operation: aborts a start still running, drops the source (which cancels a
    /// lookup or a listen).
    fn end(&mut self) {
        if let Some(start) = self.start.take() {
            start.abort();
        }
        self.source = None;
    }
}

struct Shared {
    state: Mutex<State>,
    closed: Notify,
    is_closed: AtomicBool,
}

impl Shared {
    /// The next item; `None` at the end or once closed.
    async fn next(&self) -> kadmos::Result<Option<Item>> {
        let closed = self.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if self.is_closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut state = tokio::select! {
            state = self.state.lock() => state,
            () = &mut closed => return Ok(None),
        };
        if let Some(start) = state.start.as_mut() {
            let started = tokio::select! {
                started = start => started,
                () = &mut closed => {
                    state.end();
                    return Ok(None);
                }
            };
            state.start = None;
            match started {
                Ok(Ok(source)) => state.source = Some(source),
                Ok(Err(e)) => return Err(e),
                // Aborted by close() between the check and the lock.
                Err(_) => return Ok(None),
            }
        }
        let Some(source) = state.source.as_mut() else { return Ok(None) };
        let item = tokio::select! {
            item = source.next() => item,
            () = &mut closed => None,
        };
        if item.is_none() {
            state.end();
        }
        Ok(item)
    }

    /// The next item if it is already there (or the stream has ended): a `next` that needs no
    /// wait skips the round trip through the runtime. `None` when it would have to wait.
    fn ready(&self) -> Option<Option<Item>> {
        if self.is_closed.load(Ordering::Acquire) {
            return Some(None);
        }
        let mut state = self.state.try_lock().ok()?;
        if state.start.is_some() {
            return None;
        }
        let item = match state.source.as_mut() {
            Some(source) => source.ready()?,
            None => None,
        };
        if item.is_none() {
            state.end();
        }
        Some(item)
    }

    /// Waits until the operation has started (a listen is registered at the node).
    async fn started(&self) -> kadmos::Result<()> {
        let mut state = self.state.lock().await;
        if let Some(start) = state.start.as_mut() {
            let started = start.await;
            state.start = None;
            match started {
                Ok(Ok(source)) => state.source = Some(source),
                Ok(Err(e)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn close(&self) {
        self.is_closed.store(true, Ordering::Release);
        self.closed.notify_waiters();
        // A pending next holds the lock: it wakes on `closed` and ends the operation itself.
        if let Ok(mut state) = self.state.try_lock() {
            state.end();
        }
    }
}

/// A stream of results (see the module documentation). Iterate it with `for` or `async for`.
#[pyclass(module = "kadmos._native", frozen)]
pub struct Stream {
    shared: Arc<Shared>,
    convert: Option<Py<PyAny>>,
}

impl Stream {
    /// Starts `start` on the runtime at once; the stream yields what its source yields, each
    /// item passed through `convert` if given.
    pub fn start(
        start: impl Future<Output = kadmos::Result<Source>> + Send + 'static,
        convert: Option<Py<PyAny>>,
    ) -> PyResult<Stream> {
        let task = runtime::runtime()?.spawn(start);
        let state = State { start: Some(task), source: None };
        Ok(Stream {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                closed: Notify::new(),
                is_closed: AtomicBool::new(false),
            }),
            convert,
        })
    }

    /// Blocks (GIL released) until the operation has started: a blocking `listen()` returns
    /// once the listen is registered, as OpenDHT's does.
    pub fn wait_started(self, py: Python<'_>) -> PyResult<Stream> {
        let shared = self.shared.clone();
        runtime::block_on(py, async move { shared.started().await.map_err(to_py) })?;
        Ok(self)
    }

    /// Waits for the next item with the GIL released, at most `limit`.
    fn wait_next(&self, py: Python<'_>, limit: Option<Duration>) -> PyResult<Option<Item>> {
        let shared = self.shared.clone();
        runtime::block_on(py, async move {
            let next = shared.next();
            let item = match limit {
                Some(limit) => tokio::time::timeout(limit, next)
                    .await
                    .map_err(|_| PyTimeoutError::new_err("no item within the timeout"))?,
                None => next.await,
            };
            item.map_err(to_py)
        })
    }

    fn convert(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.convert.as_ref().map(|c| c.clone_ref(py))
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next item, blocking with the GIL released; StopIteration at the end.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.next(py, None)
    }

    /// The next item, waiting at most `timeout` seconds (`TimeoutError` then; the stream stays
    /// usable), or None once the stream has ended.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let limit = timeout
            .map(|t| Duration::try_from_secs_f64(t).map_err(|e| PyValueError::new_err(format!("timeout: {e}"))))
            .transpose()?;
        let item = match self.shared.ready() {
            Some(ready) => ready,
            None => self.wait_next(py, limit)?,
        };
        item.map(|item| Converted { item, convert: self.convert(py) }.into_py_any(py)).transpose()
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// An awaitable of the next item; StopAsyncIteration at the end.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let convert = self.convert(py);
        if let Some(ready) = self.shared.ready() {
            // Already there: an asyncio future that is already done, no trip through the runtime.
            let outcome = match ready {
                Some(item) => Converted { item, convert }.into_py_any(py),
                None => Err(PyStopAsyncIteration::new_err(())),
            };
            return crate::awaitable::ready(py, outcome);
        }
        let shared = self.shared.clone();
        crate::awaitable::awaitable(py, async move {
            match shared.next().await.map_err(to_py)? {
                Some(item) => Ok(Converted { item, convert }),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    /// Cancels the operation; a pending `next` ends the iteration. Closing again does nothing.
    fn close(&self) {
        self.shared.close();
    }

    /// Whether `close()` was called (directly, or by leaving a `with` block).
    #[getter]
    fn closed(&self) -> bool {
        self.shared.is_closed.load(Ordering::Acquire)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __aenter__<'py>(slf: Py<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::awaitable::ready(py, Ok(slf.into_any()))
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(&self, py: Python<'py>, _exc: &Bound<'py, pyo3::types::PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        self.close();
        crate::awaitable::ready(py, false.into_py_any(py))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.close();
    }
}
