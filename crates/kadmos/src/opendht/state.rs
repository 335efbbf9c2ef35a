//! What an OpenDHT node saves to rejoin the network after a restart: its ID and its contacts.

use std::net::SocketAddr;
use std::path::Path;

use kadmos_proto::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{write_atomically, SavedContact};

/// The value of [`OpenDhtState::network`].
const NETWORK: &str = "opendht";

/// Saved state of an OpenDHT node, serialised as JSON. The sibling of Mainline's
/// [`SavedState`](crate::SavedState), with the same contact form and the same atomic save; it
/// names its network so that the state of a node of the other network is refused, not mixed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDhtState {
    /// Always `"opendht"`.
    pub network: String,
    /// Node ID as 40 hex digits.
    pub node_id: String,
    /// Contacts of both address families.
    pub contacts: Vec<SavedContact>,
}

impl OpenDhtState {
    pub fn new(node_id: NodeId, contacts: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> Self {
        OpenDhtState {
            network: NETWORK.into(),
            node_id: node_id.to_string(),
            contacts: contacts.into_iter().map(|(id, addr)| SavedContact { id: id.to_string(), addr }).collect(),
        }
    }

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

    /// Reads a state; one without `"network": "opendht"` (a Mainline node's) is an error.
    pub fn from_json(text: &str) -> Result<Self> {
        let state: OpenDhtState = serde_json::from_str(text).map_err(|e| Error::State(e.to_string()))?;
        if state.network != NETWORK {
            return Err(Error::State(format!("the state of a {:?} node, not of an OpenDHT node", state.network)));
        }
        Ok(state)
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }

    /// Writes a state file atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state survives JSON; a Mainline state file is refused with a clear error.
    #[test]
    fn round_trip_and_network_check() {
        let id: NodeId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let state = OpenDhtState::new(id, [(id, "127.0.0.1:4222".parse().unwrap())]);
        let back = OpenDhtState::from_json(&state.to_json()).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.node_id().unwrap(), id);
        assert_eq!(back.contacts().len(), 1);
        let mainline = crate::SavedState { node_id: id.to_string(), ..Default::default() };
        assert!(OpenDhtState::from_json(&mainline.to_json()).is_err());
    }
}
