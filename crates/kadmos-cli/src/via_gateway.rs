//! `--gateway URL` (repeatable, or `KADMOS_GATEWAY=URL[,URL…]`): `put`, `get` (OpenDHT values,
//! BEP 44 items), `listen`, `peers` and `announce` through HTTP gateways instead of a node of their own, with the
//! fastest gateway remembered for a day in `gateway.json` in the data directory, and failover
//! to the others. Output is the same as without a gateway.

use std::path::PathBuf;

use kadmos::opendht::{crypto, key_from_str, PutOptions, ValueType};
use kadmos::{Id, InfoHash, MutableItem};
use kadmos_http::{Client, ClientConfig};
use serde_json::json;

use crate::opendht::{print_changes, PutArgs, Received};
use crate::opendht_keys::{load_owner_key, load_public_key};
use crate::output::emit;
use crate::storage;

/// The gateways asked for: `--gateway` values, else `KADMOS_GATEWAY` (comma-separated).
pub fn gateways(flags: &[String]) -> Vec<String> {
    if !flags.is_empty() {
        return flags.to_vec();
    }
    std::env::var("KADMOS_GATEWAY")
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

pub fn client(urls: &[String]) -> Result<Client, String> {
    let config =
        ClientConfig { choice_file: Some(crate::node::data_dir().join("gateway.json")), ..ClientConfig::default() };
    Client::new(urls, config).map_err(|e| e.to_string())
}

/// `put --network opendht KEY VALUE --gateway URL`: signed (`--sign`) or encrypted
/// (`--encrypt-to`) here, then posted.
pub async fn put(args: PutArgs, client: &Client, json_output: bool) -> Result<(), String> {
    if args.ttl.is_some() || args.value_id.is_some() {
        return Err("--ttl and --value-id are not available through a gateway".into());
    }
    if args.encrypt_to.is_some() && args.sign.is_none() {
        return Err("--encrypt-to needs --sign KEYFILE (the sender signs inside the encryption)".into());
    }
    let key = key_from_str(&args.key);
    let owner = args.sign.as_deref().map(load_owner_key).transpose()?;
    let recipient = args.encrypt_to.as_deref().map(load_public_key).transpose()?;
    let mut value = PutOptions::default().value_type(args.value_type).value(args.value.as_bytes());
    value.id = rand::random::<u64>().max(1);
    match (&owner, &recipient) {
        (Some(owner), Some(recipient)) => {
            value =
                crypto::encrypt_value(owner, &value, recipient, &mut rand::rngs::OsRng).map_err(|e| e.to_string())?;
        }
        (Some(owner), None) => crypto::sign_value(owner, &mut value).map_err(|e| e.to_string())?,
        (None, _) => {}
    }
    let stored = client.put(key, &value, false).await.map_err(|e| e.to_string())?;
    let lifetime = ValueType::expiration_of(args.value_type).as_secs();
    let gateway = client.current();
    emit(
        json_output,
        "put",
        &json!({
            "key": key.to_string(),
            "value_id": format!("{:x}", stored.id),
            "value_type": args.value_type,
            "lifetime_secs": lifetime,
            "gateway": gateway,
            "owner": owner.as_ref().map(|k| k.id().to_string()),
            "recipient": recipient.as_ref().map(|k| k.id().to_string()),
        }),
        || format!("{:x}\t(put under {key} through {}; lives {lifetime} s)", stored.id, gateway.unwrap_or_default()),
    );
    Ok(())
}

pub async fn get(key: String, decrypt_with: Option<PathBuf>, client: &Client, json_output: bool) -> Result<(), String> {
    let key = key_from_str(&key);
    let decrypt_with = decrypt_with.as_deref().map(load_owner_key).transpose()?;
    let values = client.get(key).await.map_err(|e| e.to_string())?;
    if values.is_empty() {
        return Err("not found on the DHT".into());
    }
    for value in values {
        let value = Received::check(value, decrypt_with.as_ref());
        emit(json_output, "value", &value.json(&key, false), || value.text());
    }
    Ok(())
}

pub async fn listen(
    key: String,
    decrypt_with: Option<PathBuf>,
    client: &Client,
    json_output: bool,
) -> Result<(), String> {
    let key = key_from_str(&key);
    let decrypt_with = decrypt_with.as_deref().map(load_owner_key).transpose()?;
    emit(json_output, "listen", &json!({ "key": key.to_string() }), || {
        format!("listening to {key} through a gateway (Ctrl-C to stop)")
    });
    print_changes(json_output, &key, client.listen(key), decrypt_with.as_ref()).await;
    Ok(())
}

pub async fn peers(info_hash: InfoHash, client: &Client, json_output: bool) -> Result<(), String> {
    let peers = client.peers(info_hash).await.map_err(|e| e.to_string())?;
    for peer in &peers {
        emit(json_output, "peer", &json!({ "peer": peer, "gateway": client.current() }), || peer.to_string());
    }
    let total = peers.len();
    emit(json_output, "done", &json!({ "info_hash": info_hash.to_string(), "peers": total }), || {
        format!("{total} peers found")
    });
    Ok(())
}

pub async fn announce(
    info_hash: InfoHash,
    port: Option<u16>,
    client: &Client,
    json_output: bool,
) -> Result<(), String> {
    let stored = client.announce(info_hash, port).await.map_err(|e| e.to_string())?;
    if stored == 0 {
        return Err("announce failed: no node accepted it".into());
    }
    emit(
        json_output,
        "announced",
        &json!({ "info_hash": info_hash.to_string(), "port": port, "implied_port": port.is_none(), "stored": stored }),
        || match port {
            Some(port) => format!("announced port {port} at {stored} nodes"),
            None => format!("announced the gateway node's port at {stored} nodes"),
        },
    );
    Ok(())
}

/// `put VALUE [--key FILE --salt S --seq N --cas N] --gateway URL`: an immutable item, or a
/// mutable one signed here (without `--seq`, one more than the newest the gateway finds).
pub async fn put_item(args: storage::PutArgs, client: &Client, json_output: bool) -> Result<(), String> {
    let signer = args.key.as_deref().map(storage::load_key).transpose()?;
    let Some(signer) = signer else {
        if args.salt.is_some() || args.seq.is_some() || args.cas.is_some() {
            return Err("--salt, --seq and --cas apply to mutable items: give --key FILE".into());
        }
        let (target, stored) = client.put_immutable(args.value.as_bytes()).await.map_err(|e| e.to_string())?;
        let fields =
            json!({ "target": target.to_string(), "seq": null, "stored": stored, "gateway": client.current() });
        emit(json_output, "put", &fields, || format!("{target}\t(stored at {stored} nodes)"));
        return Ok(());
    };
    let salt = args.salt.unwrap_or_default();
    let seq = match args.seq {
        Some(seq) => seq,
        None => {
            let newest = client.get_mutable(signer.public_key(), salt.as_bytes()).await.map_err(|e| e.to_string())?;
            newest.map_or(1, |item| item.seq + 1)
        }
    };
    let mut value = format!("{}:", args.value.len()).into_bytes();
    value.extend_from_slice(args.value.as_bytes());
    let item = MutableItem::sign(&signer, salt.as_bytes(), seq, value).map_err(|e| e.to_string())?;
    client.put_mutable(&item, args.cas).await.map_err(|e| e.to_string())?;
    let target = item.target();
    let fields = json!({ "target": target.to_string(), "seq": seq, "gateway": client.current() });
    emit(json_output, "put", &fields, || format!("{target}\t(seq {seq})"));
    Ok(())
}

/// `get TARGET --gateway URL` or `get --public-key HEX [--salt S] --gateway URL`.
pub async fn get_item(
    target: Option<Id>,
    public_key: Option<String>,
    salt: Option<String>,
    client: &Client,
    json_output: bool,
) -> Result<(), String> {
    match (target, public_key) {
        (Some(target), None) => {
            let value = client.get_immutable(target).await.map_err(|e| e.to_string())?.ok_or("not found on the DHT")?;
            storage::print_immutable(json_output, target, &value);
        }
        (None, Some(public_key)) => {
            let key = storage::parse_public_key(&public_key)?;
            let salt = salt.unwrap_or_default();
            let item = client
                .get_mutable(key, salt.as_bytes())
                .await
                .map_err(|e| e.to_string())?
                .ok_or("not found on the DHT")?;
            storage::print_mutable(json_output, (&public_key, &salt), item.target(), item.seq, &item.value);
        }
        _ => return Err("give either a TARGET or --public-key HEX".into()),
    }
    Ok(())
}
