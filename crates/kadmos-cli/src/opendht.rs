//! The OpenDHT side of the CLI (`--network opendht`): `node`, `testnet`, and `put`, `get` and
//! `listen` through an ephemeral node.
//!
//! Keys are given as text and hashed like OpenDHT's `InfoHash::get` (SHA-1 of the text), or as
//! 40 hex digits taken as is. `--json` prints one object per line: `listening`, `stats`,
//! `stopped` (node), `testnet`, `put`, `listen` (the listen started), and `value` (get and listen) with these fields:
//! `key`, `id` (hex), `value_type`, `user_type`, `data` (the text, or null if not UTF-8 or
//! still encrypted), `data_hex`, `seq`, `owner` (the signer's key id, or null), `signed`,
//! `verified` (whether the signature checks out; null if unsigned), `encrypted`, `decrypted`
//! (whether `--decrypt-with` opened it), `expired`.
//!
//! `put --sign KEYFILE` signs the value (an edit of `--value-id` gets the next `seq`),
//! `--encrypt-to PUBKEY` encrypts it to a recipient (signed by `--sign`'s key inside), and
//! `get`/`listen --decrypt-with KEYFILE` open the values encrypted to that key. Key files come
//! from `kadmos keygen --network opendht` (see `opendht_keys`).

use std::path::PathBuf;
use std::time::Duration;

use kadmos::opendht::{
    crypto, key_from_str, ListenEvent, OpenDht, OpenDhtBuilder, OpenDhtState, OwnerKey, PutOptions, Testnet, Value,
    ValueId, ValueType,
};
use kadmos::{Id, NodeId, PortSpec};
use serde_json::json;

use crate::opendht_keys::{load_owner_key, load_public_key};
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
    let dht = builder.build().await.map_err(|e| crate::node::start_failure(e, net.port.as_ref()))?;
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

/// A value as received, and what this command could check of it.
pub(crate) struct Received {
    /// The value, decrypted if `--decrypt-with` opened it.
    value: Value,
    encrypted: bool,
    decrypted: bool,
    /// Whether the signature checks out (`None`: unsigned, or encrypted and not opened).
    verified: Option<bool>,
}

impl Received {
    /// Checks `value`'s signature, or decrypts it with `key` when it is encrypted to it (which
    /// also checks the sender's signature inside).
    pub(crate) fn check(value: Value, key: Option<&OwnerKey>) -> Received {
        if value.is_encrypted() {
            return match key.map(|k| crypto::decrypt_value(k, &value)) {
                Some(Ok(open)) => Received { value: open, encrypted: true, decrypted: true, verified: Some(true) },
                _ => Received { value, encrypted: true, decrypted: false, verified: None },
            };
        }
        let verified = value.is_signed().then(|| crypto::verify_value(&value).is_ok());
        Received { value, encrypted: false, decrypted: false, verified }
    }

    /// The data as shown: `None` while it is still encrypted.
    fn data(&self) -> Option<&[u8]> {
        (!self.encrypted || self.decrypted).then_some(&self.value.data[..])
    }

    /// As a JSON object with stable field names (see the module documentation).
    pub(crate) fn json(&self, key: &Id, expired: bool) -> serde_json::Value {
        let value = &self.value;
        json!({
            "key": key.to_string(),
            "id": format!("{:x}", value.id),
            "value_type": value.value_type,
            "user_type": value.user_type,
            "data": self.data().and_then(|d| std::str::from_utf8(d).ok()),
            "data_hex": self.data().map(hex::encode),
            "seq": value.seq,
            "owner": value.owner_id().map(|o| o.to_string()),
            "signed": value.is_signed(),
            "verified": self.verified,
            "encrypted": self.encrypted,
            "decrypted": self.decrypted,
            "expired": expired,
        })
    }

    /// For people: the text (or `hex:` and the bytes) and what identifies the value.
    pub(crate) fn text(&self) -> String {
        let value = &self.value;
        let data = match self.data() {
            None => "(encrypted)".to_string(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => format!("hex:{}", hex::encode(bytes)),
            },
        };
        let mut about = format!("id {:x}, type {}", value.id, value.value_type);
        if !value.user_type.is_empty() {
            about.push_str(&format!(", user type {}", value.user_type));
        }
        match (self.encrypted, self.decrypted) {
            (true, true) => about.push_str(", decrypted"),
            (true, false) => about.push_str(", encrypted to another key"),
            _ => {}
        }
        if let Some(owner) = value.owner_id() {
            let check = if self.verified == Some(true) { "" } else { " — BAD SIGNATURE" };
            about.push_str(&format!(", signed by {owner}, seq {}{check}", value.seq));
        }
        format!("{data}\t({about})")
    }
}

/// Starts the node of `kadmos node --network opendht` (or `both`): port 4222 unless `--port`,
/// state in `state-opendht.json`. Returns it and its state file.
pub async fn start_node(
    net: &NetworkArgs,
    state: Option<PathBuf>,
    client: bool,
    id: Option<NodeId>,
) -> Result<(OpenDht, PathBuf), String> {
    let state_path = state.unwrap_or_else(default_state_path);
    let mut builder: OpenDhtBuilder = net.opendht_builder().client(client);
    if state_path.exists() {
        let saved = OpenDhtState::load(&state_path).map_err(|e| format!("{}: {e}", state_path.display()))?;
        tracing::info!(
            "restoring {} contacts, {} stored values and {} permanent puts from {}",
            saved.contacts.len(),
            saved.values.len(),
            saved.permanent_puts.len(),
            state_path.display()
        );
        builder = builder.state(saved);
    }
    if let Some(id) = id {
        builder = builder.node_id(id);
    }
    let dht = builder.build().await.map_err(|e| crate::node::start_failure(e, net.port.as_ref()))?;
    for addr in dht.local_addrs() {
        let fields = json!({ "addr": addr, "node_id": dht.node_id().to_string(), "network": "opendht" });
        emit(net.json, "listening", &fields, || format!("OpenDHT node listening on {addr} as {}", dht.node_id()));
    }
    Ok((dht, state_path))
}

/// Writes the node's state file (a failure is logged: the node keeps running).
pub async fn save_state(dht: &OpenDht, state_path: &std::path::Path) {
    match dht.save_state().await {
        Ok(state) => {
            if let Err(e) = state.save(state_path) {
                tracing::warn!("saving state to {}: {e}", state_path.display());
            }
        }
        Err(e) => tracing::warn!("reading state: {e}"),
    }
}

/// Stops the node and saves its final state.
pub async fn stop_node(dht: &OpenDht, state_path: &std::path::Path, json_output: bool) -> Result<(), String> {
    let final_state = dht.shutdown().await.map_err(|e| e.to_string())?;
    final_state.save(state_path).map_err(|e| format!("saving {}: {e}", state_path.display()))?;
    let (contacts, values) = (final_state.contacts.len(), final_state.values.len() + final_state.permanent_puts.len());
    emit(json_output, "stopped", &json!({ "state": state_path, "contacts": contacts, "values": values }), || {
        format!("saved {contacts} contacts and {values} values to {}", state_path.display())
    });
    Ok(())
}

pub async fn print_stats(dht: &OpenDht, json: bool) {
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
    /// The value's id (an edit of a signed value); default random.
    pub value_id: Option<ValueId>,
    /// Owner key file to sign with (and to sign inside an encryption).
    pub sign: Option<PathBuf>,
    /// Public key file of the recipient to encrypt to.
    pub encrypt_to: Option<PathBuf>,
}

/// `kadmos put --network opendht KEY VALUE [--type N] [--ttl SECS]`. Storing nodes keep a value
/// for its type's lifetime (10 minutes for type 0). A `--ttl` within that lifetime needs one
/// put; a longer one keeps this command running, refreshing the value until SECS have passed.
pub async fn put(args: PutArgs, net: NetworkArgs) -> Result<(), String> {
    let key = key_from_str(&args.key);
    let lifetime = ValueType::expiration_of(args.value_type);
    let keep_for = args.ttl.map(Duration::from_secs).filter(|ttl| *ttl > lifetime);
    let mut options = PutOptions::default().value_type(args.value_type).permanent(keep_for.is_some());
    if let Some(id) = args.value_id {
        options = options.id(id);
    }
    if args.encrypt_to.is_some() && args.sign.is_none() {
        return Err("--encrypt-to needs --sign KEYFILE (the sender signs inside the encryption)".into());
    }
    // Keys are read before joining so that a bad key file fails at once.
    let owner = args.sign.as_deref().map(load_owner_key).transpose()?;
    let recipient = args.encrypt_to.as_deref().map(load_public_key).transpose()?;
    let dht = join(&net).await?;
    let data = args.value.as_bytes();
    let report = match (&owner, &recipient) {
        (Some(owner), Some(recipient)) => dht.put_encrypted(key, data, options, owner, recipient).await,
        (Some(owner), None) => dht.put_signed(key, data, options, owner).await,
        (None, _) => dht.put(key, data, options).await,
    }
    .map_err(|e| e.to_string())?;
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
            "owner": owner.as_ref().map(|k| k.id().to_string()),
            "recipient": recipient.as_ref().map(|k| k.id().to_string()),
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
pub async fn get(key: String, decrypt_with: Option<PathBuf>, net: NetworkArgs) -> Result<(), String> {
    let key = key_from_str(&key);
    let decrypt_with = decrypt_with.as_deref().map(load_owner_key).transpose()?;
    let dht = join(&net).await?;
    let mut values = dht.get(key).await.map_err(|e| e.to_string())?;
    let mut found = 0;
    while let Some(value) = values.next().await {
        found += 1;
        let value = Received::check(value, decrypt_with.as_ref());
        emit(net.json, "value", &value.json(&key, false), || value.text());
    }
    let _ = dht.shutdown().await;
    if found == 0 {
        return Err("not found on the DHT".into());
    }
    Ok(())
}

/// Prints one change of a listen: `+ value` or `- value expired` (a `value` object in JSON).
pub(crate) fn print_change(json_output: bool, key: &Id, change: ListenEvent, decrypt_with: Option<&OwnerKey>) {
    let value = Received::check(change.value, decrypt_with);
    emit(json_output, "value", &value.json(key, change.expired), || {
        let sign = if change.expired { "-" } else { "+" };
        let note = if change.expired { " expired" } else { "" };
        format!("{sign} {}{note}", value.text())
    })
}

/// Prints each change of a listen until it ends or the user interrupts.
pub(crate) async fn print_changes(
    json_output: bool,
    key: &Id,
    mut changes: impl tokio_stream::Stream<Item = ListenEvent> + Unpin,
    decrypt_with: Option<&OwnerKey>,
) {
    use tokio_stream::StreamExt;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            change = changes.next() => match change {
                Some(change) => print_change(json_output, key, change, decrypt_with),
                None => break,
            },
        }
    }
}

/// `kadmos listen --network opendht KEY`: the values stored at the key, then every new value
/// and every expiry, until interrupted.
pub async fn listen(key: String, decrypt_with: Option<PathBuf>, net: NetworkArgs) -> Result<(), String> {
    let key = key_from_str(&key);
    let decrypt_with = decrypt_with.as_deref().map(load_owner_key).transpose()?;
    let dht = join(&net).await?;
    let changes = dht.listen(key).await.map_err(|e| e.to_string())?;
    emit(net.json, "listen", &json!({ "key": key.to_string() }), || format!("listening to {key} (Ctrl-C to stop)"));
    print_changes(net.json, &key, changes, decrypt_with.as_ref()).await;
    let _ = dht.shutdown().await;
    Ok(())
}
