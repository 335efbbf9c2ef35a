//! BEP 44 commands: `keygen`, `put` and `get` through an ephemeral node.

use std::io::Write;
use std::path::{Path, PathBuf};

use kadmos::{Dht, Id, ItemSigner, Seq};
use serde_json::json;

use crate::oneshot::join;
use crate::output::emit;
use crate::NetworkArgs;

/// Default key file: `$XDG_DATA_HOME/kadmos/ed25519.key` (or under `~/.local/share`).
pub fn default_key_path() -> PathBuf {
    crate::node::data_dir().join("ed25519.key")
}

/// Reads a key file: 64 hex digits (a 32-byte seed) or 128 (a 64-byte expanded key).
pub fn load_key(path: &Path) -> Result<ItemSigner, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = hex::decode(text.trim()).map_err(|_| format!("{}: not a hex key", path.display()))?;
    ItemSigner::from_secret(&bytes)
        .ok_or_else(|| format!("{}: expected a 32-byte seed or a 64-byte expanded ed25519 key", path.display()))
}

pub fn keygen(out: Option<PathBuf>, force: bool, json: bool) -> Result<(), String> {
    let path = out.unwrap_or_else(default_key_path);
    if path.exists() && !force {
        return Err(format!("{} exists; use --force to replace it", path.display()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let seed: [u8; 32] = rand::random();
    let signer = ItemSigner::from_seed(seed);
    write_private(&path, &format!("{}\n", hex::encode(seed))).map_err(|e| format!("{}: {e}", path.display()))?;
    let public_key = hex::encode(signer.public_key());
    emit(json, "key", &json!({ "public_key": public_key, "file": path }), || {
        format!("{public_key}\n(secret key written to {})", path.display())
    });
    Ok(())
}

/// Writes a file readable by its owner only (mode 0600 from creation, never wider).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(text.as_bytes())
    }
}

/// A mutable item's public key from `--public-key` (64 hex digits).
pub(crate) fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("--public-key: expected 64 hex digits, got {text:?}"))
}

/// How a stored value is shown: its text if it is a UTF-8 byte string, else its bencoding.
pub(crate) fn describe(bencoded: &[u8]) -> (Option<String>, String) {
    let text = kadmos_proto_value_string(bencoded);
    let shown = text.clone().unwrap_or_else(|| String::from_utf8_lossy(bencoded).into_owned());
    (text, shown)
}

fn kadmos_proto_value_string(bencoded: &[u8]) -> Option<String> {
    let (len, rest) = std::str::from_utf8(bencoded).ok()?.split_once(':')?;
    (len.parse::<usize>().ok()? == rest.len()).then(|| rest.to_string())
}

pub struct PutArgs {
    pub value: String,
    pub key: Option<PathBuf>,
    pub salt: Option<String>,
    pub seq: Option<i64>,
    pub cas: Option<i64>,
}

async fn ephemeral(net: &NetworkArgs) -> Result<Dht, String> {
    // A one-shot command exits after its put, so nothing would keep the item alive.
    join(net, |b| b.keep_alive_puts(false)).await
}

pub async fn put(args: PutArgs, net: NetworkArgs) -> Result<(), String> {
    let signer = args.key.as_deref().map(load_key).transpose()?;
    if signer.is_none() && (args.salt.is_some() || args.seq.is_some() || args.cas.is_some()) {
        return Err("--salt, --seq and --cas apply to mutable items: give --key FILE".into());
    }
    let dht = ephemeral(&net).await?;
    let result = match &signer {
        None => dht.put_immutable(args.value.as_bytes()).await,
        Some(signer) => {
            let salt = args.salt.unwrap_or_default();
            let mut value = Vec::new();
            value.extend_from_slice(format!("{}:", args.value.len()).as_bytes());
            value.extend_from_slice(args.value.as_bytes());
            let seq = args.seq.map_or(Seq::Next, Seq::Exact);
            dht.put_mutable(signer, salt.as_bytes(), value, seq, args.cas).await
        }
    }
    .map_err(|e| e.to_string())?;
    let _ = dht.shutdown().await;
    print_put(net.json, &serde_json::to_value(&result).map_err(|e| e.to_string())?);
    Ok(())
}

/// Prints a put's result (a `PutResult` as JSON: from this process's node or from a daemon).
pub(crate) fn print_put(json_output: bool, result: &serde_json::Value) {
    let target = result["target"].as_str().unwrap_or_default();
    let stored = result["stored_at"].as_array().map_or(0, Vec::len);
    emit(json_output, "put", result, || match result["seq"].as_i64() {
        Some(seq) => format!("{target}\t(seq {seq}, stored at {stored} nodes)"),
        None => format!("{target}\t(stored at {stored} nodes)"),
    });
}

/// Prints an immutable item's value.
pub(crate) fn print_immutable(json_output: bool, target: Id, value: &[u8]) {
    let (text, shown) = describe(value);
    emit(
        json_output,
        "item",
        &json!({ "target": target.to_string(), "value": text, "bencoded": hex::encode(value) }),
        || shown,
    );
}

/// Prints the newest version of a mutable item.
pub(crate) fn print_mutable(json_output: bool, (public_key, salt): (&str, &str), target: Id, seq: i64, value: &[u8]) {
    let (text, shown) = describe(value);
    emit(
        json_output,
        "item",
        &json!({
            "target": target.to_string(),
            "public_key": public_key,
            "salt": salt,
            "seq": seq,
            "value": text,
            "bencoded": hex::encode(value),
        }),
        || format!("{shown}\t(seq {seq})"),
    );
}

pub async fn get(
    target: Option<Id>,
    public_key: Option<String>,
    salt: Option<String>,
    net: NetworkArgs,
) -> Result<(), String> {
    let dht = ephemeral(&net).await?;
    match (target, public_key) {
        (Some(target), None) => {
            let value = dht.get_immutable(target).await.map_err(|e| e.to_string())?;
            print_immutable(net.json, target, &value);
        }
        (None, Some(public_key)) => {
            let key = parse_public_key(&public_key)?;
            let salt = salt.unwrap_or_default();
            let stream = dht.get_mutable(key, salt.as_bytes(), None).await.map_err(|e| e.to_string())?;
            let item = stream.most_recent().await.ok_or("not found on the DHT")?;
            print_mutable(net.json, (&public_key, &salt), item.target(), item.seq, &item.value);
        }
        _ => return Err("give either a TARGET or --public-key HEX".into()),
    }
    let _ = dht.shutdown().await;
    Ok(())
}
