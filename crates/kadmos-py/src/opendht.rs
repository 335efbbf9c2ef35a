//! The OpenDHT network: the native `OpenDht` node, its `Value`, `Filter` and keys
//! (`OwnerKey`, `PublicKey`). `kadmos.OpenDht` and `kadmos.opendht` (the drop-in for OpenDHT's
//! bindings) are Python over these.

use kadmos::opendht::{
    crypto, OpenDht as Node, OpenDhtState, OwnerKey as RsaKey, PublicKey as RsaPublicKey, PutOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{to_py, IntoPy};
use crate::key::{key, optional_key};
use crate::network::{configure, resolve_all, resolve_one, NodeOptions};
use crate::runtime::{self, Json};
use crate::stream::{Source, Stream};

/// A value of the OpenDHT network, as stored (signed or encrypted values keep their signature
/// and cypher; see `verify_value` and `decrypt_value`).
#[pyclass(module = "kadmos._native", frozen, eq, from_py_object)]
#[derive(Clone, PartialEq)]
pub struct Value(pub kadmos::opendht::Value);

#[pymethods]
impl Value {
    #[new]
    #[pyo3(signature = (data=Vec::new(), id=0, value_type=0, user_type=String::new()))]
    fn new(data: Vec<u8>, id: u64, value_type: u16, user_type: String) -> Value {
        let mut value = kadmos::opendht::Value::new(id, value_type, data);
        value.user_type = user_type;
        Value(value)
    }

    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.data)
    }

    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }

    #[getter]
    fn value_type(&self) -> u16 {
        self.0.value_type
    }

    #[getter]
    fn user_type(&self) -> String {
        self.0.user_type.clone()
    }

    #[getter]
    fn seq(&self) -> u16 {
        self.0.seq
    }

    /// The owner's key of a signed value.
    #[getter]
    fn owner(&self) -> PyResult<Option<PublicKey>> {
        self.0
            .owner
            .as_deref()
            .map(|der| RsaPublicKey::from_der(der).map(PublicKey).map_err(|e| to_py(e.into())))
            .transpose()
    }

    /// The owner's key id (40 hex digits) of a signed value.
    #[getter]
    fn owner_id(&self) -> Option<String> {
        self.0.owner_id().map(|id| id.to_string())
    }

    /// The recipient's key id (40 hex digits) of an encrypted value.
    #[getter]
    fn recipient(&self) -> Option<String> {
        self.0.recipient.map(|id| id.to_string())
    }

    #[getter]
    fn signed(&self) -> bool {
        self.0.is_signed()
    }

    #[getter]
    fn encrypted(&self) -> bool {
        self.0.is_encrypted()
    }

    /// Packed size in bytes, as OpenDHT counts it against storage quotas.
    #[getter]
    fn size(&self) -> usize {
        self.0.size()
    }

    /// A copy with another id (OpenDHT's `Value.id` is writable; this one is not, so that a
    /// value held by a stream is never changed under it).
    fn with_id(&self, id: u64) -> Value {
        let mut value = self.0.clone();
        value.id = id;
        Value(value)
    }

    /// The packed value (OpenDHT's msgpack form, signature and cypher included).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.to_bytes())
    }

    #[staticmethod]
    fn from_bytes(packed: &[u8]) -> PyResult<Value> {
        kadmos::opendht::Value::decode(packed)
            .map(Value)
            .map_err(|e| PyValueError::new_err(format!("not a packed value: {e}")))
    }

    /// The value as the CLI's `--json` shows it (`data` as text when it is UTF-8, `data_hex`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let v = &self.0;
        let dict = PyDict::new(py);
        dict.set_item("id", format!("{:x}", v.id))?;
        dict.set_item("value_type", v.value_type)?;
        dict.set_item("user_type", &v.user_type)?;
        dict.set_item("data", std::str::from_utf8(&v.data).ok())?;
        dict.set_item("data_hex", hex::encode(&v.data))?;
        dict.set_item("seq", v.seq)?;
        dict.set_item("owner", self.owner_id())?;
        dict.set_item("signed", v.is_signed())?;
        dict.set_item("encrypted", v.is_encrypted())?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let v = &self.0;
        let data = match std::str::from_utf8(&v.data) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("hex:{}", hex::encode(&v.data)),
        };
        let mut out = format!("Value(id={:x}, data={data}", v.id);
        if v.value_type != 0 {
            out += &format!(", value_type={}", v.value_type);
        }
        if !v.user_type.is_empty() {
            out += &format!(", user_type={:?}", v.user_type);
        }
        if let Some(owner) = v.owner_id() {
            out += &format!(", owner={owner}, seq={}", v.seq);
        }
        if v.is_encrypted() {
            out += ", encrypted";
        }
        out + ")"
    }
}

/// Which values a get or a listen reports: those matching every condition given.
#[pyclass(module = "kadmos._native", frozen, from_py_object)]
#[derive(Clone)]
pub struct Filter(kadmos::opendht::Filter);

#[pymethods]
impl Filter {
    #[new]
    #[pyo3(signature = (*, id=None, seq=None, value_type=None, user_type=None, owner=None))]
    fn new(
        id: Option<u64>,
        seq: Option<u16>,
        value_type: Option<u16>,
        user_type: Option<String>,
        owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Filter> {
        let owner = optional_key(owner)?;
        Ok(Filter(kadmos::opendht::Filter { id, seq, value_type, user_type, owner }))
    }

    /// Whether `value` passes every condition.
    fn matches(&self, value: &Value) -> bool {
        self.0.matches(&value.0)
    }

    fn __repr__(&self) -> String {
        let f = &self.0;
        let parts: Vec<String> = [
            f.id.map(|v| format!("id={v}")),
            f.seq.map(|v| format!("seq={v}")),
            f.value_type.map(|v| format!("value_type={v}")),
            f.user_type.as_ref().map(|v| format!("user_type={v:?}")),
            f.owner.map(|v| format!("owner={v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("Filter({})", parts.join(", "))
    }
}

/// An RSA key that signs values and opens values encrypted to it (OpenDHT's `PrivateKey`).
#[pyclass(module = "kadmos._native", frozen, from_py_object)]
#[derive(Clone)]
pub struct OwnerKey(RsaKey);

#[pymethods]
impl OwnerKey {
    /// A new key of `bits` bits (OpenDHT's default is 4096; 2048 is much faster to make).
    /// Generation runs with the GIL released.
    #[staticmethod]
    #[pyo3(signature = (bits=4096))]
    fn generate(py: Python<'_>, bits: usize) -> PyResult<OwnerKey> {
        py.detach(|| RsaKey::generate(&mut rand::rngs::OsRng, bits)).map(OwnerKey).map_err(|e| to_py(e.into()))
    }

    #[staticmethod]
    fn from_pem(pem: &str) -> PyResult<OwnerKey> {
        RsaKey::from_pem(pem).map(OwnerKey).map_err(|e| to_py(e.into()))
    }

    /// PKCS#8 PEM of the private key.
    fn to_pem(&self) -> String {
        self.0.to_pem().to_string()
    }

    #[getter]
    fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key().clone())
    }

    /// The key id (40 hex digits): SHA-1 of the public key, what OpenDHT's `getId()` gives.
    #[getter]
    fn id(&self) -> String {
        self.0.id().to_string()
    }

    fn sign<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.0.sign(data).map_err(|e| to_py(e.into()))?))
    }

    fn decrypt<'py>(&self, py: Python<'py>, cypher: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.0.decrypt(cypher).map_err(|e| to_py(e.into()))?))
    }

    fn __repr__(&self) -> String {
        format!("OwnerKey(id={})", self.0.id())
    }
}

/// The public half of an [`OwnerKey`]: checks signatures, encrypts values to its owner.
#[pyclass(module = "kadmos._native", frozen, eq, from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PublicKey(RsaPublicKey);

#[pymethods]
impl PublicKey {
    #[staticmethod]
    fn from_pem(pem: &str) -> PyResult<PublicKey> {
        RsaPublicKey::from_pem(pem).map(PublicKey).map_err(|e| to_py(e.into()))
    }

    #[staticmethod]
    fn from_der(der: &[u8]) -> PyResult<PublicKey> {
        RsaPublicKey::from_der(der).map(PublicKey).map_err(|e| to_py(e.into()))
    }

    fn to_pem(&self) -> String {
        self.0.to_pem()
    }

    fn to_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.to_der())
    }

    /// The key id (40 hex digits).
    #[getter]
    fn id(&self) -> String {
        self.0.id().to_string()
    }

    /// OpenDHT's long id (SHA-256 of the key), 64 hex digits.
    #[getter]
    fn long_id(&self) -> String {
        hex::encode(self.0.long_id())
    }

    fn check_signature(&self, data: &[u8], signature: &[u8]) -> bool {
        self.0.verify(data, signature)
    }

    fn encrypt<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let cypher = self.0.encrypt(data, &mut rand::rngs::OsRng).map_err(|e| to_py(e.into()))?;
        Ok(PyBytes::new(py, &cypher))
    }

    fn __repr__(&self) -> String {
        format!("PublicKey(id={})", self.0.id())
    }
}

/// Checks the signature of a signed value (raises `CryptoError` if it does not verify).
#[pyfunction]
pub fn verify_value(value: &Value) -> PyResult<()> {
    crypto::verify_value(&value.0).map_err(|e| to_py(e.into()))
}

/// Opens a value encrypted to `key`, checking the sender's signature inside.
#[pyfunction]
pub fn decrypt_value(key: &OwnerKey, value: &Value) -> PyResult<Value> {
    crypto::decrypt_value(&key.0, &value.0).map(Value).map_err(|e| to_py(e.into()))
}

/// A node of the OpenDHT network.
#[pyclass(module = "kadmos._native", frozen)]
pub struct OpenDht {
    pub(crate) node: Node,
}

/// How a put is made: the options of `put`, `put_signed`, `put_encrypted`.
fn put_options(value_type: u16, user_type: String, id: Option<u64>, permanent: bool) -> PutOptions {
    PutOptions { value_type, user_type, id, permanent }
}

#[pymethods]
impl OpenDht {
    /// Starts a node (see `kadmos.OpenDht` for the arguments).
    #[staticmethod]
    #[pyo3(signature = (options, client, network_id, rate_limits, aio))]
    fn start(
        py: Python<'_>,
        options: NodeOptions,
        client: bool,
        network_id: u32,
        rate_limits: Option<(Option<u32>, Option<u32>)>,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let mut builder = Node::builder().client(client).network_id(network_id);
        if let Some((total, per_ip)) = rate_limits {
            builder = builder.rate_limits(total, per_ip);
        }
        let state = options.state.as_deref().map(serde_json::from_str::<OpenDhtState>).transpose();
        let state = state.map_err(|e| to_py(kadmos::Error::State(e.to_string())))?;
        if let Some(state) = state {
            builder = builder.state(state);
        }
        let builder = configure!(builder, options);
        runtime::call(py, aio, async move { Ok(OpenDht { node: builder.build().await.py()? }) })
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

    fn bootstrap(&self, py: Python<'_>, nodes: Vec<String>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { node.bootstrap(resolve_all(&nodes).await?).await.py() })
    }

    fn ping(&self, py: Python<'_>, addr: String, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(Json(node.ping(resolve_one(&addr).await?).await.py()?)) })
    }

    fn find_node(&self, py: Python<'_>, target: &Bound<'_, PyAny>, aio: bool) -> PyResult<Py<PyAny>> {
        let (node, target) = (self.node.clone(), key(target)?);
        runtime::call(py, aio, async move { Ok(Json(node.find_node(target).await.py()?)) })
    }

    #[pyo3(signature = (key, data, value_type, user_type, id, permanent, aio))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        data: Vec<u8>,
        value_type: u16,
        user_type: String,
        id: Option<u64>,
        permanent: bool,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (node, key) = (self.node.clone(), crate::key::key(key)?);
        let options = put_options(value_type, user_type, id, permanent);
        runtime::call(py, aio, async move { Ok(Json(node.put(key, data, options).await.py()?)) })
    }

    /// Puts a `Value` exactly as given (a value id of 0 becomes a random one).
    fn put_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Value,
        permanent: bool,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (node, key) = (self.node.clone(), crate::key::key(key)?);
        runtime::call(py, aio, async move { Ok(Json(node.put_value(key, value.0, permanent).await.py()?)) })
    }

    #[pyo3(signature = (key, data, owner, value_type, user_type, id, permanent, aio))]
    #[allow(clippy::too_many_arguments)]
    fn put_signed(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        data: Vec<u8>,
        owner: OwnerKey,
        value_type: u16,
        user_type: String,
        id: Option<u64>,
        permanent: bool,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (node, key) = (self.node.clone(), crate::key::key(key)?);
        let options = put_options(value_type, user_type, id, permanent);
        runtime::call(py, aio, async move { Ok(Json(node.put_signed(key, data, options, &owner.0).await.py()?)) })
    }

    #[pyo3(signature = (key, data, sender, recipient, value_type, user_type, id, permanent, aio))]
    #[allow(clippy::too_many_arguments)]
    fn put_encrypted(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        data: Vec<u8>,
        sender: OwnerKey,
        recipient: PublicKey,
        value_type: u16,
        user_type: String,
        id: Option<u64>,
        permanent: bool,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (node, key) = (self.node.clone(), crate::key::key(key)?);
        let options = put_options(value_type, user_type, id, permanent);
        runtime::call(py, aio, async move {
            Ok(Json(node.put_encrypted(key, data, options, &sender.0, &recipient.0).await.py()?))
        })
    }

    fn cancel_put(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value_id: u64, aio: bool) -> PyResult<Py<PyAny>> {
        let (node, key) = (self.node.clone(), crate::key::key(key)?);
        runtime::call(py, aio, async move { node.cancel_put(key, value_id).await.py() })
    }

    /// A stream of the values at `key` that pass `filter`.
    #[pyo3(signature = (key, filter=None))]
    fn get(&self, key: &Bound<'_, PyAny>, filter: Option<Filter>) -> PyResult<Stream> {
        let (node, key, filter) = (self.node.clone(), crate::key::key(key)?, filter.map(|f| f.0).unwrap_or_default());
        Stream::start(async move { Ok(Source::Values(node.get_filtered(key, filter).await?)) }, None)
    }

    /// Every value at `key` that passes `filter`, once the search is over.
    #[pyo3(signature = (key, filter, aio))]
    fn get_all(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        filter: Option<Filter>,
        aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (node, key, filter) = (self.node.clone(), crate::key::key(key)?, filter.map(|f| f.0).unwrap_or_default());
        runtime::call(py, aio, async move {
            let values = node.get_filtered(key, filter).await.py()?.collect_values().await;
            Ok(values.into_iter().map(Value).collect::<Vec<_>>())
        })
    }

    /// A stream of `(value, expired)` changes at `key`, until closed. The blocking form returns
    /// once the listen is registered; the asyncio form at once (the listen is being registered).
    #[pyo3(signature = (key, filter, aio))]
    fn listen(&self, py: Python<'_>, key: &Bound<'_, PyAny>, filter: Option<Filter>, aio: bool) -> PyResult<Stream> {
        let (node, key, filter) = (self.node.clone(), crate::key::key(key)?, filter.map(|f| f.0).unwrap_or_default());
        let stream = Stream::start(async move { Ok(Source::Listen(node.listen_filtered(key, filter).await?)) }, None)?;
        if aio {
            Ok(stream)
        } else {
            stream.wait_started(py)
        }
    }

    fn info(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(Json(node.info().await.py()?)) })
    }

    /// The state to restart from, as JSON text.
    fn save_state(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(state_json(&node.save_state().await.py()?)) })
    }

    /// Stops the node; returns its final state as JSON text.
    fn shutdown(&self, py: Python<'_>, aio: bool) -> PyResult<Py<PyAny>> {
        let node = self.node.clone();
        runtime::call(py, aio, async move { Ok(state_json(&node.shutdown().await.py()?)) })
    }
}

fn state_json(state: &OpenDhtState) -> String {
    serde_json::to_string_pretty(state).unwrap_or_default()
}
