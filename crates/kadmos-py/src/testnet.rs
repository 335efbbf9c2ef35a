//! Local networks of nodes on 127.0.0.1 for users' own tests: `kadmos.Testnet` and
//! `kadmos.OpenDhtTestnet` are Python over these two functions.

use pyo3::prelude::*;

use crate::errors::IntoPy;
use crate::mainline::Dht;
use crate::opendht::OpenDht;
use crate::runtime;

/// `n` Mainline nodes joined into one network (returns once all have joined).
#[pyfunction]
pub fn mainline_testnet(py: Python<'_>, n: usize, aio: bool) -> PyResult<Py<PyAny>> {
    runtime::call(py, aio, async move {
        let net = kadmos::Testnet::new(n).await.py()?;
        Ok(net.nodes.into_iter().map(|node| Dht { node }).collect::<Vec<_>>())
    })
}

/// `n` OpenDHT nodes joined into one network, rate limits off (all share one address); the
/// first on `port` if given.
#[pyfunction]
#[pyo3(signature = (n, port, aio))]
pub fn opendht_testnet(py: Python<'_>, n: usize, port: Option<u16>, aio: bool) -> PyResult<Py<PyAny>> {
    runtime::call(py, aio, async move {
        let net = match port {
            Some(port) => kadmos::opendht::Testnet::with_port(n, port).await,
            None => kadmos::opendht::Testnet::new(n).await,
        };
        Ok(net.py()?.nodes.into_iter().map(|node| OpenDht { node }).collect::<Vec<_>>())
    })
}
