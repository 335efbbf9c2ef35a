//! The Mainline network: the native `Dht` node (BEP 5 peers, BEP 44 items, BEP 51 samples)
//! and the `ItemSigner` of mutable items. `kadmos.Dht` and `kadmos.aio.Dht` are Python over it.

use std::borrow::Cow;
use std::time::Duration;

use kadmos::{Dht as Node, ItemSigner as Ed25519Signer, SavedState, Seq};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::IntoPy;
use crate::key::{key, optional_key};
use crate::network::{configure, resolve_all, resolve_one, NodeOptions};
use crate::runtime::{self, Json};
use crate::stream::{Source, Stream};

/// The ed25519 key of BEP 44 mutable items.
#[pyclass(module = "kadmos._native", frozen, from_py_object)]
#[derive(Clone)]
pub struct ItemSigner(Ed25519Signer);

#[pymethods]
impl ItemSigner {
    /// A key from a 32-byte seed (or the 64-byte expanded form libtorrent stores).
    #[staticmethod]
    fn from_secret(secret: &[u8]) -> PyResult<ItemSigner> {
        Ed25519Signer::from_secret(secret)
            .map(ItemSigner)
            .ok_or_else(|| PyValueError::new_err(format!("a secret key has 32 or 64 bytes, not {}", secret.len())))
    }

    /// A new random key.
    #[staticmethod]
    fn generate() -> ItemSigner {
        ItemSigner(Ed25519Signer::from_seed(rand::random()))
    }

    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.public_key())
    }

    /// The secret to keep (32 or 64 bytes, as given).
    fn secret_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.secret_bytes())
    }

    fn __repr__(&self) -> String {
        format!("ItemSigner(public_key={})", hex::encode(self.0.public_key()))
    }
}

/// A BEP 44 value as bytes to put: `bencoded` as given, otherwise stored as a bencoded string.
fn bencoded(value: Vec<u8>, is_bencoded: bool) -> Vec<u8> {
    if is_bencoded {
        return value;
    }
    let mut out = format!("{}:", value.len()).into_bytes();
    out.extend(value);
    out
}

/// A node of the Mainline DHT.
#[pyclass(module = "kadmos._native", frozen)]
pub struct Dht {
    pub(crate) node: Node,
}

#[pymethods]
impl Dht {
    /// Starts a node (see `kadmos.Dht` for the arguments).
    #[staticmethod]
    #[pyo3(signature = (options, read_only, keep_alive_puts, republish_secs, aio))]
    fn start(
        py: Python<'_>,
        options: NodeOptions,
        read_only: bool,
        keep_alive_puts: bool,
        republish_secs: Option<f64>,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let republish = republish_secs
            .map(|s| Duration::try_from_secs_f64(s).map_err(|e| PyValueError::new_err(format!("republish: {e}"))))
            .transpose()?;
        let mut builder =
            Node::builder().read_only(read_only).keep_alive_puts(keep_alive_puts).republish_stored_items(republish);
        if let Some(state) = options.state.as_deref() {
            builder = builder.state(SavedState::from_json(state).py()?);
        }
        let builder = configure!(builder, options);
        runtime::call(py, aio, async move { Ok(Dht { node: builder.build().await.py()? }) })
    }

    #[getter]
    fn node_id(&self) -> String {
        self.node.node_id().to_string()
    }

    #[getter]
    fn local_addrs(&self) -> Vec<(String, u16)> {
        self.node.local_addrs().iter().map(|a| (a.ip().to_string(), a.port())).collect()
    }

    fn bootstrapped(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { node.bootstrapped().await.py() })
    }

    fn bootstrap(&self, py: Python<'_>, routers: Vec<String>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { node.bootstrap(resolve_all(&routers).await?).await.py() })
    }

    fn ping(&self, py: Python<'_>, addr: String, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(Json(node.ping(resolve_one(&addr).await?).await.py()?)) })
    }

    fn find_node(&self, py: Python<'_>, target: &Bound<'_, PyAny>, aio: bool) -> PyResult<Py<PyAny>> {
        let (node, target) = (self.node.clone(), key(target)?);
        runtime::call(py, aio, async move { Ok(Json(node.find_node(target).await.py()?)) })
    }

    /// A stream of peer batches (passed through `convert`).
    #[pyo3(signature = (info_hash, convert=None))]
    fn get_peers(&self, info_hash: &Bound<'_, PyAny>, convert: Option<Py<PyAny>>) -> PyResult<Stream> {
        let (node, info_hash) = (self.node.clone(), key(info_hash)?);
        Stream::start(async move { Ok(Source::Peers(node.get_peers(info_hash).await?)) }, convert)
    }

    /// Every peer found (deduplicated), once the lookup is over.
    fn peers(&self, py: Python<'_>, info_hash: &Bound<'_, PyAny>, aio: bool) -> PyResult<Py<PyAny>> {
        let (node, info_hash) = (self.node.clone(), key(info_hash)?);
        runtime::call(py, aio, async move {
            let peers = node.get_peers(info_hash).await.py()?.collect_peers().await;
            Ok(peers.into_iter().map(|p| (p.ip().to_string(), p.port())).collect::<Vec<_>>())
        })
    }

    #[pyo3(signature = (info_hash, port, aio))]
    fn announce(
        &self,
        py: Python<'_>,
        info_hash: &Bound<'_, PyAny>,
        port: Option<u16>,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (node, info_hash) = (self.node.clone(), key(info_hash)?);
        runtime::call(py, aio, async move { Ok(Json(node.announce_peer(info_hash, port).await.py()?)) })
    }

    #[pyo3(signature = (addr, target, aio))]
    fn sample_infohashes(
        &self,
        py: Python<'_>,
        addr: String,
        target: Option<&Bound<'_, PyAny>>,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        let target = optional_key(target)?.unwrap_or_else(|| kadmos::Id::random(&mut rand::thread_rng()));
        runtime::call(py, aio, async move {
            Ok(Json(node.sample_infohashes(resolve_one(&addr).await?, target).await.py()?))
        })
    }

    /// Stores an immutable item: `value` as a bencoded string, or as given if `bencoded`.
    fn put_immutable(&self, py: Python<'_>, value: Vec<u8>, is_bencoded: bool, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move {
            Ok(Json(node.put_immutable_bencoded(bencoded(value, is_bencoded)).await.py()?))
        })
    }

    /// The bencoded value of an immutable item (`NotFoundError` if nobody has it).
    fn get_immutable(&self, py: Python<'_>, target: &Bound<'_, PyAny>, aio: bool) -> PyResult<Py<PyAny>> {
        let (node, target) = (self.node.clone(), key(target)?);
        runtime::call(py, aio, async move { Ok(Cow::<'static, [u8]>::Owned(node.get_immutable(target).await.py()?)) })
    }

    #[pyo3(signature = (signer, value, is_bencoded, salt, seq, cas, aio))]
    #[allow(clippy::too_many_arguments)]
    fn put_mutable(
        &self,
        py: Python<'_>,
        signer: ItemSigner,
        value: Vec<u8>,
        is_bencoded: bool,
        salt: Vec<u8>,
        seq: Option<i64>,
        cas: Option<i64>,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        let seq = seq.map_or(Seq::Next, Seq::Exact);
        runtime::call(py, aio, async move {
            Ok(Json(node.put_mutable(&signer.0, &salt, bencoded(value, is_bencoded), seq, cas).await.py()?))
        })
    }

    /// A stream of the verified versions of a mutable item (passed through `convert`).
    #[pyo3(signature = (public_key, salt, newer_than=None, convert=None))]
    fn get_mutable(
        &self,
        public_key: Vec<u8>,
        salt: Vec<u8>,
        newer_than: Option<i64>,
        convert: Option<Py<PyAny>>,
    ) -> PyResult<Stream> {
        let node = self.node.clone();
        let public_key = public_key_of(public_key)?;
        Stream::start(async move { Ok(Source::Items(node.get_mutable(public_key, &salt, newer_than).await?)) }, convert)
    }

    /// The newest version of a mutable item as `(seq, bencoded value, signature)`, or None.
    fn get_mutable_latest(&self, py: Python<'_>, public_key: Vec<u8>, salt: Vec<u8>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        let public_key = public_key_of(public_key)?;
        runtime::call(py, aio, async move {
            let newest = node.get_mutable(public_key, &salt, None).await.py()?.most_recent().await;
            Ok(newest.map(|m| {
                (m.seq, Cow::<'static, [u8]>::Owned(m.value), Cow::<'static, [u8]>::Owned(m.signature.to_vec()))
            }))
        })
    }

    fn cancel_keep_alive(&self, py: Python<'_>, target: &Bound<'_, PyAny>, aio: bool) -> PyResult<Py<PyAny>> {
        let (node, target) = (self.node.clone(), key(target)?);
        runtime::call(py, aio, async move { node.cancel_keep_alive(target).await.py() })
    }

    fn routing_table(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(Json(node.routing_table().await.py()?)) })
    }

    fn info(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(Json(node.info().await.py()?)) })
    }

    /// The state to restart from, as JSON text.
    fn save_state(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(node.save_state().await.py()?.to_json()) })
    }

    /// Stops the node; returns its final state as JSON text.
    fn shutdown(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(node.shutdown().await.py()?.to_json()) })
    }
}

fn public_key_of(bytes: Vec<u8>) -> PyResult<[u8; 32]> {
    bytes.try_into().map_err(|b: Vec<u8>| PyValueError::new_err(format!("a public key has 32 bytes, not {}", b.len())))
}
