//! kadmos errors as the exceptions of `kadmos.errors` (defined in Python, where they can also
//! derive from Python's own: a timeout is a `TimeoutError`, not found a `LookupError`...).
//! `import_exception!` builds them lazily, so a future can make one without the GIL.

use kadmos::{Error, QueryError, QuestError};
use pyo3::PyErr;

pyo3::import_exception!(kadmos.errors, DhtTimeoutError);
pyo3::import_exception!(kadmos.errors, NoContactsError);
pyo3::import_exception!(kadmos.errors, OverloadedError);
pyo3::import_exception!(kadmos.errors, RemoteError);
pyo3::import_exception!(kadmos.errors, NotFoundError);
pyo3::import_exception!(kadmos.errors, ShutdownError);
pyo3::import_exception!(kadmos.errors, BindError);
pyo3::import_exception!(kadmos.errors, KadmosIoError);
pyo3::import_exception!(kadmos.errors, ConfigError);
pyo3::import_exception!(kadmos.errors, StateError);
pyo3::import_exception!(kadmos.errors, FamilyUnavailableError);
pyo3::import_exception!(kadmos.errors, InvalidItemError);
pyo3::import_exception!(kadmos.errors, CryptoError);
pyo3::import_exception!(kadmos.errors, PutRefusedError);
pyo3::import_exception!(kadmos.errors, CasMismatchError);
pyo3::import_exception!(kadmos.errors, SeqTooLowError);
pyo3::import_exception!(kadmos.errors, InvalidSignatureError);
pyo3::import_exception!(kadmos.errors, CannotReplaceError);
pyo3::import_exception!(kadmos.errors, ForkedProcessError);

/// The exception for a kadmos error, with the error's message (and code, address or value id
/// where it has one).
pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Query(QueryError::Timeout) => DhtTimeoutError::new_err(message),
        Error::Query(QueryError::NoContacts) => NoContactsError::new_err(message),
        Error::Query(QueryError::Overloaded) => OverloadedError::new_err(message),
        Error::Query(QueryError::Remote { code, .. }) => RemoteError::new_err((message, code)),
        Error::NotFound => NotFoundError::new_err(message),
        Error::Shutdown => ShutdownError::new_err(message),
        Error::Bind { addr, source } => {
            BindError::new_err((source.raw_os_error().unwrap_or(0), message, addr.to_string()))
        }
        Error::Io(source) => KadmosIoError::new_err((source.raw_os_error().unwrap_or(0), message)),
        Error::NoBindAddress => ConfigError::new_err(message),
        Error::State(_) => StateError::new_err(message),
        Error::FamilyUnavailable(_) => FamilyUnavailableError::new_err(message),
        Error::InvalidItem(_) => InvalidItemError::new_err(message),
        Error::Crypto(_) => CryptoError::new_err(message),
        Error::CasMismatch(_) => CasMismatchError::new_err((message, 301)),
        Error::SeqTooLow(_) => SeqTooLowError::new_err((message, 302)),
        Error::InvalidSignature(_) => InvalidSignatureError::new_err((message, 206)),
        Error::PutRefused { code, .. } => PutRefusedError::new_err((message, code)),
        Error::CannotReplace { value_id, .. } => CannotReplaceError::new_err((message, value_id)),
        // Quests (advertise/watch) are not in the Python API yet; mapped for completeness.
        Error::Quest(QuestError::PortZero) => ConfigError::new_err(message),
        Error::Quest(_) => OverloadedError::new_err(message),
    }
}

/// For `map_err` on a kadmos result.
pub trait IntoPy<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for kadmos::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}
