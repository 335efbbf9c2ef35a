//! What a node saves to rejoin the network after a restart: its ID and its contacts.

use std::net::SocketAddr;
use std::path::Path;

use kadmos_proto::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Saved state of a node, serialised as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// Node ID as 40 hex digits.
    pub node_id: String,
    /// Contacts of both address families.
    pub contacts: Vec<SavedContact>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedContact {
    pub id: String,
    pub addr: SocketAddr,
}

impl SavedState {
    pub fn node_id(&self) -> Result<NodeId> {
        self.node_id.parse().map_err(|e| Error::State(format!("{e}")))
    }

    /// Contacts with a readable ID; unreadable entries are skipped.
    pub fn contacts(&self) -> Vec<(NodeId, SocketAddr)> {
        self.contacts.iter().filter_map(|c| Some((c.id.parse().ok()?, c.addr))).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("state serialises")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::State(e.to_string()))
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }

    /// Writes a state file atomically (write to a temporary file, then rename), so that a
    /// crash while saving never leaves a truncated state behind.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_json())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
