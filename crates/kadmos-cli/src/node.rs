//! `kadmos node`: the daemon.

use std::path::PathBuf;
use std::time::Duration;

use kadmos::{Dht, NodeId, SavedState};
use serde_json::json;

use crate::node_limits::NodeLimitArgs;
use crate::output::emit;
use crate::testnet::wait_for_signal;
use crate::NetworkArgs;

/// How often the state file is rewritten while the node runs.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);

/// kadmos's data directory: `$XDG_DATA_HOME/kadmos`, else `~/.local/share/kadmos`.
pub fn data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kadmos")
}

/// Default state file: `state.json` in the data directory.
fn default_state_path() -> PathBuf {
    data_dir().join("state.json")
}

pub async fn run(
    net: NetworkArgs,
    state: Option<PathBuf>,
    read_only: bool,
    id: Option<NodeId>,
    stats_interval: u64,
    republish: Option<Duration>,
    limits: &NodeLimitArgs,
) -> Result<(), String> {
    let state_path = state.unwrap_or_else(default_state_path);
    let mut builder = limits.apply(net.builder().read_only(read_only).republish_stored_items(republish));
    if state_path.exists() {
        let saved = SavedState::load(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
        tracing::info!("restoring {} contacts from {}", saved.contacts.len(), state_path.display());
        builder = builder.state(saved);
    }
    if let Some(id) = id {
        builder = builder.node_id(id);
    }
    let dht = builder.build().await.map_err(|e| e.to_string())?;
    for addr in dht.local_addrs() {
        emit(net.json, "listening", &json!({ "addr": addr, "node_id": dht.node_id().to_string() }), || {
            format!("listening on {addr} as {}", dht.node_id())
        });
    }
    let mut stats = tokio::time::interval(Duration::from_secs(stats_interval.max(1)));
    stats.tick().await;
    let mut save = tokio::time::interval(SAVE_EVERY);
    save.tick().await;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            _ = stats.tick() => print_stats(&dht, net.json).await,
            _ = save.tick() => save_state(&dht, &state_path).await,
        }
    }
    let final_state = dht.shutdown().await.map_err(|e| e.to_string())?;
    final_state.save(&state_path).map_err(|e| format!("saving {}: {e}", state_path.display()))?;
    emit(net.json, "stopped", &json!({ "state": state_path, "contacts": final_state.contacts.len() }), || {
        format!("saved {} contacts to {}", final_state.contacts.len(), state_path.display())
    });
    Ok(())
}

async fn print_stats(dht: &Dht, json: bool) {
    let Ok(info) = dht.info().await else { return };
    emit(json, "stats", &info, || {
        let t = &info.traffic;
        format!(
            "routing table: ipv4 {} ipv6 {} | peers stored {} ({} torrents) | in {} datagrams {} B, out {} datagrams {} B",
            info.routing_table_ipv4.map_or("-".into(), |n| n.to_string()),
            info.routing_table_ipv6.map_or("-".into(), |n| n.to_string()),
            info.stored_peers,
            info.stored_infohashes,
            t.datagrams_received,
            t.bytes_received,
            t.datagrams_sent,
            t.bytes_sent
        )
    });
}

async fn save_state(dht: &Dht, path: &std::path::Path) {
    match dht.save_state().await {
        Ok(state) => {
            if let Err(e) = state.save(path) {
                tracing::warn!("saving state to {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!("reading state: {e}"),
    }
}
