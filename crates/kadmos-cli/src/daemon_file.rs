//! `daemon.json` in the data directory: where a running `kadmos node` serves its control API,
//! so that the one-shot commands and `routing-table`, `stats` and `stop` find it. It holds the
//! control token, so it is written readable by its owner only (mode 0600), and removed when
//! the daemon stops.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonFile {
    pub pid: u32,
    /// The control API's address (always on loopback).
    pub addr: SocketAddr,
    /// The same as a URL, for people and `curl`.
    pub url: String,
    /// The bearer token of the control routes.
    pub token: String,
    /// The networks the daemon runs: `mainline`, `opendht`.
    pub networks: Vec<String>,
}

impl DaemonFile {
    pub fn path() -> PathBuf {
        crate::node::data_dir().join("daemon.json")
    }

    /// The recorded daemon, if the file is there and readable (it may be stale: the caller
    /// checks the daemon answers).
    pub fn read() -> Option<DaemonFile> {
        let text = std::fs::read_to_string(Self::path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the file through a temporary file and a rename, mode 0600 from the start.
    pub fn write(&self) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path();
        let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }

    /// Removes the file if it still describes this process (a newer daemon may have replaced it).
    pub fn remove_own() {
        if Self::read().is_some_and(|f| f.pid == std::process::id()) {
            let _ = std::fs::remove_file(Self::path());
        }
    }
}
