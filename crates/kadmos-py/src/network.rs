//! What both networks' nodes are started with, and addresses as Python gives them
//! (`"host:port"` strings, resolved on the runtime so that a slow DNS answer never holds the GIL).

use std::net::{IpAddr, SocketAddr};

use kadmos::Id;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py;

/// The options both node kinds take, as the Python layer passes them (a dict).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct NodeOptions {
    pub port: Option<u16>,
    pub bind: Vec<String>,
    /// `None`: the network's public bootstrap nodes.
    pub bootstrap: Option<Vec<String>>,
    /// 40 hex digits.
    pub node_id: Option<String>,
    /// Saved state, JSON text.
    pub state: Option<String>,
    pub seed: Option<u64>,
}

impl NodeOptions {
    pub fn ips(&self) -> PyResult<Vec<IpAddr>> {
        self.bind
            .iter()
            .map(|ip| ip.parse().map_err(|_| PyValueError::new_err(format!("bind: not an IP address: {ip:?}"))))
            .collect()
    }

    pub fn node_id(&self) -> PyResult<Option<Id>> {
        self.node_id
            .as_deref()
            .map(|id| id.parse::<Id>().map_err(|e| PyValueError::new_err(format!("node_id: {e}"))))
            .transpose()
    }
}

/// Applies [`NodeOptions`] but the state (whose type differs) to a builder of either network:
/// both builders have the same methods, but no common trait.
macro_rules! configure {
    ($builder:expr, $options:expr) => {{
        let options = &$options;
        let mut builder = $builder;
        for ip in options.ips()? {
            builder = builder.bind(ip);
        }
        if let Some(port) = options.port {
            builder = builder.port(port);
        }
        if let Some(id) = options.node_id()? {
            builder = builder.node_id(id);
        }
        if let Some(seed) = options.seed {
            builder = builder.seed(seed);
        }
        if let Some(bootstrap) = &options.bootstrap {
            builder = builder.bootstrap(bootstrap.iter());
        }
        builder
    }};
}
pub(crate) use configure;

/// One address: `"host:port"` or `"[v6]:port"`, a name resolved (the first answer is used).
pub async fn resolve_one(addr: &str) -> PyResult<SocketAddr> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    let mut found = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| PyValueError::new_err(format!("cannot resolve {addr:?} (expected host:port): {e}")))?;
    found.next().ok_or_else(|| to_py(kadmos::Error::Io(std::io::Error::other(format!("{addr} has no address")))))
}

/// Several addresses, each resolved as [`resolve_one`] does.
pub async fn resolve_all(addrs: &[String]) -> PyResult<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for addr in addrs {
        out.push(resolve_one(addr).await?);
    }
    Ok(out)
}
