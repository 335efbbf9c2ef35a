//! `kadmos._native`: the compiled half of the `kadmos` Python package (distribution
//! `kadmos-dht`). The Python half (`python/kadmos`) gives the public API: typed results, the
//! blocking and asyncio classes, the OpenDHT drop-in. Every network call here takes `aio`:
//! false blocks (GIL released) and returns the result, true returns an asyncio awaitable.
//!
//! # Layout
//!
//! - `runtime`: the process's tokio runtime; blocking calls; the fork guard.
//! - `awaitable`: Rust futures as asyncio futures (awaited calls).
//! - `errors`: kadmos errors as the exceptions of `kadmos.errors`.
//! - `stream`: `Stream`, for `for` and `async for`, cancelling its operation when closed.
//! - `network`: what both node kinds start with; `host:port` resolution.
//! - `key`: keys and IDs from bytes or text.
//! - `logging`: kadmos's log on stderr, switched from Python.
//! - `mainline`: `Dht`, `ItemSigner`.
//! - `opendht`: `OpenDht`, `Value`, `Filter`, `OwnerKey`, `PublicKey`.
//! - `testnet`: local networks for tests.
//! - `bench`: the Rust side of the call-overhead benchmark (`bench/call_overhead.py`).

mod awaitable;
mod bench;
mod errors;
mod key;
mod logging;
mod mainline;
mod network;
mod opendht;
mod runtime;
mod stream;
mod testnet;

use pyo3::prelude::*;

// The node handles are Send + Sync and hold no Python state, so the module is safe without
// the GIL (free-threaded Python).
#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use crate::bench::{rust_cancel_put_calls, rust_get_values, rust_info_calls};
    #[pymodule_export]
    use crate::logging::{disable_logging, enable_logging};
    #[pymodule_export]
    use crate::mainline::{Dht, ItemSigner};
    #[pymodule_export]
    use crate::opendht::{decrypt_value, verify_value, Filter, OpenDht, OwnerKey, PublicKey, Value};
    #[pymodule_export]
    use crate::stream::Stream;
    #[pymodule_export]
    use crate::testnet::{mainline_testnet, opendht_testnet};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        crate::awaitable::stop_deliveries_at_exit(module)
    }
}
