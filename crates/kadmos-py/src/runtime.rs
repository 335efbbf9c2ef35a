//! The one tokio runtime of the process and the two ways Python waits on it: blocking (the
//! GIL released, Ctrl-C honoured) and awaiting (an asyncio future).
//!
//! Every node of the process runs on this runtime (a testnet of 20 nodes is 20 tasks, not 20
//! runtimes, which `kadmos::blocking` would make). It is created on first use and never
//! dropped: its threads end with the process,
//! so a program that exits with live nodes exits at once.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::conversion::IntoPyObjectExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::errors::ForkedProcessError;

/// The runtime and the process that made it: tokio's threads do not survive `fork()`, so a
/// child process must be refused rather than left waiting forever for them.
struct Process {
    runtime: Runtime,
    pid: u32,
}

static PROCESS: OnceLock<Result<Process, String>> = OnceLock::new();

/// How often a blocking call wakes up to let Python run its signal handlers: Ctrl-C raises
/// `KeyboardInterrupt` within this time.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The runtime, created on first use; an error in a child process after `fork()`.
pub fn runtime() -> PyResult<&'static Runtime> {
    let process = PROCESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kadmos-rt")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the kadmos runtime: {e}"))?;
        Ok(Process { runtime, pid: std::process::id() })
    });
    match process {
        Ok(process) if process.pid == std::process::id() => Ok(&process.runtime),
        Ok(_) => Err(ForkedProcessError::new_err(
            "kadmos cannot be used in a child process after fork(): start nodes after forking, or use the \
             'spawn' or 'forkserver' start method of multiprocessing",
        )),
        Err(e) => Err(PyRuntimeError::new_err(e.clone())),
    }
}

/// Runs `work` on the runtime from this thread, with the GIL released. Between turns of
/// [`SIGNAL_CHECK`] it lets Python handle signals; a `KeyboardInterrupt` (or any exception a
/// handler raises) drops the work, which cancels it, and is raised. The work is driven by the
/// calling thread itself (not spawned): one thread hand-off less per call.
pub fn block_on<T: Send + 'static>(
    py: Python<'_>,
    work: impl Future<Output = PyResult<T>> + Send + 'static,
) -> PyResult<T> {
    let runtime = runtime()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a blocking kadmos call cannot run on an async runtime's thread; await the kadmos.aio form instead",
        ));
    }
    let mut work = Box::pin(work);
    loop {
        // The timer is made inside block_on: it needs the runtime.
        match py.detach(|| runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut work).await })) {
            Ok(result) => return result,
            Err(_) => py.check_signals()?,
        }
    }
}

/// A call of the native API: awaited (`aio`: an awaitable is returned) or blocking (the
/// result is returned).
pub fn call<T>(
    py: Python<'_>,
    aio: bool,
    work: impl Future<Output = PyResult<T>> + Send + 'static,
) -> PyResult<Py<PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if aio {
        Ok(crate::awaitable::awaitable(py, work)?.unbind())
    } else {
        block_on(py, work)?.into_py_any(py)
    }
}

/// A result that reaches Python as the dict (lists, strings, numbers) of its JSON form: the
/// same field names as the CLI's `--json` output.
pub struct Json<T>(pub T);

impl<'py, T: Serialize> IntoPyObject<'py> for Json<T> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, &self.0).map_err(|e| PyRuntimeError::new_err(format!("cannot convert a result: {e}")))
    }
}
