//! What an OpenDHT node saves to rejoin the network after a restart: its ID, its contacts, the
//! values it stores (with their remaining lifetime) and its user's permanent puts.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use kadmos_proto::opendht::Value;
use kadmos_proto::{Id, NodeId};
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
    /// Values this node stores (for others and for its user), so that a restart loses none
    /// that had time left. Absent in states written before they were saved.
    #[serde(default)]
    pub values: Vec<SavedValue>,
    /// Values this node's user put as permanent: kept alive again after a restart.
    #[serde(default)]
    pub permanent_puts: Vec<SavedPut>,
    /// The UDP port the node listened on, tried first when it restarts (as Mainline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A stored value in saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedValue {
    /// The key, 40 hex digits.
    pub key: String,
    /// The packed value (OpenDHT's `getPacked`, signature and cypher included), in hex.
    pub value: String,
    /// The address of the node that stored it, or null for this node's own user (which
    /// decides which quota it counts against).
    pub source: Option<IpAddr>,
    /// Seconds it had left when the state was saved.
    pub expires_in_secs: u64,
}

/// A permanent put in saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPut {
    /// The key, 40 hex digits.
    pub key: String,
    /// The packed value, in hex.
    pub value: String,
}

/// A key and a packed value from their saved hex forms; `None` if either does not decode.
fn decode(key: &str, value: &str) -> Option<(Id, Value)> {
    let key = key.parse().ok()?;
    let value = Value::decode(&hex::decode(value).ok()?).ok()?;
    Some((key, value))
}

impl SavedValue {
    /// A value stored for `source` (`None`: this node's user) with `expires_in_secs` left.
    pub fn new(key: Id, value: &Value, source: Option<IpAddr>, expires_in_secs: u64) -> Self {
        SavedValue { key: key.to_string(), value: hex::encode(value.to_bytes()), source, expires_in_secs }
    }

    /// The key and value, if both decode (the value's signature is checked when it is stored
    /// again).
    pub fn decode(&self) -> Option<(Id, Value)> {
        decode(&self.key, &self.value)
    }
}

impl SavedPut {
    /// A permanent put of `value` at `key`.
    pub fn new(key: Id, value: &Value) -> Self {
        SavedPut { key: key.to_string(), value: hex::encode(value.to_bytes()) }
    }

    /// The key and value, if both decode.
    pub fn decode(&self) -> Option<(Id, Value)> {
        decode(&self.key, &self.value)
    }
}

impl OpenDhtState {
    /// A state with this ID and these contacts, and nothing stored.
    pub fn new(node_id: NodeId, contacts: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> Self {
        OpenDhtState {
            network: NETWORK.into(),
            node_id: node_id.to_string(),
            contacts: contacts.into_iter().map(|(id, addr)| SavedContact { id: id.to_string(), addr }).collect(),
            values: Vec::new(),
            permanent_puts: Vec::new(),
            port: None,
        }
    }

    /// The saved node ID ([`Error::State`] if it is not 40 hex digits).
    pub fn node_id(&self) -> Result<NodeId> {
        self.node_id.parse().map_err(|e| Error::State(format!("{e}")))
    }

    /// Contacts with a readable ID; unreadable entries are skipped.
    pub fn contacts(&self) -> Vec<(NodeId, SocketAddr)> {
        self.contacts.iter().filter_map(|c| Some((c.id.parse().ok()?, c.addr))).collect()
    }

    /// The state as pretty-printed JSON.
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
