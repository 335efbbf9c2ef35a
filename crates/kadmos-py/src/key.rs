//! Keys, node IDs and info hashes as Python gives them: 20 raw bytes (`kadmos.InfoHash` is a
//! `bytes`), or a str: 40 hex digits are the ID itself, any other text is hashed as OpenDHT's
//! `InfoHash.get` does (SHA-1), the rule of `kadmos::opendht::key_from_str`.

use kadmos::Id;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

pub fn key(obj: &Bound<'_, PyAny>) -> PyResult<Id> {
    if let Ok(text) = obj.extract::<String>() {
        return Ok(kadmos::opendht::key_from_str(&text));
    }
    let Ok(raw) = obj.extract::<Vec<u8>>() else {
        return Err(PyTypeError::new_err(format!(
            "a key is an InfoHash, 20 bytes or a str, not {}",
            obj.get_type().name()?
        )));
    };
    let raw: [u8; 20] = raw
        .try_into()
        .map_err(|raw: Vec<u8>| PyValueError::new_err(format!("a key of bytes has 20 of them, not {}", raw.len())))?;
    Ok(Id(raw))
}

/// A key given or not.
pub fn optional_key(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Id>> {
    obj.map(key).transpose()
}
