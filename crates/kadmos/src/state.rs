//! What a node saves to rejoin the network after a restart: its ID, its contacts, BEP 44
//! items, its advertisements and the watches it keeps.

use std::net::SocketAddr;
use std::path::Path;

use kadmos_proto::mainline::{ImmutableItem, Item, MutableItem};
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
    /// BEP 44 items this node stores for others, with their age, so they survive a restart
    /// with their remaining lifetime.
    #[serde(default)]
    pub items: Vec<SavedItem>,
    /// Items this node's user put and keeps alive.
    #[serde(default)]
    pub kept_items: Vec<SavedItem>,
    /// The UDP port the node listened on, tried first when it restarts (if its port list
    /// accepts any port), so that the nodes that know it find it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Advertisements the node runs (see [`Dht::advertise`](crate::Dht::advertise)); a restored node resumes them.
    #[serde(default)]
    pub advertisements: Vec<SavedAdvertisement>,
    /// Watches the node keeps (see [`crate::Dht::keep_watching`]), with the peers they have
    /// reported; a restored node resumes them and reports only peers new to them.
    #[serde(default)]
    pub watches: Vec<SavedWatch>,
}

/// A kept watch in saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWatch {
    /// 40 hex digits.
    pub info_hash: String,
    /// The peers it has reported.
    #[serde(default)]
    pub peers: Vec<SavedWatchedPeer>,
}

/// A peer a watch has reported, and the node that named it first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWatchedPeer {
    /// The peer.
    pub addr: SocketAddr,
    /// The ID of the node that named it first: 40 hex digits.
    pub from_id: String,
    /// That node's address.
    pub from_addr: SocketAddr,
}

/// An advertisement in saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAdvertisement {
    /// 40 hex digits.
    pub info_hash: String,
    /// `None`: the node's own UDP port (`implied_port`).
    #[serde(default)]
    pub port: Option<u16>,
}

/// A BEP 44 item in saved state (binary fields in hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedItem {
    /// The bencoded value.
    pub value: String,
    /// A mutable item's ed25519 public key (absent: an immutable item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A mutable item's salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// A mutable item's sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// A mutable item's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Seconds since its last put when the state was saved.
    pub age_secs: u64,
}

impl SavedItem {
    /// The saved form of `item`, put `age_secs` ago.
    pub fn from_item(item: &Item, age_secs: u64) -> Self {
        match item {
            Item::Immutable(i) => SavedItem {
                value: hex::encode(&i.value),
                public_key: None,
                salt: None,
                seq: None,
                signature: None,
                age_secs,
            },
            Item::Mutable(m) => SavedItem {
                value: hex::encode(&m.value),
                public_key: Some(hex::encode(m.public_key)),
                salt: Some(hex::encode(&m.salt)),
                seq: Some(m.seq),
                signature: Some(hex::encode(m.signature)),
                age_secs,
            },
        }
    }

    /// The item, if every field decodes (its signature is checked when it is stored).
    pub fn to_item(&self) -> Option<Item> {
        let value = hex::decode(&self.value).ok()?;
        match &self.public_key {
            None => ImmutableItem::new(value).ok().map(Item::Immutable),
            Some(pk) => Some(Item::Mutable(MutableItem {
                public_key: hex::decode(pk).ok()?.try_into().ok()?,
                salt: hex::decode(self.salt.as_deref().unwrap_or("")).ok()?,
                seq: self.seq?,
                value,
                signature: hex::decode(self.signature.as_deref()?).ok()?.try_into().ok()?,
            })),
        }
    }
}

/// A contact in saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedContact {
    /// Node ID as 40 hex digits.
    pub id: String,
    /// Where it was reached.
    pub addr: SocketAddr,
}

impl SavedState {
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

    /// Reads a state from JSON ([`Error::State`] if it is not a state).
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
        write_atomically(path, &self.to_json())
    }
}

/// Writes `text` to `path` through a temporary file and a rename (creating the directory if
/// needed), so that a crash while saving never leaves a truncated file behind. Every saved state
/// (both networks) is written this way.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
