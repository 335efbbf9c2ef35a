//! The Rust side of `bench/call_overhead.py`: the operations that benchmark times from Python,
//! made from Rust on the same runtime and node, so that the two figures of a run compare
//! the binding's cost and nothing else.

use std::future::Future;
use std::time::Instant;

use pyo3::prelude::*;

use crate::errors::IntoPy;
use crate::key::key;
use crate::opendht::OpenDht;
use crate::runtime;

/// Seconds `work` takes on the runtime, and what it gives.
fn timed<T: Send + 'static>(
    py: Python<'_>,
    work: impl Future<Output = kadmos::Result<T>> + Send + 'static,
) -> PyResult<(f64, T)> {
    runtime::block_on(py, async move {
        let start = Instant::now();
        let out = work.await.py()?;
        Ok((start.elapsed().as_secs_f64(), out))
    })
}

/// Seconds taken by `n` `cancel_put` calls (a command round trip to the node with a bool
/// answer: the cost of a call itself).
#[pyfunction]
pub fn rust_cancel_put_calls(
    py: Python<'_>,
    node: PyRef<'_, OpenDht>,
    key_arg: &Bound<'_, PyAny>,
    n: usize,
) -> PyResult<f64> {
    let (node, key) = (node.node.clone(), key(key_arg)?);
    let (seconds, ()) = timed(py, async move {
        for _ in 0..n {
            node.cancel_put(key, 0).await?;
        }
        Ok(())
    })?;
    Ok(seconds)
}

/// Seconds taken by `n` `info` calls (a call whose answer is a nested record).
#[pyfunction]
pub fn rust_info_calls(py: Python<'_>, node: PyRef<'_, OpenDht>, n: usize) -> PyResult<f64> {
    let node = node.node.clone();
    let (seconds, ()) = timed(py, async move {
        for _ in 0..n {
            node.info().await?;
        }
        Ok(())
    })?;
    Ok(seconds)
}

/// Seconds taken by `rounds` gets of `key`, read to the end, and the number of values read.
#[pyfunction]
pub fn rust_get_values(
    py: Python<'_>,
    node: PyRef<'_, OpenDht>,
    key_arg: &Bound<'_, PyAny>,
    rounds: usize,
) -> PyResult<(f64, usize)> {
    let (node, key) = (node.node.clone(), key(key_arg)?);
    timed(py, async move {
        let mut items = 0;
        for _ in 0..rounds {
            let mut values = node.get(key).await?;
            while values.next().await.is_some() {
                items += 1;
            }
        }
        Ok(items)
    })
}
