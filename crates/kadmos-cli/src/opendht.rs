//! The OpenDHT side of the CLI (`--network opendht`): `node`, `testnet`, and `put`, `get` and
//! `listen` through an ephemeral node.
//!
//! Keys are given as text and hashed like OpenDHT's `InfoHash::get` (SHA-1 of the text), or as
//! 40 hex digits taken as is. `--json` prints one object per line: `listening`, `stats`,
//! `stopped` (node), `testnet`, `put`, `listen` (the listen started), and `value` (get and listen) with these fields:
//! `key`, `id` (hex), `value_type`, `user_type`, `data` (the text, or null if not UTF-8),
//! `data_hex`, `seq`, `owner` (the signer's key id, or null), `signed`, `encrypted`, `expired`.

use std::path::PathBuf;
use std::time::Duration;

use kadmos::opendht::{key_from_str, OpenDht, OpenDhtBuilder, OpenDhtState, PutOptions, Testnet, Value, ValueType};
use kadmos::{Id, NodeId, PortSpec};
use serde_json::json;

use crate::output::emit;
use crate::testnet::wait_for_signal;
use crate::NetworkArgs;

/// How long joining may take before a one-shot command gives up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Default state file of an OpenDHT node: `state-opendht.json` in the data directory (next to
/// the Mainline node's `state.json`).
fn default_state_path() -> PathBuf {
    crate::node::data_dir().join("state-opendht.json")
}

/// Starts an ephemeral OpenDHT node in client mode (it leaves in a moment: others should not
/// route through it) on any free port unless `--port` says otherwise, and waits until it joined.
async fn join(net: &NetworkArgs) -> Result<OpenDht, String> {
    let mut builder = net.opendht_builder().client(true);
    if net.port.is_none() {
        builder = builder.ports(PortSpec::any());
    }
    let dht = builder.build().await.map_err(|e| e.to_string())?;
    tokio::time::timeout(JOIN_TIMEOUT, dht.bootstrapped())
        .await
        .map_err(|_| "joining the network timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !net.no_bootstrap {
        let info = dht.info().await.map_err(|e| e.to_string())?;
        if info.routing_table_ipv4.unwrap_or(0) + info.routing_table_ipv6.unwrap_or(0) == 0 {
            return Err("could not join the network: no bootstrap node answered".into());
        }
    }
    Ok(dht)
}

/// A value as a JSON object with stable field names (see the module documentation).
fn value_json(key: &Id, value: &Value, expired: bool) -> serde_json::Value {
    json!({
        "key": key.to_string(),
        "id": format!("{:x}", value.id),
        "value_type": value.value_type,
        "user_type": value.user_type,
        "data": std::str::from_utf8(&value.data).ok(),
        "data_hex": hex::encode(&value.data),
        "seq": value.seq,
        "owner": value.owner_id().map(|o| o.to_string()),
        "signed": value.is_signed(),
        "encrypted": value.is_encrypted(),
        "expired": expired,
    })
}

/// A value for people: its text (or `hex:` and its bytes) and what identifies it.
fn value_text(value: &Value) -> String {
    let data = match std::str::from_utf8(&value.data) {
        Ok(text) => text.to_string(),
        Err(_) => format!("hex:{}", hex::encode(&value.data)),
    };
    let mut about = format!("id {:x}, type {}", value.id, value.value_type);
    if !value.user_type.is_empty() {
        about.push_str(&format!(", user type {}", value.user_type));
    }
    if value.is_encrypted() {
        about.push_str(", encrypted");
    } else if value.is_signed() {
        about.push_str(", signed");
    }
    format!("{data}\t({about})")
}

/// `kadmos node --network opendht`: port 4222 unless `--port`, state in `state-opendht.json`.
pub async fn node(
    net: NetworkArgs,
    state: Option<PathBuf>,
    client: bool,
    id: Option<NodeId>,
    stats_interval: u64,
) -> Result<(), String> {
    let state_path = state.unwrap_or_else(default_state_path);
    let mut builder: OpenDhtBuilder = net.opendht_builder().client(client);
    if state_path.exists() {
        let saved = OpenDhtState::load(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
        tracing::info!("restoring {} contacts from {}", saved.contacts.len(), state_path.display());
        builder = builder.state(saved);
    }
    if let Some(id) = id {
        builder = builder.node_id(id);
    }
    let dht = builder.build().await.map_err(|e| e.to_string())?;
    for addr in dht.local_addrs() {
        let fields = json!({ "addr": addr, "node_id": dht.node_id().to_string(), "network": "opendht" });
        emit(net.json, "listening", &fields, || format!("OpenDHT node listening on {addr} as {}", dht.node_id()));
    }
    let mut stats = tokio::time::interval(Duration::from_secs(stats_interval.max(1)));
    stats.tick().await;
    let mut save = tokio::time::interval(crate::node::SAVE_EVERY);
    save.tick().await;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            _ = stats.tick() => print_stats(&dht, net.json).await,
            _ = save.tick() => match dht.save_state().await {
                Ok(state) => if let Err(e) = state.save(&state_path) {
                    tracing::warn!("saving state to {}: {e}", state_path.display());
                },
                Err(e) => tracing::warn!("reading state: {e}"),
            },
        }
    }
    let final_state = dht.shutdown().await.map_err(|e| e.to_string())?;
    final_state.save(&state_path).map_err(|e| format!("saving {}: {e}", state_path.display()))?;
    emit(net.json, "stopped", &json!({ "state": state_path, "contacts": final_state.contacts.len() }), || {
        format!("saved {} contacts to {}", final_state.contacts.len(), state_path.display())
    });
    Ok(())
}

async fn print_stats(dht: &OpenDht, json: bool) {
    let Ok(info) = dht.info().await else { return };
    emit(json, "stats", &info, || {
        let t = &info.traffic;
        format!(
            "routing table: ipv4 {} ipv6 {} | values stored {} ({} keys) | listeners {} | in {} datagrams {} B, out {} datagrams {} B",
            info.routing_table_ipv4.map_or("-".into(), |n| n.to_string()),
            info.routing_table_ipv6.map_or("-".into(), |n| n.to_string()),
            info.stored_values,
            info.stored_keys,
            info.remote_listeners,
            t.datagrams_received,
            t.bytes_received,
            t.datagrams_sent,
            t.bytes_sent
        )
    });
}

/// `kadmos testnet --network opendht`.
pub async fn testnet(n: usize, port: Option<u16>, json: bool) -> Result<(), String> {
    if n == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let net = match port {
        None => Testnet::new(n).await,
        Some(port) => Testnet::with_port(n, port).await,
    }
    .map_err(|e| e.to_string())?;
    let addrs = net.bootstrap_addrs();
    let bootstrap = addrs[0];
    emit(json, "testnet", &json!({ "network": "opendht", "nodes": n, "bootstrap": bootstrap, "addrs": addrs }), || {
        format!("{n} OpenDHT nodes running on 127.0.0.1; bootstrap from {bootstrap}\ntry: kadmos put --network opendht --bootstrap {bootstrap} KEY VALUE\nCtrl-C to stop")
    });
    wait_for_signal().await;
    net.shutdown().await;
    Ok(())
}

pub struct PutArgs {
    pub key: String,
    pub value: String,
    pub value_type: u16,
    pub ttl: Option<u64>,
}

/// `kadmos put --network opendht KEY VALUE [--type N] [--ttl SECS]`. Storing nodes keep a value
/// for its type's lifetime (10 minutes for type 0). A `--ttl` within that lifetime needs one
/// put; a longer one keeps this command running, refreshing the value until SECS have passed.
pub async fn put(args: PutArgs, net: NetworkArgs) -> Result<(), String> {
    let key = key_from_str(&args.key);
    let lifetime = ValueType::expiration_of(args.value_type);
    let keep_for = args.ttl.map(Duration::from_secs).filter(|ttl| *ttl > lifetime);
    let options = PutOptions::default().value_type(args.value_type).permanent(keep_for.is_some());
    let dht = join(&net).await?;
    let report = dht.put(key, args.value.as_bytes(), options).await.map_err(|e| e.to_string())?;
    let keep_secs = keep_for.map_or(0, |d| d.as_secs());
    emit(
        net.json,
        "put",
        &json!({
            "key": key.to_string(),
            "value_id": format!("{:x}", report.value_id),
            "value_type": args.value_type,
            "lifetime_secs": lifetime.as_secs(),
            "keep_alive_secs": keep_secs,
            "stored_at": report.stored_at,
            "errors": report.errors,
        }),
        || {
            let kept = if keep_secs > 0 { format!(", kept alive for {keep_secs} s") } else { String::new() };
            format!(
                "{:x}\t(stored at {} nodes under {key}; lives {} s{kept})",
                report.value_id,
                report.stored_at.len(),
                lifetime.as_secs()
            )
        },
    );
    if let Some(keep_for) = keep_for {
        tokio::select! {
            () = tokio::time::sleep(keep_for) => {}
            () = wait_for_signal() => {}
        }
        let _ = dht.cancel_put(key, report.value_id).await;
    }
    let _ = dht.shutdown().await;
    Ok(())
}

/// `kadmos get --network opendht KEY`: every value found, as found; an error if there is none.
pub async fn get(key: String, net: NetworkArgs) -> Result<(), String> {
    let key = key_from_str(&key);
    let dht = join(&net).await?;
    let mut values = dht.get(key).await.map_err(|e| e.to_string())?;
    let mut found = 0;
    while let Some(value) = values.next().await {
        found += 1;
        emit(net.json, "value", &value_json(&key, &value, false), || value_text(&value));
    }
    let _ = dht.shutdown().await;
    if found == 0 {
        return Err("not found on the DHT".into());
    }
    Ok(())
}

/// `kadmos listen --network opendht KEY`: the values stored at the key, then every new value
/// and every expiry, until interrupted.
pub async fn listen(key: String, net: NetworkArgs) -> Result<(), String> {
    let key = key_from_str(&key);
    let dht = join(&net).await?;
    let mut changes = dht.listen(key).await.map_err(|e| e.to_string())?;
    emit(net.json, "listen", &json!({ "key": key.to_string() }), || format!("listening to {key} (Ctrl-C to stop)"));
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            change = changes.next() => match change {
                Some(change) => emit(net.json, "value", &value_json(&key, &change.value, change.expired), || {
                    let sign = if change.expired { "-" } else { "+" };
                    let note = if change.expired { " expired" } else { "" };
                    format!("{sign} {}{note}", value_text(&change.value))
                }),
                None => break,
            },
        }
    }
    drop(changes);
    let _ = dht.shutdown().await;
    Ok(())
}
