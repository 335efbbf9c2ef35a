//! Rust futures as asyncio futures. Each awaited call makes an `asyncio.Future` on the running
//! loop and spawns its work on the runtime; the result goes to one delivery thread, which takes
//! the GIL (never on a runtime thread, where waiting for it would stall the nodes) and hands it
//! to the loop with `call_soon_threadsafe`. Cancelling the asyncio future aborts the work.
//!
//! At interpreter exit the delivery thread must not take the GIL: Python (3.11 and 3.12) ends
//! a thread that waits for the GIL of a finalizing interpreter by unwinding it, and that
//! unwinding through PyO3's guard aborts the process with "PyGILState_Release: thread state
//! must be current". It happened when an awaited call left pending as the program ended
//! finished during finalization. So an `atexit` hook (which runs before finalization) stops
//! deliveries, waiting for one in progress with the GIL released.
//!
//! This replaces pyo3-async-runtimes' `future_into_py`, which costs two task spawns, a
//! blocking-pool hop and a copy of the context variables per call: with it, an awaited call
//! cost 90–140 µs over Rust in `bench/call_overhead.py` at load 14–19; with this, 50–100 µs at
//! the same load.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, OnceLock, PoisonError};

use pyo3::conversion::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::task::AbortHandle;

use crate::runtime;

/// A result ready to be made a Python object (with the GIL, on the delivery thread).
type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// What the delivery thread is given: the loop, the future and its outcome.
struct Delivery {
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    outcome: Outcome,
}

static DELIVERIES: OnceLock<mpsc::Sender<Delivery>> = OnceLock::new();
/// Set by the exit hook: deliveries stop for good.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Held by the delivery thread while it delivers, so that the exit hook can wait for it.
static DELIVERING: Mutex<()> = Mutex::new(());
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET_OUTCOME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Sets the future's result (or exception), on the loop's thread; a future cancelled meanwhile
/// is left alone.
#[pyfunction]
fn set_outcome(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { "set_result" } else { "set_exception" };
    future.call_method1(method, (value,))?;
    Ok(())
}

/// Called by asyncio when the future is done: if it was cancelled, the work is aborted.
#[pyclass(module = "kadmos._native", frozen)]
struct AbortOnCancel(AbortHandle);

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.0.abort();
        }
        Ok(())
    }
}

/// Stops deliveries before the interpreter finalizes (see the module notes): later ones are
/// never made, and one in progress is waited for, the GIL released meanwhile so it can end.
#[pyfunction]
fn stop_deliveries(py: Python<'_>) {
    EXITING.store(true, Ordering::Release);
    py.detach(|| drop(DELIVERING.lock().unwrap_or_else(PoisonError::into_inner)));
}

/// Registers [`stop_deliveries`] with `atexit`; called when the module is imported.
pub fn stop_deliveries_at_exit(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let hook = wrap_pyfunction!(stop_deliveries, module)?;
    module.py().import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}

fn deliveries() -> &'static mpsc::Sender<Delivery> {
    DELIVERIES.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Delivery>();
        let spawned = std::thread::Builder::new().name("kadmos-asyncio".into()).spawn(move || {
            for delivery in rx {
                let _delivering = DELIVERING.lock().unwrap_or_else(PoisonError::into_inner);
                if EXITING.load(Ordering::Acquire) {
                    // Dropping it would touch Python objects; the process is ending anyway.
                    std::mem::forget(delivery);
                    continue;
                }
                // try_attach: an interpreter finalizing without the hook having run (an
                // embedding that skips atexit, say) is left alone too, as far as PyO3 can tell.
                let _ = Python::try_attach(|py| deliver(py, delivery));
            }
        });
        if let Err(e) = spawned {
            // Without the thread every awaited call would hang: say so loudly once.
            eprintln!("kadmos: cannot start the asyncio delivery thread: {e}");
        }
        tx
    })
}

fn deliver(py: Python<'_>, delivery: Delivery) {
    let (ok, value) = match (delivery.outcome)(py) {
        Ok(value) => (true, value),
        Err(error) => (false, error.into_value(py).into_any()),
    };
    let scheduled =
        SET_OUTCOME.get_or_try_init(py, || wrap_pyfunction!(set_outcome, py).map(|f| f.into_any().unbind())).and_then(
            |set| delivery.event_loop.bind(py).call_method1("call_soon_threadsafe", (set, delivery.future, ok, value)),
        );
    // A loop closed before the answer came has nobody left to tell.
    drop(scheduled);
}

/// The running asyncio loop (RuntimeError outside one, as asyncio says).
pub fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?.call0()
}

/// An asyncio future of the running loop that is already done: `Ok` its result, `Err` its
/// exception. Awaiting it does not wait.
pub fn ready<'py>(py: Python<'py>, outcome: PyResult<Py<PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let future = running_loop(py)?.call_method0("create_future")?;
    match outcome {
        Ok(value) => future.call_method1("set_result", (value,))?,
        Err(error) => future.call_method1("set_exception", (error.into_value(py),))?,
    };
    Ok(future)
}

/// `work` as an asyncio future of the running loop.
pub fn awaitable<'py, T>(
    py: Python<'py>,
    work: impl Future<Output = PyResult<T>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let runtime = runtime::runtime()?;
    let event_loop = running_loop(py)?;
    let future = event_loop.call_method0("create_future")?;
    let (loop_ref, future_ref) = (event_loop.unbind(), future.clone().unbind());
    let sender = deliveries().clone();
    let task = runtime.spawn(async move {
        let result = work.await;
        let outcome: Outcome = Box::new(move |py| result.and_then(|value| value.into_py_any(py)));
        let _ = sender.send(Delivery { event_loop: loop_ref, future: future_ref, outcome });
    });
    future.call_method1("add_done_callback", (AbortOnCancel(task.abort_handle()),))?;
    Ok(future)
}
