//! Printing results: text for people, or one JSON object per line (`--json`) with stable
//! field names for scripts.

use serde::Serialize;
use std::io::Write;

/// Prints `value` as one JSON line (with `"type": kind`) or as the given text.
pub fn emit<T: Serialize>(json: bool, kind: &str, value: &T, text: impl FnOnce() -> String) {
    let mut out = std::io::stdout().lock();
    if json {
        let mut object = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut object {
            map.insert("type".into(), serde_json::Value::String(kind.into()));
        }
        let _ = writeln!(out, "{object}");
    } else {
        let _ = writeln!(out, "{}", text());
    }
    let _ = out.flush();
}
